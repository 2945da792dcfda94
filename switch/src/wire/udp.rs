//! UDP datagrams (RFC 768) over IPv4.
//!
//! [`Packet`] is a zero-copy view of an IPv4 payload. `new_checked` checks the
//! 8-byte header is there and that the length field is at least 8 and within the
//! buffer; after it no accessor can panic. A checksum of 0 means "none" and
//! verifies; a computed 0 is sent as `0xffff`.
//!
//! [`Repr`] holds the ports and borrows the payload. `parse` checks the checksum
//! against the IPv4 pseudo-header unless told to skip it ([`ChecksumMode`]).

use std::net::Ipv4Addr;

use super::checksum::ChecksumMode;
use super::ipv4::{self, Protocol};
use super::{WireError, fields, packet_view};

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

packet_view! {
    /// A view of a UDP datagram.
    Packet, payload
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header is whole and the length field fits the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_declared(self.buffer.as_ref(), HEADER_LEN, || usize::from(self.length())).map(drop)
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        HEADER_LEN..usize::from(self.length())
    }

    /// The datagram's sum with the pseudo-header, checksum field included.
    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let datagram = super::clamped(self.buffer.as_ref(), 0..usize::from(self.length()));
        ipv4::transport_sum(src, dst, Protocol::Udp, datagram)
    }

    /// True if the checksum is absent (0) or right for these addresses.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.sum(src, dst) == 0xffff
    }
}

fields! {
    Packet {
        /// Source port.
        src_port / set_src_port: u16 = field::SRC_PORT;
        /// Destination port.
        dst_port / set_dst_port: u16 = field::DST_PORT;
        /// Length of header and payload in bytes.
        length / set_length: u16 = field::LENGTH;
        /// Checksum (0: none).
        checksum / set_checksum: u16 = field::CHECKSUM;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and writes the checksum for these addresses.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !self.sum(src, dst);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// A parsed UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked datagram carried from `src` to `dst`.
    pub fn parse(
        packet: &Packet<&'a [u8]>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        mode: ChecksumMode,
    ) -> Result<Self, WireError> {
        packet.check_len()?;
        if mode == ChecksumMode::Verify && !packet.verify_checksum(src, dst) {
            return Err(WireError::Checksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.into_payload(),
        })
    }

    /// Bytes the datagram takes, header and payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram and its checksum for `src` → `dst`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Self::buffer_len`] or that exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, src: Ipv4Addr, dst: Ipv4Addr) {
        let length = u16::try_from(self.buffer_len()).expect("UDP datagram exceeds 65535 bytes");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(length);
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
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    /// 40000 → 53, payload "query", checksum 0x5753 for 172.17.0.2 → 8.8.8.8.
    const GOLDEN: [u8; 13] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0d, 0x57, 0x53, b'q', b'u', b'e', b'r', b'y',
    ];

    #[test]
    fn golden_datagram() {
        let p = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.length(), p.checksum()),
            (40000, 53, 13, 0x5753)
        );
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(8, 8, 4, 4)));
        let r = Repr::parse(&p, SRC, DST, ChecksumMode::Verify).unwrap();
        assert_eq!(r.payload, b"query");
        let mut buf = [0u8; 13];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), SRC, DST);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn malformed_and_truncated() {
        for len in 0..GOLDEN.len() {
            assert_eq!(
                Packet::new_checked(&GOLDEN[..len]).unwrap_err(),
                WireError::Truncated,
                "{len}"
            );
        }
        let mut short = GOLDEN;
        short[5] = 7;
        assert_eq!(Packet::new_checked(&short[..]).unwrap_err(), WireError::Malformed);
        let mut bad = GOLDEN;
        bad[8] = b'Q';
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(
            Repr::parse(&p, SRC, DST, ChecksumMode::Verify),
            Err(WireError::Checksum)
        );
        assert!(Repr::parse(&p, SRC, DST, ChecksumMode::Skip).is_ok());
    }

    #[test]
    fn zero_checksum_means_none_and_computed_zero_is_sent_as_ffff() {
        let mut none = GOLDEN;
        none[6..8].fill(0);
        assert!(Packet::new_checked(&none[..]).unwrap().verify_checksum(SRC, DST));
        // Find a payload whose checksum computes to zero: adjust the last two bytes.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_length(10);
        p.fill_checksum(SRC, DST);
        let c = p.checksum();
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(SRC, DST));
    }

    proptest! {
        #[test]
        fn agrees_with_etherparse(
            (src, dst) in (any::<[u8; 4]>(), any::<[u8; 4]>()),
            (sport, dport) in (any::<u16>(), any::<u16>()),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let theirs = etherparse::UdpHeader::with_ipv4_checksum(
                sport, dport, &testutil::ipv4_for(src, dst, etherparse::IpNumber::UDP, 8 + payload.len()), &payload,
            ).unwrap();
            let mut bytes = theirs.to_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), src, dst, ChecksumMode::Verify).unwrap();
            prop_assert_eq!(r, Repr { src_port: sport, dst_port: dport, payload: &payload });
            let mut ours = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut ours[..]), src, dst);
            prop_assert_eq!(ours, bytes);
        }

    }
}
