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

// One copy per module that fuzzes (unit tests reach private items); tests/fuzz/ holds it.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../../../tests/fuzz/common.rs"]
mod fuzz_common;

/// Fuzzing the relay's query handling (issue 22): datagrams and TCP messages — mutated real
/// queries and garbage — to a relay for a segment with `internet: deny`. The relay keeps
/// answering (a probe outside the closed zones is REFUSED after every input), an answer carries
/// the query's id, and nothing but a question inside the closed zones reaches the closed DNS.
#[cfg(test)]
mod fuzz {
    use super::fuzz_common as common;
    use super::*;
    use hickory_server::proto::op::Message;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt as _;

    const ZONES: [&str; 2] = ["onshikaku.org", "oqs-pdl.org"];
    /// The closed DNS as the relay sees it: a socket of ours on port 53 that never answers;
    /// one address per test, as the tests run in parallel.
    const CLOSED_DNS_FUZZ: &str = "127.0.0.77";
    const CLOSED_DNS_SEEDS: &str = "127.0.0.78";

    const DICTIONARY: &[&[u8]] = &[
        b"\x00",
        b"\xc0\x0c",
        b"\xc0\xff",
        b"\x3f",
        b"\x09onshikaku\x03org\x00",
        b"\x07example\x03com\x00",
        b"\x00\x01\x00\x01",
        b"\x00\xff\x00\x01",
        b"\x00\xfc\x00\x01",
        b"\x00\x29\x04\xd0",
        b"\xff\xff",
    ];

    struct Relay {
        _server: Server<Counted>,
        udp: SocketAddr,
        tcp: SocketAddr,
        /// What reached the closed DNS, when port 53 could be bound (root).
        closed: Option<tokio::net::UdpSocket>,
    }

    async fn relay(closed_dns: &str) -> Relay {
        let closed = tokio::net::UdpSocket::bind((closed_dns, 53)).await.ok();
        let plan = DnsPlan {
            listen: vec![],
            closed_servers: vec![closed_dns.parse().unwrap()],
            closed_zones: ZONES.iter().map(|z| z.to_string()).collect(),
            internet_servers: vec![],
        };
        let listen = DnsListenPlan {
            segment: "oqs".into(),
            address: "127.0.0.1".parse().unwrap(),
            internet: false,
        };
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (udp_at, tcp_at) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let mut server = Server::new(Counted {
            catalog: catalog(&plan, &listen).unwrap(),
            counters: Arc::default(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, 64);
        Relay {
            _server: server,
            udp: udp_at,
            tcp: tcp_at,
            closed,
        }
    }

    /// Send one datagram; the answer if one comes within `wait`.
    async fn ask(to: SocketAddr, query: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(query, to).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn in_closed_zones(name: &Name) -> bool {
        ZONES.iter().any(|z| {
            Name::from_ascii(format!("{z}.")).is_ok_and(|zone| zone.zone_of(&name.to_lowercase()))
        })
    }

    #[derive(Clone, Debug)]
    enum Input {
        Udp(Vec<u8>),
        /// A TCP message: its length prefix (perhaps wrong), the bytes, then a close.
        Tcp(u16, Vec<u8>),
    }

    fn input() -> impl Strategy<Value = Input> {
        let message = prop_oneof![
            4 => common::mutated(common::seeds("dns-query", &[]), DICTIONARY, 4),
            1 => proptest::collection::vec(any::<u8>(), 0..64),
        ];
        prop_oneof![
            3 => message.clone().prop_map(Input::Udp),
            1 => (any::<bool>(), any::<u16>(), message).prop_map(|(honest, len, m)| {
                let len = if honest { m.len() as u16 } else { len };
                Input::Tcp(len, m)
            }),
        ]
    }

    /// Feed `inputs`; how many questions reached the closed DNS (None: port 53 not bound).
    async fn run(closed_dns: &str, inputs: Vec<Input>) -> Option<usize> {
        let relay = relay(closed_dns).await;
        let probe = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz/corpus/dns-query/outside.bin"
        ))
        .unwrap();
        for input in inputs {
            match &input {
                Input::Udp(bytes) => {
                    if let Some(answer) = ask(relay.udp, bytes, Duration::from_millis(50)).await {
                        if bytes.len() >= 2 {
                            assert_eq!(answer[..2], bytes[..2], "an answer with another id");
                        }
                        assert!(Message::from_vec(&answer).is_ok(), "a malformed answer");
                    }
                }
                Input::Tcp(len, bytes) => {
                    if let Ok(mut tcp) = tokio::net::TcpStream::connect(relay.tcp).await {
                        let _ = tcp.write_all(&len.to_be_bytes()).await;
                        let _ = tcp.write_all(bytes).await;
                        let _ = tcp.shutdown().await;
                    }
                }
            }
            // Still answering, and by the policy.
            let answer = ask(relay.udp, &probe, Duration::from_secs(3))
                .await
                .unwrap_or_else(|| panic!("the relay stopped answering after {input:?}"));
            let answer = Message::from_vec(&answer).unwrap();
            assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        }
        // Whatever reached the closed DNS asked only for names inside its zones.
        let closed = relay.closed.as_ref()?;
        let mut forwarded_questions = 0;
        {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, _)) = closed.try_recv_from(&mut buf) {
                let forwarded =
                    Message::from_vec(&buf[..n]).expect("the relay sent a malformed query");
                for q in &forwarded.queries {
                    forwarded_questions += 1;
                    assert!(
                        in_closed_zones(q.name()),
                        "{} was forwarded to the closed DNS",
                        q.name()
                    );
                }
            }
        }
        Some(forwarded_questions)
    }

    proptest! {
        #![proptest_config(common::config("dns-query", 400))]
        #[test]
        fn fuzz_dns_relay_keeps_answering_and_forwards_only_closed_names(
            inputs in proptest::collection::vec(input(), 1..6)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = runtime.block_on(run(CLOSED_DNS_FUZZ, inputs));
        }
    }

    #[test]
    fn every_seed_keeps_the_relay_answering() {
        let inputs = common::seeds("dns-query", &[])
            .into_iter()
            .map(Input::Udp)
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let forwarded = runtime.block_on(run(CLOSED_DNS_SEEDS, inputs));
        // The seeds hold questions for the closed zones: the capture sees them.
        assert_ne!(forwarded, Some(0), "nothing reached the closed DNS");
    }
}
