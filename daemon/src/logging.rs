//! Where the daemon's log lines go: the systemd journal when it runs as a service (stderr is
//! the journal stream), stderr otherwise, so a daemon started by hand prints to its terminal.
//!
//! Log lines may carry structured fields as `log` key-values; the journal stores each as a
//! field an operator can filter on (`oqs_event` becomes `OQS_EVENT`):
//!
//! ```text
//! journalctl -u oqs-edge OQS_EVENT=route-added
//! journalctl -u oqs-edge OQS_ROUTE=10.200.0.0/24
//! journalctl -u oqs-edge OQS_EVENT=proxy-request OQS_PROXY_ROUTE=eligibility-api
//! ```
//!
//! The journal's priority follows the level: error → err (3), warn → warning (4), info → notice
//! (5). On stderr the fields are left out: the message already says what happened.

use log::LevelFilter;

/// The value of `OQS_EVENT` for each kind of event the daemon logs.
pub mod event {
    pub const STARTED: &str = "started";
    pub const FIREWALL_APPLIED: &str = "firewall-applied";
    pub const FIREWALL_RESTORED: &str = "firewall-restored";
    pub const FIREWALL_FAILED: &str = "firewall-failed";
    pub const ROUTE_ADDED: &str = "route-added";
    pub const ROUTE_REMOVED: &str = "route-removed";
    pub const ROUTE_FAILED: &str = "route-failed";
    pub const TUNNEL_STATE: &str = "tunnel-state";
    /// The active gateway changed (failover or failback, issue 21).
    pub const GATEWAY_SWITCH: &str = "gateway-switch";
    pub const RELOAD: &str = "reload";
    pub const CONFIG_INVALID: &str = "config-invalid";
    pub const STOPPING: &str = "stopping";
    /// One request (`mode: http`) or connection (`mode: tcp`) through a proxy route.
    pub const PROXY_REQUEST: &str = "proxy-request";
    /// A proxy route could not reach or verify its upstream.
    pub const PROXY_UPSTREAM_ERROR: &str = "proxy-upstream-error";
    /// A client certificate was loaded, replaced or found unusable.
    pub const CERTIFICATE: &str = "certificate";
    /// A certificate the router depends on is near its end, or past it (with
    /// `OQS_DAYS_LEFT`, `OQS_FILE`, `OQS_CERTIFICATE`).
    pub const CERTIFICATE_EXPIRY: &str = "certificate-expiry";
    /// The DHCP server (dnsmasq) started, stopped or failed.
    pub const DHCP: &str = "dhcp";
    /// The WAN's DHCP client (dhcpcd) started, stopped or failed.
    pub const WAN: &str = "wan";
    /// A WAN lease (DHCPv4, DHCPv6, RA) gained, renewed or lost.
    pub const WAN_LEASE: &str = "wan-lease";
    /// A segment address added, removed or missing.
    pub const SEGMENT_ADDRESS: &str = "segment-address";
    /// The DNS relay started or failed.
    pub const DNS: &str = "dns";
}

/// Where the log went, for the first line the daemon writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

/// Install the logger for `oqs-edge run`: the journal when stderr is connected to it.
pub fn install() -> Sink {
    log::set_max_level(LevelFilter::Info);
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            let journal = journal
                .with_syslog_identifier("oqs-edge".to_owned())
                .with_extra_fields([("OQS_VERSION", env!("CARGO_PKG_VERSION"))]);
            if journal.install().is_ok() {
                return Sink::Journal;
            }
        }
    }
    static LOGGER: StderrLog = StderrLog;
    let _ = log::set_logger(&LOGGER);
    Sink::Stderr
}

/// One line per record: `oqs-edge[PID]: LEVEL: message`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            // One write(2) per line: stderr is unbuffered, and the proxy logs every request
            // from several threads (piecewise writes cost 40% of its CPU in the benchmark).
            // Through a descriptor of our own, not std's `Stderr`: its lock made the proxy's
            // workers wait on each other's writes (a futex call every other request).
            let mut line = stderr_line(record);
            line.push('\n');
            use std::io::Write as _;
            match unlocked_stderr() {
                Some(mut file) => drop(file.write_all(line.as_bytes())),
                None => drop(std::io::stderr().write_all(line.as_bytes())),
            }
        }
    }
    fn flush(&self) {}
}

/// A duplicate of descriptor 2: the same open file, written without std's lock. A line is one
/// write(2), which the kernel does not interleave with another thread's.
fn unlocked_stderr() -> Option<&'static std::fs::File> {
    use std::os::fd::AsFd as _;
    static STDERR: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    STDERR
        .get_or_init(|| {
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::fs::File::from)
        })
        .as_ref()
}

fn stderr_line(record: &log::Record) -> String {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    format!(
        "oqs-edge[{}]: {}: {}",
        PID.get_or_init(std::process::id),
        record.level().as_str().to_lowercase(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_name_the_level_and_leave_the_fields_out() {
        let args = format_args!("route added: 10.200.0.0/24 via 198.51.100.1 dev wan0");
        let kvs = [("oqs_event", event::ROUTE_ADDED)];
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .args(args)
            .key_values(&kvs)
            .build();
        let line = stderr_line(&record);
        assert!(line.starts_with("oqs-edge["), "{line}");
        assert!(
            line.ends_with("]: warn: route added: 10.200.0.0/24 via 198.51.100.1 dev wan0"),
            "{line}"
        );
    }
}
