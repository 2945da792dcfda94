//! Docker's plugin protocol: libnetwork's remote network driver and remote
//! IPAM driver, answered by a [`Controller`].
//!
//! Role: dockerd sends each call as `POST /NAME` with a JSON body on the
//! plugin's Unix socket (`/run/docker/plugins/NAME.sock`, served by the
//! daemon); [`Plugin::answer`] turns it into controller calls and a JSON
//! answer. The HTTP framing lives in the daemon; this module is transport
//! free, so the protocol's parsing is tested without a socket or a kernel.
//!
//! What maps to what:
//! - a Docker network is a Plexus `bridge` network whose id is Docker's
//!   network id (so `plexus network ls` and `docker network ls` show the
//!   same short id) and whose name is `docker-` and its first 12 digits
//!   (or `-o plexus.name=NAME`): its own switch domain, gateway and NAT. Its
//!   subnet and gateway are the ones Docker's IPAM (ours or its own) gave.
//! - a Docker endpoint is a Plexus endpoint, id for id: a veth pair whose
//!   host end is a switch port. At `Join`, Docker moves the other end into
//!   its own sandbox (`SrcName`, renamed `DstPrefix`N) and configures it; we
//!   answer the switch's gateway, so Docker adds no `docker_gwbridge`.
//! - Docker's port map (`-p`), which dockerd itself never programs for a
//!   remote driver, becomes Plexus published ports at
//!   `ProgramExternalConnectivity`, with the client's address kept, and
//!   goes at `RevokeExternalConnectivity`; `EndpointOperInfo` reports the
//!   host ports bound, so `docker port` and `docker inspect` show them.
//! - Plexus's objects made this way belong to Docker (`engine: docker`): the
//!   Plexus command line shows them but does not change them.
//!
//! Decisions:
//! - Every answer is `{"Err": "..."}` on failure, with a message that names
//!   the call and what was wrong, and nothing changed: an unknown call, a
//!   body that is not the call's JSON, an option we do not know, IPv6.
//! - Replays are answered, not refused: dockerd repeats calls after its own
//!   restart or a failure half-way, so a create of what exists with the same
//!   settings answers as the first did, and a delete of what is gone is done.
//! - IPAM answers are libnetwork's default IPAM's ([`ipam`]), and its pools
//!   are stored with the rest of the state.

pub mod ipam;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::controller::{Controller, Endpoint};
use crate::ipam::IpamError;
use crate::model::Engine;
use crate::options::{EndpointOptions, NetworkOptions};
use crate::publish::{PortMapping, PortRange, Protocol};
use plexus_switch::MacAddr;

/// The media type of the plugin protocol's answers.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";
/// The local address space `GetDefaultAddressSpaces` names.
pub const LOCAL_ADDRESS_SPACE: &str = "PlexusLocal";
/// The global address space (unused: Plexus's networks are local scope).
pub const GLOBAL_ADDRESS_SPACE: &str = "PlexusGlobal";
/// Largest request body read (a call's JSON is a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;
/// The `-o` options a Docker network takes.
pub const NETWORK_OPTIONS: &[&str] = &[
    "com.docker.network.driver.mtu",
    "plexus.name",
    "plexus.host_loopback",
    "plexus.anti_spoofing",
    "plexus.mac_ageing",
    "plexus.mac_table_size",
];

const OPT_GENERIC: &str = "com.docker.network.generic";
const OPT_INTERNAL: &str = "com.docker.network.internal";
const OPT_IPV6: &str = "com.docker.network.enable_ipv6";
const OPT_PORTMAP: &str = "com.docker.network.portmap";
const OPT_MAC: &str = "com.docker.network.endpoint.macaddress";
const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

/// Why a call failed; its text is the answer's `Err`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Not a call of the protocol.
    #[error("unknown call {0:?}: this plugin implements Plugin.Activate, NetworkDriver.* and IpamDriver.*")]
    UnknownCall(String),
    /// The body is not the call's JSON.
    #[error("{call}: malformed request: {why}")]
    BadRequest {
        /// The call.
        call: String,
        /// What is wrong.
        why: String,
    },
    /// A request Plexus does not serve (IPv6, global scope, an unknown option).
    #[error("{call}: {why}")]
    Unsupported {
        /// The call.
        call: String,
        /// Why not.
        why: String,
    },
    /// The controller refused.
    #[error("{call}: {source}")]
    Controller {
        /// The call.
        call: String,
        /// Its error.
        source: crate::Error,
    },
    /// The IPAM refused.
    #[error("{call}: {source}")]
    Ipam {
        /// The call.
        call: String,
        /// Its error.
        source: IpamError,
    },
}

impl PluginError {
    /// The HTTP status that goes with the answer.
    pub fn status(&self) -> u16 {
        match self {
            PluginError::UnknownCall(_) => 404,
            PluginError::BadRequest { .. } => 400,
            _ => 500,
        }
    }
}

/// Docker's calls on a controller.
#[derive(Debug, Clone)]
pub struct Plugin {
    ctrl: Controller,
}

/// Go's `encoding/json` writes a nil map or slice as `null`: read it as empty.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamData {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    gateway: String,
}

#[derive(Debug, Deserialize)]
struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    options: Map<String, Value>,
    #[serde(rename = "IPv4Data", default, deserialize_with = "nullable")]
    ipv4: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default, deserialize_with = "nullable")]
    ipv6: Vec<IpamData>,
}

#[derive(Debug, Deserialize)]
struct NetworkCall {
    #[serde(rename = "NetworkID")]
    network_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Interface {
    #[serde(default)]
    address: String,
    #[serde(rename = "AddressIPv6", default)]
    address_ipv6: String,
    #[serde(default)]
    mac_address: String,
}

#[derive(Debug, Deserialize)]
struct EndpointCall {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Interface", default, deserialize_with = "nullable")]
    interface: Interface,
    #[serde(rename = "SandboxKey", default)]
    sandbox_key: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    options: Map<String, Value>,
}

/// libnetwork's `types.PortBinding`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PortBinding {
    proto: u8,
    #[serde(rename = "IP", default, deserialize_with = "nullable")]
    ip: String,
    port: u16,
    #[serde(rename = "HostIP", default, deserialize_with = "nullable")]
    host_ip: String,
    #[serde(default)]
    host_port: u16,
    #[serde(default)]
    host_port_end: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestPool {
    #[serde(default)]
    address_space: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(default)]
    v6: bool,
}

#[derive(Debug, Deserialize)]
struct PoolCall {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    options: BTreeMap<String, String>,
}

fn parse<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(body).map_err(|e| PluginError::BadRequest {
        call: call.to_owned(),
        why: e.to_string(),
    })
}

/// The short name Plexus gives an object Docker made: `docker-` and the
/// first 12 digits of its id.
pub fn docker_name(id: &str) -> String {
    format!("docker-{}", id.get(..12).unwrap_or(id))
}

fn ipv4(call: &str, what: &str, text: &str) -> Result<Ipv4Addr, PluginError> {
    text.parse().map_err(|_| PluginError::BadRequest {
        call: call.to_owned(),
        why: format!("{what} {text:?} is not an IPv4 address"),
    })
}

/// An address with or without its prefix length (`10.0.0.2/24`, `10.0.0.2`).
fn ipv4_cidr(call: &str, what: &str, text: &str) -> Result<Ipv4Addr, PluginError> {
    match text.parse::<Ipv4Net>() {
        Ok(n) => Ok(n.addr()),
        Err(_) => ipv4(call, what, text),
    }
}

/// The `Err` answer of a failed call.
pub fn error_body(e: &PluginError) -> Value {
    json!({ "Err": e.to_string() })
}

impl Plugin {
    /// The plugin on `ctrl`.
    pub fn new(ctrl: Controller) -> Plugin {
        Plugin { ctrl }
    }

    /// Answers call `method` (the request path without its `/`): the HTTP
    /// status and the JSON body (`{"Err": ...}` on failure).
    pub fn answer(&self, method: &str, body: &[u8]) -> (u16, Value) {
        match self.handle(method, body) {
            Ok(v) => (200, v),
            Err(e) => (e.status(), error_body(&e)),
        }
    }

    /// Answers call `method`; the `Err` of a failure is the error's text.
    pub fn handle(&self, method: &str, body: &[u8]) -> Result<Value, PluginError> {
        let c = method;
        let ctl = |source: crate::Error| PluginError::Controller {
            call: c.to_owned(),
            source,
        };
        match method {
            "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
            "NetworkDriver.GetCapabilities" => Ok(json!({ "Scope": "local", "ConnectivityScope": "local" })),
            "NetworkDriver.CreateNetwork" => self.create_network(c, parse(c, body)?),
            "NetworkDriver.DeleteNetwork" => {
                let req: NetworkCall = parse(c, body)?;
                match self.ctrl.network(&req.network_id) {
                    Ok(n) => {
                        self.owned(c, n.info().map_err(ctl)?.engine)?;
                        n.delete().map_err(ctl)?;
                    }
                    Err(crate::Error::NoSuchNetwork(_)) => {}
                    Err(e) => return Err(ctl(e)),
                }
                Ok(json!({}))
            }
            "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => Err(PluginError::Unsupported {
                call: c.to_owned(),
                why: "Plexus networks are local scope (no swarm)".into(),
            }),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(c, parse(c, body)?),
            "NetworkDriver.DeleteEndpoint" => {
                let req: EndpointCall = parse(c, body)?;
                if let Some(ep) = self.endpoint_if_any(c, &req)? {
                    ep.delete(true).map_err(ctl)?;
                }
                Ok(json!({}))
            }
            "NetworkDriver.EndpointOperInfo" => {
                let req: EndpointCall = parse(c, body)?;
                let ep = self.endpoint(c, &req)?;
                let info = ep.info().map_err(ctl)?;
                let ports: Vec<PortBinding> = info
                    .ports
                    .iter()
                    .map(|b| PortBinding {
                        proto: proto_number(b.protocol),
                        ip: info.address.map(|a| a.addr().to_string()).unwrap_or_default(),
                        port: b.container_port,
                        host_ip: b.host_ip.to_string(),
                        host_port: b.host_port,
                        host_port_end: b.host_port,
                    })
                    .collect();
                let mut value = json!({ OPT_PORTMAP: ports });
                if let Some(mac) = info.mac {
                    value[OPT_MAC] = json!(mac.to_string());
                }
                Ok(json!({ "Value": value }))
            }
            "NetworkDriver.Join" => {
                let req: EndpointCall = parse(c, body)?;
                if req.sandbox_key.is_empty() {
                    return Err(PluginError::BadRequest {
                        call: c.to_owned(),
                        why: "no SandboxKey".into(),
                    });
                }
                let ep = self.endpoint(c, &req)?;
                let join = ep.join_external(Path::new(&req.sandbox_key)).map_err(ctl)?;
                Ok(json!({
                    "InterfaceName": { "SrcName": join.ifname, "DstPrefix": "eth" },
                    "Gateway": join.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    "GatewayIPv6": "",
                    "StaticRoutes": [],
                    "DisableGatewayService": join.gateway.is_none(),
                }))
            }
            "NetworkDriver.Leave" => {
                let req: EndpointCall = parse(c, body)?;
                if let Some(ep) = self.endpoint_if_any(c, &req)? {
                    ep.leave_external().map_err(ctl)?;
                }
                Ok(json!({}))
            }
            "NetworkDriver.ProgramExternalConnectivity" => {
                let req: EndpointCall = parse(c, body)?;
                self.program(c, &req)?;
                Ok(json!({}))
            }
            "NetworkDriver.RevokeExternalConnectivity" => {
                let req: EndpointCall = parse(c, body)?;
                if let Some(ep) = self.endpoint_if_any(c, &req)? {
                    ep.unpublish().map_err(ctl)?;
                }
                Ok(json!({}))
            }
            "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => {
                // Node discovery matters to multi-host drivers; a local one
                // has nothing to learn. The body must still be a JSON object.
                parse::<Map<String, Value>>(c, body)?;
                Ok(json!({}))
            }
            "IpamDriver.GetCapabilities" => Ok(json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })),
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": LOCAL_ADDRESS_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_ADDRESS_SPACE,
            })),
            "IpamDriver.RequestPool" => {
                let req: RequestPool = parse(c, body)?;
                if req.v6 {
                    return Err(PluginError::Unsupported {
                        call: c.to_owned(),
                        why: "IPv6 pools are not supported".into(),
                    });
                }
                let space = if req.address_space.is_empty() {
                    LOCAL_ADDRESS_SPACE
                } else {
                    req.address_space.as_str()
                };
                let ask = ipam::PoolAsk {
                    address_space: space,
                    pool: &req.pool,
                    sub_pool: &req.sub_pool,
                };
                let (id, pool) =
                    self.pools(c, |pools, taken, routes| ipam::request_pool(pools, taken, routes, &ask))?;
                Ok(json!({ "PoolID": id, "Pool": pool.to_string(), "Data": {} }))
            }
            "IpamDriver.ReleasePool" => {
                let req: PoolCall = parse(c, body)?;
                self.pools(c, |pools, _, _| ipam::release_pool(pools, &req.pool_id))?;
                Ok(json!({}))
            }
            "IpamDriver.RequestAddress" => {
                let req: PoolCall = parse(c, body)?;
                let wanted = match req.address.as_str() {
                    "" => None,
                    a => Some(ipv4_cidr(c, "Address", a)?),
                };
                let gateway = req.options.get("RequestAddressType").map(String::as_str) == Some(GATEWAY_REQUEST);
                let addr = self.pools(c, |pools, _, _| {
                    ipam::request_address(pools, &req.pool_id, wanted, gateway)
                })?;
                Ok(json!({ "Address": addr.to_string(), "Data": {} }))
            }
            "IpamDriver.ReleaseAddress" => {
                let req: PoolCall = parse(c, body)?;
                let addr = ipv4_cidr(c, "Address", &req.address)?;
                self.pools(c, |pools, _, _| ipam::release_address(pools, &req.pool_id, addr))?;
                Ok(json!({}))
            }
            other => Err(PluginError::UnknownCall(other.to_owned())),
        }
    }

    /// Runs an IPAM step over the stored pools.
    fn pools<R>(
        &self,
        call: &str,
        f: impl FnOnce(&mut Vec<crate::model::DockerPool>, &[Ipv4Net], &[Ipv4Net]) -> Result<R, IpamError>,
    ) -> Result<R, PluginError> {
        match self.ctrl.docker_pools(f) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(source)) => Err(PluginError::Ipam {
                call: call.to_owned(),
                source,
            }),
            Err(source) => Err(PluginError::Controller {
                call: call.to_owned(),
                source,
            }),
        }
    }

    /// Refuses to change what Docker did not make.
    fn owned(&self, call: &str, engine: Option<Engine>) -> Result<(), PluginError> {
        if engine == Some(Engine::Docker) {
            Ok(())
        } else {
            Err(PluginError::Unsupported {
                call: call.to_owned(),
                why: "that Plexus object was not made by Docker".into(),
            })
        }
    }

    /// The endpoint a call names (Docker's, in the network it names).
    fn endpoint(&self, call: &str, req: &EndpointCall) -> Result<Endpoint, PluginError> {
        let ctl = |source: crate::Error| PluginError::Controller {
            call: call.to_owned(),
            source,
        };
        let ep = self
            .ctrl
            .network(&req.network_id)
            .and_then(|n| n.endpoint(&req.endpoint_id))
            .map_err(ctl)?;
        self.owned(call, ep.info().map_err(ctl)?.engine)?;
        Ok(ep)
    }

    /// [`Plugin::endpoint`], or `None` if it (or its network) is gone, as a
    /// replayed delete finds it.
    fn endpoint_if_any(&self, call: &str, req: &EndpointCall) -> Result<Option<Endpoint>, PluginError> {
        match self.endpoint(call, req) {
            Ok(ep) => Ok(Some(ep)),
            Err(PluginError::Controller {
                source: crate::Error::NoSuchNetwork(_) | crate::Error::NoSuchEndpoint(_),
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_network(&self, c: &str, req: CreateNetwork) -> Result<Value, PluginError> {
        let unsupported = |why: String| PluginError::Unsupported {
            call: c.to_owned(),
            why,
        };
        if !req.ipv6.is_empty() || req.options.get(OPT_IPV6).is_some_and(|v| v == &json!(true)) {
            return Err(unsupported("IPv6 is not supported".into()));
        }
        let [data] = req.ipv4.as_slice() else {
            return Err(unsupported(format!(
                "a network takes exactly one IPv4 pool (got {})",
                req.ipv4.len()
            )));
        };
        let subnet = crate::ipam::parse_cidr(&data.pool).map_err(|source| PluginError::Ipam {
            call: c.to_owned(),
            source,
        })?;
        let gateway = match data.gateway.as_str() {
            "" => None,
            g => Some(ipv4_cidr(c, "Gateway", g)?),
        };
        let internal = req.options.get(OPT_INTERNAL).is_some_and(|v| v == &json!(true));
        let generic = match req.options.get(OPT_GENERIC) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(PluginError::BadRequest {
                    call: c.to_owned(),
                    why: format!("{OPT_GENERIC} is not an object: {other}"),
                });
            }
        };
        let mut opts = NetworkOptions {
            subnet: Some(subnet),
            gateway,
            internal,
            engine: Some((Engine::Docker, req.network_id.clone())),
            ..NetworkOptions::default()
        };
        let mut name = docker_name(&req.network_id);
        for (key, value) in &generic {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let bad = || {
                unsupported(format!(
                    "option {key}={text}: not a valid value (see `plexus daemon --help`, Docker plugin)"
                ))
            };
            let flag = || match text.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(bad()),
            };
            match key.as_str() {
                "com.docker.network.driver.mtu" => opts.mtu = Some(text.parse().map_err(|_| bad())?),
                "plexus.name" => name = text,
                "plexus.host_loopback" => opts.host_loopback = Some(flag()?),
                "plexus.anti_spoofing" => opts.no_anti_spoofing = !flag()?,
                "plexus.mac_ageing" => opts.mac_ageing_secs = Some(text.parse().map_err(|_| bad())?),
                "plexus.mac_table_size" => opts.mac_table_size = Some(text.parse().map_err(|_| bad())?),
                _ => {
                    return Err(unsupported(format!(
                        "unknown option {key} (known: {})",
                        NETWORK_OPTIONS.join(", ")
                    )));
                }
            }
        }
        // A replay (dockerd restarted or retried) of a network that exists.
        if let Ok(existing) = self.ctrl.network(&req.network_id) {
            let info = existing.info().map_err(|source| PluginError::Controller {
                call: c.to_owned(),
                source,
            })?;
            if info.subnet == Some(subnet) && (gateway.is_none() || info.gateway == gateway) {
                return Ok(json!({}));
            }
        }
        self.ctrl
            .new_network("bridge", &name, opts)
            .map_err(|source| PluginError::Controller {
                call: c.to_owned(),
                source,
            })?;
        Ok(json!({}))
    }

    fn create_endpoint(&self, c: &str, req: EndpointCall) -> Result<Value, PluginError> {
        let ctl = |source: crate::Error| PluginError::Controller {
            call: c.to_owned(),
            source,
        };
        if !req.interface.address_ipv6.is_empty() {
            return Err(PluginError::Unsupported {
                call: c.to_owned(),
                why: "IPv6 is not supported".into(),
            });
        }
        let ip = match req.interface.address.as_str() {
            "" => None,
            a => Some(ipv4_cidr(c, "Interface.Address", a)?),
        };
        let mac = match req.interface.mac_address.as_str() {
            "" => None,
            m => Some(m.parse::<MacAddr>().map_err(|_| PluginError::BadRequest {
                call: c.to_owned(),
                why: format!("Interface.MacAddress {m:?} is not a MAC address"),
            })?),
        };
        let net = self.ctrl.network(&req.network_id).map_err(ctl)?;
        self.owned(c, net.info().map_err(ctl)?.engine)?;
        // A replay of an endpoint that exists answers as the first call did.
        let ep = match net.endpoint(&req.endpoint_id) {
            Ok(ep) => {
                let info = ep.info().map_err(ctl)?;
                if ip.is_some_and(|ip| info.address.map(|a| a.addr()) != Some(ip))
                    || mac.is_some_and(|m| info.mac != Some(m))
                {
                    return Err(ctl(crate::Error::EndpointExists {
                        network: info.network,
                        endpoint: req.endpoint_id,
                    }));
                }
                ep
            }
            Err(_) => {
                let opts = EndpointOptions {
                    ip,
                    mac,
                    engine: Some((Engine::Docker, req.endpoint_id.clone())),
                    ..EndpointOptions::default()
                };
                net.create_endpoint(&docker_name(&req.endpoint_id), opts).map_err(ctl)?
            }
        };
        // Only what Docker did not give: it refuses an answer that changes
        // what it set.
        let info = ep.info().map_err(ctl)?;
        let mut iface = Map::new();
        if ip.is_none()
            && let Some(a) = info.address
        {
            iface.insert("Address".into(), json!(a.to_string()));
        }
        if mac.is_none()
            && let Some(m) = info.mac
        {
            iface.insert("MacAddress".into(), json!(m.to_string()));
        }
        Ok(json!({ "Interface": iface }))
    }

    /// Docker's port map becomes the endpoint's published ports (replacing
    /// what it published before; the same map again changes nothing).
    fn program(&self, c: &str, req: &EndpointCall) -> Result<(), PluginError> {
        let ctl = |source: crate::Error| PluginError::Controller {
            call: c.to_owned(),
            source,
        };
        let ep = self.endpoint(c, req)?;
        let bindings: Vec<PortBinding> = match req.options.get(OPT_PORTMAP) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| PluginError::BadRequest {
                call: c.to_owned(),
                why: format!("{OPT_PORTMAP}: {e}"),
            })?,
        };
        let mappings = bindings
            .iter()
            .map(|b| port_mapping(c, b))
            .collect::<Result<Vec<_>, _>>()?;
        let info = ep.info().map_err(ctl)?;
        let net = self.ctrl.network(&req.network_id).map_err(ctl)?.info().map_err(ctl)?;
        if net.internal {
            // As Docker's bridge: an internal network publishes nothing.
            return Ok(());
        }
        let same = mappings.len() == info.ports.len()
            && mappings.iter().zip(&info.ports).all(|(m, b)| {
                m.protocol == b.protocol
                    && m.bind_ip() == b.host_ip
                    && m.container_ports.start == b.container_port
                    && m.host_ports.is_none_or(|r| r.contains(b.host_port))
            });
        if same {
            return Ok(());
        }
        ep.unpublish().map_err(ctl)?;
        if !mappings.is_empty() {
            ep.publish(&mappings).map_err(ctl)?;
        }
        Ok(())
    }
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// One entry of Docker's port map as a Plexus mapping.
fn port_mapping(call: &str, b: &PortBinding) -> Result<PortMapping, PluginError> {
    let bad = |why: String| PluginError::BadRequest {
        call: call.to_owned(),
        why: format!("{OPT_PORTMAP}: {why}"),
    };
    let protocol = match b.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        p => {
            return Err(PluginError::Unsupported {
                call: call.to_owned(),
                why: format!("protocol {p} cannot be published (TCP and UDP can)"),
            });
        }
    };
    let host_ip = match b.host_ip.as_str() {
        "" | "0.0.0.0" => None,
        ip => Some(ipv4(call, "HostIP", ip)?),
    };
    if b.host_ip.contains(':') {
        return Err(bad(format!("HostIP {} is IPv6", b.host_ip)));
    }
    let host_ports = match (b.host_port, b.host_port_end) {
        (0, _) => None,
        (start, end) => {
            let end = end.max(start);
            Some(PortRange::new(start, end).ok_or_else(|| bad(format!("host ports {start}-{end}")))?)
        }
    };
    let container = PortRange::single(b.port).ok_or_else(|| bad(format!("container port {}", b.port)))?;
    PortMapping::new(host_ip, host_ports, container, protocol).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_are_short() {
        assert_eq!(docker_name("0123456789abcdef0123"), "docker-0123456789ab");
        assert_eq!(docker_name("abc"), "docker-abc");
    }

    #[test]
    fn port_maps_become_mappings() {
        let pb = |proto, host_ip: &str, port, hp, hpe| PortBinding {
            proto,
            ip: String::new(),
            port,
            host_ip: host_ip.into(),
            host_port: hp,
            host_port_end: hpe,
        };
        let m = port_mapping("c", &pb(6, "", 80, 8080, 8080)).unwrap();
        assert_eq!(m.to_string(), "8080:80/tcp");
        let m = port_mapping("c", &pb(17, "127.0.0.1", 53, 8053, 0)).unwrap();
        assert_eq!((m.host_ip, m.protocol), (Some(Ipv4Addr::LOCALHOST), Protocol::Udp));
        let m = port_mapping("c", &pb(6, "0.0.0.0", 80, 0, 0)).unwrap();
        assert_eq!(m.host_ports, None);
        let m = port_mapping("c", &pb(6, "", 80, 9000, 9010)).unwrap();
        assert_eq!(m.host_ports, PortRange::new(9000, 9010));
        assert!(matches!(
            port_mapping("c", &pb(132, "", 80, 80, 80)),
            Err(PluginError::Unsupported { .. })
        ));
        assert!(port_mapping("c", &pb(6, "::", 80, 80, 80)).is_err());
        assert!(port_mapping("c", &pb(6, "", 0, 80, 80)).is_err());
    }

    #[test]
    fn nulls_from_go_read_as_empty() {
        let req: EndpointCall = serde_json::from_str(
            r#"{"NetworkID":"n","EndpointID":"e","Interface":null,"Options":null,"SandboxKey":"/k"}"#,
        )
        .unwrap();
        assert!(req.options.is_empty());
        assert_eq!(req.interface.address, "");
        let req: CreateNetwork =
            serde_json::from_str(r#"{"NetworkID":"n","Options":null,"IPv4Data":null,"IPv6Data":null}"#).unwrap();
        assert!(req.ipv4.is_empty() && req.ipv6.is_empty());
    }

    #[test]
    fn malformed_bodies_are_bad_requests_naming_the_call() {
        for body in [&b"{"[..], b"[]", b"{\"NetworkID\": 5}", b"\xff"] {
            let e = parse::<NetworkCall>("NetworkDriver.DeleteNetwork", body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(
                e.to_string()
                    .starts_with("NetworkDriver.DeleteNetwork: malformed request"),
                "{e}"
            );
        }
        let e = parse::<EndpointCall>("NetworkDriver.Join", br#"{"NetworkID":"n"}"#).unwrap_err();
        assert!(e.to_string().contains("EndpointID"), "{e}");
    }
}
