//! Leak tests on the IP-VPN lab: tcpdump in `inet` (the carrier and the internet) records every
//! packet the router sends it that is not for the closed network. While the eligibility PC keeps
//! trying the internet, that count stays 0: with the daemon running, after its route to the
//! closed network is removed, after a reload with a broken config, and after SIGKILL. On an
//! IP-VPN line closed-network traffic is cleartext by design, so it is the positive control:
//! the capture sees it, and the PC keeps reaching the closed network throughout.
//!
//! Also: `run` again over the table a previous run left replaces it with no window: an
//! established eligibility → closed connection loses nothing and nothing leaks meanwhile.

use std::net::{IpAddr, SocketAddr};

use netns_tests::lab::{leak_filter, Capture, Lab, Outcome, Role};
use netns_tests::{process_ended, signal, skip_unless_root, wait_for};

const CLOSED_SERVER: &str = "10.200.0.10:80";
/// Internet hosts the lab has, v4 and v6, and the carrier's own address.
const INTERNET: &[&str] = &["192.0.2.80:80", "198.51.100.1:80", "[2001:db8:ffff::80]:80"];

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Cleartext to the closed network, as the carrier sees it.
fn closed_filter(mac: &str) -> String {
    format!("ether src {mac} and ip and dst net 10.200.0.0/24")
}

/// The eligibility PC tries every internet host (TCP and ping); each attempt must be rejected.
fn pc_tries_the_internet(lab: &Lab, phase: &str) {
    let before = lab.counters()["eligibility_to_internet"];
    for target in INTERNET {
        assert_eq!(
            lab.probe(Role::Pc, addr(target)),
            Outcome::Unreachable,
            "{phase}: pc → {target} must be rejected"
        );
    }
    assert!(
        !lab.ping(Role::Pc, "192.0.2.80".parse::<IpAddr>().unwrap()),
        "{phase}: pc pinged the internet"
    );
    let after = lab.counters()["eligibility_to_internet"];
    assert!(
        after >= before + INTERNET.len() as u64,
        "{phase}: the reject counter did not count the attempts ({before} → {after})"
    );
}

fn pc_reaches_the_closed_network(lab: &Lab, phase: &str) {
    assert_eq!(
        lab.probe(Role::Pc, addr(CLOSED_SERVER)),
        Outcome::Connected,
        "{phase}: pc → closed network"
    );
}

fn assert_no_leak(capture: Capture<'_>, phase: &str) {
    let packets = capture.stop();
    assert!(
        packets.is_empty(),
        "{phase}: {} packet(s) left for the internet:\n{}",
        packets.len(),
        packets.join("\n")
    );
}

#[test]
fn nothing_leaks_while_running_without_its_route_on_a_broken_reload_or_after_sigkill() {
    if skip_unless_root(
        "nothing_leaks_while_running_without_its_route_on_a_broken_reload_or_after_sigkill",
    ) {
        return;
    }
    let lab = Lab::build("leak");
    let yaml = lab.config_from_lab_yaml();
    let config = lab.write_config(&yaml);
    let pid = lab.start_daemon(&config);
    let mac = lab.router_wan_mac();

    // The positive control: the capture does see what the router sends the carrier.
    let closed = lab.capture(Role::Inet, "eth0", &closed_filter(&mac));
    pc_reaches_the_closed_network(&lab, "running");
    assert!(
        !closed.stop().is_empty(),
        "the capture saw no closed-network packets: it would miss a leak too"
    );

    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));
    pc_tries_the_internet(&lab, "running");
    assert_no_leak(leaks, "running");

    // Someone removes the closed-network route: nothing leaks, and the watch puts it back.
    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));
    lab.ok(Role::Router, &["ip", "route", "del", "10.200.0.0/24"]);
    pc_tries_the_internet(&lab, "route removed");
    pc_reaches_the_closed_network(&lab, "route removed");
    assert_no_leak(leaks, "route removed");
    assert!(
        wait_for(15, || lab
            .ok(Role::Router, &["ip", "route", "show", "proto", "79"])
            .contains("10.200.0.0/24 via 198.51.100.1 dev wan0")),
        "the daemon did not put its route back:\n{}",
        lab.daemon_log()
    );

    // A broken edit, reloaded: refused, nothing changes, nothing leaks.
    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));
    std::fs::write(
        &config,
        yaml.replace("internet: deny", "internet: sometimes"),
    )
    .unwrap();
    signal(pid, "HUP");
    assert!(wait_for(10, || lab.daemon_log().contains("reload refused")));
    pc_tries_the_internet(&lab, "broken reload");
    pc_reaches_the_closed_network(&lab, "broken reload");
    assert_no_leak(leaks, "broken reload");

    // SIGKILL: no chance to clean up, and none needed: the table stays in the kernel.
    signal(pid, "KILL");
    assert!(wait_for(5, || process_ended(pid)));
    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));
    pc_tries_the_internet(&lab, "after SIGKILL");
    pc_reaches_the_closed_network(&lab, "after SIGKILL");
    // And with the route gone too, nobody left to put it back.
    lab.ok(Role::Router, &["ip", "route", "del", "10.200.0.0/24"]);
    pc_tries_the_internet(&lab, "after SIGKILL, route removed");
    assert_no_leak(leaks, "after SIGKILL");
}

#[test]
fn run_again_over_the_old_table_loses_no_packet_of_an_open_connection() {
    if skip_unless_root("run_again_over_the_old_table_loses_no_packet_of_an_open_connection") {
        return;
    }
    let lab = Lab::build("restart");
    let config = lab.write_config(&lab.config_from_lab_yaml());
    let first = lab.start_daemon(&config);
    let mac = lab.router_wan_mac();

    lab.spawn(Role::Closed, &["iperf3", "-s", "-B", "10.200.0.10"]);
    assert!(
        wait_for(10, || !lab
            .ok(Role::Closed, &["ss", "-Hltn", "sport = :5201"])
            .trim()
            .is_empty()),
        "iperf3 -s did not start"
    );
    let leaks = lab.capture(Role::Inet, "eth0", &leak_filter(&mac));

    // One established TCP stream (paced, so loss would show as retransmits, not congestion)
    // and a ping every 10 ms, both running across the restart.
    let iperf_out = lab.dir().join("iperf3.json");
    let iperf = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            lab.exec(
                Role::Pc,
                &[
                    "iperf3",
                    "-c",
                    "10.200.0.10",
                    "-t",
                    "4",
                    "-b",
                    "20M",
                    "-J",
                    "--logfile",
                    iperf_out.to_str().unwrap(),
                ],
            )
        });
        let pings = s.spawn(|| {
            lab.exec(
                Role::Pc,
                &[
                    "ping",
                    "-q",
                    "-i",
                    "0.01",
                    "-c",
                    "300",
                    "-W",
                    "1",
                    "10.200.0.10",
                ],
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(1000));
        signal(first, "TERM");
        assert!(wait_for(10, || process_ended(first)));
        let second = lab.start_daemon(&config);
        assert!(
            wait_for(10, || lab.daemon_log().contains("firewall applied in")),
            "the second run did not apply:\n{}",
            lab.daemon_log()
        );
        assert!(!process_ended(second));
        let pings = pings.join().unwrap();
        let text = String::from_utf8_lossy(&pings.stdout).into_owned();
        assert!(
            text.contains("300 packets transmitted, 300 received"),
            "pings lost across the restart:\n{text}"
        );
        stream.join().unwrap()
    });
    assert!(iperf.status.success(), "{iperf:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&iperf_out).unwrap()).unwrap();
    let sent = &report["end"]["sum_sent"];
    assert!(sent["bytes"].as_u64().unwrap() > 1_000_000, "{sent}");
    assert_eq!(
        sent["retransmits"].as_u64(),
        Some(0),
        "TCP segments were lost across the restart: {sent}"
    );
    assert_no_leak(leaks, "restart");
}
