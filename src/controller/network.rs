//! Networks: create, look up, delete.

use ipnet::Ipv4Net;
use plexus_drivers::Switching;
use plexus_sandbox::netlink::Netlink;

use super::records::network_spec;
use super::{Controller, Core, Endpoint, Network, new_id, validate_engine_id, validate_name};
use crate::error::{Error, Result};
use crate::ipam::PoolRequest;
use crate::model::{NetworkInfo, NetworkRecord};
use crate::options::{EndpointOptions, NetworkOptions};

impl Controller {
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
        if let Some((_, id)) = &opts.engine {
            validate_engine_id(id)?;
        }
        let mut core = self.lock();
        if core.state.networks.iter().any(|n| n.name == name) {
            return Err(Error::NetworkExists(name.to_owned()));
        }
        if let Some((_, id)) = &opts.engine
            && core.state.networks.iter().any(|n| &n.id == id)
        {
            return Err(Error::NetworkExists(id.clone()));
        }
        if drv.host_mode()
            && let Some(n) = core.state.networks.iter().find(|n| n.driver == driver)
        {
            return Err(Error::HostNetworkExists(n.name.clone()));
        }
        let mut rec = NetworkRecord {
            id: opts.engine.as_ref().map_or_else(new_id, |(_, id)| id.clone()),
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
            engine: opts.engine.as_ref().map(|(e, _)| *e),
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
        if let Some((_, id)) = &opts.engine {
            validate_engine_id(id)?;
        }
        let id = opts.engine.as_ref().map_or_else(new_id, |(_, id)| id.clone());
        let mut core = self.ctrl.lock();
        if core.state.endpoints.iter().any(|e| e.id == id) {
            return Err(Error::EndpointExists {
                network: core.network_by_id(&self.id)?.name.clone(),
                endpoint: id,
            });
        }
        let id = self.ctrl.create_endpoint(&mut core, &self.id, name, &opts, id, None)?;
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

/// The routes of the daemon's namespace, as IPAM wants them.
fn host_routes() -> Result<Vec<Ipv4Net>> {
    let mut nl = Netlink::open()?;
    Ok(nl.routes()?.into_iter().map(|r| r.dst).collect())
}

impl Controller {
    /// Runs `f` over the Docker IPAM plugin's pools, with the subnets of
    /// Plexus's networks and the daemon's routes (what a new pool must not
    /// overlap); commits the pools with the rest of the state if `f`
    /// succeeds, else leaves them as they were.
    pub fn docker_pools<R, E>(
        &self,
        f: impl FnOnce(&mut Vec<crate::model::DockerPool>, &[Ipv4Net], &[Ipv4Net]) -> std::result::Result<R, E>,
    ) -> Result<std::result::Result<R, E>> {
        let routes = host_routes()?;
        let mut core = self.lock();
        let taken: Vec<Ipv4Net> = core.state.networks.iter().filter_map(|n| n.subnet).collect();
        let mut pools = core.state.docker_pools.clone();
        let r = match f(&mut pools, &taken, &routes) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if pools != core.state.docker_pools {
            let old = std::mem::replace(&mut core.state.docker_pools, pools);
            if let Err(e) = core.commit() {
                core.state.docker_pools = old;
                return Err(e);
            }
        }
        Ok(Ok(r))
    }
}
