//! ICMPv4 messages (RFC 792): echo request and reply, destination unreachable
//! and time exceeded.
//!
//! [`Packet`] is a zero-copy view of an IPv4 payload; `new_checked` checks the
//! 8-byte header is there and after it no accessor can panic. The checksum covers
//! the whole message. An error message's body quotes the offending datagram's
//! IPv4 header and first payload bytes: [`Packet::quoted_header`] views it (with
//! [`Ipv4Packet::new_quoted`](super::ipv4::Packet::new_quoted), since the quote
//! is shorter than the length it names).
//!
//! [`Repr`] covers the four messages above; other types give `Unsupported`, an
//! echo with a non-zero code `Malformed`. Unknown codes of the error messages are
//! kept as `Unknown(n)`.

use super::checksum::{self, ChecksumMode};
use super::ipv4::{self, Repr as Ipv4Repr};
use super::{WireError, enum_with_unknown, fields, packet_view};

mod field {
    use std::ops::Range;
    pub const TYPE: Range<usize> = 0..1;
    pub const CODE: Range<usize> = 1..2;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ_NO: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const REST_OF_HEADER: Range<usize> = 4..8;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = field::REST_OF_HEADER.end;

enum_with_unknown! {
    /// The message type.
    pub enum Message(u8) {
        /// Echo reply.
        EchoReply = 0,
        /// Destination unreachable.
        DstUnreachable = 3,
        /// Redirect.
        Redirect = 5,
        /// Echo request.
        EchoRequest = 8,
        /// Time exceeded.
        TimeExceeded = 11,
        /// Parameter problem.
        ParamProblem = 12,
    }
}

enum_with_unknown! {
    /// The code of a destination-unreachable message.
    pub enum DstUnreachable(u8) {
        /// Network unreachable.
        NetUnreachable = 0,
        /// Host unreachable.
        HostUnreachable = 1,
        /// Protocol unreachable.
        ProtoUnreachable = 2,
        /// Port unreachable.
        PortUnreachable = 3,
        /// Fragmentation needed and DF set; the next-hop MTU is in the header.
        FragRequired = 4,
        /// Source route failed.
        SrcRouteFailed = 5,
        /// Destination network unknown.
        DstNetUnknown = 6,
        /// Destination host unknown.
        DstHostUnknown = 7,
        /// Source host isolated.
        SrcHostIsolated = 8,
        /// Network administratively prohibited.
        NetProhibited = 9,
        /// Host administratively prohibited.
        HostProhibited = 10,
        /// Network unreachable for the type of service.
        NetUnreachToS = 11,
        /// Host unreachable for the type of service.
        HostUnreachToS = 12,
        /// Communication administratively prohibited.
        CommProhibited = 13,
        /// Host precedence violation.
        HostPrecedenceViolation = 14,
        /// Precedence cutoff in effect.
        PrecedenceCutoff = 15,
    }
}

enum_with_unknown! {
    /// The code of a time-exceeded message.
    pub enum TimeExceeded(u8) {
        /// TTL expired in transit.
        TtlExpired = 0,
        /// Fragment reassembly time exceeded.
        FragExpired = 1,
    }
}

packet_view! {
    /// A view of an ICMPv4 message.
    Packet, payload
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the 8-byte header is there.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_fixed(self.buffer.as_ref(), HEADER_LEN)
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        HEADER_LEN..self.buffer.as_ref().len()
    }

    /// True if the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }

    /// The IPv4 header an error message quotes, with what the quote kept of its payload.
    pub fn quoted_header(&self) -> Result<ipv4::Packet<&[u8]>, WireError> {
        ipv4::Packet::new_quoted(self.payload())
    }
}

fields! {
    Packet {
        /// Message type.
        msg_type / set_msg_type: Message = field::TYPE;
        /// Message code.
        msg_code / set_msg_code: u8 = field::CODE;
        /// Checksum.
        checksum / set_checksum: u16 = field::CHECKSUM;
        /// Echo identifier.
        echo_ident / set_echo_ident: u16 = field::ECHO_IDENT;
        /// Echo sequence number.
        echo_seq_no / set_echo_seq_no: u16 = field::ECHO_SEQ_NO;
        /// Next-hop MTU of a fragmentation-needed message (RFC 1191).
        next_hop_mtu / set_next_hop_mtu: u16 = field::NEXT_HOP_MTU;
        /// The 4 bytes after the checksum, whatever the type.
        rest_of_header / set_rest_of_header: u32 = field::REST_OF_HEADER;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and writes the checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::sum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A parsed ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// The code.
        reason: DstUnreachable,
        /// Next-hop MTU (meaningful with `FragRequired`, else 0).
        next_hop_mtu: u16,
        /// The quoted datagram's header; its `payload_len` is the original's.
        header: Ipv4Repr,
        /// What the quote kept of the datagram's payload (usually 8 bytes).
        data: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// The code.
        reason: TimeExceeded,
        /// The quoted datagram's header; its `payload_len` is the original's.
        header: Ipv4Repr,
        /// What the quote kept of the datagram's payload (usually 8 bytes).
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked message (see the module doc).
    pub fn parse(packet: &Packet<&'a [u8]>, mode: ChecksumMode) -> Result<Self, WireError> {
        packet.check_len()?;
        if mode == ChecksumMode::Verify && !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        let code = packet.msg_code();
        let quoted = || -> Result<(Ipv4Repr, &'a [u8]), WireError> {
            let ip = ipv4::Packet::new_quoted(packet.into_payload())?;
            Ok((Ipv4Repr::parse_quoted(&ip)?, ip.into_payload()))
        };
        match packet.msg_type() {
            Message::EchoRequest | Message::EchoReply if code != 0 => Err(WireError::Malformed),
            Message::EchoRequest => Ok(Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.into_payload(),
            }),
            Message::EchoReply => Ok(Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.into_payload(),
            }),
            Message::DstUnreachable => {
                let (header, data) = quoted()?;
                Ok(Repr::DstUnreachable {
                    reason: DstUnreachable::from(code),
                    next_hop_mtu: packet.next_hop_mtu(),
                    header,
                    data,
                })
            }
            Message::TimeExceeded => {
                let (header, data) = quoted()?;
                Ok(Repr::TimeExceeded {
                    reason: TimeExceeded::from(code),
                    header,
                    data,
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// The bytes after the 8-byte header: echo data, or quoted header and data.
    fn body_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => data.len(),
            Repr::DstUnreachable { header, data, .. } | Repr::TimeExceeded { header, data, .. } => {
                header.buffer_len() + data.len()
            }
        }
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Writes the message and its checksum.
    ///
    /// # Panics
    /// If the buffer's length is not [`Self::buffer_len`], or a quoted header's
    /// `payload_len` exceeds 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_rest_of_header(0);
        match *self {
            Repr::EchoRequest { ident, seq_no, data } | Repr::EchoReply { ident, seq_no, data } => {
                let msg = if matches!(self, Repr::EchoRequest { .. }) {
                    Message::EchoRequest
                } else {
                    Message::EchoReply
                };
                packet.set_msg_type(msg);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.payload_mut().copy_from_slice(data);
            }
            Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                header,
                data,
            } => {
                packet.set_msg_type(Message::DstUnreachable);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(next_hop_mtu);
                emit_quote(packet.payload_mut(), &header, data);
            }
            Repr::TimeExceeded { reason, header, data } => {
                packet.set_msg_type(Message::TimeExceeded);
                packet.set_msg_code(reason.into());
                emit_quote(packet.payload_mut(), &header, data);
            }
        }
        packet.fill_checksum();
    }
}

/// Writes a quoted IPv4 header and the data after it.
fn emit_quote(body: &mut [u8], header: &Ipv4Repr, data: &[u8]) {
    let (ip, rest) = body.split_at_mut(header.buffer_len());
    header.emit(&mut ipv4::Packet::new_unchecked(ip));
    rest.copy_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Protocol;
    use crate::wire::testutil;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Echo request, ident 0x1234, seq 1, data "plexus!!", checksum 0x7951.
    const ECHO: [u8; 16] = [
        8, 0, 0x79, 0x51, 0x12, 0x34, 0x00, 0x01, b'p', b'l', b'e', b'x', b'u', b's', b'!', b'!',
    ];

    #[test]
    fn golden_echo_request() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.checksum()),
            (Message::EchoRequest, 0, 0x7951)
        );
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert!(p.verify_checksum());
        let r = Repr::parse(&p, ChecksumMode::Verify).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"plexus!!"
            }
        );
        let mut buf = [0u8; 16];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO);
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&ECHO[..len]).unwrap_err(), WireError::Truncated);
        }
        for len in HEADER_LEN..ECHO.len() {
            let p = Packet::new_checked(&ECHO[..len]).unwrap();
            assert_eq!(Repr::parse(&p, ChecksumMode::Verify), Err(WireError::Checksum), "{len}");
        }
    }

    #[test]
    fn answering_an_echo_in_place_keeps_the_checksum_valid() {
        let mut buf = ECHO;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let c = checksum::update_u16(p.checksum(), 0x0800, 0x0000);
        p.set_msg_type(Message::EchoReply);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let r = Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), ChecksumMode::Verify).unwrap();
        assert!(matches!(
            r,
            Repr::EchoReply {
                ident: 0x1234,
                seq_no: 1,
                ..
            }
        ));
    }

    fn quoted_udp() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(172, 17, 0, 2),
            dst_addr: Ipv4Addr::new(8, 8, 8, 8),
            protocol: Protocol::Udp,
            payload_len: 13,
            ttl: 1,
        }
    }

    #[test]
    fn errors_quote_the_original_header() {
        let udp_head = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x0d, 0x57, 0x53];
        let r = Repr::TimeExceeded {
            reason: TimeExceeded::TtlExpired,
            header: quoted_udp(),
            data: &udp_head,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        assert_eq!(buf.len(), 36);
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p, ChecksumMode::Verify).unwrap(), r);
        // The quote is shorter than the length it names, and still readable.
        let q = p.quoted_header().unwrap();
        assert_eq!((q.total_len(), q.payload()), (33, &udp_head[..]));
    }

    #[test]
    fn frag_required_carries_the_mtu_and_unknown_codes_survive() {
        let r = Repr::DstUnreachable {
            reason: DstUnreachable::FragRequired,
            next_hop_mtu: 1400,
            header: quoted_udp(),
            data: &[1, 2, 3, 4, 5, 6, 7, 8],
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), ChecksumMode::Verify).unwrap(),
            r
        );
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_code(99);
        p.fill_checksum();
        let parsed = Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), ChecksumMode::Verify).unwrap();
        assert!(matches!(
            parsed,
            Repr::DstUnreachable {
                reason: DstUnreachable::Unknown(99),
                ..
            }
        ));
    }

    #[test]
    fn unsupported_and_malformed() {
        let mut b = ECHO;
        b[0] = 13; // timestamp
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), ChecksumMode::Skip),
            Err(WireError::Unsupported)
        );
        assert_eq!(Packet::new_checked(&b[..]).unwrap().msg_type(), Message::Unknown(13));
        b[0] = 8;
        b[1] = 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), ChecksumMode::Skip),
            Err(WireError::Malformed)
        );
        // An error whose quote is not an IPv4 header.
        let mut e = [3u8, 3, 0, 0, 0, 0, 0, 0, 0x45, 0];
        Packet::new_unchecked(&mut e[..]).fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&e[..]).unwrap(), ChecksumMode::Verify),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn echo_agrees_with_etherparse(
            request in any::<bool>(), ident in any::<u16>(), seq in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let echo = etherparse::IcmpEchoHeader { id: ident, seq };
            let ty = if request { etherparse::Icmpv4Type::EchoRequest(echo) } else { etherparse::Icmpv4Type::EchoReply(echo) };
            let theirs = etherparse::Icmpv4Header::with_checksum(ty, &data);
            let mut bytes = theirs.to_bytes().to_vec();
            bytes.extend_from_slice(&data);
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), ChecksumMode::Verify).unwrap();
            let expect = if request {
                Repr::EchoRequest { ident, seq_no: seq, data: &data }
            } else {
                Repr::EchoReply { ident, seq_no: seq, data: &data }
            };
            prop_assert_eq!(r, expect);
            let mut ours = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut ours[..]));
            prop_assert_eq!(ours, bytes);
        }

        #[test]
        fn error_round_trip(
            unreachable in any::<bool>(), code in any::<u8>(), mtu in any::<u16>(),
            header in testutil::ipv4_repr(), data in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut header = header;
            header.payload_len = header.payload_len.max(data.len());
            let r = if unreachable {
                Repr::DstUnreachable { reason: code.into(), next_hop_mtu: mtu, header, data: &data }
            } else {
                Repr::TimeExceeded { reason: code.into(), header, data: &data }
            };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap(), ChecksumMode::Verify).unwrap(), r);
            // etherparse's own sum over the whole message, our checksum included.
            prop_assert_eq!(etherparse::checksum::Sum16BitWords::new().add_slice(&buf).ones_complement(), 0);
        }
    }
}
