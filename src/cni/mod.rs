//! CNI (the Container Network Interface, specification 1.0 and 1.1) on the
//! controller: what `plexus-cni`'s ADD, DEL, CHECK, GC and STATUS do, free
//! of any transport. The plugin binary (tools) reads the runtime's
//! environment and stdin, sends them to the daemon as one API request
//! (`cni`), and prints what comes back; VERSION it answers itself.
//!
//! Decisions:
//! - A CNI attachment (network, `CNI_CONTAINERID`, `CNI_IFNAME`) is one
//!   Plexus endpoint owned by the engine [`Engine::Cni`]; its id is derived
//!   from the attachment (FNV-1a, stable across versions), so DEL, CHECK and
//!   GC find it from the runtime's own keys, with nothing else stored.
//! - ADD makes the endpoint, moves its interface into `CNI_NETNS` as
//!   `CNI_IFNAME` and configures it (the daemon does it, as for its own
//!   sandboxes), then publishes `runtimeConfig.portMappings` (the client's
//!   address kept). Any failure removes what was made: a failed ADD leaves
//!   nothing behind.
//! - The network is the Plexus network named by the configuration's
//!   `network` (default: its `name`); with `subnet` it is created when
//!   missing, and a network with another subnet is a configuration error.
//! - DEL is idempotent: an attachment that is gone (or never was) is done.
//! - Errors are the spec's codes: 1 incompatible version, 3 unknown
//!   container, 4 bad environment, 6 undecodable, 7 invalid configuration,
//!   11 try again later (the plugin's own, when the daemon is down), 50 not
//!   available (STATUS); 100 and up are Plexus's: 100 the controller refused,
//!   101 CHECK found a difference.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::Engine;
use crate::options::{EndpointOptions, NetworkOptions};
use crate::publish::{PortMapping, PortRange};
use crate::{Controller, EndpointInfo};

/// The plugin's `type` in a network configuration.
pub const PLUGIN_TYPE: &str = "plexus-cni";

/// The versions of the specification this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// Error codes of the specification (and Plexus's own, from 100).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plexus refused the operation (its message says why).
    pub const REFUSED: u32 = 100;
    /// CHECK: the attachment is not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
}

/// A CNI error object (printed on stdout, with a failing exit status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    /// The version of the configuration it answers.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The spec's code.
    pub code: u32,
    /// What went wrong, for a person.
    pub msg: String,
    /// More detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error of `code` with `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            cni_version: SUPPORTED_VERSIONS[1].to_owned(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    fn details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }

    fn version(mut self, v: &str) -> CniError {
        v.clone_into(&mut self.cni_version);
        self
    }

    fn refused(e: &crate::Error) -> CniError {
        CniError::new(code::REFUSED, e.to_string())
    }
}

/// The commands the daemon runs (VERSION is the plugin's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it.
    Del,
    /// Verify an attachment.
    Check,
    /// Remove attachments not in the valid list (1.1).
    Gc,
    /// Whether ADD can be served (1.1).
    Status,
}

/// One command, as the plugin got it from the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for GC and STATUS).
    #[serde(default)]
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL).
    #[serde(default)]
    pub netns: String,
    /// `CNI_IFNAME`.
    #[serde(default)]
    pub ifname: String,
    /// `CNI_ARGS` (`K=V;K=V`).
    #[serde(default)]
    pub args: String,
    /// The network configuration from stdin, as sent.
    pub config: Value,
}

/// The network configuration `plexus-cni` reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    /// The configuration's version.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The CNI network's name.
    pub name: String,
    /// Must be [`PLUGIN_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The Plexus network (default: `name`).
    #[serde(default)]
    pub network: Option<String>,
    /// Its subnet: the network is created with it when missing.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// The daemon's socket (the plugin's concern; ignored here).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Capabilities' arguments from the runtime.
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: RuntimeConfig,
    /// GC's list of the attachments to keep.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// `runtimeConfig`: the capabilities this plugin takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuntimeConfig {
    /// The `portMappings` capability.
    #[serde(default, rename = "portMappings")]
    pub port_mappings: Vec<CniPortMapping>,
}

/// One entry of `portMappings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniPortMapping {
    /// The host port.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// The container port.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The host address (default: all).
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// One attachment of GC's valid list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// Its container.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface.
    pub ifname: String,
}

/// The plugin's answer to VERSION.
pub fn version_answer() -> Value {
    json!({ "cniVersion": SUPPORTED_VERSIONS[1], "supportedVersions": SUPPORTED_VERSIONS })
}

/// Reads and checks a configuration: decodable (6), this plugin's type and a
/// supported version (1); DEL takes any type and version, as it must clean
/// up whatever it can.
pub fn parse_config(config: &Value, command: Command) -> Result<NetConf, CniError> {
    let version = config.get("cniVersion").and_then(Value::as_str).unwrap_or("");
    let conf: NetConf = serde_json::from_value(config.clone()).map_err(|e| {
        CniError::new(code::DECODING_FAILURE, format!("the network configuration: {e}")).version(version)
    })?;
    if command == Command::Del {
        return Ok(conf);
    }
    if conf.kind != PLUGIN_TYPE {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("type {:?}: this plugin is {PLUGIN_TYPE:?}", conf.kind),
        )
        .version(version));
    }
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(conf)
}

impl NetConf {
    /// The Plexus network it names.
    pub fn network_name(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }
}

/// The endpoint id of an attachment: 32 hex digits from two FNV-1a hashes
/// of (network, container, interface).
pub fn attachment_id(network: &str, container_id: &str, ifname: &str) -> String {
    let hash = |seed: u64| {
        let mut h = seed;
        for part in ["plexus-cni/1", network, container_id, ifname] {
            for &b in part.as_bytes().iter().chain(&[0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    };
    format!(
        "{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x6c62_272e_07bb_0142)
    )
}

/// The endpoint's name: `cni-` and the first 12 digits of its id.
fn endpoint_name(id: &str) -> String {
    format!("cni-{}", &id[..12])
}

/// `CNI_ARGS` as pairs.
fn cni_args(args: &str) -> impl Iterator<Item = (&str, &str)> {
    args.split(';').filter_map(|kv| kv.split_once('='))
}

/// Runs `call` against `ctrl`: ADD's result, `null` for the others.
pub fn run(ctrl: &Controller, call: &Call) -> Result<Value, CniError> {
    let conf = parse_config(&call.config, call.command)?;
    let v = conf.cni_version.clone();
    let r = match call.command {
        Command::Add => add(ctrl, call, &conf),
        Command::Del => del(ctrl, call, &conf).map(|()| Value::Null),
        Command::Check => check(ctrl, call, &conf).map(|()| Value::Null),
        Command::Gc => gc(ctrl, &conf).map(|()| Value::Null),
        Command::Status => status(ctrl, &conf).map(|()| Value::Null),
    };
    r.map_err(|e| e.version(&v))
}

/// The environment every attachment command needs (4 when missing).
fn attachment_env(call: &Call, netns_needed: bool) -> Result<(), CniError> {
    let bad = |what: &str| CniError::new(code::INVALID_ENVIRONMENT, what.to_owned());
    if call.container_id.is_empty() {
        return Err(bad("CNI_CONTAINERID is empty"));
    }
    if !call
        .container_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(bad("CNI_CONTAINERID may hold only [A-Za-z0-9_.-]"));
    }
    if !plexus_sandbox::netlink::valid_link_name(&call.ifname) {
        return Err(bad(
            "CNI_IFNAME is not an interface name (1-15 characters, no '/' or space)",
        ));
    }
    if netns_needed && call.netns.is_empty() {
        return Err(bad("CNI_NETNS is empty"));
    }
    Ok(())
}

/// The network of `conf`, created with its `subnet` when missing.
fn network(ctrl: &Controller, conf: &NetConf) -> Result<crate::Network, CniError> {
    let name = conf.network_name();
    match ctrl.network(name) {
        Ok(net) => {
            let info = net.info().map_err(|e| CniError::refused(&e))?;
            if let Some(want) = conf.subnet
                && info.subnet != Some(want)
            {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "network {name} has subnet {}, the configuration says {want}",
                        info.subnet.map_or_else(|| "none".to_owned(), |s| s.to_string())
                    ),
                ));
            }
            Ok(net)
        }
        Err(crate::Error::NoSuchNetwork(_)) => {
            let Some(subnet) = conf.subnet else {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "Plexus has no network {name}: create it (plexus network create --subnet CIDR {name}) \
                         or give \"subnet\" in the configuration"
                    ),
                ));
            };
            let opts = NetworkOptions {
                subnet: Some(subnet),
                ..NetworkOptions::default()
            };
            match ctrl.new_network("bridge", name, opts) {
                // Another ADD made it meanwhile: use it (its subnet checked).
                Err(crate::Error::NetworkExists(_)) => network(ctrl, conf),
                r => r.map_err(|e| CniError::refused(&e)),
            }
        }
        Err(e) => Err(CniError::refused(&e)),
    }
}

/// The mappings of `portMappings` (7 when one is not TCP or UDP, or port 0).
fn mappings(conf: &NetConf) -> Result<Vec<PortMapping>, CniError> {
    conf.runtime_config
        .port_mappings
        .iter()
        .map(|m| {
            let bad = |why: String| CniError::new(code::INVALID_CONFIG, format!("portMappings: {why}"));
            let protocol = match m.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("" | "tcp") => crate::publish::Protocol::Tcp,
                Some("udp") => crate::publish::Protocol::Udp,
                Some(p) => return Err(bad(format!("protocol {p:?} cannot be published (tcp and udp can)"))),
            };
            let host_ip = match m.host_ip.as_deref() {
                None | Some("" | "0.0.0.0") => None,
                Some(ip) => Some(
                    ip.parse::<Ipv4Addr>()
                        .map_err(|_| bad(format!("hostIP {ip:?} is not an IPv4 address")))?,
                ),
            };
            let port = |p: u16, what: &str| PortRange::new(p, p).ok_or_else(|| bad(format!("{what} {p}")));
            PortMapping::new(
                host_ip,
                Some(port(m.host_port, "hostPort")?),
                port(m.container_port, "containerPort")?,
                protocol,
            )
            .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// ADD: the endpoint, its interface in the container, its published ports;
/// the CNI result.
fn add(ctrl: &Controller, call: &Call, conf: &NetConf) -> Result<Value, CniError> {
    attachment_env(call, true)?;
    let netns = Path::new(&call.netns);
    if !plexus_sandbox::netns::is_nsfs(netns) {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS {} is not a network namespace", call.netns),
        ));
    }
    let mappings = mappings(conf)?;
    let net = network(ctrl, conf)?;
    let id = attachment_id(conf.network_name(), &call.container_id, &call.ifname);
    if let Ok(ep) = net.endpoint(&id) {
        let info = ep.info().map_err(|e| CniError::refused(&e))?;
        if info.external_sandbox.as_deref() == Some(netns) {
            // A replay of an ADD that went through.
            return result(conf, call, &info);
        }
        // Left by a container whose DEL never came: its namespace is gone.
        let _ = ep.leave_external();
        let _ = ep.delete(true);
    }
    let aliases = cni_args(&call.args)
        .filter(|(k, v)| *k == "K8S_POD_NAME" && crate::controller::validate_name("alias", v).is_ok())
        .map(|(_, v)| v.to_owned())
        .collect();
    let opts = EndpointOptions {
        engine: Some((Engine::Cni, id.clone())),
        aliases,
        ..EndpointOptions::default()
    };
    let ep = net
        .create_endpoint(&endpoint_name(&id), opts)
        .map_err(|e| CniError::refused(&e))?;
    let undo = |e: crate::Error| {
        let _ = ep.unpublish();
        let _ = ep.leave_external();
        let _ = ep.delete(true);
        CniError::refused(&e)
    };
    ep.attach_netns(netns, &call.ifname).map_err(undo)?;
    if !mappings.is_empty() && !net.info().is_ok_and(|n| n.internal) {
        ep.publish(&mappings).map_err(undo)?;
    }
    let info = ep.info().map_err(undo)?;
    result(conf, call, &info)
}

/// The CNI result of an attachment.
fn result(conf: &NetConf, call: &Call, ep: &EndpointInfo) -> Result<Value, CniError> {
    let mac = ep.mac.map(|m| m.to_string()).unwrap_or_default();
    let mut r = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [
            { "name": ep.host_ifname },
            { "name": call.ifname, "mac": mac, "sandbox": call.netns },
        ],
        "ips": [],
        "routes": [],
        "dns": {},
    });
    if let Some(addr) = ep.address {
        let mut ip = json!({ "address": addr.to_string(), "interface": 1 });
        if let Some(gw) = ep.gateway {
            ip["gateway"] = json!(gw.to_string());
            r["routes"] = json!([{ "dst": "0.0.0.0/0", "gw": gw.to_string() }]);
            r["dns"] = json!({ "nameservers": [gw.to_string()] });
        }
        r["ips"] = json!([ip]);
    }
    Ok(r)
}

/// The attachment's endpoint, if it exists.
fn attached(ctrl: &Controller, call: &Call, conf: &NetConf) -> Option<crate::Endpoint> {
    let id = attachment_id(conf.network_name(), &call.container_id, &call.ifname);
    ctrl.endpoint(&id).ok()
}

/// DEL: the endpoint goes (its links with it, wherever they are); nothing to
/// remove is success.
fn del(ctrl: &Controller, call: &Call, conf: &NetConf) -> Result<(), CniError> {
    attachment_env(call, false)?;
    let Some(ep) = attached(ctrl, call, conf) else {
        return Ok(());
    };
    let _ = ep.unpublish();
    let _ = ep.leave_external();
    match ep.delete(true) {
        Ok(()) | Err(crate::Error::NoSuchEndpoint(_)) => Ok(()),
        Err(e) => Err(CniError::refused(&e)),
    }
}

/// CHECK: the endpoint exists and is held by `CNI_NETNS`, where `CNI_IFNAME`
/// has its MAC, its address and, unless internal, the default route
/// through the gateway; `prevResult`'s address, if any, is the same.
fn check(ctrl: &Controller, call: &Call, conf: &NetConf) -> Result<(), CniError> {
    attachment_env(call, true)?;
    let failed = |msg: String| CniError::new(code::CHECK_FAILED, msg);
    let ep = attached(ctrl, call, conf).ok_or_else(|| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "no attachment of container {} ({}) on network {}",
                call.container_id,
                call.ifname,
                conf.network_name()
            ),
        )
    })?;
    let info = ep.info().map_err(|e| CniError::refused(&e))?;
    let netns = Path::new(&call.netns);
    if info.external_sandbox.as_deref() != Some(netns) {
        return Err(failed(format!("endpoint {} is not held by {}", info.name, call.netns)));
    }
    if let Some(prev) = call.config.get("prevResult")
        && let (Some(addr), Some(ips)) = (info.address, prev.get("ips").and_then(Value::as_array))
        && !ips
            .iter()
            .any(|i| i.get("address").and_then(Value::as_str) == Some(addr.to_string().as_str()))
    {
        return Err(failed(format!("prevResult does not have the address {addr}")));
    }
    let seen = plexus_sandbox::netns::run_in(netns, || inspect(&call.ifname))
        .map_err(|e| failed(format!("{}: {e}", call.netns)))?
        .map_err(|e| failed(format!("{} in {}: {e}", call.ifname, call.netns)))?;
    if let Some(mac) = info.mac
        && seen.mac != Some(mac.octets())
    {
        return Err(failed(format!("{} does not have the MAC {mac}", call.ifname)));
    }
    if let Some(addr) = info.address
        && !seen.addrs.contains(&addr)
    {
        return Err(failed(format!("{} does not have the address {addr}", call.ifname)));
    }
    if !seen.up {
        return Err(failed(format!("{} is down", call.ifname)));
    }
    if let Some(gw) = info.gateway
        && !seen.default_via.contains(&gw)
    {
        return Err(failed(format!("no default route through {gw} on {}", call.ifname)));
    }
    Ok(())
}

/// What CHECK sees of an interface in the namespace it runs in.
struct Seen {
    mac: Option<[u8; 6]>,
    up: bool,
    addrs: Vec<Ipv4Net>,
    default_via: Vec<Ipv4Addr>,
}

fn inspect(ifname: &str) -> Result<Seen, plexus_sandbox::SandboxError> {
    let mut nl = plexus_sandbox::netlink::Netlink::open()?;
    let link = nl.link(ifname)?;
    let addrs = nl.addresses(link.index)?;
    let default_via = nl
        .routes()?
        .into_iter()
        .filter(|r| r.dst.prefix_len() == 0 && r.oif == Some(link.index))
        .filter_map(|r| r.gateway)
        .collect();
    Ok(Seen {
        mac: link.mac,
        up: link.up,
        addrs,
        default_via,
    })
}

/// The CNI endpoints of `conf`'s network.
fn cni_endpoints(ctrl: &Controller, conf: &NetConf) -> Result<Vec<crate::Endpoint>, CniError> {
    let net = match ctrl.network(conf.network_name()) {
        Ok(n) => n,
        Err(crate::Error::NoSuchNetwork(_)) => return Ok(Vec::new()),
        Err(e) => return Err(CniError::refused(&e)),
    };
    let eps = net.endpoints().map_err(|e| CniError::refused(&e))?;
    Ok(eps
        .into_iter()
        .filter(|e| e.info().is_ok_and(|i| i.engine == Some(Engine::Cni)))
        .collect())
}

/// GC: every CNI endpoint of the network that no valid attachment names goes.
fn gc(ctrl: &Controller, conf: &NetConf) -> Result<(), CniError> {
    let valid: BTreeSet<String> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| attachment_id(conf.network_name(), &a.container_id, &a.ifname))
        .collect();
    let mut failed = Vec::new();
    for ep in cni_endpoints(ctrl, conf)? {
        if valid.contains(ep.id()) {
            continue;
        }
        let _ = ep.unpublish();
        let _ = ep.leave_external();
        if let Err(e) = ep.delete(true) {
            failed.push(e.to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(code::REFUSED, "some stale attachments could not be removed").details(failed.join("; ")))
    }
}

/// STATUS: the daemon answers (or the plugin would not be here) and ADD can
/// find or make the network.
fn status(ctrl: &Controller, conf: &NetConf) -> Result<(), CniError> {
    match ctrl.network(conf.network_name()) {
        Ok(_) => Ok(()),
        Err(crate::Error::NoSuchNetwork(n)) if conf.subnet.is_none() => Err(CniError::new(
            code::NOT_AVAILABLE,
            format!("Plexus has no network {n} and the configuration gives no subnet to create it"),
        )),
        Err(crate::Error::NoSuchNetwork(_)) => Ok(()),
        Err(e) => Err(CniError::new(code::NOT_AVAILABLE, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: Value) -> Value {
        let mut c = json!({ "cniVersion": "1.0.0", "name": "net1", "type": PLUGIN_TYPE });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn attachment_ids_are_stable_and_distinct() {
        let a = attachment_id("n", "abc", "eth0");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, attachment_id("n", "abc", "eth0"));
        // A known value: the id must never change (DEL after an upgrade).
        // (Computed independently with Python's integers.)
        assert_eq!(a, "2ab26c3d2b1447ec329313a204c5d8c3");
        assert_ne!(a, attachment_id("n", "abc", "eth1"));
        assert_ne!(a, attachment_id("n2", "abc", "eth0"));
        // The separators keep ("ab", "c") apart from ("a", "bc").
        assert_ne!(attachment_id("n", "ab", "ceth0"), attachment_id("n", "abc", "eth0"));
    }

    #[test]
    fn configurations_are_checked() {
        let c = parse_config(&conf(json!({ "subnet": "10.1.0.0/24", "network": "px" })), Command::Add).unwrap();
        assert_eq!(c.network_name(), "px");
        assert_eq!(c.subnet, Some("10.1.0.0/24".parse().unwrap()));
        let e = parse_config(&conf(json!({ "type": "bridge" })), Command::Add).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        let e = parse_config(&conf(json!({ "cniVersion": "0.3.1" })), Command::Add).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        let e = parse_config(&conf(json!({ "subnet": "nope" })), Command::Add).unwrap_err();
        assert_eq!((e.code, e.cni_version.as_str()), (code::DECODING_FAILURE, "1.0.0"));
        // DEL cleans up whatever it can.
        assert!(parse_config(&conf(json!({ "type": "bridge" })), Command::Del).is_ok());
    }

    #[test]
    fn port_mappings_become_published_ports() {
        let c = parse_config(
            &conf(json!({ "runtimeConfig": { "portMappings": [
                { "hostPort": 8080, "containerPort": 80, "protocol": "tcp" },
                { "hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1" },
            ] } })),
            Command::Add,
        )
        .unwrap();
        let m = mappings(&c).unwrap();
        assert_eq!(m[0].to_string(), "8080:80/tcp");
        assert_eq!(m[1].to_string(), "127.0.0.1:5353:53/udp");
        for bad in [
            json!({ "hostPort": 1, "containerPort": 2, "protocol": "sctp" }),
            json!({ "hostPort": 0, "containerPort": 2 }),
            json!({ "hostPort": 1, "containerPort": 2, "hostIP": "::1" }),
        ] {
            let c = parse_config(
                &conf(json!({ "runtimeConfig": { "portMappings": [bad] } })),
                Command::Add,
            )
            .unwrap();
            assert_eq!(mappings(&c).unwrap_err().code, code::INVALID_CONFIG);
        }
    }

    #[test]
    fn the_environment_is_checked() {
        let call = |id: &str, ifname: &str, netns: &str| Call {
            command: Command::Add,
            container_id: id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            args: String::new(),
            config: Value::Null,
        };
        assert!(attachment_env(&call("abc", "eth0", "/run/netns/x"), true).is_ok());
        for c in [
            call("", "eth0", "/x"),
            call("a/b", "eth0", "/x"),
            call("abc", "", "/x"),
            call("abc", "a-very-long-interface-name", "/x"),
            call("abc", "eth0", ""),
        ] {
            assert_eq!(
                attachment_env(&c, true).unwrap_err().code,
                code::INVALID_ENVIRONMENT,
                "{c:?}"
            );
        }
        assert_eq!(
            cni_args("IgnoreUnknown=1;K8S_POD_NAME=web").collect::<Vec<_>>(),
            [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")]
        );
    }
}
