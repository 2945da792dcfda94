//! Plexus network drivers: the CNM driver trait and the built-in drivers.
//!
//! Role: a driver turns the controller's decisions (this network exists, this
//! endpoint has this address and MAC, join it to that sandbox) into kernel objects
//! and dataplane state. The controller owns names, IPAM and the store; a driver
//! owns interfaces. Built in:
//!
//! - [`bridge::BridgeDriver`] — one bridge domain of the Plexus userspace switch per
//!   network; the driver starts and owns the switch. Endpoints are veth pairs or
//!   TAP devices made in the daemon's namespace and moved into the sandbox at join
//!   (rootful), or TAP devices made inside the sandbox at join (rootless).
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

pub use bridge::VethIo;
use ipnet::Ipv4Net;
pub use plexus_switch::MacAddr;

/// Errors of driver operations.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A kernel operation failed.
    #[error(transparent)]
    Sandbox(#[from] plexus_sandbox::SandboxError),
    /// The dataplane refused or is gone.
    #[error("switch: {0}")]
    Switch(#[from] plexus_switch::DataplaneError),
    /// Opening a port on an interface failed.
    #[error("attach {ifname} to the switch: {source}")]
    Port {
        /// The interface.
        ifname: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A published host port is taken (by Plexus or any other program).
    #[error("bind {host}/{}: port is already allocated", proto.as_str())]
    PortInUse {
        /// The host address and port.
        host: std::net::SocketAddrV4,
        /// TCP or UDP.
        proto: plexus_switch::Protocol,
    },
    /// The network or endpoint is unknown to the driver.
    #[error("driver {driver}: no {what} {id}")]
    Unknown {
        /// The driver.
        driver: &'static str,
        /// "network" or "endpoint".
        what: &'static str,
        /// Its id.
        id: String,
    },
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
    /// TCP and UDP to the gateway's address reach the host's loopback.
    pub host_loopback: bool,
    /// Interface MTU for endpoints.
    pub mtu: u32,
    /// MAC learning and anti-spoofing settings of the network's bridge domain.
    pub switching: Switching,
}

/// How a network's bridge domain learns and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Switching {
    /// MAC table ageing time, seconds.
    pub mac_ageing_secs: u64,
    /// Bound on MAC table entries.
    pub mac_table_size: usize,
    /// Drop frames whose source MAC is not their endpoint's.
    pub anti_spoofing: bool,
}

impl Default for Switching {
    fn default() -> Self {
        Switching {
            mac_ageing_secs: plexus_switch::l2::fdb::DEFAULT_AGEING.as_secs(),
            mac_table_size: plexus_switch::l2::fdb::DEFAULT_MAX_ENTRIES,
            anti_spoofing: true,
        }
    }
}

/// The kind of interface an endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A veth pair: the container end moves into the sandbox, the switch reads
    /// the host end through AF_PACKET.
    #[default]
    Veth,
    /// A TAP device in the sandbox whose fd the switch holds.
    Tap,
}

impl std::fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndpointKind::Veth => "veth",
            EndpointKind::Tap => "tap",
        })
    }
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
    /// veth or TAP.
    pub kind: EndpointKind,
    /// Published ports (TCP and UDP) to deliver into the container.
    pub publish: Vec<plexus_switch::Binding>,
    /// Addresses the container may send from besides its own (anti-spoofing;
    /// for a router or a VM inside).
    pub allowed: Vec<Ipv4Net>,
}

/// What a driver knows of the sandbox an endpoint joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The sandbox's network namespace path; `None` for a host-mode sandbox.
    pub key: Option<PathBuf>,
    /// Rootless: the user namespace that owns the sandbox's namespace.
    pub userns: Option<PathBuf>,
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

    // The life-cycle calls below default to doing nothing: a driver without
    // kernel objects of its own (`null`, `host`) keeps the defaults.

    /// Called once a network is validated and its pool reserved.
    fn create_network(&self, net: &NetworkSpec) -> Result<(), DriverError> {
        let _ = net;
        Ok(())
    }

    /// Called when the network is deleted (it has no endpoints left).
    fn delete_network(&self, net: &NetworkSpec) -> Result<(), DriverError> {
        let _ = net;
        Ok(())
    }

    /// Creates the endpoint's interfaces. On error nothing is left behind.
    fn create_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let _ = (net, ep);
        Ok(())
    }

    /// Removes the endpoint's interfaces (it is not joined). Keeps going on errors.
    fn delete_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let _ = (net, ep);
        Ok(())
    }

    /// Attaches the endpoint to a sandbox: moves and configures its interface.
    fn join(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<(), DriverError> {
        let _ = (net, ep, sb);
        Ok(())
    }

    /// Detaches the endpoint from its sandbox, keeping the endpoint (and its
    /// address) for a later join.
    fn leave(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<(), DriverError> {
        let _ = (net, ep, sb);
        Ok(())
    }

    /// Re-attaches a restored endpoint after a restart (`sb` if it is joined).
    /// Returns `false` if its interface was gone and had to be made again
    /// outside any sandbox: the controller then records it as not joined.
    fn restore_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: Option<&SandboxSpec>,
    ) -> Result<bool, DriverError> {
        let _ = (net, ep, sb);
        Ok(true)
    }

    /// Publishes `ep.publish` (host ports already reserved by the controller)
    /// for an endpoint that exists, besides what it publishes already.
    fn publish(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let _ = net;
        if ep.publish.is_empty() {
            return Ok(());
        }
        Err(DriverError::Unsupported {
            driver: self.name(),
            reason: "it publishes no ports".into(),
        })
    }

    /// Closes every published port of the endpoint.
    fn unpublish(&self, ep: &EndpointSpec) -> Result<(), DriverError> {
        let _ = ep;
        Ok(())
    }

    /// Replaces the names the networks' gateways answer (`names`, per
    /// network id) and, per endpoint id, the other networks whose names its
    /// container sees (`scopes`: it is on them too).
    fn set_names(&self, names: &[NetworkNames], scopes: &[(String, Vec<String>)]) -> Result<(), DriverError> {
        let _ = (names, scopes);
        Ok(())
    }

    /// The switch's view of this driver's networks, if it has one.
    fn switch(&self) -> Option<&dyn SwitchView> {
        None
    }
}

/// The names one network's gateway answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNames {
    /// The network's id.
    pub network_id: String,
    /// `(name, address)` records.
    pub records: Vec<(String, Ipv4Addr)>,
}

/// One MAC table row, with the endpoint it points at.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FdbRow {
    /// The address.
    pub mac: MacAddr,
    /// The endpoint whose port it was learned on (its id from a driver, its
    /// name from the controller).
    pub endpoint: String,
    /// Seconds since it was last seen.
    pub age_secs: f64,
}

/// One port's counters, with the endpoint it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRow {
    /// The endpoint (its id from a driver, its name from the controller).
    pub endpoint: String,
    /// The network (its id from a driver, its name from the controller).
    pub network: String,
    /// How the switch reads and writes the port: `af_packet`, `af_xdp (mode,
    /// copy or zero-copy, queues)`, `af_packet (af_xdp refused: why)` or `tap`.
    #[serde(default)]
    pub io: String,
    /// Frames received from the endpoint.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent to the endpoint.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// TCP segments sent folded into another frame (a super-frame the switch
    /// made of several; not in `tx_frames`).
    #[serde(default)]
    pub tx_coalesced: u64,
    /// Source MACs not learned because the table was full.
    pub learn_table_full: u64,
    /// Drops by reason (every reason listed, zeros included).
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// One outbound NAT flow, with the endpoint it belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NatRow {
    /// `udp`, `icmp` or `tcp`.
    pub proto: plexus_switch::NatProto,
    /// A TCP flow's phase: `connecting`, `established` or `closing` (absent for
    /// UDP and ICMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<plexus_switch::nat::TcpPhase>,
    /// The container's address and port (ICMP: echo identifier).
    pub inside: std::net::SocketAddrV4,
    /// The outside address and port (ICMP: 0).
    pub outside: std::net::SocketAddrV4,
    /// The endpoint (its id from a driver, its name from the controller).
    pub endpoint: String,
    /// Packets from the container (UDP, ICMP; 0 for TCP).
    pub packets_out: u64,
    /// Packets to the container (UDP, ICMP; 0 for TCP).
    pub packets_in: u64,
    /// Seconds since the flow last carried a packet.
    pub idle_secs: f64,
}

/// What a switch-backed driver shows of its dataplane.
pub trait SwitchView {
    /// The MAC table of a network.
    fn fdb(&self, network_id: &str) -> Result<Vec<FdbRow>, DriverError>;
    /// Number of entries in a network's MAC table.
    fn fdb_len(&self, network_id: &str) -> Result<usize, DriverError>;
    /// Every port's counters.
    fn ports(&self) -> Result<Vec<PortRow>, DriverError>;
    /// The outbound NAT flows.
    fn nat(&self) -> Result<Vec<NatRow>, DriverError>;
    /// Where the switch's file descriptor budget stands.
    fn fd_use(&self) -> Result<plexus_switch::FdUse, DriverError>;
    /// Whether the switch's worker runs (and why it died if not).
    fn health(&self) -> plexus_switch::Health;
    /// The gateways' DNS counters.
    fn dns_stats(&self) -> Result<plexus_switch::dns::DnsStats, DriverError>;
    /// Every step `frame`, sent by endpoint `endpoint` (id), would take in
    /// the switch; nothing is sent or changed.
    fn explain(&self, endpoint: &str, frame: Vec<u8>) -> Result<Vec<String>, DriverError>;
    /// Starts capturing the ports of `endpoints` (ids); `decisions`: a
    /// line per received frame saying what the switch did, not the frames.
    fn capture(
        &self,
        endpoints: &[String],
        queue: usize,
        snaplen: u32,
        decisions: bool,
    ) -> Result<plexus_switch::dataplane::capture::Capture, DriverError>;
}

/// The built-in drivers; `bridge` starts its switch with `config` (`rootless`:
/// its endpoints are TAP devices made inside the sandboxes at join; `steering`:
/// where its veth host ends steer received frames; `veth_io`: how the switch
/// reads and writes them).
pub fn builtin(
    config: plexus_switch::DataplaneConfig,
    rootless: bool,
    steering: &plexus_sandbox::sysfs::RxSteering,
    veth_io: bridge::VethIo,
) -> Result<Vec<std::sync::Arc<dyn Driver>>, DriverError> {
    Ok(vec![
        std::sync::Arc::new(bridge::BridgeDriver::start(config, rootless, steering, veth_io)?),
        std::sync::Arc::new(host::HostDriver),
        std::sync::Arc::new(null::NullDriver),
    ])
}
