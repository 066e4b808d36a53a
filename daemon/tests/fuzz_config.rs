//! Fuzzing the config loader and `check` (issue 22): arbitrary bytes, and mutations of the
//! example configs, the packaged config and the seeds in tests/fuzz/corpus/config. Whatever the
//! text: no panic, every diagnostic's line:col is inside the file (or the problem is the file as
//! a whole), the report renders, and a config that checks valid plans.

#[path = "fuzz/common.rs"]
mod common;

use std::path::{Path, PathBuf};

use oqs_edge::config::{check_source, Diagnostic, FileChecks};
use oqs_edge::plan;
use proptest::prelude::*;

/// Tokens that matter to YAML and to the config's values.
const DICTIONARY: &[&[u8]] = &[
    b":",
    b": ",
    b"- ",
    b"\n",
    b"\n  ",
    b"    ",
    b"\t",
    b"#",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"!!str ",
    b"---\n",
    b"...\n",
    b"~",
    b"null",
    b"|\n",
    b">-\n",
    b"? ",
    b"<<: *a",
    b"0x1F",
    b"1e999",
    b"-1",
    b"4294967296",
    b"10.200.0.0/24",
    b"::/0",
    b"/33",
    b"192.168.50.1",
    b"fe80::1%lan0",
    b"65536",
    b"30s",
    b"0s",
    b"99999999999h",
    b"version",
    b"segments",
    b"tunnel",
    b"type",
    b"wireguard",
    b"ipsec",
    b"ip-vpn",
    b"proxy",
    b"routes",
    b"dhcp",
    b"dns",
    b"wan",
    b"closed_network",
    b"client_certificates",
    b"control",
    b"eligibility",
    b"clinic",
    b"allow",
    b"deny",
    "医療機関".as_bytes(),
    "\u{3000}".as_bytes(),
    b"\xef\xbb\xbf",
    b"\r\n",
    b"\xff",
];

/// Whole-file problems: the only errors with no line:col.
const WHOLE_FILE: &[&str] = &["the config file is empty"];

fn extra_seeds() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo.join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(repo.join("packaging/config.yaml"));
    files
}

/// Check `bytes` as a config file and assert what must hold for any input.
fn check_anything(bytes: &[u8]) {
    // `check_file` reads with read_to_string: bytes that are not UTF-8 are an I/O error there.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let checked = check_source(Path::new("fuzz.yaml"), text, FileChecks::Off);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &checked.report.diagnostics {
        assert_inside(text, &lines, d);
    }
    assert_eq!(checked.report.valid, checked.report.errors == 0);
    let rendered = checked.report.render(text);
    assert!(rendered.ends_with('\n'));
    if let Some(config) = checked.config {
        let plan = plan::plan(&config);
        let _ = plan.to_text();
        let _ = plan.to_json();
    }
}

fn assert_inside(text: &str, lines: &[&str], d: &Diagnostic) {
    let Some(loc) = d.loc else {
        assert!(
            WHOLE_FILE.contains(&d.message.as_str()),
            "a diagnostic without line:col: {d:?}\n--- input ---\n{text}"
        );
        return;
    };
    assert!(
        loc.line >= 1 && loc.column >= 1,
        "line:col {}:{} is not 1-based: {d:?}\n--- input ---\n{text}",
        loc.line,
        loc.column
    );
    // The end of the file (after the last newline) is a place too.
    let line = lines.get(loc.line as usize - 1).unwrap_or_else(|| {
        panic!(
            "line {} is past the end ({} lines): {d:?}\n--- input ---\n{text}",
            loc.line,
            lines.len()
        )
    });
    let width = line.chars().count() as u32 + 1;
    assert!(
        loc.column <= width,
        "column {} is past the end of line {} ({width} places): {d:?}\n--- input ---\n{text}",
        loc.column,
        loc.line
    );
}

proptest! {
    #![proptest_config(common::config("config-bytes", 3000))]
    #[test]
    fn fuzz_config_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_anything(&bytes);
    }
}

proptest! {
    #![proptest_config(common::config("config-text", 3000))]
    #[test]
    fn fuzz_config_arbitrary_yamlish_text(text in "[ a-z0-9:\\-\\[\\]{}#,'\"&*!|>\n\t.]{0,300}") {
        check_anything(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(common::config("config-mutations", 10000))]
    #[test]
    fn fuzz_config_mutated_examples(
        bytes in common::mutated(common::seeds("config", &extra_seeds()), DICTIONARY, 6)
    ) {
        check_anything(&bytes);
    }
}

#[test]
fn every_seed_passes_unmutated() {
    for seed in common::seeds("config", &extra_seeds()) {
        check_anything(&seed);
    }
}
