//! The tunnel applier: brings the planned tunnel up, keeps it up, and says what state it is in.
//!
//! The supervisor drives it in the fail-closed order: the firewall stands first (its kill
//! switch drops closed-network traffic that is not leaving through the tunnel), then
//! [`Tunnel::start`], then the routes. A tunnel that cannot come up is never fatal: it is
//! reported by `status` and retried by [`Tunnel::watch`]. On a reload, [`Tunnel::check`] runs
//! before anything is applied, so a bad key file or an endpoint that does not resolve refuses
//! the reload and the running tunnel is left as it was.
//!
//! IP-VPN has nothing to bring up: the line is the tunnel, and the supervisor judges it from the
//! WAN link and the routes.

pub mod gateways;
pub mod ipsec;
pub mod wireguard;

use crate::plan::TunnelPlan;
use crate::status::TunnelInfo;

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    WireGuard(#[from] wireguard::WireGuardError),
    #[error(transparent)]
    Ipsec(#[from] ipsec::IpsecError),
}

/// The running tunnel.
pub enum Tunnel {
    IpVpn,
    WireGuard(wireguard::WireGuardTunnel),
    Ipsec(ipsec::IpsecTunnel),
}

impl Tunnel {
    /// Bring the planned tunnel up. Failures are kept in the tunnel's state (shown by `status`)
    /// and retried by `watch`.
    pub async fn start(plan: &TunnelPlan) -> Tunnel {
        match plan {
            TunnelPlan::IpVpn { .. } => Tunnel::IpVpn,
            TunnelPlan::Wireguard { .. } => {
                Tunnel::WireGuard(wireguard::WireGuardTunnel::start(plan).await)
            }
            TunnelPlan::Ipsec { .. } => Tunnel::Ipsec(ipsec::IpsecTunnel::start(plan).await),
        }
    }

    /// The next result of a health probe through the tunnel (issue 21); never, for a tunnel
    /// without one.
    pub async fn next_probe(&mut self) -> gateways::Probe {
        match self {
            Tunnel::WireGuard(t) => t.next_probe().await,
            Tunnel::Ipsec(t) => t.next_probe().await,
            Tunnel::IpVpn => std::future::pending().await,
        }
    }

    /// Act on a probe result: maybe switch gateways.
    pub async fn probed(&mut self, result: gateways::Probe) {
        match self {
            Tunnel::WireGuard(t) => t.probed(result).await,
            Tunnel::Ipsec(t) => t.probed(result),
            Tunnel::IpVpn => {}
        }
    }

    /// What a reload to `plan` needs that the config check cannot see (a key file's content,
    /// an endpoint that resolves, ...). An error refuses the reload before anything changes.
    pub async fn check(plan: &TunnelPlan) -> Result<(), TunnelError> {
        match plan {
            TunnelPlan::IpVpn { .. } => Ok(()),
            TunnelPlan::Wireguard { .. } => Ok(wireguard::WireGuardTunnel::check(plan).await?),
            TunnelPlan::Ipsec { .. } => Ok(ipsec::IpsecTunnel::check(plan).await?),
        }
    }

    /// Move to a reloaded plan, changing only what changed: an unchanged tunnel section
    /// touches nothing. A change of tunnel type stops the old tunnel and starts the new one.
    pub async fn reload(&mut self, plan: &TunnelPlan) -> Result<(), TunnelError> {
        match (&mut *self, plan) {
            (Tunnel::IpVpn, TunnelPlan::IpVpn { .. }) => Ok(()),
            (Tunnel::WireGuard(wg), TunnelPlan::Wireguard { .. }) => Ok(wg.reload(plan).await?),
            (Tunnel::Ipsec(ipsec), TunnelPlan::Ipsec { .. }) => Ok(ipsec.reload(plan).await?),
            _ => {
                let old = std::mem::replace(self, Tunnel::IpVpn);
                old.stop().await;
                *self = Tunnel::start(plan).await;
                Ok(())
            }
        }
    }

    /// Called every few seconds by the supervisor: notice and log state changes, recover.
    pub async fn watch(&mut self) {
        match self {
            Tunnel::IpVpn => {}
            Tunnel::WireGuard(wg) => wg.watch().await,
            Tunnel::Ipsec(ipsec) => ipsec.watch().await,
        }
    }

    /// Routes the tunnel's own software keeps (charon's through libipsec's ipsec0): put back
    /// one that was deleted under a live SA. Called by the watch.
    pub async fn keep_routes(&mut self, net: &crate::apply::net::Net, plan: &TunnelPlan) {
        if let Tunnel::Ipsec(ipsec) = self {
            ipsec.keep_routes(net, plan).await;
        }
    }

    /// The WAN's leased addresses changed (now `addresses`): WireGuard handshakes from the new
    /// one at once; IPsec gives charon a moment to move its SAs itself (MOBIKE), then
    /// initiates from the new address (see [`ipsec::IpsecTunnel::wan_changed`]).
    pub async fn wan_changed(&mut self, addresses: &[std::net::IpAddr]) {
        match self {
            Tunnel::WireGuard(wg) => wg.wan_changed(),
            Tunnel::Ipsec(ipsec) => ipsec.wan_changed(addresses),
            Tunnel::IpVpn => {}
        }
    }

    /// The state for `status`; `None` for IP-VPN, which the supervisor judges itself.
    pub async fn info(&self) -> Option<TunnelInfo> {
        match self {
            Tunnel::IpVpn => None,
            Tunnel::WireGuard(wg) => Some(wg.info().await),
            Tunnel::Ipsec(ipsec) => Some(ipsec.info().await),
        }
    }

    /// The daemon is stopping (or the tunnel type changed).
    pub async fn stop(self) {
        match self {
            Tunnel::IpVpn => {}
            Tunnel::WireGuard(wg) => wg.stop().await,
            Tunnel::Ipsec(ipsec) => ipsec.stop().await,
        }
    }
}
