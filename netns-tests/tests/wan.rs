//! The WAN side from the one YAML, with real parts: `inet` runs dnsmasq as the ISP (DHCPv4,
//! router advertisements), the daemon runs dhcpcd on the router's WAN and keeps it running;
//! the router gets its address, gateway and resolvers from the line, `status` says where each
//! came from, and `closed_network.nat` decides which source the closed network sees.
//!
//! dhcpcd keeps its own state in /run/dhcpcd and /var/lib/dhcpcd: here it runs through a
//! wrapper (`OQS_EDGE_DHCPCD`) that binds private copies of both from the lab's dir, so the
//! host's are never touched and two labs never share them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use netns_tests::wan::{
    default_route, dhcpcd_pid, prepare, start_isp, wan_addresses, with_wan_keys, ISP_DHCP4,
};
use netns_tests::{skip_unless_root, wait_for, Lab, Role};

/// config/lab.yaml (IP-VPN) with `wan_keys` under `wan:` and `closed_keys` under
/// `closed_network:`.
fn lab_config(lab: &Lab, wan_keys: &str, closed_keys: &str) -> PathBuf {
    let yaml = lab.config_from_lab_yaml();
    let yaml = with_wan_keys(&yaml, wan_keys);
    let closed = "  prefixes: [10.200.0.0/24]\n";
    let yaml = yaml.replacen(closed, &format!("{closed}{closed_keys}"), 1);
    lab.write_config(&yaml)
}

fn status(lab: &Lab, config: &Path) -> serde_json::Value {
    lab.status_json(config)
}

#[test]
fn the_wan_gets_its_address_by_dhcp_and_keeps_it_when_dhcpcd_dies_or_the_link_returns() {
    if skip_unless_root("the_wan_gets_its_address_by_dhcp") {
        return;
    }
    let lab = Lab::build("wandhcp");
    prepare(&lab);
    let mut isp = start_isp(&lab, ISP_DHCP4);
    let config = lab_config(&lab, "  ipv4: dhcp\n", "");
    let state = lab.dir().join("state");
    let started = Instant::now();
    let _daemon = lab.start_daemon_when(&config, || !wan_addresses(&lab, "-4").is_empty());
    let addresses = wan_addresses(&lab, "-4");
    println!(
        "WAN address by DHCP after {:.1} s: {addresses:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        addresses.iter().any(|a| a.starts_with("198.51.100.5")),
        "{addresses:?}"
    );
    assert!(
        default_route(&lab, "-4").contains("via 198.51.100.1 dev wan0"),
        "{}",
        default_route(&lab, "-4")
    );
    // The line works: the eligibility PC reaches the closed network through it.
    assert!(
        wait_for(15, || lab
            .probe(Role::Pc, "10.200.0.10:80".parse().unwrap())
            == netns_tests::Outcome::Connected),
        "the PC cannot reach the closed network over the DHCP WAN:\n{}",
        lab.daemon_log()
    );

    // status: where the address came from, the lease left, gateway and resolvers.
    assert!(
        wait_for(10, || status(&lab, &config)["wan"]["resolvers"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "198.51.100.53"))),
        "status: {:#}\n{}",
        status(&lab, &config)["wan"],
        lab.daemon_log()
    );
    let s = status(&lab, &config);
    let wan = &s["wan"];
    assert_eq!(wan["ipv4"], "dhcp", "{wan:#}");
    let leased = wan["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["source"] == "dhcp"))
        .cloned()
        .unwrap_or_default();
    assert!(
        leased["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("198.51.100.5")),
        "{wan:#}"
    );
    assert!(
        leased["lease_left_secs"]
            .as_u64()
            .is_some_and(|s| s > 0 && s <= 120),
        "{wan:#}"
    );
    assert!(
        wan["gateways"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "198.51.100.1")),
        "{wan:#}"
    );
    assert!(
        wait_for(6, || status(&lab, &config)["health"] == "healthy"),
        "{:#}",
        status(&lab, &config)
    );
    assert!(
        lab.daemon_log().contains("lease gained"),
        "{}",
        lab.daemon_log()
    );
    // The host's resolv.conf is not dhcpcd's business here.
    assert!(!std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .contains("198.51.100.53"));

    // dhcpcd killed: back within 5 s, the address kept throughout.
    let first = dhcpcd_pid(&state).expect("dhcpcd runs");
    netns_tests::signal(first, "KILL");
    let killed = Instant::now();
    assert!(
        wait_for(5, || dhcpcd_pid(&state).is_some_and(|p| p != first)),
        "dhcpcd was not started again within 5 s:\n{}",
        lab.daemon_log()
    );
    println!(
        "dhcpcd back {:.2} s after SIGKILL",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(wan_addresses(&lab, "-4"), addresses, "the address went");

    // The WAN link removed and made again (a USB NIC replugged): the address comes back.
    lab.ok(Role::Router, &["ip", "link", "del", "wan0"]);
    lab.stop(isp);
    lab.ok(
        Role::Router,
        &[
            "ip",
            "link",
            "add",
            "wan0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            lab.ns(Role::Inet),
        ],
    );
    lab.ok(Role::Router, &["ip", "link", "set", "wan0", "up"]);
    lab.ok(Role::Inet, &["ip", "link", "set", "eth0", "up"]);
    lab.ok(
        Role::Inet,
        &["ip", "address", "add", "198.51.100.1/24", "dev", "eth0"],
    );
    isp = start_isp(&lab, ISP_DHCP4);
    let replugged = Instant::now();
    assert!(
        wait_for(40, || !wan_addresses(&lab, "-4").is_empty()),
        "no WAN address after the link came back:\n{}",
        lab.daemon_log()
    );
    println!(
        "WAN address back {:.1} s after the link returned: {:?}",
        replugged.elapsed().as_secs_f64(),
        wan_addresses(&lab, "-4")
    );
    lab.stop(isp);
}

#[test]
fn the_wan_takes_ipv6_from_router_advertisements() {
    if skip_unless_root("the_wan_takes_ipv6_from_router_advertisements") {
        return;
    }
    let lab = Lab::build("wanra");
    prepare(&lab);
    lab.ok(
        Role::Router,
        &[
            "ip", "-6", "address", "flush", "dev", "wan0", "scope", "global",
        ],
    );
    let _ = lab.exec(Role::Router, &["ip", "-6", "route", "del", "default"]);
    let _isp = start_isp(
        &lab,
        &[
            "--enable-ra",
            "--ra-param=eth0,4",
            "--dhcp-range=2001:db8:100::,ra-only,64,2m",
            "--dhcp-option=option6:dns-server,[2001:db8:100::53]",
        ],
    );
    // IPv4 stays the harness's (static here), so the IP-VPN route comes up at once.
    lab.ok(
        Role::Router,
        &[
            "ip",
            "-4",
            "address",
            "add",
            "198.51.100.2/24",
            "dev",
            "wan0",
        ],
    );
    let config = lab_config(&lab, "  ipv6: ra\n", "");
    let started = Instant::now();
    let _daemon = lab.start_daemon_when(&config, || {
        wan_addresses(&lab, "-6")
            .iter()
            .any(|a| a.starts_with("2001:db8:100:"))
    });
    println!(
        "WAN IPv6 address by RA after {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        wan_addresses(&lab, "-6")
    );
    assert!(
        wait_for(10, || default_route(&lab, "-6").contains("dev wan0")),
        "no IPv6 default route from the RA:\n{}\n{}",
        default_route(&lab, "-6"),
        lab.daemon_log()
    );
    // dhcpcd takes the RAs itself (forwarding does not stop it) and turns the kernel's off:
    // the daemon sets no accept_ra to fight it.
    let sysctl = lab.ok(
        Role::Router,
        &["sysctl", "-n", "net.ipv6.conf.wan0.accept_ra"],
    );
    assert_eq!(sysctl.trim(), "0");
    assert!(
        wait_for(10, || status(&lab, &config)["wan"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["source"] == "ra"
                && a["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("2001:db8:100:"))))),
        "status: {:#}\nrecorded: {}\n{}",
        status(&lab, &config)["wan"],
        std::fs::read_to_string(lab.dir().join("state/dhcpcd-ra.env")).unwrap_or_default(),
        lab.daemon_log()
    );
}

/// Sources of the TCP SYNs the closed server saw during one probe from the eligibility PC.
fn closed_sees(lab: &Lab) -> Vec<String> {
    let capture = lab.capture(
        Role::Closed,
        "eth0",
        "tcp dst port 80 and tcp[tcpflags] & tcp-syn != 0",
    );
    let outcome = lab.probe(Role::Pc, "10.200.0.10:80".parse().unwrap());
    assert_eq!(outcome, netns_tests::Outcome::Connected);
    capture
        .stop()
        .iter()
        .filter_map(|l| {
            let after = l.split(" IP ").nth(1)?;
            let source = after.split_whitespace().next()?;
            Some(
                source
                    .rsplit_once('.')
                    .map_or(source, |(a, _)| a)
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn nat_toward_the_closed_network_decides_which_source_it_sees() {
    if skip_unless_root("nat_toward_the_closed_network_decides_which_source_it_sees") {
        return;
    }
    let lab = Lab::build("wannat");
    // The carrier routes the LAN back to the router (as a line that routes the LAN prefix).
    lab.carrier_routes_lan(true);
    let config = lab_config(&lab, "", "  nat: true\n");
    let daemon = lab.start_daemon(&config);
    let seen = closed_sees(&lab);
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s == "198.51.100.2"),
        "nat: true: {seen:?}"
    );
    lab.stop(daemon);

    let config = lab_config(&lab, "", "  nat: false\n");
    let _daemon = lab.start_daemon(&config);
    // The first daemon's table and route stay (fail-closed): wait for this one's firewall.
    assert!(
        wait_for(10, || lab.daemon_log().contains("firewall applied")),
        "{}",
        lab.daemon_log()
    );
    let seen = closed_sees(&lab);
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s == "192.168.50.10"),
        "nat: false: {seen:?}"
    );
}

/// The ISP gives the router another address (dnsmasq restarted with a new pool, authoritative,
/// and the line bounced from its side): the WireGuard tunnel carries traffic again from the new
/// address without operator action, and no cleartext packet to the closed network leaves.
#[test]
fn wireguard_follows_a_new_wan_address_from_the_isp() {
    use netns_tests::wireguard::{router_keygen, wireguard_config, Concentrator, EtcOverride};
    if skip_unless_root("wireguard_follows_a_new_wan_address_from_the_isp") {
        return;
    }
    let lab = Lab::build("wanwg");
    prepare(&lab);
    let _etc = EtcOverride::router(&lab, "203.0.113.2");
    let (key, router_public) = router_keygen(&lab);
    let concentrator = Concentrator::start(&lab, &router_public);
    let yaml = wireguard_config(
        &lab,
        &key,
        &concentrator.public_key,
        "203.0.113.2:51820",
        "25s",
    );
    let config = lab.write_config(&with_wan_keys(&yaml, "  ipv4: dhcp\n"));
    let pool_a = [
        "--dhcp-authoritative",
        "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m",
        "--dhcp-option=option:router,198.51.100.1",
        "--dhcp-option=option:dns-server,198.51.100.53",
    ];
    let isp = start_isp(&lab, &pool_a);
    let closed: std::net::SocketAddr = "10.200.0.10:80".parse().unwrap();
    let _daemon = lab.start_daemon_when(&config, || !wan_addresses(&lab, "-4").is_empty());
    assert!(
        wait_for(20, || lab.probe(Role::Pc, closed)
            == netns_tests::Outcome::Connected),
        "no traffic through the tunnel on the first address:\n{}",
        lab.daemon_log()
    );
    let first = wan_addresses(&lab, "-4");
    let mac = lab.router_wan_mac();
    let leaks = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    );

    // A new pool, the old lease forgotten, and the line bounced from the ISP's side.
    lab.stop(isp);
    let pool_b = [
        "--dhcp-authoritative",
        "--dhcp-range=198.51.100.70,198.51.100.79,255.255.255.0,2m",
        "--dhcp-option=option:router,198.51.100.1",
        "--dhcp-option=option:dns-server,198.51.100.53",
        // A fifth option: start_isp names the lease file by the count, so this one is fresh.
        "--log-queries",
    ];
    let _isp = start_isp(&lab, &pool_b);
    lab.ok(Role::Inet, &["ip", "link", "set", "eth0", "down"]);
    lab.ok(Role::Inet, &["ip", "link", "set", "eth0", "up"]);
    assert!(
        wait_for(60, || wan_addresses(&lab, "-4")
            .iter()
            .any(|a| a.starts_with("198.51.100.7"))),
        "no new address from the new pool (had {first:?}, now {:?}):\n{}",
        wan_addresses(&lab, "-4"),
        lab.daemon_log()
    );
    let moved = Instant::now();
    assert!(
        wait_for(30, || lab.probe(Role::Pc, closed)
            == netns_tests::Outcome::Connected),
        "the tunnel did not carry traffic again from the new address {:?}:\n{}",
        wan_addresses(&lab, "-4"),
        lab.daemon_log()
    );
    println!(
        "WAN address {first:?} -> {:?}: traffic through the tunnel again {:.2} s after the new address",
        wan_addresses(&lab, "-4"),
        moved.elapsed().as_secs_f64()
    );
    let packets = leaks.stop();
    assert!(
        packets.is_empty(),
        "cleartext to the closed network on the WAN: {packets:?}"
    );
}
