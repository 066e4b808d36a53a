//! The certificate store in the state directory: `oqs-edge cert import` puts a clinic's .p12
//! there (mode 0600, its password beside it) after opening it, so a wrong password or a wrong
//! file is found at the desk, not at the first eligibility check.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::{load_pkcs12, ClientCertificate, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(
        "a certificate named `{name}` is already in {}; give --replace to put the new one in its place (the daemon picks it up within seconds), or another --name",
        path.display()
    )]
    Exists { name: String, path: PathBuf },
    #[error("`{0}` is not a usable name: use letters, digits, `-` and `_`")]
    BadName(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where an imported certificate went.
pub struct Imported {
    pub pkcs12: PathBuf,
    pub password_file: PathBuf,
    pub cert: ClientCertificate,
}

/// A name from a file name: ASCII letters and digits, `-` and `_` kept (lower-cased), anything
/// else becomes `-`; `client` when nothing is left.
pub fn default_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "client".to_owned()
    } else {
        name
    }
}

/// Open `file` with `password`, then copy it to `<state_dir>/certs/<name>.p12` and the password
/// to `<state_dir>/secrets/<name>.p12.pass`, both 0600, each by an atomic rename.
pub fn import_pkcs12(
    file: &Path,
    name: &str,
    password: &str,
    state_dir: &Path,
    replace: bool,
) -> Result<Imported, StoreError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(StoreError::BadName(name.to_owned()));
    }
    let cert = load_pkcs12(file, password)?;
    let data = std::fs::read(file).map_err(|source| PkiError::Unreadable {
        path: file.to_owned(),
        source,
    })?;
    let pkcs12 = state_dir.join("certs").join(format!("{name}.p12"));
    let password_file = state_dir.join("secrets").join(format!("{name}.p12.pass"));
    if pkcs12.exists() && !replace {
        return Err(StoreError::Exists {
            name: name.to_owned(),
            path: pkcs12,
        });
    }
    // Password first: a new .p12 beside an old password would not open.
    write_private(&password_file, password.as_bytes())?;
    write_private(&pkcs12, &data)?;
    Ok(Imported {
        pkcs12,
        password_file,
        cert,
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    crate::files::write_atomically(path, data, 0o600).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_file_names() {
        assert_eq!(
            default_name(Path::new("/tmp/Clinic Cert.p12")),
            "clinic-cert"
        );
        assert_eq!(default_name(Path::new("電子証明書.p12")), "client");
        assert_eq!(
            default_name(Path::new("oqs_1312345678.pfx")),
            "oqs_1312345678"
        );
    }
}
