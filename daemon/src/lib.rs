//! oqs-edge: the on-site router daemon for オンライン資格確認 and オンライン請求.
//!
//! Data flows one way: [`config`] (YAML → a checked config) → [`plan`] (pure: the desired
//! state) → [`apply`] (the appliers: firewall, net, tunnel, proxy; the only code that changes
//! the system) → the [`supervisor`] (the run loop: apply, watch, reload). The appliers fill in
//! [`status`], which the [`operator`]'s side (the control socket, sd_notify) reads.
//!
//! Below them all: [`pki`] (client certificates, 電子証明書, and the local CA), [`severity`],
//! [`files`] and [`logging`]. `tests/layering.rs` keeps the imports pointing this way.

// A running daemon must not panic on bad input: errors are values here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod config;
pub mod files;
pub mod logging;
pub mod operator;
pub mod pki;
pub mod plan;
pub mod severity;
pub mod status;
pub mod supervisor;
