//! Ports: where frames enter and leave the switch. One trait, batch receive and
//! batch send; the backends are [`super::packet::PacketPort`] (AF_PACKET on a
//! veth host end), [`super::tap::TapPort`] (a TAP fd) and, for tests and
//! wrappers, [`super::mem::MemPort`].

use std::fmt::Debug;
use std::io;
use std::os::fd::RawFd;

use crate::frame::FrameBuf;

/// A switch port.
pub trait Port: Send + Debug {
    /// The fd to watch for readability; `None` for a port without one (in
    /// memory), which the worker is told about by its owner.
    fn raw_fd(&self) -> Option<RawFd>;
    /// True if frames carry a virtio-net header on this port.
    fn offload(&self) -> bool;
    /// Receives up to `bufs.len()` frames without blocking; returns how many
    /// (0 when the queue is empty). Frames the port truncated are skipped and
    /// counted in the returned `truncated`.
    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult>;
    /// Sends frames (each with its virtio-net header iff [`Port::offload`])
    /// without blocking, in order. Frames neither sent nor failed met a full
    /// queue.
    fn send(&mut self, frames: &[&[u8]]) -> SendResult;

    /// Frames the kernel dropped for this port since the last call, before the
    /// switch could read them (a full receive ring or queue).
    fn take_rx_overruns(&mut self) -> u64 {
        0
    }
}

/// What one `send` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendResult {
    /// Frames the device accepted.
    pub sent: usize,
    /// Frames it refused with an error (the rest of the burst still went).
    pub failed: usize,
}

/// True for the errors that mean "queue full, try later".
pub(crate) fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// What one `recv` burst brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvResult {
    /// Frames now in the first buffers.
    pub frames: usize,
    /// Frames longer than a buffer, dropped.
    pub truncated: usize,
    /// The port's queue may hold more (the burst was full).
    pub more: bool,
}
