//! The LAN side of the router: the router's address on each segment, the DHCP server, and
//! the DNS relay. One applier for the three, because they follow each other: the relay and
//! the DHCP server answer on the addresses the segments get first.

pub mod addresses;
pub mod dhcp;
pub mod dns;

use std::path::Path;

use log::{info, warn};

use crate::apply::net::Net;
use crate::logging::event;
use crate::plan::lan::AddressPlan;
use crate::plan::Plan;
use crate::status::{AddressInfo, SegmentInfo};

#[derive(Default)]
pub struct Lan {
    dhcp: dhcp::Dhcp,
    dns: dns::DnsRelay,
    /// Planned addresses that are not in place, with the reason.
    address_problems: Vec<(AddressPlan, String)>,
}

impl Lan {
    /// Make the LAN side match the plan; the watch calls it again to put back what went
    /// missing. Nothing here is fatal: what cannot be done now is a problem in `status`.
    /// `wan_resolvers`: the line's resolvers as dhcpcd learnt them (or the static WAN's), the
    /// DNS relay's `internet_servers` when the config sets none.
    pub async fn apply(
        &mut self,
        net: &Net,
        plan: &Plan,
        wan_resolvers: &[std::net::IpAddr],
        state_dir: &Path,
    ) {
        match net.sync_addresses(&plan.marked_addresses()).await {
            Ok(sync) => {
                for a in &sync.added {
                    info!(oqs_event = event::SEGMENT_ADDRESS; "segment {}: address {} added on {}", a.segment, a.address, a.interface);
                }
                for a in &sync.removed {
                    info!(oqs_event = event::SEGMENT_ADDRESS; "address {a} removed (its segment is no longer planned)");
                }
                for (a, why) in &sync.failed {
                    if !self
                        .address_problems
                        .iter()
                        .any(|(p, w)| p == a && w == why)
                    {
                        warn!(oqs_event = event::SEGMENT_ADDRESS; "segment {}: address {} is not in place: {why}; retrying", a.segment, a.address);
                    }
                }
                self.address_problems = sync.failed;
            }
            Err(e) => {
                warn!(oqs_event = event::SEGMENT_ADDRESS; "segment addresses: {e}");
                self.address_problems = plan
                    .marked_addresses()
                    .iter()
                    .map(|a| (a.clone(), e.to_string()))
                    .collect();
            }
        }
        let mut dns = plan.dns.clone();
        if let Some(dns) = dns.as_mut().filter(|d| d.internet_servers.is_empty()) {
            dns.internet_servers = wan_resolvers.to_vec();
        }
        self.dns.apply(dns.as_ref()).await;
        self.dhcp.apply(plan.dhcp.as_ref(), state_dir).await;
    }

    /// What is wrong on the LAN side, in plain words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .address_problems
            .iter()
            .map(|(a, why)| {
                format!(
                    "segment {}: the router's address {} is not on {}: {why}",
                    a.segment, a.address, a.interface
                )
            })
            .collect();
        problems.extend(self.dhcp.problem());
        problems.extend(self.dns.problems());
        problems
    }

    pub fn info(&self, plan: &Plan) -> Vec<SegmentInfo> {
        let dhcp = self.dhcp.info(plan.dhcp.as_ref());
        let mut segments: Vec<SegmentInfo> = Vec::new();
        for a in &plan.addresses {
            let problem = self
                .address_problems
                .iter()
                .find(|(p, _)| p == a)
                .map(|(_, why)| why.clone());
            let address = AddressInfo {
                address: a.address.to_string(),
                present: problem.is_none(),
                problem,
            };
            match segments.iter_mut().find(|s| s.name == a.segment) {
                Some(seg) => seg.addresses.push(address),
                None => segments.push(SegmentInfo {
                    name: a.segment.clone(),
                    interface: a.interface.clone(),
                    addresses: vec![address],
                    dhcp: dhcp.iter().find(|d| d.segment == a.segment).cloned(),
                    dns: self.dns.info(&a.segment),
                }),
            }
        }
        segments
    }

    pub fn stop(&mut self) {
        self.dhcp.stop();
        self.dns.stop();
    }
}
