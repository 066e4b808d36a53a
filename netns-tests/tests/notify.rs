//! sd_notify, as systemd sees it (`Type=notify`, `WatchdogSec=`): the real `oqs-edge run` in its
//! own namespace with our own `NOTIFY_SOCKET` and `WATCHDOG_USEC`. READY=1 comes only once
//! `table inet oqs_edge` is in the kernel (and never when nft refuses it), WATCHDOG=1 while the
//! loop runs, RELOADING=1 … READY=1 around SIGHUP, STOPPING=1 on SIGTERM.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
tunnel:
  type: ip-vpn
  ip_vpn:
    gateway: 198.51.100.1
"#;

/// Our end of NOTIFY_SOCKET: every datagram the daemon sent, in order.
struct Listener {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Listener {
    fn bind(path: &Path) -> Listener {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Listener {
            socket,
            seen: Vec::new(),
        }
    }

    /// Wait up to `seconds` for a datagram with the line `line`; `on_each` sees every new one.
    fn wait_for_line(
        &mut self,
        seconds: u64,
        line: &str,
        mut on_each: impl FnMut(&str),
    ) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                on_each(&message);
                self.seen.push(message.clone());
                if message.lines().any(|l| l == line) {
                    return Some(message);
                }
            }
        }
        None
    }
}

fn spawn(ns: &Netns, dir: &Path, path_env: Option<&Path>) -> Daemon {
    let config = dir.join("config.yaml");
    let socket = dir.join("control.sock");
    std::fs::write(
        &config,
        format!("{CONFIG}control:\n  socket: {}\n", socket.display()),
    )
    .unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &ns.name])
        .arg(oqs_edge_bin())
        .args(["run", "-c", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", dir.join("notify.sock"))
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap());
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    Daemon(command.spawn().unwrap())
}

#[test]
fn ready_only_once_the_firewall_stands_then_watchdog_reload_and_stop() {
    if skip_unless_root("ready_only_once_the_firewall_stands_then_watchdog_reload_and_stop") {
        return;
    }
    let ns = Netns::new("notify");
    let dir = tempfile::tempdir().unwrap();
    let mut listener = Listener::bind(&dir.path().join("notify.sock"));
    let daemon = spawn(&ns, dir.path(), None);
    let pid = daemon.0.id();
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let table = || {
        ns.run(&["nft", "list", "table", "inet", "oqs_edge"], "")
            .status
            .success()
    };

    // Every datagram before READY=1 is looked at: the table must exist by the time READY=1 is
    // read, and nothing before it may claim readiness.
    let ready = listener.wait_for_line(30, "READY=1", |m| {
        if m.lines().any(|l| l == "READY=1") {
            assert!(table(), "READY=1 before table inet oqs_edge exists: {m:?}");
        }
    });
    let ready = ready.unwrap_or_else(|| panic!("no READY=1; daemon log:\n{}", log()));
    // No WAN in this namespace: the STATUS line says so in plain words.
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_default()
        .to_owned();
    assert!(
        status.starts_with("degraded: ") && status.contains("wan0"),
        "STATUS={status}"
    );
    assert!(
        listener.seen[..listener.seen.len() - 1]
            .iter()
            .all(|m| !m.contains("READY=1")),
        "{:?}",
        listener.seen
    );

    // The watchdog: WATCHDOG_USEC=2 s, so the loop comes round every second.
    let start = listener.seen.len();
    assert!(
        listener.wait_for_line(5, "WATCHDOG=1", |_| {}).is_some()
            && listener.wait_for_line(5, "WATCHDOG=1", |_| {}).is_some(),
        "no WATCHDOG=1 pings: {:?}",
        &listener.seen[start..]
    );

    // SIGHUP: RELOADING=1 (with the time systemd ≥ 253 wants), then READY=1 again.
    signal(pid, "HUP");
    let reloading = listener
        .wait_for_line(10, "RELOADING=1", |_| {})
        .unwrap_or_else(|| panic!("no RELOADING=1; log:\n{}", log()));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    assert!(
        listener.wait_for_line(10, "READY=1", |_| {}).is_some(),
        "no READY=1 after the reload: {:?}",
        listener.seen
    );

    // SIGTERM: STOPPING=1, a clean exit, and the firewall stays.
    signal(pid, "TERM");
    assert!(
        listener.wait_for_line(10, "STOPPING=1", |_| {}).is_some(),
        "no STOPPING=1: {:?}",
        listener.seen
    );
    assert!(
        wait_for(10, || process_ended(pid)),
        "the daemon did not exit"
    );
    assert!(table(), "the firewall must stay after SIGTERM");
}

#[test]
fn no_ready_when_nft_refuses_the_firewall() {
    if skip_unless_root("no_ready_when_nft_refuses_the_firewall") {
        return;
    }
    let ns = Netns::new("notify-fail");
    let dir = tempfile::tempdir().unwrap();
    // An nft that refuses everything, first on PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let nft = bin.join("nft");
    std::fs::write(
        &nft,
        "#!/bin/sh\necho 'Error: refused by the test' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());

    let mut listener = Listener::bind(&dir.path().join("notify.sock"));
    let mut daemon = spawn(&ns, dir.path(), Some(Path::new(&path)));
    let code = daemon.0.wait().unwrap().code();
    let _ = listener.wait_for_line(1, "READY=1", |_| {});
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        listener.seen.iter().all(|m| !m.contains("READY=1")),
        "READY=1 without a firewall: {:?}",
        listener.seen
    );
    assert!(log.contains("refused by the test"), "{log}");
}
