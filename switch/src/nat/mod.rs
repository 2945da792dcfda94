//! Outbound NAT and published ports: how container traffic that the gateway
//! routes out of its network leaves the host, and how clients of published
//! ports come in — all as ordinary sockets of the daemon, no iptables.
//!
//! - [`table`]: the connection table (sans-IO): which flows exist, their
//!   limits, their fair shares of the descriptor budget, their expiry;
//! - [`frames`]: the frames NAT builds towards a container (datagrams and
//!   echo replies that came back, ICMP unreachable for refusals);
//! - [`tcp`]: TCP terminated in a smoltcp stack per endpoint and relayed to
//!   host streams (sans-IO: the caller passes `now`, frames and streams).
//!
//! UDP and ICMP echo flows carry payloads over connected host sockets; TCP
//! connections (outbound and to published ports) are flows too, each with its
//! relay state and host stream. The worker ([`crate::dataplane`]) owns the
//! sockets: one slab entry per flow holds its table row and its I/O.

pub mod frames;
pub mod table;
pub mod tcp;

pub use table::{
    Binding, FdUse, Flow, FlowId, FlowKey, FlowPath, MIN_SHARE, NatConfig, NatProto, NatTable, Outbound, Protocol,
    TcpPhase,
};
