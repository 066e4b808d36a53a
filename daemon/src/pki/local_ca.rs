//! The router's local CA (`lan_tls: local-ca`): the LAN side of the proxy speaks TLS with a
//! server certificate this CA issues, and clinic PCs trust the CA once (`oqs-edge local-ca
//! export`). The CA key never leaves `proxy.local_ca_dir` (mode 0700, keys 0600).
//!
//! The CA is made on first start and kept. The server certificate is issued for every listen
//! address and the router's host name, and issued again when those change or when fewer than
//! [`RENEW_BEFORE_DAYS`] days are left.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

pub const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// The CA lasts as long as the router: re-installing it on every PC is the cost of a new one.
const CA_VALIDITY_DAYS: i64 = 20 * 365;
/// Clients (browsers, .NET) refuse server certificates valid for longer than 398 days.
const SERVER_VALIDITY_DAYS: i64 = 397;
pub const RENEW_BEFORE_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    #[error("local CA in {}: {action}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        action: String,
        source: std::io::Error,
    },
    #[error("local CA in {}: {what}: {reason}", dir.display())]
    Invalid {
        dir: PathBuf,
        what: String,
        reason: String,
    },
    #[error(
        "local CA directory {} can be read by others (mode {mode:04o}); run `chmod 700 {}`",
        dir.display(),
        dir.display()
    )]
    Permissions { dir: PathBuf, mode: u32 },
    #[error("no local CA in {} yet: `oqs-edge run` creates it on first start", dir.display())]
    Missing { dir: PathBuf },
}

/// The LAN-side server identity, ready for rustls.
pub struct ServerIdentity {
    /// The server certificate, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_after: OffsetDateTime,
    /// True when this call issued it (first start, new names, or renewal).
    pub issued: bool,
}

/// The router's host name, for the server certificate.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The CA certificate (PEM) for `oqs-edge local-ca export`.
pub fn export(dir: &Path) -> Result<String, LocalCaError> {
    let path = dir.join(CA_CERT);
    if !path.exists() {
        return Err(LocalCaError::Missing {
            dir: dir.to_owned(),
        });
    }
    std::fs::read_to_string(&path).map_err(|source| io(dir, format!("read {CA_CERT}"), source))
}

/// Make sure the CA exists and the server certificate covers `names` (IP addresses and host
/// names) for at least [`RENEW_BEFORE_DAYS`] more days; issue what is missing.
pub fn ensure(
    dir: &Path,
    names: &[String],
    now: OffsetDateTime,
) -> Result<ServerIdentity, LocalCaError> {
    prepare_dir(dir)?;
    let (ca_pem, ca_key) = load_or_create_ca(dir, now)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| invalid(dir, CA_CERT, e.to_string()))?;

    if let Some(identity) = current_server(dir, names, &ca_der, now)? {
        return Ok(identity);
    }
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .map_err(|e| invalid(dir, CA_CERT, e.to_string()))?;
    let key = KeyPair::generate().map_err(|e| invalid(dir, "new server key", e.to_string()))?;
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| invalid(dir, "server certificate names", e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "oqs-edge");
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "oqs-edge".into()),
    );
    params.distinguished_name = dn;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(SERVER_VALIDITY_DAYS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| invalid(dir, "issue the server certificate", e.to_string()))?;
    write_file(dir, SERVER_KEY, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(dir, SERVER_CERT, cert.pem().as_bytes(), 0o644)?;
    Ok(ServerIdentity {
        chain: vec![cert.der().clone(), ca_der],
        key: PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| invalid(dir, SERVER_KEY, e.to_string()))?,
        not_after: params.not_after,
        issued: true,
    })
}

fn prepare_dir(dir: &Path) -> Result<(), LocalCaError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io(dir, "create the directory".into(), source))?;
    let mode = std::fs::metadata(dir)
        .map_err(|source| io(dir, "read the directory".into(), source))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(LocalCaError::Permissions {
            dir: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// The CA's certificate (PEM) and key, made on first use.
fn load_or_create_ca(dir: &Path, now: OffsetDateTime) -> Result<(String, KeyPair), LocalCaError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path)
            .map_err(|source| io(dir, format!("read {CA_CERT}"), source))?;
        let key = std::fs::read_to_string(&key_path)
            .map_err(|source| io(dir, format!("read {CA_KEY}"), source))?;
        let key = KeyPair::from_pem(&key).map_err(|e| invalid(dir, CA_KEY, e.to_string()))?;
        return Ok((cert, key));
    }
    let key = KeyPair::generate().map_err(|e| invalid(dir, "new CA key", e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "oqs-edge");
    dn.push(
        DnType::CommonName,
        format!(
            "oqs-edge local CA ({})",
            host_name().unwrap_or_else(|| "router".into())
        ),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(dir, "create the CA", e.to_string()))?;
    // Key first: a CA certificate without its key would be useless on the next start.
    write_file(dir, CA_KEY, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(dir, CA_CERT, cert.pem().as_bytes(), 0o644)?;
    log::info!(
        "local CA created in {}; install it on the clinic PCs: `oqs-edge local-ca export`",
        dir.display()
    );
    Ok((cert.pem(), key))
}

/// The server certificate on disk, if it is from this CA, names everything in `names` and
/// has more than `RENEW_BEFORE_DAYS` left.
fn current_server(
    dir: &Path,
    names: &[String],
    ca: &CertificateDer<'static>,
    now: OffsetDateTime,
) -> Result<Option<ServerIdentity>, LocalCaError> {
    let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) else {
        return Ok(None);
    };
    let (Ok(cert), Ok(key)) = (
        CertificateDer::from_pem_slice(&cert_pem),
        PrivateKeyDer::from_pem_slice(&key_pem),
    ) else {
        return Ok(None);
    };
    let Ok((_, parsed)) = X509Certificate::from_der(&cert) else {
        return Ok(None);
    };
    let Ok((_, ca_parsed)) = X509Certificate::from_der(ca) else {
        return Ok(None);
    };
    let not_after =
        OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp()).ok();
    let fresh = not_after.is_some_and(|t| t - now > Duration::days(RENEW_BEFORE_DAYS));
    let from_this_ca = parsed.issuer().as_raw() == ca_parsed.subject().as_raw()
        && parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .is_ok();
    let mut covered = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => covered.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => covered.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => covered.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let names_match = names.iter().all(|n| covered.contains(n));
    match (fresh && from_this_ca && names_match, not_after) {
        (true, Some(not_after)) => Ok(Some(ServerIdentity {
            chain: vec![cert, ca.clone()],
            key,
            not_after,
            issued: false,
        })),
        _ => Ok(None),
    }
}

/// Written whole or not at all, so a crash never leaves half a key.
fn write_file(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), LocalCaError> {
    crate::files::write_atomically(&dir.join(name), data, mode)
        .map_err(|source| io(dir, format!("write {name}"), source))
}

fn io(dir: &Path, action: String, source: std::io::Error) -> LocalCaError {
    LocalCaError::Io {
        dir: dir.to_owned(),
        action,
        source,
    }
}

fn invalid(dir: &Path, what: &str, reason: String) -> LocalCaError {
    LocalCaError::Invalid {
        dir: dir.to_owned(),
        what: what.to_owned(),
        reason,
    }
}

/// The names the server certificate must carry for these listen addresses.
pub fn server_names(listen: impl IntoIterator<Item = std::net::IpAddr>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for ip in listen {
        let ip = ip.to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    if let Some(host) = host_name() {
        if !names.contains(&host) {
            names.push(host);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reuses_and_reissues_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("local-ca");
        let now = OffsetDateTime::now_utc();
        let names = vec!["192.168.60.1".to_owned(), "router.lan".to_owned()];
        let first = ensure(&ca_dir, &names, now).unwrap();
        assert!(first.issued);
        let mode = |f: &str| {
            std::fs::metadata(ca_dir.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY), 0o600);
        assert_eq!(mode(SERVER_KEY), 0o600);
        assert_eq!(mode(""), 0o700);
        let ca_before = export(&ca_dir).unwrap();

        let again = ensure(&ca_dir, &names, now).unwrap();
        assert!(!again.issued, "same names, fresh certificate: no new one");
        assert_eq!(again.chain[0], first.chain[0]);

        let more = vec!["192.168.60.1".to_owned(), "192.168.50.1".to_owned()];
        let reissued = ensure(&ca_dir, &more, now).unwrap();
        assert!(
            reissued.issued,
            "a new listen address needs a new certificate"
        );
        assert_eq!(export(&ca_dir).unwrap(), ca_before, "the CA is kept");

        // 370 days later fewer than 30 are left: renewed, by the same CA.
        let later = ensure(&ca_dir, &more, now + Duration::days(370)).unwrap();
        assert!(later.issued);
        assert_eq!(later.chain[1], first.chain[1]);
    }

    #[test]
    fn refuses_a_directory_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("open");
        std::fs::create_dir(&ca_dir).unwrap();
        std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure(&ca_dir, &["10.0.0.1".into()], OffsetDateTime::now_utc())
            .err()
            .unwrap();
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
}
