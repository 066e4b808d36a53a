//! `oqs-edge diag` (疎通確認) against the real lab: every step passes on a healthy router, in
//! English and Japanese, and with one thing broken at a time the first ✗ names it.

use std::path::Path;
use std::process::Output;

use netns_tests::ipsec;
use netns_tests::lab::Nginx;
use netns_tests::wireguard::{
    router_keygen, wireguard_config, Concentrator, EtcOverride, CONCENTRATOR,
};
use netns_tests::{oqs_edge_bin, pki, skip_unless_root, wait_for, Lab, Role};

fn diag(lab: &Lab, config: &Path, extra: &[&str]) -> Output {
    let bin = oqs_edge_bin();
    let mut args = vec!["env", "-u", "LC_ALL", "-u", "LC_MESSAGES", "-u", "LANG"];
    args.extend(extra.iter().take_while(|a| a.contains('=')));
    args.push(bin.to_str().unwrap());
    args.extend_from_slice(&["diag", "-c", config.to_str().unwrap()]);
    args.extend(extra.iter().skip_while(|a| a.contains('=')));
    lab.exec(Role::Router, &args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON report's steps as (id, result).
fn steps(lab: &Lab, config: &Path) -> (Vec<(String, String)>, serde_json::Value, Option<i32>) {
    let out = diag(lab, config, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("diag --json printed no JSON ({e}):\n{}", text(&out)));
    let list = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (list, v, out.status.code())
}

/// The step `id` of a JSON report.
fn step(v: &serde_json::Value, id: &str) -> serde_json::Value {
    v["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no step {id}: {v:#}"))
}

fn first_failure(v: &serde_json::Value) -> Option<serde_json::Value> {
    v["steps"]
        .as_array()?
        .iter()
        .find(|s| s["result"] == "fail")
        .cloned()
}

/// Break something, run diag, and require the first ✗ to be `id` (and exit 1).
fn first_fail_is(lab: &Lab, config: &Path, id: &str, says: &str, phase: &str) -> serde_json::Value {
    let (_, v, code) = steps(lab, config);
    let first = first_failure(&v).unwrap_or_else(|| panic!("{phase}: no step failed: {v:#}"));
    assert_eq!(first["id"], id, "{phase}: the first ✗ is not {id}: {v:#}");
    assert!(
        first["message"].as_str().unwrap().contains(says)
            || first["detail"].as_str().unwrap().contains(says),
        "{phase}: the first ✗ does not say `{says}`: {first:#}"
    );
    assert!(
        first["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{first:#}"
    );
    assert_eq!(code, Some(1), "{phase}: exit code");
    v
}

/// The healthy lab: every step ✓ (the skipped ones only for a documented reason), exit 0, in
/// both languages, and --json lists the same steps as the text.
fn all_pass(lab: &Lab, config: &Path, expect_pass: &[&str]) {
    let en = diag(lab, config, &["--lang", "en"]);
    let said = text(&en);
    assert_eq!(en.status.code(), Some(0), "{said}");
    assert!(!said.contains('✗'), "{said}");
    assert!(said.contains("every step passed"), "{said}");
    let (list, v, code) = steps(lab, config);
    assert_eq!(code, Some(0), "{v:#}");
    for id in expect_pass {
        assert!(
            list.iter().any(|(i, r)| i == id && r == "pass"),
            "step {id} did not pass: {v:#}"
        );
    }
    for (id, result) in &list {
        assert!(result == "pass" || result == "skip", "{id}: {result}");
        // The text shows every step the JSON lists, by id.
        assert!(
            said.contains(&format!("[{id}")),
            "the text has no {id}:\n{said}"
        );
    }
    // Japanese by --lang and by the locale.
    for args in [&["--lang", "ja"][..], &["LANG=ja_JP.UTF-8"][..]] {
        let ja = diag(lab, config, args);
        let said = text(&ja);
        assert_eq!(ja.status.code(), Some(0), "{said}");
        assert!(
            said.contains("疎通確認") && said.contains("すべて正常です"),
            "{said}"
        );
        assert!(said.contains("電子証明書"), "{said}");
    }
}

const HEALTH_PATH: &str = "      allow: [clinic, oqs]\n";

fn with_health_path(yaml: &str) -> String {
    assert!(yaml.contains(HEALTH_PATH), "config/lab.yaml changed");
    yaml.replacen(
        HEALTH_PATH,
        &format!("{HEALTH_PATH}      health_path: /\n"),
        1,
    )
}

/// An expired client certificate for the institution (same CA, same password) over
/// certs/oqs.p12, as an operator copying an old backup in would.
fn expired_client_p12(dir: &Path) {
    let ca = dir.join("ca");
    std::fs::write(ca.join("index.txt"), "").unwrap();
    std::fs::write(ca.join("serial"), "7001\n").unwrap();
    let cnf = format!(
        "[ca]\ndefault_ca = lab\n[lab]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\nserial = {d}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\norganizationName = optional\ncommonName = supplied\n[client]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = clientAuth\n",
        d = ca.display()
    );
    std::fs::write(ca.join("expired.cnf"), cnf).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca/expired.key",
        "-out",
        "ca/expired.csr",
        "-subj",
        &format!("/O=oqs-edge lab/CN={}", pki::INSTITUTION_CODE),
    ]);
    run(&[
        "ca",
        "-batch",
        "-config",
        "ca/expired.cnf",
        "-extensions",
        "client",
        "-cert",
        "ca/oqs-client-ca.pem",
        "-keyfile",
        "ca/oqs-client-ca.key",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20210101000000Z",
        "-in",
        "ca/expired.csr",
        "-out",
        "ca/expired.pem",
        "-notext",
    ]);
    run(&[
        "pkcs12",
        "-export",
        "-name",
        "oqs",
        "-inkey",
        "ca/expired.key",
        "-in",
        "ca/expired.pem",
        "-certfile",
        "ca/oqs-client-ca.pem",
        "-passout",
        "file:secrets/oqs.p12.pass",
        "-out",
        "certs/expired.p12",
    ]);
    std::fs::rename(dir.join("certs/expired.p12"), dir.join("certs/oqs.p12")).unwrap();
}

#[test]
fn diag_passes_on_the_healthy_line_and_names_each_broken_link() {
    if skip_unless_root("diag_passes_on_the_healthy_line_and_names_each_broken_link") {
        return;
    }
    let lab = Lab::build("diag");
    let config = lab.write_config(&with_health_path(&lab.config_from_lab_yaml()));
    pki::create_foreign_server(lab.dir());

    // Not running: the steps that need no daemon still run, exit 3.
    let (list, v, code) = steps(&lab, &config);
    assert_eq!(code, Some(3), "{v:#}");
    assert_eq!(first_failure(&v).unwrap()["id"], "daemon", "{v:#}");
    assert!(
        list.iter().any(|(id, r)| id == "wan.link" && r == "pass"),
        "{v:#}"
    );
    assert!(
        list.iter().any(|(id, r)| id == "cert.oqs" && r == "pass"),
        "{v:#}"
    );

    let nginx = lab.start_nginx("ca/oqs-server");
    lab.start_daemon(&config);
    all_pass(
        &lab,
        &config,
        &[
            "daemon",
            "wan.link",
            "wan.address",
            "wan.gateway",
            "line",
            "routes",
            "firewall",
            "route.eligibility-api.tcp",
            "route.eligibility-api.tls",
            "route.eligibility-api.http",
            "route.online-claims.tcp",
            "route.online-claims.tls",
            "cert.oqs",
        ],
    );
    // The skipped ones say why.
    let (_, v, _) = steps(&lab, &config);
    let resolve = step(&v, "route.eligibility-api.resolve");
    assert!(
        resolve["message"]
            .as_str()
            .unwrap()
            .contains("upstream_address 10.200.0.10"),
        "{resolve:#}"
    );
    // --route: that route's steps and its certificate only.
    let (list, _, code) = {
        let out = diag(&lab, &config, &["--json", "--route", "online-claims"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<String> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        (ids, v, out.status.code())
    };
    assert_eq!(code, Some(0));
    assert!(
        list.iter().all(|id| !id.contains("eligibility-api")),
        "{list:?}"
    );
    assert!(
        list.iter().any(|id| id == "route.online-claims.tls"),
        "{list:?}"
    );

    // The upstream stopped.
    lab.stop(nginx.pid);
    first_fail_is(
        &lab,
        &config,
        "route.eligibility-api.tcp",
        "Connection refused",
        "upstream stopped",
    );
    let ja = text(&diag(&lab, &config, &["--lang", "ja"]));
    assert!(
        ja.contains("✗ 接続先への TCP 接続 (eligibility-api)") && ja.contains("対処:"),
        "{ja}"
    );

    // The upstream presents a certificate from another CA.
    let foreign: Nginx = lab.start_nginx("ca/foreign-server");
    first_fail_is(
        &lab,
        &config,
        "route.eligibility-api.tls",
        "not issued by the CA",
        "foreign CA",
    );
    lab.stop(foreign.pid);
    let _nginx = lab.start_nginx("ca/oqs-server");

    // An expired client certificate: the endpoint refuses it, and the certificate step says so.
    let p12 = lab.dir().join("certs/oqs.p12");
    let good = std::fs::read(&p12).unwrap();
    expired_client_p12(lab.dir());
    let v = first_fail_is(
        &lab,
        &config,
        "route.eligibility-api.tls",
        "the client certificate `oqs` (CN 1312345678) is outside its validity",
        "expired client certificate",
    );
    let cert = step(&v, "cert.oqs");
    assert_eq!(cert["result"], "fail", "{cert:#}");
    assert!(
        cert["detail"].as_str().unwrap().contains("expired"),
        "{cert:#}"
    );
    std::fs::write(&p12, good).unwrap();
    assert!(
        first_failure(&steps(&lab, &config).1).is_none(),
        "a good certificate again"
    );

    // A closed route deleted (the watch puts it back within seconds: delete it right before).
    let mut named = false;
    for _ in 0..3 {
        lab.ok(Role::Router, &["ip", "route", "del", "10.200.0.0/24"]);
        let (_, v, _) = steps(&lab, &config);
        if let Some(first) = first_failure(&v) {
            assert_eq!(first["id"], "routes", "route deleted: {v:#}");
            assert!(
                first["detail"].as_str().unwrap().contains("10.200.0.0/24"),
                "{first:#}"
            );
            named = true;
            break;
        }
    }
    assert!(named, "diag never saw the deleted route");
    assert!(
        wait_for(15, || first_failure(&steps(&lab, &config).1).is_none()),
        "the route did not come back"
    );

    // The WAN gateway gone (last: the carrier's routes go with its address).
    lab.ok(Role::Inet, &["ip", "addr", "flush", "dev", "eth0"]);
    let v = first_fail_is(
        &lab,
        &config,
        "wan.gateway",
        "198.51.100.1",
        "WAN gateway gone",
    );
    let line = step(&v, "line");
    assert_eq!(line["result"], "skip", "{line:#}");
}

#[test]
fn diag_names_a_stopped_wireguard_peer() {
    if skip_unless_root("diag_names_a_stopped_wireguard_peer") {
        return;
    }
    let lab = Lab::build("diagwg");
    let _etc = EtcOverride::router(&lab, "203.0.113.2");
    let (key, router_public) = router_keygen(&lab);
    let mut concentrator = Concentrator::start(&lab, &router_public);
    let yaml = wireguard_config(&lab, &key, &concentrator.public_key, CONCENTRATOR, "25s");
    let config = lab.write_config(&with_health_path(&yaml));
    let _nginx = lab.start_nginx("ca/oqs-server");
    lab.start_daemon_when(&config, || {
        let out = lab.exec(
            Role::Router,
            &[
                oqs_edge_bin().to_str().unwrap(),
                "status",
                "--json",
                "-c",
                config.to_str().unwrap(),
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["tunnel"]["state"] == "up")
    });
    all_pass(
        &lab,
        &config,
        &[
            "line",
            "routes",
            "route.eligibility-api.tls",
            "route.eligibility-api.http",
        ],
    );

    concentrator.stop(&lab);
    let v = first_fail_is(&lab, &config, "line", "no answer", "WireGuard peer stopped");
    let tls = step(&v, "route.eligibility-api.tls");
    assert_eq!(tls["result"], "skip", "{tls:#}");
}

#[test]
fn diag_names_a_wrong_ipsec_psk_and_the_file_to_fix() {
    if skip_unless_root("diag_names_a_wrong_ipsec_psk_and_the_file_to_fix") {
        return;
    }
    let (lab, _gw, _router, config) = ipsec::psk_lab("diagpsk", "not-the-gateways-key", ipsec::PSK);
    let _nginx = lab.start_nginx("ca/oqs-server");
    lab.start_daemon_when(&config, || {
        ipsec::status(&lab)["tunnel"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("PSK mismatch"))
    });
    let v = first_fail_is(&lab, &config, "line", "PSK mismatch", "wrong PSK");
    let line = first_failure(&v).unwrap();
    assert!(
        line["detail"].as_str().unwrap().contains("ipsec.psk"),
        "names the file: {line:#}"
    );
    // Nothing past the line can work: the upstream's steps are skipped, not failed.
    let tls = step(&v, "route.eligibility-api.tls");
    assert_eq!(tls["result"], "skip", "{tls:#}");
    let ja = text(&diag(&lab, &config, &["--lang", "ja"]));
    assert!(
        ja.contains("トンネル (IPsec) が確立していません。")
            && ja.contains("事前共有鍵 (tunnel.ipsec.auth.psk_file)"),
        "{ja}"
    );

    // The right key and a reload: every step passes.
    ipsec::write_secret(&lab, "ipsec.psk", &format!("{}\n", ipsec::PSK));
    let socket = lab.dir().join("control.sock");
    let reload = lab.exec(
        Role::Router,
        &[
            oqs_edge_bin().to_str().unwrap(),
            "reload",
            "-c",
            config.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    assert!(reload.status.success(), "{}", text(&reload));
    assert!(
        wait_for(20, || first_failure(&steps(&lab, &config).1).is_none()),
        "{:#}",
        steps(&lab, &config).1
    );
}

#[test]
fn diag_names_a_stopped_closed_dns() {
    if skip_unless_root("diag_names_a_stopped_closed_dns") {
        return;
    }
    let lab = Lab::build("diagdns");
    // The eligibility route by name: the proxy and diag resolve it through the closed DNS.
    let yaml = with_health_path(&lab.config_from_lab_yaml());
    let pinned = "      upstream: hweb-api.oqs.example:443\n      upstream_address: 10.200.0.10";
    assert!(
        yaml.contains(pinned),
        "lab.yaml's eligibility route changed"
    );
    let yaml = yaml.replacen(pinned, "      upstream: hweb-api.oqs.example:443", 1);
    let config = lab.write_config(&yaml);
    let closed_dns = lab.start_closed_dns();
    let _nginx = lab.start_nginx("ca/oqs-server");
    lab.start_daemon(&config);
    all_pass(
        &lab,
        &config,
        &[
            "route.eligibility-api.resolve",
            "route.eligibility-api.tls",
            "route.eligibility-api.http",
        ],
    );
    let (_, v, _) = steps(&lab, &config);
    let resolve = step(&v, "route.eligibility-api.resolve");
    assert!(
        resolve["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("10.200.0.10"),
        "{resolve:#}"
    );

    lab.stop(closed_dns.pid);
    let v = first_fail_is(
        &lab,
        &config,
        "route.eligibility-api.resolve",
        "hweb-api.oqs.example",
        "closed DNS stopped",
    );
    let resolve = first_failure(&v).unwrap();
    assert!(
        resolve["detail"]
            .as_str()
            .unwrap()
            .contains("the closed network's DNS (10.200.0.53)"),
        "names the server that did not answer: {resolve:#}"
    );
    let tcp = step(&v, "route.eligibility-api.tcp");
    assert_eq!(tcp["result"], "skip", "{tcp:#}");
}
