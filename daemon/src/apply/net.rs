//! The net applier: kernel settings and the routes to the closed network, over rtnetlink.
//!
//! Routes oqs-edge adds carry their own route protocol number ([`ROUTE_PROTOCOL`], shown by
//! `ip route` as `proto 79`, or `proto oqs-edge` once packaging names it). That mark is how a
//! later run, even after a crash, finds what it added: only routes with it are ever removed,
//! so an operator's own routes are left alone.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use futures_util::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, State};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteVia,
};
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};

use crate::plan::Route;

/// errno for "no such device", which netlink answers for an unknown link name.
pub(super) const ENODEV: i32 = 19;

/// The `rtm_protocol` of every route oqs-edge adds (79 is "O"; unused by iproute2's list).
pub const ROUTE_PROTOCOL: u8 = 79;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("cannot set {name} = {value} (writing {path}): {source}")]
    Sysctl {
        name: String,
        value: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("cannot add the route {route}: {source}")]
    Add {
        route: String,
        source: rtnetlink::Error,
    },
    #[error("cannot remove the old route {route}: {source}")]
    Remove {
        route: String,
        source: rtnetlink::Error,
    },
    #[error("cannot build the route {route}: {message}")]
    Build { route: String, message: String },
    #[error("cannot bring up the interface {name}: {source}")]
    Link {
        name: String,
        source: rtnetlink::Error,
    },
    #[error("cannot set the address {address} on {name}: {source}")]
    Address {
        name: String,
        address: IpNet,
        source: rtnetlink::Error,
    },
}

/// Set each sysctl by writing its file under /proc/sys (the netns of the daemon is the one
/// that counts: `net.*` files are per namespace).
pub fn apply_sysctls(sysctls: &[(String, String)]) -> Result<(), NetError> {
    for (name, value) in sysctls {
        let path = PathBuf::from("/proc/sys").join(sysctl_path(name));
        std::fs::write(&path, value).map_err(|source| NetError::Sysctl {
            name: name.clone(),
            value: value.clone(),
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `net.ipv6.conf.eth0/100.accept_ra` → `net/ipv6/conf/eth0.100/accept_ra` (sysctl(8)'s
/// convention: dots separate, a slash stands for a dot inside a name).
fn sysctl_path(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

/// What the routing table holds of ours after [`Net::sync_routes`].
#[derive(Debug, Default)]
pub struct RouteSync {
    pub added: Vec<Route>,
    pub removed: Vec<Route>,
    /// Planned routes that could not be installed, with the reason in plain words.
    pub failed: Vec<(Route, String)>,
}

/// What [`Net::keep_foreign_routes`] did: destinations whose route it now keeps (first seen,
/// or changed), and those it put back.
#[derive(Debug, Default)]
pub struct KeptRoutes {
    pub seen: Vec<IpNet>,
    pub put_back: Vec<IpNet>,
}

/// A route as the kernel reports it, reduced to what a plan states.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Installed {
    destination: IpNet,
    via: Option<IpAddr>,
    device_index: u32,
}

/// A netlink connection; its I/O task runs on the tokio runtime.
pub struct Net {
    pub(super) handle: Handle,
}

impl Net {
    pub fn connect() -> Result<Self, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
        tokio::spawn(connection);
        Ok(Net { handle })
    }

    /// The index of a link by name, `None` when it does not exist.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetError> {
        Ok(self.link(name).await?.map(|(index, _)| index))
    }

    /// Whether a link exists and is operationally up (or "unknown", which TUN and veth
    /// devices without carrier detection report while passing traffic).
    pub async fn link_up(&self, name: &str) -> Result<bool, NetError> {
        Ok(matches!(
            self.link(name).await?,
            Some((_, State::Up | State::Unknown))
        ))
    }

    /// A tunnel interface oqs-edge owns: up, with this MTU and `address` as its only address
    /// (an address left from an earlier config is removed). Its routes come from
    /// [`Net::sync_routes`].
    pub async fn set_tunnel_link(
        &self,
        name: &str,
        address: IpNet,
        mtu: u32,
    ) -> Result<(), NetError> {
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| NetError::NoInterface(name.to_owned()))?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(|source| NetError::Link {
                name: name.to_owned(),
                source,
            })?;
        let mut present = false;
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut stale = Vec::new();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|source| NetError::List {
                what: "addresses",
                source,
            })?
        {
            let ip = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let same = ip.is_some_and(|ip| {
                ip == address.addr() && message.header.prefix_len == address.prefix_len()
            });
            // IPv6 link-local addresses are the kernel's own.
            let link_local = matches!(ip, Some(IpAddr::V6(v6)) if v6.is_unicast_link_local());
            if same {
                present = true;
            } else if !link_local {
                stale.push(message);
            }
        }
        for message in stale {
            let _ = self.handle.address().del(message).execute().await;
        }
        if !present {
            self.handle
                .address()
                .add(index, address.addr(), address.prefix_len())
                .replace()
                .execute()
                .await
                .map_err(|source| NetError::Address {
                    name: name.to_owned(),
                    address,
                    source,
                })?;
        }
        Ok(())
    }

    pub(super) async fn link(&self, name: &str) -> Result<Option<(u32, State)>, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => {
                let state = link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::OperState(s) => Some(*s),
                        _ => None,
                    })
                    .unwrap_or(State::Unknown);
                Ok(Some((link.header.index, state)))
            }
            Ok(None) => Ok(None),
            // The kernel answers ENODEV for a name it does not know.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(None),
            Err(source) => Err(NetError::List {
                what: "interfaces",
                source,
            }),
        }
    }

    /// Make oqs-edge's routes in the main table exactly `wanted`: add what is missing, remove
    /// routes of ours that are no longer planned. Routes that cannot be added now (interface
    /// missing, gateway unreachable) are reported, not fatal: the watch loop retries.
    pub async fn sync_routes(&self, wanted: &[Route]) -> Result<RouteSync, NetError> {
        let installed = self.installed().await?;
        let mut sync = RouteSync::default();
        let mut keep = BTreeSet::new();
        for route in wanted {
            let Some(index) = self.link_index(&route.device).await? else {
                sync.failed.push((
                    route.clone(),
                    format!("interface {} does not exist", route.device),
                ));
                continue;
            };
            let want = Installed {
                destination: route.destination,
                via: route.via,
                device_index: index,
            };
            if installed.contains(&want) {
                keep.insert(want);
                continue;
            }
            match self.add(route, index).await {
                Ok(()) => {
                    keep.insert(want);
                    sync.added.push(route.clone());
                }
                Err(e) => sync.failed.push((route.clone(), e.to_string())),
            }
        }
        for stale in installed.difference(&keep) {
            let shown = Route {
                destination: stale.destination,
                via: stale.via,
                device: format!("ifindex {}", stale.device_index),
            };
            self.handle
                .route()
                .del(stale.message()?)
                .execute()
                .await
                .map_err(|source| NetError::Remove {
                    route: shown.to_string(),
                    source,
                })?;
            sync.removed.push(shown);
        }
        Ok(sync)
    }

    /// Routes of ours (our protocol, main table) that are installed now.
    async fn installed(&self) -> Result<BTreeSet<Installed>, NetError> {
        Ok(self
            .all_routes()
            .await?
            .iter()
            .filter_map(Installed::from_message)
            .collect())
    }

    /// Every route the kernel holds, IPv4 and IPv6, in any table.
    async fn all_routes(&self) -> Result<Vec<RouteMessage>, NetError> {
        let mut found = Vec::new();
        for version in [IpVersion::V4, IpVersion::V6] {
            let query = match version {
                IpVersion::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
                IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            };
            let mut routes = self.handle.route().get(query).execute();
            while let Some(message) = routes.try_next().await.map_err(|source| NetError::List {
                what: "routes",
                source,
            })? {
                found.push(message);
            }
        }
        Ok(found)
    }

    /// Keep another program's routes through `device` to `destinations` (charon's through
    /// libipsec's ipsec0, in its own table): remember each as the kernel holds it, and while
    /// `live` put back one that is gone (someone deleted it; its owner adds it only when it
    /// installs an SA), through the device as it is now (a restarted charon makes a new
    /// ipsec0). What is remembered outlives an SA going down and coming back between two calls
    /// (charon adds the same route again), so a route deleted before the next call has seen
    /// the new one still comes back. Not live: nothing is put back (the owner removed it).
    pub async fn keep_foreign_routes(
        &self,
        device: &str,
        destinations: &[IpNet],
        live: bool,
        kept: &mut Vec<RouteMessage>,
    ) -> Result<KeptRoutes, NetError> {
        let mut result = KeptRoutes::default();
        kept.retain(|m| route_destination(m).is_some_and(|d| destinations.contains(&d)));
        let Some(index) = self.link_index(device).await? else {
            return Ok(result);
        };
        let now = self.routes_through(index).await?;
        for destination in destinations {
            let of = |m: &RouteMessage| route_destination(m) == Some(*destination);
            if let Some(found) = now.iter().find(|m| of(m)) {
                if !kept.contains(found) {
                    kept.retain(|m| !of(m));
                    kept.push(found.clone());
                    result.seen.push(*destination);
                }
                continue;
            }
            if !live {
                continue;
            }
            let Some(mut old) = kept.iter().find(|m| of(m)).cloned() else {
                continue;
            };
            for attribute in &mut old.attributes {
                if let RouteAttribute::Oif(oif) = attribute {
                    *oif = index;
                }
            }
            self.handle
                .route()
                .add(old)
                .replace()
                .execute()
                .await
                .map_err(|source| NetError::Add {
                    route: format!("{destination} dev {device}"),
                    source,
                })?;
            result.put_back.push(*destination);
        }
        Ok(result)
    }

    /// Routes out of the link `index`, in any table.
    async fn routes_through(&self, index: u32) -> Result<Vec<RouteMessage>, NetError> {
        let mut found = self.all_routes().await?;
        found.retain(|message| route_oif(message) == Some(index));
        for message in &mut found {
            // Counters that change by themselves: not part of the route.
            message
                .attributes
                .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
        }
        Ok(found)
    }

    async fn add(&self, route: &Route, index: u32) -> Result<(), NetError> {
        let message = Installed {
            destination: route.destination,
            via: route.via,
            device_index: index,
        }
        .message()?;
        // `replace`: a route to the same prefix that someone else left (a stale static one)
        // must not keep closed-network traffic away from the tunnel.
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| NetError::Add {
                route: route.to_string(),
                source,
            })
    }
}

impl Installed {
    fn from_message(message: &RouteMessage) -> Option<Self> {
        if message.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
            || message.header.table != RouteHeader::RT_TABLE_MAIN
        {
            return None;
        }
        let mut destination = None;
        let mut via = None;
        let mut device_index = None;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Destination(address) => destination = address_ip(address),
                RouteAttribute::Gateway(address) => via = address_ip(address),
                RouteAttribute::Via(RouteVia::Inet6(v6)) => via = Some(IpAddr::V6(*v6)),
                RouteAttribute::Oif(index) => device_index = Some(*index),
                _ => {}
            }
        }
        let destination =
            IpNet::new(destination?, message.header.destination_prefix_length).ok()?;
        Some(Installed {
            destination,
            via,
            device_index: device_index?,
        })
    }

    fn message(&self) -> Result<RouteMessage, NetError> {
        // rtnetlink does not export its builder's error type; its message is what counts.
        let build_error = |message: String| NetError::Build {
            route: self.destination.to_string(),
            message,
        };
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.destination.addr(), self.destination.prefix_len())
            .map_err(|e| build_error(e.to_string()))?
            .output_interface(self.device_index)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        if let Some(via) = self.via {
            builder = builder
                .gateway(via)
                .map_err(|e| build_error(e.to_string()))?;
        }
        Ok(builder.build())
    }
}

fn route_destination(message: &RouteMessage) -> Option<IpNet> {
    let address = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(address) => address_ip(address),
        _ => None,
    })?;
    IpNet::new(address, message.header.destination_prefix_length).ok()
}

fn route_oif(message: &RouteMessage) -> Option<u32> {
    message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}

fn address_ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// An interface's traffic counters from sysfs (`/sys/class/net/IF/statistics`); none when the
/// interface is missing.
pub fn link_counters(interface: &str) -> Option<crate::status::LinkCounters> {
    let dir = std::path::Path::new("/sys/class/net")
        .join(interface)
        .join("statistics");
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(crate::status::LinkCounters {
        rx_bytes: read("rx_bytes")?,
        tx_bytes: read("tx_bytes")?,
        rx_packets: read("rx_packets")?,
        tx_packets: read("tx_packets")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dot_in_an_interface_name_survives_the_sysctl_path() {
        assert_eq!(
            super::sysctl_path("net.ipv6.conf.eth0/100.accept_ra"),
            "net/ipv6/conf/eth0.100/accept_ra"
        );
        assert_eq!(
            super::sysctl_path("net.ipv4.ip_forward"),
            "net/ipv4/ip_forward"
        );
    }
}
