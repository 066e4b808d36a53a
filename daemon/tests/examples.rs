//! The example configs in `config/`: each checks clean, its plan matches the golden file, and the
//! JSON Schema in `config/` is the one the Rust types generate.
//!
//! After an intended change, regenerate with `OQS_EDGE_BLESS=1 cargo test -p oqs-edge --test examples`
//! and review the diff.

use std::path::{Path, PathBuf};

use oqs_edge::config::{self, check_file, FileChecks};
use oqs_edge::plan;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the five examples, found {files:?}"
    );
    files
}

fn bless() -> bool {
    std::env::var_os("OQS_EDGE_BLESS").is_some()
}

/// Compare with the golden file (or rewrite it when blessing).
fn golden(path: &Path, actual: &str) {
    if bless() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with OQS_EDGE_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{} is stale (first difference at line {:?}); review and regenerate with OQS_EDGE_BLESS=1",
            path.display(),
            first.map(|i| i + 1)
        );
    }
}

#[test]
fn every_example_checks_clean_without_warnings() {
    for file in examples() {
        let (checked, source) = check_file(&file, FileChecks::Off).unwrap();
        assert!(
            checked.report.valid && checked.report.warnings == 0,
            "{}",
            checked.report.render(&source)
        );
        assert!(
            source.starts_with("# yaml-language-server: $schema=./oqs-edge.schema.json\n"),
            "{} must start with the schema modeline",
            file.display()
        );
    }
}

#[test]
fn plans_match_the_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for file in examples() {
        let (checked, _) = check_file(&file, FileChecks::Off).unwrap();
        let config = checked.config.unwrap();
        let plan = plan::plan(&config);
        let stem = file.file_stem().unwrap().to_str().unwrap();
        golden(&dir.join(format!("{stem}.plan.txt")), &plan.to_text());
        let json = serde_json::to_string_pretty(&plan.to_json()).unwrap() + "\n";
        golden(&dir.join(format!("{stem}.plan.json")), &json);
    }
}

#[test]
fn plan_is_deterministic() {
    for file in examples() {
        let (a, _) = check_file(&file, FileChecks::Off).unwrap();
        let (b, _) = check_file(&file, FileChecks::Off).unwrap();
        assert_eq!(
            plan::plan(&a.config.unwrap()).to_text(),
            plan::plan(&b.config.unwrap()).to_text()
        );
    }
}

#[test]
fn json_schema_is_fresh() {
    golden(
        &repo().join("config/oqs-edge.schema.json"),
        &config::json_schema(),
    );
}
