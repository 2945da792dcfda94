//! [`MemPort`]: two ports joined in memory — what one end sends, the other
//! receives — with the same batch semantics as the kernel's ports (a bounded
//! queue whose overflow is "full", virtio-net headers on offload ports). For
//! tests that drive the worker without root, and for wrappers.

use std::io;
use std::os::fd::RawFd;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::port::{Port, RecvResult, SendResult};
use crate::frame::{BATCH, FrameBuf, VNET_HDR_LEN};

/// Frames a direction holds before a send meets a full queue.
pub const MEM_QUEUE: usize = 1024;

/// One end of a pair of ports in memory.
#[derive(Debug)]
pub struct MemPort {
    rx: Receiver<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    offload: bool,
}

impl MemPort {
    /// Two joined ends. With `offload`, frames carry a virtio-net header on
    /// both ends (as a TAP opened with `IFF_VNET_HDR`).
    pub fn pair(offload: bool) -> (MemPort, MemPort) {
        let (a_tx, b_rx) = bounded(MEM_QUEUE);
        let (b_tx, a_rx) = bounded(MEM_QUEUE);
        (
            MemPort {
                rx: a_rx,
                tx: a_tx,
                offload,
            },
            MemPort {
                rx: b_rx,
                tx: b_tx,
                offload,
            },
        )
    }

    /// Frames waiting to be received at this end.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Sends one frame (with a zero virtio-net header on an offload port);
    /// false if the queue is full.
    pub fn send_frame(&mut self, frame: &[u8]) -> bool {
        let bytes = if self.offload {
            let mut b = vec![0u8; VNET_HDR_LEN];
            b.extend_from_slice(frame);
            b
        } else {
            frame.to_vec()
        };
        self.tx.try_send(bytes).is_ok()
    }

    /// Receives one frame without its virtio-net header, if one is queued.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut b = self.rx.try_recv().ok()?;
        if self.offload {
            b.drain(..VNET_HDR_LEN.min(b.len()));
        }
        Some(b)
    }
}

impl Port for MemPort {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn offload(&self) -> bool {
        self.offload
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        let mut out = RecvResult::default();
        let n = bufs.len().min(BATCH);
        while out.frames < n {
            let Ok(bytes) = self.rx.try_recv() else { break };
            let b = &mut bufs[out.frames];
            let storage = b.storage_mut();
            let (start, len) = if self.offload {
                if bytes.len() < VNET_HDR_LEN {
                    out.truncated += 1;
                    continue;
                }
                (0, bytes.len() - VNET_HDR_LEN)
            } else {
                storage[..VNET_HDR_LEN].fill(0);
                (VNET_HDR_LEN, bytes.len())
            };
            if start + bytes.len() > storage.len() {
                out.truncated += 1;
                continue;
            }
            storage[start..start + bytes.len()].copy_from_slice(&bytes);
            b.set_len(len);
            out.frames += 1;
        }
        out.more = out.frames == n && !self.rx.is_empty();
        Ok(out)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        let mut out = SendResult::default();
        for f in frames {
            match self.tx.try_send(f.to_vec()) {
                Ok(()) => out.sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => out.failed += 1,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_end_sends_the_other_receives_until_the_queue_is_full() {
        let (mut a, mut b) = MemPort::pair(true);
        let mut bufs: Vec<FrameBuf> = (0..BATCH).map(|_| FrameBuf::default()).collect();
        let mut hdr_frame = vec![0u8; VNET_HDR_LEN];
        hdr_frame.extend_from_slice(b"frame one");
        assert_eq!(a.send(&[&hdr_frame]).sent, 1);
        assert!(a.send_frame(b"frame two"));
        let r = b.recv(&mut bufs).unwrap();
        assert_eq!(r.frames, 2);
        assert_eq!(bufs[0].frame(), b"frame one");
        assert_eq!(bufs[1].frame(), b"frame two");
        let filler = vec![0u8; 64];
        let many: Vec<&[u8]> = (0..MEM_QUEUE + 5).map(|_| filler.as_slice()).collect();
        let r = a.send(&many);
        assert_eq!((r.sent, r.failed), (MEM_QUEUE, 0), "the rest met a full queue");
        drop(b);
        assert_eq!(a.send(&[&filler]).failed, 1, "the other end is gone");
    }
}
