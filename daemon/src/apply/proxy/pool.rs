//! One worker's kept-alive upstream connections for one `mode: http` route.
//!
//! A request takes the most recently used idle connection (warm, least likely closed by the
//! upstream), or dials a new one and waits for it: there is no race between dialling and a
//! connection coming back, so the pool never opens more connections than requests in flight.
//! A connection goes back when its response body has been read to the end; one whose
//! exchange did not finish is dropped, and hyper closes it. Each connection's I/O runs as a
//! task on the worker that dialled it, the same thread as the requests that use it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use log::debug;

use super::http::Counted;
use super::upstream::{Upstream, UpstreamError};
use super::RouteStats;

/// Idle connections are closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per worker and route; a connection beyond these is closed.
const MAX_IDLE: usize = 32;

pub type RequestBody = Counted<Incoming>;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error("HTTP/1.1 with the upstream failed: {0}")]
    Http(#[from] hyper::Error),
}

/// A connection lent to one request; give it back with [`Pool::give_back`].
pub struct Lent {
    sender: SendRequest<RequestBody>,
    /// Past this, the DNS answer the connection was dialled by has expired.
    valid_until: Option<Instant>,
}

/// An idle connection: since when it is idle, and until when its address holds.
struct IdleConnection {
    sender: SendRequest<RequestBody>,
    since: Instant,
    valid_until: Option<Instant>,
}

pub struct Pool {
    upstream: Arc<Upstream>,
    stats: Arc<RouteStats>,
    /// Only this pool's worker touches it, so the lock is never contended.
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Oldest first.
    connections: VecDeque<IdleConnection>,
    sweeper: bool,
}

impl Pool {
    pub fn new(upstream: Arc<Upstream>, stats: Arc<RouteStats>) -> Arc<Self> {
        Arc::new(Pool {
            upstream,
            stats,
            idle: Mutex::new(Idle::default()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send `req` upstream: on an idle connection when there is one (then `reused` is true),
    /// else on a new one. A pooled connection the upstream closed meanwhile is skipped, and the
    /// request, not yet written, goes on the next.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lent, bool), PoolError> {
        while let Some((mut sender, valid_until)) = self.take_idle() {
            match sender.try_send_request(req).await {
                Ok(res) => {
                    return Ok((
                        res,
                        Lent {
                            sender,
                            valid_until,
                        },
                        true,
                    ))
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        debug!(
                            "pooled upstream connection closed before use: {}",
                            e.into_error()
                        );
                        req = unsent;
                    }
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let (mut sender, valid_until) = self.dial().await?;
        let res = sender.send_request(req).await?;
        Ok((
            res,
            Lent {
                sender,
                valid_until,
            },
            false,
        ))
    }

    fn take_idle(&self) -> Option<(SendRequest<RequestBody>, Option<Instant>)> {
        let mut idle = self.idle();
        while let Some(entry) = idle.connections.pop_back() {
            if usable(&entry) {
                return Some((entry.sender, entry.valid_until));
            }
        }
        None
    }

    async fn dial(&self) -> Result<(SendRequest<RequestBody>, Option<Instant>), PoolError> {
        let (tls, valid_until) = self.upstream.connect_until(&self.stats).await?;
        let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("upstream connection ended: {e}");
            }
        });
        Ok((sender, valid_until))
    }

    /// Keep a connection whose exchange finished for the next request.
    pub fn give_back(self: &Arc<Self>, lent: Lent) {
        if lent.sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.connections.len() >= MAX_IDLE {
            idle.connections.pop_front();
        }
        idle.connections.push_back(IdleConnection {
            sender: lent.sender,
            since: Instant::now(),
            valid_until: lent.valid_until,
        });
        if !idle.sweeper {
            // (A body dropped while its worker shuts down has no runtime to sweep with.)
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                idle.sweeper = true;
                runtime.spawn(sweep(Arc::downgrade(self)));
            }
        }
    }

    /// Close the connections idle for longer than [`IDLE_TIMEOUT`]; true when none is left.
    fn close_expired(&self) -> bool {
        let mut idle = self.idle();
        while idle.connections.front().is_some_and(|e| !usable(e)) {
            idle.connections.pop_front();
        }
        let empty = idle.connections.is_empty();
        if empty {
            idle.sweeper = false;
        }
        empty
    }
}

/// An idle connection still open, not idle for too long, and its DNS answer not expired.
fn usable(c: &IdleConnection) -> bool {
    !c.sender.is_closed()
        && c.since.elapsed() < IDLE_TIMEOUT
        && c.valid_until.is_none_or(|until| Instant::now() < until)
}

/// While a pool has idle connections, close those unused for too long, so an upstream is not
/// held open by a route nobody uses. Ends with the pool (a reload replaced the route).
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 3).await;
        match pool.upgrade() {
            Some(pool) if !pool.close_expired() => {}
            _ => return,
        }
    }
}
