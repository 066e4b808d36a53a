//! Puts the git commit into `oqs-edge --version` (`OQS_EDGE_COMMIT`), so an installer can tell
//! which build a router runs. Outside a git checkout (a source tarball) the version stands alone.
//!
//! Cargo reruns a build script only when a file it names changes: name HEAD and the ref it
//! points to (and packed-refs, where a ref may live), or the commit goes stale after the next
//! commit.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// A path inside the git directory (`--git-path` handles worktrees and the common dir).
fn git_path(name: &str) -> Option<PathBuf> {
    git(&["rev-parse", "--git-path", name]).map(PathBuf::from)
}

fn main() {
    println!("cargo:rerun-if-env-changed=OQS_EDGE_COMMIT");
    let commit = std::env::var("OQS_EDGE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            let mut watched = vec![git_path("HEAD")?, git_path("packed-refs")?];
            if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watched.extend(git_path(&reference));
            }
            for path in watched {
                // A missing file would make cargo rerun the script on every build.
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
            Some(commit)
        });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=OQS_EDGE_COMMIT_ID={}",
        commit.as_deref().unwrap_or_default()
    );
    let long = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=OQS_EDGE_VERSION={long}");
}
