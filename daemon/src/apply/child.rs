//! A helper program the daemon runs and keeps running (dnsmasq on the LAN, dhcpcd on the WAN).
//!
//! The child runs in the foreground, told to die with the daemon (PDEATHSIG); its pid goes to a
//! pid file in the state directory, so one left by a killed daemon is found and stopped before a
//! new start. A task waits on it and starts it again a second after it dies, until the task is
//! aborted (which kills the child).
//!
//! Each child leads a process group of its own, and the whole group is what gets stopped:
//! dhcpcd's privilege-separation helpers ("[privileged proxy]", "[network proxy]") outlive a
//! dhcpcd that died or was killed, ignore SIGTERM once orphaned, and keep the WAN's sockets (and
//! made systemd wait 90 s for them at power-off), so they go with SIGKILL to the group.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use tokio::process::Command;

/// How long after the child dies it is started again.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// What to run, and how to speak of it in the journal.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// The program's name as `/proc/PID/comm` shows it, e.g. `dnsmasq`.
    pub name: &'static str,
    /// What it is to the operator, e.g. `DHCP server`.
    pub role: &'static str,
    /// The journal event of its starts and stops.
    pub event: &'static str,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub pid_file: PathBuf,
}

/// What the supervising task shares with status.
#[derive(Debug, Default)]
pub struct Shared {
    pub pid: Option<u32>,
    pub starts: u64,
    pub problem: Option<String>,
}

pub fn set_problem(shared: &Mutex<Shared>, problem: Option<String>) {
    if let Ok(mut s) = shared.lock() {
        s.problem = problem;
    }
}

/// The running child's pid, if it runs.
pub fn pid(shared: &Mutex<Shared>) -> Option<u32> {
    shared.lock().ok().and_then(|s| s.pid)
}

/// Run the child, and again a second after each exit, until the task is aborted.
pub async fn supervise(spec: ChildSpec, shared: Arc<Mutex<Shared>>) {
    let ChildSpec {
        name,
        role,
        event,
        program,
        args,
        pid_file,
    } = spec;
    loop {
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: pre_exec runs in the forked child before exec; prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                let pid = child.id();
                // Dropped when the child ends or the task is aborted: what is left of its group goes.
                let _group = pid.map(Group);
                if let Some(pid) = pid {
                    let _ = crate::files::write_atomically(
                        &pid_file,
                        format!("{pid}\n").as_bytes(),
                        0o644,
                    );
                }
                if let Ok(mut s) = shared.lock() {
                    s.pid = pid;
                    s.starts += 1;
                    s.problem = None;
                    let again = if s.starts > 1 { " again" } else { "" };
                    info!(oqs_event = event; "{role} ({name}) started{again}, pid {}", pid.unwrap_or(0));
                }
                let status = child.wait().await;
                let why = match status {
                    Ok(status) => format!("{name} exited ({status})"),
                    Err(e) => format!("cannot wait for {name}: {e}"),
                };
                warn!(oqs_event = event; "{role} stopped: {why}; starting it again in {}s", RESTART_DELAY.as_secs());
                if let Ok(mut s) = shared.lock() {
                    s.pid = None;
                    s.problem = Some(why);
                }
            }
            Err(e) => {
                let why = format!("cannot start {}: {e}", program.to_string_lossy());
                error!(oqs_event = event; "{role}: {why}");
                set_problem(&shared, Some(why));
            }
        }
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

/// The process group a child leads (its pgid is its pid): SIGKILL to what is left of it.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0) {
            // ESRCH when the group is already empty: nothing to do.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The processes of group `pgid` and their `comm`, from /proc.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let pgrp = rest.split_whitespace().nth(2)?.parse::<i32>().ok()?;
            (pgrp == pgid).then_some((pid, comm))
        })
        .collect()
}

/// A child a killed daemon left running still holds its ports: stop it and its group, by the
/// pid in its pid file (the group's id), and only when the group still holds the program named
/// `name` (its leader may be gone while its helpers are not).
pub fn stop_leftover(pid_file: &Path, name: &str, event: &str) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pgid) = text.trim().parse::<i32>() else {
        return;
    };
    if pgid <= 1 || !group_members(pgid).iter().any(|(_, comm)| comm == name) {
        return;
    }
    warn!(oqs_event = event; "stopping {name} (process group {pgid}), left by an earlier run");
    let group = nix::unistd::Pid::from_raw(pgid);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if group_members(pgid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
}
