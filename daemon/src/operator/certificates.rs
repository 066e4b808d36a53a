//! Certificates on a schedule: every certificate the router depends on is read each round of
//! the watch, and the journal gets one warning per threshold crossed (90, 60, 30, 15 days),
//! then one a day from 7 days, and an error a day once expired, each with
//! `OQS_EVENT=certificate-expiry`, the days left and the file:
//!
//! ```text
//! journalctl -u oqs-edge OQS_EVENT=certificate-expiry
//! ```
//!
//! What was said is kept in the state directory ([`STATE_FILE`]), so a restart does not say it
//! again the same day. The rules themselves are [`crate::pki::expiry`]'s, pure and tested there.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use log::warn;

use super::i18n::{certificate_warning, CertificateWarning, Lang};
use crate::logging::event;
use crate::pki::{self, expiry::Ledger, expiry::Stage};
use crate::plan::{self, Plan};
use crate::status::{CertificateInfo, Dated};

/// The state file, in the state directory.
pub const STATE_FILE: &str = "certificate-warnings.json";

/// The PEM certificates of the plan (all but the client certificates, which the proxy loads)
/// as `status` shows them at `now`.
pub fn files_info(plan: &Plan, now: SystemTime) -> Vec<CertificateInfo> {
    plan::certificate_files(plan)
        .into_iter()
        .filter_map(|f| match pki::pem_facts(&f.file) {
            Ok(facts) => Some(CertificateInfo::dated(
                Dated {
                    name: &f.name,
                    kind: f.kind,
                    file: &f.file,
                    subject_cn: facts.subject_cn,
                    not_before: facts.not_before,
                    not_after: facts.not_after,
                    fingerprint_sha256: facts.fingerprint_sha256,
                },
                now,
            )),
            // The local CA's files appear on the proxy's first start.
            Err(_) if matches!(f.kind, "local-ca" | "lan-server") && !f.file.exists() => None,
            Err(e) => Some(CertificateInfo {
                name: f.name.clone(),
                kind: f.kind.to_owned(),
                file: Some(f.file.clone()),
                problem: Some(e.to_string()),
                ..CertificateInfo::default()
            }),
        })
        .collect()
}

/// The journal side of the schedule.
pub struct Schedule {
    state_file: PathBuf,
    /// The journal's language: the daemon's locale or `run --lang`.
    lang: Lang,
    ledger: Ledger,
}

impl Schedule {
    /// Read what was logged before (a missing or unreadable file: nothing was).
    pub fn open(state_dir: &Path, lang: Lang) -> Schedule {
        let state_file = state_dir.join(STATE_FILE);
        let ledger = std::fs::read(&state_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Schedule {
            state_file,
            lang,
            ledger,
        }
    }

    /// Log each warning due now for `certificates`, and keep that it was logged.
    pub fn log_due(&mut self, certificates: &[CertificateInfo], now: SystemTime) {
        let today = time::OffsetDateTime::from(now).date().to_string();
        let mut changed = false;
        for cert in certificates {
            let (Some(days), Some(file), Some(fingerprint)) =
                (cert.days_left, &cert.file, &cert.fingerprint_sha256)
            else {
                continue;
            };
            let file_text = file.display().to_string();
            let Some(stage) = self.ledger.take_due(&file_text, fingerprint, days, &today) else {
                continue;
            };
            changed = true;
            let (level, warning) = match stage.threshold() {
                _ if stage == Stage::Expired => (log::Level::Error, CertificateWarning::Expired),
                Some(t) => (log::Level::Warn, CertificateWarning::Threshold(t)),
                None => (log::Level::Warn, CertificateWarning::Daily),
            };
            let message = certificate_warning(cert, warning, self.lang);
            log::log!(
                level,
                oqs_event = event::CERTIFICATE_EXPIRY,
                oqs_days_left = days,
                oqs_file = file_text.as_str(),
                oqs_certificate = cert.name.as_str();
                "{message}"
            );
        }
        if changed {
            let saved = serde_json::to_vec_pretty(&self.ledger)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::files::write_atomically(&self.state_file, &bytes, 0o644));
            if let Err(e) = saved {
                warn!(
                    "cannot keep the certificate warnings in {}: {e}; a restart may repeat them",
                    self.state_file.display()
                );
            }
        }
    }
}
