//! Plexus network drivers: the CNM driver trait and the built-in drivers.
//!
//! Role: a driver turns the controller's decisions (this network exists, this
//! endpoint has this address and MAC, join it to that sandbox) into kernel objects
//! and dataplane state. The controller owns names, IPAM and the store; a driver
//! owns interfaces. Built in:
//!
//! - [`bridge::BridgeDriver`] — one bridge domain of the Plexus userspace switch per
//!   network; endpoints are veth pairs whose container end is configured at join.
//! - [`host::HostDriver`] — the container shares the host's network namespace.
//! - [`null::NullDriver`] — loopback only.
//!
//! Decision: drivers are told everything they need in plain specs
//! ([`NetworkSpec`], [`EndpointSpec`], [`SandboxSpec`]) and keep no state of their
//! own that the controller cannot rebuild, so a restarted daemon restores them from
//! the store alone.

pub mod bridge;
pub mod host;
pub mod null;

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
pub use plexus_switch::MacAddr;

/// Errors of driver operations.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A kernel operation failed.
    #[error(transparent)]
    Sandbox(#[from] plexus_sandbox::SandboxError),
    /// A teardown failed in one or more steps (all steps were tried).
    #[error(transparent)]
    Teardown(#[from] plexus_sandbox::TeardownErrors),
    /// The driver cannot do this (e.g. join a host-network endpoint to a sandbox
    /// with its own namespace).
    #[error("driver {driver}: {reason}")]
    Unsupported {
        /// The driver.
        driver: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a driver knows of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Controller-assigned id.
    pub id: String,
    /// User-visible name.
    pub name: String,
    /// The subnet, for drivers that use IPAM.
    pub subnet: Option<Ipv4Net>,
    /// The gateway address, for drivers that use IPAM.
    pub gateway: Option<Ipv4Addr>,
    /// Containers of an internal network get no default route.
    pub internal: bool,
    /// Interface MTU for endpoints.
    pub mtu: u32,
}

/// What a driver knows of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Controller-assigned id.
    pub id: String,
    /// User-visible name.
    pub name: String,
    /// The address with the subnet's prefix length, for drivers that use IPAM.
    pub addr: Option<Ipv4Net>,
    /// The container interface's MAC, for drivers that use IPAM.
    pub mac: Option<MacAddr>,
    /// Name of the host-side interface (e.g. the veth end the switch attaches).
    pub host_ifname: String,
    /// Name of the container-side interface while it is in the host namespace.
    pub peer_ifname: String,
}

/// What a driver knows of the sandbox an endpoint joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The sandbox's network namespace path; `None` for a host-mode sandbox.
    pub key: Option<PathBuf>,
    /// The interface name inside the sandbox (`eth0`, `eth1`, …).
    pub ifname: String,
    /// Install the default route through this endpoint's gateway.
    pub default_route: bool,
}

/// A CNM network driver.
pub trait Driver: Send + Sync + Debug {
    /// The driver's name (`bridge`, `host`, `null`).
    fn name(&self) -> &'static str;

    /// True if the controller must reserve a pool for its networks and an address
    /// and MAC for its endpoints.
    fn uses_ipam(&self) -> bool;

    /// True if a sandbox joined through this driver is the host namespace.
    fn host_mode(&self) -> bool {
        false
    }

    /// Called once a network is validated and its pool reserved.
    fn create_network(&self, net: &NetworkSpec) -> Result<(), DriverError>;

    /// Called when the network is deleted (it has no endpoints left).
    fn delete_network(&self, net: &NetworkSpec) -> Result<(), DriverError>;

    /// Creates the endpoint's interfaces. On error nothing is left behind.
    fn create_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError>;

    /// Removes the endpoint's interfaces (it is not joined). Keeps going on errors.
    fn delete_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError>;

    /// Attaches the endpoint to a sandbox: moves and configures its interface.
    fn join(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: &SandboxSpec,
    ) -> Result<(), DriverError>;

    /// Detaches the endpoint from its sandbox, keeping the endpoint (and its
    /// address) for a later join.
    fn leave(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: &SandboxSpec,
    ) -> Result<(), DriverError>;
}

/// The built-in drivers, by name.
pub fn builtin() -> Vec<std::sync::Arc<dyn Driver>> {
    vec![
        std::sync::Arc::new(bridge::BridgeDriver::default()),
        std::sync::Arc::new(host::HostDriver),
        std::sync::Arc::new(null::NullDriver),
    ]
}
