//! Crafted frames, as a hostile container would send them through a raw
//! socket: any source MAC and address, any destination. Built with the
//! switch's wire reprs (checksums right, so only the lie is wrong).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use plexus_switch::MacAddr;
use plexus_switch::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpFlags, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// The Ethernet header of a frame from `src` to `dst`.
pub struct L2 {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
}

fn ip_frame(l2: &L2, from: Ipv4Addr, to: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> (Vec<u8>, Ipv4Repr) {
    let eth = EthernetRepr {
        src: l2.src,
        dst: l2.dst,
        ethertype: EtherType::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: from,
        dst_addr: to,
        protocol,
        payload_len,
        ttl: 64,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + payload_len];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    ip.emit(&mut Ipv4Packet::new_unchecked(f.payload_mut()));
    (buf, ip)
}

/// The IPv4 payload of an IPv4 frame built by [`ip_frame`].
fn l4(buf: &mut [u8]) -> &mut [u8] {
    &mut buf[14 + 20..]
}

/// A UDP datagram `from` → `to` carrying `payload`.
pub fn udp(l2: &L2, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
        payload,
    };
    let (mut buf, _) = ip_frame(l2, *from.ip(), *to.ip(), IpProtocol::Udp, udp.buffer_len());
    udp.emit(&mut UdpPacket::new_unchecked(l4(&mut buf)), *from.ip(), *to.ip());
    buf
}

/// A TCP segment `from` → `to` with `flags` (and sequence numbers that
/// belong to no connection).
pub fn tcp(l2: &L2, from: SocketAddrV4, to: SocketAddrV4, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    let seg = TcpRepr {
        src_port: from.port(),
        dst_port: to.port(),
        seq_number: 0x1000_0000,
        ack_number: if flags.contains(TcpFlags::ACK) { 0x2000_0000 } else { 0 },
        flags,
        window_len: 64240,
        mss: flags.contains(TcpFlags::SYN).then_some(1460),
        payload,
    };
    let (mut buf, _) = ip_frame(l2, *from.ip(), *to.ip(), IpProtocol::Tcp, seg.buffer_len());
    seg.emit(&mut TcpPacket::new_unchecked(l4(&mut buf)), *from.ip(), *to.ip());
    buf
}

/// An ARP packet (`op`) whose sender claims `sender_ip` is at `sender_mac`,
/// sent from `l2.src` to `l2.dst` (broadcast for a gratuitous one).
pub fn arp(l2: &L2, op: ArpOperation, sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let eth = EthernetRepr {
        src: l2.src,
        dst: l2.dst,
        ethertype: EtherType::Arp,
    };
    let a = ArpRepr {
        operation: op,
        sender_hardware_addr: sender_mac,
        sender_protocol_addr: sender_ip,
        target_hardware_addr: if op == ArpOperation::Reply {
            MacAddr::BROADCAST
        } else {
            MacAddr::default()
        },
        target_protocol_addr: target_ip,
    };
    let mut buf = vec![0u8; eth.buffer_len() + a.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    a.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    buf
}
