//! The controller: the entry point of the CNM model.
//!
//! It owns the drivers, IPAM, the store and the records of networks, endpoints
//! and sandboxes. Every operation takes one lock over that state, checks the
//! model's rules, performs the kernel work through the driver, and commits the
//! store; if a step fails, the steps before it are undone, so an operation either
//! happens whole or leaves nothing behind.
//!
//! Handles ([`Network`], [`Endpoint`], [`Sandbox`]) are a controller plus an id;
//! they stay cheap to clone and re-check existence on every call.
//!
//! Crashes: a change of several steps whose process may die half-way —
//! creating an endpoint (kernel objects, then the record), `run` (endpoint,
//! sandbox, join) and a join that creates its sandbox — is recorded as an
//! [`Intent`] in the store before its first step and removed with its last.
//! A controller that finds intents at start finishes the ones whose last
//! step happened and undoes the others with the ordinary delete operations,
//! so a retry works and nothing holds an address or a host port. The state
//! is checked when loaded ([`State::check`]): one that cannot be true is
//! refused, naming the record, and left as it is.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;
use plexus_drivers::{Driver, EndpointSpec, NetworkSpec, SandboxSpec, SwitchView, Switching};
use plexus_sandbox::files::{self, HostsEntry};
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::userns::Holder;
use plexus_sandbox::{SandboxError, netns};
use plexus_switch::{Dataplane, DataplaneConfig, MacAddr, NatProto, PublishSpec};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::{Ipam, PoolRequest};
use crate::mode::Mode;
use crate::model::{
    EndpointInfo, EndpointRecord, FdbInfo, Intent, NatInfo, NetworkInfo, NetworkRecord, PortInfo, SandboxInfo,
    SandboxRecord, State,
};
use crate::options::{DriverOptions, EndpointOptions, JoinOptions, NetworkOptions, SandboxOptions};
use crate::publish::{Binding, PortAllocator, PortMapping, Protocol, PublishError, os_port_free};
use crate::store::Store;

/// The CNM controller. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct Controller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// The switch the bridge driver runs on (for what belongs to the whole
    /// dataplane, such as its descriptor budget).
    dataplane: Dataplane,
    drivers: BTreeMap<&'static str, Arc<dyn Driver>>,
    core: Mutex<Core>,
}

#[derive(Debug)]
struct Core {
    state: State,
    ipam: Ipam,
    /// Host ports held by published endpoints (derived from the records).
    ports: PortAllocator,
    store: Store,
    driver_options: BTreeMap<String, DriverOptions>,
    /// Rootless: the process owning the sandboxes' user namespace (started at
    /// the first sandbox).
    holder: Option<Holder>,
    /// What the start finished or undid of changes left half done.
    recovered: Vec<String>,
}

/// A network handle.
#[derive(Clone, Debug)]
pub struct Network {
    ctrl: Controller,
    id: String,
}

/// An endpoint handle.
#[derive(Clone, Debug)]
pub struct Endpoint {
    ctrl: Controller,
    id: String,
}

/// A sandbox handle.
#[derive(Clone, Debug)]
pub struct Sandbox {
    ctrl: Controller,
    id: String,
}

fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Controller {
    /// Opens the state directory (locking it), restores what it holds, and loads
    /// the built-in drivers (`bridge`, `host`, `null`).
    pub fn new(config: Config) -> Result<Controller> {
        if config.ifname_prefix.is_empty()
            || config.ifname_prefix.len() > 8
            || !plexus_sandbox::netlink::valid_link_name(&config.ifname_prefix)
        {
            return Err(Error::InvalidOption(format!(
                "interface prefix {:?} must be 1-8 characters valid in an interface name",
                config.ifname_prefix
            )));
        }
        let mut store = Store::open_waiting(&config.state_dir, config.lock_wait)?;
        let state: State = store.load()?.unwrap_or_default();
        if let Err(bad) = state.check() {
            return Err(store.inconsistent(bad.record, bad.problem).into());
        }
        let (ipam, ports) = state.derive()?;
        let dataplane = Dataplane::start(DataplaneConfig {
            busy_poll: config.busy_poll,
            nat: config.nat,
        })
        .map_err(|e| Error::Driver(e.into()))?;
        let drivers = plexus_drivers::builtin(dataplane.clone(), config.mode == Mode::Rootless)
            .into_iter()
            .map(|d| (d.name(), d))
            .collect();
        let core = Core {
            state,
            ipam,
            ports,
            store,
            driver_options: BTreeMap::new(),
            holder: None,
            recovered: Vec::new(),
        };
        let ctrl = Controller {
            inner: Arc::new(Inner {
                config,
                dataplane,
                drivers,
                core: Mutex::new(core),
            }),
        };
        ctrl.reconcile();
        ctrl.restore_dataplane()?;
        ctrl.recover();
        Ok(ctrl)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave the records half-updated in a
        // way later calls could not handle (each operation commits at its end), so
        // a poisoned lock is taken over.
        self.inner.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn driver(&self, name: &str) -> Result<Arc<dyn Driver>> {
        self.inner
            .drivers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownDriver(name.to_owned()))
    }

    /// Names of the built-in drivers.
    pub fn drivers(&self) -> Vec<&'static str> {
        self.inner.drivers.keys().copied().collect()
    }

    /// Sets driver-wide options. Unknown driver names are refused.
    pub fn configure_driver(&self, driver: &str, options: DriverOptions) -> Result<()> {
        self.driver(driver)?;
        self.lock().driver_options.insert(driver.to_owned(), options);
        Ok(())
    }

    /// Creates a network owned by `driver`.
    pub fn new_network(&self, driver: &str, name: &str, opts: NetworkOptions) -> Result<Network> {
        validate_name("network", name)?;
        let drv = self.driver(driver)?;
        let mtu = opts.mtu.unwrap_or(self.inner.config.default_mtu);
        if !(68..=65535).contains(&mtu) {
            return Err(Error::InvalidOption(format!("MTU {mtu} is outside 68..=65535")));
        }
        let defaults = Switching::default();
        let switching = Switching {
            mac_ageing_secs: opts.mac_ageing_secs.unwrap_or(defaults.mac_ageing_secs),
            mac_table_size: opts.mac_table_size.unwrap_or(defaults.mac_table_size),
            anti_spoofing: !opts.no_anti_spoofing,
        };
        if !(1..=1_000_000).contains(&switching.mac_ageing_secs) {
            return Err(Error::InvalidOption(format!(
                "MAC ageing {} s is outside 1..=1000000",
                switching.mac_ageing_secs
            )));
        }
        if !(1..=1 << 20).contains(&switching.mac_table_size) {
            return Err(Error::InvalidOption(format!(
                "MAC table size {} is outside 1..=1048576",
                switching.mac_table_size
            )));
        }
        let mut core = self.lock();
        if core.state.networks.iter().any(|n| n.name == name) {
            return Err(Error::NetworkExists(name.to_owned()));
        }
        if drv.host_mode()
            && let Some(n) = core.state.networks.iter().find(|n| n.driver == driver)
        {
            return Err(Error::HostNetworkExists(n.name.clone()));
        }
        let mut rec = NetworkRecord {
            id: new_id(),
            name: name.to_owned(),
            driver: driver.to_owned(),
            subnet: None,
            ip_range: None,
            gateway: None,
            user_subnet: opts.subnet.is_some(),
            internal: opts.internal,
            host_loopback: opts.host_loopback.unwrap_or(false),
            mtu,
            switching,
        };
        if drv.uses_ipam() {
            core.ipam.set_host_routes(host_routes()?);
            let pool = core.ipam.request_pool(&PoolRequest {
                subnet: opts.subnet,
                ip_range: opts.ip_range,
                gateway: opts.gateway,
            })?;
            rec.subnet = Some(pool.subnet);
            rec.ip_range = Some(pool.ip_range);
            rec.gateway = Some(pool.gateway);
        } else if opts.subnet.is_some() || opts.ip_range.is_some() || opts.gateway.is_some() {
            return Err(Error::InvalidOption(format!(
                "driver {driver} takes no subnet, ip-range or gateway"
            )));
        }
        let spec = network_spec(&rec);
        let undo_pool = |core: &mut Core| {
            if let Some(s) = rec.subnet {
                let _ = core.ipam.release_pool(s);
            }
        };
        if let Err(e) = drv.create_network(&spec) {
            undo_pool(&mut core);
            return Err(e.into());
        }
        core.state.networks.push(rec.clone());
        if let Err(e) = core.commit() {
            core.state.networks.pop();
            let _ = drv.delete_network(&spec);
            undo_pool(&mut core);
            return Err(e);
        }
        Ok(Network {
            ctrl: self.clone(),
            id: rec.id,
        })
    }

    /// A network by name or id.
    pub fn network(&self, name_or_id: &str) -> Result<Network> {
        let core = self.lock();
        let rec = core.network(name_or_id)?;
        Ok(Network {
            ctrl: self.clone(),
            id: rec.id.clone(),
        })
    }

    /// All networks, in creation order.
    pub fn networks(&self) -> Vec<Network> {
        let core = self.lock();
        core.state
            .networks
            .iter()
            .map(|n| Network {
                ctrl: self.clone(),
                id: n.id.clone(),
            })
            .collect()
    }

    /// Creates a sandbox: a named network namespace (`ip netns list` shows it) with
    /// `lo` up, and its hosts and resolv.conf files.
    pub fn new_sandbox(&self, name: &str, opts: SandboxOptions) -> Result<Sandbox> {
        validate_name("sandbox", name)?;
        let mut core = self.lock();
        let id = self.create_sandbox(&mut core, name, &opts)?;
        Ok(Sandbox { ctrl: self.clone(), id })
    }

    fn create_sandbox(&self, core: &mut Core, name: &str, opts: &SandboxOptions) -> Result<String> {
        if core.state.sandboxes.iter().any(|s| s.name == name) {
            return Err(Error::SandboxExists(name.to_owned()));
        }
        let rec = SandboxRecord {
            id: new_id(),
            name: name.to_owned(),
            netns: (!opts.host_mode).then(|| format!("{}{}", self.inner.config.netns_prefix, name)),
            hostname: opts.hostname.clone().unwrap_or_else(|| name.to_owned()),
            domainname: opts.domainname.clone(),
        };
        if let Some(ns) = &rec.netns {
            self.make_netns(core, ns)?;
        }
        core.state.sandboxes.push(rec.clone());
        let done = self.write_sandbox_files(core, &rec.id).and_then(|()| core.commit());
        if let Err(e) = done {
            core.state.sandboxes.pop();
            let _ = std::fs::remove_dir_all(self.sandbox_dir(&rec.id));
            if let Some(ns) = &rec.netns {
                let _ = self.remove_netns(core, ns);
            }
            return Err(e);
        }
        Ok(rec.id)
    }

    /// Makes the network namespace `ns` of a sandbox, with `lo` up: a named
    /// namespace (rootful), or one inside the daemon's user namespace
    /// (rootless).
    fn make_netns(&self, core: &mut Core, ns: &str) -> Result<()> {
        if self.inner.config.mode == Mode::Rootless {
            let holder = self.holder(core)?;
            return Ok(holder.create_netns(&self.rootless_netns_file(ns))?);
        }
        let handle = netns::create(ns)?;
        let lo_up = Netlink::open_in(handle.path()).and_then(|mut nl| {
            let lo = nl.link("lo")?;
            nl.set_up(lo.index, true)
        });
        if let Err(e) = lo_up {
            let _ = netns::delete(ns);
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes the network namespace `ns` of a sandbox.
    fn remove_netns(&self, core: &mut Core, ns: &str) -> std::result::Result<(), SandboxError> {
        if self.inner.config.mode == Mode::Rootless {
            let Some(holder) = Holder::read(&self.holder_file()) else {
                // No holder: its namespaces died with it; only the file is left.
                let _ = std::fs::remove_file(self.rootless_netns_file(ns));
                return Err(SandboxError::NoSuchNetns(ns.to_owned()));
            };
            core.holder = Some(holder);
            return holder.delete_netns(&self.rootless_netns_file(ns));
        }
        netns::delete(ns)
    }

    /// Whether the network namespace `ns` of a sandbox exists.
    fn netns_exists(&self, ns: &str) -> bool {
        if self.inner.config.mode == Mode::Rootless {
            return Holder::read(&self.holder_file()).is_some_and(|h| h.netns_exists(&self.rootless_netns_file(ns)));
        }
        netns::exists(ns)
    }

    /// The sandbox key of namespace `ns`: its path as the host sees it (for
    /// a rootless one, through the holder's mount namespace), and the user
    /// namespace to join first (rootless).
    fn netns_key(&self, ns: &str) -> (PathBuf, Option<PathBuf>) {
        if self.inner.config.mode == Mode::Rootless {
            let file = self.rootless_netns_file(ns);
            return match Holder::read(&self.holder_file()) {
                Some(h) => (
                    h.visible(&file),
                    Some(PathBuf::from(format!("/proc/{}/ns/user", h.pid()))),
                ),
                None => (file, None),
            };
        }
        (netns_path(ns), None)
    }

    /// The running holder of the rootless namespaces, started if there is none.
    fn holder(&self, core: &mut Core) -> Result<Holder> {
        let file = self.holder_file();
        if let Some(h) = core.holder.filter(|h| Holder::read(&file) == Some(*h)) {
            return Ok(h);
        }
        let h = Holder::start(&file)?;
        core.holder = Some(h);
        Ok(h)
    }

    /// Rootless: ends the process that keeps this controller's user namespace,
    /// and with it every sandbox still there. For a controller that must leave
    /// nothing behind (`plexus demo`); a daemon keeps it, so its sandboxes
    /// survive a restart. Nothing to do rootful or without a holder.
    pub fn stop_rootless_holder(&self) -> Result<()> {
        let mut core = self.lock();
        core.holder = None;
        match Holder::read(&self.holder_file()) {
            Some(h) => {
                h.stop()?;
                let _ = std::fs::remove_file(self.holder_file());
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn holder_file(&self) -> PathBuf {
        self.inner.config.state_dir.join("userns.pid")
    }

    fn rootless_netns_file(&self, ns: &str) -> PathBuf {
        self.inner.config.state_dir.join("netns").join(ns)
    }

    /// A sandbox by name (container id) or id.
    pub fn sandbox(&self, name_or_id: &str) -> Result<Sandbox> {
        let core = self.lock();
        let rec = core.sandbox(name_or_id)?;
        Ok(Sandbox {
            ctrl: self.clone(),
            id: rec.id.clone(),
        })
    }

    /// All sandboxes, in creation order.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        let core = self.lock();
        core.state
            .sandboxes
            .iter()
            .map(|s| Sandbox {
                ctrl: self.clone(),
                id: s.id.clone(),
            })
            .collect()
    }

    /// An endpoint by id, or by name when the name is unique across networks.
    pub fn endpoint(&self, name_or_id: &str) -> Result<Endpoint> {
        let core = self.lock();
        let rec = core.endpoint_any(name_or_id)?;
        Ok(Endpoint {
            ctrl: self.clone(),
            id: rec.id.clone(),
        })
    }

    /// All endpoints of all networks, in creation order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let core = self.lock();
        core.state
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ctrl: self.clone(),
                id: e.id.clone(),
            })
            .collect()
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.inner.config.state_dir.join("sandboxes").join(id)
    }

    fn write_sandbox_files(&self, core: &Core, sandbox_id: &str) -> Result<()> {
        let sb = core.sandbox_by_id(sandbox_id)?;
        let dir = self.sandbox_dir(sandbox_id);
        let names = match &sb.domainname {
            Some(d) => vec![format!("{}.{}", sb.hostname, d), sb.hostname.clone()],
            None => vec![sb.hostname.clone()],
        };
        let entries: Vec<HostsEntry> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .filter_map(|e| e.addr)
            .map(|a| HostsEntry {
                addr: a.addr(),
                names: names.clone(),
            })
            .collect();
        files::write_hosts(&dir.join("hosts"), &entries)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        files::write_resolv_conf(&dir.join("resolv.conf"), &host_resolv, sb.domainname.as_deref())?;
        Ok(())
    }

    /// Re-creates what the kernel lost while the records survived (after a host
    /// reboot, or an `ip netns del` behind our back): a missing sandbox namespace
    /// is made again with its files. Endpoint interfaces inside it cannot be
    /// recovered; those endpoints are marked left, keeping their addresses.
    fn reconcile(&self) {
        let mut core = self.lock();
        let missing: Vec<SandboxRecord> = core
            .state
            .sandboxes
            .iter()
            .filter(|s| s.netns.as_deref().is_some_and(|ns| !self.netns_exists(ns)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        for sb in missing {
            let Some(ns) = &sb.netns else { continue };
            if self.make_netns(&mut core, ns).is_err() {
                continue;
            }
            for ep in core
                .state
                .endpoints
                .iter_mut()
                .filter(|e| e.sandbox.as_deref() == Some(&sb.id))
            {
                ep.sandbox = None;
                ep.ifname = None;
                ep.default_route = false;
            }
            let _ = self.write_sandbox_files(&core, &sb.id);
        }
        let _ = core.commit();
    }
}

impl Controller {
    /// Rebuilds the drivers' runtime state (bridge domains, switch ports) from
    /// the records; an endpoint whose interface had to be made again is
    /// recorded as not joined.
    fn restore_dataplane(&self) -> Result<()> {
        let mut core = self.lock();
        for n in core.state.networks.clone() {
            self.driver(&n.driver)?.create_network(&network_spec(&n))?;
        }
        let mut changed = false;
        for e in core.state.endpoints.clone() {
            let net = core.network_by_id(&e.network)?.clone();
            let drv = self.driver(&net.driver)?;
            let sb = e
                .sandbox
                .as_deref()
                .and_then(|s| core.sandbox_by_id(s).ok())
                .map(|sb| self.sandbox_spec(sb, &e));
            if !drv.restore_endpoint(&network_spec(&net), &endpoint_spec(&e), sb.as_ref())? {
                let rec = core.endpoint_mut(&e.id)?;
                changed |= rec.sandbox.take().is_some();
                rec.ifname = None;
                rec.default_route = false;
            }
        }
        if changed {
            core.commit()?;
        }
        Ok(())
    }

    fn switch_of<'a>(&self, drv: &'a Arc<dyn Driver>, network: &str) -> Result<&'a dyn SwitchView> {
        drv.switch().ok_or_else(|| {
            Error::InvalidOption(format!(
                "network {network} is not switched by Plexus (driver {})",
                drv.name()
            ))
        })
    }

    /// The MAC table of a network: address, endpoint, age.
    pub fn fdb(&self, network: &str) -> Result<Vec<FdbInfo>> {
        let core = self.lock();
        let net = core.network(network)?.clone();
        let drv = self.driver(&net.driver)?;
        let mut rows = self.switch_of(&drv, &net.name)?.fdb(&net.id)?;
        for r in &mut rows {
            if let Ok(e) = core.endpoint_by_id(&r.endpoint) {
                r.endpoint.clone_from(&e.name);
            }
        }
        Ok(rows)
    }

    /// Number of entries in a network's MAC table (bounded by its size option).
    pub fn fdb_len(&self, network: &str) -> Result<usize> {
        let core = self.lock();
        let net = core.network(network)?.clone();
        let drv = self.driver(&net.driver)?;
        Ok(self.switch_of(&drv, &net.name)?.fdb_len(&net.id)?)
    }

    /// Where the switch's file descriptor budget stands: ports, published
    /// listeners and NAT flows, and one endpoint's share of flows.
    pub fn fd_use(&self) -> Result<plexus_switch::FdUse> {
        self.inner
            .dataplane
            .fd_use()
            .map_err(|e| Error::Driver(plexus_drivers::DriverError::from(e)))
    }

    /// The outbound NAT flows, by endpoint.
    pub fn nat(&self) -> Result<Vec<NatInfo>> {
        let core = self.lock();
        let mut out = Vec::new();
        for drv in self.inner.drivers.values() {
            let Some(sw) = drv.switch() else { continue };
            for mut r in sw.nat()? {
                if let Ok(e) = core.endpoint_by_id(&r.endpoint) {
                    r.endpoint.clone_from(&e.name);
                }
                out.push(r);
            }
        }
        out.sort_by(|a, b| {
            (&a.endpoint, a.proto, a.inside, a.outside).cmp(&(&b.endpoint, b.proto, b.inside, b.outside))
        });
        Ok(out)
    }

    /// Every switch port's counters, by endpoint.
    pub fn stats(&self) -> Result<Vec<PortInfo>> {
        let core = self.lock();
        let mut out = Vec::new();
        for drv in self.inner.drivers.values() {
            let Some(sw) = drv.switch() else { continue };
            for mut r in sw.ports()? {
                if let Ok(e) = core.endpoint_by_id(&r.endpoint) {
                    r.endpoint.clone_from(&e.name);
                }
                if let Ok(n) = core.network_by_id(&r.network) {
                    r.network.clone_from(&n.name);
                }
                out.push(r);
            }
        }
        out.sort_by(|a, b| (&a.network, &a.endpoint).cmp(&(&b.network, &b.endpoint)));
        Ok(out)
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new(netns::NETNS_DIR).join(name)
}

/// The routes of the daemon's namespace, as IPAM wants them.
fn host_routes() -> Result<Vec<Ipv4Net>> {
    let mut nl = Netlink::open()?;
    Ok(nl.routes()?.into_iter().map(|r| r.dst).collect())
}

/// IPAM is derived state: pools from networks, addresses from endpoints.
fn network_spec(n: &NetworkRecord) -> NetworkSpec {
    NetworkSpec {
        id: n.id.clone(),
        name: n.name.clone(),
        subnet: n.subnet,
        gateway: n.gateway,
        internal: n.internal,
        host_loopback: n.host_loopback,
        mtu: n.mtu,
        switching: n.switching,
    }
}

fn endpoint_spec(e: &EndpointRecord) -> EndpointSpec {
    EndpointSpec {
        allowed: e.allowed.clone(),
        id: e.id.clone(),
        name: e.name.clone(),
        addr: e.addr,
        mac: e.mac,
        host_ifname: e.host_ifname.clone(),
        peer_ifname: e.peer_ifname.clone(),
        kind: e.kind,
        publish: e
            .bindings
            .iter()
            .map(|b| PublishSpec {
                proto: match b.protocol {
                    Protocol::Tcp => NatProto::Tcp,
                    Protocol::Udp => NatProto::Udp,
                },
                host: SocketAddrV4::new(b.host_ip, b.host_port),
                container_port: b.container_port,
            })
            .collect(),
    }
}

/// Reserves the host ports of `--publish` mappings, all or none.
fn publish_bindings(core: &mut Core, mode: Mode, has_addr: bool, mappings: &[PortMapping]) -> Result<Vec<Binding>> {
    if mappings.is_empty() {
        return Ok(Vec::new());
    }
    if !has_addr {
        return Err(Error::InvalidOption(
            "only endpoints with an address (bridge networks) publish ports".into(),
        ));
    }
    if mode == Mode::Rootless {
        let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(1024);
        if let Some(port) = mappings
            .iter()
            .filter_map(|m| m.host_ports)
            .map(|r| r.start)
            .find(|&p| p < start)
        {
            return Err(PublishError::Privileged { port, start }.into());
        }
    }
    Ok(core.ports.allocate(mappings, os_port_free)?)
}

/// A driver error, with a taken host port reported as IPAM-style
/// `port is already allocated`.
fn driver_error(e: plexus_drivers::DriverError) -> Error {
    match e {
        plexus_drivers::DriverError::PortInUse { host, proto } => Error::Publish(PublishError::PortAllocated {
            host_ip: *host.ip(),
            port: host.port(),
            protocol: match proto {
                NatProto::Tcp => Protocol::Tcp,
                _ => Protocol::Udp,
            },
        }),
        e => Error::Driver(e),
    }
}

impl Controller {
    /// What a driver needs of the sandbox `ep` joins.
    fn sandbox_spec(&self, sb: &SandboxRecord, ep: &EndpointRecord) -> SandboxSpec {
        let (key, userns) = match &sb.netns {
            Some(ns) => {
                let (key, userns) = self.netns_key(ns);
                (Some(key), userns)
            }
            None => (None, None),
        };
        SandboxSpec {
            key,
            userns,
            ifname: ep.ifname.clone().unwrap_or_default(),
            default_route: ep.default_route,
        }
    }
}

/// A stored record with an id and a user-visible name.
trait Record {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
}

macro_rules! record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
        }
    )*};
}
record!(NetworkRecord, EndpointRecord, SandboxRecord);

fn by_id<'a, T: Record>(items: &'a [T], id: &str) -> Option<&'a T> {
    items.iter().find(|x| x.id() == id)
}

/// Names win over ids, so a name that looks like an id still finds its object.
fn by_name_or_id<'a, T: Record>(items: &'a [T], key: &str) -> Option<&'a T> {
    items.iter().find(|x| x.name() == key).or_else(|| by_id(items, key))
}

impl Core {
    fn commit(&mut self) -> Result<()> {
        self.store.commit(&self.state).map_err(Into::into)
    }

    /// Records `intent` (committed) before the change it names acts.
    fn begin(&mut self, intent: Intent) -> Result<()> {
        self.state.intents.push(intent);
        if let Err(e) = self.commit() {
            self.state.intents.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Forgets `intent` (committed with whatever else changed).
    fn end(&mut self, intent: &Intent) -> Result<()> {
        self.state.intents.retain(|i| i != intent);
        self.commit()
    }

    fn network(&self, key: &str) -> Result<&NetworkRecord> {
        by_name_or_id(&self.state.networks, key).ok_or_else(|| Error::NoSuchNetwork(key.to_owned()))
    }

    fn network_by_id(&self, id: &str) -> Result<&NetworkRecord> {
        by_id(&self.state.networks, id).ok_or_else(|| Error::NoSuchNetwork(id.to_owned()))
    }

    fn sandbox(&self, key: &str) -> Result<&SandboxRecord> {
        by_name_or_id(&self.state.sandboxes, key).ok_or_else(|| Error::NoSuchSandbox(key.to_owned()))
    }

    fn sandbox_by_id(&self, id: &str) -> Result<&SandboxRecord> {
        by_id(&self.state.sandboxes, id).ok_or_else(|| Error::NoSuchSandbox(id.to_owned()))
    }

    fn endpoint_by_id(&self, id: &str) -> Result<&EndpointRecord> {
        by_id(&self.state.endpoints, id).ok_or_else(|| Error::NoSuchEndpoint(id.to_owned()))
    }

    fn endpoint_mut(&mut self, id: &str) -> Result<&mut EndpointRecord> {
        self.state
            .endpoints
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::NoSuchEndpoint(id.to_owned()))
    }

    fn endpoint_any(&self, key: &str) -> Result<&EndpointRecord> {
        if let Some(e) = self.state.endpoints.iter().find(|e| e.id == key) {
            return Ok(e);
        }
        let mut named = self.state.endpoints.iter().filter(|e| e.name == key);
        match (named.next(), named.next()) {
            (Some(e), None) => Ok(e),
            (Some(_), Some(_)) => Err(Error::InvalidOption(format!(
                "endpoint name {key} is used in several networks: give the network or the endpoint id"
            ))),
            _ => Err(Error::NoSuchEndpoint(key.to_owned())),
        }
    }

    fn network_info(&self, n: &NetworkRecord) -> NetworkInfo {
        NetworkInfo {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            subnet: n.subnet,
            ip_range: n.ip_range,
            gateway: n.gateway,
            internal: n.internal,
            host_loopback: n.host_loopback,
            mtu: n.mtu,
            switching: n.switching,
            endpoints: self
                .state
                .endpoints
                .iter()
                .filter(|e| e.network == n.id)
                .map(|e| e.name.clone())
                .collect(),
        }
    }

    fn endpoint_info(&self, e: &EndpointRecord) -> EndpointInfo {
        let net = self.network_by_id(&e.network).ok();
        EndpointInfo {
            id: e.id.clone(),
            name: e.name.clone(),
            network: net.map(|n| n.name.clone()).unwrap_or_default(),
            address: e.addr,
            mac: e.mac,
            gateway: net.and_then(|n| n.gateway),
            kind: e.kind,
            host_ifname: e.host_ifname.clone(),
            sandbox: e
                .sandbox
                .as_deref()
                .and_then(|s| self.sandbox_by_id(s).ok())
                .map(|s| s.name.clone()),
            ifname: e.ifname.clone(),
            ports: e.bindings.clone(),
            allowed_addresses: e.allowed.clone(),
        }
    }

    /// A fresh 6-hex-digit interface tag not used by any endpoint.
    fn new_iftag(&self) -> String {
        loop {
            let tag = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
            if !self.state.endpoints.iter().any(|e| e.host_ifname.ends_with(&tag)) {
                return tag;
            }
        }
    }
}

impl Controller {
    /// Creates endpoint `name` (id `id`) on network `network_id`; `owner` is
    /// the sandbox a `run` makes it for.
    fn create_endpoint(
        &self,
        core: &mut Core,
        network_id: &str,
        name: &str,
        opts: &EndpointOptions,
        id: String,
        owner: Option<String>,
    ) -> Result<String> {
        validate_name("endpoint", name)?;
        let net = core.network_by_id(network_id)?.clone();
        if core
            .state
            .endpoints
            .iter()
            .any(|e| e.network == net.id && e.name == name)
        {
            return Err(Error::EndpointExists {
                network: net.name,
                endpoint: name.to_owned(),
            });
        }
        if let Some(mac) = opts.mac
            && !mac.is_unicast()
        {
            return Err(Error::InvalidOption(format!("MAC {mac} is not a unicast address")));
        }
        let drv = self.driver(&net.driver)?;
        let (addr, mac) = match (drv.uses_ipam(), net.subnet) {
            (true, Some(subnet)) => {
                let ip = core.ipam.request_address(subnet, opts.ip)?;
                let addr = Ipv4Net::new(ip, subnet.prefix_len()).expect("prefix length comes from a valid subnet");
                (Some(addr), Some(opts.mac.unwrap_or_else(|| MacAddr::from_ipv4(ip))))
            }
            _ if opts.ip.is_some() || opts.mac.is_some() => {
                return Err(Error::InvalidOption(format!(
                    "driver {} takes no --ip or --mac",
                    net.driver
                )));
            }
            _ => (None, None),
        };
        let bindings = match publish_bindings(core, self.inner.config.mode, addr.is_some(), &opts.publish) {
            Ok(b) => b,
            Err(e) => {
                if let (Some(a), Some(s)) = (addr, net.subnet) {
                    let _ = core.ipam.release_address(s, a.addr());
                }
                return Err(e);
            }
        };
        let tag = core.new_iftag();
        let prefix = &self.inner.config.ifname_prefix;
        let rec = EndpointRecord {
            id,
            name: name.to_owned(),
            network: net.id.clone(),
            addr,
            mac,
            host_ifname: format!("{prefix}h{tag}"),
            peer_ifname: format!("{prefix}c{tag}"),
            sandbox: None,
            ifname: None,
            default_route: false,
            remove_with_sandbox: opts.remove_with_sandbox,
            // Rootless endpoints are TAP devices made inside the sandbox.
            kind: if self.inner.config.mode == Mode::Rootless {
                plexus_drivers::EndpointKind::Tap
            } else {
                opts.kind
            },
            bindings,
            allowed: opts.allowed.clone(),
            owner,
        };
        let release = |core: &mut Core| {
            if let (Some(a), Some(s)) = (addr, net.subnet) {
                let _ = core.ipam.release_address(s, a.addr());
            }
            core.ports.release(&rec.bindings);
        };
        let (nspec, espec) = (network_spec(&net), endpoint_spec(&rec));
        // Recorded first: a crash before the record is committed leaves
        // kernel objects that the next start removes.
        let intent = Intent::CreateEndpoint {
            endpoint: Box::new(rec.clone()),
        };
        if let Err(e) = core.begin(intent.clone()) {
            release(core);
            return Err(e);
        }
        if let Err(e) = drv.create_endpoint(&nspec, &espec) {
            release(core);
            let _ = core.end(&intent);
            return Err(driver_error(e));
        }
        core.state.endpoints.push(rec.clone());
        if let Err(e) = core.end(&intent) {
            core.state.endpoints.pop();
            let _ = drv.delete_endpoint(&nspec, &espec);
            release(core);
            return Err(e);
        }
        Ok(rec.id)
    }
}

impl Controller {
    /// Creates sandbox `name` for endpoint `endpoint_id` to join: host mode
    /// if the endpoint's driver is (or `opts` says so).
    fn sandbox_for(&self, core: &mut Core, endpoint_id: &str, name: &str, opts: JoinOptions) -> Result<String> {
        let ep = core.endpoint_by_id(endpoint_id)?;
        let net = core.network_by_id(&ep.network)?;
        let host = self.driver(&net.driver)?.host_mode();
        let opts = SandboxOptions {
            host_mode: opts.host_mode || host,
            ..opts
        };
        self.create_sandbox(core, name, &opts)
    }

    /// `plexus run`: an endpoint named `name` on `network`, a sandbox named
    /// `name`, and the join, all or nothing — also across a crash (the change
    /// is recorded first). The endpoint belongs to the sandbox: removing the
    /// sandbox removes it, joined or not. Refused with
    /// [`Error::SandboxExists`] if the sandbox exists.
    pub fn run(
        &self,
        name: &str,
        network: &str,
        opts: EndpointOptions,
        join: JoinOptions,
    ) -> Result<(Sandbox, Endpoint)> {
        validate_name("sandbox", name)?;
        let mut core = self.lock();
        if core.sandbox(name).is_ok() {
            return Err(Error::SandboxExists(name.to_owned()));
        }
        let net_id = core.network(network)?.id.clone();
        let ep_id = new_id();
        let intent = Intent::Join {
            sandbox: name.to_owned(),
            endpoint: ep_id.clone(),
            new_sandbox: true,
            new_endpoint: true,
        };
        core.begin(intent.clone())?;
        let opts = opts.remove_with_sandbox(true);
        let made = self
            .create_endpoint(&mut core, &net_id, name, &opts, ep_id.clone(), Some(name.to_owned()))
            .and_then(|_| self.sandbox_for(&mut core, &ep_id, name, join));
        let joined = made.and_then(|sb| {
            let ep = Endpoint {
                ctrl: self.clone(),
                id: ep_id.clone(),
            };
            ep.join_locked(&mut core, &sb).map(|_| sb)
        });
        match joined {
            Ok(sb) => {
                core.end(&intent)?;
                Ok((
                    Sandbox {
                        ctrl: self.clone(),
                        id: sb,
                    },
                    Endpoint {
                        ctrl: self.clone(),
                        id: ep_id,
                    },
                ))
            }
            Err(e) => {
                self.undo(&mut core, &intent);
                Err(e)
            }
        }
    }

    /// Finishes or undoes the changes a process that died left half done
    /// (see the module doc); what it did is in [`Controller::recovered`].
    fn recover(&self) {
        let mut core = self.lock();
        for intent in core.state.intents.clone() {
            let note = self.undo(&mut core, &intent);
            core.recovered.push(note);
        }
    }

    /// What the start of this controller finished or undid of changes a
    /// dead process left half done, one line each.
    pub fn recovered(&self) -> Vec<String> {
        self.lock().recovered.clone()
    }

    /// Undoes what the change `intent` made, unless its last step happened;
    /// forgets the intent; says what it did.
    fn undo(&self, core: &mut Core, intent: &Intent) -> String {
        let note = match intent {
            Intent::CreateEndpoint { endpoint } => {
                if core.state.endpoints.iter().any(|e| e.id == endpoint.id) {
                    format!("endpoint {}: created", endpoint.name)
                } else {
                    let deleted = core.network_by_id(&endpoint.network).cloned().and_then(|net| {
                        let drv = self.driver(&net.driver)?;
                        Ok(drv.delete_endpoint(&network_spec(&net), &endpoint_spec(endpoint))?)
                    });
                    match deleted {
                        Ok(()) => format!("endpoint {}: creation undone, its interfaces removed", endpoint.name),
                        Err(e) => format!("endpoint {}: creation undone ({e})", endpoint.name),
                    }
                }
            }
            Intent::Join {
                sandbox,
                endpoint,
                new_sandbox,
                new_endpoint,
            } => {
                let sb_id = core.sandbox(sandbox).ok().map(|s| s.id.clone());
                let done = sb_id.is_some()
                    && core
                        .endpoint_by_id(endpoint)
                        .is_ok_and(|e| e.sandbox.is_some() && e.sandbox == sb_id);
                if done {
                    format!("sandbox {sandbox}: joined")
                } else {
                    let mut undone = Vec::new();
                    if *new_sandbox {
                        match &sb_id {
                            Some(id) => {
                                let _ = self.delete_sandbox(core, id);
                            }
                            None => {
                                // Made but not recorded: only its namespace is left.
                                let ns = format!("{}{}", self.inner.config.netns_prefix, sandbox);
                                let _ = self.remove_netns(core, &ns);
                            }
                        }
                        undone.push("sandbox removed");
                    }
                    if *new_endpoint && core.endpoint_by_id(endpoint).is_ok() {
                        let _ = self.delete_endpoint(core, endpoint, true);
                        undone.push("endpoint removed");
                    }
                    format!("sandbox {sandbox}: join undone ({})", undone.join(", "))
                }
            }
        };
        let _ = core.end(intent);
        note
    }
}

impl Network {
    /// The network's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The network as it is now.
    pub fn info(&self) -> Result<NetworkInfo> {
        let core = self.ctrl.lock();
        let n = core.network_by_id(&self.id)?;
        Ok(core.network_info(n))
    }

    /// The network's name.
    pub fn name(&self) -> Result<String> {
        Ok(self.info()?.name)
    }

    /// Creates an endpoint: reserves its address and MAC and makes its interface
    /// (for `bridge`, a veth pair whose host end the switch will attach).
    pub fn create_endpoint(&self, name: &str, opts: EndpointOptions) -> Result<Endpoint> {
        let mut core = self.ctrl.lock();
        let id = self
            .ctrl
            .create_endpoint(&mut core, &self.id, name, &opts, new_id(), None)?;
        Ok(Endpoint {
            ctrl: self.ctrl.clone(),
            id,
        })
    }

    /// An endpoint of this network by name or id.
    pub fn endpoint(&self, name_or_id: &str) -> Result<Endpoint> {
        let core = self.ctrl.lock();
        core.network_by_id(&self.id)?;
        let e = core
            .state
            .endpoints
            .iter()
            .find(|e| e.network == self.id && (e.name == name_or_id || e.id == name_or_id))
            .ok_or_else(|| Error::NoSuchEndpoint(name_or_id.to_owned()))?;
        Ok(Endpoint {
            ctrl: self.ctrl.clone(),
            id: e.id.clone(),
        })
    }

    /// The network's endpoints.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let core = self.ctrl.lock();
        core.network_by_id(&self.id)?;
        Ok(core
            .state
            .endpoints
            .iter()
            .filter(|e| e.network == self.id)
            .map(|e| Endpoint {
                ctrl: self.ctrl.clone(),
                id: e.id.clone(),
            })
            .collect())
    }

    /// Deletes the network; refused with [`Error::ActiveEndpoints`] while it has
    /// endpoints.
    pub fn delete(&self) -> Result<()> {
        let mut core = self.ctrl.lock();
        let net = core.network_by_id(&self.id)?.clone();
        let eps: Vec<String> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.network == net.id)
            .map(|e| e.name.clone())
            .collect();
        if !eps.is_empty() {
            return Err(Error::ActiveEndpoints {
                network: net.name,
                endpoints: eps,
            });
        }
        let drv = self.ctrl.driver(&net.driver)?;
        drv.delete_network(&network_spec(&net))?;
        if let Some(s) = net.subnet {
            core.ipam.release_pool(s)?;
        }
        core.state.networks.retain(|n| n.id != net.id);
        core.commit()
    }
}

impl Endpoint {
    /// The endpoint's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The endpoint as it is now.
    pub fn info(&self) -> Result<EndpointInfo> {
        let core = self.ctrl.lock();
        let e = core.endpoint_by_id(&self.id)?;
        Ok(core.endpoint_info(e))
    }

    /// Joins the endpoint to the sandbox of container `container_id`, creating
    /// that sandbox on first use with `opts`; returns the sandbox key (the
    /// network namespace path).
    pub fn join(&self, container_id: &str, opts: JoinOptions) -> Result<PathBuf> {
        validate_name("sandbox", container_id)?;
        let mut core = self.ctrl.lock();
        if let Ok(sb) = core.sandbox(container_id) {
            let id = sb.id.clone();
            return self.join_locked(&mut core, &id);
        }
        core.endpoint_by_id(&self.id)?;
        // A sandbox made for this join: recorded first, so a crash between
        // the two steps leaves no orphan sandbox.
        let intent = Intent::Join {
            sandbox: container_id.to_owned(),
            endpoint: self.id.clone(),
            new_sandbox: true,
            new_endpoint: false,
        };
        core.begin(intent.clone())?;
        let joined = match self.ctrl.sandbox_for(&mut core, &self.id, container_id, opts) {
            Ok(sb) => {
                let r = self.join_locked(&mut core, &sb);
                if r.is_err() {
                    let _ = self.ctrl.delete_sandbox(&mut core, &sb);
                }
                r
            }
            Err(e) => Err(e),
        };
        let ended = core.end(&intent);
        let key = joined?;
        ended?;
        Ok(key)
    }

    /// Joins the endpoint to an existing sandbox; returns the sandbox key.
    pub fn join_sandbox(&self, sandbox: &Sandbox) -> Result<PathBuf> {
        let mut core = self.ctrl.lock();
        self.join_locked(&mut core, &sandbox.id)
    }

    fn join_locked(&self, core: &mut Core, sandbox_id: &str) -> Result<PathBuf> {
        let ep = core.endpoint_by_id(&self.id)?.clone();
        let sb = core.sandbox_by_id(sandbox_id)?.clone();
        if let Some(s) = &ep.sandbox {
            let sandbox = core
                .sandbox_by_id(s)
                .map(|s| s.name.clone())
                .unwrap_or_else(|_| s.clone());
            return Err(Error::AlreadyJoined {
                endpoint: ep.name,
                sandbox,
            });
        }
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.ctrl.driver(&net.driver)?;
        if drv.host_mode() != sb.netns.is_none() {
            return Err(Error::SandboxMode {
                sandbox: sb.name,
                reason: if drv.host_mode() {
                    "a host-network endpoint joins only a host-mode sandbox"
                } else {
                    "a host-mode sandbox takes only host-network endpoints"
                },
            });
        }
        let joined: Vec<&EndpointRecord> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !joined.iter().any(|e| e.ifname.as_deref() == Some(n.as_str())))
            .expect("an unbounded range always has a free name");
        let default_route = !net.internal && net.gateway.is_some() && !joined.iter().any(|e| e.default_route);
        let mut joined_ep = ep.clone();
        joined_ep.sandbox = Some(sb.id.clone());
        joined_ep.ifname = drv.uses_ipam().then_some(ifname);
        joined_ep.default_route = default_route;
        let (nspec, espec, sspec) = (
            network_spec(&net),
            endpoint_spec(&ep),
            self.ctrl.sandbox_spec(&sb, &joined_ep),
        );
        drv.join(&nspec, &espec, &sspec)?;
        *core.endpoint_mut(&self.id)? = joined_ep;
        let done = self.ctrl.write_sandbox_files(core, &sb.id).and_then(|()| core.commit());
        if let Err(e) = done {
            let _ = drv.leave(&nspec, &espec, &sspec);
            *core.endpoint_mut(&self.id)? = ep;
            return Err(e);
        }
        Ok(self.ctrl.sandbox_key(&sb).0)
    }

    /// Leaves the sandbox; the endpoint keeps its address for a later join.
    pub fn leave(&self) -> Result<()> {
        let mut core = self.ctrl.lock();
        self.ctrl.leave_locked(&mut core, &self.id)
    }

    /// Deletes the endpoint and releases its address. A joined endpoint is refused
    /// with [`Error::ActiveContainer`] unless `force`, which leaves first.
    pub fn delete(&self, force: bool) -> Result<()> {
        let mut core = self.ctrl.lock();
        self.ctrl.delete_endpoint(&mut core, &self.id, force)
    }
}

impl Controller {
    /// A sandbox's key (its namespace's path; the daemon's own for host mode)
    /// and, rootless, the user namespace to join before it.
    fn sandbox_key(&self, sb: &SandboxRecord) -> (PathBuf, Option<PathBuf>) {
        match &sb.netns {
            Some(ns) => self.netns_key(ns),
            None => (PathBuf::from(format!("/proc/{}/ns/net", std::process::id())), None),
        }
    }
}

impl Controller {
    fn leave_locked(&self, core: &mut Core, endpoint_id: &str) -> Result<()> {
        let ep = core.endpoint_by_id(endpoint_id)?.clone();
        let Some(sandbox_id) = ep.sandbox.clone() else {
            return Err(Error::NotJoined(ep.name));
        };
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.driver(&net.driver)?;
        let leave_result = match core.sandbox_by_id(&sandbox_id) {
            Ok(sb) => drv.leave(&network_spec(&net), &endpoint_spec(&ep), &self.sandbox_spec(sb, &ep)),
            Err(_) => Ok(()),
        };
        let rec = core.endpoint_mut(endpoint_id)?;
        rec.sandbox = None;
        rec.ifname = None;
        rec.default_route = false;
        let files = self.write_sandbox_files(core, &sandbox_id);
        core.commit()?;
        leave_result?;
        files
    }

    fn delete_endpoint(&self, core: &mut Core, endpoint_id: &str, force: bool) -> Result<()> {
        let ep = core.endpoint_by_id(endpoint_id)?.clone();
        if let Some(s) = &ep.sandbox {
            if !force {
                let sandbox = core
                    .sandbox_by_id(s)
                    .map(|s| s.name.clone())
                    .unwrap_or_else(|_| s.clone());
                return Err(Error::ActiveContainer {
                    endpoint: ep.name,
                    sandbox,
                });
            }
            // A failed leave must not keep a forced delete from releasing the rest.
            let _ = self.leave_locked(core, endpoint_id);
        }
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.driver(&net.driver)?;
        let deleted = drv.delete_endpoint(&network_spec(&net), &endpoint_spec(&ep));
        if let (Some(a), Some(s)) = (ep.addr, net.subnet) {
            let _ = core.ipam.release_address(s, a.addr());
        }
        core.ports.release(&ep.bindings);
        core.state.endpoints.retain(|e| e.id != ep.id);
        core.commit()?;
        deleted.map_err(Into::into)
    }

    fn delete_sandbox(&self, core: &mut Core, sandbox_id: &str) -> Result<()> {
        let sb = core.sandbox_by_id(sandbox_id)?.clone();
        let joined: Vec<EndpointRecord> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .cloned()
            .collect();
        let mut first_err: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        for ep in &joined {
            if ep.remove_with_sandbox {
                note(self.delete_endpoint(core, &ep.id, true));
            } else {
                note(self.leave_locked(core, &ep.id));
            }
        }
        // Endpoints `run` made for this sandbox go with it even when they are
        // not joined (a join that failed, or a leave), with their ports.
        let owned: Vec<String> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.is_none() && e.owner.as_deref() == Some(sb.name.as_str()))
            .map(|e| e.id.clone())
            .collect();
        for id in owned {
            note(self.delete_endpoint(core, &id, false));
        }
        if let Some(ns) = &sb.netns {
            match self.remove_netns(core, ns) {
                Ok(()) | Err(SandboxError::NoSuchNetns(_)) => {}
                Err(e) => note(Err(e.into())),
            }
        }
        let _ = std::fs::remove_dir_all(self.sandbox_dir(&sb.id));
        core.state.sandboxes.retain(|s| s.id != sb.id);
        note(core.commit());
        first_err.map_or(Ok(()), Err)
    }
}

impl Sandbox {
    /// The sandbox's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sandbox as it is now.
    pub fn info(&self) -> Result<SandboxInfo> {
        let core = self.ctrl.lock();
        let sb = core.sandbox_by_id(&self.id)?;
        let dir = self.ctrl.sandbox_dir(&sb.id);
        let (key, userns) = self.ctrl.sandbox_key(sb);
        Ok(SandboxInfo {
            id: sb.id.clone(),
            name: sb.name.clone(),
            key: sb.netns.as_ref().map(|_| key),
            userns,
            hostname: sb.hostname.clone(),
            domainname: sb.domainname.clone(),
            hosts_path: dir.join("hosts"),
            resolv_conf_path: dir.join("resolv.conf"),
            endpoints: core
                .state
                .endpoints
                .iter()
                .filter(|e| e.sandbox.as_deref() == Some(sb.id.as_str()))
                .map(|e| e.name.clone())
                .collect(),
        })
    }

    /// The sandbox key: the path of its network namespace.
    pub fn key(&self) -> Result<PathBuf> {
        let core = self.ctrl.lock();
        Ok(self.ctrl.sandbox_key(core.sandbox_by_id(&self.id)?).0)
    }

    /// The endpoints joined to it.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let core = self.ctrl.lock();
        core.sandbox_by_id(&self.id)?;
        Ok(core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(self.id.as_str()))
            .map(|e| Endpoint {
                ctrl: self.ctrl.clone(),
                id: e.id.clone(),
            })
            .collect())
    }

    /// Deletes the sandbox: every endpoint leaves (endpoints made with
    /// `remove_with_sandbox` are deleted), then the namespace and files go. Keeps
    /// going after a failed step and returns the first error.
    pub fn delete(&self) -> Result<()> {
        let mut core = self.ctrl.lock();
        self.ctrl.delete_sandbox(&mut core, &self.id)
    }
}
