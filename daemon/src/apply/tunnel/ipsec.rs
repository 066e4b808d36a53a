//! IPsec/IKEv2 through strongSwan's charon, driven over VICI.
//!
//! IKE is charon's; oqs-edge owns one connection in it (`oqs-edge`, child `closed`) and
//! supervises it from a background task:
//!
//! 1. connect to `tunnel.ipsec.vici_socket`, retrying with backoff while it is absent;
//! 2. subscribe on that connection to `ike-updown`, `child-updown`, `ike-rekey`, `child-rekey`
//!    and `log` (VICI has no alert event: charon's failures are read from its log lines, see
//!    [`alerts`]);
//! 3. on a second connection, load the credentials and the connection and initiate it (its
//!    own third connection streams the initiation's `control-log`);
//! 4. follow the events; every [`TICK`] ask `list-sas` for the truth, and initiate again,
//!    with backoff, when charon has given up (an authentication failure is not retried by
//!    charon; an unanswered gateway is, without end: `keyingtries = 0`);
//! 5. when the WAN's leased address changes, see that the tunnel runs from the new one
//!    (`Driver::follow_wan`): MOBIKE moves it by itself; otherwise initiate from it at once.
//!
//! When charon goes away (its unit restarted), the VICI sockets fail: the task drops them and
//! goes back to 1, which loads the connection again, so the tunnel returns without the
//! operator. A reload changes charon only when the loaded section changed. Stopping oqs-edge
//! leaves charon and its SAs as they are; the firewall's kill switch stays in any case.
//!
//! rsvici's background reader spins on a closed socket and leaves pending requests waiting,
//! so every connection here watches its error stream and every request has a timeout.

mod alerts;
mod vici;

use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream, StreamExt as _};
use log::{debug, error, info, warn};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use alerts::Failure;
use vici::{Desired, IkeSa, Log, Reply, UpDown};

use rtnetlink::packet_route::route::RouteMessage;

use super::gateways::{Gateways, PreferredProbe, Probe};
use crate::apply::net::Net;
use crate::logging::event;
use crate::plan::failover::{HealthPlan, Switch};
use crate::plan::firewall::LIBIPSEC_INTERFACE;
use crate::plan::TunnelPlan;
use crate::status::TunnelInfo;

/// How often the task asks charon for the SAs (and retries an initiation that is due).
const TICK: Duration = Duration::from_secs(2);
/// Reconnecting to an absent VICI socket: from this...
const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// ...doubling to this: a restarted charon is found within a quarter second, for the cost of
/// four failed connects a second to a local socket while it is away.
const RECONNECT_MAX: Duration = Duration::from_millis(250);
/// Initiating again after charon gave up: from this, doubling to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A VICI request that takes longer means charon is stuck or gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an `initiate` streams its log to us; charon goes on trying after that.
const INITIATE_WAIT_MS: i32 = 30_000;
/// After the WAN's address changed, how long charon gets to move a working SA to the new
/// address itself (MOBIKE takes a round trip; its own re-authentication can wait behind an
/// exchange sent from the old address, for minutes) before oqs-edge initiates afresh.
const FOLLOW_GRACE: Duration = Duration::from_secs(1);
/// Without `tunnel.health`: how long the CHILD_SA may be down before its gateway is given up
/// for the next (and how long a backup serves before the preferred one is tried again).
const LOST_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum IpsecError {
    #[error("the tunnel plan is not IPsec")]
    NotIpsec,
    #[error("tunnel.ipsec.auth names no credentials: add `psk_file:` or `certificate:`")]
    NoCredentials,
    #[error("cannot read {path} ({key}): {source}")]
    Read {
        path: PathBuf,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("the pre-shared key file {path} (tunnel.ipsec.auth.psk_file) is unusable: {why}")]
    BadPsk { path: PathBuf, why: &'static str },
    #[error("{path} ({key}) holds no PEM {label}: give the PEM file your provider sent")]
    NotPem {
        path: PathBuf,
        key: &'static str,
        label: &'static str,
    },
}

/// What the task has seen; `info` turns it into words.
#[derive(Default)]
struct Observed {
    charon: Charon,
    /// charon refused the connection or a credential: its words.
    load_error: Option<String>,
    sa: Sa,
    /// Why the last attempt failed, until the tunnel is up again.
    failure: Option<Failure>,
    rekeys: u64,
}

#[derive(Default)]
enum Charon {
    #[default]
    NotYet,
    Reachable,
    Unreachable(String),
}

#[derive(Clone, Copy, Default, PartialEq)]
enum Sa {
    /// charon has no IKE_SA of ours.
    #[default]
    None,
    /// Negotiating, or the IKE_SA is up without its CHILD_SA.
    Connecting,
    /// The CHILD_SA is installed: traffic flows.
    Up { since: Instant },
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running IPsec tunnel: the background task and what it reports.
pub struct IpsecTunnel {
    /// What the task was given: the plan's connection to the active gateway.
    desired: Option<Arc<Desired>>,
    /// The plan's connection (to the preferred gateway), and the gateways in order.
    planned: Option<Arc<Desired>>,
    gateway_list: GatewayList,
    gateways: Box<Gateways>,
    /// Since when the CHILD_SA has not been up (without `health`, too long gives the gateway up).
    down_since: Option<Instant>,
    /// Why the plan's files could not be read at start (reported until a reload fixes it).
    start_error: Option<String>,
    shared: Shared,
    sender: Option<watch::Sender<Arc<Desired>>>,
    /// The WAN's leased addresses, each change handed to the task.
    wan: watch::Sender<Vec<IpAddr>>,
    task: Option<JoinHandle<()>>,
    /// charon's routes through ipsec0 (libipsec) as last seen under an up CHILD_SA.
    kept_routes: Vec<RouteMessage>,
}

/// The gateways of the plan in order of preference, (address, identity), and the probe.
#[derive(Clone, Debug, PartialEq)]
struct GatewayList {
    gateways: Vec<(String, String)>,
    health: Option<HealthPlan>,
}

impl GatewayList {
    fn of(plan: &TunnelPlan) -> GatewayList {
        let TunnelPlan::Ipsec {
            remote_address,
            remote_id,
            backup_gateways,
            health,
            ..
        } = plan
        else {
            return GatewayList {
                gateways: Vec::new(),
                health: None,
            };
        };
        let mut gateways = vec![(remote_address.clone(), remote_id.clone())];
        gateways.extend(
            backup_gateways
                .iter()
                .map(|g| (g.address.clone(), g.remote_id.clone())),
        );
        GatewayList {
            gateways,
            health: *health,
        }
    }

    /// The gateway choice; with `planned`, the preferred gateway is probed by an IKE_SA of
    /// its own while a backup carries the traffic.
    fn start(&self, planned: Option<&Desired>) -> Box<Gateways> {
        let names = self.gateways.iter().map(|(a, _)| a.clone()).collect();
        let preferred = match (planned, self.gateways.first()) {
            (Some(planned), Some((address, remote_id))) => {
                let probe = Arc::new(planned.probe_of(address, remote_id));
                let probe: PreferredProbe = Arc::new(move || Box::pin(ike_probe(probe.clone())));
                Some(probe)
            }
            _ => None,
        };
        Box::new(Gateways::new(names, self.health, LOST_AFTER, preferred))
    }
}

impl IpsecTunnel {
    pub async fn start(plan: &TunnelPlan) -> IpsecTunnel {
        let gateway_list = GatewayList::of(plan);
        let planned = Desired::from_plan(plan);
        let mut tunnel = IpsecTunnel {
            desired: None,
            planned: None,
            gateways: gateway_list.start(planned.as_ref().ok()),
            gateway_list,
            down_since: None,
            start_error: None,
            shared: Shared::default(),
            sender: None,
            wan: watch::channel(Vec::new()).0,
            task: None,
            kept_routes: Vec::new(),
        };
        match planned {
            Ok(desired) => {
                let desired = Arc::new(desired);
                tunnel.planned = Some(desired.clone());
                tunnel.spawn(desired);
            }
            Err(e) => {
                error!("IPsec: {e}; the tunnel stays down until a reload fixes it");
                tunnel.start_error = Some(e.to_string());
            }
        }
        tunnel
    }

    /// The next result of the health probe (never without `tunnel.health` and a backup).
    pub async fn next_probe(&mut self) -> Probe {
        self.gateways.next_probe().await
    }

    /// Feed a probe's result; switch gateways if it decides so.
    pub fn probed(&mut self, probe: Probe) {
        let decided = self.gateways.probed(probe);
        self.switch(decided);
    }

    /// On a switch, hand the task the connection to the next gateway: it loads it, closes the
    /// SA to the old one without waiting for it, and initiates. The kill switch and the routes
    /// stay: closed-network traffic waits or is dropped, never sent in clear.
    fn switch(&mut self, decided: Option<(Switch, String)>) {
        let (Some((switch, why)), Some(planned)) = (decided, &self.planned) else {
            return;
        };
        let Some((address, remote_id)) = self.gateway_list.gateways.get(switch.to) else {
            return;
        };
        warn!(
            oqs_event = event::GATEWAY_SWITCH,
            oqs_gateway = address.as_str();
            "IPsec: switching to gateway {address} ({}): {why}",
            if switch.to == 0 { "preferred" } else { "backup" }
        );
        let next = Arc::new(planned.for_gateway(address, remote_id));
        self.down_since = None;
        match &self.sender {
            Some(sender) if self.task.as_ref().is_some_and(|t| !t.is_finished()) => {
                let _ = sender.send(next.clone());
                self.desired = Some(next);
            }
            _ => self.spawn(next),
        }
    }

    fn spawn(&mut self, desired: Arc<Desired>) {
        let (sender, receiver) = watch::channel(desired.clone());
        *lock(&self.shared) = Observed::default();
        let driver = Driver {
            shared: self.shared.clone(),
            desired: receiver,
            retry: RETRY_MIN,
            next_attempt: Instant::now(),
            wan: self.wan.subscribe(),
            follow_at: None,
        };
        self.task = Some(tokio::spawn(driver.run()));
        self.sender = Some(sender);
        self.desired = Some(desired);
        self.start_error = None;
    }

    /// The WAN's leased addresses changed (now `addresses`): the task makes the tunnel follow
    /// (see `Driver::follow_wan`).
    pub fn wan_changed(&mut self, addresses: &[IpAddr]) {
        self.wan.send_replace(addresses.to_vec());
    }

    /// The credential files can be read and hold what they should.
    pub async fn check(plan: &TunnelPlan) -> Result<(), IpsecError> {
        Desired::from_plan(plan).map(|_| ())
    }

    /// Hand a changed section to the task; an unchanged one touches nothing. Changed
    /// gateways or probe start the choice again from the preferred gateway.
    pub async fn reload(&mut self, plan: &TunnelPlan) -> Result<(), IpsecError> {
        let planned = Desired::from_plan(plan)?;
        let gateway_list = GatewayList::of(plan);
        let gateways_changed = gateway_list != self.gateway_list;
        if gateways_changed || self.planned.as_deref() != Some(&planned) {
            self.gateways = gateway_list.start(Some(&planned));
            self.gateway_list = gateway_list;
        }
        let next = match self.gateway_list.gateways.get(self.gateways.active()) {
            Some((address, remote_id)) if self.gateways.active() != 0 => {
                planned.for_gateway(address, remote_id)
            }
            _ => planned.clone(),
        };
        self.planned = Some(Arc::new(planned));
        if self.desired.as_deref() == Some(&next) {
            debug!("IPsec: the tunnel section is unchanged; charon is left alone");
            return Ok(());
        }
        let next = Arc::new(next);
        match &self.sender {
            Some(sender) if self.task.as_ref().is_some_and(|t| !t.is_finished()) => {
                info!("IPsec: the tunnel section changed; loading it into charon again");
                let _ = sender.send(next.clone());
                self.desired = Some(next);
            }
            _ => self.spawn(next),
        }
        Ok(())
    }

    /// The task never ends on its own; should it have died, start it again. Without a probe,
    /// a gateway whose CHILD_SA has been down for [`LOST_AFTER`] is given up for the next.
    pub async fn watch(&mut self) {
        let up = matches!(lock(&self.shared).sa, Sa::Up { .. });
        let down_since = match (up, self.down_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        self.down_since = down_since;
        let lost = down_since.is_some_and(|t| t.elapsed() >= LOST_AFTER);
        let decided = self.gateways.step(lost);
        if decided.is_some() {
            self.down_since = None;
        }
        self.switch(decided);
        if self.task.as_ref().is_some_and(|t| t.is_finished()) {
            if let Some(desired) = self.desired.clone() {
                error!("IPsec: the VICI task ended; starting it again");
                self.spawn(desired);
            }
        }
    }

    /// With the libipsec dataplane, charon routes the remote traffic selectors through
    /// ipsec0 in its own table, and adds a route only when it installs a CHILD_SA: one deleted
    /// under a live SA (by hand, by another tool) cut the closed network off while `status`
    /// said up. Called by the watch: puts such a route back as charon had it.
    pub async fn keep_routes(&mut self, net: &Net, plan: &TunnelPlan) {
        let TunnelPlan::Ipsec {
            dataplane,
            remote_ts,
            ..
        } = plan
        else {
            return;
        };
        if dataplane != "libipsec" {
            return;
        }
        let up = matches!(lock(&self.shared).sa, Sa::Up { .. });
        match net
            .keep_foreign_routes(LIBIPSEC_INTERFACE, remote_ts, up, &mut self.kept_routes)
            .await
        {
            Ok(kept) => {
                for destination in kept.seen {
                    info!(
                        "IPsec: charon routes {destination} through {LIBIPSEC_INTERFACE}; the watch keeps that route while the CHILD_SA is up"
                    );
                }
                for destination in kept.put_back {
                    warn!(
                        oqs_event = event::ROUTE_ADDED;
                        "IPsec: charon's route to {destination} through {LIBIPSEC_INTERFACE} was gone under an up CHILD_SA; put back"
                    );
                }
            }
            Err(e) => {
                warn!("IPsec: cannot check charon's routes through {LIBIPSEC_INTERFACE}: {e}")
            }
        }
    }

    pub async fn info(&self) -> TunnelInfo {
        let (state, detail) = self.describe();
        TunnelInfo {
            kind: "ipsec".to_owned(),
            state: state.to_owned(),
            detail,
            gateway: self.gateways.info(),
            ..TunnelInfo::default()
        }
    }

    fn describe(&self) -> (&'static str, String) {
        let Some(d) = &self.desired else {
            return (
                "down",
                format!(
                    "{}; fix it and run `oqs-edge reload`",
                    self.start_error.as_deref().unwrap_or("not started")
                ),
            );
        };
        let o = lock(&self.shared);
        let socket = d.socket.display();
        match (&o.charon, &o.load_error, o.sa, &o.failure) {
            (Charon::NotYet, ..) => ("connecting", format!("connecting to charon on {socket}")),
            (Charon::Unreachable(why), ..) => (
                "down",
                format!(
                    "strongSwan's charon does not answer on {socket} ({why}); oqs-edge loads its connection again as soon as charon is back: is the strongswan service running?"
                ),
            ),
            (_, Some(why), ..) => (
                "down",
                format!("charon refused the connection {}: {why}", d.name),
            ),
            (_, _, Sa::Up { since }, _) => {
                let up = humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
                let rekeys = match o.rekeys {
                    0 => String::new(),
                    1 => ", rekeyed once".to_owned(),
                    n => format!(", rekeyed {n} times"),
                };
                (
                    "up",
                    format!(
                        "IKEv2 with {} ({}): {} <-> {} up {up}{rekeys}",
                        d.remote_address,
                        d.remote_id,
                        d.local_ts(),
                        d.remote_ts()
                    ),
                )
            }
            (_, _, _, Some(failure)) => {
                ("down", d.describe(failure))
            }
            _ => (
                "connecting",
                format!(
                    "negotiating IKEv2 with {} ({})",
                    d.remote_address, d.remote_id
                ),
            ),
        }
    }

    /// Leave charon and its SAs as they are: only oqs-edge's watching stops.
    pub async fn stop(mut self) {
        self.sender = None;
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(d) = &self.desired {
            info!(
                "IPsec: leaving charon's connection {} as it is (the firewall's kill switch stays)",
                d.name
            );
        }
    }
}

/// Why a session with charon ended.
enum Ended {
    /// The daemon is stopping.
    Stopped,
    /// The VICI connection failed; `connected`: it had been up.
    Lost { why: String, connected: bool },
}

/// What the event connection and the initiation tasks deliver.
enum Event {
    IkeUpDown(UpDown),
    ChildUpDown(UpDown),
    Rekey(
        &'static str,
        std::collections::HashMap<String, serde::de::IgnoredAny>,
    ),
    Log(Log),
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, rsvici::Error>> + Send>>;

/// Notes from an initiation's own connection.
enum Initiation {
    Log(String),
    Done(Result<(), String>),
}

struct Driver {
    shared: Shared,
    desired: watch::Receiver<Arc<Desired>>,
    /// The wait before initiating again after charon gave up.
    retry: Duration,
    next_attempt: Instant,
    /// The WAN's leased addresses, from the supervisor.
    wan: watch::Receiver<Vec<IpAddr>>,
    /// When to look again whether charon moved the SA to the WAN's new address.
    follow_at: Option<tokio::time::Instant>,
}

impl Driver {
    async fn run(mut self) {
        let mut delay = RECONNECT_MIN;
        let mut said_unreachable = false;
        loop {
            match self.session().await {
                Ended::Stopped => return,
                Ended::Lost { why, connected } => {
                    if connected {
                        warn!("IPsec: lost charon's VICI socket ({why}); reconnecting");
                        delay = RECONNECT_MIN;
                        said_unreachable = false;
                    } else if !said_unreachable {
                        warn!("IPsec: {why}; retrying until charon answers");
                        said_unreachable = true;
                    }
                    let mut o = lock(&self.shared);
                    o.charon = Charon::Unreachable(why);
                    o.sa = Sa::None;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                changed = self.desired.changed() => if changed.is_err() { return },
            }
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }

    fn set(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut lock(&self.shared));
    }

    async fn session(&mut self) -> Ended {
        let mut desired = self.desired.borrow_and_update().clone();
        let lost = |what: &str, e: &dyn std::fmt::Display, connected: bool| Ended::Lost {
            why: format!("{what} {}: {e}", desired.socket.display()),
            connected,
        };
        let mut events = match rsvici::unix::connect(&desired.socket).await {
            Ok(c) => c,
            Err(e) => return lost("cannot connect to", &e, false),
        };
        let mut commands = match rsvici::unix::connect(&desired.socket).await {
            Ok(c) => c,
            Err(e) => return lost("cannot connect to", &e, false),
        };
        let mut event_errors = events.listen_for_errors();
        let mut command_errors = commands.listen_for_errors();
        let mut stream = subscribe(&mut events, &desired.name);
        // Register the subscriptions before initiating (their first poll sends them), and
        // let one request on the same connection go round so charon has taken them.
        if let Ok(Some(Ok(event))) =
            tokio::time::timeout(Duration::from_millis(20), stream.next()).await
        {
            self.on_event(event, &desired);
        }
        if let Err(e) = request::<(), serde::de::IgnoredAny>(&mut events, "version", ()).await {
            return lost("no answer on", &e, false);
        }
        info!("IPsec: connected to charon on {}", desired.socket.display());
        self.set(|o| o.charon = Charon::Reachable);

        let (notes_tx, mut notes) = mpsc::channel(64);
        let mut initiation: Option<JoinHandle<()>> = None;
        let result = 'session: {
            if let Err(e) = self.load(&mut commands, &desired).await {
                break 'session e;
            }
            self.next_attempt = Instant::now();
            if let Err(e) = self
                .sync_and_initiate(&mut commands, &desired, &mut initiation, &notes_tx)
                .await
            {
                break 'session e;
            }
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let follow_at = self.follow_at;
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(event)) => self.on_event(event, &desired),
                        Some(Err(e)) if e.is_data() => debug!("IPsec: unreadable VICI event: {e}"),
                        Some(Err(e)) => break 'session e.to_string(),
                        None => break 'session "the event stream ended".to_owned(),
                    },
                    Some(e) = event_errors.next() => if e.is_io() || e.is_closed() {
                        break 'session e.to_string();
                    },
                    Some(e) = command_errors.next() => if e.is_io() || e.is_closed() {
                        break 'session e.to_string();
                    },
                    Some(note) = notes.recv() => match note {
                        Initiation::Log(msg) => self.on_log(&msg, &desired),
                        Initiation::Done(Ok(())) => debug!("IPsec: initiate returned"),
                        Initiation::Done(Err(e)) => debug!("IPsec: initiate: {e}"),
                    },
                    changed = self.desired.changed() => {
                        if changed.is_err() {
                            if let Some(task) = initiation.take() { task.abort(); }
                            return Ended::Stopped;
                        }
                        let next = self.desired.borrow_and_update().clone();
                        if next.socket != desired.socket {
                            break 'session format!("the VICI socket is now {}", next.socket.display());
                        }
                        // Another gateway: the one given up is not waited for.
                        let moved = next.remote_address != desired.remote_address;
                        desired = next;
                        if let Err(e) = self.replace(&mut commands, &desired, &mut initiation, &notes_tx, moved).await {
                            break 'session e;
                        }
                    },
                    _ = tick.tick() => {
                        if let Err(e) = self.sync_and_initiate(&mut commands, &desired, &mut initiation, &notes_tx).await {
                            break 'session e;
                        }
                    },
                    Ok(()) = self.wan.changed() => {
                        let addresses = self.wan.borrow_and_update().clone();
                        if let Err(e) = self.follow_wan(&mut commands, &desired, &mut initiation, &notes_tx, &addresses, true).await {
                            break 'session e;
                        }
                    },
                    _ = tokio::time::sleep_until(follow_at.unwrap_or_else(tokio::time::Instant::now)), if follow_at.is_some() => {
                        self.follow_at = None;
                        let addresses = self.wan.borrow().clone();
                        if let Err(e) = self.follow_wan(&mut commands, &desired, &mut initiation, &notes_tx, &addresses, false).await {
                            break 'session e;
                        }
                    },
                }
            }
        };
        if let Some(task) = initiation.take() {
            task.abort();
        }
        Ended::Lost {
            why: format!("VICI on {}: {result}", desired.socket.display()),
            connected: true,
        }
    }

    /// Credentials first, then the connection that uses them. A refusal is charon's answer
    /// (kept for `status`), not a lost socket.
    async fn load(&mut self, c: &mut rsvici::Client, d: &Desired) -> Result<(), String> {
        let refused = load_all(c, d).await?;
        if refused.is_empty() {
            info!(
                "IPsec: loaded connection {} (IKEv2 to {}, {} <-> {}) into charon",
                d.name,
                d.remote_address,
                d.local_ts(),
                d.remote_ts()
            );
            self.set(|o| o.load_error = None);
        } else {
            let why = refused.join("; ");
            error!("IPsec: charon refused {}: {why}", d.name);
            self.set(|o| o.load_error = Some(why));
        }
        Ok(())
    }

    /// A changed section (or another gateway): load it, close the SA built on the old one
    /// (`force`: without waiting for the old gateway), initiate the new.
    async fn replace(
        &mut self,
        c: &mut rsvici::Client,
        d: &Desired,
        initiation: &mut Option<JoinHandle<()>>,
        notes: &mpsc::Sender<Initiation>,
        force: bool,
    ) -> Result<(), String> {
        self.load(c, d).await?;
        self.restart(
            c,
            d,
            initiation,
            notes,
            if force { 500 } else { 3000 },
            force,
        )
        .await
    }

    /// The WAN's address changed. An IKE_SA established from one of the new `addresses`, with
    /// no exchange pending, has followed; a working one still on the old address is left to
    /// charon for [`FOLLOW_GRACE`] when `patient` (MOBIKE moves it in a round trip). Anything
    /// else (no SA, an attempt or an SA on the old address or on none) is closed without
    /// waiting for the gateway, which could only answer the old address, and initiated from
    /// the new one at once: charon alone would first wait out its retransmits.
    async fn follow_wan(
        &mut self,
        c: &mut rsvici::Client,
        d: &Desired,
        initiation: &mut Option<JoinHandle<()>>,
        notes: &mpsc::Sender<Initiation>,
        addresses: &[IpAddr],
        patient: bool,
    ) -> Result<(), String> {
        // No address yet: nothing to initiate from (charon keeps trying).
        if addresses.is_empty() {
            return Ok(());
        }
        let sas = list_sas(c, &d.name).await?;
        if sas.iter().any(|sa| sa.followed(addresses)) {
            debug!("IPsec: the IKE_SA already runs from the WAN's new address");
            return Ok(());
        }
        if patient && sas.iter().any(IkeSa::child_installed) {
            self.follow_at = Some(tokio::time::Instant::now() + FOLLOW_GRACE);
            return Ok(());
        }
        let list = addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        info!(
            "IPsec: the WAN's address is now {list}; initiating {} to {} from it at once (what charon still had on the old address, or on none, is closed without waiting for the gateway)",
            d.name, d.remote_address
        );
        self.follow_at = None;
        self.restart(c, d, initiation, notes, 0, true).await
    }

    /// Close our SAs (`force`: without waiting for the gateway's answer longer than
    /// `timeout_ms`) and initiate at once.
    async fn restart(
        &mut self,
        c: &mut rsvici::Client,
        d: &Desired,
        initiation: &mut Option<JoinHandle<()>>,
        notes: &mpsc::Sender<Initiation>,
        timeout_ms: i32,
        force: bool,
    ) -> Result<(), String> {
        if let Some(task) = initiation.take() {
            task.abort();
        }
        let terminate = vici::Terminate {
            ike: &d.name,
            timeout: timeout_ms,
            force,
        };
        // "no matching SAs" when there was none: nothing to close.
        match request::<_, Reply>(c, "terminate", terminate).await {
            Ok(_) => {}
            Err(e) if e.is_command_failed() || e.is_data() => {}
            Err(e) => return Err(e.to_string()),
        }
        self.set(|o| {
            o.sa = Sa::None;
            o.failure = None;
        });
        self.retry = RETRY_MIN;
        self.next_attempt = Instant::now();
        self.sync_and_initiate(c, d, initiation, notes).await
    }

    /// Ask charon for our SAs; initiate when there is none and an attempt is due.
    async fn sync_and_initiate(
        &mut self,
        c: &mut rsvici::Client,
        d: &Desired,
        initiation: &mut Option<JoinHandle<()>>,
        notes: &mpsc::Sender<Initiation>,
    ) -> Result<(), String> {
        let sas = list_sas(c, &d.name).await?;
        let now = match sas.iter().find(|sa| sa.child_installed()) {
            Some(_) => match lock(&self.shared).sa {
                up @ Sa::Up { .. } => up,
                _ => Sa::Up {
                    since: Instant::now(),
                },
            },
            None if sas.is_empty() => Sa::None,
            None => Sa::Connecting,
        };
        self.become_(now, d);
        let loaded = lock(&self.shared).load_error.is_none();
        let busy = initiation.as_ref().is_some_and(|t| !t.is_finished());
        if now == Sa::None && loaded && !busy && Instant::now() >= self.next_attempt {
            *initiation = Some(spawn_initiate(d, notes.clone()));
            self.next_attempt = Instant::now() + self.retry;
            self.retry = (self.retry * 2).min(RETRY_MAX);
        }
        Ok(())
    }

    /// Record a new SA state, logging the edges.
    fn become_(&mut self, now: Sa, d: &Desired) {
        let mut o = lock(&self.shared);
        match (o.sa, now) {
            (Sa::Up { .. }, Sa::Up { .. }) => {}
            (_, Sa::Up { .. }) => {
                info!(
                    "IPsec: tunnel up: {} <-> {} through {}",
                    d.local_ts(),
                    d.remote_ts(),
                    d.remote_address
                );
                o.failure = None;
                self.retry = RETRY_MIN;
            }
            (Sa::Up { .. }, _) => warn!(
                "IPsec: tunnel down (CHILD_SA with {} gone); charon or oqs-edge initiates it again",
                d.remote_address
            ),
            _ => {}
        }
        o.sa = now;
    }

    fn on_event(&mut self, event: Event, d: &Desired) {
        match event {
            Event::IkeUpDown(ev) => {
                if let Some(sa) = ev.sas.get(&d.name) {
                    debug!("IPsec: ike-updown up={} state {}", ev.is_up(), sa.state);
                    if !ev.is_up() {
                        self.become_(Sa::None, d);
                    }
                }
            }
            Event::ChildUpDown(ev) => {
                if let Some(sa) = ev.sas.get(&d.name) {
                    if ev.is_up() && sa.child_installed() {
                        self.become_(
                            Sa::Up {
                                since: Instant::now(),
                            },
                            d,
                        );
                    } else if !ev.is_up() {
                        self.become_(Sa::Connecting, d);
                    }
                }
            }
            Event::Rekey(what, sas) => {
                if sas.contains_key(&d.name) {
                    info!("IPsec: {what} rekeyed (the tunnel stays up)");
                    self.set(|o| o.rekeys += 1);
                }
            }
            Event::Log(log) => {
                if log.ikesa_name.as_deref().is_none_or(|n| n == d.name) {
                    self.on_log(&log.msg, d);
                }
            }
        }
    }

    fn on_log(&mut self, msg: &str, d: &Desired) {
        let Some(failure) = alerts::classify(msg) else {
            return;
        };
        let mut o = lock(&self.shared);
        if matches!(o.sa, Sa::Up { .. }) || !failure.is_worth_reporting() {
            debug!("IPsec: charon: {msg}");
            return;
        }
        if o.failure.as_ref() != Some(&failure) {
            warn!("IPsec: {} (charon: {msg})", d.describe(&failure));
        }
        o.failure = Some(failure);
    }
}

/// Load `d`'s credentials and connection; returns what charon refused, in its words.
async fn load_all(c: &mut rsvici::Client, d: &Desired) -> Result<Vec<String>, String> {
    let mut refused = Vec::new();
    let mut note = |what: &str, reply: Result<Reply, rsvici::Error>| match reply {
        Ok(r) if r.success => Ok(()),
        Ok(r) => {
            refused.push(format!(
                "{what}: {}",
                r.errmsg.unwrap_or_else(|| "refused".to_owned())
            ));
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    };
    match &d.credentials {
        vici::Credentials::Psk(key) => {
            note("load-shared", request(c, "load-shared", key).await)?;
        }
        vici::Credentials::Certificate { cert, ca, key } => {
            let cert_msg = vici::LoadCert {
                kind: "X509",
                flag: "NONE",
                data: cert,
            };
            note(
                "load-cert (certificate)",
                request(c, "load-cert", cert_msg).await,
            )?;
            let ca_msg = vici::LoadCert {
                kind: "X509",
                flag: "CA",
                data: ca,
            };
            note("load-cert (CA)", request(c, "load-cert", ca_msg).await)?;
            let key_msg = vici::LoadKey {
                kind: "any",
                data: key,
            };
            note("load-key", request(c, "load-key", key_msg).await)?;
        }
    }
    note("load-conn", request(c, "load-conn", d.load_conn()).await)?;
    Ok(refused)
}

/// How long the preferred gateway's probe waits for its IKE_SA.
const IKE_PROBE_WAIT_MS: i32 = 5_000;

/// Whether `probe` (see [`Desired::probe_of`]) gets an IKE_SA with its gateway: charon
/// initiates it on a connection of its own, without a CHILD_SA (RFC 6023), so no traffic
/// moves; it is closed again at once.
async fn ike_probe(probe: Arc<Desired>) -> bool {
    let Ok(mut c) = rsvici::unix::connect(&probe.socket).await else {
        return false;
    };
    match load_all(&mut c, &probe).await {
        Ok(refused) if refused.is_empty() => {}
        Ok(refused) => {
            debug!(
                "IPsec: probe of {}: charon refused {refused:?}",
                probe.remote_address
            );
            return false;
        }
        Err(_) => return false,
    }
    let initiate = vici::Initiate {
        child: None,
        ike: vici::PROBE,
        timeout: IKE_PROBE_WAIT_MS,
        init_limits: false,
    };
    let up = matches!(
        request::<_, Reply>(&mut c, "initiate", initiate).await,
        Ok(Reply { success: true, .. })
    );
    let terminate = vici::Terminate {
        ike: vici::PROBE,
        timeout: 500,
        force: true,
    };
    let _ = request::<_, Reply>(&mut c, "terminate", terminate).await;
    debug!(
        "IPsec: probe of the preferred gateway {}: {}",
        probe.remote_address,
        if up {
            "IKE_SA established"
        } else {
            "no IKE_SA"
        }
    );
    up
}

/// One request with a timeout; a command charon refused stays a [`Reply`] to read.
async fn request<T: serde::Serialize, U: serde::de::DeserializeOwned>(
    c: &mut rsvici::Client,
    cmd: &str,
    msg: T,
) -> Result<U, rsvici::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, c.request(cmd, msg)).await {
        Ok(reply) => reply,
        Err(_) => Err(rsvici::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("charon did not answer `{cmd}` within {REQUEST_TIMEOUT:?}"),
        ))),
    }
}

async fn list_sas(c: &mut rsvici::Client, name: &str) -> Result<Vec<IkeSa>, String> {
    let query = vici::ListSas {
        ike: name,
        noblock: true,
    };
    let listing = c
        .stream_request::<_, std::collections::HashMap<String, IkeSa>>("list-sas", "list-sa", query)
        .collect::<Vec<_>>();
    let items = tokio::time::timeout(REQUEST_TIMEOUT, listing)
        .await
        .map_err(|_| format!("charon did not answer `list-sas` within {REQUEST_TIMEOUT:?}"))?;
    let mut sas = Vec::new();
    for item in items {
        let mut map = item.map_err(|e| format!("list-sas: {e}"))?;
        if let Some(sa) = map.remove(name) {
            sas.push(sa);
        }
    }
    Ok(sas)
}

/// The event subscriptions on one connection, merged.
fn subscribe(c: &mut rsvici::Client, _name: &str) -> Events {
    let streams: Vec<Events> = vec![
        Box::pin(
            c.subscribe::<UpDown>("ike-updown")
                .map(|r| r.map(Event::IkeUpDown)),
        ),
        Box::pin(
            c.subscribe::<UpDown>("child-updown")
                .map(|r| r.map(Event::ChildUpDown)),
        ),
        Box::pin(
            c.subscribe("ike-rekey")
                .map(|r| r.map(|m| Event::Rekey("IKE_SA", m))),
        ),
        Box::pin(
            c.subscribe("child-rekey")
                .map(|r| r.map(|m| Event::Rekey("CHILD_SA", m))),
        ),
        Box::pin(c.subscribe::<Log>("log").map(|r| r.map(Event::Log))),
    ];
    Box::pin(stream::select_all(streams))
}

/// Initiate on a connection of its own, streaming charon's `control-log` for this attempt to
/// the driver; charon answers when the CHILD_SA is up, failed, or after [`INITIATE_WAIT_MS`].
fn spawn_initiate(d: &Desired, notes: mpsc::Sender<Initiation>) -> JoinHandle<()> {
    let socket = d.socket.clone();
    let name = d.name.clone();
    info!("IPsec: initiating {name} to {}", d.remote_address);
    tokio::spawn(async move {
        let done = match rsvici::unix::connect(&socket).await {
            Err(e) => Err(format!("cannot connect to {}: {e}", socket.display())),
            Ok(mut client) => {
                let mut errors = client.listen_for_errors();
                let msg = vici::Initiate {
                    child: Some(vici::CHILD),
                    ike: &name,
                    timeout: INITIATE_WAIT_MS,
                    init_limits: false,
                };
                let log = client.stream_request::<_, Log>("initiate", "control-log", msg);
                let mut log = std::pin::pin!(log);
                let deadline =
                    tokio::time::sleep(Duration::from_millis(INITIATE_WAIT_MS as u64 + 5000));
                let mut deadline = std::pin::pin!(deadline);
                loop {
                    tokio::select! {
                        item = log.next() => match item {
                            Some(Ok(line)) => { let _ = notes.send(Initiation::Log(line.msg)).await; }
                            Some(Err(e)) => break Err(e.to_string()),
                            None => break Ok(()),
                        },
                        Some(e) = errors.next() => if e.is_io() || e.is_closed() { break Err(e.to_string()) },
                        _ = &mut deadline => break Err("no answer from charon".to_owned()),
                    }
                }
            }
        };
        let _ = notes.send(Initiation::Done(done)).await;
    })
}
