//! The appliers: the only code that changes the system, each making one part of the plan real.
//!
//! [`firewall`] (nftables), [`net`] (rtnetlink: sysctls, routes), [`lan`] (segment addresses,
//! DHCP through dnsmasq, the DNS relay), [`tunnel`] (WireGuard, IPsec through strongSwan,
//! IP-VPN) and [`proxy`] (the mTLS proxy). Each takes its part of the
//! [`crate::plan::Plan`] and reports its state as [`crate::status`] types; none knows about the
//! supervisor that drives it or the operator's side that reads it.

pub mod child;
pub mod firewall;
pub mod lan;
pub mod net;
pub mod proxy;
pub mod tunnel;
pub mod wan;
