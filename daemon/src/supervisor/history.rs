//! The applied configs and the pending change, on disk in the state directory, so a crash or a
//! reboot neither loses the history nor the rollback that was promised.
//!
//! ```text
//! <state>/history/index.json      the last 20 applied configs, oldest first
//! <state>/history/<sha256>.yaml   each one's bytes, by content
//! <state>/pending.json            a `reload --confirm` change not yet confirmed
//! ```
//! Every file is written whole or not at all (`files::write_atomically`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::write_atomically;

/// How many applied configs are kept.
pub const KEEP: usize = 20;
/// The shortest and longest `reload --confirm` window.
pub const CONFIRM_MIN: Duration = Duration::from_secs(30);
pub const CONFIRM_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({why}); move it away to start a new history")]
    Damaged { path: PathBuf, why: String },
    #[error("no config with sha256 {0} is kept in the history")]
    Missing(String),
}

/// One applied config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    /// When it was applied, RFC 3339 (UTC).
    pub time: String,
    pub sha256: String,
    /// `start`, `reload`, `reload --confirm`, `confirm` or `rollback`.
    pub how: String,
    /// The uid of the control socket's peer that asked (none for start, SIGHUP, a deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The config in force now (set when answering `history`).
    #[serde(default)]
    pub running: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    next_id: u64,
    /// The entry in force.
    running: Option<u64>,
    entries: Vec<Entry>,
}

/// A change applied with `reload --confirm`, rolled back at `deadline` unless confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The config file the change was read from; the rollback writes the previous one there.
    pub config_path: PathBuf,
    /// What ran before the change: the rollback's target.
    pub previous_sha256: String,
    /// Seconds since the epoch.
    pub deadline_unix: u64,
    pub uid: Option<u32>,
}

impl PendingChange {
    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.deadline_unix)
    }

    /// Time left; zero once the deadline has passed.
    pub fn left(&self, now: SystemTime) -> Duration {
        self.deadline().duration_since(now).unwrap_or_default()
    }

    pub fn deadline_text(&self) -> String {
        humantime::format_rfc3339_seconds(self.deadline()).to_string()
    }
}

/// The history and the pending change of one state directory.
pub struct Store {
    dir: PathBuf,
    pending: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("history"),
            pending: state_dir.join("pending.json"),
        }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn config_file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.yaml"))
    }

    fn write(path: &Path, data: &[u8]) -> Result<(), HistoryError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        write_atomically(path, data, 0o600).map_err(|source| HistoryError::Write {
            path: path.to_owned(),
            source,
        })
    }

    fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, HistoryError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| HistoryError::Damaged {
                        path: path.to_owned(),
                        why: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(HistoryError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn index(&self) -> Result<Index, HistoryError> {
        Ok(Self::read_json(&self.index_path())?.unwrap_or_default())
    }

    fn save_index(&self, index: &Index) -> Result<(), HistoryError> {
        let json = serde_json::to_vec_pretty(index).unwrap_or_default();
        Self::write(&self.index_path(), &json)
    }

    /// Record `source` (sha256 `sha256`) as applied and in force now. Keeps the last [`KEEP`]
    /// entries and the files they (and a pending change) name.
    pub fn record(
        &self,
        sha256: &str,
        source: &[u8],
        how: &str,
        uid: Option<u32>,
        now: SystemTime,
    ) -> Result<Entry, HistoryError> {
        let file = self.config_file(sha256);
        if !file.exists() {
            Self::write(&file, source)?;
        }
        let mut index = self.index()?;
        index.next_id = index.next_id.max(1);
        let entry = Entry {
            id: index.next_id,
            time: humantime::format_rfc3339_seconds(now).to_string(),
            sha256: sha256.to_owned(),
            how: how.to_owned(),
            uid,
            running: false,
        };
        index.next_id += 1;
        index.running = Some(entry.id);
        index.entries.push(entry.clone());
        let drop = index.entries.len().saturating_sub(KEEP);
        let dropped: Vec<Entry> = index.entries.drain(..drop).collect();
        self.save_index(&index)?;
        let pending = self.pending().ok().flatten();
        for old in dropped {
            let still_named = index.entries.iter().any(|e| e.sha256 == old.sha256)
                || pending
                    .as_ref()
                    .is_some_and(|p| p.previous_sha256 == old.sha256);
            if !still_named {
                let _ = std::fs::remove_file(self.config_file(&old.sha256));
            }
        }
        Ok(entry)
    }

    /// At start: the config in force is `sha256`. Recorded (as `how`) unless it is the one
    /// the history says was running.
    pub fn started(
        &self,
        sha256: &str,
        source: &[u8],
        how: &str,
        now: SystemTime,
    ) -> Result<(), HistoryError> {
        let index = self.index()?;
        let running = index.entries.iter().find(|e| Some(e.id) == index.running);
        if running.is_some_and(|e| e.sha256 == sha256) && self.config_file(sha256).exists() {
            return Ok(());
        }
        self.record(sha256, source, how, None, now).map(|_| ())
    }

    /// Newest first, the running one marked.
    pub fn entries(&self) -> Result<Vec<Entry>, HistoryError> {
        let index = self.index()?;
        Ok(index
            .entries
            .iter()
            .rev()
            .map(|e| Entry {
                running: Some(e.id) == index.running,
                ..e.clone()
            })
            .collect())
    }

    /// The bytes of a kept config.
    pub fn source(&self, sha256: &str) -> Result<Vec<u8>, HistoryError> {
        let path = self.config_file(sha256);
        std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                HistoryError::Missing(sha256.to_owned())
            } else {
                HistoryError::Read { path, source }
            }
        })
    }

    /// What `rollback` without an ID goes back to: the newest entry before the running one
    /// that is a different config.
    pub fn before_running(&self) -> Result<Option<Entry>, HistoryError> {
        let entries = self.entries()?;
        let Some(at) = entries.iter().position(|e| e.running) else {
            return Ok(None);
        };
        let running = &entries[at].sha256;
        Ok(entries[at..].iter().find(|e| &e.sha256 != running).cloned())
    }

    pub fn entry(&self, id: u64) -> Result<Option<Entry>, HistoryError> {
        Ok(self.entries()?.into_iter().find(|e| e.id == id))
    }

    pub fn pending(&self) -> Result<Option<PendingChange>, HistoryError> {
        Self::read_json(&self.pending)
    }

    pub fn set_pending(&self, pending: &PendingChange) -> Result<(), HistoryError> {
        let json = serde_json::to_vec_pretty(pending).unwrap_or_default();
        Self::write(&self.pending, &json)
    }

    pub fn clear_pending(&self) -> Result<(), HistoryError> {
        match std::fs::remove_file(&self.pending) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HistoryError::Write {
                path: self.pending.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Put `previous` back at `path`, atomically (the file's mode is kept). The file there now is
/// kept beside it as `<name>.rejected-<time>`, unless it already is `previous`. Returns where
/// the rejected file went.
pub fn restore_file(
    path: &Path,
    previous: &[u8],
    now: SystemTime,
) -> Result<Option<PathBuf>, HistoryError> {
    use std::os::unix::fs::PermissionsExt as _;
    let current = std::fs::read(path).ok();
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let mut rejected = None;
    if let Some(current) = current.filter(|c| c.as_slice() != previous) {
        let stamp = humantime::format_rfc3339_seconds(now)
            .to_string()
            .replace(':', "");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = path.with_file_name(format!("{name}.rejected-{stamp}"));
        write_atomically(&aside, &current, mode).map_err(|source| HistoryError::Write {
            path: aside.clone(),
            source,
        })?;
        rejected = Some(aside);
    }
    write_atomically(path, previous, mode).map_err(|source| HistoryError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(rejected)
}

/// `oqs-edge history`'s text: newest first, the running one marked.
pub fn to_text(entries: &[Entry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("no applied configs recorded yet\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>4}  {:<20}  {:<12}  {:<17}  {:<6}  ",
        "id", "time", "sha256", "how", "uid"
    );
    for e in entries {
        let _ = writeln!(
            out,
            "{:>4}  {:<20}  {:<12}  {:<17}  {:<6}  {}",
            e.id,
            e.time,
            e.sha256.get(..12).unwrap_or_default(),
            e.how,
            e.uid.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            if e.running { "← running" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_history_keeps_twenty_marks_the_running_one_and_finds_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.started("aaa", b"a", "start", at(0)).unwrap();
        // The same config again at start is not a new entry.
        store.started("aaa", b"a", "start", at(1)).unwrap();
        store
            .record("bbb", b"b", "reload", Some(1000), at(2))
            .unwrap();
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].running && entries[0].sha256 == "bbb");
        assert_eq!(entries[0].uid, Some(1000));
        assert_eq!(store.before_running().unwrap().unwrap().sha256, "aaa");
        assert_eq!(store.source("aaa").unwrap(), b"a");

        for i in 0..25 {
            let sha = format!("c{i}");
            store
                .record(&sha, sha.as_bytes(), "reload", None, at(10 + i))
                .unwrap();
        }
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), KEEP);
        assert_eq!(entries[0].sha256, "c24");
        assert!(matches!(store.source("aaa"), Err(HistoryError::Missing(_))));
        assert!(store.source("c5").is_ok());
        let text = to_text(&entries);
        assert!(
            text.lines().nth(1).unwrap().ends_with("← running"),
            "{text}"
        );
    }

    #[test]
    fn a_pending_change_survives_on_disk_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.pending().unwrap(), None);
        let pending = PendingChange {
            config_path: dir.path().join("config.yaml"),
            previous_sha256: "aaa".into(),
            deadline_unix: 1_800_000_060,
            uid: Some(0),
        };
        store.set_pending(&pending).unwrap();
        assert_eq!(
            Store::new(dir.path()).pending().unwrap(),
            Some(pending.clone())
        );
        assert_eq!(pending.left(at(0)), Duration::from_secs(60));
        assert_eq!(pending.left(at(61)), Duration::ZERO);
        store.clear_pending().unwrap();
        store.clear_pending().unwrap();
        assert_eq!(store.pending().unwrap(), None);
    }

    #[test]
    fn restoring_keeps_the_rejected_file_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "new").unwrap();
        let aside = restore_file(&path, b"old", at(0)).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "new");
        assert!(aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("config.yaml.rejected-2027-"));
        // Already the previous one: nothing set aside.
        assert_eq!(restore_file(&path, b"old", at(1)).unwrap(), None);
    }
}
