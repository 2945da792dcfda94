//! The gateway of a bridge domain: the network's gateway address belongs to the
//! switch, not to a kernel interface. Sans-IO: [`handle`] takes a frame addressed
//! to the gateway and writes the reply, if any, into a caller's buffer.
//!
//! What it answers today:
//! - ARP requests for the gateway address (so containers resolve their default
//!   route's next hop to the gateway's MAC);
//! - ICMP echo requests to the gateway address;
//! - DNS: UDP to the gateway's port 53 is [`Action::Dns`], which the
//!   gateways' DNS server ([`crate::dns`]) answers (it takes precedence over
//!   the host-loopback mapping of that one port); TCP to that port is routed
//!   as any TCP, and the relay serves it from the DNS server (see
//!   `dataplane::dns`).
//!
//! Everything else that reaches the gateway is a routed packet, and its fate is
//! decided here in this order, each with its own drop counter:
//! 1. to a martian destination — loopback, 0.0.0.0/8, link-local, multicast,
//!    reserved, broadcast ([`is_martian`]) → `martian`: NAT would carry it to
//!    the *host's* loopback or link, which a container must never reach (the
//!    host-loopback mapping, `GATEWAY:PORT` → `127.0.0.1:PORT`, is the one
//!    way, and only where the network allows it);
//! 2. to another Plexus network's subnet → `isolated` (networks never reach each
//!    other at L3 either);
//! 3. from an `--internal` network → `internal` (no way out);
//! 4. UDP, TCP and ICMP echo → [`Action::Routed`]: outbound NAT ([`crate::nat`])
//!    carries them over host sockets; other protocols and ICMP → `no_route`.
//!    UDP to the gateway's own address is routed too: it is how a container
//!    answers a published port's loopback client, which it sees as the gateway.
//!
//! Packets for the gateway it does not serve (other protocols to its address,
//! ARP it did not ask for, IPv6) count as `gateway_unhandled`; ones that do not
//! parse count as `malformed`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use crate::MacAddr;
use crate::nat::{FlowKey, NatProto};
use crate::types::{DropReason, GatewayConfig};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumMode, ETHERNET_HEADER_LEN, EtherType, EthernetFrame, EthernetRepr,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, UdpPacket,
};

const UDP_HEADER_LEN: usize = 8;
/// The port the gateway answers DNS on.
pub const DNS_PORT: u16 = 53;

/// What the gateway does with a frame addressed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the first `n` bytes of the output buffer back out of the ingress port.
    Reply(usize),
    /// Drop the frame, for this reason.
    Drop(DropReason),
    /// A packet routed out of the network: outbound NAT carries it.
    Routed(Routed),
    /// A DNS query to the gateway's UDP port 53 (its payload range and
    /// client in the [`Routed`]): the gateways' DNS answers it.
    Dns(Routed),
}

/// A routed packet that outbound NAT can carry: its flow, and where the bytes
/// to hand to the flow's host socket lie in the frame (the UDP payload, or the
/// whole ICMP echo message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The flow it belongs to.
    pub key: FlowKey,
    /// The bytes for the host socket, as a range of the frame (for TCP: the
    /// whole IP packet, which the relay's stack reads).
    pub payload: Range<usize>,
    /// A TCP segment with SYN and without ACK: it opens a connection.
    pub syn: bool,
    /// The sender's MAC (where replies go).
    pub src_mac: MacAddr,
}

/// Handles a frame addressed to the gateway `gw`. `isolated(dst)` says whether an
/// address belongs to another Plexus network. A reply is written into `out`
/// (which must hold at least `frame.len()` bytes; a shorter one drops).
pub fn handle(gw: &GatewayConfig, isolated: impl Fn(Ipv4Addr) -> bool, frame: &[u8], out: &mut [u8]) -> Action {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Action::Drop(DropReason::Malformed);
    };
    match EtherType::from(eth.ethertype()) {
        EtherType::Arp => arp(gw, &eth, out),
        EtherType::Ipv4 => ipv4(gw, isolated, &eth, out),
        _ => Action::Drop(DropReason::GatewayUnhandled),
    }
}

fn arp(gw: &GatewayConfig, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Action {
    let Ok(req) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) else {
        return Action::Drop(DropReason::Malformed);
    };
    if req.operation != ArpOperation::Request || req.target_protocol_addr != gw.ip {
        return Action::Drop(DropReason::GatewayUnhandled);
    }
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hardware_addr: gw.mac,
        sender_protocol_addr: gw.ip,
        target_hardware_addr: req.sender_hardware_addr,
        target_protocol_addr: req.sender_protocol_addr,
    };
    let l2 = EthernetRepr {
        src: gw.mac,
        dst: req.sender_hardware_addr,
        ethertype: EtherType::Arp,
    };
    let len = l2.buffer_len() + reply.buffer_len();
    let Some(buf) = out.get_mut(..len) else {
        return Action::Drop(DropReason::GatewayUnhandled);
    };
    let mut frame = EthernetFrame::new_unchecked(buf);
    l2.emit(&mut frame);
    reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Action::Reply(len)
}

fn ipv4(gw: &GatewayConfig, isolated: impl Fn(Ipv4Addr) -> bool, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Action {
    let Ok(packet) = Ipv4Packet::new_checked(eth.payload()) else {
        return Action::Drop(DropReason::Malformed);
    };
    let Ok(ip) = Ipv4Repr::parse(&packet) else {
        return Action::Drop(DropReason::Malformed);
    };
    let dst = ip.dst_addr;
    if dst == gw.ip && !matches!(ip.protocol, IpProtocol::Udp | IpProtocol::Tcp) {
        return echo(gw, eth, &ip, packet.into_payload(), out);
    }
    if gw.subnet.contains(&dst) && dst != gw.ip {
        // A neighbour's address sent to the gateway's MAC: not the gateway's to route.
        return Action::Drop(DropReason::GatewayUnhandled);
    }
    if is_martian(dst) {
        return Action::Drop(DropReason::Martian);
    }
    if isolated(dst) {
        return Action::Drop(DropReason::Isolated);
    }
    if gw.internal && dst != gw.ip {
        return Action::Drop(DropReason::Internal);
    }
    let l4 = ETHERNET_HEADER_LEN + usize::from(packet.header_len());
    let segment = packet.into_payload();
    // The flow (container side, outside side) and what of the frame goes out.
    let flow = |proto, inside_port, outside_port, payload, syn| Routed {
        key: FlowKey {
            proto,
            inside: SocketAddrV4::new(ip.src_addr, inside_port),
            outside: SocketAddrV4::new(dst, outside_port),
        },
        payload,
        syn,
        src_mac: eth.src(),
    };
    let routed = |proto, inside_port, outside_port, payload, syn| {
        Action::Routed(flow(proto, inside_port, outside_port, payload, syn))
    };
    match ip.protocol {
        IpProtocol::Udp => match UdpPacket::new_checked(segment) {
            Ok(udp) if dst == gw.ip && udp.dst_port() == DNS_PORT => Action::Dns(flow(
                NatProto::Udp,
                udp.src_port(),
                udp.dst_port(),
                l4 + UDP_HEADER_LEN..l4 + usize::from(udp.length()),
                false,
            )),
            Ok(udp) => routed(
                NatProto::Udp,
                udp.src_port(),
                udp.dst_port(),
                l4 + UDP_HEADER_LEN..l4 + usize::from(udp.length()),
                false,
            ),
            Err(_) => Action::Drop(DropReason::Malformed),
        },
        IpProtocol::Icmp => match Icmpv4Packet::new_checked(segment) {
            Ok(msg) if msg.msg_type() == Icmpv4Message::EchoRequest && msg.msg_code() == 0 => {
                routed(NatProto::Icmp, msg.echo_ident(), 0, l4..l4 + segment.len(), false)
            }
            Ok(_) => Action::Drop(DropReason::NoRoute),
            Err(_) => Action::Drop(DropReason::Malformed),
        },
        // TCP: the whole IP packet, which the relay's stack reads.
        IpProtocol::Tcp => match TcpPacket::new_checked(segment) {
            Ok(tcp) => {
                let syn = tcp.flags().contains(TcpFlags::SYN) && !tcp.flags().contains(TcpFlags::ACK);
                routed(
                    NatProto::Tcp,
                    tcp.src_port(),
                    tcp.dst_port(),
                    ETHERNET_HEADER_LEN..l4 + segment.len(),
                    syn,
                )
            }
            Err(_) => Action::Drop(DropReason::Malformed),
        },
        _ => Action::Drop(DropReason::NoRoute),
    }
}

/// True for destinations outbound NAT never carries, whatever route or frame
/// brought them: "this network" 0.0.0.0/8, loopback 127.0.0.0/8, link-local
/// 169.254.0.0/16, and 224.0.0.0/3 (multicast, reserved, the broadcast
/// address). A host socket towards them would reach the host itself.
pub fn is_martian(dst: Ipv4Addr) -> bool {
    let [a, b, ..] = dst.octets();
    a == 0 || a == 127 || (a == 169 && b == 254) || a >= 224
}

fn echo(gw: &GatewayConfig, eth: &EthernetFrame<&[u8]>, ip: &Ipv4Repr, payload: &[u8], out: &mut [u8]) -> Action {
    if ip.protocol != IpProtocol::Icmp {
        return Action::Drop(DropReason::GatewayUnhandled);
    }
    let Ok(msg) = Icmpv4Packet::new_checked(payload) else {
        return Action::Drop(DropReason::Malformed);
    };
    let request = match Icmpv4Repr::parse(&msg, ChecksumMode::Verify) {
        Ok(r) => r,
        Err(_) => return Action::Drop(DropReason::Malformed),
    };
    let Icmpv4Repr::EchoRequest { ident, seq_no, data } = request else {
        return Action::Drop(DropReason::GatewayUnhandled);
    };
    let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
    let l3 = Ipv4Repr {
        src_addr: gw.ip,
        dst_addr: ip.src_addr,
        protocol: IpProtocol::Icmp,
        payload_len: reply.buffer_len(),
        ttl: 64,
    };
    let l2 = EthernetRepr {
        src: gw.mac,
        dst: eth.src(),
        ethertype: EtherType::Ipv4,
    };
    let len = l2.buffer_len() + l3.buffer_len() + reply.buffer_len();
    let Some(buf) = out.get_mut(..len) else {
        return Action::Drop(DropReason::GatewayUnhandled);
    };
    let mut frame = EthernetFrame::new_unchecked(buf);
    l2.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    l3.emit(&mut packet);
    reply.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
    Action::Reply(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::frames::{inbound_frame, unreachable_frame};
    use crate::wire::UdpRepr;
    use crate::wire::icmpv4::DstUnreachable;
    use ipnet::Ipv4Net;

    const HOST: MacAddr = MacAddr([2, 0x42, 10, 9, 0, 2]);

    fn gw(internal: bool) -> GatewayConfig {
        GatewayConfig::new(Ipv4Addr::new(10, 9, 0, 1), "10.9.0.0/24".parse().unwrap(), internal)
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let req = ArpRepr {
            operation: ArpOperation::Request,
            sender_hardware_addr: HOST,
            sender_protocol_addr: Ipv4Addr::new(10, 9, 0, 2),
            target_hardware_addr: MacAddr::default(),
            target_protocol_addr: target,
        };
        let l2 = EthernetRepr {
            src: HOST,
            dst: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        };
        let mut buf = vec![0u8; l2.buffer_len() + req.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        l2.emit(&mut f);
        req.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        buf
    }

    fn ip_frame(dst_mac: MacAddr, dst: Ipv4Addr, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
        let l3 = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 9, 0, 2),
            dst_addr: dst,
            protocol: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 64,
        };
        let l2 = EthernetRepr {
            src: HOST,
            dst: dst_mac,
            ethertype: EtherType::Ipv4,
        };
        let mut buf = vec![0u8; l2.buffer_len() + l3.buffer_len() + icmp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        l2.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        l3.emit(&mut p);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()));
        buf
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let g = gw(false);
        let req = arp_request(g.ip);
        assert!(g.wants(&EthernetFrame::new_checked(&req[..]).unwrap()));
        let mut out = [0u8; 1514];
        let Action::Reply(n) = handle(&g, |_| false, &req, &mut out) else {
            panic!("no reply")
        };
        let f = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!((f.dst(), f.src()), (HOST, g.mac));
        let a = ArpRepr::parse(&ArpPacket::new_checked(f.payload()).unwrap()).unwrap();
        assert_eq!(a.operation, ArpOperation::Reply);
        assert_eq!((a.sender_hardware_addr, a.sender_protocol_addr), (g.mac, g.ip));
        assert_eq!(a.target_protocol_addr, Ipv4Addr::new(10, 9, 0, 2));
        let other = arp_request(Ipv4Addr::new(10, 9, 0, 3));
        assert!(!g.wants(&EthernetFrame::new_checked(&other[..]).unwrap()));
        assert_eq!(
            handle(&g, |_| false, &other, &mut out),
            Action::Drop(DropReason::GatewayUnhandled)
        );
    }

    #[test]
    fn answers_echo_to_its_address() {
        let g = gw(false);
        let req = Icmpv4Repr::EchoRequest {
            ident: 9,
            seq_no: 3,
            data: b"hello gateway",
        };
        let frame = ip_frame(g.mac, g.ip, &req);
        let mut out = [0u8; 1514];
        let Action::Reply(n) = handle(&g, |_| false, &frame, &mut out) else {
            panic!("no reply")
        };
        let f = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(f.dst(), HOST);
        let p = Ipv4Packet::new_checked(f.payload()).unwrap();
        let ip = Ipv4Repr::parse(&p).unwrap();
        assert_eq!((ip.src_addr, ip.dst_addr), (g.ip, Ipv4Addr::new(10, 9, 0, 2)));
        let icmp = Icmpv4Repr::parse(
            &Icmpv4Packet::new_checked(p.into_payload()).unwrap(),
            ChecksumMode::Verify,
        );
        assert_eq!(
            icmp,
            Ok(Icmpv4Repr::EchoReply {
                ident: 9,
                seq_no: 3,
                data: b"hello gateway"
            })
        );
        // Too small an output buffer is a drop, not a panic.
        assert!(matches!(handle(&g, |_| false, &frame, &mut out[..20]), Action::Drop(_)));
    }

    #[test]
    fn routed_packets_are_isolated_internal_or_unrouted() {
        let req = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"x",
        };
        let other_net = Ipv4Addr::new(10, 8, 0, 5);
        let outside = Ipv4Addr::new(198, 18, 0, 2);
        let isolated = |a: Ipv4Addr| "10.8.0.0/24".parse::<Ipv4Net>().unwrap().contains(&a);
        let mut out = [0u8; 1514];
        let g = gw(false);
        let to = |dst| ip_frame(g.mac, dst, &req);
        assert_eq!(
            handle(&g, isolated, &to(other_net), &mut out),
            Action::Drop(DropReason::Isolated)
        );
        // An echo request to the outside is routed to outbound NAT: its flow is
        // (container, identifier) → outside, its payload the whole ICMP message.
        let frame = to(outside);
        let Action::Routed(r) = handle(&g, isolated, &frame, &mut out) else {
            panic!("not routed")
        };
        assert_eq!(r.key.proto, NatProto::Icmp);
        assert_eq!(r.key.inside, SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), 1));
        assert_eq!(r.key.outside, SocketAddrV4::new(outside, 0));
        assert_eq!(
            &frame[r.payload.clone()][..1],
            &[8],
            "starts with the echo request type"
        );
        assert_eq!(r.payload.end, frame.len());
        assert_eq!(
            handle(&gw(true), isolated, &to(outside), &mut out),
            Action::Drop(DropReason::Internal)
        );
        assert_eq!(
            handle(&gw(true), isolated, &to(other_net), &mut out),
            Action::Drop(DropReason::Isolated)
        );
    }

    #[test]
    fn martian_destinations_never_reach_nat() {
        let req = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"x",
        };
        let g = gw(false);
        let mut out = [0u8; 1514];
        for dst in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            let dst: Ipv4Addr = dst.parse().unwrap();
            assert!(is_martian(dst), "{dst}");
            assert_eq!(
                handle(&g, |_| false, &ip_frame(g.mac, dst, &req), &mut out),
                Action::Drop(DropReason::Martian),
                "{dst}"
            );
        }
        for ok in [
            "198.18.0.2",
            "8.8.8.8",
            "169.253.0.1",
            "223.255.255.255",
            "126.255.255.255",
        ] {
            assert!(!is_martian(ok.parse().unwrap()), "{ok}");
        }
        // Martian before isolation and internal: the same answer everywhere.
        assert_eq!(
            handle(
                &gw(true),
                |_| true,
                &ip_frame(g.mac, Ipv4Addr::LOCALHOST, &req),
                &mut out
            ),
            Action::Drop(DropReason::Martian)
        );
    }

    #[test]
    fn udp_is_routed_and_replies_come_back_as_frames_to_the_container() {
        use crate::nat::{Flow, FlowPath};
        use crate::types::PortId;
        let g = gw(false);
        let (src, dst) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(198, 18, 0, 2));
        let udp = UdpRepr {
            src_port: 5353,
            dst_port: 53,
            payload: b"query",
        };
        let l3 = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: IpProtocol::Udp,
            payload_len: 13,
            ttl: 64,
        };
        let l2 = EthernetRepr {
            src: HOST,
            dst: g.mac,
            ethertype: EtherType::Ipv4,
        };
        let mut frame = vec![0u8; 14 + 20 + 13];
        let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
        l2.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        l3.emit(&mut p);
        udp.emit(&mut UdpPacket::new_unchecked(p.payload_mut()), src, dst);
        let mut out = [0u8; 1514];
        let Action::Routed(r) = handle(&g, |_| false, &frame, &mut out) else {
            panic!("not routed")
        };
        assert_eq!(r.key.proto, NatProto::Udp);
        assert_eq!(
            (r.key.inside, r.key.outside),
            (SocketAddrV4::new(src, 5353), SocketAddrV4::new(dst, 53))
        );
        assert_eq!(&frame[r.payload.clone()], b"query");

        let flow = Flow {
            key: r.key,
            path: FlowPath {
                port: PortId(0),
                mac: HOST,
                gateway_mac: g.mac,
            },
            last_seen: std::time::Instant::now(),
            packets_out: 1,
            packets_in: 0,
            tcp: None,
        };
        let n = inbound_frame(&flow, b"answer", &mut out).unwrap();
        let f = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!((f.src(), f.dst()), (g.mac, HOST));
        let p = Ipv4Packet::new_checked(f.payload()).unwrap();
        let ip = Ipv4Repr::parse(&p).unwrap();
        assert_eq!((ip.src_addr, ip.dst_addr), (dst, src));
        let u = UdpPacket::new_checked(p.into_payload()).unwrap();
        let u = UdpRepr::parse(&u, dst, src, ChecksumMode::Verify).unwrap();
        assert_eq!((u.src_port, u.dst_port, u.payload), (53, 5353, &b"answer"[..]));
        // A protocol NAT does not carry (GRE) is counted as no_route; a TCP
        // segment shorter than its header is malformed.
        for (proto, reason) in [(47, DropReason::NoRoute), (6, DropReason::Malformed)] {
            let mut other = frame.clone();
            other[14 + 9] = proto;
            let mut p = Ipv4Packet::new_unchecked(&mut other[14..]);
            p.fill_checksum();
            assert_eq!(handle(&g, |_| false, &other, &mut out), Action::Drop(reason));
        }
    }

    #[test]
    fn echo_replies_get_the_containers_identifier_back() {
        use crate::nat::{Flow, FlowKey, FlowPath};
        use crate::types::PortId;
        let g = gw(false);
        let outside = Ipv4Addr::new(198, 18, 0, 2);
        let flow = Flow {
            key: FlowKey {
                proto: NatProto::Icmp,
                inside: SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), 4242),
                outside: SocketAddrV4::new(outside, 0),
            },
            path: FlowPath {
                port: PortId(0),
                mac: HOST,
                gateway_mac: g.mac,
            },
            last_seen: std::time::Instant::now(),
            packets_out: 1,
            packets_in: 0,
            tcp: None,
        };
        // What a ping socket returns: the reply with the kernel's identifier.
        let reply = Icmpv4Repr::EchoReply {
            ident: 777,
            seq_no: 5,
            data: b"abc",
        };
        let mut msg = vec![0u8; reply.buffer_len()];
        reply.emit(&mut Icmpv4Packet::new_unchecked(&mut msg[..]));
        let mut out = [0u8; 1514];
        let n = inbound_frame(&flow, &msg, &mut out).unwrap();
        let p = Ipv4Packet::new_checked(&out[14..n]).unwrap();
        let icmp = Icmpv4Repr::parse(
            &Icmpv4Packet::new_checked(p.into_payload()).unwrap(),
            ChecksumMode::Verify,
        );
        assert_eq!(
            icmp,
            Ok(Icmpv4Repr::EchoReply {
                ident: 4242,
                seq_no: 5,
                data: b"abc"
            })
        );
        // Anything but an echo reply is not delivered.
        let req = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"",
        };
        let mut m = vec![0u8; req.buffer_len()];
        req.emit(&mut Icmpv4Packet::new_unchecked(&mut m[..]));
        assert_eq!(inbound_frame(&flow, &m, &mut out), None);
    }

    #[test]
    fn refused_flows_get_a_port_unreachable_quoting_their_ports() {
        use crate::nat::{Flow, FlowKey, FlowPath};
        use crate::types::PortId;
        let g = gw(false);
        let (inside, outside) = (
            SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), 40000),
            "198.18.0.2:9".parse().unwrap(),
        );
        let flow = Flow {
            key: FlowKey {
                proto: NatProto::Udp,
                inside,
                outside,
            },
            path: FlowPath {
                port: PortId(0),
                mac: HOST,
                gateway_mac: g.mac,
            },
            last_seen: std::time::Instant::now(),
            packets_out: 1,
            packets_in: 0,
            tcp: None,
        };
        let mut out = [0u8; 1514];
        let n = unreachable_frame(&flow, DstUnreachable::PortUnreachable, &mut out).unwrap();
        let p = Ipv4Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap().dst_addr, *inside.ip());
        let msg = Icmpv4Packet::new_checked(p.into_payload()).unwrap();
        let Ok(Icmpv4Repr::DstUnreachable {
            reason, header, data, ..
        }) = Icmpv4Repr::parse(&msg, ChecksumMode::Verify)
        else {
            panic!("not a destination unreachable");
        };
        assert_eq!(reason, DstUnreachable::PortUnreachable);
        assert_eq!(
            (header.src_addr, header.dst_addr, header.protocol),
            (*inside.ip(), *outside.ip(), IpProtocol::Udp)
        );
        assert_eq!(&data[..4], &[0x9c, 0x40, 0, 9]);
    }

    #[test]
    fn garbage_never_panics() {
        let g = gw(false);
        let mut out = [0u8; 64];
        let good = ip_frame(
            g.mac,
            g.ip,
            &Icmpv4Repr::EchoRequest {
                ident: 1,
                seq_no: 1,
                data: &[7; 40],
            },
        );
        for cut in 0..good.len() {
            let _ = handle(&g, |_| false, &good[..cut], &mut out);
        }
        let mut bad = good.clone();
        bad[30] ^= 0xff; // break the IPv4 checksum
        assert_eq!(
            handle(&g, |_| false, &bad, &mut out),
            Action::Drop(DropReason::Malformed)
        );
    }
}
