//! `oqs-edge check`: one bad config per error class, each asserting the message and the exact
//! line:col; several independent mistakes reported in one run; exit codes and rendering.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use oqs_edge::config::{check_source, Diagnostic, FileChecks, Severity};

/// A valid config every test starts from, breaking one thing.
const BASE: &str = r#"version: 1
site:
  institution_code: "1312345678"
  name: "樹中歯科医院"
segments:
  - name: oqs
    interface: lan0
    address: 192.168.50.1/24
    role: eligibility
  - name: clinic
    interface: lan1
    address: 192.168.60.1/24
    role: clinic
    internet: deny
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
  dns: [10.200.0.53]
  dns_zones: [onshikaku.org]
tunnel:
  type: wireguard
  wireguard:
    interface: oqs-wg0
    private_key_file: /etc/oqs-edge/secrets/wg.key
    address: 10.201.0.2/32
    peer:
      public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
      endpoint: 203.0.113.2:51820
      persistent_keepalive: 25s
client_certificates:
  - name: oqs
    pkcs12: /var/lib/oqs-edge/certs/oqs.p12
    password_file: /etc/oqs-edge/secrets/oqs.p12.pass
proxy:
  routes:
    - name: eligibility-api
      listen: 192.168.60.1:8443
      lan_tls: local-ca
      mode: http
      upstream: hweb-api.oqs.example:443
      upstream_address: 10.200.0.10
      server_ca: /etc/oqs-edge/ca/oqs-server-ca.pem
      client_certificate: oqs
      allow: [clinic, oqs]
"#;

fn lint(text: &str) -> Vec<Diagnostic> {
    check_source(Path::new("test.yaml"), text, FileChecks::Off)
        .report
        .diagnostics
}

fn errors(text: &str) -> Vec<Diagnostic> {
    lint(text)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

/// BASE with `from` replaced by `to` (which must occur once).
fn broken(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "fixture: `{from}` must occur once"
    );
    BASE.replacen(from, to, 1)
}

/// 1-based (line, column) of the `nth` occurrence of `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (u32, u32) {
    let (offset, _) = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` not in fixture"));
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    (line, column)
}

/// Each diagnostic's (line, column).
fn places(found: &[Diagnostic]) -> Vec<(u32, u32)> {
    found
        .iter()
        .map(|d| d.loc.map(|l| (l.line, l.column)).unwrap())
        .collect()
}

/// Exactly one error, at the place where `at` is written, whose message contains `message`.
fn assert_one_error(text: &str, at: &str, message: &str) -> Diagnostic {
    let found = errors(text);
    assert_eq!(found.len(), 1, "expected one error, got {found:#?}");
    let d = found.into_iter().next().unwrap();
    let loc = d.loc.expect("error has a location");
    assert_eq!(
        (loc.line, loc.column),
        position(text, at, 0),
        "location of {d:?}"
    );
    assert!(
        d.message.contains(message),
        "message `{}` lacks `{message}`",
        d.message
    );
    d
}

#[test]
fn base_config_is_valid() {
    assert_eq!(lint(BASE), vec![], "BASE must lint clean");
}

// ---- syntax: the file cannot be read as a config ---------------------------------------

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let text = broken(
        "    address: 192.168.50.1/24",
        "    adress: 192.168.50.1/24",
    );
    let d = assert_one_error(&text, "adress", "unknown key `adress`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `address`?"));
}

#[test]
fn unknown_key_without_near_match_lists_the_allowed_keys() {
    let text = broken(
        "wan:\n  interface: wan0\n",
        "wan:\n  interface: wan0\n  colour: blue\n",
    );
    let d = assert_one_error(&text, "colour", "unknown key `colour`");
    assert!(d.hint.unwrap().contains("interface"));
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let text = broken("prefixes: [10.200.0.0/24]", "prefixes: 10.200.0.0/24");
    let d = assert_one_error(&text, "10.200.0.0/24", "expected sequence");
    assert!(d.hint.unwrap().contains("list"));
}

#[test]
fn duplicate_key_is_reported_at_the_second_one() {
    let text = broken(
        "  interface: wan0\n",
        "  interface: wan0\n  interface: wan1\n",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let loc = found[0].loc.unwrap();
    assert_eq!(
        (loc.line, loc.column),
        position(&text, "interface: wan1", 0)
    );
    assert!(
        found[0].message.contains("duplicate key `interface`"),
        "{}",
        found[0].message
    );
}

#[test]
fn bad_address_points_at_the_address() {
    let text = broken("address: 192.168.60.1/24", "address: 192.168.60.300/24");
    assert_one_error(
        &text,
        "192.168.60.300/24",
        "`192.168.60.300` in `192.168.60.300/24` is not an IPv4 or IPv6 address",
    );
}

#[test]
fn tab_indentation_is_refused() {
    let text = broken("    role: clinic\n", "\trole: clinic\n");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let loc = found[0].loc.unwrap();
    assert_eq!((loc.line, loc.column), position(&text, "\trole", 0));
    assert!(found[0].message.contains("tab"), "{}", found[0].message);
    assert!(found[0].hint.as_deref().unwrap().contains("spaces"));
}

#[test]
fn bad_duration_suggests_a_unit() {
    let text = broken("persistent_keepalive: 25s", "persistent_keepalive: 25");
    let d = assert_one_error(&text, "25\n", "`25` is not a duration");
    assert_eq!(
        d.hint.as_deref(),
        Some("add a unit: `25s` for seconds, `25m` for minutes")
    );
}

#[test]
fn unknown_keyword_suggests_the_nearest() {
    let text = broken("role: clinic", "role: clinc");
    let d = assert_one_error(&text, "clinc", "`clinc` is not a valid segment role");
    assert_eq!(d.hint.as_deref(), Some("did you mean `clinic`?"));
}

#[test]
fn missing_key_is_named() {
    let text = broken("wan:\n  interface: wan0\n", "wan: {}\n");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].message.contains("missing key `interface`"),
        "{}",
        found[0].message
    );
}

#[test]
fn bad_public_key_is_reported() {
    let text = broken("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "c2hvcnQ=");
    assert_one_error(
        &text,
        "\"c2hvcnQ=",
        "a WireGuard key is 32 bytes, this one is 5 bytes",
    );
}

// ---- semantics: a readable config that would be wrong ----------------------------------

#[test]
fn institution_code_must_be_ten_digits() {
    let text = broken("\"1312345678\"", "\"131234567\"");
    assert_one_error(&text, "\"131234567\"", "must be exactly 10 digits");
}

#[test]
fn segment_names_and_interfaces_are_unique() {
    let text = broken(
        "  - name: clinic\n    interface: lan1",
        "  - name: oqs\n    interface: lan0",
    );
    let found = errors(&text);
    let keys: Vec<_> = found
        .iter()
        .map(|d| (d.key.clone().unwrap(), d.loc.unwrap().line))
        .collect();
    assert!(
        keys.contains(&("segments[1].name".into(), position(&text, "name: oqs", 1).0)),
        "{found:#?}"
    );
    assert!(
        keys.contains(&(
            "segments[1].interface".into(),
            position(&text, "interface: lan0", 1).0
        )),
        "{found:#?}"
    );
}

#[test]
fn overlapping_segments_are_refused() {
    let text = broken("address: 192.168.50.1/24", "address: 192.168.60.2/24");
    assert_one_error(
        &text,
        "192.168.60.1/24",
        "192.168.60.0/24 overlaps segments[0].address",
    );
}

#[test]
fn closed_prefix_overlapping_a_segment_is_refused() {
    let text = broken(
        "prefixes: [10.200.0.0/24]",
        "prefixes: [10.200.0.0/24, 192.168.0.0/16]",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 2, "one per overlapped segment: {found:#?}");
    for d in &found {
        assert_eq!(d.key.as_deref(), Some("closed_network.prefixes[1]"));
        let loc = d.loc.unwrap();
        assert_eq!((loc.line, loc.column), position(&text, "192.168.0.0/16", 0));
    }
}

#[test]
fn tunnel_address_overlapping_closed_prefix_is_refused() {
    let text = broken("address: 10.201.0.2/32", "address: 10.200.0.2/32");
    assert_one_error(
        &text,
        "10.200.0.2/32",
        "overlaps closed prefix 10.200.0.0/24",
    );
}

#[test]
fn the_chosen_tunnel_section_must_be_present_and_the_others_absent() {
    let text = broken("  type: wireguard", "  type: ipsec");
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().any(|d| d
        .message
        .contains("`type: ipsec` needs a `tunnel.ipsec:` section")
        && d.loc.map(|l| (l.line, l.column)) == Some(position(&text, "ipsec", 0))));
    // At the section's own key (`wireguard:`), not at its first child (`interface:`).
    assert!(
        found.iter().any(|d| d
            .message
            .contains("`tunnel.wireguard` is set but `tunnel.type` is ipsec")
            && d.loc.map(|l| (l.line, l.column))
                == Some(position(&text, "  wireguard:", 0)).map(|(l, c)| (l, c + 2))),
        "{found:#?}"
    );
}

fn ipsec_config(auth: &str) -> String {
    let tunnel = format!(
        "tunnel:\n  type: ipsec\n  ipsec:\n    dataplane: kernel\n    remote_address: 203.0.113.2\n    local_id: router.example\n    remote_id: vpngw.example\n    auth:\n{auth}"
    );
    let start = BASE.find("tunnel:").unwrap();
    let end = BASE.find("client_certificates:").unwrap();
    format!("{}{tunnel}{}", &BASE[..start], &BASE[end..])
}

#[test]
fn ipsec_auth_needs_exactly_one_method() {
    let both = ipsec_config("      psk_file: /etc/oqs-edge/secrets/ipsec.psk\n      certificate:\n        cert: /etc/a.pem\n        key: /etc/a.key\n        ca: /etc/ca.pem\n");
    assert_one_error(
        &both,
        "psk_file",
        "IPsec auth has both `psk_file` and `certificate`",
    );
    let none = ipsec_config("      {}\n");
    assert_one_error(&none, "{}", "IPsec auth has no method");
    let one = ipsec_config("      psk_file: /etc/oqs-edge/secrets/ipsec.psk\n");
    assert_eq!(errors(&one), vec![]);
}

#[test]
fn ipsec_proposal_typos_and_address_families_are_found_at_their_place() {
    let text = ipsec_config(
        "      psk_file: /etc/oqs-edge/secrets/ipsec.psk\n    ike_proposals: [aes256gcm16-prfsha256-ecp256, aes256-sha256-ecp265]\n    esp_proposals: [aes256gcm-ecp256]\n    local_address: 2001:db8::2\n",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 3, "{found:#?}");
    let at = |d: &Diagnostic| d.loc.map(|l| (l.line, l.column));
    assert!(found[0].message.contains("unknown algorithm `ecp265`"));
    assert_eq!(found[0].hint.as_deref(), Some("did you mean `ecp256`?"));
    assert_eq!(
        at(&found[0]),
        Some(position(&text, "aes256-sha256-ecp265", 0))
    );
    assert!(found[1].message.contains("unknown algorithm `aes256gcm`"));
    assert_eq!(at(&found[1]), Some(position(&text, "aes256gcm-ecp256", 0)));
    assert!(found[2].message.contains("different IP families"));
    assert_eq!(at(&found[2]), Some(position(&text, "2001:db8::2", 0)));
}

#[test]
fn client_certificate_must_be_defined() {
    let text = broken("client_certificate: oqs", "client_certificate: oqs2");
    let d = assert_one_error(&text, "oqs2", "no client certificate is named `oqs2`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `oqs`?"));
}

#[test]
fn allow_entries_must_name_a_segment_or_a_cidr() {
    let text = broken(
        "allow: [clinic, oqs]",
        "allow: [clinik, 192.168.70.0/24, 10.0.0.1/8]",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    let clinik = &found[0];
    assert_eq!(
        clinik.loc.map(|l| (l.line, l.column)),
        Some(position(&text, "clinik", 0))
    );
    assert_eq!(clinik.hint.as_deref(), Some("did you mean `clinic`?"));
    assert!(found[1].message.contains("10.0.0.1/8 has host bits set"));
}

#[test]
fn proxy_must_listen_on_a_router_address() {
    let text = broken("listen: 192.168.60.1:8443", "listen: 192.168.60.2:8443");
    let d = assert_one_error(
        &text,
        "192.168.60.2:8443",
        "192.168.60.2 is not one of the router's segment addresses",
    );
    assert!(d.hint.unwrap().contains("192.168.50.1, 192.168.60.1"));
}

#[test]
fn clinic_segment_must_state_internet() {
    let text = broken("    internet: deny\n", "");
    let d = assert_one_error(
        &text,
        "name: clinic",
        "clinic segment `clinic` must state `internet:`",
    );
    assert_eq!(d.key.as_deref(), Some("segments[1].internet"));
}

#[test]
fn eligibility_segment_cannot_allow_the_internet() {
    let text = broken(
        "    role: eligibility\n",
        "    role: eligibility\n    internet: allow\n",
    );
    assert_one_error(&text, "allow\n", "can never reach the internet");
}

#[test]
fn file_paths_must_be_absolute() {
    let text = broken(
        "server_ca: /etc/oqs-edge/ca/oqs-server-ca.pem",
        "server_ca: ca/oqs-server-ca.pem",
    );
    assert_one_error(
        &text,
        "ca/oqs-server-ca.pem",
        "`ca/oqs-server-ca.pem` is not an absolute path",
    );
}

#[test]
fn risky_choices_are_warnings_not_errors() {
    let text = broken("internet: deny", "internet: allow");
    let found = lint(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert!(found[0]
        .message
        .contains("reaches the internet and also uses route `eligibility-api`"));
    assert!(check_source(Path::new("t.yaml"), &text, FileChecks::Off)
        .config
        .is_some());
}

#[test]
fn five_independent_mistakes_are_five_errors() {
    let text = BASE
        .replacen("\"1312345678\"", "\"13123\"", 1) // semantic
        .replacen(
            "    address: 192.168.50.1/24",
            "    adress: 192.168.50.1/24",
            1,
        ) // unknown key
        .replacen("address: 192.168.60.1/24", "address: 192.168.60.256/24", 1) // bad address
        .replacen("persistent_keepalive: 25s", "persistent_keepalive: soon", 1) // bad duration
        .replacen("mode: http", "mode: htp", 1); // bad keyword
    let found = errors(&text);
    let at = places(&found);
    assert_eq!(
        at,
        vec![
            position(&text, "\"13123\"", 0),
            position(&text, "adress", 0),
            position(&text, "192.168.60.256/24", 0),
            position(&text, "soon", 0),
            position(&text, "htp", 0),
        ],
        "{found:#?}"
    );
}

/// Found by fuzzing (issue 22): the loader reads a misspelt key as its suggestion, and an error
/// later on that line was placed by the repaired text, past the end of the line as written.
#[test]
fn fuzz_regression_a_value_after_a_misspelt_key_is_placed_in_the_text_as_written() {
    let text = broken(
        "    address: 192.168.50.1/24",
        "    adress: 192.168.50.300/24",
    );
    let found = errors(&text);
    let at = places(&found);
    assert_eq!(
        at,
        vec![
            position(&text, "adress", 0),
            position(&text, "192.168.50.300/24", 0)
        ],
        "{found:#?}"
    );
    // A longer correction: `nam` read as `name`.
    let text = broken("  - name: clinic\n", "  - nam: 7clinic!\n");
    for d in errors(&text) {
        let loc = d.loc.unwrap();
        let line = text.lines().nth(loc.line as usize - 1).unwrap();
        assert!(loc.column as usize <= line.chars().count() + 1, "{d:?}");
    }
}

/// Found by fuzzing (issue 22): with no newline at its end, the parser blamed a line after the
/// last one.
#[test]
fn fuzz_regression_an_error_at_the_end_of_an_unterminated_file_is_on_its_last_line() {
    let text = "verssion: 1ion: 1";
    let found = errors(text);
    assert!(!found.is_empty());
    for d in &found {
        let loc = d.loc.unwrap();
        assert_eq!(loc.line, 1, "{d:?}");
        assert!(loc.column as usize <= text.chars().count() + 1, "{d:?}");
    }
    let rendered = check_source(Path::new("t.yaml"), text, FileChecks::Off)
        .report
        .render(text);
    assert!(rendered.contains(" 1 | verssion"), "{rendered}");
}

#[test]
fn a_typo_does_not_hide_a_later_semantic_error() {
    // The typo is read as its suggestion, so the checks that need the whole config still run.
    let text = broken(
        "    address: 192.168.50.1/24",
        "    adress: 192.168.50.1/24",
    )
    .replacen("listen: 192.168.60.1:8443", "listen: 192.168.70.1:8443", 1);
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("unknown key `adress`"));
    assert!(found[1]
        .message
        .contains("192.168.70.1 is not one of the router's segment addresses"));
}

#[test]
fn an_empty_file_says_so() {
    let found = errors("# nothing yet\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].message, "the config file is empty");
    assert!(found[0].hint.as_deref().unwrap().contains("version: 1"));
}

#[test]
fn a_list_where_a_value_belongs_is_reported_at_the_list() {
    let text = broken("name: \"樹中歯科医院\"", "name: [a, b]");
    assert_one_error(&text, "[a, b]", "expected a single value here");
}

#[test]
fn a_second_document_is_refused() {
    let text = format!("{BASE}---\nversion: 2\n");
    assert_one_error(&text, "version: 2", "a second YAML document");
}

// ---- files -------------------------------------------------------------------------------

/// A real client certificate: a self-signed P-256 certificate with CN `cn` in a PKCS#12
/// protected by `password` (openssl, as a CA would hand it over).
fn make_pkcs12(dir: &Path, cn: &str, password: &str) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-keyout",
        "client.key",
        "-out",
        "client.pem",
        "-days",
        "400",
        "-subj",
        &format!("/CN={cn}"),
    ]);
    std::fs::write(dir.join("pw.tmp"), password).unwrap();
    run(&[
        "pkcs12",
        "-export",
        "-inkey",
        "client.key",
        "-in",
        "client.pem",
        "-passout",
        "file:pw.tmp",
        "-out",
        "oqs.p12",
    ]);
    let p12 = dir.join("oqs.p12");
    std::fs::set_permissions(&p12, std::fs::Permissions::from_mode(0o600)).unwrap();
    p12
}

#[test]
fn a_section_that_must_not_be_there_is_blamed_at_its_key_in_flow_style_too() {
    let text = broken(
        "  type: wireguard\n",
        "  type: wireguard\n  ip_vpn: {gateway: 198.51.100.1}\n",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("`tunnel.ip_vpn` is set"));
    assert_eq!(
        found[0].loc.map(|l| (l.line, l.column)),
        Some(position(&text, "ip_vpn:", 0))
    );
}

#[test]
fn a_dhcp_section_on_an_ipv6_segment_is_blamed_at_its_key() {
    let text = broken(
        "    address: 192.168.60.1/24\n    role: clinic\n",
        "    address: fd00:60::1/64\n    role: clinic\n    dhcp:\n      range: 192.168.60.100-192.168.60.199\n",
    );
    let found: Vec<Diagnostic> = errors(&text)
        .into_iter()
        .filter(|d| d.message.contains("oqs-edge serves DHCPv4 only"))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", errors(&text));
    assert_eq!(
        found[0].loc.map(|l| (l.line, l.column)),
        Some(position(&text, "dhcp:", 0))
    );
}

/// `run` refuses the local-ca routes when others can read the local CA's directory (it holds
/// the LAN CA's key); `check` with files says so first (issue 22).
#[test]
fn check_reports_a_local_ca_directory_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("local-ca");
    std::fs::create_dir(&ca_dir).unwrap();
    let text = BASE.replace(
        "proxy:\n",
        &format!("proxy:\n  local_ca_dir: {}\n", ca_dir.display()),
    );
    let about_the_ca = |text: &str| -> Vec<Diagnostic> {
        check_source(Path::new("t.yaml"), text, FileChecks::On)
            .report
            .diagnostics
            .into_iter()
            .filter(|d| d.key.as_deref() == Some("proxy.local_ca_dir"))
            .collect()
    };
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let found = about_the_ca(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("can be read or entered by group and others (mode 0755)"),
        "{}",
        found[0].message
    );
    assert_eq!(
        found[0].hint.as_deref(),
        Some(format!("run: chmod 700 {}", ca_dir.display()).as_str())
    );
    assert_eq!(
        found[0].loc.map(|l| (l.line, l.column)),
        Some(position(&text, ca_dir.to_str().unwrap(), 0))
    );
    // Private: nothing to say; and without files (`--no-files`) it is not looked at.
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(about_the_ca(&text), vec![]);
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(check_source(Path::new("t.yaml"), &text, FileChecks::Off)
        .report
        .diagnostics
        .iter()
        .all(|d| d.key.as_deref() != Some("proxy.local_ca_dir")));
}

#[test]
fn secrets_must_exist_and_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let p12 = make_pkcs12(dir.path(), "1312345678", "診療所パス");
    let pass = dir.path().join("oqs.p12.pass");
    let key = dir.path().join("wg.key");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&pass, "診療所パス\n").unwrap();
    std::fs::write(&ca, "x").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = BASE
        .replace("/var/lib/oqs-edge/certs/oqs.p12", p12.to_str().unwrap())
        .replace("/etc/oqs-edge/secrets/oqs.p12.pass", pass.to_str().unwrap())
        .replace("/etc/oqs-edge/secrets/wg.key", key.to_str().unwrap())
        .replace("/etc/oqs-edge/ca/oqs-server-ca.pem", ca.to_str().unwrap());
    let errors = || -> Vec<Diagnostic> {
        check_source(Path::new("t.yaml"), &text, FileChecks::On)
            .report
            .diagnostics
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect()
    };
    let found = errors();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].message.contains("wg.key does not exist"),
        "{}",
        found[0].message
    );
    assert!(
        found[1]
            .message
            .contains("can be read or written by its group (mode 0640)"),
        "{}",
        found[1].message
    );
    assert_eq!(
        found[1].hint.as_deref(),
        Some(format!("run: chmod 600 {}", pass.display()).as_str())
    );

    // A key file that holds no key is found by `check`, naming the file and the fix.
    std::fs::write(&key, "k").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let found = errors();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].key.as_deref(),
        Some("tunnel.wireguard.private_key_file")
    );
    assert!(
        found[0]
            .message
            .contains(&format!("{} is not a WireGuard private key", key.display())),
        "{}",
        found[0].message
    );
    assert!(
        found[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("oqs-edge wireguard keygen"),
        "{:?}",
        found[0].hint
    );

    // After the fix, the same config is valid (the .p12 opens with its Japanese password).
    std::fs::write(&key, "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n").unwrap();
    assert_eq!(errors(), vec![]);

    // A wrong password is found by `check`, at the certificate's line, naming the file.
    std::fs::write(&pass, "wrong").unwrap();
    let found = errors();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].key.as_deref(),
        Some("client_certificates[0].pkcs12")
    );
    assert!(
        found[0].message.contains(p12.to_str().unwrap()),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.contains("password"),
        "{}",
        found[0].message
    );

    // A file that is not a PKCS#12 at all.
    std::fs::write(&pass, "診療所パス").unwrap();
    std::fs::write(&p12, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let found = errors();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("PKCS#12"), "{}", found[0].message);
}

#[test]
fn a_certificate_for_another_institution_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p12 = make_pkcs12(dir.path(), "9999999999", "pw");
    let pass = dir.path().join("oqs.p12.pass");
    std::fs::write(&pass, "pw").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = BASE
        .replace("/var/lib/oqs-edge/certs/oqs.p12", p12.to_str().unwrap())
        .replace("/etc/oqs-edge/secrets/oqs.p12.pass", pass.to_str().unwrap());
    let report = check_source(Path::new("t.yaml"), &text, FileChecks::On).report;
    let cn: Vec<&Diagnostic> = report
        .diagnostics
        .iter()
        .filter(|d| d.key.as_deref() == Some("client_certificates[0].pkcs12"))
        .collect();
    assert_eq!(cn.len(), 1, "{cn:#?}");
    assert!(!cn[0].is_error(), "a CN mismatch is a warning: {:?}", cn[0]);
    assert!(cn[0].message.contains("9999999999"), "{}", cn[0].message);
}

// ---- the command ---------------------------------------------------------------------------

fn oqs_edge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oqs-edge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_file_line_col_the_line_and_a_caret_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, broken("role: clinic", "role: clinc")).unwrap();
    let (code, _, stderr) = oqs_edge(&["check", "--no-files", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    let (line, col) = position(&broken("role: clinic", "role: clinc"), "clinc", 0);
    let expected = format!(
        "{}:{line}:{col}: error: `clinc` is not a valid segment role: use one of eligibility, clinic\n {line} |     role: clinc\n    |           ^^^^^\n      = fix: did you mean `clinic`?\n",
        file.display()
    );
    assert!(
        stderr.starts_with(&expected),
        "got:\n{stderr}\nexpected:\n{expected}"
    );
}

#[test]
fn check_json_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, broken("\"1312345678\"", "\"12\"")).unwrap();
    let (code, stdout, _) = oqs_edge(&[
        "check",
        "--no-files",
        "--format",
        "json",
        "-c",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(21))
    );
    assert_eq!(d["key"], "site.institution_code");
}

#[test]
fn check_of_a_missing_file_exits_2_and_says_so() {
    let (code, _, stderr) = oqs_edge(&["check", "-c", "/nonexistent/oqs-edge.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/oqs-edge.yaml: cannot read the config"),
        "{stderr}"
    );
}

#[test]
fn plan_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, broken("type: wireguard", "type: wireguad")).unwrap();
    let (code, stdout, stderr) = oqs_edge(&["plan", "--no-files", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "no plan for a bad config");
    assert!(stderr.contains("did you mean `wireguard`?"), "{stderr}");
}

#[test]
fn a_client_certificate_list_names_each_entry_at_its_place() {
    let text = BASE.replace(
        "client_certificate: oqs",
        "client_certificate: [oqs-new, oqs]",
    );
    let d = assert_one_error(&text, "oqs-new", "no client certificate is named `oqs-new`");
    assert_eq!(d.hint.as_deref(), Some("defined certificates: oqs"));
    let text = BASE.replace("client_certificate: oqs", "client_certificate: [oqs, oqs]");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("`oqs` is listed twice"));
    assert_eq!(
        found[0].loc.map(|l| (l.line, l.column)),
        Some(position(&text, "oqs]", 0))
    );
    // The single form stays valid, and a list of one too.
    assert!(
        errors(&BASE.replace("client_certificate: oqs", "client_certificate: [oqs]")).is_empty()
    );
}

#[test]
fn metrics_listen_on_loopback_or_a_segment_address_for_allowed_sources() {
    let with = |control: &str| format!("{BASE}control:\n{control}");
    assert!(errors(&with("  metrics: 127.0.0.1:9469\n")).is_empty());
    assert!(errors(&with(
        "  metrics: 192.168.60.1:9469\n  metrics_allow: [clinic, 192.168.60.5/32]\n"
    ))
    .is_empty());
    let text = with("  metrics: 198.51.100.2:9469\n");
    let d = assert_one_error(
        &text,
        "198.51.100.2:9469",
        "198.51.100.2 is neither loopback nor one of the router's segment addresses",
    );
    assert!(d.hint.unwrap().contains("192.168.60.1"));
    let text = with("  metrics: 192.168.60.1:9469\n  metrics_allow: [clinc]\n");
    let d = assert_one_error(
        &text,
        "clinc",
        "`clinc` is neither a segment name nor a CIDR",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `clinic`?"));
    let text = with("  metrics: 192.168.60.1:8443\n");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0]
        .message
        .contains("already the listen address of proxy route `eligibility-api`"));
    let (line, _) = position(&text, "  metrics: 192.168.60.1:8443", 0);
    assert_eq!(found[0].loc.map(|l| (l.line, l.column)), Some((line, 12)));
}

/// BASE with a DHCP section on the eligibility segment (and `extra` after its hosts).
fn with_dhcp(range: &str, hosts: &str) -> String {
    broken(
        "    role: eligibility\n",
        &format!("    role: eligibility\n    dhcp:\n      range: {range}\n      lease: 12h\n      hosts:\n{hosts}"),
    )
}

const TERMINAL: &str = "        - name: oqs-terminal\n          mac: \"52:54:00:12:34:56\"\n          address: 192.168.50.10\n";

#[test]
fn a_dhcp_section_with_a_fixed_lease_is_valid() {
    let text = with_dhcp("192.168.50.100-192.168.50.199", TERMINAL);
    assert_eq!(errors(&text), vec![]);
}

#[test]
fn a_dhcp_range_must_lie_in_its_segment_leave_out_the_router_and_run_forwards() {
    let outside = with_dhcp("192.168.51.100-192.168.51.199", TERMINAL);
    assert_one_error(
        &outside,
        "192.168.51.100-",
        "is not inside segment `oqs` (192.168.50.0/24)",
    );
    let router = with_dhcp("192.168.50.1-192.168.50.99", TERMINAL);
    let d = assert_one_error(
        &router,
        "192.168.50.1-",
        "covers the router's own address 192.168.50.1",
    );
    assert!(d.hint.unwrap().contains("192.168.50.128-192.168.50.254"));
    let backwards = with_dhcp("192.168.50.199-192.168.50.100", TERMINAL);
    assert_one_error(
        &backwards,
        "192.168.50.199-",
        "starts at 192.168.50.199 after it ends at 192.168.50.100",
    );
    let malformed = with_dhcp("192.168.50.100", TERMINAL);
    assert_one_error(&malformed, "192.168.50.100\n", "is not a range");
}

#[test]
fn fixed_leases_are_checked_one_by_one() {
    let router = with_dhcp(
        "192.168.50.100-192.168.50.199",
        &TERMINAL.replace("192.168.50.10\n", "192.168.50.1\n"),
    );
    assert_one_error(&router, "192.168.50.1\n", "is the router's own address");
    let outside = with_dhcp(
        "192.168.50.100-192.168.50.199",
        &TERMINAL.replace("192.168.50.10\n", "192.168.60.10\n"),
    );
    assert_one_error(
        &outside,
        "192.168.60.10\n",
        "is not a host address of segment `oqs`",
    );
    let mac = with_dhcp(
        "192.168.50.100-192.168.50.199",
        &TERMINAL.replace("52:54:00:12:34:56", "52:54:00:12:34"),
    );
    assert_one_error(&mac, "\"52:54:00:12:34\"", "is not a MAC address");
    let second = "        - name: oqs-terminal\n          mac: \"52:54:00:12:34:56\"\n          address: 192.168.50.10\n";
    let twice = with_dhcp(
        "192.168.50.100-192.168.50.199",
        &format!("{TERMINAL}{second}"),
    );
    let found = errors(&twice);
    let messages: Vec<(String, u32)> = found
        .iter()
        .map(|d| (d.message.clone(), d.loc.unwrap().line))
        .collect();
    let line = position(&twice, "- name: oqs-terminal", 1).0;
    assert_eq!(
        messages,
        vec![
            ("host name `oqs-terminal` is used twice".to_owned(), line),
            (
                "MAC 52:54:00:12:34:56 has two fixed leases".to_owned(),
                line + 1
            ),
            ("192.168.50.10 is given to two hosts".to_owned(), line + 2),
        ]
    );
}

#[test]
fn closed_dns_zones_need_a_closed_dns_server_and_must_be_names() {
    let no_server = broken("  dns: [10.200.0.53]\n", "");
    assert_one_error(
        &no_server,
        "onshikaku.org",
        "no closed DNS server answers them",
    );
    let bad_zone = broken(
        "  dns_zones: [onshikaku.org]\n",
        "  dns_zones: [onshikaku.org, \"*.oqs-pdl.org\"]\n",
    );
    assert_one_error(&bad_zone, "\"*.oqs-pdl.org\"", "is not a DNS name");
    let no_zones = lint(&broken("  dns_zones: [onshikaku.org]\n", ""));
    assert!(
        no_zones.iter().any(|d| d.severity == Severity::Warning
            && d.key.as_deref() == Some("closed_network.dns")
            && d.message.contains("no name is sent to them")),
        "{no_zones:#?}"
    );
}

#[test]
fn the_status_page_and_health_path_are_checked_with_a_fix() {
    let page =
        |value: &str, allow: &str| format!("{BASE}control:\n  status_page: {value}\n{allow}");
    assert!(errors(&page("192.168.60.1:8080", "")).is_empty());
    assert!(errors(&page(
        "192.168.60.1:8080",
        "  status_page_allow: [clinic, 192.168.50.10/32]\n"
    ))
    .is_empty());
    let d = assert_one_error(
        &page("192.0.2.1:8080", ""),
        "192.0.2.1:8080",
        "192.0.2.1 is not one of the router's segment addresses",
    );
    assert!(d.hint.unwrap().contains("192.168.60.1"));
    let found = errors(&page("192.168.60.1:8443", ""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0]
        .message
        .contains("already the proxy route `eligibility-api`'s listen address"));
    assert_eq!(
        found[0].loc.unwrap().line,
        position(&page("192.168.60.1:8443", ""), "  status_page: ", 0).0
    );
    assert_one_error(
        &page("192.168.60.1:8080", "  status_page_allow: []\n"),
        "[]",
        "nobody may open the status page",
    );
    let text = broken(
        "      allow: [clinic, oqs]\n",
        "      allow: [clinic, oqs]\n      health_path: health\n",
    );
    let d = assert_one_error(&text, "health\n", "`health` is not a request path");
    assert!(d.hint.unwrap().contains("starting with `/`"));
}

// ---- two gateways (issue 21) -------------------------------------------------------------

const BACKUP: &str = "      persistent_keepalive: 25s
    backup_peers:
      - public_key: \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"
        endpoint: 203.0.113.3:51820
        persistent_keepalive: 25s
  health:
    target: 10.200.0.10:443
    interval: 5s
    failures: 3
    failback_after: 5m
";

fn with_backup() -> String {
    broken("      persistent_keepalive: 25s\n", BACKUP)
}

#[test]
fn backup_peer_and_health_are_valid() {
    assert_eq!(lint(&with_backup()), vec![], "two gateways must lint clean");
}

#[test]
fn backup_peer_with_the_primarys_key_is_reported_at_its_key() {
    let text = with_backup().replace(
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
    );
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let loc = found[0].loc.expect("located");
    assert_eq!((loc.line, loc.column), position(&text, "\"xTIBA5", 1));
    assert!(found[0].message.contains("the primary peer's public key"));
}

#[test]
fn duplicate_gateway_is_reported_at_the_second_endpoint() {
    let text = with_backup().replace("203.0.113.3:51820", "203.0.113.2:51820");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let loc = found[0].loc.expect("located");
    assert_eq!(
        (loc.line, loc.column),
        position(&text, "203.0.113.2:51820", 1)
    );
    assert!(found[0].message.contains("listed twice"), "{found:#?}");
}

#[test]
fn health_target_outside_the_closed_prefixes_is_reported_at_it() {
    let text = with_backup().replace("target: 10.200.0.10:443", "target: 192.0.2.10:443");
    assert_one_error(&text, "192.0.2.10:443", "outside the closed prefixes");
}

#[test]
fn health_with_zero_failures_is_refused() {
    let text = with_backup().replace("failures: 3", "failures: 0");
    assert_one_error(&text, "0\n    failback_after", "failures: 0");
}

fn ipsec_gateways(remote_address: &str) -> String {
    ipsec_config("      psk_file: /etc/oqs-edge/secrets/ipsec.psk\n").replace(
        "    remote_address: 203.0.113.2\n",
        &format!("    remote_address:{remote_address}"),
    )
}

#[test]
fn ipsec_gateway_lists_are_valid_and_planned_in_order() {
    let text = ipsec_gateways(
        "\n      - 203.0.113.2\n      - address: vpngw2.example\n        remote_id: vpngw2.example\n",
    );
    assert_eq!(errors(&text), vec![], "a list of two gateways");
    let checked = check_source(Path::new("test.yaml"), &text, FileChecks::Off);
    let plan = oqs_edge::plan::plan(&checked.config.unwrap());
    let json = serde_json::to_value(&plan.tunnel).unwrap();
    assert_eq!(json["remote_address"], "203.0.113.2");
    assert_eq!(json["remote_id"], "vpngw.example");
    assert_eq!(
        json["backup_gateways"],
        serde_json::json!([{"address": "vpngw2.example", "remote_id": "vpngw2.example"}])
    );
    // The single form stays valid, with no backups in the plan.
    let one = ipsec_gateways(" 203.0.113.2\n");
    assert_eq!(errors(&one), vec![]);
}

#[test]
fn ipsec_duplicate_gateway_and_bad_entries_are_reported_at_their_place() {
    let text = ipsec_gateways("\n      - 203.0.113.2\n      - 203.0.113.3\n      - 203.0.113.2\n");
    let d = assert_one_error(&text, "203.0.113.2\n    local_id", "listed twice");
    assert!(d.message.contains("remote_address[0] at line"), "{d:?}");
    assert_eq!(d.key.as_deref(), Some("tunnel.ipsec.remote_address[2]"));

    let text = ipsec_gateways("\n      - 203.0.113.2\n      - address: not a host\n");
    assert_one_error(&text, "not a host", "neither an address nor a host name");

    let text = ipsec_gateways(
        "\n      - 203.0.113.2\n      - address: 203.0.113.3\n        remote_id: \"\"\n",
    );
    assert_one_error(&text, "\"\"", "an IKE identity cannot be empty");

    let text = ipsec_gateways(" []\n");
    assert_one_error(&text, "[]", "the list of gateways is empty");
}

/// Least privilege (issue 22): `run` refuses a config, config directory or state directory that
/// others can write, naming the path and the fix, before it touches anything.
#[test]
fn run_refuses_a_config_or_state_dir_others_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, BASE).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_oqs-edge"))
            .args(["run", "-c", config.to_str().unwrap(), "--state-dir"])
            .arg(&state)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for (path, open) in [
        (dir.path(), 0o777),
        (config.as_path(), 0o666),
        (state.as_path(), 0o770),
    ] {
        mode(dir.path(), 0o700);
        mode(&config, 0o600);
        mode(&state, 0o700);
        mode(path, open);
        let out = run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "refusing to start: {} can be written by",
                path.display()
            )) && stderr.contains(&format!("chmod go-w {}", path.display())),
            "{stderr}"
        );
    }
}

// ---- the WAN's addressing (issue 17) ---------------------------------------------------

fn with_wan(wan: &str) -> String {
    broken(
        "wan:\n  interface: wan0\n",
        &format!("wan:\n  interface: wan0\n{wan}"),
    )
}

#[test]
fn wan_modes_dhcp_ra_and_static_are_valid() {
    for wan in [
        "  ipv4: dhcp\n  ipv6: ra\n",
        "  ipv4: os\n  ipv6: os\n",
        "  ipv4: static\n  address: 198.51.100.2/24\n  gateway: 198.51.100.1\n  dns: [198.51.100.53]\n",
        "  ipv6: static\n  address6: 2001:db8:1::2/64\n  gateway6: fe80::1\n",
    ] {
        let text = with_wan(wan);
        assert_eq!(errors(&text), vec![], "{wan}");
    }
    let nat = broken(
        "  dns_zones: [onshikaku.org]\n",
        "  dns_zones: [onshikaku.org]\n  nat: true\n",
    );
    assert_eq!(errors(&nat), vec![]);
}

#[test]
fn a_wan_address_with_ipv4_dhcp_is_refused_at_the_address() {
    let text = with_wan("  ipv4: dhcp\n  address: 198.51.100.2/24\n");
    let d = assert_one_error(&text, "198.51.100.2/24", "`address` is for `ipv4: static`");
    assert_eq!(d.key.as_deref(), Some("wan.address"));
}

#[test]
fn a_static_gateway_outside_the_address_prefix_is_refused_at_the_gateway() {
    let text = with_wan("  ipv4: static\n  address: 198.51.100.2/24\n  gateway: 198.51.101.1\n");
    assert_one_error(&text, "198.51.101.1", "outside 198.51.100.0/24");
    let own = with_wan("  ipv4: static\n  address: 198.51.100.2/24\n  gateway: 198.51.100.2\n");
    assert_one_error(&own, "198.51.100.2\n", "the router's own address");
}

#[test]
fn static_needs_an_address_of_its_family() {
    let text = with_wan("  ipv4: static\n");
    assert_one_error(&text, "interface: wan0", "`ipv4: static` needs `address`");
    let v6 = with_wan("  ipv4: static\n  address: 2001:db8::2/64\n");
    assert_one_error(&v6, "2001:db8::2/64", "is not an IPv4 address");
}

#[test]
fn a_delegated_segment_prefix_needs_ipv6_ra() {
    let seg = "    address: 192.168.50.1/24\n    role: eligibility\n";
    let delegated =
        "    address: 192.168.50.1/24\n    address6: delegated:1\n    role: eligibility\n";
    let text = broken(seg, delegated);
    assert_one_error(&text, "delegated:1", "`wan.ipv6` is `os`");
    let with_ra = text.replacen("  interface: wan0\n", "  interface: wan0\n  ipv6: ra\n", 1);
    assert_eq!(errors(&with_ra), vec![]);
    let typo = broken(
        seg,
        "    address: 192.168.50.1/24\n    address6: delegated-1\n    role: eligibility\n",
    );
    assert_one_error(&typo, "delegated-1", "is not `delegated` or `delegated:N`");
}

#[test]
fn nat_is_refused_for_ipsec_at_the_key() {
    let text = ipsec_config("      psk_file: /etc/oqs-edge/secrets/ipsec.psk\n").replacen(
        "  dns_zones: [onshikaku.org]\n",
        "  dns_zones: [onshikaku.org]\n  nat: true\n",
        1,
    );
    assert_one_error(&text, "true\n", "`nat: true` is for wireguard and ip-vpn");
}
