//! A small model of the one nftables table oqs-edge owns, rendered two ways from one place:
//! nft's text syntax (what `plan` shows an operator) and nft's JSON (what the firewall applier
//! feeds to `nft -j -f -`). The root-only tests load both with nft and check they list the same.
//!
//! The JSON is built here rather than with the `nftables` crate's typed schema because that
//! schema (0.6.3) has no `rt ipsec` key, which the kernel-IPsec kill switch needs.

use std::fmt::Write as _;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::{json, Value};

pub const TABLE: &str = "oqs_edge";
pub const FAMILY: &str = "inet";

#[derive(Clone, Debug, Serialize)]
pub struct Ruleset {
    pub sets: Vec<Set>,
    pub counters: Vec<Counter>,
    pub chains: Vec<Chain>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SetType {
    Ipv4Addr,
    Ipv6Addr,
    IfName,
}

impl SetType {
    fn keyword(self) -> &'static str {
        match self {
            SetType::Ipv4Addr => "ipv4_addr",
            SetType::Ipv6Addr => "ipv6_addr",
            SetType::IfName => "ifname",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Set {
    pub name: &'static str,
    pub kind: SetType,
    /// Addresses/prefixes (as text) or interface names.
    pub elements: Vec<String>,
}

/// A named counter: `status` reads these by name.
#[derive(Clone, Debug, Serialize)]
pub struct Counter {
    pub name: &'static str,
    pub comment: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Hook {
    /// Before routing and conntrack (priority raw): the anti-spoofing check.
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    pub name: &'static str,
    pub hook: Hook,
    pub policy: Policy,
    pub rules: Vec<Rule>,
}

impl Chain {
    fn is_nat(&self) -> bool {
        self.hook == Hook::Postrouting
    }
    fn type_and_priority(&self) -> (&'static str, &'static str, i32) {
        if self.is_nat() {
            ("nat", "srcnat", 100)
        } else if self.hook == Hook::Prerouting {
            ("filter", "raw", -300)
        } else {
            ("filter", "filter", 0)
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub counter: Option<&'static str>,
    pub verdict: Verdict,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Self {
        Rule {
            matches,
            counter: None,
            verdict,
            comment: None,
        }
    }
    pub fn counted(mut self, counter: &'static str) -> Self {
        self.counter = Some(counter);
        self
    }
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    Is,
    IsNot,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Is => "",
            Op::IsNot => "!= ",
        }
    }
    fn json(self, in_set: bool) -> &'static str {
        match (self, in_set) {
            (Op::Is, false) => "==",
            (Op::Is, true) => "in",
            (Op::IsNot, _) => "!=",
        }
    }
}

/// Interface names: one, several, or a named set of them.
#[derive(Clone, Debug, Serialize)]
pub enum Names {
    One(String),
    Set(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    fn protocol(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// Addresses a rule matches: a named set, or a list of prefixes/addresses of one family.
#[derive(Clone, Debug, Serialize)]
pub enum Addrs {
    Set(&'static str),
    Nets(Vec<IpNet>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub enum Match {
    Iif(Op, Names),
    Oif(Op, Names),
    Saddr(Family, Addrs),
    Daddr(Family, Addrs),
    Sport(L4, u16),
    Dports(L4, Vec<u16>),
    /// `meta l4proto { … }` with protocol names nft knows (icmp, ipv6-icmp, esp).
    L4Proto(Vec<&'static str>),
    Icmpv6Types(Vec<&'static str>),
    CtState(Vec<&'static str>),
    /// `rt ipsec missing`: no IPsec policy will encrypt this packet.
    RtIpsecMissing,
    /// `fib saddr . iif oif missing`: the source is not reachable back through the interface
    /// the packet came in on (strict reverse-path check).
    FibSaddrIifMissing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Accept,
    Drop,
    /// `reject with icmpx admin-prohibited`: the sender learns at once that it is refused.
    Reject,
    Masquerade,
}

// ---- text -------------------------------------------------------------------------------

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn brace_list<T: AsRef<str>>(items: &[T]) -> String {
    match items {
        [one] => one.as_ref().to_owned(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Names {
    fn text(&self) -> String {
        match self {
            Names::One(name) => quoted(name),
            Names::Set(set) => format!("@{set}"),
        }
    }
}

impl Addrs {
    fn text(&self) -> String {
        match self {
            Addrs::Set(set) => format!("@{set}"),
            Addrs::Nets(nets) => brace_list(&nets.iter().map(net_text).collect::<Vec<_>>()),
        }
    }
}

/// A host prefix (/32, /128) is written as the bare address, as nft lists it.
fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

impl Match {
    fn text(&self) -> String {
        match self {
            Match::Iif(op, names) => format!("iifname {}{}", op.text(), names.text()),
            Match::Oif(op, names) => format!("oifname {}{}", op.text(), names.text()),
            Match::Saddr(f, addrs) => format!("{} saddr {}", f.protocol(), addrs.text()),
            Match::Daddr(f, addrs) => format!("{} daddr {}", f.protocol(), addrs.text()),
            Match::Sport(l4, port) => format!("{} sport {port}", l4.name()),
            Match::Dports(l4, ports) => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!("{} dport {}", l4.name(), brace_list(&ports))
            }
            Match::L4Proto(protos) => format!("meta l4proto {}", brace_list(protos)),
            Match::Icmpv6Types(types) => format!("icmpv6 type {}", brace_list(types)),
            Match::CtState(states) => format!("ct state {}", states.join(",")),
            Match::RtIpsecMissing => "rt ipsec missing".to_owned(),
            Match::FibSaddrIifMissing => "fib saddr . iif oif missing".to_owned(),
        }
    }
}

impl Rule {
    fn text(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::text).collect();
        if let Some(counter) = self.counter {
            parts.push(format!("counter name {}", quoted(counter)));
        }
        parts.push(
            match self.verdict {
                Verdict::Accept => "accept",
                Verdict::Drop => "drop",
                Verdict::Reject => "reject with icmpx admin-prohibited",
                Verdict::Masquerade => "masquerade",
            }
            .to_owned(),
        );
        if let Some(comment) = &self.comment {
            parts.push(format!("comment {}", quoted(comment)));
        }
        parts.join(" ")
    }
}

impl Ruleset {
    /// The ruleset as an `nft -f` file that replaces the table in one transaction.
    pub fn to_nft_text(&self) -> String {
        let mut out = String::new();
        // Creating then deleting the table makes the file work whether or not the table exists;
        // nft applies the whole file atomically.
        let _ = writeln!(out, "table {FAMILY} {TABLE}");
        let _ = writeln!(out, "delete table {FAMILY} {TABLE}");
        let _ = writeln!(out, "table {FAMILY} {TABLE} {{");
        for set in &self.sets {
            let _ = writeln!(out, "\tset {} {{", set.name);
            let _ = writeln!(out, "\t\ttype {}", set.kind.keyword());
            if set.kind != SetType::IfName {
                let _ = writeln!(out, "\t\tflags interval");
            }
            if !set.elements.is_empty() {
                let elements: Vec<String> = set
                    .elements
                    .iter()
                    .map(|e| match set.kind {
                        SetType::IfName => quoted(e),
                        _ => e.clone(),
                    })
                    .collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
            }
            let _ = writeln!(out, "\t}}\n");
        }
        for counter in &self.counters {
            let _ = writeln!(out, "\tcounter {} {{", counter.name);
            let _ = writeln!(out, "\t\tcomment {}", quoted(counter.comment));
            let _ = writeln!(out, "\t}}\n");
        }
        for (i, chain) in self.chains.iter().enumerate() {
            let (kind, priority, _) = chain.type_and_priority();
            let policy = match chain.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            };
            let hook = hook_name(chain.hook);
            let _ = writeln!(out, "\tchain {} {{", chain.name);
            let _ = writeln!(
                out,
                "\t\ttype {kind} hook {hook} priority {priority}; policy {policy};"
            );
            for rule in &chain.rules {
                let _ = writeln!(out, "\t\t{}", rule.text());
            }
            let _ = writeln!(out, "\t}}");
            if i + 1 < self.chains.len() {
                out.push('\n');
            }
        }
        out.push_str("}\n");
        out
    }
}

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
        Hook::Postrouting => "postrouting",
    }
}

// ---- JSON -------------------------------------------------------------------------------

fn prefix_json(net: &IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({ "prefix": { "addr": net.network().to_string(), "len": net.prefix_len() } })
    }
}

fn set_elem_json(kind: SetType, element: &str) -> Value {
    match (kind, element.parse::<IpNet>()) {
        (SetType::IfName, _) | (_, Err(_)) => json!(element),
        (_, Ok(net)) => prefix_json(&net),
    }
}

fn matcher(op: &str, left: Value, right: Value) -> Value {
    json!({ "match": { "op": op, "left": left, "right": right } })
}

fn list_or_one<T: Into<Value> + Clone>(items: &[T]) -> (bool, Value) {
    match items {
        [one] => (false, one.clone().into()),
        many => (
            true,
            json!({ "set": many.iter().cloned().map(Into::into).collect::<Vec<Value>>() }),
        ),
    }
}

impl Match {
    fn json(&self) -> Value {
        let names = |key: &str, op: &Op, names: &Names| {
            let (in_set, right) = match names {
                Names::One(name) => (false, json!(name)),
                Names::Set(set) => (true, json!(format!("@{set}"))),
            };
            // nft lists a named-set match as "==", whatever was written.
            let op = if in_set && *op == Op::Is {
                "=="
            } else {
                op.json(false)
            };
            matcher(op, json!({ "meta": { "key": key } }), right)
        };
        let addrs = |f: &Family, field: &str, addrs: &Addrs| {
            let left = json!({ "payload": { "protocol": f.protocol(), "field": field } });
            match addrs {
                Addrs::Set(set) => matcher("==", left, json!(format!("@{set}"))),
                Addrs::Nets(nets) => {
                    let items: Vec<Value> = nets.iter().map(prefix_json).collect();
                    let (in_set, right) = list_or_one(&items);
                    matcher(Op::Is.json(in_set), left, right)
                }
            }
        };
        match self {
            Match::Iif(op, n) => names("iifname", op, n),
            Match::Oif(op, n) => names("oifname", op, n),
            Match::Saddr(f, a) => addrs(f, "saddr", a),
            Match::Daddr(f, a) => addrs(f, "daddr", a),
            Match::Sport(l4, port) => matcher(
                "==",
                json!({ "payload": { "protocol": l4.name(), "field": "sport" } }),
                json!(port),
            ),
            Match::Dports(l4, ports) => {
                let (in_set, right) = list_or_one(ports);
                matcher(
                    Op::Is.json(in_set),
                    json!({ "payload": { "protocol": l4.name(), "field": "dport" } }),
                    right,
                )
            }
            Match::L4Proto(protos) => {
                let (in_set, right) = list_or_one(protos);
                matcher(
                    Op::Is.json(in_set),
                    json!({ "meta": { "key": "l4proto" } }),
                    right,
                )
            }
            Match::Icmpv6Types(types) => {
                let (in_set, right) = list_or_one(types);
                matcher(
                    Op::Is.json(in_set),
                    json!({ "payload": { "protocol": "icmpv6", "field": "type" } }),
                    right,
                )
            }
            Match::CtState(states) => {
                matcher("in", json!({ "ct": { "key": "state" } }), json!(states))
            }
            Match::RtIpsecMissing => {
                matcher("==", json!({ "rt": { "key": "ipsec" } }), json!(false))
            }
            Match::FibSaddrIifMissing => matcher(
                "==",
                json!({ "fib": { "result": "oif", "flags": ["saddr", "iif"] } }),
                json!(false),
            ),
        }
    }
}

impl Rule {
    fn json(&self, chain: &str) -> Value {
        let mut expr: Vec<Value> = self.matches.iter().map(Match::json).collect();
        if let Some(counter) = self.counter {
            expr.push(json!({ "counter": counter }));
        }
        expr.push(match self.verdict {
            Verdict::Accept => json!({ "accept": null }),
            Verdict::Drop => json!({ "drop": null }),
            Verdict::Reject => json!({ "reject": { "type": "icmpx", "expr": "admin-prohibited" } }),
            Verdict::Masquerade => json!({ "masquerade": null }),
        });
        let mut rule = json!({ "family": FAMILY, "table": TABLE, "chain": chain, "expr": expr });
        if let Some(comment) = &self.comment {
            rule["comment"] = json!(comment);
        }
        json!({ "add": { "rule": rule } })
    }
}

impl Ruleset {
    /// The ruleset as an `nft -j -f` batch that replaces the table in one transaction.
    pub fn to_nft_json(&self) -> Value {
        let table = json!({ "family": FAMILY, "name": TABLE });
        let mut cmds = vec![
            json!({ "add": { "table": table } }),
            json!({ "delete": { "table": table } }),
            json!({ "add": { "table": table } }),
        ];
        for set in &self.sets {
            let mut s = json!({
                "family": FAMILY, "table": TABLE, "name": set.name,
                "type": set.kind.keyword(),
            });
            if set.kind != SetType::IfName {
                s["flags"] = json!(["interval"]);
            }
            if !set.elements.is_empty() {
                s["elem"] = set
                    .elements
                    .iter()
                    .map(|e| set_elem_json(set.kind, e))
                    .collect();
            }
            cmds.push(json!({ "add": { "set": s } }));
        }
        for counter in &self.counters {
            cmds.push(json!({ "add": { "counter": {
                "family": FAMILY, "table": TABLE, "name": counter.name, "comment": counter.comment,
            } } }));
        }
        for chain in &self.chains {
            let (kind, _, prio) = chain.type_and_priority();
            cmds.push(json!({ "add": { "chain": {
                "family": FAMILY, "table": TABLE, "name": chain.name, "type": kind,
                "hook": hook_name(chain.hook), "prio": prio,
                "policy": match chain.policy { Policy::Accept => "accept", Policy::Drop => "drop" },
            } } }));
        }
        for chain in &self.chains {
            cmds.extend(chain.rules.iter().map(|r| r.json(chain.name)));
        }
        json!({ "nftables": cmds })
    }
}
