//! [`TapPort`]: a TAP fd (made by `sandbox::tap` with `IFF_VNET_HDR`). TAP has
//! no multi-message syscall, so a burst is a loop of `read`s until the queue is
//! empty or the batch is full, and a send a loop of `write`s.
//!
//! Both go through `syscall(2)` rather than glibc's `read`/`write`: those are
//! thread cancellation points, and enabling and disabling asynchronous
//! cancellation around each call (two atomic read-modify-writes) cost about
//! 4 % of the switch's core at 64-byte frames, where a frame is a syscall each
//! way (a profile; the frame rate moved by less than the VM's noise). The
//! switch never cancels its threads.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::port::{Port, RecvResult, SendResult, is_full};
use crate::frame::{BATCH, FrameBuf, VNET_HDR_LEN};

/// A TAP port over an fd from `sandbox::tap::create`.
#[derive(Debug)]
pub struct TapPort {
    fd: OwnedFd,
    offload: bool,
}

impl TapPort {
    /// Adopts a non-blocking TAP fd; `offload` must match whether it was opened
    /// with `IFF_VNET_HDR` (and a 10-byte header size).
    pub fn new(fd: OwnedFd, offload: bool) -> TapPort {
        TapPort { fd, offload }
    }

    /// The fd as a whole register for `syscall(2)`'s variadic arguments.
    fn fd_arg(&self) -> libc::c_long {
        libc::c_long::from(self.fd.as_raw_fd())
    }
}

impl Port for TapPort {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn offload(&self) -> bool {
        self.offload
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        let skip = if self.offload { 0 } else { VNET_HDR_LEN };
        let mut out = RecvResult::default();
        for i in 0..bufs.len().min(BATCH) {
            let b = &mut bufs[out.frames];
            let area = &mut b.storage_mut()[skip..];
            // SAFETY: read(2) of at most `area.len()` bytes into a live,
            // exclusively borrowed buffer.
            let rc = unsafe { libc::syscall(libc::SYS_read, self.fd_arg(), area.as_mut_ptr(), area.len()) };
            let Ok(len) = usize::try_from(rc) else {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(out),
                    _ if out.frames > 0 => Ok(out),
                    _ => Err(e),
                };
            };
            let hdr_len = VNET_HDR_LEN - skip;
            if len < hdr_len {
                out.truncated += 1;
                continue;
            }
            if skip != 0 {
                b.storage_mut()[..VNET_HDR_LEN].fill(0);
            }
            b.set_len(len - hdr_len);
            out.frames += 1;
            out.more = i + 1 == bufs.len().min(BATCH);
        }
        Ok(out)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        let mut out = SendResult::default();
        for f in frames {
            // SAFETY: write(2) of `f.len()` bytes from a live slice.
            let rc = unsafe { libc::syscall(libc::SYS_write, self.fd_arg(), f.as_ptr(), f.len()) };
            if rc >= 0 {
                out.sent += 1;
            } else if is_full(&io::Error::last_os_error()) {
                break;
            } else {
                // EIO while the device is down, EINVAL for a bad header: this
                // frame only.
                out.failed += 1;
            }
        }
        out
    }
}
