//! Every cell of the firewall policy with real traffic: the real `oqs-edge run` in the lab's
//! router on config/lab.yaml, TCP probes from each side, and the named nft counter of the rule
//! that should have decided each cell.
//!
//! | from \ to   | closed network          | internet    | eligibility | clinic     | router                 |
//! |-------------|-------------------------|-------------|-------------|------------|------------------------|
//! | eligibility | only through the tunnel | reject      | —           | reject new | proxy ports, DNS, ICMP |
//! | clinic      | reject (use the proxy)  | `internet:` | allow       | —          | proxy ports, DNS, ICMP |
//! | WAN         | drop                    | —           | drop        | drop       | tunnel ports, replies  |
//!
//! Outcomes: `reject` shows as Unreachable (ICMP admin-prohibited), `drop` as Timeout, an
//! allowed port where nothing listens as Refused (the kernel's RST), the proxy's ports as
//! Accepted (the daemon's proxy took the connection). One lab per test, so the
//! tests run in parallel.

use std::net::SocketAddr;

use netns_tests::{skip_unless_root, Lab, Outcome, Role};

/// One cell: a connection attempt, what it must meet, and the counter of the deciding rule.
struct Cell {
    from: Role,
    to: &'static str,
    expect: Outcome,
    counter: Option<&'static str>,
}

const fn cell(
    from: Role,
    to: &'static str,
    expect: Outcome,
    counter: Option<&'static str>,
) -> Cell {
    Cell {
        from,
        to,
        expect,
        counter,
    }
}

use Outcome::{Accepted, Connected, Timeout, Unreachable};
use Role::{Clinic, Inet, Pc};

/// A lab with the daemon running on config/lab.yaml, after `edit`.
fn lab_with_daemon(name: &str, edit: impl FnOnce(String) -> String) -> Lab {
    let lab = Lab::build(name);
    let config = lab.write_config(&edit(lab.config_from_lab_yaml()));
    lab.start_daemon(&config);
    // config/lab.yaml has IPv6 segments: the daemon must forward both families.
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        let value = lab.ok(Role::Router, &["sysctl", "-n", key]);
        assert_eq!(
            value.trim(),
            "1",
            "oqs-edge did not set {key}:\n{}",
            lab.daemon_log()
        );
    }
    lab
}

/// Probe every cell and check its counter grew; report all mismatches at once.
fn check(lab: &Lab, cells: &[Cell]) {
    let mut wrong = Vec::new();
    for c in cells {
        let to: SocketAddr = c.to.parse().expect("cell address");
        let before = lab.counters();
        let got = lab.probe(c.from, to);
        let after = lab.counters();
        if got != c.expect {
            wrong.push(format!(
                "{:?} → {to}: expected {:?}, got {got:?}",
                c.from, c.expect
            ));
        }
        if let Some(name) = c.counter {
            let (b, a) = (before.get(name), after.get(name));
            if a.is_none() || a <= b {
                wrong.push(format!(
                    "{:?} → {to}: counter {name} did not grow ({b:?} → {a:?})",
                    c.from
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "policy cells that do not hold:\n  {}\n\ncounters: {:?}\n\ndaemon log:\n{}",
        wrong.join("\n  "),
        lab.counters(),
        lab.daemon_log()
    );
}

/// TCP SYNs in a capture's lines, as "SRC > DST".
fn syns(packets: &[String]) -> Vec<String> {
    packets
        .iter()
        .filter(|p| p.contains("Flags [S]"))
        .filter_map(|p| {
            let ip = p.split(" IP").nth(1)?;
            // "IP 1.2.3.4.5 > …: Flags" or "IP6 fd00::1.5 > …: Flags"
            let (src_dst, _) = ip.split_once(": ")?;
            Some(src_dst.trim_start_matches('6').trim().to_owned())
        })
        .collect()
}

#[test]
fn eligibility_pc_reaches_the_closed_network_and_nothing_else() {
    if skip_unless_root("eligibility_pc_reaches_the_closed_network_and_nothing_else") {
        return;
    }
    let lab = lab_with_daemon("pol-elig", |yaml| yaml);

    // IP-VPN: out of wan0 in cleartext, masqueraded to the WAN address.
    let wan = lab.capture(Inet, "eth0", "tcp port 80");
    check(
        &lab,
        &[cell(
            Pc,
            "10.200.0.10:80",
            Connected,
            Some("eligibility_to_closed"),
        )],
    );
    let seen = syns(&wan.stop());
    assert!(
        seen.iter()
            .any(|s| s.starts_with("198.51.100.2.") && s.ends_with("> 10.200.0.10.80")),
        "no masqueraded SYN to the closed network on the WAN: {seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.contains("192.168.50.10")),
        "the eligibility PC's own address leaked onto the WAN: {seen:?}"
    );

    check(
        &lab,
        &[
            // The internet, either family: rejected.
            cell(
                Pc,
                "192.0.2.80:80",
                Unreachable,
                Some("eligibility_to_internet"),
            ),
            cell(
                Pc,
                "198.51.100.1:80",
                Unreachable,
                Some("eligibility_to_internet"),
            ),
            cell(
                Pc,
                "[2001:db8:ffff::80]:80",
                Unreachable,
                Some("eligibility_to_internet"),
            ),
            // The clinic segment: new connections rejected.
            cell(
                Pc,
                "192.168.60.10:80",
                Unreachable,
                Some("eligibility_to_lan"),
            ),
            cell(
                Pc,
                "[fd00:60::10]:80",
                Unreachable,
                Some("eligibility_to_lan"),
            ),
            // The router: the proxy route that allows this segment and DNS (the daemon's relay,
            // over TCP here) get through; any other port is dropped, and so is the proxy
            // route that allows only the clinic segment.
            cell(Pc, "192.168.60.1:8443", Accepted, None),
            cell(Pc, "192.168.50.1:53", Accepted, None),
            cell(Pc, "192.168.50.1:22", Timeout, Some("lan_to_router")),
            cell(Pc, "192.168.60.1:8444", Timeout, Some("lan_to_router")),
        ],
    );
    assert!(
        lab.ping(Pc, "192.168.50.1".parse().unwrap()),
        "ICMP to the router"
    );
    assert!(
        lab.ping(Pc, "fd00:50::1".parse().unwrap()),
        "ICMPv6 to the router"
    );
}

#[test]
fn clinic_pc_reaches_the_eligibility_pc_and_the_proxy_not_the_closed_network_or_internet() {
    if skip_unless_root("clinic_pc_reaches_the_eligibility_pc_and_the_proxy") {
        return;
    }
    let lab = lab_with_daemon("pol-clinic", |yaml| yaml);
    check(
        &lab,
        &[
            // The eligibility segment: allowed, both families, and its replies come back.
            cell(Clinic, "192.168.50.10:80", Connected, None),
            cell(Clinic, "[fd00:50::10]:80", Connected, None),
            // The closed network only through the proxy.
            cell(
                Clinic,
                "10.200.0.10:80",
                Unreachable,
                Some("clinic_to_closed"),
            ),
            // internet: deny.
            cell(
                Clinic,
                "192.0.2.80:80",
                Unreachable,
                Some("clinic_to_internet"),
            ),
            cell(
                Clinic,
                "198.51.100.1:80",
                Unreachable,
                Some("clinic_to_internet"),
            ),
            cell(
                Clinic,
                "[2001:db8:ffff::80]:80",
                Unreachable,
                Some("clinic_to_internet"),
            ),
            // The router: both proxy routes allow the clinic segment; DNS; nothing else.
            cell(Clinic, "192.168.60.1:8443", Accepted, None),
            cell(Clinic, "192.168.60.1:8444", Accepted, None),
            cell(Clinic, "192.168.60.1:53", Accepted, None),
            cell(Clinic, "192.168.60.1:22", Timeout, Some("lan_to_router")),
        ],
    );
    assert!(lab.ping(Clinic, "192.168.60.1".parse().unwrap()));
    assert!(lab.ping(Clinic, "fd00:60::1".parse().unwrap()));
}

#[test]
fn the_wan_reaches_neither_the_lan_nor_the_router() {
    if skip_unless_root("the_wan_reaches_neither_the_lan_nor_the_router") {
        return;
    }
    let lab = lab_with_daemon("pol-wan", |yaml| yaml);
    // A carrier that routes the LAN prefixes to the router: without these routes a WAN probe
    // would fail at the carrier, and the router's rules would not be tested.
    lab.carrier_routes_lan(true);
    check(
        &lab,
        &[
            cell(Inet, "192.168.50.10:80", Timeout, Some("wan_to_lan")),
            cell(Inet, "192.168.60.10:80", Timeout, Some("wan_to_lan")),
            cell(Inet, "[fd00:50::10]:80", Timeout, Some("wan_to_lan")),
            cell(Inet, "[fd00:60::10]:80", Timeout, Some("wan_to_lan")),
            cell(Inet, "198.51.100.2:22", Timeout, Some("wan_to_router")),
            // A proxy address is still the router's: not from the WAN.
            cell(Inet, "192.168.60.1:8443", Timeout, Some("wan_to_router")),
        ],
    );
    assert!(
        !lab.ping(Inet, "198.51.100.2".parse().unwrap()),
        "the router answered a ping from the WAN"
    );
    // Replies to the router's own connections are what the WAN may send.
    assert_eq!(
        lab.probe(Role::Router, "198.51.100.1:80".parse().unwrap()),
        Connected
    );
}

#[test]
fn internet_allow_opens_the_internet_to_the_clinic_segment_only() {
    if skip_unless_root("internet_allow_opens_the_internet_to_the_clinic_segment_only") {
        return;
    }
    let lab = lab_with_daemon("pol-allow", |yaml| {
        let allowed = yaml.replace("    internet: deny", "    internet: allow");
        assert_ne!(
            allowed, yaml,
            "config/lab.yaml no longer says `internet: deny`"
        );
        allowed
    });

    // IPv4: accepted and masqueraded, so the internet answers the WAN address.
    let wan = lab.capture(Inet, "eth0", "tcp port 80");
    check(
        &lab,
        &[
            cell(Clinic, "192.0.2.80:80", Connected, None),
            cell(Clinic, "198.51.100.1:80", Connected, None),
        ],
    );
    let seen = syns(&wan.stop());
    assert!(
        seen.iter()
            .any(|s| s.starts_with("198.51.100.2.") && s.ends_with("> 192.0.2.80.80")),
        "no masqueraded SYN to the internet: {seen:?}"
    );

    // IPv6: accepted, but there is no NAT for IPv6 and the lab's internet has no route back
    // to fd00::/8, so the SYN arrives from the clinic PC's own address and the answer never
    // comes back. With the carrier routing the LAN, it connects.
    let wan = lab.capture(Inet, "eth0", "ip6 and tcp port 80");
    check(
        &lab,
        &[cell(Clinic, "[2001:db8:ffff::80]:80", Timeout, None)],
    );
    let seen = syns(&wan.stop());
    assert!(
        seen.iter()
            .any(|s| s.starts_with("fd00:60::10.") && s.ends_with("> 2001:db8:ffff::80.80")),
        "the IPv6 SYN did not leave the router: {seen:?}"
    );
    lab.carrier_routes_lan(true);
    check(
        &lab,
        &[cell(Clinic, "[2001:db8:ffff::80]:80", Connected, None)],
    );

    // Nothing else changes: the closed network still only through the proxy, the
    // eligibility PC still off the internet.
    check(
        &lab,
        &[
            cell(
                Clinic,
                "10.200.0.10:80",
                Unreachable,
                Some("clinic_to_closed"),
            ),
            cell(
                Pc,
                "192.0.2.80:80",
                Unreachable,
                Some("eligibility_to_internet"),
            ),
            cell(
                Pc,
                "[2001:db8:ffff::80]:80",
                Unreachable,
                Some("eligibility_to_internet"),
            ),
        ],
    );
    assert_eq!(
        lab.counters().get("clinic_to_internet"),
        Some(&0),
        "with internet: allow nothing of the clinic's is rejected as internet"
    );
}

/// Anti-spoofing (issue 22): the eligibility PC sends with a clinic-segment source (IPv4 and
/// IPv6) and with a closed-network source, to the router, to the clinic PC and to the closed
/// network. Every such
/// packet is dropped before the policy (no policy counter moves) and counted in
/// `spoofed_source`, which `status` shows; its own address is not affected.
#[test]
fn eligibility_pc_with_a_clinic_or_closed_source_is_dropped_and_counted() {
    if skip_unless_root("eligibility_pc_with_a_clinic_or_closed_source_is_dropped_and_counted") {
        return;
    }
    let lab = Lab::build("pol-spoof");
    let config = lab.write_config(&lab.config_from_lab_yaml());
    lab.start_daemon(&config);
    let spoofed =
        |c: &std::collections::BTreeMap<String, u64>| c.get("spoofed_source").copied().unwrap_or(0);

    let before = lab.counters();
    assert!(before.contains_key("spoofed_source"), "{before:?}");
    assert!(
        lab.ping(Pc, "192.168.50.1".parse().unwrap()),
        "ICMP to the router"
    );
    assert_eq!(
        spoofed(&lab.counters()),
        spoofed(&before),
        "the PC's own address was counted as spoofed"
    );

    let policy = [
        "eligibility_to_closed",
        "eligibility_to_internet",
        "eligibility_to_lan",
        "lan_to_router",
    ];
    // The router's IPv6 neighbour entry, fixed: a neighbour solicitation from the spoofed
    // source would itself be dropped (and counted), and the echo requests never sent.
    let mac = lab.ok(Role::Router, &["cat", "/sys/class/net/lan0/address"]);
    lab.ok(
        Pc,
        &[
            "ip",
            "-6",
            "neigh",
            "replace",
            "fd00:50::1",
            "lladdr",
            mac.trim(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let mut wrong = Vec::new();
    let cases: [(&str, &[&str]); 3] = [
        (
            "192.168.60.77",
            &["192.168.50.1", "192.168.60.10", "10.200.0.10"],
        ),
        (
            "10.200.0.99",
            &["192.168.50.1", "192.168.60.10", "10.200.0.10"],
        ),
        // IPv6: a clinic-segment source, to the router and to the clinic PC.
        ("fd00:60::77", &["fd00:50::1", "fd00:60::10"]),
    ];
    for (source, targets) in cases {
        let prefix = if source.contains(':') { 128 } else { 32 };
        let address = format!("{source}/{prefix}");
        lab.ok(Pc, &["ip", "addr", "add", &address, "dev", "eth0", "nodad"]);
        for &to in targets {
            let before = lab.counters();
            let out = lab.exec(
                Pc,
                &[
                    "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", source, to,
                ],
            );
            let after = lab.counters();
            if out.status.success() {
                wrong.push(format!("{source} → {to}: answered"));
            }
            if spoofed(&after) < spoofed(&before) + 3 {
                wrong.push(format!(
                    "{source} → {to}: spoofed_source {} → {}",
                    spoofed(&before),
                    spoofed(&after)
                ));
            }
            for name in policy {
                if after.get(name) != before.get(name) {
                    wrong.push(format!(
                        "{source} → {to}: reached the policy ({name} moved)"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "spoofed packets not dropped before the policy:\n  {}\n\ncounters: {:?}\n\ndaemon log:\n{}",
        wrong.join("\n  "),
        lab.counters(),
        lab.daemon_log()
    );

    let status = lab.status_json(&config);
    let shown = status["firewall"]["counters"]["spoofed_source"]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        shown >= 24,
        "status shows spoofed_source = {shown}: {status}"
    );
}
