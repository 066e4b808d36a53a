//! What applying one plan over another would change, part by part: the firewall as nft text
//! lines added and removed, routes, kernel settings, the tunnel (untouched, peer replaced,
//! changed in place, reloaded, recreated: the decision the tunnel applier takes on a reload),
//! proxy routes and client certificates. Pure: `oqs-edge diff` computes it from the plan of
//! the running config (which the daemon hands over its control socket) and the plan of a file.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::{Plan, TunnelPlan};

/// Everything a reload from `old` to `new` would change.
#[derive(Debug, Default, Serialize)]
pub struct PlanDiff {
    /// Lines of the nft ruleset (`oqs-edge plan`'s text), in ruleset order.
    pub firewall: Vec<LineChange>,
    pub routes: Changes,
    pub sysctls: Changes,
    pub tunnel: TunnelChange,
    pub proxy: Changes,
    pub certificates: Changes,
    /// The router's segment addresses (`192.168.50.1/24 dev lan0`).
    #[serde(default)]
    pub addresses: Changes,
    /// dnsmasq's config lines (a change restarts it; leases are kept).
    #[serde(default)]
    pub dhcp: Changes,
    /// The DNS relay's policy lines (`oqs-edge plan`'s "DNS relay" part).
    #[serde(default)]
    pub dns: Changes,
    /// The WAN's addressing and dhcpcd's config.
    #[serde(default)]
    pub wan: Changes,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct LineChange {
    /// `added` or `removed`.
    pub change: &'static str,
    /// The set or chain the line sits in (`chain input`), empty at the top level.
    pub within: String,
    pub line: String,
}

/// Items of one part, by what they are called.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `name: field, field` for an item that stays but differs.
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What the tunnel applier does with the new plan.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum TunnelChange {
    /// Nothing in the tunnel's section changed (or the line is an IP-VPN: its gateway is in
    /// the routes).
    #[default]
    Untouched,
    /// The same interface; its peer is set again (key, endpoint, keepalive, allowed IPs or the
    /// private key changed): a new handshake.
    PeerReplaced { fields: Vec<String> },
    /// The same interface and peer; only its address or listen port changes.
    ChangedInPlace { fields: Vec<String> },
    /// IPsec: the connection is loaded into charon again (the SAs are renegotiated).
    Reloaded { fields: Vec<String> },
    /// The old tunnel is stopped and a new one started (another type or interface).
    Recreated { why: String },
}

/// WireGuard plan fields whose change means setting the peer again.
const WIREGUARD_PEER_FIELDS: &[&str] = &[
    "peer_public_key",
    "peer_endpoint",
    "persistent_keepalive_secs",
    "allowed_ips",
    "private_key_file",
];

/// The tunnel applier's decision for a reload from `old` to `new`, from the plans alone (the
/// applier also replaces the peer when the key file's content changed under the same name).
pub fn tunnel_change(old: &TunnelPlan, new: &TunnelPlan) -> TunnelChange {
    let (old_json, new_json) = (to_value(old), to_value(new));
    let kind = |v: &Value| v["type"].as_str().unwrap_or_default().to_owned();
    if kind(&old_json) != kind(&new_json) {
        return TunnelChange::Recreated {
            why: format!("type {} → {}", kind(&old_json), kind(&new_json)),
        };
    }
    let fields = changed_fields(&old_json, &new_json);
    if fields.is_empty() {
        return TunnelChange::Untouched;
    }
    match (old, new) {
        (
            TunnelPlan::Wireguard { interface: a, .. },
            TunnelPlan::Wireguard { interface: b, .. },
        ) if a != b => TunnelChange::Recreated {
            why: format!("interface {a} → {b}"),
        },
        (TunnelPlan::Wireguard { .. }, _) => {
            if fields
                .iter()
                .any(|f| WIREGUARD_PEER_FIELDS.contains(&f.as_str()))
            {
                TunnelChange::PeerReplaced { fields }
            } else {
                TunnelChange::ChangedInPlace { fields }
            }
        }
        (TunnelPlan::Ipsec { .. }, _) => TunnelChange::Reloaded { fields },
        (TunnelPlan::IpVpn { .. }, _) => TunnelChange::Untouched,
    }
}

fn to_value<T: Serialize>(item: &T) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// The keys of two JSON objects whose values differ, in sorted order.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

/// Items keyed by name: added, removed, and changed with the fields that differ.
fn by_name<T: Serialize>(old: &[T], new: &[T], name: impl Fn(&T) -> String) -> Changes {
    let mut changes = Changes::default();
    for item in new {
        match old.iter().find(|o| name(o) == name(item)) {
            None => changes.added.push(name(item)),
            Some(before) => {
                let fields = changed_fields(&to_value(before), &to_value(item));
                if !fields.is_empty() {
                    changes
                        .changed
                        .push(format!("{}: {}", name(item), fields.join(", ")));
                }
            }
        }
    }
    for item in old {
        if !new.iter().any(|n| name(n) == name(item)) {
            changes.removed.push(name(item));
        }
    }
    changes
}

/// Items that are only added or removed (a route is its whole text).
fn as_set(old: &[String], new: &[String]) -> Changes {
    Changes {
        added: new.iter().filter(|n| !old.contains(n)).cloned().collect(),
        removed: old.iter().filter(|o| !new.contains(o)).cloned().collect(),
        changed: Vec::new(),
    }
}

/// The lines of two texts that a longest-common-subsequence alignment leaves unmatched, in
/// order, each with the `set …`/`chain …` block it sits in.
fn line_changes(old: &str, new: &str) -> Vec<LineChange> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut within_a, mut within_b) = (String::new(), String::new());
    let mut out = Vec::new();
    let mut push = |change, within: &str, line: &str| {
        out.push(LineChange {
            change,
            within: within.to_owned(),
            line: line.trim().to_owned(),
        })
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            track_block(&mut within_a, a[i]);
            track_block(&mut within_b, b[j]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            track_block(&mut within_b, b[j]);
            push("added", &within_b, b[j]);
            j += 1;
        } else {
            track_block(&mut within_a, a[i]);
            push("removed", &within_a, a[i]);
            i += 1;
        }
    }
    out
}

/// Follow the nft text's blocks: `\tset closed_v4 {` opens one, `\t}` closes it.
fn track_block(within: &mut String, line: &str) {
    let depth = line.len() - line.trim_start_matches('\t').len();
    let text = line.trim();
    if depth == 1 && text.ends_with('{') {
        *within = text.trim_end_matches('{').trim().to_owned();
    } else if depth <= 1 && text == "}" {
        within.clear();
    }
}

pub fn diff(old: &Plan, new: &Plan) -> PlanDiff {
    let routes = |p: &Plan| p.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let sysctls = |p: &Plan| {
        p.sysctls
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
    };
    PlanDiff {
        firewall: line_changes(&old.firewall.to_nft_text(), &new.firewall.to_nft_text()),
        routes: as_set(&routes(old), &routes(new)),
        sysctls: as_set(&sysctls(old), &sysctls(new)),
        tunnel: tunnel_change(&old.tunnel, &new.tunnel),
        proxy: by_name(&old.proxy, &new.proxy, |r| r.name.clone()),
        certificates: by_name(&old.certificates, &new.certificates, |c| c.name.clone()),
        addresses: as_set(&addresses(old), &addresses(new)),
        dhcp: as_set(&dhcp_lines(old), &dhcp_lines(new)),
        dns: as_set(&dns_lines(old), &dns_lines(new)),
        wan: as_set(&wan_lines(old), &wan_lines(new)),
    }
}

fn addresses(plan: &Plan) -> Vec<String> {
    plan.addresses
        .iter()
        .map(|a| format!("{} dev {} (segment {})", a.address, a.interface, a.segment))
        .collect()
}

/// dnsmasq's config, line by line (comments left out).
fn dhcp_lines(plan: &Plan) -> Vec<String> {
    plan.dhcp
        .iter()
        .flat_map(|d| d.dnsmasq_conf.lines())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The WAN as `oqs-edge plan` shows it, with dhcpcd's config lines (comments left out).
fn wan_lines(plan: &Plan) -> Vec<String> {
    let mut lines = plan.wan.lines();
    lines.extend(
        plan.wan
            .dhcpcd_conf
            .iter()
            .flat_map(|c| c.lines())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| format!("dhcpcd: {}", l.trim())),
    );
    lines
}

/// The relay's policy as the lines `oqs-edge plan` shows.
fn dns_lines(plan: &Plan) -> Vec<String> {
    plan.dns.iter().flat_map(|d| d.policy_lines()).collect()
}

impl PlanDiff {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.firewall.is_empty()
            && self.routes.is_empty()
            && self.sysctls.is_empty()
            && self.tunnel == TunnelChange::Untouched
            && self.proxy.is_empty()
            && self.certificates.is_empty()
            && self.addresses.is_empty()
            && self.dhcp.is_empty()
            && self.dns.is_empty()
            && self.wan.is_empty()
    }

    /// What `oqs-edge diff` prints: one heading per part that changes, `+`/`-`/`~` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            out.push_str("no changes: applying this file changes nothing that runs\n");
            return out;
        }
        if !self.firewall.is_empty() {
            out.push_str("firewall (table inet oqs_edge, replaced in one transaction):\n");
            let mut block = None;
            for c in &self.firewall {
                if block != Some(&c.within) {
                    let name = if c.within.is_empty() {
                        "(top level)"
                    } else {
                        &c.within
                    };
                    let _ = writeln!(out, "  {name}:");
                    block = Some(&c.within);
                }
                let sign = if c.change == "added" { '+' } else { '-' };
                let _ = writeln!(out, "    {sign} {}", c.line);
            }
        }
        for (title, changes) in [
            ("routes", &self.routes),
            ("kernel settings", &self.sysctls),
            ("proxy routes", &self.proxy),
            ("client certificates", &self.certificates),
            ("segment addresses", &self.addresses),
            (
                "DHCP server (dnsmasq restarts; leases are kept)",
                &self.dhcp,
            ),
            ("DNS relay", &self.dns),
            ("WAN (dhcpcd restarts when its config changes)", &self.wan),
        ] {
            if changes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title}:");
            for (sign, items) in [
                ('+', &changes.added),
                ('-', &changes.removed),
                ('~', &changes.changed),
            ] {
                for item in items {
                    let _ = writeln!(out, "  {sign} {item}");
                }
            }
        }
        let tunnel = match &self.tunnel {
            TunnelChange::Untouched => None,
            TunnelChange::PeerReplaced { fields } => Some(format!(
                "peer replaced ({}): the interface stays, a new handshake",
                fields.join(", ")
            )),
            TunnelChange::ChangedInPlace { fields } => Some(format!(
                "changed in place ({}): the peer stays",
                fields.join(", ")
            )),
            TunnelChange::Reloaded { fields } => Some(format!(
                "connection loaded into charon again ({}): the SAs are renegotiated",
                fields.join(", ")
            )),
            TunnelChange::Recreated { why } => Some(format!(
                "recreated ({why}): the old tunnel stops, the new one starts"
            )),
        };
        match tunnel {
            Some(t) => {
                let _ = writeln!(out, "tunnel: {t}");
            }
            None => out.push_str("tunnel: untouched\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{check_source, FileChecks};
    use crate::plan::plan;
    use std::path::Path;

    const IPVPN: &str = r#"version: 1
site:
  institution_code: "1312345678"
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
tunnel:
  type: ip-vpn
  ip_vpn:
    gateway: 198.51.100.1
"#;

    const WIREGUARD: &str = r#"version: 1
site:
  institution_code: "1312345678"
segments:
  - name: oqs
    interface: lan0
    address: 192.168.50.1/24
    role: eligibility
wan:
  interface: wan0
closed_network:
  prefixes: [10.200.0.0/24]
tunnel:
  type: wireguard
  wireguard:
    interface: oqs-wg0
    private_key_file: /etc/oqs-edge/secrets/wg.key
    address: 10.201.0.2/32
    peer:
      public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
      endpoint: 203.0.113.2:51820
"#;

    fn plan_of(yaml: &str) -> Plan {
        let checked = check_source(Path::new("test.yaml"), yaml, FileChecks::Off);
        let rendered = checked.report.render(yaml);
        let config = checked.config.unwrap_or_else(|| panic!("{rendered}"));
        plan(&config)
    }

    #[test]
    fn a_fixed_lease_a_segment_address_and_a_closed_zone_show_in_their_parts() {
        let base = IPVPN.replace(
            "closed_network:\n",
            "closed_network:\n  dns: [10.200.0.53]\n  dns_zones: [onshikaku.org]\n",
        );
        let more = base
            .replace("[onshikaku.org]", "[onshikaku.org, oqs-pdl.org]")
            .replace(
                "    role: eligibility\n",
                "    role: eligibility\n    address6: fd00:50::1/64\n    dhcp:\n      range: 192.168.50.100-192.168.50.199\n      hosts: [{name: oqs-terminal, mac: \"52:54:00:12:34:56\", address: 192.168.50.10}]\n",
            );
        let d = diff(&plan_of(&base), &plan_of(&more));
        assert_eq!(
            d.addresses.added,
            vec!["fd00:50::1/64 dev lan0 (segment oqs)"]
        );
        assert!(
            d.dhcp.added.contains(
                &"dhcp-host=52:54:00:12:34:56,set:seg0,192.168.50.10,oqs-terminal,43200".to_owned()
            ),
            "{:?}",
            d.dhcp
        );
        assert_eq!(
            d.dns.removed,
            vec!["closed zones onshikaku.org -> 10.200.0.53 (through the tunnel)"]
        );
        assert!(d.dns.added.contains(
            &"closed zones onshikaku.org oqs-pdl.org -> 10.200.0.53 (through the tunnel)"
                .to_owned()
        ));
        let text = d.to_text();
        assert!(
            text.contains("segment addresses:\n  + fd00:50::1/64 dev lan0 (segment oqs)"),
            "{text}"
        );
        assert!(
            text.contains("DHCP server (dnsmasq restarts; leases are kept):"),
            "{text}"
        );
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let d = diff(&plan_of(IPVPN), &plan_of(IPVPN));
        assert!(d.is_empty(), "{d:?}");
        assert!(d.to_text().starts_with("no changes"));
    }

    #[test]
    fn an_added_closed_prefix_shows_its_rule_lines_and_its_route() {
        let more = IPVPN.replace("[10.200.0.0/24]", "[10.200.0.0/24, 10.210.0.0/24]");
        let d = diff(&plan_of(IPVPN), &plan_of(&more));
        assert_eq!(
            d.routes.added,
            vec!["10.210.0.0/24 via 198.51.100.1 dev wan0"]
        );
        assert!(d.routes.removed.is_empty());
        let added: Vec<_> = d.firewall.iter().filter(|c| c.change == "added").collect();
        assert!(
            added.iter().any(|c| c.line.contains("10.210.0.0/24")),
            "{:?}",
            d.firewall
        );
        assert!(d
            .firewall
            .iter()
            .all(|c| c.line.contains("10.200.0.0/24") || c.line.contains("10.210.0.0/24")));
        assert_eq!(d.tunnel, TunnelChange::Untouched);
        let text = d.to_text();
        assert!(
            text.contains("+ 10.210.0.0/24 via 198.51.100.1 dev wan0"),
            "{text}"
        );
        assert!(text.contains("set closed_v4:"), "{text}");
    }

    #[test]
    fn a_changed_wireguard_endpoint_replaces_the_peer() {
        let moved = WIREGUARD.replace("203.0.113.2:51820", "203.0.113.9:51820");
        let d = diff(&plan_of(WIREGUARD), &plan_of(&moved));
        assert_eq!(
            d.tunnel,
            TunnelChange::PeerReplaced {
                fields: vec!["peer_endpoint".into()]
            }
        );
        assert!(d
            .to_text()
            .contains("tunnel: peer replaced (peer_endpoint)"));
    }

    #[test]
    fn a_new_interface_or_type_recreates_the_tunnel_and_an_address_changes_in_place() {
        let renamed = WIREGUARD.replace("oqs-wg0", "oqs-wg1");
        assert!(matches!(
            diff(&plan_of(WIREGUARD), &plan_of(&renamed)).tunnel,
            TunnelChange::Recreated { .. }
        ));
        let readdressed = WIREGUARD.replace("10.201.0.2/32", "10.201.0.3/32");
        assert_eq!(
            diff(&plan_of(WIREGUARD), &plan_of(&readdressed)).tunnel,
            TunnelChange::ChangedInPlace {
                fields: vec!["address".into()]
            }
        );
        assert!(matches!(
            tunnel_change(&plan_of(IPVPN).tunnel, &plan_of(WIREGUARD).tunnel),
            TunnelChange::Recreated { .. }
        ));
    }

    #[test]
    fn a_removed_management_allow_is_a_removed_input_line() {
        let with = format!("{IPVPN}management:\n  ssh_from: [192.168.60.10/32]\n");
        let d = diff(&plan_of(&with), &plan_of(IPVPN));
        assert_eq!(d.firewall.len(), 1, "{:?}", d.firewall);
        assert_eq!(d.firewall[0].change, "removed");
        assert_eq!(d.firewall[0].within, "chain input");
        assert!(d.firewall[0].line.contains("dport 22"), "{:?}", d.firewall);
    }
}
