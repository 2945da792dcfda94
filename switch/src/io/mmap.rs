//! [`Mapping`]: an owned memory mapping, unmapped on drop — the rings a socket
//! shares with the kernel (TPACKET, AF_XDP) and AF_XDP's UMEM. One type, so
//! each of them maps, checks and unmaps the same way.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// `len` bytes mapped read-write at `ptr`, ours until dropped.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes of what `fd` offers at `offset` (a ring the kernel made for
    /// the socket), shared with the kernel and faulted in now.
    pub(crate) fn shared(fd: RawFd, len: usize, offset: u64) -> io::Result<Mapping> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Self::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, fd, offset)
    }

    /// `len` bytes of fresh zeroed private memory, faulted in now.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0)
    }

    fn map(len: usize, flags: libc::c_int, fd: RawFd, offset: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: a new mapping chosen by the kernel (no address hint), so it
        // aliases nothing of ours; the result is checked before use and
        // unmapped exactly once, on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    /// The first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
