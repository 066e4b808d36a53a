//! The lab: six namespaces wired as a clinic's router sees the world, with real peers in them.
//!
//! ```text
//! pc     192.168.50.10 ─ lan0 ┐
//!                             [router] wan0 198.51.100.2 ─ 198.51.100.1 (eth0) [inet] (eth1) 203.0.113.1
//! clinic 192.168.60.10 ─ lan1 ┘                                    ─ 203.0.113.2 [vpngw] 10.200.0.1 ─ 10.200.0.10 [closed]
//! ```
//!
//! `inet` is both the carrier (it routes the closed network 10.200.0.0/24 on to `vpngw` in
//! cleartext, as an IP-VPN line does) and "the internet" (192.0.2.80 and 2001:db8:ffff::80 on
//! its loopback). The router gets addresses and default routes only: forwarding and the route to
//! the closed network are what `oqs-edge run` sets, so a test sees whether the daemon did.
//!
//! Namespaces are `oqsedge-<pid>-<lab>-<role>`, so two labs run side by side and
//! [`crate::sweep_leftovers`] cleans up after a killed run. Every process the lab starts is
//! recorded and stopped by its PID when the lab drops (on panic too), before the namespaces go.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::{lab_peer_bin, oqs_edge_bin, process_ended, wait_for, Netns};

/// A namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The eligibility PC (資格確認端末) on lan0, segment `oqs`.
    Pc,
    /// A clinic PC on lan1, segment `clinic`.
    Clinic,
    /// Where oqs-edge runs.
    Router,
    /// The carrier and the internet.
    Inet,
    /// The closed network's gateway.
    Vpngw,
    /// A server in the closed network (オンライン資格確認 / 請求).
    Closed,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Pc,
        Role::Clinic,
        Role::Router,
        Role::Inet,
        Role::Vpngw,
        Role::Closed,
    ];

    /// The last part of the namespace name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Pc => "pc",
            Role::Clinic => "clinic",
            Role::Router => "router",
            Role::Inet => "inet",
            Role::Vpngw => "vpngw",
            Role::Closed => "closed",
        }
    }
}

/// What a TCP connection attempt met; see `lab-peer probe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connected and read the server's hello line.
    Connected,
    /// An RST: the packet got through, nothing listens.
    Refused,
    /// An ICMP error: a firewall `reject` (or no route).
    Unreachable,
    /// No answer: a firewall `drop`.
    Timeout,
    /// Connected to a service that is not a lab-peer (the proxy): the firewall let it in.
    Accepted,
    /// Anything else, with lab-peer's words, so a failed assertion shows them.
    Other(String),
}

/// How long a probe waits for an answer: each `Timeout` cell costs this much. More than the
/// 1 s SYN retransmit, because on the lab's zero-latency veths an IPv6 reject's ICMPv6 error
/// comes back while `connect()` still holds the socket lock, so the kernel keeps it only as a
/// soft error (nstat TcpExtLockDroppedIcmps) and the connection fails, EACCES, with the
/// retransmitted SYN's error ~1 s later. IPv4 rejects fail at once.
pub const PROBE_TIMEOUT_MS: u32 = 1500;

/// What a capture sends to its link's broadcast address when it is asked to stop, and waits
/// to see in its file: tcpdump writes packets in order, so everything before is written too.
/// (A fixed "has the file stopped growing" wait lost packets under load: tcpdump had not yet
/// been scheduled to read them when it was stopped.) UDP to the discard port; the BPF clause
/// matches its first four bytes, `oqs-`.
const CAPTURE_END: &str = "oqs-capture-end";
const CAPTURE_END_PORT: u16 = 9;
const CAPTURE_END_BPF: &str = "(udp dst port 9 and udp[8:4] = 0x6f71732d)";

/// The veths, each created directly between two namespaces: (a, a's name, b, b's name).
const LINKS: &[(Role, &str, Role, &str)] = &[
    (Role::Pc, "eth0", Role::Router, "lan0"),
    (Role::Clinic, "eth0", Role::Router, "lan1"),
    (Role::Router, "wan0", Role::Inet, "eth0"),
    (Role::Inet, "eth1", Role::Vpngw, "eth0"),
    (Role::Vpngw, "eth1", Role::Closed, "eth0"),
];

/// `ip -batch` lines per namespace, run once every link is up (see [`Lab::links_up`]).
/// IPv6 addresses are `nodad`: usable at once, no 1–2 s of "tentative".
const SETUP: &[(Role, &[&str])] = &[
    (
        Role::Pc,
        &[
            // The MAC of the fixed DHCP lease config/lab.yaml gives the eligibility PC.
            "link set eth0 address 52:54:00:50:00:10",
            "address add 192.168.50.10/24 dev eth0",
            "address add fd00:50::10/64 dev eth0 nodad",
            "route add default via 192.168.50.1",
            "route add ::/0 via fd00:50::1",
        ],
    ),
    (
        Role::Clinic,
        &[
            "link set eth0 address 52:54:00:60:00:10",
            "address add 192.168.60.10/24 dev eth0",
            "address add fd00:60::10/64 dev eth0 nodad",
            "route add default via 192.168.60.1",
            "route add ::/0 via fd00:60::1",
        ],
    ),
    (
        Role::Router,
        &[
            "address add 192.168.50.1/24 dev lan0",
            "address add fd00:50::1/64 dev lan0 nodad",
            "address add 192.168.60.1/24 dev lan1",
            "address add fd00:60::1/64 dev lan1 nodad",
            "address add 198.51.100.2/24 dev wan0",
            "address add 2001:db8:100::2/64 dev wan0 nodad",
            "route add default via 198.51.100.1",
            "route add ::/0 via 2001:db8:100::1",
        ],
    ),
    (
        Role::Inet,
        &[
            "address add 198.51.100.1/24 dev eth0",
            "address add 2001:db8:100::1/64 dev eth0 nodad",
            "address add 203.0.113.1/24 dev eth1",
            // "The internet": hosts the router reaches by its default route.
            "address add 192.0.2.80/32 dev lo",
            "address add 2001:db8:ffff::80/128 dev lo nodad",
            // The carrier routes the closed network in cleartext (IP-VPN).
            "route add 10.200.0.0/24 via 203.0.113.2",
        ],
    ),
    (
        Role::Vpngw,
        &[
            "address add 203.0.113.2/24 dev eth0",
            "address add 10.200.0.1/24 dev eth1",
            "route add default via 203.0.113.1",
        ],
    ),
    (
        Role::Closed,
        &[
            "address add 10.200.0.10/24 dev eth0",
            // A second address of the same server, for a DNS answer that moves.
            "address add 10.200.0.11/32 dev eth0",
            // The closed network's DNS server (Lab::start_closed_dns).
            "address add 10.200.0.53/32 dev eth0",
            "route add default via 10.200.0.1",
        ],
    ),
];

/// Where `lab-peer serve` listens.
const SERVERS: &[(Role, &[&str])] = &[
    (Role::Closed, &["10.200.0.10:80"]),
    (
        Role::Inet,
        &["192.0.2.80:80", "[2001:db8:ffff::80]:80", "198.51.100.1:80"],
    ),
    (Role::Pc, &["192.168.50.10:80", "[fd00:50::10]:80"]),
    (Role::Clinic, &["192.168.60.10:80", "[fd00:60::10]:80"]),
];

/// The routes `carrier_routes_lan(true)` gives `inet`: the LANs via the router's WAN address.
const CARRIER_LAN_ROUTES: &[&str] = &[
    "route replace 192.168.0.0/16 via 198.51.100.2",
    "route replace fd00::/8 via 2001:db8:100::2",
];

/// The protocol number oqs-edge marks its routes with (`proto 79` in `ip route`).
pub const DAEMON_ROUTE_PROTO: &str = "79";

/// A tcpdump filter for what the router (WAN MAC `mac`) sends the carrier that is not for the
/// closed network (ARP, IPv6 link-local and multicast housekeeping aside): a leak.
pub fn leak_filter(mac: &str) -> String {
    format!(
        "ether src {mac} and ((ip and not dst net 10.200.0.0/24) or \
         (ip6 and not src net fe80::/10 and not dst net ff00::/8))"
    )
}

/// A process the lab started; stopped by PID when the lab drops.
struct Proc {
    what: String,
    child: Child,
}

/// The lab; see the module comment. Dropping it stops its processes and deletes its namespaces.
pub struct Lab {
    name: String,
    /// In [`Role::ALL`] order.
    namespaces: Vec<Netns>,
    children: Mutex<Vec<Proc>>,
    daemon_log: Mutex<Option<PathBuf>>,
    /// Numbers log and capture files.
    serial: AtomicUsize,
    // Last: removed after the processes that write into it are gone.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Build the whole topology and start the peers. Call [`crate::skip_unless_root`] first.
    pub fn build(labname: &str) -> Lab {
        crate::sweep_leftovers();
        let dir = tempfile::Builder::new()
            .prefix(&format!("oqsedge-lab-{labname}-"))
            .tempdir()
            .expect("create the lab's temp dir");
        let namespaces = Role::ALL
            .iter()
            .map(|r| Netns::new(&format!("{labname}-{}", r.name())))
            .collect();
        let lab = Lab {
            name: labname.to_owned(),
            namespaces,
            children: Mutex::new(Vec::new()),
            daemon_log: Mutex::new(None),
            serial: AtomicUsize::new(0),
            dir,
        };
        lab.kernel_settings();
        lab.create_links();
        lab.links_up();
        for (role, lines) in SETUP {
            lab.ip_batch(*role, lines);
        }
        lab.start_servers();
        lab
    }

    /// Before any link exists, so every interface is created with these defaults.
    fn kernel_settings(&self) {
        for role in Role::ALL {
            // The router forwards only once oqs-edge says so; a namespace may inherit
            // forwarding from the host, so say 0 explicitly.
            let forward = if matches!(role, Role::Inet | Role::Vpngw) {
                "1"
            } else {
                "0"
            };
            self.ok(
                role,
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    &format!("net.ipv4.ip_forward={forward}"),
                    &format!("net.ipv6.conf.all.forwarding={forward}"),
                ],
            );
        }
    }

    fn create_links(&self) {
        for (a, a_if, b, b_if) in LINKS {
            run_ok(Command::new("ip").args([
                "link",
                "add",
                a_if,
                "netns",
                self.ns(*a),
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                self.ns(*b),
            ]));
        }
    }

    /// Links up and carrier seen on both ends *before* any address: an IPv6 address added
    /// while its link had no carrier ignored the first neighbour solicitation, so the first
    /// IPv6 connection of a fresh lab took a SYN retransmit (1 s) and probes timed out.
    fn links_up(&self) {
        let mut per_ns: BTreeMap<Role, Vec<String>> = BTreeMap::new();
        for role in Role::ALL {
            per_ns
                .entry(role)
                .or_default()
                .push("link set lo up".into());
        }
        for (a, a_if, b, b_if) in LINKS {
            for (role, name) in [(*a, a_if), (*b, b_if)] {
                per_ns
                    .entry(role)
                    .or_default()
                    .push(format!("link set {name} up"));
            }
        }
        for (role, lines) in &per_ns {
            self.ip_batch(*role, lines);
        }
        let all_up = || {
            LINKS.iter().all(|(a, a_if, b, b_if)| {
                self.operstate(*a, a_if) == "UP" && self.operstate(*b, b_if) == "UP"
            })
        };
        assert!(
            wait_for(10, all_up),
            "lab {}: veths did not come up",
            self.name
        );
    }

    fn operstate(&self, role: Role, link: &str) -> String {
        let out = self.exec(role, &["cat", &format!("/sys/class/net/{link}/operstate")]);
        String::from_utf8_lossy(&out.stdout).trim().to_uppercase()
    }

    /// Start every `lab-peer serve`, then wait until each answers from inside its namespace.
    fn start_servers(&self) {
        let peer = lab_peer_bin();
        let peer = peer.to_str().expect("lab-peer path is UTF-8");
        for (role, addrs) in SERVERS {
            let mut args = vec![peer, "serve"];
            args.extend_from_slice(addrs);
            self.spawn(*role, &args);
        }
        for (role, addrs) in SERVERS {
            for addr in *addrs {
                let addr: SocketAddr = addr.parse().expect("server address");
                assert!(
                    wait_for(10, || self.probe(*role, addr) == Outcome::Connected),
                    "lab {}: lab-peer serve {addr} in {} never answered: {:?}",
                    self.name,
                    role.name(),
                    self.probe(*role, addr)
                );
            }
        }
    }

    /// The full name of a role's namespace.
    pub fn ns(&self, role: Role) -> &str {
        &self.netns(role).name
    }

    fn netns(&self, role: Role) -> &Netns {
        // `namespaces` holds one per role, in Role::ALL order.
        let index = Role::ALL.iter().position(|r| *r == role).unwrap_or(0);
        &self.namespaces[index]
    }

    /// The lab's temp dir: logs, captures, configs, certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run a command in a role's namespace.
    pub fn exec(&self, role: Role, args: &[&str]) -> Output {
        self.exec_in(self.ns(role), args)
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, role: Role, args: &[&str]) -> String {
        self.ok_in(self.ns(role), args)
    }

    /// A namespace beyond the roles (a second gateway), named like the lab's own so a killed
    /// run's is swept; deleted when the returned guard drops. Create it after the lab, so it
    /// drops first (the lab then stops what runs in it).
    pub fn add_namespace(&self, name: &str) -> Netns {
        Netns::new(&format!("{}-{name}", self.name))
    }

    /// Run a command in namespace `ns` (a role's, or one from [`Lab::add_namespace`]).
    pub fn exec_in(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// [`Lab::exec_in`], requiring success; returns stdout.
    pub fn ok_in(&self, ns: &str, args: &[&str]) -> String {
        let out = self.exec_in(ns, args);
        assert!(
            out.status.success(),
            "{args:?} in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Lab::spawn`] in namespace `ns`.
    pub fn spawn_in(&self, ns: &str, args: &[&str]) -> u32 {
        let log = self.next_file(&format!("{ns}-{}", program_name(args)), "log");
        self.spawn_logged_in(ns, args, &log)
    }

    /// Many `ip` commands in one process; nonzero exit on the first that fails.
    fn ip_batch(&self, role: Role, lines: &[impl AsRef<str>]) {
        let batch: String = lines.iter().map(|l| format!("{}\n", l.as_ref())).collect();
        self.netns(role).ok(&["ip", "-batch", "-"], &batch);
    }

    /// Start a long-running command in a role's namespace; stdout and stderr go to a log file
    /// in [`Lab::dir`]. The PID is recorded: the lab stops it (by PID) when it drops.
    pub fn spawn(&self, role: Role, args: &[&str]) -> u32 {
        let log = self.next_file(&format!("{}-{}", role.name(), program_name(args)), "log");
        self.spawn_logged(role, args, &log)
    }

    /// [`Lab::spawn`], also returning the log file (stdout and stderr).
    pub fn spawn_log(&self, role: Role, args: &[&str]) -> (u32, PathBuf) {
        let log = self.next_file(&format!("{}-{}", role.name(), program_name(args)), "log");
        (self.spawn_logged(role, args, &log), log)
    }

    fn spawn_logged(&self, role: Role, args: &[&str], log: &Path) -> u32 {
        self.spawn_logged_in(self.ns(role), args, log)
    }

    fn spawn_logged_in(&self, ns: &str, args: &[&str], log: &Path) -> u32 {
        let file = std::fs::File::create(log).expect("create a log file in the lab dir");
        let err = file.try_clone().expect("clone the log file handle");
        // `ip netns exec` execs the command: the PID is the command's own.
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("spawn ip netns exec");
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Proc {
                what: format!("{args:?} in {ns}"),
                child,
            });
        pid
    }

    /// `<dir>/<stem>-<n>.<ext>`, a new name each call.
    fn next_file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        self.dir().join(format!("{stem}-{n}.{ext}"))
    }

    /// Stop one process the lab started: SIGTERM, then SIGKILL after 3 s. Unknown PIDs are
    /// ignored (already stopped).
    pub fn stop(&self, pid: u32) {
        let proc = {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            children
                .iter()
                .position(|p| p.child.id() == pid)
                .map(|i| children.remove(i))
        };
        if let Some(proc) = proc {
            stop_all(vec![proc]);
        }
    }

    /// A TCP connection attempt from a role's namespace (`lab-peer probe`).
    pub fn probe(&self, from: Role, to: SocketAddr) -> Outcome {
        let peer = lab_peer_bin();
        let out = self.exec(
            from,
            &[
                peer.to_str().expect("lab-peer path is UTF-8"),
                "probe",
                &to.to_string(),
                "--timeout-ms",
                &PROBE_TIMEOUT_MS.to_string(),
            ],
        );
        let word = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match (out.status.code(), word.as_str()) {
            (Some(0), "connected") => Outcome::Connected,
            (Some(1), "refused") => Outcome::Refused,
            (Some(2), "unreachable") => Outcome::Unreachable,
            (Some(3), "timeout") => Outcome::Timeout,
            (Some(5), "accepted") => Outcome::Accepted,
            _ => Outcome::Other(format!(
                "{word} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// One ping, one second to answer.
    pub fn ping(&self, from: Role, addr: IpAddr) -> bool {
        self.exec(from, &["ping", "-c1", "-W1", "-q", &addr.to_string()])
            .status
            .success()
    }

    /// Start tcpdump on an interface of a role's namespace (`any` works too); returns once
    /// tcpdump is listening, so nothing sent after this is missed.
    pub fn capture(&self, role: Role, iface: &str, filter: &str) -> Capture<'_> {
        let file = self.next_file(&format!("{}-{iface}", role.name()), "pcap");
        let log = file.with_extension("log");
        let file_text = file.to_str().expect("lab dir path is UTF-8");
        // -Z root: tcpdump would drop to user tcpdump, who cannot write into our temp dir.
        // --immediate-mode: deliver each packet at once, not when libpcap's buffer times out.
        // The end marker goes out of a named interface with an IPv4 broadcast address.
        let end = (iface != "any")
            .then(|| self.broadcast_of(role, iface))
            .flatten();
        let filter = match (end, filter.is_empty()) {
            (Some(_), false) => format!("({filter}) or {CAPTURE_END_BPF}"),
            _ => filter.to_owned(),
        };
        let filter = filter.as_str();
        let mut args = vec![
            "tcpdump",
            "-Z",
            "root",
            "-n",
            "-U",
            "--immediate-mode",
            "-i",
            iface,
            "-w",
            file_text,
        ];
        if !filter.is_empty() {
            args.push(filter);
        }
        let pid = self.spawn_logged(role, &args, &log);
        let listening = wait_for(10, || {
            process_ended(pid)
                || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"))
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            listening && !process_ended(pid),
            "tcpdump on {iface} in {} did not start: {text}",
            self.ns(role)
        );
        Capture {
            lab: self,
            role,
            pid: Some(pid),
            file,
            end,
        }
    }

    /// The IPv4 broadcast address of a role's interface (`brd` in `ip -4 addr`).
    fn broadcast_of(&self, role: Role, iface: &str) -> Option<std::net::Ipv4Addr> {
        let text = self.ok(role, &["ip", "-4", "-o", "addr", "show", "dev", iface]);
        let mut words = text.split_whitespace();
        words.find(|w| *w == "brd")?;
        words.next()?.parse().ok()
    }

    /// Give `inet` (the carrier) routes to the LANs via the router: 192.168.0.0/16 and
    /// fd00::/8 via the WAN address. Off by default: the router masquerades what it sends out,
    /// so only tests of WAN → LAN traffic need these.
    pub fn carrier_routes_lan(&self, on: bool) {
        if on {
            self.ip_batch(Role::Inet, CARRIER_LAN_ROUTES);
        } else {
            // Deleting a route that is not there fails; that is the state asked for.
            for line in CARRIER_LAN_ROUTES {
                let del = line.replace("route replace", "route del");
                let mut args = vec!["ip"];
                args.extend(del.split_whitespace());
                let _ = self.exec(Role::Inet, &args);
            }
        }
    }

    /// For tests that run without the daemon: what `oqs-edge run` sets on the lab's router
    /// for config/lab.yaml, done by the harness instead: IPv4 forwarding and the route to the
    /// closed network, marked `proto 79` as the daemon marks it.
    pub fn router_routing_without_daemon(&self) {
        self.ok(
            Role::Router,
            &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        );
        self.ip_batch(
            Role::Router,
            &[format!(
                "route replace 10.200.0.0/24 via 198.51.100.1 dev wan0 proto {DAEMON_ROUTE_PROTO}"
            )],
        );
    }

    /// IPv6 forwarding on the router. config/lab.yaml has no IPv6 segment, so oqs-edge leaves
    /// it off and the kernel drops every IPv6 packet to forward before the firewall sees it;
    /// tests of the firewall's IPv6 cells turn it on here.
    pub fn router_ipv6_forwarding(&self, on: bool) {
        let value = if on { "1" } else { "0" };
        self.ok(
            Role::Router,
            &[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.all.forwarding={value}"),
            ],
        );
    }

    /// Write a config for the daemon into the lab dir (the same file each call).
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.dir().join("oqs-edge.yaml");
        std::fs::write(&path, yaml).expect("write the lab's config");
        path
    }

    /// config/lab.yaml with its `/run/oqs-edge-lab` paths moved into this lab's dir, where the
    /// files it names are created (real certificates, made with openssl).
    pub fn config_from_lab_yaml(&self) -> String {
        crate::pki::create_lab_files(self.dir());
        let dir = self.dir().to_str().expect("lab dir path is UTF-8");
        LAB_YAML.replace("/run/oqs-edge-lab", dir)
    }

    /// Run the real daemon in the router: `oqs-edge run -c CONFIG --state-dir <dir>/state`.
    /// Returns once the firewall table and the closed-network route are in the router's kernel;
    /// panics with the daemon's log if it exits first.
    pub fn start_daemon(&self, config: &Path) -> u32 {
        self.start_daemon_with(config, &[])
    }

    /// [`Lab::start_daemon`] with more arguments for `oqs-edge run`.
    pub fn start_daemon_with(&self, config: &Path, extra: &[&str]) -> u32 {
        let pid = self.spawn_daemon(config, extra);
        let ready = wait_for(20, || {
            process_ended(pid) || (self.daemon_table_exists() && self.daemon_route_exists())
        });
        assert!(
            !process_ended(pid),
            "oqs-edge run exited during start-up:\n{}",
            self.daemon_log()
        );
        assert!(
            ready,
            "oqs-edge run did not apply the table and the route 10.200.0.0/24 within 20 s:\n{}",
            self.daemon_log()
        );
        pid
    }

    /// Run the real daemon in the router, like [`Lab::start_daemon`], but ready when `ready`
    /// says so (a tunnel config adds no route of its own); panics with its log if it exits.
    pub fn start_daemon_when(&self, config: &Path, mut ready: impl FnMut() -> bool) -> u32 {
        let pid = self.spawn_daemon(config, &[]);
        let ok = wait_for(20, || {
            process_ended(pid) || (self.daemon_table_exists() && ready())
        });
        assert!(
            ok && !process_ended(pid),
            "oqs-edge run exited or was not ready within 20 s:\n{}",
            self.daemon_log()
        );
        pid
    }

    /// `oqs-edge run -c CONFIG --state-dir <dir>/state` in the router, logged to the file
    /// [`Lab::daemon_log`] reads. Returns at once: the caller judges readiness (the soak
    /// restarts the daemon as systemd would and measures how long it takes).
    pub fn spawn_daemon(&self, config: &Path, extra: &[&str]) -> u32 {
        let bin = oqs_edge_bin();
        let state = self.dir().join("state");
        let log = self.next_file("oqs-edge", "log");
        *self.daemon_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(log.clone());
        let mut args = vec![
            bin.to_str().expect("oqs-edge path is UTF-8"),
            "run",
            "-c",
            config.to_str().expect("config path is UTF-8"),
            "--state-dir",
            state.to_str().expect("lab dir path is UTF-8"),
        ];
        args.extend_from_slice(extra);
        self.spawn_logged(Role::Router, &args, &log)
    }

    /// The router's WAN MAC: a capture in `inet` counts only what the router sent.
    pub fn router_wan_mac(&self) -> String {
        let json = self.ok(Role::Router, &["ip", "-j", "link", "show", "wan0"]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output is JSON");
        v[0]["address"]
            .as_str()
            .expect("wan0 has a MAC address")
            .to_owned()
    }

    fn daemon_table_exists(&self) -> bool {
        self.exec(Role::Router, &["nft", "list", "table", "inet", "oqs_edge"])
            .status
            .success()
    }

    fn daemon_route_exists(&self) -> bool {
        let out = self.exec(
            Role::Router,
            &[
                "ip",
                "-j",
                "route",
                "show",
                "exact",
                "10.200.0.0/24",
                "proto",
                DAEMON_ROUTE_PROTO,
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|routes| !routes.is_empty()))
            .unwrap_or(false)
    }

    /// `oqs-edge status --json -c CONFIG` in the router; null when it printed no JSON.
    pub fn status_json(&self, config: &Path) -> serde_json::Value {
        let out = self.exec(
            Role::Router,
            &[
                oqs_edge_bin().to_str().expect("oqs-edge path is UTF-8"),
                "status",
                "--json",
                "-c",
                config.to_str().expect("config path is UTF-8"),
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// What the last daemon started wrote (stdout and stderr).
    pub fn daemon_log(&self) -> String {
        let log = self
            .daemon_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        log.and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Packet counts of the named counters in the router's `table inet oqs_edge`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let json = self.ok(
            Role::Router,
            &["nft", "-j", "list", "counters", "table", "inet", "oqs_edge"],
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("nft -j output is JSON");
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let c = item.get("counter")?;
                Some((c["name"].as_str()?.to_owned(), c["packets"].as_u64()?))
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let children = std::mem::take(self.children.get_mut().unwrap_or_else(|e| e.into_inner()));
        stop_all(children);
        // The namespaces (fields) are deleted next, then the temp dir.
    }
}

/// SIGTERM to all at once, up to 3 s for them to end, then SIGKILL; each reaped by PID.
fn stop_all(mut procs: Vec<Proc>) {
    for p in &procs {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &p.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
    // process_ended: a zombie counts, so this does not wait on reaping.
    wait_for(3, || procs.iter().all(|p| process_ended(p.child.id())));
    for p in &mut procs {
        if !process_ended(p.child.id()) {
            eprintln!("lab: {} ignored SIGTERM; killing it", p.what);
            let _ = p.child.kill();
        }
        let _ = p.child.wait();
    }
}

/// The program's file name, for log file names.
fn program_name(args: &[&str]) -> String {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(|| "cmd".into(), |n| n.to_string_lossy().into_owned())
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's lab config; the lab's topology is what it describes.
const LAB_YAML: &str = include_str!("../../config/lab.yaml");

/// The upstream in `closed`: nginx with TLS on 10.200.0.10:443, `ssl_verify_client on` against
/// the lab's client CA. Every request is answered `upstream ok` with the client's DN; the access
/// log has one line per request: `$connection $ssl_session_reused $ssl_client_serial
/// "$ssl_client_s_dn" "$request" $status`.
const NGINX_CONF: &str = r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid DIR/nginx.pid;
error_log DIR/error.log info;
events { worker_connections 4096; }
http {
  log_format oqs '$connection $ssl_session_reused $ssl_client_serial "$ssl_client_s_dn" "$request" $status $server_addr';
  access_log DIR/access.log oqs;
  client_body_temp_path DIR/tmp-body;
  proxy_temp_path DIR/tmp-proxy;
  fastcgi_temp_path DIR/tmp-fcgi;
  uwsgi_temp_path DIR/tmp-uwsgi;
  scgi_temp_path DIR/tmp-scgi;
  keepalive_requests 100000;
  server {
    listen 10.200.0.10:443 ssl;
    listen 10.200.0.11:443 ssl;
    server_name hweb-api.oqs.example claims.oqs.example;
    ssl_certificate        CERT.pem;
    ssl_certificate_key    CERT.key;
    ssl_client_certificate CLIENT_CA;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:oqs:1m;
    location / {
      default_type text/plain;
      return 200 "upstream ok host=$host dn=$ssl_client_s_dn
";
    }
    # Uploads (issue 22): the whole body is read (buffered to client_body_temp_path) before
    # the answer, which says how much arrived.
    location /upload {
      client_max_body_size 0;
      client_body_buffer_size 1m;
      proxy_pass http://127.0.0.1:8081;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Received $content_length;
    }
  }
  server {
    listen 127.0.0.1:8081;
    access_log off;
    location / {
      default_type text/plain;
      return 200 "upload received $http_x_received bytes
";
    }
  }
}
"#;

/// A running nginx upstream (see [`Lab::start_nginx`]).
pub struct Nginx {
    pub pid: u32,
    pub access_log: PathBuf,
}

impl Nginx {
    /// The access log's lines so far.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Distinct TLS connections that carried the logged requests (nginx's `$connection`).
    pub fn connections(&self) -> usize {
        let mut ids: Vec<String> = self
            .requests()
            .iter()
            .filter_map(|l| l.split(' ').next().map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }
}

impl Lab {
    /// Start nginx in `closed` as the eligibility/claims upstream. `server_cert` is the stem
    /// (under the lab dir) of its certificate and key: `ca/oqs-server` (trusted by oqs-edge's
    /// `server_ca`) or `ca/foreign-server` (see `pki::create_foreign_server`).
    pub fn start_nginx(&self, server_cert: &str) -> Nginx {
        crate::pki::create_lab_files(self.dir());
        let run = self.next_file("nginx", "d");
        std::fs::create_dir_all(&run).expect("create the nginx dir");
        let dir = self.dir().to_str().expect("lab dir path is UTF-8");
        let conf = NGINX_CONF
            .replace("DIR", run.to_str().expect("lab dir path is UTF-8"))
            .replace("CERT", &format!("{dir}/{server_cert}"))
            .replace("CLIENT_CA", &format!("{dir}/ca/oqs-client-ca.pem"));
        let conf_path = run.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let pid = self.spawn(
            Role::Closed,
            &[
                "nginx",
                "-c",
                conf_path.to_str().expect("lab dir path is UTF-8"),
            ],
        );
        let up = wait_for(10, || {
            process_ended(pid)
                || self
                    .ok(Role::Closed, &["ss", "-Htln", "sport = :443"])
                    .contains("10.200.0.10:443")
        });
        assert!(
            up && !process_ended(pid),
            "nginx did not start in closed:\n{}",
            std::fs::read_to_string(run.join("error.log")).unwrap_or_default()
        );
        Nginx {
            pid,
            access_log: run.join("access.log"),
        }
    }
}

/// A DNS server (dnsmasq) the lab runs: its names come from a hosts file it re-reads on
/// SIGHUP, and it logs every query it receives.
pub struct DnsServer {
    pub pid: u32,
    pub hosts: PathBuf,
    pub query_log: PathBuf,
}

impl DnsServer {
    /// Replace the names it answers (`ADDRESS NAME` lines) and make it re-read them.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("write the DNS server's hosts file");
        crate::signal(self.pid, "HUP");
    }

    /// The names it was asked about so far.
    pub fn queries(&self) -> String {
        std::fs::read_to_string(&self.query_log).unwrap_or_default()
    }
}

impl Lab {
    /// The closed network's DNS on 10.200.0.53 (what `closed_network.dns` names), answering
    /// `hweb-api.oqs.example` and `claims.oqs.example` with 10.200.0.10, TTL 2 s.
    pub fn start_closed_dns(&self) -> DnsServer {
        self.start_dns(
            Role::Closed,
            "10.200.0.53",
            "oqs.example",
            "10.200.0.10 hweb-api.oqs.example claims.oqs.example\n",
        )
    }

    /// "The internet's" resolver on 198.51.100.1, answering `www.example.com` with 192.0.2.80.
    pub fn start_internet_dns(&self) -> DnsServer {
        self.start_dns(
            Role::Inet,
            "198.51.100.1",
            "example.com",
            "192.0.2.80 www.example.com\n",
        )
    }

    fn start_dns(&self, role: Role, address: &str, zone: &str, hosts: &str) -> DnsServer {
        let stem = format!("{}-dns", role.name());
        let hosts_file = self.next_file(&stem, "hosts");
        let query_log = self.next_file(&stem, "queries");
        std::fs::write(&hosts_file, hosts).expect("write the DNS server's hosts file");
        let pid = self.spawn(
            role,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--bind-interfaces",
                &format!("--listen-address={address}"),
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts_file.display()),
                &format!("--local=/{zone}/"),
                "--local-ttl=2",
                "--log-queries",
                &format!("--log-facility={}", query_log.display()),
            ],
        );
        let up = wait_for(10, || {
            process_ended(pid)
                || self
                    .ok(role, &["ss", "-Hulnp", "sport = :53"])
                    .contains(address)
        });
        assert!(
            up && !process_ended(pid),
            "dnsmasq did not start in {}: {}",
            role.name(),
            std::fs::read_to_string(&query_log).unwrap_or_default()
        );
        DnsServer {
            pid,
            hosts: hosts_file,
            query_log,
        }
    }
}

impl Lab {
    /// A PC fresh out of its box: no IPv4 address, no IPv4 route.
    pub fn unaddress(&self, pc: Role) {
        self.ok(pc, &["ip", "-4", "address", "flush", "dev", "eth0"]);
        let _ = self.exec(pc, &["ip", "-4", "route", "flush", "table", "main"]);
    }

    /// One run of a real DHCP client (busybox udhcpc) on a PC's eth0: it configures the
    /// address and the default route it is given and returns `ip=… router=… dns=… lease=…`,
    /// or what udhcpc said when it got no lease.
    pub fn dhcp_client(&self, pc: Role) -> Result<String, String> {
        let script = self.next_file(&format!("udhcpc-{}", pc.name()), "sh");
        let out = script.with_extension("env");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip -4 address flush dev \"$interface\"\n  ip address add \"$ip/$mask\" dev \"$interface\"\n  ip route replace default via \"$router\"\n  echo \"ip=$ip router=$router dns=$dns lease=$lease\" > {}\nesac\n",
                out.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let script = script.to_str().unwrap_or_default().to_owned();
        let run = self.exec(
            pc,
            &[
                "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "2", "-s",
                &script,
            ],
        );
        std::fs::read_to_string(&out).map_err(|_| {
            format!(
                "udhcpc in {} got no lease: {}{}",
                pc.name(),
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            )
        })
    }

    /// `dig` from a role's namespace (3 s, one try), e.g. `dig(Role::Pc, "@192.168.50.1",
    /// &["+short", "name"])`: what it printed.
    pub fn dig(&self, from: Role, server: &str, args: &[&str]) -> String {
        let mut full = vec!["dig", "+time=3", "+tries=1", server];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&self.exec(from, &full).stdout).into_owned()
    }
}

/// A running tcpdump; [`Capture::stop`] returns what it saw.
pub struct Capture<'lab> {
    lab: &'lab Lab,
    role: Role,
    pid: Option<u32>,
    file: PathBuf,
    /// Where the end marker is sent (None: no IPv4 broadcast on the interface, or `any`).
    end: Option<std::net::Ipv4Addr>,
}

impl Capture<'_> {
    /// Whether tcpdump still runs (it exits when its interface goes away or down).
    pub fn running(&self) -> bool {
        self.pid.is_some_and(|pid| !process_ended(pid))
    }

    /// Stop tcpdump and return the packets, one `tcpdump -r FILE -n` line each.
    pub fn stop(mut self) -> Vec<String> {
        match self.end {
            Some(to) => self.wait_for_the_end_marker(to),
            None => self.settle(),
        }
        if let Some(pid) = self.pid.take() {
            self.lab.stop(pid);
        }
        self.read()
            .into_iter()
            .filter(|line| !is_end_marker(line))
            .collect()
    }

    /// Every line in the file so far (end markers, ours or another capture's, included).
    fn read(&self) -> Vec<String> {
        // Read inside the namespace: with `-i any`, interface names are looked up by index
        // when the file is read, and the host's indexes name other interfaces.
        let out = self.lab.exec(
            self.role,
            &[
                "tcpdump",
                "-n",
                "-r",
                self.file.to_str().expect("lab dir path is UTF-8"),
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Send the end marker out of the interface and wait until tcpdump has written it.
    fn wait_for_the_end_marker(&self, to: std::net::Ipv4Addr) {
        let peer = lab_peer_bin();
        let to = format!("{to}:{CAPTURE_END_PORT}");
        let send = || {
            self.lab.exec(
                self.role,
                &[
                    peer.to_str().expect("lab-peer path is UTF-8"),
                    "datagram",
                    &to,
                    CAPTURE_END,
                ],
            )
        };
        let out = send();
        assert!(
            out.status.success(),
            "capture end marker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut sent = 1;
        // tcpdump writes it once it is scheduled; two more markers in case one is lost (a
        // full socket buffer); every one is filtered out of the result.
        let seen = wait_for(30, || {
            if self.read().iter().any(|l| is_end_marker(l)) {
                return true;
            }
            if sent < 3 {
                std::thread::sleep(Duration::from_millis(100));
                sent += 1;
                let _ = send();
            }
            false
        });
        assert!(
            seen,
            "tcpdump did not write the capture's end marker within 30 s"
        );
    }

    /// Packets still on their way to the file: wait until it has not grown for 150 ms.
    fn settle(&self) {
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(150));
            let now = size();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

/// A `tcpdump -n -r` line of an end marker (any capture's).
fn is_end_marker(line: &str) -> bool {
    line.contains(&format!(
        ".{CAPTURE_END_PORT}: UDP, length {}",
        CAPTURE_END.len()
    ))
}

impl Drop for Capture<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            self.lab.stop(pid);
        }
    }
}
