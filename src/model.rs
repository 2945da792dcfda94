//! The persisted records and the public views of them.
//!
//! Records are what the store keeps; everything else (IPAM bitmaps, name indexes)
//! is derived from them at start. The `*Info` views are what handles, the daemon
//! and the JSON API show: they carry names, not ids, wherever a user would.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use plexus_drivers::{EndpointKind, Switching};
use plexus_switch::MacAddr;

use crate::publish::Binding;
use serde::{Deserialize, Serialize};

/// A network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Random id (32 hex digits).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Driver name.
    pub driver: String,
    /// The pool, for IPAM drivers.
    pub subnet: Option<Ipv4Net>,
    /// The allocatable range (the subnet if not set by the user).
    pub ip_range: Option<Ipv4Net>,
    /// The gateway address.
    pub gateway: Option<Ipv4Addr>,
    /// The subnet was given by the user.
    pub user_subnet: bool,
    /// No external connectivity.
    pub internal: bool,
    /// TCP and UDP to the gateway's address reach the host's loopback.
    #[serde(default)]
    pub host_loopback: bool,
    /// Endpoint MTU.
    pub mtu: u32,
    /// MAC learning and anti-spoofing settings.
    #[serde(default)]
    pub switching: Switching,
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Random id.
    pub id: String,
    /// Name, unique in its network.
    pub name: String,
    /// Its network's id.
    pub network: String,
    /// Reserved address (with the subnet's prefix length).
    pub addr: Option<Ipv4Net>,
    /// The container interface's MAC.
    pub mac: Option<MacAddr>,
    /// Host-side interface name.
    pub host_ifname: String,
    /// Container-side interface name while outside a sandbox.
    pub peer_ifname: String,
    /// The sandbox (id) it is joined to.
    pub sandbox: Option<String>,
    /// Its interface name inside the sandbox while joined.
    pub ifname: Option<String>,
    /// It carries the sandbox's default route.
    pub default_route: bool,
    /// Delete it when its sandbox is deleted (endpoints made by `plexus run`).
    pub remove_with_sandbox: bool,
    /// veth or TAP.
    #[serde(default)]
    pub kind: EndpointKind,
    /// Published ports held for it.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Addresses it may send from besides its own (anti-spoofing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Ipv4Net>,
}

/// A sandbox as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Random id.
    pub id: String,
    /// The container id it was made for (unique).
    pub name: String,
    /// The named namespace; `None` for a host-mode sandbox.
    pub netns: Option<String>,
    /// Hostname.
    pub hostname: String,
    /// Domain name.
    pub domainname: Option<String>,
}

/// Everything the store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Networks in creation order.
    pub networks: Vec<NetworkRecord>,
    /// Endpoints in creation order.
    pub endpoints: Vec<EndpointRecord>,
    /// Sandboxes in creation order.
    pub sandboxes: Vec<SandboxRecord>,
}

/// What a network looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// Subnet.
    pub subnet: Option<Ipv4Net>,
    /// Allocatable range.
    pub ip_range: Option<Ipv4Net>,
    /// Gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Internal network.
    pub internal: bool,
    /// TCP and UDP to the gateway's address reach the host's loopback.
    pub host_loopback: bool,
    /// MTU.
    pub mtu: u32,
    /// MAC learning and anti-spoofing settings.
    pub switching: Switching,
    /// Names of its endpoints.
    pub endpoints: Vec<String>,
}

/// What an endpoint looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its network's name.
    pub network: String,
    /// Address with prefix length.
    pub address: Option<Ipv4Net>,
    /// MAC address.
    pub mac: Option<MacAddr>,
    /// The network's gateway.
    pub gateway: Option<Ipv4Addr>,
    /// veth or TAP.
    pub kind: EndpointKind,
    /// Host-side interface (the switch's AF_PACKET port for veth; unused for TAP).
    pub host_ifname: String,
    /// The sandbox it is joined to (name).
    pub sandbox: Option<String>,
    /// Its interface inside the sandbox.
    pub ifname: Option<String>,
    /// Published ports (`HOST_IP:HOST_PORT->CONTAINER_PORT/PROTO`).
    #[serde(default)]
    pub ports: Vec<Binding>,
    /// Addresses it may send from besides its own (`--allowed-address`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<Ipv4Net>,
}

/// What a sandbox looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Id.
    pub id: String,
    /// Name (container id).
    pub name: String,
    /// The sandbox key: its network namespace path (`None` for host mode).
    pub key: Option<PathBuf>,
    /// Rootless: the user namespace that owns it, to join before entering
    /// the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<PathBuf>,
    /// Hostname.
    pub hostname: String,
    /// Domain name.
    pub domainname: Option<String>,
    /// Path of its hosts file.
    pub hosts_path: PathBuf,
    /// Path of its resolv.conf.
    pub resolv_conf_path: PathBuf,
    /// Joined endpoints (names).
    pub endpoints: Vec<String>,
}

/// One row of a network's MAC table; the controller names the endpoint.
pub use plexus_drivers::FdbRow as FdbInfo;
/// One outbound NAT flow; the controller names the endpoint.
pub use plexus_drivers::NatRow as NatInfo;
/// One switch port's counters; the controller names the endpoint and network.
pub use plexus_drivers::PortRow as PortInfo;
