//! The layering of `daemon/src`: every `crate::` path points down the flow
//! config → plan → apply → supervisor, never up.
//!
//! Each top-level module has a floor; a module may name only modules on lower floors (and
//! itself). So `plan` stays pure (it cannot reach an applier, the supervisor or the control
//! socket), no applier imports the supervisor or the operator's side, and `pki` stands below
//! `config`. A new module must be given a floor here, which is the moment to decide where it
//! belongs.

use std::path::{Path, PathBuf};

/// Top-level modules of the library, lowest floor first.
const FLOORS: &[(&str, u8)] = &[
    ("severity", 0),
    ("files", 0),
    ("logging", 0),
    ("pki", 1),
    ("config", 2),
    ("plan", 3),
    ("status", 4),
    ("apply", 5),
    ("operator", 6),
    ("supervisor", 7),
];

/// The binary's own files: they sit above everything and use the library as `oqs_edge::`.
const BINARY: &[&str] = &["main.rs", "cli_docs.rs", "lib.rs"];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

/// The top-level module a source file belongs to: `apply/proxy/lan.rs` → `apply`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Every top-level module a file's code names through `crate::` (comments left out).
fn crate_references(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = &rest[..at];
            let after = &rest[at + "crate::".len()..];
            rest = after;
            // `$crate::` in a macro and `oqs_edge_crate::`-like names are not paths into us.
            if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((number + 1, name));
            }
        }
    }
    found
}

/// The imports that run against the floors, as `file:line: a → b` lines.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (relative, source) in files {
        let module = module_of(relative);
        let Some(own) = floor(&module) else {
            out.push(format!(
                "{}: module `{module}` has no floor in tests/layering.rs: give it one",
                relative.display()
            ));
            continue;
        };
        for (line, target) in crate_references(source) {
            if target == module {
                continue;
            }
            match floor(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => out.push(format!(
                    "{}:{line}: `{module}` imports `{target}`, which stands above it",
                    relative.display()
                )),
                None => out.push(format!(
                    "{}:{line}: `{module}` imports `{target}`, which has no floor",
                    relative.display()
                )),
            }
        }
    }
    out
}

fn library_sources(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().to_owned();
                if relative.components().count() == 1
                    && BINARY.contains(&relative.to_str().unwrap())
                {
                    continue;
                }
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn every_import_points_down_the_flow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = library_sources(&root);
    assert!(
        files.len() > 20,
        "expected the library's sources under {}",
        root.display()
    );
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "imports against the flow (config → plan → apply → supervisor):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rule_catches_an_upward_import() {
    let files = vec![
        (
            PathBuf::from("plan/mod.rs"),
            "use crate::config::ValidConfig;\nuse crate::apply::net::Net;\n".to_owned(),
        ),
        (
            PathBuf::from("apply/proxy/mod.rs"),
            "// crate::supervisor in a comment is fine\nlet s = crate::operator::control::Server;\n"
                .to_owned(),
        ),
        (
            PathBuf::from("pki/mod.rs"),
            "use crate::config::Severity;\nuse crate::severity::Severity;\n".to_owned(),
        ),
        (
            PathBuf::from("dns.rs"),
            "use crate::plan::Plan;\n".to_owned(),
        ),
    ];
    assert_eq!(
        violations(&files),
        vec![
            "plan/mod.rs:2: `plan` imports `apply`, which stands above it",
            "apply/proxy/mod.rs:2: `apply` imports `operator`, which stands above it",
            "pki/mod.rs:1: `pki` imports `config`, which stands above it",
            "dns.rs: module `dns` has no floor in tests/layering.rs: give it one",
        ]
    );
}
