//! Safe changes: `reload --confirm` (applied, then rolled back unless `confirm` comes before
//! the deadline), `confirm`, `rollback [ID]`, the history, and the running config for `diff`.
//!
//! The pending change is on disk before the new config is applied, so a daemon that dies (or
//! a router that reboots) with a change pending rolls it back at the next start when the
//! deadline has passed, or keeps waiting until it. A rollback puts the previous file back at the
//! config path (the rejected one kept beside it) and applies it like a reload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};
use serde_json::json;

use super::history::{self, PendingChange, Store, CONFIRM_MAX};
use super::{Daemon, ReloadResult};
use crate::config::{self, FileChecks};
use crate::operator::control::{Pending, Request};
use crate::operator::notify;
use crate::status::PendingInfo;

/// `journalctl OQS_EVENT=…` for the life of a pending change.
const EVENT_PENDING: &str = "change-pending";
const EVENT_CONFIRMED: &str = "change-confirmed";
const EVENT_ROLLBACK: &str = "rollback";

/// Resolves when the pending change's time is up; never when nothing is pending.
pub(super) async fn until(left: Option<Duration>) {
    match left {
        Some(left) => tokio::time::sleep(left).await,
        None => std::future::pending().await,
    }
}

/// At start, before the config is read: a pending change whose deadline has passed is undone
/// (the previous file put back). Whether it was put back.
pub(super) fn roll_back_expired_at_start(state_dir: &std::path::Path) -> bool {
    let store = Store::new(state_dir);
    let now = SystemTime::now();
    let pending = match store.pending() {
        Ok(Some(p)) if p.left(now).is_zero() => p,
        Ok(_) => return false,
        Err(e) => {
            error!(oqs_event = EVENT_ROLLBACK; "cannot read the pending change: {e}");
            return false;
        }
    };
    let restored = store
        .source(&pending.previous_sha256)
        .and_then(|previous| history::restore_file(&pending.config_path, &previous, now));
    let rolled_back = restored.is_ok();
    match restored {
        Ok(rejected) => {
            warn!(
                oqs_event = EVENT_ROLLBACK;
                "the change applied with --confirm was not confirmed by {} and the daemon was down then: rolling back to {} at start{}",
                pending.deadline_text(),
                short(&pending.previous_sha256),
                kept_as(rejected.as_deref())
            );
        }
        Err(e) => error!(
            oqs_event = EVENT_ROLLBACK;
            "the unconfirmed change cannot be rolled back ({e}); the file at {} stays",
            pending.config_path.display()
        ),
    }
    if let Err(e) = store.clear_pending() {
        error!(oqs_event = EVENT_ROLLBACK; "{e}");
    }
    rolled_back
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

fn kept_as(rejected: Option<&std::path::Path>) -> String {
    rejected
        .map(|p| format!("; the rejected file is kept as {}", p.display()))
        .unwrap_or_default()
}

/// The control socket peer's uid as a journal field (empty when the kernel did not say).
fn uid_field(uid: Option<u32>) -> String {
    uid.map(|u| u.to_string()).unwrap_or_default()
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Daemon {
    fn store(&self) -> Store {
        Store::new(&self.options.state_dir)
    }

    /// Add the config in force to the history (a failure to write it is logged: the change
    /// itself stands).
    pub(super) fn record(&self, how: &str, source: &str, uid: Option<u32>) {
        let recorded = self.store().record(
            self.config.digest(),
            source.as_bytes(),
            how,
            uid,
            SystemTime::now(),
        );
        if let Err(e) = recorded {
            error!("history: {e}");
        }
    }

    /// At start: the config in force into the history, and a pending change (its deadline not
    /// yet passed) taken up again.
    pub(super) fn started_history(&mut self, source: &str, rolled_back: bool) {
        let how = if rolled_back { "rollback" } else { "start" };
        let store = self.store();
        if let Err(e) = store.started(
            self.config.digest(),
            source.as_bytes(),
            how,
            SystemTime::now(),
        ) {
            error!("history: {e}");
        }
        match store.pending() {
            Ok(Some(pending)) => {
                warn!(
                    oqs_event = EVENT_PENDING;
                    "a change applied with --confirm is pending: it is rolled back to {} at {} unless `oqs-edge confirm`",
                    short(&pending.previous_sha256),
                    pending.deadline_text()
                );
                self.pending = Some(pending);
            }
            Ok(None) => {}
            Err(e) => error!(oqs_event = EVENT_PENDING; "{e}"),
        }
    }

    pub(super) fn refused_while_pending(&self) -> Option<String> {
        self.pending.as_ref().map(|p| {
            format!(
                "reload refused, nothing was changed: a change applied with --confirm is pending until {}; \
                 `oqs-edge confirm` keeps it, `oqs-edge rollback` undoes it, then reload",
                p.deadline_text()
            )
        })
    }

    pub(super) fn pending_left(&self) -> Option<Duration> {
        self.pending.as_ref().map(|p| p.left(SystemTime::now()))
    }

    pub(super) fn pending_info(&self) -> Option<PendingInfo> {
        self.pending.as_ref().map(|p| PendingInfo {
            deadline: p.deadline_text(),
            secs_left: p.left(SystemTime::now()).as_secs(),
            previous_digest: p.previous_sha256.clone(),
            uid: p.uid,
        })
    }

    pub(super) async fn serve_change(&mut self, pending: Pending) {
        let uid = pending.peer_uid;
        let answer = match pending.request {
            Request::ReloadConfirm(secs) => self.reload_confirm(secs, uid).await,
            Request::Confirm => self.confirm(uid).await,
            Request::History => match self.store().entries() {
                Ok(entries) => json!({ "result": "ok", "entries": entries }),
                Err(e) => json!({ "result": "failed", "message": e.to_string() }),
            },
            Request::Rollback(id) => {
                let why = match uid {
                    Some(uid) => format!("`oqs-edge rollback` by uid {uid}"),
                    None => "`oqs-edge rollback`".to_owned(),
                };
                let (result, message) = self.roll_back(id, uid, &why).await;
                json!({ "result": result.as_str(), "message": message })
            }
            Request::Running => self.running(),
            Request::Status | Request::Reload => {
                json!({ "result": "failed", "message": "not a change request" })
            }
        };
        pending.answer(&answer).await;
    }

    /// The running config's path and text, for `oqs-edge diff`.
    fn running(&self) -> serde_json::Value {
        match self.store().source(self.config.digest()) {
            Ok(bytes) => json!({
                "result": "ok",
                "path": self.config.path(),
                "digest": self.config.digest(),
                "source": String::from_utf8_lossy(&bytes),
            }),
            Err(e) => json!({ "result": "failed", "message": e.to_string() }),
        }
    }

    async fn reload_confirm(&mut self, secs: u64, uid: Option<u32>) -> serde_json::Value {
        let refuse = |message: String| json!({ "result": "refused", "message": message });
        let window = Duration::from_secs(secs);
        let min = self.options.confirm_min;
        if !(min..=CONFIRM_MAX).contains(&window) {
            return refuse(format!(
                "reload refused, nothing was changed: --confirm must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(CONFIRM_MAX)
            ));
        }
        if let Some(p) = &self.pending {
            return json!({
                "result": ReloadResult::Pending.as_str(),
                "message": format!(
                    "reload refused, nothing was changed: another change is pending until {}; \
                     `oqs-edge confirm` or `oqs-edge rollback` it first",
                    p.deadline_text()
                ),
            });
        }
        // Without the running config kept, there would be nothing to roll back to.
        let store = self.store();
        if let Err(e) = store.source(self.config.digest()) {
            return refuse(format!(
                "reload refused, nothing was changed: the running config is not kept for a rollback ({e})"
            ));
        }
        let now = SystemTime::now();
        let change = PendingChange {
            config_path: self.options.config_path.clone(),
            previous_sha256: self.config.digest().to_owned(),
            deadline_unix: unix(now) + secs,
            uid,
        };
        // On disk before anything is applied: a crash from here on still rolls back.
        if let Err(e) = store.set_pending(&change) {
            return refuse(format!("reload refused, nothing was changed: {e}"));
        }
        self.pending = Some(change.clone());
        let (result, message, source) = self.apply_file().await;
        let Some(source) = source else {
            self.pending = None;
            if let Err(e) = store.clear_pending() {
                error!("{e}");
            }
            notify::status(&notify::summary(&self.status().await));
            let message = if result == ReloadResult::Unchanged {
                format!("{message}; nothing to confirm")
            } else {
                message
            };
            return json!({ "result": result.as_str(), "message": message });
        };
        self.record("reload --confirm", &source, uid);
        let message = format!(
            "{message}; it is rolled back to {} at {} unless `oqs-edge confirm` comes first",
            short(&change.previous_sha256),
            change.deadline_text()
        );
        warn!(oqs_event = EVENT_PENDING, oqs_uid = uid_field(uid).as_str(); "{message}");
        notify::status(&notify::summary(&self.status().await));
        json!({ "result": result.as_str(), "message": message, "deadline": change.deadline_text() })
    }

    async fn confirm(&mut self, uid: Option<u32>) -> serde_json::Value {
        let who = uid.map_or_else(|| "unknown uid".to_owned(), |u| format!("uid {u}"));
        if self.pending.is_none() {
            return json!({ "result": "none", "message": "nothing is pending: no change waits for a confirm" });
        }
        let store = self.store();
        if let Err(e) = store.clear_pending() {
            return json!({ "result": "failed", "message": format!("not confirmed, the rollback still comes: {e}") });
        }
        self.pending = None;
        match store.source(self.config.digest()) {
            Ok(bytes) => self.record("confirm", &String::from_utf8_lossy(&bytes), uid),
            Err(e) => error!("history: {e}"),
        }
        let message = format!(
            "confirmed by {who}: {} stays in force",
            short(self.config.digest())
        );
        info!(oqs_event = EVENT_CONFIRMED, oqs_uid = uid_field(uid).as_str(); "{message}");
        notify::status(&notify::summary(&self.status().await));
        json!({ "result": "confirmed", "message": message })
    }

    /// The deadline passed with nobody confirming.
    pub(super) async fn roll_back_pending(&mut self) {
        let Some(p) = &self.pending else {
            return;
        };
        let why = format!("nobody confirmed the change by {}", p.deadline_text());
        let (result, message) = self.roll_back(None, None, &why).await;
        if !result.succeeded() && self.pending.take().is_some() {
            // Not retried in a loop: the change stays, and status says the rollback failed.
            if let Err(e) = self.store().clear_pending() {
                error!("{e}");
            }
            error!(oqs_event = EVENT_ROLLBACK; "the rollback failed, the unconfirmed change stays in force: {message}");
        }
    }

    /// Put an earlier config back at the config path and apply it: entry `id`, else what the
    /// pending change replaced, else the one before the running one.
    pub(super) async fn roll_back(
        &mut self,
        id: Option<u64>,
        uid: Option<u32>,
        why: &str,
    ) -> (ReloadResult, String) {
        let store = self.store();
        let refused = |m: String| {
            (
                ReloadResult::Refused,
                format!("rollback refused, nothing was changed: {m}"),
            )
        };
        let target = match (id, &self.pending) {
            (Some(id), _) => match store.entry(id) {
                Ok(Some(e)) => e.sha256,
                Ok(None) => {
                    return refused(format!(
                        "no entry {id} in the history (`oqs-edge history` lists them)"
                    ))
                }
                Err(e) => return refused(e.to_string()),
            },
            (None, Some(p)) => p.previous_sha256.clone(),
            (None, None) => match store.before_running() {
                Ok(Some(e)) => e.sha256,
                Ok(None) => return refused("the history holds no earlier config".to_owned()),
                Err(e) => return refused(e.to_string()),
            },
        };
        if target == self.config.digest() && self.pending.is_none() {
            return (
                ReloadResult::Unchanged,
                format!("{} is already the config in force", short(&target)),
            );
        }
        let bytes = match store.source(&target) {
            Ok(b) => b,
            Err(e) => return refused(e.to_string()),
        };
        // The same checks a reload makes, before the file is touched.
        let path = self.options.config_path.clone();
        let text = String::from_utf8_lossy(&bytes);
        let checked = config::check_source(&path, &text, FileChecks::On);
        if checked.config.is_none() {
            return refused(format!(
                "the kept config {} no longer passes the checks:\n{}",
                short(&target),
                checked.report.render(&text)
            ));
        }
        let rejected = match history::restore_file(&path, &bytes, SystemTime::now()) {
            Ok(r) => r,
            Err(e) => {
                return (
                    ReloadResult::Failed,
                    format!("rollback failed, nothing was changed: {e}"),
                )
            }
        };
        if self.pending.take().is_some() {
            if let Err(e) = store.clear_pending() {
                error!("{e}");
            }
        }
        warn!(
            oqs_event = EVENT_ROLLBACK;
            "rolling back to {} ({why}){}",
            short(&target),
            kept_as(rejected.as_deref())
        );
        let (result, message, _) = self.apply_file().await;
        if result.succeeded() && self.config.digest() == target {
            self.record("rollback", &text, uid);
        }
        notify::status(&notify::summary(&self.status().await));
        (
            result,
            format!(
                "rolled back to {} ({why}): {message}{}",
                short(&target),
                kept_as(rejected.as_deref())
            ),
        )
    }
}
