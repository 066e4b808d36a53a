//! The operator's side: how the daemon answers and tells what it is doing.
//!
//! [`control`] is the socket behind `status` and `reload`; [`notify`] is systemd's STATUS= line
//! and watchdog. Both read [`crate::status`]; neither changes the system.

pub mod certificates;
pub mod control;
pub mod diag;
pub mod i18n;
pub mod metrics;
pub mod notify;
pub mod status_page;
