//! Not built yet: reports the tunnel as down.

use crate::control::TunnelInfo;
use crate::plan::TunnelPlan;

#[derive(Debug, thiserror::Error)]
pub enum IpsecError {}

pub struct IpsecTunnel;

impl IpsecTunnel {
    pub async fn start(_plan: &TunnelPlan) -> IpsecTunnel {
        IpsecTunnel
    }

    pub async fn check(_plan: &TunnelPlan) -> Result<(), IpsecError> {
        Ok(())
    }

    pub async fn reload(&mut self, _plan: &TunnelPlan) -> Result<(), IpsecError> {
        Ok(())
    }

    pub async fn watch(&mut self) {}

    pub async fn info(&self) -> TunnelInfo {
        TunnelInfo {
            kind: "ipsec".to_owned(),
            state: "down".to_owned(),
            detail: "the IPsec tunnel is not brought up by this version".to_owned(),
        }
    }

    pub async fn stop(self) {}
}
