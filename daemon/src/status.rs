//! The daemon's state as the operator sees it: the appliers fill it in, the readers (the
//! control socket's `status`, sd_notify's STATUS= line) read it.
//!
//! It stands below the appliers and the operator's side, so an applier reports its state
//! without knowing who asks, and a new reader needs nothing but this module.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The daemon's state as `status --json` prints it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// `healthy` or `degraded`.
    pub health: Health,
    /// What is wrong, in plain words, most important first; empty when healthy.
    pub problems: Vec<String>,
    pub daemon: DaemonInfo,
    pub config: ConfigInfo,
    pub firewall: FirewallInfo,
    pub routes: Vec<RouteInfo>,
    pub tunnel: TunnelInfo,
    pub certificates: Vec<CertificateInfo>,
    pub proxy: ProxyInfo,
    /// A `reload --confirm` change that is rolled back unless confirmed (shown first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingInfo>,
}

/// A change applied with `reload --confirm`, waiting for `oqs-edge confirm`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PendingInfo {
    /// When it is rolled back, RFC 3339.
    pub deadline: String,
    pub secs_left: u64,
    /// sha256 of the config it goes back to.
    pub previous_digest: String,
    /// Who applied it (the control socket's peer uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

impl PendingInfo {
    /// One line, for `status` and sd_notify's STATUS=.
    pub fn line(&self) -> String {
        format!(
            "PENDING CHANGE: rolls back to {} at {} ({}s left) unless `oqs-edge confirm`",
            self.previous_digest.get(..12).unwrap_or_default(),
            self.deadline,
            self.secs_left
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Healthy,
    Degraded,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// The file the running config came from.
    pub path: PathBuf,
    /// sha256 of the running config's bytes.
    pub digest: String,
    /// The file has been edited since it was applied (`oqs-edge reload` applies it).
    #[serde(default)]
    pub file_changed: bool,
    /// The last reload, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadOutcome>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// `applied`, `unchanged`, `refused` (invalid config) or `failed` (could not apply).
    pub result: String,
    pub message: String,
    pub secs_ago: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FirewallInfo {
    /// The planned table is in the kernel now.
    pub applied: bool,
    pub table: String,
    /// Where the applied ruleset is saved for the early-boot unit.
    pub saved_to: PathBuf,
    /// Named counters: what was blocked (or passed) and how often.
    pub counters: std::collections::BTreeMap<String, CounterValue>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RouteInfo {
    pub route: String,
    pub installed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// `ip-vpn`, `wireguard` or `ipsec`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `up`, `down` or `connecting`.
    pub state: String,
    /// What the state rests on, in plain words.
    pub detail: String,
    /// With more than one gateway: which one carries the traffic (issue 21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayInfo>,
}

/// Which of several gateways is active, since when and why (issue 21). Metrics export
/// `active_index` (0 = preferred) and `switches`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The gateways in order of preference (endpoint or address).
    pub gateways: Vec<String>,
    /// The active one's name.
    pub active: String,
    /// Its place in `gateways`: 0 is the preferred one.
    pub active_index: usize,
    /// When it became active, RFC 3339.
    pub since: String,
    /// Why the last switch happened, in plain words; none before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switch: Option<String>,
    /// Switches since the daemon started.
    pub switches: u64,
    /// The gateways last seen failing.
    pub failed: Vec<String>,
}

impl GatewayInfo {
    /// One line for `status`: the active gateway, since when, why the last switch.
    pub fn line(&self) -> String {
        let role = if self.active_index == 0 {
            "preferred"
        } else {
            "backup"
        };
        let mut line = format!(
            "gateway   {} ({role}, {} of {}) since {}",
            self.active,
            self.active_index + 1,
            self.gateways.len(),
            self.since
        );
        if let Some(why) = &self.last_switch {
            line.push_str(&format!("; last switch: {why}"));
        }
        line
    }

    /// A backup in use, or every gateway failing, is a problem the installer should see.
    pub fn problem(&self) -> Option<String> {
        if !self.gateways.is_empty() && self.failed.len() == self.gateways.len() {
            return Some(format!(
                "every gateway is failing: {}",
                self.failed.join(", ")
            ));
        }
        if self.active_index == 0 {
            return None;
        }
        Some(format!(
            "backup gateway {} in use since {}: {}",
            self.active,
            self.since,
            self.last_switch
                .as_deref()
                .unwrap_or("the preferred gateway failed")
        ))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// The subject CN (the 医療機関等コード for a 電子証明書).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_cn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    /// Why it cannot be used, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub routes: Vec<ProxyRouteInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProxyRouteInfo {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    /// Accepting connections now.
    #[serde(default)]
    pub listening: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// LAN connections accepted since start.
    #[serde(default)]
    pub connections: u64,
    /// LAN connections open now.
    #[serde(default)]
    pub open: u64,
    /// LAN connections refused: source not in `allow`, or over a connection limit.
    #[serde(default)]
    pub refused: u64,
    #[serde(default)]
    pub requests: u64,
    /// Upstream TLS handshakes (full and resumed).
    #[serde(default)]
    pub upstream_handshakes: u64,
    #[serde(default)]
    pub upstream_resumed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upstream_error: Option<String>,
}

/// A firewall counter's value, read from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

impl Status {
    /// What `oqs-edge status` prints: the verdict and the problems first, then the parts.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Some(pending) = &self.pending {
            let _ = writeln!(out, "{}\n", pending.line());
        }
        match self.health {
            Health::Healthy => out.push_str("oqs-edge: healthy\n"),
            Health::Degraded => {
                let _ = writeln!(out, "oqs-edge: DEGRADED");
                for problem in &self.problems {
                    let _ = writeln!(out, "  ✗ {problem}");
                }
            }
        }
        out.push('\n');
        let t = &self.tunnel;
        let _ = writeln!(out, "tunnel    {}: {} ({})", t.kind, t.state, t.detail);
        if let Some(g) = &t.gateway {
            let _ = writeln!(out, "{}", g.line());
        }
        let f = &self.firewall;
        let _ = writeln!(
            out,
            "firewall  {}: table {} (saved to {})",
            if f.applied { "applied" } else { "NOT APPLIED" },
            f.table,
            f.saved_to.display()
        );
        for (i, r) in self.routes.iter().enumerate() {
            let label = if i == 0 { "routes" } else { "" };
            let state = match &r.problem {
                None => "installed".to_owned(),
                Some(why) => format!("NOT INSTALLED: {why}"),
            };
            let _ = writeln!(out, "{label:<9} {} ({state})", r.route);
        }
        let c = &self.config;
        let _ = write!(
            out,
            "config    {} (sha256 {})",
            c.path.display(),
            c.digest.get(..12).unwrap_or_default()
        );
        if let Some(r) = &c.last_reload {
            let _ = write!(out, "; last reload {} {}s ago", r.result, r.secs_ago);
        }
        if c.file_changed {
            out.push_str("; the file has changed since: `oqs-edge reload` applies it");
        }
        out.push('\n');
        for (i, r) in self.proxy.routes.iter().enumerate() {
            let label = if i == 0 { "proxy" } else { "" };
            let state = match &r.problem {
                Some(why) => format!("NOT SERVING: {why}"),
                None => format!(
                    "{} requests, {} connections ({} open, {} refused), {} upstream handshakes ({} resumed)",
                    r.requests, r.connections, r.open, r.refused, r.upstream_handshakes, r.upstream_resumed
                ),
            };
            let _ = writeln!(
                out,
                "{label:<9} {} {} -> {}: {state}",
                r.name, r.listen, r.upstream
            );
            if let Some(e) = &r.last_upstream_error {
                let _ = writeln!(out, "{:<9}   last upstream error: {e}", "");
            }
        }
        for (i, c) in self.certificates.iter().enumerate() {
            let label = if i == 0 { "cert" } else { "" };
            let state = match (&c.problem, c.days_left) {
                (Some(why), _) => format!("UNUSABLE: {why}"),
                (None, Some(days)) => format!(
                    "CN {} valid until {} ({days} days left)",
                    c.subject_cn.as_deref().unwrap_or("(none)"),
                    c.not_after.as_deref().unwrap_or("?")
                ),
                (None, None) => "not loaded".to_owned(),
            };
            let _ = writeln!(out, "{label:<9} {} {state}", c.name);
        }
        let d = &self.daemon;
        let _ = writeln!(
            out,
            "daemon    pid {}, up {}, version {}",
            d.pid,
            humantime::format_duration(Duration::from_secs(d.uptime_secs)),
            d.version
        );
        out.push_str("\ncounters (packets since the table was applied)\n");
        for counter in crate::plan::firewall::COUNTERS {
            if let Some(value) = f.counters.get(counter.name) {
                let _ = writeln!(out, "  {:>8}  {}", value.packets, counter.comment);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degraded_status_says_what_is_wrong_first_and_counts_in_words() {
        let mut status = Status {
            health: Health::Degraded,
            problems: vec!["tunnel (ip-vpn) is down: the WAN interface wan0 is down".into()],
            ..Status::default()
        };
        status.config.file_changed = true;
        status.firewall.counters.insert(
            "eligibility_to_internet".into(),
            CounterValue {
                packets: 3,
                bytes: 180,
            },
        );
        let text = status.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "oqs-edge: DEGRADED");
        assert_eq!(
            lines[1],
            "  ✗ tunnel (ip-vpn) is down: the WAN interface wan0 is down"
        );
        assert!(text.contains("the file has changed since: `oqs-edge reload` applies it"));
        assert!(text.contains("       3  eligibility PC tried the internet (rejected)"));
        assert!(text.contains("firewall  NOT APPLIED"));
    }

    #[test]
    fn a_backup_gateway_in_use_is_a_problem_and_shows_in_the_text() {
        let gateway = GatewayInfo {
            gateways: vec!["203.0.113.2:51820".into(), "203.0.113.3:51820".into()],
            active: "203.0.113.3:51820".into(),
            active_index: 1,
            since: "2026-12-03T11:00:00Z".into(),
            last_switch: Some("203.0.113.2:51820 failed 3 health probes in a row".into()),
            switches: 1,
            failed: vec!["203.0.113.2:51820".into()],
        };
        let problem = gateway.problem().expect("a backup in use is a problem");
        assert!(problem.starts_with("backup gateway 203.0.113.3:51820 in use since"));
        let status = Status {
            tunnel: TunnelInfo {
                gateway: Some(gateway.clone()),
                ..TunnelInfo::default()
            },
            ..Status::default()
        };
        assert!(status.to_text().contains(
            "gateway   203.0.113.3:51820 (backup, 2 of 2) since 2026-12-03T11:00:00Z; last switch: 203.0.113.2:51820 failed 3 health probes in a row"
        ));
        let both = GatewayInfo {
            failed: gateway.gateways.clone(),
            ..gateway.clone()
        };
        assert_eq!(
            both.problem().as_deref(),
            Some("every gateway is failing: 203.0.113.2:51820, 203.0.113.3:51820")
        );
        let preferred = GatewayInfo {
            active_index: 0,
            failed: Vec::new(),
            ..gateway
        };
        assert_eq!(preferred.problem(), None);
    }

    #[test]
    fn a_pending_change_comes_before_everything_else() {
        let status = Status {
            pending: Some(PendingInfo {
                deadline: "2026-12-03T10:30:00Z".into(),
                secs_left: 42,
                previous_digest: "57ad6a22c183aaaa".into(),
                uid: Some(1000),
            }),
            ..Status::default()
        };
        let text = status.to_text();
        assert_eq!(
            text.lines().next(),
            Some(
                "PENDING CHANGE: rolls back to 57ad6a22c183 at 2026-12-03T10:30:00Z (42s left) \
                 unless `oqs-edge confirm`"
            )
        );
    }
}
