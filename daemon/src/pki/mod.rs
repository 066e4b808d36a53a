//! Client certificates (電子証明書): loading a PKCS#12 file as issued and checking it.
//!
//! `oqs-edge check` uses this to catch, before the daemon starts, what would otherwise surface as
//! a TLS handshake failure at the 支払基金 end: a wrong password, a key that is not the
//! certificate's, an expired certificate, or one issued for another institution. The mTLS proxy
//! uses the same loader, so what `check` accepted is what the proxy presents.

pub mod expiry;
pub mod local_ca;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::severity::Severity;

/// Warn this many days before a certificate expires: renewal by the issuer takes weeks.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a PKCS#12 (.p12) file", path.display())]
    NotPkcs12 { path: PathBuf },
    #[error("{}: cannot open this PKCS#12 file: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: wrong password", path.display())]
    WrongPassword { path: PathBuf },
    #[error("{} holds no private key", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: unusable certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the private key does not belong to the certificate", path.display())]
    KeyMismatch { path: PathBuf },
    #[error("{}: the certificate expired on {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: the certificate is not valid until {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
}

/// A client certificate ready for rustls (`with_client_auth_cert(chain, key)`), with the facts
/// `check` and status show.
#[derive(Debug)]
pub struct ClientCertificate {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// Leaf first, then its issuers as found in the file.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The leaf's subject CN: for 電子証明書, the 医療機関等コード.
    pub subject_cn: Option<String>,
    /// The leaf's issuer, e.g. `C=JP, O=..., CN=...`.
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the leaf's DER, as `AB:CD:...`.
    pub fingerprint_sha256: String,
}

impl ClientCertificate {
    /// Whole days until `not_after`; negative once expired.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        days_until(self.not_after, now)
    }
}

/// A problem `check` found in a loaded certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

/// Read a password file: its content less one trailing newline, which editors add.
pub fn read_password_file(path: &Path) -> Result<String, PkiError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| PkiError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Load a PKCS#12 file and check that its key belongs to its certificate. Validity dates are not
/// checked here (see [`check`]): status should still show an expired certificate's facts.
pub fn load_pkcs12(path: &Path, password: &str) -> Result<ClientCertificate, PkiError> {
    let data = std::fs::read(path).map_err(|source| PkiError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let archive = Pkcs12Archive::from_pkcs12(&data, password).map_err(|e| match e {
        P12Error::MacError(_) => PkiError::WrongPassword {
            path: path.to_owned(),
        },
        P12Error::DerError(_) | P12Error::InvalidVersion => PkiError::NotPkcs12 {
            path: path.to_owned(),
        },
        other => PkiError::Unsupported {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    // A clinic's file holds one key; any further keys would be unused.
    let key_bag = archive.keys.first().ok_or_else(|| PkiError::NoPrivateKey {
        path: path.to_owned(),
    })?;
    let certs: Vec<&[u8]> = archive.certs.iter().map(|bag| bag.cert.as_der()).collect();
    from_parts(path, key_bag.key.as_der(), &certs)
}

/// Load a PEM certificate (with any intermediates after it) and its PKCS#8 PEM private key.
pub fn load_pem(cert_path: &Path, key_path: &Path) -> Result<ClientCertificate, PkiError> {
    let certs = read_pem_certificates(cert_path)?;
    let key_pem = std::fs::read(key_path).map_err(|source| PkiError::Unreadable {
        path: key_path.to_owned(),
        source,
    })?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(PrivateKeyDer::Pkcs8(key)) => key,
        Ok(_) => {
            return Err(PkiError::BadKey {
                path: key_path.to_owned(),
                reason: "the key is not in PKCS#8 form (BEGIN PRIVATE KEY); convert it with \
                         `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
                    .into(),
            })
        }
        Err(e) => {
            return Err(PkiError::BadKey {
                path: key_path.to_owned(),
                reason: format!("no PEM private key found ({e})"),
            })
        }
    };
    let ders: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    let mut loaded = from_parts(cert_path, key.secret_pkcs8_der(), &ders)?;
    loaded.path = cert_path.to_owned();
    Ok(loaded)
}

/// Every certificate in a PEM file; an error when there is none.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = std::fs::read(path).map_err(|source| PkiError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadCertificate {
            path: path.to_owned(),
            reason: format!("not a PEM certificate file ({e})"),
        })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A key and the certificates that came with it: find the key's certificate, order the chain
/// and read the facts `check` and status show.
fn from_parts(path: &Path, key_der: &[u8], certs: &[&[u8]]) -> Result<ClientCertificate, PkiError> {
    if certs.is_empty() {
        return Err(PkiError::NoCertificate {
            path: path.to_owned(),
        });
    }
    let public_key = public_key_of(key_der).map_err(|reason| PkiError::BadKey {
        path: path.to_owned(),
        reason,
    })?;

    let mut parsed = Vec::with_capacity(certs.len());
    for der in certs {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        parsed.push((*der, cert));
    }
    // The leaf is the certificate of the key: found by public key, not by the localKeyId
    // attribute, which tools set inconsistently and which proves nothing.
    let leaf = parsed
        .iter()
        .position(|(_, c)| c.public_key().subject_public_key.data.as_ref() == public_key.as_slice())
        .ok_or_else(|| PkiError::KeyMismatch {
            path: path.to_owned(),
        })?;

    let mut order = vec![leaf];
    while let Some(next) = next_issuer(&parsed, &order) {
        order.push(next);
    }

    let (leaf_der, cert) = &parsed[leaf];
    let validity = cert.validity();
    let fingerprint_sha256 = fingerprint(leaf_der);
    let subject_cn = common_name(cert);
    Ok(ClientCertificate {
        path: path.to_owned(),
        chain: order
            .iter()
            .map(|&i| CertificateDer::from(parsed[i].0.to_vec()))
            .collect(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        subject_cn,
        issuer: cert.issuer().to_string(),
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
        fingerprint_sha256,
    })
}

/// The facts of the first certificate in a PEM file (a CA, the IPsec certificate, the LAN
/// server certificate), for the expiry watch and `status`.
#[derive(Clone, Debug)]
pub struct PemFacts {
    pub subject_cn: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub fingerprint_sha256: String,
}

/// Read the first certificate of a PEM file.
pub fn pem_facts(path: &Path) -> Result<PemFacts, PkiError> {
    let certs = read_pem_certificates(path)?;
    let der = certs.first().ok_or_else(|| PkiError::NoCertificate {
        path: path.to_owned(),
    })?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let validity = cert.validity();
    let subject_cn = common_name(&cert);
    let facts = PemFacts {
        subject_cn,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
        fingerprint_sha256: fingerprint(der),
    };
    Ok(facts)
}

/// Whole days from `now` until `not_after`; negative once past.
pub fn days_until(not_after: SystemTime, now: SystemTime) -> i64 {
    let seconds = match not_after.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    seconds.div_euclid(86_400)
}

/// Seconds since 1970 (negative before), for metrics and `status --json`.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The subject's first CN.
fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Check a loaded certificate at `now` for the institution it must identify.
pub fn check(cert: &ClientCertificate, now: SystemTime, institution_code: &str) -> Vec<Finding> {
    let error = |e: PkiError| Finding {
        severity: Severity::Error,
        message: e.to_string(),
    };
    let mut found = Vec::new();
    if now < cert.not_before {
        found.push(error(PkiError::NotYetValid {
            path: cert.path.clone(),
            not_before: show_time(cert.not_before),
        }));
    }
    if now >= cert.not_after {
        found.push(error(PkiError::Expired {
            path: cert.path.clone(),
            not_after: show_time(cert.not_after),
        }));
    } else if cert.days_left(now) < EXPIRY_WARNING_DAYS {
        found.push(Finding {
            severity: Severity::Warning,
            message: format!(
                "{}: the certificate expires on {} ({} days left)",
                cert.path.display(),
                show_time(cert.not_after),
                cert.days_left(now)
            ),
        });
    }
    if cert.subject_cn.as_deref() != Some(institution_code) {
        found.push(Finding {
            severity: Severity::Warning,
            message: format!(
                "{}: the certificate is for `{}`, not for institution code {institution_code}",
                cert.path.display(),
                cert.subject_cn.as_deref().unwrap_or("(no CN)")
            ),
        });
    }
    found
}

/// The public key bits of a PKCS#8 key, as a certificate's SubjectPublicKeyInfo holds them
/// (RSAPublicKey DER for RSA, the uncompressed point for ECDSA), so a match proves the pair.
pub fn public_key_of(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let rsa_error = match RsaKeyPair::from_pkcs8(pkcs8) {
        Ok(key) => return Ok(key.public_key().as_ref().to_vec()),
        Err(e) => e,
    };
    let rng = SystemRandom::new();
    for alg in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(key) = EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng) {
            return Ok(key.public_key().as_ref().to_vec());
        }
    }
    Err(format!(
        "not an RSA (2048 bits or more), ECDSA P-256 or P-384 key ({rsa_error})"
    ))
}

/// The issuer of the last certificate in `order`, among those not yet in it; none past a root.
fn next_issuer(parsed: &[(&[u8], X509Certificate<'_>)], order: &[usize]) -> Option<usize> {
    let current = &parsed[*order.last()?].1;
    if current.subject().as_raw() == current.issuer().as_raw() {
        return None;
    }
    (0..parsed.len()).find(|i| {
        !order.contains(i) && parsed[*i].1.subject().as_raw() == current.issuer().as_raw()
    })
}

fn system_time(unix: i64) -> SystemTime {
    let offset = Duration::from_secs(unix.unsigned_abs());
    if unix >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

pub fn show_time(t: SystemTime) -> String {
    // humantime panics on times before 1970; no real certificate has one.
    if t < UNIX_EPOCH {
        return "a date before 1970".into();
    }
    humantime::format_rfc3339_seconds(t).to_string()
}
