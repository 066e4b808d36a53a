//! Checks of the LAN services: each segment's DHCP section and the DNS relay's zones.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::model::Config;
use super::scalar::{Loc, MacAddr};
use super::validate::Checker;

impl Checker<'_> {
    pub(super) fn dhcp(&mut self, config: &Config) {
        // Fixed leases must be unique across the whole router: a MAC, an address, a name.
        let mut macs: HashMap<MacAddr, Loc> = HashMap::new();
        let mut addresses: HashMap<IpAddr, Loc> = HashMap::new();
        let mut names: HashMap<String, Loc> = HashMap::new();
        for (i, seg) in config.segments.iter().enumerate() {
            let Some(dhcp) = &seg.dhcp else { continue };
            let key = |field: &str| format!("segments[{i}].dhcp.{field}");
            let IpNet::V4(net) = seg.address.value else {
                // At the section's own key, not its first child.
                let at = super::validate::section_key(self.source, dhcp.loc, "dhcp");
                self.error(
                    at,
                    key("range"),
                    format!(
                        "segment `{}` has an IPv6 `address`: oqs-edge serves DHCPv4 only",
                        *seg.name
                    ),
                )
                .hint = Some("give the segment an IPv4 `address` (IPv6 clients use SLAAC)".into());
                continue;
            };
            let address_ok = self.ok(&seg.address);
            if self.ok(&dhcp.range) && address_ok {
                let range = dhcp.range.value;
                let inside = |a: Ipv4Addr| usable_host(&net, a);
                if range.first > range.last {
                    self.error(
                        dhcp.range.loc,
                        key("range"),
                        format!(
                            "the range starts at {} after it ends at {}",
                            range.first, range.last
                        ),
                    )
                    .hint = Some(format!(
                        "write the lower address first: {}-{}",
                        range.last, range.first
                    ));
                } else if !inside(range.first) || !inside(range.last) {
                    self.error(
                        dhcp.range.loc,
                        key("range"),
                        format!(
                            "{range} is not inside segment `{}` ({})",
                            *seg.name,
                            net.trunc()
                        ),
                    )
                    .hint = Some(example_range(&net));
                } else if (range.first..=range.last).contains(&net.addr()) {
                    self.error(
                        dhcp.range.loc,
                        key("range"),
                        format!("{range} covers the router's own address {}", net.addr()),
                    )
                    .hint = Some(example_range(&net));
                }
            }
            if let Some(lease) = &dhcp.lease {
                if self.ok(lease) && lease.0.as_secs() < 120 {
                    self.error(
                        lease.loc,
                        key("lease"),
                        format!(
                            "a lease of {} is too short",
                            humantime::format_duration(lease.0)
                        ),
                    )
                    .hint = Some("use 2m or more; 12h suits a clinic".into());
                }
            }
            for (h, host) in dhcp.hosts.iter().enumerate() {
                let key = |field: &str| format!("segments[{i}].dhcp.hosts[{h}].{field}");
                if host.name.is_empty()
                    || !super::scalar::is_dns_name(&host.name)
                    || host.name.contains('.')
                {
                    self.error(
                        host.name.loc,
                        key("name"),
                        format!("`{}` is not a host name", *host.name),
                    )
                    .hint = Some("letters, digits and hyphens, like oqs-terminal".into());
                } else if let Some(first) =
                    names.insert(host.name.to_ascii_lowercase(), host.name.loc)
                {
                    self.error(
                        host.name.loc,
                        key("name"),
                        format!("host name `{}` is used twice", *host.name),
                    )
                    .hint = Some(format!("the first is at line {}", first.line));
                }
                if self.ok(&host.mac) {
                    if host.mac.value.0[0] & 1 == 1 {
                        self.error(host.mac.loc, key("mac"), format!("{} is a multicast address, not a PC's", host.mac.value))
                            .hint = Some("copy the MAC from the PC's network settings (`ip link` or `ipconfig /all`)".into());
                    } else if let Some(first) = macs.insert(host.mac.value, host.mac.loc) {
                        self.error(
                            host.mac.loc,
                            key("mac"),
                            format!("MAC {} has two fixed leases", host.mac.value),
                        )
                        .hint = Some(format!(
                            "the first is at line {}; one fixed address per MAC",
                            first.line
                        ));
                    }
                }
                if !self.ok(&host.address) || !address_ok {
                    continue;
                }
                match host.address.value {
                    IpAddr::V4(a) if a == net.addr() => {
                        self.error(
                            host.address.loc,
                            key("address"),
                            format!("{a} is the router's own address"),
                        )
                        .hint = Some("give the PC an address of its own on the segment".into());
                    }
                    IpAddr::V4(a) if !usable_host(&net, a) => {
                        self.error(
                            host.address.loc,
                            key("address"),
                            format!(
                                "{a} is not a host address of segment `{}` ({})",
                                *seg.name,
                                net.trunc()
                            ),
                        )
                        .hint = Some(format!(
                            "pick an address inside {} (it may lie outside the range)",
                            net.trunc()
                        ));
                    }
                    IpAddr::V4(_) => {
                        if let Some(first) = addresses.insert(host.address.value, host.address.loc)
                        {
                            self.error(
                                host.address.loc,
                                key("address"),
                                format!("{} is given to two hosts", host.address.value),
                            )
                            .hint = Some(format!("the first is at line {}", first.line));
                        }
                    }
                    IpAddr::V6(a) => {
                        self.error(
                            host.address.loc,
                            key("address"),
                            format!("{a} is IPv6: fixed leases are DHCPv4"),
                        )
                        .hint = Some(format!("give an IPv4 address inside {}", net.trunc()));
                    }
                }
            }
        }
    }

    pub(super) fn dns(&mut self, config: &Config) {
        let closed = &config.closed_network;
        if closed.dns.is_empty() && !closed.dns_zones.is_empty() {
            self.error(closed.dns_zones[0].loc, "closed_network.dns_zones", "closed-network zones are listed but no closed DNS server answers them")
                .hint = Some("add `dns: [...]` under closed_network with the resolvers your provider gave, or remove dns_zones".into());
        }
        if !closed.dns.is_empty() && closed.dns_zones.is_empty() {
            self.warning(closed.dns[0].loc, "closed_network.dns", "closed DNS servers are listed but no `dns_zones`: no name is sent to them")
                .hint = Some("list the zones they answer, e.g. `dns_zones: [onshikaku.org, oqs-pdl.org, lineauth.mnw]`".into());
        }
        let mut zones: HashMap<&str, Loc> = HashMap::new();
        for (i, zone) in closed.dns_zones.iter().enumerate() {
            if !self.ok(zone) {
                continue;
            }
            if !zone.0.contains('.') {
                // A bare top-level name would send every name under it to the closed DNS.
                self.warning(
                    zone.loc,
                    format!("closed_network.dns_zones[{i}]"),
                    format!("`{}` is a whole top-level domain", zone.0),
                );
            }
            if let Some(first) = zones.insert(&zone.0, zone.loc) {
                self.error(
                    zone.loc,
                    format!("closed_network.dns_zones[{i}]"),
                    format!("zone `{}` is listed twice", zone.0),
                )
                .hint = Some(format!("the first is at line {}", first.line));
            }
        }
        if let Some(dns) = &config.dns {
            for (i, server) in dns.internet_servers.iter().enumerate() {
                if !self.ok(server) {
                    continue;
                }
                if closed
                    .prefixes
                    .iter()
                    .any(|p| self.ok(p) && p.contains(&server.value))
                {
                    self.error(
                        server.loc,
                        format!("dns.internet_servers[{i}]"),
                        format!("{} lies in the closed network", server.value),
                    )
                    .hint = Some("closed-network resolvers belong in closed_network.dns".into());
                }
            }
        }
    }
}

/// A host address of the segment: inside it, not its network or broadcast address.
fn usable_host(net: &Ipv4Net, a: Ipv4Addr) -> bool {
    net.contains(&a) && a != net.network() && a != net.broadcast()
}

fn example_range(net: &Ipv4Net) -> String {
    let base = u32::from(net.network());
    let size = 1u32 << (32 - net.prefix_len().min(30));
    // The half of the segment the router's address is not in.
    let (first, last) = if u32::from(net.addr()) - base < size / 2 {
        (base + size / 2, base + size - 2)
    } else {
        (base + 1, base + size / 2 - 1)
    };
    format!(
        "a range inside {} that leaves out the router's {}, e.g. {}-{}",
        net.trunc(),
        net.addr(),
        Ipv4Addr::from(first),
        Ipv4Addr::from(last)
    )
}
