//! What oqs-edge asks charon over VICI, built from the plan and the credential files it names:
//! the connection (`load-conn`), the credentials (`load-shared`, `load-cert`, `load-key`), and
//! the shapes of the answers and events it reads back. Building does file I/O but no VICI.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};

use super::alerts::{AuthKind, Context, Failure};
use super::IpsecError;
use crate::plan::{IpsecCredentials, TunnelPlan};

/// The CHILD_SA of oqs-edge's connection.
pub const CHILD: &str = "closed";
/// The id of our PSK in charon, so a reload replaces it instead of adding another.
const PSK_ID: &str = "oqs-edge";
/// The connection (and its PSK's id) that probes the preferred gateway while a backup carries
/// the traffic: an IKE_SA without a CHILD_SA, so no traffic moves.
pub const PROBE: &str = "oqs-edge-probe";
/// VICI values carry a 16-bit length.
const MAX_VALUE: usize = 65_000;

/// Everything oqs-edge wants charon to hold, read from the plan and the files.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub socket: PathBuf,
    pub name: String,
    pub conn: Conn,
    pub credentials: Credentials,
    /// For the plain words of a failure.
    pub auth: AuthKind,
    pub remote_address: String,
    pub remote_id: String,
    pub ike_proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Credentials {
    Psk(SharedKey),
    Certificate {
        /// The router's certificate and the peer's CA, PEM.
        cert: String,
        ca: String,
        key: Secret,
    },
}

/// Bytes never shown: `Debug` prints their length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// `load-shared`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedKey {
    id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    data: Secret,
    owners: Vec<String>,
}

/// `load-cert`.
#[derive(Serialize)]
pub struct LoadCert<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub flag: &'static str,
    pub data: &'a str,
}

/// `load-key`.
#[derive(Serialize)]
pub struct LoadKey<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: &'a Secret,
}

/// One connection of `load-conn`, in swanctl.conf's terms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conn {
    version: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    local_addrs: Vec<String>,
    remote_addrs: Vec<String>,
    proposals: Vec<String>,
    dpd_delay: String,
    /// 0: charon retries without end when the gateway does not answer.
    keyingtries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_cert: Option<&'static str>,
    local: End,
    remote: End,
    children: BTreeMap<&'static str, Child>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct End {
    auth: &'static str,
    id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cacerts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Child {
    local_ts: Vec<String>,
    remote_ts: Vec<String>,
    esp_proposals: Vec<String>,
    /// oqs-edge initiates itself, once the connection and credentials are loaded.
    start_action: &'static str,
    /// A dead or closing peer is called again: the tunnel is not left down.
    dpd_action: &'static str,
    close_action: &'static str,
}

impl Desired {
    /// Read the plan's credential files and build the messages. Errors name the file and key.
    pub fn from_plan(plan: &TunnelPlan) -> Result<Desired, IpsecError> {
        let TunnelPlan::Ipsec {
            connection,
            vici_socket,
            local_address,
            remote_address,
            local_id,
            remote_id,
            ike_proposals,
            esp_proposals,
            dpd_delay_secs,
            local_ts,
            remote_ts,
            credentials,
            ..
        } = plan
        else {
            return Err(IpsecError::NotIpsec);
        };
        let (credentials, auth, local_auth, local_certs, cacerts) = match credentials {
            IpsecCredentials::Psk { file } => {
                let data = read_psk(file)?;
                (
                    Credentials::Psk(SharedKey {
                        id: PSK_ID,
                        kind: "IKE",
                        data,
                        owners: vec![local_id.clone(), remote_id.clone()],
                    }),
                    AuthKind::Psk { file: file.clone() },
                    "psk",
                    Vec::new(),
                    Vec::new(),
                )
            }
            IpsecCredentials::Certificate { cert, key, ca } => {
                let cert_pem = read_pem(cert, "tunnel.ipsec.auth.certificate.cert", "CERTIFICATE")?;
                let ca_pem = read_pem(ca, "tunnel.ipsec.auth.certificate.ca", "CERTIFICATE")?;
                let key_pem = read_pem(key, "tunnel.ipsec.auth.certificate.key", "PRIVATE KEY")?;
                (
                    Credentials::Certificate {
                        cert: cert_pem.clone(),
                        ca: ca_pem.clone(),
                        key: Secret(key_pem.into_bytes()),
                    },
                    AuthKind::Certificate {
                        cert: cert.clone(),
                        ca: ca.clone(),
                    },
                    "pubkey",
                    vec![cert_pem],
                    vec![ca_pem],
                )
            }
            IpsecCredentials::None => return Err(IpsecError::NoCredentials),
        };
        let strings = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let conn = Conn {
            version: 2,
            local_addrs: local_address.iter().map(ToString::to_string).collect(),
            remote_addrs: vec![remote_address.clone()],
            proposals: ike_proposals.clone(),
            dpd_delay: format!("{dpd_delay_secs}s"),
            keyingtries: 0,
            send_cert: (local_auth == "pubkey").then_some("always"),
            local: End {
                auth: local_auth,
                id: local_id.clone(),
                certs: local_certs,
                cacerts: Vec::new(),
            },
            remote: End {
                auth: local_auth,
                id: remote_id.clone(),
                certs: Vec::new(),
                cacerts,
            },
            children: BTreeMap::from([(
                CHILD,
                Child {
                    local_ts: strings(local_ts),
                    remote_ts: strings(remote_ts),
                    esp_proposals: esp_proposals.clone(),
                    start_action: "none",
                    dpd_action: "restart",
                    close_action: "restart",
                },
            )]),
        };
        Ok(Desired {
            socket: vici_socket.clone(),
            name: (*connection).to_owned(),
            conn,
            credentials,
            auth,
            remote_address: remote_address.clone(),
            remote_id: remote_id.clone(),
            ike_proposals: ike_proposals.clone(),
            esp_proposals: esp_proposals.clone(),
        })
    }

    /// The same connection to another gateway of the list (same credentials and proposals;
    /// the PSK is owned by the gateway's identity).
    pub fn for_gateway(&self, address: &str, remote_id: &str) -> Desired {
        let mut next = self.clone();
        next.remote_address = address.to_owned();
        next.remote_id = remote_id.to_owned();
        next.conn.remote_addrs = vec![address.to_owned()];
        next.conn.remote.id = remote_id.to_owned();
        if let Credentials::Psk(key) = &mut next.credentials {
            key.owners = vec![self.conn.local.id.clone(), remote_id.to_owned()];
        }
        next
    }

    /// The probe of the gateway `address` (identity `remote_id`): the same credentials and IKE
    /// proposals, its own name and PSK id, and no CHILD_SA.
    pub fn probe_of(&self, address: &str, remote_id: &str) -> Desired {
        let mut probe = self.for_gateway(address, remote_id);
        probe.name = PROBE.to_owned();
        probe.conn.children.clear();
        if let Credentials::Psk(key) = &mut probe.credentials {
            key.id = PROBE;
        }
        probe
    }

    /// `failure` in plain words, with this connection's settings it points at.
    pub fn describe(&self, failure: &Failure) -> String {
        let (local_ts, remote_ts) = (self.local_ts(), self.remote_ts());
        failure.describe(&Context {
            auth: &self.auth,
            remote_address: &self.remote_address,
            remote_id: &self.remote_id,
            ike_proposals: &self.ike_proposals,
            esp_proposals: &self.esp_proposals,
            local_ts: &local_ts,
            remote_ts: &remote_ts,
        })
    }

    pub fn local_ts(&self) -> String {
        self.child()
            .map(|c| c.local_ts.join(","))
            .unwrap_or_default()
    }

    pub fn remote_ts(&self) -> String {
        self.child()
            .map(|c| c.remote_ts.join(","))
            .unwrap_or_default()
    }

    fn child(&self) -> Option<&Child> {
        self.conn.children.get(CHILD)
    }

    /// The `load-conn` message: `{ <name> { … } }`.
    pub fn load_conn(&self) -> BTreeMap<&str, &Conn> {
        BTreeMap::from([(self.name.as_str(), &self.conn)])
    }
}

/// The PSK file: its text without the final newline; `0x…` is hex and `0s…` base64, as in
/// swanctl.conf.
fn read_psk(path: &Path) -> Result<Secret, IpsecError> {
    let key = "tunnel.ipsec.auth.psk_file";
    let bytes = std::fs::read(path).map_err(|source| IpsecError::Read {
        path: path.to_owned(),
        key,
        source,
    })?;
    let text = std::str::from_utf8(&bytes)
        .map(|t| t.trim_end_matches(['\r', '\n']))
        .map_err(|_| IpsecError::BadPsk {
            path: path.to_owned(),
            why: "it is not text; write the key as text, or as 0x… (hex) or 0s… (base64)",
        })?;
    let data = if let Some(hex) = text.strip_prefix("0x") {
        decode_hex(hex.trim()).ok_or_else(|| IpsecError::BadPsk {
            path: path.to_owned(),
            why: "it starts with 0x but the rest is not hex digits",
        })?
    } else if let Some(b64) = text.strip_prefix("0s") {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| IpsecError::BadPsk {
                path: path.to_owned(),
                why: "it starts with 0s but the rest is not base64",
            })?
    } else {
        text.as_bytes().to_vec()
    };
    if data.is_empty() {
        return Err(IpsecError::BadPsk {
            path: path.to_owned(),
            why: "it is empty; put the pre-shared key your provider gave in it",
        });
    }
    if data.len() > MAX_VALUE {
        return Err(IpsecError::BadPsk {
            path: path.to_owned(),
            why: "it is too long for charon",
        });
    }
    Ok(Secret(data))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A PEM file holding a block whose label ends in `label` (CERTIFICATE, PRIVATE KEY: EC, RSA
/// and PKCS#8 keys all end so).
fn read_pem(path: &Path, key: &'static str, label: &'static str) -> Result<String, IpsecError> {
    let text = std::fs::read_to_string(path).map_err(|source| IpsecError::Read {
        path: path.to_owned(),
        key,
        source,
    })?;
    let found = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if !found || text.len() > MAX_VALUE {
        return Err(IpsecError::NotPem {
            path: path.to_owned(),
            key,
            label,
        });
    }
    Ok(text)
}

/// A command's reply: `success` and, when it failed, charon's reason.
#[derive(Debug, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub errmsg: Option<String>,
}

/// `initiate`; `timeout` in ms (charon keeps trying after we stop waiting).
#[derive(Serialize)]
pub struct Initiate<'a> {
    /// `None`: the IKE_SA alone (childless, RFC 6023).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<&'a str>,
    pub ike: &'a str,
    pub timeout: i32,
    #[serde(rename = "init-limits")]
    pub init_limits: bool,
}

/// `terminate` without waiting.
#[derive(Serialize)]
pub struct Terminate<'a> {
    pub ike: &'a str,
    pub timeout: i32,
    /// Close without waiting for the peer's answer (a gateway given up does not answer).
    pub force: bool,
}

/// `list-sas` for one connection.
#[derive(Serialize)]
pub struct ListSas<'a> {
    pub ike: &'a str,
    pub noblock: bool,
}

/// An IKE_SA as `list-sas` and the updown events show it (the fields we read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct IkeSa {
    #[serde(default)]
    pub state: String,
    /// The router's address the IKE_SA runs from (`%any` while charon has none).
    #[serde(rename = "local-host", default)]
    pub local_host: String,
    /// Exchanges charon has queued or under way (listed only when there are any).
    #[serde(rename = "tasks-queued", default)]
    pub tasks_queued: Vec<String>,
    #[serde(rename = "tasks-active", default)]
    pub tasks_active: Vec<String>,
    #[serde(rename = "child-sas", default)]
    pub child_sas: HashMap<String, ChildSa>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChildSa {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
}

impl IkeSa {
    /// Established from one of `addresses` with no exchange pending: it has followed the
    /// WAN's address. (Without MOBIKE, charon sets the new local address at once but then
    /// waits, its re-authentication queued behind an exchange the gateway never answers.)
    pub fn followed(&self, addresses: &[std::net::IpAddr]) -> bool {
        self.state == "ESTABLISHED"
            && self.tasks_queued.is_empty()
            && self.tasks_active.is_empty()
            && self
                .local_host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| addresses.contains(&a))
    }

    /// An installed CHILD_SA of ours: traffic flows.
    pub fn child_installed(&self) -> bool {
        self.child_sas
            .values()
            .any(|c| c.name == CHILD && c.state == "INSTALLED")
    }
}

/// `ike-updown` / `child-updown`: `up = yes` on the way up. (A string, not a bool: flattened
/// fields go through serde's buffer, which cannot read VICI's yes/no as a bool.)
#[derive(Debug, Deserialize)]
pub struct UpDown {
    #[serde(default)]
    up: Option<String>,
    #[serde(flatten)]
    pub sas: HashMap<String, IkeSa>,
}

impl UpDown {
    pub fn is_up(&self) -> bool {
        self.up.as_deref() == Some("yes")
    }
}

/// `log` and `control-log`.
#[derive(Debug, Deserialize)]
pub struct Log {
    #[serde(rename = "ikesa-name", default)]
    pub ikesa_name: Option<String>,
    #[serde(default)]
    pub msg: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_text_hex_and_base64() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        assert_eq!(read_psk(&write("a", "secret\n")).unwrap().0, b"secret");
        assert_eq!(read_psk(&write("b", "0x0aff\n")).unwrap().0, vec![10, 255]);
        assert_eq!(read_psk(&write("c", "0sAQI=")).unwrap().0, vec![1, 2]);
        assert!(matches!(
            read_psk(&write("d", "\n")),
            Err(IpsecError::BadPsk { .. })
        ));
        assert!(matches!(
            read_psk(&write("e", "0xzz")),
            Err(IpsecError::BadPsk { .. })
        ));
        let shown = format!("{:?}", read_psk(&write("f", "topsecret")).unwrap());
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn an_ike_sa_has_followed_the_wan_only_when_settled_on_a_new_address() {
        let new: Vec<std::net::IpAddr> = vec!["198.51.100.79".parse().unwrap()];
        let sa = |state: &str, local: &str, queued: &[&str], active: &[&str]| IkeSa {
            state: state.to_owned(),
            local_host: local.to_owned(),
            tasks_queued: queued.iter().map(|t| (*t).to_owned()).collect(),
            tasks_active: active.iter().map(|t| (*t).to_owned()).collect(),
            ..IkeSa::default()
        };
        // Moved by MOBIKE, nothing pending.
        assert!(sa("ESTABLISHED", "198.51.100.79", &[], &[]).followed(&new));
        // Still on the old address, or still negotiating.
        assert!(!sa("ESTABLISHED", "198.51.100.59", &[], &[]).followed(&new));
        assert!(!sa("CONNECTING", "198.51.100.79", &[], &[]).followed(&new));
        assert!(!sa("CONNECTING", "%any", &[], &["IKE_INIT"]).followed(&new));
        // Without MOBIKE: the new address is set, the re-authentication waits behind a DPD.
        assert!(!sa(
            "ESTABLISHED",
            "198.51.100.79",
            &["IKE_REAUTH"],
            &["IKE_DPD"]
        )
        .followed(&new));
    }

    #[test]
    fn a_key_file_is_not_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(
            &p,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pem(&p, "k", "PRIVATE KEY").is_ok());
        let err = read_pem(&p, "tunnel.ipsec.auth.certificate.cert", "CERTIFICATE").unwrap_err();
        assert!(err.to_string().contains("k.pem"), "{err}");
    }
}
