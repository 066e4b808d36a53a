//! Checks of the second gateway and the health probe (issue 21): duplicate gateways, a backup
//! peer with the primary's key, a probe target outside the closed network.

use std::collections::HashMap;

use std::net::IpAddr;

use super::super::model::{Config, Ipsec, TunnelType};
use super::super::scalar::{is_dns_name, Loc};
use super::Checker;

impl Checker<'_> {
    /// `tunnel.ipsec.remote_address`: each gateway an address or a host name, each listed
    /// once, each identity (where given) not empty.
    pub(super) fn ipsec_gateways(&mut self, ipsec: &Ipsec) {
        let entries = ipsec.remote_address.entries();
        if entries.is_empty() {
            self.error(
                ipsec.remote_address.loc,
                "tunnel.ipsec.remote_address",
                "the list of gateways is empty",
            )
            .hint =
                Some("give the provider's VPN gateway, e.g. `remote_address: 203.0.113.2`".into());
        }
        let many = entries.len() > 1;
        let mut seen: HashMap<String, (usize, Loc)> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let key = if many {
                format!("tunnel.ipsec.remote_address[{i}]")
            } else {
                "tunnel.ipsec.remote_address".to_owned()
            };
            let address = entry.address.value.as_str();
            if address.parse::<IpAddr>().is_err() && !is_dns_name(address) {
                self.error(
                    entry.address.loc,
                    key.clone(),
                    format!("`{address}` is neither an address nor a host name"),
                );
            } else if let Some((first, at)) = seen.get(&address.to_ascii_lowercase()) {
                self.error(
                    entry.address.loc,
                    key.clone(),
                    format!(
                        "gateway {address} is listed twice (as remote_address[{first}] at line {})",
                        at.line
                    ),
                )
                .hint = Some("a backup must be another gateway: list each address once".into());
            } else {
                seen.insert(address.to_ascii_lowercase(), (i, entry.address.loc));
            }
            if let Some(id) = &entry.remote_id {
                if id.trim().is_empty() {
                    self.error(
                        id.loc,
                        format!("{key}.remote_id"),
                        "an IKE identity cannot be empty",
                    )
                    .hint = Some("leave remote_id out to use tunnel.ipsec.remote_id".into());
                }
            }
        }
    }

    pub(super) fn failover(&mut self, config: &Config) {
        self.backup_peers(config);
        self.health(config);
    }

    fn backup_peers(&mut self, config: &Config) {
        let Some(wg) = config
            .tunnel
            .wireguard
            .as_ref()
            .filter(|_| config.tunnel.kind.value == TunnelType::WireGuard)
        else {
            return;
        };
        let primary = &wg.peer;
        let mut keys: HashMap<[u8; 32], (String, Loc)> = HashMap::new();
        let mut endpoints: HashMap<String, (String, Loc)> = HashMap::new();
        if self.ok(&primary.public_key) {
            keys.insert(
                primary.public_key.value.0,
                ("peer".into(), primary.public_key.loc),
            );
        }
        if self.ok(&primary.endpoint) {
            endpoints.insert(
                primary.endpoint.value.to_string(),
                ("peer".into(), primary.endpoint.loc),
            );
        }
        for (i, backup) in wg.backup_peers.iter().enumerate() {
            let name = format!("backup_peers[{i}]");
            let key = format!("tunnel.wireguard.{name}");
            if self.ok(&backup.public_key) {
                if let Some((first, at)) = keys.get(&backup.public_key.value.0) {
                    let what = if first == "peer" {
                        "the primary peer's".to_string()
                    } else {
                        format!("{first}'s")
                    };
                    self.error(
                        backup.public_key.loc,
                        format!("{key}.public_key"),
                        format!("{name} has {what} public key (line {})", at.line),
                    )
                    .hint = Some(
                        "each concentrator has its own key: copy the backup's public key from its \
                         `wg show` or installer sheet"
                            .into(),
                    );
                } else {
                    keys.insert(
                        backup.public_key.value.0,
                        (name.clone(), backup.public_key.loc),
                    );
                }
            }
            if self.ok(&backup.endpoint) {
                let endpoint = backup.endpoint.value.to_string();
                if let Some((first, at)) = endpoints.get(&endpoint) {
                    self.error(
                        backup.endpoint.loc,
                        format!("{key}.endpoint"),
                        format!(
                            "gateway {endpoint} is listed twice (as {first} at line {})",
                            at.line
                        ),
                    )
                    .hint = Some(
                        "a backup must be another concentrator: list each endpoint once".into(),
                    );
                } else {
                    endpoints.insert(endpoint, (name, backup.endpoint.loc));
                }
            }
        }
    }

    fn health(&mut self, config: &Config) {
        let Some(health) = &config.tunnel.health else {
            return;
        };
        if self.ok(&health.failures) && health.failures.value == 0 {
            self.error(
                health.failures.loc,
                "tunnel.health.failures",
                "`failures: 0` would give up a gateway without a failed probe",
            )
            .hint = Some("use 3 (give up after three failed probes in a row)".into());
        }
        if self.ok(&health.interval) && health.interval.value.0.is_zero() {
            self.error(
                health.interval.loc,
                "tunnel.health.interval",
                "the probe interval must be more than 0",
            )
            .hint = Some("e.g. `interval: 5s`".into());
        }
        let prefixes = &config.closed_network.prefixes;
        if !self.ok(&health.target) || !prefixes.iter().all(|p| self.ok(p)) {
            return;
        }
        let ip = health.target.value.ip();
        if !prefixes.iter().any(|p| p.contains(&ip)) {
            let listed: Vec<String> = prefixes.iter().map(|p| p.value.to_string()).collect();
            self.error(
                health.target.loc,
                "tunnel.health.target",
                format!(
                    "health target {ip} is outside the closed prefixes ({}): the probe would \
                     not go through the tunnel",
                    listed.join(", ")
                ),
            )
            .hint = Some(
                "probe a server of the closed network, e.g. the eligibility API's address".into(),
            );
        }
    }
}
