//! Benchmark (ignored by `cargo test`; run by netns-tests/bench/dns.sh): the daemon's DNS relay
//! (Hickory DNS) against dnsmasq as the same forwarder, in one lab and one run. dnsperf from
//! the eligibility PC against 192.168.50.1:53, two workloads: closed-zone names (forwarded to
//! the closed DNS on 10.200.0.53 and cached; the common case) and internet names (REFUSED,
//! nothing leaves the router). Each round runs both contenders, the order alternating so
//! drift on the shared machine hits both. Prints `round …` lines, medians, the ratios oqs-edge
//! / dnsmasq and both servers' RSS. Asserts nothing about speed.
//!
//! p99: dnsperf 2.10 prints only the average latency and its standard deviation, so it runs
//! with `-v`, which prints one line per answer with its latency (`> NOERROR name A 0.000123`,
//! microsecond resolution), written to a file; the p99 is the nearest-rank 99th percentile of
//! those latencies. Queries lost (no answer within dnsperf's 2 s timeout) have no latency and
//! are counted separately.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netns_tests::lab::{Lab, Role};
use netns_tests::{process_ended, skip_unless_root, wait_for};

const RELAY: &str = "192.168.50.1";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// One dnsperf run's figures.
#[derive(Clone, Copy, Debug)]
struct Run {
    qps: f64,
    /// Seconds.
    avg: f64,
    /// Seconds: nearest-rank 99th percentile of the per-answer latencies.
    p99: f64,
    completed: u64,
    lost: u64,
    /// The server's peak RSS during the run, KiB.
    rss: u64,
}

fn field<'a>(summary: &'a str, label: &str) -> Option<&'a str> {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
}

/// dnsperf from the PC for `seconds`, `-v` into a file; the server's RSS sampled every 100 ms.
fn dnsperf(lab: &Lab, queries: &Path, seconds: u64, tag: &str, pid: u32) -> Run {
    let out = lab.dir().join(format!("dnsperf-{tag}.txt"));
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let command = format!(
        "dnsperf -s {RELAY} -d '{}' -l {seconds} -q 100 -t 2 -v > '{}' 2>&1",
        queries.display(),
        out.display()
    );
    let status = lab.exec(Role::Pc, &["sh", "-c", &command]);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.status.success(),
        "dnsperf failed ({tag}): {}",
        text.lines()
            .filter(|l| !l.starts_with('>'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut latencies: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let summary = &text[text.find("Statistics:").unwrap_or(0)..];
    let number = |label: &str| -> f64 {
        field(summary, label)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("dnsperf printed no `{label}` ({tag}):\n{summary}"))
    };
    let p99 = if latencies.is_empty() {
        f64::NAN
    } else {
        let rank = (latencies.len() as f64 * 0.99).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    let _ = std::fs::remove_file(&out);
    Run {
        qps: number("Queries per second:"),
        avg: number("Average Latency (s):"),
        p99,
        completed: number("Queries completed:") as u64,
        lost: number("Queries lost:") as u64,
        rss: peak.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn us(seconds: f64) -> String {
    format!("{:.0} µs", seconds * 1e6)
}

/// Both workloads against whatever answers on 192.168.50.1:53 now (process `pid`).
fn workloads(
    lab: &Lab,
    files: &[(&str, &Path)],
    seconds: u64,
    who: &str,
    round: u64,
    pid: u32,
) -> Vec<Run> {
    files
        .iter()
        .map(|(workload, file)| {
            let run = dnsperf(lab, file, seconds, &format!("{who}-{workload}-{round}"), pid);
            eprintln!(
                "round {round}: {who:<8} {workload:<7} {:>8.0} q/s  avg {:>7}  p99 {:>7}  completed {} lost {}  RSS {} KiB",
                run.qps,
                us(run.avg),
                us(run.p99),
                run.completed,
                run.lost,
                run.rss
            );
            run
        })
        .collect()
}

/// The relay (whichever) answers a closed name with the closed server's address and refuses
/// an internet one.
fn answers(lab: &Lab) -> bool {
    lab.dig(
        Role::Pc,
        &format!("@{RELAY}"),
        &["+short", "hweb-api.oqs.example"],
    )
    .trim()
        == "10.200.0.10"
        && lab
            .dig(Role::Pc, &format!("@{RELAY}"), &["www.example.com"])
            .contains("status: REFUSED")
}

fn port_53_free(lab: &Lab) -> bool {
    !lab.ok(Role::Router, &["ss", "-Hulnp", "sport = :53"])
        .contains(&format!("{RELAY}:53"))
}

#[test]
#[ignore = "benchmark: run netns-tests/bench/dns.sh"]
fn dns_relay_oqs_edge_vs_dnsmasq() {
    if skip_unless_root("dns_relay_oqs_edge_vs_dnsmasq") {
        return;
    }
    let rounds = env_or("BENCH_ROUNDS", 3);
    let seconds = env_or("BENCH_SECONDS", 10);
    let lab = Lab::build("dnsbench");
    let _closed_dns = lab.start_closed_dns();
    let config = lab.write_config(&lab.config_from_lab_yaml());

    // Closed-zone names (two, both answered by the closed DNS, TTL 2 s: after the first
    // second almost every query is a cache hit) and 1,000 distinct internet names (REFUSED).
    let closed = lab.dir().join("closed-queries.txt");
    std::fs::write(
        &closed,
        "hweb-api.oqs.example A\nclaims.oqs.example A\n".repeat(500),
    )
    .unwrap();
    let refused = lab.dir().join("refused-queries.txt");
    let names: String = (0..1000)
        .map(|i| format!("host{i}.example.com A\n"))
        .collect();
    std::fs::write(&refused, names).unwrap();
    let files = [("closed", closed.as_path()), ("refused", refused.as_path())];

    // 1. oqs-edge: the daemon on the lab config, its relay on the segment addresses.
    let run_oqs_edge = |round: u64| -> (Vec<Run>, u64) {
        let pid = lab.start_daemon(&config);
        assert!(
            wait_for(20, || answers(&lab)),
            "the relay did not answer:\n{}",
            lab.daemon_log()
        );
        let idle = rss_kib(pid);
        let runs = workloads(&lab, &files, seconds, "oqs-edge", round, pid);
        lab.stop(pid);
        assert!(wait_for(10, || process_ended(pid)));
        assert!(
            wait_for(10, || port_53_free(&lab)),
            "port 53 still taken after the daemon stopped"
        );
        (runs, idle)
    };
    // 2. dnsmasq as the same forwarder, under the table the daemon left: the closed zone to
    // the closed DNS, cached; with --no-resolv and no other server, any other name is
    // answered REFUSED (dnsmasq 2.90: "no servers" → REFUSED), as the relay does.
    let run_dnsmasq = |round: u64| -> (Vec<Run>, u64) {
        // The daemon takes back the segment addresses it put in place; put this one back.
        if !lab
            .ok(
                Role::Router,
                &["ip", "-4", "address", "show", "dev", "lan0"],
            )
            .contains(&format!("{RELAY}/24"))
        {
            lab.ok(
                Role::Router,
                &[
                    "ip",
                    "address",
                    "add",
                    &format!("{RELAY}/24"),
                    "dev",
                    "lan0",
                ],
            );
        }
        let pid = lab.spawn(
            Role::Router,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--bind-interfaces",
                &format!("--listen-address={RELAY}"),
                "--no-resolv",
                "--no-hosts",
                "--server=/oqs.example/10.200.0.53",
                "--cache-size=10000",
                "--dns-forward-max=1000",
            ],
        );
        assert!(
            wait_for(20, || answers(&lab)),
            "dnsmasq as the forwarder did not answer (closed name → 10.200.0.10, others REFUSED)"
        );
        let idle = rss_kib(pid);
        let runs = workloads(&lab, &files, seconds, "dnsmasq", round, pid);
        lab.stop(pid);
        assert!(wait_for(10, || process_ended(pid)));
        assert!(wait_for(10, || port_53_free(&lab)));
        (runs, idle)
    };

    // results[contender][workload] = runs per round
    let mut ours: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut theirs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let (mut our_idle, mut their_idle) = (0, 0);
    for round in 0..rounds {
        let ((o, oi), (t, ti)) = if round % 2 == 0 {
            let o = run_oqs_edge(round);
            (o, run_dnsmasq(round))
        } else {
            let t = run_dnsmasq(round);
            (run_oqs_edge(round), t)
        };
        our_idle = our_idle.max(oi);
        their_idle = their_idle.max(ti);
        for w in 0..2 {
            eprintln!(
                "round {round}: ratio {:<7} qps {:.2}  avg latency {:.2}  p99 {:.2}",
                files[w].0,
                o[w].qps / t[w].qps,
                o[w].avg / t[w].avg,
                o[w].p99 / t[w].p99
            );
            ours[w].push(o[w]);
            theirs[w].push(t[w]);
        }
    }

    let log = lab.daemon_log();
    let lines = log.lines().count();
    eprintln!("daemon log: {lines} lines after the last round");

    let mut result = String::from("RESULT:");
    for (w, (workload, _)) in files.iter().enumerate() {
        let med = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let ratios = |f: fn(&Run) -> f64| {
            median(
                ours[w]
                    .iter()
                    .zip(&theirs[w])
                    .map(|(o, t)| f(o) / f(t))
                    .collect(),
            )
        };
        result.push_str(&format!(
            " {workload}: oqs-edge {:.0} q/s avg {} p99 {} | dnsmasq {:.0} q/s avg {} p99 {} | ratio qps {:.2} avg {:.2} p99 {:.2} |",
            med(&ours[w], |r| r.qps),
            us(med(&ours[w], |r| r.avg)),
            us(med(&ours[w], |r| r.p99)),
            med(&theirs[w], |r| r.qps),
            us(med(&theirs[w], |r| r.avg)),
            us(med(&theirs[w], |r| r.p99)),
            ratios(|r| r.qps),
            ratios(|r| r.avg),
            ratios(|r| r.p99),
        ));
    }
    let peak = |runs: &[Vec<Run>; 2]| runs.iter().flatten().map(|r| r.rss).max().unwrap_or(0);
    result.push_str(&format!(
        " RSS idle/peak oqs-edge {:.1}/{:.1} MiB dnsmasq {:.1}/{:.1} MiB | {rounds} rounds of {seconds} s (ratios: medians of the per-round ratios)",
        our_idle as f64 / 1024.0,
        peak(&ours) as f64 / 1024.0,
        their_idle as f64 / 1024.0,
        peak(&theirs) as f64 / 1024.0,
    ));
    eprintln!("{result}");
}
