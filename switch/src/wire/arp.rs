//! ARP (RFC 826) for Ethernet and IPv4, the only pairing the switch answers.
//!
//! [`Packet`] reads the Ethernet/IPv4 layout (28 bytes: 6-byte hardware and
//! 4-byte protocol addresses); `new_checked` checks those 28 bytes are there and
//! after it no accessor can panic. Trailing Ethernet padding is ignored. The view
//! does not check the hardware and protocol type fields; [`Repr::parse`] does and
//! returns `Unsupported` for any other pairing. An unknown operation code is kept
//! as [`Operation::Unknown`].

use std::net::Ipv4Addr;

use super::{WireError, enum_with_unknown, fields, packet_view};
use crate::MacAddr;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: Range<usize> = 4..5;
    pub const PLEN: Range<usize> = 5..6;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// `htype` for Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// `ptype` for IPv4 (its EtherType).
const PTYPE_IPV4: u16 = 0x0800;

enum_with_unknown! {
    /// The ARP operation.
    pub enum Operation(u16) {
        /// Who has `target_protocol_addr`?
        Request = 1,
        /// `sender_protocol_addr` is at `sender_hardware_addr`.
        Reply = 2,
    }
}

packet_view! {
    /// A view of an Ethernet/IPv4 ARP packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the buffer holds the 28 bytes of the Ethernet/IPv4 layout.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_fixed(self.buffer.as_ref(), PACKET_LEN)
    }
}

fields! {
    Packet {
        /// Hardware type (1 for Ethernet).
        hardware_type / set_hardware_type: u16 = field::HTYPE;
        /// Protocol type (0x0800 for IPv4).
        protocol_type / set_protocol_type: u16 = field::PTYPE;
        /// Hardware address length (6 for Ethernet).
        hardware_len / set_hardware_len: u8 = field::HLEN;
        /// Protocol address length (4 for IPv4).
        protocol_len / set_protocol_len: u8 = field::PLEN;
        /// Operation.
        operation / set_operation: Operation = field::OPER;
        /// Sender hardware address.
        sender_hardware_addr / set_sender_hardware_addr: MacAddr = field::SHA;
        /// Sender protocol address.
        sender_protocol_addr / set_sender_protocol_addr: Ipv4Addr = field::SPA;
        /// Target hardware address (zero in a request).
        target_hardware_addr / set_target_hardware_addr: MacAddr = field::THA;
        /// Target protocol address.
        target_protocol_addr / set_target_protocol_addr: Ipv4Addr = field::TPA;
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Operation.
    pub operation: Operation,
    /// Sender hardware address.
    pub sender_hardware_addr: MacAddr,
    /// Sender protocol address.
    pub sender_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: MacAddr,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Parses a checked packet; `Unsupported` unless it is Ethernet/IPv4.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != PTYPE_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(Repr {
            operation: packet.operation(),
            sender_hardware_addr: packet.sender_hardware_addr(),
            sender_protocol_addr: packet.sender_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes the packet takes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    ///
    /// # Panics
    /// If the buffer is shorter than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(PTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(self.sender_hardware_addr);
        packet.set_sender_protocol_addr(self.sender_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 172.17.0.2 (02:42:ac:11:00:02) asks who has 172.17.0.1.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0xac, 0x11, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xac, 0x11, 0x00, 0x01,
    ];

    fn request() -> Repr {
        Repr {
            operation: Operation::Request,
            sender_hardware_addr: MacAddr([0x02, 0x42, 0xac, 0x11, 0, 2]),
            sender_protocol_addr: Ipv4Addr::new(172, 17, 0, 2),
            target_hardware_addr: MacAddr::default(),
            target_protocol_addr: Ipv4Addr::new(172, 17, 0, 1),
        }
    }

    #[test]
    fn golden_request() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), request());
        let mut buf = [0xffu8; PACKET_LEN];
        request().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
        for len in 0..PACKET_LEN {
            assert_eq!(Packet::new_checked(&REQUEST[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn answering_a_request_in_place() {
        let gateway = MacAddr([0x02, 0x42, 0xac, 0x11, 0, 1]);
        let mut buf = REQUEST;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let (sha, spa, tpa) = (
            p.sender_hardware_addr(),
            p.sender_protocol_addr(),
            p.target_protocol_addr(),
        );
        p.set_operation(Operation::Reply);
        p.set_target_hardware_addr(sha);
        p.set_target_protocol_addr(spa);
        p.set_sender_hardware_addr(gateway);
        p.set_sender_protocol_addr(tpa);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            (r.operation, r.sender_hardware_addr, r.target_protocol_addr),
            (Operation::Reply, gateway, spa)
        );
    }

    #[test]
    fn other_pairings_are_unsupported_and_unknown_ops_kept() {
        for (i, v) in [(1, 6), (3, 0xdd), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[i] = v;
            assert_eq!(
                Repr::parse(&Packet::new_checked(&b[..]).unwrap()),
                Err(WireError::Unsupported)
            );
        }
        let mut b = REQUEST;
        b[7] = 9;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap().operation,
            Operation::Unknown(9)
        );
    }

    proptest! {
        #[test]
        fn agrees_with_etherparse(
            op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(), tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>(),
        ) {
            let theirs = etherparse::ArpEthIpv4Packet {
                operation: etherparse::ArpOperation(op),
                sender_mac: sha,
                sender_ipv4: spa,
                target_mac: tha,
                target_ipv4: tpa,
            };
            let bytes = theirs.to_bytes();
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(r, Repr {
                operation: Operation::from(op),
                sender_hardware_addr: MacAddr(sha),
                sender_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: MacAddr(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            });
            let mut ours = [0u8; PACKET_LEN];
            r.emit(&mut Packet::new_unchecked(&mut ours[..]));
            prop_assert_eq!(ours, bytes);
        }
    }
}
