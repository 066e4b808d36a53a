//! The run loop: check the config, plan, apply, then watch and answer the control socket.
//!
//! Order of applying is the fail-closed order: the firewall first (if nft refuses it at
//! start-up, the daemon stops before forwarding is switched on), then kernel settings, then
//! routes. SIGTERM/SIGINT end the daemon and leave the firewall in place. SIGHUP or
//! `oqs-edge reload` re-read the config: an invalid one is logged, every error, and changes
//! nothing. Every few seconds the watch puts back what someone else removed (the table, our
//! routes) and retries routes that could not be added (an interface that was not there yet).

mod confirm;
pub mod history;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use tokio::signal::unix::{signal, SignalKind};

use crate::apply::firewall::{self, FirewallError, Nft};
use crate::apply::lan::Lan;
use crate::apply::net::{self, Net, NetError};
use crate::apply::proxy::Proxy;
use crate::apply::tunnel::Tunnel;
use crate::apply::wan::Wan;
use crate::config::{self, FileChecks, TunnelSection, ValidConfig};
use crate::logging::event;
use crate::operator::certificates::{self, Schedule};
use crate::operator::control::{self, Pending, Request};
use crate::operator::i18n::Lang;
use crate::operator::metrics;
use crate::operator::notify;
use crate::operator::status_page::StatusPage;
use crate::plan::{self, Plan, Route};
use crate::status::{self, Health, Status};

/// How often the watch checks the table and the routes.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// How often the WAN's lease files are looked at: a new address is followed within this.
const WAN_POLL: Duration = Duration::from_millis(200);
/// After a lease change, how long routes that failed are retried at each WAN poll.
const WAN_SETTLE: Duration = Duration::from_secs(5);

pub struct RunOptions {
    pub config_path: PathBuf,
    /// Where the last applied ruleset is kept for the early-boot unit.
    pub state_dir: PathBuf,
    pub nft: Nft,
    /// The shortest `reload --confirm` window accepted.
    pub confirm_min: Duration,
    /// The journal's language for what the operator reads (certificate warnings).
    pub lang: Lang,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}: the config is invalid (the errors are logged above)")]
    Invalid(PathBuf),
    #[error("cannot read the config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Unsafe(#[from] crate::files::WritableByOthers),
}

/// Read and check the config, logging every problem found; the config with the file's text.
fn load(path: &Path) -> Result<(ValidConfig, String), RunError> {
    let (checked, source) =
        config::check_file(path, FileChecks::On).map_err(|source| RunError::Read {
            path: path.to_owned(),
            source,
        })?;
    if !checked.report.diagnostics.is_empty() {
        for line in checked.report.render(&source).lines() {
            if checked.report.valid {
                warn!("{line}");
            } else {
                error!(oqs_event = event::CONFIG_INVALID; "{line}");
            }
        }
    }
    checked
        .config
        .map(|config| (config, source))
        .ok_or_else(|| RunError::Invalid(path.to_owned()))
}

/// How a reload ended; `status` and `oqs-edge reload` show it by name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReloadResult {
    Applied,
    Unchanged,
    /// The config is invalid: nothing was changed.
    Refused,
    /// nft refused the new ruleset: the previous rules stay.
    Failed,
    /// A `reload --confirm` change is pending: confirm or roll it back first.
    Pending,
}

impl ReloadResult {
    fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Refused => "refused",
            ReloadResult::Failed => "failed",
            ReloadResult::Pending => "refused-pending",
        }
    }

    fn succeeded(self) -> bool {
        matches!(self, ReloadResult::Applied | ReloadResult::Unchanged)
    }
}

/// The last reload, for `status`.
struct Reloaded {
    at: Instant,
    result: ReloadResult,
    message: String,
}

/// The running daemon: the config in force, its plan, and what applying it left behind.
struct Daemon {
    options: RunOptions,
    net: Net,
    config: ValidConfig,
    plan: Plan,
    tunnel: Tunnel,
    proxy: Proxy,
    /// The segments' addresses, DHCP and the DNS relay.
    lan: Lan,
    /// The WAN's DHCP client (dhcpcd), when the WAN is not the OS's.
    wan: Wan,
    /// Why the tunnel could not take the last reloaded plan, when it could not.
    tunnel_problem: Option<String>,
    started: Instant,
    /// Why the kernel settings could not be set, when they could not.
    sysctl_problem: Option<String>,
    /// Planned routes that are not installed, with the reason.
    route_problems: Vec<(Route, String)>,
    last_reload: Option<Reloaded>,
    /// A `reload --confirm` change waiting for `oqs-edge confirm` (also on disk).
    pending: Option<history::PendingChange>,
    /// The certificate expiry warnings already logged.
    schedule: Schedule,
    started_at: std::time::SystemTime,
    /// Reloads since start, by result.
    reloads: std::collections::BTreeMap<String, u64>,
    /// The tunnel's state as last seen, and since when (seconds since 1970).
    tunnel_since: std::sync::Mutex<Option<(String, i64)>>,
    /// Why the metrics endpoint is not serving, when it is not.
    metrics_problem: Option<String>,
}

impl Daemon {
    /// The firewall: applied, then saved for the early-boot unit (only once the kernel took it).
    /// `since` is when reading the config began: the log says how long the whole step took.
    fn apply_firewall(
        &self,
        plan: &Plan,
        config: &ValidConfig,
        since: Instant,
    ) -> Result<(), RunError> {
        self.options.nft.apply(&plan.firewall)?;
        let saved = firewall::save(&plan.firewall, &self.options.state_dir)?;
        info!(
            oqs_event = event::FIREWALL_APPLIED;
            "firewall applied in {:.1} ms: table inet oqs_edge from {} (sha256 {}), saved to {}",
            since.elapsed().as_secs_f64() * 1000.0,
            config.path().display(),
            config.digest().get(..12).unwrap_or_default(),
            saved.display()
        );
        Ok(())
    }

    /// Kernel settings, the WAN, the LAN side and routes, after the firewall. Failures here leave the daemon up and
    /// degraded (the watch retries), never less safe: the firewall already stands.
    async fn apply_net(&mut self) {
        self.sysctl_problem = match net::apply_sysctls(&self.plan.sysctls) {
            Ok(()) => None,
            Err(e) => {
                error!("{e}");
                Some(e.to_string())
            }
        };
        self.follow_wan().await;
    }

    /// The WAN (dhcpcd and its leases, journalled), the LAN side with the line's resolvers for the
    /// DNS relay, and the routes; at start, on every watch, and at once when a lease changes
    /// (routes that need the WAN's address come up then, not at the next watch). A changed WAN
    /// address makes the tunnel follow.
    async fn follow_wan(&mut self) {
        let moved = self
            .wan
            .apply(&self.plan.wan, &self.options.state_dir)
            .await;
        let resolvers = self.wan.resolvers(&self.plan.wan);
        self.lan
            .apply(&self.net, &self.plan, &resolvers, &self.options.state_dir)
            .await;
        self.sync_routes().await;
        if moved {
            self.tunnel.wan_changed(&self.wan.addresses()).await;
        }
    }

    async fn sync_routes(&mut self) {
        match self.net.sync_routes(&self.plan.routes).await {
            Ok(sync) => {
                for route in &sync.added {
                    info!(oqs_event = event::ROUTE_ADDED, oqs_route:% = route; "route added: {route}");
                }
                for route in &sync.removed {
                    info!(oqs_event = event::ROUTE_REMOVED, oqs_route:% = route; "route removed (no longer planned): {route}");
                }
                for (route, why) in &sync.failed {
                    if !self
                        .route_problems
                        .iter()
                        .any(|(r, w)| r == route && w == why)
                    {
                        warn!(
                            oqs_event = event::ROUTE_FAILED, oqs_route:% = route;
                            "route {route} is not installed: {why}; retrying every {}s",
                            WATCH_INTERVAL.as_secs()
                        );
                    }
                }
                self.route_problems = sync.failed;
            }
            Err(e) => {
                error!("routes: {e}");
                self.route_problems = self
                    .plan
                    .routes
                    .iter()
                    .map(|r| (r.clone(), e.to_string()))
                    .collect();
            }
        }
    }

    /// Move the running tunnel to the plan in force. The firewall already matches the plan.
    async fn apply_tunnel(&mut self) {
        self.tunnel_problem = match self.tunnel.reload(&self.plan.tunnel).await {
            Ok(()) => None,
            Err(e) => {
                error!("tunnel: {e}");
                Some(e.to_string())
            }
        };
    }

    /// SIGHUP or `oqs-edge reload`: refused while a `--confirm` change is pending.
    async fn reload(&mut self, uid: Option<u32>) -> (ReloadResult, String) {
        if let Some(why) = self.refused_while_pending() {
            error!(oqs_event = event::RELOAD, oqs_result = ReloadResult::Pending.as_str(); "{why}");
            return (ReloadResult::Pending, why);
        }
        let (result, message, source) = self.apply_file().await;
        if let Some(source) = source {
            self.record("reload", &source, uid);
        }
        (result, message)
    }

    /// Read the config file and apply it. The file's text comes back when it was applied.
    async fn apply_file(&mut self) -> (ReloadResult, String, Option<String>) {
        let path = self.options.config_path.clone();
        let since = Instant::now();
        notify::reloading();
        info!("reload requested: reading {}", path.display());
        let mut applied = None;
        let (result, message) = match load(&path) {
            Ok((next, _)) if next.digest() == self.config.digest() => {
                // A file the config names (a renewed certificate, the IPsec PSK, a key) may
                // have changed under it: the tunnel and the proxy read their files again and
                // change only what differs.
                self.apply_tunnel().await;
                self.proxy.apply(&self.plan).await;
                (
                    ReloadResult::Unchanged,
                    "the config is unchanged; the files it names were read again".to_owned(),
                )
            }
            Ok((next, source)) => {
                let next_plan = plan::plan(&next);
                if let Err(e) = Tunnel::check(&next_plan.tunnel).await {
                    (
                        ReloadResult::Refused,
                        format!("reload refused, nothing was changed: {e}"),
                    )
                } else {
                    match self.apply_firewall(&next_plan, &next, since) {
                        Ok(()) => {
                            self.config = next;
                            self.plan = next_plan;
                            self.apply_tunnel().await;
                            self.apply_net().await;
                            self.proxy.apply(&self.plan).await;
                            applied = Some(source);
                            (ReloadResult::Applied, format!("applied {}", path.display()))
                        }
                        Err(e) => (
                            ReloadResult::Failed,
                            format!("reload failed, the previous rules stay in force: {e}"),
                        ),
                    }
                }
            }
            Err(e) => (
                ReloadResult::Refused,
                format!("reload refused, nothing was changed: {e}"),
            ),
        };
        *self.reloads.entry(result.as_str().to_owned()).or_default() += 1;
        if result.succeeded() {
            info!(oqs_event = event::RELOAD, oqs_result = result.as_str(); "{message}");
        } else {
            error!(oqs_event = event::RELOAD, oqs_result = result.as_str(); "{message}");
        }
        let status = self.status().await;
        self.schedule
            .log_due(&status.certificates, std::time::SystemTime::now());
        notify::ready(&notify::summary(&status));
        self.last_reload = Some(Reloaded {
            at: Instant::now(),
            result,
            message: message.clone(),
        });
        (result, message, applied)
    }

    /// Put back what was taken away: the table (someone ran `nft flush ruleset`), our routes.
    /// Whether the firewall stands (the watchdog is fed only then).
    async fn watch(&mut self) -> bool {
        let firewall = match self.options.nft.counters() {
            Ok(Some(_)) => true,
            Ok(None) => {
                warn!(
                    oqs_event = event::FIREWALL_RESTORED;
                    "table inet oqs_edge is gone from the kernel; applying it again"
                );
                match self.options.nft.apply(&self.plan.firewall) {
                    Ok(()) => true,
                    Err(e) => {
                        error!(oqs_event = event::FIREWALL_FAILED; "cannot put the firewall back: {e}");
                        false
                    }
                }
            }
            Err(e) => {
                error!(oqs_event = event::FIREWALL_FAILED; "cannot read the firewall: {e}");
                false
            }
        };
        self.tunnel.watch().await;
        self.tunnel.keep_routes(&self.net, &self.plan.tunnel).await;
        self.follow_wan().await;
        self.proxy.apply(&self.plan).await;
        firewall
    }

    async fn status(&self) -> Status {
        let now = std::time::SystemTime::now();
        let mut certificates = self.proxy.certificate_info(now);
        certificates.extend(certificates::files_info(&self.plan, now));
        // A certificate near its end comes first: it stops every eligibility check when it goes.
        let mut problems: Vec<String> = certificates
            .iter()
            .filter_map(|c| c.expiry_problem())
            .collect();
        let counters = match self.options.nft.counters() {
            Ok(Some(counters)) => Some(counters),
            Ok(None) => {
                problems.push(
                    "the firewall table inet oqs_edge is missing from the kernel; the watch puts it back"
                        .to_owned(),
                );
                None
            }
            Err(e) => {
                problems.push(format!("cannot read the firewall: {e}"));
                None
            }
        };
        if let Some(why) = &self.sysctl_problem {
            problems.push(format!("kernel settings: {why}"));
        }
        for (route, why) in &self.route_problems {
            problems.push(format!("route {route} is not installed: {why}"));
        }
        if let Some(why) = &self.tunnel_problem {
            problems.push(format!(
                "the tunnel did not take the reloaded config: {why}"
            ));
        }
        problems.extend(self.wan.problems(&self.plan.wan));
        problems.extend(self.lan.problems());
        problems.extend(self.proxy.problems());
        problems.extend(self.metrics_problem.clone());
        let mut tunnel = self.tunnel_state().await;
        tunnel.since_unix = Some(self.tunnel_since(&tunnel.state, now));
        if let plan::firewall::Egress::Interface(name) = plan::firewall::egress(&self.config) {
            tunnel.counters = net::link_counters(&name);
        }
        if tunnel.state != "up" {
            problems.push(format!(
                "tunnel ({}) is {}: {}",
                tunnel.kind, tunnel.state, tunnel.detail
            ));
        }
        problems.extend(
            tunnel
                .gateway
                .as_ref()
                .and_then(status::GatewayInfo::problem),
        );
        if let Some(r) = &self.last_reload {
            if !r.result.succeeded() {
                problems.push(format!(
                    "the last reload was {}; the config in force is the earlier one ({}). Run `oqs-edge check`",
                    r.result.as_str(),
                    self.config.digest().get(..12).unwrap_or_default()
                ));
            }
        }
        Status {
            health: if problems.is_empty() {
                Health::Healthy
            } else {
                Health::Degraded
            },
            problems,
            daemon: status::DaemonInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                commit: option_env!("OQS_EDGE_COMMIT_ID")
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
                started_unix: crate::pki::unix_seconds(self.started_at),
                pid: std::process::id(),
                uptime_secs: self.started.elapsed().as_secs(),
            },
            config: status::ConfigInfo {
                path: self.config.path().to_owned(),
                digest: self.config.digest().to_owned(),
                file_changed: self.config.file_changed(),
                reloads: self.reloads.clone(),
                last_reload: self.last_reload.as_ref().map(|r| status::ReloadOutcome {
                    result: r.result.as_str().to_owned(),
                    message: r.message.clone(),
                    secs_ago: r.at.elapsed().as_secs(),
                }),
            },
            firewall: status::FirewallInfo {
                applied: counters.is_some(),
                table: format!("inet {}", firewall::TABLE),
                saved_to: self.options.state_dir.join(firewall::SAVED_RULESET),
                counters: counters.unwrap_or_default(),
            },
            routes: self
                .plan
                .routes
                .iter()
                .map(|route| {
                    let problem = self
                        .route_problems
                        .iter()
                        .find(|(r, _)| r == route)
                        .map(|(_, why)| why.clone());
                    status::RouteInfo {
                        route: route.to_string(),
                        installed: problem.is_none(),
                        problem,
                    }
                })
                .collect(),
            tunnel,
            certificates,
            proxy: status::ProxyInfo {
                routes: self.proxy.route_info(&self.plan.proxy),
            },
            segments: self.lan.info(&self.plan),
            wan: Some(self.wan.info(&self.plan.wan)),
            pending: self.pending_info(),
        }
    }

    /// Since when the tunnel has been in `state` (seconds since 1970): the first time a state
    /// is seen after a change.
    fn tunnel_since(&self, state: &str, now: std::time::SystemTime) -> i64 {
        let mut since = self.tunnel_since.lock().unwrap_or_else(|e| e.into_inner());
        match since.as_ref() {
            Some((known, at)) if known == state => *at,
            _ => {
                let at = crate::pki::unix_seconds(now);
                *since = Some((state.to_owned(), at));
                at
            }
        }
    }

    /// The tunnel's state. On an IP-VPN line the line is the tunnel: up when the WAN link is
    /// up and the closed-network routes are in place.
    async fn tunnel_state(&self) -> status::TunnelInfo {
        if let Some(info) = self.tunnel.info().await {
            return info;
        }
        match self.config.tunnel() {
            TunnelSection::IpVpn(vpn) => {
                let wan = &self.config.wan.interface.0;
                let (state, detail) = match self.net.link_up(wan).await {
                    Ok(false) => (
                        "down",
                        format!("the WAN interface {wan} is down or missing"),
                    ),
                    Err(e) => ("down", e.to_string()),
                    Ok(true) if !self.route_problems.is_empty() => (
                        "down",
                        "the routes to the closed network are not installed".to_owned(),
                    ),
                    Ok(true) => (
                        "up",
                        format!("closed network via {} on {wan}", vpn.gateway.value),
                    ),
                };
                status::TunnelInfo {
                    kind: "ip-vpn".to_owned(),
                    state: state.to_owned(),
                    detail,
                    ..status::TunnelInfo::default()
                }
            }
            // `tunnel.info()` answered for these above.
            TunnelSection::WireGuard(_) | TunnelSection::Ipsec(_) => status::TunnelInfo {
                kind: "unknown".to_owned(),
                state: "down".to_owned(),
                detail: "the tunnel does not match the config in force".to_owned(),
                ..status::TunnelInfo::default()
            },
        }
    }

    /// The metrics endpoint to the plan in force (a listener that failed is retried).
    async fn apply_metrics(&mut self, endpoint: &mut metrics::Endpoint) {
        let settings = self.plan.metrics.as_ref().map(|m| metrics::Settings {
            listen: m.listen,
            allow: m.allow.clone(),
        });
        endpoint.apply(settings).await;
        self.metrics_problem = endpoint.problem();
    }

    /// The status page as the config in force says (started, moved or stopped).
    fn follow_status_page(&self, current: Option<StatusPage>) -> Option<StatusPage> {
        StatusPage::follow(
            current,
            plan::firewall::status_page(&self.config),
            self.config.control_socket(),
            self.options.config_path.clone(),
        )
    }

    async fn serve(&mut self, pending: Pending) {
        match pending.request {
            Request::Status => {
                let status = self.status().await;
                pending.answer(&status).await;
            }
            Request::Reload => {
                let (result, message) = self.reload(pending.peer_uid).await;
                pending
                    .answer(&serde_json::json!({ "result": result.as_str(), "message": message }))
                    .await;
            }
            Request::ReloadConfirm(_)
            | Request::Confirm
            | Request::History
            | Request::Rollback(_)
            | Request::Running => self.serve_change(pending).await,
        }
    }
}

pub async fn run(options: RunOptions) -> Result<(), RunError> {
    // What the daemon takes orders from must be its owner's alone: the config, its directory
    // and the state directory (saved rulesets, history, certificates, the local CA).
    let config_dir = options
        .config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for path in [
        config_dir,
        options.config_path.as_path(),
        &options.state_dir,
    ] {
        crate::files::refuse_writable_by_others(path)?;
    }
    std::fs::create_dir_all(&options.state_dir).map_err(|source| RunError::StateDir {
        path: options.state_dir.clone(),
        source,
    })?;
    // Listen before applying, so a signal during start-up is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let since = Instant::now();
    // A `reload --confirm` change whose deadline passed while the daemon was down is undone
    // before anything is read.
    let rolled_back = confirm::roll_back_expired_at_start(&options.state_dir);
    notify::status("reading the config and applying the firewall");
    let (config, source) = load(&options.config_path)?;
    let control = control::Server::bind(&config.control_socket()).await?;
    let plan = plan::plan(&config);
    let state_dir = options.state_dir.clone();
    let lang = options.lang;
    let mut daemon = Daemon {
        net: Net::connect()?,
        options,
        config,
        plan,
        tunnel: Tunnel::IpVpn,
        proxy: Proxy::default(),
        lan: Lan::default(),
        wan: Wan::default(),
        tunnel_problem: None,
        started: since,
        sysctl_problem: None,
        route_problems: Vec::new(),
        last_reload: None,
        pending: None,
        schedule: Schedule::open(&state_dir, lang),
        started_at: std::time::SystemTime::now(),
        reloads: Default::default(),
        tunnel_since: Default::default(),
        metrics_problem: None,
    };
    daemon.apply_firewall(&daemon.plan, &daemon.config, since)?;
    daemon.tunnel = Tunnel::start(&daemon.plan.tunnel).await;
    daemon.apply_net().await;
    daemon.proxy = Proxy::start(&daemon.plan).await;
    let mut metrics = metrics::Endpoint::default();
    daemon.apply_metrics(&mut metrics).await;
    let mut status_page = daemon.follow_status_page(None);
    info!(
        "running; SIGHUP or `oqs-edge reload` re-reads {}, `oqs-edge status` on {}",
        daemon.options.config_path.display(),
        daemon.config.control_socket().display()
    );
    daemon.started_history(&source, rolled_back);
    let mut report = notify::Report::default();
    let status = daemon.status().await;
    daemon
        .schedule
        .log_due(&status.certificates, std::time::SystemTime::now());
    notify::ready(&report.status(&status, &daemon.config));

    let mut tick = tokio::time::interval(notify::loop_interval(WATCH_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wan_poll = tokio::time::interval(WAN_POLL);
    let mut wan_settle: Option<Instant> = None;
    wan_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = confirm::until(daemon.pending_left());
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                daemon.reload(None).await;
                daemon.apply_metrics(&mut metrics).await;
            }
            _ = deadline => {
                daemon.roll_back_pending().await;
                daemon.apply_metrics(&mut metrics).await;
            }
            _ = tick.tick() => {
                status_page = daemon.follow_status_page(status_page.take());
                let firewall = daemon.watch().await;
                daemon.apply_metrics(&mut metrics).await;
                let status = daemon.status().await;
                daemon.schedule.log_due(&status.certificates, std::time::SystemTime::now());
                report.tick(firewall, &status, &daemon.config);
            }
            pending = control.next() => {
                daemon.serve(pending).await;
                daemon.apply_metrics(&mut metrics).await;
            }
            ask = metrics.next() => {
                // A scrape: the state as `status` shows it now.
                let _ = ask.send(daemon.status().await);
            }
            probe = daemon.tunnel.next_probe() => daemon.tunnel.probed(probe).await,
            _ = wan_poll.tick() => {
                if daemon.wan.changed() {
                    daemon.follow_wan().await;
                    wan_settle = Some(Instant::now() + WAN_SETTLE);
                } else if wan_settle.is_some_and(|until| Instant::now() < until)
                    && !daemon.route_problems.is_empty()
                {
                    // dhcpcd may record a lease a moment before the kernel holds its address:
                    // routes through the WAN are tried again until they take, for a while.
                    daemon.sync_routes().await;
                }
            }
        }
    }
    notify::stopping();
    info!(oqs_event = event::STOPPING; "stopping; the firewall stays in place (table inet oqs_edge)");
    drop(status_page);
    daemon.proxy.stop();
    daemon.lan.stop();
    daemon.wan.stop();
    daemon.tunnel.stop().await;
    Ok(())
}
