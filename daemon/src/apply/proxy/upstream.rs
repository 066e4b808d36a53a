//! The upstream side: TLS to the eligibility and claims endpoints, with the route's
//! `server_ca` as the only trust anchor, SNI and verification against the configured host
//! name, and the clinic's client certificate. There is no way to switch verification off.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::RouteStats;
use crate::pki::{self, ClientCertificate};

/// A pooled connection dialled by a DNS answer is kept at least this long, however short the
/// answer's TTL: a TTL of 0 must not mean a handshake per request.
const MIN_DNS_HOLD: Duration = Duration::from_secs(5);

/// Connecting (TCP and then TLS) gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("the closed network's DNS has no address for {host}: {reason}")]
    ClosedDns { host: String, reason: String },
    #[error("cannot connect to {to}: {source}")]
    Connect { to: String, source: std::io::Error },
    #[error("no answer from {to} within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout { to: String },
    #[error("TLS with {to} failed: {reason}")]
    Tls { to: String, reason: String },
}

/// An upstream host's addresses, the one way the proxy (and `diag`) finds them: through the
/// closed network's DNS when there is one (cached for the answer's TTL, until when the
/// addresses hold), else the router's own resolver.
pub async fn resolve(
    host: &str,
    port: u16,
    closed_dns: Option<&hickory_resolver::TokioResolver>,
) -> Result<(Vec<SocketAddr>, Option<Instant>), UpstreamError> {
    let Some(resolver) = closed_dns else {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        return Ok((addrs.collect(), None));
    };
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| UpstreamError::ClosedDns {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    let addrs = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    Ok((addrs, Some(lookup.valid_until())))
}

/// Trust only the CAs in `server_ca` and present `cert`. TLS 1.3 preferred, 1.2 allowed;
/// each config has its own session cache, so a new client certificate starts fresh sessions.
pub fn client_config(
    server_ca: &Path,
    cert: &ClientCertificate,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let cas = pki::read_pem_certificates(server_ca).map_err(|e| e.to_string())?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", server_ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| format!("{}: {e}", cert.path.display()))?;
    Ok(Arc::new(config))
}

/// Where one route's upstream is and how to speak TLS to it.
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub address: Option<IpAddr>,
    /// The closed network's DNS, for a host without `upstream_address`; without it (no
    /// `closed_network.dns`), the router's own resolver.
    pub resolver: Option<Arc<hickory_resolver::TokioResolver>>,
    pub server_name: ServerName<'static>,
    pub tls: TlsConnector,
    /// For messages: the files behind the trust and the identity.
    pub server_ca: String,
    pub client_certificate: String,
}

impl Upstream {
    fn describe(&self) -> String {
        match self.address {
            Some(addr) => format!("{}:{} ({addr})", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    /// TCP, then TLS: the one way any route reaches its upstream.
    pub async fn connect(&self, stats: &RouteStats) -> Result<TlsStream<TcpStream>, UpstreamError> {
        Ok(self.connect_until(stats).await?.0)
    }

    /// [`Upstream::connect`], and until when the address it used holds: a connection dialled
    /// by a DNS answer is not kept past the answer's TTL (at least [`MIN_DNS_HOLD`]), so a
    /// moved upstream is followed by the pooled connections too.
    pub async fn connect_until(
        &self,
        stats: &RouteStats,
    ) -> Result<(TlsStream<TcpStream>, Option<Instant>), UpstreamError> {
        let to = self.describe();
        let (tcp, valid_until) = tokio::time::timeout(CONNECT_TIMEOUT, self.connect_tcp())
            .await
            .map_err(|_| UpstreamError::Timeout { to: to.clone() })??;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| UpstreamError::Timeout { to: to.clone() })?
        .map_err(|e| UpstreamError::Tls {
            to: to.clone(),
            reason: self.explain(&e),
        })?;
        stats.upstream_handshakes.fetch_add(1, Ordering::Relaxed);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            stats.upstream_resumed.fetch_add(1, Ordering::Relaxed);
        }
        Ok((tls, valid_until))
    }

    async fn connect_tcp(&self) -> Result<(TcpStream, Option<Instant>), UpstreamError> {
        let (addrs, valid_until) = match self.address {
            Some(addr) => (vec![SocketAddr::new(addr, self.port)], None),
            None => {
                let (addrs, until) =
                    resolve(&self.host, self.port, self.resolver.as_deref()).await?;
                (addrs, until.map(|u| u.max(Instant::now() + MIN_DNS_HOLD)))
            }
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return Ok((tcp, valid_until)),
                Err(e) => last = Some((addr, e)),
            }
        }
        Err(match last {
            Some((addr, source)) => UpstreamError::Connect {
                to: addr.to_string(),
                source,
            },
            None => UpstreamError::Resolve {
                host: self.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            },
        })
    }

    /// A TLS failure in the words an operator can act on.
    pub fn explain(&self, e: &std::io::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
            return e.to_string();
        };
        match tls {
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
                "the upstream's certificate is not trusted: it is not issued by the CA in {} \
                 (server_ca); check upstream_address and server_ca",
                self.server_ca
            ),
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                format!(
                    "the upstream's certificate is not for {}; check `upstream`",
                    self.host
                )
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "the upstream's certificate has expired".to_owned()
            }
            E::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA) => format!(
                "the upstream refused the client certificate `{}` ({tls})",
                self.client_certificate
            ),
            E::AlertReceived(A::CertificateExpired) => format!(
                "the upstream says the client certificate `{}` has expired",
                self.client_certificate
            ),
            E::AlertReceived(A::CertificateRevoked) => format!(
                "the upstream says the client certificate `{}` is revoked",
                self.client_certificate
            ),
            other => other.to_string(),
        }
    }
}
