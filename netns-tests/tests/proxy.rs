//! The mTLS proxy end to end: the real `oqs-edge run` as the lab's router, **nginx with
//! `ssl_verify_client on`** in `closed` as the eligibility/claims upstream, curl as the LAN
//! client (レセコン, 電子カルテ). Routes: config/lab.yaml's two `local-ca` HTTP routes, plus a
//! plain-HTTP and a TCP route added here.

use std::path::{Path, PathBuf};
use std::process::Output;

use netns_tests::lab::Nginx;
use netns_tests::{oqs_edge_bin, pki, process_ended, skip_unless_root, wait_for, Lab, Role};

const EXTRA_ROUTES: &str = "
    - name: plain-http
      listen: 192.168.60.1:8445
      lan_tls: off
      mode: http
      upstream: hweb-api.oqs.example:443
      upstream_address: 10.200.0.10
      server_ca: DIR/ca/oqs-server-ca.pem
      client_certificate: oqs
      allow: [clinic, oqs]
    - name: plain-tcp
      listen: 192.168.60.1:8446
      lan_tls: off
      mode: tcp
      upstream: claims.oqs.example:443
      upstream_address: 10.200.0.10
      server_ca: DIR/ca/oqs-server-ca.pem
      client_certificate: oqs
      allow: [clinic]
";

const UPSTREAM_ANSWER: &str =
    "upstream ok host=hweb-api.oqs.example dn=CN=1312345678,O=oqs-edge lab";

struct Setup {
    lab: Lab,
    config: PathBuf,
    nginx: Nginx,
}

/// A lab with nginx (`server_cert`: see `Lab::start_nginx`) and the daemon serving all four
/// routes.
fn setup(name: &str, server_cert: &str) -> Setup {
    let lab = Lab::build(name);
    let dir = lab.dir().to_str().unwrap().to_owned();
    let yaml = lab.config_from_lab_yaml().replacen(
        "\ncontrol:",
        &format!("{}\ncontrol:", EXTRA_ROUTES.replace("DIR", &dir)),
        1,
    );
    let config = lab.write_config(&yaml);
    if server_cert != "ca/oqs-server" {
        pki::create_foreign_server(lab.dir());
    }
    let nginx = lab.start_nginx(server_cert);
    lab.start_daemon(&config);
    let listening = wait_for(15, || {
        status(&lab, &config)["proxy"]["routes"]
            .as_array()
            .is_some_and(|r| r.len() == 4 && r.iter().all(|r| r["listening"] == true))
    });
    assert!(
        listening,
        "the proxy routes did not start listening:\n{:#}\n{}",
        status(&lab, &config),
        lab.daemon_log()
    );
    Setup { lab, config, nginx }
}

fn status(lab: &Lab, config: &Path) -> serde_json::Value {
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
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn route<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["proxy"]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// curl from a LAN namespace; the body and then `code=NNN` per request on stdout.
fn curl(lab: &Lab, from: Role, args: &[&str]) -> Output {
    let mut full = vec![
        "curl",
        "-sS",
        "--max-time",
        "15",
        "-w",
        "code=%{http_code}\n",
    ];
    full.extend_from_slice(args);
    lab.exec(from, &full)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_mode_reaches_the_upstream_with_the_client_certificate() {
    if skip_unless_root("each_mode_reaches_the_upstream_with_the_client_certificate") {
        return;
    }
    let Setup { lab, config, nginx } = setup("pxmodes", "ca/oqs-server");
    let ca = lab.dir().join("local-ca/ca.pem");
    assert!(ca.exists(), "the local CA was made in local_ca_dir");
    let ca = ca.to_str().unwrap();

    // local-ca TLS on the LAN, verified by curl against the exported CA, for the IP address.
    let out = curl(
        &lab,
        Role::Clinic,
        &[
            "--cacert",
            ca,
            "https://192.168.60.1:8443/eligibility?patient=0001",
        ],
    );
    assert_eq!(
        stdout(&out),
        format!("{UPSTREAM_ANSWER}\ncode=200\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `oqs-edge local-ca export` prints that same CA.
    let exported = lab.exec(
        Role::Router,
        &[
            oqs_edge_bin().to_str().unwrap(),
            "local-ca",
            "export",
            "-c",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(
        stdout(&exported),
        std::fs::read_to_string(ca).unwrap(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );

    // Plain HTTP on the LAN, the eligibility PC as the client.
    let out = curl(&lab, Role::Pc, &["http://192.168.60.1:8445/x"]);
    assert_eq!(stdout(&out), format!("{UPSTREAM_ANSWER}\ncode=200\n"));
    // An old HTTP/1.0 client is answered too; upstream the request is HTTP/1.1, on a pooled
    // connection.
    let out = curl(
        &lab,
        Role::Pc,
        &["--http1.0", "http://192.168.60.1:8445/old"],
    );
    assert_eq!(stdout(&out), format!("{UPSTREAM_ANSWER}\ncode=200\n"));
    assert!(
        nginx
            .requests()
            .iter()
            .any(|l| l.contains("\"GET /old HTTP/1.1\" 200")),
        "{:#?}",
        nginx.requests()
    );

    // TCP mode: bytes copied; the client speaks HTTP itself (Host as it likes).
    let out = curl(
        &lab,
        Role::Clinic,
        &[
            "-H",
            "Host: claims.oqs.example",
            "http://192.168.60.1:8446/claims",
        ],
    );
    assert_eq!(
        stdout(&out),
        "upstream ok host=claims.oqs.example dn=CN=1312345678,O=oqs-edge lab\ncode=200\n"
    );

    // nginx saw the clinic's certificate on every request.
    let logged = nginx.requests();
    assert_eq!(logged.len(), 4, "{logged:#?}");
    assert!(
        logged
            .iter()
            .all(|l| l.contains("\"CN=1312345678,O=oqs-edge lab\"")),
        "{logged:#?}"
    );

    // Only the configured upstream: no CONNECT, no absolute-form request to another host.
    let out = curl(
        &lab,
        Role::Clinic,
        &[
            "-X",
            "CONNECT",
            "--request-target",
            "example.com:443",
            "http://192.168.60.1:8445/",
        ],
    );
    assert!(stdout(&out).ends_with("code=405\n"), "{}", stdout(&out));
    let out = curl(
        &lab,
        Role::Clinic,
        &[
            "--request-target",
            "http://192.0.2.80/",
            "http://192.168.60.1:8445/",
        ],
    );
    assert!(stdout(&out).ends_with("code=400\n"), "{}", stdout(&out));
    // A request head over the 16 KiB limit.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let out = curl(
        &lab,
        Role::Clinic,
        &["-H", &big, "http://192.168.60.1:8445/"],
    );
    assert!(stdout(&out).ends_with("code=431\n"), "{}", stdout(&out));
    assert_eq!(
        nginx.requests().len(),
        logged.len(),
        "refused requests never reach the upstream"
    );

    // online-claims allows only the clinic segment: the eligibility PC gets nothing.
    let out = curl(
        &lab,
        Role::Pc,
        &[
            "--connect-timeout",
            "2",
            "--cacert",
            ca,
            "https://192.168.60.1:8444/",
        ],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(nginx.requests().len(), logged.len());

    // The request log: route, client, method, path without the query, status, reuse.
    let log = lab.daemon_log();
    assert!(
        log.contains("proxy eligibility-api http client=192.168.60.10:")
            && log.contains("GET /eligibility 200"),
        "{log}"
    );
    assert!(
        !log.contains("patient=0001"),
        "the query string is never logged:\n{log}"
    );

    let st = status(&lab, &config);
    assert_eq!(route(&st, "eligibility-api")["requests"], 1, "{st:#}");
    assert_eq!(st["certificates"][0]["subject_cn"], "1312345678", "{st:#}");
    assert!(
        st["certificates"][0]["days_left"].as_i64().unwrap() >= 28,
        "{st:#}"
    );
    drop(lab);
}

#[test]
fn an_untrusted_upstream_certificate_gives_502_and_says_why() {
    if skip_unless_root("an_untrusted_upstream_certificate_gives_502_and_says_why") {
        return;
    }
    let Setup { lab, config, nginx } = setup("pxforeign", "ca/foreign-server");
    let out = curl(&lab, Role::Clinic, &["http://192.168.60.1:8445/"]);
    let body = stdout(&out);
    assert!(body.ends_with("code=502\n"), "{body}");
    assert!(body.contains("not trusted"), "{body}");
    assert!(
        lab.daemon_log()
            .contains("the upstream's certificate is not trusted"),
        "{}",
        lab.daemon_log()
    );
    let st = status(&lab, &config);
    assert!(
        route(&st, "plain-http")["last_upstream_error"]
            .as_str()
            .is_some_and(|e| e.contains("not trusted")),
        "{st:#}"
    );
    assert!(
        nginx.requests().is_empty(),
        "no request went to the untrusted server"
    );
}

#[test]
fn a_thousand_lan_connections_cost_few_upstream_handshakes() {
    if skip_unless_root("a_thousand_lan_connections_cost_few_upstream_handshakes") {
        return;
    }
    let Setup { lab, config, nginx } = setup("pxpool", "ca/oqs-server");
    let ca = lab.dir().join("local-ca/ca.pem");
    // One curl, 1,000 URLs, `Connection: close`: a new LAN TLS connection for every request,
    // as a レセコン that connects per request does.
    let out = curl(
        &lab,
        Role::Clinic,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            "Connection: close",
            "https://192.168.60.1:8443/r[1-1000]",
        ],
    );
    let ok = stdout(&out).matches("code=200\n").count();
    assert_eq!(ok, 1000, "{}", String::from_utf8_lossy(&out.stderr));
    let st = status(&lab, &config);
    let r = route(&st, "eligibility-api");
    assert_eq!(r["connections"], 1000, "{st:#}");
    assert_eq!(nginx.requests().len(), 1000);
    let upstream = nginx.connections();
    println!(
        "1,000 LAN connections: {upstream} upstream TLS connection(s) at nginx, status: {} handshake(s), {} resumed",
        r["upstream_handshakes"], r["upstream_resumed"]
    );
    assert!(
        upstream <= 10,
        "1,000 LAN connections used {upstream} upstream TLS connections"
    );
    assert_eq!(
        r["upstream_handshakes"].as_u64(),
        Some(upstream as u64),
        "{st:#}"
    );
}

#[test]
fn an_upstream_restart_does_not_fail_the_next_requests() {
    if skip_unless_root("an_upstream_restart_does_not_fail_the_next_requests") {
        return;
    }
    let Setup { lab, config, nginx } = setup("pxrestart", "ca/oqs-server");
    // Fill the pools: requests in parallel leave several kept-alive upstream connections.
    let parallel = |n: usize| {
        let urls = format!("http://192.168.60.1:8445/p[1-{n}]");
        let out = curl(&lab, Role::Clinic, &["-Z", "--parallel-max", "8", &urls]);
        let ok = stdout(&out).matches("code=200\n").count();
        assert_eq!(ok, n, "{}\n{}", stdout(&out), lab.daemon_log());
    };
    parallel(40);
    let before = route(&status(&lab, &config), "plain-http")["upstream_handshakes"].as_u64();
    assert!(before >= Some(2), "{:#}", status(&lab, &config));

    // The upstream restarts (maintenance at the endpoint): every pooled connection is closed
    // by the other side. The next requests are served on new connections, none gets a 502.
    lab.stop(nginx.pid);
    let nginx = lab.start_nginx("ca/oqs-server");
    let out = curl(&lab, Role::Clinic, &["http://192.168.60.1:8445/after"]);
    assert_eq!(
        stdout(&out),
        format!("{UPSTREAM_ANSWER}\ncode=200\n"),
        "{}",
        lab.daemon_log()
    );
    parallel(40);
    assert_eq!(nginx.requests().len(), 41);
    let st = status(&lab, &config);
    assert!(
        route(&st, "plain-http")["upstream_handshakes"].as_u64() > before,
        "{st:#}"
    );
}

#[test]
fn idle_and_slow_clients_do_not_stop_others_being_served() {
    if skip_unless_root("idle_and_slow_clients_do_not_stop_others_being_served") {
        return;
    }
    let Setup {
        lab,
        config,
        nginx: _nginx,
    } = setup("pxidle", "ca/oqs-server");
    // The clinic opens 1,100 connections on the plain HTTP route and sends half a request
    // head on each: more than one client may hold.
    let (holder, log) = lab.spawn_log(
        Role::Clinic,
        &[
            netns_tests::lab_peer_bin().to_str().unwrap(),
            "hold",
            "192.168.60.1:8445",
            "1100",
            "GET / HTTP/1.1\\r\\nHost: x\\r\\n",
        ],
    );
    assert!(
        wait_for(30, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("held")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let st = status(&lab, &config);
    assert!(
        route(&st, "plain-http")["refused"].as_u64() >= Some(76),
        "{st:#}"
    );
    // Another client is served at once.
    let out = curl(&lab, Role::Pc, &["http://192.168.60.1:8445/"]);
    assert_eq!(stdout(&out), format!("{UPSTREAM_ANSWER}\ncode=200\n"));
    // The half-sent heads time out and their connections close.
    assert!(
        wait_for(20, || route(&status(&lab, &config), "plain-http")["open"]
            == 0),
        "{:#}",
        status(&lab, &config)
    );
    lab.stop(holder);
    assert!(process_ended(holder));
}

#[test]
fn a_renewed_certificate_is_taken_mid_traffic_without_failing_a_request() {
    if skip_unless_root("a_renewed_certificate_is_taken_mid_traffic_without_failing_a_request") {
        return;
    }
    let Setup { lab, config, nginx } = setup("pxrenew", "ca/oqs-server");
    // 400 requests at 40/s, half of them on new connections.
    let (curl_pid, log) = lab.spawn_log(
        Role::Clinic,
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "--rate",
            "40/s",
            "-w",
            "code=%{http_code}\n",
            "http://192.168.60.1:8445/a[1-200]",
            "-H",
            "Connection: close",
            "http://192.168.60.1:8445/b[1-200]",
        ],
    );
    assert!(wait_for(10, || nginx.requests().len() >= 40));
    let first = nginx.requests()[0].clone();
    // The renewed certificate arrives as a legacy (RC2-40/3DES) export, copied over the old
    // file; the daemon notices the file change by itself.
    let serial = pki::renew_client_p12(lab.dir(), true);
    assert!(
        wait_for(60, || process_ended(curl_pid)),
        "curl did not finish"
    );
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.matches("code=200\n").count(), 400, "{out}");
    let logged = nginx.requests();
    assert!(!first.contains(&serial), "{first}");
    assert!(
        logged.iter().rev().take(20).all(|l| l.contains(&serial)),
        "the last requests use the new certificate {serial}:\n{:#?}",
        &logged[logged.len().saturating_sub(20)..]
    );
    assert!(
        lab.daemon_log()
            .contains("client certificate `oqs` replaced"),
        "{}",
        lab.daemon_log()
    );
    let st = status(&lab, &config);
    assert!(st["certificates"][0]["problem"].is_null(), "{st:#}");
}
