//! `oqs-edge run`, the real binary in its own namespace: it applies the firewall, keeps it on
//! SIGTERM, refuses a broken config on SIGHUP without changing anything, and applies a good one.

use std::process::{Child, Command, Stdio};

use netns_tests::{oqs_edge_bin, process_ended, skip_unless_root, wait_for, Netns};

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

/// The daemon, stopped by its PID if the test ends early.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn run_applies_reloads_and_leaves_the_firewall_on_exit() {
    if skip_unless_root("run_applies_reloads_and_leaves_the_firewall_on_exit") {
        return;
    }
    let ns = Netns::new("run");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let state = dir.path().join("state");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config, CONFIG).unwrap();

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

    // A broken edit: every error logged with its place, nothing changed, the daemon stays up.
    std::fs::write(
        &config,
        CONFIG.replace("address: 192.168.60.1/24", "address: 192.168.60.300/24"),
    )
    .unwrap();
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

    // A good edit is applied.
    std::fs::write(
        &config,
        CONFIG.replace("[10.200.0.0/24]", "[10.200.0.0/24, 10.210.0.0/24]"),
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
}
