//! Every example's planned ruleset is valid nft, in both renderings, and both mean the same:
//! loaded into a throwaway namespace, the text and the JSON list identically.

use std::path::Path;

use netns_tests::{listing_without_handles, skip_unless_root, Netns};
use oqs_edge::config::{check_file, FileChecks};

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn planned_rulesets_load_in_nft_and_text_equals_json() {
    if skip_unless_root("planned_rulesets_load_in_nft_and_text_equals_json") {
        return;
    }
    let ns = Netns::new("nftc");
    for file in examples() {
        let (checked, _) = check_file(&file, FileChecks::Off).unwrap();
        let plan = oqs_edge::plan::plan(&checked.config.unwrap());
        let text = plan.firewall.to_nft_text();
        let json = plan.firewall.to_nft_json().to_string();
        let name = file.display();

        // `nft -c` checks against the kernel without committing.
        let out = ns.run(&["nft", "-c", "-f", "-"], &text);
        assert!(
            out.status.success(),
            "{name}: nft -c refused the text ruleset: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = ns.run(&["nft", "-j", "-c", "-f", "-"], &json);
        assert!(
            out.status.success(),
            "{name}: nft -c refused the JSON ruleset: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Load each for real (twice: the batch must replace an existing table, too).
        ns.ok(&["nft", "-f", "-"], &text);
        ns.ok(&["nft", "-f", "-"], &text);
        let from_text = listing_without_handles(
            &ns.ok(&["nft", "-j", "list", "table", "inet", "oqs_edge"], ""),
        );
        ns.ok(&["nft", "-j", "-f", "-"], &json);
        let from_json = listing_without_handles(
            &ns.ok(&["nft", "-j", "list", "table", "inet", "oqs_edge"], ""),
        );
        assert_eq!(
            from_text, from_json,
            "{name}: the text and JSON renderings differ once loaded"
        );
        ns.ok(&["nft", "delete", "table", "inet", "oqs_edge"], "");
    }
}

#[test]
fn replacing_the_table_leaves_other_tables_alone() {
    if skip_unless_root("replacing_the_table_leaves_other_tables_alone") {
        return;
    }
    let ns = Netns::new("other");
    ns.ok(
        &["nft", "-f", "-"],
        "table ip other {\n\tchain c {\n\t\ttype filter hook input priority 10;\n\t}\n}\n",
    );
    let (checked, _) = check_file(&examples()[0], FileChecks::Off).unwrap();
    let plan = oqs_edge::plan::plan(&checked.config.unwrap());
    ns.ok(
        &["nft", "-j", "-f", "-"],
        &plan.firewall.to_nft_json().to_string(),
    );
    let tables = ns.ok(&["nft", "list", "tables"], "");
    assert!(
        tables.contains("table ip other") && tables.contains("table inet oqs_edge"),
        "{tables}"
    );
}

/// The firewall applier: a ruleset nft refuses leaves the old one in place, and the error
/// carries nft's own message and the rule it blamed.
#[test]
fn a_refused_ruleset_changes_nothing_and_says_why() {
    use oqs_edge::apply::firewall::{FirewallError, Nft};
    use oqs_edge::plan::nft::{Match, Names, Op, Rule, Verdict};

    if skip_unless_root("a_refused_ruleset_changes_nothing_and_says_why") {
        return;
    }
    let ns = Netns::new("refuse");
    let nft = Nft::in_netns(&ns.name);
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/lab.yaml");
    let (checked, _) = check_file(&lab, FileChecks::Off).unwrap();
    let plan = oqs_edge::plan::plan(&checked.config.unwrap());
    nft.apply(&plan.firewall).expect("the lab ruleset applies");
    let before = ns.ok(&["nft", "list", "table", "inet", "oqs_edge"], "");

    // A rule naming a counter that does not exist: valid syntax, refused by the kernel.
    let mut bad = plan.firewall.clone();
    bad.chains[0].rules.insert(
        0,
        Rule::new(
            vec![Match::Iif(Op::Is, Names::One("lan9".into()))],
            Verdict::Drop,
        )
        .counted("no_such_counter"),
    );
    match nft.apply(&bad) {
        Err(FirewallError::Refused { message, rule }) => {
            assert!(message.contains("Error:"), "nft's own message: {message}");
            assert_eq!(
                rule.as_deref(),
                Some("iifname \"lan9\" counter name \"no_such_counter\" drop")
            );
        }
        other => panic!("expected nft to refuse, got {other:?}"),
    }
    let after = ns.ok(&["nft", "list", "table", "inet", "oqs_edge"], "");
    assert_eq!(
        before, after,
        "a refused ruleset must leave the applied one untouched"
    );
}
