//! `oqs-edge run`, the real binary in its own namespace: it applies the firewall, keeps it on
//! SIGTERM, refuses a broken config on SIGHUP without changing anything, and applies a good one;
//! it installs the closed-network routes once the WAN exists, removes only its own, and says so
//! through `oqs-edge status` and `oqs-edge reload`.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use netns_tests::{
    oqs_edge_bin, process_ended, signal, skip_unless_root, wait_for, KillOnDrop as Daemon, Netns,
};

const CONFIG: &str = r#"version: 1
site:
  institution_code: "1312345678"
segments:
  - name: oqs
    interface: lan0
    address: 192.168.50.1/24
    role: eligibility
  - name: clinic
    interface: lan1
    address: 192.168.60.1/24
    role: clinic
    internet: deny
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
tunnel:
  type: ip-vpn
  ip_vpn:
    gateway: 198.51.100.1
"#;

#[test]
fn run_applies_reloads_and_leaves_the_firewall_on_exit() {
    if skip_unless_root("run_applies_reloads_and_leaves_the_firewall_on_exit") {
        return;
    }
    let ns = Netns::new("run");
    // The LAN ports exist from the start (the daemon puts the segment addresses on them);
    // the WAN comes later.
    for (lan, pc) in [("lan0", "pc0"), ("lan1", "pc1")] {
        ns.ok(
            &["ip", "link", "add", lan, "type", "veth", "peer", "name", pc],
            "",
        );
        ns.ok(&["ip", "link", "set", pc, "up"], "");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let state = dir.path().join("state");
    let log = dir.path().join("daemon.log");
    let socket = dir.path().join("control.sock");
    let config_text = format!("{CONFIG}control:\n  socket: {}\n", socket.display());
    let config_text = config_text.as_str();
    std::fs::write(&config, config_text).unwrap();
    let cli = |args: &[&str]| {
        Command::new(oqs_edge_bin())
            .args(args)
            .args(["-c", config.to_str().unwrap()])
            .output()
            .unwrap()
    };

    let daemon = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(oqs_edge_bin())
            .args([
                "run",
                "-c",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let table = || ns.run(&["nft", "list", "table", "inet", "oqs_edge"], "");
    assert!(
        wait_for(20, || table().status.success()
            && state.join("ruleset.nft").exists()),
        "the table was not applied: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let applied = String::from_utf8(table().stdout).unwrap();
    assert!(applied.contains("10.200.0.0/24"), "{applied}");

    // No WAN yet: the daemon runs, fail-closed, and says what is missing (exit 1, degraded).
    assert!(wait_for(10, || socket.exists()), "no control socket");
    let status = cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("DEGRADED"), "{text}");
    assert!(
        text.contains("route 10.200.0.0/24 via 198.51.100.1 dev wan0 is not installed: interface wan0 does not exist"),
        "{text}"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "control socket mode");

    // The WAN appears (and an operator's own route to elsewhere): the watch installs the
    // closed-network route and the daemon is healthy.
    ns.ok(
        &[
            "ip", "link", "add", "wan0", "type", "veth", "peer", "name", "isp0",
        ],
        "",
    );
    ns.ok(&["ip", "addr", "add", "198.51.100.2/24", "dev", "wan0"], "");
    ns.ok(&["ip", "link", "set", "isp0", "up"], "");
    ns.ok(&["ip", "link", "set", "wan0", "up"], "");
    ns.ok(
        &["ip", "route", "add", "10.99.0.0/16", "via", "198.51.100.9"],
        "",
    );
    let routes = || ns.ok(&["ip", "route", "show", "proto", "79"], "");
    assert!(
        wait_for(15, || routes()
            .contains("10.200.0.0/24 via 198.51.100.1 dev wan0")),
        "the watch did not install the route: {}",
        routes()
    );
    let status = cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status.status.code(), Some(0), "{json:#}");
    assert_eq!(json["health"], "healthy");
    assert_eq!(json["firewall"]["applied"], true);
    assert_eq!(json["tunnel"]["state"], "up");
    assert_eq!(json["config"]["path"], config.to_str().unwrap());
    assert_eq!(json["config"]["digest"].as_str().unwrap().len(), 64);
    assert!(json["firewall"]["counters"]["eligibility_to_internet"]["packets"].is_u64());

    // A broken edit: every error logged with its place, nothing changed, the daemon stays up.
    std::fs::write(
        &config,
        config_text.replace("address: 192.168.60.1/24", "address: 192.168.60.300/24"),
    )
    .unwrap();
    let reload = cli(&["reload"]);
    assert_eq!(reload.status.code(), Some(2), "`reload` checks first");
    assert!(String::from_utf8_lossy(&reload.stderr).contains(":11:14: error:"));
    signal(pid, "HUP");
    assert!(wait_for(10, || std::fs::read_to_string(&log)
        .unwrap()
        .contains("reload refused")));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("{}:11:14: error:", config.display())),
        "{text}"
    );
    assert!(!process_ended(pid), "the daemon must survive a bad reload");
    assert_eq!(
        String::from_utf8(table().stdout).unwrap(),
        applied,
        "a refused reload changes nothing"
    );

    let status = cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status.status.code(),
        Some(1),
        "a refused reload is worth a look"
    );
    assert_eq!(json["config"]["last_reload"]["result"], "refused");
    assert_eq!(
        json["config"]["file_changed"], true,
        "the broken edit is on disk"
    );

    // A good edit is applied, routes included.
    std::fs::write(
        &config,
        config_text.replace("[10.200.0.0/24]", "[10.200.0.0/24, 10.210.0.0/24]"),
    )
    .unwrap();
    signal(pid, "HUP");
    assert!(
        wait_for(10, || String::from_utf8(table().stdout)
            .unwrap()
            .contains("10.210.0.0/24")),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(wait_for(5, || routes().contains("10.210.0.0/24 via 198.51.100.1")));

    // Dropping a prefix removes its route and only that: the operator's route stays.
    std::fs::write(&config, config_text).unwrap();
    let reload = cli(&["reload"]);
    assert_eq!(reload.status.code(), Some(0), "{reload:?}");
    assert!(!routes().contains("10.210.0.0/24"), "{}", routes());
    assert!(routes().contains("10.200.0.0/24"));
    assert!(ns
        .ok(&["ip", "route"], "")
        .contains("10.99.0.0/16 via 198.51.100.9"));

    // SIGTERM: the daemon ends, the firewall stays (fail-closed).
    signal(pid, "TERM");
    assert!(
        wait_for(10, || process_ended(pid)),
        "the daemon did not stop on SIGTERM"
    );
    assert!(
        table().status.success(),
        "the table must outlive the daemon"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("the firewall stays in place"));
    let status = cli(&["status"]);
    assert_eq!(status.status.code(), Some(3), "not running");
    assert!(String::from_utf8_lossy(&status.stdout).contains("not running"));
}
