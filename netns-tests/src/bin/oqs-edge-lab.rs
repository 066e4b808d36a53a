//! The main job: the network-namespace lab with the real `oqs-edge` as its router, on the lab
//! config built into this binary (config/lab.yaml). The router's OS has configured only its
//! WAN: oqs-edge puts the LAN addresses on, the PCs take theirs by DHCP from it and ask it for
//! names (the closed zone from the closed network's DNS, nothing else). Then it shows what the
//! router promises, with real traffic, and tears everything down (or, with `--keep`, waits
//! for Enter first).
//!
//!   sudo oqs-edge-lab [--keep]

use std::net::SocketAddr;
use std::process::ExitCode;

use netns_tests::lab::{Lab, Outcome, Role};
use netns_tests::{oqs_edge_bin, skip_unless_root};

/// One line of the tour: who tries what, what the policy says should happen.
struct Check {
    from: Role,
    to: &'static str,
    what: &'static str,
    expect: Outcome,
}

const CHECKS: &[Check] = &[
    Check {
        from: Role::Pc,
        to: "10.200.0.10:80",
        what: "eligibility PC → closed network (オンライン資格確認 server)",
        expect: Outcome::Connected,
    },
    Check {
        from: Role::Pc,
        to: "192.0.2.80:80",
        what: "eligibility PC → internet (IPv4)",
        expect: Outcome::Unreachable,
    },
    Check {
        from: Role::Pc,
        to: "[2001:db8:ffff::80]:80",
        what: "eligibility PC → internet (IPv6)",
        expect: Outcome::Unreachable,
    },
    Check {
        from: Role::Pc,
        to: "192.168.60.10:80",
        what: "eligibility PC → clinic PC (new connection)",
        expect: Outcome::Unreachable,
    },
    Check {
        from: Role::Clinic,
        to: "192.168.50.10:80",
        what: "clinic PC → eligibility PC",
        expect: Outcome::Connected,
    },
    Check {
        from: Role::Clinic,
        to: "10.200.0.10:80",
        what: "clinic PC → closed network directly (must use the proxy)",
        expect: Outcome::Unreachable,
    },
    Check {
        from: Role::Clinic,
        to: "192.0.2.80:80",
        what: "clinic PC → internet (segment has internet: deny)",
        expect: Outcome::Unreachable,
    },
];

fn words(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Connected => "connected".into(),
        Outcome::Refused => "refused (RST)".into(),
        Outcome::Unreachable => "rejected (ICMP admin-prohibited)".into(),
        Outcome::Timeout => "dropped (no answer)".into(),
        Outcome::Accepted => "accepted by the proxy".into(),
        Outcome::Other(s) => s.clone(),
    }
}

fn main() -> ExitCode {
    let keep = std::env::args().any(|a| a == "--keep");
    if skip_unless_root("oqs-edge-lab") {
        return ExitCode::from(77);
    }
    println!(
        "== building the lab: pc, clinic ─ router ─ inet ─ vpngw ─ closed (network namespaces)"
    );
    let lab = Lab::build("main");
    // A router whose OS configured only the WAN, PCs fresh out of their boxes.
    for (dev, address) in [
        ("lan0", "192.168.50.1/24"),
        ("lan0", "fd00:50::1/64"),
        ("lan1", "192.168.60.1/24"),
        ("lan1", "fd00:60::1/64"),
    ] {
        lab.ok(Role::Router, &["ip", "address", "del", address, "dev", dev]);
    }
    lab.unaddress(Role::Pc);
    lab.unaddress(Role::Clinic);
    // The eligibility API's route goes by name: the closed network's DNS resolves it.
    let yaml = lab.config_from_lab_yaml().replacen(
        "      upstream_address: 10.200.0.10    # the lab's upstream server\n",
        "",
        1,
    );
    let config = lab.write_config(&yaml);
    let closed_dns = lab.start_closed_dns();
    // The eligibility and claims endpoints: nginx demanding a client certificate.
    let nginx = lab.start_nginx("ca/oqs-server");
    println!(
        "== oqs-edge run in `{}` on the built-in lab config ({})",
        lab.ns(Role::Router),
        config.display()
    );
    let pid = lab.start_daemon(&config);
    println!("   running as pid {pid}: firewall applied, route to the closed network installed\n");

    let mut failed = 0;
    let mut shown = 0;
    {
        let mut show = |ok: bool, what: &str, got: &str| {
            failed += usize::from(!ok);
            shown += 1;
            println!("{} {what:<60} {got}", if ok { "✓" } else { "✗" });
        };
        for (pc, name, fixed) in [
            (Role::Pc, "eligibility PC", "192.168.50.10"),
            (Role::Clinic, "clinic PC", "192.168.60.10"),
        ] {
            match lab.dhcp_client(pc) {
                Ok(lease) => show(
                    lease.starts_with(&format!("ip={fixed} ")),
                    &format!("{name} asks for an address (DHCP)"),
                    &lease,
                ),
                Err(why) => show(false, &format!("{name} asks for an address (DHCP)"), &why),
            }
        }
        for (name, expect) in [
            ("hweb-api.oqs.example", "NOERROR 10.200.0.10"),
            ("www.example.com", "REFUSED"),
        ] {
            // The reply's status and its addresses, e.g. `NOERROR 10.200.0.10` or `REFUSED`.
            let reply = lab.dig(Role::Pc, "@192.168.50.1", &[name]);
            let status = reply
                .split("status: ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .unwrap_or("no answer");
            let addresses: Vec<&str> = reply
                .lines()
                .filter(|l| !l.starts_with(';') && l.contains("\tA\t"))
                .filter_map(|l| l.split_whitespace().last())
                .collect();
            let got = [status]
                .into_iter()
                .chain(addresses)
                .collect::<Vec<_>>()
                .join(" ");
            let why = if status == "REFUSED" {
                " (not a closed-network name: nothing left the router)"
            } else {
                " (from the closed network's DNS)"
            };
            show(
                got == expect,
                &format!("eligibility PC looks up {name}"),
                &format!("{got}{why}"),
            );
        }
    }
    for check in CHECKS {
        let to: SocketAddr = match check.to.parse() {
            Ok(to) => to,
            Err(_) => continue,
        };
        let got = lab.probe(check.from, to);
        let ok = got == check.expect;
        failed += usize::from(!ok);
        shown += 1;
        println!(
            "{} {:<60} {}{}",
            if ok { "✓" } else { "✗" },
            format!("{} ({})", check.what, check.to),
            words(&got),
            if ok {
                String::new()
            } else {
                format!("; expected {}", words(&check.expect))
            }
        );
    }

    // The proxy: a clinic PC asks the eligibility API through the router; the router presents
    // the clinic's certificate (電子証明書) to the upstream, which demands it.
    let ca = lab.dir().join("local-ca/ca.pem");
    let url = "https://192.168.60.1:8443/eligibility";
    let out = lab.exec(
        Role::Clinic,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca.to_str().unwrap_or_default(),
            url,
        ],
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ok = out.status.success() && answer.contains("dn=CN=1312345678");
    failed += usize::from(!ok);
    println!(
        "{} {:<60} {}",
        if ok { "✓" } else { "✗" },
        format!("clinic PC → eligibility API via the mTLS proxy ({url})"),
        if ok {
            format!("upstream saw the clinic's certificate: \"{answer}\"")
        } else {
            format!(
                "failed: {answer} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        }
    );
    drop(nginx);
    shown += 1;
    println!(
        "  (the route has no upstream_address: the proxy resolved hweb-api.oqs.example through the closed DNS{})",
        if closed_dns.queries().contains("from 198.51.100.2") {
            ", which saw the router ask"
        } else {
            ""
        }
    );

    let socket = lab.dir().join("control.sock");
    println!("\n== oqs-edge status --socket {}", socket.display());
    let status = std::process::Command::new(oqs_edge_bin())
        .args(["status", "--socket"])
        .arg(&socket)
        .output();
    match status {
        Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => println!("cannot run oqs-edge status: {e}"),
    }

    if keep {
        println!("\nThe lab is up. Try, e.g.:");
        println!("  ip netns exec {} ping -c1 10.200.0.10", lab.ns(Role::Pc));
        println!("  ip netns exec {} ping -c1 192.0.2.80", lab.ns(Role::Pc));
        println!(
            "  ip netns exec {} nft list table inet oqs_edge",
            lab.ns(Role::Router)
        );
        println!(
            "  {} status --socket {}",
            oqs_edge_bin().display(),
            socket.display()
        );
        println!("Press Enter to tear it down.");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    println!("\n== tearing down (oqs-edge stopped by its pid, namespaces deleted)");
    drop(lab);
    if failed == 0 {
        println!("all {shown} checks as the policy says");
        ExitCode::SUCCESS
    } else {
        println!("{failed} check(s) not as the policy says");
        ExitCode::FAILURE
    }
}
