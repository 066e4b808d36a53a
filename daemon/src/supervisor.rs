//! The run loop: check the config, plan, apply, then wait for signals.
//!
//! SIGTERM/SIGINT end the daemon and leave the firewall in place (fail-closed). SIGHUP re-reads
//! the config: an invalid one is logged, every error, and changes nothing.
//!
//! This is the firewall part of `run`; routes, the tunnel and the proxy plug in here.

use std::path::{Path, PathBuf};

use log::{error, info, warn};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, FileChecks, ValidConfig};
use crate::firewall::{self, FirewallError, Nft};
use crate::plan;

pub struct RunOptions {
    pub config_path: PathBuf,
    /// Where the last applied ruleset is kept for the early-boot unit.
    pub state_dir: PathBuf,
    pub nft: Nft,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}: the config is invalid (the errors are logged above)")]
    Invalid(PathBuf),
    #[error("cannot read the config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// Read and check the config, logging every problem found.
fn load(path: &Path) -> Result<ValidConfig, RunError> {
    let (checked, source) =
        config::check_file(path, FileChecks::On).map_err(|source| RunError::Read {
            path: path.to_owned(),
            source,
        })?;
    if !checked.report.diagnostics.is_empty() {
        for line in checked.report.render(&source).lines() {
            if checked.report.valid {
                warn!("{line}");
            } else {
                error!("{line}");
            }
        }
    }
    checked
        .config
        .ok_or_else(|| RunError::Invalid(path.to_owned()))
}

/// Plan and apply; the saved copy is written only once the kernel has taken the ruleset.
fn apply(config: &ValidConfig, options: &RunOptions) -> Result<(), RunError> {
    let plan = plan::plan(config);
    options.nft.apply(&plan.firewall)?;
    let saved = firewall::save(&plan.firewall, &options.state_dir)?;
    info!(
        "firewall applied: table inet oqs_edge from {} (sha256 {}), saved to {}",
        config.path().display(),
        config.digest().get(..12).unwrap_or_default(),
        saved.display()
    );
    Ok(())
}

pub async fn run(options: RunOptions) -> Result<(), RunError> {
    std::fs::create_dir_all(&options.state_dir).map_err(|source| RunError::StateDir {
        path: options.state_dir.clone(),
        source,
    })?;
    // Listen before applying, so a signal during start-up is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let mut current = load(&options.config_path)?;
    apply(&current, &options)?;
    info!("running; SIGHUP reloads {}", options.config_path.display());

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                info!("reload requested: reading {}", options.config_path.display());
                match load(&options.config_path) {
                    Ok(next) if next.digest() == current.digest() => {
                        info!("reload: the config is unchanged; nothing to do");
                    }
                    Ok(next) => match apply(&next, &options) {
                        Ok(()) => current = next,
                        Err(e) => error!("reload failed, the previous rules stay in force: {e}"),
                    },
                    Err(e) => error!("reload refused, nothing was changed: {e}"),
                }
            }
        }
    }
    info!("stopping; the firewall stays in place (table inet oqs_edge)");
    Ok(())
}
