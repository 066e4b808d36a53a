//! The LAN side from the one YAML, with real parts: the daemon puts the segment addresses on
//! the router's LAN ports (and takes back only its own), and serves DHCP through a supervised
//! dnsmasq to a real DHCP client (busybox udhcpc) in the PCs' namespaces, and answers names
//! through its DNS relay (Hickory DNS) against real DNS servers (dnsmasq) in the lab.

use std::path::{Path, PathBuf};
use std::time::Instant;

use netns_tests::{oqs_edge_bin, process_ended, skip_unless_root, wait_for, Lab, Role};

fn oqs_edge(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut full = vec![oqs_edge_bin().to_str().unwrap().to_owned()];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    lab.exec(Role::Router, &full)
}

fn status(lab: &Lab, config: &Path) -> serde_json::Value {
    let out = oqs_edge(lab, &["status", "--json", "-c", config.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn segment<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// A PC's DHCP lease, or the test fails with what udhcpc and the daemon said.
fn pc_lease(lab: &Lab, pc: Role) -> String {
    lab.dhcp_client(pc)
        .unwrap_or_else(|why| panic!("{why}\ndaemon log:\n{}", lab.daemon_log()))
}

fn dnsmasq_pid(state: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.join("dnsmasq.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (!process_ended(pid)).then_some(pid)
}

#[test]
fn dhcp_gives_the_terminal_its_fixed_lease_and_survives_restarts() {
    if skip_unless_root("dhcp_gives_the_terminal_its_fixed_lease_and_survives_restarts") {
        return;
    }
    let lab = Lab::build("dhcp");
    // The clinic PC is one config/lab.yaml does not list: it gets an address from the range.
    lab.ok(
        Role::Clinic,
        &["ip", "link", "set", "eth0", "address", "52:54:00:60:00:99"],
    );
    lab.unaddress(Role::Pc);
    lab.unaddress(Role::Clinic);
    let config = lab.write_config(&lab.config_from_lab_yaml());
    let state: PathBuf = lab.dir().join("state");
    let daemon = lab.start_daemon(&config);
    assert!(
        wait_for(10, || dnsmasq_pid(&state).is_some()),
        "dnsmasq did not start:\n{}",
        lab.daemon_log()
    );

    // The terminal gets its fixed address, the router as gateway and as DNS server.
    let terminal = pc_lease(&lab, Role::Pc);
    assert!(
        terminal.starts_with("ip=192.168.50.10 router=192.168.50.1 dns=192.168.50.1 "),
        "{terminal}"
    );
    // A PC nobody listed gets one from its segment's range.
    let clinic = pc_lease(&lab, Role::Clinic);
    let address = clinic
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ip="))
        .unwrap_or_default()
        .to_owned();
    let last: u8 = address
        .strip_prefix("192.168.60.")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((100..=109).contains(&last), "{clinic}");
    assert!(clinic.contains("router=192.168.60.1 "), "{clinic}");
    // With its address the terminal reaches the closed network through the router.
    assert!(lab.ping(Role::Pc, "10.200.0.10".parse().unwrap()));

    // status: the fixed host holds its lease; leases in use per segment.
    let s = status(&lab, &config);
    let oqs = segment(&s, "oqs");
    assert_eq!(oqs["dhcp"]["serving"], true, "{s:#}");
    assert_eq!(oqs["dhcp"]["leases_in_use"], 1, "{s:#}");
    assert_eq!(oqs["dhcp"]["hosts"][0]["name"], "oqs-terminal", "{s:#}");
    assert_eq!(oqs["dhcp"]["hosts"][0]["holds_lease"], true, "{s:#}");
    assert_eq!(segment(&s, "clinic")["dhcp"]["leases_in_use"], 1, "{s:#}");
    let text = String::from_utf8_lossy(
        &oqs_edge(&lab, &["status", "-c", config.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(
        text.contains("fixed oqs-terminal 52:54:00:50:00:10 -> 192.168.50.10: holds its lease"),
        "{text}"
    );

    // dnsmasq dies: it is back within 5 s, and still answers.
    let first = dnsmasq_pid(&state).unwrap();
    netns_tests::signal(first, "KILL");
    let killed = Instant::now();
    assert!(
        wait_for(10, || dnsmasq_pid(&state).is_some_and(|p| p != first)),
        "dnsmasq was not started again:\n{}",
        lab.daemon_log()
    );
    assert!(
        killed.elapsed().as_secs_f64() < 5.0,
        "dnsmasq came back only after {:?}",
        killed.elapsed()
    );
    assert!(pc_lease(&lab, Role::Pc).starts_with("ip=192.168.50.10 "));

    // The daemon restarts: dnsmasq goes with it, and the leases are kept.
    lab.stop(daemon);
    let second = dnsmasq_pid(&state);
    assert!(
        wait_for(5, || dnsmasq_pid(&state).is_none()),
        "dnsmasq {second:?} outlived the daemon"
    );
    let _daemon = lab.start_daemon(&config);
    assert!(wait_for(10, || dnsmasq_pid(&state).is_some()));
    let s = status(&lab, &config);
    assert_eq!(segment(&s, "clinic")["dhcp"]["leases_in_use"], 1, "{s:#}");
    assert_eq!(
        segment(&s, "oqs")["dhcp"]["hosts"][0]["holds_lease"],
        true,
        "{s:#}"
    );
    // The clinic PC asks again and is given the address it had.
    let again = pc_lease(&lab, Role::Clinic);
    assert!(
        again.starts_with(&format!("ip={address} ")),
        "{again} (had {address})"
    );
}

#[test]
fn segment_addresses_are_put_in_place_and_only_ours_taken_back() {
    if skip_unless_root("segment_addresses_are_put_in_place_and_only_ours_taken_back") {
        return;
    }
    let lab = Lab::build("addr");
    // A router whose OS configured only the WAN.
    for (dev, addrs) in [
        ("lan0", ["192.168.50.1/24", "fd00:50::1/64"]),
        ("lan1", ["192.168.60.1/24", "fd00:60::1/64"]),
    ] {
        for a in addrs {
            lab.ok(Role::Router, &["ip", "address", "del", a, "dev", dev]);
        }
    }
    lab.ok(Role::Router, &["ip", "link", "set", "lan1", "down"]);
    let config_text = lab.config_from_lab_yaml();
    let config = lab.write_config(&config_text);
    let _daemon = lab.start_daemon(&config);
    // (Debian 12's iproute2 neither shows nor filters an address's protocol: what marks an
    // address as ours is seen below, in what a reload removes and what it leaves.)
    let ours = |dev: &str| lab.ok(Role::Router, &["ip", "-o", "address", "show", "dev", dev]);
    assert!(
        wait_for(10, || ours("lan0").contains("192.168.50.1/24")
            && ours("lan0").contains("fd00:50::1/64")
            && ours("lan1").contains("192.168.60.1/24")),
        "segment addresses not added: lan0 {} lan1 {}\n{}",
        ours("lan0"),
        ours("lan1"),
        lab.daemon_log()
    );
    // The link the OS left down is up, and the PCs reach the router again.
    assert!(wait_for(5, || lab
        .ping(Role::Clinic, "192.168.60.1".parse().unwrap())));
    assert!(lab.ping(Role::Pc, "192.168.50.1".parse().unwrap()));

    // An operator's own extra address on a LAN port.
    lab.ok(
        Role::Router,
        &["ip", "address", "add", "192.168.50.2/24", "dev", "lan0"],
    );
    // A reload without the clinic segment: its address goes, the operator's stays.
    let without_clinic = drop_clinic_segment(&config_text);
    std::fs::write(&config, &without_clinic).unwrap();
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}{}",
        String::from_utf8_lossy(&reload.stdout),
        String::from_utf8_lossy(&reload.stderr)
    );
    let all = |dev: &str| lab.ok(Role::Router, &["ip", "-o", "address", "show", "dev", dev]);
    assert!(!all("lan1").contains("192.168.60.1/"), "{}", all("lan1"));
    assert!(all("lan0").contains("192.168.50.2/24"), "{}", all("lan0"));
    assert!(all("lan0").contains("192.168.50.1/24"), "{}", all("lan0"));

    // A segment on a missing interface: a problem in plain words, the others unaffected.
    let missing = without_clinic.replacen("interface: lan0", "interface: lan9", 1);
    std::fs::write(&config, &missing).unwrap();
    let reload = oqs_edge(&lab, &["reload", "-c", config.to_str().unwrap()]);
    assert!(reload.status.success());
    let s = status(&lab, &config);
    let problems = s["problems"].to_string();
    assert!(
        problems.contains("segment oqs: the router's address 192.168.50.1/24 is not on lan9: interface lan9 does not exist"),
        "{s:#}"
    );
    assert_eq!(s["health"], "degraded");
}

/// The lab config without the clinic segment and what names it (its proxy route's listen
/// address and `allow` entry move to the eligibility segment).
fn drop_clinic_segment(text: &str) -> String {
    let start = text
        .find("  - name: clinic\n")
        .expect("the lab config has a clinic segment");
    let end = start
        + text[start..]
            .find("\nwan:")
            .expect("wan follows the segments");
    let without = format!("{}{}", &text[..start], &text[end..]);
    without
        .replace("listen: 192.168.60.1:", "listen: 192.168.50.1:")
        .replace("allow: [clinic, oqs]", "allow: [oqs]")
        .replace("allow: [clinic]", "allow: [oqs]")
}

#[test]
fn the_relay_answers_closed_zones_refuses_the_rest_and_the_proxy_resolves_by_name() {
    if skip_unless_root(
        "the_relay_answers_closed_zones_refuses_the_rest_and_the_proxy_resolves_by_name",
    ) {
        return;
    }
    let lab = Lab::build("dns");
    let closed_dns = lab.start_closed_dns();
    let internet_dns = lab.start_internet_dns();
    let nginx = lab.start_nginx("ca/oqs-server");
    // The clinic segment may use the internet (and so the internet's names); the proxy route
    // to the eligibility API goes by name alone: no upstream_address.
    let yaml = lab
        .config_from_lab_yaml()
        .replacen("    internet: deny\n", "    internet: allow\n", 1)
        .replacen(
            "      upstream_address: 10.200.0.10    # the lab's upstream server\n",
            "",
            1,
        )
        .replacen(
            "\ntunnel:",
            "\ndns:\n  internet_servers: [198.51.100.1]\n\ntunnel:",
            1,
        );
    assert!(
        !yaml.contains("upstream_address: 10.200.0.10    #"),
        "fixture"
    );
    let config = lab.write_config(&yaml);
    lab.start_daemon(&config);
    let answered = || {
        lab.dig(
            Role::Pc,
            "@192.168.50.1",
            &["+short", "hweb-api.oqs.example"],
        )
    };
    assert!(
        wait_for(10, || answered().trim() == "10.200.0.10"),
        "the relay did not answer a closed name: {:?}\n{}\nclosed DNS saw: {}\n{}",
        answered(),
        lab.dig(Role::Pc, "@192.168.50.1", &["hweb-api.oqs.example"]),
        closed_dns.queries(),
        lab.daemon_log()
    );

    // Closed zones from the eligibility PC: any letter case, over TCP too, AAAA for a name
    // with only an A record (an empty answer, not an error).
    assert_eq!(
        lab.dig(Role::Pc, "@192.168.50.1", &["+short", "CLAIMS.Oqs.Example"])
            .trim(),
        "10.200.0.10"
    );
    assert_eq!(
        lab.dig(
            Role::Pc,
            "@192.168.50.1",
            &["+short", "+tcp", "hweb-api.oqs.example"]
        )
        .trim(),
        "10.200.0.10"
    );
    let aaaa = lab.dig(Role::Pc, "@192.168.50.1", &["hweb-api.oqs.example", "AAAA"]);
    assert!(aaaa.contains("status: NOERROR"), "{aaaa}");
    assert!(lab
        .dig(Role::Pc, "@192.168.50.1", &["nothere.oqs.example"])
        .contains("status: NXDOMAIN"));

    // Anything else from the eligibility PC: REFUSED, and not one packet about it leaves.
    let wan = lab.capture(Role::Router, "wan0", "port 53");
    for name in [
        "www.example.com",
        "oqs.example.example.com",
        "evil-oqs.example",
        "example",
    ] {
        let reply = lab.dig(Role::Pc, "@192.168.50.1", &[name]);
        assert!(reply.contains("status: REFUSED"), "{name}: {reply}");
    }
    let refused_tcp = lab.dig(Role::Pc, "@192.168.50.1", &["+tcp", "www.example.com"]);
    assert!(refused_tcp.contains("status: REFUSED"), "{refused_tcp}");
    let seen = wan.stop();
    assert!(
        seen.iter()
            .all(|p| !p.contains("example.com") && !p.contains("evil-oqs")),
        "DNS for a refused name left the router: {seen:#?}"
    );
    assert!(!internet_dns.queries().contains("www.example.com"));

    // The clinic segment (internet: allow) gets internet names from the internet resolver.
    assert_eq!(
        lab.dig(
            Role::Clinic,
            "@192.168.60.1",
            &["+short", "www.example.com"]
        )
        .trim(),
        "192.0.2.80"
    );
    assert!(internet_dns.queries().contains("www.example.com"));

    // status counts per segment.
    let s = status(&lab, &config);
    let oqs = &segment(&s, "oqs")["dns"];
    assert!(oqs["refused"].as_u64().unwrap_or(0) >= 5, "{s:#}");
    assert!(oqs["answered"].as_u64().unwrap_or(0) >= 4, "{s:#}");

    // The proxy reaches its upstream by name, through the closed DNS.
    let ca = lab.dir().join("local-ca/ca.pem");
    let curl = || {
        let out = lab.exec(
            Role::Clinic,
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                ca.to_str().unwrap(),
                "-w",
                "code=%{http_code}\n",
                "https://192.168.60.1:8443/by-name",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = curl();
    assert!(first.contains("code=200"), "{first}\n{}", lab.daemon_log());
    assert!(
        nginx
            .requests()
            .last()
            .is_some_and(|l| l.ends_with(" 10.200.0.10")),
        "{:?}",
        nginx.requests()
    );
    assert!(closed_dns.queries().contains("hweb-api.oqs.example"));

    // The closed DNS moves the name: once the TTL (2 s) and the pooled connection's hold
    // (5 s) are over, new requests go to the new address.
    closed_dns.set_hosts("10.200.0.11 hweb-api.oqs.example claims.oqs.example\n");
    let moved = wait_for(20, || {
        let out = curl();
        out.contains("code=200")
            && nginx
                .requests()
                .last()
                .is_some_and(|l| l.ends_with(" 10.200.0.11"))
    });
    assert!(
        moved,
        "requests did not follow the DNS change: {:?}",
        nginx.requests()
    );

    // A name the closed DNS does not know: 502 with the reason in status.
    closed_dns.set_hosts("10.200.0.11 claims.oqs.example\n");
    let failed = wait_for(20, || curl().contains("code=502"));
    assert!(
        failed,
        "a name that no longer resolves did not fail: {}",
        curl()
    );
    let s = status(&lab, &config);
    let last_error = s["proxy"]["routes"][0]["last_upstream_error"].to_string();
    assert!(
        last_error.contains("the closed network's DNS has no address for hweb-api.oqs.example"),
        "{s:#}"
    );
}

#[test]
fn closed_names_go_only_through_the_tunnel_and_fail_closed_without_it() {
    use netns_tests::wireguard::{
        router_keygen, wireguard_config, Concentrator, EtcOverride, CONCENTRATOR,
    };
    if skip_unless_root("closed_names_go_only_through_the_tunnel_and_fail_closed_without_it") {
        return;
    }
    let lab = Lab::build("dnswg");
    let _etc = EtcOverride::router(&lab, "203.0.113.2");
    let (key, router_public) = router_keygen(&lab);
    let mut concentrator = Concentrator::start(&lab, &router_public);
    let closed_dns = lab.start_closed_dns();
    let yaml = wireguard_config(&lab, &key, &concentrator.public_key, CONCENTRATOR, "25s");
    assert!(yaml.contains("dns_zones: [oqs.example]"), "{yaml}");
    let config = lab.write_config(&yaml);
    lab.start_daemon_when(&config, || status(&lab, &config)["tunnel"]["state"] == "up");
    let mac = lab.router_wan_mac();
    // Every DNS packet the router sends the carrier in cleartext.
    let cleartext_dns = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and (udp port 53 or tcp port 53)"),
    );
    let tunnel = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and udp dst port 51820"),
    );
    let closed = || {
        lab.dig(
            Role::Pc,
            "@192.168.50.1",
            &["+short", "hweb-api.oqs.example"],
        )
    };
    assert!(
        wait_for(10, || closed().trim() == "10.200.0.10"),
        "no answer through the tunnel: {}\n{}",
        closed(),
        lab.daemon_log()
    );
    assert!(closed_dns.queries().contains("hweb-api.oqs.example"));
    assert!(
        !tunnel.stop().is_empty(),
        "the capture saw no WireGuard: it would miss cleartext too"
    );

    // The concentrator goes: closed names fail (SERVFAIL, after the relay's timeouts), the
    // rest is still refused, and not one DNS packet leaves in cleartext.
    concentrator.stop(&lab);
    let reply = lab.dig(
        Role::Pc,
        "@192.168.50.1",
        &["+time=8", "claims.oqs.example"],
    );
    assert!(reply.contains("status: SERVFAIL"), "{reply}");
    assert!(lab
        .dig(Role::Pc, "@192.168.50.1", &["www.example.com"])
        .contains("status: REFUSED"));
    let seen = cleartext_dns.stop();
    assert!(
        seen.is_empty(),
        "DNS left the router in cleartext: {seen:#?}"
    );
    let s = status(&lab, &config);
    assert!(
        segment(&s, "oqs")["dns"]["failed"].as_u64().unwrap_or(0) >= 1,
        "{s:#}"
    );
}

#[test]
fn a_query_flood_from_one_pc_leaves_the_relay_answering_the_others() {
    if skip_unless_root("a_query_flood_from_one_pc_leaves_the_relay_answering_the_others") {
        return;
    }
    let lab = Lab::build("dnsflood");
    let _closed_dns = lab.start_closed_dns();
    let config = lab.write_config(&lab.config_from_lab_yaml());
    lab.start_daemon(&config);
    let clinic = || {
        lab.dig(
            Role::Clinic,
            "@192.168.60.1",
            &["+short", "claims.oqs.example"],
        )
    };
    assert!(
        wait_for(10, || clinic().trim() == "10.200.0.10"),
        "{}",
        clinic()
    );
    // 10,000 queries from the eligibility PC, as fast as dnsperf sends them, half refused names.
    let queries = lab.dir().join("flood.txt");
    let lines: String = (0..10_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("host{i}.example.com A\n")
            } else {
                "hweb-api.oqs.example A\n".to_owned()
            }
        })
        .collect();
    std::fs::write(&queries, lines).unwrap();
    let flood = lab.spawn(
        Role::Pc,
        &[
            "dnsperf",
            "-s",
            "192.168.50.1",
            "-d",
            queries.to_str().unwrap(),
            "-n",
            "1",
            "-q",
            "500",
            "-t",
            "2",
        ],
    );
    // Meanwhile the clinic PC is answered, every time.
    let started = Instant::now();
    let mut answered = 0;
    while !process_ended(flood) && started.elapsed().as_secs() < 60 {
        assert_eq!(
            clinic().trim(),
            "10.200.0.10",
            "the clinic PC was not answered during the flood"
        );
        answered += 1;
    }
    assert!(answered >= 1);
    assert!(
        wait_for(60, || process_ended(flood)),
        "dnsperf did not finish"
    );
    assert_eq!(clinic().trim(), "10.200.0.10");
    let s = status(&lab, &config);
    let oqs = &segment(&s, "oqs")["dns"];
    assert!(oqs["refused"].as_u64().unwrap_or(0) >= 4_000, "{s:#}");
    assert!(oqs["answered"].as_u64().unwrap_or(0) >= 4_000, "{s:#}");
}
