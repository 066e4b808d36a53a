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
/// The most one read from a LAN connection takes in (hyper's read buffer grows to this only
/// while reads fill it). A request body goes upstream in chunks of up to this size: with the
/// read buffer capped at the head limit (16 KiB), a large upload cost a read, a TLS write and a
/// hand-over between the LAN and upstream tasks per 16 KiB, and the upstream a wake-up per
/// record. Bounded, so a connection holds at most a few of these while its body streams.
const MAX_READ_BYTES: usize = 128 * 1024;

/// An upstream that neither takes request bytes nor answers for this long is given up with a
/// 504: a path cut under a pooled connection (the WAN down, the tunnel rebuilt) otherwise waits
/// on TCP's retransmits past any client's patience. Progress, not a total: a large upload to a
/// slow upstream keeps going as long as it moves (nginx's `proxy_read_timeout`/`send_timeout`
/// work the same way). Under the 30 s clients such as curl scripts commonly allow.
pub const UPSTREAM_STALL_TIMEOUT: Duration = Duration::from_secs(20);

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
        // A client that shuts its write side after the request still gets the answer (found
        // by fuzzing: hyper's default dropped it); one that is gone fails the write and ends.
        .half_close(true)
        // The head limit on its own (431 past it), so the read buffer can be larger.
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_READ_BYTES);
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
    let Some(answer) = until_stalled(pool.send(req), &sent, UPSTREAM_STALL_TIMEOUT).await else {
        stats.note_upstream_error("no response");
        warn!(
            oqs_event = event::PROXY_UPSTREAM_ERROR, oqs_proxy_route = route.name.as_str();
            "proxy {} http client={peer} {method} {path} 504 upstream {}: no progress for {}s",
            route.name, route.authority, UPSTREAM_STALL_TIMEOUT.as_secs()
        );
        return plain(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "oqs-edge: the upstream {} took no data and sent no response for {} s",
                route.authority,
                UPSTREAM_STALL_TIMEOUT.as_secs()
            ),
        );
    };
    match answer {
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

/// `work`'s output, or `None` once `sent` (the request bytes gone upstream) has not grown for
/// `stall` while `work` was still waiting.
async fn until_stalled<T>(
    work: impl std::future::Future<Output = T>,
    sent: &AtomicU64,
    stall: Duration,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let tick = (stall / 4).max(Duration::from_millis(10));
    let mut last = sent.load(Ordering::Relaxed);
    let mut moved_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            () = tokio::time::sleep(tick) => {
                let now = sent.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    moved_at = tokio::time::Instant::now();
                } else if moved_at.elapsed() >= stall {
                    return None;
                }
            }
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

// One copy per module that fuzzes (unit tests reach private items); tests/fuzz/ holds it.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../../../tests/fuzz/common.rs"]
mod fuzz_common;

/// Fuzzing the LAN side of an http route (issue 22): request heads, header sizes, chunked
/// bodies, pipelining and early closes, over an in-memory stream into [`serve_connection`]. The
/// upstream refuses connections, so every request the proxy takes ends in its own answer. No
/// panic, no hang, and every answer is a well-formed HTTP/1.x response.
#[cfg(test)]
mod fuzz {
    use super::fuzz_common as common;
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use crate::apply::proxy::lan::Activity;
    use crate::apply::proxy::pool::Pool;
    use crate::apply::proxy::upstream::Upstream;
    use crate::apply::proxy::RouteStats;

    const DICTIONARY: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b": ",
        b" ",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/2.0",
        b"GET ",
        b"POST ",
        b"CONNECT ",
        b"OPTIONS * ",
        b"http://",
        b"Host: ",
        b"Content-Length: ",
        b"Content-Length: 18446744073709551616",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip, chunked",
        b"Connection: close",
        b"Connection: upgrade",
        b"Upgrade: websocket",
        b"Expect: 100-continue",
        b"0\r\n\r\n",
        b"ffffffff\r\n",
        b";ext=",
        b"\x00",
        b"\xff",
        b"%00",
        b"/../",
        b"?q=",
    ];

    /// An upstream nothing listens at: connections are refused at once.
    fn route() -> Arc<RouteRuntime> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let upstream = Arc::new(Upstream {
            host: "hweb-api.oqs.example".into(),
            port,
            address: Some("127.0.0.1".parse().unwrap()),
            resolver: None,
            server_name: rustls::pki_types::ServerName::try_from("hweb-api.oqs.example").unwrap(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            server_ca: "fuzz".into(),
            client_certificate: "fuzz".into(),
        });
        let stats = Arc::new(RouteStats::default());
        Arc::new(RouteRuntime {
            name: "fuzz".into(),
            allow: vec!["0.0.0.0/0".parse().unwrap()],
            lan_tls: None,
            pools: vec![Pool::new(upstream.clone(), stats.clone())],
            upstream,
            authority: format!("hweb-api.oqs.example:{port}"),
            host_header: HeaderValue::from_static("hweb-api.oqs.example"),
            stats,
        })
    }

    /// How the client ends its side.
    #[derive(Clone, Copy, Debug)]
    enum Close {
        /// Half-close after writing, then read every answer.
        AfterWriting,
        /// Go away without reading (an early close).
        Abruptly,
    }

    /// Send `input` in pieces of `splits` sizes; return what came back.
    fn exchange(input: Vec<u8>, splits: Vec<usize>, close: Close) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let serving = tokio::spawn(serve_connection(
                server,
                "192.168.60.10:50000".parse().unwrap(),
                route(),
                0,
                Activity::new(),
            ));
            let talk = async {
                let mut at = 0;
                for size in splits.iter().cycle() {
                    if at >= input.len() {
                        break;
                    }
                    let end = (at + size.max(&1)).min(input.len());
                    // The proxy may close first (a bad request): writing then fails.
                    if client.write_all(&input[at..end]).await.is_err() {
                        break;
                    }
                    at = end;
                }
                let mut answer = Vec::new();
                match close {
                    Close::AfterWriting => {
                        let _ = client.shutdown().await;
                        let _ = client.read_to_end(&mut answer).await;
                    }
                    Close::Abruptly => drop(client),
                }
                answer
            };
            let answer = tokio::time::timeout(Duration::from_secs(8), talk)
                .await
                .expect("the proxy neither answered nor closed within 8 s");
            let ended = tokio::time::timeout(Duration::from_secs(8), serving)
                .await
                .expect("the connection was still served 8 s after the client closed");
            if let Err(e) = ended {
                std::panic::resume_unwind(e.into_panic());
            }
            answer
        })
    }

    /// The answer on the connection starts with an HTTP/1.x status line.
    fn assert_responses(answer: &[u8]) {
        if answer.is_empty() {
            return;
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 ") || answer.starts_with(b"HTTP/1.0 "),
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        let status = std::str::from_utf8(&answer[9..12.min(answer.len())]).unwrap_or("");
        assert!(
            status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
            "bad status line: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }

    fn close() -> impl Strategy<Value = Close> {
        prop_oneof![3 => Just(Close::AfterWriting), 1 => Just(Close::Abruptly)]
    }

    proptest! {
        #![proptest_config(common::config("proxy-request", 3000))]
        #[test]
        fn fuzz_proxy_lan_requests_get_an_answer_or_a_close(
            input in common::mutated(common::seeds("proxy-request", &[]), DICTIONARY, 5),
            splits in proptest::collection::vec(1usize..4096, 1..8),
            close in close(),
        ) {
            let answer = exchange(input, splits, close);
            assert_responses(&answer);
        }
    }

    /// The proxy reaches nothing but its upstream.
    #[test]
    fn connect_and_absolute_form_are_refused() {
        for (request, status) in [
            (
                "CONNECT 10.200.0.10:443 HTTP/1.1\r\nHost: 10.200.0.10:443\r\n\r\n",
                "405",
            ),
            (
                "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
                "400",
            ),
        ] {
            let answer = exchange(request.as_bytes().to_vec(), vec![4096], Close::AfterWriting);
            assert!(
                answer.starts_with(format!("HTTP/1.1 {status}").as_bytes()),
                "{request:?}: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }

    #[test]
    fn every_seed_is_answered() {
        for seed in common::seeds("proxy-request", &[]) {
            let answer = exchange(seed.clone(), vec![4096], Close::AfterWriting);
            assert_responses(&answer);
            assert!(
                !answer.is_empty(),
                "no answer to {:?}",
                String::from_utf8_lossy(&seed[..seed.len().min(100)])
            );
        }
    }

    /// Found by fuzzing (issue 22): a client that shut its write side after the request got no
    /// answer at all (hyper closed on the EOF).
    #[test]
    fn fuzz_regression_a_half_closed_client_still_gets_its_answer() {
        let answer = exchange(
            b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            vec![4096],
            Close::AfterWriting,
        );
        assert!(
            answer.starts_with(b"HTTP/1.1 502"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// The head limit is MAX_HEADER_BYTES, not the (larger) read buffer: a head just under it
    /// is taken (the refused upstream then makes it a 502).
    #[test]
    fn a_head_under_the_limit_is_taken() {
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        let filler = MAX_HEADER_BYTES - input.len() - "X-Big: \r\n\r\n".len() - 64;
        input.extend(format!("X-Big: {}\r\n\r\n", "a".repeat(filler)).bytes());
        let answer = exchange(input, vec![1000], Close::AfterWriting);
        assert!(
            answer.starts_with(b"HTTP/1.1 502"),
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }

    #[test]
    fn a_head_over_the_limit_is_refused() {
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        input.extend(format!("X-Big: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES)).bytes());
        let answer = exchange(input, vec![1000], Close::AfterWriting);
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[cfg(test)]
mod stall {
    use super::*;

    /// An upstream that takes no bytes and gives no answer is given up after the stall time;
    /// one that keeps taking bytes is not, though it takes longer than that in all.
    #[tokio::test]
    async fn only_an_upstream_without_progress_is_given_up() {
        let stall = Duration::from_millis(300);
        let sent = AtomicU64::new(0);
        let started = Instant::now();
        assert!(until_stalled(std::future::pending::<()>(), &sent, stall)
            .await
            .is_none());
        let waited = started.elapsed();
        assert!(waited >= stall && waited < stall * 10, "{waited:?}");

        let sent = Arc::new(AtomicU64::new(0));
        let feeding = sent.clone();
        let slow_upload = async move {
            // 600 ms in all, twice the stall time, a byte every 20 ms: slow but moving.
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                feeding.fetch_add(1, Ordering::Relaxed);
            }
            "answered"
        };
        assert_eq!(
            until_stalled(slow_upload, &sent, stall).await,
            Some("answered")
        );
    }
}
