//! Endpoints: create (an address, a MAC and host ports reserved, the
//! driver's interfaces made), join, leave, delete.

use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use plexus_switch::MacAddr;

use super::records::{endpoint_spec, network_spec};
use super::{Controller, Core, Endpoint, Sandbox, validate_name};
use crate::error::{Error, Result};
use crate::mode::Mode;
use crate::model::{EndpointInfo, EndpointRecord, Intent};
use crate::options::{EndpointOptions, JoinOptions};
use crate::publish::{Binding, PortMapping, PublishError, os_port_free};

impl Controller {
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

    /// Creates endpoint `name` (id `id`) on network `network_id`; `owner` is
    /// the sandbox a `run` makes it for.
    pub(super) fn create_endpoint(
        &self,
        core: &mut Core,
        network_id: &str,
        name: &str,
        opts: &EndpointOptions,
        id: String,
        owner: Option<String>,
    ) -> Result<String> {
        validate_name("endpoint", name)?;
        for a in &opts.aliases {
            validate_name("alias", a)?;
        }
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
        let bindings = match publish_bindings(
            core,
            self.inner.namespaces.first_bindable_port(),
            addr.is_some(),
            &opts.publish,
        ) {
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
            kind: self.inner.namespaces.endpoint_kind(opts.kind),
            bindings,
            allowed: opts.allowed.clone(),
            owner,
            engine: opts.engine.as_ref().map(|(e, _)| *e),
            external_sandbox: None,
            aliases: opts.aliases.clone(),
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
    pub(super) fn leave_locked(&self, core: &mut Core, endpoint_id: &str) -> Result<()> {
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

    pub(super) fn delete_endpoint(&self, core: &mut Core, endpoint_id: &str, force: bool) -> Result<()> {
        let ep = core.endpoint_by_id(endpoint_id)?.clone();
        if let (Some(key), false) = (&ep.external_sandbox, force) {
            return Err(Error::ActiveContainer {
                endpoint: ep.name,
                sandbox: key.display().to_string(),
            });
        }
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
}

/// Reserves the host ports of `--publish` mappings, all or none; a host port
/// below `first_bindable` is refused (a rootless daemon cannot bind it).
fn publish_bindings(
    core: &mut Core,
    first_bindable: u16,
    has_addr: bool,
    mappings: &[PortMapping],
) -> Result<Vec<Binding>> {
    if mappings.is_empty() {
        return Ok(Vec::new());
    }
    if !has_addr {
        return Err(Error::InvalidOption(
            "only endpoints with an address (bridge networks) publish ports".into(),
        ));
    }
    if let Some(port) = mappings
        .iter()
        .filter_map(|m| m.host_ports)
        .map(|r| r.start)
        .find(|&p| p < first_bindable)
    {
        return Err(PublishError::Privileged {
            port,
            start: first_bindable,
        }
        .into());
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
            protocol: proto,
        }),
        e => Error::Driver(e),
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

    pub(super) fn join_locked(&self, core: &mut Core, sandbox_id: &str) -> Result<PathBuf> {
        let ep = core.endpoint_by_id(&self.id)?.clone();
        let sb = core.sandbox_by_id(sandbox_id)?.clone();
        if let Some(key) = &ep.external_sandbox {
            return Err(Error::AlreadyJoined {
                endpoint: ep.name,
                sandbox: key.display().to_string(),
            });
        }
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

/// What an engine that owns the sandbox needs to take an endpoint's
/// interface in ([`Endpoint::join_external`]): Docker's `Join` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExternalJoin {
    /// The interface to move into the sandbox, by its name in the daemon's
    /// namespace (its MAC and MTU are set; the engine names it, gives it the
    /// address and brings it up).
    pub ifname: String,
    /// Its address, with the subnet's prefix length.
    pub addr: Option<Ipv4Net>,
    /// Its MAC.
    pub mac: Option<MacAddr>,
    /// The gateway to route through; `None` on an internal network.
    pub gateway: Option<std::net::Ipv4Addr>,
}

impl Endpoint {
    /// Lends the endpoint's interface to a sandbox another engine owns and
    /// configures (Docker's `SandboxKey`): the engine moves the interface
    /// (its name is in the answer), the switch side stays attached. Asked
    /// again with the same key (an engine replaying its calls), it answers
    /// the same; with another key, [`Error::AlreadyJoined`].
    pub fn join_external(&self, key: &Path) -> Result<ExternalJoin> {
        if self.ctrl.inner.config.mode == Mode::Rootless {
            return Err(Error::InvalidOption(
                "a rootless daemon has no interface to lend: an engine's sandbox needs a rootful daemon".into(),
            ));
        }
        let mut core = self.ctrl.lock();
        let ep = core.endpoint_by_id(&self.id)?.clone();
        let net = core.network_by_id(&ep.network)?.clone();
        let answer = ExternalJoin {
            ifname: ep.peer_ifname.clone(),
            addr: ep.addr,
            mac: ep.mac,
            gateway: net.gateway.filter(|_| !net.internal),
        };
        let sandbox = match (&ep.sandbox, &ep.external_sandbox) {
            (None, None) => None,
            (None, Some(k)) if k == key => return Ok(answer),
            (Some(s), _) => Some(core.sandbox_by_id(s).map_or_else(|_| s.clone(), |s| s.name.clone())),
            (None, Some(k)) => Some(k.display().to_string()),
        };
        if let Some(sandbox) = sandbox {
            return Err(Error::AlreadyJoined {
                endpoint: ep.name,
                sandbox,
            });
        }
        if ep.kind != plexus_drivers::EndpointKind::Veth {
            return Err(Error::InvalidOption(format!(
                "endpoint {}: only a veth endpoint is lent to another engine's sandbox",
                ep.name
            )));
        }
        core.endpoint_mut(&self.id)?.external_sandbox = Some(key.to_owned());
        if let Err(e) = core.commit() {
            core.endpoint_mut(&self.id)?.external_sandbox = None;
            return Err(e);
        }
        Ok(answer)
    }

    /// The engine took the interface back out of its sandbox (Docker moves it
    /// back to the daemon's namespace under its old name before `Leave`).
    /// Leaving twice is no error (an engine may replay it).
    pub fn leave_external(&self) -> Result<()> {
        let mut core = self.ctrl.lock();
        let ep = core.endpoint_by_id(&self.id)?;
        if ep.external_sandbox.is_none() {
            return Ok(());
        }
        let old = core.endpoint_mut(&self.id)?.external_sandbox.take();
        if let Err(e) = core.commit() {
            core.endpoint_mut(&self.id)?.external_sandbox = old;
            return Err(e);
        }
        Ok(())
    }

    /// Moves the endpoint's interface into network namespace `key` (a CNI
    /// runtime's `CNI_NETNS`) as `ifname` and configures it there (MAC, MTU,
    /// address, up, the default route through the gateway unless the
    /// network is internal); the endpoint is then held by that namespace as
    /// by another engine's sandbox ([`Endpoint::join_external`]). Asked again
    /// with the same namespace, it answers the same and moves nothing.
    pub fn attach_netns(&self, key: &Path, ifname: &str) -> Result<ExternalJoin> {
        if !plexus_sandbox::netlink::valid_link_name(ifname) {
            return Err(Error::InvalidOption(format!("{ifname:?} is not an interface name")));
        }
        if !plexus_sandbox::netns::is_nsfs(key) {
            return Err(Error::InvalidOption(format!(
                "{} is not a network namespace",
                key.display()
            )));
        }
        let replay = {
            let core = self.ctrl.lock();
            core.endpoint_by_id(&self.id)?.external_sandbox.as_deref() == Some(key)
        };
        let answer = self.join_external(key)?;
        if replay {
            return Ok(answer);
        }
        let core = self.ctrl.lock();
        let ep = core.endpoint_by_id(&self.id)?.clone();
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.ctrl.driver(&net.driver)?;
        let sandbox = plexus_drivers::SandboxSpec {
            key: Some(key.to_owned()),
            userns: None,
            ifname: ifname.to_owned(),
            default_route: !net.internal && net.gateway.is_some(),
        };
        let moved = drv.join(&network_spec(&net), &endpoint_spec(&ep), &sandbox);
        drop(core);
        if let Err(e) = moved {
            let _ = self.leave_external();
            return Err(e.into());
        }
        Ok(answer)
    }

    /// Adds names the network's DNS answers for the endpoint (`--alias` at
    /// `endpoint join`); ones it has already are kept once.
    pub fn add_aliases(&self, aliases: &[String]) -> Result<()> {
        for a in aliases {
            validate_name("alias", a)?;
        }
        let mut core = self.ctrl.lock();
        let old = core.endpoint_by_id(&self.id)?.aliases.clone();
        let rec = core.endpoint_mut(&self.id)?;
        for a in aliases {
            if !rec.aliases.contains(a) {
                rec.aliases.push(a.clone());
            }
        }
        if rec.aliases == old {
            return Ok(());
        }
        if let Err(e) = core.commit() {
            core.endpoint_mut(&self.id)?.aliases = old;
            return Err(e);
        }
        Ok(())
    }

    /// Publishes more host ports for the endpoint (all of `mappings` or
    /// none): reserved, bound by the switch, recorded (a restarted daemon
    /// binds them again). Returns the bindings made.
    pub fn publish(&self, mappings: &[PortMapping]) -> Result<Vec<Binding>> {
        for m in mappings {
            m.validate()?;
        }
        let mut core = self.ctrl.lock();
        let ep = core.endpoint_by_id(&self.id)?.clone();
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.ctrl.driver(&net.driver)?;
        let first = self.ctrl.inner.namespaces.first_bindable_port();
        let made = publish_bindings(&mut core, first, ep.addr.is_some(), mappings)?;
        let mut spec = endpoint_spec(&ep);
        spec.publish = made.clone();
        if let Err(e) = drv.publish(&network_spec(&net), &spec) {
            core.ports.release(&made);
            return Err(driver_error(e));
        }
        core.endpoint_mut(&self.id)?.bindings.extend(made.iter().cloned());
        if let Err(e) = core.commit() {
            // Back to what is recorded: close all, bind the old ones again.
            let _ = drv.unpublish(&spec);
            let rec = core.endpoint_mut(&self.id)?;
            rec.bindings.truncate(ep.bindings.len());
            core.ports.release(&made);
            let _ = drv.publish(&network_spec(&net), &endpoint_spec(&ep));
            return Err(e);
        }
        Ok(made)
    }

    /// Closes every published port of the endpoint and releases the host
    /// ports; returns what was published.
    pub fn unpublish(&self) -> Result<Vec<Binding>> {
        let mut core = self.ctrl.lock();
        let ep = core.endpoint_by_id(&self.id)?.clone();
        if ep.bindings.is_empty() {
            return Ok(Vec::new());
        }
        let net = core.network_by_id(&ep.network)?.clone();
        let drv = self.ctrl.driver(&net.driver)?;
        drv.unpublish(&endpoint_spec(&ep)).map_err(driver_error)?;
        core.endpoint_mut(&self.id)?.bindings.clear();
        core.ports.release(&ep.bindings);
        core.commit()?;
        Ok(ep.bindings)
    }
}
