//! Semantic checks: everything the YAML types cannot say. Every check runs, so one `check`
//! reports all problems, each at the key at fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

mod failover;

use super::diagnostic::{Diagnostic, Severity};
use super::model::{Config, InternetAccess, LanTls, Proxy, ProxyRoute, Role, TunnelType};
use super::scalar::{At, Loc, Node};

/// What the file checks may look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChecks {
    /// Open every file the config names; secrets must be private.
    On,
    /// Lint only (`--no-files`): for a config away from its router.
    Off,
}

/// Check a config. `unparsed` are the places of values that did not parse (and were already
/// reported): they hold placeholders, so checks that would compare them are skipped.
pub fn check(
    config: &Config,
    source: &str,
    files: FileChecks,
    unparsed: &HashSet<Loc>,
) -> Vec<Diagnostic> {
    let mut c = Checker {
        found: Vec::new(),
        source,
        files,
        unparsed,
    };
    c.version(config);
    c.site(config);
    c.segments(config);
    c.closed_network(config);
    c.wan(config);
    c.dhcp(config);
    c.dns(config);
    c.tunnel(config);
    c.failover(config);
    c.client_certificates(config);
    c.proxy(config);
    c.management(config);
    c.control(config);
    c.status_page(config);
    let Checker {
        mut found,
        unparsed,
        ..
    } = c;
    found.retain(|d| d.loc.is_none_or(|loc| !unparsed.contains(&loc)));
    found
}

pub(super) struct Checker<'a> {
    found: Vec<Diagnostic>,
    /// The text as read (with repairs): for the places of keys, which the model does not keep.
    pub(super) source: &'a str,
    files: FileChecks,
    unparsed: &'a HashSet<Loc>,
}

impl Checker<'_> {
    /// Whether a value parsed (so comparing it with others means something).
    pub(super) fn ok<T>(&self, at: &At<T>) -> bool {
        !self.unparsed.contains(&at.loc)
    }

    fn all_segment_addresses_ok(&self, config: &Config) -> bool {
        config
            .segments
            .iter()
            .all(|s| self.ok(&s.address) && s.address6.as_ref().is_none_or(|a| self.ok(a)))
    }

    /// Record a problem; the caller may still add its fix.
    fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        let index = self.found.len();
        self.found.push(diagnostic);
        &mut self.found[index]
    }

    pub(super) fn error(
        &mut self,
        loc: Loc,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::error(loc, message).key(key))
    }

    pub(super) fn warning(
        &mut self,
        loc: Loc,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::warning(loc, message).key(key))
    }

    fn version(&mut self, config: &Config) {
        if *config.version != 1 {
            self.error(
                config.version.loc,
                "version",
                format!("unsupported config version {}", *config.version),
            )
            .hint = Some("this oqs-edge reads `version: 1`".into());
        }
    }

    fn site(&mut self, config: &Config) {
        let code = &config.site.institution_code;
        if code.len() != 10 || !code.chars().all(|c| c.is_ascii_digit()) {
            self.error(
                code.loc,
                "site.institution_code",
                format!(
                    "医療機関等コード `{}` must be exactly 10 digits",
                    code.value
                ),
            )
            .hint = Some(
                "write the 10-digit code in quotes, e.g. \"1312345678\" (the CN of the 電子証明書)"
                    .into(),
            );
        }
    }

    fn segments(&mut self, config: &Config) {
        let segments = &config.segments;
        if segments.is_empty() {
            self.error(segments.loc, "segments", "no LAN segments are defined")
                .hint = Some("add at least the eligibility (資格確認端末) segment".into());
        }
        let mut names: HashMap<&str, Loc> = HashMap::new();
        let mut interfaces: HashMap<&str, Loc> = HashMap::new();
        for (i, seg) in segments.iter().enumerate() {
            let key = |field: &str| format!("segments[{i}].{field}");
            if seg.name.is_empty() {
                self.error(seg.name.loc, key("name"), "a segment needs a name");
            } else if let Some(first) = names.insert(&seg.name, seg.name.loc) {
                self.error(
                    seg.name.loc,
                    key("name"),
                    format!("segment name `{}` is used twice", *seg.name),
                )
                .hint = Some(format!(
                    "the first is at line {}; give each segment its own name",
                    first.line
                ));
            }
            let ifname = seg.interface.0.as_str();
            if !self.ok(&seg.interface) {
            } else if let Some(first) = interfaces.insert(ifname, seg.interface.loc) {
                self.error(
                    seg.interface.loc,
                    key("interface"),
                    format!("interface `{ifname}` is used by two segments"),
                )
                .hint = Some(format!(
                    "the first is at line {}; one segment per interface or VLAN",
                    first.line
                ));
            }
            if seg.interface.value == config.wan.interface.value {
                self.error(
                    seg.interface.loc,
                    key("interface"),
                    format!("interface `{ifname}` is also the WAN interface"),
                );
            }
            self.router_address(&seg.address, &key("address"));
            if let Some(a6) = &seg.address6 {
                let fixed = a6.fixed();
                if fixed.is_some_and(|net| !matches!(net, IpNet::V6(_))) {
                    self.error(
                        a6.loc,
                        key("address6"),
                        format!("`{}` is not an IPv6 address", a6.value),
                    )
                    .hint = Some("put the IPv4 address in `address`, the IPv6 one here".into());
                } else if matches!(seg.address.value, IpNet::V6(_)) {
                    self.error(a6.loc, key("address6"), "`address` is already IPv6")
                        .hint = Some("use `address` for IPv4 and `address6` for IPv6".into());
                } else if let Some(net) = fixed {
                    self.router_address(
                        &At {
                            value: net,
                            loc: a6.loc,
                        },
                        &key("address6"),
                    );
                }
            }
            let role_ok = self.ok(&seg.role) && seg.internet.as_ref().is_none_or(|i| self.ok(i));
            match (seg.role.value, &seg.internet) {
                _ if !role_ok => {}
                (Role::Clinic, None) => {
                    self.error(
                        seg.loc,
                        key("internet"),
                        format!("clinic segment `{}` must state `internet:`", *seg.name),
                    )
                    .hint = Some(
                        "add `internet: deny` (or `internet: allow` if its PCs need the internet)"
                            .into(),
                    );
                }
                (Role::Eligibility, Some(at)) if at.value == InternetAccess::Allow => {
                    self.error(
                        at.loc,
                        key("internet"),
                        "an eligibility (資格確認端末) segment can never reach the internet",
                    )
                    .hint = Some(
                        "delete this line; the eligibility PC reaches only the closed network"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        if !segments.is_empty()
            && segments
                .iter()
                .all(|s| self.ok(&s.role) && s.role.value != Role::Eligibility)
        {
            self.warning(segments.loc, "segments", "no eligibility (資格確認端末) segment: nothing is routed to the closed network except through the proxy");
        }
        // Segment networks must not overlap each other.
        let nets: Vec<(String, Loc, IpNet)> = segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let mut v = vec![(
                    format!("segments[{i}].address"),
                    s.address.loc,
                    s.address.trunc(),
                )];
                if let Some(net) = s.address6.as_ref().and_then(|a| a.fixed()) {
                    let loc = s.address6.as_ref().map_or(s.loc, |a| a.loc);
                    v.push((format!("segments[{i}].address6"), loc, net.trunc()));
                }
                v
            })
            .filter(|(_, loc, _)| !self.unparsed.contains(loc))
            .collect();
        for (j, (key, loc, net)) in nets.iter().enumerate() {
            if let Some((other, other_loc, _)) = nets[..j].iter().find(|(_, _, o)| overlaps(o, net))
            {
                self.error(
                    *loc,
                    key.clone(),
                    format!("{net} overlaps {other} (line {})", other_loc.line),
                )
                .hint = Some("each segment needs its own subnet".into());
            }
        }
    }

    /// A router address on a segment: a host address with a prefix length that leaves room.
    fn router_address(&mut self, at: &At<IpNet>, key: &str) {
        let net = at.value;
        let host_bits = net.max_prefix_len() - net.prefix_len();
        if matches!(net, IpNet::V4(_)) && host_bits >= 2 && net.addr() == net.broadcast() {
            self.error(
                at.loc,
                key,
                format!("{} is the broadcast address of {}", net.addr(), net.trunc()),
            );
        } else if host_bits >= 2 && net.addr() == net.network() {
            let example = net
                .hosts()
                .next()
                .map(|h| format!("{h}/{}", net.prefix_len()))
                .unwrap_or_default();
            self.error(
                at.loc,
                key,
                format!("{net} is the network address, not the router's address on it"),
            )
            .hint = Some(format!("write the router's own address, e.g. {example}"));
        }
        if host_bits == 0 {
            self.error(
                at.loc,
                key,
                format!("{net} leaves no room for other hosts on the segment"),
            )
            .hint = Some("give the segment's prefix length, e.g. /24".into());
        }
    }

    fn closed_network(&mut self, config: &Config) {
        let closed = &config.closed_network;
        if closed.prefixes.is_empty() {
            self.error(closed.prefixes.loc, "closed_network.prefixes", "no closed-network prefixes are listed")
                .hint = Some("list the closed network's prefixes as your provider gave them, e.g. [10.200.0.0/24]".into());
        }
        for (i, prefix) in closed.prefixes.iter().enumerate() {
            let key = format!("closed_network.prefixes[{i}]");
            let net = prefix.value;
            if net.prefix_len() == 0 {
                self.error(
                    prefix.loc,
                    &key,
                    format!("{net} is the whole address space, not a closed network"),
                );
            } else if net.addr() != net.network() {
                self.error(prefix.loc, &key, format!("{net} has host bits set"))
                    .hint = Some(format!("did you mean {}?", net.trunc()));
            }
            if !self.ok(prefix) || !self.all_segment_addresses_ok(config) {
                continue;
            }
            for (s, seg) in config.segments.iter().enumerate() {
                for (field, addr) in segment_nets(seg) {
                    if overlaps(&addr.trunc(), &net.trunc()) {
                        self.error(prefix.loc, &key, format!("{net} overlaps segment `{}` ({})", *seg.name, addr.trunc()))
                            .hint = Some(format!("closed-network traffic would be confused with the LAN; check segments[{s}].{field}"));
                    }
                }
            }
            if let Some(other) = closed.prefixes[..i]
                .iter()
                .filter(|o| self.ok(o))
                .find(|o| overlaps(&o.trunc(), &net.trunc()))
            {
                self.error(
                    prefix.loc,
                    &key,
                    format!("{net} overlaps {} (line {})", other.value, other.loc.line),
                )
                .hint = Some("list each prefix once".into());
            }
        }
        let prefixes_ok = closed.prefixes.iter().all(|p| self.ok(p));
        for (i, dns) in closed.dns.iter().enumerate().filter(|_| prefixes_ok) {
            if !closed.prefixes.iter().any(|p| p.contains(&dns.value)) {
                self.warning(dns.loc, format!("closed_network.dns[{i}]"), format!("DNS server {} is outside the closed prefixes, so it is not reached through the tunnel", dns.value));
            }
        }
    }

    fn tunnel(&mut self, config: &Config) {
        let tunnel = &config.tunnel;
        let kind = tunnel.kind.value;
        let sections = [
            (
                TunnelType::WireGuard,
                "wireguard",
                tunnel.wireguard.as_ref().map(|s| s.loc),
            ),
            (
                TunnelType::Ipsec,
                "ipsec",
                tunnel.ipsec.as_ref().map(|s| s.loc),
            ),
            (
                TunnelType::IpVpn,
                "ip_vpn",
                tunnel.ip_vpn.as_ref().map(|s| s.loc),
            ),
        ];
        let kind_ok = self.ok(&tunnel.kind);
        for (section_kind, name, loc) in sections.into_iter().filter(|_| kind_ok) {
            match (section_kind == kind, loc) {
                (true, None) => {
                    self.error(
                        tunnel.kind.loc,
                        "tunnel.type",
                        format!("`type: {kind}` needs a `tunnel.{name}:` section"),
                    )
                    .hint = Some(format!("add `{name}:` under `tunnel:` with its settings"));
                }
                (false, Some(loc)) => {
                    // The section's own key, not its first child.
                    let at = section_key(self.source, loc, name);
                    self.error(
                        at,
                        format!("tunnel.{name}"),
                        format!("`tunnel.{name}` is set but `tunnel.type` is {kind}"),
                    )
                    .hint = Some(format!(
                        "delete the `{name}:` section, or set `type: {section_kind}`"
                    ));
                }
                _ => {}
            }
        }
        if let Some(wg) = tunnel
            .wireguard
            .as_ref()
            .filter(|_| kind == TunnelType::WireGuard)
        {
            self.tunnel_interface(config, &wg.interface, "tunnel.wireguard.interface");
            if self.secret_file(&wg.private_key_file, "tunnel.wireguard.private_key_file") {
                let key = "tunnel.wireguard.private_key_file";
                let path = &wg.private_key_file;
                match std::fs::read_to_string(&path.value) {
                    Ok(text) => {
                        if let Err(why) = super::scalar::parse_wg_key(&text) {
                            self.error(
                                path.loc,
                                key,
                                format!("{} is not a WireGuard private key: {why}", path.display()),
                            )
                            .hint = Some(format!(
                                "make one with `oqs-edge wireguard keygen --out {}`",
                                path.display()
                            ));
                        }
                    }
                    Err(e) => {
                        self.error(
                            path.loc,
                            key,
                            format!("cannot read {}: {e}", path.display()),
                        );
                    }
                }
            }
            let addr = wg.address.value;
            let comparable = self.ok(&wg.address) && self.all_segment_addresses_ok(config);
            for (s, seg) in config.segments.iter().enumerate().filter(|_| comparable) {
                for (field, net) in segment_nets(seg) {
                    if overlaps(&net.trunc(), &addr.trunc()) {
                        self.error(
                            wg.address.loc,
                            "tunnel.wireguard.address",
                            format!(
                                "tunnel address {addr} overlaps segments[{s}].{field} ({})",
                                net.trunc()
                            ),
                        );
                    }
                }
            }
            if let Some(p) = config
                .closed_network
                .prefixes
                .iter()
                .filter(|p| self.ok(p) && self.ok(&wg.address))
                .find(|p| overlaps(&p.trunc(), &addr.trunc()))
            {
                self.error(
                    wg.address.loc,
                    "tunnel.wireguard.address",
                    format!("tunnel address {addr} overlaps closed prefix {}", p.value),
                )
                .hint = Some(
                    "the router's tunnel address is its own, outside the closed prefixes".into(),
                );
            }
            if let Some(port) = &wg.listen_port {
                if port.value == 0 {
                    self.error(
                        port.loc,
                        "tunnel.wireguard.listen_port",
                        "port 0 is not a port",
                    )
                    .hint = Some("leave `listen_port` out for a random port".into());
                }
            }
            if let Some(ka) = &wg.peer.persistent_keepalive {
                if ka.value.0.as_secs() == 0 || ka.value.0.as_secs() > 65535 {
                    self.error(
                        ka.loc,
                        "tunnel.wireguard.peer.persistent_keepalive",
                        "keepalive must be between 1s and 65535s",
                    )
                    .hint = Some(
                        "25s keeps NAT mappings open; leave it out to switch keepalives off".into(),
                    );
                }
            }
        }
        if let Some(ipsec) = tunnel.ipsec.as_ref().filter(|_| kind == TunnelType::Ipsec) {
            self.absolute(&ipsec.vici_socket, "tunnel.ipsec.vici_socket");
            self.ipsec_gateways(ipsec);
            for (value, key) in [
                (&ipsec.local_id, "local_id"),
                (&ipsec.remote_id, "remote_id"),
            ] {
                if value.trim().is_empty() {
                    self.error(
                        value.loc,
                        format!("tunnel.ipsec.{key}"),
                        "an IKE identity cannot be empty",
                    )
                    .hint = Some(
                        "use the identity your provider gave, e.g. a host name or the WAN address"
                            .into(),
                    );
                }
            }
            let auth = &ipsec.auth;
            match (&auth.psk_file, &auth.certificate) {
                (Some(psk), None) => {
                    self.secret_file(psk, "tunnel.ipsec.auth.psk_file");
                }
                (None, Some(cert)) => {
                    self.public_file(&cert.cert, "tunnel.ipsec.auth.certificate.cert");
                    self.secret_file(&cert.key, "tunnel.ipsec.auth.certificate.key");
                    self.public_file(&cert.ca, "tunnel.ipsec.auth.certificate.ca");
                }
                (Some(_), Some(_)) => {
                    self.error(
                        auth.loc,
                        "tunnel.ipsec.auth",
                        "IPsec auth has both `psk_file` and `certificate`",
                    )
                    .hint = Some("keep exactly one: the method your provider uses".into());
                }
                (None, None) => {
                    self.error(auth.loc, "tunnel.ipsec.auth", "IPsec auth has no method")
                        .hint = Some("add `psk_file:` or `certificate: { cert, key, ca }`".into());
                }
            }
            for (list, key) in [
                (&ipsec.ike_proposals, "ike_proposals"),
                (&ipsec.esp_proposals, "esp_proposals"),
            ] {
                if list.is_empty() {
                    self.error(
                        ipsec.loc,
                        format!("tunnel.ipsec.{key}"),
                        format!("`{key}` is empty"),
                    )
                    .hint = Some(
                        "leave the key out for the default, or list your provider's proposals"
                            .into(),
                    );
                }
            }
            for (list, key, kind) in [
                (
                    &ipsec.ike_proposals,
                    "ike_proposals",
                    super::proposal::Kind::Ike,
                ),
                (
                    &ipsec.esp_proposals,
                    "esp_proposals",
                    super::proposal::Kind::Esp,
                ),
            ] {
                for (i, entry) in list.iter().enumerate() {
                    if let Some((message, hint)) = super::proposal::problem(entry, kind) {
                        self.error(entry.loc, format!("tunnel.ipsec.{key}[{i}]"), message)
                            .hint = Some(hint);
                    }
                }
            }
            if let (Some(local), Ok(remote)) = (
                &ipsec.local_address,
                ipsec.remote_address.first().parse::<IpAddr>(),
            ) {
                if local.is_ipv4() != remote.is_ipv4() {
                    self.error(
                        local.loc,
                        "tunnel.ipsec.local_address",
                        format!(
                            "local address {} and gateway {remote} are of different IP families",
                            local.value
                        ),
                    )
                    .hint = Some(
                        "use the router's WAN address of the gateway's family, or leave local_address out"
                            .into(),
                    );
                }
            }
            if ipsec.dpd_delay.0.is_zero() {
                self.error(
                    ipsec.dpd_delay.loc,
                    "tunnel.ipsec.dpd_delay",
                    "dead peer detection needs a delay above 0s",
                );
            }
        }
        if let Some(vpn) = tunnel.ip_vpn.as_ref().filter(|_| kind == TunnelType::IpVpn) {
            let gw = vpn.gateway.value;
            for prefix in config.closed_network.prefixes.iter().filter(|p| self.ok(p)) {
                if matches!(prefix.value, IpNet::V4(_)) != gw.is_ipv4() {
                    self.error(vpn.gateway.loc, "tunnel.ip_vpn.gateway", format!("gateway {gw} cannot be the next hop of closed prefix {} (another IP family)", prefix.value))
                        .hint = Some("use a gateway of the same family as the closed prefixes".into());
                    break;
                }
            }
        }
    }

    fn tunnel_interface(&mut self, config: &Config, name: &At<super::scalar::IfName>, key: &str) {
        if name.value == config.wan.interface.value
            || config
                .segments
                .iter()
                .any(|s| s.interface.value == name.value)
        {
            self.error(
                name.loc,
                key,
                format!(
                    "interface `{}` is already a LAN or WAN interface",
                    name.value
                ),
            )
            .hint = Some("the tunnel gets an interface of its own, e.g. oqs-wg0".into());
        }
    }

    fn client_certificates(&mut self, config: &Config) {
        let mut names: HashMap<&str, Loc> = HashMap::new();
        for (i, cert) in config.client_certificates.iter().enumerate() {
            let key = |field: &str| format!("client_certificates[{i}].{field}");
            if let Some(first) = names.insert(&cert.name, cert.name.loc) {
                self.error(
                    cert.name.loc,
                    key("name"),
                    format!("certificate name `{}` is used twice", *cert.name),
                )
                .hint = Some(format!("the first is at line {}", first.line));
            }
            match (&cert.pkcs12, &cert.cert, &cert.key) {
                (Some(p12), None, None) => {
                    // A PKCS#12 holds the private key: as secret as the password.
                    let p12_ok = self.secret_file(p12, &key("pkcs12"));
                    match &cert.password_file {
                        Some(pw) => {
                            if self.secret_file(pw, &key("password_file")) && p12_ok {
                                let before = self.found.len();
                                self.open_pkcs12(p12, pw, i, &config.site.institution_code);
                                self.fallback(config, &cert.name, before);
                            }
                        }
                        None => {
                            self.error(
                                cert.loc,
                                key("password_file"),
                                "a PKCS#12 certificate needs `password_file`",
                            )
                            .hint = Some(
                                "put the .p12 password in a file with mode 0600 and name it here"
                                    .into(),
                            );
                        }
                    }
                }
                (None, Some(pem), Some(pem_key)) => {
                    self.public_file(pem, &key("cert"));
                    if self.secret_file(pem_key, &key("key")) && self.files == FileChecks::On {
                        let before = self.found.len();
                        self.open_pem(pem, pem_key, i, &config.site.institution_code);
                        self.fallback(config, &cert.name, before);
                    }
                    if let Some(pw) = &cert.password_file {
                        self.error(
                            pw.loc,
                            key("password_file"),
                            "`password_file` is for PKCS#12 files; a PEM key has none",
                        )
                        .hint = Some("delete this line".into());
                    }
                }
                (None, None, None) => {
                    self.error(
                        cert.loc,
                        key("pkcs12"),
                        format!("certificate `{}` names no file", *cert.name),
                    )
                    .hint = Some("add `pkcs12:` + `password_file:`, or `cert:` + `key:`".into());
                }
                _ => {
                    self.error(
                        cert.loc,
                        key("pkcs12"),
                        format!(
                            "certificate `{}` must be either `pkcs12` or `cert` + `key`",
                            *cert.name
                        ),
                    )
                    .hint = Some(
                        "keep one form: `pkcs12:` + `password_file:`, or `cert:` + `key:`".into(),
                    );
                }
            }
        }
        for cert in config.client_certificates.iter() {
            let used = config.proxy.as_ref().is_some_and(|p| {
                p.routes
                    .iter()
                    .any(|r| r.client_certificate.contains(&cert.name))
            });
            if !used {
                self.warning(
                    cert.name.loc,
                    "client_certificates",
                    format!(
                        "certificate `{}` is not used by any proxy route",
                        *cert.name
                    ),
                );
            }
        }
    }

    fn proxy(&mut self, config: &Config) {
        let Some(proxy) = &config.proxy else { return };
        if self.absolute(&proxy.local_ca_dir, "proxy.local_ca_dir") {
            self.local_ca_dir(proxy);
        }
        let router_addrs: Vec<IpAddr> = config
            .segments
            .iter()
            .flat_map(|s| segment_nets(s).into_iter().map(|(_, n)| n.addr()))
            .collect();
        let mut names: HashMap<&str, Loc> = HashMap::new();
        let mut listens: BTreeMap<std::net::SocketAddr, Loc> = BTreeMap::new();
        for (i, route) in proxy.routes.iter().enumerate() {
            let key = |field: &str| format!("proxy.routes[{i}].{field}");
            if let Some(first) = names.insert(&route.name, route.name.loc) {
                self.error(
                    route.name.loc,
                    key("name"),
                    format!("route name `{}` is used twice", *route.name),
                )
                .hint = Some(format!("the first is at line {}", first.line));
            }
            let listen = route.listen.value;
            if self.all_segment_addresses_ok(config) && !router_addrs.contains(&listen.ip()) {
                let list = router_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    route.listen.loc,
                    key("listen"),
                    format!(
                        "{} is not one of the router's segment addresses",
                        listen.ip()
                    ),
                )
                .hint = Some(format!("listen on one of: {list}"));
            }
            if !self.ok(&route.listen) {
            } else if let Some(first) = listens.insert(listen, route.listen.loc) {
                self.error(
                    route.listen.loc,
                    key("listen"),
                    format!(
                        "{listen} is already used by another route (line {})",
                        first.line
                    ),
                );
            }
            let chosen = route.client_certificate.names();
            if chosen.is_empty() {
                self.error(
                    route.client_certificate.loc,
                    key("client_certificate"),
                    "the list of client certificates is empty",
                )
                .hint = Some("name at least one `client_certificates` entry".into());
            }
            let mut seen: HashMap<&str, Loc> = HashMap::new();
            for name in &chosen {
                if let Some(first) = seen.insert(name.as_str(), name.loc) {
                    self.error(
                        name.loc,
                        key("client_certificate"),
                        format!("`{}` is listed twice", **name),
                    )
                    .hint = Some(format!("the first is at line {}", first.line));
                }
                if config.client_certificates.iter().any(|c| *c.name == **name) {
                    continue;
                }
                let known: Vec<&str> = config
                    .client_certificates
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                let d = self.error(
                    name.loc,
                    key("client_certificate"),
                    format!("no client certificate is named `{}`", **name),
                );
                d.hint = Some(match super::scalar::closest(name, known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if known.is_empty() => "add it under `client_certificates:`".into(),
                    None => format!("defined certificates: {}", known.join(", ")),
                });
            }
            self.public_file(&route.server_ca, &key("server_ca"));
            if let Some(path) = &route.health_path {
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    self.error(
                        path.loc,
                        key("health_path"),
                        format!("`{}` is not a request path", path.value),
                    )
                    .hint = Some("a path starting with `/` and without spaces, e.g. `/`".into());
                }
            }
            if route.allow.is_empty() {
                self.error(route.allow.loc, key("allow"), "nobody may use this route")
                    .hint =
                    Some("list the segments (or CIDRs) whose PCs use it, e.g. [clinic]".into());
            }
            for (j, entry) in route.allow.iter().enumerate() {
                self.source(config, entry, &format!("proxy.routes[{i}].allow[{j}]"));
            }
            // Proxy clients on a segment that also reaches the internet.
            for seg in config.segments.iter() {
                let open = self.ok(&seg.role)
                    && seg.role.value == Role::Clinic
                    && seg
                        .internet
                        .as_ref()
                        .is_some_and(|a| a.value == InternetAccess::Allow);
                let holds_clients = route.allow.iter().any(|a| {
                    *a.value == *seg.name
                        || a.parse::<IpNet>().is_ok_and(|n| {
                            segment_nets(seg)
                                .iter()
                                .any(|(_, s)| overlaps(&s.trunc(), &n))
                        })
                });
                if open && holds_clients {
                    self.warning(route.allow.loc, key("allow"), format!("segment `{}` reaches the internet and also uses route `{}`: a compromised PC there can use the clinic's certificate", *seg.name, *route.name))
                        .hint = Some(format!("consider `internet: deny` for `{}`, or a separate segment for proxy clients", *seg.name));
                }
            }
        }
    }

    fn management(&mut self, config: &Config) {
        let Some(m) = &config.management else { return };
        for (i, entry) in m.ssh_from.iter().enumerate() {
            self.source(config, entry, &format!("management.ssh_from[{i}]"));
        }
    }

    fn control(&mut self, config: &Config) {
        let Some(control) = &config.control else {
            return;
        };
        self.absolute(&control.socket, "control.socket");
        for (i, entry) in control.metrics_allow.iter().enumerate() {
            self.source(config, entry, &format!("control.metrics_allow[{i}]"));
        }
        let Some(metrics) = &control.metrics else {
            if let Some(first) = control.metrics_allow.first() {
                self.warning(
                    first.loc,
                    "control.metrics_allow",
                    "metrics_allow has no effect without `metrics`",
                )
                .hint = Some(
                    "add `metrics: 127.0.0.1:9469` (or a segment address) under `control:`".into(),
                );
            }
            return;
        };
        let router_addrs: Vec<IpAddr> = config
            .segments
            .iter()
            .flat_map(|s| segment_nets(s).into_iter().map(|(_, n)| n.addr()))
            .collect();
        let ip = metrics.value.ip();
        if !ip.is_loopback() && self.all_segment_addresses_ok(config) && !router_addrs.contains(&ip)
        {
            let list: Vec<String> = router_addrs.iter().map(ToString::to_string).collect();
            self.error(
                metrics.loc,
                "control.metrics",
                format!("{ip} is neither loopback nor one of the router's segment addresses"),
            )
            .hint = Some(format!(
                "listen on 127.0.0.1 or one of: {}; the WAN is never offered metrics",
                list.join(", ")
            ));
        }
        let proxy_listens = config.proxy.iter().flat_map(|p| p.routes.iter());
        for route in proxy_listens {
            if route.listen.value == metrics.value {
                self.error(
                    metrics.loc,
                    "control.metrics",
                    format!(
                        "{} is already the listen address of proxy route `{}` (line {})",
                        metrics.value, *route.name, route.listen.loc.line
                    ),
                )
                .hint = Some("give metrics a port of its own, e.g. 9469".into());
            }
        }
    }

    /// `control.status_page` listens on a segment address; its allow list names segments or
    /// CIDRs.
    fn status_page(&mut self, config: &Config) {
        let Some(control) = &config.control else {
            return;
        };
        if let Some(allow) = &control.status_page_allow {
            if control.status_page.is_none() {
                self.error(
                    allow.loc,
                    "control.status_page_allow",
                    "there is no status page to allow",
                )
                .hint = Some("add control.status_page: ADDRESS:PORT, or remove this key".into());
            }
            if allow.is_empty() {
                self.error(allow.loc, "control.status_page_allow", "nobody may open the status page")
                    .hint = Some("list the segments whose PCs may open it, e.g. [clinic], or remove the key (default: the clinic segments)".into());
            }
            for (j, entry) in allow.iter().enumerate() {
                self.source(config, entry, &format!("control.status_page_allow[{j}]"));
            }
        }
        let Some(page) = &control.status_page else {
            return;
        };
        let router_addrs: Vec<IpAddr> = config
            .segments
            .iter()
            .flat_map(|s| segment_nets(s).into_iter().map(|(_, n)| n.addr()))
            .collect();
        if self.all_segment_addresses_ok(config) && !router_addrs.contains(&page.ip()) {
            let list = router_addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            self.error(
                page.loc,
                "control.status_page",
                format!("{} is not one of the router's segment addresses", page.ip()),
            )
            .hint = Some(format!(
                "serve it on one of: {list} (the page is for the LAN only)"
            ));
        }
        let taken = config
            .proxy
            .iter()
            .flat_map(|p| p.routes.iter())
            .find(|r| r.listen.value == page.value);
        if let Some(route) = taken {
            self.error(
                page.loc,
                "control.status_page",
                format!(
                    "{} is already the proxy route `{}`'s listen address",
                    page.value, *route.name
                ),
            )
            .hint = Some("use another port".into());
        }
    }

    /// A source in an `allow`-style list: a segment name or a CIDR.
    fn source(&mut self, config: &Config, entry: &At<String>, key: &str) {
        if config.segments.iter().any(|s| *s.name == **entry) {
            return;
        }
        match entry.parse::<IpNet>() {
            Ok(net) if net.addr() != net.network() => {
                self.error(entry.loc, key, format!("{net} has host bits set"))
                    .hint = Some(format!("did you mean {}?", net.trunc()));
            }
            Ok(_) => {}
            Err(_) => {
                let names: Vec<&str> = config.segments.iter().map(|s| s.name.as_str()).collect();
                let d = self.error(
                    entry.loc,
                    key,
                    format!("`{}` is neither a segment name nor a CIDR", **entry),
                );
                d.hint = Some(match super::scalar::closest(entry, names.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!(
                        "segments: {}; or a CIDR like 192.168.60.0/24",
                        names.join(", ")
                    ),
                });
            }
        }
    }

    fn absolute(&mut self, path: &At<std::path::PathBuf>, key: &str) -> bool {
        if path.is_absolute() {
            return true;
        }
        self.error(
            path.loc,
            key,
            format!("`{}` is not an absolute path", path.display()),
        )
        .hint = Some(
            "the daemon does not run in your directory: write the full path, starting with /"
                .into(),
        );
        false
    }

    /// A file anyone on the router may read (certificates, CAs): it must exist.
    fn public_file(&mut self, path: &At<std::path::PathBuf>, key: &str) {
        if self.absolute(path, key) && self.files == FileChecks::On {
            self.readable(path, key);
        }
    }

    /// A certificate every route of which lists another one too (a new certificate before the
    /// old, an old one kept for the change of 医療機関等コード): what is wrong with its files (found
    /// since `before`) is a warning, as the proxy presents the next one in the list meanwhile.
    fn fallback(&mut self, config: &Config, name: &str, before: usize) {
        let routes: Vec<&ProxyRoute> = config
            .proxy
            .iter()
            .flat_map(|p| p.routes.iter())
            .filter(|r| r.client_certificate.contains(name))
            .map(|r| &r.value)
            .collect();
        let covered = !routes.is_empty()
            && routes.iter().all(|r| {
                r.client_certificate
                    .value
                    .0
                    .iter()
                    .any(|n| *n.value != *name)
            });
        if !covered {
            return;
        }
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        for d in &mut self.found[before..] {
            if d.severity == Severity::Error {
                d.severity = Severity::Warning;
                d.hint = Some(format!(
                    "{}route {} presents the next certificate of its list until this one can be used",
                    d.hint.as_deref().map(|h| format!("{h}; ")).unwrap_or_default(),
                    names.join(", ")
                ));
            }
        }
    }

    /// Open a PKCS#12 with its password: wrong password, damaged file, key not matching the
    /// certificate, expiry and the CN are found here, before `run` or `reload`.
    fn open_pkcs12(
        &mut self,
        p12: &At<std::path::PathBuf>,
        password_file: &At<std::path::PathBuf>,
        index: usize,
        institution_code: &str,
    ) {
        let key = format!("client_certificates[{index}].pkcs12");
        let password = match crate::pki::read_password_file(&password_file.value) {
            Ok(password) => password,
            Err(e) => {
                self.error(
                    password_file.loc,
                    format!("client_certificates[{index}].password_file"),
                    e.to_string(),
                );
                return;
            }
        };
        let loaded = match crate::pki::load_pkcs12(&p12.value, &password) {
            Ok(loaded) => loaded,
            Err(e) => {
                let hint = match e {
                    crate::pki::PkiError::WrongPassword { .. } => format!(
                        "put the password the certificate came with in {} (one line)",
                        password_file.display()
                    ),
                    crate::pki::PkiError::NotPkcs12 { .. } => {
                        "name the .p12 (or .pfx) file the certificate came in".into()
                    }
                    _ => "export the certificate again with its own key".into(),
                };
                self.error(p12.loc, key, e.to_string()).hint = Some(hint);
                return;
            }
        };
        self.certificate_findings(&loaded, p12.loc, &key, institution_code);
    }

    /// Validity and CN of a loaded certificate, reported at `loc`.
    fn certificate_findings(
        &mut self,
        loaded: &crate::pki::ClientCertificate,
        loc: Loc,
        key: &str,
        institution_code: &str,
    ) {
        for finding in crate::pki::check(loaded, std::time::SystemTime::now(), institution_code) {
            self.push(
                Diagnostic {
                    severity: finding.severity,
                    ..Diagnostic::error(loc, finding.message)
                }
                .key(key.to_owned()),
            );
        }
    }

    /// Open a PEM certificate and key: the same checks as for a PKCS#12.
    fn open_pem(
        &mut self,
        cert: &At<std::path::PathBuf>,
        key_file: &At<std::path::PathBuf>,
        index: usize,
        institution_code: &str,
    ) {
        let key = format!("client_certificates[{index}].cert");
        let loaded = match crate::pki::load_pem(&cert.value, &key_file.value) {
            Ok(loaded) => loaded,
            Err(e) => {
                let (loc, key) = match &e {
                    crate::pki::PkiError::BadKey { path, .. } if *path == key_file.value => {
                        (key_file.loc, format!("client_certificates[{index}].key"))
                    }
                    _ => (cert.loc, key),
                };
                self.error(loc, key, e.to_string()).hint =
                    Some("name the certificate and the private key that belongs to it".into());
                return;
            }
        };
        self.certificate_findings(&loaded, cert.loc, &key, institution_code);
    }

    /// The local CA's directory holds the LAN CA's private key: `run` refuses the `local-ca`
    /// routes when others can read or enter it, so `check` says so first. A directory that
    /// does not exist yet is fine: `run` creates it private.
    fn local_ca_dir(&mut self, proxy: &Node<Proxy>) {
        let used = proxy
            .routes
            .iter()
            .any(|r| r.lan_tls.value == LanTls::LocalCa);
        if self.files == FileChecks::Off || !used {
            return;
        }
        let dir = &proxy.local_ca_dir;
        let Ok(meta) = std::fs::metadata(&dir.value) else {
            return;
        };
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_dir() || mode & 0o077 == 0 {
            return;
        }
        let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        // The default directory is not written in the file: blame the proxy section.
        let loc = if dir.loc == Loc::default() {
            proxy.loc
        } else {
            dir.loc
        };
        self.error(
            loc,
            "proxy.local_ca_dir",
            format!(
                "the local CA directory {} can be read or entered by {who} (mode {mode:04o}); it holds the LAN CA's private key, and `run` refuses the local-ca routes",
                dir.value.display()
            ),
        )
        .hint = Some(format!("run: chmod 700 {}", dir.value.display()));
    }

    /// A secret (key, PSK, password): it must exist and be private to its owner. True when
    /// the file was checked and is fine.
    fn secret_file(&mut self, path: &At<std::path::PathBuf>, key: &str) -> bool {
        if !self.absolute(path, key) || self.files == FileChecks::Off {
            return false;
        }
        let Some(meta) = self.readable(path, key) else {
            return false;
        };
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            };
            self.error(
                path.loc,
                key,
                format!(
                    "secret file {} can be read or written by {who} (mode {mode:04o})",
                    path.display()
                ),
            )
            .hint = Some(format!("run: chmod 600 {}", path.display()));
            return false;
        }
        true
    }

    fn readable(&mut self, path: &At<std::path::PathBuf>, key: &str) -> Option<std::fs::Metadata> {
        let shown = path.display();
        match std::fs::metadata(&path.value) {
            Ok(meta) if !meta.is_file() => {
                self.error(path.loc, key, format!("{shown} is not a regular file"));
                None
            }
            Ok(meta) => match std::fs::File::open(&path.value) {
                Ok(_) => Some(meta),
                Err(e) => {
                    self.error(path.loc, key, format!("cannot open {shown}: {e}"));
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.error(path.loc, key, format!("{shown} does not exist"))
                    .hint = Some("create it or correct the path (`check --no-files` skips file checks when linting away from the router)".into());
                None
            }
            Err(e) => {
                self.error(path.loc, key, format!("cannot read {shown}: {e}"));
                None
            }
        }
    }
}

/// The router's addresses on a segment, with the key each came from.
fn segment_nets(seg: &super::model::Segment) -> Vec<(&'static str, IpNet)> {
    let mut v = vec![("address", seg.address.value)];
    if let Some(net) = seg.address6.as_ref().and_then(|a| a.fixed()) {
        v.push(("address6", net));
    }
    v
}

pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

// Placeholders: the config the package ships (/etc/oqs-edge/config.yaml) holds `<…>` where
// each site's own value goes (`institution_code: "<医療機関等コード>"`). Such a value is never a
// typo to correct but a blank to fill in, so `check` says exactly that, naming the key, and the
// daemon does not start on the example until the installer has filled it in.

/// Whether a scalar is a placeholder: `<` text `>` with no other angle brackets.
pub(crate) fn is_placeholder(text: &str) -> bool {
    text.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .is_some_and(|inner| !inner.trim().is_empty() && !inner.contains(['<', '>']))
}

/// The error for the placeholder `placeholder` at `loc` of `source`.
pub(crate) fn fill_in(source: &str, loc: Loc, placeholder: &str) -> Diagnostic {
    let key = key_path(source, loc.line);
    let message = match &key {
        Some(key) => {
            format!("fill in the site's value for `{key}` (still the placeholder {placeholder})")
        }
        None => format!("fill in the site's value here (still the placeholder {placeholder})"),
    };
    Diagnostic::error(loc, message).hint(format!(
        "replace {placeholder} with this site's value; the comment next to it says what goes there"
    ))
}

/// The dotted path of the key on `line` (1-based) of a block-style YAML file, e.g.
/// `segments[0].interface`, read from the indentation of the lines above it.
fn key_path(source: &str, line: u32) -> Option<String> {
    /// (column of the `- ` when the line is a list item, column of its key, the key)
    fn parse(line: &str) -> Option<(Option<usize>, usize, Option<&str>)> {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let indent = line.len() - trimmed.len();
        let (dash, rest, column) = match trimmed.strip_prefix("- ") {
            Some(rest) => {
                let inner = rest.trim_start();
                (Some(indent), inner, indent + 2 + rest.len() - inner.len())
            }
            None => (None, trimmed, indent),
        };
        let key = rest
            .split_once(':')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.contains([' ', '"', '[', '{']));
        Some((dash, column, key))
    }
    let lines: Vec<&str> = source.lines().collect();
    // How many items of the list whose `- ` stands at column `dash` come before line `i`.
    let position = |i: usize, dash: usize| {
        let mut position = 0;
        for above in lines[..i].iter().rev() {
            match parse(above) {
                Some((Some(d), _, _)) if d == dash => position += 1,
                Some((_, c, _)) if c <= dash => break,
                _ => {}
            }
        }
        position
    };
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let (own_dash, mut column, own) = parse(lines.get(index)?)?;
    let mut path = vec![own?.to_owned()];
    if let Some(dash) = own_dash {
        path[0] = format!("[{}].{}", position(index, dash), path[0]);
        column = dash;
    }
    let mut i = index;
    while column > 0 && i > 0 {
        i -= 1;
        let Some((dash, key_column, key)) = parse(lines[i]) else {
            continue;
        };
        match dash {
            // The list item holding us: its place among its siblings, then the list's key.
            Some(dash) if dash < column => {
                if let Some(last) = path.last_mut() {
                    *last = format!("[{}].{last}", position(i, dash));
                }
                column = dash;
            }
            _ if key_column < column => {
                let key = key?;
                match path.last_mut() {
                    Some(last) if last.starts_with('[') => *last = format!("{key}{last}"),
                    _ => path.push(key.to_owned()),
                }
                column = key_column;
            }
            _ => {}
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// Where the key of the section whose value starts at `value` is written: on the same line
/// before it (`ipsec: {…}`), or the nearest less indented line above (`ipsec:` then its keys).
/// `value` itself when the text does not read that way.
pub(super) fn section_key(source: &str, value: Loc, name: &str) -> Loc {
    let lines: Vec<&str> = source.split('\n').collect();
    let Some(index) = (value.line as usize).checked_sub(1) else {
        return value;
    };
    let written = |line: &str| {
        let body = line.trim_start();
        body.strip_prefix(name)
            .or_else(|| body.strip_prefix(&format!("\"{name}\"")))
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let column = value.column.saturating_sub(1) as usize;
    if let Some(line) = lines.get(index) {
        let before: String = line.chars().take(column).collect();
        if let Some(at) = before.find(&format!("{name}:")) {
            let column = before[..at].chars().count() as u32 + 1;
            return Loc { column, ..value };
        }
    }
    for (i, line) in lines.iter().enumerate().take(index).rev() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.chars().count() - body.chars().count();
        if indent >= column {
            continue;
        }
        if written(line) {
            return Loc {
                line: i as u32 + 1,
                column: indent as u32 + 1,
            };
        }
        break;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{check_source, FileChecks};
    use std::path::Path;

    /// The config the package installs as /etc/oqs-edge/config.yaml.
    const SHIPPED: &str = include_str!("../../../packaging/config.yaml");

    #[test]
    fn placeholders_are_recognised_and_nothing_else() {
        assert!(is_placeholder("<医療機関等コード>"));
        assert!(is_placeholder("<WAN側のインタフェース名>"));
        assert!(!is_placeholder("<>"));
        assert!(!is_placeholder("< >"));
        assert!(!is_placeholder("lan0"));
        assert!(!is_placeholder("<a> <b>"));
        assert!(!is_placeholder("192.168.50.1/24"));
    }

    #[test]
    fn key_paths_follow_sections_and_list_items() {
        let yaml = "site:\n  name: x\nsegments:\n  - name: a\n    interface: <x>\n  # c\n  - name: b\n\n    interface: <y>\ntunnel:\n  ip_vpn:\n    gateway: <z>\n";
        assert_eq!(key_path(yaml, 2).as_deref(), Some("site.name"));
        assert_eq!(key_path(yaml, 5).as_deref(), Some("segments[0].interface"));
        assert_eq!(key_path(yaml, 7).as_deref(), Some("segments[1].name"));
        assert_eq!(key_path(yaml, 9).as_deref(), Some("segments[1].interface"));
        assert_eq!(key_path(yaml, 12).as_deref(), Some("tunnel.ip_vpn.gateway"));
    }

    #[test]
    fn the_shipped_config_asks_for_each_site_value_by_key() {
        let path = Path::new("/etc/oqs-edge/config.yaml");
        let checked = check_source(path, SHIPPED, FileChecks::Off);
        assert!(!checked.report.valid);
        let messages: Vec<&str> = checked
            .report
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        for key in [
            "site.institution_code",
            "site.name",
            "segments[0].interface",
            "segments[1].interface",
            "wan.interface",
            "closed_network.prefixes",
            "tunnel.ip_vpn.gateway",
        ] {
            let wanted = format!("fill in the site's value for `{key}`");
            assert!(
                messages.iter().any(|m| m.starts_with(&wanted)),
                "no {wanted:?} in {messages:#?}"
            );
        }
        // Only the blanks are reported: no follow-on errors about the placeholder values.
        assert!(
            messages
                .iter()
                .all(|m| m.starts_with("fill in the site's value for")),
            "{messages:#?}"
        );
        let text = checked.report.render(SHIPPED);
        assert!(
            text.contains("= fix: replace <医療機関等コード> with this site's value"),
            "{text}"
        );
    }

    #[test]
    fn the_shipped_config_passes_once_filled_in() {
        let filled = SHIPPED
            .replace("<医療機関等コード>", "1312345678")
            .replace("<医療機関名>", "樹中歯科医院")
            .replace("<資格確認端末側のインタフェース名>", "lan0")
            .replace("<院内LAN側のインタフェース名>", "lan1")
            .replace("<WAN側のインタフェース名>", "wan0")
            .replace("<閉域網のプレフィックス>", "10.200.0.0/24")
            .replace("<閉域網ゲートウェイのアドレス>", "198.51.100.1");
        let checked = check_source(Path::new("config.yaml"), &filled, FileChecks::On);
        assert!(
            checked.report.valid && checked.report.warnings == 0,
            "{}",
            checked.report.render(&filled)
        );
    }
}
