//! A sandbox's `hosts` and `resolv.conf`, written atomically (temp file, fsync,
//! rename) under the controller's state directory.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::SandboxError;

/// One `/etc/hosts` line: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its names, most specific first (e.g. `c1.example.org c1`).
    pub names: Vec<String>,
}

/// Writes a hosts file: the localhost lines, then one line per entry.
pub fn write_hosts(path: &Path, entries: &[HostsEntry]) -> Result<(), SandboxError> {
    todo!("{path:?}{entries:?}")
}

/// Writes resolv.conf from the host's: its nameservers minus loopback ones
/// (they do not work from another namespace), `search` set to `domainname` if
/// given (else the host's search line), and the host's options.
pub fn write_resolv_conf(path: &Path, host_resolv_conf: &str, domainname: Option<&str>) -> Result<(), SandboxError> {
    todo!("{path:?}{host_resolv_conf}{domainname:?}")
}

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SandboxError> {
    todo!("{path:?}{data:?}")
}
