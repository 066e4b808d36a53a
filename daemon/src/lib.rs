//! oqs-edge: the on-site router daemon for オンライン資格確認 and オンライン請求.
//!
//! Data flows one way: [`config`] (YAML → a checked config) → [`plan`] (pure: the desired
//! state) → the appliers ([`firewall`]; later net, tunnel, proxy) → the supervisor. [`pki`]
//! loads and checks the client certificates (電子証明書) for `check` and the proxy.

// A running daemon must not panic on bad input: errors are values here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod control;
pub mod files;
pub mod firewall;
pub mod logging;
pub mod net;
pub mod notify;
pub mod pki;
pub mod plan;
pub mod proxy;
pub mod supervisor;
pub mod tunnel;
