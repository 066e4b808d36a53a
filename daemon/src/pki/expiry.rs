//! When to tell the operator that a certificate is ending: the closed network's own client
//! warns at 90, 60, 30 and 15 days before a 電子証明書 expires, then every day from 7 days. The
//! rules are pure (days left and what was logged before in, what to log now out); the
//! operator's side keeps what was logged in the state directory, so a restart does not say the
//! same thing twice in a day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The thresholds that each get one journal warning, farthest first.
pub const THRESHOLDS: [i64; 4] = [90, 60, 30, 15];
/// From this many days left, one warning a day.
pub const DAILY_FROM: i64 = 7;
/// `status` lists a certificate this close to its end as a problem (exit 1).
pub const PROBLEM_WITHIN: i64 = 30;
/// `status` notes a certificate this close to its end in the certificate section.
pub const NOTE_WITHIN: i64 = 90;

/// How near a certificate is to its end, as `status` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expiry {
    /// More than 90 days left.
    #[default]
    Ok,
    /// 31 to 90 days left: time to apply for the next one.
    Notice,
    /// 30 days or fewer: a problem.
    Renew,
    /// Past its end.
    Expired,
    /// Before its start.
    NotYetValid,
}

impl Expiry {
    pub fn of(days_left: i64, started: bool) -> Expiry {
        if !started {
            Expiry::NotYetValid
        } else if days_left < 0 {
            Expiry::Expired
        } else if days_left <= PROBLEM_WITHIN {
            Expiry::Renew
        } else if days_left <= NOTE_WITHIN {
            Expiry::Notice
        } else {
            Expiry::Ok
        }
    }

    /// Whether `status` lists it as a problem.
    pub fn is_problem(self) -> bool {
        // Not one before its start: a new certificate waiting in a route's list is normal; a
        // route with nothing valid to present is a problem of its own.
        matches!(self, Expiry::Renew | Expiry::Expired)
    }
}

/// Which warning a certificate has reached, in the order they come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Days90,
    Days60,
    Days30,
    Days15,
    /// 7 days or fewer: once a day.
    Daily,
    /// Expired: an error once a day.
    Expired,
}

impl Stage {
    /// The stage `days_left` (whole days, negative once expired) falls in; none before 90.
    pub fn of(days_left: i64) -> Option<Stage> {
        Some(if days_left < 0 {
            Stage::Expired
        } else if days_left <= DAILY_FROM {
            Stage::Daily
        } else if days_left <= 15 {
            Stage::Days15
        } else if days_left <= 30 {
            Stage::Days30
        } else if days_left <= 60 {
            Stage::Days60
        } else if days_left <= 90 {
            Stage::Days90
        } else {
            return None;
        })
    }

    /// The threshold in days, for a threshold stage.
    pub fn threshold(self) -> Option<i64> {
        match self {
            Stage::Days90 => Some(90),
            Stage::Days60 => Some(60),
            Stage::Days30 => Some(30),
            Stage::Days15 => Some(15),
            Stage::Daily | Stage::Expired => None,
        }
    }

    /// Said again each day while it lasts.
    fn repeats_daily(self) -> bool {
        matches!(self, Stage::Daily | Stage::Expired)
    }
}

/// What was last logged for one certificate file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    /// The certificate it was said of: a replaced file starts over.
    pub fingerprint: String,
    pub stage: Stage,
    /// The day it was said, `YYYY-MM-DD` (UTC).
    pub date: String,
}

/// Everything logged so far, by certificate file: the state file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub logged: BTreeMap<String, Logged>,
}

/// The warning due now for a certificate with `days_left`, given what was logged for its file
/// before: a threshold once per certificate, the daily ones once per `today`.
pub fn due(
    days_left: i64,
    fingerprint: &str,
    previous: Option<&Logged>,
    today: &str,
) -> Option<Stage> {
    let stage = Stage::of(days_left)?;
    match previous.filter(|p| p.fingerprint == fingerprint) {
        None => Some(stage),
        Some(p) if p.stage < stage => Some(stage),
        Some(p) if p.stage == stage && stage.repeats_daily() && p.date != today => Some(stage),
        Some(_) => None,
    }
}

impl Ledger {
    /// The warning due for `file` now; when there is one, it is recorded as logged.
    pub fn take_due(
        &mut self,
        file: &str,
        fingerprint: &str,
        days_left: i64,
        today: &str,
    ) -> Option<Stage> {
        let stage = due(days_left, fingerprint, self.logged.get(file), today)?;
        self.logged.insert(
            file.to_owned(),
            Logged {
                fingerprint: fingerprint.to_owned(),
                stage,
                date: today.to_owned(),
            },
        );
        Some(stage)
    }
}

/// What to do about a certificate near its end, by what it is.
pub fn advice(kind: &str, file: &str) -> String {
    match kind {
        "client" => {
            "apply for a new certificate at the portal (医療機関等向け総合ポータルサイト), \
                     then import it with `oqs-edge cert import --replace`"
                .to_owned()
        }
        "ipsec" => format!("ask the line provider for a new certificate and replace {file}"),
        "ipsec-ca" | "server-ca" => {
            format!("get the new CA certificate from the provider and replace {file}")
        }
        _ => {
            format!("oqs-edge issues it again itself; if it does not, move {file} away and restart")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(days: std::ops::RangeInclusive<i64>) -> Vec<(i64, Stage)> {
        // One check a day from `days.start()` down to `days.end()`, each on its own date.
        let mut ledger = Ledger::default();
        let mut said = Vec::new();
        for d in days.rev() {
            let today = format!("day-{d}");
            if let Some(stage) = ledger.take_due("oqs.p12", "AA", d, &today) {
                said.push((d, stage));
            }
            // A second check (a restart) the same day says nothing new.
            assert_eq!(ledger.take_due("oqs.p12", "AA", d, &today), None, "day {d}");
        }
        said
    }

    #[test]
    fn thresholds_once_then_daily_from_seven_then_expired_daily() {
        let said = walk(-2..=120);
        assert_eq!(
            said,
            vec![
                (90, Stage::Days90),
                (60, Stage::Days60),
                (30, Stage::Days30),
                (15, Stage::Days15),
                (7, Stage::Daily),
                (6, Stage::Daily),
                (5, Stage::Daily),
                (4, Stage::Daily),
                (3, Stage::Daily),
                (2, Stage::Daily),
                (1, Stage::Daily),
                (0, Stage::Daily),
                (-1, Stage::Expired),
                (-2, Stage::Expired),
            ]
        );
    }

    #[test]
    fn a_start_past_a_threshold_says_the_one_reached_and_not_the_earlier_ones() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.take_due("f", "AA", 20, "d1"), Some(Stage::Days30));
        // The next day: still the 30-day stage, already said.
        assert_eq!(ledger.take_due("f", "AA", 19, "d2"), None);
        assert_eq!(ledger.take_due("f", "AA", 15, "d6"), Some(Stage::Days15));
    }

    #[test]
    fn a_replaced_certificate_starts_over_and_a_far_one_says_nothing() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.take_due("f", "OLD", 29, "d1"), Some(Stage::Days30));
        assert_eq!(ledger.take_due("f", "NEW", 1000, "d1"), None);
        assert_eq!(ledger.take_due("f", "NEW", 85, "d1"), Some(Stage::Days90));
    }

    #[test]
    fn status_levels() {
        assert_eq!(Expiry::of(91, true), Expiry::Ok);
        assert_eq!(Expiry::of(90, true), Expiry::Notice);
        assert_eq!(Expiry::of(31, true), Expiry::Notice);
        assert_eq!(Expiry::of(30, true), Expiry::Renew);
        assert_eq!(Expiry::of(0, true), Expiry::Renew);
        assert_eq!(Expiry::of(-1, true), Expiry::Expired);
        assert_eq!(Expiry::of(400, false), Expiry::NotYetValid);
        assert!(Expiry::Renew.is_problem() && !Expiry::Notice.is_problem());
        assert!(!Expiry::NotYetValid.is_problem());
    }
}
