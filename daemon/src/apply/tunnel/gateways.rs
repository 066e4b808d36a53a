//! Two (or more) gateways: which one the tunnel uses (issue 21), for WireGuard's concentrators
//! and IPsec's gateways alike.
//!
//! The decision is `plan::failover::Failover`'s; this shell feeds it (a TCP connect through
//! the tunnel to `health.target`, or without health the tunnel's own state, judged by the
//! caller) and reports it. Each tunnel keeps one gateway at a time and acts on a switch itself
//! (WireGuard replaces the peer on the running interface, IPsec loads its connection again
//! with the next gateway), so the interface, the routes and the kill switch stay as they are
//! and nothing leaks while the new gateway is reached. Failback: where the tunnel can probe the
//! preferred gateway without moving traffic (IPsec: an IKE_SA of its own), traffic moves back
//! once it has passed that probe for `failback_after`; otherwise (WireGuard, or no `health`)
//! the preferred one is tried and left again if it does not answer (`Policy::try_failback`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::plan::failover::{Failover, HealthPlan, Observation, Policy, Switch};
use crate::status::GatewayInfo;

/// The longest a probe waits for the TCP handshake.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A probe of the preferred gateway that moves no traffic, run while a backup is active.
pub type PreferredProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// A probe's result, from the probe tasks to [`Gateways::probed`].
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// Through the active gateway's tunnel (`health.target`).
    Active { started: Instant, ok: bool },
    /// The preferred gateway, by the tunnel's own probe.
    Preferred { started: Instant, ok: bool },
}

pub struct Gateways {
    /// The gateways' names for status and the journal: 0 is the preferred one, then the
    /// backups in order.
    names: Vec<String>,
    health: Option<HealthPlan>,
    machine: Failover,
    since_wall: SystemTime,
    /// Results of the probe tasks (`health`).
    probes: Option<tokio::sync::mpsc::Receiver<Probe>>,
    probers: Vec<tokio::task::JoinHandle<()>>,
    /// The active gateway, for the preferred gateway's probe task.
    shared_active: Arc<AtomicUsize>,
    switches: u64,
}

impl Drop for Gateways {
    fn drop(&mut self) {
        for task in self.probers.drain(..) {
            task.abort();
        }
    }
}

impl Gateways {
    /// `lost_after`: without a probe, how long the tunnel may be down before its gateway is
    /// given up; also how long a backup serves before the preferred gateway is tried again.
    /// `preferred`: the tunnel's probe of the preferred gateway that moves no traffic, if it
    /// has one (used with `health`).
    pub fn new(
        names: Vec<String>,
        health: Option<HealthPlan>,
        lost_after: Duration,
        preferred: Option<PreferredProbe>,
    ) -> Gateways {
        let policy = match health {
            Some(h) => Policy {
                failures: h.failures,
                failback_after: Duration::from_secs(h.failback_after_secs),
                try_failback: preferred.is_none(),
            },
            // Without a probe: the tunnel's own state.
            None => Policy {
                failures: 1,
                failback_after: lost_after,
                try_failback: true,
            },
        };
        let shared_active = Arc::new(AtomicUsize::new(0));
        // The probes run on their own tasks, paced by `interval` and not by the watch: a
        // switch is decided as soon as the last of `failures` probes fails.
        let mut probers = Vec::new();
        let probes = match (health, tokio::runtime::Handle::try_current()) {
            (Some(h), Ok(runtime)) if names.len() > 1 => {
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                let every = Duration::from_secs(h.interval_secs.max(1));
                let active_tx = tx.clone();
                probers.push(runtime.spawn(async move {
                    loop {
                        let started = Instant::now();
                        let ok = probe(h.target, h.interval_secs).await;
                        if active_tx.send(Probe::Active { started, ok }).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
                    }
                }));
                if let Some(preferred) = preferred {
                    let active = shared_active.clone();
                    probers.push(runtime.spawn(async move {
                        loop {
                            let started = Instant::now();
                            if active.load(Ordering::Relaxed) != 0 {
                                let ok = preferred().await;
                                if tx.send(Probe::Preferred { started, ok }).await.is_err() {
                                    break;
                                }
                            }
                            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
                        }
                    }));
                }
                Some(rx)
            }
            _ => None,
        };
        Gateways {
            machine: Failover::new(names.len(), policy, Instant::now()),
            names,
            health,
            since_wall: SystemTime::now(),
            probes,
            probers,
            shared_active,
            switches: 0,
        }
    }

    /// The active gateway's index: 0 is the preferred one.
    pub fn active(&self) -> usize {
        self.machine.active()
    }

    /// When the active gateway became active.
    pub fn active_since(&self) -> Instant {
        self.machine.since()
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// One step of the watch: observe the active gateway and maybe decide a switch. `lost`:
    /// the tunnel's own state says the active gateway is gone (used only without a probe).
    pub fn step(&mut self, lost: bool) -> Option<(Switch, String)> {
        if self.names.len() < 2 {
            return None;
        }
        let now = Instant::now();
        let observation = match self.health {
            // The probe task's results come through `probed`.
            Some(_) => None,
            None => lost.then_some(Observation::ActiveLost),
        };
        let switch = match observation {
            Some(o) => self.machine.observe(now, o),
            None => None,
        }
        .or_else(|| self.machine.observe(now, Observation::Tick))?;
        Some(self.switched(switch))
    }

    /// The next probe result (never, without `health`).
    pub async fn next_probe(&mut self) -> Probe {
        match &mut self.probes {
            Some(rx) => match rx.recv().await {
                Some(result) => result,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// A probe result: a probe started before the last switch says nothing of the gateways
    /// as they are now.
    pub fn probed(&mut self, probe: Probe) -> Option<(Switch, String)> {
        let (started, observation) = match probe {
            Probe::Active { started, ok } => (started, Observation::ActiveProbe { ok }),
            Probe::Preferred { started, ok } => (started, Observation::PreferredProbe { ok }),
        };
        if self.names.len() < 2 || started < self.machine.since() {
            return None;
        }
        let switch = self.machine.observe(Instant::now(), observation)?;
        Some(self.switched(switch))
    }

    fn switched(&mut self, switch: Switch) -> (Switch, String) {
        self.shared_active.store(switch.to, Ordering::Relaxed);
        self.since_wall = SystemTime::now();
        self.switches += 1;
        let why = switch.reason.describe(&self.names());
        (switch, why)
    }

    pub fn info(&self) -> Option<GatewayInfo> {
        if self.names.len() < 2 {
            return None;
        }
        let names = self.names();
        Some(GatewayInfo {
            active: names.get(self.active()).cloned().unwrap_or_default(),
            active_index: self.active(),
            since: humantime::format_rfc3339_seconds(self.since_wall).to_string(),
            last_switch: self.machine.last_reason().map(|r| r.describe(&names)),
            switches: self.switches,
            failed: self
                .machine
                .failed()
                .into_iter()
                .filter_map(|i| names.get(i).cloned())
                .collect(),
            gateways: names,
        })
    }
}

/// A TCP connect to `target` through the tunnel (the routes send the closed prefixes there).
async fn probe(target: SocketAddr, interval_secs: u64) -> bool {
    let wait = PROBE_TIMEOUT.min(Duration::from_secs(interval_secs.max(1)));
    matches!(
        tokio::time::timeout(wait, tokio::net::TcpStream::connect(target)).await,
        Ok(Ok(_))
    )
}
