//! The status page (`control.status_page`) in a real browser: headless Chromium in the clinic
//! PC's namespace reads it in Japanese and in English, keeps a screenshot under
//! target/status-page/, sees it turn to 異常 after the line breaks, and the eligibility PC
//! (outside `status_page_allow`'s default, the clinic segments) gets nothing.

use std::path::{Path, PathBuf};

use netns_tests::{skip_unless_root, wait_for, Lab, Role};

const PAGE: &str = "http://192.168.60.1:8080/";

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page");
    std::fs::create_dir_all(&dir).expect("create target/status-page");
    dir
}

/// Chromium as parts.md says works here; `what` is `--dump-dom` or `--screenshot=FILE`.
fn chromium(lab: &Lab, lang: &str, what: &str) -> String {
    let profile = lab.dir().join(format!("chromium-{lang}"));
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let accept = format!("--accept-lang={lang}");
    let out = lab.exec(
        Role::Clinic,
        &[
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &profile_arg,
            &accept,
            "--virtual-time-budget=3000",
            "--window-size=1024,768",
            what,
            PAGE,
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && (what != "--dump-dom" || !dom.is_empty()),
        "chromium failed: {}{}",
        dom,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[test]
fn the_status_page_tells_the_staff_in_japanese_and_only_them() {
    if skip_unless_root("the_status_page_tells_the_staff_in_japanese_and_only_them") {
        return;
    }
    if std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("chromium is not installed: run netns-tests/setup.sh");
    }
    let lab = Lab::build("page");
    let yaml = lab.config_from_lab_yaml();
    let control = "\ncontrol:\n";
    assert!(yaml.contains(control), "config/lab.yaml changed");
    let config = lab.write_config(&yaml.replacen(
        control,
        "\ncontrol:\n  status_page: 192.168.60.1:8080\n",
        1,
    ));
    let nginx = lab.start_nginx("ca/oqs-server");
    lab.start_daemon(&config);

    // The clinic PC gets the page (curl first: a plain answer to compare the browser with).
    let mut curl = String::new();
    let served = wait_for(10, || {
        let out = lab.exec(Role::Clinic, &["curl", "-s", "-i", "--max-time", "3", PAGE]);
        curl = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        curl.starts_with("HTTP/1.1 200")
    });
    assert!(
        served,
        "the clinic PC did not get the page: {curl}\n{}",
        lab.daemon_log()
    );
    // Japanese by default.
    let ja = chromium(&lab, "ja", "--dump-dom");
    assert!(ja.contains("ルーターの状態"), "{ja}");
    // The lab's 電子証明書 is issued for 30 days: 注意 with why, and what to say.
    let cert_soon = ja.contains("data-verdict=\"warn\">注意<")
        && ja.contains("電子証明書の有効期限が近づいています")
        && ja.contains("(コード certificate-expiring)");
    let all_good = ja.contains("data-verdict=\"ok\">正常<")
        && ja.contains("オンライン資格確認の通信は正常です")
        && ja.contains("連絡の必要はありません");
    assert!(cert_soon || all_good, "{ja}");
    assert!(ja.contains("設置業者に伝えること"), "{ja}");
    assert!(
        ja.contains("残り ") && ja.contains(" 日"),
        "certificate days left: {ja}"
    );
    assert!(ja.contains("oqs-edge 0."), "version: {ja}");
    // Nothing of the config, no secret, no client address.
    for secret in [
        "oqs.p12",
        "secrets",
        "192.168.60.10",
        "control.sock",
        "BEGIN",
    ] {
        assert!(!ja.contains(secret), "the page shows `{secret}`: {ja}");
    }
    // English by Accept-Language.
    let en = chromium(&lab, "en", "--dump-dom");
    assert!(en.contains("Router status"), "{en}");
    assert!(
        (cert_soon && en.contains(">Attention<") && en.contains("expires soon"))
            || (all_good && en.contains(">OK<") && en.contains("no need to call")),
        "{en}"
    );

    let shots = artifacts();
    let shot = shots.join("status-page-ja-healthy.png");
    chromium(&lab, "ja", &format!("--screenshot={}", shot.display()));
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );

    // The page's one action: run 疎通確認 (303 back to the page), then its result shows.
    let post = |expect: &str| {
        let out = lab.exec(
            Role::Clinic,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--max-time",
                "3",
                &format!("{PAGE}diag"),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expect);
    };
    post("303");
    let json = |lang: &str| -> serde_json::Value {
        let out = lab.exec(
            Role::Clinic,
            &[
                "curl",
                "-s",
                "--max-time",
                "3",
                "-H",
                &format!("Accept-Language: {lang}"),
                &format!("{PAGE}status.json"),
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let mut page = serde_json::Value::Null;
    assert!(
        wait_for(30, || {
            page = json("ja");
            page["last_diag_result"].is_string()
        }),
        "the diag button gave no result: {page:#}"
    );
    assert_eq!(page["last_diag_result"], "pass", "{page:#}");
    assert!(
        page["last_diag"].as_str().unwrap().contains("すべて正常"),
        "{page:#}"
    );
    assert_eq!(json("en")["lang"], "en");

    // The installer runs 疎通確認 from the shell with the endpoint stopped: the page shows
    // that run as the last one, with the step that failed.
    lab.stop(nginx.pid);
    let bin = netns_tests::oqs_edge_bin();
    let out = lab.exec(
        Role::Router,
        &[
            bin.to_str().unwrap(),
            "diag",
            "-c",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        wait_for(10, || {
            page = json("ja");
            page["last_diag_result"] == "fail"
        }),
        "the page does not show the shell's 疎通確認: {page:#}\n--- diag's stderr:\n{}\n--- kept: {:?}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(lab.dir().join("last-diag.json")).map(|t| t.len())
    );
    assert!(
        page["last_diag"].as_str().unwrap().contains("TCP"),
        "names the failed step: {page:#}"
    );

    // Outside the allow list (the eligibility PC): nothing, not even an HTTP error.
    let out = lab.exec(
        Role::Pc,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            PAGE,
        ],
    );
    assert!(!out.status.success(), "the eligibility PC got an answer");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");

    // The line breaks: within the page's refresh interval (plus the daemon's 5 s watch) the
    // page says 異常 and what to tell the installer.
    lab.ok(Role::Router, &["ip", "link", "set", "wan0", "down"]);
    let mut dom = String::new();
    let turned = wait_for(20, || {
        dom = chromium(&lab, "ja", "--dump-dom");
        dom.contains("data-verdict=\"fail\">異常<")
    });
    assert!(turned, "the page did not turn to 異常: {dom}");
    assert!(
        dom.contains("オンライン請求ネットワークへの回線がつながっていません"),
        "{dom}"
    );
    assert!(
        dom.contains("tunnel-down"),
        "the code for the installer: {dom}"
    );
    let shot = shots.join("status-page-ja-fail.png");
    chromium(&lab, "ja", &format!("--screenshot={}", shot.display()));
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));
    eprintln!("screenshots kept in {}", shots.display());
}
