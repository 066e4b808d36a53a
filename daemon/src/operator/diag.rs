//! `oqs-edge diag` (疎通確認): the vendor's checklist, run by the router itself, step by step.
//!
//! The steps go from the WAN to an upstream's HTTP answer, in order: the daemon, the WAN link,
//! its address, its gateway; the line (the tunnel's state as the daemon sees it, proved with a
//! fresh packet for WireGuard; the IP-VPN next hop answering); the routes to every closed
//! prefix; the firewall table; then per proxy route the name, a TCP connection, the TLS
//! handshake with the route's client certificate and `server_ca`, and `health_path`'s HTTP
//! status; last, each 電子証明書's days left. Each step has a short timeout. A branch stops at
//! the first failure whose later steps cannot succeed: those are reported as skipped, with why.
//!
//! Name resolution: `diag` resolves an upstream the one way the proxy does
//! ([`upstream::resolve`]: the closed network's DNS when configured, else the router's
//! resolver); a route with `upstream_address` has no name to resolve and the step says so.
//!
//! It reads the system and never changes it. The daemon's state comes from the control socket's
//! `status` (the tunnel's handshake, which only the daemon knows); the rest is measured here.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::i18n::{Lang, Msg};
use crate::apply::firewall::Nft;
use crate::apply::proxy::load_certificate;
use crate::apply::proxy::upstream::{self, Upstream};
use crate::config::{TunnelSection, ValidConfig};
use crate::plan::{self, closed_prefixes, CertificatePlan, Plan, ProxyRoutePlan, TunnelPlan};
use crate::status::Status;

const PING_WAIT_SECS: &str = "2";
const TCP_TIMEOUT: Duration = Duration::from_secs(3);
const TLS_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// After a TLS 1.3 handshake, how long to wait for the server's refusal of the certificate.
const TLS_REFUSAL_WAIT: Duration = Duration::from_millis(500);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a fresh packet into the WireGuard tunnel may wait for an answer or a handshake
/// (the datapath starts one after 2 s unanswered, at most one per 5 s).
const WIREGUARD_PROBE: Duration = Duration::from_secs(8);
/// A certificate with fewer days left passes with a warning to renew.
const RENEW_WITHIN_DAYS: i64 = 30;

/// What a step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Outcome {
    pub fn symbol(self) -> &'static str {
        match self {
            Outcome::Pass => "✓",
            Outcome::Fail => "✗",
            Outcome::Skip => "—",
        }
    }
}

/// What a step checks: its title, and what a failure means and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Daemon,
    WanLink,
    WanAddress,
    WanGateway,
    LineWireguard,
    LineIpsec,
    LineIpVpn,
    Routes,
    Firewall,
    Resolve,
    Tcp,
    Tls,
    Http,
    Certificate,
}

impl Kind {
    pub fn title(self) -> Msg {
        match self {
            Kind::Daemon => Msg::TitleDaemon,
            Kind::WanLink => Msg::TitleWanLink,
            Kind::WanAddress => Msg::TitleWanAddress,
            Kind::WanGateway => Msg::TitleWanGateway,
            Kind::LineWireguard | Kind::LineIpsec | Kind::LineIpVpn => Msg::TitleLine,
            Kind::Routes => Msg::TitleRoutes,
            Kind::Firewall => Msg::TitleFirewall,
            Kind::Resolve => Msg::TitleResolve,
            Kind::Tcp => Msg::TitleTcp,
            Kind::Tls => Msg::TitleTls,
            Kind::Http => Msg::TitleHttp,
            Kind::Certificate => Msg::TitleCertificate,
        }
    }

    /// (what a failure means, what to do).
    pub fn failure(self) -> (Msg, Msg) {
        match self {
            Kind::Daemon => (Msg::FailDaemon, Msg::FixDaemon),
            Kind::WanLink => (Msg::FailWanLink, Msg::FixWanLink),
            Kind::WanAddress => (Msg::FailWanAddress, Msg::FixWanAddress),
            Kind::WanGateway => (Msg::FailWanGateway, Msg::FixWanGateway),
            Kind::LineWireguard => (Msg::FailLineWireguard, Msg::FixLineWireguard),
            Kind::LineIpsec => (Msg::FailLineIpsec, Msg::FixLineIpsec),
            Kind::LineIpVpn => (Msg::FailLineIpVpn, Msg::FixLineIpVpn),
            Kind::Routes => (Msg::FailRoutes, Msg::FixRoutes),
            Kind::Firewall => (Msg::FailFirewall, Msg::FixFirewall),
            Kind::Resolve => (Msg::FailResolve, Msg::FixResolve),
            Kind::Tcp => (Msg::FailTcp, Msg::FixTcp),
            Kind::Tls => (Msg::FailTls, Msg::FixTls),
            Kind::Http => (Msg::FailHttp, Msg::FixHttp),
            Kind::Certificate => (Msg::FailCertificate, Msg::FixCertificate),
        }
    }
}

/// Why a step was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "why", content = "arg")]
pub enum Skip {
    NeedsDaemon,
    /// The id of the step that failed.
    EarlierFailed(String),
    AddressPinned(String),
    NoHealthPath,
    NoDefaultRoute,
    KernelIpsec,
}

impl Skip {
    fn say(&self, lang: Lang, report: &Report) -> String {
        match self {
            Skip::NeedsDaemon => Msg::SkipNeedsDaemon.text(lang).to_owned(),
            Skip::EarlierFailed(id) => {
                let name = report
                    .steps
                    .iter()
                    .find(|s| &s.id == id)
                    .map(|s| format!("{} ({id})", s.kind.title().text(lang)))
                    .unwrap_or_else(|| id.clone());
                Msg::SkipEarlierFailed.fill(lang, &[&name])
            }
            Skip::AddressPinned(addr) => Msg::SkipAddressPinned.fill(lang, &[addr]),
            Skip::NoHealthPath => Msg::SkipNoHealthPath.text(lang).to_owned(),
            Skip::NoDefaultRoute => Msg::SkipNoDefaultRoute.text(lang).to_owned(),
            Skip::KernelIpsec => Msg::SkipKernelIpsec.text(lang).to_owned(),
        }
    }
}

/// One step's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// Stable: `wan.link`, `line`, `route.NAME.tls`, `cert.NAME`, …
    pub id: String,
    pub kind: Kind,
    pub result: Outcome,
    pub time_ms: u64,
    /// The facts found (addresses, the error as the system said it), untranslated.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Skip>,
    /// A passing certificate close to its end: say to renew it.
    #[serde(default)]
    pub warn: bool,
}

/// Every step, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub steps: Vec<Step>,
    pub daemon_running: bool,
}

/// The last whole 疎通確認 (every route), kept beside the control socket, so the status page
/// shows a run the installer made from the shell as well as its own.
#[derive(Debug, Serialize, Deserialize)]
struct KeptReport {
    at_unix: u64,
    report: Report,
}

fn kept_file(control_socket: &Path) -> PathBuf {
    control_socket.with_file_name("last-diag.json")
}

/// Keep `report`, started `at`, as the last 疎通確認, unless a run started later is kept
/// already (mode 0644: it holds no secret).
pub fn keep(control_socket: &Path, report: &Report, at: SystemTime) -> std::io::Result<()> {
    if last_kept(control_socket).is_some_and(|(kept, _)| kept > at) {
        return Ok(());
    }
    let at_unix = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let kept = KeptReport {
        at_unix,
        report: report.clone(),
    };
    let bytes = serde_json::to_vec(&kept).map_err(std::io::Error::other)?;
    crate::files::write_atomically(&kept_file(control_socket), &bytes, 0o644)
}

/// The last kept 疎通確認 and when it ran; `None` when there is none or it cannot be read.
pub fn last_kept(control_socket: &Path) -> Option<(SystemTime, Report)> {
    let bytes = std::fs::read(kept_file(control_socket)).ok()?;
    let kept: KeptReport = serde_json::from_slice(&bytes).ok()?;
    Some((
        SystemTime::UNIX_EPOCH + Duration::from_secs(kept.at_unix),
        kept.report,
    ))
}

/// `diag`'s exit codes.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_NOT_RUNNING: u8 = 3;

impl Report {
    pub fn failed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.result == Outcome::Fail)
            .count()
    }

    /// 3 when the daemon is not running (the other steps ran all the same), 1 when a step
    /// failed, 0 when all passed.
    pub fn exit_code(&self) -> u8 {
        if !self.daemon_running {
            EXIT_NOT_RUNNING
        } else if self.failed() > 0 {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }

    /// The first failed step, for a one-line answer.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.result == Outcome::Fail)
    }

    /// The step's one line in `lang`: for a pass its facts, for a failure what it means, for a
    /// skip why.
    pub fn message(&self, step: &Step, lang: Lang) -> String {
        match step.result {
            Outcome::Pass if step.warn => {
                format!("{}; {}", step.detail, Msg::CertRenewSoon.text(lang))
            }
            Outcome::Pass => step.detail.clone(),
            Outcome::Fail => format!("{} ({})", step.kind.failure().0.text(lang), step.detail),
            Outcome::Skip => step
                .skip
                .as_ref()
                .map(|s| s.say(lang, self))
                .unwrap_or_default(),
        }
    }

    pub fn to_text(&self, lang: Lang) -> String {
        use std::fmt::Write as _;
        let mut out = format!("{}\n\n", Msg::DiagHeading.text(lang));
        for step in &self.steps {
            let title = step.kind.title().text(lang);
            let subject = subject_of(&step.id);
            let title = match subject {
                Some(s) => format!("{title} ({s})"),
                None => title.to_owned(),
            };
            match step.result {
                Outcome::Pass | Outcome::Fail => {
                    let _ = writeln!(
                        out,
                        "{} {title}: {}  [{}, {} ms]",
                        step.result.symbol(),
                        if step.result == Outcome::Pass {
                            self.message(step, lang)
                        } else {
                            step.detail.clone()
                        },
                        step.id,
                        step.time_ms
                    );
                }
                Outcome::Skip => {
                    let _ = writeln!(
                        out,
                        "{} {title}: {}: {}  [{}]",
                        step.result.symbol(),
                        Msg::WordSkipped.text(lang),
                        self.message(step, lang),
                        step.id
                    );
                }
            }
            if step.result == Outcome::Fail {
                let (meaning, fix) = step.kind.failure();
                let _ = writeln!(
                    out,
                    "    {}: {}\n    {}: {}",
                    Msg::WordMeaning.text(lang),
                    meaning.text(lang),
                    Msg::WordWhatToDo.text(lang),
                    fix.text(lang)
                );
            }
        }
        out.push('\n');
        let failed = self.failed();
        if failed == 0 {
            let _ = writeln!(out, "{}", Msg::DiagAllPassed.text(lang));
        } else {
            let _ = writeln!(
                out,
                "{}",
                Msg::DiagFailed.fill(lang, &[&failed.to_string()])
            );
        }
        if !self.daemon_running {
            let _ = writeln!(out, "{}", Msg::DiagNotRunning.text(lang));
        }
        out
    }

    /// For the installer's scripts: one object per step with id, result, time, message.
    pub fn to_json(&self, lang: Lang) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut o = serde_json::json!({
                    "id": s.id,
                    "result": s.result,
                    "time_ms": s.time_ms,
                    "title": s.kind.title().text(lang),
                    "message": self.message(s, lang),
                    "detail": s.detail,
                });
                if s.result == Outcome::Fail {
                    o["fix"] = s.kind.failure().1.text(lang).into();
                }
                o
            })
            .collect();
        serde_json::json!({
            "lang": lang.code(),
            "daemon_running": self.daemon_running,
            "failed": self.failed(),
            "exit": self.exit_code(),
            "steps": steps,
        })
    }
}

/// `route.NAME.tls` → `NAME`, `cert.NAME` → `NAME`.
fn subject_of(id: &str) -> Option<&str> {
    if let Some(rest) = id.strip_prefix("route.") {
        return rest.rsplit_once('.').map(|(name, _)| name);
    }
    id.strip_prefix("cert.")
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this proxy route (and its certificate).
    pub route: Option<String>,
    /// The control socket to ask again (the WireGuard probe); the config's when `None`.
    pub socket: Option<std::path::PathBuf>,
}

/// Collects the steps as they run.
struct Run {
    report: Report,
}

impl Run {
    fn push(
        &mut self,
        id: String,
        kind: Kind,
        started: Instant,
        found: Result<String, String>,
    ) -> bool {
        let (result, detail) = match found {
            Ok(d) => (Outcome::Pass, d),
            Err(d) => (Outcome::Fail, d),
        };
        self.report.steps.push(Step {
            id,
            kind,
            result,
            time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail,
            skip: None,
            warn: false,
        });
        result == Outcome::Pass
    }

    fn skip(&mut self, id: String, kind: Kind, why: Skip) {
        self.report.steps.push(Step {
            id,
            kind,
            result: Outcome::Skip,
            time_ms: 0,
            detail: String::new(),
            skip: Some(why),
            warn: false,
        });
    }
}

/// Run every step. `status` is the daemon's answer, `None` when it does not run.
pub async fn run(config: &ValidConfig, status: Option<&Status>, options: &Options) -> Report {
    let plan = plan::plan(config);
    let mut run = Run {
        report: Report {
            steps: Vec::new(),
            daemon_running: status.is_some(),
        },
    };

    let started = Instant::now();
    match status {
        Some(s) => run.push(
            "daemon".into(),
            Kind::Daemon,
            started,
            Ok(format!(
                "pid {}, version {}",
                s.daemon.pid, s.daemon.version
            )),
        ),
        None => run.push(
            "daemon".into(),
            Kind::Daemon,
            started,
            Err(format!(
                "nothing answers on {}",
                config.control_socket().display()
            )),
        ),
    };

    // The WAN: link, address, gateway.
    let wan = config.wan.interface.0.clone();
    let ip_vpn = matches!(config.tunnel(), TunnelSection::IpVpn(_));
    let mut blocked: Option<String> = None;
    let started = Instant::now();
    if !run.push("wan.link".into(), Kind::WanLink, started, wan_link(&wan)) {
        blocked = Some("wan.link".into());
    }
    for (id, kind) in [
        ("wan.address", Kind::WanAddress),
        ("wan.gateway", Kind::WanGateway),
    ] {
        if let Some(failed) = &blocked {
            run.skip(id.into(), kind, Skip::EarlierFailed(failed.clone()));
            continue;
        }
        let started = Instant::now();
        let found = match kind {
            Kind::WanAddress => wan_address(&wan, status.and_then(|s| s.wan.as_ref())),
            _ => match default_gateway(&wan) {
                Ok(None) if ip_vpn => {
                    run.skip(id.into(), kind, Skip::NoDefaultRoute);
                    continue;
                }
                Ok(None) => Err(format!("no default route on {wan}")),
                Ok(Some(gw)) => ping(gw).map(|()| format!("{gw} answers on {wan}")),
                Err(e) => Err(e),
            },
        };
        if !run.push(id.into(), kind, started, found) {
            blocked = Some(id.into());
        }
    }

    // The line.
    let line_kind = match &plan.tunnel {
        TunnelPlan::Wireguard { .. } => Kind::LineWireguard,
        TunnelPlan::Ipsec { .. } => Kind::LineIpsec,
        TunnelPlan::IpVpn { .. } => Kind::LineIpVpn,
    };
    if let Some(failed) = &blocked {
        run.skip(
            "line".into(),
            line_kind,
            Skip::EarlierFailed(failed.clone()),
        );
    } else {
        let started = Instant::now();
        let found = match (&plan.tunnel, status) {
            (TunnelPlan::IpVpn { gateway, wan }, _) => {
                ping(*gateway).map(|()| format!("next hop {gateway} answers on {wan}"))
            }
            (_, None) => {
                run.skip("line".into(), line_kind, Skip::NeedsDaemon);
                blocked = Some("daemon".into());
                Ok(String::new())
            }
            (TunnelPlan::Wireguard { .. }, Some(s)) => {
                let socket = options
                    .socket
                    .clone()
                    .unwrap_or_else(|| config.control_socket());
                wireguard_line(s, &socket, config, &plan.proxy).await
            }
            (TunnelPlan::Ipsec { .. }, Some(s)) => tunnel_line(s),
        };
        if blocked.is_none() && !run.push("line".into(), line_kind, started, found) {
            blocked = Some("line".into());
        }
    }

    // Routes to every closed prefix (local state: checked even when the line is down).
    let started = Instant::now();
    match closed_route_device(&plan.tunnel) {
        None => run.skip("routes".into(), Kind::Routes, Skip::KernelIpsec),
        Some(device) => {
            let prefixes = closed_prefixes(config);
            if !run.push(
                "routes".into(),
                Kind::Routes,
                started,
                closed_routes(&prefixes, &device),
            ) && blocked.is_none()
            {
                blocked = Some("routes".into());
            }
        }
    }

    let started = Instant::now();
    run.push("firewall".into(), Kind::Firewall, started, firewall());

    // Each proxy route: name, TCP, TLS, HTTP.
    for route in plan
        .proxy
        .iter()
        .filter(|r| options.route.as_ref().is_none_or(|only| *only == r.name))
    {
        route_steps(&mut run, route, &plan, blocked.clone()).await;
    }

    // Each certificate's days left.
    let wanted: Vec<&CertificatePlan> = plan
        .certificates
        .iter()
        .filter(|c| match &options.route {
            None => true,
            Some(only) => plan
                .proxy
                .iter()
                .any(|r| r.name == *only && r.client_certificate.contains(&c.name)),
        })
        .collect();
    for cert in wanted {
        let started = Instant::now();
        let now = std::time::SystemTime::now();
        let mut warn = false;
        let found = load_certificate(&cert.source).and_then(|c| {
            let days = c.days_left(now);
            let cn = c.subject_cn.clone().unwrap_or_else(|| "(no CN)".into());
            if c.not_after < now {
                Err(format!("CN {cn}: expired {} days ago", -days))
            } else if c.not_before > now {
                Err(format!("CN {cn}: not valid yet"))
            } else {
                warn = days < RENEW_WITHIN_DAYS;
                Ok(format!("CN {cn}, {days} days left"))
            }
        });
        run.push(
            format!("cert.{}", cert.name),
            Kind::Certificate,
            started,
            found,
        );
        if let Some(last) = run.report.steps.last_mut() {
            last.warn = warn;
        }
    }
    run.report
}

async fn route_steps(
    run: &mut Run,
    route: &ProxyRoutePlan,
    plan: &Plan,
    mut blocked: Option<String>,
) {
    let id = |step: &str| format!("route.{}.{step}", route.name);
    // The name.
    let addrs: Vec<SocketAddr> = match (route.upstream_address, &blocked) {
        (Some(addr), _) => {
            run.skip(
                id("resolve"),
                Kind::Resolve,
                Skip::AddressPinned(addr.to_string()),
            );
            vec![SocketAddr::new(addr, route.upstream_port)]
        }
        (None, Some(failed)) => {
            run.skip(
                id("resolve"),
                Kind::Resolve,
                Skip::EarlierFailed(failed.clone()),
            );
            Vec::new()
        }
        (None, None) => {
            let started = Instant::now();
            let found = resolve(route, plan).await;
            let addrs = found.clone().unwrap_or_default();
            let said = found.map(|a| {
                let list: Vec<String> = a.iter().map(|a| a.ip().to_string()).collect();
                format!("{} → {}", route.upstream_host, list.join(", "))
            });
            if !run.push(id("resolve"), Kind::Resolve, started, said) {
                blocked = Some(id("resolve"));
            }
            addrs
        }
    };

    // TCP.
    let mut tcp = None;
    if let Some(failed) = &blocked {
        run.skip(id("tcp"), Kind::Tcp, Skip::EarlierFailed(failed.clone()));
    } else {
        let started = Instant::now();
        let found = connect(&addrs).await.map(|(stream, to)| {
            tcp = Some(stream);
            format!("{to} ({})", route.upstream)
        });
        if !run.push(id("tcp"), Kind::Tcp, started, found) {
            blocked = Some(id("tcp"));
        }
    }

    // TLS with the route's certificate and server_ca.
    let mut tls = None;
    match (tcp, &blocked) {
        (Some(stream), None) => {
            let started = Instant::now();
            let found = handshake(route, plan, stream).await.map(|(stream, said)| {
                tls = Some(stream);
                said
            });
            if !run.push(id("tls"), Kind::Tls, started, found) {
                blocked = Some(id("tls"));
            }
        }
        (_, failed) => run.skip(
            id("tls"),
            Kind::Tls,
            Skip::EarlierFailed(failed.clone().unwrap_or_else(|| id("tcp"))),
        ),
    }

    // HTTP.
    match (&route.health_path, tls, &blocked) {
        (None, _, _) => run.skip(id("http"), Kind::Http, Skip::NoHealthPath),
        (Some(path), Some(stream), None) => {
            let started = Instant::now();
            let found = http_status(route, path, stream).await;
            run.push(id("http"), Kind::Http, started, found);
        }
        (Some(_), _, failed) => run.skip(
            id("http"),
            Kind::Http,
            Skip::EarlierFailed(failed.clone().unwrap_or_else(|| id("tls"))),
        ),
    }
}

/// The upstream's addresses as the proxy finds them: through the closed network's DNS when
/// `closed_network.dns` is set, else the router's own resolver. A failure names the host and
/// the server asked, so a stopped closed DNS is told apart from a misspelt name.
async fn resolve(route: &ProxyRoutePlan, plan: &Plan) -> Result<Vec<SocketAddr>, String> {
    let (closed_dns, asked) = match &plan.dns {
        Some(dns) => {
            let servers: Vec<String> = dns.closed_servers.iter().map(|s| s.to_string()).collect();
            (
                Some(crate::apply::lan::dns::closed_resolver(dns)?),
                format!("the closed network's DNS ({})", servers.join(", ")),
            )
        }
        None => (None, "the router's resolver".to_owned()),
    };
    let host = &route.upstream_host;
    let lookup = upstream::resolve(host, route.upstream_port, closed_dns.as_ref());
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Err(_) => Err(format!(
            "{host}: no answer from {asked} within {}s",
            RESOLVE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{e} (asked {asked})")),
        Ok(Ok((addrs, _))) => Ok(addrs),
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, *addr)),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {}s", TCP_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// The handshake the proxy makes: the route's client certificate, `server_ca` as the only
/// trust anchor, the upstream's name checked.
async fn handshake(
    route: &ProxyRoutePlan,
    plan: &Plan,
    tcp: TcpStream,
) -> Result<(Tls, String), String> {
    // The certificate the proxy presents: the first of the route's list that loads and is
    // within its dates now. An endpoint refuses an expired certificate, some only after the
    // handshake (nginx answers 400): name it here, where it matters.
    let now = std::time::SystemTime::now();
    let mut why_not = Vec::new();
    let mut chosen = None;
    for name in &route.client_certificate {
        let Some(source) = plan
            .certificates
            .iter()
            .find(|c| &c.name == name)
            .map(|c| &c.source)
        else {
            why_not.push(format!("no client certificate `{name}`"));
            continue;
        };
        match load_certificate(source) {
            Err(e) => why_not.push(format!("client certificate `{name}`: {e}")),
            Ok(cert) if cert.not_after < now || cert.not_before > now => why_not.push(format!(
                "the client certificate `{name}` (CN {}) is outside its validity ({} .. {}): the endpoint refuses it",
                cert.subject_cn.as_deref().unwrap_or("?"),
                humantime::format_rfc3339_seconds(cert.not_before),
                humantime::format_rfc3339_seconds(cert.not_after),
            )),
            Ok(cert) => {
                chosen = Some((name.clone(), cert));
                break;
            }
        }
    }
    let Some((presented, cert)) = chosen else {
        return Err(why_not.join("; "));
    };
    let config = upstream::client_config(&route.server_ca, &cert)?;
    let server_name = ServerName::try_from(route.upstream_host.clone())
        .map_err(|e| format!("{}: {e}", route.upstream_host))?;
    let upstream = Upstream {
        host: route.upstream_host.clone(),
        port: route.upstream_port,
        address: route.upstream_address,
        resolver: None,
        server_name: server_name.clone(),
        tls: TlsConnector::from(Arc::clone(&config)),
        server_ca: route.server_ca.display().to_string(),
        client_certificate: presented.clone(),
    };
    let mut stream =
        match tokio::time::timeout(TLS_TIMEOUT, upstream.tls.connect(server_name, tcp)).await {
            Err(_) => return Err(format!("no TLS answer within {}s", TLS_TIMEOUT.as_secs())),
            Ok(Err(e)) => return Err(upstream.explain(&e)),
            Ok(Ok(s)) => s,
        };
    // With TLS 1.3 the server judges the client certificate after the client's side of the
    // handshake is done: its refusal arrives as an alert on the first read. Wait briefly for
    // one (an accepting server sends nothing before the request).
    let mut byte = [0u8; 1];
    match tokio::time::timeout(TLS_REFUSAL_WAIT, stream.read(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => {}
        Ok(Ok(0)) => {
            return Err(format!(
            "{} closed the connection after the handshake: it refused the client certificate `{}`",
            route.upstream_host, presented
        ))
        }
        Ok(Err(e)) => return Err(upstream.explain(&e)),
    }
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    Ok((
        stream,
        format!(
            "{version}, {} verified by {}, presented `{}` (CN {})",
            route.upstream_host,
            route.server_ca.display(),
            presented,
            cert.subject_cn.as_deref().unwrap_or("?")
        ),
    ))
}

async fn http_status(route: &ProxyRoutePlan, path: &str, tls: Tls) -> Result<String, String> {
    use http_body_util::Empty;
    let io = hyper_util::rt::TokioIo::new(tls);
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = if route.upstream_port == 443 {
            route.upstream_host.clone()
        } else {
            format!("{}:{}", route.upstream_host, route.upstream_port)
        };
        let request = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(
                http::header::USER_AGENT,
                concat!("oqs-edge-diag/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::CONNECTION, "close")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| {
            // A refused client certificate shows here with TLS 1.3.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        })?;
        Ok::<_, String>(response.status())
    };
    match tokio::time::timeout(HTTP_TIMEOUT, exchange).await {
        Err(_) => Err(format!(
            "GET {path}: no answer within {}s",
            HTTP_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("GET {path}: {e}")),
        Ok(Ok(status)) if status.is_success() || status.is_redirection() => {
            Ok(format!("GET {path} → {status}"))
        }
        Ok(Ok(status)) => Err(format!("GET {path} → {status}")),
    }
}

/// The line from the daemon's view: `up` or not, and what it rests on.
fn tunnel_line(status: &Status) -> Result<String, String> {
    let t = &status.tunnel;
    if t.state == "up" {
        Ok(t.detail.clone())
    } else {
        Err(format!("{} is {}: {}", t.kind, t.state, t.detail))
    }
}

/// WireGuard says `up` for minutes after the peer went away (until the session is stale):
/// send a packet into the tunnel and see an answer or a new handshake come back.
async fn wireguard_line(
    first: &Status,
    socket_path: &std::path::Path,
    config: &ValidConfig,
    routes: &[ProxyRoutePlan],
) -> Result<String, String> {
    tunnel_line(first)?;
    let target = probe_target(config, routes).ok_or("no closed prefix to probe")?;
    let socket = std::net::UdpSocket::bind(match target {
        IpAddr::V4(_) => "0.0.0.0:0",
        IpAddr::V6(_) => "[::]:0",
    })
    .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    let sent = Instant::now();
    let _ = socket.send_to(b"oqs-edge diag", SocketAddr::new(target, 9));
    let received = first.tunnel.received_bytes.unwrap_or(0);
    while sent.elapsed() < WIREGUARD_PROBE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(now) = super::control::ask::<Status>(
            socket_path,
            super::control::Request::Status,
            Duration::from_secs(3),
        )
        .await
        else {
            continue;
        };
        let t = &now.tunnel;
        let fresh = t
            .handshake_age_ms
            .is_some_and(|age| u128::from(age) < sent.elapsed().as_millis());
        if fresh || t.received_bytes.unwrap_or(0) > received {
            return Ok(t.detail.clone());
        }
    }
    Err(format!(
        "a packet into the tunnel (to {target}) got no answer and no new handshake within {}s; {}",
        WIREGUARD_PROBE.as_secs(),
        first.tunnel.detail
    ))
}

/// An address in the closed network: a route's pinned upstream, else the first prefix's first
/// host.
fn probe_target(config: &ValidConfig, routes: &[ProxyRoutePlan]) -> Option<IpAddr> {
    let prefixes = closed_prefixes(config);
    routes
        .iter()
        .filter_map(|r| r.upstream_address)
        .find(|a| prefixes.iter().any(|p| p.contains(a)))
        .or_else(|| {
            prefixes
                .first()
                .map(|p| p.hosts().next().unwrap_or_else(|| p.addr()))
        })
}

/// The device the closed prefixes must leave by; `None` where policies, not routes, carry
/// them (kernel IPsec).
fn closed_route_device(tunnel: &TunnelPlan) -> Option<String> {
    match tunnel {
        TunnelPlan::Wireguard { interface, .. } => Some(interface.clone()),
        TunnelPlan::Ipsec { dataplane, .. } if dataplane == "libipsec" => Some("ipsec0".into()),
        TunnelPlan::Ipsec { .. } => None,
        TunnelPlan::IpVpn { wan, .. } => Some(wan.clone()),
    }
}

/// `ip -j ARGS`, parsed.
fn ip_json(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ip {}: {e}", args.join(" ")))
}

fn wan_link(wan: &str) -> Result<String, String> {
    let v = ip_json(&["link", "show", "dev", wan]).map_err(|_| format!("{wan} does not exist"))?;
    let link = &v[0];
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if flags.contains(&"UP") && flags.contains(&"LOWER_UP") {
        Ok(format!("{wan} is up"))
    } else if !flags.contains(&"UP") {
        Err(format!("{wan} is down (administratively)"))
    } else {
        Err(format!("{wan} has no carrier (cable or peer down)"))
    }
}

/// The WAN's global addresses; with the daemon's view (when it addresses the WAN), where each
/// came from, and on failure what the daemon knows (no answer to dhcpcd, lease lost, dhcpcd down).
fn wan_address(wan: &str, daemon: Option<&crate::status::WanInfo>) -> Result<String, String> {
    let managed = daemon.filter(|w| !(w.ipv4 == "os" && w.ipv6 == "os"));
    if let Some(w) = managed {
        return if w.addresses.is_empty() {
            let mut why = if w.problems.is_empty() {
                format!("{wan} has no global address")
            } else {
                w.problems.join("; ")
            };
            if w.dhcp_client_running == Some(false) {
                why.push_str("; the DHCP client (dhcpcd) is not running");
            }
            Err(why)
        } else {
            Ok(w.line())
        };
    }

    let v = ip_json(&["addr", "show", "dev", wan])?;
    let addrs: Vec<String> = v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["scope"] == "global")
                .filter_map(|x| Some(format!("{}/{}", x["local"].as_str()?, x["prefixlen"])))
                .collect()
        })
        .unwrap_or_default();
    if addrs.is_empty() {
        Err(format!("{wan} has no global address"))
    } else {
        Ok(addrs.join(", "))
    }
}

/// The gateway of the default route through the WAN (IPv4 first, then IPv6).
fn default_gateway(wan: &str) -> Result<Option<IpAddr>, String> {
    for family in ["-4", "-6"] {
        let v = ip_json(&[family, "route", "show", "default"])?;
        let found = v.as_array().into_iter().flatten().find_map(|r| {
            (r["dev"] == wan)
                .then(|| r["gateway"].as_str()?.parse::<IpAddr>().ok())
                .flatten()
        });
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn ping(addr: IpAddr) -> Result<(), String> {
    let out = Command::new("ping")
        .args(["-n", "-c", "1", "-W", PING_WAIT_SECS])
        .arg(addr.to_string())
        .output()
        .map_err(|e| format!("cannot run ping: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{addr} does not answer (ping, {PING_WAIT_SECS}s)"))
    }
}

/// Each closed prefix has a route out of `device` (in any table).
fn closed_routes(prefixes: &[IpNet], device: &str) -> Result<String, String> {
    let mut found = Vec::new();
    for prefix in prefixes {
        let text = prefix.to_string();
        let v = ip_json(&["route", "show", "table", "all", "exact", &text])?;
        let ok = v
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["dev"] == device && r["type"] != "unreachable");
        if !ok {
            return Err(format!("no route to {prefix} via {device}"));
        }
        found.push(format!("{prefix} dev {device}"));
    }
    Ok(found.join(", "))
}

fn firewall() -> Result<String, String> {
    match Nft::default().counters() {
        Ok(Some(_)) => Ok(format!(
            "table inet {} is loaded",
            crate::apply::firewall::TABLE
        )),
        Ok(None) => Err(format!(
            "table inet {} is missing",
            crate::apply::firewall::TABLE
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_report_reads_back_with_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        assert!(last_kept(&socket).is_none());
        let report = Report {
            steps: vec![
                step("line", Kind::LineIpsec, Outcome::Pass, None),
                step("route.api.tcp", Kind::Tcp, Outcome::Fail, None),
                step(
                    "route.api.tls",
                    Kind::Tls,
                    Outcome::Skip,
                    Some(Skip::EarlierFailed("route.api.tcp".into())),
                ),
            ],
            daemon_running: true,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        keep(&socket, &report, at).unwrap();
        let (when, back) = last_kept(&socket).expect("kept");
        assert_eq!(when, at);
        assert_eq!(
            back.first_failure().map(|s| s.id.as_str()),
            Some("route.api.tcp")
        );
        assert_eq!(back.steps.len(), 3);
    }

    fn step(id: &str, kind: Kind, result: Outcome, skip: Option<Skip>) -> Step {
        Step {
            id: id.into(),
            kind,
            result,
            time_ms: 3,
            detail: "198.51.100.1 does not answer".into(),
            skip,
            warn: false,
        }
    }

    #[test]
    fn a_failure_says_what_it_means_and_what_to_do_in_both_languages() {
        let report = Report {
            daemon_running: true,
            steps: vec![
                step("wan.link", Kind::WanLink, Outcome::Pass, None),
                step("wan.gateway", Kind::WanGateway, Outcome::Fail, None),
                step(
                    "line",
                    Kind::LineIpsec,
                    Outcome::Skip,
                    Some(Skip::EarlierFailed("wan.gateway".into())),
                ),
            ],
        };
        assert_eq!(report.exit_code(), EXIT_FAILED);
        let en = report.to_text(Lang::En);
        assert!(
            en.contains("✗ WAN gateway answers: 198.51.100.1 does not answer  [wan.gateway, 3 ms]"),
            "{en}"
        );
        assert!(en.contains("do: Restart the ONU/modem"), "{en}");
        assert!(en.contains("— the line to the closed network: skipped: an earlier step failed: WAN gateway answers (wan.gateway)"), "{en}");
        let ja = report.to_text(Lang::Ja);
        assert!(ja.contains("✗ WAN のゲートウェイの応答"), "{ja}");
        assert!(ja.contains("対処: ONU・モデムを再起動してください"), "{ja}");
        assert!(ja.contains("1 件の異常があります"), "{ja}");
        let json = report.to_json(Lang::Ja);
        assert_eq!(json["steps"][1]["result"], "fail");
        assert_eq!(json["steps"][2]["result"], "skip");
        assert!(json["steps"][1]["fix"].as_str().unwrap().contains("ONU"));
    }

    #[test]
    fn not_running_wins_the_exit_code() {
        let report = Report {
            daemon_running: false,
            steps: vec![step("daemon", Kind::Daemon, Outcome::Fail, None)],
        };
        assert_eq!(report.exit_code(), EXIT_NOT_RUNNING);
    }

    #[test]
    fn ids_name_their_subject() {
        assert_eq!(
            subject_of("route.eligibility-api.tls"),
            Some("eligibility-api")
        );
        assert_eq!(subject_of("cert.oqs"), Some("oqs"));
        assert_eq!(subject_of("wan.link"), None);
    }
}
