//! TAP devices: a thin sys layer over `/dev/net/tun` ioctls (Firecracker's shape).
//!
//! The switch owns the returned fd; this module only creates and configures the
//! device. To create a TAP inside a sandbox, call [`create`] inside
//! [`crate::netns::run_in`]: the device is made in the namespace of the calling
//! thread, and the fd keeps working from any namespace.
//!
//! Decision: our own ioctls on `libc` rather than `tun-tap` or `tun-rs`. The
//! wrappers hide the fd, reject multi-queue, or reset the vnet-header state of an
//! adopted fd; the switch needs the raw fd with IFF_VNET_HDR and IFF_MULTI_QUEUE
//! under its control (one fd per queue, each opened by [`create`] with the same name
//! and options). Every frame is preceded by no packet-info header (IFF_NO_PI).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::SandboxError;
use crate::netlink::valid_link_name;

/// The clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// Size of the virtio-net header set with TUNSETVNETHDRSZ when
/// [`TapOptions::vnet_hdr`] is on: the plain 10-byte `struct virtio_net_hdr`,
/// the same header AF_PACKET's `PACKET_VNET_HDR` uses, so the switch passes it
/// between TAP and veth ports unchanged.
pub const VNET_HDR_LEN: usize = 10;

/// `TUNSETOFFLOAD` flag: the reader handles partial checksums.
pub const TUN_F_CSUM: u32 = libc::TUN_F_CSUM;
/// `TUNSETOFFLOAD` flag: the reader handles TSO over IPv4.
pub const TUN_F_TSO4: u32 = libc::TUN_F_TSO4;
/// `TUNSETOFFLOAD` flag: the reader handles TSO over IPv6.
pub const TUN_F_TSO6: u32 = libc::TUN_F_TSO6;
/// `TUNSETOFFLOAD` flag: the reader handles TSO with ECN.
pub const TUN_F_TSO_ECN: u32 = libc::TUN_F_TSO_ECN;
/// `TUNSETOFFLOAD` flag: the reader handles UDP segmentation offload over IPv4 (Linux 6.2+).
pub const TUN_F_USO4: u32 = libc::TUN_F_USO4;
/// `TUNSETOFFLOAD` flag: the reader handles UDP segmentation offload over IPv6 (Linux 6.2+).
pub const TUN_F_USO6: u32 = libc::TUN_F_USO6;

/// How to open a TAP device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// IFF_VNET_HDR: every read and write carries a virtio-net header.
    pub vnet_hdr: bool,
    /// IFF_MULTI_QUEUE.
    pub multi_queue: bool,
}

/// Kernel TUN/TAP features (`TUNGETFEATURES`), probed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapFeatures {
    /// IFF_VNET_HDR supported.
    pub vnet_hdr: bool,
    /// IFF_MULTI_QUEUE supported.
    pub multi_queue: bool,
}

fn tap_err(name: &str, op: &'static str, source: io::Error) -> SandboxError {
    SandboxError::Tap {
        name: name.to_owned(),
        op,
        source,
    }
}

fn open_clone_device(name: &str, flags: OFlag) -> Result<OwnedFd, SandboxError> {
    open(TUN_PATH, flags | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| tap_err(name, "open /dev/net/tun", e.into()))
}

/// Creates (or attaches to) the TAP device `name` in the calling thread's network
/// namespace and returns its non-blocking, close-on-exec fd. The device is not
/// persistent: it disappears when the last fd closes.
///
/// With [`TapOptions::multi_queue`], each call with the same name and options adds
/// one queue. With [`TapOptions::vnet_hdr`], the header size is set to
/// [`VNET_HDR_LEN`]; offloads stay off until [`set_offload`].
pub fn create(name: &str, opts: TapOptions) -> Result<OwnedFd, SandboxError> {
    if !valid_link_name(name) {
        return Err(SandboxError::InvalidLinkName(name.to_owned()));
    }
    let fd = open_clone_device(name, OFlag::O_NONBLOCK)?;

    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if opts.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if opts.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let flags = libc::c_short::try_from(flags)
        .map_err(|_| tap_err(name, "TUNSETIFF", io::Error::from_raw_os_error(libc::EINVAL)))?;

    // SAFETY: `ifreq` is a plain C struct (arrays, integers, a union of them and a
    // pointer); all-zero bytes are a valid value of every field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // `valid_link_name` guarantees 1..=15 bytes, so the name and its NUL fit in
    // IFNAMSIZ (16); the rest stays zero.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    ifr.ifr_ifru.ifru_flags = flags;
    // SAFETY: `fd` is an open /dev/net/tun fd; TUNSETIFF reads (and writes back the
    // final name into) the `ifreq` we pass, which lives until the call returns.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut ifr) };
    if rc < 0 {
        return Err(tap_err(name, "TUNSETIFF", io::Error::last_os_error()));
    }

    if opts.vnet_hdr {
        let size = libc::c_int::try_from(VNET_HDR_LEN)
            .map_err(|_| tap_err(name, "TUNSETVNETHDRSZ", io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points
        // to a live local for the duration of the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) };
        if rc < 0 {
            return Err(tap_err(name, "TUNSETVNETHDRSZ", io::Error::last_os_error()));
        }
    }
    Ok(fd)
}

/// Sets the offloads the reader of a vnet-header TAP accepts (`TUNSETOFFLOAD` with
/// `TUN_F_*` flags, e.g. `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`). The mask is
/// device-wide and survives detach, so set it on every attach. EINVAL means the
/// kernel does not know one of the flags (e.g. USO before Linux 6.2).
pub fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> Result<(), SandboxError> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), not
    // through a pointer; `fd` is a borrowed open fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
    if rc < 0 {
        return Err(tap_err(
            &format!("fd {}", fd.as_raw_fd()),
            "TUNSETOFFLOAD",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Makes the device persistent (`TUNSETPERSIST`): it outlives its fds, so a
/// restarted daemon can attach to it again by name with [`create`]. A persistent
/// device is removed by deleting its link (or clearing the flag and closing).
pub fn set_persist(fd: BorrowedFd<'_>, persist: bool) -> Result<(), SandboxError> {
    // SAFETY: TUNSETPERSIST takes its argument by value (an unsigned long), not
    // through a pointer; `fd` is a borrowed open TAP fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(persist)) };
    if rc < 0 {
        return Err(tap_err(
            &format!("fd {}", fd.as_raw_fd()),
            "TUNSETPERSIST",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Probes the kernel's TUN/TAP features.
pub fn probe_features() -> Result<TapFeatures, SandboxError> {
    const NAME: &str = "(probe)";
    let fd = open_clone_device(NAME, OFlag::empty())?;
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one `unsigned int` through the pointer, which
    // points to a live local for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &raw mut features) };
    if rc < 0 {
        return Err(tap_err(NAME, "TUNGETFEATURES", io::Error::last_os_error()));
    }
    let has = |flag: libc::c_int| u32::try_from(flag).is_ok_and(|f| features & f != 0);
    Ok(TapFeatures {
        vnet_hdr: has(libc::IFF_VNET_HDR),
        multi_queue: has(libc::IFF_MULTI_QUEUE),
    })
}
