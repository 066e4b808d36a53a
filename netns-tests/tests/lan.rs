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
