//! The Plexus dataplane: a userspace Ethernet switch.
//!
//! This crate knows frames, ports and tables; it knows nothing of namespaces or of
//! the CNM model (`sandbox/` and the root crate). Its core is sans-IO: tables and
//! forwarding decisions take `now` and frames and return actions, so they are
//! tested at memory speed with a virtual clock.
//!
//! What is here today: the wire types shared with the control plane ([`MacAddr`]).
//! The forwarding engine, ports, MAC learning, gateway and NAT are built on top of
//! these in the dataplane issues.
#![deny(unsafe_code)]

mod mac;

pub use mac::{MacAddr, MacParseError};
