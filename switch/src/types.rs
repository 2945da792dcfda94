//! The switch's vocabulary, shared by every layer and importing none of them:
//! port and domain handles, why a frame is dropped, a port's counters, and a
//! network's gateway as the switch holds it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::MacAddr;
use crate::wire::{ArpOperation, ArpPacket, EtherType, EthernetFrame};

/// A port's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PortId(pub u32);

/// A bridge domain's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DomainId(pub u32);

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a frame was dropped. Each reason has its own counter per port.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The counter's name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    Runt => "runt",
    /// Longer than the port's MTU allows.
    Oversize => "oversize",
    /// The virtio-net header does not parse.
    BadVnetHdr => "bad_vnet_hdr",
    /// Source MAC is multicast or zero.
    BadSrc => "bad_src",
    /// Source MAC is not the endpoint's own (anti-spoofing).
    Spoofed => "spoofed",
    /// ARP whose sender MAC or address is not the endpoint's own (anti-spoofing).
    ArpSpoofed => "arp_spoofed",
    /// IPv4 whose source address is not one the endpoint may use (anti-spoofing).
    IpSpoofed => "ip_spoofed",
    /// The destination lives on the ingress port.
    SamePort => "same_port",
    /// A GSO frame or partial checksum towards a port without offloads.
    NoOffload => "no_offload",
    /// The egress port's queue was full.
    TxFull => "tx_full",
    /// The egress port's send failed.
    TxError => "tx_error",
    /// The kernel dropped frames before the switch could read them (the port's
    /// receive ring or queue was full).
    RxOverrun => "rx_overrun",
    /// Receiving from the port failed (its device is gone or broken).
    RxError => "rx_error",
    /// A frame for a port the engine does not know (a port being removed).
    UnknownPort => "unknown_port",
    /// An ARP or IPv4 packet that does not parse (checked on ports with
    /// anti-spoofing, and for the gateway).
    Malformed => "malformed",
    /// A packet for the gateway that it does not serve.
    GatewayUnhandled => "gateway_unhandled",
    /// Routed to an address that never leaves through NAT: loopback
    /// (127.0.0.0/8), "this network" (0.0.0.0/8), link-local (169.254.0.0/16),
    /// multicast, reserved or broadcast (224.0.0.0/3).
    Martian => "martian",
    /// Routed to another network's subnet: networks never reach each other.
    Isolated => "isolated",
    /// Routed out of an internal network.
    Internal => "internal",
    /// Routed out of the network, in a protocol outbound NAT does not carry.
    NoRoute => "no_route",
    /// A new outbound flow refused: the NAT table (or the endpoint's share) is full.
    NatFull => "nat_full",
    /// Outbound NAT could not open or use the flow's host socket.
    NatError => "nat_error",
    /// A flow's host socket failed to receive (other than an ICMP error,
    /// which reaches the container as one).
    NatRecvError => "nat_recv_error",
    /// A published port's listener failed to accept, or its socket to
    /// receive or send.
    ListenerError => "listener_error",
    /// A published port's client came from the address and port of a
    /// connection the switch is still closing: refused with a reset (the
    /// client retries from another port).
    FlowBusy => "flow_busy",
    /// A new flow refused: the daemon's file descriptors set aside for flows
    /// are used up (or the kernel refused one: EMFILE, ENFILE).
    FdBudget => "fd_budget",
    /// A DNS query to the gateway that is not one (too short for a header, a
    /// response, a reply that would not fit).
    DnsMalformed => "dns_malformed",
    /// A DNS query the gateway would forward while too many of the port's
    /// (or everyone's) are in flight upstream.
    DnsFull => "dns_full",
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = DropReason::ALL.len();

/// A port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received (Ethernet frames, without virtio-net headers).
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// TCP segments folded into another frame sent out of this port (one
    /// super-frame instead of several: [`crate::coalesce`]); not in
    /// `tx_frames`, their payload is in `tx_bytes`.
    pub tx_coalesced: u64,
    /// Source MACs not learned because the domain's table was full.
    pub learn_table_full: u64,
    /// Drops by reason, indexed by `DropReason as usize`; a drop is counted on
    /// the ingress port for ingress reasons and on the egress port for tx ones.
    pub drops: [u64; DROP_REASONS],
}

impl PortCounters {
    /// The count of one drop reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// A network's gateway, as the switch holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway address.
    pub ip: Ipv4Addr,
    /// The MAC it answers ARP with.
    pub mac: MacAddr,
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// An internal network: nothing is routed out.
    pub internal: bool,
    /// TCP and UDP to the gateway's own address go to the host's loopback
    /// (127.0.0.1, same port), like slirp4netns's 10.0.2.2.
    pub host_loopback: bool,
}

impl GatewayConfig {
    /// A gateway at `ip` on `subnet`, with the MAC `02:42` + `ip` (the scheme
    /// endpoint MACs use, and no endpoint has the gateway's address).
    pub fn new(ip: Ipv4Addr, subnet: Ipv4Net, internal: bool) -> GatewayConfig {
        GatewayConfig {
            ip,
            mac: MacAddr::from_ipv4(ip),
            subnet,
            internal,
            host_loopback: false,
        }
    }

    /// True if `frame` is for the gateway: sent to its MAC, or a broadcast ARP
    /// request for its address.
    pub fn wants(&self, frame: &EthernetFrame<&[u8]>) -> bool {
        let dst = frame.dst();
        if dst == self.mac {
            return true;
        }
        dst.is_broadcast()
            && EtherType::from(frame.ethertype()) == EtherType::Arp
            && ArpPacket::new_checked(frame.payload())
                .is_ok_and(|a| a.operation() == ArpOperation::Request && a.target_protocol_addr() == self.ip)
    }
}
