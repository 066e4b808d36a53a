//! Files the daemon writes whole or not at all: a crash mid-write never leaves half a ruleset
//! for the next boot, or half a key.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Write `data` to `path` through a temporary file beside it (created with `mode`), synced and
/// renamed over `path`, then sync the directory so the rename itself survives a power cut.
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(data).and_then(|()| file.sync_all())?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// A file or directory the daemon takes orders from that others may write.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to start: {path} can be written by {who} (mode {mode:04o}), and whoever can write \
     there can change the firewall and the tunnel; fix: chmod go-w {path}"
)]
pub struct WritableByOthers {
    pub path: PathBuf,
    pub who: &'static str,
    pub mode: u32,
}

/// Err when `path` can be written by anyone but its owner (its group or others). A path that
/// does not exist (yet) passes: the daemon creates its directories private.
pub fn refuse_writable_by_others(path: &Path) -> Result<(), WritableByOthers> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, true) => "its group and others",
        (true, false) => "its group",
        (false, true) => "others",
    };
    Err(WritableByOthers {
        path: path.to_owned(),
        who,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_others_can_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let set = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        for private in [0o700, 0o755, 0o750] {
            set(private);
            assert!(refuse_writable_by_others(dir.path()).is_ok(), "{private:o}");
        }
        for (open, who) in [
            (0o777, "its group and others"),
            (0o770, "its group"),
            (0o1757, "others"),
        ] {
            set(open);
            let e = refuse_writable_by_others(dir.path()).unwrap_err();
            assert_eq!(e.who, who);
            let text = e.to_string();
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod go-w {}", dir.path().display())),
                "{text}"
            );
        }
        set(0o700);
        assert!(refuse_writable_by_others(&dir.path().join("not yet")).is_ok());
    }
}
