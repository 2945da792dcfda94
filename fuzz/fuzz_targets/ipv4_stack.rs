//! The parsing chain a gateway runs — Ethernet → ARP, or IPv4 → ICMP / UDP / TCP —
//! on arbitrary bytes, with every accessor called. Beyond "never panics" it
//! checks that every repr that parses emits back to the same repr, and that the
//! in-place rewrites the switch does keep what they must: the relay's MSS
//! raise changes the MSS option and nothing else; the raw ICMP fallback's echo
//! identifier rewrite (an incremental checksum update) keeps a valid checksum
//! valid; an AF_XDP port's completion of a partial checksum makes it verify.
//!
//! Input: byte 0 bit 0 set → the checksums are fixed up first; the rest is the frame.

#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use plexus_switch::wire::{
    ArpPacket, ArpRepr, ChecksumMode, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet,
    Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr, checksum, ipv4,
};

const MODES: [ChecksumMode; 2] = [ChecksumMode::Verify, ChecksumMode::Skip];
const RAW_IDENT: u16 = 0xbeef;

/// Emits a parsed repr into a buffer of its `buffer_len` and checks that the
/// view `$q` of those bytes parses (`$parse`) back to the same repr.
macro_rules! assert_round_trip {
    ($repr:expr, $view:ident, |$q:ident| $parse:expr $(, $emit_arg:expr)*) => {{
        let repr = $repr;
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut $view::new_unchecked(&mut out[..]) $(, $emit_arg)*);
        let $q = $view::new_checked(&out[..]).unwrap();
        assert_eq!($parse, Ok(repr));
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    if control & 1 != 0 {
        fix_checksums(&mut frame);
    }
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return;
    };
    let payload = eth.into_payload();
    match EtherType::from(eth.ethertype()) {
        EtherType::Arp => arp(payload),
        EtherType::Vlan => {}
        _ => ipv4(payload),
    }
});

/// Makes the IPv4 and transport checksums right, so that inputs get past the
/// checksum checks into the repr round trips and the rewrites.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let l4 = ip.payload_mut();
    match protocol {
        IpProtocol::Icmp => {
            if let Ok(mut p) = Icmpv4Packet::new_checked(l4) {
                p.fill_checksum();
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut p) = UdpPacket::new_checked(l4) {
                p.fill_checksum(src, dst);
            }
        }
        IpProtocol::Tcp => {
            if let Ok(mut p) = TcpPacket::new_checked(l4) {
                p.fill_checksum(src, dst);
            }
        }
        IpProtocol::Unknown(_) => {}
    }
}

fn arp(bytes: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(bytes) else { return };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.operation(),
    );
    let _ = (
        p.sender_hardware_addr(),
        p.sender_protocol_addr(),
        p.target_hardware_addr(),
        p.target_protocol_addr(),
    );
    if let Ok(r) = ArpRepr::parse(&p) {
        assert_round_trip!(r, ArpPacket, |q| ArpRepr::parse(&q));
    }
}

/// An AF_XDP port's completion of a checksum left to offload: when it fills
/// one, the transport checksum verifies, and a second pass changes nothing.
fn partial_checksum(bytes: &[u8]) {
    let mut pkt = bytes.to_vec();
    if !ipv4::complete_partial_checksum(&mut pkt) {
        assert_eq!(pkt, bytes, "changed without completing");
        return;
    }
    let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
    let segment = ip.payload();
    assert_eq!(ipv4::transport_sum(ip.src_addr(), ip.dst_addr(), ip.protocol(), segment), 0xffff);
    let done = pkt.clone();
    ipv4::complete_partial_checksum(&mut pkt);
    assert_eq!(pkt, done);
}

fn ipv4(bytes: &[u8]) {
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else { return };
    let _ = (
        ip.version(),
        ip.header_len(),
        ip.dscp(),
        ip.ecn(),
        ip.total_len(),
        ip.ident(),
    );
    let _ = (
        ip.dont_frag(),
        ip.more_frags(),
        ip.frag_offset(),
        ip.is_fragment(),
        ip.ttl(),
        ip.protocol(),
    );
    let _ = (
        ip.checksum(),
        ip.src_addr(),
        ip.dst_addr(),
        ip.options(),
        ip.verify_checksum(),
    );
    partial_checksum(bytes);
    if let Ok(r) = Ipv4Repr::parse(&ip) {
        let mut out = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()), Ok(r));
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let l4 = ip.into_payload();
    match ip.protocol() {
        IpProtocol::Icmp => icmp(l4),
        IpProtocol::Udp => udp(l4, src, dst),
        IpProtocol::Tcp => tcp(l4, src, dst),
        // Try every parser on the rest: more coverage from one input.
        IpProtocol::Unknown(_) => {
            icmp(l4);
            udp(l4, src, dst);
            tcp(l4, src, dst);
        }
    }
}

fn icmp(bytes: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(bytes) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.next_hop_mtu(),
    );
    let _ = (p.rest_of_header(), p.payload(), p.verify_checksum());
    if let Ok(q) = p.quoted_header() {
        let _ = (
            q.header_len(),
            q.total_len(),
            q.src_addr(),
            q.dst_addr(),
            q.protocol(),
            q.options(),
            q.payload(),
        );
    }
    for mode in MODES {
        if let Ok(r) = Icmpv4Repr::parse(&p, mode) {
            assert_round_trip!(r, Icmpv4Packet, |q| Icmpv4Repr::parse(&q, ChecksumMode::Verify));
        }
    }
    // The raw ICMP fallback's rewrite of the echo identifier.
    if p.verify_checksum() {
        let mut copy = bytes.to_vec();
        let mut m = Icmpv4Packet::new_checked(&mut copy[..]).unwrap();
        let c = checksum::update_u16(m.checksum(), m.echo_ident(), RAW_IDENT);
        m.set_echo_ident(RAW_IDENT);
        m.set_checksum(c);
        assert!(m.verify_checksum(), "incremental identifier update broke the checksum");
    }
}

fn udp(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(p) = UdpPacket::new_checked(bytes) else { return };
    let _ = (p.src_port(), p.dst_port(), p.length(), p.checksum(), p.payload());
    let _ = p.verify_checksum(src, dst);
    for mode in MODES {
        if let Ok(r) = UdpRepr::parse(&p, src, dst, mode) {
            assert_round_trip!(
                r,
                UdpPacket,
                |q| UdpRepr::parse(&q, src, dst, ChecksumMode::Verify),
                src,
                dst
            );
        }
    }
}

fn tcp(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(p) = TcpPacket::new_checked(bytes) else { return };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
        p.flags(),
    );
    let _ = (
        p.window_len(),
        p.checksum(),
        p.urgent_at(),
        p.options(),
        p.mss(),
        p.payload(),
    );
    let _ = p.verify_checksum(src, dst);
    for mode in MODES {
        if let Ok(r) = TcpRepr::parse(&p, src, dst, mode) {
            assert_round_trip!(
                r,
                TcpPacket,
                |q| TcpRepr::parse(&q, src, dst, ChecksumMode::Verify),
                src,
                dst
            );
        }
    }
    // The relay's MSS raise: the option changes, nothing else.
    let mut copy = bytes.to_vec();
    let mut m = TcpPacket::new_checked(&mut copy[..]).unwrap();
    let old = m.mss();
    assert_eq!(m.set_mss(9000), old);
    assert_eq!(m.mss(), old.map(|_| 9000));
    let changed = copy.iter().zip(bytes).filter(|(a, b)| a != b).count();
    assert!(changed <= 2, "set_mss changed {changed} bytes");
}
