//! The design's firewall policy as one nftables table. Read top to bottom, each chain is the
//! policy table's row for its traffic:
//!
//! | from \ to   | closed network            | internet      | eligibility | clinic        | router                 |
//! |-------------|---------------------------|---------------|-------------|---------------|------------------------|
//! | eligibility | only through the tunnel   | reject        | —           | reject new    | proxy ports, DNS, ICMP |
//! | clinic      | reject (use the proxy)    | `internet:`   | allow       | —             | proxy ports, DNS, ICMP |
//! | WAN         | drop                      | —             | drop        | drop          | tunnel ports, replies  |
//!
//! Before the policy, a LAN packet whose source does not belong to the segment it arrives on
//! (not routed back out of that interface) is dropped: the eligibility PC cannot pose as a
//! clinic PC or as the closed network.
//!
//! The kill switch is the first rule of `forward` and `output`, before any `established`
//! accept, so an open connection can never fall back to the WAN in cleartext.

use std::net::IpAddr;

use ipnet::IpNet;

use super::nft::{
    Addrs, Chain, Counter, Family, Hook, Match, Names, Op, Policy, Rule, Ruleset, Set, SetType,
    Verdict, L4,
};
use crate::config::model::{Dataplane, InternetAccess, Ipv4Mode, Ipv6Mode, Role, Segment};
use crate::config::{TunnelSection, ValidConfig};

/// How closed-network traffic must leave the router; anything else is dropped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Egress {
    /// Out of this tunnel interface (WireGuard, libipsec's ipsec0).
    Interface(String),
    /// Through a kernel IPsec policy (xfrm): `rt ipsec missing` marks a leak.
    IpsecPolicy,
    /// Out of the WAN: an IP-VPN line is itself the closed network.
    Wan(String),
}

/// The interface libipsec creates for its userspace ESP.
pub const LIBIPSEC_INTERFACE: &str = "ipsec0";

pub fn egress(config: &ValidConfig) -> Egress {
    match config.tunnel() {
        TunnelSection::WireGuard(wg) => Egress::Interface(wg.interface.0.clone()),
        TunnelSection::Ipsec(ipsec) => match ipsec.dataplane.value {
            Dataplane::Kernel => Egress::IpsecPolicy,
            Dataplane::Libipsec => Egress::Interface(LIBIPSEC_INTERFACE.to_owned()),
        },
        TunnelSection::IpVpn(_) => Egress::Wan(config.wan.interface.0.clone()),
    }
}

/// Counters `status` reports; the names are read back from the kernel by these names.
pub const COUNTERS: &[Counter] = &[
    Counter {
        name: "spoofed_source",
        comment: "LAN packets with a source that does not belong to their segment (dropped)",
    },
    Counter {
        name: "killswitch_forward",
        comment: "LAN packets to the closed network stopped from leaving outside the tunnel",
    },
    Counter {
        name: "killswitch_output",
        comment:
            "router's own packets to the closed network stopped from leaving outside the tunnel",
    },
    Counter {
        name: "eligibility_to_closed",
        comment: "eligibility PC to the closed network, through the tunnel",
    },
    Counter {
        name: "eligibility_to_internet",
        comment: "eligibility PC tried the internet (rejected)",
    },
    Counter {
        name: "eligibility_to_lan",
        comment: "eligibility PC tried to open a connection into the LAN (rejected)",
    },
    Counter {
        name: "clinic_to_closed",
        comment: "clinic PC tried the closed network directly (rejected: use the proxy)",
    },
    Counter {
        name: "clinic_to_internet",
        comment: "clinic PC tried the internet from a segment with internet: deny (rejected)",
    },
    Counter {
        name: "wan_to_lan",
        comment: "WAN tried to reach the LAN (dropped)",
    },
    Counter {
        name: "wan_to_router",
        comment: "WAN tried a router port that is not the tunnel's (dropped)",
    },
    Counter {
        name: "lan_to_router",
        comment: "LAN tried a router port that is not a proxy, DNS or ICMP (dropped)",
    },
];

const CLOSED_V4: &str = "closed_v4";
const CLOSED_V6: &str = "closed_v6";
const ELIGIBILITY_IFS: &str = "eligibility_ifs";
const CLINIC_IFS: &str = "clinic_ifs";
const LAN_IFS: &str = "lan_ifs";

/// Neighbour discovery: IPv6 does not work without it, on the LAN or the WAN.
const ND_TYPES: &[&str] = &[
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];

pub fn ruleset(config: &ValidConfig) -> Ruleset {
    let egress = egress(config);
    let wan = config.wan.interface.0.clone();
    let closed: Vec<IpNet> = config
        .closed_network
        .prefixes
        .iter()
        .map(|p| p.value)
        .collect();
    let families: Vec<Family> = [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| closed.iter().any(|p| Family::of(p) == *f))
        .collect();
    let ifs_with = |role: Role| -> Vec<String> {
        config
            .segments
            .iter()
            .filter(|s| s.role.value == role)
            .map(|s| s.interface.0.clone())
            .collect()
    };
    let sets = vec![
        Set {
            name: CLOSED_V4,
            kind: SetType::Ipv4Addr,
            elements: nets_text(&closed, Family::V4),
        },
        Set {
            name: CLOSED_V6,
            kind: SetType::Ipv6Addr,
            elements: nets_text(&closed, Family::V6),
        },
        Set {
            name: ELIGIBILITY_IFS,
            kind: SetType::IfName,
            elements: ifs_with(Role::Eligibility),
        },
        Set {
            name: CLINIC_IFS,
            kind: SetType::IfName,
            elements: ifs_with(Role::Clinic),
        },
        Set {
            name: LAN_IFS,
            kind: SetType::IfName,
            elements: config
                .segments
                .iter()
                .map(|s| s.interface.0.clone())
                .collect(),
        },
    ];
    Ruleset {
        sets,
        counters: COUNTERS.to_vec(),
        chains: vec![
            prerouting(),
            input(config, &wan),
            forward(config, &egress, &families, &wan),
            output(&egress, &families),
            postrouting(config, &egress, &families, &wan),
        ],
    }
}

fn nets_text(nets: &[IpNet], family: Family) -> Vec<String> {
    nets.iter()
        .filter(|n| Family::of(n) == family)
        .map(ToString::to_string)
        .collect()
}

fn closed_set(family: Family) -> Addrs {
    Addrs::Set(match family {
        Family::V4 => CLOSED_V4,
        Family::V6 => CLOSED_V6,
    })
}

fn one(name: &str) -> Names {
    Names::One(name.to_owned())
}

/// A packet to the closed network that is not leaving the way it must.
fn leak(egress: &Egress, family: Family) -> Vec<Match> {
    let mut m = vec![Match::Daddr(family, closed_set(family))];
    m.push(match egress {
        Egress::Interface(name) | Egress::Wan(name) => Match::Oif(Op::IsNot, one(name)),
        Egress::IpsecPolicy => Match::RtIpsecMissing,
    });
    m
}

/// Anti-spoofing, before conntrack and the policy: a packet from a LAN segment must have a
/// source the router routes back out of that segment's interface (nft's strict reverse-path
/// check, so subnets the OS routes behind a segment pass too). Addresses that are not yet
/// configured have no route: DHCP from 0.0.0.0 and IPv6 duplicate address detection from ::.
fn prerouting() -> Chain {
    let lan = Names::Set(LAN_IFS);
    let unspecified = |family: Family| -> IpNet {
        match family {
            Family::V4 => IpNet::from(IpAddr::from([0u8; 4])),
            Family::V6 => IpNet::from(IpAddr::from([0u16; 8])),
        }
    };
    let rules = vec![
        Rule::new(
            vec![
                Match::Iif(Op::Is, lan.clone()),
                Match::Saddr(Family::V4, Addrs::Nets(vec![unspecified(Family::V4)])),
                Match::Dports(L4::Udp, vec![67]),
            ],
            Verdict::Accept,
        )
        .comment("DHCP from a client without an address"),
        Rule::new(
            vec![
                Match::Iif(Op::Is, lan.clone()),
                Match::Saddr(Family::V6, Addrs::Nets(vec![unspecified(Family::V6)])),
                Match::L4Proto(vec!["ipv6-icmp"]),
            ],
            Verdict::Accept,
        )
        .comment("IPv6 duplicate address detection"),
        Rule::new(
            vec![Match::Iif(Op::Is, lan), Match::FibSaddrIifMissing],
            Verdict::Drop,
        )
        .counted("spoofed_source")
        .comment("anti-spoofing"),
    ];
    Chain {
        name: "prerouting",
        hook: Hook::Prerouting,
        policy: Policy::Accept,
        rules,
    }
}

fn input(config: &ValidConfig, wan: &str) -> Chain {
    let mut rules = vec![
        Rule::new(vec![Match::Iif(Op::Is, one("lo"))], Verdict::Accept),
        Rule::new(
            vec![Match::CtState(vec!["established", "related"])],
            Verdict::Accept,
        ),
        Rule::new(vec![Match::CtState(vec!["invalid"])], Verdict::Drop),
        Rule::new(vec![Match::Icmpv6Types(ND_TYPES.to_vec())], Verdict::Accept)
            .comment("IPv6 neighbour discovery"),
    ];
    rules.extend(wan_client(config, wan));
    rules.extend(tunnel_ports(config, wan));
    rules.push(
        Rule::new(vec![Match::Iif(Op::Is, one(wan))], Verdict::Drop).counted("wan_to_router"),
    );

    let lan = Names::Set(LAN_IFS);
    rules.push(Rule::new(
        vec![
            Match::Iif(Op::Is, lan.clone()),
            Match::L4Proto(vec!["icmp", "ipv6-icmp"]),
        ],
        Verdict::Accept,
    ));
    for l4 in [L4::Udp, L4::Tcp] {
        rules.push(
            Rule::new(
                vec![Match::Iif(Op::Is, lan.clone()), Match::Dports(l4, vec![53])],
                Verdict::Accept,
            )
            .comment("DNS"),
        );
    }
    // DHCP only where oqs-edge serves it; a client asks from 0.0.0.0, so match the interface.
    for seg in config.segments.iter().filter(|s| s.dhcp.is_some()) {
        rules.push(
            Rule::new(
                vec![
                    Match::Iif(Op::Is, one(&seg.interface.0)),
                    Match::Dports(L4::Udp, vec![67]),
                ],
                Verdict::Accept,
            )
            .comment(format!("DHCP on segment {}", *seg.name)),
        );
    }
    for route in config.proxy.iter().flat_map(|p| p.routes.iter()) {
        let listen = route.listen.value;
        let family = family_of_addr(listen.ip());
        let sources = resolve_sources(config, route.allow.iter().map(|a| a.as_str()), family);
        if sources.is_empty() {
            continue;
        }
        rules.push(
            lan_service(&lan, listen, sources).comment(format!("proxy route {}", *route.name)),
        );
    }
    if let Some(metrics) = config
        .control
        .as_ref()
        .and_then(|c| c.metrics.as_ref().map(|m| (m.value, &c.metrics_allow)))
        .filter(|(listen, _)| !listen.ip().is_loopback())
    {
        // Loopback is accepted above; the LAN only from `metrics_allow`, the WAN never.
        let (listen, allow) = metrics;
        let family = family_of_addr(listen.ip());
        let sources = resolve_sources(config, allow.iter().map(|a| a.as_str()), family);
        if !sources.is_empty() {
            rules.push(lan_service(&lan, listen, sources).comment("metrics"));
        }
    }
    if let Some((listen, sources)) = status_page(config) {
        if !sources.is_empty() {
            rules.push(lan_service(&lan, listen, sources).comment("status page"));
        }
    }
    if let Some(management) = &config.management {
        for family in [Family::V4, Family::V6] {
            let sources = resolve_sources(
                config,
                management.ssh_from.iter().map(|a| a.as_str()),
                family,
            );
            if !sources.is_empty() {
                rules.push(
                    Rule::new(
                        vec![
                            Match::Iif(Op::Is, lan.clone()),
                            Match::Saddr(family, Addrs::Nets(sources)),
                            Match::Dports(L4::Tcp, vec![22]),
                        ],
                        Verdict::Accept,
                    )
                    .comment("management SSH"),
                );
            }
        }
    }
    rules.push(Rule::new(vec![Match::Iif(Op::Is, lan)], Verdict::Drop).counted("lan_to_router"));
    Chain {
        name: "input",
        hook: Hook::Input,
        policy: Policy::Drop,
        rules,
    }
}

/// What the WAN's address clients need from the line: DHCPv4 replies when oqs-edge runs
/// dhcpcd for IPv4, DHCPv6 replies unless IPv6 is static (router advertisements are neighbour
/// discovery, accepted above). Nothing for a static WAN.
fn wan_client(config: &ValidConfig, wan: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    if config.wan.ipv4_mode() == Ipv4Mode::Dhcp {
        rules.push(
            Rule::new(
                vec![
                    Match::Iif(Op::Is, one(wan)),
                    Match::Sport(L4::Udp, 67),
                    Match::Dports(L4::Udp, vec![68]),
                ],
                Verdict::Accept,
            )
            .comment("DHCPv4 replies to the WAN's client"),
        );
    }
    if config.wan.ipv6_mode() != Ipv6Mode::Static {
        rules.push(
            Rule::new(
                vec![
                    Match::Iif(Op::Is, one(wan)),
                    Match::Sport(L4::Udp, 547),
                    Match::Dports(L4::Udp, vec![546]),
                ],
                Verdict::Accept,
            )
            .comment("DHCPv6 replies to the WAN's address client"),
        );
    }
    rules
}

/// What the WAN may send to the router itself: the tunnel's own packets.
fn tunnel_ports(config: &ValidConfig, wan: &str) -> Vec<Rule> {
    let from_wan = |extra: Match| vec![Match::Iif(Op::Is, one(wan)), extra];
    match config.tunnel() {
        TunnelSection::WireGuard(wg) => wg
            .listen_port
            .iter()
            .map(|port| {
                Rule::new(
                    from_wan(Match::Dports(L4::Udp, vec![port.value])),
                    Verdict::Accept,
                )
                .comment("WireGuard")
            })
            .collect(),
        TunnelSection::Ipsec(ipsec) => {
            let mut rules = vec![Rule::new(
                from_wan(Match::Dports(L4::Udp, vec![500, 4500])),
                Verdict::Accept,
            )
            .comment("IKE and ESP-in-UDP")];
            if ipsec.dataplane.value == Dataplane::Kernel {
                rules.push(
                    Rule::new(from_wan(Match::L4Proto(vec!["esp"])), Verdict::Accept)
                        .comment("ESP"),
                );
            }
            rules
        }
        TunnelSection::IpVpn(_) => Vec::new(),
    }
}

fn forward(config: &ValidConfig, egress: &Egress, families: &[Family], wan: &str) -> Chain {
    let mut rules: Vec<Rule> = families
        .iter()
        .map(|f| {
            Rule::new(leak(egress, *f), Verdict::Drop)
                .counted("killswitch_forward")
                .comment("kill switch")
        })
        .collect();
    rules.push(Rule::new(
        vec![Match::CtState(vec!["established", "related"])],
        Verdict::Accept,
    ));
    rules.push(Rule::new(
        vec![Match::CtState(vec!["invalid"])],
        Verdict::Drop,
    ));

    // Eligibility: the closed network through the tunnel, nothing else.
    let eligibility = Names::Set(ELIGIBILITY_IFS);
    for family in families {
        let mut m = vec![
            Match::Iif(Op::Is, eligibility.clone()),
            Match::Daddr(*family, closed_set(*family)),
        ];
        if let Egress::Interface(name) | Egress::Wan(name) = egress {
            m.push(Match::Oif(Op::Is, one(name)));
        }
        rules.push(Rule::new(m, Verdict::Accept).counted("eligibility_to_closed"));
    }
    rules.push(
        Rule::new(
            vec![
                Match::Iif(Op::Is, eligibility.clone()),
                Match::Oif(Op::Is, Names::Set(LAN_IFS)),
            ],
            Verdict::Reject,
        )
        .counted("eligibility_to_lan"),
    );
    rules.push(
        Rule::new(vec![Match::Iif(Op::Is, eligibility)], Verdict::Reject)
            .counted("eligibility_to_internet"),
    );

    // Clinic: the eligibility segment and other clinic segments, the internet as configured,
    // the closed network only through the proxy.
    let clinic = Names::Set(CLINIC_IFS);
    rules.push(Rule::new(
        vec![
            Match::Iif(Op::Is, clinic.clone()),
            Match::Oif(Op::Is, Names::Set(LAN_IFS)),
        ],
        Verdict::Accept,
    ));
    for family in families {
        rules.push(
            Rule::new(
                vec![
                    Match::Iif(Op::Is, clinic.clone()),
                    Match::Daddr(*family, closed_set(*family)),
                ],
                Verdict::Reject,
            )
            .counted("clinic_to_closed")
            .comment("use the proxy"),
        );
    }
    for seg in clinic_segments(config) {
        let allow = seg
            .internet
            .as_ref()
            .is_some_and(|a| a.value == InternetAccess::Allow);
        let m = vec![
            Match::Iif(Op::Is, one(&seg.interface.0)),
            Match::Oif(Op::Is, one(wan)),
        ];
        rules.push(if allow {
            Rule::new(m, Verdict::Accept).comment(format!("{}: internet allowed", *seg.name))
        } else {
            Rule::new(m, Verdict::Reject)
                .counted("clinic_to_internet")
                .comment(format!("{}: internet denied", *seg.name))
        });
    }
    rules.push(Rule::new(vec![Match::Iif(Op::Is, one(wan))], Verdict::Drop).counted("wan_to_lan"));
    Chain {
        name: "forward",
        hook: Hook::Forward,
        policy: Policy::Drop,
        rules,
    }
}

/// The router's own traffic (the proxy's upstream connections) obeys the kill switch too.
fn output(egress: &Egress, families: &[Family]) -> Chain {
    let rules = families
        .iter()
        .map(|f| {
            Rule::new(leak(egress, *f), Verdict::Drop)
                .counted("killswitch_output")
                .comment("kill switch")
        })
        .collect();
    Chain {
        name: "output",
        hook: Hook::Output,
        policy: Policy::Accept,
        rules,
    }
}

/// Source NAT. Clinic segments with internet access leave as the WAN address. Through a
/// WireGuard tunnel, LAN sources leave as the tunnel address (the concentrator routes only
/// that back); on an IP-VPN line, as the line's address. IPsec needs none: its traffic
/// selectors carry the LAN segments.
fn postrouting(config: &ValidConfig, egress: &Egress, families: &[Family], wan: &str) -> Chain {
    let mut rules = Vec::new();
    for seg in clinic_segments(config) {
        if seg
            .internet
            .as_ref()
            .is_some_and(|a| a.value == InternetAccess::Allow)
            && matches!(seg.address.value, IpNet::V4(_))
        {
            rules.push(
                Rule::new(
                    vec![
                        Match::Oif(Op::Is, one(wan)),
                        Match::Saddr(Family::V4, Addrs::Nets(vec![seg.address.trunc()])),
                    ],
                    Verdict::Masquerade,
                )
                .comment(format!("{}: internet", *seg.name)),
            );
        }
    }
    let eligibility_v4: Vec<IpNet> = config
        .segments
        .iter()
        .filter(|s| s.role.value == Role::Eligibility && matches!(s.address.value, IpNet::V4(_)))
        .map(|s| s.address.trunc())
        .collect();
    let tunnel_nat = match (config.tunnel(), egress) {
        (TunnelSection::WireGuard(wg), Egress::Interface(name))
            if matches!(wg.address.value, IpNet::V4(_)) =>
        {
            Some((
                name.clone(),
                Match::Daddr(Family::V4, closed_set(Family::V4)),
            ))
        }
        (TunnelSection::IpVpn(_), Egress::Wan(name)) => Some((
            name.clone(),
            Match::Daddr(Family::V4, closed_set(Family::V4)),
        )),
        _ => None,
    };
    if let Some(out) = closed_nat_out(config, egress) {
        // `closed_network.nat: true`: every LAN source, v4 and v6, leaves as the router.
        for family in families {
            rules.push(
                Rule::new(
                    vec![
                        Match::Oif(Op::Is, one(&out)),
                        Match::Iif(Op::Is, Names::Set(LAN_IFS)),
                        Match::Daddr(*family, closed_set(*family)),
                    ],
                    Verdict::Masquerade,
                )
                .comment("closed_network.nat"),
            );
        }
    } else if config.closed_network.nat.is_some() {
        // `nat: false` written out: LAN sources keep their addresses.
    } else if let (Some((out, to_closed)), false) = (tunnel_nat, eligibility_v4.is_empty()) {
        rules.push(
            Rule::new(
                vec![
                    Match::Oif(Op::Is, one(&out)),
                    Match::Saddr(Family::V4, Addrs::Nets(eligibility_v4)),
                    to_closed,
                ],
                Verdict::Masquerade,
            )
            .comment("eligibility to the closed network"),
        );
    }
    Chain {
        name: "postrouting",
        hook: Hook::Postrouting,
        policy: Policy::Accept,
        rules,
    }
}

/// Where `closed_network.nat: true` masquerades: the tunnel interface (WireGuard) or the WAN
/// (IP-VPN). `check` refuses it for IPsec, whose traffic selectors carry the LAN prefixes.
fn closed_nat_out(config: &ValidConfig, egress: &Egress) -> Option<String> {
    if !config.closed_network.nat() {
        return None;
    }
    match (config.tunnel(), egress) {
        (TunnelSection::WireGuard(_), Egress::Interface(name)) => Some(name.clone()),
        (TunnelSection::IpVpn(_), Egress::Wan(name)) => Some(name.clone()),
        _ => None,
    }
}

fn clinic_segments(config: &ValidConfig) -> impl Iterator<Item = &Segment> {
    config
        .segments
        .iter()
        .map(|s| &s.value)
        .filter(|s| s.role.value == Role::Clinic)
}

fn family_of_addr(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// From the LAN, `sources` may open TCP `listen` on the router.
fn lan_service(lan: &Names, listen: std::net::SocketAddr, sources: Vec<IpNet>) -> Rule {
    let family = family_of_addr(listen.ip());
    Rule::new(
        vec![
            Match::Iif(Op::Is, lan.clone()),
            Match::Saddr(family, Addrs::Nets(sources)),
            Match::Daddr(family, Addrs::Nets(vec![IpNet::from(listen.ip())])),
            Match::Dports(L4::Tcp, vec![listen.port()]),
        ],
        Verdict::Accept,
    )
}

/// `control.status_page` and who may open it: `status_page_allow`, by default the clinic
/// segments (the prefixes of the page address's family).
pub fn status_page(config: &ValidConfig) -> Option<(std::net::SocketAddr, Vec<IpNet>)> {
    let control = config.control.as_ref()?;
    let listen = control.status_page.as_ref()?.value;
    let family = family_of_addr(listen.ip());
    let sources = match &control.status_page_allow {
        Some(allow) => resolve_sources(config, allow.iter().map(|a| a.as_str()), family),
        None => {
            let names: Vec<&str> = clinic_segments(config).map(|s| s.name.as_str()).collect();
            resolve_sources(config, names.into_iter(), family)
        }
    };
    Some((listen, sources))
}

/// `allow`-style entries (segment names or CIDRs) → the prefixes of one family.
pub fn resolve_sources<'a>(
    config: &ValidConfig,
    entries: impl Iterator<Item = &'a str>,
    family: Family,
) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for entry in entries {
        match config.segments.iter().find(|s| *s.name == entry) {
            Some(seg) => {
                nets.push(seg.address.trunc());
                nets.extend(
                    seg.address6
                        .iter()
                        .filter_map(|a| a.fixed())
                        .map(|a| a.trunc()),
                );
            }
            None => nets.extend(entry.parse::<IpNet>().ok()),
        }
    }
    nets.retain(|n| Family::of(n) == family);
    nets.sort();
    nets.dedup();
    nets
}

/// The ruleset the early-boot unit loads when there is no saved one (first boot, lost state)
/// or nft refuses it. It knows no config, so it goes by addresses: nothing is forwarded at all,
/// and the router itself answers only private, link-local and loopback sources (the LAN, for
/// the installer) plus replies to its own connections. The daemon replaces it at start.
pub const BOOT_BLOCK: &str = r#"table inet oqs_edge
delete table inet oqs_edge
table inet oqs_edge {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		ct state invalid drop
		ip saddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } accept comment "LAN to the router"
		ip6 saddr { fc00::/7, fe80::/10 } accept comment "LAN to the router"
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		counter comment "early-boot block: nothing is forwarded until oqs-edge runs"
	}

	chain output {
		type filter hook output priority filter; policy accept;
	}
}
"#;
