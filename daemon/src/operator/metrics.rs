//! The Prometheus endpoint (`control.metrics`): plain HTTP, `GET /metrics` only, in
//! Prometheus' text format (0.0.4: what `promtool check metrics` and every Prometheus read).
//!
//! It is one more reader of [`crate::status::Status`]: each scrape asks the supervisor for the
//! state as `oqs-edge status` would show it at that moment, and writes it out as metric
//! families (built with the `prometheus` crate's data model and text encoder). So the numbers
//! a scrape shows are the numbers `status` shows. A label never carries a secret, a request
//! path or a client address: routes, counters, certificates and tunnel types are the config's
//! own names.
//!
//! Only the sources in `control.metrics_allow` (loopback always) are answered; the firewall
//! opens the port to them alone, and a connection from anywhere else is closed unanswered.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use log::{error, info};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::status::{Expiry, Status};

/// How long a scrape waits for the supervisor's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A scrape's request for the current state; answer it with the [`Status`].
pub type Ask = oneshot::Sender<Status>;

/// The endpoint as configured: where it listens and whom it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Loopback is always allowed besides these.
    pub allow: Vec<IpNet>,
}

/// The running endpoint (or none), and the channel its scrapes ask the supervisor on.
pub struct Endpoint {
    settings: Option<Settings>,
    task: Option<JoinHandle<()>>,
    asks: mpsc::Receiver<Ask>,
    sender: mpsc::Sender<Ask>,
    problem: Option<String>,
}

impl Default for Endpoint {
    fn default() -> Self {
        let (sender, asks) = mpsc::channel(16);
        Endpoint {
            settings: None,
            task: None,
            asks,
            sender,
            problem: None,
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Endpoint {
    /// Listen as `settings` say; a change closes the old listener first. Bind errors are kept
    /// for `status` and retried by the next call.
    pub async fn apply(&mut self, settings: Option<Settings>) {
        let running = self.task.as_ref().is_some_and(|t| !t.is_finished());
        if settings == self.settings && (running || settings.is_none()) {
            return;
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.settings.clone_from(&settings);
        let Some(settings) = settings else {
            self.problem = None;
            return;
        };
        match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(listener) => {
                info!(
                    "metrics: serving GET /metrics on http://{}/metrics",
                    settings.listen
                );
                self.problem = None;
                let allow = Arc::new(settings.allow.clone());
                self.task = Some(tokio::spawn(serve(listener, allow, self.sender.clone())));
            }
            Err(e) => {
                let why = format!(
                    "the metrics endpoint cannot listen on {}: {e}; is the address on one of the router's interfaces?",
                    settings.listen
                );
                if self.problem.as_deref() != Some(why.as_str()) {
                    error!("{why}");
                }
                self.problem = Some(why);
            }
        }
    }

    /// The next scrape's question; pending for ever when there is none.
    pub async fn next(&mut self) -> Ask {
        loop {
            if let Some(ask) = self.asks.recv().await {
                return ask;
            }
        }
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.clone()
    }
}

/// Whether `ip` may scrape: loopback, or inside `allow`.
pub fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    ip.is_loopback() || allow.iter().any(|net| net.contains(&ip))
}

async fn serve(listener: tokio::net::TcpListener, allow: Arc<Vec<IpNet>>, asks: mpsc::Sender<Ask>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if !allowed(&allow, peer.ip()) {
            // Closed unanswered, as the firewall would have dropped it.
            continue;
        }
        let asks = asks.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let asks = asks.clone();
                async move { Ok::<_, Infallible>(answer(req, &asks).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, asks: &mpsc::Sender<Ask>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut res = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
        *res.status_mut() = status;
        res
    };
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: this endpoint serves /metrics only",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics");
        res.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return res;
    }
    let (reply, status) = oneshot::channel();
    if asks.send(reply).await.is_err() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    let status = match tokio::time::timeout(ANSWER_TIMEOUT, status).await {
        Ok(Ok(status)) => status,
        _ => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon did not answer in time",
            )
        }
    };
    match encode(&status) {
        Ok(text) => {
            let mut res = Response::new(Full::new(Bytes::from(text)));
            res.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            res
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the metrics: {e}"),
        ),
    }
}

/// Metric families under construction, in the order first named.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn push(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        fill: impl FnOnce(&mut Metric),
    ) {
        let index = match self.0.iter().position(|f| f.name() == name) {
            Some(i) => i,
            None => {
                let mut family = MetricFamily::default();
                family.set_name(name.to_owned());
                family.set_help(help.to_owned());
                family.set_field_type(kind);
                self.0.push(family);
                self.0.len() - 1
            }
        };
        let mut metric = Metric::from_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*k).to_owned());
                    pair.set_value((*v).to_owned());
                    pair
                })
                .collect(),
        );
        fill(&mut metric);
        self.0[index].mut_metric().push(metric);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, MetricType::GAUGE, labels, |m| {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        });
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.push(name, help, MetricType::COUNTER, labels, |m| {
            let mut c = Counter::default();
            c.set_value(value as f64);
            m.set_counter(c);
        });
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// The state as Prometheus' text format.
pub fn encode(status: &Status) -> Result<String, prometheus::Error> {
    let mut f = Families::default();
    let d = &status.daemon;
    f.gauge(
        "oqs_edge_build_info",
        "The running oqs-edge's version and git commit (always 1).",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", d.commit.as_deref().unwrap_or("")),
        ],
        1.0,
    );
    f.gauge(
        "oqs_edge_start_time_seconds",
        "When the daemon started, in seconds since 1970.",
        &[],
        d.started_unix as f64,
    );
    f.gauge(
        "oqs_edge_healthy",
        "1 when `oqs-edge status` says healthy, 0 when degraded.",
        &[],
        flag(status.problems.is_empty()),
    );
    f.gauge(
        "oqs_edge_problems",
        "How many problems `oqs-edge status` lists.",
        &[],
        status.problems.len() as f64,
    );

    let t = &status.tunnel;
    let kind = [("type", t.kind.as_str())];
    f.gauge(
        "oqs_edge_tunnel_up",
        "1 when the tunnel to the closed network is up.",
        &kind,
        flag(t.state == "up"),
    );
    if let Some(g) = &t.gateway {
        f.gauge(
            "oqs_edge_tunnel_gateway_active_index",
            "Which gateway carries the traffic: 0 the preferred one, 1 and up a backup.",
            &kind,
            g.active_index as f64,
        );
        f.counter(
            "oqs_edge_tunnel_gateway_switches_total",
            "Switches between gateways since the daemon started.",
            &kind,
            g.switches,
        );
        f.gauge(
            "oqs_edge_tunnel_gateways_failing",
            "Gateways last seen failing.",
            &kind,
            g.failed.len() as f64,
        );
    }
    for state in ["up", "connecting", "down"] {
        f.gauge(
            "oqs_edge_tunnel_state",
            "The tunnel's state: 1 for the current one of up, connecting, down.",
            &[("type", t.kind.as_str()), ("state", state)],
            flag(t.state == state),
        );
    }
    if let Some(since) = t.since_unix {
        f.gauge(
            "oqs_edge_tunnel_state_since_timestamp_seconds",
            "When the tunnel entered its current state (up: established), in seconds since 1970.",
            &kind,
            since as f64,
        );
    }
    if let Some(at) = t.last_handshake_unix {
        f.gauge(
            "oqs_edge_tunnel_last_handshake_timestamp_seconds",
            "WireGuard: when the last handshake with the peer completed, in seconds since 1970.",
            &kind,
            at as f64,
        );
    }
    if let Some(c) = &t.counters {
        for (name, help, value) in [
            (
                "oqs_edge_tunnel_receive_bytes_total",
                "Bytes received through the tunnel interface.",
                c.rx_bytes,
            ),
            (
                "oqs_edge_tunnel_transmit_bytes_total",
                "Bytes sent through the tunnel interface.",
                c.tx_bytes,
            ),
            (
                "oqs_edge_tunnel_receive_packets_total",
                "Packets received through the tunnel interface.",
                c.rx_packets,
            ),
            (
                "oqs_edge_tunnel_transmit_packets_total",
                "Packets sent through the tunnel interface.",
                c.tx_packets,
            ),
        ] {
            f.counter(name, help, &kind, value);
        }
    }

    let fw = &status.firewall;
    f.gauge(
        "oqs_edge_firewall_applied",
        "1 when the planned table inet oqs_edge is in the kernel.",
        &[],
        flag(fw.applied),
    );
    for (name, value) in &fw.counters {
        let label = [("counter", name.as_str())];
        f.counter(
            "oqs_edge_firewall_packets_total",
            "Packets counted by each named firewall counter since the table was applied (see `oqs-edge status`).",
            &label,
            value.packets,
        );
        f.counter(
            "oqs_edge_firewall_bytes_total",
            "Bytes counted by each named firewall counter since the table was applied.",
            &label,
            value.bytes,
        );
    }

    f.gauge(
        "oqs_edge_routes_planned",
        "Routes to the closed network oqs-edge manages.",
        &[],
        status.routes.len() as f64,
    );
    f.gauge(
        "oqs_edge_routes_installed",
        "Routes to the closed network installed in the kernel.",
        &[],
        status.routes.iter().filter(|r| r.installed).count() as f64,
    );

    for r in &status.proxy.routes {
        let route = [("route", r.name.as_str())];
        f.gauge(
            "oqs_edge_proxy_listening",
            "1 when the proxy route accepts LAN connections.",
            &route,
            flag(r.listening),
        );
        for (class, n) in &r.responses {
            f.counter(
                "oqs_edge_proxy_requests_total",
                "HTTP requests through the proxy route, by the status class of the answer.",
                &[("route", r.name.as_str()), ("class", class.as_str())],
                *n,
            );
        }
        if r.duration.count > 0 {
            f.push(
                "oqs_edge_proxy_request_duration_seconds",
                "Time from an HTTP request's arrival to its response head.",
                MetricType::HISTOGRAM,
                &route,
                |m| {
                    let mut h = Histogram::default();
                    h.set_sample_count(r.duration.count);
                    h.set_sample_sum(r.duration.sum_seconds);
                    h.set_bucket(
                        r.duration
                            .buckets
                            .iter()
                            .map(|(bound, n)| {
                                let mut b = Bucket::default();
                                b.set_upper_bound(*bound);
                                b.set_cumulative_count(*n);
                                b
                            })
                            .collect(),
                    );
                    m.set_histogram(h);
                },
            );
        }
        let full = r.upstream_handshakes.saturating_sub(r.upstream_resumed);
        for (kind, n) in [("full", full), ("resumed", r.upstream_resumed)] {
            f.counter(
                "oqs_edge_proxy_upstream_handshakes_total",
                "TLS handshakes with the upstream, full or resumed.",
                &[("route", r.name.as_str()), ("kind", kind)],
                n,
            );
        }
        f.counter(
            "oqs_edge_proxy_connections_total",
            "LAN connections accepted by the proxy route.",
            &route,
            r.connections,
        );
        f.gauge(
            "oqs_edge_proxy_open_connections",
            "LAN connections open now.",
            &route,
            r.open as f64,
        );
        f.counter(
            "oqs_edge_proxy_refused_connections_total",
            "LAN connections refused: source not allowed, or over a connection limit.",
            &route,
            r.refused,
        );
    }

    for c in &status.certificates {
        let labels = [("certificate", c.name.as_str()), ("kind", c.kind.as_str())];
        if let Some(at) = c.not_after_unix {
            f.gauge(
                "oqs_edge_certificate_not_after_timestamp_seconds",
                "When the certificate expires, in seconds since 1970.",
                &labels,
                at as f64,
            );
        }
        if let Some(at) = c.not_before_unix {
            f.gauge(
                "oqs_edge_certificate_not_before_timestamp_seconds",
                "When the certificate starts to be valid, in seconds since 1970.",
                &labels,
                at as f64,
            );
        }
        let valid = c.problem.is_none()
            && c.not_after_unix.is_some()
            && !matches!(c.expiry, Expiry::Expired | Expiry::NotYetValid);
        f.gauge(
            "oqs_edge_certificate_valid",
            "1 when the certificate is readable and within its dates now.",
            &labels,
            flag(valid),
        );
    }

    for seg in &status.segments {
        let segment = [("segment", seg.name.as_str())];
        let present = seg.addresses.iter().filter(|a| a.present).count();
        f.gauge(
            "oqs_edge_segment_addresses_missing",
            "Planned router addresses of the segment that are not on its interface.",
            &segment,
            (seg.addresses.len() - present) as f64,
        );
        if let Some(d) = &seg.dhcp {
            f.gauge(
                "oqs_edge_dhcp_serving",
                "1 when the DHCP server (dnsmasq) runs for the segment.",
                &segment,
                flag(d.serving),
            );
            f.gauge(
                "oqs_edge_dhcp_leases",
                "Unexpired DHCP leases of the segment.",
                &segment,
                d.leases_in_use as f64,
            );
            f.gauge(
                "oqs_edge_dhcp_fixed_hosts_without_lease",
                "Fixed-lease hosts (e.g. the eligibility PC) that hold no lease now.",
                &segment,
                d.hosts.iter().filter(|h| !h.holds_lease).count() as f64,
            );
        }
        if let Some(d) = &seg.dns {
            for (result, n) in [
                ("answered", d.answered),
                ("refused", d.refused),
                ("failed", d.failed),
            ] {
                f.counter(
                    "oqs_edge_dns_queries_total",
                    "Questions the DNS relay answered on the segment, by result.",
                    &[("segment", seg.name.as_str()), ("result", result)],
                    n,
                );
            }
        }
    }

    if let Some(wan) = &status.wan {
        let interface = [("interface", wan.interface.as_str())];
        for a in &wan.addresses {
            let labels = [
                ("interface", wan.interface.as_str()),
                ("address", a.address.as_str()),
                ("source", a.source.as_str()),
            ];
            f.gauge(
                "oqs_edge_wan_address_info",
                "A global address on the WAN and where it came from: static, dhcp, dhcpv6 or ra (always 1).",
                &labels,
                1.0,
            );
            if let Some(secs) = a.lease_left_secs {
                f.gauge(
                    "oqs_edge_wan_lease_seconds_left",
                    "Seconds until the WAN address's lease runs out unless renewed.",
                    &labels,
                    secs as f64,
                );
            }
        }
        f.gauge(
            "oqs_edge_wan_addresses",
            "Global addresses on the WAN (0: no address yet, or the lease was lost).",
            &interface,
            wan.addresses.len() as f64,
        );
        if let Some(running) = wan.dhcp_client_running {
            f.gauge(
                "oqs_edge_wan_dhcp_client_running",
                "1 when the DHCP client oqs-edge runs on the WAN (dhcpcd) is running.",
                &interface,
                flag(running),
            );
        }
        f.gauge(
            "oqs_edge_wan_delegated_prefixes",
            "Prefixes the line delegated to the router (DHCPv6 prefix delegation).",
            &interface,
            wan.delegated.len() as f64,
        );
    }

    for result in ["applied", "unchanged", "refused", "failed"] {
        f.counter(
            "oqs_edge_config_reloads_total",
            "Config reloads since start, by result.",
            &[("result", result)],
            status.config.reloads.get(result).copied().unwrap_or(0),
        );
    }
    f.gauge(
        "oqs_edge_config_info",
        "The running config's sha256 (always 1).",
        &[("sha256", status.config.digest.as_str())],
        1.0,
    );
    f.gauge(
        "oqs_edge_config_file_changed",
        "1 when the config file was edited since it was applied (`oqs-edge reload` applies it).",
        &[],
        flag(status.config.file_changed),
    );

    prometheus::TextEncoder::new().encode_to_string(&f.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{
        AddressInfo, CertificateInfo, CounterValue, DhcpHostInfo, DhcpInfo, DnsInfo,
        ProxyRouteInfo, SegmentInfo,
    };

    #[test]
    fn dhcp_leases_and_dns_answers_by_segment() {
        let mut status = Status::default();
        status.segments.push(SegmentInfo {
            name: "oqs".into(),
            interface: "lan0".into(),
            addresses: vec![AddressInfo {
                address: "192.168.50.1/24".into(),
                present: true,
                problem: None,
            }],
            dhcp: Some(DhcpInfo {
                segment: "oqs".into(),
                serving: true,
                leases_in_use: 3,
                hosts: vec![DhcpHostInfo {
                    name: "oqs-terminal".into(),
                    mac: "52:54:00:12:34:56".into(),
                    address: "192.168.50.10".into(),
                    holds_lease: false,
                    lease_expires_in_secs: None,
                }],
            }),
            dns: Some(DnsInfo {
                answered: 7,
                refused: 2,
                failed: 1,
            }),
        });
        let text = encode(&status).unwrap();
        for line in [
            "oqs_edge_dhcp_leases{segment=\"oqs\"} 3",
            "oqs_edge_dhcp_fixed_hosts_without_lease{segment=\"oqs\"} 1",
            "oqs_edge_dns_queries_total{segment=\"oqs\",result=\"refused\"} 2",
            "oqs_edge_segment_addresses_missing{segment=\"oqs\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn the_state_as_metrics_with_names_and_labels_of_our_own() {
        let mut status = Status::default();
        status.tunnel.kind = "wireguard".into();
        status.tunnel.state = "up".into();
        status.firewall.counters.insert(
            "eligibility_to_internet".into(),
            CounterValue {
                packets: 3,
                bytes: 180,
            },
        );
        let mut route = ProxyRouteInfo {
            name: "eligibility-api".into(),
            upstream_handshakes: 5,
            upstream_resumed: 4,
            ..Default::default()
        };
        route.responses.insert("2xx".into(), 7);
        route.duration.buckets = vec![(0.1, 6), (1.0, 7)];
        route.duration.count = 7;
        route.duration.sum_seconds = 0.5;
        status.proxy.routes.push(route);
        status.certificates.push(CertificateInfo {
            name: "oqs".into(),
            kind: "client".into(),
            not_after_unix: Some(1_800_000_000),
            ..Default::default()
        });
        status.tunnel.gateway = Some(crate::status::GatewayInfo {
            gateways: vec!["203.0.113.2:51820".into(), "203.0.113.3:51820".into()],
            active: "203.0.113.3:51820".into(),
            active_index: 1,
            switches: 2,
            ..Default::default()
        });
        status.wan = Some(crate::status::WanInfo {
            interface: "wan0".into(),
            ipv4: "dhcp".into(),
            ipv6: "os".into(),
            dhcp_client_running: Some(true),
            addresses: vec![crate::status::WanAddressInfo {
                address: "198.51.100.50/24".into(),
                source: "dhcp".into(),
                lease_left_secs: Some(540),
            }],
            ..Default::default()
        });
        let text = encode(&status).unwrap();
        for line in [
            "oqs_edge_tunnel_gateway_active_index{type=\"wireguard\"} 1",
            "oqs_edge_tunnel_gateway_switches_total{type=\"wireguard\"} 2",
            "oqs_edge_tunnel_up{type=\"wireguard\"} 1",
            "oqs_edge_tunnel_state{type=\"wireguard\",state=\"down\"} 0",
            "oqs_edge_firewall_packets_total{counter=\"eligibility_to_internet\"} 3",
            "oqs_edge_proxy_requests_total{route=\"eligibility-api\",class=\"2xx\"} 7",
            "oqs_edge_proxy_request_duration_seconds_bucket{route=\"eligibility-api\",le=\"0.1\"} 6",
            "oqs_edge_proxy_request_duration_seconds_count{route=\"eligibility-api\"} 7",
            "oqs_edge_proxy_upstream_handshakes_total{route=\"eligibility-api\",kind=\"full\"} 1",
            "oqs_edge_certificate_not_after_timestamp_seconds{certificate=\"oqs\",kind=\"client\"} 1800000000",
            "oqs_edge_certificate_valid{certificate=\"oqs\",kind=\"client\"} 1",
            "# TYPE oqs_edge_config_reloads_total counter",
            "oqs_edge_wan_address_info{interface=\"wan0\",address=\"198.51.100.50/24\",source=\"dhcp\"} 1",
            "oqs_edge_wan_lease_seconds_left{interface=\"wan0\",address=\"198.51.100.50/24\",source=\"dhcp\"} 540",
            "oqs_edge_wan_addresses{interface=\"wan0\"} 1",
            "oqs_edge_wan_dhcp_client_running{interface=\"wan0\"} 1",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn loopback_always_and_otherwise_only_the_allowed() {
        let allow: Vec<IpNet> = vec!["192.168.60.10/32".parse().unwrap()];
        assert!(allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:192.168.60.10".parse().unwrap()));
        assert!(!allowed(&allow, "192.168.60.11".parse().unwrap()));
        assert!(!allowed(&[], "192.168.50.10".parse().unwrap()));
    }
}
