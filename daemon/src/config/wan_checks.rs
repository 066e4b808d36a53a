//! Checks of the WAN's addressing: which keys each `ipv4`/`ipv6` mode takes, a static gateway
//! inside its address's prefix, and segments whose IPv6 prefix comes from the line's delegation.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{Config, Ipv4Mode, Ipv6Mode, TunnelType};
use super::scalar::{Address6, At};
use super::validate::Checker;

impl Checker<'_> {
    pub(super) fn wan(&mut self, config: &Config) {
        let wan = &config.wan;
        let v4 = wan.ipv4_mode();
        let v6 = wan.ipv6_mode();
        let v4_ok = wan.ipv4.as_ref().is_none_or(|m| self.ok(m));
        let v6_ok = wan.ipv6.as_ref().is_none_or(|m| self.ok(m));

        if v4_ok {
            if v4 == Ipv4Mode::Static {
                self.static_side(
                    wan.loc,
                    ("address", wan.address.as_ref()),
                    ("gateway", wan.gateway.as_ref()),
                    false,
                );
            } else {
                let why = match v4 {
                    Ipv4Mode::Dhcp => "with `ipv4: dhcp` the line's DHCP server gives the address",
                    _ => "with `ipv4: os` the OS addresses the WAN",
                };
                self.static_only(wan.address.as_ref(), "address", "ipv4", why);
                self.static_only(wan.gateway.as_ref(), "gateway", "ipv4", why);
            }
        }
        if v6_ok {
            if v6 == Ipv6Mode::Static {
                self.static_side(
                    wan.loc,
                    ("address6", wan.address6.as_ref()),
                    ("gateway6", wan.gateway6.as_ref()),
                    true,
                );
            } else {
                let why = match v6 {
                    Ipv6Mode::Ra => {
                        "with `ipv6: ra` router advertisements and DHCPv6 give the address"
                    }
                    _ => "with `ipv6: os` the OS addresses the WAN",
                };
                self.static_only(wan.address6.as_ref(), "address6", "ipv6", why);
                self.static_only(wan.gateway6.as_ref(), "gateway6", "ipv6", why);
            }
        }
        if v4_ok && v6_ok && v4 != Ipv4Mode::Static && v6 != Ipv6Mode::Static {
            if let Some(first) = wan.dns.first() {
                self.error(
                    first.loc,
                    "wan.dns",
                    "`wan.dns` is for a static WAN: with dhcp, ra or os the line's own resolvers are used",
                )
                .hint = Some("delete `dns:`, or set the resolvers the relay uses in `dns.internet_servers`".into());
            }
        }

        if let Some(nat) = &config.closed_network.nat {
            if nat.value
                && self.ok(&config.tunnel.kind)
                && config.tunnel.kind.value == TunnelType::Ipsec
            {
                self.error(
                    nat.loc,
                    "closed_network.nat",
                    "`nat: true` is for wireguard and ip-vpn tunnels: IPsec's traffic selectors already carry the LAN's prefixes",
                )
                .hint = Some("delete `nat:`, or ask the provider to route the LAN's prefixes back".into());
            }
        }

        for (i, seg) in config.segments.iter().enumerate() {
            let Some(a6) = &seg.address6 else { continue };
            let Address6::Delegated { subnet } = a6.value else {
                continue;
            };
            if !self.ok(a6) {
                continue;
            }
            if v6_ok && v6 != Ipv6Mode::Ra {
                self.error(
                    a6.loc,
                    format!("segments[{i}].address6"),
                    format!(
                        "`delegated` takes the segment's prefix from the line, but `wan.ipv6` is `{v6}`"
                    ),
                )
                .hint = Some("set `ipv6: ra` under wan (dhcpcd asks the line for a prefix), or write the segment's IPv6 address out".into());
            } else if subnet > 0xffff {
                self.error(
                    a6.loc,
                    format!("segments[{i}].address6"),
                    format!("subnet {subnet} does not fit a delegated prefix (at most 65535)"),
                );
            }
        }
    }

    /// A key that belongs to the static mode only, written under another mode.
    fn static_only<T>(&mut self, at: Option<&At<T>>, key: &str, mode: &str, why: &str) {
        if let Some(at) = at {
            self.error(
                at.loc,
                format!("wan.{key}"),
                format!("`{key}` is for `{mode}: static`: {why}"),
            )
            .hint = Some(format!(
                "delete `{key}:`, or set `{mode}: static` to give the address yourself"
            ));
        }
    }

    /// The address and gateway of one static family: present, of that family, the gateway
    /// inside the address's prefix (or link-local for IPv6).
    fn static_side(
        &mut self,
        wan_loc: super::scalar::Loc,
        (address_key, address): (&str, Option<&At<IpNet>>),
        (gateway_key, gateway): (&str, Option<&At<IpAddr>>),
        v6: bool,
    ) {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let mode = if v6 { "ipv6" } else { "ipv4" };
        let Some(address) = address else {
            self.error(
                wan_loc,
                format!("wan.{address_key}"),
                format!("`{mode}: static` needs `{address_key}`"),
            )
            .hint = Some(if v6 {
                "add `address6: 2001:db8:1::2/64` (as the line's provider gave it)".into()
            } else {
                "add `address: 198.51.100.2/24` (as the line's provider gave it)".into()
            });
            return;
        };
        let address_ok = self.ok(address);
        if address_ok && matches!(address.value, IpNet::V6(_)) != v6 {
            self.error(
                address.loc,
                format!("wan.{address_key}"),
                format!("{} is not an {family} address", address.value),
            );
            return;
        }
        let Some(gateway) = gateway else {
            self.warning(
                wan_loc,
                format!("wan.{gateway_key}"),
                format!("`{mode}: static` without `{gateway_key}`: no default route, the router reaches only {}", address.value.trunc()),
            );
            return;
        };
        if !address_ok || !self.ok(gateway) {
            return;
        }
        let net = address.value;
        let g = gateway.value;
        let link_local = matches!(g, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        if matches!(g, IpAddr::V6(_)) != v6 {
            self.error(
                gateway.loc,
                format!("wan.{gateway_key}"),
                format!("{g} is not an {family} address"),
            );
        } else if g == net.addr() {
            self.error(
                gateway.loc,
                format!("wan.{gateway_key}"),
                format!("{g} is the router's own address"),
            )
            .hint =
                Some("the gateway is the line's router, e.g. the provider's first address".into());
        } else if !link_local && !net.contains(&g) {
            self.error(
                gateway.loc,
                format!("wan.{gateway_key}"),
                format!(
                    "gateway {g} is outside {}, the prefix of `{address_key}` {net}",
                    net.trunc()
                ),
            )
            .hint = Some(format!(
                "the gateway must be on the WAN's subnet: correct it or the prefix length of {net}"
            ));
        }
    }
}
