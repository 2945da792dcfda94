//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes, little endian) that
//! TAP (`IFF_VNET_HDR`) and AF_PACKET (`PACKET_VNET_HDR`) ports put in front of
//! every frame. It says whether the frame is a GSO super-frame to be segmented
//! later and whether its checksum is still to be completed; the switch passes it
//! through unchanged so large frames cross whole.
//!
//! [`Header::new_checked`] checks the length and the GSO type; after it no
//! accessor can panic.

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

    /// `hdr_len`: the headers' length (Ethernet to transport) of a GSO frame.
    pub fn hdr_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[2], b[3]])
    }

    /// `csum_start`: where a partial checksum's coverage starts.
    pub fn csum_start(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[6], b[7]])
    }

    /// `csum_offset`: the checksum field's offset from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[8], b[9]])
    }

    /// True if the frame must not leave through a port without offloads as it
    /// is: a GSO super-frame, or a partial checksum.
    pub fn needs_offload(&self) -> bool {
        self.is_gso() || self.flags() & F_NEEDS_CSUM != 0
    }
}

/// The fields of a virtio-net header the switch writes for frames it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    /// [`F_NEEDS_CSUM`] or 0.
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], ...
    pub gso_type: u8,
    /// Length of the headers (Ethernet to transport) of a GSO frame.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame.
    pub gso_size: u16,
    /// Where the partial checksum's coverage starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl Repr {
    /// Writes the header into `buf` (at least [`HDR_LEN`] bytes; host byte
    /// order, as the kernel's legacy virtio-net header has it on little-endian
    /// hosts).
    pub fn emit(&self, buf: &mut [u8]) {
        if let Some(b) = buf.get_mut(..HDR_LEN) {
            b[0] = self.flags;
            b[1] = self.gso_type;
            b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
            b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
            b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
            b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vnet_header() {
        let h = [F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 66, 0, 0xa8, 0x05, 34, 0, 16, 0];
        let v = Header::new_checked(&h[..]).unwrap();
        assert!(v.is_gso() && v.needs_offload());
        assert_eq!(v.gso_size(), 1448);
        for len in 0..HDR_LEN {
            assert_eq!(Header::new_checked(&h[..len]).unwrap_err(), WireError::Truncated);
        }
        assert_eq!(
            Header::new_checked(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0][..]).unwrap_err(),
            WireError::Malformed
        );
        let plain = Header::new_checked(&[0u8; 10][..]).unwrap();
        assert!(!plain.needs_offload());
        // The emitter writes what the view reads.
        let r = Repr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut out = [0u8; HDR_LEN];
        r.emit(&mut out);
        assert_eq!(out, h);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(v) = Header::new_checked(&bytes[..]) {
                let _ = (v.flags(), v.gso_type(), v.gso_size(), v.needs_offload());
            }
        }
    }
}
