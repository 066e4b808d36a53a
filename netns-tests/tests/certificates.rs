//! Certificates on a schedule, with the real `oqs-edge run` in the lab: a client certificate
//! 20 days from its end is a problem `status` lists first (exit 1) with what to do, and the
//! journal (here the daemon's stderr) gets the 30-day warning once, not again after a restart
//! the same day; one 45 days from its end is a note under a healthy status (exit 0).

use std::path::Path;
use std::process::Output;

use netns_tests::{oqs_edge_bin, pki, skip_unless_root, wait_for, Lab, Role};

fn cli(lab: &Lab, config: &Path, args: &[&str]) -> Output {
    let bin = oqs_edge_bin();
    let mut full = vec![bin.to_str().unwrap()];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-c", config.to_str().unwrap()]);
    lab.exec(Role::Router, &full)
}

/// config/lab.yaml with the client certificate `oqs` read from `p12`.
fn config_with(lab: &Lab, p12: &Path) -> std::path::PathBuf {
    let yaml = lab.config_from_lab_yaml();
    let default = lab.dir().join("certs/oqs.p12");
    let yaml = yaml.replace(default.to_str().unwrap(), p12.to_str().unwrap());
    lab.write_config(&yaml)
}

fn client_days(lab: &Lab, config: &Path) -> Option<i64> {
    lab.status_json(config)["certificates"]
        .as_array()?
        .iter()
        .find(|c| c["kind"] == "client")?["days_left"]
        .as_i64()
}

const WARNING_30: &str = "(30-day warning)";

#[test]
fn twenty_days_left_is_a_problem_warned_once_a_day_and_forty_five_a_note() {
    if skip_unless_root("twenty_days_left_is_a_problem_warned_once_a_day_and_forty_five_a_note") {
        return;
    }
    let lab = Lab::build("certexp");
    lab.config_from_lab_yaml();
    let (p12, _) = pki::client_p12_valid(lab.dir(), "oqs-20d", -10, 20);
    let config = config_with(&lab, &p12);
    let pid = lab.start_daemon(&config);
    assert!(
        wait_for(15, || client_days(&lab, &config) == Some(20)),
        "{:#}\n{}",
        lab.status_json(&config),
        lab.daemon_log()
    );

    let out = cli(&lab, &config, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "degraded:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "oqs-edge: DEGRADED", "{text}");
    assert!(
        lines[1].starts_with("  ✗ client certificate `oqs` (")
            && lines[1].contains("oqs-20d.p12) expires in 20 days, on ")
            && lines[1].contains("apply for a new certificate at the portal")
            && lines[1].contains("`oqs-edge cert import --replace`"),
        "the certificate is the first problem, with what to do:\n{text}"
    );
    let json = lab.status_json(&config);
    let cert = json["certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "client"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cert["expiry"], "renew", "{json:#}");
    assert!(cert["not_after_unix"].as_i64().is_some(), "{json:#}");
    // The other certificates the router depends on are watched too.
    for kind in ["server-ca", "local-ca", "lan-server"] {
        assert!(
            json["certificates"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["kind"] == kind && c["expiry"] == "ok")),
            "{kind} in status:\n{json:#}"
        );
    }

    let log = lab.daemon_log();
    assert_eq!(
        log.matches(WARNING_30).count(),
        1,
        "the 30-day warning once:\n{log}"
    );
    assert!(
        log.contains("warn: client certificate `oqs`") && log.contains("expires in 20 days"),
        "{log}"
    );
    // A few rounds of the watch later, still once.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(lab.daemon_log().matches(WARNING_30).count(), 1);

    // A restart the same day does not say it again.
    lab.stop(pid);
    let pid = lab.start_daemon(&config);
    assert!(wait_for(15, || client_days(&lab, &config) == Some(20)));
    std::thread::sleep(std::time::Duration::from_secs(6));
    let log = lab.daemon_log();
    assert!(log.contains("running;"), "the second run's log:\n{log}");
    assert_eq!(
        log.matches(WARNING_30).count(),
        0,
        "a restart the same day repeats no warning:\n{log}"
    );
    assert!(lab.dir().join("state/certificate-warnings.json").exists());

    // 45 days left: healthy, with a note in the certificate section.
    let (p12, _) = pki::client_p12_valid(lab.dir(), "oqs-45d", -10, 45);
    let config = config_with(&lab, &p12);
    let reload = cli(&lab, &config, &["reload"]);
    assert_eq!(reload.status.code(), Some(0), "{reload:?}");
    assert!(
        wait_for(15, || client_days(&lab, &config) == Some(45)),
        "{:#}",
        lab.status_json(&config)
    );
    let out = cli(&lab, &config, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "healthy:\n{text}");
    assert!(text.starts_with("oqs-edge: healthy"), "{text}");
    assert!(
        text.contains("(45 days left)")
            && text.contains("renew within 45 days: apply for a new certificate at the portal"),
        "the note in the certificate section:\n{text}"
    );
    let warned = wait_for(10, || lab.daemon_log().contains("(60-day warning)"));
    let log = lab.daemon_log();
    assert!(
        warned && log.contains("expires in 45 days"),
        "the new certificate gets its own warning:\n{log}"
    );
    lab.stop(pid);
}

#[test]
fn a_japanese_locale_gets_the_warning_in_japanese_with_the_file_and_what_to_do() {
    if skip_unless_root(
        "a_japanese_locale_gets_the_warning_in_japanese_with_the_file_and_what_to_do",
    ) {
        return;
    }
    let lab = Lab::build("certja");
    lab.config_from_lab_yaml();
    let (p12, _) = pki::client_p12_valid(lab.dir(), "oqs-12d", -10, 12);
    let config = config_with(&lab, &p12);
    lab.start_daemon_with(&config, &["--lang", "ja"]);
    let said = wait_for(15, || lab.daemon_log().contains("日前の警告"));
    let log = lab.daemon_log();
    let line = log
        .lines()
        .find(|l| l.contains("日前の警告"))
        .unwrap_or_default();
    assert!(
        said && line.contains("電子証明書 `oqs` (")
            && line.contains("oqs-12d.p12)の有効期限まで残り 12 日です")
            && line.contains("15 日前の警告")
            && line.contains("`oqs-edge cert import --replace` で取り込んでください"),
        "the 15-day warning in Japanese, naming the file:\n{log}"
    );
    // `status` in the same locale leads in Japanese.
    let out = cli(&lab, &config, &["status", "--lang", "ja"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("oqs-edge: 異常"), "{text}");
    assert!(text.contains("電子証明書: oqs (医療機関等コード"), "{text}");
}

/// The lab's config with a second client certificate `new` (password in `password_file`)
/// listed before `oqs` on both routes.
fn config_with_list(lab: &Lab, password_file: &str) -> std::path::PathBuf {
    let dir = lab.dir().to_str().unwrap().to_owned();
    let yaml = lab
        .config_from_lab_yaml()
        .replace(
            "\nproxy:",
            &format!(
                "  - name: new\n    pkcs12: {dir}/certs/new.p12\n    password_file: {dir}/{password_file}\n\nproxy:"
            ),
        )
        .replace("client_certificate: oqs", "client_certificate: [new, oqs]");
    lab.write_config(&yaml)
}

fn presented(lab: &Lab, config: &Path) -> (String, String) {
    let st = lab.status_json(config);
    let route = st["proxy"]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "eligibility-api"))
        .cloned()
        .unwrap_or_default();
    (
        route["client_certificate"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        route["client_certificate_why"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// One request through the eligibility route from the clinic PC; nginx's log line for it.
fn request(lab: &Lab, nginx: &netns_tests::lab::Nginx) -> String {
    let ca = lab.dir().join("local-ca/ca.pem");
    let out = lab.exec(
        Role::Clinic,
        &[
            "curl",
            "-sS",
            "--max-time",
            "15",
            "--cacert",
            ca.to_str().unwrap(),
            "https://192.168.60.1:8443/eligibility",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("upstream ok"),
        "{out:?}"
    );
    nginx.requests().last().cloned().unwrap_or_default()
}

#[test]
fn a_route_presents_the_first_valid_certificate_of_its_list_and_says_why() {
    if skip_unless_root("a_route_presents_the_first_valid_certificate_of_its_list_and_says_why") {
        return;
    }
    let lab = Lab::build("certlist");
    lab.config_from_lab_yaml();
    let nginx = lab.start_nginx("ca/oqs-server");

    // `new` starts tomorrow: `oqs` is presented, and status says why.
    let (_, tomorrow) = pki::client_p12_valid(lab.dir(), "new", 1, 400);
    let config = config_with_list(&lab, "secrets/oqs.p12.pass");
    let check = cli(&lab, &config, &["check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "a waiting certificate is a warning: {check:?}"
    );
    let pid = lab.start_daemon(&config);
    assert!(
        wait_for(15, || presented(&lab, &config).0 == "oqs"),
        "{:#}\n{}",
        lab.status_json(&config),
        lab.daemon_log()
    );
    let (_, why) = presented(&lab, &config);
    assert!(why.contains("`new` is not valid until"), "{why}");
    let out = cli(&lab, &config, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("presents client certificate `oqs`: `new` is not valid until"),
        "{text}"
    );
    let line = request(&lab, &nginx);
    assert!(
        !line.contains(&tomorrow),
        "the old certificate upstream: {line}"
    );

    // `new` valid now (the file replaced): presented from the next connection on, while
    // requests go on (240 at 20/s, half on new connections), none of them failing.
    let ca = lab.dir().join("local-ca/ca.pem");
    let (curl_pid, curl_log) = lab.spawn_log(
        Role::Clinic,
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "--rate",
            "20/s",
            "--cacert",
            ca.to_str().unwrap(),
            "-w",
            "code=%{http_code}\n",
            "https://192.168.60.1:8443/a[1-120]",
            "-H",
            "Connection: close",
            "https://192.168.60.1:8443/b[1-120]",
        ],
    );
    assert!(wait_for(10, || nginx.requests().len() >= 20));
    let (_, now) = pki::client_p12_valid(lab.dir(), "new", -1, 400);
    assert!(
        wait_for(15, || presented(&lab, &config).0 == "new"),
        "{:#}\n{}",
        lab.status_json(&config),
        lab.daemon_log()
    );
    assert!(
        wait_for(60, || netns_tests::process_ended(curl_pid)),
        "curl did not finish"
    );
    let out = std::fs::read_to_string(&curl_log).unwrap();
    assert_eq!(
        out.matches("code=200\n").count(),
        240,
        "no request failed in the switch:\n{out}"
    );
    assert_eq!(
        presented(&lab, &config).1,
        "the first of its list, valid now"
    );
    let line = request(&lab, &nginx);
    assert!(
        line.contains(&now),
        "the new certificate {now} upstream: {line}"
    );
    lab.stop(pid);

    // `new` broken (a wrong password): `oqs` again, and status says why.
    let wrong = lab.dir().join("secrets/new.pass");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&wrong)
            .and_then(|mut f| f.write_all(b"not the password"))
            .unwrap();
    }
    let config = config_with_list(&lab, "secrets/new.pass");
    let check = cli(&lab, &config, &["check"]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{report}");
    assert!(report.contains("wrong password"), "{report}");
    lab.start_daemon(&config);
    assert!(
        wait_for(15, || presented(&lab, &config).0 == "oqs"),
        "{:#}\n{}",
        lab.status_json(&config),
        lab.daemon_log()
    );
    let (_, why) = presented(&lab, &config);
    assert!(
        why.contains("`new` cannot be used") && why.contains("wrong password"),
        "{why}"
    );
    let out = cli(&lab, &config, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a broken certificate is a problem:\n{text}"
    );
    assert!(text.contains("wrong password"), "{text}");
    let line = request(&lab, &nginx);
    assert!(
        !line.contains(&now),
        "the old certificate upstream again: {line}"
    );
}
