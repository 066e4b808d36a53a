//! WireGuard in the lab: the concentrator in `vpngw` is wireguard-go configured with `wg` (a
//! peer oqs-edge did not write), and the router runs oqs-edge with `tunnel.type: wireguard`.
//!
//! ```text
//! router oqs-wg0 10.201.0.2 ── UDP 51820 over inet ── 203.0.113.2 [vpngw] <if> 10.201.0.1/24
//! ```
//!
//! The carrier (`inet`) still routes 10.200.0.0/24 to `vpngw` in cleartext, so a packet the
//! router let out of the tunnel would reach the closed network: the kill switch, not the
//! topology, is what keeps it off the WAN, and a capture in `inet` sees whether it does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::lab::{Lab, Role};
use crate::{oqs_edge_bin, process_ended, wait_for};

/// The concentrator's public address and WireGuard port.
pub const CONCENTRATOR: &str = "203.0.113.2:51820";
/// The name `lab-hosts` maps to the concentrator (see [`EtcOverride`]).
pub const CONCENTRATOR_NAME: &str = "vpngw.lab.example";
/// The router's tunnel address; the concentrator's is 10.201.0.1/24.
pub const ROUTER_TUNNEL_ADDRESS: &str = "10.201.0.2/32";

/// wireguard-go in `vpngw`.
pub struct Concentrator {
    /// Its interface. wireguard-go's UAPI socket `/var/run/wireguard/<if>.sock` is host-wide,
    /// so the name is unique per test process and lab.
    pub interface: String,
    pub public_key: String,
    key_file: PathBuf,
    /// The router's public key, the one peer it accepts.
    router_public: String,
    /// Its UDP port in `vpngw` (51820, or another for a second concentrator).
    pub port: u16,
    pub pid: Option<u32>,
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A key pair made with `wg genkey`/`wg pubkey` (the concentrator operator's tools); returns
/// the public key.
fn wg_keypair(lab: &Lab, file: &Path) -> String {
    std::fs::create_dir_all(file.parent().expect("a key file has a parent dir"))
        .expect("create the key dir");
    let file = file.to_str().expect("lab dir path is UTF-8");
    lab.ok(
        Role::Vpngw,
        &[
            "sh",
            "-c",
            &format!("umask 077 && wg genkey > '{file}' && wg pubkey < '{file}'"),
        ],
    )
    .trim()
    .to_owned()
}

impl Concentrator {
    /// Make the concentrator's key and start it, accepting `router_public` from 10.201.0.2.
    pub fn start(lab: &Lab, router_public: &str) -> Concentrator {
        Self::start_on(lab, router_public, 51820)
    }

    /// A concentrator on its own UDP port with its own key (a second one in the same `vpngw`,
    /// for the failover tests).
    pub fn start_on(lab: &Lab, router_public: &str, port: u16) -> Concentrator {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let interface = format!("owg{}-{n}", std::process::id() % 10_000_000);
        let key_file = lab.dir().join("vpngw").join(format!("wg-{port}.key"));
        let public_key = wg_keypair(lab, &key_file);
        let mut c = Concentrator {
            interface,
            public_key,
            key_file,
            router_public: router_public.to_owned(),
            port,
            pid: None,
        };
        c.restart(lab);
        c
    }

    /// (Re)start wireguard-go with the same key and peer.
    pub fn restart(&mut self, lab: &Lab) {
        let socket = PathBuf::from(format!("/var/run/wireguard/{}.sock", self.interface));
        let pid = lab.spawn(
            Role::Vpngw,
            &[
                "env",
                // wireguard-go refuses to run on Linux without it (it prefers the kernel's
                // module, which these kernels lack).
                "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                "wireguard-go",
                "-f",
                &self.interface,
            ],
        );
        assert!(
            wait_for(10, || process_ended(pid) || socket.exists()),
            "wireguard-go did not create {}",
            socket.display()
        );
        assert!(!process_ended(pid), "wireguard-go exited at start");
        let key = self.key_file.to_str().expect("lab dir path is UTF-8");
        lab.ok(
            Role::Vpngw,
            &[
                "wg",
                "set",
                &self.interface,
                "private-key",
                key,
                "listen-port",
                &self.port.to_string(),
                "peer",
                &self.router_public,
                "allowed-ips",
                "10.201.0.2/32",
            ],
        );
        lab.ok(
            Role::Vpngw,
            &[
                "ip",
                "address",
                "add",
                "10.201.0.1/24",
                "dev",
                &self.interface,
            ],
        );
        lab.ok(Role::Vpngw, &["ip", "link", "set", &self.interface, "up"]);
        self.pid = Some(pid);
    }

    /// Kill wireguard-go (SIGTERM by its PID); its interface and routes go with it.
    pub fn stop(&mut self, lab: &Lab) {
        if let Some(pid) = self.pid.take() {
            lab.stop(pid);
        }
    }

    /// The Unix time of the last handshake with the router, as wireguard-go reports it
    /// (0: none yet).
    pub fn latest_handshake(&self, lab: &Lab) -> u64 {
        let out = lab.ok(
            Role::Vpngw,
            &["wg", "show", &self.interface, "latest-handshakes"],
        );
        out.split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }
}

/// `ip netns exec` bind-mounts `/etc/netns/<ns>/<file>` over `/etc/<file>`: the router's
/// names resolve from a hosts file of the lab's, and DNS asks 127.0.0.1 (nothing listens), so
/// no query leaves the lab. Removed when dropped.
pub struct EtcOverride {
    dir: PathBuf,
}

impl EtcOverride {
    pub fn router(lab: &Lab, concentrator_address: &str) -> EtcOverride {
        let dir = Path::new("/etc/netns").join(lab.ns(Role::Router));
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<ns>");
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("write resolv.conf");
        let o = EtcOverride { dir };
        o.point_name_at(concentrator_address);
        o
    }

    /// Make [`CONCENTRATOR_NAME`] resolve to `address` in the router.
    pub fn point_name_at(&self, address: &str) {
        std::fs::write(
            self.dir.join("hosts"),
            format!("127.0.0.1 localhost\n{address} {CONCENTRATOR_NAME}\n"),
        )
        .expect("write hosts");
    }
}

impl Drop for EtcOverride {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The router's key, made by `oqs-edge wireguard keygen` as an installer would; returns the
/// key file and the public key it printed.
pub fn router_keygen(lab: &Lab) -> (PathBuf, String) {
    let file = lab.dir().join("wg-secrets").join("wg.key");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("create the secrets dir");
    let out = std::process::Command::new(oqs_edge_bin())
        .args(["wireguard", "keygen", "--out"])
        .arg(&file)
        .output()
        .expect("run oqs-edge wireguard keygen");
    assert!(
        out.status.success(),
        "keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (file, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// config/lab.yaml with its IP-VPN tunnel replaced by WireGuard to the concentrator.
pub fn wireguard_config(
    lab: &Lab,
    key_file: &Path,
    concentrator_public: &str,
    endpoint: &str,
    keepalive: &str,
) -> String {
    let yaml = lab.config_from_lab_yaml();
    let ip_vpn = "  type: ip-vpn                         # 閉域網 / IP-VPN: no tunnel, the line is the closed network\n  ip_vpn:\n    gateway: 198.51.100.1              # the \"inet\" namespace: next hop for 10.200.0.0/24\n";
    assert!(
        yaml.contains(ip_vpn),
        "config/lab.yaml's tunnel section changed: update netns-tests/src/wireguard.rs"
    );
    let wireguard = format!(
        "  type: wireguard\n  wireguard:\n    interface: oqs-wg0\n    private_key_file: {}\n    address: {ROUTER_TUNNEL_ADDRESS}\n    listen_port: 51820\n    peer:\n      public_key: \"{concentrator_public}\"\n      endpoint: {endpoint}\n      persistent_keepalive: {keepalive}\n",
        key_file.display()
    );
    yaml.replace(ip_vpn, &wireguard)
}
