//! The Prometheus endpoint with the real `oqs-edge run` in the lab, scraped as an installer's
//! monitoring would: `promtool check metrics` on a live scrape, a real Prometheus server in the
//! clinic PC's namespace (`up` is 1, a query returns the tunnel's state), counters that move
//! with the lab's traffic by what `status` shows, and nothing for a source outside
//! `metrics_allow` or a path other than `/metrics`.

use std::path::PathBuf;
use std::process::Output;

use netns_tests::{skip_unless_root, wait_for, Lab, Role};

const METRICS: &str = "http://192.168.60.1:9469/metrics";

/// The lab with the endpoint on the clinic segment, open to the clinic PC alone.
fn setup(name: &str) -> (Lab, PathBuf) {
    let lab = Lab::build(name);
    let mut yaml = lab.config_from_lab_yaml();
    assert!(
        yaml.trim_end().ends_with("control.sock"),
        "control: is last in lab.yaml"
    );
    yaml.push_str("  metrics: 192.168.60.1:9469\n  metrics_allow: [192.168.60.10/32]\n");
    let config = lab.write_config(&yaml);
    lab.start_daemon(&config);
    assert!(
        wait_for(10, || scrape(&lab, Role::Clinic).status.success()),
        "the endpoint answers the clinic PC:\n{}",
        lab.daemon_log()
    );
    (lab, config)
}

fn curl(lab: &Lab, from: Role, args: &[&str]) -> Output {
    let mut full = vec!["curl", "-sS", "--max-time", "4"];
    full.extend_from_slice(args);
    lab.exec(from, &full)
}

fn scrape(lab: &Lab, from: Role) -> Output {
    curl(lab, from, &["-f", METRICS])
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn a_live_scrape_passes_promtool_and_a_real_prometheus_scrapes_the_router() {
    if skip_unless_root("a_live_scrape_passes_promtool_and_a_real_prometheus_scrapes_the_router") {
        return;
    }
    let (lab, _config) = setup("metprom");
    let out = scrape(&lab, Role::Clinic);
    let body = text(&out);
    for series in [
        "oqs_edge_tunnel_up{type=\"ip-vpn\"} 1",
        "oqs_edge_tunnel_state{type=\"ip-vpn\",state=\"up\"} 1",
        "oqs_edge_firewall_packets_total{counter=\"killswitch_forward\"} ",
        "oqs_edge_firewall_applied 1",
        "oqs_edge_routes_installed 1",
        "oqs_edge_proxy_listening{route=\"eligibility-api\"} 1",
        "oqs_edge_certificate_valid{certificate=\"oqs\",kind=\"client\"} 1",
        "oqs_edge_certificate_not_after_timestamp_seconds{certificate=\"oqs\",kind=\"client\"} ",
        "oqs_edge_config_reloads_total{result=\"applied\"} 0",
        "oqs_edge_build_info{version=\"",
    ] {
        assert!(body.contains(series), "{series} in the scrape:\n{body}");
    }
    let client_addr = "192.168.60.10";
    assert!(
        !body.contains(client_addr),
        "no client address in a label:\n{body}"
    );

    // promtool lints the live scrape (names, types, units, help).
    let file = lab.dir().join("scrape.txt");
    std::fs::write(&file, &body).unwrap();
    let lint = lab.exec(
        Role::Router,
        &[
            "sh",
            "-c",
            &format!("promtool check metrics < {}", file.display()),
        ],
    );
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus on the clinic PC scrapes the router every second.
    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oqs-edge\n    static_configs:\n      - targets: ['192.168.60.1:9469']\n",
    )
    .unwrap();
    let (_pid, log) = lab.spawn_log(
        Role::Clinic,
        &[
            "prometheus",
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            "--web.listen-address=127.0.0.1:9090",
        ],
    );
    let query = |q: &str| -> Option<String> {
        let out = curl(
            &lab,
            Role::Clinic,
            &[
                "-G",
                "http://127.0.0.1:9090/api/v1/query",
                "--data-urlencode",
                &format!("query={q}"),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    };
    assert!(
        wait_for(60, || query("up{job=\"oqs-edge\"}").as_deref() == Some("1")),
        "Prometheus did not see the router up:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        query("oqs_edge_tunnel_up{type=\"ip-vpn\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        query("oqs_edge_tunnel_state{state=\"up\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        query("oqs_edge_tunnel_state{state=\"down\"}").as_deref(),
        Some("0")
    );
    // What an installer's alert would compute: days until the client certificate ends.
    let days = query(
        "floor((oqs_edge_certificate_not_after_timestamp_seconds{kind=\"client\"} - time()) / 86400)",
    )
    .and_then(|d| d.parse::<f64>().ok());
    assert!(
        days.is_some_and(|d| (390.0..=400.0).contains(&d)),
        "{days:?}"
    );
}

#[test]
fn counters_move_with_traffic_and_only_allowed_sources_and_metrics_are_answered() {
    if skip_unless_root(
        "counters_move_with_traffic_and_only_allowed_sources_and_metrics_are_answered",
    ) {
        return;
    }
    let (lab, config) = setup("metcount");
    let series = "oqs_edge_firewall_packets_total{counter=\"eligibility_to_internet\"}";
    let status_count = |lab: &Lab| {
        lab.status_json(&config)["firewall"]["counters"]["eligibility_to_internet"]["packets"]
            .as_u64()
            .unwrap_or(u64::MAX)
    };
    let before = sample(&text(&scrape(&lab, Role::Clinic)), series).expect("the counter");
    let status_before = status_count(&lab);
    assert_eq!(before as u64, status_before);

    // The eligibility PC tries the internet: rejected, counted.
    let _ = lab.probe(Role::Pc, "192.0.2.80:80".parse().unwrap());
    let _ = lab.probe(Role::Pc, "198.51.100.1:80".parse().unwrap());
    let after = sample(&text(&scrape(&lab, Role::Clinic)), series).expect("the counter");
    let status_after = status_count(&lab);
    assert!(after > before, "the counter moved: {before} -> {after}");
    assert_eq!(
        after as u64 - before as u64,
        status_after - status_before,
        "the scrape moved by what status shows"
    );

    // Only /metrics, only GET.
    for (method, path, code) in [
        ("GET", "/", "404"),
        ("GET", "/metrics/x", "404"),
        ("GET", "/status", "404"),
        ("POST", "/metrics", "405"),
    ] {
        let url = format!("http://192.168.60.1:9469{path}");
        let out = curl(
            &lab,
            Role::Clinic,
            &["-o", "/dev/null", "-w", "%{http_code}", "-X", method, &url],
        );
        assert_eq!(text(&out), code, "{method} {path}");
    }

    // The eligibility PC is not in metrics_allow: the firewall drops it, nothing answers.
    let dropped_before = lab.counters().get("lan_to_router").copied().unwrap_or(0);
    let out = scrape(&lab, Role::Pc);
    assert!(
        !out.status.success(),
        "an outsider got an answer: {}",
        text(&out)
    );
    assert!(text(&out).is_empty());
    assert_eq!(
        out.status.code(),
        Some(28),
        "timed out (dropped), not refused: {out:?}"
    );
    assert!(lab.counters().get("lan_to_router").copied().unwrap_or(0) > dropped_before);
}
