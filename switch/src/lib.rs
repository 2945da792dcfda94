//! The Plexus dataplane: a userspace Ethernet switch.
//!
//! This crate knows frames, ports and tables; it knows nothing of namespaces or of
//! the CNM model (`sandbox/` and the root crate). Layers:
//!
//! - [`wire`]: zero-copy views and validated reprs of Ethernet, ARP, IPv4,
//!   ICMPv4, UDP, TCP and virtio-net headers, checksums with incremental update;
//! - [`fdb`], [`engine`]: the sans-IO core — MAC learning, ageing, forwarding
//!   decisions, counters — driven with `now` and frames, tested with a virtual clock;
//! - [`port`]: the I/O backends (AF_PACKET for veth host ends, TAP fds);
//! - [`dataplane`]: the worker thread that owns the ports and runs the engine in
//!   bursts, and the handle the control plane uses over a channel;
//! - [`gateway`], [`nat`], [`tcp`]: the gateway inside the switch, outbound NAT
//!   and published ports (UDP and ICMP over host sockets, TCP terminated in
//!   smoltcp and relayed to host streams).

#![deny(unsafe_code)]

pub mod dataplane;
pub mod engine;
pub mod fdb;
pub mod flowsock;
pub mod gateway;
mod mac;
pub mod nat;
pub mod port;
pub mod tcp;
pub mod wire;

pub use dataplane::{Dataplane, DataplaneConfig, DataplaneError, PortStats};
pub use engine::{
    DomainConfig, DomainId, DropReason, Engine, GatewayOutcome, PortConfig, PortCounters, PortId, Verdict,
};
pub use gateway::GatewayConfig;
pub use mac::{MacAddr, MacParseError};
pub use nat::{FdUse, NatConfig, NatProto, PublishSpec};
