//! The proxy applier: the local mTLS proxy that presents the clinic's client certificate
//! (電子証明書) to the eligibility and claims endpoints.
//!
//! Each route listens on the LAN ([`lan`]), forwards requests ([`http`]) or bytes to its one
//! upstream over TLS ([`upstream`]). Everything a connection needs — the client certificate,
//! the trusted CA, the LAN certificate, the pooled upstream connections — is one
//! [`RouteRuntime`], swapped whole when something changes: connections already open finish
//! with the one they started with, new ones get the new one (and a new TLS session cache, so
//! a new certificate is presented from the next handshake on).
//!
//! [`Proxy::apply`] is the one path for start, reload and the watch: it re-reads the files,
//! rebuilds only the routes whose inputs changed, and never drops a working route for a broken
//! input (a half-written certificate file keeps the previous one in service).

mod http;
mod lan;
mod pool;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use log::{error, info, warn};
use rustls::pki_types::ServerName;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::logging::event;
use crate::pki::{self, local_ca, ClientCertificate};
use crate::plan::{CertificatePlan, CertificateSource, Plan, ProxyRoutePlan};
use crate::status::{CertificateInfo, Dated, DurationHistogram, ProxyRouteInfo};
use upstream::Upstream;

/// Counters for one route, kept across reloads.
#[derive(Default)]
pub struct RouteStats {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub over_limit: AtomicU64,
    pub requests: AtomicU64,
    pub upstream_handshakes: AtomicU64,
    pub upstream_resumed: AtomicU64,
    last_upstream_error: Mutex<Option<String>>,
    /// Responses by status class: 1xx … 5xx.
    responses: [AtomicU64; 5],
    /// Requests that took at most [`DURATION_BUCKETS`]`[i]` seconds until the response head
    /// (not cumulative: the histogram adds them up).
    durations: [AtomicU64; DURATION_BUCKETS.len()],
    /// Requests past the last bucket.
    slower: AtomicU64,
    duration_micros: AtomicU64,
}

/// Upper bounds of the request duration histogram, in seconds (Prometheus' defaults).
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl RouteStats {
    /// One response sent to the LAN (`mode: http`), `took` after the request came in.
    pub fn note_response(&self, status: u16, took: std::time::Duration) {
        if let Some(class) = self
            .responses
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            class.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = took.as_secs_f64();
        match DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            Some(i) => self.durations[i].fetch_add(1, Ordering::Relaxed),
            None => self.slower.fetch_add(1, Ordering::Relaxed),
        };
        self.duration_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn responses(&self) -> BTreeMap<String, u64> {
        self.responses
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("{}xx", i + 1), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn duration(&self) -> DurationHistogram {
        let mut total = 0;
        let buckets = DURATION_BUCKETS
            .iter()
            .zip(&self.durations)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound, total)
            })
            .collect();
        DurationHistogram {
            buckets,
            sum_seconds: self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: total + self.slower.load(Ordering::Relaxed),
        }
    }

    pub fn note_upstream_error(&self, why: &str) {
        *self
            .last_upstream_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
    }
}

/// What serves a route's connections; replaced whole when an input changes.
pub struct RouteRuntime {
    pub name: String,
    pub allow: Vec<IpNet>,
    pub lan_tls: Option<TlsAcceptor>,
    pub upstream: Arc<Upstream>,
    /// `mode: http`: one pool of upstream connections per worker (empty for `mode: tcp`), so
    /// a request never waits on another thread's connection.
    pub pools: Vec<Arc<pool::Pool>>,
    /// `host:port` of the upstream.
    pub authority: String,
    pub host_header: ::http::HeaderValue,
    pub stats: Arc<RouteStats>,
}

impl RouteRuntime {
    pub fn is_http(&self) -> bool {
        !self.pools.is_empty()
    }

    pub fn allowed(&self, ip: IpAddr) -> bool {
        // A v4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// The certificate a route presents, and why that one.
struct Chosen {
    name: String,
    cert: Arc<ClientCertificate>,
    why: Option<String>,
}

/// A client certificate as last read from its files.
struct LoadedCertificate {
    plan: CertificatePlan,
    /// SHA-256 over the files' bytes: the watch notices a replaced certificate by this.
    files_digest: Option<[u8; 32]>,
    cert: Option<Arc<ClientCertificate>>,
    problem: Option<String>,
}

struct RouteHandle {
    plan: ProxyRoutePlan,
    /// What the runtime was built from; a change rebuilds it.
    inputs: Option<[u8; 32]>,
    runtime: Option<Arc<ArcSwap<RouteRuntime>>>,
    stats: Arc<RouteStats>,
    /// One accept loop per worker, all on the same socket.
    listeners: Vec<JoinHandle<()>>,
    problem: Option<String>,
    /// The client certificate presented now, and why that one (for a list).
    presenting: Option<(String, Option<String>)>,
}

impl RouteHandle {
    fn listening(&self) -> bool {
        !self.listeners.is_empty() && self.listeners.iter().all(|t| !t.is_finished())
    }

    fn close_listeners(&mut self) {
        for task in self.listeners.drain(..) {
            task.abort();
        }
    }
}

impl Drop for RouteHandle {
    fn drop(&mut self) {
        self.close_listeners();
    }
}

#[derive(Default)]
pub struct Proxy {
    certificates: BTreeMap<String, LoadedCertificate>,
    lan_identity: Option<Arc<local_ca::ServerIdentity>>,
    lan_problem: Option<String>,
    routes: BTreeMap<String, RouteHandle>,
    /// Resolves upstream names through the closed network's DNS (when `closed_network.dns` is
    /// set), with the servers it was made for.
    resolver: Option<(Vec<std::net::IpAddr>, Arc<hickory_resolver::TokioResolver>)>,
    /// The proxy's own threads, apart from the supervisor's: an nft run or a reload never
    /// stalls a request. Made when the first route starts.
    workers: Option<Workers>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.routes.clear();
    }
}

/// The proxy's event loops: one single-threaded runtime per core, like nginx's workers. All
/// of them accept on a route's socket; a connection, its requests and the upstream connections
/// they use stay on the worker that accepted it, so nothing is handed between threads and no
/// thread steals another's work. The design before, one multi-thread runtime on all cores but
/// one, served ~0.9× nginx's requests/s on a 2-core router (netns-tests/BENCHMARKS.md).
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    /// Dropping these ends the workers' loops (and their tasks).
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    fn start() -> Result<Workers, String> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut workers = Workers {
            handles: Vec::with_capacity(count),
            _stop: Vec::with_capacity(count),
        };
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the proxy's threads: {e}"))?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("oqs-edge-proxy-{i}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })
                .map_err(|e| format!("cannot start the proxy's threads: {e}"))?;
            workers.handles.push(handle);
            workers._stop.push(stop);
        }
        Ok(workers)
    }
}

impl Proxy {
    /// Load the certificates, make the local CA if needed and open the listeners. A route
    /// that cannot start is reported and retried by [`Proxy::watch`].
    pub async fn start(plan: &Plan) -> Proxy {
        let mut proxy = Proxy::default();
        proxy.apply(plan).await;
        proxy
    }

    /// Bring the proxy to `plan`, changing only what changed (files included). The watch calls
    /// it every few seconds: a certificate file replaced, a listener that could not open, a LAN
    /// certificate near its end.
    pub async fn apply(&mut self, plan: &Plan) {
        self.load_certificates(&plan.certificates);
        self.ensure_lan_identity(plan);
        self.ensure_resolver(plan);
        self.routes
            .retain(|name, _| plan.proxy.iter().any(|r| &r.name == name));
        for route in &plan.proxy {
            self.apply_route(route).await;
        }
    }

    /// Upstream names are asked of the closed network's DNS, never the router's resolv.conf
    /// (which would fail for a closed name and tell the ISP what was looked for).
    fn ensure_resolver(&mut self, plan: &Plan) {
        let servers = plan.dns.as_ref().map(|d| d.closed_servers.clone());
        if self.resolver.as_ref().map(|(s, _)| s) == servers.as_ref() {
            return;
        }
        self.resolver =
            plan.dns
                .as_ref()
                .and_then(|dns| match crate::apply::lan::dns::closed_resolver(dns) {
                    Ok(resolver) => Some((dns.closed_servers.clone(), Arc::new(resolver))),
                    Err(why) => {
                        warn!("proxy: {why}; upstream names cannot be resolved");
                        None
                    }
                });
    }

    fn load_certificates(&mut self, plans: &[CertificatePlan]) {
        self.certificates
            .retain(|name, _| plans.iter().any(|p| &p.name == name));
        for plan in plans {
            let digest = files_digest(&plan.source);
            if let Some(current) = self.certificates.get(&plan.name) {
                if current.plan == *plan && current.files_digest == digest && digest.is_some() {
                    continue;
                }
            }
            let loaded = load_certificate(&plan.source);
            let previous = self.certificates.remove(&plan.name);
            let entry = match (loaded, previous) {
                (Ok(cert), previous) => {
                    let replaced = previous.as_ref().and_then(|p| p.cert.as_ref()).is_some();
                    info!(
                        oqs_event = event::CERTIFICATE;
                        "client certificate `{}` {}: CN {}, valid until {}, {} days left, sha256 {}",
                        plan.name,
                        if replaced { "replaced" } else { "loaded" },
                        cert.subject_cn.as_deref().unwrap_or("(none)"),
                        humantime::format_rfc3339_seconds(cert.not_after),
                        cert.days_left(SystemTime::now()),
                        cert.fingerprint_sha256
                    );
                    LoadedCertificate {
                        plan: plan.clone(),
                        files_digest: digest,
                        cert: Some(Arc::new(cert)),
                        problem: None,
                    }
                }
                (Err(why), Some(previous)) if previous.cert.is_some() && previous.plan == *plan => {
                    // Keep presenting the certificate that worked: the file may be mid-copy.
                    if previous.problem.as_deref() != Some(why.as_str()) {
                        error!(
                            oqs_event = event::CERTIFICATE;
                            "client certificate `{}` changed on disk but cannot be used: {why}; \
                             the proxy keeps presenting the previous one",
                            plan.name
                        );
                    }
                    LoadedCertificate {
                        files_digest: digest,
                        problem: Some(why),
                        ..previous
                    }
                }
                (Err(why), _) => {
                    error!(oqs_event = event::CERTIFICATE; "client certificate `{}`: {why}", plan.name);
                    LoadedCertificate {
                        plan: plan.clone(),
                        files_digest: digest,
                        cert: None,
                        problem: Some(why),
                    }
                }
            };
            self.certificates.insert(plan.name.clone(), entry);
        }
    }

    fn ensure_lan_identity(&mut self, plan: &Plan) {
        let tls_routes: Vec<&ProxyRoutePlan> = plan
            .proxy
            .iter()
            .filter(|r| r.lan_tls == "local-ca")
            .collect();
        let Some(dir) = plan
            .local_ca_dir
            .as_deref()
            .filter(|_| !tls_routes.is_empty())
        else {
            self.lan_identity = None;
            return;
        };
        let names = local_ca::server_names(tls_routes.iter().map(|r| r.listen.ip()));
        match local_ca::ensure(dir, &names, time::OffsetDateTime::now_utc()) {
            Ok(identity) => {
                if identity.issued || self.lan_identity.is_none() {
                    if identity.issued {
                        info!(
                            "LAN server certificate issued by the local CA for {} (valid until {})",
                            names.join(", "),
                            identity.not_after.date()
                        );
                    }
                    self.lan_identity = Some(Arc::new(identity));
                }
                self.lan_problem = None;
            }
            Err(e) => {
                if self.lan_problem.as_deref() != Some(e.to_string().as_str()) {
                    error!("{e}");
                }
                self.lan_problem = Some(e.to_string());
            }
        }
    }

    /// The workers' runtime handles, the threads started on first use.
    fn workers(&mut self) -> Result<Vec<tokio::runtime::Handle>, String> {
        if self.workers.is_none() {
            self.workers = Some(Workers::start()?);
        }
        self.workers
            .as_ref()
            .map(|w| w.handles.clone())
            .ok_or_else(|| "the proxy's threads are not running".to_owned())
    }

    async fn apply_route(&mut self, plan: &ProxyRoutePlan) {
        let workers = self.workers();
        let worker_count = workers.as_ref().map_or(1, Vec::len);
        let stats = self
            .routes
            .get(&plan.name)
            .map(|h| h.stats.clone())
            .unwrap_or_default();
        let current = self
            .routes
            .get(&plan.name)
            .filter(|h| h.runtime.is_some())
            .and_then(|h| h.inputs);
        let chosen = self.choose_certificate(&plan.client_certificate, SystemTime::now());
        let built = chosen
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| self.build_runtime(plan, c, &stats, current, worker_count));
        let handle = self
            .routes
            .entry(plan.name.clone())
            .or_insert_with(|| RouteHandle {
                plan: plan.clone(),
                inputs: None,
                runtime: None,
                stats: stats.clone(),
                listeners: Vec::new(),
                problem: None,
                presenting: None,
            });
        if let Ok(chosen) = &chosen {
            let now = (chosen.name.clone(), chosen.why.clone());
            if handle.presenting.as_ref() != Some(&now) {
                info!(
                    oqs_event = event::CERTIFICATE;
                    "proxy {}: presents client certificate `{}`{}",
                    plan.name,
                    now.0,
                    now.1.as_deref().map(|w| format!(" ({w})")).unwrap_or_default()
                );
                handle.presenting = Some(now);
            }
        }
        // A new listen address needs a new listener.
        if handle.plan.listen != plan.listen {
            handle.close_listeners();
        }
        handle.plan = plan.clone();
        match built {
            // Unchanged: the route goes on as it is (a problem from an earlier tick is over).
            Ok((_, None)) => handle.problem = None,
            Ok((inputs, Some(runtime))) => {
                let runtime = Arc::new(runtime);
                match &handle.runtime {
                    Some(current) => {
                        current.store(runtime);
                        info!(
                            "proxy {}: new connections use the changed settings; open ones finish as they are",
                            plan.name
                        );
                    }
                    None => handle.runtime = Some(Arc::new(ArcSwap::new(runtime))),
                }
                handle.inputs = Some(inputs);
                handle.problem = None;
            }
            Err(why) => {
                if handle.problem.as_deref() != Some(why.as_str()) {
                    error!("proxy {}: {why}", plan.name);
                }
                if handle.runtime.is_some() {
                    // The route keeps serving with what it had.
                    handle.problem =
                        Some(format!("{why} (still serving with the previous settings)"));
                } else {
                    handle.problem = Some(why);
                }
            }
        }
        if !handle.listening() {
            handle.close_listeners();
            if let Some(route_runtime) = &handle.runtime {
                // One bind; each worker's reactor watches its own descriptor of the socket.
                let bound = workers.and_then(|workers| {
                    let listen = |e: std::io::Error| {
                        format!(
                            "cannot listen on {}: {e}; is the address on one of the router's interfaces?",
                            plan.listen
                        )
                    };
                    let socket = std::net::TcpListener::bind(plan.listen)
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .map_err(listen)?;
                    workers
                        .into_iter()
                        .map(|rt| {
                            let accepting = {
                                let _enter = rt.enter();
                                socket.try_clone().and_then(TcpListener::from_std)
                            };
                            accepting.map(|l| (rt, l)).map_err(listen)
                        })
                        .collect::<Result<Vec<_>, String>>()
                });
                match bound {
                    Ok(listeners) => {
                        let limits = Arc::new(lan::Limits::default());
                        for (worker, (rt, listener)) in listeners.into_iter().enumerate() {
                            handle.listeners.push(rt.spawn(lan::serve(
                                listener,
                                worker,
                                route_runtime.clone(),
                                handle.stats.clone(),
                                limits.clone(),
                            )));
                        }
                        info!(
                            "proxy {}: listening on {} ({} {}) for {}",
                            plan.name, plan.listen, plan.mode, plan.lan_tls, plan.upstream
                        );
                    }
                    Err(why) => {
                        if handle.problem.as_deref() != Some(why.as_str()) {
                            warn!("proxy {}: {why}; retrying", plan.name);
                        }
                        handle.problem = Some(why);
                    }
                }
            }
        }
    }

    /// The runtime for a route from the current certificates and files, with a digest of
    /// everything it is built from; `None` (nothing built) when that digest is `current`'s, as
    /// it is on almost every tick of the watch.
    /// The certificate a route presents now: the first of its list that is loaded, started and
    /// not expired, with why in plain words when the list had to be read past its first. When
    /// none is within its dates the first loaded one is presented still (the upstream says no,
    /// as it would have before lists).
    fn choose_certificate(&self, names: &[String], now: SystemTime) -> Result<Chosen, String> {
        let mut skipped = Vec::new();
        let mut fallback = None;
        for name in names {
            let Some(loaded) = self.certificates.get(name) else {
                skipped.push(format!("`{name}` is not configured"));
                continue;
            };
            let Some(cert) = loaded.cert.clone() else {
                skipped.push(format!(
                    "`{name}` cannot be used: {}",
                    loaded.problem.as_deref().unwrap_or("not loaded")
                ));
                continue;
            };
            let why_not = if now < cert.not_before {
                format!(
                    "`{name}` is not valid until {}",
                    pki::show_time(cert.not_before)
                )
            } else if now >= cert.not_after {
                format!("`{name}` expired on {}", pki::show_time(cert.not_after))
            } else {
                let why = match skipped.is_empty() {
                    true if names.len() > 1 => Some("the first of its list, valid now".to_owned()),
                    true => None,
                    false => Some(skipped.join("; ")),
                };
                return Ok(Chosen {
                    name: name.clone(),
                    cert,
                    why,
                });
            };
            skipped.push(why_not);
            fallback = fallback.or(Some((name.clone(), cert)));
        }
        match fallback {
            Some((name, cert)) => Ok(Chosen {
                name,
                cert,
                why: Some(format!("none is valid now: {}", skipped.join("; "))),
            }),
            None => Err(format!(
                "no client certificate can be used: {}",
                skipped.join("; ")
            )),
        }
    }

    fn build_runtime(
        &self,
        plan: &ProxyRoutePlan,
        chosen: &Chosen,
        stats: &Arc<RouteStats>,
        current: Option<[u8; 32]>,
        workers: usize,
    ) -> Result<([u8; 32], Option<RouteRuntime>), String> {
        let cert = chosen.cert.clone();
        let server_ca = std::fs::read(&plan.server_ca)
            .map_err(|e| format!("cannot read server_ca {}: {e}", plan.server_ca.display()))?;
        let lan_identity = match plan.lan_tls.as_str() {
            "local-ca" => Some(self.lan_identity.clone().ok_or_else(|| {
                format!(
                    "no LAN certificate: {}",
                    self.lan_problem
                        .as_deref()
                        .unwrap_or("the local CA is not set up")
                )
            })?),
            _ => None,
        };

        let mut digest = Sha256::new();
        digest.update(format!("{plan:?}"));
        digest.update(format!("{:?}", self.resolver.as_ref().map(|(s, _)| s)));
        digest.update(&cert.fingerprint_sha256);
        digest.update(&server_ca);
        if let Some(identity) = &lan_identity {
            digest.update(identity.chain[0].as_ref());
        }
        let inputs: [u8; 32] = digest.finalize().into();
        if current == Some(inputs) {
            return Ok((inputs, None));
        }

        let tls = upstream::client_config(&plan.server_ca, &cert)?;
        let server_name = ServerName::try_from(plan.upstream_host.clone())
            .map_err(|e| format!("upstream host `{}`: {e}", plan.upstream_host))?;
        let upstream = Arc::new(Upstream {
            host: plan.upstream_host.clone(),
            port: plan.upstream_port,
            address: plan.upstream_address,
            resolver: self.resolver.as_ref().map(|(_, r)| r.clone()),
            server_name,
            tls: TlsConnector::from(tls),
            server_ca: plan.server_ca.display().to_string(),
            client_certificate: chosen.name.clone(),
        });
        let lan_tls = match lan_identity {
            Some(identity) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| e.to_string())?
                    .with_no_client_auth()
                    .with_single_cert(identity.chain.clone(), identity.key.clone_key())
                    .map_err(|e| format!("LAN certificate: {e}"))?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let authority = if plan.upstream_host.contains(':') {
            format!("[{}]:{}", plan.upstream_host, plan.upstream_port)
        } else {
            format!("{}:{}", plan.upstream_host, plan.upstream_port)
        };
        let host_header = if plan.upstream_port == 443 {
            plan.upstream_host.clone()
        } else {
            authority.clone()
        };
        let host_header = ::http::HeaderValue::from_str(&host_header)
            .map_err(|e| format!("upstream host `{host_header}`: {e}"))?;
        // The workers share the TLS settings (and so the session cache); each has its own pool,
        // whose connections run on that worker.
        let pools = match plan.mode.as_str() {
            "http" => (0..workers)
                .map(|_| pool::Pool::new(upstream.clone(), stats.clone()))
                .collect(),
            _ => Vec::new(),
        };
        Ok((
            inputs,
            Some(RouteRuntime {
                name: plan.name.clone(),
                allow: plan.allow.clone(),
                lan_tls,
                upstream,
                pools,
                authority,
                host_header,
                stats: stats.clone(),
            }),
        ))
    }

    /// Problems for `status`, in plain words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, c) in &self.certificates {
            if let Some(why) = &c.problem {
                problems.push(format!("client certificate `{name}`: {why}"));
            }
        }
        for (name, r) in &self.routes {
            if let Some(why) = &r.problem {
                problems.push(format!("proxy route {name}: {why}"));
            }
        }
        problems
    }

    pub fn certificate_info(&self, now: SystemTime) -> Vec<CertificateInfo> {
        self.certificates
            .iter()
            .map(|(name, c)| {
                let file = match &c.plan.source {
                    CertificateSource::Pkcs12 { pkcs12, .. } => pkcs12,
                    CertificateSource::Pem { cert, .. } => cert,
                };
                let mut info = match &c.cert {
                    Some(cert) => CertificateInfo::dated(
                        Dated {
                            name,
                            kind: "client",
                            file,
                            subject_cn: cert.subject_cn.clone(),
                            not_before: cert.not_before,
                            not_after: cert.not_after,
                            fingerprint_sha256: cert.fingerprint_sha256.clone(),
                        },
                        now,
                    ),
                    None => CertificateInfo {
                        name: name.clone(),
                        kind: "client".to_owned(),
                        file: Some(file.clone()),
                        ..CertificateInfo::default()
                    },
                };
                info.problem.clone_from(&c.problem);
                info
            })
            .collect()
    }

    pub fn route_info(&self, plans: &[ProxyRoutePlan]) -> Vec<ProxyRouteInfo> {
        plans
            .iter()
            .map(|plan| {
                let handle = self.routes.get(&plan.name);
                let n = |f: fn(&RouteStats) -> &AtomicU64| {
                    handle.map_or(0, |h| f(&h.stats).load(Ordering::Relaxed))
                };
                ProxyRouteInfo {
                    name: plan.name.clone(),
                    listen: plan.listen.to_string(),
                    upstream: plan.upstream.clone(),
                    listening: handle.is_some_and(RouteHandle::listening),
                    problem: handle.and_then(|h| h.problem.clone()),
                    connections: n(|s| &s.connections),
                    open: n(|s| &s.open),
                    refused: n(|s| &s.refused) + n(|s| &s.over_limit),
                    requests: n(|s| &s.requests),
                    upstream_handshakes: n(|s| &s.upstream_handshakes),
                    upstream_resumed: n(|s| &s.upstream_resumed),
                    responses: handle.map(|h| h.stats.responses()).unwrap_or_default(),
                    client_certificate: handle
                        .and_then(|h| h.presenting.as_ref())
                        .map(|(name, _)| name.clone()),
                    client_certificate_why: handle
                        .and_then(|h| h.presenting.as_ref())
                        .and_then(|(_, why)| why.clone()),
                    duration: handle.map(|h| h.stats.duration()).unwrap_or_default(),
                    last_upstream_error: handle.and_then(|h| {
                        h.stats
                            .last_upstream_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                    }),
                }
            })
            .collect()
    }

    /// Close the listeners; open connections end with the daemon.
    pub fn stop(&mut self) {
        self.routes.clear();
    }
}

/// Load a configured certificate from its files.
pub fn load_certificate(source: &CertificateSource) -> Result<ClientCertificate, String> {
    match source {
        CertificateSource::Pkcs12 {
            pkcs12,
            password_file,
        } => {
            let password = pki::read_password_file(password_file).map_err(|e| e.to_string())?;
            pki::load_pkcs12(pkcs12, &password).map_err(|e| e.to_string())
        }
        CertificateSource::Pem { cert, key } => pki::load_pem(cert, key).map_err(|e| e.to_string()),
    }
}

fn files_digest(source: &CertificateSource) -> Option<[u8; 32]> {
    let files: [&Path; 2] = match source {
        CertificateSource::Pkcs12 {
            pkcs12,
            password_file,
        } => [pkcs12, password_file],
        CertificateSource::Pem { cert, key } => [cert, key],
    };
    let mut digest = Sha256::new();
    for file in files {
        digest.update(std::fs::read(file).ok()?);
    }
    Some(digest.finalize().into())
}
