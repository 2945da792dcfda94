//! TCP segments (RFC 9293) over IPv4.
//!
//! [`Packet`] is a zero-copy view of an IPv4 payload: the buffer is the whole
//! segment, so the payload runs to its end. `new_checked` checks the 20-byte
//! header is there and that the data offset is at least 5 and within the buffer;
//! after it no accessor can panic. Options are raw bytes plus a walker for the
//! MSS option, which the TCP relay raises in a SYN its own stack reads
//! ([`Packet::set_mss`]); a malformed option list just has no MSS.
//!
//! [`Repr`] holds ports, sequence and acknowledgement numbers, flags, window,
//! the MSS option and the borrowed payload; it drops other options and the
//! urgent pointer. `parse` checks the option list is well formed and the checksum
//! against the IPv4 pseudo-header unless told to skip it ([`ChecksumMode`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{BitOr, Range};

use super::checksum::ChecksumMode;
use super::ipv4::{self, Protocol};
use super::{Field, WireError, fields, packet_view};

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const OFF_FLAGS: Range<usize> = 12..14;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// Option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_SACK_PERMITTED: u8 = 4;
/// Length of the MSS option: kind, length, 16-bit value.
const MSS_OPTION_LEN: usize = 4;

/// The flag bits of the data-offset/flags word.
const FLAGS_MASK: u16 = 0x01ff;

/// TCP control flags (the 9 bits after the data offset and reserved bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No more data from the sender.
    pub const FIN: Flags = Flags(0x001);
    /// Synchronise sequence numbers.
    pub const SYN: Flags = Flags(0x002);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x004);
    /// Push.
    pub const PSH: Flags = Flags(0x008);
    /// The acknowledgement number is valid.
    pub const ACK: Flags = Flags(0x010);
    /// The urgent pointer is valid.
    pub const URG: Flags = Flags(0x020);
    /// ECN echo.
    pub const ECE: Flags = Flags(0x040);
    /// Congestion window reduced.
    pub const CWR: Flags = Flags(0x080);
    /// ECN nonce (historic, RFC 3540), now AccECN's AE bit.
    pub const NS: Flags = Flags(0x100);

    const NAMES: [(Flags, &'static str); 9] = [
        (Flags::FIN, "FIN"),
        (Flags::SYN, "SYN"),
        (Flags::RST, "RST"),
        (Flags::PSH, "PSH"),
        (Flags::ACK, "ACK"),
        (Flags::URG, "URG"),
        (Flags::ECE, "ECE"),
        (Flags::CWR, "CWR"),
        (Flags::NS, "NS"),
    ];

    /// The flags of these bits; bits outside the 9 flags are dropped.
    pub const fn from_bits_truncate(bits: u16) -> Flags {
        Flags(bits & FLAGS_MASK)
    }

    /// The bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        if sep.is_empty() {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// The data range of the first option of `kind` in `options`, or `Malformed` if
/// the list breaks before it (an option running past the end or shorter than 2).
fn find_option(options: &[u8], kind: u8) -> Result<Option<Range<usize>>, WireError> {
    let mut i = 0;
    while let Some(&k) = options.get(i) {
        match k {
            OPT_END => break,
            OPT_NOP => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1).ok_or(WireError::Malformed)?);
                if len < 2 || i + len > options.len() {
                    return Err(WireError::Malformed);
                }
                if k == kind {
                    return Ok(Some(i + 2..i + len));
                }
                i += len;
            }
        }
    }
    Ok(None)
}

/// The range of a well-formed MSS option's value in `options`.
fn find_mss(options: &[u8]) -> Result<Option<Range<usize>>, WireError> {
    match find_option(options, OPT_MSS)? {
        Some(r) if r.len() == 2 => Ok(Some(r)),
        Some(_) => Err(WireError::Malformed),
        None => Ok(None),
    }
}

packet_view! {
    /// A view of a TCP segment.
    Packet, payload
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header, options included, is within the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_declared(self.buffer.as_ref(), HEADER_LEN, || usize::from(self.header_len())).map(drop)
    }

    fn payload_range(&self) -> Range<usize> {
        usize::from(self.header_len())..self.buffer.as_ref().len()
    }

    fn off_flags(&self) -> u16 {
        Field::read(&self.buffer.as_ref()[field::OFF_FLAGS])
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::OFF_FLAGS.start] >> 4) * 4
    }

    /// The control flags.
    pub fn flags(&self) -> Flags {
        Flags::from_bits_truncate(self.off_flags())
    }

    /// The options, raw.
    pub fn options(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), HEADER_LEN..usize::from(self.header_len()))
    }

    /// The MSS option's value, if present and the options before it are well formed.
    pub fn mss(&self) -> Option<u16> {
        let r = find_mss(self.options()).ok()??;
        Some(Field::read(&self.options()[r]))
    }

    /// The segment's sum with the pseudo-header, checksum field included.
    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        ipv4::transport_sum(src, dst, Protocol::Tcp, self.buffer.as_ref())
    }

    /// True if the checksum is right for these addresses.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum(src, dst) == 0xffff
    }
}

fields! {
    Packet {
        /// Source port.
        src_port / set_src_port: u16 = field::SRC_PORT;
        /// Destination port.
        dst_port / set_dst_port: u16 = field::DST_PORT;
        /// Sequence number.
        seq_number / set_seq_number: u32 = field::SEQ_NUM;
        /// Acknowledgement number (meaningful with ACK).
        ack_number / set_ack_number: u32 = field::ACK_NUM;
        /// Receive window (unscaled).
        window_len / set_window_len: u16 = field::WINDOW;
        /// Checksum.
        checksum / set_checksum: u16 = field::CHECKSUM;
        /// Urgent pointer (meaningful with URG).
        urgent_at / set_urgent_at: u16 = field::URGENT;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_off_flags(&mut self, value: u16) {
        Field::write(value, &mut self.buffer.as_mut()[field::OFF_FLAGS]);
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60); flags are kept.
    pub fn set_header_len(&mut self, len: u8) {
        let v = (self.off_flags() & 0x0fff) | (u16::from(len / 4) << 12);
        self.set_off_flags(v);
    }

    /// Sets the control flags; the data offset and reserved bits are kept.
    pub fn set_flags(&mut self, flags: Flags) {
        let v = (self.off_flags() & !FLAGS_MASK) | flags.bits();
        self.set_off_flags(v);
    }

    /// The options, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        super::clamped_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }

    /// Rewrites the MSS option's value and returns the old one; `None`, and
    /// nothing written, without a well-formed MSS option. The checksum is left
    /// alone (the relay's stack, the one reader of such a segment, does not
    /// verify it).
    pub fn set_mss(&mut self, mss: u16) -> Option<u16> {
        let r = find_mss(self.options()).ok()??;
        let value = &mut self.options_mut()[r];
        let old = u16::read(value);
        mss.write(value);
        Some(old)
    }

    /// Turns a well-formed SACK-permitted option into two NOPs; true if there
    /// was one. The checksum is left alone (as [`Packet::set_mss`]).
    pub fn clear_sack_permitted(&mut self) -> bool {
        match find_option(self.options(), OPT_SACK_PERMITTED) {
            Ok(Some(r)) if r.is_empty() => {
                self.options_mut()[r.start - 2..r.start].fill(OPT_NOP);
                true
            }
            _ => false,
        }
    }

    /// Computes and writes the checksum for these addresses.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !self.sum(src, dst);
        self.set_checksum(c);
    }
}

/// A parsed TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number (meaningful with ACK).
    pub ack_number: u32,
    /// Control flags.
    pub flags: Flags,
    /// Receive window (unscaled).
    pub window_len: u16,
    /// The MSS option.
    pub mss: Option<u16>,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked segment carried from `src` to `dst`.
    pub fn parse(
        packet: &Packet<&'a [u8]>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        mode: ChecksumMode,
    ) -> Result<Self, WireError> {
        packet.check_len()?;
        let mss = find_mss(packet.options())?.map(|r| u16::read(&packet.options()[r]));
        if mode == ChecksumMode::Verify && !packet.verify_checksum(src, dst) {
            return Err(WireError::Checksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            mss,
            payload: packet.into_payload(),
        })
    }

    /// Bytes of header, options included.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + if self.mss.is_some() { MSS_OPTION_LEN } else { 0 }
    }

    /// Bytes the segment takes, header and payload.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment (urgent pointer 0) and its checksum for `src` → `dst`.
    ///
    /// # Panics
    /// If the buffer's length is not [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, src: Ipv4Addr, dst: Ipv4Addr) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_off_flags(0);
        packet.set_header_len(u8::try_from(self.header_len()).unwrap_or(u8::MAX));
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            packet.options_mut().copy_from_slice(&[OPT_MSS, 4, hi, lo]);
        }
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    /// A SYN 172.17.0.2:51000 → 93.184.216.34:80, seq 0x01020304, window 64240,
    /// options NOP, NOP, SACK-permitted, MSS 1460, NOP×3, EOL; checksum 0xc8ac.
    fn golden_syn() -> Vec<u8> {
        vec![
            0xc7, 0x38, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0xfa, 0xf0, 0xc8, 0xac,
            0x00, 0x00, 0x01, 0x01, 0x04, 0x02, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x01, 0x00,
        ]
    }

    #[test]
    fn golden_syn_fields() {
        let s = golden_syn();
        let p = Packet::new_checked(&s[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()),
            (51000, 80, 0x0102_0304, 0)
        );
        assert_eq!(
            (p.header_len(), p.flags(), p.window_len(), p.urgent_at()),
            (32, Flags::SYN, 64240, 0)
        );
        assert_eq!(p.options().len(), 12);
        assert_eq!(p.mss(), Some(1460));
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        let r = Repr::parse(&p, SRC, DST, ChecksumMode::Verify).unwrap();
        assert_eq!((r.flags, r.mss, r.window_len), (Flags::SYN, Some(1460), 64240));
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "SYN|ACK");
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&s[..len]).unwrap_err(), WireError::Truncated);
        }
        for len in HEADER_LEN..s.len() {
            assert!(Repr::parse(&Packet::new_unchecked(&s[..len]), SRC, DST, ChecksumMode::Verify).is_err());
        }
    }

    #[test]
    fn sack_permitted_becomes_two_nops() {
        let mut s = golden_syn();
        let mut p = Packet::new_checked(&mut s[..]).unwrap();
        // NOP, NOP, SACK-permitted, MSS 1460, ...
        assert_eq!(&p.options()[..4], &[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]);
        assert!(p.clear_sack_permitted());
        assert_eq!(&p.options()[..6], &[OPT_NOP, OPT_NOP, OPT_NOP, OPT_NOP, OPT_MSS, 4]);
        assert_eq!(p.mss(), Some(1460), "the options after it stay");
        assert!(!p.clear_sack_permitted(), "only once");
        // A malformed list is left alone.
        let mut bad = golden_syn();
        let mut p = Packet::new_checked(&mut bad[..]).unwrap();
        p.options_mut()[2..4].copy_from_slice(&[OPT_SACK_PERMITTED, 3]);
        let before = p.options().to_vec();
        assert!(!p.clear_sack_permitted());
        assert_eq!(p.options(), &before[..]);
    }

    #[test]
    fn clamping_mss_keeps_the_checksum_valid() {
        for pad in 0..3 {
            // MSS at offsets 20 + pad: even and odd.
            let mut opts = vec![OPT_NOP; pad];
            opts.extend_from_slice(&[OPT_MSS, 4, 0x23, 0x28]);
            opts.resize(8, OPT_END);
            let mut s = vec![0u8; HEADER_LEN + opts.len() + 3];
            let mut p = Packet::new_unchecked(&mut s[..]);
            p.set_header_len(28);
            p.set_flags(Flags::SYN);
            p.options_mut().copy_from_slice(&opts);
            p.payload_mut().copy_from_slice(b"abc");
            p.fill_checksum(SRC, DST);
            assert_eq!(p.mss(), Some(9000));
            assert_eq!(p.set_mss(1400), Some(9000), "pad {pad}");
            assert_eq!(p.mss(), Some(1400));
            assert_eq!(p.payload(), b"abc", "pad {pad}: the payload is untouched");
        }
    }

    #[test]
    fn malformed_options() {
        let cases: [&[u8]; 4] = [
            &[OPT_MSS],
            &[OPT_MSS, 1, 0, 0],
            &[OPT_MSS, 5, 0, 0],
            &[OPT_MSS, 3, 5, OPT_END],
        ];
        for opts in cases {
            let mut s = [0u8; HEADER_LEN + 4];
            let mut p = Packet::new_unchecked(&mut s[..]);
            p.set_header_len(24);
            p.options_mut()[..opts.len()].copy_from_slice(opts);
            p.fill_checksum(SRC, DST);
            assert_eq!(p.mss(), None);
            assert_eq!(p.set_mss(1), None);
            let p = Packet::new_checked(&s[..]).unwrap();
            assert_eq!(
                Repr::parse(&p, SRC, DST, ChecksumMode::Verify),
                Err(WireError::Malformed),
                "{opts:?}"
            );
        }
        // End-of-list stops the walk: a broken option after it does not matter.
        assert_eq!(find_option(&[OPT_NOP, OPT_END, OPT_MSS], OPT_MSS), Ok(None));
        // Data offset below 5 is malformed, past the buffer truncated.
        let mut s = golden_syn();
        s[12] = 0x40;
        assert_eq!(Packet::new_checked(&s[..]).unwrap_err(), WireError::Malformed);
        s[12] = 0xf0;
        assert_eq!(Packet::new_checked(&s[..]).unwrap_err(), WireError::Truncated);
    }

    proptest! {
        #[test]
        fn agrees_with_etherparse(
            h in testutil::tcp_header(),
            (src, dst) in (any::<[u8; 4]>(), any::<[u8; 4]>()),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut h = h;
            let ip = testutil::ipv4_for(src, dst, etherparse::IpNumber::TCP, h.header_len() + payload.len());
            h.checksum = h.calc_checksum_ipv4(&ip, &payload).unwrap();
            let mut bytes = h.to_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let p = Packet::new_checked(&bytes[..]).unwrap();
            let theirs_mss = h.options_iterator().find_map(|o| match o {
                Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                _ => None,
            });
            prop_assert_eq!(p.mss(), theirs_mss);
            prop_assert_eq!(p.options(), h.options.as_slice());
            prop_assert_eq!(usize::from(p.header_len()), h.header_len());
            let r = Repr::parse(&p, src, dst, ChecksumMode::Verify).unwrap();
            let flags = [h.fin, h.syn, h.rst, h.psh, h.ack, h.urg, h.ece, h.cwr, h.ns];
            let expect_flags = flags.iter().enumerate().fold(0u16, |acc, (i, &on)| acc | (u16::from(on) << i));
            prop_assert_eq!(r.flags.bits(), expect_flags);
            prop_assert_eq!(
                (r.src_port, r.dst_port, r.seq_number, r.ack_number, r.window_len, p.urgent_at()),
                (h.source_port, h.destination_port, h.sequence_number, h.acknowledgment_number, h.window_size, h.urgent_pointer)
            );
            prop_assert_eq!(r.payload, &payload[..]);
        }

        #[test]
        fn emit_parse_round_trip_and_etherparse_reads_it(
            (sport, dport, seq, ack) in (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
            (flags, window, mss) in (any::<u16>(), any::<u16>(), any::<Option<u16>>()),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let r = Repr {
                src_port: sport, dst_port: dport, seq_number: seq, ack_number: ack,
                flags: Flags::from_bits_truncate(flags), window_len: window, mss, payload: &payload,
            };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]), SRC, DST);
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), SRC, DST, ChecksumMode::Verify).unwrap(), r);
            let (theirs, rest) = etherparse::TcpHeader::from_slice(&buf).unwrap();
            let ip = testutil::ipv4_for(SRC.octets(), DST.octets(), etherparse::IpNumber::TCP, buf.len());
            prop_assert_eq!(theirs.checksum, theirs.calc_checksum_ipv4(&ip, rest).unwrap());
        }

    }
}
