//! Telling systemd (`Type=notify`) what the daemon is doing. Every call is a no-op when
//! `NOTIFY_SOCKET` is not set (the daemon run by hand or in tests without a listener).
//!
//! - `READY=1` only once the firewall stands, so units ordered after oqs-edge start on a
//!   router that is already fail-closed;
//! - `STATUS=` the state in plain words, which `systemctl status oqs-edge` shows;
//! - `WATCHDOG=1` from the supervisor loop, only while the loop runs and the firewall is in the
//!   kernel: a hung loop, or one that cannot put the table back, is restarted by systemd;
//! - `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` on the way out.

use std::time::Duration;

use log::warn;
use sd_notify::NotifyState;

use crate::config::{TunnelSection, ValidConfig};
use crate::logging::event;
use crate::status::{Health, Status};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // Not fatal: systemd will say the daemon did not report (and restart it if need be).
        warn!("cannot notify systemd: {e}");
    }
}

/// The firewall is applied: the service is up. `status` is the plain-words summary.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload begins; [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        // systemd ≥ 253 wants the timestamp with RELOADING=1; older ones ignore it.
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the config"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading the config"),
        ]),
    }
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping; the firewall stays in place"),
    ]);
}

/// The loop is alive and healthy enough that restarting would not help.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often the supervisor loop must come round: its own interval, or half the watchdog
/// timeout when that is shorter (systemd's advice), so a healthy loop is never killed.
pub fn loop_interval(own: Duration) -> Duration {
    match sd_notify::watchdog_enabled() {
        Some(timeout) if timeout / 2 < own && !timeout.is_zero() => timeout / 2,
        _ => own,
    }
}

/// What the supervisor loop last told systemd and the log, so each tick says only what changed.
#[derive(Default)]
pub struct Report {
    sent: String,
    tunnel: Option<(String, String)>,
}

impl Report {
    /// The summary for `STATUS=`; a change of the tunnel's state is logged on the way, with
    /// the tunnel's peer as a field (`journalctl OQS_EVENT=tunnel-state`).
    pub fn status(&mut self, status: &Status, config: &ValidConfig) -> String {
        let tunnel = (status.tunnel.state.clone(), status.tunnel.detail.clone());
        if self.tunnel.as_ref() != Some(&tunnel) {
            let level = if tunnel.0 == "up" {
                log::Level::Info
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                oqs_event = event::TUNNEL_STATE,
                oqs_tunnel = status.tunnel.kind.as_str(),
                oqs_state = tunnel.0.as_str(),
                oqs_peer = peer(config).as_str();
                "tunnel ({}) is {}: {}",
                status.tunnel.kind,
                tunnel.0,
                tunnel.1
            );
            self.tunnel = Some(tunnel);
        }
        let line = summary(status);
        self.sent.clone_from(&line);
        line
    }

    /// One round of the supervisor loop: `STATUS=` when it changed, `WATCHDOG=1` when the
    /// firewall stands.
    pub fn tick(&mut self, firewall: bool, status: &Status, config: &ValidConfig) {
        let before = std::mem::take(&mut self.sent);
        let line = self.status(status, config);
        if line != before {
            self::status(&line);
        }
        if firewall {
            watchdog();
        }
    }
}

/// The other end of the tunnel, as configured: the IP-VPN gateway, the WireGuard endpoint or
/// the IPsec gateway.
pub fn peer(config: &ValidConfig) -> String {
    match config.tunnel() {
        TunnelSection::IpVpn(vpn) => vpn.gateway.value.to_string(),
        TunnelSection::WireGuard(wg) => wg.peer.endpoint.value.to_string(),
        TunnelSection::Ipsec(ipsec) => ipsec.remote_address.first().value,
    }
}

/// The certificate that ends first, for the STATUS= line.
fn nearest_expiry(cert: &crate::status::CertificateInfo) -> String {
    let days = cert.days_left.unwrap_or_default();
    let kind = match cert.kind.as_str() {
        "client" | "" => String::new(),
        kind => format!("{kind} "),
    };
    format!(
        "nearest expiry: certificate {kind}{} {days} days left",
        cert.name
    )
}

/// The one line `systemctl status` shows: what is wrong first, else what is up.
pub fn summary(status: &Status) -> String {
    if let Some(pending) = &status.pending {
        let rest = summary(&Status {
            pending: None,
            ..status.clone()
        });
        return format!("{}; {rest}", pending.line());
    }
    if let (Health::Degraded, Some(first)) = (status.health, status.problems.first()) {
        let more = status.problems.len() - 1;
        let mut line = if more > 0 {
            format!("degraded: {first} (and {more} more: `oqs-edge status`)")
        } else {
            format!("degraded: {first}")
        };
        // A certificate problem names its end already; otherwise say which one ends first.
        if let Some(cert) = status.nearest_expiry().filter(|c| !c.expiry.is_problem()) {
            line.push_str("; ");
            line.push_str(&nearest_expiry(cert));
        }
        return line;
    }
    let mut parts = vec![format!(
        "tunnel {} {}",
        status.tunnel.kind, status.tunnel.state
    )];
    parts.push(if status.firewall.applied {
        "firewall applied".to_owned()
    } else {
        "firewall NOT applied".to_owned()
    });
    let routes = status.routes.iter().filter(|r| r.installed).count();
    parts.push(match routes {
        1 => "1 route".to_owned(),
        n => format!("{n} routes"),
    });
    if let Some(cert) = status.nearest_expiry() {
        parts.push(nearest_expiry(cert));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CertificateInfo, RouteInfo, TunnelInfo};

    fn healthy() -> Status {
        let mut status = Status {
            health: Health::Healthy,
            tunnel: TunnelInfo {
                kind: "ip-vpn".into(),
                state: "up".into(),
                detail: String::new(),
                ..TunnelInfo::default()
            },
            ..Status::default()
        };
        status.firewall.applied = true;
        for route in [
            "10.200.0.0/24 via 198.51.100.1",
            "10.210.0.0/24 via 198.51.100.1",
        ] {
            status.routes.push(RouteInfo {
                route: route.into(),
                installed: true,
                problem: None,
            });
        }
        status.certificates.push(CertificateInfo {
            name: "oqs".into(),
            days_left: Some(412),
            ..Default::default()
        });
        status
    }

    #[test]
    fn a_healthy_summary_names_tunnel_routes_and_certificates() {
        assert_eq!(
            summary(&healthy()),
            "tunnel ip-vpn up, firewall applied, 2 routes, nearest expiry: certificate oqs 412 days left"
        );
    }

    #[test]
    fn a_pending_change_leads_the_summary() {
        let mut status = healthy();
        status.pending = Some(crate::status::PendingInfo {
            deadline: "2026-12-03T10:30:00Z".into(),
            secs_left: 42,
            previous_digest: "57ad6a22c183aaaa".into(),
            uid: None,
        });
        assert_eq!(
            summary(&status),
            "PENDING CHANGE: rolls back to 57ad6a22c183 at 2026-12-03T10:30:00Z (42s left) \
             unless `oqs-edge confirm`; tunnel ip-vpn up, firewall applied, 2 routes, \
             nearest expiry: certificate oqs 412 days left"
        );
    }

    #[test]
    fn a_degraded_summary_puts_the_problem_first() {
        let mut status = healthy();
        status.health = Health::Degraded;
        status.problems = vec![
            "tunnel (ip-vpn) is down: the WAN interface wan0 is down or missing".into(),
            "route 10.200.0.0/24 via 198.51.100.1 dev wan0 is not installed".into(),
        ];
        assert_eq!(
            summary(&status),
            "degraded: tunnel (ip-vpn) is down: the WAN interface wan0 is down or missing \
             (and 1 more: `oqs-edge status`); nearest expiry: certificate oqs 412 days left"
        );
    }
}
