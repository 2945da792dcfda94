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

//!
//! Layout: this file holds the controller, its locked core and the handles;
//! one file per noun for the operations on it ([`network`], [`endpoint`],
//! [`sandbox`]), [`recovery`] for `run` and the intents, [`switch`] for the
//! switch's tables, [`records`] for lookups and the specs drivers get, and
//! [`namespaces`] for the namespace backend (rootful named namespaces or the
//! rootless holder), chosen once at start.

mod endpoint;
pub use endpoint::ExternalJoin;
mod names;
mod namespaces;
mod network;
mod records;
mod recovery;
mod sandbox;
mod switch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use plexus_drivers::Driver;
use plexus_switch::DataplaneConfig;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::mode::Mode;
use crate::model::State;
use crate::options::DriverOptions;
use crate::publish::PortAllocator;
use crate::store::Store;

/// The CNM controller. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct Controller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// Where sandboxes' namespaces live (rootful or rootless), chosen once.
    namespaces: Box<dyn namespaces::Namespaces>,
    drivers: BTreeMap<&'static str, Arc<dyn Driver>>,
    core: Mutex<Core>,
    /// Where the gateways' DNS forwards (resolved at start).
    dns_upstreams: Vec<std::net::SocketAddrV4>,
}

#[derive(Debug)]
struct Core {
    state: State,
    ipam: Ipam,
    /// Host ports held by published endpoints (derived from the records).
    ports: PortAllocator,
    store: Store,
    driver_options: BTreeMap<String, DriverOptions>,
    /// What the start finished or undid of changes left half done.
    recovered: Vec<String>,
    /// A commit changed the records since the names were last pushed.
    names_stale: bool,
}

/// The controller's lock. Released, it pushes the networks' names to the
/// drivers if a commit changed the records ([`names`]).
struct CoreGuard<'a> {
    core: MutexGuard<'a, Core>,
    ctrl: &'a Controller,
}

impl std::ops::Deref for CoreGuard<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl std::ops::DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        if self.core.names_stale {
            self.core.names_stale = false;
            self.ctrl.push_names(&self.core);
        }
    }
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

pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<()> {
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

/// An engine's id for an object it makes through its plugin (Docker's are 64
/// lowercase hex digits): it becomes the Plexus id, so it must look like one.
fn validate_engine_id(id: &str) -> Result<()> {
    if (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Error::InvalidOption(format!(
            "id {id:?}: an engine's id must be 12-64 lowercase hex digits"
        )))
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
        let dns_upstreams = config.upstreams();
        let switch = DataplaneConfig {
            busy_poll: config.busy_poll,
            nat: config.nat,
            dns: plexus_switch::dns::DnsConfig {
                upstreams: dns_upstreams.clone(),
                ..plexus_switch::dns::DnsConfig::default()
            },
        };
        let drivers = plexus_drivers::builtin(
            switch,
            config.mode == Mode::Rootless,
            &config.rx_steering,
            config.veth_io,
        )?
        .into_iter()
        .map(|d| (d.name(), d))
        .collect();
        let namespaces = namespaces::for_mode(config.mode, &config.state_dir);
        let core = Core {
            state,
            ipam,
            ports,
            store,
            driver_options: BTreeMap::new(),
            recovered: Vec::new(),
            // Pushed once the switch has its domains and ports again (below).
            names_stale: false,
        };
        let ctrl = Controller {
            inner: Arc::new(Inner {
                config,
                namespaces,
                drivers,
                core: Mutex::new(core),
                dns_upstreams,
            }),
        };
        ctrl.reconcile();
        ctrl.restore_dataplane()?;
        ctrl.recover();
        // The switch has its domains and ports again: their names go now.
        ctrl.lock().names_stale = true;
        Ok(ctrl)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn lock(&self) -> CoreGuard<'_> {
        // A panic while holding the lock cannot leave the records half-updated in a
        // way later calls could not handle (each operation commits at its end), so
        // a poisoned lock is taken over.
        CoreGuard {
            core: self.inner.core.lock().unwrap_or_else(|p| p.into_inner()),
            ctrl: self,
        }
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
}
