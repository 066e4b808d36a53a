//! `oqs-edge boot-firewall`, what the early-boot unit runs before the network comes up: the last
//! applied ruleset when there is one, the built-in block when there is none or nft refuses it.

use std::process::Command;

use netns_tests::{oqs_edge_bin, skip_unless_root, Netns};

fn boot(ns: &Netns, state_dir: &std::path::Path) -> std::process::Output {
    let bin = oqs_edge_bin();
    ns.run(
        &[
            bin.to_str().unwrap(),
            "boot-firewall",
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
        "",
    )
}

fn table(ns: &Netns) -> String {
    ns.ok(&["nft", "list", "table", "inet", "oqs_edge"], "")
}

#[test]
fn with_nothing_saved_the_built_in_block_stops_all_forwarding() {
    if skip_unless_root("with_nothing_saved_the_built_in_block_stops_all_forwarding") {
        return;
    }
    let ns = Netns::new("boot-none");
    let state = tempfile::tempdir().unwrap();
    let out = boot(&ns, state.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-in block loaded"));
    let rules = table(&ns);
    assert!(
        rules.contains("hook forward priority filter; policy drop;"),
        "{rules}"
    );
    assert!(
        rules.contains("hook input priority filter; policy drop;"),
        "{rules}"
    );
}

#[test]
fn the_saved_ruleset_is_loaded_and_a_corrupt_one_falls_back_to_the_block() {
    if skip_unless_root("the_saved_ruleset_is_loaded_and_a_corrupt_one_falls_back_to_the_block") {
        return;
    }
    let ns = Netns::new("boot-saved");
    let state = tempfile::tempdir().unwrap();
    let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/lab.yaml");
    let plan = Command::new(oqs_edge_bin())
        .args(["plan", "--no-files", "-c", lab.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(plan.stdout).unwrap();
    // The firewall part of the plan is exactly what `run` saves.
    let ruleset: String = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("# sysctls"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(state.path().join("ruleset.nft"), &ruleset).unwrap();
    let out = boot(&ns, state.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded the last applied ruleset"));
    assert!(table(&ns).contains("eligibility_to_internet"));

    // A truncated file (a disk that lost its last write): the block, never nothing.
    std::fs::write(
        state.path().join("ruleset.nft"),
        &ruleset[..ruleset.len() / 2],
    )
    .unwrap();
    let out = boot(&ns, state.path());
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nft refused the ruleset"), "{stderr}");
    let rules = table(&ns);
    assert!(!rules.contains("eligibility_to_internet"), "{rules}");
    assert!(rules.contains("early-boot block"), "{rules}");
}
