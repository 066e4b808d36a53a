//! WireGuard inside the daemon: boringtun's `noise::Tunn` for the protocol and the crypto, and a
//! data path of our own around it (`datapath.rs`). No kernel module, no separate process.
//!
//! Why our own data path and not boringtun's `device` (which this applier used before): `device`
//! moves one packet per syscall, and measured 0.96× wireguard-go in the lab (netns-tests/
//! BENCHMARKS.md, single-stream iperf3 through the tunnel, 5 × 10 s). wireguard-go (even
//! Debian's, without offloads) spends its CPU on the same per-packet crypto, so the way past it
//! is fewer syscalls: a TUN with offload (tun-rs: one read brings a TCP super-segment of up to
//! 64 KiB, split into MTU-sized packets; GRO coalesces the way back), UDP GSO sends and
//! recvmmsg with UDP GRO (quinn-udp). With that, the same benchmark gave 1.59×, 1.81×, and
//! 1.73× and 1.58× for the final build, at ~13 MiB RSS under load (`device`: 8.7 MiB).
//!
//! Why dedicated threads (one per direction, one for timers) and not tasks on the daemon's
//! runtime: the same loops as tokio tasks on the daemon's current-thread runtime (tokio's
//! AsyncFd instead of poll) measured 1.53× against 1.59×/1.81× for threads, and they would
//! share one core with the supervisor (status, reloads, the firewall). On 2 cores a thread per
//! direction lets encryption and decryption run side by side. One `Tunn` behind a mutex, taken
//! once per batch: the two directions rarely wait for each other (a bulk flow one way is met
//! by ACKs the other way).
//!
//! What `device` did that is done here: boringtun's timers every 100 ms (handshake retries,
//! keepalives, rekeying), the queued packets flushed after a handshake, roaming (authenticated
//! data from a new address moves the endpoint), decrypted packets dropped unless their source is
//! in the allowed IPs (the closed prefixes). More than `device` did: a handshake starts at once
//! (at start and for a changed peer) instead of on the first packet, and when data goes
//! unanswered for 2 s a new handshake starts (at most one initiation per REKEY_TIMEOUT, 5 s, as
//! WireGuard allows) instead of WireGuard's 15 s: recovery after the concentrator restarts
//! went from 10.3 s to 0–5.7 s (4 lab runs; the wait for our next initiation). Statistics are
//! atomics the threads update once per batch.
//!
//! Reload: a changed peer (key, endpoint, keepalive, allowed IPs) or private key gets a fresh
//! `Tunn` and a handshake on the running interface; a changed listen port (or the endpoint's
//! address family) a new socket and threads; the TUN is kept. When the daemon dies, the TUN
//! goes with it, and the firewall's kill switch (keyed to this interface) drops what would leak.

mod datapath;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use log::{info, warn};

use crate::logging::event;

use super::gateways::{Gateways, Probe};
use crate::apply::net::{Net, NetError};
use crate::config::scalar::parse_wg_key;
use crate::plan::diff::{tunnel_change, TunnelChange};
use crate::plan::failover::HealthPlan;
use crate::plan::TunnelPlan;
use crate::status::TunnelInfo;
use datapath::{Datapath, PeerConfig};

/// WireGuard's own MTU on a 1500-byte link: 1500 - 80 bytes of IPv6 + UDP + WireGuard header.
const MTU: u32 = 1420;
/// After this long without a handshake no data can flow (WireGuard's Reject-After-Time): the
/// tunnel is down.
const STALE_AFTER: Duration = Duration::from_secs(180);
/// While the tunnel is not up, the endpoint's name is looked up again this often: the
/// concentrator may have moved.
const RERESOLVE_EVERY: Duration = Duration::from_secs(30);

const KEY_FILE: &str = "tunnel.wireguard.private_key_file";
const PEER_KEY: &str = "tunnel.wireguard.peer.public_key";
const ENDPOINT: &str = "tunnel.wireguard.peer.endpoint";

#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {
    #[error("cannot read the WireGuard private key {path} ({KEY_FILE}): {source}")]
    KeyRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the WireGuard private key {path} ({KEY_FILE}) can be read by others (mode {mode:04o}); run: chmod 600 {path}")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("{path} ({KEY_FILE}) is not a WireGuard private key: {why}; make one with `oqs-edge wireguard keygen --out {path}`")]
    KeyFormat { path: PathBuf, why: String },
    #[error("the peer's public key ({PEER_KEY}) is not a WireGuard key: {0}")]
    PeerKey(String),
    #[error("the endpoint {endpoint} ({ENDPOINT}) does not resolve: {why}; check the name and the router's DNS")]
    Resolve { endpoint: String, why: String },
    #[error("cannot create the WireGuard interface {interface}: {why} (oqs-edge needs CAP_NET_ADMIN and /dev/net/tun)")]
    Device { interface: String, why: String },
    #[error("WireGuard interface {interface}: {source}")]
    Net {
        interface: String,
        source: Box<NetError>,
    },
    #[error("{path} already exists; keygen does not overwrite a key (remove it first if you mean to replace it)")]
    KeyExists { path: PathBuf },
    #[error("cannot write the key {path}: {source}")]
    KeyWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness for a new key")]
    Random,
}

/// The part of the plan this applier acts on, compared field by field on a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    interface: String,
    address: IpNet,
    private_key_file: PathBuf,
    listen_port: Option<u16>,
    peer: PeerSpec,
    /// `backup_peers` (issue 21), same allowed IPs as `peer`.
    backups: Vec<PeerSpec>,
    health: Option<HealthPlan>,
}

impl Spec {
    /// `peer` then the backups, in order of preference.
    fn gateways(&self) -> Box<Gateways> {
        let names = std::iter::once(&self.peer)
            .chain(&self.backups)
            .map(|p| p.endpoint.clone())
            .collect();
        // Without a probe, fail back after Reject-After-Time.
        Box::new(Gateways::new(names, self.health, STALE_AFTER, None))
    }

    /// The peer at `index` of the gateways: 0 is `peer`, then the backups.
    fn gateway(&self, index: usize) -> Option<&PeerSpec> {
        match index {
            0 => Some(&self.peer),
            i => self.backups.get(i - 1),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PeerSpec {
    public_key: String,
    endpoint: String,
    keepalive_secs: Option<u64>,
    allowed_ips: Vec<IpNet>,
}

impl Spec {
    fn of(plan: &TunnelPlan) -> Option<Spec> {
        match plan {
            TunnelPlan::Wireguard {
                interface,
                address,
                private_key_file,
                listen_port,
                peer_public_key,
                peer_endpoint,
                persistent_keepalive_secs,
                allowed_ips,
                backup_peers,
                health,
            } => Some(Spec {
                interface: interface.clone(),
                address: *address,
                private_key_file: private_key_file.clone(),
                listen_port: *listen_port,
                peer: PeerSpec {
                    public_key: peer_public_key.clone(),
                    endpoint: peer_endpoint.clone(),
                    keepalive_secs: *persistent_keepalive_secs,
                    allowed_ips: allowed_ips.clone(),
                },
                backups: backup_peers
                    .iter()
                    .map(|b| PeerSpec {
                        public_key: b.public_key.clone(),
                        endpoint: b.endpoint.clone(),
                        keepalive_secs: b.persistent_keepalive_secs,
                        allowed_ips: allowed_ips.clone(),
                    })
                    .collect(),
                health: *health,
            }),
            _ => None,
        }
    }
}

/// Read a private key file: mode 0600 (or stricter), base64 of 32 bytes.
pub fn read_private_key(path: &Path) -> Result<StaticSecret, WireGuardError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read_error = |source| WireGuardError::KeyRead {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WireGuardError::KeyMode {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let bytes = parse_wg_key(&text).map_err(|why| WireGuardError::KeyFormat {
        path: path.to_owned(),
        why,
    })?;
    Ok(StaticSecret::from(bytes))
}

fn public_of(secret: &StaticSecret) -> String {
    base64::engine::general_purpose::STANDARD.encode(PublicKey::from(secret).as_bytes())
}

/// `oqs-edge wireguard keygen`: a new private key in `out` (mode 0600, never over an existing
/// file); returns the public key (base64) for the concentrator's operator.
pub fn keygen(out: &Path) -> Result<String, WireGuardError> {
    use ring::rand::SecureRandom as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| WireGuardError::Random)?;
    // Clamped as `wg genkey` writes it (X25519 clamps on use anyway).
    bytes[0] &= 248;
    bytes[31] = (bytes[31] & 127) | 64;
    let secret = StaticSecret::from(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => WireGuardError::KeyExists {
                path: out.to_owned(),
            },
            _ => WireGuardError::KeyWrite {
                path: out.to_owned(),
                source,
            },
        })?;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| WireGuardError::KeyWrite {
            path: out.to_owned(),
            source,
        })?;
    Ok(public_of(&secret))
}

/// The endpoint's first address. An IP:port needs no lookup.
async fn resolve(endpoint: &str) -> Result<SocketAddr, WireGuardError> {
    let failed = |why: String| WireGuardError::Resolve {
        endpoint: endpoint.to_owned(),
        why,
    };
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| failed(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| failed("the name has no address".to_owned()))
}

/// What the data path needs of the configured peer.
fn peer_config(
    peer: &PeerSpec,
    secret: &StaticSecret,
    public_key: [u8; 32],
    endpoint: SocketAddr,
) -> PeerConfig {
    PeerConfig {
        secret: secret.clone(),
        public_key,
        keepalive_secs: peer.keepalive_secs,
        endpoint,
        allowed_ips: peer.allowed_ips.clone(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Up,
    Down,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Up => "up",
            State::Down => "down",
        }
    }

    /// `up` while the last handshake is recent, `connecting` before the first, `down` after.
    fn judge(handshake_age: Option<Duration>) -> State {
        match handshake_age {
            None => State::Connecting,
            Some(age) if age <= STALE_AFTER => State::Up,
            Some(_) => State::Down,
        }
    }
}

/// The running tunnel.
pub struct WireGuardTunnel {
    // Boxed: the supervisor's `Tunnel` enum stays small.
    spec: Box<Spec>,
    /// The plan in force: a reload decides against it with `plan::diff::tunnel_change`, the
    /// decision `oqs-edge diff` shows.
    planned: Box<TunnelPlan>,
    device: Option<Datapath>,
    /// Why the device is not running (or not configured), when it is not.
    problem: Option<String>,
    net: Option<Net>,
    /// The public key of the private key in force (to tell a changed key file).
    own_public: Option<String>,
    /// The endpoint address the peer was given, and when the name was last looked up.
    endpoint: Option<SocketAddr>,
    resolved_at: Option<Instant>,
    /// The state last logged.
    logged: Option<State>,
    /// Which of `peer` and `backup_peers` is in use (issue 21).
    gateways: Box<Gateways>,
}

impl WireGuardTunnel {
    pub async fn start(plan: &TunnelPlan) -> WireGuardTunnel {
        let spec = Box::new(Spec::of(plan).unwrap_or_else(|| Spec {
            interface: String::new(),
            address: IpNet::default(),
            private_key_file: PathBuf::new(),
            listen_port: None,
            peer: PeerSpec {
                public_key: String::new(),
                endpoint: String::new(),
                keepalive_secs: None,
                allowed_ips: Vec::new(),
            },
            backups: Vec::new(),
            health: None,
        }));
        let gateways = spec.gateways();
        let mut tunnel = WireGuardTunnel {
            spec,
            planned: Box::new(plan.clone()),
            device: None,
            problem: None,
            net: None,
            own_public: None,
            endpoint: None,
            resolved_at: None,
            logged: None,
            gateways,
        };
        tunnel.bring_up().await;
        tunnel
    }

    /// Create the TUN and start the data path; a failure is kept in `problem` and retried by
    /// watch.
    async fn bring_up(&mut self) {
        self.device = None;
        match self.try_bring_up().await {
            Ok(()) => {
                self.problem = None;
                info!(
                    "WireGuard interface {} is up ({}), peer {} at {}",
                    self.spec.interface,
                    self.spec.address,
                    self.peer().public_key,
                    self.peer().endpoint
                );
            }
            Err(e) => {
                if self.problem.as_deref() != Some(&e.to_string()) {
                    warn!("{e}; retrying every few seconds");
                }
                self.device = None;
                self.problem = Some(e.to_string());
            }
        }
    }

    async fn try_bring_up(&mut self) -> Result<(), WireGuardError> {
        let spec = (*self.spec).clone();
        let peer = self.peer().clone();
        let secret = read_private_key(&spec.private_key_file)?;
        let peer_key = parse_wg_key(&peer.public_key).map_err(WireGuardError::PeerKey)?;
        let endpoint = resolve(&peer.endpoint).await;
        self.resolved_at = Some(Instant::now());
        let endpoint = endpoint?;
        let failed = |e: std::io::Error| WireGuardError::Device {
            interface: spec.interface.clone(),
            why: e.to_string(),
        };
        let tun = datapath::create_tun(&spec.interface).map_err(failed)?;
        // The first handshake leaves at once, before the address is set: the kill switch
        // keeps traffic off the WAN meanwhile, and the peer is ready when the routes come.
        let device = Datapath::start(
            tun,
            spec.listen_port,
            peer_config(&peer, &secret, peer_key, endpoint),
        )
        .map_err(failed)?;
        self.net()?
            .set_tunnel_link(&spec.interface, spec.address, MTU)
            .await
            .map_err(|source| WireGuardError::Net {
                interface: spec.interface.clone(),
                source: Box::new(source),
            })?;
        self.device = Some(device);
        self.own_public = Some(public_of(&secret));
        self.endpoint = Some(endpoint);
        Ok(())
    }

    /// The peer in use: `peer`, or a backup after a failover.
    fn peer(&self) -> &PeerSpec {
        self.spec
            .gateway(self.gateways.active())
            .unwrap_or(&self.spec.peer)
    }

    /// Feed the gateway choice; on a switch, give the data path the next peer. The TUN, the
    /// routes and the kill switch stay: closed-network traffic waits in the tunnel or is
    /// dropped, never sent in clear.
    async fn failover(&mut self, state: State) {
        let never_answered =
            state == State::Connecting && self.gateways.active_since().elapsed() > STALE_AFTER;
        let decided = self.gateways.step(state == State::Down || never_answered);
        self.switch(decided).await;
    }

    /// The next result of the health probe (never without `tunnel.health` or a backup).
    pub async fn next_probe(&mut self) -> Probe {
        self.gateways.next_probe().await
    }

    /// Feed a health probe's result; switch if it decides so.
    pub async fn probed(&mut self, probe: Probe) {
        let decided = self.gateways.probed(probe);
        self.switch(decided).await;
    }

    async fn switch(&mut self, decided: Option<(crate::plan::failover::Switch, String)>) {
        let Some((switch, why)) = decided else {
            return;
        };
        let peer = self.peer().clone();
        warn!(
            oqs_event = event::GATEWAY_SWITCH,
            oqs_gateway = peer.endpoint.as_str();
            "WireGuard {}: switching to gateway {} ({}): {why}",
            self.spec.interface,
            peer.endpoint,
            if switch.to == 0 { "preferred" } else { "backup" }
        );
        if let Err(e) = self.set_active_peer(&peer).await {
            warn!(
                "WireGuard {}: cannot switch to {}: {e}",
                self.spec.interface, peer.endpoint
            );
        }
    }

    /// Replace the data path's peer with `peer` (a fresh `Tunn` and an immediate handshake).
    async fn set_active_peer(&mut self, peer: &PeerSpec) -> Result<(), WireGuardError> {
        let secret = read_private_key(&self.spec.private_key_file)?;
        let peer_key = parse_wg_key(&peer.public_key).map_err(WireGuardError::PeerKey)?;
        let endpoint = resolve(&peer.endpoint).await?;
        self.resolved_at = Some(Instant::now());
        if let Some(device) = &mut self.device {
            device
                .set_peer(peer_config(peer, &secret, peer_key, endpoint))
                .map_err(|e| WireGuardError::Device {
                    interface: self.spec.interface.clone(),
                    why: e.to_string(),
                })?;
        }
        self.endpoint = Some(endpoint);
        self.logged = None;
        Ok(())
    }

    fn net(&mut self) -> Result<&Net, WireGuardError> {
        if self.net.is_none() {
            self.net = Some(Net::connect().map_err(|source| WireGuardError::Net {
                interface: self.spec.interface.clone(),
                source: Box::new(source),
            })?);
        }
        self.net.as_ref().ok_or_else(|| WireGuardError::Device {
            interface: self.spec.interface.clone(),
            why: "no netlink connection".to_owned(),
        })
    }

    /// A reload to `plan` would work: the key file is readable and a key, the peer's key
    /// parses, the endpoint resolves.
    pub async fn check(plan: &TunnelPlan) -> Result<(), WireGuardError> {
        let Some(spec) = Spec::of(plan) else {
            return Ok(());
        };
        read_private_key(&spec.private_key_file)?;
        parse_wg_key(&spec.peer.public_key).map_err(WireGuardError::PeerKey)?;
        resolve(&spec.peer.endpoint).await?;
        Ok(())
    }

    /// Apply only what changed. An unchanged section (and an unchanged key file) touches
    /// nothing; a changed peer is replaced on the running interface.
    pub async fn reload(&mut self, plan: &TunnelPlan) -> Result<(), WireGuardError> {
        let Some(next) = Spec::of(plan) else {
            return Ok(());
        };
        let secret = read_private_key(&next.private_key_file)?;
        let key_changed = self.own_public.as_deref() != Some(public_of(&secret).as_str());
        let decision = tunnel_change(&self.planned, plan);
        if decision == TunnelChange::Untouched && !key_changed && self.device.is_some() {
            return Ok(());
        }
        if matches!(decision, TunnelChange::Recreated { .. }) || self.device.is_none() {
            info!(
                "WireGuard: (re)creating interface {} for the reloaded config",
                next.interface
            );
            self.device = None;
            *self.spec = next;
            *self.planned = plan.clone();
            self.logged = None;
            self.gateways = self.spec.gateways();
            self.bring_up().await;
            return Ok(());
        }
        let peer_key = parse_wg_key(&next.peer.public_key).map_err(WireGuardError::PeerKey)?;
        let endpoint = resolve(&next.peer.endpoint).await?;
        let gateways_changed = next.backups != self.spec.backups || next.health != self.spec.health;
        // A changed gateway list starts again from the preferred peer.
        let peer_changed = matches!(decision, TunnelChange::PeerReplaced { .. })
            || key_changed
            || (gateways_changed && self.gateways.active() != 0);
        if let Some(device) = &mut self.device {
            let failed = |e: std::io::Error| WireGuardError::Device {
                interface: next.interface.clone(),
                why: e.to_string(),
            };
            if next.listen_port != self.spec.listen_port {
                device.set_listen_port(next.listen_port).map_err(failed)?;
            }
            if peer_changed {
                device
                    .set_peer(peer_config(&next.peer, &secret, peer_key, endpoint))
                    .map_err(failed)?;
            }
        }
        if next.address != self.spec.address {
            self.net()?
                .set_tunnel_link(&next.interface, next.address, MTU)
                .await
                .map_err(|source| WireGuardError::Net {
                    interface: next.interface.clone(),
                    source: Box::new(source),
                })?;
        }
        info!(
            "WireGuard {}: reloaded ({})",
            next.interface,
            [
                (key_changed, "private key"),
                (next.listen_port != self.spec.listen_port, "listen port"),
                (next.peer != self.spec.peer, "peer"),
                (next.address != self.spec.address, "address"),
            ]
            .iter()
            .filter(|(changed, _)| *changed)
            .map(|(_, what)| *what)
            .collect::<Vec<_>>()
            .join(", ")
        );
        if peer_changed {
            self.logged = None;
            self.endpoint = Some(endpoint);
            self.resolved_at = Some(Instant::now());
        }
        self.own_public = Some(public_of(&secret));
        *self.spec = next;
        *self.planned = plan.clone();
        if peer_changed || gateways_changed {
            self.gateways = self.spec.gateways();
        }
        Ok(())
    }

    /// The WAN's address changed (a new lease, a new RA prefix): handshake from it now.
    pub fn wan_changed(&self) {
        if let Some(device) = &self.device {
            info!(
                "WireGuard tunnel {}: the WAN's address changed; a handshake from the new address",
                self.spec.interface
            );
            device.handshake_now();
        }
    }

    /// Every few seconds: log state changes; retry a device that could not start; look the
    /// endpoint up again while handshakes do not come.
    pub async fn watch(&mut self) {
        if let Some(why) = self.device.as_ref().and_then(Datapath::failure) {
            warn!(
                "WireGuard tunnel {} is down: {why}; recreating the interface",
                self.spec.interface
            );
            self.logged = Some(State::Down);
            // Dropping the data path stops its threads and closes the TUN first.
            self.device = None;
        }
        if self.device.is_none() {
            self.bring_up().await;
            return;
        }
        let (state, detail) = self.judge();
        if self.logged != Some(state) {
            match state {
                State::Up => info!("WireGuard tunnel {} is up: {detail}", self.spec.interface),
                State::Connecting => {
                    info!(
                        "WireGuard tunnel {} is connecting: {detail}",
                        self.spec.interface
                    )
                }
                State::Down => warn!("WireGuard tunnel {} is down: {detail}", self.spec.interface),
            }
            self.logged = Some(state);
        }
        self.failover(state).await;
        if state != State::Up
            && self
                .resolved_at
                .is_none_or(|at| at.elapsed() >= RERESOLVE_EVERY)
        {
            self.reresolve().await;
        }
    }

    /// The concentrator's name may point elsewhere now: give the peer the new address.
    async fn reresolve(&mut self) {
        self.resolved_at = Some(Instant::now());
        let endpoint = match resolve(&self.peer().endpoint).await {
            Ok(endpoint) => endpoint,
            Err(e) => {
                warn!("{e}");
                return;
            }
        };
        if Some(endpoint) == self.endpoint {
            return;
        }
        let name = self.peer().endpoint.clone();
        let Some(device) = &mut self.device else {
            return;
        };
        info!(
            "WireGuard {}: {} now resolves to {endpoint} (was {}); giving the peer the new address",
            self.spec.interface,
            name,
            self.endpoint
                .map_or_else(|| "unresolved".to_owned(), |e| e.to_string())
        );
        match device.set_endpoint(endpoint) {
            Ok(()) => self.endpoint = Some(endpoint),
            Err(e) => warn!(
                "WireGuard {}: cannot send to {endpoint}: {e}",
                self.spec.interface
            ),
        }
    }

    /// The state and what it rests on, in plain words.
    fn judge(&self) -> (State, String) {
        let Some(device) = &self.device else {
            return (
                State::Down,
                self.problem
                    .clone()
                    .unwrap_or_else(|| "the interface is not up".to_owned()),
            );
        };
        if let Some(why) = device.failure() {
            return (State::Down, why);
        }
        let stats = device.status();
        let state = State::judge(stats.handshake_age);
        let endpoint = stats.endpoint.to_string();
        let traffic = format!(
            "received {}, sent {}",
            bytes(stats.rx_bytes),
            bytes(stats.tx_bytes)
        );
        let detail = match (state, stats.handshake_age) {
            (_, None) => format!(
                "no handshake yet with {endpoint} ({}) on {}; {traffic}",
                self.peer().endpoint,
                self.spec.interface
            ),
            (_, Some(age)) => format!(
                "last handshake {} ago with {endpoint} on {}; {traffic}",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                self.spec.interface
            ),
        };
        (state, detail)
    }

    pub async fn info(&self) -> TunnelInfo {
        let (state, detail) = self.judge();
        let stats = self.device.as_ref().map(|d| d.status());
        TunnelInfo {
            kind: "wireguard".to_owned(),
            state: state.as_str().to_owned(),
            detail,
            last_handshake_unix: stats
                .as_ref()
                .and_then(|s| s.handshake_age)
                .and_then(|age| std::time::SystemTime::now().checked_sub(age))
                .map(crate::pki::unix_seconds),
            handshake_age_ms: stats
                .as_ref()
                .and_then(|s| s.handshake_age)
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            received_bytes: stats.map(|s| s.rx_bytes),
            gateway: self.gateways.info(),
            ..TunnelInfo::default()
        }
    }

    pub async fn stop(self) {
        if self.device.is_some() {
            info!(
                "WireGuard: removing interface {}; the kill switch keeps closed-network traffic off the WAN",
                self.spec.interface
            );
        }
        // Dropping the data path stops its threads and closes the TUN.
    }
}

/// A byte count for a person: 1.2 MiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_handshake_age() {
        assert_eq!(State::judge(None), State::Connecting);
        assert_eq!(State::judge(Some(Duration::from_secs(5))), State::Up);
        assert_eq!(State::judge(Some(Duration::from_secs(180))), State::Up);
        assert_eq!(State::judge(Some(Duration::from_secs(181))), State::Down);
    }

    #[test]
    fn keygen_writes_0600_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let public = keygen(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let secret = read_private_key(&path).unwrap();
        assert_eq!(public_of(&secret), public);
        assert!(matches!(
            keygen(&path),
            Err(WireGuardError::KeyExists { .. })
        ));
    }

    #[test]
    fn a_key_readable_by_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        std::fs::write(&path, "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_private_key(&path).err().unwrap().to_string();
        assert!(e.contains("tunnel.wireguard.private_key_file"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        let e = read_private_key(&path).err().unwrap().to_string();
        assert!(e.contains("is not a WireGuard private key"), "{e}");
    }
}
