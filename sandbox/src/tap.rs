//! TAP devices: a thin sys layer over `/dev/net/tun` ioctls (Firecracker's shape).
//!
//! The switch owns the returned fd; this module only creates and configures the
//! device. To create a TAP inside a sandbox, call [`create`] inside
//! [`crate::netns::run_in`]: the device is made in the namespace of the calling
//! thread, and the fd keeps working from any namespace.

use std::os::fd::OwnedFd;

use crate::SandboxError;

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

/// Creates (or attaches to) the TAP device `name` in the calling thread's network
/// namespace and returns its non-blocking, close-on-exec fd. The device is not
/// persistent: it disappears when the last fd closes.
pub fn create(name: &str, opts: TapOptions) -> Result<OwnedFd, SandboxError> {
    todo!("{name}{opts:?}")
}

/// Probes the kernel's TUN/TAP features.
pub fn probe_features() -> Result<TapFeatures, SandboxError> {
    todo!()
}
