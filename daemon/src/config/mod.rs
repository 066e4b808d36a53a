//! The config: YAML → [`ValidConfig`], or every problem with its file:line:col.
//!
//! Reading ([`load`]) and checking ([`validate`]) both report all they find; a [`ValidConfig`]
//! exists only when there was no error, so the plan and the appliers never see a bad config.

pub mod diagnostic;
mod lan_checks;
mod load;
pub mod model;
mod proposal;
pub mod scalar;
mod validate;
mod wan_checks;

use std::ops::Deref;
use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Report, Severity};
pub use model::Config;
pub use validate::FileChecks;

/// Where `check`, `plan` and `run` look when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/oqs-edge/config.yaml";

/// A config that passed every check. Only [`check_source`] makes one.
#[derive(Debug)]
pub struct ValidConfig {
    config: Config,
    /// The section `tunnel.type` selects, moved out of `config.tunnel` by the check.
    tunnel: TunnelSection,
    /// SHA-256 of the file's bytes, for status and to tell a reload changed nothing.
    digest: String,
    path: PathBuf,
}

impl Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// The one tunnel section a valid config has.
#[derive(Debug)]
pub enum TunnelSection {
    WireGuard(scalar::Node<model::WireGuard>),
    Ipsec(scalar::Node<model::Ipsec>),
    IpVpn(scalar::Node<model::IpVpn>),
}

impl ValidConfig {
    pub fn tunnel(&self) -> &TunnelSection {
        &self.tunnel
    }
    pub fn digest(&self) -> &str {
        &self.digest
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Whether the file on disk is no longer the one in force (edited, not yet reloaded).
    pub fn file_changed(&self) -> bool {
        !std::fs::read(&self.path).is_ok_and(|bytes| sha256_hex(&bytes) == self.digest)
    }
    /// The control socket (`control.socket`, or its default).
    pub fn control_socket(&self) -> std::path::PathBuf {
        self.config.control.as_ref().map_or_else(
            || std::path::PathBuf::from(model::DEFAULT_CONTROL_SOCKET),
            |c| c.socket.value.clone(),
        )
    }
}

/// The result of checking one config: the report always, the config when it is valid.
pub struct Checked {
    pub report: Report,
    pub config: Option<ValidConfig>,
}

/// Only `control.socket` of a config file, read leniently (other keys and their errors are
/// ignored), so `status` finds the daemon while the file holds a broken edit.
pub fn control_socket_of(path: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Only {
        control: Option<OnlyControl>,
    }
    #[derive(serde::Deserialize)]
    struct OnlyControl {
        socket: Option<PathBuf>,
    }
    let source = std::fs::read_to_string(path).ok()?;
    let only: Only = serde_saphyr::from_str(&source).ok()?;
    Some(
        only.control
            .and_then(|c| c.socket)
            .unwrap_or_else(|| PathBuf::from(model::DEFAULT_CONTROL_SOCKET)),
    )
}

/// Read and check a config file.
pub fn check_file(path: &Path, files: FileChecks) -> Result<(Checked, String), std::io::Error> {
    let source = std::fs::read_to_string(path)?;
    let checked = check_source(path, &source, files);
    Ok((checked, source))
}

/// Check config text as if read from `path` (for reports and relative-path hints).
pub fn check_source(path: &Path, source: &str, files: FileChecks) -> Checked {
    let mut parsed = load::parse(source);
    let config = parsed.config.take();
    let mut found = std::mem::take(&mut parsed.found);
    if let Some(config) = &config {
        found.extend(validate::check(config, source, files, &parsed.unparsed));
    }
    // Found in the repaired text; shown against the text as written.
    let diagnostics = found
        .into_iter()
        .map(|mut d| {
            d.loc = d.loc.map(|loc| inside(source, parsed.original(loc)));
            d
        })
        .collect();
    let report = Report::new(path, diagnostics);
    let config = config.filter(|_| report.valid).and_then(|mut config| {
        let sections = &mut config.tunnel.value;
        let tunnel = match sections.kind.value {
            model::TunnelType::WireGuard => sections.wireguard.take().map(TunnelSection::WireGuard),
            model::TunnelType::Ipsec => sections.ipsec.take().map(TunnelSection::Ipsec),
            model::TunnelType::IpVpn => sections.ip_vpn.take().map(TunnelSection::IpVpn),
        }?;
        Some(ValidConfig {
            config,
            tunnel,
            digest: sha256_hex(source.as_bytes()),
            path: path.to_owned(),
        })
    });
    Checked { report, config }
}

/// `loc`, or the nearest place in `source` when the parser reports one past its end (it may
/// blame the end of input as the line after an unterminated last line).
fn inside(source: &str, loc: scalar::Loc) -> scalar::Loc {
    let lines: Vec<&str> = source.split('\n').collect();
    let line = loc.line.clamp(1, lines.len() as u32);
    let text = lines.get(line as usize - 1).copied().unwrap_or_default();
    let end = text.chars().count() as u32 + 1;
    let column = if line < loc.line {
        end
    } else {
        loc.column.clamp(1, end)
    };
    scalar::Loc { line, column }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The JSON Schema of the config file, for editors (`config/oqs-edge.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
