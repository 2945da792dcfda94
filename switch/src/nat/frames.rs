//! Frames NAT builds towards a container: what came back on a flow's host
//! socket (a UDP datagram from the outside address, an ICMP echo reply with
//! the container's identifier put back), and the ICMP "destination
//! unreachable" that tells the container its flow was refused outside.
//! Sans-IO: each builder writes into the caller's buffer and returns the
//! frame's length.

use crate::nat::table::{Flow, FlowKey, FlowPath, NatProto};
use crate::wire::icmpv4::DstUnreachable;
use crate::wire::{
    EtherType, EthernetFrame, EthernetRepr, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    UdpPacket, UdpRepr,
};

const UDP_HEADER_LEN: usize = 8;

/// Builds the ICMP "destination unreachable" that tells the container its flow
/// was refused outside — what the container's stack expects when the host
/// socket reports ECONNREFUSED (port unreachable) or EHOSTUNREACH/ENETUNREACH.
/// The quoted datagram is the flow's own first 8 bytes (addresses, ports), which
/// is what the container matches the error to its socket with.
pub fn unreachable_frame(flow: &Flow, reason: DstUnreachable, out: &mut [u8]) -> Option<usize> {
    let (inside, outside) = (flow.key.inside, flow.key.outside);
    let mut quote = [0u8; UDP_HEADER_LEN];
    quote[..2].copy_from_slice(&inside.port().to_be_bytes());
    quote[2..4].copy_from_slice(&outside.port().to_be_bytes());
    unreachable_quoting(flow, reason, quote, out)
}

/// [`unreachable_frame`] with the first 8 bytes of the refused segment given
/// (for TCP: ports and the SYN's sequence number, which the container's stack
/// checks).
pub fn unreachable_quoting(flow: &Flow, reason: DstUnreachable, mut quote: [u8; 8], out: &mut [u8]) -> Option<usize> {
    let (inside, outside) = (flow.key.inside, flow.key.outside);
    let protocol = match flow.key.proto {
        NatProto::Tcp => IpProtocol::Tcp,
        NatProto::Udp => {
            quote[4..6].copy_from_slice(&8u16.to_be_bytes());
            IpProtocol::Udp
        }
        NatProto::Icmp => {
            // The echo request's header: type 8, code 0, identifier.
            quote = [0; 8];
            quote[0] = 8;
            quote[4..6].copy_from_slice(&inside.port().to_be_bytes());
            IpProtocol::Icmp
        }
    };
    let header = Ipv4Repr {
        src_addr: *inside.ip(),
        dst_addr: *outside.ip(),
        protocol,
        payload_len: 8,
        ttl: 64,
    };
    let icmp = Icmpv4Repr::DstUnreachable {
        reason,
        next_hop_mtu: 0,
        header,
        data: &quote,
    };
    let l2 = EthernetRepr {
        src: flow.path.gateway_mac,
        dst: flow.path.mac,
        ethertype: EtherType::Ipv4,
    };
    let l3 = Ipv4Repr {
        src_addr: *outside.ip(),
        dst_addr: *inside.ip(),
        protocol: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        ttl: 63,
    };
    let len = l2.buffer_len() + l3.buffer_len() + icmp.buffer_len();
    let buf = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(buf);
    l2.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    l3.emit(&mut packet);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
    Some(len)
}

/// Builds the frame that carries `data`, received on flow `flow`'s host socket,
/// to the container: a UDP datagram from the outside address, or the ICMP echo
/// reply with the container's own identifier put back. Returns its length in
/// `out`, or `None` if it does not fit or is not an echo reply.
pub fn inbound_frame(flow: &Flow, data: &[u8], out: &mut [u8]) -> Option<usize> {
    inbound_frame_on(&flow.key, &flow.path, data, out)
}

/// [`inbound_frame`] for a flow's key and path alone (the gateway's own
/// answers, such as its DNS's, use it with the gateway as the outside).
pub fn inbound_frame_on(key: &FlowKey, path: &FlowPath, data: &[u8], out: &mut [u8]) -> Option<usize> {
    let (src, dst) = (*key.outside.ip(), *key.inside.ip());
    let (protocol, payload_len) = match key.proto {
        NatProto::Udp => (IpProtocol::Udp, UDP_HEADER_LEN + data.len()),
        NatProto::Icmp => (IpProtocol::Icmp, data.len()),
        // TCP segments are built by the relay's stack, not here.
        NatProto::Tcp => return None,
    };
    let l2 = EthernetRepr {
        src: path.gateway_mac,
        dst: path.mac,
        ethertype: EtherType::Ipv4,
    };
    let l3 = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len,
        ttl: 63,
    };
    let len = l2.buffer_len() + l3.buffer_len() + payload_len;
    if len > usize::from(u16::MAX) {
        return None;
    }
    let buf = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(buf);
    l2.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    l3.emit(&mut packet);
    match key.proto {
        NatProto::Udp => {
            let udp = UdpRepr {
                src_port: key.outside.port(),
                dst_port: key.inside.port(),
                payload: data,
            };
            udp.emit(&mut UdpPacket::new_unchecked(packet.payload_mut()), src, dst);
        }
        NatProto::Icmp => {
            let body = packet.payload_mut();
            body.copy_from_slice(data);
            let mut msg = Icmpv4Packet::new_checked(body).ok()?;
            if msg.msg_type() != Icmpv4Message::EchoReply {
                return None;
            }
            msg.set_echo_ident(key.inside.port());
            msg.fill_checksum();
        }
        NatProto::Tcp => return None,
    }
    Some(len)
}
