//! Safe changes, with the real binary: `reload --confirm` of a change that cuts the admin PC
//! off its SSH port undoes itself at the deadline (file, firewall and history), a confirmed one
//! stays, a pending change survives SIGKILL (rolled back at start after the deadline, or on
//! time when started before it), nothing leaks meanwhile, and `diff` says what a file would
//! change (unchanged, an added closed prefix, a moved WireGuard endpoint, an invalid file).
//!
//! The admin PC is the lab's clinic PC (192.168.60.10); `management.ssh_from` lets it reach a
//! listener on the router's port 22. The daemon runs with `--confirm-min 10s`, so the windows
//! are the issue's own 10 s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns_tests::lab::{leak_filter, Lab, Outcome, Role};
use netns_tests::{
    lab_peer_bin, oqs_edge_bin, process_ended, signal, skip_unless_root, wait_for, KillOnDrop,
    Netns,
};

/// The router's SSH port, where the lab runs a listener.
const SSH: &str = "192.168.60.1:22";
const CONFIRM_MIN: &[&str] = &["--confirm-min", "10s"];
const WINDOW: Duration = Duration::from_secs(10);
/// How long after the deadline the rollback may take to be seen (the issue's bound).
const GRACE: Duration = Duration::from_secs(5);

struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn oqs(config: &Path, args: &[&str]) -> Cli {
    let out = Command::new(oqs_edge_bin())
        .args(args)
        .args(["-c", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Cli {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ssh(lab: &Lab) -> Outcome {
    lab.probe(Role::Clinic, SSH.parse::<SocketAddr>().unwrap())
}

fn history(config: &Path) -> Vec<serde_json::Value> {
    let out = oqs(config, &["history", "--json"]);
    assert_eq!(out.code, Some(0), "history: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn rejected_files(config: &Path) -> Vec<PathBuf> {
    let name = config.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.rejected-"))
        })
        .collect()
}

/// The eligibility PC still cannot reach the internet (rejected, as before).
fn pc_is_kept_off_the_internet(lab: &Lab, phase: &str) {
    assert_eq!(
        lab.probe(Role::Pc, "192.0.2.80:80".parse().unwrap()),
        Outcome::Unreachable,
        "{phase}: pc → internet"
    );
}

/// The lab with the daemon on config/lab.yaml plus SSH for the admin PC, reachable.
/// Returns the lab, the config with SSH and without it, the config path and the daemon's PID.
fn lab_with_ssh(name: &str) -> (Lab, String, String, PathBuf, u32) {
    let lab = Lab::build(name);
    let without = lab.config_from_lab_yaml();
    let with = format!("{without}\nmanagement:\n  ssh_from: [192.168.60.10/32]\n");
    let config = lab.write_config(&with);
    let peer = lab_peer_bin();
    lab.spawn(Role::Router, &[peer.to_str().unwrap(), "serve", SSH]);
    let pid = lab.start_daemon_with(&config, CONFIRM_MIN);
    assert!(
        wait_for(10, || ssh(&lab) == Outcome::Connected),
        "the admin PC does not reach the SSH port with management.ssh_from: {:?}\n{}",
        ssh(&lab),
        lab.daemon_log()
    );
    (lab, with, without, config, pid)
}

/// `reload --confirm 10s` of the config without SSH; returns when it was asked (the deadline
/// is at most 10 s after).
fn cut_off(lab: &Lab, config: &Path, without: &str) -> Instant {
    std::fs::write(config, without).unwrap();
    let asked = Instant::now();
    let out = oqs(config, &["reload", "--confirm", "10s"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("unless `oqs-edge confirm`"),
        "{}",
        out.stdout
    );
    assert_eq!(ssh(lab), Outcome::Timeout, "the change did not cut SSH off");
    asked
}

fn sleep_until(at: Instant) {
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

#[test]
fn an_unconfirmed_change_that_cuts_off_the_admin_rolls_back_in_time() {
    if skip_unless_root("an_unconfirmed_change_that_cuts_off_the_admin_rolls_back_in_time") {
        return;
    }
    let (lab, with, without, config, _pid) = lab_with_ssh("rbk");
    let mac = lab.router_wan_mac();
    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));

    // What the change would do, first: the SSH allow goes.
    std::fs::write(&config, &without).unwrap();
    let diff = oqs(&config, &["diff"]);
    assert_eq!(diff.code, Some(1), "{}{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout.contains("chain input:") && diff.stdout.contains("- iifname @lan_ifs"),
        "{}",
        diff.stdout
    );
    assert!(diff.stdout.contains("dport 22"), "{}", diff.stdout);

    let asked = cut_off(&lab, &config, &without);
    pc_is_kept_off_the_internet(&lab, "pending");

    // Status says it first; one pending change at a time; a plain reload is refused too.
    let status = oqs(&config, &["status"]);
    assert!(
        status.stdout.starts_with("PENDING CHANGE: rolls back to"),
        "{}",
        status.stdout
    );
    let json = oqs(&config, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(json["pending"]["deadline"].is_string(), "{json}");
    let again = oqs(&config, &["reload", "--confirm", "30s"]);
    assert_eq!(again.code, Some(1), "{}", again.stdout);
    assert!(
        again.stderr.contains("another change is pending until"),
        "{}",
        again.stderr
    );
    let plain = oqs(&config, &["reload"]);
    assert_eq!(plain.code, Some(1), "{}", plain.stdout);
    assert!(
        plain
            .stderr
            .contains("a change applied with --confirm is pending until"),
        "{}",
        plain.stderr
    );

    // Nobody confirms: within deadline + 5 s the admin PC is back.
    let back = wait_for((WINDOW + GRACE).as_secs() + 2, || {
        ssh(&lab) == Outcome::Connected
    });
    let took = asked.elapsed();
    assert!(
        back && took <= WINDOW + GRACE,
        "SSH back: {back}, after {took:?}\n{}",
        lab.daemon_log()
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), with);
    let rejected = rejected_files(&config);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(std::fs::read_to_string(&rejected[0]).unwrap(), without);
    let entries = history(&config);
    assert_eq!(entries[0]["how"], "rollback", "{entries:?}");
    assert_eq!(entries[0]["running"], true, "{entries:?}");
    assert_eq!(entries[1]["how"], "reload --confirm", "{entries:?}");
    assert_eq!(entries[1]["uid"], 0, "{entries:?}");
    assert_eq!(entries[2]["how"], "start", "{entries:?}");
    assert_eq!(entries[0]["sha256"], entries[2]["sha256"], "{entries:?}");
    let status = oqs(&config, &["status"]);
    assert!(!status.stdout.contains("PENDING"), "{}", status.stdout);
    assert!(lab.daemon_log().contains("rolling back to"));

    pc_is_kept_off_the_internet(&lab, "rolled back");
    let packets = leaks.stop();
    assert!(
        packets.is_empty(),
        "{} packet(s) leaked across apply and rollback:\n{}",
        packets.len(),
        packets.join("\n")
    );
}

#[test]
fn a_confirmed_change_stays_after_the_deadline() {
    if skip_unless_root("a_confirmed_change_stays_after_the_deadline") {
        return;
    }
    let (lab, _with, without, config, _pid) = lab_with_ssh("cfm");
    let asked = cut_off(&lab, &config, &without);
    let confirm = oqs(&config, &["confirm"]);
    assert_eq!(
        confirm.code,
        Some(0),
        "{}{}",
        confirm.stdout,
        confirm.stderr
    );
    assert!(
        confirm.stdout.contains("confirmed by uid 0"),
        "{}",
        confirm.stdout
    );
    let twice = oqs(&config, &["confirm"]);
    assert_eq!(twice.code, Some(1), "{}", twice.stdout);
    assert!(
        twice.stderr.contains("nothing is pending"),
        "{}",
        twice.stderr
    );

    sleep_until(asked + WINDOW + Duration::from_secs(2));
    assert_eq!(
        ssh(&lab),
        Outcome::Timeout,
        "the confirmed change was undone"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), without);
    assert!(rejected_files(&config).is_empty());
    let entries = history(&config);
    assert_eq!(entries[0]["how"], "confirm", "{entries:?}");
    assert_eq!(entries[0]["uid"], 0, "{entries:?}");
    assert_eq!(entries[0]["running"], true, "{entries:?}");

    // And `rollback` takes it back on request, as one reload.
    let rollback = oqs(&config, &["rollback"]);
    assert_eq!(
        rollback.code,
        Some(0),
        "{}{}",
        rollback.stdout,
        rollback.stderr
    );
    assert!(wait_for(5, || ssh(&lab) == Outcome::Connected));
    assert_eq!(history(&config)[0]["how"], "rollback");

    // `rollback ID` goes to an entry of the history; an unknown one changes nothing.
    let unknown = oqs(&config, &["rollback", "999"]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stdout);
    assert!(
        unknown.stderr.contains("no entry 999"),
        "{}",
        unknown.stderr
    );
    assert_eq!(
        ssh(&lab),
        Outcome::Connected,
        "a refused rollback changed something"
    );
    let confirmed = entries[0]["id"].to_string();
    let back = oqs(&config, &["rollback", &confirmed]);
    assert_eq!(back.code, Some(0), "{}{}", back.stdout, back.stderr);
    assert_eq!(
        ssh(&lab),
        Outcome::Timeout,
        "rollback {confirmed} did not apply it"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), without);
}

#[test]
fn a_pending_change_survives_sigkill_and_rolls_back_at_start_or_on_time() {
    if skip_unless_root("a_pending_change_survives_sigkill_and_rolls_back_at_start_or_on_time") {
        return;
    }
    let (lab, with, without, config, pid) = lab_with_ssh("kill");

    // Killed with a change pending, started again after the deadline: rolled back at start.
    let asked = cut_off(&lab, &config, &without);
    signal(pid, "KILL");
    assert!(wait_for(5, || process_ended(pid)));
    sleep_until(asked + WINDOW + Duration::from_secs(1));
    assert_eq!(
        ssh(&lab),
        Outcome::Timeout,
        "the table stays while no daemon runs"
    );
    let pid = lab.start_daemon_with(&config, CONFIRM_MIN);
    assert!(
        wait_for(10, || ssh(&lab) == Outcome::Connected),
        "not rolled back at start:\n{}",
        lab.daemon_log()
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), with);
    assert!(
        lab.daemon_log().contains("rolling back to"),
        "{}",
        lab.daemon_log()
    );
    let entries = history(&config);
    assert_eq!(entries[0]["how"], "rollback", "{entries:?}");

    // Killed and started again before the deadline: it keeps waiting, then rolls back on time.
    std::fs::write(&config, &without).unwrap();
    let asked = Instant::now();
    let out = oqs(&config, &["reload", "--confirm", "20s"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    signal(pid, "KILL");
    assert!(wait_for(5, || process_ended(pid)));
    lab.start_daemon_with(&config, CONFIRM_MIN);
    assert!(
        wait_for(10, || oqs(&config, &["status"])
            .stdout
            .starts_with("PENDING CHANGE")),
        "the restarted daemon does not say the change is pending:\n{}",
        lab.daemon_log()
    );
    assert_eq!(
        ssh(&lab),
        Outcome::Timeout,
        "rolled back before its deadline"
    );
    let window = Duration::from_secs(20);
    let back = wait_for((window + GRACE).as_secs() + 2, || {
        ssh(&lab) == Outcome::Connected
    });
    let took = asked.elapsed();
    assert!(
        back && took <= window + GRACE,
        "SSH back: {back}, after {took:?}\n{}",
        lab.daemon_log()
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), with);
}

const WIREGUARD: &str = r#"version: 1
site:
  institution_code: "1312345678"
segments:
  - name: oqs
    interface: lan0
    address: 192.168.50.1/24
    role: eligibility
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
tunnel:
  type: wireguard
  wireguard:
    interface: oqs-wg0
    private_key_file: KEY
    address: 10.201.0.2/32
    peer:
      public_key: "PEER"
      endpoint: 203.0.113.2:51820
"#;

fn keygen(out: &Path) -> String {
    let run = Command::new(oqs_edge_bin())
        .args(["wireguard", "keygen", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success());
    String::from_utf8(run.stdout).unwrap().trim().to_owned()
}

#[test]
fn diff_shows_what_a_file_would_change_against_the_running_daemon() {
    if skip_unless_root("diff_shows_what_a_file_would_change_against_the_running_daemon") {
        return;
    }
    let ns = Netns::new("diff");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wg.key");
    keygen(&key);
    let peer = keygen(&dir.path().join("peer.key"));
    let socket = dir.path().join("control.sock");
    let running = format!(
        "{}control:\n  socket: {}\n",
        WIREGUARD
            .replace("KEY", key.to_str().unwrap())
            .replace("PEER", &peer),
        socket.display()
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &running).unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(oqs_edge_bin())
            .args(["run", "-c", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(20, || oqs(&config, &["status"]).code == Some(1)),
        "the daemon did not answer: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Unchanged: exit 0, nothing listed.
    let same = oqs(&config, &["diff"]);
    assert_eq!(same.code, Some(0), "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("no changes"), "{}", same.stdout);

    // One added closed prefix: its rule lines and its route.
    let file = dir.path().join("next.yaml");
    std::fs::write(
        &file,
        running.replace("[10.200.0.0/24]", "[10.200.0.0/24, 10.210.0.0/24]"),
    )
    .unwrap();
    let added = oqs(&file, &["diff", "--socket", socket.to_str().unwrap()]);
    assert_eq!(added.code, Some(1), "{}{}", added.stdout, added.stderr);
    assert!(
        added
            .stdout
            .contains("routes:\n  + 10.210.0.0/24 dev oqs-wg0\n"),
        "{}",
        added.stdout
    );
    assert!(
        added
            .stdout
            .lines()
            .any(|l| l.starts_with("    + ") && l.contains("10.210.0.0/24")),
        "{}",
        added.stdout
    );
    let json = oqs(
        &file,
        &["diff", "--json", "--socket", socket.to_str().unwrap()],
    );
    assert_eq!(json.code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        json["changes"]["routes"]["added"],
        serde_json::json!(["10.210.0.0/24 dev oqs-wg0"])
    );
    assert!(json["changes"]["firewall"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["change"] == "added" && c["line"].as_str().unwrap().contains("10.210.0.0/24")));

    // A moved WireGuard endpoint: the peer is replaced, the interface stays.
    std::fs::write(
        &file,
        running.replace("203.0.113.2:51820", "203.0.113.9:51820"),
    )
    .unwrap();
    let moved = oqs(&file, &["diff", "--socket", socket.to_str().unwrap()]);
    assert_eq!(moved.code, Some(1), "{}{}", moved.stdout, moved.stderr);
    assert!(
        moved
            .stdout
            .contains("tunnel: peer replaced (peer_endpoint)"),
        "{}",
        moved.stdout
    );
    assert!(!moved.stdout.contains("firewall"), "{}", moved.stdout);

    // An invalid file: exit 2 and the check's errors.
    std::fs::write(&file, running.replace("10.200.0.0/24", "10.200.0.0/33")).unwrap();
    let invalid = oqs(&file, &["diff", "--socket", socket.to_str().unwrap()]);
    assert_eq!(
        invalid.code,
        Some(2),
        "{}{}",
        invalid.stdout,
        invalid.stderr
    );
    assert!(
        invalid.stderr.contains(&format!("{}:12:", file.display())),
        "{}",
        invalid.stderr
    );

    // Nothing of this changed the daemon; and with no daemon, exit 3.
    let same = oqs(&config, &["diff"]);
    assert_eq!(same.code, Some(0), "{}", same.stdout);
    drop(daemon);
    let gone = oqs(&config, &["diff"]);
    assert_eq!(gone.code, Some(3), "{}{}", gone.stdout, gone.stderr);
}
