//! The WAN side from the one YAML, with real parts: `inet` runs dnsmasq as the ISP (DHCPv4,
//! router advertisements), the daemon runs dhcpcd on the router's WAN and keeps it running;
//! the router gets its address, gateway and resolvers from the line, `status` says where each
//! came from, and `closed_network.nat` decides which source the closed network sees.
//!
//! dhcpcd keeps its own state in /run/dhcpcd and /var/lib/dhcpcd: here it runs through a
//! wrapper (`OQS_EDGE_DHCPCD`) that binds private copies of both from the lab's dir, so the
//! host's are never touched and two labs never share them.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Cleartext from the router to the closed network, seen on the ISP's side of the WAN.
fn closed_leaks(lab: &Lab) -> netns_tests::Capture<'_> {
    let mac = lab.router_wan_mac();
    lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    )
}

/// The ISP moves the router to another pool (198.51.100.70–79): the old dnsmasq `isp` and its
/// leases gone, a new one started, and the line bounced from the ISP's side. Returns its PID.
fn isp_moves_to_a_new_pool(lab: &Lab, isp: u32) -> u32 {
    lab.stop(isp);
    let pool_b = [
        "--dhcp-authoritative",
        "--dhcp-range=198.51.100.70,198.51.100.79,255.255.255.0,2m",
        "--dhcp-option=option:router,198.51.100.1",
        "--dhcp-option=option:dns-server,198.51.100.53",
        // A fifth option: start_isp names the lease file by the count, so this one is fresh.
        "--log-queries",
    ];
    let pid = start_isp(lab, &pool_b);
    lab.ok(Role::Inet, &["ip", "link", "set", "eth0", "down"]);
    lab.ok(Role::Inet, &["ip", "link", "set", "eth0", "up"]);
    pid
}

/// The processes in the router's namespace.
fn router_pids(lab: &Lab) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", lab.ns(Role::Router)])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// dhcpcd processes in the router's namespace that run (zombies do not count) but do not
/// descend from the dhcpcd `current` (0: none): what a killed or stopped dhcpcd left behind.
fn stray_dhcpcd(lab: &Lab, current: u32) -> Vec<(u32, String)> {
    // (ppid, state, comm) of a process.
    let stat = |pid: u32| -> Option<(u32, String, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.to_owned();
        let ppid = fields.next()?.parse().ok()?;
        Some((ppid, state, head.split_once('(')?.1.to_owned()))
    };
    router_pids(lab)
        .into_iter()
        .filter_map(|pid| {
            let (_, state, comm) = stat(pid)?;
            if !comm.starts_with("dhcpcd") || state == "Z" {
                return None;
            }
            let mut up = pid;
            for _ in 0..8 {
                if up == current {
                    return None;
                }
                up = stat(up)?.0;
            }
            Some((pid, comm))
        })
        .collect()
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
    let daemon = lab.start_daemon_when(&config, || !wan_addresses(&lab, "-4").is_empty());
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
    // In Japanese too (the clinic's staff): where the address came from, the lease left.
    let out = lab.exec(
        Role::Router,
        &[
            netns_tests::oqs_edge_bin().to_str().expect("UTF-8 path"),
            "status",
            "--lang",
            "ja",
            "-c",
            config.to_str().expect("UTF-8 path"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WAN (プロバイダー側): wan0 198.51.100.5")
            && text.contains("(DHCP で取得) 残り")
            && text.contains("ゲートウェイ 198.51.100.1"),
        "{text}"
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
    // Its privilege-separation helpers went with it (orphaned, they ignore SIGTERM and hold
    // the WAN's sockets): every dhcpcd process left descends from the new one.
    let second = dhcpcd_pid(&state).expect("dhcpcd runs again");
    assert!(
        wait_for(3, || stray_dhcpcd(&lab, second).is_empty()),
        "left of the killed dhcpcd {first}: {:?}",
        stray_dhcpcd(&lab, second)
    );

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

    // The daemon stopped (as systemd stops it): no dhcpcd process of it is left running.
    lab.stop(daemon);
    assert!(
        wait_for(3, || stray_dhcpcd(&lab, 0).is_empty()),
        "dhcpcd left running after the daemon stopped: {:?}",
        stray_dhcpcd(&lab, 0)
    );
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
    let leaks = closed_leaks(&lab);

    let _isp = isp_moves_to_a_new_pool(&lab, isp);
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

/// Poll the eligibility PC → closed server with short probes until one connects; how long
/// it took. (A 100 ms probe: a SYN lost while the tunnel moves would otherwise cost TCP's
/// 1 s retransmit, and the figure would measure that.)
fn time_until_pc_reaches_closed(lab: &Lab, limit: std::time::Duration) -> Option<f64> {
    let start = Instant::now();
    let peer = netns_tests::lab_peer_bin();
    let probe = [
        peer.to_str().unwrap(),
        "probe",
        "10.200.0.10:80",
        "--timeout-ms",
        "100",
    ];
    while start.elapsed() < limit {
        if lab.exec(Role::Pc, &probe).status.success() {
            return Some(start.elapsed().as_secs_f64());
        }
    }
    None
}

/// The IPsec counterpart of `wireguard_follows_a_new_wan_address_from_the_isp`, with a gateway
/// that supports MOBIKE (strongSwan's default): see [`ipsec_follows`].
#[test]
fn ipsec_follows_a_new_wan_address_from_the_isp() {
    if skip_unless_root("ipsec_follows_a_new_wan_address_from_the_isp") {
        return;
    }
    ipsec_follows("wanipsec", true);
}

/// The same with a gateway without MOBIKE: the router cannot move its SAs and must set up new
/// ones from the new address.
#[test]
fn ipsec_follows_a_new_wan_address_without_mobike() {
    if skip_unless_root("ipsec_follows_a_new_wan_address_without_mobike") {
        return;
    }
    ipsec_follows("wanikev2", false);
}

/// The router's charon (libipsec), driven by the daemon, to a gateway that answers clients on
/// any address (as a provider's gateway for DHCP lines does). After the ISP hands out an
/// address from a new pool, the PC reaches the closed network through the tunnel again, the
/// gateway holds the router's SA at the new address, `status` says up, and no cleartext
/// leaves.
fn ipsec_follows(name: &str, mobike: bool) {
    use netns_tests::ipsec::{self, GatewayAuth};
    let lab = Lab::build(name);
    prepare(&lab);
    ipsec::carrier_without_closed_route(&lab);
    let gw = ipsec::start_charon(&lab, Role::Vpngw, "vpngw");
    ipsec::configure_gateway_for(
        &lab,
        &gw,
        GatewayAuth::Psk(ipsec::PSK),
        "203.0.113.2",
        "%any",
        mobike,
    );
    let router = ipsec::start_charon_with_default_retransmits(&lab, Role::Router, "router");
    lab.config_from_lab_yaml();
    let psk = ipsec::write_secret(&lab, "ipsec.psk", &format!("{}\n", ipsec::PSK));
    let yaml =
        ipsec::lab_yaml_with_ipsec(&lab, &router, &format!("      psk_file: {}", psk.display()));
    // The WAN's address is the ISP's to choose: the connection names none of its own.
    let yaml = yaml.replace("    local_address: 198.51.100.2\n", "");
    assert!(!yaml.contains("local_address"), "{yaml}");
    let config = lab.write_config(&with_wan_keys(&yaml, "  ipv4: dhcp\n"));
    let pool_a = [
        "--dhcp-authoritative",
        "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m",
        "--dhcp-option=option:router,198.51.100.1",
        "--dhcp-option=option:dns-server,198.51.100.53",
    ];
    let isp = start_isp(&lab, &pool_a);
    let _daemon = lab.start_daemon_when(&config, || !wan_addresses(&lab, "-4").is_empty());
    let diagnostics = |what: &str| {
        format!(
            "{what} (WAN {:?}):\n{}\n--- router's charon:\n{}\n--- gateway:\n{}",
            wan_addresses(&lab, "-4"),
            lab.daemon_log(),
            router.log(),
            gw.swanctl(&lab, &["--list-sas"])
        )
    };
    assert!(
        time_until_pc_reaches_closed(&lab, std::time::Duration::from_secs(30)).is_some(),
        "{}",
        diagnostics("no traffic through the tunnel on the first address")
    );
    let first = wan_addresses(&lab, "-4");
    let before = gateway_ike_sas(&gw.swanctl(&lab, &["--list-sas"]));
    let leaks = closed_leaks(&lab);

    let _isp = isp_moves_to_a_new_pool(&lab, isp);
    assert!(
        wait_for(60, || wan_addresses(&lab, "-4")
            .iter()
            .any(|a| a.starts_with("198.51.100.7"))),
        "{}",
        diagnostics(&format!("no new address from the new pool (had {first:?})"))
    );
    let now = wan_addresses(&lab, "-4");
    let again = time_until_pc_reaches_closed(&lab, std::time::Duration::from_secs(60));
    assert!(
        again.is_some(),
        "{}",
        diagnostics("the tunnel did not carry traffic again from the new address")
    );
    println!(
        "IPsec (gateway MOBIKE {mobike}): WAN address {first:?} -> {now:?}: traffic through the tunnel again {:.2} s after the new address",
        again.unwrap_or_default()
    );
    // The gateway holds the router's SA at the new address; the operator sees the tunnel up.
    let new_address = now
        .iter()
        .find(|a| a.starts_with("198.51.100.7"))
        .cloned()
        .unwrap_or_default();
    let sas = gw.swanctl(&lab, &["--list-sas"]);
    assert!(
        sas.contains(&format!("{new_address}[")) && sas.contains("INSTALLED"),
        "the gateway's SAs are not with {new_address}:\n{sas}"
    );
    // Without MOBIKE the router set up a new IKE_SA from the new address. With MOBIKE charon
    // usually moves the IKE_SA itself (the gateway keeps its number), but under load the
    // daemon may find it unsettled and set up a new one: either way traffic flows, so only
    // say which.
    let moved = gateway_ike_sas(&sas)
        .into_iter()
        .find(|(_, at)| *at == new_address)
        .map(|(number, _)| before.iter().any(|(n, _)| *n == number));
    if mobike {
        println!("MOBIKE gateway: the IKE_SA moved: {moved:?} (before {before:?})");
        assert!(moved.is_some(), "no IKE_SA at {new_address}:\n{sas}");
    } else {
        assert_eq!(
            moved,
            Some(false),
            "IKE_SAs at the gateway before {before:?}, now:\n{sas}"
        );
    }
    assert!(
        wait_for(10, || status(&lab, &config)["tunnel"]["state"] == "up"),
        "{}",
        diagnostics(&format!("status: {}", status(&lab, &config)["tunnel"]))
    );
    let packets = leaks.stop();
    assert!(
        packets.is_empty(),
        "cleartext to the closed network on the WAN: {packets:?}"
    );
}

/// The gateway's IKE_SAs in `swanctl --list-sas`: (unique number, the router's address).
fn gateway_ike_sas(listing: &str) -> Vec<(u32, String)> {
    let mut sas = Vec::new();
    let mut number = None;
    for line in listing.lines() {
        if let Some(rest) = line.strip_prefix("lab: #") {
            number = rest.split(',').next().and_then(|n| n.parse().ok());
        } else if let (Some(n), Some(at)) = (number, line.trim().strip_prefix("remote ")) {
            let address = at.rsplit(" @ ").next().unwrap_or_default();
            sas.push((n, address.split('[').next().unwrap_or_default().to_owned()));
            number = None;
        }
    }
    sas
}

/// The router's global addresses on one of its interfaces, of one family (`-4`/`-6`).
fn addresses_on(lab: &Lab, role: Role, dev: &str, family: &str) -> Vec<String> {
    let out = lab.exec(
        role,
        &[
            "ip", "-j", family, "address", "show", "dev", dev, "scope", "global",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect()
}

/// `oqs-edge status` as the operator reads it (text).
fn status_text(lab: &Lab, config: &Path) -> String {
    let bin = netns_tests::oqs_edge_bin();
    let out = lab.exec(
        Role::Router,
        &[
            bin.to_str().unwrap(),
            "status",
            "-c",
            config.to_str().unwrap(),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kea's DHCPv6 server in `inet` as the ISP on its eth0 (toward the router): IA_NA addresses
/// from 2001:db8:100::1000-1fff and a /56 by prefix delegation (IA_PD) out of
/// 2001:db8:8800::/48. Its config, lease file, server id, pid and lock files stay in the lab's
/// dir (the package's own service and /var/lib/kea play no part). Returns once it listens.
fn start_kea(lab: &Lab) -> (u32, PathBuf) {
    let dir = lab.dir().join("kea");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("kea-dhcp6.json");
    let config = serde_json::json!({
        "Dhcp6": {
            "interfaces-config": {"interfaces": ["eth0"]},
            "data-directory": dir,
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": dir.join("leases6.csv"),
                "lfc-interval": 0
            },
            "preferred-lifetime": 300,
            "valid-lifetime": 600,
            "renew-timer": 100,
            "rebind-timer": 200,
            "subnet6": [{
                "id": 1,
                "subnet": "2001:db8:100::/64",
                "interface": "eth0",
                "pools": [{"pool": "2001:db8:100::1000-2001:db8:100::1fff"}],
                "pd-pools": [{"prefix": "2001:db8:8800::", "prefix-len": 48, "delegated-len": 56}]
            }],
            "option-data": [{"name": "dns-servers", "data": "2001:db8:100::53"}],
            "loggers": [{
                "name": "kea-dhcp6",
                "output_options": [{"output": "stdout"}],
                "severity": "INFO"
            }]
        }
    });
    std::fs::write(&conf, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let lock = format!("KEA_LOCKFILE_DIR={}", dir.display());
    let pid_dir = format!("KEA_PIDFILE_DIR={}", dir.display());
    let (pid, log) = lab.spawn_log(
        Role::Inet,
        &[
            "env",
            &lock,
            &pid_dir,
            "kea-dhcp6",
            "-c",
            conf.to_str().unwrap(),
        ],
    );
    assert!(
        wait_for(10, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("DHCP6_STARTED")),
        "kea-dhcp6 did not start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (pid, log)
}

/// The router's WAN without IPv6 from the harness: no global address, no default route.
fn wan_without_ipv6(lab: &Lab) {
    lab.ok(
        Role::Router,
        &[
            "ip", "-6", "address", "flush", "dev", "wan0", "scope", "global",
        ],
    );
    let _ = lab.exec(Role::Router, &["ip", "-6", "route", "del", "default"]);
}

/// Prefix delegation from a real DHCPv6 server: Kea delegates a /56 to the router; dhcpcd
/// (run by the daemon with the config the plan renders, `ia_pd`) puts subnet 1 of it on the
/// segment that says `address6: delegated:1`, the router at ::1/64; a PC on that segment uses
/// the subnet (its own address in it, the router answering), and `status` shows the prefix and
/// where the segment's address is.
#[test]
fn a_segment_takes_its_subnet_of_the_prefix_kea_delegates() {
    if skip_unless_root("a_segment_takes_its_subnet_of_the_prefix_kea_delegates") {
        return;
    }
    let lab = Lab::build("wanpd");
    prepare(&lab);
    wan_without_ipv6(&lab);
    let (_kea, kea_log) = start_kea(&lab);
    // IPv4 by DHCP from dnsmasq beside Kea (dnsmasq serves no DHCPv6 here).
    let _isp = start_isp(&lab, ISP_DHCP4);
    let config = lab_config(&lab, "  ipv4: dhcp\n  ipv6: ra\n", "");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let fixed = "    address6: fd00:50::1/64";
    assert!(yaml.contains(fixed), "config/lab.yaml changed: {yaml}");
    let config = lab.write_config(&yaml.replacen(fixed, "    address6: delegated:1", 1));
    let delegated_on_lan = || {
        addresses_on(&lab, Role::Router, "lan0", "-6")
            .into_iter()
            .find(|a| a.starts_with("2001:db8:88"))
    };
    let started = Instant::now();
    let daemon = lab.start_daemon_when(&config, || delegated_on_lan().is_some());
    let on_lan = delegated_on_lan().unwrap_or_default();
    println!(
        "delegated subnet on lan0 after {:.1} s: {on_lan}",
        started.elapsed().as_secs_f64()
    );

    // status: the prefix the line delegated, and the segment's address in it.
    let status_has_prefix = || {
        status(&lab, &config)["wan"]["delegated"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    };
    assert!(
        wait_for(10, status_has_prefix),
        "status shows no delegated prefix: {:#}\nrecorded: {}\n{}\nkea:\n{}",
        status(&lab, &config)["wan"],
        std::fs::read_to_string(lab.dir().join("state/dhcpcd-dhcp6.env")).unwrap_or_default(),
        lab.daemon_log(),
        std::fs::read_to_string(&kea_log).unwrap_or_default()
    );
    let s = status(&lab, &config);
    let wan = &s["wan"];
    let prefix = wan["delegated"][0].as_str().unwrap_or_default().to_owned();
    let (network, length) = prefix
        .split_once('/')
        .and_then(|(n, l)| Some((n.parse::<std::net::Ipv6Addr>().ok()?, l)))
        .unwrap_or_else(|| panic!("not a prefix: {wan:#}"));
    assert_eq!(length, "56", "{wan:#}");
    // Out of Kea's pool, 2001:db8:8800::/48.
    assert_eq!(
        network.segments()[..3],
        [0x2001, 0xdb8, 0x8800],
        "{prefix} is not Kea's: {wan:#}"
    );
    // Subnet 1 of the /56, the router at ::1.
    let subnet_1 = u128::from(network) | (1u128 << 64);
    let router_lan = std::net::Ipv6Addr::from(subnet_1 | 1);
    let expected = format!("{router_lan}/64");
    assert_eq!(on_lan, expected, "lan0 has {on_lan}, delegated {prefix}");
    let segment = wan["delegated_segments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["segment"] == "oqs"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(segment["interface"], "lan0", "{wan:#}");
    assert_eq!(segment["address"], expected.as_str(), "{wan:#}");
    // The WAN's own address came by DHCPv6 (IA_NA) in the same exchange.
    assert!(
        wan["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["source"] == "dhcpv6"
                && a["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("2001:db8:100::1")))),
        "{wan:#}"
    );
    // Healthy once DHCPv4 bound too (dhcpcd ARP-probes the offered address first).
    assert!(
        wait_for(30, || status(&lab, &config)["wan"]["problems"]
            .as_array()
            .is_none_or(|p| p.is_empty())),
        "{:#}",
        status(&lab, &config)["wan"]
    );
    let text = status_text(&lab, &config);
    assert!(
        text.contains(&format!("delegated {prefix}")) && text.contains(&expected),
        "status:\n{text}"
    );
    println!(
        "status: {}",
        text.lines().find(|l| l.contains("delegated")).unwrap_or("")
    );

    // A PC on the segment uses the subnet: an address of its own in it, the router's ::1
    // answering, and the router reaching the PC back over the delegated subnet.
    let pc_address = std::net::Ipv6Addr::from(subnet_1 | 0x10);
    lab.ok(
        Role::Pc,
        &[
            "ip",
            "address",
            "add",
            &format!("{pc_address}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(
        wait_for(5, || lab.ping(Role::Pc, router_lan.into())),
        "the PC cannot ping the router's {router_lan} on the delegated subnet"
    );
    assert!(
        lab.ping(Role::Router, pc_address.into()),
        "the router cannot reach the PC's {pc_address} on the delegated subnet"
    );

    // The PC unplugged and plugged back: dhcpcd reports the segment's carrier too, and that is
    // not the WAN losing a lease; the PC uses the subnet again.
    assert!(
        wait_for(30, || wan_addresses(&lab, "-4")
            .iter()
            .any(|a| a.starts_with("198.51.100.5"))),
        "no IPv4 lease on the WAN:\n{}",
        lab.daemon_log()
    );
    lab.ok(Role::Pc, &["ip", "link", "set", "eth0", "down"]);
    assert!(
        wait_for(5, || lab
            .ok(Role::Router, &["ip", "link", "show", "lan0"])
            .contains("NO-CARRIER")),
        "lan0 kept its carrier"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s = status(&lab, &config);
    assert!(
        s["wan"]["problems"].as_array().is_none_or(|p| p.is_empty())
            && s["wan"]["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["source"] == "dhcp")),
        "the PC unplugged on lan0 shows as a WAN problem: {:#}",
        s["wan"]
    );
    assert!(
        !lab.daemon_log().contains("lease lost"),
        "{}",
        lab.daemon_log()
    );
    // dhcpcd took the segment's address away with the carrier and puts it back with it; the
    // PC's kernel dropped its IPv6 addresses with the link, so it takes its own again.
    lab.ok(Role::Pc, &["ip", "link", "set", "eth0", "up"]);
    lab.ok(
        Role::Pc,
        &[
            "ip",
            "address",
            "replace",
            &format!("{pc_address}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(
        wait_for(15, || lab.ping(Role::Pc, router_lan.into())),
        "the PC plugged back cannot ping the router's {router_lan}: lan0 has {:?}\n{}",
        addresses_on(&lab, Role::Router, "lan0", "-6"),
        lab.daemon_log()
    );

    // The daemon stopped: nothing of dhcpcd is left in the router, not even its privilege
    // separation helpers (network proxies, BPF ARP), which outlive a killed dhcpcd.
    lab.stop(daemon);
    let left = || {
        router_pids(&lab)
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
            .map(|c| c.replace('\0', " ").trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(5, || left().is_empty()),
        "left running in the router after the daemon stopped: {:?}",
        left()
    );
}

/// A stateful DHCPv6 address (IA_NA) on the WAN with `ipv6: ra`: dnsmasq's router
/// advertisements say "managed" (a DHCPv6 range with `--enable-ra`; dnsmasq 2.90 has no
/// `ra-stateful` keyword, stateful is the default mode), dhcpcd asks DHCPv6, and `status` says the
/// address came from `dhcpv6`, with the lease left.
#[test]
fn the_wan_takes_a_stateful_dhcpv6_address() {
    if skip_unless_root("the_wan_takes_a_stateful_dhcpv6_address") {
        return;
    }
    let lab = Lab::build("wandhcp6");
    netns_tests::wan::dhcpcd_wrapper(&lab);
    wan_without_ipv6(&lab);
    let _isp = start_isp(
        &lab,
        &[
            "--enable-ra",
            "--ra-param=eth0,4",
            "--dhcp-range=2001:db8:100::1000,2001:db8:100::1fff,64,2m",
            "--dhcp-option=option6:dns-server,[2001:db8:100::53]",
        ],
    );
    let config = lab_config(&lab, "  ipv6: ra\n", "");
    let in_pool = |a: &str| a.starts_with("2001:db8:100::1");
    let started = Instant::now();
    let _daemon = lab.start_daemon_when(&config, || {
        wan_addresses(&lab, "-6").iter().any(|a| in_pool(a))
    });
    println!(
        "WAN DHCPv6 address after {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        wan_addresses(&lab, "-6")
    );
    let leased = || {
        status(&lab, &config)["wan"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["source"] == "dhcpv6").cloned())
    };
    assert!(
        wait_for(10, || leased().is_some()),
        "status: {:#}\nrecorded: {}\n{}",
        status(&lab, &config)["wan"],
        std::fs::read_to_string(lab.dir().join("state/dhcpcd-dhcp6.env")).unwrap_or_default(),
        lab.daemon_log()
    );
    let leased = leased().unwrap_or_default();
    let address = leased["address"].as_str().unwrap_or_default();
    assert!(in_pool(address), "{leased:#}");
    assert!(
        wan_addresses(&lab, "-6")
            .iter()
            .any(|a| address.starts_with(a.as_str())),
        "status says {address}, wan0 has {:?}",
        wan_addresses(&lab, "-6")
    );
    assert!(
        leased["lease_left_secs"]
            .as_u64()
            .is_some_and(|s| s > 0 && s <= 120),
        "{leased:#}"
    );
    let s = status(&lab, &config);
    assert_eq!(s["wan"]["ipv6"], "ra", "{:#}", s["wan"]);
    assert!(
        s["wan"]["resolvers"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "2001:db8:100::53")),
        "{:#}",
        s["wan"]
    );
    // The line works over it: the router reaches "the internet" by IPv6.
    assert!(
        wait_for(10, || lab
            .ping(Role::Router, "2001:db8:ffff::80".parse().unwrap())),
        "no IPv6 to the internet over the DHCPv6 WAN:\n{}",
        default_route(&lab, "-6")
    );
    let text = status_text(&lab, &config);
    assert!(
        text.contains(&format!("{address} from dhcpv6")),
        "status:\n{text}"
    );
}

/// `ipv4: static` and `ipv6: static`: the address, gateway and resolvers from the YAML, put
/// on the WAN by the daemon (no dhcpcd); the eligibility PC reaches the closed network over
/// the line, the router reaches the internet by IPv6, and `status` shows them as static.
#[test]
fn a_static_wan_takes_its_addresses_gateways_and_resolvers_from_the_yaml() {
    if skip_unless_root("a_static_wan_takes_its_addresses_gateways_and_resolvers_from_the_yaml") {
        return;
    }
    let lab = Lab::build("wanstatic");
    prepare(&lab);
    wan_without_ipv6(&lab);
    assert!(wan_addresses(&lab, "-4").is_empty() && wan_addresses(&lab, "-6").is_empty());
    let config = lab_config(
        &lab,
        "  ipv4: static\n  address: 198.51.100.2/24\n  gateway: 198.51.100.1\n  ipv6: static\n  address6: 2001:db8:100::2/64\n  gateway6: 2001:db8:100::1\n  dns: [198.51.100.53, 2001:db8:100::53]\n",
        "",
    );
    let _daemon = lab.start_daemon(&config);
    assert_eq!(wan_addresses(&lab, "-4"), ["198.51.100.2"]);
    assert!(
        wait_for(5, || wan_addresses(&lab, "-6") == ["2001:db8:100::2"]),
        "{:?}",
        wan_addresses(&lab, "-6")
    );
    assert!(
        wait_for(5, || default_route(&lab, "-4")
            .contains("via 198.51.100.1 dev wan0")
            && default_route(&lab, "-6")
                .contains("via 2001:db8:100::1 dev wan0")),
        "{}{}",
        default_route(&lab, "-4"),
        default_route(&lab, "-6")
    );
    assert!(
        wait_for(15, || lab
            .probe(Role::Pc, "10.200.0.10:80".parse().unwrap())
            == netns_tests::Outcome::Connected),
        "the PC cannot reach the closed network over the static WAN:\n{}",
        lab.daemon_log()
    );
    assert!(
        wait_for(5, || lab
            .ping(Role::Router, "2001:db8:ffff::80".parse().unwrap())),
        "no IPv6 to the internet over the static WAN"
    );
    assert!(
        dhcpcd_pid(&lab.dir().join("state")).is_none(),
        "dhcpcd runs"
    );

    let s = status(&lab, &config);
    let wan = &s["wan"];
    assert_eq!(wan["ipv4"], "static", "{wan:#}");
    assert_eq!(wan["ipv6"], "static", "{wan:#}");
    assert!(wan["dhcp_client_running"].is_null(), "{wan:#}");
    let sources: Vec<(String, String)> = wan["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["address"].as_str().unwrap_or_default().to_owned(),
                a["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("198.51.100.2/24".to_owned(), "static".to_owned()),
            ("2001:db8:100::2/64".to_owned(), "static".to_owned())
        ],
        "{wan:#}"
    );
    assert_eq!(
        wan["gateways"],
        serde_json::json!(["198.51.100.1", "2001:db8:100::1"]),
        "{wan:#}"
    );
    assert_eq!(
        wan["resolvers"],
        serde_json::json!(["198.51.100.53", "2001:db8:100::53"]),
        "{wan:#}"
    );
    assert!(
        wait_for(6, || status(&lab, &config)["health"] == "healthy"),
        "{:#}",
        status(&lab, &config)
    );
    let text = status_text(&lab, &config);
    assert!(
        text.contains("198.51.100.2/24 from static")
            && text.contains("2001:db8:100::2/64 from static")
            && text.contains("gateway 198.51.100.1 2001:db8:100::1"),
        "status:\n{text}"
    );
}
