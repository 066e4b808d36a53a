//! The DHCP server: dnsmasq, run and kept running by the daemon, with the config `plan`
//! rendered.
//!
//! dnsmasq runs in the foreground as the daemon's child, with its lease file in the state
//! directory (so leases survive a restart of either). A task waits on it and starts it again
//! a second after it dies. A changed config (a reload that touches DHCP) restarts it; an
//! unchanged one leaves it alone. The child is told to die with the daemon (PDEATHSIG), and a
//! dnsmasq left by a killed daemon is found by its pid file and stopped before a new start,
//! so two servers never answer on one segment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use log::{error, info};
use tokio::task::JoinHandle;

use crate::apply::child::{self, ChildSpec, Shared};
use crate::logging::event;
use crate::plan::lan::DhcpPlan;
use crate::status::{DhcpHostInfo, DhcpInfo};

/// The dnsmasq binary (Debian `dnsmasq-base`); `OQS_EDGE_DNSMASQ` overrides it for tests.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

pub const CONF_FILE: &str = "dnsmasq.conf";
pub const LEASE_FILE: &str = "dnsmasq.leases";
const PID_FILE: &str = "dnsmasq.pid";

struct Running {
    conf: String,
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

/// The DHCP applier.
#[derive(Default)]
pub struct Dhcp {
    running: Option<Running>,
    state_dir: PathBuf,
}

impl Dhcp {
    /// Make the server match the plan: start it, restart it with a changed config, stop it
    /// when no segment serves DHCP any more.
    pub async fn apply(&mut self, plan: Option<&DhcpPlan>, state_dir: &Path) {
        self.state_dir = state_dir.to_owned();
        let wanted = plan.map(|p| p.dnsmasq_conf.as_str());
        if let (Some(running), Some(conf)) = (&self.running, wanted) {
            if running.conf == conf && !running.task.is_finished() {
                return;
            }
        }
        if let Some(running) = self.running.take() {
            running.task.abort();
            let _ = running.task.await;
            if wanted.is_none() {
                info!(oqs_event = event::DHCP; "DHCP server stopped: no segment has a dhcp section");
            }
        }
        let Some(conf) = wanted else {
            return;
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        child::stop_leftover(&state_dir.join(PID_FILE), "dnsmasq", event::DHCP);
        let conf_path = state_dir.join(CONF_FILE);
        if let Err(e) = crate::files::write_atomically(&conf_path, conf.as_bytes(), 0o644) {
            error!(oqs_event = event::DHCP; "DHCP server not started: cannot write {}: {e}", conf_path.display());
            child::set_problem(
                &shared,
                Some(format!("cannot write {}: {e}", conf_path.display())),
            );
        }
        let task = tokio::spawn(child::supervise(dnsmasq(state_dir), shared.clone()));
        self.running = Some(Running {
            conf: conf.to_owned(),
            task,
            shared,
        });
    }

    /// What is wrong with the DHCP server, in plain words.
    pub fn problem(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        let shared = running.shared.lock().ok()?;
        shared
            .problem
            .as_ref()
            .map(|why| format!("the DHCP server (dnsmasq) is not running: {why}"))
    }

    /// Per segment: the leases in use and the fixed hosts with theirs.
    pub fn info(&self, plan: Option<&DhcpPlan>) -> Vec<DhcpInfo> {
        let Some(plan) = plan else {
            return Vec::new();
        };
        let leases = read_leases(&self.state_dir.join(LEASE_FILE));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pid = self.running.as_ref().and_then(|r| child::pid(&r.shared));
        plan.segments
            .iter()
            .map(|seg| {
                let in_segment: Vec<&Lease> = leases
                    .iter()
                    .filter(|l| l.expires == 0 || l.expires > now)
                    .filter(|l| seg.subnet.contains(&l.address))
                    .collect();
                DhcpInfo {
                    segment: seg.segment.clone(),
                    serving: pid.is_some(),
                    leases_in_use: in_segment.len(),
                    hosts: seg
                        .hosts
                        .iter()
                        .map(|h| {
                            let lease = in_segment.iter().find(|l| l.mac == h.mac);
                            DhcpHostInfo {
                                name: h.name.clone(),
                                mac: h.mac.clone(),
                                address: h.address.to_string(),
                                holds_lease: lease
                                    .is_some_and(|l| std::net::IpAddr::V4(l.address) == h.address),
                                lease_expires_in_secs: lease.map(|l| l.expires.saturating_sub(now)),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.task.abort();
        }
    }
}

/// dnsmasq as [`child::supervise`] runs it.
fn dnsmasq(state_dir: &Path) -> ChildSpec {
    let program = std::env::var_os("OQS_EDGE_DNSMASQ").unwrap_or_else(|| DNSMASQ.into());
    ChildSpec {
        name: "dnsmasq",
        role: "DHCP server",
        event: event::DHCP,
        program,
        // `--no-daemon`: in the foreground, and no change of user, group or capabilities,
        // which the unit's system call filter (no @privileged) would refuse; dnsmasq keeps
        // the daemon's already narrowed capabilities. It writes no pid file: we do.
        args: vec![
            "--no-daemon".into(),
            format!("--conf-file={}", state_dir.join(CONF_FILE).display()).into(),
            format!("--dhcp-leasefile={}", state_dir.join(LEASE_FILE).display()).into(),
            "--log-facility=-".into(),
        ],
        pid_file: state_dir.join(PID_FILE),
    }
}

/// One line of dnsmasq's lease file: `EXPIRY MAC ADDRESS NAME CLIENT-ID`.
#[derive(Debug, PartialEq, Eq)]
struct Lease {
    expires: u64,
    mac: String,
    address: std::net::Ipv4Addr,
}

fn read_leases(path: &Path) -> Vec<Lease> {
    std::fs::read_to_string(path)
        .map(|text| parse_leases(&text))
        .unwrap_or_default()
}

fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let expires = fields.next()?.parse().ok()?;
            let mac = fields.next()?.to_ascii_lowercase();
            let address = fields.next()?.parse().ok()?;
            Some(Lease {
                expires,
                mac,
                address,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lines_are_read_and_ipv6_or_broken_ones_skipped() {
        let text = "1764800000 52:54:00:12:34:56 192.168.50.10 oqs-terminal 01:52:54:00:12:34:56\n\
                    1764800100 52:54:00:AA:BB:CC 192.168.50.100 * *\n\
                    duid 00:01:00:01\n\
                    1764800200 1234 fd00::1 * *\n";
        assert_eq!(
            parse_leases(text),
            vec![
                Lease {
                    expires: 1764800000,
                    mac: "52:54:00:12:34:56".into(),
                    address: "192.168.50.10".parse().unwrap()
                },
                Lease {
                    expires: 1764800100,
                    mac: "52:54:00:aa:bb:cc".into(),
                    address: "192.168.50.100".parse().unwrap()
                },
            ]
        );
    }
}
