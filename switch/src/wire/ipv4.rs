//! IPv4 headers (RFC 791).
//!
//! [`Packet`] is a zero-copy view. `new_checked` checks that the buffer holds the
//! fixed header, that the IHL is at least 5 and within the buffer, and that the
//! total length covers the header and fits in the buffer (bytes past it, such as
//! Ethernet padding, are ignored); after it no accessor can panic. Options are
//! skipped via the IHL and readable raw through [`Packet::options`].
//!
//! [`Packet::new_quoted`] is for the header an ICMP error quotes: only the header
//! must be whole, since the quote keeps just the first 8 payload bytes while the
//! total length still names the original datagram.
//!
//! [`Repr`] has no options: `parse` skips them and `emit` writes a 20-byte header.
//! It describes a whole datagram, so `parse` rejects fragments (`Unsupported`),
//! a version other than 4 (`Malformed`) and a bad header checksum (`Checksum`).

use std::net::Ipv4Addr;

use super::{WireError, checksum, enum_with_unknown, fields, packet_view};

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: Range<usize> = 8..9;
    pub const PROTOCOL: Range<usize> = 9..10;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Flags: don't fragment.
const FLAG_DF: u16 = 0x4000;
/// Flags: more fragments.
const FLAG_MF: u16 = 0x2000;
/// The fragment offset, in units of 8 bytes.
const OFFSET_MASK: u16 = 0x1fff;

enum_with_unknown! {
    /// The protocol of the payload.
    pub enum Protocol(u8) {
        /// ICMP.
        Icmp = 1,
        /// TCP.
        Tcp = 6,
        /// UDP.
        Udp = 17,
    }
}

packet_view! {
    /// A view of an IPv4 packet.
    Packet, payload
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps the IPv4 header quoted in an ICMP error: checks only the header
    /// (see the module doc); [`Self::payload`] is what the quote kept.
    pub fn new_quoted(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    fn check_header(&self) -> Result<(), WireError> {
        let header_len = super::check_declared(self.buffer.as_ref(), HEADER_LEN, || usize::from(self.header_len()))?;
        if usize::from(self.total_len()) < header_len {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    /// Checks the header and that the buffer holds the whole datagram.
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        usize::from(self.header_len())..usize::from(self.total_len())
    }

    /// Version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    fn flags_offset(&self) -> u16 {
        super::Field::read(&self.buffer.as_ref()[field::FLG_OFF])
    }

    /// The don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) * 8
    }

    /// True for any fragment of a fragmented datagram, the first included.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The options between the fixed header and the payload, raw.
    pub fn options(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), HEADER_LEN..usize::from(self.header_len()))
    }

    /// True if the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        checksum::sum(super::clamped(b, 0..usize::from(self.header_len()))) == 0xffff
    }
}

fields! {
    Packet {
        /// Total length: header and payload, in bytes.
        total_len / set_total_len: u16 = field::LENGTH;
        /// Identification, for reassembly.
        ident / set_ident: u16 = field::IDENT;
        /// Time to live.
        ttl / set_ttl: u8 = field::TTL;
        /// Payload protocol.
        protocol / set_protocol: Protocol = field::PROTOCOL;
        /// Header checksum.
        checksum / set_checksum: u16 = field::CHECKSUM;
        /// Source address.
        src_addr / set_src_addr: Ipv4Addr = field::SRC_ADDR;
        /// Destination address.
        dst_addr / set_dst_addr: Ipv4Addr = field::DST_ADDR;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP and ECN bits.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 0x03);
    }

    fn set_flags_offset(&mut self, value: u16) {
        super::Field::write(value, &mut self.buffer.as_mut()[field::FLG_OFF]);
    }

    /// Sets the don't-fragment flag.
    pub fn set_dont_frag(&mut self, on: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(if on { v | FLAG_DF } else { v });
    }

    /// Sets the more-fragments flag.
    pub fn set_more_frags(&mut self, on: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(if on { v | FLAG_MF } else { v });
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | ((bytes / 8) & OFFSET_MASK));
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::sum(super::clamped(self.buffer.as_ref(), 0..usize::from(self.header_len())));
        self.set_checksum(c);
    }
}

/// A parsed IPv4 header without options, describing a whole (unfragmented) datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: Protocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Repr {
    /// Parses and validates a checked packet (see the module doc).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Repr::parse_quoted(packet)
    }

    /// The repr of a header quoted in an ICMP error: version checked only, since
    /// a router may quote a fragment, and `payload_len` is the original's.
    pub(super) fn parse_quoted<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_header()?;
        if packet.version() != 4 {
            return Err(WireError::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len() - u16::from(packet.header_len())),
            ttl: packet.ttl(),
        })
    }

    /// Bytes the header takes (the payload is not included).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with DF set, identification 0 and its checksum.
    ///
    /// # Panics
    /// If the packet is shorter than [`HEADER_LEN`] or `payload_len` exceeds 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let total = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 payload_len exceeds 65515 bytes");
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp_ecn(0, 0);
        packet.set_total_len(total);
        packet.set_ident(0);
        packet.set_flags_offset(FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

/// The sum of the IPv4 pseudo-header TCP and UDP checksums cover: addresses,
/// protocol and the transport length (header and payload).
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, length: usize) -> u16 {
    let mut acc = checksum::accumulate(0, &src.octets());
    acc = checksum::accumulate(acc, &dst.octets());
    acc += u64::from(u8::from(protocol));
    // A real IPv4 length fits 16 bits; a longer one still sums without loss.
    acc += length as u64;
    checksum::fold(acc)
}

/// The sum of a TCP or UDP segment with its pseudo-header, checksum field
/// included: `0xffff` when the checksum is right.
pub fn transport_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, segment: &[u8]) -> u16 {
    checksum::combine(&[pseudo_header(src, dst, protocol, segment.len()), checksum::sum(segment)])
}

/// Completes the TCP or UDP checksum of the IPv4 packet in `packet` if its
/// field holds only the pseudo-header sum — what a Linux sender leaves there
/// when it hands the checksum to offload (`CHECKSUM_PARTIAL`). Returns true if
/// it filled the field.
///
/// For ports that carry no offload metadata (AF_XDP): the kernel hands over
/// such a frame as it is, and nothing else would ever fill it. The test is
/// exact, not a guess: if the field equals the pseudo-header sum `P`, the
/// correct checksum is `!(sum(segment with the field = P))` whether the
/// sender meant `P` as a partial sum or, by a 1-in-65536 chance, as the final
/// value (then the result is `P` again). A forged frame gains nothing a
/// sender computing its own checksum could not do.
pub fn complete_partial_checksum(packet: &mut [u8]) -> bool {
    let Ok(mut ip) = Packet::new_checked(packet) else {
        return false;
    };
    let field = match ip.protocol() {
        Protocol::Tcp => 16,
        Protocol::Udp => 6,
        _ => return false,
    };
    if ip.version() != 4 || ip.is_fragment() {
        return false;
    }
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let segment = ip.payload_mut();
    let Some(at) = segment.get(field..field + 2) else {
        return false;
    };
    let partial = pseudo_header(src, dst, protocol, segment.len());
    if u16::from_be_bytes([at[0], at[1]]) != partial {
        return false;
    }
    let mut check = !checksum::sum(segment);
    if check == 0 && protocol == Protocol::Udp {
        // Zero means "no checksum" in UDP; its one's-complement twin is sent.
        check = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&check.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// An IPv4 packet of `protocol` with `payload` (a transport header and
    /// data), checksum fields as the caller wrote them.
    fn datagram(protocol: Protocol, l4: &[u8]) -> Vec<u8> {
        let repr = Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 2),
            dst_addr: Ipv4Addr::new(10, 0, 0, 3),
            protocol,
            payload_len: l4.len(),
            ttl: 64,
        };
        let mut buf = vec![0u8; repr.buffer_len() + l4.len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf[HEADER_LEN..].copy_from_slice(l4);
        buf
    }

    #[test]
    fn a_partial_checksum_is_completed_and_a_full_one_left_alone() {
        for (protocol, field, len) in [(Protocol::Tcp, 16, 20 + 37), (Protocol::Udp, 6, 8 + 11)] {
            let l4: Vec<u8> = (0..len).map(|i| u8::try_from((i * 7 + 3) % 256).unwrap()).collect();
            let mut pkt = datagram(protocol, &l4);
            let p = pseudo_header(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3), protocol, len);
            pkt[HEADER_LEN + field..HEADER_LEN + field + 2].copy_from_slice(&p.to_be_bytes());
            assert!(complete_partial_checksum(&mut pkt));
            let ip = Packet::new_checked(&pkt[..]).unwrap();
            assert_eq!(
                transport_sum(ip.src_addr(), ip.dst_addr(), protocol, ip.payload()),
                0xffff
            );
            // Now complete: a second pass finds nothing to do and changes nothing.
            let before = pkt.clone();
            assert!(!complete_partial_checksum(&mut pkt));
            assert_eq!(pkt, before);
        }
    }

    #[test]
    fn other_packets_are_not_touched() {
        // ICMP, a fragment, a segment too short for its checksum field, not IPv4.
        let mut icmp = datagram(Protocol::Icmp, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let mut frag = datagram(Protocol::Udp, &[0; 16]);
        frag[6] = 0x20; // more fragments
        let mut short = datagram(Protocol::Tcp, &[0; 10]);
        let mut junk = vec![0x60u8; 40];
        for pkt in [&mut icmp, &mut frag, &mut short, &mut junk] {
            let before = pkt.clone();
            assert!(!complete_partial_checksum(pkt));
            assert_eq!(*pkt, before);
        }
    }

    /// 172.17.0.2 → 8.8.8.8, UDP, 8 payload bytes, TTL 64, ident 0x1c46, DF,
    /// one 4-byte option (NOPs + EOL), checksum 0x5f63.
    const GOLDEN: [u8; 32] = [
        0x46, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x5f, 0x63, 0xac, 0x11, 0x00, 0x02, 0x08, 0x08,
        0x08, 0x08, 0x01, 0x01, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03,
    ];

    #[test]
    fn golden_fields() {
        let p = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 24, 32));
        assert_eq!(
            (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset()),
            (0x1c46, true, false, 0)
        );
        assert_eq!((p.ttl(), p.protocol(), p.checksum()), (64, Protocol::Udp, 0x5f63));
        assert_eq!(p.src_addr(), Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &GOLDEN[24..]);
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 8);
        // The options are dropped when emitted again.
        let mut buf = [0u8; HEADER_LEN];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(Repr::parse_quoted(&Packet::new_quoted(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn rejects_bad_lengths_and_values() {
        for len in 0..GOLDEN.len() {
            assert_eq!(
                Packet::new_checked(&GOLDEN[..len]).unwrap_err(),
                WireError::Truncated,
                "{len}"
            );
        }
        let with = |i: usize, v: u8| {
            let mut b = GOLDEN;
            b[i] = v;
            b
        };
        // IHL below 5, total length below the header: malformed.
        assert_eq!(
            Packet::new_checked(&with(0, 0x44)[..]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(Packet::new_checked(&with(3, 23)[..]).unwrap_err(), WireError::Malformed);
        // IHL past the buffer, total length past the buffer: truncated.
        assert_eq!(
            Packet::new_checked(&with(0, 0x4f)[..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(Packet::new_checked(&with(3, 33)[..]).unwrap_err(), WireError::Truncated);
        // But a quoted header may be cut short.
        let quoted = Packet::new_quoted(&GOLDEN[..28]).unwrap();
        assert_eq!(quoted.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        // Checksum, version, fragments.
        let bad = with(8, 63);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bad[..]).unwrap()),
            Err(WireError::Checksum)
        );
        let mut v6 = with(0, 0x66);
        Packet::new_unchecked(&mut v6[..]).fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&v6[..]).unwrap()),
            Err(WireError::Malformed)
        );
        let mut frag = GOLDEN;
        let mut p = Packet::new_unchecked(&mut frag[..]);
        p.set_more_frags(true);
        p.fill_checksum();
        assert!(p.dont_frag() && p.more_frags());
        assert_eq!(
            Repr::parse(&Packet::new_checked(&frag[..]).unwrap()),
            Err(WireError::Unsupported)
        );
    }

    #[test]
    fn extra_bytes_after_total_length_are_ignored() {
        let mut b = GOLDEN.to_vec();
        b.extend_from_slice(&[0; 14]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn setters_cannot_make_accessors_panic() {
        let mut b = GOLDEN;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_header_len(60);
        p.set_total_len(9000);
        assert!(p.options().len() <= 32 && p.payload().is_empty());
        p.set_header_len(4);
        let _ = (p.options(), p.payload(), p.verify_checksum());
    }

    #[test]
    fn fragment_fields_round_trip() {
        let mut b = GOLDEN;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_dont_frag(false);
        p.set_frag_offset(1480);
        p.set_more_frags(true);
        assert_eq!((p.dont_frag(), p.more_frags(), p.frag_offset()), (false, true, 1480));
        assert!(p.is_fragment());
        p.set_dscp_ecn(46, 2);
        assert_eq!((p.dscp(), p.ecn()), (46, 2));
    }

    proptest! {
        #[test]
        fn etherparse_headers_parse_to_the_same_fields(h in testutil::ipv4_header()) {
            let mut bytes = h.to_bytes().to_vec();
            bytes.resize(usize::from(h.total_len), 0xa5);
            let p = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(usize::from(p.header_len()), h.header_len());
            prop_assert_eq!(p.dscp(), h.dscp.value());
            prop_assert_eq!(p.ecn(), h.ecn.value());
            prop_assert_eq!(p.total_len(), h.total_len);
            prop_assert_eq!(p.ident(), h.identification);
            prop_assert_eq!(p.dont_frag(), h.dont_fragment);
            prop_assert_eq!(p.more_frags(), h.more_fragments);
            prop_assert_eq!(p.frag_offset(), h.fragment_offset.byte_offset());
            prop_assert_eq!(p.ttl(), h.time_to_live);
            prop_assert_eq!(u8::from(p.protocol()), h.protocol.0);
            prop_assert_eq!(p.checksum(), h.header_checksum);
            prop_assert_eq!(p.src_addr().octets(), h.source);
            prop_assert_eq!(p.dst_addr().octets(), h.destination);
            prop_assert_eq!(p.options(), h.options.as_slice());
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.payload().len(), usize::from(h.total_len) - h.header_len());
        }

        #[test]
        fn emit_parse_round_trip(r in testutil::ipv4_repr()) {
            let mut buf = vec![0u8; r.buffer_len() + r.payload_len];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
            // etherparse reads our header the same way, checksum included.
            let (theirs, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.header_checksum, theirs.calc_header_checksum());
            prop_assert_eq!(theirs.source, r.src_addr.octets());
            prop_assert_eq!(usize::from(theirs.total_len), HEADER_LEN + r.payload_len);
        }

    }
}
