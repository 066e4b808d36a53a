//! The WAN by DHCP in the lab: `inet` runs dnsmasq as the ISP (DHCPv4, router advertisements)
//! and the daemon runs dhcpcd on the router's WAN (`wan.ipv4: dhcp`).
//!
//! dhcpcd keeps its own state in /run/dhcpcd and /var/lib/dhcpcd: here it runs through a
//! wrapper (`OQS_EDGE_DHCPCD`) that binds private copies of both from the lab's dir, so the
//! host's are never touched and two labs never share them.

use std::path::{Path, PathBuf};

use crate::lab::{Lab, Role};
use crate::process_ended;

/// The wrapper the daemon starts as dhcpcd: same PID (exec), private /run and /var/lib/dhcpcd
/// from the lab's `dhcpcd-root`. The lab is found from dhcpcd's `-f <lab>/state/dhcpcd.conf`,
/// so one wrapper, named in the environment once, serves every lab: tests that run side by
/// side never hand their daemon another lab's dhcpcd state (two dhcpcds sharing /run: the
/// second only signals the first and exits).
pub fn dhcpcd_wrapper(lab: &Lab) -> PathBuf {
    let dir = lab.dir().join("dhcpcd-root");
    for sub in ["run", "lib"] {
        std::fs::create_dir_all(dir.join(sub)).expect("create the dhcpcd root");
    }
    static WRAPPER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    WRAPPER
        .get_or_init(|| {
            let wrapper =
                std::env::temp_dir().join(format!("oqs-edge-dhcpcd-wrapper-{}", std::process::id()));
            std::fs::write(
                &wrapper,
                "#!/bin/sh\n\
                 conf=; prev=\n\
                 for a in \"$@\"; do [ \"$prev\" = -f ] && conf=$a; prev=$a; done\n\
                 root=$(dirname \"$(dirname \"$conf\")\")/dhcpcd-root\n\
                 exec unshare -m sh -c 'mount --bind \"$0/run\" /run && mount --bind \"$0/lib\" /var/lib/dhcpcd && exec /usr/sbin/dhcpcd \"$@\"' \"$root\" \"$@\"\n",
            )
            .expect("write the dhcpcd wrapper");
            std::fs::set_permissions(
                &wrapper,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod the dhcpcd wrapper");
            // SAFETY (set_var): once per process, before any daemon of the test is spawned.
            std::env::set_var("OQS_EDGE_DHCPCD", &wrapper);
            wrapper
        })
        .clone()
}

/// dnsmasq in `inet` as the ISP on its eth0 (toward the router), DNS off; returns its PID.
pub fn start_isp(lab: &Lab, extra: &[&str]) -> u32 {
    let leases = lab.dir().join(format!("isp-{}.leases", extra.len()));
    let leasefile = format!("--dhcp-leasefile={}", leases.display());
    let mut args = vec![
        "dnsmasq",
        "--no-daemon",
        "--port=0",
        "--interface=eth0",
        "--bind-dynamic",
        "--pid-file=",
        "--user=root",
        "--group=root",
        "--log-dhcp",
        &leasefile,
    ];
    args.extend_from_slice(extra);
    lab.spawn(Role::Inet, &args)
}

/// The ISP's DHCPv4: a pool of 198.51.100.50–59, 2-minute leases, its gateway and resolver.
pub const ISP_DHCP4: &[&str] = &[
    "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m",
    "--dhcp-option=option:router,198.51.100.1",
    "--dhcp-option=option:dns-server,198.51.100.53",
];

/// `yaml` with `wan_keys` after the line `  interface: wan0` (which may carry a comment).
pub fn with_wan_keys(yaml: &str, wan_keys: &str) -> String {
    let at = yaml
        .find("  interface: wan0")
        .expect("the config has wan.interface");
    let end = at + yaml[at..].find('\n').unwrap_or(0) + 1;
    format!("{}{wan_keys}{}", &yaml[..end], &yaml[end..])
}

/// The router's global addresses on wan0 of one family (`-4`/`-6`).
pub fn wan_addresses(lab: &Lab, family: &str) -> Vec<String> {
    let out = lab.exec(
        Role::Router,
        &[
            "ip", "-j", family, "address", "show", "dev", "wan0", "scope", "global",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().map(str::to_owned))
        .collect()
}

/// The router's default route of one family (`-4`/`-6`), as `ip route` prints it.
pub fn default_route(lab: &Lab, family: &str) -> String {
    let out = lab.exec(Role::Router, &["ip", family, "route", "show", "default"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PID in dhcpcd's pid file under the daemon's state dir, if that process runs.
pub fn dhcpcd_pid(state: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.join("dhcpcd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (!process_ended(pid)).then_some(pid)
}

/// The OS configured nothing on the WAN (no IPv4 address, no default route), and the daemon
/// will start dhcpcd through [`dhcpcd_wrapper`] (named in `OQS_EDGE_DHCPCD` once per process).
pub fn prepare(lab: &Lab) {
    lab.ok(
        Role::Router,
        &["ip", "-4", "address", "flush", "dev", "wan0"],
    );
    let _ = lab.exec(Role::Router, &["ip", "-4", "route", "del", "default"]);
    dhcpcd_wrapper(lab);
}
