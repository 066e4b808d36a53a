//! Large uploads through the mTLS proxy (issue 22: online claims send files): the real
//! `oqs-edge run` in the lab's router, curl on the clinic PC posting a file through the
//! `online-claims` route (local-ca TLS on the LAN), nginx with `ssl_verify_client on` in
//! `closed` reading the whole body before it answers (`/upload`, see `Lab::start_nginx`).
//!
//! The body streams: the daemon's RSS grows by at most 16 MB for a 256 MB POST, and when the
//! path to the upstream is slow (a 40 Mbit/s token bucket on the closed network's side), the
//! client is held to that pace instead of the daemon taking the body into memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netns_tests::{rss_kb, skip_unless_root, wait_for, Lab, Role};

const MB: u64 = 1 << 20;
/// The largest RSS growth allowed while a body streams through.
const MAX_GROWTH_KB: u64 = 16 * 1024;

struct Setup {
    lab: Lab,
    pid: u32,
    ca: PathBuf,
    /// The daemon's RSS (kB) after a first 1 MB upload set up the route's connections.
    before: u64,
}

/// The lab with nginx and the daemon, warmed by a 1 MB upload; None (the test skips) when
/// not root.
fn setup(test: &str, name: &str) -> Option<Setup> {
    if skip_unless_root(test) {
        return None;
    }
    let lab = Lab::build(name);
    let config = lab.write_config(&lab.config_from_lab_yaml());
    lab.start_nginx("ca/oqs-server");
    let pid = lab.start_daemon(&config);
    assert!(
        wait_for(15, || lab.status_json(&config)["proxy"]["routes"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["listening"] == true))),
        "the proxy routes did not start listening:\n{}",
        lab.daemon_log()
    );
    let ca = lab.dir().join("local-ca/ca.pem");
    let small = file_of(&lab, MB);
    assert_received(&upload(&lab, &ca, &small), MB, &lab);
    let before = rss_kb(pid);
    Some(Setup {
        lab,
        pid,
        ca,
        before,
    })
}

/// A zero-filled file of `size` bytes in the lab dir (sparse: nothing to write).
fn file_of(lab: &Lab, size: u64) -> PathBuf {
    let path = lab.dir().join(format!("upload-{}m.bin", size / MB));
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    path
}

/// What curl reported for one upload.
struct Upload {
    body: String,
    code: String,
    size: u64,
    seconds: f64,
    stderr: String,
}

/// POST `file` (streamed from disk, `-T`) through the online-claims route from the clinic PC.
fn upload(lab: &Lab, ca: &Path, file: &Path) -> Upload {
    let out = lab.exec(
        Role::Clinic,
        &[
            "curl",
            "-sS",
            "--max-time",
            "600",
            "--cacert",
            ca.to_str().unwrap(),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            file.to_str().unwrap(),
            "-w",
            "\ncode=%{http_code} size=%{size_upload} time=%{time_total}",
            "https://192.168.60.1:8444/upload/claims",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once("\ncode=").unwrap_or((&text, ""));
    let field = |name: &str| {
        tail.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    Upload {
        body: body.to_owned(),
        code: tail
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        size: field("size=").parse().unwrap_or(0),
        seconds: field("time=").parse().unwrap_or(0.0),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `f` while sampling the daemon's RSS every 20 ms; returns f's result and the peak (kB).
fn with_peak_rss<T>(pid: u32, f: impl FnOnce() -> T) -> (T, u64) {
    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(rss_kb(pid));
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let result = f();
        done.store(true, Ordering::Relaxed);
        result
    });
    (result, peak.load(Ordering::Relaxed))
}

fn assert_received(up: &Upload, size: u64, lab: &Lab) {
    assert_eq!(
        up.code,
        "200",
        "the upload failed: {}{}\n{}",
        up.body,
        up.stderr,
        lab.daemon_log()
    );
    assert_eq!(up.size, size, "curl sent {} of {size} bytes", up.size);
    assert!(
        up.body.contains(&format!("upload received {size} bytes")),
        "the upstream did not take the whole body: {}",
        up.body
    );
}

#[test]
fn a_256_mb_post_streams_to_the_upstream_in_bounded_memory() {
    let Some(t) = setup(
        "a_256_mb_post_streams_to_the_upstream_in_bounded_memory",
        "upl",
    ) else {
        return;
    };

    let size = 256 * MB;
    let file = file_of(&t.lab, size);
    let (up, peak) = with_peak_rss(t.pid, || upload(&t.lab, &t.ca, &file));
    assert_received(&up, size, &t.lab);
    let growth = peak.saturating_sub(t.before);
    eprintln!(
        "UPLOAD: 256 MB in {:.1} s ({:.0} MB/s); daemon RSS {} kB, peak {peak} kB (+{growth} kB)",
        up.seconds,
        size as f64 / MB as f64 / up.seconds.max(0.001),
        t.before
    );
    assert!(
        growth <= MAX_GROWTH_KB,
        "the daemon's RSS grew by {growth} kB during a 256 MB upload (allowed: {MAX_GROWTH_KB} kB)"
    );
}

#[test]
fn a_slow_upstream_slows_the_client_instead_of_filling_memory() {
    let Some(t) = setup(
        "a_slow_upstream_slows_the_client_instead_of_filling_memory",
        "uplslow",
    ) else {
        return;
    };

    // The closed network's side takes 40 Mbit/s (5 MB/s); the LAN side is a veth, far faster.
    let rate_bytes = 5.0 * 1e6;
    t.lab.ok(
        Role::Vpngw,
        &[
            "tc", "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "40mbit", "burst", "64kb",
            "latency", "200ms",
        ],
    );
    let size = 64 * MB;
    let file = file_of(&t.lab, size);
    let started = Instant::now();
    let ((up, acked), peak) = with_peak_rss(t.pid, || {
        std::thread::scope(|s| {
            let curl = s.spawn(|| upload(&t.lab, &t.ca, &file));
            // 4 s in: how much of the body the router has taken from the client (TCP
            // bytes_acked on the client's socket). At 5 MB/s plus what the buffers hold, well
            // under the whole; a proxy that took the body in would have all 64 MB by now.
            std::thread::sleep(Duration::from_secs(4));
            let ss = t
                .lab
                .ok(Role::Clinic, &["ss", "-tinH", "dst", "192.168.60.1:8444"]);
            let acked: u64 = ss
                .split_whitespace()
                .filter_map(|f| f.strip_prefix("bytes_acked:"))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
            (curl.join().unwrap(), acked)
        })
    });
    assert_received(&up, size, &t.lab);
    let growth = peak.saturating_sub(t.before);
    let rate = size as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "UPLOAD (slow upstream): 64 MB in {:.1} s ({:.1} MB/s through a 5 MB/s link), {:.1} MB taken from the client after 4 s; daemon RSS {} kB, peak {peak} kB (+{growth} kB)",
        up.seconds,
        rate / 1e6,
        acked as f64 / 1e6,
        t.before
    );
    assert!(
        acked > 0 && acked < size * 3 / 4,
        "after 4 s the router had taken {acked} bytes of the client's {size}: the client was not slowed"
    );
    assert!(
        rate <= rate_bytes * 1.25,
        "the upload went at {:.1} MB/s through a 5 MB/s upstream",
        rate / 1e6
    );
    assert!(
        growth <= MAX_GROWTH_KB,
        "the daemon's RSS grew by {growth} kB while the upstream was slow (allowed: {MAX_GROWTH_KB} kB)"
    );
}
