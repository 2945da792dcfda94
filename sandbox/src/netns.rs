//! Named network namespaces, made the way `ip netns add` makes them.
//!
//! A named namespace is a bind mount of a namespace file on `/run/netns/NAME`
//! (iproute2's recipe: `/run/netns` is made a shared mount point first, so that an
//! unmount propagates and the namespace can be freed). The bind mount keeps the
//! namespace alive with no process inside, and `ip netns list` shows it.
//!
//! The namespace is created on a short-lived thread that calls
//! `unshare(CLONE_NEWNET)` and bind-mounts `/proc/thread-self/ns/net`; the calling
//! thread never changes namespace.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace (a bind mount under [`NETNS_DIR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// The handle of an existing named namespace (checked with [`exists`]).
    pub fn open_named(name: &str) -> Result<Netns, SandboxError> {
        todo!("{name}")
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's path: the sandbox key.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file (O_RDONLY|O_CLOEXEC) for `setns` or `IFLA_NET_NS_FD`.
    pub fn open_fd(&self) -> Result<OwnedFd, SandboxError> {
        todo!()
    }
}

/// Creates the named namespace `name` (with `lo` down, as the kernel makes it).
/// Fails with [`SandboxError::NetnsExists`] if it exists; leaves nothing behind on
/// failure.
pub fn create(name: &str) -> Result<Netns, SandboxError> {
    todo!("{name}")
}

/// Deletes the named namespace: lazy unmount and unlink. Missing is
/// [`SandboxError::NoSuchNetns`].
pub fn delete(name: &str) -> Result<(), SandboxError> {
    todo!("{name}")
}

/// True if `/run/netns/NAME` is a mounted namespace.
pub fn exists(name: &str) -> bool {
    todo!("{name}")
}

/// Runs `f` on a new thread that has entered the network namespace at `path`
/// (a named namespace or any `/proc/PID/ns/net`), and returns its result. The
/// thread ends afterwards, so no long-lived thread ever changes namespace.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, SandboxError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    todo!("{path:?}{}", std::mem::size_of_val(&f))
}
