//! The WAN's addressing: dhcpcd, run and kept running by the daemon when `wan.ipv4: dhcp` or
//! `wan.ipv6: ra`, with the config `plan` rendered; the static addresses and default routes go
//! with the segments' addresses and the routes (see [`crate::plan::wan`]).
//!
//! dhcpcd configures the WAN itself (addresses, default routes) and runs no hook of the host's:
//! its script is ours, [`HOOK_FILE`], which only records each lease event as a file in the state
//! directory. The daemon reads those for `status` and writes the journal events (lease gained,
//! renewed, lost), and the DNS relay takes the line's resolvers from them.

mod lease;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use tokio::task::JoinHandle;

use crate::apply::child::{self, ChildSpec, Shared};
use crate::logging::event;
use crate::plan::wan::WanPlan;
use crate::status::WanInfo;
pub use lease::{Lease, LeaseKind};

/// The dhcpcd binary (Debian `dhcpcd-base`); `OQS_EDGE_DHCPCD` overrides it for tests.
const DHCPCD: &str = "/usr/sbin/dhcpcd";
pub const CONF_FILE: &str = "dhcpcd.conf";
pub const HOOK_FILE: &str = "dhcpcd-hook";
const PID_FILE: &str = "dhcpcd.pid";
/// How long a stopping dhcpcd gets to leave (it keeps the addresses: `persistent`).
const STOP_GRACE: Duration = Duration::from_secs(3);

struct Running {
    conf: String,
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

/// The WAN applier.
#[derive(Default)]
pub struct Wan {
    running: Option<Running>,
    state_dir: PathBuf,
    /// The leases as last seen, for the journal's gained/renewed/lost events.
    seen: Vec<Lease>,
}

impl Wan {
    /// Make dhcpcd match the plan: start it, restart it with a changed config, stop it when the
    /// WAN no longer needs it. Then note what changed in the leases; true when the WAN's leased
    /// addresses did (the tunnel must follow).
    pub async fn apply(&mut self, plan: &WanPlan, state_dir: &Path) -> bool {
        self.state_dir = state_dir.to_owned();
        let wanted = plan.dhcpcd_conf.as_deref();
        let unchanged = matches!((&self.running, wanted), (Some(r), Some(conf)) if r.conf == conf && !r.task.is_finished());
        if !unchanged {
            if let Some(running) = self.running.take() {
                stop(running).await;
                if wanted.is_none() {
                    info!(oqs_event = event::WAN; "DHCP client on the WAN stopped: wan.ipv4 and wan.ipv6 no longer need it");
                }
            }
            if let Some(conf) = wanted {
                self.running = Some(start(conf, &plan.interface, state_dir));
            }
        }
        self.follow_leases(plan)
    }

    /// Journal events for each lease that appeared, was renewed or went.
    fn follow_leases(&mut self, plan: &WanPlan) -> bool {
        if !plan.runs_dhcpcd() {
            self.seen.clear();
            return false;
        }
        let now = lease::read_all(&self.state_dir);
        let held = |leases: &[Lease]| -> Vec<Option<String>> {
            leases
                .iter()
                .filter(|l| l.held())
                .map(|l| l.address.clone())
                .collect()
        };
        let moved = held(&self.seen) != held(&now);
        for lease in &now {
            let before = self.seen.iter().find(|l| l.kind == lease.kind);
            match (before, lease.held()) {
                (Some(b), true)
                    if b.held()
                        && b.address == lease.address
                        && b.reason == lease.reason
                        && b.written == lease.written => {}
                // Router advertisements repeat every few minutes: only their coming and going.
                (Some(b), true)
                    if b.held() && b.address == lease.address && lease.kind == LeaseKind::Ra => {}
                (Some(b), true) if b.held() && b.address == lease.address => {
                    info!(oqs_event = event::WAN_LEASE; "WAN {}: lease renewed, {} ({})", lease.kind, lease.address_text(), lease.reason);
                }
                (_, true) => {
                    info!(oqs_event = event::WAN_LEASE; "WAN {}: lease gained, {} ({}){}", lease.kind, lease.address_text(), lease.reason, lease.lease_text());
                }
                (Some(b), false) if b.held() => {
                    warn!(oqs_event = event::WAN_LEASE; "WAN {}: lease lost ({}), was {}", lease.kind, lease.reason, b.address_text());
                }
                _ => {}
            }
        }
        self.seen = now;
        moved
    }

    /// The WAN addresses the leases last followed hold (the tunnel initiates from these).
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.seen
            .iter()
            .filter(|l| l.held())
            .filter_map(|l| l.address.as_deref())
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect()
    }

    /// Whether dhcpcd recorded a lease event not yet followed (cheap: three small files).
    pub fn changed(&self) -> bool {
        self.running.is_some() && lease::read_all(&self.state_dir) != self.seen
    }

    /// What is wrong on the WAN side, in plain words.
    pub fn problems(&self, plan: &WanPlan) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(why) = self
            .running
            .as_ref()
            .and_then(|r| r.shared.lock().ok().and_then(|s| s.problem.clone()))
        {
            problems.push(format!(
                "the WAN's DHCP client (dhcpcd) is not running: {why}"
            ));
        }
        problems.extend(self.info(plan).problems);
        problems
    }

    /// The WAN as `status` shows it.
    pub fn info(&self, plan: &WanPlan) -> WanInfo {
        let leases = if plan.runs_dhcpcd() {
            lease::read_all(&self.state_dir)
        } else {
            Vec::new()
        };
        let pid = self.running.as_ref().and_then(|r| child::pid(&r.shared));
        lease::wan_info(plan, &leases, pid)
    }

    /// The line's resolvers: the static ones, else those dhcpcd learnt (DHCPv4, DHCPv6, RA).
    pub fn resolvers(&self, plan: &WanPlan) -> Vec<std::net::IpAddr> {
        self.info(plan)
            .resolvers
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.task.abort();
        }
    }
}

fn start(conf: &str, interface: &str, state_dir: &Path) -> Running {
    let shared = Arc::new(Mutex::new(Shared::default()));
    child::stop_leftover(&state_dir.join(PID_FILE), "dhcpcd", event::WAN);
    let conf_path = state_dir.join(CONF_FILE);
    let hook_path = state_dir.join(HOOK_FILE);
    let written = crate::files::write_atomically(&conf_path, conf.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))
        .and_then(|()| {
            crate::files::write_atomically(
                &hook_path,
                lease::hook_script(state_dir, interface).as_bytes(),
                0o755,
            )
            .map_err(|e| format!("cannot write {}: {e}", hook_path.display()))
        });
    if let Err(why) = written {
        error!(oqs_event = event::WAN; "DHCP client on the WAN not started: {why}");
        child::set_problem(&shared, Some(why));
    }
    let program = std::env::var_os("OQS_EDGE_DHCPCD").unwrap_or_else(|| DHCPCD.into());
    let spec = ChildSpec {
        name: "dhcpcd",
        role: "DHCP client on the WAN",
        event: event::WAN,
        program,
        // `-B`: in the foreground; `-f`: only our config; `-c`: only our hook (it touches
        // nothing on the host); the interface: the WAN only.
        args: vec![
            "-B".into(),
            "-f".into(),
            conf_path.into_os_string(),
            "-c".into(),
            hook_path.into_os_string(),
            interface.into(),
        ],
        pid_file: state_dir.join(PID_FILE),
    };
    let task = tokio::spawn(child::supervise(spec, shared.clone()));
    Running {
        conf: conf.to_owned(),
        task,
        shared,
    }
}

/// Stop dhcpcd gently (SIGTERM: it leaves the addresses, `persistent`), then the task.
async fn stop(running: Running) {
    if let Some(pid) = child::pid(&running.shared) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while tokio::time::Instant::now() < deadline
                && child::pid(&running.shared).is_some()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    running.task.abort();
    let _ = running.task.await;
}
