//! The LAN side of a route: accept, refuse sources outside `allow` before anything else,
//! bound the connections (per route and per client), speak TLS with the local CA's
//! certificate when `lan_tls: local-ca`, and close connections that sit idle.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use log::{debug, info, warn};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{http, RouteRuntime, RouteStats};
use crate::logging::event;

/// Connections one route serves at once.
pub const MAX_CONNECTIONS_PER_ROUTE: usize = 2048;
/// Connections one LAN client may hold on one route: one busy or stuck client cannot take
/// the whole route.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 1024;
/// A connection with no bytes either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The LAN TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts connections per client address.
#[derive(Default)]
pub struct PerClient(Mutex<std::collections::HashMap<IpAddr, usize>>);

pub struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What a LAN connection holds while it is open.
pub struct Admission {
    _route: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// A route's connection limits, shared by its listeners on every worker.
pub struct Limits {
    route: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            route: Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_ROUTE)),
            per_client: Arc::default(),
        }
    }
}

/// Accept connections for one route on one worker until the task is aborted. Every worker
/// accepts on the same socket; the connection is served by the worker that took it.
pub async fn serve(
    listener: TcpListener,
    worker: usize,
    runtime: Arc<ArcSwap<RouteRuntime>>,
    stats: Arc<RouteStats>,
    limits: Arc<Limits>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The runtime in force when the connection arrived serves it to the end: a reload
        // (new certificate) applies to new connections.
        let route = runtime.load_full();
        if !route.allowed(peer.ip()) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(
                "proxy {}: refused {peer}: not in the route's `allow`",
                route.name
            );
            continue;
        }
        let Ok(route_permit) = limits.route.clone().try_acquire_owned() else {
            stats.over_limit.fetch_add(1, Ordering::Relaxed);
            warn!(
                "proxy {}: refused {peer}: {MAX_CONNECTIONS_PER_ROUTE} connections already open",
                route.name
            );
            continue;
        };
        let Some(client_slot) = limits.per_client.take(peer.ip()) else {
            stats.over_limit.fetch_add(1, Ordering::Relaxed);
            warn!(
                "proxy {}: refused {peer}: it already holds {MAX_CONNECTIONS_PER_CLIENT} connections",
                route.name
            );
            continue;
        };
        let admission = Admission {
            _route: route_permit,
            _client: client_slot,
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_add(1, Ordering::Relaxed);
            handle(tcp, peer, route, worker, &stats).await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(admission);
        });
        // One connection at a time: the other workers, woken by the same burst of
        // connections, take their share instead of this one draining the backlog alone.
        tokio::task::yield_now().await;
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    route: Arc<RouteRuntime>,
    worker: usize,
    stats: &RouteStats,
) {
    let _ = tcp.set_nodelay(true);
    let activity = Activity::new();
    let tcp = Tracked::new(tcp, activity.clone());
    match &route.lan_tls {
        Some(acceptor) => {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    info!("proxy {}: TLS from {peer} failed: {e}", route.name);
                    return;
                }
                Err(_) => {
                    info!("proxy {}: TLS from {peer} timed out", route.name);
                    return;
                }
            };
            dispatch(tls, peer, route, worker, stats, activity).await;
        }
        None => dispatch(tcp, peer, route, worker, stats, activity).await,
    }
}

async fn dispatch<S>(
    io: S,
    peer: SocketAddr,
    route: Arc<RouteRuntime>,
    worker: usize,
    stats: &RouteStats,
    activity: Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if route.is_http() {
        http::serve_connection(io, peer, route, worker, activity).await;
    } else {
        tcp_mode(io, peer, route, stats, activity).await;
    }
}

/// `mode: tcp`: one upstream TLS connection per LAN connection, bytes copied both ways.
async fn tcp_mode<S>(
    mut io: S,
    peer: SocketAddr,
    route: Arc<RouteRuntime>,
    stats: &RouteStats,
    activity: Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut upstream = match route.upstream.connect(stats).await {
        Ok(upstream) => upstream,
        Err(e) => {
            stats.note_upstream_error(&e.to_string());
            warn!(
                oqs_event = event::PROXY_UPSTREAM_ERROR, oqs_proxy_route = route.name.as_str();
                "proxy {}: {peer}: {e}", route.name
            );
            return;
        }
    };
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut io, &mut upstream) => copied,
        () = activity.idle_for(IDLE_TIMEOUT) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("idle for {}s", IDLE_TIMEOUT.as_secs()),
        )),
    };
    match copied {
        Ok((up, down)) => info!(
            oqs_event = event::PROXY_REQUEST, oqs_proxy_route = route.name.as_str();
            "proxy {} tcp client={peer} sent={up}B received={down}B duration={:.1}ms",
            route.name,
            started.elapsed().as_secs_f64() * 1000.0
        ),
        Err(e) => info!(
            "proxy {} tcp client={peer} closed after {:.1}ms: {e}",
            route.name,
            started.elapsed().as_secs_f64() * 1000.0
        ),
    }
}

/// When bytes last moved on a connection, in ms since it opened.
#[derive(Clone)]
pub struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A stream that records activity on every read and write.
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: Activity) -> Self {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
