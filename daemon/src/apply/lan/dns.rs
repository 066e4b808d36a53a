//! The DNS relay: on each segment address, UDP and TCP port 53, built on Hickory DNS (its
//! server, its catalog of zones and its forwarding resolver; no DNS wire format here).
//!
//! Per segment, a catalog: each closed zone (`closed_network.dns_zones`) forwards to the
//! closed DNS, which the kill switch keeps inside the tunnel. A segment with `internet: allow`
//! also has the root zone, forwarded to `dns.internet_servers` (or the router's own resolvers).
//! Any other question finds no zone and is answered REFUSED by the catalog: nothing leaves the
//! router for it. The forwarders cache answers for their TTLs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::{Catalog, ZoneHandler};
use hickory_server::Server;
use log::{info, warn};

use crate::logging::event;
use crate::plan::lan::{DnsListenPlan, DnsPlan};
use crate::status::DnsInfo;

/// A TCP client that sends nothing for this long is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the relay waits for an upstream server, per attempt.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers per segment, since the daemon started.
#[derive(Debug, Default)]
struct Counters {
    answered: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// The segment's catalog, counting what it answers.
struct Counted {
    catalog: Catalog,
    counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl RequestHandler for Counted {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let info = self
            .catalog
            .handle_request::<R, T>(request, response_handle)
            .await;
        let counter = match info.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => &self.counters.answered,
            ResponseCode::Refused => &self.counters.refused,
            _ => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        info
    }
}

struct Running {
    /// The listen plan this server was started for; another one restarts it.
    listen: DnsListenPlan,
    /// Dropping the server stops its sockets' tasks (not at once: see [`DnsRelay::apply`]).
    server: Server<Counted>,
}

/// The DNS relay applier.
#[derive(Default)]
pub struct DnsRelay {
    plan: Option<DnsPlan>,
    running: BTreeMap<IpAddr, Running>,
    /// Per segment name; kept across restarts of its servers.
    counters: BTreeMap<String, Arc<Counters>>,
    /// Listen addresses that could not be opened, with why.
    problems: BTreeMap<IpAddr, String>,
}

impl DnsRelay {
    /// Serve the planned addresses; a changed policy restarts the servers, an address that
    /// cannot be opened now (its segment address is missing) is retried on the next call.
    pub async fn apply(&mut self, plan: Option<&DnsPlan>) {
        if self.plan.as_ref() != plan {
            if !self.running.is_empty() {
                info!(oqs_event = event::DNS; "DNS relay: the policy changed; restarting it");
            }
            // Stop the old servers and wait until their sockets are closed, so the new ones
            // can bind the same addresses now (a dropped server lets go of them later).
            for (_, mut running) in std::mem::take(&mut self.running) {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    running.server.shutdown_gracefully(),
                )
                .await;
            }
            self.problems.clear();
            self.plan = plan.cloned();
        }
        let Some(plan) = self.plan.clone() else {
            return;
        };
        for listen in &plan.listen {
            if self
                .running
                .get(&listen.address)
                .is_some_and(|r| &r.listen == listen)
            {
                continue;
            }
            let counters = self
                .counters
                .entry(listen.segment.clone())
                .or_default()
                .clone();
            match start(&plan, listen, counters).await {
                Ok(server) => {
                    self.problems.remove(&listen.address);
                    info!(oqs_event = event::DNS; "DNS relay answering on {} port 53 (segment {})", listen.address, listen.segment);
                    self.running.insert(
                        listen.address,
                        Running {
                            listen: listen.clone(),
                            server,
                        },
                    );
                }
                Err(why) => {
                    if self.problems.get(&listen.address) != Some(&why) {
                        warn!(oqs_event = event::DNS; "DNS relay on {} port 53 (segment {}): {why}; retrying", listen.address, listen.segment);
                    }
                    self.problems.insert(listen.address, why);
                }
            }
        }
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|(address, why)| format!("the DNS relay does not answer on {address}: {why}"))
            .collect()
    }

    /// A segment's counters, when the relay serves it.
    pub fn info(&self, segment: &str) -> Option<DnsInfo> {
        let plan = self.plan.as_ref()?;
        if !plan.listen.iter().any(|l| l.segment == segment) {
            return None;
        }
        let c = self.counters.get(segment).cloned().unwrap_or_default();
        Some(DnsInfo {
            answered: c.answered.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        })
    }

    pub fn stop(&mut self) {
        self.running.clear();
    }
}

async fn start(
    plan: &DnsPlan,
    listen: &DnsListenPlan,
    counters: Arc<Counters>,
) -> Result<Server<Counted>, String> {
    let catalog = catalog(plan, listen)?;
    let address = SocketAddr::new(listen.address, 53);
    let udp = tokio::net::UdpSocket::bind(address)
        .await
        .map_err(|e| format!("cannot listen on UDP {address}: {e}"))?;
    let tcp = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on TCP {address}: {e}"))?;
    let mut server = Server::new(Counted { catalog, counters });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 64);
    Ok(server)
}

fn catalog(plan: &DnsPlan, listen: &DnsListenPlan) -> Result<Catalog, String> {
    let mut catalog = Catalog::new();
    for zone in &plan.closed_zones {
        // Fully qualified, as the questions are: the catalog matches labels from the root.
        let origin =
            Name::from_ascii(format!("{zone}.")).map_err(|e| format!("zone {zone}: {e}"))?;
        let handler = forwarder(&plan.closed_servers)
            .with_origin(origin.clone())
            .build()
            .map_err(|e| format!("zone {zone}: {e}"))?;
        let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
        catalog.upsert(LowerName::new(&origin), vec![handler]);
    }
    if listen.internet {
        let builder = if plan.internet_servers.is_empty() {
            // The router's own resolvers: what the WAN's DHCP (or the installer) gave the OS.
            ForwardZoneHandler::builder(TokioRuntimeProvider::default())
                .map_err(|e| format!("the router's resolvers: {e}"))?
        } else {
            forwarder(&plan.internet_servers)
        };
        let handler: Arc<dyn ZoneHandler> = Arc::new(
            builder
                .build()
                .map_err(|e| format!("internet resolvers: {e}"))?,
        );
        catalog.upsert(LowerName::new(&Name::root()), vec![handler]);
    }
    Ok(catalog)
}

fn forwarder(
    servers: &[IpAddr],
) -> hickory_server::store::forwarder::ForwardZoneHandlerBuilder<TokioRuntimeProvider> {
    ForwardZoneHandler::builder_tokio(ForwardConfig {
        name_servers: servers
            .iter()
            .map(|ip| NameServerConfig::udp_and_tcp(*ip))
            .collect(),
        options: Some(options()),
    })
}

fn options() -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.timeout = UPSTREAM_TIMEOUT;
    options.attempts = 2;
    options
}

/// A resolver that asks only the closed network's DNS servers (through the tunnel), for the
/// proxy's upstream names; it caches by TTL, so a changed answer is followed once it expires.
pub fn closed_resolver(plan: &DnsPlan) -> Result<TokioResolver, String> {
    let config = ResolverConfig::from_parts(
        None,
        Vec::new(),
        plan.closed_servers
            .iter()
            .map(|ip| NameServerConfig::udp_and_tcp(*ip))
            .collect(),
    );
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = options();
    builder
        .build()
        .map_err(|e| format!("cannot make the closed-network resolver: {e}"))
}
