//! `mode: http`: LAN requests are forwarded to the route's one upstream over pooled, kept-alive
//! TLS connections (with session resumption), bodies streamed. The proxy reaches nothing but
//! its configured upstream: CONNECT and absolute-form requests are refused. Each request is
//! logged without its query string, bodies, cookies or Authorization header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{info, warn};
use tokio::io::{AsyncRead, AsyncWrite};

use super::lan::{Activity, IDLE_TIMEOUT};
use super::pool::{Lent, Pool};
use super::RouteRuntime;
use crate::logging::event;

/// The request line and headers must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line + headers) accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serve HTTP/1.1 on one LAN connection until it closes or sits idle.
pub async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    route: Arc<RouteRuntime>,
    worker: usize,
    activity: Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let route = route.clone();
        async move {
            let started = std::time::Instant::now();
            let response = forward(req, peer, &route, worker).await;
            route
                .stats
                .note_response(response.status().as_u16(), started.elapsed());
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = activity.idle_for(IDLE_TIMEOUT) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Headers that belong to one hop and are not passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

async fn forward(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    route: &RouteRuntime,
    worker: usize,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: query strings carry patient and claim identifiers.
    let path = req.uri().path().to_owned();
    let stats = &route.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);

    let refuse = |status: StatusCode, why: &str| {
        info!(
            "proxy {} http client={peer} {method} {path} {} refused: {why}",
            route.name,
            status.as_u16()
        );
        plain(status, why)
    };
    if method == Method::CONNECT {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "this proxy does not tunnel (CONNECT); it forwards only to its configured upstream",
        );
    }
    if req.uri().authority().is_some() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "absolute-form requests are refused: send origin-form (GET /path) to this route; it forwards only to its configured upstream",
        );
    }
    // This worker's own pool: the request and its upstream connection stay on one thread.
    let Some(pool) = route.pools.get(worker) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "not an http route");
    };

    // The request target stays in origin-form (`/path?query`); the Host header names the
    // upstream, whatever the LAN client sent. Upstream it is HTTP/1.1 (kept alive) even for an
    // HTTP/1.0 client, as nginx's `proxy_http_version 1.1` does.
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.insert(header::HOST, route.host_header.clone());

    let sent = Arc::new(AtomicU64::new(0));
    let req = req.map(|body| Counted::new(body, sent.clone()));
    match pool.send(req).await {
        Ok((res, lent, reused)) => {
            let log = RequestLog {
                route: route.name.clone(),
                peer,
                method,
                path,
                status: res.status().as_u16(),
                sent,
                received: Arc::new(AtomicU64::new(0)),
                started,
                reused,
            };
            let received = log.received.clone();
            res.map(|body| {
                LoggedBody {
                    inner: Counted::new(body, received),
                    connection: Some((pool.clone(), lent)),
                    ended: false,
                    _log: log,
                }
                .boxed()
            })
        }
        Err(e) => {
            // The connector's own error is the useful part: the TLS reason, the address.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = s.to_string();
                source = s.source();
            }
            stats.note_upstream_error(&why);
            warn!(
                oqs_event = event::PROXY_UPSTREAM_ERROR, oqs_proxy_route = route.name.as_str();
                "proxy {} http client={peer} {method} {path} 502 upstream {}: {why}",
                route.name, route.authority
            );
            plain(
                StatusCode::BAD_GATEWAY,
                &format!("oqs-edge: the upstream {} failed: {why}", route.authority),
            )
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// One line per request, written when the response body is done (or the client went away).
struct RequestLog {
    route: String,
    peer: SocketAddr,
    method: Method,
    path: String,
    status: u16,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    started: Instant,
    reused: bool,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        info!(
            oqs_event = event::PROXY_REQUEST, oqs_proxy_route = self.route.as_str();
            "proxy {} http client={} {} {} {} sent={}B received={}B duration={:.1}ms upstream={}",
            self.route,
            self.peer,
            self.method,
            self.path,
            self.status,
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64() * 1000.0,
            if self.reused { "reused" } else { "new" }
        );
    }
}

/// A body that counts the bytes passing through it.
pub struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        Counted { inner, bytes }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body; the request's log line goes out when it is dropped, and its upstream
/// connection goes back to the pool if the response was read to the end.
struct LoggedBody {
    inner: Counted<Incoming>,
    connection: Option<(Arc<Pool>, Lent)>,
    /// The upstream said the body ended (a chunked body never shows this in `is_end_stream`).
    ended: bool,
    _log: RequestLog,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((pool, lent)) = self.connection.take() {
            if self.ended || self.inner.is_end_stream() {
                pool.give_back(lent);
            }
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
