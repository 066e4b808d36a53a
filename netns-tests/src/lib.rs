//! The network-namespace lab: see tests/.
