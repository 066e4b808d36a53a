//! IPsec in the lab: a charon (kernel-libipsec: the test kernel has no ESP) in `router`, driven
//! by oqs-edge, and a peer charon in `vpngw` that the test configures itself with swanctl,
//! as a provider's gateway would be. Each charon gets its own strongswan.conf
//! (`STRONGSWAN_CONF`), its own VICI socket and a private `/run` (a bind mount that lives
//! only in its mount namespace: charon hard-codes its pid file there). The IKE certificates
//! come from a test CA made with openssl; a second, foreign CA signs what must be refused.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lab::{Lab, Role};
use crate::{process_ended, signal, wait_for, Netns};

/// The lab's PSK (the gateway's; a test may give the router another).
pub const PSK: &str = "lab-psk-0123456789abcdef";
pub const ROUTER_ID: &str = "router.lab.test";
pub const VPNGW_ID: &str = "vpngw.lab.test";

/// strongswan.conf for a lab charon: exactly these plugins (kernel-libipsec before
/// kernel-netlink; kdf is required with an explicit list), routes for the remote traffic
/// selectors in table 220 via ipsec0, fast retransmits.
const STRONGSWAN_CONF: &str = "\
charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf hmac sha2 kernel-libipsec kernel-netlink socket-default vici updown
  install_routes = yes
  routing_table = 220
  routing_table_prio = 220
  install_virtual_ip = no
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  retransmit_tries = 4
  filelog {
    lab {
      path = @DIR@/charon.log
      time_format = %T
      append = yes
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      knl = 1
    }
  }
  plugins {
    vici {
      socket = unix://@DIR@/charon.vici
    }
    revocation {
      enable_ocsp = no
      enable_crl = no
    }
  }
}
";

/// A charon the lab started.
pub struct Charon {
    /// The namespace it runs in.
    pub ns: String,
    pub pid: u32,
    pub dir: PathBuf,
}

impl Charon {
    pub fn vici(&self) -> PathBuf {
        self.dir.join("charon.vici")
    }

    pub fn uri(&self) -> String {
        format!("unix://{}", self.vici().display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// `swanctl ARGS --uri <this charon>` in its namespace; stdout, or a panic with stderr.
    pub fn swanctl(&self, lab: &Lab, args: &[&str]) -> String {
        let uri = self.uri();
        let mut all = vec!["swanctl"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--uri", &uri]);
        lab.ok_in(&self.ns, &all)
    }
}

/// Start a charon in `role`, its files under `<lab dir>/ipsec-<name>`; returns once its VICI
/// socket answers. Starting again with the same name reuses the directory (a restart).
pub fn start_charon(lab: &Lab, role: Role, name: &str) -> Charon {
    start_charon_in(lab, lab.ns(role), name)
}

/// [`start_charon`] with charon's own retransmit timing (4 s, x1.8, 5 tries: 165 s before
/// it gives up an exchange), as on a router in the field: the lab's fast timing would hide a
/// wait on a retransmit.
pub fn start_charon_with_default_retransmits(lab: &Lab, role: Role, name: &str) -> Charon {
    let conf = STRONGSWAN_CONF
        .lines()
        .filter(|l| !l.trim_start().starts_with("retransmit_"))
        .collect::<Vec<_>>()
        .join("\n");
    start_charon_conf(lab, lab.ns(role), name, &conf)
}

/// [`start_charon`] in namespace `ns` (a role's, or one a test added).
pub fn start_charon_in(lab: &Lab, ns: &str, name: &str) -> Charon {
    start_charon_conf(lab, ns, name, STRONGSWAN_CONF)
}

fn start_charon_conf(lab: &Lab, ns: &str, name: &str, conf: &str) -> Charon {
    let dir = lab.dir().join(format!("ipsec-{name}"));
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir.join("run"));
    // A killed charon leaves its pid file, and its zombie (reaped only when the lab drops)
    // makes that pid look alive: charon would refuse to start as "already running".
    let _ = std::fs::remove_file(dir.join("run/charon.pid"));
    let dir_text = dir.to_str().expect("lab dir path is UTF-8");
    std::fs::write(dir.join("strongswan.conf"), conf.replace("@DIR@", dir_text))
        .expect("write strongswan.conf");
    let script = format!(
        "mount --bind {dir_text}/run /run && STRONGSWAN_CONF={dir_text}/strongswan.conf exec /usr/lib/ipsec/charon"
    );
    let pid = lab.spawn_in(ns, &["sh", "-c", &script]);
    let charon = Charon {
        ns: ns.to_owned(),
        pid,
        dir,
    };
    let answers = || {
        process_ended(pid)
            || lab
                .exec_in(ns, &["swanctl", "--version", "--uri", &charon.uri()])
                .status
                .success()
    };
    assert!(
        wait_for(15, answers) && !process_ended(pid),
        "charon in {ns} did not start:\n{}",
        charon.log()
    );
    charon
}

/// Kill a charon as a crash would (SIGKILL: no DELETE sent to the peer); returns when gone.
pub fn kill_charon(charon: &Charon) {
    signal(charon.pid, "KILL");
    assert!(
        wait_for(10, || process_ended(charon.pid)),
        "charon did not die"
    );
}

/// The gateway's side of the tunnel, written into `<charon dir>/swanctl/` and loaded.
pub enum GatewayAuth<'a> {
    Psk(&'a str),
    /// The gateway's certificate and key, and the CA it trusts for the router.
    Certificate {
        cert: &'a Path,
        key: &'a Path,
        ca: &'a Path,
    },
}

/// Configure the peer charon as the provider's gateway: it answers, never initiates, and
/// clears a dead peer (the router must come back on its own).
pub fn configure_gateway(lab: &Lab, gw: &Charon, auth: GatewayAuth<'_>) {
    configure_gateway_at(lab, gw, auth, "203.0.113.2");
}

/// [`configure_gateway`] for a gateway whose address is `local_addr`.
pub fn configure_gateway_at(lab: &Lab, gw: &Charon, auth: GatewayAuth<'_>, local_addr: &str) {
    configure_gateway_for(lab, gw, auth, local_addr, "198.51.100.2", true);
}

/// [`configure_gateway_at`] answering routers at `remote_addrs` (swanctl.conf's syntax:
/// `%any` for a gateway whose clients are on dynamic addresses), with MOBIKE (RFC 4555, a
/// client moving its SAs to a new address) or without, as some providers' gateways are.
pub fn configure_gateway_for(
    lab: &Lab,
    gw: &Charon,
    auth: GatewayAuth<'_>,
    local_addr: &str,
    remote_addrs: &str,
    mobike: bool,
) {
    let mobike = if mobike { "yes" } else { "no" };
    let conf_dir = gw.dir.join("swanctl");
    for sub in ["", "private", "x509", "x509ca"] {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(conf_dir.join(sub));
    }
    // Keys loaded by an earlier configuration would still be offered: start clean.
    for entry in std::fs::read_dir(conf_dir.join("private")).expect("read private/") {
        let _ = std::fs::remove_file(entry.expect("dir entry").path());
    }
    let (local, remote, secrets, send_cert) = match auth {
        GatewayAuth::Psk(psk) => (
            format!("auth = psk\n      id = {VPNGW_ID}"),
            format!("auth = psk\n      id = {ROUTER_ID}"),
            format!(
                "secrets {{\n  ike-lab {{\n    id-a = {ROUTER_ID}\n    id-b = {VPNGW_ID}\n    secret = \"{psk}\"\n  }}\n}}\n"
            ),
            "",
        ),
        GatewayAuth::Certificate { cert, key, ca } => {
            std::fs::copy(key, conf_dir.join("private/vpngw.key")).expect("copy the key");
            (
                format!(
                    "auth = pubkey\n      certs = {}\n      id = {VPNGW_ID}",
                    cert.display()
                ),
                format!(
                    "auth = pubkey\n      id = {ROUTER_ID}\n      cacerts = {}",
                    ca.display()
                ),
                String::new(),
                "send_cert = always",
            )
        }
    };
    let conf = format!(
        "connections {{
  lab {{
    version = 2
    local_addrs = {local_addr}
    remote_addrs = {remote_addrs}
    mobike = {mobike}
    proposals = aes256gcm16-prfsha256-ecp256,aes256-sha256-modp2048
    dpd_delay = 2s
    {send_cert}
    local {{
      {local}
    }}
    remote {{
      {remote}
    }}
    children {{
      closed {{
        local_ts = 10.200.0.0/24
        remote_ts = 192.168.50.0/24
        esp_proposals = aes256gcm16-ecp256,aes256-sha256-modp2048
        start_action = none
        dpd_action = clear
        close_action = none
      }}
    }}
  }}
}}
{secrets}"
    );
    let file = conf_dir.join("swanctl.conf");
    std::fs::write(&file, conf).expect("write swanctl.conf");
    gw.swanctl(
        lab,
        &[
            "--load-all",
            "--clear",
            "--noprompt",
            "--file",
            file.to_str().expect("lab dir path is UTF-8"),
        ],
    );
}

/// Close the gateway's SAs with the router (as a provider's maintenance would).
pub fn gateway_terminate(lab: &Lab, gw: &Charon) {
    let _ = lab.exec_in(
        &gw.ns,
        &[
            "swanctl",
            "--terminate",
            "--ike",
            "lab",
            "--timeout",
            "5",
            "--uri",
            &gw.uri(),
        ],
    );
}

/// The second gateway's address (a provider's second VPN gateway, in another network).
pub const SECOND_GATEWAY: &str = "198.18.0.2";

/// A second VPN gateway, in a namespace of its own: reached from `inet` on 198.18.0.2 and
/// reaching the same closed server through a link of its own (10.200.1.1 ─ 10.200.1.10). The
/// server answers through the gateway a flow last came in by (a connection mark per link and
/// a routing table per mark), as a closed network behind two gateways routes to the one that
/// holds the session: a TCP flow survives a switch.
pub fn second_gateway(lab: &Lab) -> Netns {
    let ns = lab.add_namespace("vpngw2");
    for (a, a_if, b, b_if) in [
        (lab.ns(Role::Inet), "eth2", ns.name.as_str(), "eth0"),
        (ns.name.as_str(), "eth1", lab.ns(Role::Closed), "eth1"),
    ] {
        let out = Command::new("ip")
            .args([
                "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
            ])
            .output()
            .expect("run ip link add");
        assert!(
            out.status.success(),
            "veth {a}/{a_if} - {b}/{b_if}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let batch = |ns: &str, lines: &[&str]| {
        for line in lines {
            let args: Vec<&str> = line.split_whitespace().collect();
            lab.ok_in(ns, &args);
        }
    };
    batch(
        lab.ns(Role::Inet),
        &[
            "ip link set eth2 up",
            "ip address add 198.18.0.1/24 dev eth2",
        ],
    );
    batch(
        lab.ns(Role::Closed),
        &[
            "ip link set eth1 up",
            "ip address add 10.200.1.10/24 dev eth1",
        ],
    );
    batch(
        &ns.name,
        &[
            "sysctl -qw net.ipv4.ip_forward=1",
            "ip link set lo up",
            "ip link set eth0 up",
            "ip link set eth1 up",
            "ip address add 198.18.0.2/24 dev eth0",
            "ip address add 10.200.1.1/24 dev eth1",
            // charon routes the router's segments into its tunnel with a source inside its
            // own traffic selector (10.200.0.0/24): without one the CHILD_SA is refused.
            "ip address add 10.200.0.2/32 dev lo",
            "ip route add default via 198.18.0.1",
            "ip route add 10.200.0.0/24 via 10.200.1.10",
        ],
    );
    let marks = lab.dir().join("closed-by-gateway.nft");
    std::fs::write(
        &marks,
        "table inet bygw {
 chain pre {
  type filter hook prerouting priority mangle;
  iifname \"eth0\" ct mark set 1
  iifname \"eth1\" ct mark set 2
 }
 chain out {
  type route hook output priority mangle;
  ct mark != 0 meta mark set ct mark
 }
}
",
    )
    .expect("write the closed server's nft");
    let closed = lab.ns(Role::Closed);
    lab.ok_in(closed, &["nft", "-f", marks.to_str().expect("UTF-8 path")]);
    batch(
        closed,
        &[
            "sysctl -qw net.ipv4.conf.all.rp_filter=0",
            "sysctl -qw net.ipv4.conf.eth1.rp_filter=0",
            "ip rule add fwmark 1 table 101",
            "ip rule add fwmark 2 table 102",
            "ip route add default via 10.200.0.1 table 101",
            "ip route add default via 10.200.1.1 table 102",
        ],
    );
    ns
}

/// The lab's WAN carries no route to the closed network: the carrier (`inet`) forgets its
/// IP-VPN route, so only the tunnel reaches `closed`, and a leak dies in `inet` (where the
/// capture sees it).
pub fn carrier_without_closed_route(lab: &Lab) {
    lab.ok(Role::Inet, &["ip", "route", "del", "10.200.0.0/24"]);
}

/// config/lab.yaml with its IP-VPN tunnel replaced by IPsec to the lab's gateway (libipsec
/// dataplane, the router's charon), `auth` being the YAML under `auth:`.
pub fn lab_yaml_with_ipsec(lab: &Lab, router: &Charon, auth_yaml: &str) -> String {
    let yaml = lab.config_from_lab_yaml();
    let start = yaml
        .find("tunnel:\n")
        .expect("lab.yaml has a tunnel section");
    let end = yaml[start..]
        .find("\n\n")
        .map(|i| start + i)
        .expect("the tunnel section ends with a blank line");
    let tunnel = format!(
        "tunnel:
  type: ipsec
  ipsec:
    vici_socket: {}
    dataplane: libipsec
    local_address: 198.51.100.2
    remote_address: 203.0.113.2
    local_id: {ROUTER_ID}
    remote_id: {VPNGW_ID}
    auth:
{auth_yaml}
    ike_proposals: [aes256gcm16-prfsha256-ecp256]
    esp_proposals: [aes256gcm16-ecp256]
    dpd_delay: 2s",
        router.vici().display()
    );
    format!("{}{tunnel}{}", &yaml[..start], &yaml[end..])
}

/// A lab on IPsec with a PSK: the gateway's charon in `vpngw` with `gateway_psk`, the router's
/// charon, and the daemon's config with `router_psk` in `secrets/ipsec.psk` (the carrier has no
/// route to the closed network, so only the tunnel reaches it). Returns (lab, gateway, router's
/// charon, config).
pub fn psk_lab(name: &str, router_psk: &str, gateway_psk: &str) -> (Lab, Charon, Charon, PathBuf) {
    let lab = Lab::build(name);
    let (gw, router, yaml) = psk_setup(&lab, router_psk, gateway_psk);
    let config = lab.write_config(&yaml);
    (lab, gw, router, config)
}

/// [`psk_lab`] in a lab the caller built: the carrier forgets its closed route, both charons
/// run, the gateway is configured and `secrets/ipsec.psk` written. Returns (gateway, router's
/// charon, the daemon's config as YAML, not yet written).
pub fn psk_setup(lab: &Lab, router_psk: &str, gateway_psk: &str) -> (Charon, Charon, String) {
    carrier_without_closed_route(lab);
    let gw = start_charon(lab, Role::Vpngw, "vpngw");
    configure_gateway(lab, &gw, GatewayAuth::Psk(gateway_psk));
    let router = start_charon(lab, Role::Router, "router");
    // Creates the lab's files (secrets/ among them) before the PSK goes there.
    lab.config_from_lab_yaml();
    let psk = write_secret(lab, "ipsec.psk", &format!("{router_psk}\n"));
    let yaml = lab_yaml_with_ipsec(lab, &router, &format!("      psk_file: {}", psk.display()));
    (gw, router, yaml)
}

/// A secret file (mode 600) in the lab's `secrets/`.
pub fn write_secret(lab: &Lab, name: &str, body: &str) -> PathBuf {
    let path = lab.dir().join("secrets").join(name);
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(body.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// `oqs-edge status --json` of the lab's daemon.
pub fn status(lab: &Lab) -> serde_json::Value {
    let bin = crate::oqs_edge_bin();
    let socket = lab.dir().join("control.sock");
    let out = lab.exec(
        Role::Router,
        &[
            bin.to_str().expect("path is UTF-8"),
            "status",
            "--json",
            "--socket",
            socket.to_str().expect("path is UTF-8"),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// IKE certificates: `ike/ca.pem` signs `router` and `vpngw`; `ike/foreign-ca.pem` signs
/// `vpngw-foreign` (the same name, from a CA the router does not trust). Keys are P-256.
pub struct IkePki {
    pub dir: PathBuf,
}

impl IkePki {
    pub fn create(lab: &Lab) -> IkePki {
        let dir = lab.dir().join("ike");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create ike/");
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).expect("write openssl.cnf");
        let pki = IkePki { dir };
        pki.ca("ca", "/CN=oqs-edge lab IKE CA");
        pki.ca("foreign-ca", "/CN=someone else's CA");
        pki.issue("router", ROUTER_ID, "ca");
        pki.issue("vpngw", VPNGW_ID, "ca");
        pki.issue("vpngw-foreign", VPNGW_ID, "foreign-ca");
        pki
    }

    pub fn pem(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.pem"))
    }

    pub fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }

    fn ca(&self, stem: &str, subject: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
            "-days",
            "400",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.pem"),
            "-subj",
            subject,
        ]);
    }

    fn issue(&self, stem: &str, name: &str, ca: &str) {
        let ext = format!("{stem}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nsubjectAltName = DNS:{name}\n"
            ),
        )
        .expect("write extensions");
        self.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "400",
            "-extfile",
            &ext,
            "-out",
            &format!("{stem}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        // Private keys: owner only, as check demands of secret files.
        for entry in std::fs::read_dir(&self.dir).expect("read ike/") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "key") {
                use std::os::unix::fs::PermissionsExt as _;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";
