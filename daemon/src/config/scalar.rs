//! Scalar values of the config file, each with the place it was written.
//!
//! A bad scalar (an address that does not parse, a duration without a unit, an unknown
//! keyword) does not stop the reading of the file: it is recorded as a problem at its location
//! and a placeholder stands in, so one `check` run reports every bad value at once. The loader
//! ([`super::load`]) collects the problems and never hands out a config that had any.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use ipnet::IpNet;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub(crate) fn from_saphyr(location: serde_saphyr::Location) -> Self {
        Loc {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
        }
    }
}

/// A scalar that failed to parse: its location, the message, and an optional fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScalarProblem {
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
    /// The value is a placeholder of the shipped config (`<医療機関等コード>`), not a typo.
    pub placeholder: bool,
}

thread_local! {
    /// Problems found while deserializing on this thread; drained by the loader.
    static PROBLEMS: RefCell<Vec<ScalarProblem>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn take_problems() -> Vec<ScalarProblem> {
    PROBLEMS.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// Why a scalar was refused: the message, and a fix when one can be suggested.
#[derive(Debug)]
pub struct Refusal {
    pub message: String,
    pub hint: Option<String>,
}

impl Refusal {
    fn new(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A config scalar: parsed from the YAML text, with a JSON Schema for editors.
pub trait Scalar: Sized {
    fn parse(text: &str) -> Result<Self, Refusal>;
    /// Stands in for a value that failed to parse; never reaches a valid config.
    fn placeholder() -> Self;
    fn schema() -> Schema;
}

/// A scalar and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for At<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<'de, T: Scalar> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = serde_saphyr::Spanned::<String>::deserialize(deserializer)?;
        let loc = Loc::from_saphyr(text.referenced);
        if super::validate::is_placeholder(text.value.trim()) {
            PROBLEMS.with(|p| {
                p.borrow_mut().push(ScalarProblem {
                    loc,
                    message: text.value.trim().to_owned(),
                    hint: None,
                    placeholder: true,
                })
            });
            return Ok(At {
                value: T::placeholder(),
                loc,
            });
        }
        let value = match T::parse(text.value.trim()) {
            Ok(value) => value,
            Err(refusal) => {
                PROBLEMS.with(|p| {
                    p.borrow_mut().push(ScalarProblem {
                        loc,
                        message: refusal.message,
                        hint: refusal.hint,
                        placeholder: false,
                    })
                });
                T::placeholder()
            }
        };
        Ok(At { value, loc })
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: Scalar> JsonSchema for At<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::any::type_name::<T>().into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        T::schema()
    }
}

/// A mapping (section) and where it starts.
#[derive(Clone, Debug)]
pub struct Node<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Deref for Node<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Node<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Node {
            loc: Loc::from_saphyr(spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Node<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// One name, or a list of names in order of preference (a route's `client_certificate`).
/// The single form's entry takes its place from the [`Node`] around it.
#[derive(Clone, Debug, Default)]
pub struct OneOrMore(pub Vec<At<String>>);

impl<'de> Deserialize<'de> for OneOrMore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = OneOrMore;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name, or a list of names in order of preference")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMore, E> {
                Ok(OneOrMore(vec![At {
                    value: v.to_owned(),
                    loc: Loc::default(),
                }]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMore, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<At<String>>()? {
                    names.push(name);
                }
                Ok(OneOrMore(names))
            }
        }
        deserializer.deserialize_any(Names)
    }
}

impl JsonSchema for OneOrMore {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OneOrMore".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// One IPsec gateway of `tunnel.ipsec.remote_address`: an address or host name, with the
/// gateway's own IKE identity where it differs from `remote_id`.
#[derive(Clone, Debug)]
pub struct GatewayEntry {
    pub address: At<String>,
    pub remote_id: Option<At<String>>,
}

impl GatewayEntry {
    /// A bare address; its place is set from the [`Node`] around it.
    fn bare(address: &str) -> GatewayEntry {
        GatewayEntry {
            address: At {
                value: address.trim().to_owned(),
                loc: Loc::default(),
            },
            remote_id: None,
        }
    }
}

impl<'de> Deserialize<'de> for GatewayEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = GatewayEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a gateway's address, or `{address: ..., remote_id: ...}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GatewayEntry, E> {
                Ok(GatewayEntry::bare(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<GatewayEntry, A::Error> {
                let mut address = None;
                let mut remote_id = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "address" => address = Some(map.next_value::<At<String>>()?),
                        "remote_id" => remote_id = Some(map.next_value::<At<String>>()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["address", "remote_id"],
                            ))
                        }
                    }
                }
                let address = address.ok_or_else(|| serde::de::Error::missing_field("address"))?;
                Ok(GatewayEntry { address, remote_id })
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

/// `tunnel.ipsec.remote_address`: one gateway, or a list in order of preference (issue 21).
#[derive(Clone, Debug, Default)]
pub struct Gateways(pub Vec<Node<GatewayEntry>>);

impl<'de> Deserialize<'de> for Gateways {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = Gateways;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a gateway's address, or a list of gateways in order of preference")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Gateways, E> {
                Ok(Gateways(vec![Node {
                    value: GatewayEntry::bare(v),
                    loc: Loc::default(),
                }]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Gateways, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = seq.next_element::<Node<GatewayEntry>>()? {
                    list.push(entry);
                }
                Ok(Gateways(list))
            }
        }
        deserializer.deserialize_any(List)
    }
}

impl JsonSchema for Gateways {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Gateways".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "anyOf": [
                            { "type": "string" },
                            {
                                "type": "object",
                                "properties": {
                                    "address": { "type": "string" },
                                    "remote_id": { "type": "string" }
                                },
                                "required": ["address"],
                                "additionalProperties": false
                            }
                        ]
                    }
                }
            ]
        })
    }
}

impl Node<Gateways> {
    /// The gateways in order of preference, each address with its place (a bare address takes
    /// the place of its list entry, or of the key's value for the single form).
    pub fn entries(&self) -> Vec<GatewayEntry> {
        self.value
            .0
            .iter()
            .map(|entry| {
                let mut e = entry.value.clone();
                if e.address.loc == Loc::default() {
                    e.address.loc = if entry.loc == Loc::default() {
                        self.loc
                    } else {
                        entry.loc
                    };
                }
                e
            })
            .collect()
    }

    /// The preferred gateway's address.
    pub fn first(&self) -> At<String> {
        self.entries()
            .into_iter()
            .next()
            .map(|e| e.address)
            .unwrap_or(At {
                value: String::new(),
                loc: self.loc,
            })
    }
}

impl Node<OneOrMore> {
    /// The names with their places (the single form's at the key's value).
    pub fn names(&self) -> Vec<At<String>> {
        self.value
            .0
            .iter()
            .map(|n| At {
                value: n.value.clone(),
                loc: if n.loc == Loc::default() {
                    self.loc
                } else {
                    n.loc
                },
            })
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.value.0.iter().any(|n| n.value == name)
    }
}

// ---- the scalar types -------------------------------------------------------------------

impl Scalar for String {
    fn parse(text: &str) -> Result<Self, Refusal> {
        Ok(text.to_owned())
    }
    fn placeholder() -> Self {
        String::new()
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string" })
    }
}

impl Scalar for PathBuf {
    fn parse(text: &str) -> Result<Self, Refusal> {
        if text.is_empty() {
            return Err(Refusal::new("a file path is required here"));
        }
        Ok(PathBuf::from(text))
    }
    fn placeholder() -> Self {
        PathBuf::new()
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "An absolute file path.", "pattern": "^/" })
    }
}

impl Scalar for bool {
    fn parse(text: &str) -> Result<Self, Refusal> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Refusal::new(format!("`{text}` is not true or false"))),
        }
    }
    fn placeholder() -> Self {
        false
    }
    fn schema() -> Schema {
        json_schema!({ "type": "boolean" })
    }
}

/// A segment's IPv6 address: written out (`fd00:50::1/64`), or `delegated[:N]`, subnet N
/// (default 0) of the prefix delegated to the WAN, the router taking ::1/64 in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address6 {
    Fixed(IpNet),
    Delegated { subnet: u32 },
}

impl Address6 {
    /// The written-out address; `None` for a delegated one (known only at run time).
    pub fn fixed(&self) -> Option<IpNet> {
        match self {
            Address6::Fixed(net) => Some(*net),
            Address6::Delegated { .. } => None,
        }
    }
}

impl fmt::Display for Address6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address6::Fixed(net) => net.fmt(f),
            Address6::Delegated { subnet } => write!(f, "delegated:{subnet}"),
        }
    }
}

impl Serialize for Address6 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for Address6 {
    fn parse(text: &str) -> Result<Self, Refusal> {
        if let Some(rest) = text.strip_prefix("delegated") {
            let subnet = match rest.strip_prefix(':') {
                None if rest.is_empty() => Some(0),
                Some(n) => n.parse::<u32>().ok(),
                None => None,
            };
            return subnet
                .map(|subnet| Address6::Delegated { subnet })
                .ok_or_else(|| {
                    Refusal::new(format!("`{text}` is not `delegated` or `delegated:N`"))
                        .hint("write the subnet number after a colon, e.g. delegated:1")
                });
        }
        <IpNet as Scalar>::parse(text).map(Address6::Fixed)
    }
    fn placeholder() -> Self {
        Address6::Fixed(IpNet::default())
    }
    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "description": "An IPv6 address with prefix length like fd00:50::1/64, or delegated[:N] (subnet N of the WAN's delegated prefix).",
            "pattern": "^([0-9A-Fa-f:.]+/[0-9]{1,3}|delegated(:[0-9]+)?)$"
        })
    }
}

impl Scalar for u32 {
    fn parse(text: &str) -> Result<Self, Refusal> {
        text.parse()
            .map_err(|_| Refusal::new(format!("`{text}` is not a whole number")))
    }
    fn placeholder() -> Self {
        0
    }
    fn schema() -> Schema {
        json_schema!({ "type": "integer", "minimum": 0 })
    }
}

impl Scalar for u16 {
    fn parse(text: &str) -> Result<Self, Refusal> {
        text.parse()
            .map_err(|_| Refusal::new(format!("`{text}` is not a number from 0 to 65535")))
    }
    fn placeholder() -> Self {
        0
    }
    fn schema() -> Schema {
        json_schema!({ "type": "integer", "minimum": 0, "maximum": 65535 })
    }
}

impl Scalar for IpAddr {
    fn parse(text: &str) -> Result<Self, Refusal> {
        text.parse().map_err(|_| {
            let refusal = Refusal::new(format!("`{text}` is not an IPv4 or IPv6 address"));
            if text.contains('/') {
                refusal.hint("write the address without a /prefix length")
            } else {
                refusal.hint("write it like 192.0.2.1 or 2001:db8::1")
            }
        })
    }
    fn placeholder() -> Self {
        IpAddr::from([0, 0, 0, 0])
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "anyOf": [{ "format": "ipv4" }, { "format": "ipv6" }] })
    }
}

/// An address with its prefix length: a network (`10.200.0.0/24`) or an interface address
/// (`192.168.50.1/24`), as the key says.
impl Scalar for IpNet {
    fn parse(text: &str) -> Result<Self, Refusal> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(net);
        }
        let (addr, len) = text.split_once('/').unwrap_or((text, ""));
        let refusal = match addr.parse::<IpAddr>() {
            Err(_) => Refusal::new(format!(
                "`{addr}` in `{text}` is not an IPv4 or IPv6 address"
            )),
            Ok(_) if len.is_empty() => Refusal::new(format!("`{text}` has no prefix length")).hint(
                format!("add one, e.g. `{addr}/24` (or /32 for a single IPv4 host)"),
            ),
            Ok(IpAddr::V4(_)) => {
                Refusal::new(format!("`/{len}` is not an IPv4 prefix length (0 to 32)"))
            }
            Ok(IpAddr::V6(_)) => {
                Refusal::new(format!("`/{len}` is not an IPv6 prefix length (0 to 128)"))
            }
        };
        Err(refusal)
    }
    fn placeholder() -> Self {
        IpNet::default()
    }
    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "description": "An address with prefix length, like 192.168.50.1/24 or 2001:db8::/64.",
            "pattern": "^[0-9A-Fa-f:.]+/[0-9]{1,3}$"
        })
    }
}

impl Scalar for SocketAddr {
    fn parse(text: &str) -> Result<Self, Refusal> {
        text.parse().map_err(|_| {
            Refusal::new(format!("`{text}` is not an address and port"))
                .hint("write it like 192.168.60.1:8443 or [2001:db8::1]:8443")
        })
    }
    fn placeholder() -> Self {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "address:port, like 192.168.60.1:8443 or [2001:db8::1]:8443" })
    }
}

/// A duration written like `30s`, `5m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for Duration {
    fn parse(text: &str) -> Result<Self, Refusal> {
        humantime::parse_duration(text).map(Duration).map_err(|_| {
            let hint = if text.chars().all(|c| c.is_ascii_digit()) {
                format!("add a unit: `{text}s` for seconds, `{text}m` for minutes")
            } else {
                "write a number and a unit, like 30s, 5m or 1h".to_owned()
            };
            Refusal::new(format!("`{text}` is not a duration")).hint(hint)
        })
    }
    fn placeholder() -> Self {
        Duration(StdDuration::ZERO)
    }
    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (s, m, h), like 30s or 5m.",
            "pattern": "^[0-9]+ ?(ms|s|m|h|d)( ?[0-9]+ ?(ms|s|m|h|d))*$"
        })
    }
}

/// A Linux network interface name: 1 to 15 bytes, no spaces or slashes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IfName(pub String);

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Scalar for IfName {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let bad_char = text
            .chars()
            .find(|c| c.is_whitespace() || *c == '/' || *c == ':' || *c == '"' || !c.is_ascii());
        if text.is_empty() || text.len() > 15 || bad_char.is_some() || text == "." || text == ".." {
            return Err(Refusal::new(format!("`{text}` is not a valid interface name"))
                .hint("Linux interface names are 1 to 15 ASCII characters without spaces, '/', ':' or quotes, e.g. lan0 or eth1.10"));
        }
        Ok(IfName(text.to_owned()))
    }
    fn placeholder() -> Self {
        IfName(String::new())
    }
    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "description": "A network interface name (up to 15 characters), e.g. lan0 or eth1.10.",
            "pattern": "^[!-~]{1,15}$"
        })
    }
}

/// `host:port`, where host is a DNS name or an address (`[v6]:port` for IPv6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A DNS host name as RFC 1123 allows it (letters, digits, hyphens, dots).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Scalar for HostPort {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let example = "write it like claims.example.jp:443 or 203.0.113.2:51820";
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| Refusal::new(format!("`{text}` is not host:port")).hint(example))?;
            (host, port)
        } else {
            text.rsplit_once(':').ok_or_else(|| {
                Refusal::new(format!("`{text}` has no port"))
                    .hint(format!("add it, e.g. `{text}:443`"))
            })?
        };
        let port: u16 = port
            .parse()
            .map_err(|_| Refusal::new(format!("`{port}` is not a port number (1 to 65535)")))?;
        if port == 0 {
            return Err(Refusal::new("port 0 cannot be connected to"));
        }
        if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
            return Err(
                Refusal::new(format!("`{host}` is neither a host name nor an address"))
                    .hint(example),
            );
        }
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
    fn placeholder() -> Self {
        HostPort {
            host: String::new(),
            port: 0,
        }
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "host:port, like claims.example.jp:443 or [2001:db8::1]:443" })
    }
}

/// A DHCPv4 address range, `first-last` (both ends included), e.g. 192.168.50.100-192.168.50.199.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl fmt::Display for DhcpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for DhcpRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for DhcpRange {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let example = "write the first and the last address, like 192.168.50.100-192.168.50.199";
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| Refusal::new(format!("`{text}` is not a range")).hint(example))?;
        let end = |part: &str| {
            part.trim().parse::<Ipv4Addr>().map_err(|_| {
                Refusal::new(format!("`{}` is not an IPv4 address", part.trim())).hint(example)
            })
        };
        Ok(DhcpRange {
            first: end(first)?,
            last: end(last)?,
        })
    }
    fn placeholder() -> Self {
        DhcpRange {
            first: Ipv4Addr::UNSPECIFIED,
            last: Ipv4Addr::UNSPECIFIED,
        }
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "first-last IPv4 address, like 192.168.50.100-192.168.50.199" })
    }
}

/// An Ethernet MAC address, six hex pairs separated by colons; kept in lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for MacAddr {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let refuse = || {
            Refusal::new(format!("`{text}` is not a MAC address")).hint(
                "write six hex pairs separated by colons, in quotes, like \"52:54:00:12:34:56\"",
            )
        };
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(refuse());
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(refuse());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| refuse())?;
        }
        Ok(MacAddr(mac))
    }
    fn placeholder() -> Self {
        MacAddr([0; 6])
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "a MAC address, like \"52:54:00:12:34:56\"" })
    }
}

/// A DNS zone (a domain name and everything below it), kept in lower case without a final dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsZone(pub String);

impl fmt::Display for DnsZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DnsZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for DnsZone {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let zone = text.trim_end_matches('.').to_ascii_lowercase();
        if !is_dns_name(&zone) {
            return Err(Refusal::new(format!("`{text}` is not a DNS name"))
                .hint("write the zone as a domain name, like onshikaku.org (no scheme, no path, no wildcard)"));
        }
        Ok(DnsZone(zone))
    }
    fn placeholder() -> Self {
        DnsZone(String::new())
    }
    fn schema() -> Schema {
        json_schema!({ "type": "string", "description": "a DNS zone, like onshikaku.org" })
    }
}

/// A WireGuard key from its base64 text (`wg genkey` / `wg pubkey` output).
pub fn parse_wg_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "the file does not hold base64 text".to_owned())?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("a key is 32 bytes of base64, this is {} bytes", bytes.len()))
}

/// A WireGuard public key: 32 bytes in base64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgKey(pub [u8; 32]);

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl Serialize for WgKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Scalar for WgKey {
    fn parse(text: &str) -> Result<Self, Refusal> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| {
                Refusal::new("this is not base64").hint(
                    "paste the peer's public key exactly as `wg pubkey` printed it (44 characters ending in =)",
                )
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Refusal::new(format!(
                "a WireGuard key is 32 bytes, this one is {} bytes",
                bytes.len()
            ))
            .hint("paste the peer's public key exactly as `wg pubkey` printed it (44 characters ending in =)")
        })?;
        Ok(WgKey(key))
    }
    fn placeholder() -> Self {
        WgKey([0; 32])
    }
    fn schema() -> Schema {
        json_schema!({
            "type": "string",
            "description": "A WireGuard public key (base64 of 32 bytes, 44 characters).",
            "pattern": "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$"
        })
    }
}

/// The closest of `candidates` to a mistyped `word`, when one is close enough to suggest.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Keyword enums of the config (`role: eligibility`), parsed with a did-you-mean on typos.
macro_rules! keyword_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl $crate::config::scalar::Scalar for $name {
            fn parse(text: &str) -> Result<Self, $crate::config::scalar::Refusal> {
                $(if text == $text { return Ok($name::$variant); })+
                let words = [$($text),+];
                let mut refusal = $crate::config::scalar::Refusal {
                    message: format!("`{text}` is not a valid {}: use one of {}", $what, words.join(", ")),
                    hint: None,
                };
                if let Some(near) = $crate::config::scalar::closest(text, words) {
                    refusal.hint = Some(format!("did you mean `{near}`?"));
                }
                Err(refusal)
            }
            fn placeholder() -> Self {
                $name::ALL[0]
            }
            fn schema() -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": [$($text),+] })
            }
        }
    };
}
pub(crate) use keyword_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_ranges_macs_and_zones_parse_or_say_why() {
        let range = DhcpRange::parse("192.168.50.100-192.168.50.199").unwrap();
        assert_eq!(range.to_string(), "192.168.50.100-192.168.50.199");
        assert!(DhcpRange::parse("192.168.50.100")
            .unwrap_err()
            .message
            .contains("is not a range"));
        assert!(DhcpRange::parse("192.168.50.100-fe80::1")
            .unwrap_err()
            .message
            .contains("`fe80::1` is not an IPv4 address"));
        assert_eq!(
            MacAddr::parse("52:54:00:AB:cd:0F").unwrap().to_string(),
            "52:54:00:ab:cd:0f"
        );
        assert!(MacAddr::parse("52:54:00:ab:cd").is_err());
        assert!(MacAddr::parse("52:54:00:ab:cd:zz").is_err());
        assert_eq!(DnsZone::parse("OnShikaku.org.").unwrap().0, "onshikaku.org");
        assert!(DnsZone::parse("*.onshikaku.org").is_err());
        assert!(DnsZone::parse("https://onshikaku.org").is_err());
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(parse_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n").is_ok());
        assert_eq!(
            parse_wg_key("not base64!").unwrap_err(),
            "the file does not hold base64 text"
        );
        assert_eq!(
            parse_wg_key("AAAA").unwrap_err(),
            "a key is 32 bytes of base64, this is 3 bytes"
        );
    }

    #[test]
    fn prefix_without_length_gets_a_hint() {
        let refusal = <IpNet as Scalar>::parse("10.0.0.0").unwrap_err();
        assert!(refusal.message.contains("no prefix length"));
        assert!(refusal.hint.unwrap().contains("10.0.0.0/24"));
    }

    #[test]
    fn bare_number_duration_suggests_a_unit() {
        let refusal = Duration::parse("30").unwrap_err();
        assert_eq!(
            refusal.hint.as_deref(),
            Some("add a unit: `30s` for seconds, `30m` for minutes")
        );
        assert_eq!(Duration::parse("5m").unwrap().0.as_secs(), 300);
    }

    #[test]
    fn host_port_forms() {
        let hp = HostPort::parse("[2001:db8::1]:443").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("2001:db8::1", 443));
        assert_eq!(
            HostPort::parse("claims.example.jp:443")
                .unwrap()
                .to_string(),
            "claims.example.jp:443"
        );
        assert!(HostPort::parse("claims.example.jp")
            .unwrap_err()
            .hint
            .unwrap()
            .contains(":443"));
        assert!(HostPort::parse("bad_host:443").is_err());
    }

    #[test]
    fn wireguard_key_length_is_checked() {
        assert!(WgKey::parse("AAAA")
            .unwrap_err()
            .message
            .contains("32 bytes, this one is 3"));
        let key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        assert_eq!(WgKey::parse(key).unwrap().to_string(), key);
    }

    #[test]
    fn closest_suggests_only_near_words() {
        assert_eq!(
            closest("adress", ["name", "address", "role"]),
            Some("address")
        );
        assert_eq!(closest("zzz", ["name", "address"]), None);
    }
}
