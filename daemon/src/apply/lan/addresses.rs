//! The router's own address on each LAN interface, and the link up.
//!
//! Addresses oqs-edge adds carry its mark in the address's protocol field (`ip address`
//! shows `proto 79`), as its routes do: only marked addresses are ever removed, so an
//! operator's extra address on a LAN port survives every reload, and a crashed run's
//! addresses are found by the next one. An address already there (set by the OS) is used
//! as it is and left alone.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::LinkUnspec;

use crate::apply::net::{Net, NetError, ROUTE_PROTOCOL};
use crate::plan::lan::AddressPlan;

/// errno for "already exists".
const EEXIST: i32 = 17;

/// What the segments hold after [`Net::sync_addresses`].
#[derive(Debug, Default)]
pub struct AddressSync {
    pub added: Vec<AddressPlan>,
    /// Addresses of ours no longer planned (`address` on `ifindex N`).
    pub removed: Vec<String>,
    /// Planned addresses that are not in place, with the reason in plain words.
    pub failed: Vec<(AddressPlan, String)>,
}

/// An address on a link, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Present {
    index: u32,
    address: IpNet,
    ours: bool,
}

impl Net {
    /// Put every planned segment address in place (link up, address added with our mark) and
    /// remove marked addresses that are no longer planned. A missing interface is reported
    /// for its segment and does not stop the others; the watch loop retries.
    pub async fn sync_addresses(&self, wanted: &[AddressPlan]) -> Result<AddressSync, NetError> {
        let present = self.addresses().await?;
        let mut sync = AddressSync::default();
        let mut keep = BTreeSet::new();
        for plan in wanted {
            let Some((index, _)) = self.link(&plan.interface).await? else {
                sync.failed.push((
                    plan.clone(),
                    format!("interface {} does not exist", plan.interface),
                ));
                continue;
            };
            if let Err(source) = self
                .handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
            {
                sync.failed.push((
                    plan.clone(),
                    NetError::Link {
                        name: plan.interface.clone(),
                        source,
                    }
                    .to_string(),
                ));
                continue;
            }
            keep.insert((index, plan.address));
            let here = present
                .iter()
                .any(|p| p.index == index && p.address == plan.address);
            if here {
                continue;
            }
            match self.add_address(index, plan.address).await {
                Ok(()) => sync.added.push(plan.clone()),
                Err(source) => sync.failed.push((
                    plan.clone(),
                    NetError::Address {
                        name: plan.interface.clone(),
                        address: plan.address,
                        source,
                    }
                    .to_string(),
                )),
            }
        }
        for stale in present
            .iter()
            .filter(|p| p.ours && !keep.contains(&(p.index, p.address)))
        {
            let mut message = AddressMessage::default();
            message.header.index = stale.index;
            message.header.prefix_len = stale.address.prefix_len();
            message.header.family = match stale.address {
                IpNet::V4(_) => rtnetlink::packet_route::AddressFamily::Inet,
                IpNet::V6(_) => rtnetlink::packet_route::AddressFamily::Inet6,
            };
            message
                .attributes
                .push(AddressAttribute::Address(stale.address.addr()));
            if let IpNet::V4(_) = stale.address {
                message
                    .attributes
                    .push(AddressAttribute::Local(stale.address.addr()));
            }
            match self.handle.address().del(message).execute().await {
                Ok(()) => sync
                    .removed
                    .push(format!("{} on ifindex {}", stale.address, stale.index)),
                Err(e) => log::warn!(
                    "cannot remove the old segment address {} (ifindex {}): {e}",
                    stale.address,
                    stale.index
                ),
            }
        }
        Ok(sync)
    }

    async fn add_address(&self, index: u32, address: IpNet) -> Result<(), rtnetlink::Error> {
        let mut request = self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len());
        let message = request.message_mut();
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                ROUTE_PROTOCOL,
            )));
        if let IpNet::V6(_) = address {
            // The router's own address on its LAN: usable at once (the DNS relay and the
            // proxy bind to it), not after a second of duplicate detection.
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(()),
            other => other,
        }
    }

    /// Every address on every link, with whether it carries our mark.
    async fn addresses(&self) -> Result<Vec<Present>, NetError> {
        let mut found = Vec::new();
        let mut stream = self.handle.address().get().execute();
        while let Some(message) = stream.try_next().await.map_err(|source| NetError::List {
            what: "addresses",
            source,
        })? {
            let ip: Option<IpAddr> = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let ours = message.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Protocol(AddressProtocol::Other(p)) if *p == ROUTE_PROTOCOL)
            });
            if let Some(address) = ip.and_then(|ip| IpNet::new(ip, message.header.prefix_len).ok())
            {
                found.push(Present {
                    index: message.header.index,
                    address,
                    ours,
                });
            }
        }
        Ok(found)
    }
}
