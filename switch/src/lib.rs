//! The Plexus dataplane: a userspace Ethernet switch with a gateway, outbound
//! NAT and published ports.
//!
//! This crate knows frames, ports and tables; it knows nothing of namespaces or
//! of the CNM model (`sandbox/` and the root crate). Layers, each importing only
//! those above it in this list:
//!
//! - [`wire`]: zero-copy views and validated reprs of Ethernet, ARP, IPv4,
//!   ICMPv4, UDP, TCP and virtio-net headers, and the Internet checksum;
//! - [`types`] (handles, drop reasons, counters, a network's gateway) and
//!   [`frame`] (frame buffers and bursts): the shared vocabulary;
//! - [`l2`]: the sans-IO forwarding engine — MAC learning, ageing, the L2
//!   decision, anti-spoofing, counters — driven with `now` and frames;
//! - [`gateway`]: the network's gateway address in the switch — ARP, echo, the
//!   routing decision (martians, isolation, internal networks, what NAT takes);
//! - [`nat`]: the connection table, the frames NAT builds, and the TCP relay
//!   (connections terminated in smoltcp), all sans-IO;
//! - [`io`]: ports (AF_PACKET, TAP, in memory, pcap and fault wrappers) and the
//!   host's sockets behind the [`io::Host`] trait;
//! - [`dataplane`]: the worker that runs all of it in bursts, and the handle
//!   the control plane uses over a channel.

#![deny(unsafe_code)]

pub mod coalesce;
pub mod dataplane;
pub mod dns;
pub mod frame;
pub mod gateway;
pub mod io;
pub mod l2;
mod mac;
pub mod nat;
pub mod types;
pub mod wire;

#[cfg(test)]
mod testkit;

pub use dataplane::{Dataplane, DataplaneConfig, DataplaneError, Health, PortStats};
pub use gateway::is_martian;
pub use l2::{DomainConfig, Engine, PortConfig, Verdict};
pub use mac::{MacAddr, MacParseError};
pub use nat::{Binding, FdUse, NatConfig, NatProto, Protocol};
pub use types::{DomainId, DropReason, GatewayConfig, PortCounters, PortId};
