//! Benchmark (ignored by `cargo test`; run by netns-tests/bench/wireguard.sh): single-stream
//! iperf3 from the eligibility PC to the closed server, in one lab and one run, through:
//! oqs-edge (boringtun in-process); wireguard-go in the router's place (the same firewall
//! table and concentrator, its own key); plain routing without a tunnel or firewall (the
//! ceiling). Rounds alternate the first two so drift on the shared machine hits both. Prints
//! medians, the ratio oqs-edge / wireguard-go and the daemon's peak RSS under load. Asserts
//! nothing about speed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netns_tests::lab::{Lab, Role};
use netns_tests::wireguard::{router_keygen, wireguard_config, Concentrator, CONCENTRATOR};
use netns_tests::{process_ended, skip_unless_root, wait_for};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One iperf3 run from the PC; bits per second received.
fn iperf(lab: &Lab, seconds: u64) -> f64 {
    let out = lab.exec(
        Role::Pc,
        &[
            "iperf3",
            "-c",
            "10.200.0.10",
            "-t",
            &seconds.to_string(),
            "-J",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "iperf3 printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 failed: {}", v["error"]))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// iperf3 while a thread samples the daemon's RSS every 100 ms; (bits/s, peak RSS KiB).
fn iperf_with_rss(lab: &Lab, seconds: u64, pid: u32) -> (f64, u64) {
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let bps = iperf(lab, seconds);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (bps, peak.load(Ordering::Relaxed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn gbit(bps: f64) -> String {
    format!("{:.2} Gbit/s", bps / 1e9)
}

#[test]
#[ignore = "benchmark: run netns-tests/bench/wireguard.sh"]
fn wireguard_throughput_oqs_edge_vs_wireguard_go() {
    if skip_unless_root("wireguard_throughput_oqs_edge_vs_wireguard_go") {
        return;
    }
    let rounds = env_or("BENCH_ROUNDS", 3);
    let seconds = env_or("BENCH_SECONDS", 10);
    let lab = Lab::build("wgbench");
    // The router's interface name is unique too: wireguard-go's UAPI socket path is host-wide.
    let ifname = format!("owgr{}", std::process::id() % 10_000_000);
    let (key, router_public) = router_keygen(&lab);
    let mut concentrator = Concentrator::start(&lab, &router_public);
    let yaml = wireguard_config(&lab, &key, &concentrator.public_key, CONCENTRATOR, "25s")
        .replace("interface: oqs-wg0", &format!("interface: {ifname}"));
    let config = lab.write_config(&yaml);
    lab.spawn(Role::Closed, &["iperf3", "-s", "-B", "10.200.0.10"]);
    assert!(wait_for(10, || lab
        .ok(Role::Closed, &["ss", "-ltn"])
        .contains("10.200.0.10:5201")));

    // wireguard-go's key for the router's place: its own, so neither implementation's
    // handshake timestamps are taken as replays of the other's.
    let go_key = lab.dir().join("wg-secrets").join("go.key");
    let go_key_text = go_key.to_str().unwrap();
    let go_public = lab
        .ok(
            Role::Router,
            &[
                "sh",
                "-c",
                &format!("umask 077 && wg genkey > '{go_key_text}' && wg pubkey < '{go_key_text}'"),
            ],
        )
        .trim()
        .to_owned();
    let accept = |public: &str, instead_of: &str| {
        lab.ok(
            Role::Vpngw,
            &[
                "wg",
                "set",
                &concentrator.interface,
                "peer",
                instead_of,
                "remove",
                "peer",
                public,
                "allowed-ips",
                "10.201.0.2/32",
            ],
        );
    };

    let (mut ours, mut theirs, mut rss) = (Vec::new(), Vec::new(), 0u64);
    for round in 0..rounds {
        // 1. oqs-edge.
        accept(&router_public, &go_public);
        let pid = lab.start_daemon(&config);
        assert!(
            wait_for(30, || lab
                .probe(Role::Pc, "10.200.0.10:80".parse().unwrap())
                == netns_tests::Outcome::Connected),
            "oqs-edge's tunnel did not carry traffic:\n{}",
            lab.daemon_log()
        );
        let (bps, peak) = iperf_with_rss(&lab, seconds, pid);
        eprintln!(
            "round {round}: oqs-edge {} (peak RSS {peak} KiB)",
            gbit(bps)
        );
        ours.push(bps);
        rss = rss.max(peak);
        lab.stop(pid);
        assert!(wait_for(5, || process_ended(pid)));

        // 2. wireguard-go in the router's place, under the table oqs-edge left.
        accept(&go_public, &router_public);
        let go = lab.spawn(
            Role::Router,
            &[
                "env",
                "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                "wireguard-go",
                "-f",
                &ifname,
            ],
        );
        let socket = format!("/var/run/wireguard/{ifname}.sock");
        assert!(wait_for(10, || std::path::Path::new(&socket).exists()));
        lab.ok(
            Role::Router,
            &[
                "wg",
                "set",
                &ifname,
                "private-key",
                go_key_text,
                "peer",
                &concentrator.public_key,
                "endpoint",
                CONCENTRATOR,
                "allowed-ips",
                "10.200.0.0/24",
                "persistent-keepalive",
                "25",
            ],
        );
        for cmd in [
            format!("ip address add 10.201.0.2/32 dev {ifname}"),
            format!("ip link set {ifname} mtu 1420 up"),
            format!("ip route replace 10.200.0.0/24 dev {ifname}"),
        ] {
            lab.ok(Role::Router, &cmd.split(' ').collect::<Vec<_>>());
        }
        assert!(wait_for(30, || lab
            .probe(Role::Pc, "10.200.0.10:80".parse().unwrap())
            == netns_tests::Outcome::Connected));
        let bps = iperf(&lab, seconds);
        eprintln!("round {round}: wireguard-go {}", gbit(bps));
        theirs.push(bps);
        lab.stop(go);
        assert!(wait_for(5, || process_ended(go)));
    }

    // 3. Plain routing, no tunnel and no firewall: the ceiling.
    lab.ok(
        Role::Router,
        &["nft", "delete", "table", "inet", "oqs_edge"],
    );
    lab.carrier_routes_lan(true);
    lab.ok(
        Role::Router,
        &[
            "ip",
            "route",
            "replace",
            "10.200.0.0/24",
            "via",
            "198.51.100.1",
        ],
    );
    let plain = iperf(&lab, seconds);
    concentrator.stop(&lab);

    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    eprintln!(
        "RESULT: oqs-edge {} | wireguard-go {} | plain routing {} | ratio oqs-edge/wireguard-go {:.2} | oqs-edge peak RSS {:.1} MiB | {rounds} rounds of {seconds} s",
        gbit(ours),
        gbit(theirs),
        gbit(plain),
        ours / theirs,
        rss as f64 / 1024.0
    );
}
