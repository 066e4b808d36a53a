//! The WAN side of the plan: how the uplink gets its addresses (the OS, dhcpcd, or static
//! values oqs-edge puts on it) and dhcpcd's whole config file, rendered here.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde::Serialize;

use super::lan::AddressPlan;
use super::Route;
use crate::config::model::{Ipv4Mode, Ipv6Mode};
use crate::config::scalar::Address6;
use crate::config::ValidConfig;

/// What `segment` the WAN's static addresses carry in [`AddressPlan`]: they are applied with
/// the segments' (one marked set of addresses, so a reload removes exactly what it added).
pub const WAN_SEGMENT: &str = "wan";

/// The WAN's addressing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WanPlan {
    pub interface: String,
    /// dhcp, static or os.
    pub ipv4: String,
    /// ra, static or os.
    pub ipv6: String,
    /// `static` addresses (also in the plan's `addresses`, segment `wan`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_addresses: Vec<IpNet>,
    /// `static` gateways (`gateway`, `gateway6`), for `status`; the routes are in the plan's
    /// routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_gateways: Vec<IpAddr>,
    /// `static` resolvers; with dhcp/ra they are learnt from dhcpcd at run time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_dns: Vec<IpAddr>,
    /// dhcpcd's whole config file, when oqs-edge runs it (ipv4: dhcp or ipv6: ra). Paths of
    /// its state are given on its command line by the applier, so the plan stays pure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcpcd_conf: Option<String>,
    /// Segments whose IPv6 prefix comes from the delegated prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delegated: Vec<DelegatedSegment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DelegatedSegment {
    pub segment: String,
    pub interface: String,
    /// The subnet of the delegated prefix (a /64), the router taking ::1 in it.
    pub subnet: u32,
}

/// The router's address in subnet `subnet` (a /64) of a delegated `prefix`: ::1 in it, where
/// dhcpcd puts it (`ia_pd … IF/SUBNET/64/1`: the subnet number in the bits between the
/// prefix's length and 64). `None` when the subnet does not fit the prefix.
pub fn delegated_address(prefix: Ipv6Net, subnet: u32) -> Option<Ipv6Net> {
    let len = prefix.prefix_len();
    if len > 64 {
        return None;
    }
    let bits = 64 - u32::from(len);
    if bits < 32 && u64::from(subnet) >= 1u64 << bits {
        return None;
    }
    let network = u128::from(prefix.trunc().network()) | (u128::from(subnet) << 64);
    Ipv6Net::new(Ipv6Addr::from(network | 1), 64).ok()
}

impl WanPlan {
    /// Whether oqs-edge supervises dhcpcd on the WAN.
    pub fn runs_dhcpcd(&self) -> bool {
        self.dhcpcd_conf.is_some()
    }
}

pub fn wan(config: &ValidConfig) -> WanPlan {
    let wan = &config.wan;
    let interface = wan.interface.0.clone();
    let v4 = wan.ipv4_mode();
    let v6 = wan.ipv6_mode();
    let mut static_addresses = Vec::new();
    if v4 == Ipv4Mode::Static {
        static_addresses.extend(wan.address.as_ref().map(|a| a.value));
    }
    if v6 == Ipv6Mode::Static {
        static_addresses.extend(wan.address6.as_ref().map(|a| a.value));
    }
    let delegated: Vec<DelegatedSegment> = config
        .segments
        .iter()
        .filter_map(|s| match s.address6.as_ref()?.value {
            Address6::Delegated { subnet } => Some(DelegatedSegment {
                segment: s.name.value.clone(),
                interface: s.interface.0.clone(),
                subnet,
            }),
            Address6::Fixed(_) => None,
        })
        .collect();
    let dhcpcd_conf = wan
        .runs_dhcp_client()
        .then(|| dhcpcd_conf(&interface, v4, v6, &delegated));
    WanPlan {
        interface,
        ipv4: v4.to_string(),
        ipv6: v6.to_string(),
        static_addresses,
        static_gateways: routes(config).iter().filter_map(|r| r.via).collect(),
        static_dns: if v4 == Ipv4Mode::Static || v6 == Ipv6Mode::Static {
            wan.dns.iter().map(|d| d.value).collect()
        } else {
            Vec::new()
        },
        dhcpcd_conf,
        delegated,
    }
}

/// The static addresses, applied with the segments' addresses.
pub fn addresses(plan: &WanPlan) -> Vec<AddressPlan> {
    plan.static_addresses
        .iter()
        .map(|a| AddressPlan {
            segment: WAN_SEGMENT.to_owned(),
            interface: plan.interface.clone(),
            address: *a,
        })
        .collect()
}

/// The static default routes (`gateway`, `gateway6`), applied with the others.
pub fn routes(config: &ValidConfig) -> Vec<Route> {
    let wan = &config.wan;
    let device = wan.interface.0.clone();
    let mut routes = Vec::new();
    if wan.ipv4_mode() == Ipv4Mode::Static {
        if let Some(g) = &wan.gateway {
            routes.push(Route {
                destination: IpNet::V4(Default::default()),
                via: Some(g.value),
                device: device.clone(),
            });
        }
    }
    if wan.ipv6_mode() == Ipv6Mode::Static {
        if let Some(g) = &wan.gateway6 {
            routes.push(Route {
                destination: IpNet::V6(Default::default()),
                via: Some(g.value),
                device,
            });
        }
    }
    routes
}

/// dhcpcd on the WAN only: no hook touches the host (resolv.conf, hostname, NTP); the daemon
/// reads the lease from dhcpcd itself. `persistent` keeps the address when dhcpcd stops, so
/// a restart of dhcpcd (or of oqs-edge) does not take the line down.
fn dhcpcd_conf(
    interface: &str,
    v4: Ipv4Mode,
    v6: Ipv6Mode,
    delegated: &[DelegatedSegment],
) -> String {
    let mut c = String::new();
    c.push_str("# dhcpcd on the WAN, rendered by oqs-edge: the daemon runs and supervises it\n");
    let _ = writeln!(c, "allowinterfaces {interface}");
    c.push_str("nohook resolv.conf, hostname, ntp.conf, timesyncd.conf, yp.conf, wpa_supplicant\n");
    c.push_str("noipv4ll\n");
    c.push_str("persistent\n");
    c.push_str("option domain_name_servers, domain_name, interface_mtu, classless_static_routes\n");
    c.push_str("require dhcp_server_identifier\n");
    let _ = writeln!(c, "\ninterface {interface}");
    if v4 == Ipv4Mode::Dhcp {
        c.push_str("  ipv4\n");
    } else {
        c.push_str("  noipv4\n");
    }
    if v6 == Ipv6Mode::Ra {
        c.push_str("  ipv6rs\n");
        c.push_str("  slaac hwaddr\n");
        c.push_str("  option dhcp6_name_servers, dhcp6_domain_search\n");
        c.push_str("  ia_na 1\n");
        if !delegated.is_empty() {
            let targets: Vec<String> = delegated
                .iter()
                .map(|d| format!("{}/{}/64/1", d.interface, d.subnet))
                .collect();
            let _ = writeln!(c, "  ia_pd 2 {}", targets.join(" "));
        }
    } else {
        c.push_str("  noipv6\n");
    }
    c
}

impl WanPlan {
    /// The WAN in plain lines, as `oqs-edge plan` shows it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{}: ipv4 {}, ipv6 {}",
            self.interface, self.ipv4, self.ipv6
        )];
        if self.ipv4 == "os" && self.ipv6 == "os" {
            lines.push("(addressed by the OS; oqs-edge only filters and routes)".to_owned());
        }
        for a in &self.static_addresses {
            lines.push(format!("static address {a} (proto 79)"));
        }
        if !self.static_dns.is_empty() {
            let dns: Vec<String> = self.static_dns.iter().map(ToString::to_string).collect();
            lines.push(format!("resolvers {}", dns.join(" ")));
        }
        for d in &self.delegated {
            lines.push(format!(
                "segment {} ({}): subnet {} of the delegated prefix, the router ::1/64",
                d.segment, d.interface, d.subnet
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_takes_its_subnet_of_the_delegated_prefix_with_the_router_at_1() {
        let p: Ipv6Net = "2001:db8:8800::/56".parse().unwrap();
        let at = |n| delegated_address(p, n).map(|a| a.to_string());
        assert_eq!(at(0).as_deref(), Some("2001:db8:8800::1/64"));
        assert_eq!(at(1).as_deref(), Some("2001:db8:8800:1::1/64"));
        assert_eq!(at(255).as_deref(), Some("2001:db8:8800:ff::1/64"));
        // A /56 has 256 subnets; a /64 only its own.
        assert_eq!(at(256), None);
        let one: Ipv6Net = "2001:db8:1:2::/64".parse().unwrap();
        assert_eq!(
            delegated_address(one, 0).map(|a| a.to_string()).as_deref(),
            Some("2001:db8:1:2::1/64")
        );
        assert_eq!(delegated_address(one, 1), None);
        let wide: Ipv6Net = "2001:db8::/32".parse().unwrap();
        assert_eq!(
            delegated_address(wide, 65535)
                .map(|a| a.to_string())
                .as_deref(),
            Some("2001:db8:0:ffff::1/64")
        );
        let narrow: Ipv6Net = "2001:db8::/80".parse().unwrap();
        assert_eq!(delegated_address(narrow, 0), None);
    }
}
