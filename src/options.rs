//! Option builders for the CNM calls, in the shape of libnetwork's option
//! functions: `NetworkOptions::default().subnet(net).internal(true)`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use plexus_drivers::EndpointKind;

use crate::model::Engine;
use crate::publish::PortMapping;
use plexus_switch::MacAddr;

/// Driver-wide options ([`crate::Controller::configure_driver`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// Generic `key=value` options, kept for the driver.
    pub options: BTreeMap<String, String>,
}

impl DriverOptions {
    /// Adds a generic option.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

/// Options of [`crate::Controller::new_network`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// `--subnet`.
    pub subnet: Option<Ipv4Net>,
    /// `--ip-range`.
    pub ip_range: Option<Ipv4Net>,
    /// `--gateway`.
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
    /// `--host-loopback` / `--no-host-loopback`: whether the gateway's address
    /// reaches the host's loopback. `None`: off (a container reaching the
    /// host's 127.0.0.1 services is opt-in, rootful and rootless).
    pub host_loopback: Option<bool>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--mac-ageing`: MAC table ageing time, seconds (default 300).
    pub mac_ageing_secs: Option<u64>,
    /// `--mac-table-size`: bound on MAC table entries (default 8192).
    pub mac_table_size: Option<usize>,
    /// `--no-anti-spoofing`: accept frames whatever their source MAC.
    pub no_anti_spoofing: bool,
    /// The engine that makes it through its plugin, with its id for the
    /// network (12-64 lowercase hex digits, used as the Plexus id).
    pub engine: Option<(Engine, String)>,
}

impl NetworkOptions {
    /// Uses this subnet instead of a default pool.
    pub fn subnet(mut self, subnet: Ipv4Net) -> Self {
        self.subnet = Some(subnet);
        self
    }
    /// Allocates endpoint addresses only from this range of the subnet.
    pub fn ip_range(mut self, range: Ipv4Net) -> Self {
        self.ip_range = Some(range);
        self
    }
    /// Uses this gateway address instead of the subnet's first.
    pub fn gateway(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(gw);
        self
    }
    /// Whether the gateway's address reaches the host's loopback.
    pub fn host_loopback(mut self, on: bool) -> Self {
        self.host_loopback = Some(on);
        self
    }
    /// No external connectivity: no default route in the containers.
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }
    /// Endpoint MTU (68..=65535).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// MAC table ageing time in seconds (1..=1000000).
    pub fn mac_ageing_secs(mut self, secs: u64) -> Self {
        self.mac_ageing_secs = Some(secs);
        self
    }
    /// Bound on MAC table entries (1..=1048576).
    pub fn mac_table_size(mut self, n: usize) -> Self {
        self.mac_table_size = Some(n);
        self
    }
    /// Turns anti-spoofing (drop frames whose source MAC is not their
    /// endpoint's) on, the default, or off.
    pub fn anti_spoofing(mut self, on: bool) -> Self {
        self.no_anti_spoofing = !on;
        self
    }
}

/// Options of [`crate::Network::create_endpoint`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOptions {
    /// `--ip`: a static address (only on a network with a user subnet).
    pub ip: Option<Ipv4Addr>,
    /// `--mac`: a static MAC (unicast). Default: `02:42` + the IPv4 address.
    pub mac: Option<MacAddr>,
    /// Delete the endpoint together with the sandbox it joins.
    pub remove_with_sandbox: bool,
    /// `--type`: veth (default) or TAP.
    pub kind: EndpointKind,
    /// `--publish`: host ports (TCP and UDP) delivered into the container.
    pub publish: Vec<PortMapping>,
    /// `--allowed-address`: addresses the container may send from besides its
    /// own (anti-spoofing; for a router or a VM inside).
    pub allowed: Vec<Ipv4Net>,
    /// The engine that makes it, with its id for the endpoint (see
    /// [`NetworkOptions::engine`]).
    pub engine: Option<(Engine, String)>,
    /// `--alias`: more names the network's DNS answers for it.
    pub aliases: Vec<String>,
}

impl EndpointOptions {
    /// Lets the container also send from `net` (`--allowed-address`).
    pub fn allowed_address(mut self, net: Ipv4Net) -> Self {
        self.allowed.push(net);
        self
    }
    /// A static address.
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }
    /// A static MAC.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Publishes a container port on the host (`--publish`).
    pub fn publish(mut self, mapping: PortMapping) -> Self {
        self.publish.push(mapping);
        self
    }
    /// The interface kind: veth (default) or TAP.
    pub fn kind(mut self, kind: EndpointKind) -> Self {
        self.kind = kind;
        self
    }
    /// One more name the network's DNS answers for the endpoint.
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.aliases.push(name.into());
        self
    }
    /// Delete the endpoint when its sandbox is deleted.
    pub fn remove_with_sandbox(mut self, yes: bool) -> Self {
        self.remove_with_sandbox = yes;
        self
    }
}

/// Options of a sandbox: [`crate::Controller::new_sandbox`], or the sandbox that
/// [`crate::Endpoint::join`] creates on first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Hostname (default: the sandbox name).
    pub hostname: Option<String>,
    /// Domain name.
    pub domainname: Option<String>,
    /// Use the host's network namespace.
    pub host_mode: bool,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: crate::model::DnsSettings,
}

impl SandboxOptions {
    /// Sets the hostname.
    pub fn hostname(mut self, h: impl Into<String>) -> Self {
        self.hostname = Some(h.into());
        self
    }
    /// Sets the domain name.
    pub fn domainname(mut self, d: impl Into<String>) -> Self {
        self.domainname = Some(d.into());
        self
    }
    /// Shares the host's network namespace.
    pub fn host_mode(mut self, yes: bool) -> Self {
        self.host_mode = yes;
        self
    }
}

/// Options of [`crate::Endpoint::join`]: the sandbox options used if the join
/// creates the container's sandbox.
pub type JoinOptions = SandboxOptions;
