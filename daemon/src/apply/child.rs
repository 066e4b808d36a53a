//! A helper program the daemon runs and keeps running (dnsmasq on the LAN, dhcpcd on the WAN).
//!
//! The child runs in the foreground, told to die with the daemon (PDEATHSIG); its pid goes to a
//! pid file in the state directory, so one left by a killed daemon is found and stopped before a
//! new start. A task waits on it and starts it again a second after it dies, until the task is
//! aborted (which kills the child: `kill_on_drop`).
//!
//! Each child leads a process group of its own, and when it exits or its task is aborted the
//! whole group is killed: dhcpcd's privilege-separation helpers (network and privileged
//! proxies, BPF ARP) are its children and outlive a killed dhcpcd otherwise, holding raw
//! sockets on the WAN.

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
                // Declared after `child`, so dropped first: the group goes with the task.
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
                // Whatever it left behind goes with it.
                if let Some(pid) = pid {
                    kill_group(pid);
                }
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

/// The process group a child leads (its pid), killed when dropped.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// SIGKILL to the process group `pgid` (a child's pid: it leads its own group). A group with
/// no process left is not an error; its number is not reused while any member lives.
fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        if pgid > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A child a killed daemon left running still holds its ports: stop it, by the pid in its pid
/// file, and only when that pid is still the program named `name`.
pub fn stop_leftover(pid_file: &Path, name: &str, event: &str) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let is_it =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name);
    if is_it {
        warn!(oqs_event = event; "stopping {name} pid {pid}, left by an earlier run");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // And what it left in its group (it led one: see `supervise`).
        if nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
            .map_or(true, |g| g.as_raw() == pid)
        {
            if let Ok(pid) = u32::try_from(pid) {
                kill_group(pid);
            }
        }
    }
}
