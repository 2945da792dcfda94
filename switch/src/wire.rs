//! Wire views of the headers the forwarding engine reads: Ethernet II and the
//! virtio-net header that travels in front of frames on offload-capable ports.
//!
//! smoltcp's shape: a zero-copy view over any `T: AsRef<[u8]>`, built with
//! `new_checked` for untrusted bytes. After `new_checked` succeeds no accessor can
//! panic: every field lies inside the checked length. Fields are read at fixed
//! offsets (`mod field`), never by casting to `#[repr(C)]` structs, so alignment
//! and endianness never matter.

use crate::MacAddr;

/// Why bytes are not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header needs.
    #[error("truncated header")]
    Truncated,
    /// A field holds a value the header does not allow.
    #[error("malformed header")]
    Malformed,
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = field::PAYLOAD;

/// A read-only view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < ETHERNET_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    fn bytes<const N: usize>(&self, r: std::ops::Range<usize>) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buffer.as_ref()[r]);
        out
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.bytes(field::DST))
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        MacAddr(self.bytes(field::SRC))
    }

    /// EtherType (or 802.1Q TPID).
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::ETHERTYPE))
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

/// The virtio-net header (`struct virtio_net_hdr`, 10 bytes, little endian) that
/// TAP (`IFF_VNET_HDR`) and AF_PACKET (`PACKET_VNET_HDR`) ports put in front of
/// every frame. It says whether the frame is a GSO super-frame to be segmented
/// later and whether its checksum is still to be completed; the switch passes it
/// through unchanged so large frames cross whole.
pub mod vnet {
    use super::WireError;

    /// Length of the header.
    pub const HDR_LEN: usize = 10;
    /// `flags`: the checksum at `csum_start + csum_offset` is partial.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `flags`: the checksum is already verified.
    pub const F_DATA_VALID: u8 = 2;
    /// `gso_type`: not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// `gso_type`: TCP over IPv4.
    pub const GSO_TCPV4: u8 = 1;
    /// `gso_type`: UDP fragmentation offload (legacy).
    pub const GSO_UDP: u8 = 3;
    /// `gso_type`: TCP over IPv6.
    pub const GSO_TCPV6: u8 = 4;
    /// `gso_type`: UDP segmentation offload (USO).
    pub const GSO_UDP_L4: u8 = 5;
    /// `gso_type` bit: ECN.
    pub const GSO_ECN: u8 = 0x80;

    /// A view of a virtio-net header.
    #[derive(Debug, Clone, Copy)]
    pub struct Header<T: AsRef<[u8]>> {
        buffer: T,
    }

    impl<T: AsRef<[u8]>> Header<T> {
        /// Wraps `buffer` after checking its length and its GSO type.
        pub fn new_checked(buffer: T) -> Result<Self, WireError> {
            let b = buffer.as_ref();
            if b.len() < HDR_LEN {
                return Err(WireError::Truncated);
            }
            match b[1] & !GSO_ECN {
                GSO_NONE | GSO_TCPV4 | GSO_UDP | GSO_TCPV6 | GSO_UDP_L4 => Ok(Header { buffer }),
                _ => Err(WireError::Malformed),
            }
        }

        /// `flags`.
        pub fn flags(&self) -> u8 {
            self.buffer.as_ref()[0]
        }

        /// `gso_type` without the ECN bit.
        pub fn gso_type(&self) -> u8 {
            self.buffer.as_ref()[1] & !GSO_ECN
        }

        /// True for a GSO super-frame.
        pub fn is_gso(&self) -> bool {
            self.gso_type() != GSO_NONE
        }

        /// `gso_size`: the segment payload size.
        pub fn gso_size(&self) -> u16 {
            let b = self.buffer.as_ref();
            u16::from_le_bytes([b[4], b[5]])
        }

        /// True if the frame must not leave through a port without offloads as it
        /// is: a GSO super-frame, or a partial checksum.
        pub fn needs_offload(&self) -> bool {
            self.is_gso() || self.flags() & F_NEEDS_CSUM != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ethernet_fields() {
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0x42, 10, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst().is_broadcast());
        assert_eq!(e.src().to_string(), "02:42:0a:00:00:02");
        assert_eq!(e.ethertype(), 0x0806);
        assert_eq!(e.payload().len(), 46);
        assert_eq!(EthernetFrame::new_checked(&f[..13]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn vnet_header() {
        let h = [
            vnet::F_NEEDS_CSUM,
            vnet::GSO_TCPV4 | vnet::GSO_ECN,
            66,
            0,
            0xa8,
            0x05,
            34,
            0,
            16,
            0,
        ];
        let v = vnet::Header::new_checked(&h[..]).unwrap();
        assert!(v.is_gso() && v.needs_offload());
        assert_eq!(v.gso_size(), 1448);
        assert_eq!(
            vnet::Header::new_checked(&[0u8; 9][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            vnet::Header::new_checked(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0][..]).unwrap_err(),
            WireError::Malformed
        );
        let plain = vnet::Header::new_checked(&[0u8; 10][..]).unwrap();
        assert!(!plain.needs_offload());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(e) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (e.dst(), e.src(), e.ethertype(), e.payload().len());
            }
            if let Ok(v) = vnet::Header::new_checked(&bytes[..]) {
                let _ = (v.flags(), v.gso_type(), v.gso_size(), v.needs_offload());
            }
        }
    }
}
