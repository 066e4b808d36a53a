//! The lab harness itself, without the daemon: the topology routes what it should, the probe
//! tells its four outcomes apart, captures see packets, the lab's files pass `oqs-edge check`,
//! and dropping the lab leaves nothing behind.

use std::net::SocketAddr;
use std::process::Command;

use netns_tests::{oqs_edge_bin, process_ended, skip_unless_root, Lab, Outcome, Role};

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

#[test]
fn the_lab_routes_probes_captures_and_cleans_up() {
    if skip_unless_root("the_lab_routes_probes_captures_and_cleans_up") {
        return;
    }
    let lab = Lab::build("harness");
    let names: Vec<String> = Role::ALL.iter().map(|r| lab.ns(*r).to_owned()).collect();

    // No daemon: the router does not forward (not even if the host does).
    assert_eq!(lab.probe(Role::Pc, sa("10.200.0.10:80")), Outcome::Timeout);
    assert!(lab.ping(Role::Pc, "192.168.50.1".parse().unwrap()));
    assert!(lab.ping(Role::Pc, "fd00:50::1".parse().unwrap()));

    // The harness's stand-in for the daemon's routing: the carrier takes the closed network
    // on to vpngw; nothing NATs, so the carrier needs routes back to the LAN.
    lab.router_routing_without_daemon();
    lab.carrier_routes_lan(true);
    let capture = lab.capture(Role::Inet, "eth1", "tcp port 80");
    assert_eq!(
        lab.probe(Role::Pc, sa("10.200.0.10:80")),
        Outcome::Connected
    );
    let packets = capture.stop();
    assert!(
        packets
            .iter()
            .any(|p| p.contains("192.168.50.10.") && p.contains("> 10.200.0.10.80: Flags [S]")),
        "the SYN was not seen between inet and vpngw: {packets:#?}"
    );
    assert_eq!(
        lab.probe(Role::Clinic, sa("192.0.2.80:80")),
        Outcome::Connected
    );
    assert_eq!(
        lab.probe(Role::Inet, sa("192.168.50.10:80")),
        Outcome::Connected
    );

    // The other outcomes: an RST, an ICMP error, silence.
    assert_eq!(lab.probe(Role::Pc, sa("10.200.0.10:81")), Outcome::Refused);
    assert_eq!(
        lab.probe(Role::Pc, sa("10.201.0.1:80")),
        Outcome::Unreachable
    );
    lab.ok(
        Role::Vpngw,
        &["nft", "add table inet t; add chain inet t f { type filter hook forward priority 0; }; add rule inet t f tcp dport 80 drop"],
    );
    assert_eq!(lab.probe(Role::Pc, sa("10.200.0.10:80")), Outcome::Timeout);
    // Without its routes to the LAN the carrier has no way there at all.
    lab.carrier_routes_lan(false);
    assert_eq!(
        lab.probe(Role::Inet, sa("192.168.50.10:80")),
        Outcome::Unreachable
    );

    // IPv6 once the router forwards it.
    lab.router_ipv6_forwarding(true);
    assert_eq!(
        lab.probe(Role::Pc, sa("[fd00:60::10]:80")),
        Outcome::Connected
    );
    assert_eq!(
        lab.probe(Role::Clinic, sa("[2001:db8:ffff::80]:80")),
        Outcome::Timeout,
        "inet has no route back to fd00::/8 until carrier_routes_lan"
    );
    lab.carrier_routes_lan(true);
    assert_eq!(
        lab.probe(Role::Clinic, sa("[2001:db8:ffff::80]:80")),
        Outcome::Connected
    );

    // The lab's config and files pass the daemon's own check (files included).
    let config = lab.write_config(&lab.config_from_lab_yaml());
    let check = Command::new(oqs_edge_bin())
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "oqs-edge check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let p12_pass = lab.dir().join("secrets/oqs.p12.pass");
    let subject = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            lab.dir().join("certs/oqs.p12").to_str().unwrap(),
        ])
        .args(["-passin", &format!("file:{}", p12_pass.display())])
        .args(["-nokeys", "-clcerts"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&subject.stdout).contains("CN = 1312345678"),
        "{subject:?}"
    );

    // Drop: every process stopped, every namespace gone.
    let peer = lab.spawn(Role::Closed, &["sleep", "600"]);
    drop(lab);
    assert!(process_ended(peer), "a spawned process outlived the lab");
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in names {
        assert!(!listed.contains(&name), "{name} outlived the lab");
    }
}
