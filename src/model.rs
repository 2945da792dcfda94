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
    /// The engine that made it through its plugin (its id is then the
    /// engine's id for it); `None` for Plexus's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// A container engine that drives Plexus through its plugin protocol and owns
/// what it made: its networks and endpoints are changed only through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Docker, through libnetwork's remote driver protocol.
    Docker,
    /// A CNI runtime (Podman, containerd, CRI-O, ...), through `plexus-cni`.
    Cni,
}

impl Engine {
    /// Its name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Cni => "cni",
        }
    }
}

/// An address pool handed out by the Docker IPAM plugin (`RequestPool`), with
/// the addresses handed out of it (`RequestAddress`, the gateway included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerPool {
    /// The pool id Docker uses (`AddressSpace/Pool[/SubPool]`).
    pub id: String,
    /// The pool.
    pub subnet: Ipv4Net,
    /// The sub-pool dynamic addresses come from, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_pool: Option<Ipv4Net>,
    /// Addresses handed out, in order.
    #[serde(default)]
    pub addresses: Vec<Ipv4Addr>,
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
    /// The sandbox (name) a `run` made it for: removing that sandbox removes
    /// it, joined or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The engine that made it (see [`NetworkRecord::engine`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// While an engine's sandbox holds its interface: that sandbox's key
    /// (the engine moved the interface there and configured it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_sandbox: Option<PathBuf>,
    /// More names the network's DNS answers for it (`--alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
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
    /// `--dns`, `--dns-search`, `--dns-option`: what its resolv.conf says
    /// instead of the gateway's DNS and the host's search list.
    #[serde(default, skip_serializing_if = "DnsSettings::is_empty")]
    pub dns: DnsSettings,
}

/// A sandbox's resolver settings (`docker run --dns ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// Nameservers instead of the network's gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Ipv4Addr>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options (`ndots:2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsSettings {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// One name the gateway's DNS answers (`plexus dns NET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The endpoint it belongs to.
    pub endpoint: String,
}

/// A change of several steps, recorded before its first step acts and
/// removed with its last one. A controller that finds one at start (its
/// process died half-way) finishes it if its last step happened, else undoes
/// what it made — so a crash never leaves an orphan sandbox, an unjoined
/// endpoint holding a port, or a link nobody owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Intent {
    /// An endpoint whose kernel objects are being made; its record is
    /// committed with them.
    CreateEndpoint {
        /// The record it will commit.
        endpoint: Box<EndpointRecord>,
    },
    /// Endpoint `endpoint` (id) joins sandbox `sandbox` (name), made by this
    /// change if `new_sandbox`; with `new_endpoint`, the endpoint is made by
    /// it too (`run`). Done when the endpoint is joined to that sandbox.
    Join {
        /// The sandbox's name.
        sandbox: String,
        /// The endpoint's id.
        endpoint: String,
        /// This change creates the sandbox.
        new_sandbox: bool,
        /// This change creates the endpoint.
        new_endpoint: bool,
    },
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
    /// Changes under way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<Intent>,
    /// Pools of the Docker IPAM plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_pools: Vec<DockerPool>,
}

/// What is wrong with a state that decodes but cannot be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// The record, as `network n1 (id …)` or `endpoint c1 of network n1`.
    pub record: String,
    /// What is wrong with it.
    pub problem: String,
}

impl State {
    /// What the records imply and the store does not keep: the address pools
    /// with their reserved addresses, and the host ports held. Fails on a
    /// record that contradicts them (an address twice, a host port twice).
    pub fn derive(&self) -> crate::Result<(crate::ipam::Ipam, crate::publish::PortAllocator)> {
        let mut ipam = crate::ipam::Ipam::new(Vec::new());
        for n in &self.networks {
            if let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) {
                ipam.restore_pool(&crate::ipam::PoolInfo {
                    subnet,
                    ip_range: n.ip_range.unwrap_or(subnet),
                    gateway,
                    user_subnet: n.user_subnet,
                })?;
            }
        }
        let mut ports = crate::publish::PortAllocator::default();
        for e in &self.endpoints {
            let net = self.networks.iter().find(|n| n.id == e.network);
            if let (Some(addr), Some(subnet)) = (e.addr, net.and_then(|n| n.subnet)) {
                ipam.reserve_address(subnet, addr.addr())?;
            }
            ports.restore(&e.bindings)?;
        }
        Ok((ipam, ports))
    }

    /// Checks what the store must never hold: two records with one id or
    /// name, two endpoints of a network with one address, MAC or host
    /// interface, a reference to a record that is not there, an address
    /// outside its network. The first problem found is returned.
    pub fn check(&self) -> Result<(), Inconsistency> {
        use std::collections::HashSet;
        let bad = |record: String, problem: String| Err(Inconsistency { record, problem });
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for n in &self.networks {
            let me = || format!("network {} (id {})", n.name, n.id);
            if !ids.insert(n.id.as_str()) {
                return bad(me(), "its id is used by another record".into());
            }
            if !names.insert(n.name.as_str()) {
                return bad(me(), "another network has the same name".into());
            }
        }
        let mut sandbox_names = HashSet::new();
        for sb in &self.sandboxes {
            let me = || format!("sandbox {} (id {})", sb.name, sb.id);
            if !ids.insert(sb.id.as_str()) {
                return bad(me(), "its id is used by another record".into());
            }
            if !sandbox_names.insert(sb.name.as_str()) {
                return bad(me(), "another sandbox has the same name".into());
            }
        }
        let mut per_net = HashSet::new();
        let mut host_ifnames = HashSet::new();
        for e in &self.endpoints {
            let net = self.networks.iter().find(|n| n.id == e.network);
            let me = || {
                let shown = net.map_or(e.network.as_str(), |n| n.name.as_str());
                format!("endpoint {} (id {}) of network {shown}", e.name, e.id)
            };
            let Some(net) = net else {
                return bad(me(), format!("its network {} does not exist", e.network));
            };
            if !ids.insert(e.id.as_str()) {
                return bad(me(), "its id is used by another record".into());
            }
            if !per_net.insert((e.network.as_str(), "name", e.name.clone())) {
                return bad(me(), "another endpoint of the network has the same name".into());
            }
            if let Some(a) = e.addr {
                if !per_net.insert((e.network.as_str(), "address", a.addr().to_string())) {
                    return bad(
                        me(),
                        format!("another endpoint of the network has the address {}", a.addr()),
                    );
                }
                if net.subnet.is_some_and(|s| !s.contains(&a.addr())) {
                    return bad(me(), format!("its address {a} is outside the network's subnet"));
                }
            }
            if let Some(m) = e.mac
                && !per_net.insert((e.network.as_str(), "mac", m.to_string()))
            {
                return bad(me(), format!("another endpoint of the network has the MAC {m}"));
            }
            if !host_ifnames.insert(e.host_ifname.as_str()) {
                return bad(
                    me(),
                    format!("another endpoint has the host interface {}", e.host_ifname),
                );
            }
            if let Some(sb) = &e.sandbox
                && !self.sandboxes.iter().any(|s| &s.id == sb)
            {
                return bad(me(), format!("its sandbox {sb} does not exist"));
            }
        }
        Ok(())
    }
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
    /// The engine that made it (its id is the engine's id for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
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
    /// The engine that made it (its id is the engine's id for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// The engine's sandbox that holds its interface now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_sandbox: Option<PathBuf>,
    /// More names the network's DNS answers for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str, subnet: &str) -> NetworkRecord {
        NetworkRecord {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            subnet: Some(subnet.parse().unwrap()),
            ip_range: None,
            gateway: None,
            user_subnet: true,
            internal: false,
            host_loopback: false,
            mtu: 1500,
            switching: Switching::default(),
            engine: None,
        }
    }

    fn ep(id: &str, name: &str, network: &str, addr: &str, ifname: &str) -> EndpointRecord {
        let addr: Ipv4Net = addr.parse().unwrap();
        EndpointRecord {
            id: id.into(),
            name: name.into(),
            network: network.into(),
            addr: Some(addr),
            mac: Some(MacAddr::from_ipv4(addr.addr())),
            host_ifname: ifname.into(),
            peer_ifname: format!("{ifname}c"),
            sandbox: None,
            ifname: None,
            default_route: false,
            remove_with_sandbox: false,
            kind: EndpointKind::Veth,
            bindings: vec![],
            allowed: vec![],
            owner: None,
            engine: None,
            external_sandbox: None,
            aliases: vec![],
        }
    }

    fn good() -> State {
        State {
            networks: vec![net("n1", "one", "10.0.0.0/24"), net("n2", "two", "10.0.1.0/24")],
            endpoints: vec![
                ep("e1", "a", "n1", "10.0.0.2/24", "pxh1"),
                ep("e2", "b", "n1", "10.0.0.3/24", "pxh2"),
                // The same name on another network is fine.
                ep("e3", "a", "n2", "10.0.1.2/24", "pxh3"),
            ],
            sandboxes: vec![SandboxRecord {
                id: "s1".into(),
                name: "box".into(),
                netns: Some("plexus-box".into()),
                hostname: "box".into(),
                domainname: None,
                dns: DnsSettings::default(),
            }],
            intents: vec![],
            docker_pools: vec![],
        }
    }

    /// Applies `f` to a good state and returns what `check` says of it.
    fn broken(f: impl FnOnce(&mut State)) -> Inconsistency {
        let mut s = good();
        f(&mut s);
        s.check().expect_err("should be refused")
    }

    #[test]
    fn a_consistent_state_passes_and_every_contradiction_is_named() {
        good().check().unwrap();
        let i = broken(|s| s.endpoints[1].mac = s.endpoints[0].mac);
        assert!(
            i.record.contains("endpoint b") && i.problem.contains("MAC 02:42:0a:00:00:02"),
            "{i:?}"
        );
        let i = broken(|s| s.endpoints[1].addr = s.endpoints[0].addr);
        assert!(i.problem.contains("address 10.0.0.2"), "{i:?}");
        let i = broken(|s| s.endpoints[1].name = "a".into());
        assert!(i.problem.contains("same name"), "{i:?}");
        let i = broken(|s| s.networks[1].name = "one".into());
        assert!(i.record.contains("network one (id n2)"), "{i:?}");
        let i = broken(|s| s.sandboxes.push(s.sandboxes[0].clone()));
        assert!(i.record.contains("sandbox box"), "{i:?}");
        let i = broken(|s| s.endpoints[0].sandbox = Some("gone".into()));
        assert!(i.problem.contains("sandbox gone does not exist"), "{i:?}");
        let i = broken(|s| s.endpoints[0].network = "gone".into());
        assert!(i.problem.contains("network gone does not exist"), "{i:?}");
        let i = broken(|s| s.endpoints[0].addr = Some("10.9.9.9/24".parse().unwrap()));
        assert!(i.problem.contains("outside the network's subnet"), "{i:?}");
        let i = broken(|s| s.endpoints[2].host_ifname = "pxh1".into());
        assert!(i.problem.contains("host interface pxh1"), "{i:?}");
        let i = broken(|s| s.endpoints[2].id = "n1".into());
        assert!(i.problem.contains("id is used"), "{i:?}");
    }

    #[test]
    fn intents_round_trip_through_the_store_format() {
        let mut s = good();
        s.intents = vec![
            Intent::Join {
                sandbox: "box".into(),
                endpoint: "e1".into(),
                new_sandbox: true,
                new_endpoint: true,
            },
            Intent::CreateEndpoint {
                endpoint: Box::new(s.endpoints[0].clone()),
            },
        ];
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#""op":"join""#) && text.contains(r#""op":"create_endpoint""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
        // A state without intents (older files) still loads.
        let old = serde_json::to_string(&good()).unwrap();
        assert!(!old.contains("intents"));
        assert_eq!(serde_json::from_str::<State>(&old).unwrap(), good());
    }
}
