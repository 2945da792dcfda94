//! The `bridge` driver: one bridge domain of the Plexus userspace switch per
//! network, never a kernel bridge. The driver starts the switch
//! ([`Dataplane`]) and owns it. The network's gateway address lives in the
//! switch (it answers ARP and ping for it); no host interface carries it.
//!
//! Endpoint life cycle, veth (the default):
//! - create: a veth pair in the daemon's namespace. The host end (`host_ifname`)
//!   is brought up with IPv6 off (so the kernel sends nothing of its own into the
//!   network) and attached to the switch as an AF_PACKET port (or, with
//!   [`VethIo::AfXdp`], an AF_XDP port, falling back to AF_PACKET where the
//!   kernel refuses; the port's `io` in `plexus stats` says which); it has no address
//!   and no master. The container end (`peer_ifname`) gets the endpoint's MAC and
//!   the network's MTU.
//! - join: the container end moves into the sandbox's namespace, is renamed
//!   `ethN`, gets its address, comes up, and carries the default route if the
//!   controller says so.
//! - leave: the container end goes back to the daemon's namespace under
//!   `peer_ifname`, so a later join finds it again; the port stays attached.
//! - delete: the port is detached, then the veth pair deleted.
//!
//! TAP (`EndpointKind::Tap`): create makes a persistent TAP named `peer_ifname`
//! with virtio-net headers and TSO/checksum offload, sets its MAC and MTU, and
//! hands its fd to the switch; join and leave move the TAP device exactly as they
//! move a veth end (the fd keeps working across namespaces). Persistence lets a
//! restarted daemon re-attach by name; delete removes the link.
//!
//! Rootless (the daemon is an ordinary user): nothing is made in the daemon's
//! namespace. Join makes a TAP named `ethN` inside the sandbox (through a
//! helper that enters the sandbox's user namespace) and hands its fd to the
//! switch; leave detaches the port, whose closing fd removes the device.
//!
//! Decision: the two ways are two implementations of one trait (`Links`,
//! `HostLinks` and `SandboxTaps`) chosen once at [`BridgeDriver::start`];
//! the driver's calls read the same in both modes and never ask which it is.
//!
//! The driver's own state — which domain serves which network, which port which
//! endpoint — is rebuilt at start from the controller's records
//! ([`Driver::create_network`] and [`Driver::restore_endpoint`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ipnet::Ipv4Net;
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::{SandboxError, TeardownErrors, netns, sysfs, tap};
use plexus_switch::io::{PacketPort, Port, TapPort, XdpPort};
use plexus_switch::{
    Dataplane, DataplaneConfig, DataplaneError, DomainConfig, DomainId, DropReason, FdUse, GatewayConfig, Health,
    PortConfig, PortId,
};

use crate::{
    Driver, DriverError, EndpointKind, EndpointSpec, FdbRow, NatRow, NetworkNames, NetworkSpec, PortRow, SandboxSpec,
    SwitchView,
};
use plexus_switch::dns::{DnsNames, NameTable};

/// The userspace-switch bridge driver.
#[derive(Debug)]
pub struct BridgeDriver {
    dataplane: Dataplane,
    state: Mutex<State>,
    /// How endpoints' interfaces are made and moved, chosen once.
    links: Box<dyn Links>,
    /// Where veth host ends steer received frames (none when rootless).
    steering: Option<sysfs::CpuMask>,
    /// Whether the steering's outcome was logged (once per daemon).
    steering_logged: AtomicBool,
    /// How veth host ends are read and written.
    veth_io: VethIo,
    /// Whether the first AF_XDP outcome was logged (once per daemon).
    veth_io_logged: AtomicBool,
}

/// How the switch reads and writes veth host ends (`plexus daemon --veth-io`).
///
/// Decision: AF_PACKET by default. AF_XDP moves more small frames and more TCP
/// at 1500-byte frames through the switch, but a veth takes GSO away from its
/// peer while an XDP program is attached, so a container's TCP then runs at
/// MTU-sized frames: a sixth of what it gets with AF_PACKET's virtio-net
/// headers (docs/bench.md has the figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VethIo {
    /// AF_PACKET with a TPACKET_V2 receive ring and virtio-net headers.
    #[default]
    AfPacket,
    /// AF_XDP (an XDP program per host end), AF_PACKET where refused.
    AfXdp,
}

impl VethIo {
    /// The name on the command line and in `plexus info`.
    pub fn name(self) -> &'static str {
        match self {
            VethIo::AfPacket => "af_packet",
            VethIo::AfXdp => "af_xdp",
        }
    }
}

impl std::fmt::Display for VethIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for VethIo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "af_packet" | "packet" => Ok(VethIo::AfPacket),
            "af_xdp" | "xdp" => Ok(VethIo::AfXdp),
            _ => Err(format!("{s:?}: expected af_packet or af_xdp")),
        }
    }
}

/// What the switch attaches for an endpoint.
enum Attach {
    /// The veth host end, by name (an AF_PACKET or AF_XDP port).
    HostEnd,
    /// A TAP fd.
    Tap(OwnedFd),
}

/// How a bridge endpoint's interface is made, moved and restored — rootful
/// ([`HostLinks`]: in the daemon's namespace, moved into the sandbox at join)
/// or rootless ([`SandboxTaps`]: a TAP made inside the sandbox at join). Each
/// call that returns an [`Attach`] hands the driver the switch side to attach.
trait Links: Send + Sync + std::fmt::Debug {
    /// At create: the interfaces, and what to attach now (if anything yet).
    fn create(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<Option<Attach>, DriverError>;
    /// At delete (after the port is detached): the interfaces go.
    fn delete(&self, ep: &EndpointSpec) -> Result<(), DriverError>;
    /// At join: the interface into the sandbox, configured; what to attach now.
    fn join(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<Option<Attach>, DriverError>;
    /// At leave: the interface out of the sandbox; true if the port must be
    /// detached (the interface is gone).
    fn leave(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<bool, DriverError>;
    /// After a restart: what to attach again, and whether the interface was
    /// still there (else it was made anew outside any sandbox).
    fn restore(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: Option<&SandboxSpec>,
    ) -> Result<(Option<Attach>, bool), DriverError>;
}

#[derive(Debug, Default)]
struct State {
    /// network id → its bridge domain.
    domains: HashMap<String, DomainId>,
    /// endpoint id → its attached port.
    ports: HashMap<String, Attached>,
}

/// An endpoint's port in the switch.
#[derive(Debug, Clone)]
struct Attached {
    /// The network id.
    network: String,
    port: PortId,
    /// How the port reads and writes (`plexus stats`' `io`).
    io: String,
}

/// The calling thread's network namespace: the daemon's. Worker threads never
/// `setns`, so this is the namespace the veth host ends live in.
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

fn open_ns(path: &Path) -> Result<File, SandboxError> {
    File::open(path).map_err(|source| SandboxError::Netns {
        op: "open",
        name: path.display().to_string(),
        source,
    })
}

fn domain_config(net: &NetworkSpec) -> DomainConfig {
    DomainConfig {
        max_entries: net.switching.mac_table_size,
        ageing: Duration::from_secs(net.switching.mac_ageing_secs),
        anti_spoofing: net.switching.anti_spoofing,
        gateway: match (net.gateway, net.subnet) {
            (Some(ip), Some(subnet)) => Some(GatewayConfig {
                host_loopback: net.host_loopback,
                ..GatewayConfig::new(ip, subnet, net.internal)
            }),
            _ => None,
        },
    }
}

const TAP_OPTS: tap::TapOptions = tap::TapOptions {
    vnet_hdr: true,
    multi_queue: false,
};

/// Opens (or re-opens, by name) the endpoint's TAP in the calling thread's
/// namespace with offloads on.
fn open_tap(name: &str) -> Result<OwnedFd, SandboxError> {
    let fd = tap::create(name, TAP_OPTS)?;
    tap::set_persist(fd.as_fd(), true)?;
    tap::set_offload(
        fd.as_fd(),
        tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6 | tap::TUN_F_TSO_ECN,
    )?;
    Ok(fd)
}

/// Best effort: a host end that speaks IPv6 would send router solicitations and
/// the like into the network on its own.
fn disable_ipv6(ifname: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"), "1");
}

/// Gives a sandbox's interface its MTU and address, brings it up and, for the
/// endpoint that carries it, adds the default route through the gateway.
fn configure_link(
    nl: &mut Netlink,
    index: u32,
    net: &NetworkSpec,
    ep: &EndpointSpec,
    sb: &SandboxSpec,
) -> Result<(), SandboxError> {
    nl.set_mtu(index, net.mtu)?;
    if let Some(addr) = ep.addr {
        nl.add_address(index, addr)?;
    }
    nl.set_up(index, true)?;
    if let (Some(gw), true, false) = (net.gateway, sb.default_route, net.internal) {
        nl.add_default_route(gw, index)?;
    }
    Ok(())
}

impl BridgeDriver {
    /// Starts the driver's switch (`config`); `rootless`: endpoints are TAP
    /// devices made inside the sandboxes at join, nothing in the daemon's
    /// namespace; `steering`: where veth host ends steer received frames
    /// (resolved now; a failure is logged and leaves steering off).
    pub fn start(
        config: DataplaneConfig,
        rootless: bool,
        steering: &sysfs::RxSteering,
        veth_io: VethIo,
    ) -> Result<BridgeDriver, DriverError> {
        let steering = if rootless {
            None
        } else {
            steering.resolve().unwrap_or_else(|e| {
                log::warn!("no receive steering on veth host ends: {e}");
                None
            })
        };
        let links: Box<dyn Links> = if rootless {
            Box::new(SandboxTaps)
        } else {
            Box::new(HostLinks)
        };
        Ok(BridgeDriver {
            dataplane: Dataplane::start(config)?,
            state: Mutex::new(State::default()),
            links,
            steering,
            steering_logged: AtomicBool::new(false),
            veth_io,
            veth_io_logged: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn domain(&self, network_id: &str) -> Result<DomainId, DriverError> {
        self.state()
            .domains
            .get(network_id)
            .copied()
            .ok_or_else(|| DriverError::Unknown {
                driver: "bridge",
                what: "network",
                id: network_id.to_owned(),
            })
    }

    fn port_config(&self, net: &NetworkSpec, ep: &EndpointSpec, offload: bool) -> Result<PortConfig, DriverError> {
        Ok(PortConfig {
            domain: self.domain(&net.id)?,
            name: ep.name.clone(),
            mtu: net.mtu,
            mac: ep.mac,
            ips: ep
                .addr
                .map(|a| Ipv4Net::from(a.addr()))
                .into_iter()
                .chain(ep.allowed.iter().copied())
                .collect(),
            offload,
        })
    }

    /// Attaches the endpoint's switch side: the veth host end, or a TAP fd.
    fn attach(&self, net: &NetworkSpec, ep: &EndpointSpec, what: Attach) -> Result<(), DriverError> {
        let (port, io): (Box<dyn Port>, String) = match what {
            Attach::Tap(fd) => (Box::new(TapPort::new(fd, true)), "tap".to_owned()),
            Attach::HostEnd => {
                self.steer(&ep.host_ifname);
                self.open_host_end(&ep.host_ifname, net.mtu)?
            }
        };
        let cfg = self.port_config(net, ep, port.offload())?;
        let id = self.dataplane.add_port(port, cfg)?;
        let mut state = self.state();
        let attached = Attached {
            network: net.id.clone(),
            port: id,
            io,
        };
        state.ports.insert(ep.id.clone(), attached);
        drop(state);
        if let Err(e) = self.publish_on(id, ep) {
            let _ = self.detach(ep);
            return Err(e);
        }
        Ok(())
    }

    /// Opens the port on a veth host end as `--veth-io` says: AF_XDP if asked
    /// and the kernel lets us (root, BPF links), else AF_PACKET. Returns the
    /// port and how it reads and writes; the first AF_XDP outcome is logged.
    fn open_host_end(&self, ifname: &str, mtu: u32) -> Result<(Box<dyn Port>, String), DriverError> {
        let mut refused = None;
        if self.veth_io == VethIo::AfXdp {
            let first = !self.veth_io_logged.swap(true, Ordering::Relaxed);
            match XdpPort::open(ifname, mtu) {
                Ok(port) => {
                    let io = format!("af_xdp ({})", port.summary());
                    if first {
                        log::info!("veth host ends are AF_XDP ports: {ifname} {io}");
                    }
                    return Ok((Box::new(port), io));
                }
                Err(e) => {
                    if first {
                        log::warn!("AF_XDP refused on {ifname}, AF_PACKET instead: {e}");
                    }
                    refused = Some(e);
                }
            }
        }
        let port = PacketPort::open(ifname, true).map_err(|source| DriverError::Port {
            ifname: ifname.to_owned(),
            source,
        })?;
        let io = match refused {
            None => "af_packet".to_owned(),
            Some(e) => format!("af_packet (af_xdp refused: {e})"),
        };
        Ok((Box::new(port), io))
    }

    /// Steers the frames a veth host end receives to the `--rx-steering` CPUs,
    /// one per flow (see [`sysfs`]). A failure is logged (once) and the port
    /// works without.
    fn steer(&self, ifname: &str) {
        let Some(cpus) = &self.steering else {
            return;
        };
        let r = sysfs::set_rps(ifname, cpus);
        if !self.steering_logged.swap(true, Ordering::Relaxed) {
            match r {
                Ok(_) => log::info!("veth host ends steer received frames to CPUs {cpus} (RPS, --rx-steering)"),
                Err(e) => log::warn!("veth host ends without the receive steering asked for ({e})"),
            }
        }
    }

    /// Binds `ep.publish`'s host sockets for the endpoint behind `port`.
    fn publish_on(&self, port: PortId, ep: &EndpointSpec) -> Result<(), DriverError> {
        let (false, Some(addr)) = (ep.publish.is_empty(), ep.addr) else {
            return Ok(());
        };
        self.dataplane
            .publish(port, ep.publish.clone(), addr.addr())
            .map_err(|e| match e {
                DataplaneError::Bind { host, proto, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
                    DriverError::PortInUse { host, proto }
                }
                e => e.into(),
            })
    }

    /// The switch port of endpoint `ep`.
    fn port_of(&self, ep: &EndpointSpec) -> Result<PortId, DriverError> {
        self.state()
            .ports
            .get(&ep.id)
            .map(|a| a.port)
            .ok_or_else(|| DriverError::Unknown {
                driver: "bridge",
                what: "endpoint port",
                id: ep.id.clone(),
            })
    }

    /// port → (endpoint id, its port), for naming the dataplane's rows.
    fn endpoints_by_port(&self) -> HashMap<PortId, (String, Attached)> {
        self.state()
            .ports
            .iter()
            .map(|(ep, a)| (a.port, (ep.clone(), a.clone())))
            .collect()
    }

    fn detach(&self, ep: &EndpointSpec) -> Result<(), DriverError> {
        let port = self.state().ports.remove(&ep.id);
        if let Some(a) = port {
            self.dataplane.remove_port(a.port)?;
        }
        Ok(())
    }
}

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn create_network(&self, net: &NetworkSpec) -> Result<(), DriverError> {
        let id = self.dataplane.add_domain(domain_config(net))?;
        self.state().domains.insert(net.id.clone(), id);
        Ok(())
    }

    fn delete_network(&self, net: &NetworkSpec) -> Result<(), DriverError> {
        let id = self.state().domains.remove(&net.id);
        if let Some(id) = id {
            self.dataplane.remove_domain(id)?;
        }
        Ok(())
    }

    fn create_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        if let Some(what) = self.links.create(net, ep)?
            && let Err(e) = self.attach(net, ep, what)
        {
            let _ = self.links.delete(ep);
            return Err(e);
        }
        Ok(())
    }

    fn delete_endpoint(&self, _net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let detached = self.detach(ep);
        self.links.delete(ep)?;
        detached
    }

    fn join(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<(), DriverError> {
        match self.links.join(net, ep, sb)? {
            // On failure the TAP fd closes and the device goes with it.
            Some(what) => self.attach(net, ep, what),
            None => Ok(()),
        }
    }

    fn leave(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<(), DriverError> {
        if self.links.leave(net, ep, sb)? {
            self.detach(ep)?;
        }
        Ok(())
    }

    fn restore_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: Option<&SandboxSpec>,
    ) -> Result<bool, DriverError> {
        let (what, present) = self.links.restore(net, ep, sb)?;
        if let Some(what) = what {
            self.attach(net, ep, what)?;
        }
        Ok(present)
    }

    fn publish(&self, _net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        self.publish_on(self.port_of(ep)?, ep)
    }

    fn unpublish(&self, ep: &EndpointSpec) -> Result<(), DriverError> {
        match self.port_of(ep) {
            Ok(port) => self.dataplane.unpublish(port).map(drop).map_err(Into::into),
            // No port (a rootless endpoint outside a sandbox): nothing listens.
            Err(_) => Ok(()),
        }
    }

    fn set_names(&self, names: &[NetworkNames], scopes: &[(String, Vec<String>)]) -> Result<(), DriverError> {
        let (tables, ports) = {
            let st = self.state();
            let tables = names
                .iter()
                .filter_map(|n| {
                    let d = *st.domains.get(&n.network_id)?;
                    let table = NameTable::new(n.records.iter().map(|(name, ip)| (name.as_str(), *ip)));
                    Some((d, std::sync::Arc::new(table)))
                })
                .collect();
            let ports = scopes
                .iter()
                .filter_map(|(ep, nets)| {
                    let port = st.ports.get(ep)?.port;
                    let domains = nets.iter().filter_map(|n| st.domains.get(n).copied()).collect();
                    Some((port, domains))
                })
                .collect();
            (tables, ports)
        };
        self.dataplane.set_names(DnsNames { tables, scopes: ports })?;
        Ok(())
    }

    fn switch(&self) -> Option<&dyn SwitchView> {
        Some(self)
    }
}

/// Rootful endpoints: a veth pair (or a persistent TAP) in the daemon's
/// namespace, whose container side moves into the sandbox at join and back at
/// leave; the switch side stays attached from create to delete.
#[derive(Debug)]
struct HostLinks;

impl HostLinks {
    /// Makes the endpoint's interfaces in the daemon's namespace, down.
    fn make_links(nl: &mut Netlink, net: &NetworkSpec, ep: &EndpointSpec) -> Result<Option<OwnedFd>, SandboxError> {
        match ep.kind {
            EndpointKind::Veth => {
                nl.create_veth(&ep.host_ifname, &ep.peer_ifname, Some(net.mtu))?;
                let host = nl.link(&ep.host_ifname)?;
                disable_ipv6(&ep.host_ifname);
                nl.set_up(host.index, true)?;
                Self::configure_peer(nl, net, ep)?;
                Ok(None)
            }
            EndpointKind::Tap => {
                let fd = open_tap(&ep.peer_ifname)?;
                Self::configure_peer(nl, net, ep)?;
                Ok(Some(fd))
            }
        }
    }

    fn configure_peer(nl: &mut Netlink, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), SandboxError> {
        let peer = nl.link(&ep.peer_ifname)?;
        if let Some(mac) = ep.mac {
            nl.set_mac(peer.index, mac.octets())?;
        }
        nl.set_mtu(peer.index, net.mtu)
    }

    /// Deletes the endpoint's links wherever they are in the daemon's namespace;
    /// "already gone" counts as done.
    fn delete_links(nl: &mut Netlink, ep: &EndpointSpec) -> Result<(), TeardownErrors> {
        let mut errs = TeardownErrors::default();
        for name in [&ep.host_ifname, &ep.peer_ifname] {
            match nl.link(name) {
                Ok(link) => {
                    errs.push(nl.delete_link(link.index));
                }
                Err(SandboxError::NoSuchLink(_)) => {}
                Err(e) => errs.0.push(e),
            }
        }
        errs.into_result()
    }
}

impl Links for HostLinks {
    fn create(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<Option<Attach>, DriverError> {
        let mut nl = Netlink::open()?;
        match Self::make_links(&mut nl, net, ep) {
            Ok(fd) => Ok(Some(fd.map_or(Attach::HostEnd, Attach::Tap))),
            Err(e) => {
                let _ = Self::delete_links(&mut nl, ep);
                Err(e.into())
            }
        }
    }

    fn delete(&self, ep: &EndpointSpec) -> Result<(), DriverError> {
        let mut nl = Netlink::open()?;
        Ok(Self::delete_links(&mut nl, ep)?)
    }

    fn join(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<Option<Attach>, DriverError> {
        let key = sandbox_key(sb)?;
        let mut host_nl = Netlink::open()?;
        let peer = host_nl.link(&ep.peer_ifname)?;
        let ns = open_ns(key)?;
        host_nl.set_netns(peer.index, ns.as_fd())?;
        let configure = || -> Result<(), SandboxError> {
            let mut nl = Netlink::open_in(key)?;
            let link = nl.link(&ep.peer_ifname)?;
            nl.set_name(link.index, &sb.ifname)?;
            configure_link(&mut nl, link.index, net, ep, sb)
        };
        if let Err(e) = configure() {
            // Put the interface back where create left it, so the endpoint stays usable.
            let _ = self.leave(net, ep, sb);
            return Err(e.into());
        }
        Ok(None)
    }

    fn leave(&self, _net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<bool, DriverError> {
        let key = sandbox_key(sb)?;
        let mut nl = Netlink::open_in(key)?;
        // The interface carries its ethN name after a join, or still its peer name
        // if the join failed half-way.
        let link = match nl.link(&sb.ifname) {
            Ok(l) => l,
            Err(SandboxError::NoSuchLink(_)) => nl.link(&ep.peer_ifname)?,
            Err(e) => return Err(e.into()),
        };
        nl.set_up(link.index, false)?;
        if link.name != ep.peer_ifname {
            nl.set_name(link.index, &ep.peer_ifname)?;
        }
        let own = open_ns(Path::new(OWN_NETNS))?;
        nl.set_netns(link.index, own.as_fd())?;
        Ok(false)
    }

    fn restore(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: Option<&SandboxSpec>,
    ) -> Result<(Option<Attach>, bool), DriverError> {
        let mut nl = Netlink::open()?;
        let joined_key = sb.and_then(|s| s.key.as_deref().map(|k| (k, s.ifname.as_str())));
        let present = match (ep.kind, joined_key) {
            (EndpointKind::Veth, _) => nl.link(&ep.host_ifname).is_ok(),
            (EndpointKind::Tap, None) => nl.link(&ep.peer_ifname).is_ok(),
            (EndpointKind::Tap, Some((key, ifname))) => {
                netns::is_nsfs(key) && Netlink::open_in(key).and_then(|mut n| n.link(ifname)).is_ok()
            }
        };
        if !present {
            // The kernel lost it (a reboot, a deleted namespace): make it anew,
            // outside any sandbox.
            let _ = Self::delete_links(&mut nl, ep);
            return Ok((self.create(net, ep)?, false));
        }
        let what = match (ep.kind, joined_key) {
            (EndpointKind::Veth, _) => Attach::HostEnd,
            (EndpointKind::Tap, None) => Attach::Tap(open_tap(&ep.peer_ifname)?),
            (EndpointKind::Tap, Some((key, ifname))) => Attach::Tap(netns::run_in(key, || open_tap(ifname))??),
        };
        Ok((Some(what), true))
    }
}

/// Rootless endpoints: no link in the daemon's namespace; each endpoint is a
/// TAP made inside its sandbox at join (the fd passed back) and gone at leave,
/// when the port's fd closes.
#[derive(Debug)]
struct SandboxTaps;

impl SandboxTaps {
    /// A TAP made inside the sandbox (the user namespace's owner configures it
    /// through a netlink socket of that namespace).
    fn make(net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<Option<Attach>, DriverError> {
        let (key, Some(userns)) = (sandbox_key(sb)?, sb.userns.as_deref()) else {
            return Err(DriverError::Unsupported {
                driver: "bridge",
                reason: "a rootless endpoint joins only a sandbox of the daemon's user namespace".into(),
            });
        };
        let (tap, nl) = plexus_sandbox::userns::open_tap(userns, key, &sb.ifname)?;
        let mut nl = Netlink::from_fd(nl)?;
        let link = nl.link(&sb.ifname)?;
        if let Some(mac) = ep.mac {
            nl.set_mac(link.index, mac.0)?;
        }
        configure_link(&mut nl, link.index, net, ep, sb)?;
        Ok(Some(Attach::Tap(tap)))
    }
}

impl Links for SandboxTaps {
    fn create(&self, _: &NetworkSpec, _: &EndpointSpec) -> Result<Option<Attach>, DriverError> {
        // The TAP is made inside the sandbox at join.
        Ok(None)
    }

    fn delete(&self, _: &EndpointSpec) -> Result<(), DriverError> {
        Ok(())
    }

    fn join(&self, net: &NetworkSpec, ep: &EndpointSpec, sb: &SandboxSpec) -> Result<Option<Attach>, DriverError> {
        Self::make(net, ep, sb)
    }

    fn leave(&self, _: &NetworkSpec, _: &EndpointSpec, _: &SandboxSpec) -> Result<bool, DriverError> {
        // Closing the TAP's fd (the port's) removes the device.
        Ok(true)
    }

    fn restore(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: Option<&SandboxSpec>,
    ) -> Result<(Option<Attach>, bool), DriverError> {
        // The TAP went with the previous daemon's fd: make it again, same
        // name, addresses and MAC, in the sandbox that still exists.
        match sb {
            Some(sb) => Ok((Self::make(net, ep, sb)?, true)),
            None => Ok((None, true)),
        }
    }
}

fn sandbox_key(sb: &SandboxSpec) -> Result<&Path, DriverError> {
    sb.key.as_deref().ok_or_else(|| DriverError::Unsupported {
        driver: "bridge",
        reason: "a bridge endpoint cannot join a host-mode sandbox".into(),
    })
}

impl SwitchView for BridgeDriver {
    fn fdb(&self, network_id: &str) -> Result<Vec<FdbRow>, DriverError> {
        let domain = self.domain(network_id)?;
        let by_port = self.endpoints_by_port();
        let mut rows: Vec<FdbRow> = self
            .dataplane
            .fdb(domain)?
            .into_iter()
            .map(|e| FdbRow {
                mac: e.mac,
                endpoint: by_port.get(&e.port).map(|(ep, _)| ep.clone()).unwrap_or_default(),
                age_secs: e.age.as_secs_f64(),
            })
            .collect();
        rows.sort_by_key(|r| r.mac);
        Ok(rows)
    }

    fn fdb_len(&self, network_id: &str) -> Result<usize, DriverError> {
        Ok(self.dataplane.fdb_len(self.domain(network_id)?)?)
    }

    fn ports(&self) -> Result<Vec<PortRow>, DriverError> {
        let by_port = self.endpoints_by_port();
        Ok(self
            .dataplane
            .stats()?
            .into_iter()
            .filter_map(|s| {
                let (endpoint, a) = by_port.get(&s.id)?.clone();
                let c = s.counters;
                Some(PortRow {
                    endpoint,
                    network: a.network,
                    io: a.io,
                    rx_frames: c.rx_frames,
                    rx_bytes: c.rx_bytes,
                    tx_frames: c.tx_frames,
                    tx_bytes: c.tx_bytes,
                    tx_coalesced: c.tx_coalesced,
                    learn_table_full: c.learn_table_full,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_owned(), c.dropped(*r)))
                        .collect(),
                })
            })
            .collect())
    }

    fn fd_use(&self) -> Result<FdUse, DriverError> {
        Ok(self.dataplane.fd_use()?)
    }

    fn health(&self) -> Health {
        self.dataplane.health()
    }

    fn explain(&self, endpoint: &str, frame: Vec<u8>) -> Result<Vec<String>, DriverError> {
        let port = self
            .state()
            .ports
            .get(endpoint)
            .map(|a| a.port)
            .ok_or_else(|| DriverError::Unknown {
                driver: "bridge",
                what: "endpoint port",
                id: endpoint.to_owned(),
            })?;
        // The switch names ports by their endpoints' names.
        Ok(self.dataplane.explain(port, frame)?)
    }

    fn capture(
        &self,
        endpoints: &[String],
        queue: usize,
        snaplen: u32,
        decisions: bool,
    ) -> Result<plexus_switch::dataplane::capture::Capture, DriverError> {
        let ports: Vec<PortId> = {
            let st = self.state();
            endpoints
                .iter()
                .filter_map(|e| st.ports.get(e).map(|a| a.port))
                .collect()
        };
        if decisions {
            return Ok(self.dataplane.trace(ports, queue)?);
        }
        Ok(self.dataplane.capture(ports, queue, snaplen)?)
    }

    fn dns_stats(&self) -> Result<plexus_switch::dns::DnsStats, DriverError> {
        Ok(self.dataplane.dns_stats()?)
    }

    fn nat(&self) -> Result<Vec<NatRow>, DriverError> {
        let by_port = self.endpoints_by_port();
        Ok(self
            .dataplane
            .nat()?
            .into_iter()
            .map(|f| NatRow {
                proto: f.flow.key.proto,
                state: f.flow.tcp,
                inside: f.flow.key.inside,
                outside: f.flow.key.outside,
                endpoint: by_port
                    .get(&f.flow.path.port)
                    .map(|(e, _)| e.clone())
                    .unwrap_or_default(),
                packets_out: f.flow.packets_out,
                packets_in: f.flow.packets_in,
                idle_secs: f.idle.as_secs_f64(),
            })
            .collect())
    }
}
