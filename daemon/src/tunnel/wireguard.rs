//! Not built yet: reports the tunnel as down.

use crate::control::TunnelInfo;
use crate::plan::TunnelPlan;

#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {}

pub struct WireGuardTunnel;

impl WireGuardTunnel {
    pub async fn start(_plan: &TunnelPlan) -> WireGuardTunnel {
        WireGuardTunnel
    }

    pub async fn check(_plan: &TunnelPlan) -> Result<(), WireGuardError> {
        Ok(())
    }

    pub async fn reload(&mut self, _plan: &TunnelPlan) -> Result<(), WireGuardError> {
        Ok(())
    }

    pub async fn watch(&mut self) {}

    pub async fn info(&self) -> TunnelInfo {
        TunnelInfo {
            kind: "wireguard".to_owned(),
            state: "down".to_owned(),
            detail: "the WireGuard tunnel is not brought up by this version".to_owned(),
        }
    }

    pub async fn stop(self) {}
}
