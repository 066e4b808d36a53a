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

    // What the block means for packets: a LAN address reaches the router, a public one does
    // not, and nothing is forwarded through it.
    let lan = Netns::new("boot-lan");
    let wan = Netns::new("boot-wan");
    for (peer, router_if, router_addr, peer_addr) in [
        (&lan, "lan0", "192.168.50.1/24", "192.168.50.10/24"),
        (&wan, "wan0", "203.0.113.1/24", "203.0.113.10/24"),
    ] {
        ns.ok(
            &[
                "ip", "link", "add", router_if, "type", "veth", "peer", "name", "eth0", "netns",
                &peer.name,
            ],
            "",
        );
        ns.ok(&["ip", "addr", "add", router_addr, "dev", router_if], "");
        ns.ok(&["ip", "link", "set", router_if, "up"], "");
        peer.ok(&["ip", "addr", "add", peer_addr, "dev", "eth0"], "");
        peer.ok(&["ip", "link", "set", "eth0", "up"], "");
        peer.ok(&["ip", "link", "set", "lo", "up"], "");
    }
    let gateway = |peer: &Netns, via: &str| {
        peer.ok(&["ip", "route", "add", "default", "via", via], "");
    };
    gateway(&lan, "192.168.50.1");
    gateway(&wan, "203.0.113.1");
    ns.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"], "");
    let ping = |from: &Netns, to: &str| {
        from.run(&["ping", "-c", "1", "-W", "1", to], "")
            .status
            .success()
    };
    assert!(
        ping(&lan, "192.168.50.1"),
        "LAN → router must work under the block"
    );
    assert!(
        !ping(&wan, "203.0.113.1"),
        "a public source must not reach the router"
    );
    assert!(
        !ping(&lan, "203.0.113.10"),
        "nothing is forwarded, even with ip_forward on"
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
