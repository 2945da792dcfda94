//! The daemon's JSON API: request and response types, shared by the daemon and
//! the CLI. `docs/api.md` documents every request and response; the tests at the
//! bottom parse every example there, so the document and these types cannot
//! drift apart.
//!
//! Wire format: newline-delimited JSON over a Unix stream socket. A client writes
//! one request object per line and reads one response object per line, in order;
//! a connection may carry any number of requests.
//!
//! Decisions:
//! - Requests are one internally tagged enum (`"op": "network.create"`) with
//!   `deny_unknown_fields`, so a misspelt field is a `BadRequest`, not silently
//!   ignored.
//! - Addresses, CIDRs, MACs and published-port specs travel as strings and are
//!   parsed by the daemon with the library's parsers, so a bad value gets the
//!   library's typed error kind (`BadCidr`, `InvalidOption`, `InvalidPort`) rather
//!   than a generic decoding error.
//! - Responses are `{"ok":true,"result":…}` or `{"ok":false,"error":{"kind","message"}}`;
//!   `kind` is [`crate::Error::kind`] or one of the protocol kinds below.
//! - Results reuse the library's `*Info` views unchanged.

use std::path::PathBuf;

use crate::{EndpointInfo, EndpointKind, SandboxInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API revision, reported by `version` and `info`.
pub const API_VERSION: u32 = 1;

/// Error kind of a request line that is not valid JSON or not a known request.
pub const KIND_BAD_REQUEST: &str = "BadRequest";
/// Error kind of a request that made the daemon panic (a bug; please report it).
pub const KIND_INTERNAL: &str = "Internal";
/// Error kind of a request that arrived while the daemon was shutting down.
pub const KIND_SHUTTING_DOWN: &str = "ShuttingDown";
/// The daemon serves its most connections already ([`ApiLimits::max_clients`]).
pub const KIND_TOO_MANY_CLIENTS: &str = "TooManyClients";

/// Longest request line the daemon reads (bytes, without the newline).
pub const MAX_REQUEST_LEN: usize = 1 << 20;

/// One request: the `op` field selects the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", deny_unknown_fields)]
pub enum Request {
    /// Create a network.
    #[serde(rename = "network.create")]
    NetworkCreate {
        /// Network name.
        name: String,
        /// Driver: `bridge` (default), `host` or `null`.
        #[serde(default = "default_driver")]
        driver: String,
        /// Subnet CIDR; default: a free pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subnet: Option<String>,
        /// Gateway address; default: the subnet's first address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        /// CIDR inside the subnet to allocate endpoint addresses from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_range: Option<String>,
        /// No external connectivity (no default route in containers).
        #[serde(default, skip_serializing_if = "is_false")]
        internal: bool,
        /// TCP and UDP to the gateway's address reach the host's loopback
        /// (default: on for a rootless daemon, off for a rootful one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_loopback: Option<bool>,
        /// Endpoint MTU.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        /// MAC table ageing time, seconds; default 300.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac_ageing_secs: Option<u64>,
        /// Bound on MAC table entries; default 8192.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac_table_size: Option<usize>,
        /// Drop frames whose source MAC is not their endpoint's; default `true`.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        anti_spoofing: bool,
    },
    /// List networks.
    #[serde(rename = "network.ls")]
    NetworkLs {},
    /// Show one network.
    #[serde(rename = "network.inspect")]
    NetworkInspect {
        /// Name or id.
        name: String,
    },
    /// Delete a network (refused while it has endpoints).
    #[serde(rename = "network.rm")]
    NetworkRm {
        /// Name or id.
        name: String,
    },

    /// Create a sandbox (a network namespace).
    #[serde(rename = "sandbox.create")]
    SandboxCreate {
        /// Sandbox name (the container id).
        name: String,
        /// Hostname; default: the name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Domain name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domainname: Option<String>,
        /// Nameservers instead of the network's gateway (`--dns`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns: Vec<String>,
        /// Search domains (`--dns-search`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns_search: Vec<String>,
        /// Resolver options (`--dns-option`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns_options: Vec<String>,
    },
    /// List sandboxes.
    #[serde(rename = "sandbox.ls")]
    SandboxLs {},
    /// Show one sandbox.
    #[serde(rename = "sandbox.inspect")]
    SandboxInspect {
        /// Name or id.
        name: String,
    },
    /// Delete a sandbox: its endpoints leave (those made by `run` are deleted).
    #[serde(rename = "sandbox.rm")]
    SandboxRm {
        /// Name or id.
        name: String,
    },

    /// Create an endpoint in a network.
    #[serde(rename = "endpoint.create")]
    EndpointCreate {
        /// Endpoint name (unique within its network).
        name: String,
        /// Network name or id.
        network: String,
        /// Static IPv4 address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        /// Static MAC address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        /// `veth` (default) or `tap`.
        #[serde(default, skip_serializing_if = "is_veth")]
        kind: EndpointKind,
        /// Published ports, docker's `-p` syntax (`"8053:53/udp"`); parsed by the
        /// daemon ([`crate::publish::PortMapping`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        publish: Vec<String>,
        /// CIDRs the container may send from besides its own address
        /// (anti-spoofing; `"192.168.50.0/24"`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        allowed_addresses: Vec<String>,
        /// More names the network's DNS answers for it (`--alias`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        aliases: Vec<String>,
    },
    /// List endpoints, of all networks or of one.
    #[serde(rename = "endpoint.ls")]
    EndpointLs {
        /// Only this network's endpoints.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// Show one endpoint.
    #[serde(rename = "endpoint.inspect")]
    EndpointInspect {
        /// Name or id.
        name: String,
        /// The network to look the name up in (needed if the name is used in
        /// several networks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// Join an endpoint to an existing sandbox.
    #[serde(rename = "endpoint.join")]
    EndpointJoin {
        /// Endpoint name or id.
        name: String,
        /// The endpoint's network, if the name is ambiguous.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        /// Sandbox name or id.
        sandbox: String,
        /// Names added to the endpoint's aliases before it joins.
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        aliases: Vec<String>,
    },
    /// Take an endpoint out of its sandbox (it keeps its address).
    #[serde(rename = "endpoint.leave")]
    EndpointLeave {
        /// Endpoint name or id.
        name: String,
        /// The endpoint's network, if the name is ambiguous.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// Delete an endpoint (refused while joined unless `force`).
    #[serde(rename = "endpoint.rm")]
    EndpointRm {
        /// Endpoint name or id.
        name: String,
        /// The endpoint's network, if the name is ambiguous.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        /// Leave the sandbox first if joined.
        #[serde(default, skip_serializing_if = "is_false")]
        force: bool,
    },

    /// Sandbox + endpoint (same name, deleted with the sandbox) + join, all or
    /// nothing.
    #[serde(rename = "run")]
    Run {
        /// Sandbox and endpoint name.
        name: String,
        /// Network name or id.
        network: String,
        /// Static IPv4 address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        /// Static MAC address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        /// `veth` (default) or `tap`.
        #[serde(default, skip_serializing_if = "is_veth")]
        kind: EndpointKind,
        /// Published ports, as `endpoint.create`.
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        publish: Vec<String>,
        /// Allowed source addresses, as `endpoint.create`.
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        allowed_addresses: Vec<String>,
        /// Hostname; default: the name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// Domain name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domainname: Option<String>,
        /// More names for the endpoint, as `endpoint.create`.
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        aliases: Vec<String>,
        /// Nameservers instead of the network's gateway (`--dns`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns: Vec<String>,
        /// Search domains (`--dns-search`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns_search: Vec<String>,
        /// Resolver options (`--dns-option`).
        #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_empty")]
        dns_options: Vec<String>,
    },

    /// Capture the frames of a network's ports or one endpoint's, both
    /// directions: the response line is followed on the connection by the
    /// pcap stream in chunks (see docs/api.md, `capture`).
    #[serde(rename = "capture")]
    Capture {
        /// Every port of this network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        /// Only this endpoint's port (name or id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Bytes kept of each frame; default 262144.
        #[serde(default = "default_snaplen")]
        snaplen: u32,
        /// Stop after this many frames.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Instead of the frames: a text line per frame the ports receive,
        /// saying what the switch did with it (the live `plexus trace`).
        #[serde(default, skip_serializing_if = "is_false")]
        decisions: bool,
    },

    /// What would happen to a made-up packet from an endpoint: every step
    /// the switch would take, without sending it.
    #[serde(rename = "trace")]
    Trace {
        /// The sending endpoint (name or id).
        from: String,
        /// The destination address.
        to: String,
        /// What the packet carries: `{"tcp": PORT}`, `{"udp": PORT}` or `"icmp"`.
        probe: plexus_switch::dataplane::explain::Probe,
        /// A source address other than the endpoint's own (to see anti-spoofing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        src_ip: Option<String>,
    },

    /// One CNI command of `plexus-cni` (ADD, DEL, CHECK, GC, STATUS), as the
    /// runtime gave it: see [`crate::cni`].
    #[serde(rename = "cni")]
    Cni {
        /// The command, its environment and the network configuration.
        call: crate::cni::Call,
    },

    /// The names a network's gateway answers, sorted by name.
    #[serde(rename = "dns")]
    Dns {
        /// Network name or id.
        network: String,
    },

    /// A network's MAC table, sorted by MAC.
    #[serde(rename = "fdb")]
    Fdb {
        /// Network name or id.
        network: String,
    },
    /// Every switch port's counters, of all networks or of one.
    #[serde(rename = "stats")]
    Stats {
        /// Only this network's ports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// The outbound NAT flows, sorted by endpoint, protocol and addresses.
    #[serde(rename = "nat")]
    Nat {},

    /// The daemon's version.
    #[serde(rename = "version")]
    Version {},
    /// The daemon's configuration and counts.
    #[serde(rename = "info")]
    Info {},
}

fn default_snaplen() -> u32 {
    262_144
}

fn default_driver() -> String {
    "bridge".to_owned()
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_veth(k: &EndpointKind) -> bool {
    *k == EndpointKind::Veth
}

/// A list that may also be given as `null` (like every optional field).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Request {
    /// The `op` string of this request.
    pub fn op(&self) -> &'static str {
        match self {
            Request::NetworkCreate { .. } => "network.create",
            Request::NetworkLs {} => "network.ls",
            Request::NetworkInspect { .. } => "network.inspect",
            Request::NetworkRm { .. } => "network.rm",
            Request::SandboxCreate { .. } => "sandbox.create",
            Request::SandboxLs {} => "sandbox.ls",
            Request::SandboxInspect { .. } => "sandbox.inspect",
            Request::SandboxRm { .. } => "sandbox.rm",
            Request::EndpointCreate { .. } => "endpoint.create",
            Request::EndpointLs { .. } => "endpoint.ls",
            Request::EndpointInspect { .. } => "endpoint.inspect",
            Request::EndpointJoin { .. } => "endpoint.join",
            Request::EndpointLeave { .. } => "endpoint.leave",
            Request::EndpointRm { .. } => "endpoint.rm",
            Request::Run { .. } => "run",
            Request::Dns { .. } => "dns",
            Request::Capture { .. } => "capture",
            Request::Trace { .. } => "trace",
            Request::Cni { .. } => "cni",
            Request::Fdb { .. } => "fdb",
            Request::Stats { .. } => "stats",
            Request::Nat {} => "nat",
            Request::Version {} => "version",
            Request::Info {} => "info",
        }
    }
}

/// A refusal, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable name: [`crate::Error::kind`] or a protocol kind
    /// ([`KIND_BAD_REQUEST`], [`KIND_INTERNAL`], [`KIND_SHUTTING_DOWN`]).
    pub kind: String,
    /// Human-readable, one line.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result when `ok` (`null` for requests that return nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Response {
    /// A success carrying `result`.
    pub fn success(result: Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn failure(error: ApiError) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(error),
        }
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<Value, ApiError> {
        match (self.ok, self.error) {
            (true, _) => Ok(self.result.unwrap_or(Value::Null)),
            (false, Some(e)) => Err(e),
            (false, None) => Err(ApiError::new(
                KIND_INTERNAL,
                "daemon reported a failure without an error",
            )),
        }
    }
}

/// Result of `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// The sandbox created.
    pub sandbox: SandboxInfo,
    /// The endpoint created and joined.
    pub endpoint: EndpointInfo,
}

/// Result of `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The daemon's package version.
    pub version: String,
    /// [`API_VERSION`].
    pub api: u32,
}

fn af_packet() -> String {
    "af_packet".to_owned()
}

fn steering_off() -> String {
    "off".to_owned()
}

/// Result of `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// The daemon's package version.
    pub version: String,
    /// [`API_VERSION`].
    pub api: u32,
    /// The daemon's process id.
    pub pid: u32,
    /// `rootful` or `rootless`.
    pub mode: crate::mode::Mode,
    /// Why that mode.
    pub mode_reason: String,
    /// For a rootless daemon: the host features it depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rootless_checks: Vec<crate::mode::Check>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// The Docker plugin socket it also serves (`--docker-plugin`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_plugin: Option<PathBuf>,
    /// Built-in drivers.
    pub drivers: Vec<String>,
    /// Prefix of sandbox namespace names.
    pub netns_prefix: String,
    /// Prefix of host interface names.
    pub ifname_prefix: String,
    /// How long the switch keeps polling after traffic before it sleeps,
    /// microseconds.
    pub busy_poll_us: u64,
    /// Receive steering of veth host ends: `off`, `auto` or a CPU list
    /// (`plexus daemon --rx-steering`).
    #[serde(default = "steering_off")]
    pub rx_steering: String,
    /// How the switch reads and writes veth host ends: `af_packet` or
    /// `af_xdp` (`plexus daemon --veth-io`); each port's `io` in the stats
    /// says what it got.
    #[serde(default = "af_packet")]
    pub veth_io: String,
    /// Outbound NAT's limits and idle timeouts.
    pub nat: NatLimits,
    /// File descriptors: the limit, what the daemon keeps, and the budget of
    /// ports, listeners and flows with its use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<FdInfo>,
    /// The API's bounds on its clients, and what they refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_limits: Option<ApiLimits>,
    /// Whether the switch's worker runs; absent if no driver has a switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchHealth>,
    /// The gateways' DNS: upstreams and counters; absent without a switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    /// Number of networks.
    pub networks: usize,
    /// Number of endpoints.
    pub endpoints: usize,
    /// Number of sandboxes.
    pub sandboxes: usize,
}

/// The daemon's file descriptors, as `info` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdInfo {
    /// The open-file limit (soft, raised to the hard one at start).
    pub limit: u64,
    /// The hard limit.
    pub hard_limit: u64,
    /// Kept for the API's connections and the daemon itself.
    pub reserved: u64,
    /// For ports, published listeners and flows together.
    pub budget: u64,
    /// Held by switch ports now.
    pub ports: usize,
    /// Held by published listeners now.
    pub listeners: usize,
    /// Held by NAT flows now.
    pub flows: usize,
    /// One endpoint's bound on flows now.
    pub per_endpoint: usize,
}

/// The result of `cni`: the CNI result to print (ADD's, or `null`), or the
/// CNI error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniAnswer {
    /// What the plugin prints on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What it prints on failure (with a failing exit status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::cni::CniError>,
}

/// The first answer of `capture`: what is captured; the pcap stream follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStart {
    /// The endpoints whose ports are captured.
    pub endpoints: Vec<String>,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

/// The last answer of `capture`, after the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureEnd {
    /// Frames written.
    pub captured: u64,
    /// Frames dropped because the reader was slower than the switch.
    pub dropped: u64,
}

/// The gateways' DNS, as `info` shows it: the upstreams and the switch's
/// counters (flattened: `local`, `cached`, `forwarded`, `relayed`,
/// `servfail`, `refused`, `stray`, `tcp_retries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsInfo {
    /// Where names that are not local go, in order.
    pub upstreams: Vec<std::net::SocketAddrV4>,
    /// What the DNS did.
    #[serde(flatten)]
    pub stats: plexus_switch::dns::DnsStats,
}

/// The switch worker's health, as `info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchHealth {
    /// Why the worker died; absent while it runs. A dead worker forwards
    /// nothing: restart the daemon (the daemon's log says the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<String>,
    /// Control requests it served.
    pub commands: u64,
    /// Waits for events interrupted by a signal (retried).
    pub poll_interrupted: u64,
    /// CPU time (user and system) the worker thread used so far, in
    /// microseconds (the kernel counts in clock ticks, 10 ms here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us: Option<u64>,
}

impl From<plexus_switch::Health> for SwitchHealth {
    fn from(h: plexus_switch::Health) -> SwitchHealth {
        SwitchHealth {
            dead: h.dead,
            commands: h.commands,
            poll_interrupted: h.poll_interrupted,
            cpu_us: None,
        }
    }
}

/// The API's bounds on its clients, as `info` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiLimits {
    /// Most connections open at once (`--api-max-clients`).
    pub max_clients: usize,
    /// Seconds a connection may wait between requests or take to send one
    /// (`--api-idle-timeout`).
    pub idle_timeout_secs: u64,
    /// Connections open now (this one included).
    pub clients: usize,
    /// Connections refused since start (TooManyClients).
    pub refused: u64,
    /// Connections closed for idling since start.
    pub idle_closed: u64,
}

/// Outbound NAT's limits and timeouts, as `info` shows them (the daemon's
/// `--nat-*` flags, [`plexus_switch::NatConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatLimits {
    /// Flows in total.
    pub max_flows: usize,
    /// Flows per endpoint; `null`: a fair share of the fd budget.
    pub max_flows_per_endpoint: Option<usize>,
    /// Idle timeout of UDP flows, seconds.
    pub udp_timeout_secs: u64,
    /// Idle timeout of ICMP echo flows, seconds.
    pub icmp_timeout_secs: u64,
    /// Idle timeout of established TCP connections, seconds.
    pub tcp_timeout_secs: u64,
    /// Idle timeout of TCP connections in a handshake or closing, seconds.
    pub tcp_transitory_timeout_secs: u64,
}

impl From<&plexus_switch::NatConfig> for NatLimits {
    fn from(c: &plexus_switch::NatConfig) -> NatLimits {
        NatLimits {
            max_flows: c.max_flows,
            max_flows_per_endpoint: c.max_flows_per_port,
            udp_timeout_secs: c.udp_timeout.as_secs(),
            icmp_timeout_secs: c.icmp_timeout.as_secs(),
            tcp_timeout_secs: c.tcp_timeout.as_secs(),
            tcp_transitory_timeout_secs: c.tcp_transitory_timeout.as_secs(),
        }
    }
}

/// The socket used when neither `--socket` nor `PLEXUS_SOCKET` is given:
/// `/run/plexus/plexus.sock` for root; for other users
/// `$XDG_RUNTIME_DIR/plexus/plexus.sock`, or `/tmp/plexus-UID/plexus.sock`
/// without a runtime directory.
pub fn default_socket() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/plexus/plexus.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("plexus/plexus.sock"),
        _ => PathBuf::from(format!("/tmp/plexus-{uid}/plexus.sock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FdbInfo, NatInfo, NetworkInfo, PortInfo};
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../docs/api.md");

    /// Code blocks of `docs/api.md` tagged ```` ```json request ````,
    /// ```` ```json response ```` or ```` ```json ````.
    fn blocks() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut cur: Option<(String, String)> = None;
        for line in DOC.lines() {
            match &mut cur {
                None => {
                    if let Some(tag) = line.trim().strip_prefix("```json") {
                        cur = Some((tag.trim().to_owned(), String::new()));
                    }
                }
                Some(_) if line.trim() == "```" => out.extend(cur.take()),
                Some((_, text)) => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        assert!(cur.is_none(), "unterminated code block in docs/api.md");
        out
    }

    /// Checks that an ok response's result has the shape the op promises.
    fn check_result(req: &Request, result: Value) {
        fn is<T: serde::de::DeserializeOwned>(v: Value) {
            serde_json::from_value::<T>(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        }
        match req {
            Request::NetworkCreate { .. } | Request::NetworkInspect { .. } => is::<NetworkInfo>(result),
            Request::NetworkLs {} => is::<Vec<NetworkInfo>>(result),
            Request::SandboxCreate { .. } | Request::SandboxInspect { .. } => is::<SandboxInfo>(result),
            Request::SandboxLs {} => is::<Vec<SandboxInfo>>(result),
            Request::EndpointCreate { .. }
            | Request::EndpointInspect { .. }
            | Request::EndpointJoin { .. }
            | Request::EndpointLeave { .. } => is::<EndpointInfo>(result),
            Request::EndpointLs { .. } => is::<Vec<EndpointInfo>>(result),
            Request::NetworkRm { .. } | Request::SandboxRm { .. } | Request::EndpointRm { .. } => {
                assert_eq!(result, Value::Null, "{}", req.op())
            }
            Request::Run { .. } => is::<RunResult>(result),
            Request::Fdb { .. } => is::<Vec<FdbInfo>>(result),
            Request::Dns { .. } => is::<Vec<crate::model::DnsRecord>>(result),
            Request::Capture { .. } => is::<CaptureStart>(result),
            Request::Trace { .. } => is::<Vec<String>>(result),
            Request::Cni { .. } => is::<CniAnswer>(result),
            Request::Stats { .. } => {
                let ports: Vec<PortInfo> = serde_json::from_value(result).unwrap();
                let reasons: Vec<&str> = plexus_switch::DropReason::ALL.iter().map(|r| r.name()).collect();
                for p in ports {
                    let keys: Vec<&str> = p.drops.keys().map(String::as_str).collect();
                    let mut want = reasons.clone();
                    want.sort_unstable();
                    assert_eq!(keys, want, "a documented port lists every drop reason");
                }
            }
            Request::Nat {} => {
                let flows: Vec<NatInfo> = serde_json::from_value(result.clone()).unwrap_or_else(|e| panic!("{e}"));
                // Addresses travel as "a.b.c.d:port" strings, the protocol lowercase.
                for (f, v) in flows.iter().zip(result.as_array().unwrap()) {
                    assert_eq!(v["inside"], Value::String(f.inside.to_string()));
                    assert_eq!(v["outside"], Value::String(f.outside.to_string()));
                    assert!(matches!(v["proto"].as_str(), Some("udp" | "icmp" | "tcp")), "{v}");
                    // TCP flows carry their phase, the others none.
                    assert_eq!(f.state.is_some(), v["proto"] == "tcp", "{v}");
                }
            }
            Request::Version {} => is::<VersionInfo>(result),
            Request::Info {} => is::<DaemonInfo>(result),
        }
    }

    #[test]
    fn every_documented_example_parses_and_round_trips() {
        let mut ops = BTreeSet::new();
        let mut last_request: Option<Request> = None;
        let mut responses = 0;
        for (tag, text) in blocks() {
            match tag.as_str() {
                "request" => {
                    let req: Request = serde_json::from_str(&text).unwrap_or_else(|e| panic!("request {text}: {e}"));
                    let again: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
                    assert_eq!(req, again);
                    ops.insert(req.op());
                    last_request = Some(req);
                }
                "response" => {
                    let resp: Response = serde_json::from_str(&text).unwrap_or_else(|e| panic!("response {text}: {e}"));
                    let again: Response = serde_json::from_str(&serde_json::to_string(&resp).unwrap()).unwrap();
                    assert_eq!(resp, again);
                    // Every response line in the docs is one line on the wire.
                    assert_eq!(serde_json::to_string(&resp).unwrap().lines().count(), 1);
                    match resp.into_result() {
                        Ok(v) => check_result(last_request.as_ref().expect("a request precedes"), v),
                        Err(e) => assert!(DOC.contains(&format!("`{}`", e.kind)), "kind {} undocumented", e.kind),
                    }
                    responses += 1;
                }
                "bad-request" => {
                    assert!(
                        serde_json::from_str::<Request>(&text).is_err(),
                        "should not parse: {text}"
                    );
                }
                _ => {}
            }
        }
        let all = [
            "network.create",
            "network.ls",
            "network.inspect",
            "network.rm",
            "sandbox.create",
            "sandbox.ls",
            "sandbox.inspect",
            "sandbox.rm",
            "endpoint.create",
            "endpoint.ls",
            "endpoint.inspect",
            "endpoint.join",
            "endpoint.leave",
            "endpoint.rm",
            "run",
            "fdb",
            "stats",
            "nat",
            "version",
            "info",
        ];
        for op in all {
            assert!(ops.contains(op), "docs/api.md has no request example for {op}");
        }
        assert!(responses >= all.len());
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let r: Request = serde_json::from_str(r#"{"op":"network.create","name":"n1"}"#).unwrap();
        assert_eq!(
            r,
            Request::NetworkCreate {
                name: "n1".into(),
                driver: "bridge".into(),
                subnet: None,
                gateway: None,
                ip_range: None,
                internal: false,
                host_loopback: None,
                mtu: None,
                mac_ageing_secs: None,
                mac_table_size: None,
                anti_spoofing: true,
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"network.create","name":"n1","sbnet":"x"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"network.frob"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"name":"n1"}"#).is_err());
        let r: Request = serde_json::from_str(r#"{"op":"network.ls"}"#).unwrap();
        assert_eq!(r, Request::NetworkLs {});
        let r: Request = serde_json::from_str(r#"{"op":"endpoint.rm","name":"e","force":true}"#).unwrap();
        assert_eq!(
            r,
            Request::EndpointRm {
                name: "e".into(),
                network: None,
                force: true
            }
        );
    }

    #[test]
    fn serialized_requests_omit_defaults() {
        let r = Request::EndpointRm {
            name: "e".into(),
            network: None,
            force: false,
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"op":"endpoint.rm","name":"e"}"#);
        assert_eq!(serde_json::to_string(&Request::Info {}).unwrap(), r#"{"op":"info"}"#);
        assert_eq!(serde_json::to_string(&Request::Nat {}).unwrap(), r#"{"op":"nat"}"#);
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"nat","network":"n"}"#).is_err(),
            "nat takes no fields"
        );
        let r: Request = serde_json::from_str(r#"{"op":"network.create","name":"n"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"network.create","name":"n","driver":"bridge"}"#
        );
        let r: Request = serde_json::from_str(r#"{"op":"run","name":"c","network":"n"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"run","name":"c","network":"n"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Stats { network: None }).unwrap(),
            r#"{"op":"stats"}"#
        );
    }

    #[test]
    fn switch_fields_and_ops() {
        let r: Request = serde_json::from_str(
            r#"{"op":"network.create","name":"n","mac_ageing_secs":2,"mac_table_size":64,"anti_spoofing":false}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::NetworkCreate {
                mac_ageing_secs: Some(2),
                mac_table_size: Some(64),
                anti_spoofing: false,
                ..
            }
        ));
        let r: Request = serde_json::from_str(r#"{"op":"run","name":"c","network":"n","kind":"tap"}"#).unwrap();
        assert!(matches!(
            r,
            Request::Run {
                kind: EndpointKind::Tap,
                ..
            }
        ));
        let r: Request =
            serde_json::from_str(r#"{"op":"endpoint.create","name":"e","network":"n","kind":"veth"}"#).unwrap();
        assert!(matches!(
            r,
            Request::EndpointCreate {
                kind: EndpointKind::Veth,
                ..
            }
        ));
        assert!(serde_json::from_str::<Request>(r#"{"op":"run","name":"c","network":"n","kind":"macvlan"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"fdb"}"#).is_err(),
            "fdb needs a network"
        );
        let r: Request = serde_json::from_str(r#"{"op":"stats","network":"n"}"#).unwrap();
        assert_eq!(
            r,
            Request::Stats {
                network: Some("n".into())
            }
        );
    }

    #[test]
    fn publish_field() {
        let r: Request = serde_json::from_str(r#"{"op":"run","name":"c","network":"n"}"#).unwrap();
        assert!(matches!(r, Request::Run { ref publish, .. } if publish.is_empty()));
        let r: Request = serde_json::from_str(r#"{"op":"run","name":"c","network":"n","publish":null}"#).unwrap();
        assert!(matches!(r, Request::Run { ref publish, .. } if publish.is_empty()));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"run","name":"c","network":"n"}"#,
            "an empty publish is omitted"
        );
        let line = r#"{"op":"endpoint.create","name":"e","network":"n","publish":["8053:53/udp","127.0.0.1::53/udp"]}"#;
        let r: Request = serde_json::from_str(line).unwrap();
        assert!(matches!(
            r,
            Request::EndpointCreate { ref publish, .. } if publish == &["8053:53/udp", "127.0.0.1::53/udp"]
        ));
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        // Specs are strings: the daemon parses them (a bad one is InvalidPort, not BadRequest).
        let r: Request =
            serde_json::from_str(r#"{"op":"endpoint.create","name":"e","network":"n","publish":["nope"]}"#).unwrap();
        assert!(matches!(r, Request::EndpointCreate { ref publish, .. } if publish == &["nope"]));
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"run","name":"c","network":"n","publish":"8053:53/udp"}"#)
                .is_err(),
            "publish is a list"
        );
    }

    #[test]
    fn drop_reasons_are_documented() {
        for r in plexus_switch::DropReason::ALL {
            assert!(
                DOC.contains(&format!("| `{}` |", r.name())),
                "drop reason {} is not in the table of docs/api.md",
                r.name()
            );
        }
    }

    #[test]
    fn error_kinds_are_documented() {
        use crate::Error as E;
        let errors = [
            E::InvalidName {
                what: "network",
                name: "x".into(),
            },
            E::InvalidOption("x".into()),
            E::UnknownDriver("x".into()),
            E::NetworkExists("x".into()),
            E::NoSuchNetwork("x".into()),
            E::EndpointExists {
                network: "n".into(),
                endpoint: "e".into(),
            },
            E::NoSuchEndpoint("x".into()),
            E::SandboxExists("x".into()),
            E::NoSuchSandbox("x".into()),
            E::ActiveEndpoints {
                network: "n".into(),
                endpoints: vec![],
            },
            E::ActiveContainer {
                endpoint: "e".into(),
                sandbox: "s".into(),
            },
            E::AlreadyJoined {
                endpoint: "e".into(),
                sandbox: "s".into(),
            },
            E::NotJoined("e".into()),
            E::HostNetworkExists("h".into()),
            E::OwnedByEngine {
                what: "network",
                name: "n".into(),
                engine: "docker",
                hint: "docker network rm",
            },
            E::SandboxMode {
                sandbox: "s".into(),
                reason: "r",
            },
            E::Ipam(crate::ipam::IpamError::BadCidr("x".into())),
            E::Ipam(crate::ipam::IpamError::NoAvailablePool),
            E::Ipam(crate::ipam::IpamError::AlreadyAllocated(std::net::Ipv4Addr::LOCALHOST)),
            E::Sandbox(plexus_sandbox::SandboxError::NoSuchNetns("x".into())),
            E::Publish(crate::publish::PublishError::Malformed { spec: "x".into() }),
            E::Publish(crate::publish::PublishError::PortAllocated {
                host_ip: std::net::Ipv4Addr::UNSPECIFIED,
                port: 8053,
                protocol: crate::publish::Protocol::Udp,
            }),
        ];
        let mut kinds: Vec<&str> = errors.iter().map(|e| e.kind()).collect();
        kinds.extend([
            "OverlapPool",
            "NoAvailableIps",
            "OutOfRange",
            "Ipam",
            "Driver",
            "Store",
            "StoreLocked",
            KIND_BAD_REQUEST,
            KIND_INTERNAL,
            KIND_SHUTTING_DOWN,
            KIND_TOO_MANY_CLIENTS,
        ]);
        for k in kinds {
            assert!(
                DOC.contains(&format!("| `{k}` |")),
                "error kind {k} is not in the table of docs/api.md"
            );
        }
    }
}
