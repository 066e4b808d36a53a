//! The LAN side of the plan: the router's address on each segment, the DHCP server's config
//! (dnsmasq, rendered whole here) and the DNS relay's policy.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use crate::config::model::{InternetAccess, Role, Segment};
use crate::config::ValidConfig;

/// How long a DHCP lease lasts when the config does not say.
pub const DEFAULT_LEASE_SECS: u64 = 12 * 3600;

/// An address oqs-edge puts on a segment's interface (and removes when the segment goes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressPlan {
    pub segment: String,
    pub interface: String,
    pub address: IpNet,
}

/// The DHCPv4 server: dnsmasq with DNS off, one tagged range per segment with a `dhcp` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DhcpPlan {
    pub segments: Vec<DhcpSegmentPlan>,
    /// dnsmasq's whole config file. The lease file (in the state directory) is given on its
    /// command line by the applier, so the plan stays free of runtime paths.
    pub dnsmasq_conf: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DhcpSegmentPlan {
    pub segment: String,
    pub interface: String,
    /// The router's address on the segment, with the segment's prefix length.
    pub subnet: Ipv4Net,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub lease_secs: u64,
    /// The router: the clients' gateway.
    pub router: Ipv4Addr,
    /// What clients are told to use as DNS servers.
    pub dns_servers: Vec<IpAddr>,
    pub hosts: Vec<DhcpHostPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DhcpHostPlan {
    pub name: String,
    pub mac: String,
    pub address: IpAddr,
}

/// The DNS relay: where each segment's questions go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsPlan {
    pub listen: Vec<DnsListenPlan>,
    /// The closed network's resolvers, asked for names in `closed_zones` (through the tunnel).
    pub closed_servers: Vec<IpAddr>,
    pub closed_zones: Vec<String>,
    /// Asked for any other name, for segments with `internet: allow` only. Empty: the WAN's
    /// own resolvers, learnt at run time.
    pub internet_servers: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsListenPlan {
    pub segment: String,
    pub address: IpAddr,
    /// Names outside the closed zones are forwarded (true) or answered REFUSED (false).
    pub internet: bool,
}

impl DnsPlan {
    /// The policy in plain lines, as `oqs-edge plan` shows it and `oqs-edge diff` compares it.
    pub fn policy_lines(&self) -> Vec<String> {
        let list = |v: &[IpAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut lines = vec![format!(
            "closed zones {} -> {} (through the tunnel)",
            self.closed_zones.join(" "),
            list(&self.closed_servers)
        )];
        for l in &self.listen {
            let other = if !l.internet {
                "REFUSED (nothing leaves the router)".to_owned()
            } else if self.internet_servers.is_empty() {
                "the WAN's resolvers".to_owned()
            } else {
                list(&self.internet_servers)
            };
            lines.push(format!(
                "{} port 53 (segment {}): other names -> {other}",
                l.address, l.segment
            ));
        }
        lines
    }
}

pub fn addresses(config: &ValidConfig) -> Vec<AddressPlan> {
    config
        .segments
        .iter()
        .flat_map(|s| {
            std::iter::once(s.address.value)
                .chain(s.address6.as_ref().and_then(|a| a.fixed()))
                .map(|address| AddressPlan {
                    segment: s.name.value.clone(),
                    interface: s.interface.0.clone(),
                    address,
                })
        })
        .collect()
}

fn internet(segment: &Segment) -> bool {
    segment.role.value == Role::Clinic
        && segment
            .internet
            .as_ref()
            .is_some_and(|i| i.value == InternetAccess::Allow)
}

pub fn dns(config: &ValidConfig) -> Option<DnsPlan> {
    let closed = &config.closed_network;
    if closed.dns.is_empty() {
        return None;
    }
    Some(DnsPlan {
        listen: config
            .segments
            .iter()
            .flat_map(|s| {
                std::iter::once(s.address.value)
                    .chain(s.address6.as_ref().and_then(|a| a.fixed()))
                    .map(|a| DnsListenPlan {
                        segment: s.name.value.clone(),
                        address: a.addr(),
                        internet: internet(s),
                    })
            })
            .collect(),
        closed_servers: closed.dns.iter().map(|d| d.value).collect(),
        closed_zones: closed.dns_zones.iter().map(|z| z.0.clone()).collect(),
        internet_servers: config
            .dns
            .iter()
            .flat_map(|d| d.internet_servers.iter().map(|s| s.value))
            .collect(),
    })
}

pub fn dhcp(config: &ValidConfig, dns: Option<&DnsPlan>) -> Option<DhcpPlan> {
    let segments: Vec<DhcpSegmentPlan> = config
        .segments
        .iter()
        .filter_map(|s| {
            let dhcp = s.dhcp.as_ref()?;
            let IpNet::V4(net) = s.address.value else {
                return None;
            };
            // The relay answers on the router's address when it runs; without it, a segment
            // that may use the internet is given the internet resolvers directly.
            let dns_servers = match dns {
                Some(_) => vec![IpAddr::V4(net.addr())],
                None if internet(s) => config
                    .dns
                    .iter()
                    .flat_map(|d| d.internet_servers.iter().map(|s| s.value))
                    .filter(IpAddr::is_ipv4)
                    .collect(),
                None => Vec::new(),
            };
            Some(DhcpSegmentPlan {
                segment: s.name.value.clone(),
                interface: s.interface.0.clone(),
                subnet: net,
                first: dhcp.range.first,
                last: dhcp.range.last,
                lease_secs: dhcp
                    .lease
                    .as_ref()
                    .map_or(DEFAULT_LEASE_SECS, |l| l.0.as_secs()),
                router: net.addr(),
                dns_servers,
                hosts: dhcp
                    .hosts
                    .iter()
                    .map(|h| DhcpHostPlan {
                        name: h.name.value.clone(),
                        mac: h.mac.value.to_string(),
                        address: h.address.value,
                    })
                    .collect(),
            })
        })
        .collect();
    if segments.is_empty() {
        return None;
    }
    let dnsmasq_conf = dnsmasq_conf(&segments);
    Some(DhcpPlan {
        segments,
        dnsmasq_conf,
    })
}

/// dnsmasq as a DHCP server only: its DNS is off (`port=0`), it answers on the segments'
/// interfaces only, and every option a client gets is written here.
fn dnsmasq_conf(segments: &[DhcpSegmentPlan]) -> String {
    let mut out = String::new();
    out.push_str("# dnsmasq for oqs-edge: DHCPv4 on the LAN segments only; DNS is off here\n");
    out.push_str("port=0\nno-resolv\nno-hosts\nbind-dynamic\ndhcp-authoritative\nlog-dhcp\n");
    for seg in segments {
        let _ = writeln!(out, "interface={}", seg.interface);
    }
    for (i, seg) in segments.iter().enumerate() {
        // Tags are by position: a segment's name is free text and never reaches the file
        // except as a comment, cleaned of anything that could end it.
        let tag = format!("seg{i}");
        let name: String = seg
            .segment
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mask = seg.subnet.netmask();
        let _ = writeln!(out, "\n# segment {name} ({})", seg.interface);
        let _ = writeln!(
            out,
            "dhcp-range=set:{tag},{},{},{mask},{}",
            seg.first, seg.last, seg.lease_secs
        );
        let _ = writeln!(out, "dhcp-option=tag:{tag},option:router,{}", seg.router);
        let servers: Vec<String> = seg.dns_servers.iter().map(ToString::to_string).collect();
        // An empty option tells the client "no DNS server" rather than dnsmasq's own address.
        let _ = writeln!(
            out,
            "dhcp-option=tag:{tag},option:dns-server{}",
            servers.iter().map(|s| format!(",{s}")).collect::<String>()
        );
        for host in &seg.hosts {
            let _ = writeln!(
                out,
                "dhcp-host={},set:{tag},{},{},{}",
                host.mac, host.address, host.name, seg.lease_secs
            );
        }
    }
    out
}
