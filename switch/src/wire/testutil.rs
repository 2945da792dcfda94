//! Test support: frames and random headers built with etherparse, an
//! independent implementation that serves as the oracle for ours.

use std::net::Ipv4Addr;

use etherparse::{IpDscp, IpEcn, IpFragOffset, IpNumber, Ipv4Header, PacketBuilder, TcpHeader, TcpOptionElement};
use proptest::prelude::*;

use super::ipv4::{Protocol, Repr as Ipv4Repr};

const CONTAINER_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
const CONTAINER: [u8; 4] = [172, 17, 0, 2];

/// Whole frames with no Ethernet padding, so every shorter prefix is invalid:
/// an ARP request for 172.17.0.1, an ICMP echo request (ident 0x1234, seq 1,
/// "plexus!!"), a UDP datagram 40000 → 53 ("query") and a TCP SYN to port 80
/// with MSS 1460 and window scale 7, all from 172.17.0.2 with TTL 64.
pub fn golden_frames() -> Vec<Vec<u8>> {
    let eth = || PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC);
    let ip = |dst: [u8; 4]| eth().ipv4(CONTAINER, dst, 64);
    let mut frames = vec![Vec::new(); 4];
    let arp = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation::REQUEST,
        sender_mac: CONTAINER_MAC,
        sender_ipv4: CONTAINER,
        target_mac: [0; 6],
        target_ipv4: [172, 17, 0, 1],
    };
    PacketBuilder::ethernet2(CONTAINER_MAC, [0xff; 6])
        .arp(arp.to_arp_packet())
        .write(&mut frames[0])
        .unwrap();
    ip([172, 17, 0, 1])
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut frames[1], b"plexus!!")
        .unwrap();
    ip([8, 8, 8, 8]).udp(40000, 53).write(&mut frames[2], b"query").unwrap();
    ip([93, 184, 216, 34])
        .tcp(51000, 80, 0x0102_0304, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut frames[3], &[])
        .unwrap();
    frames
}

/// An IPv4 header for checksum computations of etherparse's transport headers.
pub fn ipv4_for(src: [u8; 4], dst: [u8; 4], protocol: IpNumber, payload_len: usize) -> Ipv4Header {
    Ipv4Header::new(u16::try_from(payload_len).unwrap(), 64, protocol, src, dst).unwrap()
}

/// Random IPv4 headers with options and a correct checksum; `total_len` covers
/// up to 64 payload bytes.
pub fn ipv4_header() -> impl Strategy<Value = Ipv4Header> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
        ),
        (any::<u8>(), any::<u8>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
        (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4)),
        0u16..64,
    )
        .prop_map(
            |((dscp, ecn, ident, df, mf, frag), (ttl, proto, src, dst), options, payload)| {
                let mut h = Ipv4Header {
                    dscp: IpDscp::try_new(dscp & 0x3f).unwrap(),
                    ecn: IpEcn::try_new(ecn & 0x03).unwrap(),
                    identification: ident,
                    dont_fragment: df,
                    more_fragments: mf,
                    fragment_offset: IpFragOffset::try_new(frag & 0x1fff).unwrap(),
                    time_to_live: ttl,
                    protocol: IpNumber(proto),
                    source: src,
                    destination: dst,
                    ..Ipv4Header::default()
                };
                h.options = options[..].try_into().unwrap();
                h.set_payload_len(usize::from(payload)).unwrap();
                h.header_checksum = h.calc_header_checksum();
                h
            },
        )
}

/// Random option lists that fit a TCP header.
fn tcp_options() -> impl Strategy<Value = Vec<TcpOptionElement>> {
    let element = prop_oneof![
        Just(TcpOptionElement::Noop),
        any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
        any::<u8>().prop_map(TcpOptionElement::WindowScale),
        Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| TcpOptionElement::Timestamp(a, b)),
    ];
    proptest::collection::vec(element, 0..5)
}

/// Random TCP headers with options (checksum left 0: it depends on the addresses).
pub fn tcp_header() -> impl Strategy<Value = TcpHeader> {
    (
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
        (any::<u16>(), any::<u16>(), any::<u16>()),
        tcp_options(),
    )
        .prop_map(|((sport, dport, seq, ack), (flags, window, urgent), options)| {
            let bit = |i: u16| flags & (1 << i) != 0;
            let mut h = TcpHeader::new(sport, dport, seq, window);
            h.acknowledgment_number = ack;
            (h.fin, h.syn, h.rst, h.psh, h.ack, h.urg, h.ece, h.cwr, h.ns) =
                (bit(0), bit(1), bit(2), bit(3), bit(4), bit(5), bit(6), bit(7), bit(8));
            h.urgent_pointer = urgent;
            h.set_options(&options).unwrap();
            h
        })
}

/// Random IPv4 reprs.
pub fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (any::<u32>(), any::<u32>(), any::<u8>(), 0usize..=65515, any::<u8>()).prop_map(|(src, dst, proto, len, ttl)| {
        Ipv4Repr {
            src_addr: Ipv4Addr::from(src),
            dst_addr: Ipv4Addr::from(dst),
            protocol: Protocol::from(proto),
            payload_len: len,
            ttl,
        }
    })
}
