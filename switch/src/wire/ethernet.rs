//! Ethernet II frames.
//!
//! [`EthernetFrame`] is a zero-copy view; after `new_checked` (14 bytes at least)
//! no accessor can panic. [`Repr`] is its parsed form. An 802.1Q tag is not
//! stripped: its TPID shows as [`EtherType::Vlan`] and the tag stays in the payload.

use super::{WireError, enum_with_unknown, fields, packet_view};
use crate::MacAddr;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = field::PAYLOAD;

enum_with_unknown! {
    /// The EtherType: what the payload is.
    pub enum EtherType(u16) {
        /// IPv4.
        Ipv4 = 0x0800,
        /// ARP.
        Arp = 0x0806,
        /// IPv6.
        Ipv6 = 0x86dd,
        /// An 802.1Q VLAN tag follows (TPID).
        Vlan = 0x8100,
    }
}

packet_view! {
    /// A view of an Ethernet II frame.
    EthernetFrame, payload
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks the buffer holds a whole header.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_fixed(self.buffer.as_ref(), ETHERNET_HEADER_LEN)
    }

    fn payload_range(&self) -> std::ops::Range<usize> {
        field::PAYLOAD..self.buffer.as_ref().len()
    }
}

fields! {
    EthernetFrame {
        /// Destination address.
        dst / set_dst: MacAddr = field::DST;
        /// Source address.
        src / set_src: MacAddr = field::SRC;
        /// EtherType (or 802.1Q TPID) as a number; [`EtherType::from`] names it.
        ethertype / set_ethertype: u16 = field::ETHERTYPE;
    }
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: MacAddr,
    /// Destination address.
    pub dst: MacAddr,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame. Every 14 bytes are a valid header,
    /// so this cannot fail; it returns a `Result` like every other repr.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Repr, WireError> {
        frame.check_len()?;
        Ok(Repr {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: EtherType::from(frame.ethertype()),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_HEADER_LEN
    }

    /// Writes the header; the payload is left as it is.
    ///
    /// # Panics
    /// If the frame is shorter than [`ETHERNET_HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src(self.src);
        frame.set_dst(self.dst);
        frame.set_ethertype(self.ethertype.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A broadcast ARP frame's header from 02:42:0a:00:00:02, padded to 60 bytes.
    fn golden() -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..14].copy_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x06,
        ]);
        f
    }

    #[test]
    fn fields() {
        let f = golden();
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst().is_broadcast());
        assert_eq!(e.src().to_string(), "02:42:0a:00:00:02");
        assert_eq!(e.ethertype(), 0x0806);
        assert_eq!(e.payload().len(), 46);
        let r = Repr::parse(&e).unwrap();
        assert_eq!(r.ethertype, EtherType::Arp);
        for len in 0..ETHERNET_HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&f[..len]).unwrap_err(), WireError::Truncated);
        }
    }

    #[test]
    fn ethertypes_keep_unknown_values() {
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(u16::from(EtherType::Unknown(0x88cc)), 0x88cc);
        assert_eq!(u16::from(EtherType::Vlan), 0x8100);
    }

    #[test]
    fn emit_writes_the_golden_header() {
        let r = Repr {
            src: MacAddr([0x02, 0x42, 0x0a, 0, 0, 2]),
            dst: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        };
        let mut buf = [0u8; 60];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        r.emit(&mut f);
        f.payload_mut().fill(0);
        assert_eq!(buf, golden());
        assert_eq!(r.buffer_len(), 14);
    }

    proptest! {
        #[test]
        fn round_trip_and_etherparse_agree(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), ty in any::<u16>()) {
            let r = Repr { src: MacAddr(src), dst: MacAddr(dst), ethertype: EtherType::from(ty) };
            let mut buf = [0u8; ETHERNET_HEADER_LEN];
            r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()).unwrap(), r);
            let theirs = etherparse::Ethernet2Header {
                source: src,
                destination: dst,
                ether_type: etherparse::EtherType(ty),
            };
            prop_assert_eq!(theirs.to_bytes(), buf);
        }
    }
}
