//! strongSwan proposal strings (`aes256gcm16-prfsha256-ecp256`): the algorithm keywords charon
//! 5.9 knows, and what a proposal must hold, so a typo is found by `check` with its line and
//! column instead of by charon refusing the connection on the router.

/// IKE (`ike_proposals`) or ESP (`esp_proposals`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ike,
    Esp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Aead,
    Cipher,
    Integrity,
    Prf,
    Group,
    Esn,
}

/// Every keyword with its class.
fn keywords() -> Vec<(String, Class)> {
    let mut k: Vec<(String, Class)> = Vec::new();
    let mut add = |name: String, class| k.push((name, class));
    for bits in ["128", "192", "256"] {
        for family in ["aes", "camellia"] {
            add(format!("{family}{bits}"), Class::Cipher);
            add(format!("{family}{bits}ctr"), Class::Cipher);
            for icv in ["8", "12", "16", "64", "96", "128"] {
                add(format!("{family}{bits}ccm{icv}"), Class::Aead);
                if family == "aes" {
                    add(format!("{family}{bits}gcm{icv}"), Class::Aead);
                }
            }
        }
        add(format!("aes{bits}gmac"), Class::Integrity);
        for family in ["serpent", "twofish", "blowfish"] {
            add(format!("{family}{bits}"), Class::Cipher);
        }
    }
    for name in [
        "aes", "camellia", "3des", "des", "cast128", "blowfish", "null",
    ] {
        add(name.into(), Class::Cipher);
    }
    add("chacha20poly1305".into(), Class::Aead);
    for name in [
        "md5",
        "md5_128",
        "sha",
        "sha1",
        "sha1_160",
        "sha256",
        "sha2_256",
        "sha256_96",
        "sha2_256_96",
        "sha384",
        "sha2_384",
        "sha512",
        "sha2_512",
        "aesxcbc",
        "aescmac",
        "camelliaxcbc",
    ] {
        add(name.into(), Class::Integrity);
    }
    for name in [
        "prfmd5",
        "prfsha1",
        "prfsha256",
        "prfsha384",
        "prfsha512",
        "prfaesxcbc",
        "prfaescmac",
        "prfcamelliaxcbc",
    ] {
        add(name.into(), Class::Prf);
    }
    for name in [
        "modp768",
        "modp1024",
        "modp1536",
        "modp2048",
        "modp3072",
        "modp4096",
        "modp6144",
        "modp8192",
        "modp1024s160",
        "modp2048s224",
        "modp2048s256",
        "ecp192",
        "ecp224",
        "ecp256",
        "ecp384",
        "ecp521",
        "ecp224bp",
        "ecp256bp",
        "ecp384bp",
        "ecp512bp",
        "curve25519",
        "x25519",
        "curve448",
        "x448",
    ] {
        add(name.into(), Class::Group);
    }
    add("esn".into(), Class::Esn);
    add("noesn".into(), Class::Esn);
    k
}

/// What is wrong with one proposal: the message and a fix; `None` when charon will take it.
pub fn problem(proposal: &str, kind: Kind) -> Option<(String, String)> {
    let proposal = proposal.trim();
    if proposal == "default" {
        return None;
    }
    let known = keywords();
    let mut classes = Vec::new();
    for token in proposal.split('-') {
        let token = token.trim().to_ascii_lowercase();
        match known.iter().find(|(k, _)| *k == token) {
            Some((_, class)) => classes.push(*class),
            None => {
                let hint = match crate::config::scalar::closest(
                    &token,
                    known.iter().map(|(k, _)| k.as_str()),
                ) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "write algorithms as strongSwan names them, joined by `-`, e.g. aes256gcm16-prfsha256-ecp256".into(),
                };
                let shown = if token.is_empty() { "(empty)" } else { &token };
                return Some((
                    format!("unknown algorithm `{shown}` in proposal `{proposal}`"),
                    hint,
                ));
            }
        }
    }
    let has = |c: Class| classes.contains(&c);
    let (aead, cipher) = (has(Class::Aead), has(Class::Cipher));
    let missing = if !aead && !cipher {
        Some(("an encryption algorithm", "e.g. aes256gcm16 or aes256"))
    } else if aead && cipher {
        Some((
            "only one kind of encryption (AEAD like aes256gcm16, or a cipher with integrity)",
            "split them into two proposals",
        ))
    } else if cipher && !has(Class::Integrity) {
        Some(("an integrity algorithm next to its cipher", "e.g. sha256"))
    } else if kind == Kind::Ike && aead && !has(Class::Prf) {
        Some(("a PRF next to an AEAD cipher", "e.g. prfsha256"))
    } else if kind == Kind::Ike && !has(Class::Group) {
        Some(("a key exchange group", "e.g. ecp256 or modp2048"))
    } else if kind == Kind::Esp && has(Class::Prf) {
        Some(("no PRF (ESP has none)", "drop the prf… part"))
    } else {
        None
    };
    missing.map(|(what, example)| {
        (
            format!(
                "{} proposal `{proposal}` needs {what}",
                if kind == Kind::Ike { "IKE" } else { "ESP" }
            ),
            format!("{example}; ask the provider for its exact proposal"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_from_the_examples_and_strongswan_docs_pass() {
        for p in [
            "aes256gcm16-prfsha256-ecp256",
            "aes256-sha256-modp2048",
            "aes128-sha1-modp1024",
            "chacha20poly1305-prfsha512-x25519",
            "default",
        ] {
            assert_eq!(problem(p, Kind::Ike), None, "{p}");
        }
        for p in [
            "aes256gcm16-ecp256",
            "aes256-sha256-modp2048",
            "aes256gcm16",
            "aes128-sha256-esn",
        ] {
            assert_eq!(problem(p, Kind::Esp), None, "{p}");
        }
    }

    #[test]
    fn typos_and_incomplete_proposals_are_named() {
        let (msg, hint) = problem("aes256gcm-prfsha256-ecp256", Kind::Ike).unwrap();
        assert!(msg.contains("`aes256gcm`"), "{msg}");
        assert!(hint.contains("aes256gcm"), "{hint}");
        let (_, hint) = problem("aes256-sha256-ecp265", Kind::Ike).unwrap();
        assert!(hint.contains("ecp256"), "{hint}");
        let (msg, _) = problem("aes256gcm16-ecp256", Kind::Ike).unwrap();
        assert!(msg.contains("PRF"), "{msg}");
        let (msg, _) = problem("aes256-modp2048", Kind::Esp).unwrap();
        assert!(msg.contains("integrity"), "{msg}");
        let (msg, _) = problem("aes256gcm16-prfsha256", Kind::Ike).unwrap();
        assert!(msg.contains("key exchange"), "{msg}");
    }
}
