//! Synchronous rtnetlink: links, addresses and routes, as netavark does it
//! (`netlink-packet-route` messages over a `netlink-sys` socket, no async runtime).
//!
//! A [`Netlink`] talks to the namespace it was opened in for its whole life.
//! [`Netlink::open_in`] opens it from a short-lived thread inside the target
//! namespace, so the daemon configures a container's interfaces without ever
//! moving one of its own threads.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::SandboxError;

/// What `RTM_GETLINK` says of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// ifindex.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, if it has one of six bytes.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// IFF_UP is set.
    pub up: bool,
    /// The ifindex of its master (bridge, bond), if any.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND` (e.g. "veth", "tun", "bridge"), if any.
    pub kind: Option<String>,
}

/// A route of the main table (IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination; `0.0.0.0/0` for the default route.
    pub dst: Ipv4Net,
    /// The gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The output interface, if any.
    pub oif: Option<u32>,
}

/// A synchronous rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    _private: (),
}

impl Netlink {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<Netlink, SandboxError> {
        todo!()
    }

    /// Opens a socket in the namespace at `ns_path`, from a short-lived thread.
    pub fn open_in(ns_path: &Path) -> Result<Netlink, SandboxError> {
        todo!("{ns_path:?}")
    }

    /// All links.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, SandboxError> {
        todo!()
    }

    /// One link by name; [`SandboxError::NoSuchLink`] if absent.
    pub fn link(&mut self, name: &str) -> Result<LinkInfo, SandboxError> {
        todo!("{name}")
    }

    /// Creates a veth pair `name` <-> `peer`, both down, with `mtu` if given.
    pub fn create_veth(&mut self, name: &str, peer: &str, mtu: Option<u32>) -> Result<(), SandboxError> {
        todo!("{name}{peer}{mtu:?}")
    }

    /// Deletes a link (for a veth, both ends go).
    pub fn delete_link(&mut self, index: u32) -> Result<(), SandboxError> {
        todo!("{index}")
    }

    /// Moves a link into the namespace whose file is open as `ns`.
    pub fn set_netns(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), SandboxError> {
        todo!("{index}{ns:?}")
    }

    /// Renames a link (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<(), SandboxError> {
        todo!("{index}{name}")
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), SandboxError> {
        todo!("{index}{mac:?}")
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), SandboxError> {
        todo!("{index}{mtu}")
    }

    /// Sets IFF_UP or clears it.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), SandboxError> {
        todo!("{index}{up}")
    }

    /// Adds an IPv4 address (`addr` with its prefix length) to a link.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Net) -> Result<(), SandboxError> {
        todo!("{index}{addr}")
    }

    /// The IPv4 addresses of a link.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Ipv4Net>, SandboxError> {
        todo!("{index}")
    }

    /// Adds the default route via `gateway` (reachable through `index`).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> Result<(), SandboxError> {
        todo!("{gateway}{index}")
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, SandboxError> {
        todo!()
    }
}

/// Checks a Linux interface name: 1..=15 bytes, no '/', ':' or whitespace.
pub fn valid_link_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}
