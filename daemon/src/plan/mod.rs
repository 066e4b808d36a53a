//! The desired state, computed from a checked config by pure functions: no I/O, same config in,
//! same plan out. `oqs-edge plan` prints it; the appliers make the system match it.

pub mod diff;
pub mod failover;
pub mod firewall;
pub mod lan;
pub mod nft;
pub mod wan;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use crate::config::model::{Dataplane, Ipv6Mode};
use crate::config::{TunnelSection, ValidConfig};
use firewall::Egress;

#[derive(Debug, Serialize)]
pub struct Plan {
    /// The whole `table inet oqs_edge`.
    #[serde(skip)]
    pub firewall: nft::Ruleset,
    /// Kernel settings the router needs (`sysctl` names and values).
    pub sysctls: Vec<(String, String)>,
    /// Routes oqs-edge adds (and later removes: only these).
    pub routes: Vec<Route>,
    pub tunnel: TunnelPlan,
    /// The client certificates (電子証明書), by file: the proxy loads them.
    pub certificates: Vec<CertificatePlan>,
    /// Where the LAN-side CA lives (routes with `lan_tls: local-ca`).
    pub local_ca_dir: Option<PathBuf>,
    pub proxy: Vec<ProxyRoutePlan>,
    /// The Prometheus endpoint, when `control.metrics` is set.
    pub metrics: Option<MetricsPlan>,
    /// The router's address on each segment.
    pub addresses: Vec<lan::AddressPlan>,
    /// The DHCP server, when a segment has a `dhcp` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<lan::DhcpPlan>,
    /// The DNS relay, when `closed_network.dns` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<lan::DnsPlan>,
    /// How the WAN gets its addresses.
    pub wan: wan::WanPlan,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetricsPlan {
    pub listen: SocketAddr,
    /// `control.metrics_allow` resolved to prefixes (loopback is always allowed besides).
    pub allow: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificatePlan {
    pub name: String,
    #[serde(flatten)]
    pub source: CertificateSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CertificateSource {
    Pkcs12 {
        pkcs12: PathBuf,
        password_file: PathBuf,
    },
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub destination: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    pub device: String,
}

impl std::fmt::Display for Route {
    /// As `ip route` would take it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via {
            Some(via) => write!(f, "{} via {via} dev {}", self.destination, self.device),
            None => write!(f, "{} dev {}", self.destination, self.device),
        }
    }
}

/// The tunnel, with secrets named by file, never by content.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TunnelPlan {
    Wireguard {
        interface: String,
        address: IpNet,
        private_key_file: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        listen_port: Option<u16>,
        peer_public_key: String,
        peer_endpoint: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        persistent_keepalive_secs: Option<u64>,
        allowed_ips: Vec<IpNet>,
        /// Further concentrators in order of preference (issue 21).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        backup_peers: Vec<failover::BackupPeer>,
        #[serde(skip_serializing_if = "Option::is_none")]
        health: Option<failover::HealthPlan>,
    },
    Ipsec {
        connection: &'static str,
        vici_socket: PathBuf,
        dataplane: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        local_address: Option<IpAddr>,
        /// The preferred gateway and its identity.
        remote_address: String,
        local_id: String,
        remote_id: String,
        /// Further gateways in order of preference (issue 21).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        backup_gateways: Vec<failover::IpsecGateway>,
        #[serde(skip_serializing_if = "Option::is_none")]
        health: Option<failover::HealthPlan>,
        auth: String,
        ike_proposals: Vec<String>,
        esp_proposals: Vec<String>,
        dpd_delay_secs: u64,
        local_ts: Vec<IpNet>,
        remote_ts: Vec<IpNet>,
        /// The files behind `auth`, for the applier (the plan names them in `auth`).
        #[serde(skip)]
        credentials: IpsecCredentials,
    },
    IpVpn {
        wan: String,
        gateway: IpAddr,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyRoutePlan {
    pub name: String,
    pub listen: SocketAddr,
    pub lan_tls: String,
    pub mode: String,
    pub upstream: String,
    /// The upstream's host name: SNI, Host and the name its certificate must carry.
    #[serde(skip)]
    pub upstream_host: String,
    #[serde(skip)]
    pub upstream_port: u16,
    /// `upstream_address`, when the host is not to be resolved.
    #[serde(skip)]
    pub upstream_address: Option<IpAddr>,
    /// Where the connection goes: `upstream_address`, or the upstream host resolved.
    pub connect_to: String,
    pub server_ca: PathBuf,
    /// The client certificates' names, in order of preference: the proxy presents the first
    /// that is valid now.
    pub client_certificate: Vec<String>,
    /// `allow` resolved to prefixes.
    pub allow: Vec<IpNet>,
    /// The path `oqs-edge diag` requests on the upstream, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
}

/// Where the IKE credentials are read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IpsecCredentials {
    /// A config that passed `check` always has one of the others.
    #[default]
    None,
    Psk {
        file: PathBuf,
    },
    Certificate {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
}

/// The one connection oqs-edge owns in charon.
pub const IPSEC_CONNECTION: &str = "oqs-edge";

pub fn plan(config: &ValidConfig) -> Plan {
    let dns = lan::dns(config);
    Plan {
        addresses: lan::addresses(config),
        dhcp: lan::dhcp(config, dns.as_ref()),
        dns,
        firewall: firewall::ruleset(config),
        sysctls: sysctls(config),
        routes: routes(config)
            .into_iter()
            .chain(wan::routes(config))
            .collect(),
        tunnel: tunnel(config),
        certificates: certificates(config),
        local_ca_dir: config.proxy.as_ref().map(|p| p.local_ca_dir.value.clone()),
        proxy: proxy(config),
        metrics: metrics(config),
        wan: wan::wan(config),
    }
}

fn metrics(config: &ValidConfig) -> Option<MetricsPlan> {
    let control = config.control.as_ref()?;
    let listen = control.metrics.as_ref()?.value;
    let mut allow = Vec::new();
    for family in [nft::Family::V4, nft::Family::V6] {
        allow.extend(firewall::resolve_sources(
            config,
            control.metrics_allow.iter().map(|a| a.as_str()),
            family,
        ));
    }
    Some(MetricsPlan { listen, allow })
}

/// A certificate file (PEM) the router depends on besides the client certificates: the
/// expiry watch reads each one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFile {
    /// `ipsec`, `ipsec-ca`, `server-ca`, `local-ca` or `lan-server`.
    pub kind: &'static str,
    /// What status calls it: the route names for a server CA.
    pub name: String,
    pub file: PathBuf,
}

/// Every PEM certificate the plan depends on, each file once: the IPsec certificate and CA,
/// each route's `server_ca`, and the local CA with its LAN server certificate.
pub fn certificate_files(plan: &Plan) -> Vec<CertificateFile> {
    let mut files = Vec::new();
    if let TunnelPlan::Ipsec {
        credentials: IpsecCredentials::Certificate { cert, ca, .. },
        ..
    } = &plan.tunnel
    {
        files.push(CertificateFile {
            kind: "ipsec",
            name: "ipsec".to_owned(),
            file: cert.clone(),
        });
        files.push(CertificateFile {
            kind: "ipsec-ca",
            name: "ipsec-ca".to_owned(),
            file: ca.clone(),
        });
    }
    for route in &plan.proxy {
        match files
            .iter_mut()
            .find(|f: &&mut CertificateFile| f.kind == "server-ca" && f.file == route.server_ca)
        {
            Some(known) => {
                known.name.push(',');
                known.name.push_str(&route.name);
            }
            None => files.push(CertificateFile {
                kind: "server-ca",
                name: route.name.clone(),
                file: route.server_ca.clone(),
            }),
        }
    }
    if let Some(dir) = plan
        .local_ca_dir
        .as_ref()
        .filter(|_| plan.proxy.iter().any(|r| r.lan_tls == "local-ca"))
    {
        files.push(CertificateFile {
            kind: "local-ca",
            name: "local-ca".to_owned(),
            file: dir.join(crate::pki::local_ca::CA_CERT),
        });
        files.push(CertificateFile {
            kind: "lan-server",
            name: "lan-server".to_owned(),
            file: dir.join(crate::pki::local_ca::SERVER_CERT),
        });
    }
    files
}

fn certificates(config: &ValidConfig) -> Vec<CertificatePlan> {
    config
        .client_certificates
        .iter()
        .filter_map(|c| {
            let source = match (&c.pkcs12, &c.password_file, &c.cert, &c.key) {
                (Some(p12), Some(pw), _, _) => CertificateSource::Pkcs12 {
                    pkcs12: p12.value.clone(),
                    password_file: pw.value.clone(),
                },
                (_, _, Some(cert), Some(key)) => CertificateSource::Pem {
                    cert: cert.value.clone(),
                    key: key.value.clone(),
                },
                // A valid config has one of the two forms.
                _ => return None,
            };
            Some(CertificatePlan {
                name: c.name.value.clone(),
                source,
            })
        })
        .collect()
}

/// `closed_network.prefixes`, as the routes, the firewall and `diag` use them.
pub fn closed_prefixes(config: &ValidConfig) -> Vec<IpNet> {
    config
        .closed_network
        .prefixes
        .iter()
        .map(|p| p.value)
        .collect()
}

fn sysctls(config: &ValidConfig) -> Vec<(String, String)> {
    let mut v = vec![("net.ipv4.ip_forward".to_owned(), "1".to_owned())];
    let any_v6 = closed_prefixes(config)
        .iter()
        .any(|p| matches!(p, IpNet::V6(_)))
        || config
            .segments
            .iter()
            .any(|s| s.address6.is_some() || matches!(s.address.value, IpNet::V6(_)))
        || config.wan.ipv6_mode() == Ipv6Mode::Ra;
    // With `ipv6: ra` dhcpcd takes the WAN's router advertisements itself (forwarding does
    // not stop it) and switches the kernel's off: setting accept_ra would fight it.
    let kernel_ra = config.wan.ipv6_mode() != Ipv6Mode::Ra;
    if any_v6 && kernel_ra {
        // A router ignores router advertisements unless told otherwise: keep taking the WAN's
        // (the carrier's default route) before forwarding turns that off.
        v.push((
            // sysctl(8)'s convention: a dot in an interface name (a VLAN, `eth0.100`) is a slash.
            format!(
                "net.ipv6.conf.{}.accept_ra",
                config.wan.interface.0.replace('.', "/")
            ),
            "2".to_owned(),
        ));
    }
    if any_v6 {
        v.push(("net.ipv6.conf.all.forwarding".to_owned(), "1".to_owned()));
    }
    v
}

/// Routes to the closed network. charon routes libipsec's traffic itself (table 220), and the
/// kernel dataplane uses xfrm policies, so IPsec adds none here.
fn routes(config: &ValidConfig) -> Vec<Route> {
    let prefixes = closed_prefixes(config);
    match firewall::egress(config) {
        Egress::Interface(device) if matches!(config.tunnel(), TunnelSection::WireGuard(_)) => {
            prefixes
                .into_iter()
                .map(|destination| Route {
                    destination,
                    via: None,
                    device: device.clone(),
                })
                .collect()
        }
        Egress::Wan(device) => {
            let TunnelSection::IpVpn(vpn) = config.tunnel() else {
                return Vec::new();
            };
            prefixes
                .into_iter()
                .map(|destination| Route {
                    destination,
                    via: Some(vpn.gateway.value),
                    device: device.clone(),
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn tunnel(config: &ValidConfig) -> TunnelPlan {
    match config.tunnel() {
        TunnelSection::WireGuard(wg) => TunnelPlan::Wireguard {
            interface: wg.interface.0.clone(),
            address: wg.address.value,
            private_key_file: wg.private_key_file.value.clone(),
            listen_port: wg.listen_port.as_ref().map(|p| p.value),
            peer_public_key: wg.peer.public_key.to_string(),
            peer_endpoint: wg.peer.endpoint.to_string(),
            persistent_keepalive_secs: wg.peer.persistent_keepalive.as_ref().map(|k| k.0.as_secs()),
            allowed_ips: closed_prefixes(config),
            backup_peers: failover::backup_peers(wg),
            health: failover::health(config),
        },
        TunnelSection::Ipsec(ipsec) => {
            let mut gateways = failover::ipsec_gateways(ipsec).into_iter();
            let preferred = gateways.next().unwrap_or(failover::IpsecGateway {
                address: String::new(),
                remote_id: ipsec.remote_id.value.clone(),
            });
            TunnelPlan::Ipsec {
                connection: IPSEC_CONNECTION,
                vici_socket: ipsec.vici_socket.value.clone(),
                dataplane: ipsec.dataplane.to_string(),
                local_address: ipsec.local_address.as_ref().map(|a| a.value),
                remote_address: preferred.address,
                local_id: ipsec.local_id.value.clone(),
                remote_id: preferred.remote_id,
                backup_gateways: gateways.collect(),
                health: failover::health(config),
                auth: match (&ipsec.auth.psk_file, &ipsec.auth.certificate) {
                    (Some(psk), _) => format!("psk (from {})", psk.display()),
                    (None, Some(c)) => format!(
                        "certificate {} (key {}, peer CA {})",
                        c.cert.display(),
                        c.key.display(),
                        c.ca.display()
                    ),
                    (None, None) => String::new(),
                },
                ike_proposals: ipsec
                    .ike_proposals
                    .iter()
                    .map(|p| p.value.clone())
                    .collect(),
                esp_proposals: ipsec
                    .esp_proposals
                    .iter()
                    .map(|p| p.value.clone())
                    .collect(),
                dpd_delay_secs: ipsec.dpd_delay.0.as_secs(),
                local_ts: config
                    .segments
                    .iter()
                    .filter(|s| s.role.value == crate::config::model::Role::Eligibility)
                    .flat_map(|s| {
                        std::iter::once(s.address.trunc()).chain(
                            s.address6
                                .iter()
                                .filter_map(|a| a.fixed())
                                .map(|a| a.trunc()),
                        )
                    })
                    .collect(),
                remote_ts: closed_prefixes(config),
                credentials: match (&ipsec.auth.psk_file, &ipsec.auth.certificate) {
                    (Some(psk), _) => IpsecCredentials::Psk {
                        file: psk.value.clone(),
                    },
                    (None, Some(c)) => IpsecCredentials::Certificate {
                        cert: c.cert.value.clone(),
                        key: c.key.value.clone(),
                        ca: c.ca.value.clone(),
                    },
                    (None, None) => IpsecCredentials::None,
                },
            }
        }
        TunnelSection::IpVpn(vpn) => TunnelPlan::IpVpn {
            wan: config.wan.interface.0.clone(),
            gateway: vpn.gateway.value,
        },
    }
}

fn proxy(config: &ValidConfig) -> Vec<ProxyRoutePlan> {
    let Some(proxy) = &config.proxy else {
        return Vec::new();
    };
    proxy
        .routes
        .iter()
        .map(|r| {
            let family = nft::Family::of(&IpNet::from(r.listen.ip()));
            ProxyRoutePlan {
                name: r.name.value.clone(),
                listen: r.listen.value,
                lan_tls: r.lan_tls.to_string(),
                mode: r.mode.to_string(),
                upstream: r.upstream.to_string(),
                upstream_host: r.upstream.host.clone(),
                upstream_port: r.upstream.port,
                upstream_address: r.upstream_address.as_ref().map(|a| a.value),
                connect_to: match &r.upstream_address {
                    Some(addr) => SocketAddr::new(addr.value, r.upstream.port).to_string(),
                    None => format!("{} (resolved)", r.upstream.value),
                },
                server_ca: r.server_ca.value.clone(),
                client_certificate: r
                    .client_certificate
                    .names()
                    .into_iter()
                    .map(|n| n.value)
                    .collect(),
                health_path: r.health_path.as_ref().map(|p| p.value.clone()),
                allow: firewall::resolve_sources(
                    config,
                    r.allow.iter().map(|a| a.as_str()),
                    family,
                ),
            }
        })
        .collect()
}

impl Plan {
    /// Every address oqs-edge puts on an interface: the segments' and the WAN's static ones.
    pub fn marked_addresses(&self) -> Vec<lan::AddressPlan> {
        let mut all = self.addresses.clone();
        all.extend(wan::addresses(&self.wan));
        all
    }

    /// The plan as an operator reads it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str("# firewall: nft -f replaces table inet oqs_edge in one transaction\n");
        out.push_str(&self.firewall.to_nft_text());
        out.push_str("\n# sysctls\n");
        for (key, value) in &self.sysctls {
            let _ = writeln!(out, "{key} = {value}");
        }
        out.push_str("\n# routes (table main, added and removed by oqs-edge)\n");
        if self.routes.is_empty() {
            out.push_str(match &self.tunnel {
                TunnelPlan::Ipsec { dataplane, .. }
                    if dataplane == Dataplane::Libipsec.as_str() =>
                {
                    "(none: charon routes the traffic selectors through ipsec0, table 220)\n"
                }
                TunnelPlan::Ipsec { .. } => {
                    "(none: the kernel's IPsec policies steer the traffic)\n"
                }
                _ => "(none)\n",
            });
        }
        for r in &self.routes {
            let _ = writeln!(out, "{r}");
        }
        out.push_str("\n# tunnel\n");
        out.push_str(&yaml_lines(
            &serde_json::to_value(&self.tunnel).unwrap_or_default(),
            0,
        ));
        out.push_str("\n# proxy routes\n");
        if self.proxy.is_empty() {
            out.push_str("(none)\n");
        }
        for r in &self.proxy {
            let allow: Vec<String> = r.allow.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "{}: {} ({}, lan tls {}) -> {} via {}, client certificate {}, server CA {}, allow {}",
                r.name,
                r.listen,
                r.mode,
                r.lan_tls,
                r.upstream,
                r.connect_to,
                r.client_certificate.join(" then "),
                r.server_ca.display(),
                allow.join(" ")
            );
        }
        out.push_str("\n# WAN\n");
        for line in self.wan.lines() {
            let _ = writeln!(out, "{line}");
        }
        if let Some(conf) = &self.wan.dhcpcd_conf {
            out.push_str("\n# DHCP client on the WAN (dhcpcd)\n");
            out.push_str(conf);
        }
        out.push_str("\n# segment addresses (added by oqs-edge, proto 79)\n");
        for a in &self.addresses {
            let _ = writeln!(
                out,
                "{} dev {} (segment {})",
                a.address, a.interface, a.segment
            );
        }
        out.push_str("\n# DNS relay\n");
        match &self.dns {
            None => out.push_str("(none: closed_network.dns is not set)\n"),
            Some(dns) => {
                for line in dns.policy_lines() {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        out.push_str("\n# DHCP server (dnsmasq)\n");
        match &self.dhcp {
            None => out.push_str("(none: no segment has a dhcp section)\n"),
            Some(dhcp) => out.push_str(&dhcp.dnsmasq_conf),
        }
        out
    }

    /// The plan as JSON; `.firewall` is nft's own JSON (`nft -j -f` reads it).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["firewall"] = self.firewall.to_nft_json();
        v
    }
}

/// A flat JSON object shown as `key: value` lines.
fn yaml_lines(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    if let Value::Object(map) = value {
        // `type` first: it says what the other keys are about.
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by_key(|(key, _)| *key != "type");
        for (key, v) in entries {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect();
                    format!("[{}]", items.join(", "))
                }
                other => other.to_string(),
            };
            let _ = writeln!(out, "{}{key}: {shown}", " ".repeat(indent));
        }
    }
    out
}
