//! Client certificate loading against PKCS#12 files made by the `openssl` CLI at test time, in
//! the formats issuers hand out (modern AES + PBKDF2, legacy 3DES / RC2-40).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use oqs_edge::config::Severity;
use oqs_edge::pki::{self, PkiError};
use tempfile::TempDir;

const CODE: &str = "1312345678";

const CA_CNF: &str = "\
[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
";

/// A test CA (EC P-256, Japanese O) in its own directory.
struct Ca {
    dir: TempDir,
}

impl Ca {
    fn new() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.cnf"), CA_CNF).unwrap();
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(dir.path().join("serial"), "01\n").unwrap();
        let ca = Ca { dir };
        ca.openssl(&[
            "req",
            "-x509",
            "-utf8",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/C=JP/O=テスト認証局/CN=Test CA",
        ]);
        ca
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A key (`rsa` or `ec`) and a certificate for `cn` signed by the CA; `dates` are
    /// openssl's `-startdate`/`-enddate` (YYYYMMDDHHMMSSZ), else valid for a year.
    fn issue(&self, name: &str, alg: &str, cn: &str, dates: Option<(&str, &str)>) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let mut req = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr];
        let subj = format!("/CN={cn}");
        match alg {
            "rsa" => req.extend(["-newkey", "rsa:2048"]),
            _ => req.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        }
        req.extend(["-subj", &subj]);
        self.openssl(&req);
        let mut ca = vec![
            "ca", "-config", "ca.cnf", "-batch", "-notext", "-cert", "ca.pem", "-keyfile",
            "ca.key", "-in", &csr, "-out", &pem,
        ];
        match dates {
            Some((start, end)) => ca.extend(["-startdate", start, "-enddate", end]),
            None => ca.extend(["-days", "365"]),
        }
        self.openssl(&ca);
    }

    /// Export `name`'s key, certificate and the CA into a .p12 with `password`.
    fn p12(&self, name: &str, password: &str, extra: &[&str]) -> PathBuf {
        let out = format!("{name}{}.p12", extra.join("").replace(' ', ""));
        let pass = format!("pass:{password}");
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        let mut args = vec![
            "pkcs12",
            "-export",
            "-inkey",
            &key,
            "-in",
            &pem,
            "-certfile",
            "ca.pem",
            "-out",
            &out,
            "-passout",
            &pass,
        ];
        args.extend(extra);
        self.openssl(&args);
        self.path(&out)
    }

    fn der(&self, args: &[&str]) -> Vec<u8> {
        self.openssl(args)
    }
}

fn load_ok(path: &Path, password: &str) -> pki::ClientCertificate {
    match pki::load_pkcs12(path, password) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn assert_happy(ca: &Ca, cert: &pki::ClientCertificate, name: &str) {
    assert_eq!(cert.subject_cn.as_deref(), Some(CODE));
    assert!(cert.issuer.contains("テスト認証局"), "{}", cert.issuer);
    assert!(cert.issuer.contains("CN=Test CA"), "{}", cert.issuer);
    assert_eq!(cert.chain.len(), 2, "leaf and CA");
    let leaf = ca.der(&["x509", "-in", &format!("{name}.pem"), "-outform", "DER"]);
    assert_eq!(cert.chain[0].as_ref(), leaf.as_slice(), "leaf comes first");
    let fp = ca.openssl(&[
        "x509",
        "-in",
        &format!("{name}.pem"),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let fp = String::from_utf8(fp).unwrap();
    assert_eq!(
        fp.trim().rsplit('=').next(),
        Some(cert.fingerprint_sha256.as_str())
    );
    assert!(matches!(
        cert.key,
        rustls_pki_types::PrivateKeyDer::Pkcs8(_)
    ));
    let now = SystemTime::now();
    assert!(
        (363..=365).contains(&cert.days_left(now)),
        "{}",
        cert.days_left(now)
    );
    assert_eq!(pki::check(cert, now, CODE), vec![]);
}

#[test]
fn modern_rsa_and_ec() {
    let ca = Ca::new();
    for alg in ["rsa", "ec"] {
        ca.issue(alg, alg, CODE, None);
        let p12 = ca.p12(alg, "secret", &[]);
        let cert = load_ok(&p12, "secret");
        assert_happy(&ca, &cert, alg);
    }
}

#[test]
fn legacy_3des_and_rc2() {
    let ca = Ca::new();
    for alg in ["rsa", "ec"] {
        ca.issue(alg, alg, CODE, None);
        let des = ca.p12(
            alg,
            "secret",
            &[
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ],
        );
        assert_happy(&ca, &load_ok(&des, "secret"), alg);
        // RC2-40 for the certificates, 3DES for the key, SHA-1 MAC.
        let rc2 = ca.p12(alg, "secret", &["-legacy"]);
        assert_happy(&ca, &load_ok(&rc2, "secret"), alg);
    }
}

#[test]
fn empty_and_japanese_passwords() {
    let ca = Ca::new();
    ca.issue("leaf", "rsa", CODE, None);
    let empty = ca.p12("leaf", "", &[]);
    assert_happy(&ca, &load_ok(&empty, ""), "leaf");
    let ja = ca.p12("leaf", "診療所パス", &["-name", "ja"]);
    assert_happy(&ca, &load_ok(&ja, "診療所パス"), "leaf");
    let legacy_ja = ca.p12("leaf", "診療所パス", &["-legacy", "-name", "legacy"]);
    assert_happy(&ca, &load_ok(&legacy_ja, "診療所パス"), "leaf");
}

#[test]
fn wrong_password() {
    let ca = Ca::new();
    ca.issue("leaf", "ec", CODE, None);
    let p12 = ca.p12("leaf", "secret", &[]);
    let e = pki::load_pkcs12(&p12, "Secret").unwrap_err();
    assert!(matches!(e, PkiError::WrongPassword { .. }), "{e:?}");
    assert!(e.to_string().contains("leaf.p12: wrong password"), "{e}");
    let legacy = ca.p12("leaf", "secret", &["-legacy"]);
    let e = pki::load_pkcs12(&legacy, "").unwrap_err();
    assert!(matches!(e, PkiError::WrongPassword { .. }), "{e:?}");
}

#[test]
fn not_a_pkcs12_or_missing() {
    let ca = Ca::new();
    ca.issue("leaf", "ec", CODE, None);
    // A PEM certificate named as if it were the .p12.
    let e = pki::load_pkcs12(&ca.path("leaf.pem"), "x").unwrap_err();
    assert!(matches!(e, PkiError::NotPkcs12 { .. }), "{e:?}");
    assert!(e.to_string().contains("leaf.pem is not a PKCS#12"), "{e}");
    let e = pki::load_pkcs12(&ca.path("missing.p12"), "x").unwrap_err();
    assert!(matches!(e, PkiError::Unreadable { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.p12"), "{e}");
}

#[test]
fn no_key_or_no_certificate() {
    let ca = Ca::new();
    ca.issue("leaf", "ec", CODE, None);
    ca.openssl(&[
        "pkcs12",
        "-export",
        "-nokeys",
        "-in",
        "leaf.pem",
        "-out",
        "nokey.p12",
        "-passout",
        "pass:pw",
    ]);
    let e = pki::load_pkcs12(&ca.path("nokey.p12"), "pw").unwrap_err();
    assert!(matches!(e, PkiError::NoPrivateKey { .. }), "{e:?}");
    ca.openssl(&[
        "pkcs12",
        "-export",
        "-nocerts",
        "-inkey",
        "leaf.key",
        "-out",
        "nocert.p12",
        "-passout",
        "pass:pw",
    ]);
    let e = pki::load_pkcs12(&ca.path("nocert.p12"), "pw").unwrap_err();
    assert!(matches!(e, PkiError::NoCertificate { .. }), "{e:?}");
}

/// openssl refuses to export a key with a certificate it does not match, so the mismatched
/// file is written with p12-keystore.
#[test]
fn key_does_not_match_certificate() {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let ca = Ca::new();
    for alg in ["rsa", "ec"] {
        ca.issue(alg, alg, CODE, None);
        ca.issue("other", alg, CODE, None);
        let cert = ca.der(&["x509", "-in", &format!("{alg}.pem"), "-outform", "DER"]);
        let other_key = ca.der(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "other.key",
            "-outform",
            "DER",
        ]);
        let own_key = ca.der(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &format!("{alg}.key"),
            "-outform",
            "DER",
        ]);
        let write = |key: &[u8], file: &str| {
            let chain = PrivateKeyChain::new(
                b"id".to_vec(),
                PrivateKey::from_der(key).unwrap(),
                [Certificate::from_der(&cert).unwrap()],
            );
            let mut store = KeyStore::new();
            store.add_entry("x", KeyStoreEntry::PrivateKeyChain(chain));
            std::fs::write(ca.path(file), store.writer("pw").write().unwrap()).unwrap();
            ca.path(file)
        };
        // The writer itself is sound: the matching pair loads.
        let good = load_ok(&write(&own_key, "good.p12"), "pw");
        assert_eq!(good.chain.len(), 1);
        let e = pki::load_pkcs12(&write(&other_key, "bad.p12"), "pw").unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{alg}: {e:?}");
        assert!(e.to_string().contains("bad.p12"), "{e}");
    }
}

#[test]
fn expired_and_not_yet_valid() {
    let ca = Ca::new();
    ca.issue(
        "old",
        "rsa",
        CODE,
        Some(("20200101000000Z", "20210101000000Z")),
    );
    let old = load_ok(&ca.p12("old", "pw", &[]), "pw");
    let now = SystemTime::now();
    assert!(old.days_left(now) < -1000);
    let found = pki::check(&old, now, CODE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Error);
    assert!(
        found[0]
            .message
            .ends_with("old.p12: the certificate expired on 2021-01-01T00:00:00Z"),
        "{}",
        found[0].message
    );

    ca.issue(
        "future",
        "ec",
        CODE,
        Some(("20990101000000Z", "21000101000000Z")),
    );
    let future = load_ok(&ca.p12("future", "pw", &[]), "pw");
    let found = pki::check(&future, now, CODE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Error);
    assert!(
        found[0]
            .message
            .contains("not valid until 2099-01-01T00:00:00Z"),
        "{}",
        found[0].message
    );
}

#[test]
fn expiring_soon_and_cn_mismatch_warn() {
    let ca = Ca::new();
    ca.issue("leaf", "ec", "1399999999", None);
    let cert = load_ok(&ca.p12("leaf", "pw", &[]), "pw");
    let now = SystemTime::now();
    let found = pki::check(&cert, now, CODE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert!(
        found[0]
            .message
            .contains("is for `1399999999`, not for institution code 1312345678"),
        "{}",
        found[0].message
    );
    // Ten days before it ends: a warning to renew, still usable.
    let late = cert.not_after - Duration::from_secs(10 * 86_400);
    let found = pki::check(&cert, late, "1399999999");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert!(
        found[0].message.contains("(10 days left)"),
        "{}",
        found[0].message
    );
}

#[test]
fn password_file_drops_one_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "診療所パス\r\n").unwrap();
    assert_eq!(pki::read_password_file(&path).unwrap(), "診療所パス");
    std::fs::write(&path, " a b \n\n").unwrap();
    assert_eq!(pki::read_password_file(&path).unwrap(), " a b \n");
    std::fs::write(&path, "").unwrap();
    assert_eq!(pki::read_password_file(&path).unwrap(), "");
}

#[test]
fn pem_certificate_and_key() {
    let ca = Ca::new();
    ca.issue("pem", "ec", CODE, None);
    // openssl writes PKCS#8 keys (BEGIN PRIVATE KEY): what load_pem takes.
    let cert = pki::load_pem(&ca.path("pem.pem"), &ca.path("pem.key")).unwrap();
    assert_eq!(cert.subject_cn.as_deref(), Some(CODE));
    assert_eq!(cert.path, ca.path("pem.pem"));
    ca.issue("other", "ec", CODE, None);
    let err = pki::load_pem(&ca.path("pem.pem"), &ca.path("other.key")).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    let err = pki::load_pem(&ca.path("pem.key"), &ca.path("pem.key")).unwrap_err();
    assert!(matches!(err, PkiError::NoCertificate { .. }), "{err}");
}

fn oqs_edge(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_oqs-edge"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn cert_import_copies_a_checked_p12_into_the_state_directory_and_list_shows_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let ca = Ca::new();
    ca.issue("clinic", "rsa", CODE, None);
    let p12 = ca.p12("clinic", "正しいパスワード", &["-legacy"]);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let pass = ca.path("pass.txt");
    let p12_arg = p12.to_str().unwrap();

    let args = [
        "cert",
        "import",
        p12_arg,
        "--name",
        "oqs",
        "--password-file",
        pass.to_str().unwrap(),
        "--state-dir",
        state_dir,
    ];
    std::fs::write(&pass, "wrong\n").unwrap();
    let out = oqs_edge(&args, None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(p12_arg) && err.contains("wrong password"),
        "{err}"
    );
    assert!(
        !state.path().join("certs").exists(),
        "nothing is written for a bad file"
    );

    std::fs::write(&pass, "正しいパスワード\n").unwrap();
    let out = oqs_edge(&args, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = state.path().join("certs/oqs.p12");
    let stored_pass = state.path().join("secrets/oqs.p12.pass");
    assert!(
        text.contains(&format!("pkcs12: {}", stored.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("password_file: {}", stored_pass.display())),
        "{text}"
    );
    assert!(text.contains(&format!("CN {CODE}")), "{text}");
    for file in [&stored, &stored_pass] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&p12).unwrap()
    );
    // The stored password opens the stored file.
    pki::load_pkcs12(&stored, &pki::read_password_file(&stored_pass).unwrap()).unwrap();

    // A second import of the same name needs --replace.
    let out = oqs_edge(&args, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"));
    let mut replace = args.to_vec();
    replace.push("--replace");
    assert_eq!(oqs_edge(&replace, None).status.code(), Some(0));

    // `cert list` on a config naming the stored files.
    let config = include_str!("../../config/lab.yaml")
        .replace("/run/oqs-edge-lab/certs/oqs.p12", stored.to_str().unwrap())
        .replace(
            "/run/oqs-edge-lab/secrets/oqs.p12.pass",
            stored_pass.to_str().unwrap(),
        );
    let config_path = state.path().join("config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let out = oqs_edge(
        &[
            "cert",
            "list",
            "-c",
            config_path.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "oqs");
    assert_eq!(list[0]["subject_cn"], CODE);
    assert!(list[0]["days_left"].as_i64().unwrap() >= 363, "{list:#}");
    assert_eq!(list[0]["fingerprint_sha256"].as_str().unwrap().len(), 95);
}
