//! How serious a finding is, for the config checks and the certificate checks alike.
//!
//! It stands below both `config` and `pki`, so the certificate library does not reach up into
//! the config to say "error" or "warning".

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The thing cannot be used as it is: `check` fails, `run` and `reload` refuse.
    Error,
    /// It works, but the operator should act: `check` passes and says so.
    Warning,
}
