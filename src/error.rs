//! The CNM library's error type.
//!
//! Every refusal of the model's rules has its own variant, so callers (the daemon,
//! the JSON API, tests) match on the kind, never on message text. [`Error::kind`]
//! gives the stable name used on the wire.

use crate::ipam::IpamError;
use crate::store::StoreError;
use plexus_drivers::DriverError;
use plexus_sandbox::SandboxError;

/// Errors of the CNM library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that is empty, too long, or has characters other than
    /// `[A-Za-z0-9_.-]` (or does not start with a letter or digit).
    #[error("invalid {what} name {name:?}: use 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit")]
    InvalidName {
        /// "network", "endpoint" or "sandbox".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An invalid option value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// No driver of that name.
    #[error("unknown network driver {0:?} (built in: bridge, host, null)")]
    UnknownDriver(String),
    /// A network of that name exists.
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// No network of that name or id.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// An endpoint of that name exists in the network.
    #[error("endpoint with name {endpoint} already exists in network {network}")]
    EndpointExists {
        /// The network.
        network: String,
        /// The endpoint.
        endpoint: String,
    },
    /// No endpoint of that name or id.
    #[error("endpoint {0} not found")]
    NoSuchEndpoint(String),
    /// A sandbox of that name exists.
    #[error("sandbox {0} already exists")]
    SandboxExists(String),
    /// No sandbox of that name or id.
    #[error("sandbox {0} not found")]
    NoSuchSandbox(String),
    /// The network still has endpoints.
    #[error("network {network} has active endpoints ({})", endpoints.join(", "))]
    ActiveEndpoints {
        /// The network.
        network: String,
        /// Its endpoints.
        endpoints: Vec<String>,
    },
    /// The endpoint is joined to a sandbox (delete it with force, or leave first).
    #[error("endpoint {endpoint} is joined to sandbox {sandbox}: leave first or force the delete")]
    ActiveContainer {
        /// The endpoint.
        endpoint: String,
        /// Its sandbox.
        sandbox: String,
    },
    /// The endpoint is already joined.
    #[error("endpoint {endpoint} is already joined to sandbox {sandbox}")]
    AlreadyJoined {
        /// The endpoint.
        endpoint: String,
        /// Its sandbox.
        sandbox: String,
    },
    /// The endpoint is not joined.
    #[error("endpoint {0} is not joined to any sandbox")]
    NotJoined(String),
    /// Only one network of the host driver may exist.
    #[error("a host network already exists: {0}")]
    HostNetworkExists(String),
    /// Host-mode and namespaced endpoints cannot share a sandbox.
    #[error("sandbox {sandbox}: {reason}")]
    SandboxMode {
        /// The sandbox.
        sandbox: String,
        /// Why the join is refused.
        reason: &'static str,
    },
    /// The object belongs to a container engine (made through its plugin):
    /// only that engine changes it.
    #[error("{what} {name} belongs to {engine}: change it through {engine} ({hint})")]
    OwnedByEngine {
        /// "network" or "endpoint".
        what: &'static str,
        /// Its name.
        name: String,
        /// The engine.
        engine: &'static str,
        /// The engine's command that does it.
        hint: &'static str,
    },
    /// IPAM refused.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A `--publish` that does not parse or whose host port is taken.
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A kernel operation failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The stable name of the error's kind, as used by the JSON API.
    pub fn kind(&self) -> &'static str {
        use crate::ipam::IpamError as I;
        match self {
            Error::InvalidName { .. } => "InvalidName",
            Error::InvalidOption(_) => "InvalidOption",
            Error::UnknownDriver(_) => "UnknownDriver",
            Error::NetworkExists(_) => "NetworkExists",
            Error::NoSuchNetwork(_) => "NoSuchNetwork",
            Error::EndpointExists { .. } => "EndpointExists",
            Error::NoSuchEndpoint(_) => "NoSuchEndpoint",
            Error::SandboxExists(_) => "SandboxExists",
            Error::NoSuchSandbox(_) => "NoSuchSandbox",
            Error::ActiveEndpoints { .. } => "ActiveEndpoints",
            Error::ActiveContainer { .. } => "ActiveContainer",
            Error::AlreadyJoined { .. } => "AlreadyJoined",
            Error::NotJoined(_) => "NotJoined",
            Error::HostNetworkExists(_) => "HostNetworkExists",
            Error::SandboxMode { .. } => "SandboxMode",
            Error::OwnedByEngine { .. } => "OwnedByEngine",
            Error::Ipam(e) => match e {
                I::BadCidr(_) => "BadCidr",
                I::OverlapPool { .. } => "OverlapPool",
                I::NoAvailablePool => "NoAvailablePool",
                I::NoAvailableIps(_) => "NoAvailableIps",
                I::OutOfRange { .. } => "OutOfRange",
                I::AlreadyAllocated(_) => "AlreadyAllocated",
                _ => "Ipam",
            },
            Error::Publish(e) => {
                use crate::publish::PublishError as P;
                match e {
                    P::PortAllocated { .. } | P::RangeAllocated { .. } | P::EphemeralExhausted { .. } => {
                        "PortAllocated"
                    }
                    P::Privileged { .. } => "PrivilegedPort",
                    _ => "InvalidPort",
                }
            }
            Error::Driver(_) => "Driver",
            Error::Sandbox(_) => "Kernel",
            Error::Store(StoreError::Locked { .. }) => "StoreLocked",
            Error::Store(_) => "Store",
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
