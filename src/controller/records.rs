//! Lookups in the records, the views ([`NetworkInfo`], [`EndpointInfo`])
//! built from them, the store's commit and intents, and the specs a driver is
//! told ([`network_spec`], [`endpoint_spec`]).

use plexus_drivers::{EndpointSpec, NetworkSpec};

use super::Core;
use crate::error::{Error, Result};
use crate::model::{EndpointInfo, EndpointRecord, Intent, NetworkInfo, NetworkRecord, SandboxRecord};

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
    pub(super) fn commit(&mut self) -> Result<()> {
        self.names_stale = true;
        self.store.commit(&self.state).map_err(Into::into)
    }

    /// Records `intent` (committed) before the change it names acts.
    pub(super) fn begin(&mut self, intent: Intent) -> Result<()> {
        self.state.intents.push(intent);
        if let Err(e) = self.commit() {
            self.state.intents.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Forgets `intent` (committed with whatever else changed).
    pub(super) fn end(&mut self, intent: &Intent) -> Result<()> {
        self.state.intents.retain(|i| i != intent);
        self.commit()
    }

    pub(super) fn network(&self, key: &str) -> Result<&NetworkRecord> {
        by_name_or_id(&self.state.networks, key).ok_or_else(|| Error::NoSuchNetwork(key.to_owned()))
    }

    pub(super) fn network_by_id(&self, id: &str) -> Result<&NetworkRecord> {
        by_id(&self.state.networks, id).ok_or_else(|| Error::NoSuchNetwork(id.to_owned()))
    }

    pub(super) fn sandbox(&self, key: &str) -> Result<&SandboxRecord> {
        by_name_or_id(&self.state.sandboxes, key).ok_or_else(|| Error::NoSuchSandbox(key.to_owned()))
    }

    pub(super) fn sandbox_by_id(&self, id: &str) -> Result<&SandboxRecord> {
        by_id(&self.state.sandboxes, id).ok_or_else(|| Error::NoSuchSandbox(id.to_owned()))
    }

    pub(super) fn endpoint_by_id(&self, id: &str) -> Result<&EndpointRecord> {
        by_id(&self.state.endpoints, id).ok_or_else(|| Error::NoSuchEndpoint(id.to_owned()))
    }

    pub(super) fn endpoint_mut(&mut self, id: &str) -> Result<&mut EndpointRecord> {
        self.state
            .endpoints
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::NoSuchEndpoint(id.to_owned()))
    }

    pub(super) fn endpoint_any(&self, key: &str) -> Result<&EndpointRecord> {
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

    pub(super) fn network_info(&self, n: &NetworkRecord) -> NetworkInfo {
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
            engine: n.engine,
        }
    }

    pub(super) fn endpoint_info(&self, e: &EndpointRecord) -> EndpointInfo {
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
            engine: e.engine,
            external_sandbox: e.external_sandbox.clone(),
            aliases: e.aliases.clone(),
        }
    }

    /// A fresh 6-hex-digit interface tag not used by any endpoint.
    pub(super) fn new_iftag(&self) -> String {
        loop {
            let tag = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
            if !self.state.endpoints.iter().any(|e| e.host_ifname.ends_with(&tag)) {
                return tag;
            }
        }
    }
}

/// What a driver knows of network `n`.
pub(super) fn network_spec(n: &NetworkRecord) -> NetworkSpec {
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

/// What a driver knows of endpoint `e`.
pub(super) fn endpoint_spec(e: &EndpointRecord) -> EndpointSpec {
    EndpointSpec {
        allowed: e.allowed.clone(),
        id: e.id.clone(),
        name: e.name.clone(),
        addr: e.addr,
        mac: e.mac,
        host_ifname: e.host_ifname.clone(),
        peer_ifname: e.peer_ifname.clone(),
        kind: e.kind,
        publish: e.bindings.clone(),
    }
}
