//! The chaos soak (issue 22), run by `netns-tests/soak.sh MINUTES [SEED] [wireguard|ipsec]`:
//! the WireGuard lab (the default) or the IPsec lab under steady traffic while a seeded random
//! schedule applies a fault every few seconds.
//!
//! Traffic, all the run long: a paced TCP stream (iperf3, 2 Mbit/s) and a ping every 200 ms
//! from the eligibility PC through the tunnel to the closed network, and proxy requests from a
//! clinic PC with curl (GETs, and a 1 MB POST every fourth) through the `eligibility-api` route
//! to nginx with `ssl_verify_client on`.
//!
//! Faults, both tunnels: SIGKILL of the daemon (restarted after `RestartSec=5s`, as the unit
//! has systemd do), the WAN link down for 1–3 s and up again, the closed-network route deleted
//! (WireGuard: the daemon's in the main table; IPsec: charon's in table 220), SIGHUP with a
//! random valid or invalid config (an invalid one is put right and reloaded again after the
//! daemon refused it, as an operator would), and the daemon's dnsmasq killed.
//! WireGuard (`OQS_SOAK_TUNNEL=wireguard`): the concentrator (wireguard-go) restarted.
//! IPsec (`OQS_SOAK_TUNNEL=ipsec`, a PSK): the gateway's charon restarted (SIGTERM, as
//! `systemctl restart` does), and the router's charon SIGKILLed and started again after
//! 0.1–2 s, as strongswan.service's `Restart=` would (the daemon does not run charon: it
//! drives it over VICI and must load its connection again by itself).
//! The WAN (`OQS_SOAK_WAN`; default `os` for WireGuard, `dhcp` for IPsec): `os`, the OS puts
//! the address and default route back after a link flap, as a network manager would; `dhcp`,
//! `wan.ipv4: dhcp` with dnsmasq in `inet` as the ISP (a fixed lease of 198.51.100.2, 2-minute
//! leases), the daemon's dhcpcd puts them back, and one more fault: dhcpcd SIGKILLed.
//!
//! Asserts: no cleartext packet to the closed network leaves the router on the WAN during the
//! whole run; every proxy request ends (2xx, or 502/503/504 with a reason; refused or reset only
//! while the daemon is down) within its timeout, none hangs; after the last fault the daemon is
//! healthy and the PC reaches the closed network within 10 s; the daemon's RSS and open file
//! descriptors at the end are within 10 % of their values after the warm-up. Prints the seed
//! (replay with `soak.sh MINUTES SEED`) and a table of the faults and recovery times.
//!
//! Without `OQS_SOAK_MINUTES` (plain `cargo test`) it skips and says so: the test command
//! (netns-tests/test.sh) runs it through soak.sh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netns_tests::ipsec::{self, Charon, GatewayAuth};
use netns_tests::lab::{Lab, Role};
use netns_tests::wan::{self, with_wan_keys};
use netns_tests::wireguard::{
    router_keygen, wireguard_config, Concentrator, EtcOverride, CONCENTRATOR,
};
use netns_tests::{process_ended, rss_kb, signal, skip_unless_root, wait_for, Outcome};

const CLOSED_SERVER: &str = "10.200.0.10:80";
/// systemd's `RestartSec=` in packaging/systemd/oqs-edge.service.
const RESTART_SEC: Duration = Duration::from_secs(5);
/// curl's `--max-time` for each proxy request: a request still open then has hung.
const REQUEST_TIMEOUT_S: u64 = 30;
/// Traffic without faults before the baseline RSS and fd counts are taken.
const WARM_UP: Duration = Duration::from_secs(20);
/// After the last fault, the daemon must be healthy (and the tunnel carry traffic) within this.
const FINAL_RECOVERY: Duration = Duration::from_secs(10);

/// SplitMix64: a small seeded generator, so a seed replays the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tunnel {
    WireGuard,
    Ipsec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wan {
    /// Addressed by the OS (`wan.ipv4: os`): the soak puts the address back after a flap.
    Os,
    /// `wan.ipv4: dhcp`: the daemon's dhcpcd, dnsmasq in `inet` as the ISP.
    Dhcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    DaemonKill,
    /// WireGuard: the concentrator (wireguard-go) restarted.
    PeerRestart,
    /// IPsec: the gateway's charon restarted.
    GatewayRestart,
    /// IPsec: the router's charon SIGKILLed (its unit starts it again).
    CharonKill,
    WanFlap,
    RouteDelete,
    Sighup,
    DnsmasqKill,
    /// `wan.ipv4: dhcp`: the daemon's dhcpcd SIGKILLed.
    DhcpcdKill,
}

/// The faults a run draws from. The WireGuard list with the OS's WAN is the one the soak had
/// before IPsec and DHCP, in the same order: an old seed replays the same schedule.
fn faults(tunnel: Tunnel, wan: Wan) -> Vec<Fault> {
    let peer = match tunnel {
        Tunnel::WireGuard => Fault::PeerRestart,
        Tunnel::Ipsec => Fault::GatewayRestart,
    };
    let mut all = vec![
        Fault::DaemonKill,
        peer,
        Fault::WanFlap,
        Fault::RouteDelete,
        Fault::Sighup,
        Fault::DnsmasqKill,
    ];
    if tunnel == Tunnel::Ipsec {
        all.push(Fault::CharonKill);
    }
    if wan == Wan::Dhcp {
        all.push(Fault::DhcpcdKill);
    }
    all
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::DaemonKill => "SIGKILL daemon",
            Fault::PeerRestart => "peer restart",
            Fault::GatewayRestart => "gateway charon restart",
            Fault::CharonKill => "SIGKILL router's charon",
            Fault::WanFlap => "WAN down/up",
            Fault::RouteDelete => "closed route deleted",
            Fault::Sighup => "SIGHUP",
            Fault::DnsmasqKill => "dnsmasq killed",
            Fault::DhcpcdKill => "dhcpcd killed",
        }
    }
}

/// The far end of the tunnel, and for IPsec the router's charon (run by its own unit, not by
/// the daemon, which drives it over VICI).
enum Peer {
    WireGuard(Concentrator),
    Ipsec { gateway: Charon, router: Charon },
}

impl Peer {
    /// The peer restarted: down for `down_ms`, then up and configured as before.
    fn restart(&mut self, lab: &Lab, down_ms: u64) -> String {
        match self {
            Peer::WireGuard(concentrator) => {
                concentrator.stop(lab);
                std::thread::sleep(Duration::from_millis(down_ms));
                concentrator.restart(lab);
            }
            Peer::Ipsec { gateway, .. } => {
                // `systemctl restart`: SIGTERM (charon deletes its SAs with the router).
                signal(gateway.pid, "TERM");
                if !wait_for(10, || process_ended(gateway.pid)) {
                    signal(gateway.pid, "KILL");
                    wait_for(5, || process_ended(gateway.pid));
                }
                std::thread::sleep(Duration::from_millis(down_ms));
                *gateway = ipsec::start_charon(lab, Role::Vpngw, "vpngw");
                ipsec::configure_gateway(lab, gateway, GatewayAuth::Psk(ipsec::PSK));
            }
        }
        format!("down {down_ms} ms")
    }

    /// The router's charon crashes (SIGKILL) and its unit starts it again after `down_ms`.
    fn kill_router_charon(&mut self, lab: &Lab, down_ms: u64) -> String {
        let Peer::Ipsec { router, .. } = self else {
            return "no charon (WireGuard)".to_owned();
        };
        ipsec::kill_charon(router);
        std::thread::sleep(Duration::from_millis(down_ms));
        *router = ipsec::start_charon(lab, Role::Router, "router");
        format!("started again after {down_ms} ms")
    }
}

/// One applied fault: when (s since the faults began), what, and how long from its start
/// (so with the 5 s RestartSec or the link's down time) until the daemon was healthy and the
/// PC reached the closed network again (None: the next fault came first).
struct Applied {
    at: f64,
    fault: Fault,
    detail: String,
    recovery: Option<f64>,
    gap: f64,
}

/// What one proxy request came to.
struct Request {
    at: f64,
    exit: Option<i32>,
    code: String,
    seconds: f64,
    body: String,
}

impl Request {
    fn class(&self) -> &'static str {
        match (self.exit, self.code.as_str()) {
            (Some(0), c) if c.starts_with('2') => "2xx",
            (Some(0), "502" | "503" | "504") if !self.body.trim().is_empty() => {
                "502/503/504 with a reason"
            }
            // No listener (the daemon is down or starting), or the connection cut when it was
            // killed: the request ended, at once.
            (Some(7), _) => "refused (daemon down)",
            (Some(35 | 52 | 55 | 56), _) => "reset (daemon killed)",
            (Some(28), _) => "HUNG",
            _ => "OTHER",
        }
    }
}

/// The daemon as systemd runs it: its PID and the config it reads.
struct Daemon<'a> {
    lab: &'a Lab,
    config: PathBuf,
    pid: u32,
    unexpected_exits: usize,
    /// Times are seconds since this (the traffic's start).
    origin: Instant,
    /// When the daemon was down: (killed or found dead, started again).
    down: Vec<(f64, f64)>,
}

impl Daemon<'_> {
    /// SIGKILL, then started again after RestartSec, as systemd does.
    fn kill_and_restart(&mut self) {
        let killed = self.origin.elapsed().as_secs_f64();
        signal(self.pid, "KILL");
        wait_for(5, || process_ended(self.pid));
        self.restart(killed);
    }

    fn restart(&mut self, down_since: f64) {
        self.lab.stop(self.pid);
        std::thread::sleep(RESTART_SEC);
        self.pid = self.lab.spawn_daemon(&self.config, &[]);
        self.down
            .push((down_since, self.origin.elapsed().as_secs_f64()));
    }

    /// Restart it if it died without being killed by the soak (a crash), and count that.
    fn check_alive(&mut self) {
        if process_ended(self.pid) {
            eprintln!(
                "SOAK: the daemon (pid {}) exited on its own:\n{}",
                self.pid,
                tail(&self.lab.daemon_log(), 30)
            );
            self.unexpected_exits += 1;
            self.restart(self.origin.elapsed().as_secs_f64());
        }
    }

    /// Whether a request (from `at`, lasting `seconds`) overlapped a time the daemon was down
    /// (from half a second before the kill to 5 s after it was started again): a refused or
    /// cut connection is what a client meets then, and only then.
    fn was_down_during(&self, at: f64, seconds: f64) -> bool {
        self.down
            .iter()
            .any(|&(from, to)| at <= to + 5.0 && at + seconds >= from - 0.5)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn status(lab: &Lab, config: &Path) -> serde_json::Value {
    lab.status_json(config)
}

fn healthy(lab: &Lab, config: &Path) -> bool {
    status(lab, config)["health"] == "healthy"
}

/// Healthy by its own account and the tunnel carries the PC's traffic.
fn recovered(lab: &Lab, config: &Path) -> bool {
    healthy(lab, config)
        && lab.probe(Role::Pc, CLOSED_SERVER.parse::<SocketAddr>().unwrap()) == Outcome::Connected
}

/// (VmRSS in kB, open fds) of a process, the median of five samples 500 ms apart.
fn footprint(pid: u32) -> (u64, u64) {
    let mut rss = Vec::new();
    let mut fds = Vec::new();
    for _ in 0..5 {
        rss.push(rss_kb(pid));
        fds.push(
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count() as u64)
                .unwrap_or(0),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    rss.sort_unstable();
    fds.sort_unstable();
    (rss[2], fds[2])
}

/// The daemon's children named `name` (`dnsmasq`, the DHCP server it supervises; `dhcpcd`,
/// its WAN client, which the lab's wrapper execs under the same PID).
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == name {
                found.push(child);
            }
        }
    }
    found
}

/// The configs a SIGHUP may bring: (label, yaml, valid). `secret` is the tunnel's key file
/// (the WireGuard key, the IPsec PSK), named missing in one invalid variant.
fn variants(tunnel: Tunnel, base: &str, secret: &Path) -> Vec<(&'static str, String, bool)> {
    let missing_key = secret.with_file_name("missing.key");
    let key = secret;
    let tunnel_change = match tunnel {
        Tunnel::WireGuard => (
            "valid: keepalive 15s",
            base.replace("persistent_keepalive: 25s", "persistent_keepalive: 15s"),
        ),
        // Loaded into charon again: a new IKE_SA carries the traffic.
        Tunnel::Ipsec => (
            "valid: dpd_delay 3s",
            base.replace("dpd_delay: 2s", "dpd_delay: 3s"),
        ),
    };
    assert_ne!(tunnel_change.1, base, "the tunnel variant changes nothing");
    vec![
        ("valid: unchanged", base.to_owned(), true),
        (
            "valid: site name",
            base.replace("name: \"oqs-edge lab\"", "name: \"oqs-edge lab (soak)\""),
            true,
        ),
        (tunnel_change.0, tunnel_change.1, true),
        (
            "invalid: internet: sometimes",
            base.replace("internet: deny", "internet: sometimes"),
            false,
        ),
        (
            "invalid: broken YAML",
            format!("{base}\nsegments: [\n"),
            false,
        ),
        (
            "invalid: missing key file",
            base.replace(key.to_str().unwrap(), missing_key.to_str().unwrap()),
            false,
        ),
    ]
}

#[test]
fn chaos_soak() {
    if skip_unless_root("chaos_soak") {
        return;
    }
    let Some(minutes) = std::env::var("OQS_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
    else {
        eprintln!(
            "SKIP chaos_soak: run it with netns-tests/soak.sh MINUTES [SEED] [wireguard|ipsec]"
        );
        return;
    };
    let tunnel = match std::env::var("OQS_SOAK_TUNNEL").as_deref() {
        Ok("wireguard") | Err(_) => Tunnel::WireGuard,
        Ok("ipsec") => Tunnel::Ipsec,
        Ok(other) => panic!("OQS_SOAK_TUNNEL={other}: wireguard or ipsec"),
    };
    let wan = match std::env::var("OQS_SOAK_WAN").as_deref() {
        Ok("os") => Wan::Os,
        Ok("dhcp") => Wan::Dhcp,
        Err(_) if tunnel == Tunnel::WireGuard => Wan::Os,
        Err(_) => Wan::Dhcp,
        Ok(other) => panic!("OQS_SOAK_WAN={other}: os or dhcp"),
    };
    let (tunnel_arg, wan_arg) = (
        match tunnel {
            Tunnel::WireGuard => "wireguard",
            Tunnel::Ipsec => "ipsec",
        },
        match wan {
            Wan::Os => "os",
            Wan::Dhcp => "dhcp",
        },
    );
    let seed: u64 = std::env::var("OQS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
        });
    let replay =
        format!("OQS_SOAK_WAN={wan_arg} netns-tests/soak.sh {minutes} {seed} {tunnel_arg}");
    eprintln!("SOAK: seed {seed}, {minutes} min of faults, {tunnel_arg}, WAN {wan_arg} (replay: {replay})");
    let mut rng = Rng(seed);
    let faults = faults(tunnel, wan);

    let lab = Lab::build(match tunnel {
        Tunnel::WireGuard => "soak",
        Tunnel::Ipsec => "soaki",
    });
    let mac = lab.router_wan_mac();
    let _isp = (wan == Wan::Dhcp).then(|| {
        wan::prepare(&lab);
        // The router's lease is fixed (the IPsec gateway expects 198.51.100.2), renewed every
        // minute or so: renewals happen under the faults too.
        let fixed = format!("--dhcp-host={mac},198.51.100.2");
        let mut args = wan::ISP_DHCP4.to_vec();
        args.push(&fixed);
        wan::start_isp(&lab, &args)
    });
    let _etc = (tunnel == Tunnel::WireGuard).then(|| EtcOverride::router(&lab, "203.0.113.2"));
    let (mut peer, yaml, secret) = match tunnel {
        Tunnel::WireGuard => {
            let (key, router_public) = router_keygen(&lab);
            let concentrator = Concentrator::start(&lab, &router_public);
            let yaml = wireguard_config(&lab, &key, &concentrator.public_key, CONCENTRATOR, "25s");
            (Peer::WireGuard(concentrator), yaml, key)
        }
        Tunnel::Ipsec => {
            let (gateway, router, yaml) = ipsec::psk_setup(&lab, ipsec::PSK, ipsec::PSK);
            let psk = lab.dir().join("secrets").join("ipsec.psk");
            (Peer::Ipsec { gateway, router }, yaml, psk)
        }
    };
    let base = match wan {
        Wan::Os => yaml,
        Wan::Dhcp => with_wan_keys(&yaml, "  ipv4: dhcp\n"),
    };
    let config = lab.write_config(&base);
    let _closed_dns = lab.start_closed_dns();
    let _nginx = lab.start_nginx("ca/oqs-server");
    lab.spawn(Role::Closed, &["iperf3", "-s", "-B", "10.200.0.10"]);
    let first = lab.start_daemon_when(&config, || recovered(&lab, &config));
    let mut daemon = Daemon {
        lab: &lab,
        config: config.clone(),
        pid: first,
        unexpected_exits: 0,
        origin: Instant::now(),
        down: Vec::new(),
    };
    assert!(
        wait_for(20, || healthy(&lab, &config)),
        "the soak lab is not healthy before any fault: {:#}\n{}",
        status(&lab, &config),
        lab.daemon_log()
    );
    let ca = lab.dir().join("local-ca/ca.pem");
    let upload = lab.dir().join("upload-1m.bin");
    std::fs::write(&upload, vec![b'x'; 1 << 20]).unwrap();

    // The positive control: a capture on the carrier's side sees what the router sends.
    let port = match tunnel {
        Tunnel::WireGuard => 51820,
        Tunnel::Ipsec => 4500,
    };
    let control = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and udp port {port}"),
    );
    assert!(recovered(&lab, &config));
    assert!(
        !control.stop().is_empty(),
        "the capture saw no {tunnel_arg} packets (UDP {port}): it would miss cleartext too"
    );
    let clear = lab.capture(
        Role::Inet,
        "eth0",
        &format!("ether src {mac} and ip and dst net 10.200.0.0/24"),
    );

    let stop = AtomicBool::new(false);
    let requests: Mutex<Vec<Request>> = Mutex::new(Vec::new());
    let streams: Mutex<(u32, u32)> = Mutex::new((0, 0));
    let origin = Instant::now();
    daemon.origin = origin;
    let (ping_pid, ping_log) = lab.spawn_log(
        Role::Pc,
        &["ping", "-i", "0.2", "-W", "1", "-q", "10.200.0.10"],
    );

    let (applied, final_recovery, baseline, end) = std::thread::scope(|s| {
        // The paced TCP stream, started again whenever a fault ends it.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let pid = lab.spawn(
                    Role::Pc,
                    &[
                        "iperf3",
                        "-c",
                        "10.200.0.10",
                        "-b",
                        "2M",
                        "-t",
                        "30",
                        "--connect-timeout",
                        "3000",
                    ],
                );
                let t = Instant::now();
                while !process_ended(pid) && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let ended = process_ended(pid);
                lab.stop(pid);
                let mut n = streams.lock().unwrap();
                n.0 += 1;
                if ended && t.elapsed() < Duration::from_secs(29) {
                    n.1 += 1;
                    // Cut short by a fault: wait a little before the next.
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
        // Proxy requests from the clinic PC.
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = format!("https://192.168.60.1:8443/eligibility?n={n}");
                let data = format!("@{}", upload.display());
                let max_time = REQUEST_TIMEOUT_S.to_string();
                let mut args = vec![
                    "curl",
                    "-sS",
                    "--max-time",
                    &max_time,
                    "--cacert",
                    ca.to_str().unwrap(),
                    "-w",
                    "\ncode=%{http_code}",
                ];
                if n.is_multiple_of(4) {
                    args.extend(["--data-binary", &data]);
                }
                args.push(&url);
                let at = origin.elapsed().as_secs_f64();
                let t = Instant::now();
                let out = lab.exec(Role::Clinic, &args);
                let seconds = t.elapsed().as_secs_f64();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (body, code) = text.rsplit_once("\ncode=").unwrap_or((&text, ""));
                requests.lock().unwrap().push(Request {
                    at,
                    exit: out.status.code(),
                    code: code.trim().to_owned(),
                    seconds,
                    body: format!("{body} {}", String::from_utf8_lossy(&out.stderr).trim()),
                });
                std::thread::sleep(Duration::from_millis(300));
            }
        });

        // Warm-up, then the baseline.
        std::thread::sleep(WARM_UP);
        let baseline = footprint(daemon.pid);
        eprintln!(
            "SOAK: baseline after {} s of traffic: RSS {} kB, {} fds",
            WARM_UP.as_secs(),
            baseline.0,
            baseline.1
        );

        let variants = variants(tunnel, &base, &secret);
        let faults_start = Instant::now();
        let length = Duration::from_secs_f64(minutes * 60.0);
        let mut applied: Vec<Applied> = Vec::new();
        let mut final_recovery = None;
        while faults_start.elapsed() < length {
            daemon.check_alive();
            let fault = faults[rng.range(0, faults.len() as u64 - 1) as usize];
            let at = faults_start.elapsed().as_secs_f64();
            let began = Instant::now();
            let detail = match fault {
                Fault::DaemonKill => {
                    daemon.kill_and_restart();
                    format!("restarted after {} s", RESTART_SEC.as_secs())
                }
                Fault::PeerRestart | Fault::GatewayRestart => {
                    let down = rng.range(0, 2000);
                    peer.restart(&lab, down)
                }
                Fault::CharonKill => {
                    let down = rng.range(100, 2000);
                    peer.kill_router_charon(&lab, down)
                }
                Fault::WanFlap => {
                    let down = rng.range(1000, 3000);
                    lab.ok(Role::Router, &["ip", "link", "set", "wan0", "down"]);
                    std::thread::sleep(Duration::from_millis(down));
                    lab.ok(Role::Router, &["ip", "link", "set", "wan0", "up"]);
                    // What the OS's network configuration puts back (wan: os; with
                    // `ipv4: dhcp` the daemon's dhcpcd puts the IPv4 side back).
                    let v4 = [
                        "ip address replace 198.51.100.2/24 dev wan0",
                        "ip route replace default via 198.51.100.1",
                    ];
                    let v6 = [
                        "ip address replace 2001:db8:100::2/64 dev wan0 nodad",
                        "ip route replace ::/0 via 2001:db8:100::1",
                    ];
                    let os_v4 = if wan == Wan::Os { &v4[..] } else { &[] };
                    for cmd in os_v4.iter().chain(&v6) {
                        let args: Vec<&str> = cmd.split(' ').collect();
                        let _ = lab.exec(Role::Router, &args);
                    }
                    format!("down {down} ms")
                }
                Fault::RouteDelete => {
                    let mut args = vec!["ip", "route", "del", "10.200.0.0/24"];
                    if tunnel == Tunnel::Ipsec {
                        // charon's route through ipsec0 (the daemon adds none for libipsec).
                        args.extend(["table", "220"]);
                    }
                    let out = lab.exec(Role::Router, &args);
                    if out.status.success() {
                        "deleted".to_owned()
                    } else {
                        "was not there".to_owned()
                    }
                }
                Fault::Sighup => {
                    let (label, yaml, valid) = &variants[rng.range(0, 5) as usize];
                    let log_before = lab.daemon_log().matches("reload refused").count();
                    lab.write_config(yaml);
                    if process_ended(daemon.pid) {
                        "daemon not running".to_owned()
                    } else {
                        signal(daemon.pid, "HUP");
                        if *valid {
                            label.to_string()
                        } else {
                            let refused = wait_for(10, || {
                                lab.daemon_log().matches("reload refused").count() > log_before
                            });
                            assert!(
                                refused,
                                "seed {seed}: the daemon did not refuse {label}:\n{}",
                                tail(&lab.daemon_log(), 30)
                            );
                            // The operator puts the file right and reloads (until then the
                            // status says the last reload was refused: degraded).
                            lab.write_config(&base);
                            signal(daemon.pid, "HUP");
                            format!("{label}: refused; fixed, reloaded")
                        }
                    }
                }
                Fault::DhcpcdKill => {
                    let pids = children_named(daemon.pid, "dhcpcd");
                    for p in &pids {
                        signal(*p, "KILL");
                    }
                    if pids.is_empty() {
                        "no dhcpcd running".to_owned()
                    } else {
                        format!("pid {pids:?}")
                    }
                }
                Fault::DnsmasqKill => {
                    let pids = children_named(daemon.pid, "dnsmasq");
                    for p in &pids {
                        signal(*p, "KILL");
                    }
                    if pids.is_empty() {
                        "no dnsmasq running".to_owned()
                    } else {
                        format!("pid {pids:?}")
                    }
                }
            };
            // The next fault comes after a few seconds; recovery is timed until then. After
            // the last one, the daemon has FINAL_RECOVERY from the end of the fault's action.
            let mut gap = Duration::from_millis(rng.range(4000, 12000));
            let last = faults_start.elapsed() + gap >= length;
            if last {
                gap = FINAL_RECOVERY;
            }
            let t = Instant::now();
            let mut recovery = None;
            while t.elapsed() < gap {
                if recovered(&lab, &config) {
                    recovery = Some(began.elapsed().as_secs_f64());
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if last {
                final_recovery = recovery.map(|_| t.elapsed().as_secs_f64());
            } else {
                std::thread::sleep(gap.saturating_sub(t.elapsed()));
            }
            eprintln!(
                "SOAK: {at:7.1} s  {:<22} {:<40} {} (next after {:.1} s)",
                fault.name(),
                detail,
                recovery.map_or_else(|| "-".to_owned(), |r| format!("{r:.1} s")),
                gap.as_secs_f64()
            );
            applied.push(Applied {
                at,
                fault,
                detail,
                recovery,
                gap: gap.as_secs_f64(),
            });
            if last {
                break;
            }
        }
        // Same traffic as at the baseline, then the end footprint.
        std::thread::sleep(Duration::from_secs(10));
        let end = footprint(daemon.pid);
        stop.store(true, Ordering::Relaxed);
        (applied, final_recovery, baseline, end)
    });

    signal(ping_pid, "INT");
    wait_for(5, || process_ended(ping_pid));
    let ping = std::fs::read_to_string(&ping_log).unwrap_or_default();
    let ping_summary = ping
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("(no ping summary)")
        .to_owned();
    let capture_ran = clear.running();
    let leaked = clear.stop();
    let requests = requests.into_inner().unwrap();
    let (stream_runs, stream_cut) = streams.into_inner().unwrap();

    // The table.
    let mut by_kind: BTreeMap<Fault, Vec<&Applied>> = BTreeMap::new();
    for a in &applied {
        by_kind.entry(a.fault).or_default().push(a);
    }
    let mut table = String::new();
    table.push_str(&format!(
        "seed {seed}, {minutes} min, {tunnel_arg}, WAN {wan_arg}, {} faults ({replay})\n\n| fault | count | recovered before the next | median recovery | max recovery |\n|---|---|---|---|---|\n",
        applied.len()
    ));
    for (fault, list) in &by_kind {
        let mut times: Vec<f64> = list.iter().filter_map(|a| a.recovery).collect();
        times.sort_by(f64::total_cmp);
        let median = times
            .get(times.len() / 2)
            .map_or("-".into(), |t| format!("{t:.1} s"));
        let max = times.last().map_or("-".into(), |t| format!("{t:.1} s"));
        table.push_str(&format!(
            "| {} | {} | {} | {median} | {max} |\n",
            fault.name(),
            list.len(),
            times.len()
        ));
    }
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &requests {
        *classes.entry(r.class()).or_default() += 1;
    }
    let slowest = requests.iter().map(|r| r.seconds).fold(0.0, f64::max);
    table.push_str(&format!(
        "\nproxy requests: {} ({}), slowest {slowest:.1} s\n",
        requests.len(),
        classes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    table.push_str(&format!(
        "TCP stream: {stream_runs} runs of 30 s, {stream_cut} cut short by a fault; ping: {ping_summary}\n"
    ));
    table.push_str(&format!(
        "cleartext closed-network packets on the WAN: {}\n",
        leaked.len()
    ));
    table.push_str(&format!(
        "after the last fault: {}\n",
        final_recovery.map_or_else(
            || format!("NOT recovered within {} s", FINAL_RECOVERY.as_secs()),
            |t| format!("healthy and carrying traffic after {t:.1} s")
        )
    ));
    let rss_ratio = end.0 as f64 / baseline.0.max(1) as f64;
    let fd_ratio = end.1 as f64 / baseline.1.max(1) as f64;
    table.push_str(&format!(
        "daemon RSS {} kB → {} kB ({rss_ratio:.2}x), fds {} → {} ({fd_ratio:.2}x); unexpected exits: {}\n",
        baseline.0, end.0, baseline.1, end.1, daemon.unexpected_exits
    ));
    table.push_str(
        "\n| t (s) | fault | detail | recovery | next fault after |\n|---|---|---|---|---|\n",
    );
    for a in &applied {
        table.push_str(&format!(
            "| {:.1} | {} | {} | {} | {:.1} s |\n",
            a.at,
            a.fault.name(),
            a.detail,
            a.recovery
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.1} s")),
            a.gap
        ));
    }
    eprintln!("SOAK RESULT\n{table}");
    if let Ok(file) = std::env::var("OQS_SOAK_REPORT") {
        let _ = std::fs::write(file, &table);
    }

    let hung: Vec<&Request> = requests
        .iter()
        .filter(|r| {
            let daemon_down =
                matches!(r.class(), "refused (daemon down)" | "reset (daemon killed)");
            matches!(r.class(), "HUNG" | "OTHER")
                || (daemon_down && !daemon.was_down_during(r.at, r.seconds))
                || r.seconds > REQUEST_TIMEOUT_S as f64 + 1.0
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "seed {seed}: {} cleartext packet(s) to the closed network on the WAN:\n{}",
        leaked.len(),
        leaked
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        capture_ran,
        "seed {seed}: the leak capture stopped during the run"
    );
    assert!(
        hung.is_empty(),
        "seed {seed}: proxy requests that hung or failed oddly:\n{}",
        hung.iter()
            .map(|r| format!(
                "at {:.1} s: {} exit {:?} code {} after {:.1} s: {}",
                r.at,
                r.class(),
                r.exit,
                r.code,
                r.seconds,
                r.body.trim()
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        final_recovery.is_some(),
        "seed {seed}: not healthy within {} s of the last fault: {:#}\n{}",
        FINAL_RECOVERY.as_secs(),
        status(&lab, &config),
        tail(&lab.daemon_log(), 40)
    );
    assert_eq!(
        daemon.unexpected_exits, 0,
        "seed {seed}: the daemon exited on its own"
    );
    assert!(
        rss_ratio <= 1.10 && fd_ratio <= 1.10,
        "seed {seed}: the daemon grew: RSS {} → {} kB, fds {} → {}",
        baseline.0,
        end.0,
        baseline.1,
        end.1
    );
}
