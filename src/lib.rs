//! Plexus: container networking on a userspace switch, in the model of Docker's
//! libnetwork (the Container Network Model).
//!
//! - A [`Controller`] owns the drivers, IPAM, the store and the sandboxes.
//! - A [`Network`] is a group of endpoints that reach each other at L2; one driver
//!   owns it (`bridge`: a bridge domain of the Plexus switch; `host`; `null`).
//! - An [`Endpoint`] is one interface of one network; its address is reserved at
//!   creation and kept across `leave`.
//! - A [`Sandbox`] is one container's network stack: a named network namespace
//!   with its hostname, `hosts` and `resolv.conf`.
//!
//! ```no_run
//! use plexus::{Config, Controller, DriverOptions, EndpointOptions, JoinOptions, NetworkOptions};
//!
//! let controller = Controller::new(Config::default())?;
//! controller.configure_driver("bridge", DriverOptions::default())?;
//! let network = controller.new_network("bridge", "network1", NetworkOptions::default())?;
//! let ep = network.create_endpoint("Endpoint1", EndpointOptions::default())?;
//! let sandbox_key = ep.join("container1", JoinOptions::default()
//!         .hostname("test")
//!         .domainname("docker.io"))?;
//! # Ok::<(), plexus::Error>(())
//! ```
//!
//! Every refusal is a typed [`Error`] (`ActiveEndpoints`, `NoSuchNetwork`,
//! `AlreadyJoined`, …); state lives in one crash-safe file under
//! [`Config::state_dir`].

pub mod api;
pub mod cni;
pub mod config;
mod controller;
pub mod diag;
pub mod docker;
pub mod error;
pub mod ipam;
pub mod mode;
pub mod model;
pub mod options;
pub mod publish;
pub mod store;

pub use config::Config;
pub use controller::{Controller, Endpoint, ExternalJoin, Network, Sandbox};
pub use error::{Error, Result};
pub use ipnet::Ipv4Net;
pub use model::{EndpointInfo, Engine, FdbInfo, NatInfo, NetworkInfo, PortInfo, SandboxInfo};
pub use options::{DriverOptions, EndpointOptions, JoinOptions, NetworkOptions, SandboxOptions};
pub use plexus_drivers::{EndpointKind, Switching};
pub use plexus_switch::MacAddr;
