//! The lab's certificates, made with the `openssl` CLI as an operator would: the files
//! config/lab.yaml names, under a lab's dir instead of `/run/oqs-edge-lab`.
//!
//! ```text
//! ca/oqs-server-ca.pem, .key      the closed network's server CA (oqs-edge's `server_ca`)
//! ca/oqs-server.pem, .key         hweb-api.oqs.example + claims.oqs.example, by that CA (for an
//!                                 nginx upstream in `closed`)
//! ca/oqs-client-ca.pem, .key      a separate CA for clients (the upstream verifies with it)
//! ca/oqs-client.pem, .key         CN 1312345678, the 医療機関等コード, by the client CA
//! certs/oqs.p12                   that client certificate + key + client CA, PKCS#12
//! secrets/oqs.p12.pass            its password (mode 600; secrets/ is 700)
//! local-ca/                       empty: oqs-edge makes its local CA there
//! ```

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::Command;

/// Extensions for each kind of certificate; `-subj` gives the names.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:hweb-api.oqs.example, DNS:claims.oqs.example
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

/// The institution code of the lab (config/lab.yaml's `site.institution_code`).
pub const INSTITUTION_CODE: &str = "1312345678";

/// Create the files under `dir`; a second call finds them there and does nothing.
pub fn create_lab_files(dir: &Path) {
    if dir.join("certs/oqs.p12").exists() {
        return;
    }
    for (sub, mode) in [
        ("ca", 0o755),
        ("certs", 0o755),
        ("secrets", 0o700),
        ("local-ca", 0o700),
    ] {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir.join(sub))
            .unwrap_or_else(|e| panic!("create {sub}/ in {}: {e}", dir.display()));
    }
    let cnf = dir.join("ca/openssl.cnf");
    std::fs::write(&cnf, OPENSSL_CNF).expect("write openssl.cnf");
    let cnf = cnf.to_str().expect("lab dir path is UTF-8");

    self_signed_ca(dir, cnf, "ca/oqs-server-ca", "/CN=oqs-edge lab server CA");
    issue(
        dir,
        cnf,
        "ca/oqs-server",
        "/CN=hweb-api.oqs.example",
        "ca/oqs-server-ca",
        "server",
    );
    self_signed_ca(dir, cnf, "ca/oqs-client-ca", "/CN=oqs-edge lab client CA");
    let subject = format!("/O=oqs-edge lab/CN={INSTITUTION_CODE}");
    issue(
        dir,
        cnf,
        "ca/oqs-client",
        &subject,
        "ca/oqs-client-ca",
        "client",
    );

    write_password(&dir.join("secrets/oqs.p12.pass"));
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-name",
            "oqs",
            "-inkey",
            "ca/oqs-client.key",
            "-in",
            "ca/oqs-client.pem",
            "-certfile",
            "ca/oqs-client-ca.pem",
            "-passout",
            "file:secrets/oqs.p12.pass",
            "-out",
            "certs/oqs.p12",
        ],
    );
}

/// A server certificate for the upstream's names from a CA oqs-edge does not trust:
/// `ca/foreign-server.pem` + `.key`, by `ca/foreign-ca`.
pub fn create_foreign_server(dir: &Path) {
    let cnf = dir.join("ca/openssl.cnf");
    let cnf = cnf.to_str().expect("lab dir path is UTF-8");
    self_signed_ca(dir, cnf, "ca/foreign-ca", "/CN=some other CA");
    issue(
        dir,
        cnf,
        "ca/foreign-server",
        "/CN=hweb-api.oqs.example",
        "ca/foreign-ca",
        "server",
    );
}

/// A new client certificate for the same institution (new key, new serial), exported to
/// `certs/oqs.p12` with the same password, replacing the old file in one rename as an operator
/// copying a renewed certificate in would. `legacy`: RC2-40/3DES, as older Windows tools export.
/// Returns the new certificate's serial as nginx logs it (upper-case hex).
pub fn renew_client_p12(dir: &Path, legacy: bool) -> String {
    let cnf = dir.join("ca/openssl.cnf");
    let cnf = cnf.to_str().expect("lab dir path is UTF-8");
    let subject = format!("/O=oqs-edge lab/CN={INSTITUTION_CODE}");
    issue(
        dir,
        cnf,
        "ca/oqs-client-renewed",
        &subject,
        "ca/oqs-client-ca",
        "client",
    );
    let mut args = vec![
        "pkcs12",
        "-export",
        "-name",
        "oqs",
        "-inkey",
        "ca/oqs-client-renewed.key",
        "-in",
        "ca/oqs-client-renewed.pem",
        "-certfile",
        "ca/oqs-client-ca.pem",
        "-passout",
        "file:secrets/oqs.p12.pass",
        "-out",
        "certs/.oqs.p12.new",
    ];
    if legacy {
        args.push("-legacy");
    }
    openssl(dir, &args);
    std::fs::rename(dir.join("certs/.oqs.p12.new"), dir.join("certs/oqs.p12"))
        .expect("move the new .p12 in place");
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-serial",
            "-in",
            "ca/oqs-client-renewed.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("run openssl x509");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_uppercase()
}

/// A client certificate for the lab's institution, by the lab's client CA, valid from
/// `from_days` to `until_days` days from now (negative: in the past), exported with the lab's
/// password to `certs/<stem>.p12`; its PEM pair is `ca/<stem>.pem` and `.key`. Returns the
/// .p12's path and the certificate's serial as nginx logs it (upper-case hex).
pub fn client_p12_valid(
    dir: &Path,
    stem: &str,
    from_days: i64,
    until_days: i64,
) -> (std::path::PathBuf, String) {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
        KeyUsagePurpose, SerialNumber,
    };
    let read =
        |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    let ca_key = KeyPair::from_pem(&read("ca/oqs-client-ca.key")).expect("lab client CA key");
    let issuer = Issuer::from_ca_cert_pem(&read("ca/oqs-client-ca.pem"), &ca_key)
        .expect("lab client CA certificate");
    let key = KeyPair::generate().expect("a new key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "oqs-edge lab");
    dn.push(DnType::CommonName, INSTITUTION_CODE);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(until_days) + time::Duration::hours(1);
    // Positive, no leading zero byte or nibble: nginx logs it as these hex digits.
    let mut serial: Vec<u8> = (0..8)
        .map(|i| (now.unix_timestamp_nanos() >> (i * 8)) as u8 | 1)
        .collect();
    serial[0] = (serial[0] & 0x7f) | 0x10;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign the client certificate");
    std::fs::write(dir.join(format!("ca/{stem}.pem")), cert.pem()).expect("write the certificate");
    std::fs::write(dir.join(format!("ca/{stem}.key")), key.serialize_pem()).expect("write the key");
    let p12 = format!("certs/{stem}.p12");
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-name",
            stem,
            "-inkey",
            &format!("ca/{stem}.key"),
            "-in",
            &format!("ca/{stem}.pem"),
            "-certfile",
            "ca/oqs-client-ca.pem",
            "-passout",
            "file:secrets/oqs.p12.pass",
            "-out",
            &p12,
        ],
    );
    let serial = serial
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>();
    (dir.join(p12), serial)
}

/// A P-256 key pair, without a passphrase (`-noenc`).
const NEW_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-noenc",
];

fn self_signed_ca(dir: &Path, cnf: &str, stem: &str, subject: &str) {
    let (key, pem) = (format!("{stem}.key"), format!("{stem}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-config",
        cnf,
        "-extensions",
        "ca",
        "-days",
        "400",
    ];
    args.extend_from_slice(NEW_KEY);
    args.extend_from_slice(&["-keyout", &key, "-out", &pem, "-subj", subject]);
    openssl(dir, &args);
}

/// A key, a request, and the certificate `ca` signs with the `extensions` section.
fn issue(dir: &Path, cnf: &str, stem: &str, subject: &str, ca: &str, extensions: &str) {
    let (key, csr, pem) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.pem"),
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut args = vec!["req", "-new", "-config", cnf];
    args.extend_from_slice(NEW_KEY);
    args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "400",
            "-extfile",
            cnf,
            "-extensions",
            extensions,
            "-out",
            &pem,
        ],
    );
    let _ = std::fs::remove_file(dir.join(csr));
}

/// A random password in a file only its owner reads (created 600, never wider).
fn write_password(path: &Path) {
    let out = Command::new("openssl")
        .args(["rand", "-hex", "16"])
        .output()
        .expect("run openssl rand");
    assert!(out.status.success(), "openssl rand failed");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        // No trailing newline: the password is exactly the file's bytes, however it is read.
        .and_then(|mut f| f.write_all(out.stdout.trim_ascii_end()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
