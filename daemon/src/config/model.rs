//! The config file as written: every key of the design's config contract.
//!
//! Key names are the contract with operators; add keys, never rename them. Each struct refuses
//! unknown keys. Scalars are [`At`] (value + location) so checks can point at the key at fault.
//! This is the raw, unchecked form: the rest of the daemon sees only [`super::ValidConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;

use super::scalar::{
    keyword_enum, Address6, At, DhcpRange, DnsZone, Duration, Gateways, HostPort, IfName, MacAddr,
    Node, OneOrMore, WgKey,
};

/// oqs-edge configuration (オンライン資格確認 / オンライン請求 router).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "oqs-edge configuration")]
pub struct Config {
    /// Config format version; always 1.
    pub version: At<u32>,
    pub site: Node<Site>,
    /// LAN segments, one interface or VLAN each.
    pub segments: Node<Vec<Node<Segment>>>,
    pub wan: Node<Wan>,
    pub closed_network: Node<ClosedNetwork>,
    pub tunnel: Node<Tunnel>,
    /// Client certificates (電子証明書) presented to the upstream endpoints.
    #[serde(default)]
    pub client_certificates: Vec<Node<ClientCertificate>>,
    pub proxy: Option<Node<Proxy>>,
    #[serde(default)]
    pub control: Option<Node<Control>>,
    /// The router's DNS relay (names of the closed zones go to `closed_network.dns`).
    #[serde(default)]
    pub dns: Option<Node<Dns>>,
    /// Who may reach the router itself for administration (SSH).
    #[serde(default)]
    pub management: Option<Node<Management>>,
}

/// The institution this router serves.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// 医療機関等コード: the 10-digit institution code, as a quoted string.
    pub institution_code: At<String>,
    /// The institution's name, for status and logs.
    #[serde(default)]
    pub name: Option<At<String>>,
}

keyword_enum! {
    /// What a LAN segment is for.
    pub enum Role ("segment role") {
        /// 資格確認端末: the eligibility terminal's segment; reaches the closed network only.
        Eligibility = "eligibility",
        /// レセコン / 電子カルテ: the clinic's own LAN.
        Clinic = "clinic",
    }
}

keyword_enum! {
    /// Whether a clinic segment may reach the internet.
    pub enum InternetAccess ("internet setting") {
        Deny = "deny",
        Allow = "allow",
    }
}

/// A LAN segment: one interface (or VLAN interface) of the router.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// A short name, used by `allow` lists and in status.
    pub name: At<String>,
    /// The router's interface on this segment, e.g. lan0 or eth1.10.
    pub interface: At<IfName>,
    /// The router's address on this segment with the prefix length, e.g. 192.168.50.1/24.
    pub address: At<IpNet>,
    /// An optional IPv6 address of the router on this segment, e.g. fd00:50::1/64, or
    /// `delegated[:N]`: subnet N of the prefix the WAN's line delegates (needs `wan.ipv6: ra`).
    #[serde(default)]
    pub address6: Option<At<Address6>>,
    /// eligibility (資格確認端末) or clinic (レセコン / 電子カルテ).
    pub role: At<Role>,
    /// Required for clinic segments: allow or deny internet access. Not allowed for eligibility.
    #[serde(default)]
    pub internet: Option<At<InternetAccess>>,
    /// Optional: oqs-edge serves DHCPv4 on this segment (through dnsmasq).
    #[serde(default)]
    pub dhcp: Option<Node<Dhcp>>,
}

/// The DHCPv4 service on one segment: clients get an address, the router as gateway and as DNS.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dhcp {
    /// The addresses handed out, inside the segment and not the router's, e.g.
    /// 192.168.50.100-192.168.50.199.
    pub range: At<DhcpRange>,
    /// How long a lease lasts; 12h when absent.
    #[serde(default)]
    pub lease: Option<At<Duration>>,
    /// Fixed leases: this MAC always gets this address (which may lie outside the range).
    #[serde(default)]
    pub hosts: Vec<Node<DhcpHost>>,
}

/// A fixed lease, e.g. for the eligibility PC (資格確認端末).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpHost {
    /// The host's name, given to it with the lease and shown in status.
    pub name: At<String>,
    /// Its MAC address, in quotes: "52:54:00:12:34:56".
    pub mac: At<MacAddr>,
    /// The address it always gets: inside the segment, not the router's.
    pub address: At<IpAddr>,
}

keyword_enum! {
    /// How the WAN gets its IPv4 address.
    pub enum Ipv4Mode ("WAN ipv4 mode") {
        /// The OS addresses the WAN (as before oqs-edge did any); oqs-edge only filters.
        Os = "os",
        /// oqs-edge runs a DHCP client (dhcpcd) on the WAN.
        Dhcp = "dhcp",
        /// oqs-edge puts `address`, `gateway` and `dns` on the WAN.
        Static = "static",
    }
}

keyword_enum! {
    /// How the WAN gets its IPv6 addresses.
    pub enum Ipv6Mode ("WAN ipv6 mode") {
        /// The OS addresses the WAN; oqs-edge only filters.
        Os = "os",
        /// Router advertisements (SLAAC) and DHCPv6, a delegated prefix when offered (dhcpcd).
        Ra = "ra",
        /// oqs-edge puts `address6` and `gateway6` on the WAN.
        Static = "static",
    }
}

/// The router's uplink to the internet (or the carrier's line).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wan {
    /// The WAN interface, e.g. wan0 (or ppp0 made by the OS's pppd).
    pub interface: At<IfName>,
    /// dhcp, static or os (default os: the OS addresses the WAN, oqs-edge only filters).
    #[serde(default)]
    pub ipv4: Option<At<Ipv4Mode>>,
    /// `ipv4: static` only: the router's WAN address with its prefix, e.g. 198.51.100.2/24.
    #[serde(default)]
    pub address: Option<At<IpNet>>,
    /// `ipv4: static` only: the default gateway, inside `address`'s prefix.
    #[serde(default)]
    pub gateway: Option<At<IpAddr>>,
    /// Static modes only: the line's resolvers (with dhcp/ra the line's own are used).
    #[serde(default)]
    pub dns: Vec<At<IpAddr>>,
    /// ra, static or os (default os).
    #[serde(default)]
    pub ipv6: Option<At<Ipv6Mode>>,
    /// `ipv6: static` only: the router's IPv6 WAN address with its prefix, e.g. 2001:db8:1::2/64.
    #[serde(default)]
    pub address6: Option<At<IpNet>>,
    /// `ipv6: static` only: the IPv6 default gateway (link-local fe80:: is fine).
    #[serde(default)]
    pub gateway6: Option<At<IpAddr>>,
}

impl Wan {
    pub fn ipv4_mode(&self) -> Ipv4Mode {
        self.ipv4.as_ref().map_or(Ipv4Mode::Os, |m| m.value)
    }
    pub fn ipv6_mode(&self) -> Ipv6Mode {
        self.ipv6.as_ref().map_or(Ipv6Mode::Os, |m| m.value)
    }
    /// Whether oqs-edge runs dhcpcd on the WAN.
    pub fn runs_dhcp_client(&self) -> bool {
        self.ipv4_mode() == Ipv4Mode::Dhcp || self.ipv6_mode() == Ipv6Mode::Ra
    }
}

/// オンライン請求ネットワーク: what must only ever travel through the tunnel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosedNetwork {
    /// The closed network's prefixes (IPv4 and/or IPv6).
    pub prefixes: Node<Vec<At<IpNet>>>,
    /// Optional closed-network DNS resolvers.
    #[serde(default)]
    pub dns: Vec<At<IpAddr>>,
    /// The zones the closed DNS answers (e.g. onshikaku.org): names in them, and below them,
    /// are asked of `dns`, through the tunnel.
    #[serde(default)]
    pub dns_zones: Vec<At<DnsZone>>,
    /// Masquerade LAN sources toward the closed prefixes (v4 and v6) behind the router's
    /// address on the tunnel (or the WAN for ip-vpn); default false.
    #[serde(default)]
    pub nat: Option<At<bool>>,
}

impl ClosedNetwork {
    pub fn nat(&self) -> bool {
        self.nat.as_ref().is_some_and(|n| n.value)
    }
}

/// The router's DNS relay on each segment address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Resolvers for names outside the closed zones, asked only for segments with
    /// `internet: allow`.
    #[serde(default)]
    pub internet_servers: Vec<At<IpAddr>>,
}

keyword_enum! {
    /// How the closed network is reached.
    pub enum TunnelType ("tunnel type") {
        WireGuard = "wireguard",
        Ipsec = "ipsec",
        IpVpn = "ip-vpn",
    }
}

/// The tunnel to the closed network: `type` and the one matching section.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// wireguard, ipsec or ip-vpn; the section of the same name must be present.
    #[serde(rename = "type")]
    pub kind: At<TunnelType>,
    pub wireguard: Option<Node<WireGuard>>,
    pub ipsec: Option<Node<Ipsec>>,
    pub ip_vpn: Option<Node<IpVpn>>,
    /// A probe through the tunnel that decides when to switch gateways; without it the
    /// tunnel's own state decides.
    #[serde(default)]
    pub health: Option<Node<HealthCheck>>,
}

/// A TCP connect through the tunnel, from the router, to a closed-network server.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// address:port inside the closed prefixes, e.g. 10.200.0.10:443.
    pub target: At<SocketAddr>,
    /// Time between probes, e.g. 5s.
    pub interval: At<Duration>,
    /// Failed probes in a row before the active gateway is given up, e.g. 3.
    pub failures: At<u32>,
    /// How long the preferred gateway must answer before traffic moves back to it, e.g. 5m.
    pub failback_after: At<Duration>,
}

/// WireGuard through boringtun, inside the daemon.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireGuard {
    /// The tunnel interface oqs-edge creates, e.g. oqs-wg0.
    pub interface: At<IfName>,
    /// This router's private key (mode 0600); `oqs-edge wireguard keygen` makes one.
    pub private_key_file: At<PathBuf>,
    /// The router's tunnel address, e.g. 10.201.0.2/32.
    pub address: At<IpNet>,
    /// The local UDP port; a random one when absent.
    #[serde(default)]
    pub listen_port: Option<At<u16>>,
    pub peer: Node<WireGuardPeer>,
    /// Further concentrators in order of preference, used when `peer` fails; same allowed IPs.
    #[serde(default)]
    pub backup_peers: Vec<Node<WireGuardPeer>>,
}

/// The concentrator at the other end.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireGuardPeer {
    /// The concentrator's public key (base64, 44 characters).
    pub public_key: At<WgKey>,
    /// host:port of the concentrator.
    pub endpoint: At<HostPort>,
    /// Keepalive interval through NAT, e.g. 25s.
    #[serde(default)]
    pub persistent_keepalive: Option<At<Duration>>,
}

keyword_enum! {
    /// Where ESP is done.
    pub enum Dataplane ("IPsec dataplane") {
        /// The kernel's xfrm (policies + states).
        Kernel = "kernel",
        /// strongSwan's userspace ESP over the ipsec0 TUN interface.
        Libipsec = "libipsec",
    }
}

/// IPsec/IKEv2 through strongSwan's charon, driven over VICI.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipsec {
    /// charon's VICI socket.
    #[serde(default = "default_vici_socket")]
    #[schemars(default = "default_vici_socket_text")]
    pub vici_socket: At<PathBuf>,
    /// kernel (xfrm) or libipsec (ipsec0 TUN).
    pub dataplane: At<Dataplane>,
    /// This router's WAN address, when it must be fixed.
    #[serde(default)]
    pub local_address: Option<At<IpAddr>>,
    /// The provider's VPN gateway (address or DNS name), or a list of gateways in order of
    /// preference, each an address or `{address, remote_id}` where its identity differs.
    pub remote_address: Node<Gateways>,
    /// This router's IKE identity.
    pub local_id: At<String>,
    /// The gateway's IKE identity.
    pub remote_id: At<String>,
    /// Exactly one of psk_file or certificate.
    pub auth: Node<IpsecAuth>,
    /// IKE proposals in strongSwan syntax.
    #[serde(default = "default_ike_proposals")]
    #[schemars(default = "default_ike_proposals_text")]
    pub ike_proposals: Vec<At<String>>,
    /// ESP proposals in strongSwan syntax.
    #[serde(default = "default_esp_proposals")]
    #[schemars(default = "default_esp_proposals_text")]
    pub esp_proposals: Vec<At<String>>,
    /// Dead peer detection interval.
    #[serde(default = "default_dpd_delay")]
    #[schemars(default = "default_dpd_delay_text")]
    pub dpd_delay: At<Duration>,
}

/// IKE authentication: a pre-shared key or an X.509 certificate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpsecAuth {
    /// File holding the pre-shared key (mode 0600).
    #[serde(default)]
    pub psk_file: Option<At<PathBuf>>,
    #[serde(default)]
    pub certificate: Option<Node<PemCertificate>>,
}

/// A PEM certificate, its key and the CA that signs the peer.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PemCertificate {
    /// This router's certificate (PEM).
    pub cert: At<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub key: At<PathBuf>,
    /// The CA certificate that signs the peer's certificate (PEM).
    pub ca: At<PathBuf>,
}

/// No tunnel: the line itself is the closed network (NGN IP-VPN).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpVpn {
    /// The next hop on the WAN for the closed prefixes (a link-local fe80:: address is fine).
    pub gateway: At<IpAddr>,
}

/// A client certificate (電子証明書): a PKCS#12 file, or a PEM certificate and key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// The name proxy routes use to refer to it.
    pub name: At<String>,
    /// The PKCS#12 file (.p12) as issued.
    #[serde(default)]
    pub pkcs12: Option<At<PathBuf>>,
    /// The file holding the PKCS#12 password (mode 0600).
    #[serde(default)]
    pub password_file: Option<At<PathBuf>>,
    /// Or: a PEM certificate ...
    #[serde(default)]
    pub cert: Option<At<PathBuf>>,
    /// ... and its PEM private key (mode 0600).
    #[serde(default)]
    pub key: Option<At<PathBuf>>,
}

keyword_enum! {
    /// TLS on the LAN side of a proxy route.
    pub enum LanTls ("lan_tls setting") {
        /// Serve TLS with a certificate from the router's local CA.
        LocalCa = "local-ca",
        /// Plain TCP/HTTP on the LAN.
        Off = "off",
    }
}

keyword_enum! {
    /// How a proxy route carries traffic.
    pub enum ProxyMode ("proxy mode") {
        /// Request-aware, pooled upstream connections.
        Http = "http",
        /// A byte stream per connection.
        Tcp = "tcp",
    }
}

/// The local mTLS proxy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// Where the LAN-side CA and its certificates live.
    #[serde(default = "default_local_ca_dir")]
    #[schemars(default = "default_local_ca_dir_text")]
    pub local_ca_dir: At<PathBuf>,
    pub routes: Vec<Node<ProxyRoute>>,
}

/// One LAN listener forwarding to one upstream endpoint.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRoute {
    pub name: At<String>,
    /// address:port on one of the router's segment addresses.
    pub listen: At<SocketAddr>,
    /// local-ca or off.
    pub lan_tls: At<LanTls>,
    /// http or tcp.
    pub mode: At<ProxyMode>,
    /// host:port of the endpoint; the host is used for SNI, Host and verification.
    pub upstream: At<HostPort>,
    /// Connect to this address instead of resolving the upstream host.
    #[serde(default)]
    pub upstream_address: Option<At<IpAddr>>,
    /// The only CA trusted for the upstream's server certificate (PEM).
    pub server_ca: At<PathBuf>,
    /// The name of a client_certificates entry, or a list of names in order of preference
    /// (a new certificate before the old one): the proxy presents the first that is valid now.
    pub client_certificate: Node<OneOrMore>,
    /// Segment names or CIDRs allowed to use this route.
    pub allow: Node<Vec<At<String>>>,
    /// A path `oqs-edge diag` requests (GET) on the upstream to check it answers, e.g. `/`.
    #[serde(default)]
    pub health_path: Option<At<String>>,
}

/// The control socket and metrics.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Unix socket behind `oqs-edge status` and `reload`.
    #[serde(default = "default_control_socket")]
    #[schemars(default = "default_control_socket_text")]
    pub socket: At<PathBuf>,
    /// Prometheus metrics listen address, e.g. 127.0.0.1:9469 or a segment address:
    /// plain HTTP, `GET /metrics` only.
    #[serde(default)]
    pub metrics: Option<At<SocketAddr>>,
    /// Who may scrape `metrics`: segment names or CIDRs. Loopback always may; when this is
    /// absent, only loopback.
    #[serde(default)]
    pub metrics_allow: Vec<At<String>>,
    /// The read-only status page for the clinic's staff, on one of the router's segment
    /// addresses, e.g. 192.168.60.1:8080.
    #[serde(default)]
    pub status_page: Option<At<SocketAddr>>,
    /// Segment names or CIDRs whose PCs may open the status page; default: the clinic segments.
    #[serde(default)]
    pub status_page_allow: Option<Node<Vec<At<String>>>>,
}

/// Administrative access to the router itself.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Segment names or CIDRs allowed to reach the router's SSH port (22).
    #[serde(default)]
    pub ssh_from: Vec<At<String>>,
}

pub const DEFAULT_VICI_SOCKET: &str = "/run/charon.vici";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/oqs-edge/control.sock";
pub const DEFAULT_LOCAL_CA_DIR: &str = "/var/lib/oqs-edge/local-ca";
pub const DEFAULT_IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-ecp256";
pub const DEFAULT_ESP_PROPOSAL: &str = "aes256gcm16-ecp256";

fn unplaced<T>(value: T) -> At<T> {
    At {
        value,
        loc: Default::default(),
    }
}
fn default_vici_socket() -> At<PathBuf> {
    unplaced(PathBuf::from(DEFAULT_VICI_SOCKET))
}
fn default_vici_socket_text() -> &'static str {
    DEFAULT_VICI_SOCKET
}
fn default_local_ca_dir() -> At<PathBuf> {
    unplaced(PathBuf::from(DEFAULT_LOCAL_CA_DIR))
}
fn default_local_ca_dir_text() -> &'static str {
    DEFAULT_LOCAL_CA_DIR
}
fn default_control_socket() -> At<PathBuf> {
    unplaced(PathBuf::from(DEFAULT_CONTROL_SOCKET))
}
fn default_control_socket_text() -> &'static str {
    DEFAULT_CONTROL_SOCKET
}
fn default_ike_proposals() -> Vec<At<String>> {
    vec![unplaced(DEFAULT_IKE_PROPOSAL.to_owned())]
}
fn default_ike_proposals_text() -> [&'static str; 1] {
    [DEFAULT_IKE_PROPOSAL]
}
fn default_esp_proposals() -> Vec<At<String>> {
    vec![unplaced(DEFAULT_ESP_PROPOSAL.to_owned())]
}
fn default_esp_proposals_text() -> [&'static str; 1] {
    [DEFAULT_ESP_PROPOSAL]
}
fn default_dpd_delay() -> At<Duration> {
    unplaced(Duration(std::time::Duration::from_secs(30)))
}
fn default_dpd_delay_text() -> &'static str {
    "30s"
}
