//! Two WireGuard concentrators (issue 21): wireguard-go on 203.0.113.2:51820 (preferred) and
//! :51821 (backup) in `vpngw`, the same closed server behind both. Stop the preferred one under
//! a paced ping (10/s): traffic resumes through the backup, the gap is measured; restart it:
//! after `failback_after` the router is back on it; both down: degraded with both named; one
//! back: traffic resumes. A capture in `inet` counts cleartext closed-network packets: 0.
//!
//! `vpngw` sends the replies back through the concentrator the request came in by (a
//! connection mark per wireguard-go interface and one routing table per mark), as two real
//! concentrators behind one closed network route to the one that holds the session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use netns_tests::lab::{Capture, Lab, Outcome, Role};
use netns_tests::wireguard::{router_keygen, wireguard_config, Concentrator};
use netns_tests::{ipsec, oqs_edge_bin, process_ended, skip_unless_root, wait_for};

const CLOSED_SERVER: &str = "10.200.0.10:80";
/// health: interval 2s × failures 2: the target is 2 × 2 + 5 = 9 s.
const INTERVAL_SECS: u64 = 2;
const FAILURES: u64 = 2;
const FAILBACK_AFTER_SECS: u64 = 20;

fn oqs_edge(lab: &Lab, args: &[&str]) -> Output {
    let bin = oqs_edge_bin();
    let mut all = vec![bin.to_str().unwrap()];
    all.extend_from_slice(args);
    lab.exec(Role::Router, &all)
}

fn status(lab: &Lab, config: &Path) -> serde_json::Value {
    let out = oqs_edge(lab, &["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn active_index(lab: &Lab, config: &Path) -> Option<u64> {
    status(lab, config)["tunnel"]["gateway"]["active_index"].as_u64()
}

fn router_wan_mac(lab: &Lab) -> String {
    let json = lab.ok(Role::Router, &["ip", "-j", "link", "show", "wan0"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}

/// Replies leave `vpngw` through the concentrator the flow last came in by.
fn route_replies_by_concentrator(lab: &Lab, concentrators: &[&Concentrator]) {
    lab.ok(
        Role::Vpngw,
        &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
    );
    lab.ok(
        Role::Vpngw,
        &["sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"],
    );
    let mut rules = String::from(
        "table inet oqsfo {\n chain pre {\n  type filter hook prerouting priority mangle;\n",
    );
    for (i, c) in concentrators.iter().enumerate() {
        rules.push_str(&format!(
            "  iifname \"{}\" ct mark set {}\n",
            c.interface,
            i + 1
        ));
    }
    rules.push_str("  ct mark != 0 meta mark set ct mark\n }\n}\n");
    let file = lab.dir().join("vpngw-failover.nft");
    std::fs::write(&file, rules).unwrap();
    lab.ok(Role::Vpngw, &["nft", "-f", file.to_str().unwrap()]);
    for i in 0..concentrators.len() {
        let mark = (i + 1).to_string();
        let table = (101 + i).to_string();
        lab.ok(
            Role::Vpngw,
            &["ip", "rule", "add", "fwmark", &mark, "table", &table],
        );
    }
    for (i, c) in concentrators.iter().enumerate() {
        concentrator_route(lab, c, i);
    }
}

/// The route of concentrator `i`'s table (again after a restart recreated its interface).
fn concentrator_route(lab: &Lab, c: &Concentrator, i: usize) {
    let table = (101 + i).to_string();
    lab.ok(
        Role::Vpngw,
        &[
            "ip",
            "route",
            "replace",
            "10.201.0.0/24",
            "dev",
            &c.interface,
            "table",
            &table,
        ],
    );
    lab.ok(
        Role::Vpngw,
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{}.rp_filter=0", c.interface),
        ],
    );
}

fn two_gateway_config(lab: &Lab, key: &Path, a: &Concentrator, b: &Concentrator) -> PathBuf {
    let yaml = wireguard_config(lab, key, &a.public_key, "203.0.113.2:51820", "25s");
    let anchor = "      persistent_keepalive: 25s\n";
    assert!(yaml.contains(anchor));
    let backup = format!(
        "{anchor}    backup_peers:\n      - public_key: \"{}\"\n        endpoint: 203.0.113.2:51821\n        persistent_keepalive: 25s\n  health:\n    target: {CLOSED_SERVER}\n    interval: {INTERVAL_SECS}s\n    failures: {FAILURES}\n    failback_after: {FAILBACK_AFTER_SECS}s\n",
        b.public_key
    );
    lab.write_config(&yaml.replacen(anchor, &backup, 1))
}

/// `ping -D -i 0.1` from the PC to the closed server, until the returned guard stops it.
struct Pinger {
    pid: u32,
    log: PathBuf,
}

impl Pinger {
    fn start(lab: &Lab) -> Pinger {
        let (pid, log) = lab.spawn_log(Role::Pc, &["ping", "-D", "-n", "-i", "0.1", "10.200.0.10"]);
        Pinger { pid, log }
    }

    /// Stop it and return the longest time between two replies, in seconds, and the count.
    /// The time since the last reply counts as a gap too: a ping that got no reply after a
    /// switch has a gap up to its stop, not none.
    fn stop(self, lab: &Lab) -> (f64, usize) {
        let stopped = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        lab.stop(self.pid);
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let times: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.strip_prefix('['))
            .filter_map(|l| l.split(']').next())
            .filter_map(|t| t.parse().ok())
            .collect();
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain(times.last().map(|last| stopped - last))
            .fold(0.0_f64, f64::max);
        (gap, times.len())
    }
}

/// iperf3 from the PC to the closed server at 2 Mbit/s for 20 s, across a switch.
struct TcpStream {
    pid: u32,
    log: PathBuf,
}

impl TcpStream {
    fn start(lab: &Lab) -> TcpStream {
        lab.spawn(
            Role::Closed,
            &["iperf3", "-s", "-B", "10.200.0.10", "-p", "5201"],
        );
        assert!(wait_for(10, || lab
            .probe(Role::Pc, addr("10.200.0.10:5201"))
            != Outcome::Timeout));
        let (pid, log) = lab.spawn_log(
            Role::Pc,
            &[
                "iperf3",
                "-c",
                "10.200.0.10",
                "-p",
                "5201",
                "-t",
                "20",
                "-b",
                "2M",
                "-i",
                "1",
            ],
        );
        TcpStream { pid, log }
    }

    /// Wait for it to end; it must have survived the switch.
    fn finish(self) {
        assert!(
            wait_for(40, || process_ended(self.pid)),
            "the TCP stream did not finish"
        );
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stalled = out
            .lines()
            .filter(|l| l.contains("sec") && l.contains(" 0.00 Bytes"))
            .count();
        println!("the TCP stream had {stalled} one-second intervals with no data");
        assert!(
            out.contains("iperf Done."),
            "the TCP stream did not survive the switch:\n{out}"
        );
    }
}

fn assert_none(capture: Capture<'_>, phase: &str) {
    let packets = capture.stop();
    assert!(
        packets.is_empty(),
        "{phase}: {} cleartext packet(s) to the closed network on the WAN:\n{}",
        packets.len(),
        packets.join("\n")
    );
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Wait (up to `secs`) until gateway `index` is active, then until the PC reaches the closed
/// server through it. Returns when the gateway was seen active.
fn wait_until_carried_by(lab: &Lab, config: &Path, index: u64, secs: u64, phase: &str) -> Instant {
    assert!(
        wait_for(secs, || active_index(lab, config) == Some(index)),
        "{phase}: gateway {index} is not active: {:#}\n{}",
        status(lab, config)["tunnel"],
        lab.daemon_log()
    );
    let seen = Instant::now();
    assert!(
        wait_for(30, || lab.probe(Role::Pc, addr(CLOSED_SERVER))
            == Outcome::Connected),
        "{phase}: the closed server is not reached through gateway {index}: {:#}\n{}",
        status(lab, config)["tunnel"],
        lab.daemon_log()
    );
    seen
}

#[test]
fn wireguard_fails_over_to_the_backup_fails_back_and_never_leaks() {
    if skip_unless_root("wireguard_fails_over_to_the_backup_fails_back_and_never_leaks") {
        return;
    }
    let lab = Lab::build("fo");
    let (key, router_public) = router_keygen(&lab);
    let mut a = Concentrator::start_on(&lab, &router_public, 51820);
    let mut b = Concentrator::start_on(&lab, &router_public, 51821);
    route_replies_by_concentrator(&lab, &[&a, &b]);
    let config = two_gateway_config(&lab, &key, &a, &b);
    let check = oqs_edge(&lab, &["check", "-c", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "the two-gateway config does not check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    lab.start_daemon(&config);
    let mac = router_wan_mac(&lab);
    let _ = wait_until_carried_by(&lab, &config, 0, 30, "start");
    let clear = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    );

    // Failover under a paced ping and a TCP stream (iperf3 at 2 Mbit/s for 20 s).
    let stream = TcpStream::start(&lab);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ping = Pinger::start(&lab);
    assert!(wait_for(10, || lab.ping(Role::Pc, "10.200.0.10".parse().unwrap())));
    let stopped = Instant::now();
    a.stop(&lab);
    let seen = wait_until_carried_by(&lab, &config, 1, 60, "failover");
    let switched = (seen - stopped).as_secs_f64();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (gap, replies) = ping.stop(&lab);
    let s = status(&lab, &config);
    println!(
        "failover: switch decided {switched:.1} s after the stop; ping gap {gap:.1} s ({replies} replies); target {} s",
        INTERVAL_SECS * FAILURES + 5
    );
    stream.finish();
    // The target: interval × failures + 5 s from the death to traffic flowing again.
    assert!(
        gap <= (INTERVAL_SECS * FAILURES + 5) as f64,
        "failover gap {gap:.1} s is over the target"
    );
    assert!(replies > 0, "the ping got no replies at all");
    assert_eq!(s["health"], "degraded", "{s:#}");
    assert!(
        s["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap_or_default()
            .contains("backup gateway 203.0.113.2:51821")),
        "{s:#}"
    );
    assert!(
        s["tunnel"]["gateway"]["last_switch"]
            .as_str()
            .unwrap_or_default()
            .contains("failed 2 health probes"),
        "{s:#}"
    );
    assert!(
        lab.daemon_log()
            .contains("switching to gateway 203.0.113.2:51821"),
        "the switch is not in the journal/log"
    );

    // Failback after failback_after.
    a.restart(&lab);
    concentrator_route(&lab, &a, 0);
    let _ = wait_until_carried_by(&lab, &config, 0, FAILBACK_AFTER_SECS + 40, "failback");
    assert!(
        a.latest_handshake(&lab) > 0,
        "no handshake with the preferred"
    );

    // Both down: degraded, both named; no leak.
    a.stop(&lab);
    b.stop(&lab);
    assert!(
        wait_for(60, || {
            status(&lab, &config)["tunnel"]["gateway"]["failed"]
                .as_array()
                .is_some_and(|f| f.len() == 2)
        }),
        "both down: not both named failing: {:#}",
        status(&lab, &config)["tunnel"]
    );
    let s = status(&lab, &config);
    assert_eq!(s["health"], "degraded");
    assert!(
        s["problems"].as_array().unwrap().iter().any(|p| {
            let p = p.as_str().unwrap_or_default();
            p.contains("every gateway is failing")
                && p.contains("203.0.113.2:51820")
                && p.contains("203.0.113.2:51821")
        }),
        "{s:#}"
    );
    assert_ne!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);

    // One comes back: traffic resumes.
    b.restart(&lab);
    concentrator_route(&lab, &b, 1);
    assert!(
        wait_for(60, || lab.probe(Role::Pc, addr(CLOSED_SERVER))
            == Outcome::Connected),
        "one back: the closed server is not reached: {:#}\n{}",
        status(&lab, &config)["tunnel"],
        lab.daemon_log()
    );
    assert_none(clear, "failover, failback, both down, one back");
}

/// config/lab.yaml on IPsec (PSK) with two gateways, `vpngw` (preferred) and the second
/// gateway, and the health probe.
fn two_ipsec_gateways_config(lab: &Lab, router: &ipsec::Charon) -> PathBuf {
    let psk = ipsec::write_secret(lab, "ipsec.psk", &format!("{}\n", ipsec::PSK));
    let yaml =
        ipsec::lab_yaml_with_ipsec(lab, router, &format!("      psk_file: {}", psk.display()));
    let single = "    remote_address: 203.0.113.2\n";
    assert!(yaml.contains(single), "lab_yaml_with_ipsec changed");
    let yaml = yaml.replacen(
        single,
        &format!(
            "    remote_address:\n      - 203.0.113.2\n      - {}\n",
            ipsec::SECOND_GATEWAY
        ),
        1,
    );
    let anchor = "    dpd_delay: 2s";
    let yaml = yaml.replacen(
        anchor,
        &format!(
            "{anchor}\n  health:\n    target: {CLOSED_SERVER}\n    interval: {INTERVAL_SECS}s\n    failures: {FAILURES}\n    failback_after: {FAILBACK_AFTER_SECS}s"
        ),
        1,
    );
    lab.write_config(&yaml)
}

#[test]
fn ipsec_fails_over_to_the_second_gateway_fails_back_and_never_leaks() {
    if skip_unless_root("ipsec_fails_over_to_the_second_gateway_fails_back_and_never_leaks") {
        return;
    }
    let lab = Lab::build("ipfo");
    ipsec::carrier_without_closed_route(&lab);
    let second_ns = ipsec::second_gateway(&lab);
    let gw1 = ipsec::start_charon(&lab, Role::Vpngw, "vpngw");
    ipsec::configure_gateway(&lab, &gw1, ipsec::GatewayAuth::Psk(ipsec::PSK));
    let gw2 = ipsec::start_charon_in(&lab, &second_ns.name, "vpngw2");
    ipsec::configure_gateway_at(
        &lab,
        &gw2,
        ipsec::GatewayAuth::Psk(ipsec::PSK),
        ipsec::SECOND_GATEWAY,
    );
    let router = ipsec::start_charon(&lab, Role::Router, "router");
    lab.config_from_lab_yaml();
    let config = two_ipsec_gateways_config(&lab, &router);
    let check = oqs_edge(&lab, &["check", "-c", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "the two-gateway config does not check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    lab.start_daemon_when(&config, || true);
    let mac = router_wan_mac(&lab);
    let clear = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    );
    let _ = wait_until_carried_by(&lab, &config, 0, 30, "start");

    // The preferred gateway dies as in a crash (no DELETE) under a TCP stream and a paced
    // ping: the probe fails, the second one takes over.
    let stream = TcpStream::start(&lab);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ping = Pinger::start(&lab);
    assert!(wait_for(10, || lab.ping(Role::Pc, "10.200.0.10".parse().unwrap())));
    let stopped = Instant::now();
    ipsec::kill_charon(&gw1);
    let seen = wait_until_carried_by(&lab, &config, 1, 60, "failover");
    let switched = (seen - stopped).as_secs_f64();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (gap, replies) = ping.stop(&lab);
    println!(
        "ipsec failover: switch decided {switched:.1} s after the gateway died; ping gap {gap:.1} s ({replies} replies); target {} s",
        INTERVAL_SECS * FAILURES + 5
    );
    assert!(replies > 0, "the ping got no replies at all");
    stream.finish();
    let s = status(&lab, &config);
    assert_eq!(s["health"], "degraded", "a backup in use: {s:#}");
    assert!(
        s["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap_or_default()
            .contains(&format!("backup gateway {}", ipsec::SECOND_GATEWAY))),
        "{s:#}"
    );
    assert!(
        s["tunnel"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(ipsec::SECOND_GATEWAY),
        "{s:#}"
    );
    assert!(
        lab.daemon_log().contains(&format!(
            "IPsec: switching to gateway {}",
            ipsec::SECOND_GATEWAY
        )),
        "the switch is not in the journal/log"
    );

    // The preferred one still down: it is probed by an IKE_SA of its own, so traffic stays on
    // the second gateway past failback_after, without a pause.
    let ping = Pinger::start(&lab);
    // (A status that could not be read is not a move: only the preferred one active is.)
    let stayed = !wait_for(FAILBACK_AFTER_SECS + 6, || {
        active_index(&lab, &config) == Some(0)
    });
    let (gap, replies) = ping.stop(&lab);
    assert!(
        stayed,
        "traffic moved to the dead preferred gateway: {:#}",
        status(&lab, &config)["tunnel"]
    );
    assert!(
        // A failback try would cost at least interval × failures (4 s) of silence.
        replies > 0 && gap < 3.0,
        "the second gateway's traffic paused {gap:.1} s while the preferred one was down"
    );

    // The preferred one back: after it has answered the probe for failback_after, the router
    // is on it again.
    let gw1 = ipsec::start_charon(&lab, Role::Vpngw, "vpngw");
    ipsec::configure_gateway(&lab, &gw1, ipsec::GatewayAuth::Psk(ipsec::PSK));
    let _ = wait_until_carried_by(&lab, &config, 0, FAILBACK_AFTER_SECS + 40, "failback");
    assert!(
        gw1.swanctl(&lab, &["--list-sas"]).contains("INSTALLED"),
        "no CHILD_SA with the preferred gateway"
    );
    let s = status(&lab, &config);
    assert!(
        s["tunnel"]["gateway"]["last_switch"]
            .as_str()
            .unwrap_or_default()
            .contains("the preferred gateway answered for"),
        "failback by the probe: {s:#}"
    );
    assert_none(clear, "IPsec failover and failback");
}
