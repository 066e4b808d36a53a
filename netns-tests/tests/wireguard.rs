//! `tunnel.type: wireguard`: oqs-edge runs boringtun in-process against a wireguard-go
//! concentrator it did not configure. The eligibility PC reaches the closed network through
//! the tunnel and still not the internet; with the peer gone, after SIGKILL and across
//! reloads, the carrier (`inet`) never sees a cleartext packet to the closed network.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use netns_tests::lab::{Capture, Lab, Outcome, Role};
use netns_tests::wireguard::{
    router_keygen, wireguard_config, Concentrator, EtcOverride, CONCENTRATOR, CONCENTRATOR_NAME,
};
use netns_tests::{oqs_edge_bin, process_ended, signal, skip_unless_root, wait_for};

const CLOSED_SERVER: &str = "10.200.0.10:80";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn oqs_edge(lab: &Lab, args: &[&str]) -> Output {
    let bin = oqs_edge_bin();
    let mut all = vec![bin.to_str().unwrap()];
    all.extend_from_slice(args);
    lab.exec(Role::Router, &all)
}

/// `oqs-edge status --json`, as the operator would ask.
fn status(lab: &Lab, config: &Path) -> serde_json::Value {
    let out = oqs_edge(lab, &["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "status --json printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn tunnel_state(lab: &Lab, config: &Path) -> String {
    status(lab, config)["tunnel"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_tunnel_up(lab: &Lab, config: &Path, phase: &str) {
    assert!(
        wait_for(30, || tunnel_state(lab, config) == "up"),
        "{phase}: the tunnel did not come up: {:#}\n{}",
        status(lab, config)["tunnel"],
        lab.daemon_log()
    );
}

fn router_wan_mac(lab: &Lab) -> String {
    let json = lab.ok(Role::Router, &["ip", "-j", "link", "show", "wan0"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}

/// Cleartext to the closed network, leaving the router for the carrier.
fn cleartext<'a>(lab: &'a Lab, mac: &str) -> Capture<'a> {
    lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    )
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

fn ifindex(lab: &Lab, name: &str) -> u64 {
    let json = lab.ok(Role::Router, &["ip", "-j", "link", "show", name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["ifindex"].as_u64().unwrap()
}

/// The lab with the concentrator up and oqs-edge's config written; the daemon not started.
fn wireguard_lab(
    name: &str,
    endpoint: &str,
) -> (Lab, Concentrator, EtcOverride, std::path::PathBuf, String) {
    let lab = Lab::build(name);
    // Before the daemon starts: `ip netns exec` mounts these when it starts it.
    let etc = EtcOverride::router(&lab, "203.0.113.2");
    let (key, router_public) = router_keygen(&lab);
    let concentrator = Concentrator::start(&lab, &router_public);
    let yaml = wireguard_config(&lab, &key, &concentrator.public_key, endpoint, "25s");
    let config = lab.write_config(&yaml);
    (lab, concentrator, etc, config, yaml)
}

#[test]
fn wireguard_tunnel_reaches_the_closed_network_recovers_and_never_leaks() {
    if skip_unless_root("wireguard_tunnel_reaches_the_closed_network_recovers_and_never_leaks") {
        return;
    }
    let (lab, mut concentrator, _etc, config, yaml) = wireguard_lab("wg", CONCENTRATOR);
    let check = oqs_edge(&lab, &["check", "-c", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "the WireGuard lab config does not check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let pid = lab.start_daemon(&config);
    let mac = router_wan_mac(&lab);
    wait_tunnel_up(&lab, &config, "start");
    let detail = status(&lab, &config)["tunnel"]["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("last handshake") && detail.contains("203.0.113.2:51820"),
        "{detail}"
    );

    // Through the tunnel: the closed network answers, the carrier sees only WireGuard.
    let clear = cleartext(&lab, &mac);
    let tunnel = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and udp dst port 51820"),
    );
    assert_eq!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    assert!(
        !tunnel.stop().is_empty(),
        "the capture saw no WireGuard packets: it would miss cleartext too"
    );
    assert_none(clear, "tunnel up");
    assert_eq!(
        lab.probe(Role::Pc, addr("192.0.2.80:80")),
        Outcome::Unreachable,
        "pc → internet must still be rejected"
    );

    // Reload with the tunnel section unchanged: no new handshake.
    let before = concentrator.latest_handshake(&lab);
    assert!(before > 0);
    lab.write_config(&yaml.replace("name: \"oqs-edge lab\"", "name: \"oqs-edge lab 2\""));
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    assert_eq!(
        concentrator.latest_handshake(&lab),
        before,
        "a reload that left the tunnel section alone made a new handshake"
    );

    // Bad input is refused by name and the running tunnel stays.
    let bad_key = lab.dir().join("secrets").join("bad.key");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    std::fs::set_permissions(
        &bad_key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let key_file = lab.dir().join("wg-secrets").join("wg.key");
    lab.write_config(&yaml.replace(key_file.to_str().unwrap(), bad_key.to_str().unwrap()));
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&reload.stderr).into_owned();
    assert_eq!(reload.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "{} is not a WireGuard private key",
            bad_key.display()
        )),
        "{said}"
    );
    lab.write_config(&yaml.replace(CONCENTRATOR, "no-such-host.invalid:51820"));
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&reload.stdout),
        String::from_utf8_lossy(&reload.stderr)
    );
    assert_eq!(reload.status.code(), Some(2), "{said}");
    assert!(
        said.contains(
            "no-such-host.invalid:51820 (tunnel.wireguard.peer.endpoint) does not resolve"
        ),
        "{said}"
    );
    assert_eq!(
        lab.probe(Role::Pc, addr(CLOSED_SERVER)),
        Outcome::Connected,
        "a refused reload disturbed the tunnel"
    );

    // A changed peer (keepalive) is applied on the same interface, with a new handshake.
    let index = ifindex(&lab, "oqs-wg0");
    let before = concentrator.latest_handshake(&lab);
    // wireguard-go's handshake times have a one-second resolution.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.write_config(&yaml.replace("persistent_keepalive: 25s", "persistent_keepalive: 15s"));
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );
    // The replaced peer has no session: the next packet starts a handshake.
    assert_eq!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    assert!(
        concentrator.latest_handshake(&lab) > before,
        "no new handshake after the peer changed:\n{}",
        lab.daemon_log()
    );
    assert_eq!(
        ifindex(&lab, "oqs-wg0"),
        index,
        "the interface was recreated"
    );
    assert_eq!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    assert!(
        lab.daemon_log().contains("reloaded (peer)"),
        "{}",
        lab.daemon_log()
    );

    // A changed listen port: a new socket under the same interface and session; the
    // concentrator follows the new source port (roaming).
    lab.write_config(
        &yaml
            .replace("persistent_keepalive: 25s", "persistent_keepalive: 15s")
            .replace("listen_port: 51820", "listen_port: 51821"),
    );
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );
    assert!(
        wait_for(10, || lab.probe(Role::Pc, addr(CLOSED_SERVER))
            == Outcome::Connected),
        "pc → closed did not work after the listen port changed:\n{}",
        lab.daemon_log()
    );
    assert_eq!(
        ifindex(&lab, "oqs-wg0"),
        index,
        "the interface was recreated"
    );
    let sockets = lab.ok(Role::Router, &["ss", "-uanp"]);
    assert!(
        sockets.contains(":51821") && !sockets.contains(":51820 "),
        "{sockets}"
    );

    // The peer dies: traffic to the closed network stops, and none of it leaves in cleartext.
    let clear = cleartext(&lab, &mac);
    concentrator.stop(&lab);
    for _ in 0..3 {
        assert_ne!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    }
    assert_none(clear, "peer down");

    // The peer comes back: traffic resumes without anyone touching the router.
    concentrator.restart(&lab);
    let since = Instant::now();
    assert!(
        wait_for(60, || lab.probe(Role::Pc, addr(CLOSED_SERVER))
            == Outcome::Connected),
        "pc → closed did not resume within 60 s of the peer's restart:\n{}",
        lab.daemon_log()
    );
    eprintln!(
        "RECOVERY: pc → closed resumed {:.1} s after the concentrator restarted",
        since.elapsed().as_secs_f64()
    );

    // SIGKILL: the TUN dies with the process; the kill switch keeps everything off the WAN.
    signal(pid, "KILL");
    assert!(wait_for(5, || process_ended(pid)));
    let clear = cleartext(&lab, &mac);
    for _ in 0..3 {
        assert_ne!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
    }
    assert_none(clear, "after SIGKILL");

    // Started again, the tunnel is back.
    lab.start_daemon(&config);
    wait_tunnel_up(&lab, &config, "restart after SIGKILL");
    assert!(
        wait_for(20, || lab.probe(Role::Pc, addr(CLOSED_SERVER))
            == Outcome::Connected),
        "pc → closed after the restart:\n{}",
        lab.daemon_log()
    );
}

#[test]
fn an_endpoint_name_is_looked_up_again_while_handshakes_do_not_come() {
    if skip_unless_root("an_endpoint_name_is_looked_up_again_while_handshakes_do_not_come") {
        return;
    }
    let endpoint = format!("{CONCENTRATOR_NAME}:51820");
    let (lab, _concentrator, etc, config, _) = wireguard_lab("wgdns", &endpoint);
    // The name points where no concentrator is.
    etc.point_name_at("203.0.113.99");
    lab.start_daemon(&config);
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(tunnel_state(&lab, &config), "connecting");
    // The concentrator "moves" to where it really is: the daemon follows the name.
    etc.point_name_at("203.0.113.2");
    assert!(
        wait_for(50, || tunnel_state(&lab, &config) == "up"),
        "the daemon did not follow the endpoint's name: {:#}\n{}",
        status(&lab, &config)["tunnel"],
        lab.daemon_log()
    );
    assert!(
        lab.daemon_log()
            .contains("now resolves to 203.0.113.2:51820"),
        "{}",
        lab.daemon_log()
    );
    assert_eq!(lab.probe(Role::Pc, addr(CLOSED_SERVER)), Outcome::Connected);
}
