//! charon's failures in plain words: what went wrong with the IPsec tunnel and what the
//! operator must do. Pure: log lines in (charon's own words, from VICI `log` and `control-log`),
//! a [`Failure`] out, and its text for `status`.
//!
//! VICI has no alert event (the bus alerts go to the error-notify plugin's own socket), so the
//! log lines charon writes at level 1 for these failures are what is matched; they have been
//! stable across strongSwan 5.x.

use std::path::PathBuf;

/// How this router authenticates itself, which decides what a refusal means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Psk { file: PathBuf },
    Certificate { cert: PathBuf, ca: PathBuf },
}

/// Why the tunnel is not up, as the operator must act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The gateway answered AUTHENTICATION_FAILED: it refused our PSK or our certificate.
    PeerRefusedUs,
    /// Our check of the gateway's PSK MAC failed.
    PskMismatch,
    /// The gateway's certificate does not chain to our CA (or it sent none we trust).
    PeerCertificateUntrusted { peer: String },
    /// A certificate on the path is outside its validity.
    CertificateExpired { what: String },
    /// The gateway's identity is not `remote_id`.
    PeerIdentityMismatch { required: String },
    /// charon has no private key for our certificate.
    NoPrivateKey { id: String },
    /// IKE_SA_INIT: no common IKE proposal.
    IkeProposalMismatch,
    /// CHILD_SA: no common ESP proposal.
    EspProposalMismatch,
    /// No answer on UDP 500/4500 (yet): `retransmits` so far, `gave_up` after the last.
    PeerUnreachable { retransmits: u32, gave_up: bool },
    /// The gateway refused the traffic selectors.
    TrafficSelectorsRefused,
}

/// What [`Failure::describe`] names: the config's own values.
pub struct Context<'a> {
    pub auth: &'a AuthKind,
    pub remote_address: &'a str,
    pub remote_id: &'a str,
    pub ike_proposals: &'a [String],
    pub esp_proposals: &'a [String],
    pub local_ts: &'a str,
    pub remote_ts: &'a str,
}

/// Read one of charon's log lines; `None` when it is not a failure this module knows.
pub fn classify(msg: &str) -> Option<Failure> {
    let msg = msg.trim();
    if msg.contains("received AUTHENTICATION_FAILED notify") {
        return Some(Failure::PeerRefusedUs);
    }
    if msg.contains("but MAC mismatched") {
        return Some(Failure::PskMismatch);
    }
    if let Some(rest) = after(msg, "no trusted ") {
        // "no trusted ECDSA public key found for 'vpngw.example'"
        return Some(Failure::PeerCertificateUntrusted {
            peer: quoted(rest).unwrap_or_default(),
        });
    }
    if let Some(rest) = after(msg, "no issuer certificate found for ") {
        return Some(Failure::PeerCertificateUntrusted {
            peer: quoted(rest).unwrap_or_default(),
        });
    }
    if msg.contains("certificate invalid (valid from")
        || (msg.contains("certificate") && msg.contains("expired"))
    {
        return Some(Failure::CertificateExpired {
            what: msg.to_owned(),
        });
    }
    if let Some(rest) = after(msg, "constraint check failed: identity ") {
        return Some(Failure::PeerIdentityMismatch {
            required: quoted(rest).unwrap_or_default(),
        });
    }
    if let Some(rest) = after(msg, "no private key found for ") {
        return Some(Failure::NoPrivateKey {
            id: quoted(rest).unwrap_or_default(),
        });
    }
    if msg.contains("NO_PROPOSAL_CHOSEN notify, no CHILD_SA built") {
        return Some(Failure::EspProposalMismatch);
    }
    if msg.contains("received NO_PROPOSAL_CHOSEN notify") {
        return Some(Failure::IkeProposalMismatch);
    }
    if msg.contains("TS_UNACCEPTABLE") {
        return Some(Failure::TrafficSelectorsRefused);
    }
    if let Some(rest) = after(msg, "giving up after ") {
        return Some(Failure::PeerUnreachable {
            retransmits: leading_number(rest).unwrap_or(0),
            gave_up: true,
        });
    }
    if let Some(rest) = after(msg, "retransmit ") {
        // "retransmit 2 of request with message ID 0": only unanswered IKE_SA_INIT (ID 0)
        // means the gateway is not reached; a later lost packet is a passing loss.
        if msg.ends_with("message ID 0") {
            return Some(Failure::PeerUnreachable {
                retransmits: leading_number(rest).unwrap_or(0),
                gave_up: false,
            });
        }
    }
    None
}

fn after<'a>(msg: &'a str, needle: &str) -> Option<&'a str> {
    msg.find(needle).map(|i| &msg[i + needle.len()..])
}

/// The first '…' or "…" quoted part.
fn quoted(text: &str) -> Option<String> {
    let start = text.find(['\'', '"'])?;
    let quote = text[start..].chars().next()?;
    let rest = &text[start + 1..];
    let end = rest.find(quote)?;
    Some(rest[..end].to_owned())
}

fn leading_number(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Failure {
    /// One retransmit is a lost packet, not an outage: say "unreachable" from the second.
    pub fn is_worth_reporting(&self) -> bool {
        match self {
            Failure::PeerUnreachable {
                retransmits,
                gave_up,
            } => *gave_up || *retransmits >= 2,
            _ => true,
        }
    }

    /// The plain-words line for `status`: what is wrong, then what to do.
    pub fn describe(&self, cx: &Context<'_>) -> String {
        let gw = format!("the gateway {} ({})", cx.remote_address, cx.remote_id);
        match (self, cx.auth) {
            (Failure::PeerRefusedUs, AuthKind::Psk { file }) => format!(
                "peer authentication failed: {gw} refused this router's pre-shared key (PSK mismatch); put the key your provider gave in {} and run `oqs-edge reload`",
                file.display()
            ),
            (Failure::PeerRefusedUs, AuthKind::Certificate { cert, .. }) => format!(
                "peer authentication failed: {gw} refused this router's certificate {} (not trusted by the gateway, expired, or local_id is not its subject); ask the provider which CA it trusts",
                cert.display()
            ),
            (Failure::PskMismatch, AuthKind::Psk { file }) | (Failure::PskMismatch, AuthKind::Certificate { cert: file, .. }) => format!(
                "peer authentication failed: the pre-shared key of {gw} does not match the one in {} (PSK mismatch); put the key your provider gave there and run `oqs-edge reload`",
                file.display()
            ),
            (Failure::PeerCertificateUntrusted { peer }, AuthKind::Certificate { ca, .. }) => format!(
                "peer authentication failed: the certificate of {gw}{} is not trusted: it is not signed by the CA in {}; ask the provider for the CA that signs its gateway",
                if peer.is_empty() { String::new() } else { format!(", '{peer}',") },
                ca.display()
            ),
            (Failure::PeerCertificateUntrusted { .. }, AuthKind::Psk { .. }) => format!(
                "peer authentication failed: {gw} authenticates with a certificate, this router with a pre-shared key; ask the provider which method to use"
            ),
            (Failure::CertificateExpired { what }, _) => format!(
                "peer authentication failed: a certificate has expired or is not valid yet ({what}); check the router's clock, then renew the certificate"
            ),
            (Failure::PeerIdentityMismatch { required }, _) => format!(
                "peer authentication failed: {gw} did not present the identity '{required}' (tunnel.ipsec.remote_id); ask the provider for its gateway's identity"
            ),
            (Failure::NoPrivateKey { id }, AuthKind::Certificate { cert, .. }) => format!(
                "charon has no private key for '{id}': tunnel.ipsec.auth.certificate.key does not belong to {}",
                cert.display()
            ),
            (Failure::NoPrivateKey { id }, AuthKind::Psk { .. }) => format!(
                "charon has no key for '{id}'"
            ),
            (Failure::IkeProposalMismatch, _) => format!(
                "proposal mismatch: {gw} accepts none of the IKE proposals [{}] (tunnel.ipsec.ike_proposals); ask the provider for its IKE algorithms",
                cx.ike_proposals.join(", ")
            ),
            (Failure::EspProposalMismatch, _) => format!(
                "proposal mismatch: {gw} accepts none of the ESP proposals [{}] (tunnel.ipsec.esp_proposals); ask the provider for its ESP algorithms",
                cx.esp_proposals.join(", ")
            ),
            (Failure::PeerUnreachable { retransmits, gave_up }, _) => format!(
                "peer unreachable: no answer from {} on UDP 500/4500 ({retransmits} retransmits{}); check the WAN link and tunnel.ipsec.remote_address, and that the provider's gateway is up",
                cx.remote_address,
                if *gave_up { ", retrying" } else { " so far" }
            ),
            (Failure::TrafficSelectorsRefused, _) => format!(
                "traffic selector refused: {gw} does not accept {} <-> {}; tell the provider the eligibility segment and check closed_network.prefixes",
                cx.local_ts, cx.remote_ts
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(auth: &AuthKind) -> Context<'_> {
        Context {
            auth,
            remote_address: "203.0.113.2",
            remote_id: "vpngw.example",
            ike_proposals: &[],
            esp_proposals: &[],
            local_ts: "192.168.50.0/24",
            remote_ts: "10.200.0.0/24",
        }
    }

    #[test]
    fn charon_lines_map_to_failures() {
        let cases = [
            (
                "received AUTHENTICATION_FAILED notify error",
                Failure::PeerRefusedUs,
            ),
            (
                "tried 1 shared key for 'router.example' - 'vpngw.example', but MAC mismatched",
                Failure::PskMismatch,
            ),
            (
                "no trusted ECDSA public key found for 'vpngw.example'",
                Failure::PeerCertificateUntrusted {
                    peer: "vpngw.example".into(),
                },
            ),
            (
                "received NO_PROPOSAL_CHOSEN notify error",
                Failure::IkeProposalMismatch,
            ),
            (
                "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built",
                Failure::EspProposalMismatch,
            ),
            (
                "received TS_UNACCEPTABLE notify, no CHILD_SA built",
                Failure::TrafficSelectorsRefused,
            ),
            (
                "giving up after 4 retransmits",
                Failure::PeerUnreachable {
                    retransmits: 4,
                    gave_up: true,
                },
            ),
            (
                "retransmit 2 of request with message ID 0",
                Failure::PeerUnreachable {
                    retransmits: 2,
                    gave_up: false,
                },
            ),
            (
                "constraint check failed: identity 'vpngw.example' required ",
                Failure::PeerIdentityMismatch {
                    required: "vpngw.example".into(),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), Some(want), "{line}");
        }
        for line in [
            "initiating IKE_SA oqs-edge[1] to 203.0.113.2",
            "retransmit 1 of request with message ID 7",
            "CHILD_SA closed{1} established with SPIs",
        ] {
            assert_eq!(classify(line), None, "{line}");
        }
    }

    #[test]
    fn a_refusal_names_what_to_fix_for_the_auth_method_in_use() {
        let psk = AuthKind::Psk {
            file: "/etc/oqs-edge/secrets/ipsec.psk".into(),
        };
        let text = Failure::PeerRefusedUs.describe(&cx(&psk));
        assert!(text.contains("PSK mismatch"), "{text}");
        assert!(text.contains("/etc/oqs-edge/secrets/ipsec.psk"), "{text}");

        let cert = AuthKind::Certificate {
            cert: "/etc/oqs-edge/ipsec/router.pem".into(),
            ca: "/etc/oqs-edge/ipsec/provider-ca.pem".into(),
        };
        let text = Failure::PeerCertificateUntrusted {
            peer: "vpngw.example".into(),
        }
        .describe(&cx(&cert));
        assert!(text.contains("not trusted"), "{text}");
        assert!(text.contains("provider-ca.pem"), "{text}");
    }

    #[test]
    fn one_retransmit_is_not_an_outage() {
        let one = Failure::PeerUnreachable {
            retransmits: 1,
            gave_up: false,
        };
        assert!(!one.is_worth_reporting());
        assert!(Failure::PeerUnreachable {
            retransmits: 2,
            gave_up: false
        }
        .is_worth_reporting());
    }
}
