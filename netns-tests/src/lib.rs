//! The network-namespace lab: throwaway namespaces for tests that need a kernel.
//!
//! Every namespace is named `oqsedge-<test pid>-<name>`, so a later run can tell its own from
//! the leftovers of a killed run (whose pid is gone) and sweep those. Namespaces are deleted
//! when their guard drops, on panic too. Nothing here touches the host namespace's network.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

pub mod ipsec;
pub mod lab;
pub mod pki;
pub mod wan;
pub mod wireguard;

pub use lab::{Capture, DnsServer, Lab, Outcome, Role};

const PREFIX: &str = "oqsedge-";

/// Whether this process may create namespaces; tests print why they skip when not.
pub fn skip_unless_root(test: &str) -> bool {
    // SAFETY-free check: root has uid 0 in /proc/self/status.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("SKIP {test}: needs root to create network namespaces (run the tests as root)");
    }
    !root
}

/// Delete namespaces left by runs whose process is gone.
pub fn sweep_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_left_in(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    // Files `ip netns exec` mounts into a namespace (see wireguard::EtcOverride).
    for entry in std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A network namespace this test owns.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        sweep_leftovers();
        let name = format!("{PREFIX}{}-{name}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip netns add {name} failed");
        Netns { name }
    }

    /// Run a command inside the namespace, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ip netns exec");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{:?} in {} failed: {}",
            args,
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_left_in(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// SIGKILL what still runs in a namespace of ours once its test has stopped what it started:
/// only descendants of those are left (e.g. helpers a killed dhcpcd orphaned), and a namespace
/// is not freed while a process holds it.
fn kill_left_in(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill")
            .args(["-s", "KILL", pid])
            .stderr(Stdio::null())
            .status();
    }
}

/// `nft -j list` output without handles, which differ between two loads of the same rules.
pub fn listing_without_handles(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).expect("nft -j output is JSON");
    if let Some(items) = v["nftables"].as_array_mut() {
        items.retain(|i| i.get("metainfo").is_none());
        for item in items.iter_mut() {
            if let Some(obj) = item
                .as_object_mut()
                .and_then(|o| o.values_mut().next())
                .and_then(|o| o.as_object_mut())
            {
                obj.remove("handle");
            }
        }
    }
    v
}

/// The real `oqs-edge` binary, built from this workspace (once per test process);
/// `OQS_EDGE_BIN` names another.
/// A child process (a daemon a test started outside a [`Lab`]), killed by its PID and reaped
/// when the test ends, also when it panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn oqs_edge_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    workspace_bin(&BUILD, "OQS_EDGE_BIN", "oqs-edge", "oqs-edge")
}

/// `lab-peer` (src/bin/lab-peer.rs), the lab's probe and server; `LAB_PEER_BIN` names another.
pub fn lab_peer_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    workspace_bin(&BUILD, "LAB_PEER_BIN", "netns-tests", "lab-peer")
}

/// A binary of this workspace: the override from `env` if set, else built with cargo once.
fn workspace_bin(once: &Once, env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return path.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    once.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", package, "--bin", bin])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {bin} failed");
    });
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    target.join("debug").join(bin)
}

/// Whether a process we started has ended (a zombie counts as ended: PID 1 here may reap late).
pub fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Send a signal (by name: `HUP`, `TERM`, `KILL`) to a process the test started, by its PID.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// A process's resident memory (VmRSS, kB); 0 when it is gone.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Poll `condition` every 50 ms for up to `seconds`; readiness, not a sleep.
pub fn wait_for(seconds: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    condition()
}
