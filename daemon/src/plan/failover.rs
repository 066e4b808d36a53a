//! Which of several gateways carries the tunnel: a pure state machine.
//!
//! Inputs are what the applier observed (a probe through the tunnel passed or failed, the
//! tunnel's own state was lost, the preferred gateway answered while a backup is active) and the
//! time; the output is which gateway should be active and why it changed. No I/O: the applier
//! feeds it and acts on the [`Switch`] it returns.
//!
//! Gateway 0 is the preferred one; the others are backups in order of preference.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A further WireGuard concentrator (`tunnel.wireguard.backup_peers`), same allowed IPs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupPeer {
    pub public_key: String,
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive_secs: Option<u64>,
}

/// A further IPsec gateway (`tunnel.ipsec.remote_address[1..]`): same credentials, its own
/// identity where it differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpsecGateway {
    pub address: String,
    pub remote_id: String,
}

/// The gateways of an IPsec section in order of preference, each with its identity
/// (`remote_id` unless the entry gives its own).
pub fn ipsec_gateways(ipsec: &crate::config::model::Ipsec) -> Vec<IpsecGateway> {
    ipsec
        .remote_address
        .entries()
        .into_iter()
        .map(|e| IpsecGateway {
            address: e.address.value,
            remote_id: e
                .remote_id
                .map_or_else(|| ipsec.remote_id.value.clone(), |id| id.value),
        })
        .collect()
}

/// `tunnel.health`: a TCP connect through the tunnel to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HealthPlan {
    pub target: SocketAddr,
    pub interval_secs: u64,
    pub failures: u32,
    pub failback_after_secs: u64,
}

/// The backup peers of a WireGuard section, for the plan.
pub fn backup_peers(wg: &crate::config::model::WireGuard) -> Vec<BackupPeer> {
    wg.backup_peers
        .iter()
        .map(|p| BackupPeer {
            public_key: p.public_key.to_string(),
            endpoint: p.endpoint.to_string(),
            persistent_keepalive_secs: p.persistent_keepalive.as_ref().map(|k| k.0.as_secs()),
        })
        .collect()
}

/// `tunnel.health`, for the plan.
pub fn health(config: &crate::config::ValidConfig) -> Option<HealthPlan> {
    config.tunnel.health.as_ref().map(|h| HealthPlan {
        target: h.target.value,
        interval_secs: h.interval.0.as_secs().max(1),
        failures: h.failures.value.max(1),
        failback_after_secs: h.failback_after.0.as_secs(),
    })
}

/// How eagerly to switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failed probes of the active gateway before it is given up.
    pub failures: u32,
    /// How long the preferred gateway must keep answering before traffic moves back to it.
    pub failback_after: Duration,
    /// Fail back by trying the preferred gateway (no separate probe of it).
    pub try_failback: bool,
}

/// What the applier observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A probe through the active gateway's tunnel (TCP connect to `health.target`).
    ActiveProbe { ok: bool },
    /// The active tunnel's own state says it is gone (no handshake for longer than the rekey
    /// time, IKE SA lost): given up at once.
    ActiveLost,
    /// The preferred gateway was probed without moving traffic (while a backup is active).
    PreferredProbe { ok: bool },
    /// Time passed. With `Policy::try_failback`, a backup that has carried the traffic for
    /// `failback_after` gives way to the preferred gateway, which is then judged like any
    /// active one (WireGuard: simply try it, and move on again if it does not answer).
    Tick,
}

/// Why the active gateway changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The previous gateway failed `failures` probes in a row.
    ProbesFailed { from: usize, failures: u32 },
    /// The previous gateway's tunnel was lost.
    TunnelLost { from: usize },
    /// The preferred gateway answered for `failback_after`.
    Failback { from: usize, after: Duration },
    /// A backup carried the traffic for `after`: the preferred gateway is tried again.
    FailbackTry { from: usize, after: Duration },
}

impl Reason {
    /// In plain words, with the gateways' names.
    pub fn describe(&self, names: &[String]) -> String {
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        match self {
            Reason::ProbesFailed { from, failures } => {
                format!("{} failed {failures} health probes in a row", name(*from))
            }
            Reason::TunnelLost { from } => format!("the tunnel to {} was lost", name(*from)),
            Reason::Failback { from, after } => format!(
                "failback from {}: the preferred gateway answered for {}s",
                name(*from),
                after.as_secs()
            ),
            Reason::FailbackTry { from, after } => format!(
                "trying the preferred gateway {} again after {}s on {}",
                name(0),
                after.as_secs(),
                name(*from)
            ),
        }
    }
}

/// A decision: make `to` the active gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    pub to: usize,
    pub reason: Reason,
}

/// The state: which gateway is active, since when, and what is known of the others.
#[derive(Clone, Debug)]
pub struct Failover {
    policy: Policy,
    /// Whether each gateway was last seen failing.
    failed: Vec<bool>,
    active: usize,
    since: Instant,
    consecutive_failures: u32,
    preferred_ok_since: Option<Instant>,
    last: Option<Reason>,
}

impl Failover {
    /// `gateways` is at least 1; gateway 0 starts active.
    pub fn new(gateways: usize, policy: Policy, now: Instant) -> Self {
        Failover {
            policy,
            failed: vec![false; gateways.max(1)],
            active: 0,
            since: now,
            consecutive_failures: 0,
            preferred_ok_since: None,
            last: None,
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn last_reason(&self) -> Option<&Reason> {
        self.last.as_ref()
    }

    pub fn gateways(&self) -> usize {
        self.failed.len()
    }

    /// Whether every gateway was last seen failing (then the tunnel is down, not just degraded).
    pub fn all_failed(&self) -> bool {
        self.failed.iter().all(|f| *f)
    }

    /// The gateways last seen failing.
    pub fn failed(&self) -> Vec<usize> {
        (0..self.failed.len()).filter(|i| self.failed[*i]).collect()
    }

    /// Feed one observation; returns the switch to make, if any.
    pub fn observe(&mut self, now: Instant, observation: Observation) -> Option<Switch> {
        match observation {
            Observation::ActiveProbe { ok: true } => {
                self.consecutive_failures = 0;
                self.failed[self.active] = false;
                if self.active == 0 {
                    self.preferred_ok_since = None;
                }
                None
            }
            Observation::ActiveProbe { ok: false } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures < self.policy.failures.max(1) {
                    return None;
                }
                let from = self.active;
                let failures = self.consecutive_failures;
                self.give_up(now, Reason::ProbesFailed { from, failures })
            }
            Observation::ActiveLost => {
                let from = self.active;
                self.give_up(now, Reason::TunnelLost { from })
            }
            Observation::Tick => {
                let after = now.saturating_duration_since(self.since);
                if !self.policy.try_failback
                    || self.active == 0
                    || after < self.policy.failback_after
                {
                    return None;
                }
                let from = self.active;
                Some(self.switch_to(0, now, Reason::FailbackTry { from, after }))
            }
            Observation::PreferredProbe { ok } => {
                if self.active == 0 {
                    return None;
                }
                if !ok {
                    self.preferred_ok_since = None;
                    self.failed[0] = true;
                    return None;
                }
                let first_ok = *self.preferred_ok_since.get_or_insert(now);
                let after = now.saturating_duration_since(first_ok);
                if after < self.policy.failback_after {
                    return None;
                }
                let from = self.active;
                self.failed[0] = false;
                Some(self.switch_to(0, now, Reason::Failback { from, after }))
            }
        }
    }

    /// The active gateway failed: mark it and move to the next one in order (wrapping, so that
    /// with every gateway down they are all tried in turn). With one gateway, nothing to switch.
    fn give_up(&mut self, now: Instant, reason: Reason) -> Option<Switch> {
        self.failed[self.active] = true;
        self.consecutive_failures = 0;
        let n = self.failed.len();
        if n == 1 {
            return None;
        }
        // The next one not known to be failing, else simply the next one.
        let next = (1..n)
            .map(|k| (self.active + k) % n)
            .find(|i| !self.failed[*i])
            .unwrap_or((self.active + 1) % n);
        Some(self.switch_to(next, now, reason))
    }

    fn switch_to(&mut self, to: usize, now: Instant, reason: Reason) -> Switch {
        self.active = to;
        self.since = now;
        self.consecutive_failures = 0;
        self.preferred_ok_since = None;
        self.last = Some(reason.clone());
        Switch { to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 3,
        failback_after: Duration::from_secs(300),
        try_failback: false,
    };

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    fn probe(ok: bool) -> Observation {
        Observation::ActiveProbe { ok }
    }

    #[test]
    fn stays_on_the_preferred_while_probes_pass_or_fail_fewer_than_failures_times() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        assert_eq!(f.observe(at(t0, 5), probe(false)), None);
        assert_eq!(f.observe(at(t0, 10), probe(false)), None);
        assert_eq!(f.observe(at(t0, 15), probe(true)), None);
        assert_eq!(f.observe(at(t0, 20), probe(false)), None);
        assert_eq!(f.observe(at(t0, 25), probe(false)), None);
        assert_eq!(f.active(), 0);
        assert!(f.failed().is_empty());
    }

    #[test]
    fn fails_over_after_failures_probes_in_a_row() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        f.observe(at(t0, 5), probe(false));
        f.observe(at(t0, 10), probe(false));
        let switch = f.observe(at(t0, 15), probe(false));
        assert_eq!(
            switch,
            Some(Switch {
                to: 1,
                reason: Reason::ProbesFailed {
                    from: 0,
                    failures: 3
                }
            })
        );
        assert_eq!(f.active(), 1);
        assert_eq!(f.since(), at(t0, 15));
        assert_eq!(f.failed(), vec![0]);
        assert!(!f.all_failed());
    }

    #[test]
    fn tunnel_lost_switches_at_once() {
        let t0 = Instant::now();
        let mut f = Failover::new(3, POLICY, t0);
        let s = f.observe(at(t0, 1), Observation::ActiveLost);
        assert_eq!(s.map(|s| s.to), Some(1));
        assert_eq!(f.last_reason(), Some(&Reason::TunnelLost { from: 0 }));
    }

    #[test]
    fn fails_back_only_after_the_preferred_answered_for_failback_after() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        f.observe(at(t0, 0), Observation::ActiveLost);
        assert_eq!(f.active(), 1);
        let pref = |ok| Observation::PreferredProbe { ok };
        assert_eq!(f.observe(at(t0, 10), pref(true)), None);
        assert_eq!(f.observe(at(t0, 200), pref(true)), None);
        // A failure restarts the clock.
        assert_eq!(f.observe(at(t0, 205), pref(false)), None);
        assert_eq!(f.observe(at(t0, 210), pref(true)), None);
        assert_eq!(f.observe(at(t0, 509), pref(true)), None);
        let s = f.observe(at(t0, 510), pref(true));
        assert_eq!(
            s,
            Some(Switch {
                to: 0,
                reason: Reason::Failback {
                    from: 1,
                    after: Duration::from_secs(300)
                }
            })
        );
        assert_eq!(f.active(), 0);
        assert!(f.failed().is_empty());
    }

    #[test]
    fn preferred_probe_while_the_preferred_is_active_is_ignored() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        assert_eq!(
            f.observe(at(t0, 400), Observation::PreferredProbe { ok: true }),
            None
        );
        assert_eq!(f.active(), 0);
    }

    #[test]
    fn both_down_cycles_through_the_gateways_and_names_both() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        f.observe(at(t0, 0), Observation::ActiveLost);
        assert_eq!(f.active(), 1);
        let s = f.observe(at(t0, 1), Observation::ActiveLost);
        assert_eq!(s.map(|s| s.to), Some(0));
        assert!(f.all_failed());
        assert_eq!(f.failed(), vec![0, 1]);
        // Gateway 0 comes back: its probe passes, it is no longer failed.
        f.observe(at(t0, 2), probe(true));
        assert_eq!(f.failed(), vec![1]);
        assert!(!f.all_failed());
    }

    #[test]
    fn skips_a_backup_known_to_be_failing() {
        let t0 = Instant::now();
        let mut f = Failover::new(3, POLICY, t0);
        f.observe(at(t0, 0), Observation::ActiveLost); // 0 -> 1
        f.observe(at(t0, 1), Observation::ActiveLost); // 1 -> 2
        assert_eq!(f.active(), 2);
        // 2 fails: 0 and 1 both failed, so simply the next (0).
        let s = f.observe(at(t0, 2), Observation::ActiveLost);
        assert_eq!(s.map(|s| s.to), Some(0));
    }

    #[test]
    fn a_single_gateway_never_switches() {
        let t0 = Instant::now();
        let mut f = Failover::new(1, POLICY, t0);
        assert_eq!(f.observe(at(t0, 0), Observation::ActiveLost), None);
        assert!(f.all_failed());
        f.observe(at(t0, 1), probe(true));
        assert!(!f.all_failed());
    }

    #[test]
    fn try_failback_moves_back_after_failback_after_and_on_again_if_the_preferred_is_dead() {
        let t0 = Instant::now();
        let policy = Policy {
            try_failback: true,
            ..POLICY
        };
        let mut f = Failover::new(2, policy, t0);
        f.observe(at(t0, 10), Observation::ActiveLost);
        assert_eq!(f.active(), 1);
        assert_eq!(f.observe(at(t0, 309), Observation::Tick), None);
        let s = f.observe(at(t0, 310), Observation::Tick);
        assert_eq!(
            s,
            Some(Switch {
                to: 0,
                reason: Reason::FailbackTry {
                    from: 1,
                    after: Duration::from_secs(300)
                }
            })
        );
        // The preferred does not answer: back to the backup after `failures` probes.
        f.observe(at(t0, 315), probe(false));
        f.observe(at(t0, 320), probe(false));
        let s = f.observe(at(t0, 325), probe(false));
        assert_eq!(s.map(|s| s.to), Some(1));
        // It answers next time: it stays.
        f.observe(at(t0, 625), Observation::Tick);
        assert_eq!(f.active(), 0);
        f.observe(at(t0, 630), probe(true));
        assert_eq!(f.active(), 0);
        assert!(f.failed().is_empty());
        assert_eq!(f.observe(at(t0, 2000), Observation::Tick), None);
    }

    #[test]
    fn tick_without_try_failback_does_nothing() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, POLICY, t0);
        f.observe(at(t0, 0), Observation::ActiveLost);
        assert_eq!(f.observe(at(t0, 10_000), Observation::Tick), None);
        assert_eq!(f.active(), 1);
    }

    #[test]
    fn reasons_read_in_plain_words() {
        let names = vec!["gw-a".to_string(), "gw-b".to_string()];
        let r = Reason::ProbesFailed {
            from: 0,
            failures: 3,
        };
        assert_eq!(r.describe(&names), "gw-a failed 3 health probes in a row");
        assert_eq!(
            Reason::TunnelLost { from: 1 }.describe(&names),
            "the tunnel to gw-b was lost"
        );
    }
}
