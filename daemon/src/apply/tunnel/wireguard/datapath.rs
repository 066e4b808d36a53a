//! The WireGuard data path: one `boringtun::noise::Tunn` (the crypto and the protocol's
//! timers) between a TUN device with offload (tun-rs) and one UDP socket (quinn-udp), on three
//! OS threads: TUN → UDP, UDP → TUN, and a 100 ms timer. Why this shape, with the numbers: the
//! module doc comment in `mod.rs`.
//!
//! Batching is what makes it fast: one TUN read returns a TCP super-segment (up to 64 KiB) that
//! tun-rs splits into MTU-sized packets; they are encrypted under one lock of the `Tunn` and
//! leave in one UDP GSO send (datagrams of equal size, the last may be shorter). The other way,
//! one recvmmsg (with UDP GRO) brings up to 32 buffers, decrypted under one lock, and tun-rs
//! coalesces the TCP packets (GRO) into few TUN writes.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use log::{debug, info, warn};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tun_rs::{DeviceBuilder, GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// The largest inner packet handled (the tunnel's MTU is 1420; a peer with a larger MTU up to
/// this still works). Larger datagrams are dropped: boringtun panics on a short buffer.
const PACKET_MAX: usize = 2048;
/// Room for one encrypted datagram: the packet + 32 bytes of WireGuard header and tag, and at
/// least a handshake initiation (148 bytes).
const SLOT: usize = PACKET_MAX + 32;
/// One UDP GSO send carries at most this many bytes (the kernel's limit is 64 KiB of payload).
const GSO_BYTES: usize = 60_000;
/// How often boringtun's timers run (handshake retries, keepalives, rekeying).
const TICK: Duration = Duration::from_millis(100);
/// Data sent and nothing at all heard back for this long: the peer has probably lost our
/// session (a restart); start a new handshake instead of waiting for WireGuard's 15 s timer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// WireGuard's REKEY_TIMEOUT: at most one handshake initiation per this long.
const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket buffers for bursts of a whole batch (the kernel caps them at its rmem/wmem_max).
const SOCKET_BUFFER: usize = 4 << 20;
/// An I/O error that repeats this many times in a row stops the thread (reported as a failure).
const ERRORS_IN_A_ROW: u32 = 1000;

/// What the peer is, for a new `Tunn`.
pub(super) struct PeerConfig {
    pub secret: StaticSecret,
    pub public_key: [u8; 32],
    pub keepalive_secs: Option<u64>,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
}

/// Where the peer is and which sources it may send from; swapped whole, read once per batch.
struct Route {
    endpoint: SocketAddr,
    allowed_ips: Vec<IpNet>,
}

impl Route {
    fn allows(&self, source: IpAddr) -> bool {
        self.allowed_ips.iter().any(|net| net.contains(&source))
    }
}

/// What `status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Status {
    pub handshake_age: Option<Duration>,
    pub endpoint: SocketAddr,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Times kept as milliseconds since `Shared::epoch`, plus one: 0 means "never".
const NEVER: u64 = 0;

/// State the threads share with the applier.
struct Shared {
    tunn: Mutex<Tunn>,
    route: ArcSwap<Route>,
    epoch: Instant,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    /// When the current session's handshake completed (the timer thread keeps it).
    handshake_at: AtomicU64,
    /// The first data sent since anything was last heard from the peer.
    unanswered_since: AtomicU64,
    /// The last handshake initiation sent, by whichever path.
    initiated_at: AtomicU64,
    /// Ask the timer thread for a handshake now (start, a new peer).
    initiate: AtomicBool,
    /// Why a thread stopped on its own.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tunn> {
        // A panic elsewhere cannot leave a Tunn half-updated in a way that matters more
        // than stopping the tunnel would: keep going.
        self.tunn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn fail(&self, why: String) {
        warn!("WireGuard data path stopped: {why}");
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    /// Note a datagram we send: a handshake initiation starts the REKEY_TIMEOUT clock.
    fn note_sent(&self, datagram: &[u8]) {
        if is_initiation(datagram) {
            self.initiated_at.store(self.now(), Ordering::Relaxed);
        }
    }
}

fn new_tunn(peer: &PeerConfig) -> Tunn {
    // Tunn shifts the index left by 8: 24 random bits.
    let index = {
        use ring::rand::SecureRandom as _;
        let mut b = [0u8; 4];
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        u32::from_le_bytes(b) >> 8
    };
    Tunn::new(
        peer.secret.clone(),
        PublicKey::from(peer.public_key),
        None,
        peer.keepalive_secs
            .map(|s| u16::try_from(s).unwrap_or(u16::MAX))
            .filter(|s| *s > 0),
        index,
        None,
    )
}

/// A handshake initiation (type 1, 148 bytes).
fn is_initiation(datagram: &[u8]) -> bool {
    datagram.len() == 148 && datagram[0] == 1
}

/// Create the TUN device (with offload: super-segments in, GRO out).
pub(super) fn create_tun(interface: &str) -> io::Result<SyncDevice> {
    let tun = DeviceBuilder::new()
        .name(interface)
        .offload(true)
        // Net::set_tunnel_link brings it up once it has its address.
        .enable(false)
        .build_sync()?;
    tun.set_nonblocking(true)?;
    Ok(tun)
}

/// The UDP socket and quinn-udp's view of it (GSO/GRO support found at creation).
struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl Udp {
    fn bind(family: SocketAddr, port: Option<u16>) -> io::Result<Udp> {
        let any = match family {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, port.unwrap_or(0)))?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        socket.set_nonblocking(true)?;
        // Best effort: a smaller buffer only costs drops under bursts.
        let _ = state.set_send_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        Ok(Udp { socket, state })
    }

    /// Send `contents` (datagrams of `segment` bytes, the last may be shorter) to `to`. A full
    /// socket buffer is waited out briefly; what still cannot go is dropped, as a network would.
    fn send(&self, to: SocketAddr, contents: &[u8], segment: usize) {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: (segment < contents.len()).then_some(segment),
            src_ip: None,
        };
        for _ in 0..2 {
            match self
                .state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLOUT)];
                    let _ = nix::poll::poll(&mut fds, PollTimeout::from(100u16));
                }
                Err(e) => {
                    debug!("WireGuard: sending to {to}: {e}");
                    return;
                }
                Ok(()) => return,
            }
        }
    }

    /// Segments per GSO send (1 where the kernel has no UDP GSO).
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }
}

/// Asks a set of threads to stop: the flag for threads busy with traffic (checked once per
/// batch), the eventfd for threads waiting in poll (it stays readable once written).
struct Stop {
    flag: AtomicBool,
    fd: EventFd,
}

impl Stop {
    fn new() -> io::Result<Stop> {
        Ok(Stop {
            flag: AtomicBool::new(false),
            fd: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
        })
    }

    fn ask(&self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.fd.write(1);
    }

    fn asked(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// Waits up to `timeout` until `fd` (if any) is readable (false) or a stop is asked (true).
fn wait(fd: Option<BorrowedFd<'_>>, stop: &Stop, timeout: PollTimeout) -> bool {
    let stop_fd = stop.fd.as_fd();
    // Without an fd the stop's own descriptor stands in for it (no allocation per wait).
    let mut fds = [
        PollFd::new(stop_fd, PollFlags::POLLIN),
        PollFd::new(fd.unwrap_or(stop_fd), PollFlags::POLLIN),
    ];
    let _ = nix::poll::poll(&mut fds, timeout);
    fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

/// Encrypted datagrams waiting to leave in one UDP GSO send: equal sizes, the last may be
/// shorter.
struct Outbox {
    buf: Vec<u8>,
    fill: usize,
    segment: usize,
    count: usize,
    short_tail: bool,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            buf: vec![0; GSO_BYTES + SLOT],
            fill: 0,
            segment: 0,
            count: 0,
            short_tail: false,
        }
    }

    /// Room for the next datagram (sending what is queued first when full).
    fn slot(&mut self, max_segments: usize, send: &mut dyn FnMut(&[u8], usize)) -> &mut [u8] {
        if self.fill + SLOT > GSO_BYTES || self.count >= max_segments {
            self.flush(send);
        }
        &mut self.buf[self.fill..self.fill + SLOT]
    }

    /// The `len` bytes just written into `slot()` are a datagram to send.
    fn commit(&mut self, len: usize, send: &mut dyn FnMut(&[u8], usize)) {
        if self.count > 0 && (self.short_tail || len > self.segment) {
            // It cannot join this train of equal datagrams: send the train, start a new one.
            let start = self.fill;
            self.flush(send);
            self.buf.copy_within(start..start + len, 0);
        }
        if self.count == 0 {
            self.segment = len;
        } else if len < self.segment {
            self.short_tail = true;
        }
        self.fill += len;
        self.count += 1;
    }

    /// Hand the queued train to `send(contents, segment size)`.
    fn flush(&mut self, send: &mut dyn FnMut(&[u8], usize)) {
        if self.count > 0 {
            send(&self.buf[..self.fill], self.segment);
        }
        self.fill = 0;
        self.count = 0;
        self.short_tail = false;
    }
}

/// The running data path: the TUN, the `Tunn`, and (while running) the socket and threads.
pub(super) struct Datapath {
    tun: Arc<SyncDevice>,
    shared: Arc<Shared>,
    listen_port: Option<u16>,
    io: Option<Io>,
}

/// The socket and the threads using it; dropping it stops them.
struct Io {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
    ipv6: bool,
}

impl Drop for Io {
    fn drop(&mut self) {
        self.stop.ask();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Datapath {
    /// Start moving packets between `tun` and the peer; a handshake starts at once.
    pub(super) fn start(
        tun: SyncDevice,
        listen_port: Option<u16>,
        peer: PeerConfig,
    ) -> io::Result<Datapath> {
        let shared = Arc::new(Shared {
            tunn: Mutex::new(new_tunn(&peer)),
            route: ArcSwap::from_pointee(Route {
                endpoint: peer.endpoint,
                allowed_ips: peer.allowed_ips,
            }),
            epoch: Instant::now(),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            handshake_at: AtomicU64::new(NEVER),
            unanswered_since: AtomicU64::new(NEVER),
            initiated_at: AtomicU64::new(NEVER),
            initiate: AtomicBool::new(true),
            failure: Mutex::new(None),
        });
        let mut datapath = Datapath {
            tun: Arc::new(tun),
            shared,
            listen_port,
            io: None,
        };
        datapath.restart_io()?;
        Ok(datapath)
    }

    /// (Re)bind the socket for the endpoint's address family and start the threads. A failure
    /// is also kept for `failure()`, so the applier rebuilds the device.
    fn restart_io(&mut self) -> io::Result<()> {
        self.io = None;
        let result = self.start_io();
        match &result {
            Ok(()) => {
                *self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => self
                .shared
                .fail(format!("cannot start the UDP socket or threads: {e}")),
        }
        result
    }

    fn start_io(&mut self) -> io::Result<()> {
        let endpoint = self.shared.route.load().endpoint;
        let udp = Arc::new(Udp::bind(endpoint, self.listen_port)?);
        // In place before the first spawn: if a later spawn fails, dropping it stops the rest.
        let io = self.io.insert(Io {
            stop: Arc::new(Stop::new()?),
            threads: Vec::new(),
            ipv6: endpoint.is_ipv6(),
        });
        let spawn = |io: &mut Io, name: &str, f: Box<dyn FnOnce(&Stop) + Send>| {
            let stop = Arc::clone(&io.stop);
            let thread = std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || f(&stop))?;
            io.threads.push(thread);
            Ok::<(), io::Error>(())
        };
        let (tun, u, shared) = (
            Arc::clone(&self.tun),
            Arc::clone(&udp),
            Arc::clone(&self.shared),
        );
        spawn(
            io,
            "wg-tun-to-udp",
            Box::new(move |stop| tun_to_udp(&tun, &u, &shared, stop)),
        )?;
        let (tun, u, shared) = (
            Arc::clone(&self.tun),
            Arc::clone(&udp),
            Arc::clone(&self.shared),
        );
        spawn(
            io,
            "wg-udp-to-tun",
            Box::new(move |stop| udp_to_tun(&tun, &u, &shared, stop)),
        )?;
        let shared = Arc::clone(&self.shared);
        spawn(
            io,
            "wg-timers",
            Box::new(move |stop| timers(&udp, &shared, stop)),
        )?;
        Ok(())
    }

    /// A new peer (or key, keepalive, allowed IPs): a fresh session and a handshake now; the
    /// interface is untouched.
    pub(super) fn set_peer(&mut self, peer: PeerConfig) -> io::Result<()> {
        let family_changed = self.io.as_ref().map(|io| io.ipv6) != Some(peer.endpoint.is_ipv6());
        *self.shared.lock() = new_tunn(&peer);
        self.shared.route.store(Arc::new(Route {
            endpoint: peer.endpoint,
            allowed_ips: peer.allowed_ips,
        }));
        self.shared.handshake_at.store(NEVER, Ordering::Relaxed);
        self.shared.unanswered_since.store(NEVER, Ordering::Relaxed);
        self.shared.initiated_at.store(NEVER, Ordering::Relaxed);
        self.shared.initiate.store(true, Ordering::Relaxed);
        if family_changed {
            self.restart_io()?;
        }
        Ok(())
    }

    /// The peer's name resolves elsewhere now: send there (same session).
    pub(super) fn set_endpoint(&mut self, endpoint: SocketAddr) -> io::Result<()> {
        let family_changed = self.io.as_ref().map(|io| io.ipv6) != Some(endpoint.is_ipv6());
        let allowed_ips = self.shared.route.load().allowed_ips.clone();
        self.shared.route.store(Arc::new(Route {
            endpoint,
            allowed_ips,
        }));
        if family_changed {
            self.restart_io()?;
        }
        Ok(())
    }

    /// The WAN's address changed: a handshake now, from the new address (the socket is
    /// unconnected and unbound to an address, so the kernel picks the source), so the
    /// concentrator learns where this router is without waiting for data to go unanswered.
    pub(super) fn handshake_now(&self) {
        self.shared.initiate.store(true, Ordering::Relaxed);
    }

    pub(super) fn set_listen_port(&mut self, port: Option<u16>) -> io::Result<()> {
        self.listen_port = port;
        self.restart_io()
    }

    pub(super) fn status(&self) -> Status {
        let at = self.shared.handshake_at.load(Ordering::Relaxed);
        let now = self.shared.now();
        Status {
            handshake_age: (at != NEVER).then(|| Duration::from_millis(now.saturating_sub(at))),
            endpoint: self.shared.route.load().endpoint,
            rx_bytes: self.shared.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.shared.tx_bytes.load(Ordering::Relaxed),
        }
    }

    /// Why the data path stopped, if it did (the applier then rebuilds the device).
    pub(super) fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Counts I/O errors in a row; too many means the descriptor is gone for good.
struct Errors(u32);

impl Errors {
    /// After a batch read from `fd` failed: wait for it to be readable, retry, or (false) end
    /// the thread, the reason kept for `failure()`.
    fn keep_going(
        &mut self,
        what: &str,
        e: &io::Error,
        fd: BorrowedFd<'_>,
        shared: &Shared,
        stop: &Stop,
    ) -> bool {
        match e.kind() {
            io::ErrorKind::WouldBlock => return !wait(Some(fd), stop, PollTimeout::NONE),
            io::ErrorKind::Interrupted => return true,
            _ => {}
        }
        self.0 += 1;
        let bad_fd = matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EBADF | Errno::EBADFD)
        );
        if self.0 >= ERRORS_IN_A_ROW || bad_fd {
            shared.fail(format!("{what}: {e}"));
            return false;
        }
        true
    }
}

/// TUN → encrypt → UDP.
fn tun_to_udp(tun: &SyncDevice, udp: &Udp, shared: &Shared, stop: &Stop) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65535];
    // Built one by one: `vec![v; n]` clones, which writes (and makes resident) every byte.
    let mut packets: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; PACKET_MAX])
        .collect();
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut outbox = Outbox::new();
    let mut errors = Errors(0);
    while !stop.asked() {
        let n = match tun.recv_multiple(&mut original, &mut packets, &mut sizes, 0) {
            Ok(n) => n,
            // A packet tun-rs cannot split is dropped; a dead descriptor ends the thread.
            Err(e)
                if errors.keep_going("reading the TUN device", &e, tun.as_fd(), shared, stop) =>
            {
                continue
            }
            Err(_) => return,
        };
        errors.0 = 0;
        let to = shared.route.load().endpoint;
        let max_segments = udp.max_segments();
        let mut send = |contents: &[u8], segment: usize| udp.send(to, contents, segment);
        let mut sent = 0u64;
        let mut data = false;
        {
            let mut tunn = shared.lock();
            for (packet, &size) in packets.iter().zip(&sizes).take(n) {
                let slot = outbox.slot(max_segments, &mut send);
                if let TunnResult::WriteToNetwork(datagram) =
                    tunn.encapsulate(&packet[..size], slot)
                {
                    shared.note_sent(datagram);
                    data |= !is_initiation(datagram);
                    let len = datagram.len();
                    sent += len as u64;
                    outbox.commit(len, &mut send);
                }
            }
        }
        outbox.flush(&mut send);
        shared.tx_bytes.fetch_add(sent, Ordering::Relaxed);
        if data {
            let _ = shared.unanswered_since.compare_exchange(
                NEVER,
                shared.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// UDP → decrypt → check the source against the allowed IPs → TUN.
fn udp_to_tun(tun: &SyncDevice, udp: &Udp, shared: &Shared, stop: &Stop) {
    let batch = quinn_udp::BATCH_SIZE;
    // With UDP GRO one buffer holds up to gro_segments() datagrams.
    let buffer = udp.state.gro_segments().max(1) * (SLOT + 64);
    // Zeroed pages stay unmapped until the kernel writes a datagram there.
    let mut buffers: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; buffer]).collect();
    let mut metas = vec![RecvMeta::default(); batch];
    let mut plain: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE)
        .map(|_| Vec::with_capacity(VIRTIO_NET_HDR_LEN + SLOT))
        .collect();
    let mut gro = GROTable::default();
    let mut reply = vec![0u8; SLOT];
    let mut errors = Errors(0);
    while !stop.asked() {
        let n = {
            let mut slices: Vec<IoSliceMut<'_>> =
                buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match udp
                .state
                .recv(UdpSockRef::from(&udp.socket), &mut slices, &mut metas)
            {
                Ok(n) => n,
                // ICMP errors (port unreachable while the peer is down) land here.
                Err(e)
                    if errors.keep_going(
                        "reading the UDP socket",
                        &e,
                        udp.socket.as_fd(),
                        shared,
                        stop,
                    ) =>
                {
                    continue
                }
                Err(_) => return,
            }
        };
        errors.0 = 0;
        let route = shared.route.load_full();
        let mut count = 0;
        let mut received = 0u64;
        let mut heard = false;
        let mut data_from = None;
        {
            let mut tunn = shared.lock();
            for (buffer, meta) in buffers.iter().zip(&metas).take(n) {
                received += meta.len as u64;
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                for datagram in buffer[..meta.len].chunks(stride.max(1)) {
                    if count == plain.len() {
                        write_tun(tun, &mut gro, &mut plain[..count]);
                        count = 0;
                    }
                    let out = &mut plain[count];
                    out.resize(VIRTIO_NET_HDR_LEN + SLOT, 0);
                    let mut send = |to: SocketAddr, datagram: &[u8]| {
                        shared.note_sent(datagram);
                        udp.send(to, datagram, datagram.len());
                    };
                    match receive(
                        &mut tunn,
                        &route,
                        meta.addr,
                        datagram,
                        &mut out[VIRTIO_NET_HDR_LEN..],
                        &mut reply,
                        &mut send,
                    ) {
                        Received::Packet(len) => {
                            heard = true;
                            data_from = Some(meta.addr);
                            out.truncate(VIRTIO_NET_HDR_LEN + len);
                            count += 1;
                        }
                        Received::NotAllowed => {
                            heard = true;
                            data_from = Some(meta.addr);
                        }
                        Received::Heard => heard = true,
                        Received::Refused => {}
                    }
                }
            }
        }
        write_tun(tun, &mut gro, &mut plain[..count]);
        shared.rx_bytes.fetch_add(received, Ordering::Relaxed);
        if heard {
            shared.unanswered_since.store(NEVER, Ordering::Relaxed);
        }
        // Authenticated data from a new address: the peer moved (WireGuard's roaming).
        if let Some(from) = data_from.filter(|from| *from != route.endpoint) {
            if from.is_ipv6() == route.endpoint.is_ipv6() {
                info!(
                    "WireGuard: the peer now sends from {from} (was {}); answering there",
                    route.endpoint
                );
                shared.route.store(Arc::new(Route {
                    endpoint: from,
                    allowed_ips: route.allowed_ips.clone(),
                }));
            }
        }
    }
}

/// What one datagram from the network came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// A packet of this length, from a source in the allowed IPs: `out[..len]` goes to the TUN.
    Packet(usize),
    /// An authenticated packet from a source outside the allowed IPs: dropped.
    NotAllowed,
    /// A handshake message, a cookie or a keepalive: answered through `send` if need be.
    Heard,
    /// Not a datagram of this session (too long, forged, replayed, garbage): dropped.
    Refused,
}

/// Decrypt one datagram from `from` into `out` (at least [`SLOT`] bytes) and decide whether the
/// packet in it may go to the TUN device. Answers (handshake responses, cookies) and packets
/// queued while there was no session go out through `send`. No I/O of its own.
fn receive(
    tunn: &mut Tunn,
    route: &Route,
    from: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
    reply: &mut [u8],
    send: &mut dyn FnMut(SocketAddr, &[u8]),
) -> Received {
    // boringtun panics on an output buffer shorter than what it decrypts.
    if datagram.len() > SLOT || out.len() < SLOT || reply.len() < SLOT {
        return Received::Refused;
    }
    let (len, source) = match tunn.decapsulate(Some(from.ip()), datagram, out) {
        TunnResult::WriteToTunnelV4(p, s) => (p.len(), IpAddr::V4(s)),
        TunnResult::WriteToTunnelV6(p, s) => (p.len(), IpAddr::V6(s)),
        TunnResult::WriteToNetwork(answer) => {
            // A handshake answer or a cookie goes back to whoever asked.
            send(from, answer);
            // Packets queued while there was no session can go now.
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], reply) {
                send(route.endpoint, queued);
            }
            return Received::Heard;
        }
        TunnResult::Done => return Received::Heard,
        TunnResult::Err(e) => {
            debug!("WireGuard: a datagram from {from} refused: {e:?}");
            return Received::Refused;
        }
    };
    // boringtun cuts the packet to its header's length field, which may be shorter than the
    // header itself (found by fuzzing): such a fragment is no packet for the TUN device.
    if ip_source(&out[..len]) != Some(source) {
        debug!("WireGuard: dropped a malformed packet from {from} ({len} bytes)");
        return Received::Refused;
    }
    if route.allows(source) {
        Received::Packet(len)
    } else {
        debug!("WireGuard: dropped a packet from {source}: not in the allowed IPs");
        Received::NotAllowed
    }
}

/// The source address of a packet with a whole IP header, read from the header itself.
fn ip_source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

fn write_tun(tun: &SyncDevice, gro: &mut GROTable, packets: &mut [Vec<u8>]) {
    if packets.is_empty() {
        return;
    }
    if let Err(e) = tun.send_multiple(gro, packets, VIRTIO_NET_HDR_LEN) {
        debug!("WireGuard: writing to the TUN device: {e}");
    }
}

/// Data has gone unanswered for ANSWER_WITHIN and no initiation left in the last
/// REKEY_TIMEOUT (times as kept in `Shared`, milliseconds; NEVER = 0).
fn early_handshake_due(now: u64, unanswered_since: u64, initiated_at: u64) -> bool {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    unanswered_since != NEVER
        && now.saturating_sub(unanswered_since) >= ms(ANSWER_WITHIN)
        && (initiated_at == NEVER || now.saturating_sub(initiated_at) >= ms(REKEY_TIMEOUT))
}

/// boringtun's timers every TICK, the first handshake at once, an early handshake when data
/// goes unanswered, and the handshake time for `status`.
fn timers(udp: &Udp, shared: &Shared, stop: &Stop) {
    let mut buf = vec![0u8; SLOT];
    let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::from(100u16));
    loop {
        let to = shared.route.load().endpoint;
        let now = shared.now();
        {
            let mut tunn = shared.lock();
            if shared.initiate.swap(false, Ordering::Relaxed) {
                if let TunnResult::WriteToNetwork(init) =
                    tunn.format_handshake_initiation(&mut buf, false)
                {
                    shared.note_sent(init);
                    udp.send(to, init, init.len());
                }
            }
            match tunn.update_timers(&mut buf) {
                TunnResult::WriteToNetwork(datagram) => {
                    shared.note_sent(datagram);
                    udp.send(to, datagram, datagram.len());
                }
                TunnResult::Err(e) => debug!("WireGuard timers: {e:?}"),
                _ => {}
            }
            if early_handshake_due(
                now,
                shared.unanswered_since.load(Ordering::Relaxed),
                shared.initiated_at.load(Ordering::Relaxed),
            ) {
                debug!("WireGuard: data unanswered for {ANSWER_WITHIN:?}; a new handshake");
                if let TunnResult::WriteToNetwork(init) =
                    tunn.format_handshake_initiation(&mut buf, true)
                {
                    shared.note_sent(init);
                    udp.send(to, init, init.len());
                }
            }
            let at = tunn.time_since_last_handshake().map_or(NEVER, |age| {
                now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                    .max(1)
            });
            shared.handshake_at.store(at, Ordering::Relaxed);
        }
        if wait(None, stop, tick) {
            return;
        }
    }
}

// One copy per module that fuzzes (unit tests reach private items); tests/fuzz/ holds it.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../../../../tests/fuzz/common.rs"]
mod fuzz_common;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_ips_decide_which_sources_pass() {
        let route = Route {
            endpoint: "203.0.113.2:51820".parse().unwrap(),
            allowed_ips: vec!["10.200.0.0/24".parse().unwrap()],
        };
        assert!(route.allows("10.200.0.10".parse().unwrap()));
        assert!(!route.allows("10.201.0.10".parse().unwrap()));
        assert!(!route.allows("192.168.50.10".parse().unwrap()));
    }

    #[test]
    fn initiations_are_told_from_data() {
        let mut init = [0u8; 148];
        init[0] = 1;
        assert!(is_initiation(&init));
        let mut data = [0u8; 148];
        data[0] = 4;
        assert!(!is_initiation(&data));
        assert!(!is_initiation(&init[..92]));
    }

    #[test]
    fn an_early_handshake_waits_for_silence_and_the_rekey_timeout() {
        // Nothing sent unanswered: no handshake.
        assert!(!early_handshake_due(60_000, NEVER, NEVER));
        // Unanswered for 1.9 s: not yet; for 2 s: yes.
        assert!(!early_handshake_due(11_900, 10_000, NEVER));
        assert!(early_handshake_due(12_000, 10_000, NEVER));
        // An initiation 4.9 s ago (by any path): wait; 5 s ago: go.
        assert!(!early_handshake_due(12_000, 10_000, 7_100));
        assert!(early_handshake_due(12_000, 10_000, 7_000));
    }

    /// Push datagrams of these sizes through an Outbox; the trains it sends (sizes, segment).
    fn trains(sizes: &[usize], max_segments: usize) -> Vec<(Vec<usize>, usize)> {
        let mut sent: Vec<(Vec<usize>, usize)> = Vec::new();
        let mut send = |contents: &[u8], segment: usize| {
            // Each datagram was filled with its own length's low byte: read the train back.
            let mut lens = Vec::new();
            let mut at = 0;
            while at < contents.len() {
                let len = segment.min(contents.len() - at);
                assert!(contents[at..at + len].iter().all(|b| *b == len as u8));
                lens.push(len);
                at += len;
            }
            sent.push((lens, segment));
        };
        let mut outbox = Outbox::new();
        for &len in sizes {
            outbox.slot(max_segments, &mut send)[..len].fill(len as u8);
            outbox.commit(len, &mut send);
        }
        outbox.flush(&mut send);
        sent
    }

    #[test]
    fn equal_datagrams_leave_in_one_train_with_a_shorter_last() {
        assert_eq!(
            trains(&[1452, 1452, 1452, 700], 64),
            vec![(vec![1452, 1452, 1452, 700], 1452)]
        );
    }

    #[test]
    fn a_train_ends_after_a_shorter_datagram_or_before_a_longer_one() {
        assert_eq!(
            trains(&[1452, 700, 1452, 1452, 1500], 64),
            vec![
                (vec![1452, 700], 1452),
                (vec![1452, 1452], 1452),
                (vec![1500], 1500)
            ]
        );
    }

    #[test]
    fn a_train_respects_the_segment_limit_and_the_gso_size() {
        let out = trains(&[1452; 10], 4);
        assert_eq!(
            out.iter().map(|(l, _)| l.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let out = trains(&[1452; 100], 128);
        assert!(out
            .iter()
            .all(|(l, _)| l.iter().sum::<usize>() <= GSO_BYTES));
        assert_eq!(out.iter().map(|(l, _)| l.len()).sum::<usize>(), 100);
    }

    /// Fuzzing both sides of the data path (issue 22): datagrams from the network — garbage,
    /// mutated real datagrams, replays, and packets a real peer encrypts from any source — and
    /// packets from the TUN device. Never a panic; nothing reaches the TUN device unless its
    /// source is in the allowed IPs.
    mod fuzz {
        use super::super::fuzz_common as common;
        use super::*;
        use proptest::prelude::*;

        const ROUTER: &str = "198.51.100.2:51820";
        const PEER: &str = "203.0.113.2:51820";

        struct Pair {
            router: Tunn,
            peer: Tunn,
            route: Route,
            /// Datagrams the router sent (handshake answers, queued packets).
            sent: Vec<Vec<u8>>,
        }

        fn pair() -> Pair {
            let router_key = StaticSecret::from([7u8; 32]);
            let peer_key = StaticSecret::from([9u8; 32]);
            let router = Tunn::new(
                router_key.clone(),
                PublicKey::from(&peer_key),
                None,
                None,
                1,
                None,
            );
            let peer = Tunn::new(peer_key, PublicKey::from(&router_key), None, None, 2, None);
            Pair {
                router,
                peer,
                route: Route {
                    endpoint: PEER.parse().unwrap(),
                    allowed_ips: vec![
                        "10.200.0.0/24".parse().unwrap(),
                        "fd00::/64".parse().unwrap(),
                    ],
                },
                sent: Vec::new(),
            }
        }

        impl Pair {
            /// What the router makes of one datagram; a forwarded packet is checked here.
            fn receive(&mut self, datagram: &[u8]) -> Received {
                let mut out = vec![0u8; SLOT];
                let mut reply = vec![0u8; SLOT];
                let sent = &mut self.sent;
                let got = receive(
                    &mut self.router,
                    &self.route,
                    PEER.parse().unwrap(),
                    datagram,
                    &mut out,
                    &mut reply,
                    &mut |_, d| sent.push(d.to_vec()),
                );
                if let Received::Packet(len) = got {
                    let source = ip_source(&out[..len]).unwrap_or_else(|| {
                        panic!("forwarded a packet with no IP source: {:?}", &out[..len])
                    });
                    assert!(
                        self.route.allows(source),
                        "forwarded a packet from {source}, outside the allowed IPs"
                    );
                }
                got
            }

            /// The peer sends its handshake initiation; the router's answer reaches the peer.
            fn handshake(&mut self) {
                let mut buf = vec![0u8; SLOT];
                let init = match self.peer.format_handshake_initiation(&mut buf, true) {
                    TunnResult::WriteToNetwork(d) => d.to_vec(),
                    _ => return,
                };
                self.receive(&init);
                let mut out = vec![0u8; SLOT];
                for answer in std::mem::take(&mut self.sent) {
                    let _ = self.peer.decapsulate(
                        Some(ROUTER.parse::<SocketAddr>().unwrap().ip()),
                        &answer,
                        &mut out,
                    );
                }
            }

            /// `packet` as the peer encrypts it (None: no session yet, or not a packet).
            fn sent_by_peer(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
                let mut buf = vec![0u8; SLOT + 64];
                match self.peer.encapsulate(packet, &mut buf) {
                    TunnResult::WriteToNetwork(d) => Some(d.to_vec()),
                    _ => None,
                }
            }
        }

        /// Sources worth trying: the allowed prefix, its edges, the LAN, the internet, v6.
        fn source() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                (0u8..=255).prop_map(|h| IpAddr::from([10, 200, 0, h])),
                (0u8..=255).prop_map(|h| IpAddr::from([10, 200, 1, h])),
                (0u8..=255).prop_map(|h| IpAddr::from([192, 168, 50, h])),
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<u16>().prop_map(|h| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, h])),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]
        }

        /// A packet from the seeds, with its source set and perhaps mutated.
        fn inner_packet() -> impl Strategy<Value = Vec<u8>> {
            (
                common::mutated(
                    common::seeds("wireguard-packet", &[]),
                    &[b"\x45", b"\x60", b"\0\0"],
                    2,
                ),
                source(),
            )
                .prop_map(|(mut packet, source)| {
                    match (source, packet.first().map(|b| b >> 4)) {
                        (IpAddr::V4(s), Some(4)) if packet.len() >= 20 => {
                            packet[12..16].copy_from_slice(&s.octets())
                        }
                        (IpAddr::V6(s), Some(6)) if packet.len() >= 40 => {
                            packet[8..24].copy_from_slice(&s.octets())
                        }
                        _ => {}
                    }
                    packet
                })
        }

        #[derive(Clone, Debug)]
        enum Action {
            /// The peer starts a (new) handshake.
            Handshake,
            /// The peer encrypts a packet and it arrives as sent.
            Peer(Vec<u8>),
            /// The peer encrypts a packet and the datagram is mutated on the way.
            PeerMutated(Vec<u8>, Vec<common::Mutation>),
            /// The last datagram the peer sent arrives again.
            Replay,
            /// Anything at all, or a mutated seed datagram.
            Raw(Vec<u8>),
        }

        fn action() -> impl Strategy<Value = Action> {
            let dictionary: &'static [&'static [u8]] =
                &[b"\x01\0\0\0", b"\x02\0\0\0", b"\x03\0\0\0", b"\x04\0\0\0"];
            prop_oneof![
                1 => Just(Action::Handshake),
                4 => inner_packet().prop_map(Action::Peer),
                2 => (inner_packet(), proptest::collection::vec(common::mutation(dictionary), 1..4))
                    .prop_map(|(p, m)| Action::PeerMutated(p, m)),
                1 => Just(Action::Replay),
                2 => common::mutated(common::seeds("wireguard-datagram", &[]), dictionary, 4).prop_map(Action::Raw),
                1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Action::Raw),
            ]
        }

        /// Found by fuzzing (issue 22): an IPv4 header whose total length is 0 made boringtun
        /// hand over an empty "packet" with the header's source, which passed the allowed-IPs
        /// check.
        #[test]
        fn fuzz_regression_a_packet_shorter_than_its_ip_header_is_not_forwarded() {
            let mut pair = pair();
            pair.handshake();
            let mut packet = std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fuzz/corpus/wireguard-packet/v4-closed-udp.bin"
            ))
            .unwrap();
            packet[12..16].copy_from_slice(&[10, 200, 0, 10]);
            let whole = pair.sent_by_peer(&packet).unwrap();
            assert!(matches!(pair.receive(&whole), Received::Packet(n) if n == packet.len()));
            for total in [0u16, 1, 19] {
                packet[2..4].copy_from_slice(&total.to_be_bytes());
                let d = pair.sent_by_peer(&packet).unwrap();
                assert_eq!(pair.receive(&d), Received::Refused, "total length {total}");
            }
        }

        proptest! {
            #![proptest_config(common::config("wireguard-datagrams", 1500))]
            #[test]
            fn fuzz_wireguard_datagrams_never_forward_outside_the_allowed_ips(
                actions in proptest::collection::vec(action(), 1..24)
            ) {
                let mut pair = pair();
                pair.handshake();
                let mut last: Option<Vec<u8>> = None;
                for action in actions {
                    match action {
                        Action::Handshake => pair.handshake(),
                        Action::Peer(packet) => {
                            if let Some(d) = pair.sent_by_peer(&packet) {
                                let got = pair.receive(&d);
                                // A well-formed packet from an allowed source goes through whole.
                                if let (Received::Packet(len), Some(source)) = (got, ip_source(&packet)) {
                                    prop_assert!(pair.route.allows(source));
                                    prop_assert!(len <= packet.len());
                                }
                                last = Some(d);
                            }
                        }
                        Action::PeerMutated(packet, mutations) => {
                            if let Some(mut d) = pair.sent_by_peer(&packet) {
                                let original = d.clone();
                                for m in &mutations {
                                    m.apply(&mut d);
                                }
                                let got = pair.receive(&d);
                                if d != original {
                                    // Authenticated encryption: a changed datagram is no packet.
                                    prop_assert!(!matches!(got, Received::Packet(_)), "a mutated datagram was forwarded");
                                }
                            }
                        }
                        Action::Replay => {
                            if let Some(d) = &last {
                                let got = pair.receive(&d.clone());
                                prop_assert!(!matches!(got, Received::Packet(_)), "a replayed datagram was forwarded");
                            }
                        }
                        Action::Raw(bytes) => {
                            let got = pair.receive(&bytes);
                            prop_assert!(!matches!(got, Received::Packet(_)), "a forged datagram was forwarded");
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(common::config("wireguard-tun", 800))]
            #[test]
            fn fuzz_wireguard_tun_packets_never_panic_and_fit_their_slot(
                packets in proptest::collection::vec(
                    prop_oneof![
                        inner_packet(),
                        proptest::collection::vec(any::<u8>(), 0..=PACKET_MAX),
                    ],
                    1..16,
                )
            ) {
                let mut pair = pair();
                pair.handshake();
                // The router has its session once the peer's first data arrives.
                if let Some(d) = pair.sent_by_peer(&common::seeds("wireguard-packet", &[])[0]) {
                    pair.receive(&d);
                }
                let mut slot = vec![0u8; SLOT];
                let mut out = vec![0u8; SLOT];
                for packet in packets {
                    if let TunnResult::WriteToNetwork(d) = pair.router.encapsulate(&packet, &mut slot) {
                        prop_assert!(d.len() <= SLOT);
                        let d = d.to_vec();
                        // What the peer decrypts is what went in (up to its IP length).
                        if let TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) =
                            pair.peer.decapsulate(None, &d, &mut out)
                        {
                            let n = p.len();
                            prop_assert_eq!(&p[..], &packet[..n]);
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(common::config("wireguard-outbox", 2000))]
            #[test]
            fn fuzz_outbox_sends_every_datagram_once_in_order(
                sizes in proptest::collection::vec(1..=SLOT, 0..80),
                max_segments in 1usize..70,
            ) {
                let sent = trains(&sizes, max_segments);
                let lens: Vec<usize> = sent.iter().flat_map(|(l, _)| l.clone()).collect();
                prop_assert_eq!(lens, sizes);
                for (train, segment) in &sent {
                    prop_assert!(train.len() <= max_segments);
                    prop_assert!(train.iter().sum::<usize>() <= GSO_BYTES.max(*segment));
                }
            }
        }
    }
}
