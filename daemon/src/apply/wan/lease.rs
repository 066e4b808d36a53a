//! dhcpcd's lease events as our hook records them: one file per kind (DHCPv4, DHCPv6, RA),
//! `key=value` lines of dhcpcd's script environment, rewritten at each event.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::plan::wan::WanPlan;
use crate::status::{DelegatedSegmentInfo, WanAddressInfo, WanInfo};

/// Which of dhcpcd's protocols a lease came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    Dhcp4,
    Dhcp6,
    Ra,
}

impl LeaseKind {
    const ALL: [LeaseKind; 3] = [LeaseKind::Dhcp4, LeaseKind::Dhcp6, LeaseKind::Ra];
    fn file(self) -> &'static str {
        match self {
            LeaseKind::Dhcp4 => "dhcpcd-dhcp4.env",
            LeaseKind::Dhcp6 => "dhcpcd-dhcp6.env",
            LeaseKind::Ra => "dhcpcd-ra.env",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Dhcp4 => "dhcp",
            LeaseKind::Dhcp6 => "dhcpv6",
            LeaseKind::Ra => "ra",
        }
    }
}

impl std::fmt::Display for LeaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// dhcpcd's script, ours: it records the WAN's events and touches nothing else (no
/// resolv.conf, no hostname, no NTP). Files are replaced whole (write, then rename), so a
/// reader never sees half. Events of other interfaces are left out: with a delegated prefix
/// dhcpcd also runs the script for the segments it puts the prefix on (`NOCARRIER` when a PC
/// is unplugged there), and those are not the WAN's leases.
pub fn hook_script(state_dir: &Path, wan: &str) -> String {
    format!(
        r#"#!/bin/sh
# dhcpcd's hook, written by oqs-edge: it records each lease event of the WAN for the daemon
# and touches nothing on the host.
dir={}
[ "$interface" = {} ] || exit 0
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT|EXPIRE|NAK|RELEASE|STOP|TIMEOUT|DEPARTED|NOCARRIER) kind=dhcp4 ;;
  BOUND6|RENEW6|REBIND6|REBOOT6|INFORM6|EXPIRE6|RELEASE6|STOP6|DELEGATED) kind=dhcp6 ;;
  ROUTERADVERT) kind=ra ;;
  *) exit 0 ;;
esac
env | grep -E '^(reason|interface|new_|old_|nd[0-9])' > "$dir/dhcpcd-$kind.tmp" && mv -f "$dir/dhcpcd-$kind.tmp" "$dir/dhcpcd-$kind.env"
exit 0
"#,
        sh_quote(&state_dir.display().to_string()),
        sh_quote(wan)
    )
}

/// `text` as one sh word, in single quotes.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub kind: LeaseKind,
    pub reason: String,
    /// The address with its prefix length, when the event carries one.
    pub address: Option<String>,
    pub lease_secs: Option<u64>,
    pub routers: Vec<String>,
    pub resolvers: Vec<String>,
    pub delegated: Vec<String>,
    /// When the hook wrote it (seconds since 1970).
    pub written: u64,
}

impl Lease {
    /// Whether the event leaves the WAN holding this lease.
    pub fn held(&self) -> bool {
        matches!(
            self.reason.as_str(),
            "BOUND"
                | "RENEW"
                | "REBIND"
                | "REBOOT"
                | "BOUND6"
                | "RENEW6"
                | "REBIND6"
                | "REBOOT6"
                | "INFORM6"
                | "DELEGATED"
                | "ROUTERADVERT"
        )
    }
    pub fn address_text(&self) -> String {
        self.address
            .clone()
            .unwrap_or_else(|| "no address".to_owned())
    }
    pub fn lease_text(&self) -> String {
        self.lease_secs
            .map(|s| {
                format!(
                    " for {}",
                    humantime::format_duration(std::time::Duration::from_secs(s))
                )
            })
            .unwrap_or_default()
    }
    /// Seconds of the lease left at `now`.
    fn left(&self, now: u64) -> Option<u64> {
        self.lease_secs
            .map(|secs| (self.written + secs).saturating_sub(now))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn read_all(state_dir: &Path) -> Vec<Lease> {
    LeaseKind::ALL
        .iter()
        .filter_map(|kind| {
            let path = state_dir.join(kind.file());
            let text = std::fs::read_to_string(&path).ok()?;
            let written = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            Some(parse(*kind, &text, written))
        })
        .collect()
}

fn words(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A recorded environment, `key=value` per line.
pub fn parse(kind: LeaseKind, text: &str, written: u64) -> Lease {
    let env: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
    let (address, lease_secs, routers, mut resolvers) = match kind {
        LeaseKind::Dhcp4 => (
            get("new_ip_address").map(|a| match get("new_subnet_cidr") {
                Some(len) => format!("{a}/{len}"),
                None => a.clone(),
            }),
            get("new_dhcp_lease_time").and_then(|s| s.parse().ok()),
            words(get("new_routers")),
            words(get("new_domain_name_servers")),
        ),
        LeaseKind::Dhcp6 => (
            get("new_dhcp6_ia_na1_ia_addr1").cloned(),
            get("new_dhcp6_ia_na1_ia_addr1_vltime").and_then(|s| s.parse().ok()),
            Vec::new(),
            words(get("new_dhcp6_name_servers")),
        ),
        // dhcpcd gives the RA's options without `new_`: nd1_from, nd1_addr1, …
        LeaseKind::Ra => (
            get("nd1_addr1").cloned(),
            get("nd1_prefix_information1_vltime").and_then(|s| s.parse().ok()),
            words(get("nd1_from")),
            words(get("nd1_rdnss1_servers")),
        ),
    };
    resolvers.dedup();
    Lease {
        kind,
        reason: env.get("reason").cloned().unwrap_or_default(),
        address,
        lease_secs,
        routers,
        resolvers,
        delegated: if kind == LeaseKind::Dhcp6 {
            delegated_prefixes(&env)
        } else {
            Vec::new()
        },
        written,
    }
}

/// The prefixes of a DHCPv6 event's IA_PDs (`new_dhcp6_ia_pd1_prefix1` and its `_length`), as
/// `prefix/length`. (The `new_delegated_dhcp6_prefix` dhcpcd gives with `DELEGATED6` is the
/// address it put on a segment, in an event of that segment's interface.)
fn delegated_prefixes(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut prefixes = Vec::new();
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("new_dhcp6_ia_pd") else {
            continue;
        };
        let Some((_, prefix_n)) = rest.split_once("_prefix") else {
            continue;
        };
        if prefix_n.is_empty() || !prefix_n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(length) = env.get(&format!("{key}_length")) else {
            continue;
        };
        let text = format!("{value}/{length}");
        if text.parse::<ipnet::Ipv6Net>().is_ok() && !prefixes.contains(&text) {
            prefixes.push(text);
        }
    }
    prefixes
}

/// The WAN for `status`: static values from the plan, the rest from the recorded leases.
pub fn wan_info(plan: &WanPlan, leases: &[Lease], dhcpcd_pid: Option<u32>) -> WanInfo {
    let now = now_secs();
    let mut info = WanInfo {
        interface: plan.interface.clone(),
        ipv4: plan.ipv4.clone(),
        ipv6: plan.ipv6.clone(),
        dhcp_client_running: plan.runs_dhcpcd().then_some(dhcpcd_pid.is_some()),
        addresses: plan
            .static_addresses
            .iter()
            .map(|a| WanAddressInfo {
                address: a.to_string(),
                source: "static".to_owned(),
                lease_left_secs: None,
            })
            .collect(),
        gateways: plan
            .static_gateways
            .iter()
            .map(ToString::to_string)
            .collect(),
        resolvers: plan.static_dns.iter().map(ToString::to_string).collect(),
        delegated: Vec::new(),
        delegated_segments: Vec::new(),
        problems: Vec::new(),
        lease_lost: false,
    };
    for lease in leases {
        if !lease.held() {
            continue;
        }
        if let Some(address) = &lease.address {
            info.addresses.push(WanAddressInfo {
                address: address.clone(),
                source: lease.kind.as_str().to_owned(),
                lease_left_secs: lease.left(now),
            });
        }
        for r in &lease.routers {
            if !info.gateways.contains(r) {
                info.gateways.push(r.clone());
            }
        }
        for r in &lease.resolvers {
            if !info.resolvers.contains(r) {
                info.resolvers.push(r.clone());
            }
        }
        info.delegated.extend(lease.delegated.iter().cloned());
    }
    // Where each delegated segment's address is, from the first delegated prefix (the one
    // dhcpcd splits among the segments).
    if let Some(prefix) = info
        .delegated
        .first()
        .and_then(|p| p.parse::<ipnet::Ipv6Net>().ok())
    {
        for d in &plan.delegated {
            if crate::plan::wan::delegated_address(prefix, d.subnet).is_none() {
                info.problems.push(format!(
                    "segment {}: subnet {} does not fit the delegated prefix {prefix}: the line delegates too few subnets; choose a smaller `delegated:N`",
                    d.segment, d.subnet
                ));
            }
        }
        info.delegated_segments = plan
            .delegated
            .iter()
            .map(|d| DelegatedSegmentInfo {
                segment: d.segment.clone(),
                interface: d.interface.clone(),
                address: crate::plan::wan::delegated_address(prefix, d.subnet)
                    .map(|a| a.to_string()),
            })
            .collect();
    }
    // IPv6 comes by router advertisements or DHCPv6 (a line may send no RA at all, or one
    // that only says "ask DHCPv6"): either one held is an address.
    let wanted: [(bool, &[LeaseKind], &str); 2] = [
        (plan.ipv4 == "dhcp", &[LeaseKind::Dhcp4], "IPv4 (DHCP)"),
        (
            plan.ipv6 == "ra",
            &[LeaseKind::Ra, LeaseKind::Dhcp6],
            "IPv6 (router advertisements, DHCPv6)",
        ),
    ];
    for (wanted, kinds, what) in wanted {
        if !wanted {
            continue;
        }
        let of_kind: Vec<&Lease> = leases.iter().filter(|l| kinds.contains(&l.kind)).collect();
        let found = of_kind
            .iter()
            .find(|l| l.held())
            .or_else(|| of_kind.first())
            .copied();
        match found {
            None => info.problems.push(format!(
                "WAN {}: no address yet for {what}: the line has not answered dhcpcd",
                plan.interface
            )),
            Some(l) if !l.held() => {
                info.lease_lost = true;
                info.problems.push(format!(
                    "WAN {}: lease lost for {what} ({}): the line took the address back or stopped answering",
                    plan.interface, l.reason
                ));
            }
            Some(_) => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dhcp4_event_gives_address_gateway_resolvers_and_lease() {
        let text = "reason=BOUND\ninterface=wan0\nnew_ip_address=198.51.100.50\nnew_subnet_cidr=24\nnew_routers=198.51.100.1\nnew_domain_name_servers=198.51.100.53 198.51.100.54\nnew_dhcp_lease_time=600\n";
        let lease = parse(LeaseKind::Dhcp4, text, 1000);
        assert!(lease.held());
        assert_eq!(lease.address.as_deref(), Some("198.51.100.50/24"));
        assert_eq!(lease.routers, vec!["198.51.100.1"]);
        assert_eq!(lease.resolvers, vec!["198.51.100.53", "198.51.100.54"]);
        assert_eq!(lease.left(1100), Some(500));
        let lost = parse(LeaseKind::Dhcp4, "reason=EXPIRE\n", 1000);
        assert!(!lost.held());
    }

    #[test]
    fn the_hook_records_only_the_wans_events() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, hook_script(dir.path(), "wan'0")).unwrap();
        let run = |interface: &str, reason: &str| {
            let status = std::process::Command::new("sh")
                .arg(&hook)
                .env("interface", interface)
                .env("reason", reason)
                .env("new_ip_address", "198.51.100.50")
                .status()
                .unwrap();
            assert!(status.success());
        };
        run("wan'0", "BOUND");
        // A PC unplugged on a segment that takes a delegated prefix.
        run("lan0", "NOCARRIER");
        let leases = read_all(dir.path());
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!(leases[0].reason, "BOUND");
        assert!(leases[0].held());
    }

    #[test]
    fn a_dhcpv6_event_gives_the_address_and_the_delegated_prefix() {
        // As dhcpcd 9.4.1 gave it from Kea 2.2 (IA_NA and a /56 by IA_PD).
        let text = "new_dhcp6_ia_pd1_prefix1_length=56\nnew_dhcp6_ia_pd1_prefix1=2001:db8:8800::\ninterface=wan0\nreason=BOUND6\nnew_dhcp6_ia_pd1_prefix1_pltime=300\nnew_dhcp6_ia_na1_ia_addr1=2001:db8:100::1000\nnew_dhcp6_ia_pd1_prefix1_vltime=600\nnew_dhcp6_name_servers=2001:db8:100::53\nnew_dhcp6_ia_pd1_iaid=00000002\nnew_dhcp6_ia_na1_ia_addr1_vltime=600\n";
        let lease = parse(LeaseKind::Dhcp6, text, 1000);
        assert!(lease.held());
        assert_eq!(lease.address.as_deref(), Some("2001:db8:100::1000"));
        assert_eq!(lease.lease_secs, Some(600));
        assert_eq!(lease.delegated, vec!["2001:db8:8800::/56"]);
        assert_eq!(lease.resolvers, vec!["2001:db8:100::53"]);
    }

    #[test]
    fn a_router_advertisement_gives_the_slaac_address_router_and_rdnss() {
        let text = "nd1_addr1=2001:db8:100:0:807c:bbff:feeb:9e5/64\nnd1_rdnss1_servers=2001:db8:100::53\nnd1_prefix_information1_length=64\ninterface=wan0\nreason=ROUTERADVERT\nnd1_from=fe80::c831:89ff:fe4a:a372\nnd1_prefix_information1_prefix=2001:db8:100::\nnd1_prefix_information1_vltime=120\n";
        let lease = parse(LeaseKind::Ra, text, 1000);
        assert!(lease.held());
        assert_eq!(
            lease.address.as_deref(),
            Some("2001:db8:100:0:807c:bbff:feeb:9e5/64")
        );
        assert_eq!(lease.routers, vec!["fe80::c831:89ff:fe4a:a372"]);
        assert_eq!(lease.resolvers, vec!["2001:db8:100::53"]);
    }
}
