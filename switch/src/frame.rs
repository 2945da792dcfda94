//! Frame buffers, shared by every port and every path of the switch: each
//! [`FrameBuf`] reserves [`VNET_HDR_LEN`] bytes in front of the frame. A port
//! with offloads reads the virtio-net header there; a port without zeroes it.
//! So any frame can leave through any port without a copy: `bytes_with_hdr()`
//! for offload ports, `frame()` for the others. Bursts are [`BATCH`] frames.

use std::fmt::Debug;

/// Length of the virtio-net header on offload ports.
pub const VNET_HDR_LEN: usize = 10;
/// Largest frame a port receives: a 64 KiB GSO super-frame plus Ethernet and
/// VLAN headers.
pub const MAX_FRAME_LEN: usize = 65535 + 14 + 4;
/// Frames per burst.
pub const BATCH: usize = 32;

/// One receive buffer: a virtio-net header slot, then the frame.
pub struct FrameBuf {
    data: Box<[u8]>,
    len: usize,
}

impl Debug for FrameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameBuf({} bytes)", self.len)
    }
}

impl Default for FrameBuf {
    fn default() -> Self {
        FrameBuf {
            data: vec![0u8; VNET_HDR_LEN + MAX_FRAME_LEN].into_boxed_slice(),
            len: 0,
        }
    }
}

impl FrameBuf {
    /// The frame (no virtio-net header).
    pub fn frame(&self) -> &[u8] {
        &self.data[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }

    /// The virtio-net header (zero for frames from ports without offloads).
    pub fn vnet_hdr(&self) -> &[u8] {
        &self.data[..VNET_HDR_LEN]
    }

    /// Header and frame, as an offload port sends them.
    pub fn bytes_with_hdr(&self) -> &[u8] {
        &self.data[..VNET_HDR_LEN + self.len]
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Room for a frame in this buffer.
    pub fn capacity(&self) -> usize {
        self.data.len() - VNET_HDR_LEN
    }

    /// True if no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A buffer for frames the switch builds itself (gateway replies), with room
    /// for `frame_capacity` bytes of frame.
    pub fn with_capacity(frame_capacity: usize) -> FrameBuf {
        FrameBuf {
            data: vec![0u8; VNET_HDR_LEN + frame_capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// The frame area, to build a frame into; then [`FrameBuf::set_built`].
    pub fn frame_area_mut(&mut self) -> &mut [u8] {
        &mut self.data[VNET_HDR_LEN..]
    }

    /// Marks the first `len` bytes of the frame area as a frame with a zero
    /// virtio-net header (no offload needed).
    pub fn set_built(&mut self, len: usize) {
        self.data[..VNET_HDR_LEN].fill(0);
        self.len = len.min(self.data.len() - VNET_HDR_LEN);
    }

    /// The virtio-net header, to describe a built frame's offloads (after
    /// [`FrameBuf::set_built`], which zeroes it).
    pub fn vnet_hdr_mut(&mut self) -> &mut [u8] {
        &mut self.data[..VNET_HDR_LEN]
    }

    /// Copies `frame` in (tests, injected frames) with a zero header.
    pub fn fill(&mut self, frame: &[u8]) {
        let n = frame.len().min(MAX_FRAME_LEN);
        self.data[..VNET_HDR_LEN].fill(0);
        self.data[VNET_HDR_LEN..VNET_HDR_LEN + n].copy_from_slice(&frame[..n]);
        self.len = n;
    }
}

/// A burst's worth of receive buffers, allocated once per worker.
#[derive(Debug)]
pub struct RxBatch {
    /// The buffers; after a `recv` of `n`, the first `n` hold frames.
    pub bufs: Vec<FrameBuf>,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: (0..BATCH).map(|_| FrameBuf::default()).collect(),
        }
    }
}

impl FrameBuf {
    /// The whole buffer, header slot included, for a port to receive into.
    pub(crate) fn storage_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Sets the frame's length after a port received into [`Self::storage_mut`].
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.data.len() - VNET_HDR_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_buf_layout() {
        let mut b = FrameBuf::default();
        b.fill(&[1, 2, 3]);
        assert_eq!(b.frame(), &[1, 2, 3]);
        assert_eq!(b.vnet_hdr(), &[0; VNET_HDR_LEN]);
        assert_eq!(b.bytes_with_hdr().len(), VNET_HDR_LEN + 3);
        assert_eq!(b.len(), 3);
    }
}
