//! The firewall applier: makes the kernel's `table inet oqs_edge` the planned one in a single
//! nft transaction, and keeps a copy of what it applied for the early-boot unit.
//!
//! nft is run directly (not through the `nftables` crate, which drops nft's stderr) so that
//! when nft refuses a ruleset the operator sees nft's own message with the line it came from.
//! The text rendering is loaded, not the JSON: for text, nft points at the offending rule.
//! A refused batch changes nothing: the old table stays as it was.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::plan::nft::Ruleset;
pub use crate::status::CounterValue;

/// File name of the last applied ruleset in the state directory.
pub const SAVED_RULESET: &str = "ruleset.nft";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run `{program}`: {source} (is the nftables package installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft refused the ruleset; the firewall was not changed:\n{message}")]
    Refused {
        /// nft's stderr, as nft printed it.
        message: String,
        /// The ruleset line nft blamed, when it named one.
        rule: Option<String>,
    },
    #[error("cannot save the applied ruleset to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to run nft: `nft` on the router; tests prefix `ip netns exec NS`.
#[derive(Clone, Debug)]
pub struct Nft {
    program: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: vec!["nft".to_owned()],
        }
    }
}

impl Nft {
    /// nft inside a named network namespace.
    pub fn in_netns(name: &str) -> Self {
        Nft {
            program: ["ip", "netns", "exec", name, "nft"]
                .map(str::to_owned)
                .to_vec(),
        }
    }

    /// The nft command (with its prefix, if any).
    fn command(&self) -> Command {
        let (program, prefix) = self
            .program
            .split_first()
            .map_or(("nft", &[][..]), |(p, rest)| (p.as_str(), rest));
        let mut command = Command::new(program);
        command.args(prefix);
        command
    }

    fn spawn_error(&self, source: std::io::Error) -> FirewallError {
        FirewallError::Spawn {
            program: self.program.join(" "),
            source,
        }
    }

    /// Feed `input` to `nft -f -`; stderr is kept for the error.
    fn run(&self, input: &str) -> Result<(), FirewallError> {
        let spawn_error = |e| self.spawn_error(e);
        let mut child = self
            .command()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let mut cut_short = false;
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(input.as_bytes()) {
                // nft stopped reading (it refused the input early): its stderr says why.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => cut_short = true,
                written => written.map_err(spawn_error)?,
            }
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() && !cut_short {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
        if message.is_empty() && cut_short {
            message = "nft stopped reading the ruleset before its end".to_owned();
        }
        Err(FirewallError::Refused {
            rule: blamed_line(&message, input),
            message,
        })
    }

    /// Replace `table inet oqs_edge` with `ruleset` in one transaction.
    pub fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        self.run(&ruleset.to_nft_text())
    }

    /// Load a ruleset file as written by [`save`] (the early-boot path).
    pub fn apply_text(&self, ruleset: &str) -> Result<(), FirewallError> {
        self.run(ruleset)
    }

    /// The named counters of `table inet oqs_edge`, or `None` when the table is not there
    /// (never applied, or flushed by someone else).
    pub fn counters(&self) -> Result<Option<BTreeMap<String, CounterValue>>, FirewallError> {
        let out = self
            .command()
            .args(["-j", "list", "counters", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            // nft says "No such file or directory" for a missing table.
            return Ok(None);
        }
        Ok(Some(parse_counters(&out.stdout)))
    }
}

/// The table oqs-edge owns (family inet).
pub const TABLE: &str = "oqs_edge";

/// Counters from `nft -j list counters`. Parsed here rather than with the `nftables` crate's
/// schema, whose counter fields are u32 and would fail past 4 GiB.
fn parse_counters(json: &[u8]) -> BTreeMap<String, CounterValue> {
    let value: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let objects = value["nftables"].as_array().cloned().unwrap_or_default();
    objects
        .iter()
        .filter_map(|o| {
            let c = o.get("counter")?;
            Some((
                c["name"].as_str()?.to_owned(),
                CounterValue {
                    packets: c["packets"].as_u64().unwrap_or(0),
                    bytes: c["bytes"].as_u64().unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// nft writes `/dev/stdin:LINE:COL-COL: Error: …`; return that line of the input.
fn blamed_line(message: &str, input: &str) -> Option<String> {
    let rest = message
        .lines()
        .find_map(|l| l.strip_prefix("/dev/stdin:"))?;
    let line: usize = rest.split(':').next()?.parse().ok()?;
    input
        .lines()
        .nth(line.checked_sub(1)?)
        .map(|l| l.trim().to_owned())
}

/// What the early-boot load put in place.
pub enum BootLoad {
    /// The ruleset the daemon last applied, from this file.
    Saved(PathBuf),
    /// The built-in block, and why not the saved ruleset.
    Block { why: String },
}

/// Early boot, before the network: the saved ruleset, or the built-in block when there is
/// none or nft refuses it (a truncated file): never nothing.
pub fn load_at_boot(nft: &Nft, state_dir: &Path) -> Result<BootLoad, FirewallError> {
    let saved = state_dir.join(SAVED_RULESET);
    let why = match std::fs::read_to_string(&saved) {
        Ok(ruleset) => match nft.apply_text(&ruleset) {
            Ok(()) => return Ok(BootLoad::Saved(saved)),
            Err(e) => format!("{}: {e}", saved.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("no saved ruleset at {}", saved.display())
        }
        Err(e) => format!("cannot read {}: {e}", saved.display()),
    };
    nft.apply_text(crate::plan::firewall::BOOT_BLOCK)?;
    Ok(BootLoad::Block { why })
}

/// Save the applied ruleset for the early-boot unit: written whole or not at all, so a crash
/// mid-write never leaves a truncated ruleset to load at the next boot.
pub fn save(ruleset: &Ruleset, state_dir: &Path) -> Result<PathBuf, FirewallError> {
    let path = state_dir.join(SAVED_RULESET);
    let save_error = |source| FirewallError::Save {
        path: path.clone(),
        source,
    };
    crate::files::write_atomically(&path, ruleset.to_nft_text().as_bytes(), 0o644)
        .map_err(save_error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blamed_line_is_found() {
        let message = "/dev/stdin:3:3-20: Error: Could not process rule: No such file or directory\n\t\tiifname \"x\" counter name \"nope\" drop\n\t\t^^^^";
        let input =
            "table inet t {\n\tchain c {\n\t\tiifname \"x\" counter name \"nope\" drop\n\t}\n}\n";
        assert_eq!(
            blamed_line(message, input).as_deref(),
            Some("iifname \"x\" counter name \"nope\" drop")
        );
        assert_eq!(blamed_line("Error: something", input), None);
    }

    #[test]
    fn counters_are_read_past_u32() {
        let json = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "eligibility_to_internet", "table": "oqs_edge",
              "handle": 3, "packets": 7, "bytes": 5000000000}}]}"#;
        let counters = parse_counters(json);
        assert_eq!(
            counters["eligibility_to_internet"],
            CounterValue {
                packets: 7,
                bytes: 5_000_000_000
            }
        );
        assert_eq!(counters.len(), 1);
    }

    #[test]
    fn save_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ruleset = Ruleset {
            sets: vec![],
            counters: vec![],
            chains: vec![],
        };
        std::fs::write(dir.path().join(SAVED_RULESET), "old").unwrap();
        let path = save(&ruleset, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            ruleset.to_nft_text()
        );
        assert!(!dir.path().join(format!(".{SAVED_RULESET}.tmp")).exists());
    }
}
