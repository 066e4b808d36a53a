//! The daemon's state as the operator sees it: the appliers fill it in, the readers (the
//! control socket's `status`, sd_notify's STATUS= line) read it.
//!
//! It stands below the appliers and the operator's side, so an applier reports its state
//! without knowing who asks, and a new reader needs nothing but this module.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::pki::expiry::Expiry;

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
    /// The LAN segments: the router's addresses, DHCP and the DNS relay on each.
    #[serde(default)]
    pub segments: Vec<SegmentInfo>,
    /// The WAN's addressing: mode, addresses and where each came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan: Option<WanInfo>,
}

/// The WAN as `status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WanInfo {
    pub interface: String,
    /// dhcp, static or os.
    pub ipv4: String,
    /// ra, static or os.
    pub ipv6: String,
    /// Whether dhcpcd runs, when oqs-edge runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_client_running: Option<bool>,
    pub addresses: Vec<WanAddressInfo>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub resolvers: Vec<String>,
    /// Prefixes the line delegated (DHCPv6 prefix delegation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated: Vec<String>,
    /// The segments that take a subnet of it (`address6: delegated:N`), with the router's
    /// address there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_segments: Vec<DelegatedSegmentInfo>,
    /// "no address yet", "lease lost", in plain words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// A lease the line gave was lost (taken back, or not renewed in time): not the same
    /// as never having had one, for the Japanese line and the page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease_lost: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DelegatedSegmentInfo {
    pub segment: String,
    pub interface: String,
    /// The router's address in the segment's subnet (`None`: the subnet does not fit).
    pub address: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WanAddressInfo {
    pub address: String,
    /// static, dhcp, dhcpv6 or ra.
    pub source: String,
    /// Seconds of the lease left, for a leased address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_left_secs: Option<u64>,
}

impl WanInfo {
    /// One line for `status`, e.g. `wan0 (ipv4 dhcp, ipv6 ra): 198.51.100.50/24 from dhcp (9m left)`.
    pub fn line(&self) -> String {
        let addresses: Vec<String> = self
            .addresses
            .iter()
            .map(|a| match a.lease_left_secs {
                Some(secs) => format!(
                    "{} from {} ({} left)",
                    a.address,
                    a.source,
                    humantime::format_duration(Duration::from_secs(secs))
                ),
                None => format!("{} from {}", a.address, a.source),
            })
            .collect();
        let mut line = format!(
            "{} (ipv4 {}, ipv6 {}): ",
            self.interface, self.ipv4, self.ipv6
        );
        if addresses.is_empty() {
            line.push_str(if self.ipv4 == "os" && self.ipv6 == "os" {
                "addressed by the OS"
            } else {
                "no address yet"
            });
        } else {
            line.push_str(&addresses.join(", "));
        }
        if !self.gateways.is_empty() {
            line.push_str(&format!("; gateway {}", self.gateways.join(" ")));
        }
        if !self.resolvers.is_empty() {
            line.push_str(&format!("; resolvers {}", self.resolvers.join(" ")));
        }
        if !self.delegated.is_empty() {
            line.push_str(&format!("; delegated {}", self.delegated.join(" ")));
            for d in &self.delegated_segments {
                match &d.address {
                    Some(a) => line.push_str(&format!(", {a} on {} ({})", d.segment, d.interface)),
                    None => line.push_str(&format!(
                        ", segment {}: its subnet does not fit the prefix",
                        d.segment
                    )),
                }
            }
        }
        if self.dhcp_client_running == Some(false) {
            line.push_str("; dhcpcd NOT RUNNING");
        }
        line
    }
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
    /// The git commit it was built from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the daemon started (seconds since 1970).
    #[serde(default)]
    pub started_unix: i64,
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
    /// Reloads since start, by result (`applied`, `unchanged`, `refused`, `failed`).
    #[serde(default)]
    pub reloads: std::collections::BTreeMap<String, u64>,
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
    /// When the state became what it is (seconds since 1970).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix: Option<i64>,
    /// WireGuard: when the last handshake completed (seconds since 1970).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_unix: Option<i64>,
    /// Traffic through the tunnel interface, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<LinkCounters>,
    /// WireGuard: how long ago the last handshake was, in milliseconds (`diag` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_age_ms: Option<u64>,
    /// WireGuard: bytes received from the peer since the interface came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_bytes: Option<u64>,
    /// With more than one gateway: which one carries the traffic (issue 21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayInfo>,
}

/// An interface's traffic counters, as the kernel keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
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
    /// What it is: `client` (電子証明書), `ipsec`, `ipsec-ca`, `server-ca`, `local-ca`,
    /// `lan-server`.
    #[serde(default)]
    pub kind: String,
    /// The file it is read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Its validity, in seconds since 1970.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_unix: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_unix: Option<i64>,
    /// How near its end: `ok`, `notice` (31–90 days), `renew` (30 or fewer), `expired`,
    /// `not-yet-valid`.
    #[serde(default)]
    pub expiry: Expiry,
    /// What to do, when `expiry` is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// The facts of a certificate with dates, from which `status` and the expiry watch work.
pub struct Dated<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub file: &'a std::path::Path,
    pub subject_cn: Option<String>,
    pub not_before: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
    pub fingerprint_sha256: String,
}

impl CertificateInfo {
    /// A certificate's line at `now`: days left, how near its end, what to do.
    pub fn dated(cert: Dated<'_>, now: std::time::SystemTime) -> CertificateInfo {
        use crate::pki::{self, expiry};
        let days_left = pki::days_until(cert.not_after, now);
        let level = Expiry::of(days_left, now >= cert.not_before);
        let file = cert.file.display().to_string();
        CertificateInfo {
            name: cert.name.to_owned(),
            days_left: Some(days_left),
            subject_cn: cert.subject_cn,
            not_after: Some(pki::show_time(cert.not_after)),
            fingerprint_sha256: Some(cert.fingerprint_sha256),
            problem: None,
            kind: cert.kind.to_owned(),
            file: Some(cert.file.to_owned()),
            not_before_unix: Some(pki::unix_seconds(cert.not_before)),
            not_after_unix: Some(pki::unix_seconds(cert.not_after)),
            expiry: level,
            advice: matches!(level, Expiry::Notice | Expiry::Renew | Expiry::Expired)
                .then(|| expiry::advice(cert.kind, &file)),
        }
    }

    /// The `status` problem for a certificate 30 days or fewer from its end (or past it, or
    /// not yet started), with what to do.
    pub fn expiry_problem(&self) -> Option<String> {
        if !self.expiry.is_problem() {
            return None;
        }
        let what = self.describe();
        let when = self.not_after.as_deref().unwrap_or("?");
        let advice = self.advice.as_deref().unwrap_or("replace it");
        Some(match (self.expiry, self.days_left) {
            (Expiry::Expired, _) => format!("{what} expired on {when}: {advice}"),
            (Expiry::NotYetValid, _) => {
                format!("{what} is not valid yet: check the router's clock, or {advice}")
            }
            (_, Some(days)) => format!("{what} expires in {days} days, on {when}: {advice}"),
            (_, None) => format!("{what} expires on {when}: {advice}"),
        })
    }

    /// `certificate `oqs` (/var/lib/…/oqs.p12)`, for messages.
    pub fn describe(&self) -> String {
        let kind = match self.kind.as_str() {
            "client" | "" => "client certificate",
            "ipsec" => "IPsec certificate",
            "ipsec-ca" => "IPsec CA",
            "server-ca" => "server CA",
            "local-ca" => "local CA",
            "lan-server" => "LAN server certificate",
            other => other,
        };
        match &self.file {
            Some(file) => format!("{kind} `{}` ({})", self.name, file.display()),
            None => format!("{kind} `{}`", self.name),
        }
    }
}

impl Status {
    /// The certificate that ends first, among those that have dates.
    pub fn nearest_expiry(&self) -> Option<&CertificateInfo> {
        self.certificates
            .iter()
            .filter(|c| c.days_left.is_some())
            .min_by_key(|c| c.days_left)
    }
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
    /// The client certificate presented upstream now (the first valid one of the route's list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Why that one, when the route has a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_why: Option<String>,
    /// `mode: http`: responses to the LAN by status class (`2xx`, `4xx`, …).
    #[serde(default)]
    pub responses: std::collections::BTreeMap<String, u64>,
    /// `mode: http`: how long requests took until the response head, as a histogram.
    #[serde(default)]
    pub duration: DurationHistogram,
}

/// Request durations: cumulative counts per upper bound, as Prometheus' histograms are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationHistogram {
    /// (upper bound in seconds, requests that took at most that long).
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub name: String,
    pub interface: String,
    pub addresses: Vec<AddressInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AddressInfo {
    pub address: String,
    /// On the interface now.
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DhcpInfo {
    pub segment: String,
    /// dnsmasq is running.
    pub serving: bool,
    /// Unexpired leases of this segment's subnet.
    pub leases_in_use: usize,
    /// The fixed leases, and whether each host holds its own.
    pub hosts: Vec<DhcpHostInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DhcpHostInfo {
    pub name: String,
    pub mac: String,
    pub address: String,
    pub holds_lease: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_in_secs: Option<u64>,
}

/// The DNS relay's answers on one segment since the daemon started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DnsInfo {
    /// Questions answered (from the cache or an upstream server).
    pub answered: u64,
    /// Questions refused: a name outside the closed zones on a segment without internet.
    pub refused: u64,
    /// Questions no server answered (SERVFAIL).
    pub failed: u64,
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
        if let Some(w) = &self.wan {
            let _ = writeln!(out, "wan       {}", w.line());
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
            if let Some(name) = &r.client_certificate {
                let why = r
                    .client_certificate_why
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "{:<9}   presents client certificate `{name}`{why}", "");
            }
            if let Some(e) = &r.last_upstream_error {
                let _ = writeln!(out, "{:<9}   last upstream error: {e}", "");
            }
        }
        for seg in &self.segments {
            let addresses: Vec<String> = seg
                .addresses
                .iter()
                .map(|a| match &a.problem {
                    None => a.address.clone(),
                    Some(why) => format!("{} MISSING ({why})", a.address),
                })
                .collect();
            let _ = write!(
                out,
                "segment   {} {}: {}",
                seg.name,
                seg.interface,
                addresses.join(", ")
            );
            if let Some(d) = &seg.dhcp {
                let _ = write!(
                    out,
                    "; DHCP {}, {} leases in use",
                    if d.serving { "serving" } else { "NOT SERVING" },
                    d.leases_in_use
                );
            }
            if let Some(d) = &seg.dns {
                let _ = write!(
                    out,
                    "; DNS {} answered, {} refused, {} failed",
                    d.answered, d.refused, d.failed
                );
            }
            out.push('\n');
            for h in seg.dhcp.iter().flat_map(|d| &d.hosts) {
                let held = match (h.holds_lease, h.lease_expires_in_secs) {
                    (true, Some(secs)) => format!(
                        "holds its lease ({} left)",
                        humantime::format_duration(Duration::from_secs(secs))
                    ),
                    (true, None) => "holds its lease".to_owned(),
                    (false, _) => "has no lease now".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<9}   fixed {} {} -> {}: {held}",
                    "", h.name, h.mac, h.address
                );
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
            let name = match c.kind.as_str() {
                "client" | "" => c.name.clone(),
                kind => format!("{kind} {}", c.name),
            };
            let _ = writeln!(out, "{label:<9} {name} {state}");
            match (c.expiry, &c.advice) {
                (Expiry::Notice, Some(advice)) => {
                    let _ = writeln!(
                        out,
                        "{:<9}   renew within {} days: {advice}",
                        "",
                        c.days_left.unwrap_or(0)
                    );
                }
                (Expiry::Renew | Expiry::Expired, Some(advice)) => {
                    let _ = writeln!(out, "{:<9}   RENEW NOW: {advice}", "");
                }
                (Expiry::NotYetValid, _) => {
                    let _ = writeln!(
                        out,
                        "{:<9}   not valid yet: it can be presented from its start",
                        ""
                    );
                }
                _ => {}
            }
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

    #[test]
    fn a_certificate_near_its_end_is_a_problem_with_what_to_do_and_a_far_one_a_note() {
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::UNIX_EPOCH + day * 20_000;
        let cert = |name: &str, days: u32| {
            CertificateInfo::dated(
                Dated {
                    name,
                    kind: "client",
                    file: std::path::Path::new("/var/lib/oqs-edge/certs/oqs.p12"),
                    subject_cn: Some("1312345678".into()),
                    not_before: now - day * 100,
                    not_after: now + day * days + std::time::Duration::from_secs(3600),
                    fingerprint_sha256: "AA".into(),
                },
                now,
            )
        };
        let soon = cert("oqs", 20);
        assert_eq!(soon.expiry, Expiry::Renew);
        let problem = soon.expiry_problem().unwrap_or_default();
        assert!(
            problem.starts_with(
                "client certificate `oqs` (/var/lib/oqs-edge/certs/oqs.p12) expires in 20 days, on "
            ) && problem.ends_with("import it with `oqs-edge cert import --replace`"),
            "{problem}"
        );
        let later = cert("next", 45);
        assert_eq!(later.expiry, Expiry::Notice);
        assert_eq!(later.expiry_problem(), None);
        let status = Status {
            certificates: vec![later, soon],
            ..Status::default()
        };
        let text = status.to_text();
        assert!(
            text.contains("renew within 45 days: apply for a new certificate"),
            "{text}"
        );
        assert!(
            text.contains("RENEW NOW: apply for a new certificate"),
            "{text}"
        );
        assert_eq!(
            status.nearest_expiry().map(|c| c.name.as_str()),
            Some("oqs")
        );
    }
}
