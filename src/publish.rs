//! Published ports: the `--publish` syntax and the host-port allocator (libnetwork's
//! `nat.ParsePortSpec` and `portallocator`).
//!
//! Pure logic, no syscalls, except [`os_port_free`], the one probe that asks the
//! kernel whether a port can be bound; the allocator takes the probe as an argument,
//! so its rules are tested without sockets.
//!
//! # Syntax
//!
//! `[HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp]`, or `CONTAINER_PORT[-END]`
//! alone, as docker's `-p`. Decisions where docker's syntax is loose:
//!
//! - An empty or absent host port means an ephemeral one (`80`, `:80`, `127.0.0.1::80`);
//!   so does a host port written `0` (docker's `-p 0:80`). Port 0 inside a range is an error.
//! - A host range with a single container port (`8000-8010:80`) is accepted, as docker
//!   does: it means *one* host port, the first free one of the range
//!   ([`HostPortChoice::AnyIn`]). Otherwise a host range and a container range must have
//!   the same length; a single host port with a container range is an error.
//! - A container range without host ports (`80-90`) gives each container port its own
//!   ephemeral host port.
//! - The protocol is `tcp` (default) or `udp`, case-insensitive; `sctp`, an empty protocol
//!   (`80/`) and extra slashes are errors. Ports are plain decimal digits (leading zeros
//!   allowed, no sign, no spaces).
//! - The host IP is IPv4 only for now: an IPv6 one (`[::1]:80:80`, `::1:80:80`) is
//!   refused with its own error. An empty host IP (`::80`) means none.
//! - [`Display`](std::fmt::Display) writes the canonical form, always with the protocol
//!   (`127.0.0.1::80/tcp`, `8000-8001:80-81/udp`), which parses back to the same value.
//!
//! # Allocation
//!
//! [`PortAllocator`] holds the `(host IP, protocol, host port)` triples Plexus has bound.
//! A port on `0.0.0.0` conflicts with the same port on any address, both ways (the
//! kernel's rule); different addresses, or TCP and UDP, do not conflict. A request is a
//! list of mappings and is all-or-nothing: on error nothing stays reserved and the
//! allocator is exactly as before. Exact host ports are served first, then host ranges,
//! then ephemeral ports, so an ephemeral pick never steals a port the same request names
//! explicitly; the bindings come back in the order of the request. A host range takes
//! its first free port; ephemeral ports rotate through the configured range from a
//! cursor (as libnetwork), so a port just released is not handed out again at once.
//! A port the probe reports busy is skipped (range, ephemeral) or refused with
//! [`PublishError::PortAllocated`] (exact port): "already allocated" covers ports held by
//! Plexus and by any other program alike.
//!
//! State is derived: the daemon re-reserves the bindings it persisted with
//! [`PortAllocator::restore`] at start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use plexus_switch::nat::{Binding, Protocol};

/// `tcp` or `udp`, in any case.
fn parse_protocol(s: &str) -> Option<Protocol> {
    if s.eq_ignore_ascii_case("tcp") {
        Some(Protocol::Tcp)
    } else if s.eq_ignore_ascii_case("udp") {
        Some(Protocol::Udp)
    } else {
        None
    }
}

/// An inclusive range of ports, `start..=end`. A valid range has `1 <= start <= end`
/// ([`PortRange::new`] checks; deserialization refuses anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PortRangeFields")]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

#[derive(Deserialize)]
struct PortRangeFields {
    start: u16,
    end: u16,
}

impl TryFrom<PortRangeFields> for PortRange {
    type Error = String;

    fn try_from(f: PortRangeFields) -> Result<Self, String> {
        PortRange::new(f.start, f.end).ok_or_else(|| format!("invalid port range {}-{}", f.start, f.end))
    }
}

impl PortRange {
    /// Linux's default `net.ipv4.ip_local_port_range`, 32768-60999: the default
    /// range for ephemeral host ports.
    pub const DEFAULT_EPHEMERAL: PortRange = PortRange {
        start: 32768,
        end: 60999,
    };

    /// The range `start..=end`, or `None` unless `1 <= start <= end`.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start >= 1 && start <= end).then_some(PortRange { start, end })
    }

    /// The one-port range `port..=port`, or `None` for port 0.
    pub fn single(port: u16) -> Option<PortRange> {
        PortRange::new(port, port)
    }

    /// Whether this is a valid range (`1 <= start <= end`).
    pub fn is_valid(&self) -> bool {
        self.start >= 1 && self.start <= self.end
    }

    /// Number of ports (0 if `start > end`).
    pub fn len(&self) -> u32 {
        if self.start > self.end {
            0
        } else {
            u32::from(self.end - self.start) + 1
        }
    }

    /// Whether the range holds no port (`start > end`).
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    /// The ports, in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<u16> {
        self.start..=self.end
    }

    /// Parses the content of `/proc/sys/net/ipv4/ip_local_port_range` (two numbers
    /// separated by white space, e.g. `"32768\t60999\n"`). `None` if malformed or not
    /// a valid range.
    pub fn from_ip_local_port_range(text: &str) -> Option<PortRange> {
        let mut words = text.split_whitespace();
        let start = parse_port(words.next()?)?;
        let end = parse_port(words.next()?)?;
        if words.next().is_some() {
            return None;
        }
        PortRange::new(start, end)
    }
}

impl fmt::Display for PortRange {
    /// `80`, or `8000-8010`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// How the host port of one container port is chosen (an item of
/// [`PortMapping::expand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostPortChoice {
    /// Exactly this host port.
    Exact(u16),
    /// The first free host port of this range (`8000-8010:80`).
    AnyIn(PortRange),
    /// An ephemeral host port from the allocator's range (`80`, `:80`).
    Ephemeral,
}

/// One `--publish` value: host address and ports, container ports, protocol.
///
/// Parse with [`FromStr`]; build with [`PortMapping::new`], which applies the same
/// rules. The fields are public for reading; [`PortAllocator::allocate`] re-checks a
/// mapping built by hand, and deserialization checks too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PortMappingFields")]
pub struct PortMapping {
    /// The host address to listen on; `None` = all (`0.0.0.0`).
    pub host_ip: Option<Ipv4Addr>,
    /// The host ports; `None` = ephemeral.
    pub host_ports: Option<PortRange>,
    /// The container ports.
    pub container_ports: PortRange,
    /// The protocol.
    pub protocol: Protocol,
}

#[derive(Deserialize)]
struct PortMappingFields {
    host_ip: Option<Ipv4Addr>,
    host_ports: Option<PortRange>,
    container_ports: PortRange,
    protocol: Protocol,
}

impl TryFrom<PortMappingFields> for PortMapping {
    type Error = PublishError;

    fn try_from(f: PortMappingFields) -> Result<Self, PublishError> {
        PortMapping::new(f.host_ip, f.host_ports, f.container_ports, f.protocol)
    }
}

impl PortMapping {
    /// A mapping, checked as the parser checks: valid ranges, no port 0, and a host
    /// range either as long as the container range or with a single container port.
    /// Errors carry the mapping's [`Display`](fmt::Display) form as the spec.
    pub fn new(
        host_ip: Option<Ipv4Addr>,
        host_ports: Option<PortRange>,
        container_ports: PortRange,
        protocol: Protocol,
    ) -> Result<PortMapping, PublishError> {
        let mapping = PortMapping {
            host_ip,
            host_ports,
            container_ports,
            protocol,
        };
        mapping.validate()?;
        Ok(mapping)
    }

    /// Checks the rules of [`PortMapping::new`] on a mapping whose fields were set
    /// directly.
    pub fn validate(&self) -> Result<(), PublishError> {
        self.check(&self.to_string())
    }

    fn check(&self, spec: &str) -> Result<(), PublishError> {
        check_range(spec, self.container_ports, false)?;
        if let Some(host) = self.host_ports {
            check_range(spec, host, true)?;
            if host.len() != self.container_ports.len() && self.container_ports.len() != 1 {
                return Err(PublishError::RangeMismatch {
                    spec: spec.to_owned(),
                    host,
                    container: self.container_ports,
                });
            }
        }
        Ok(())
    }

    /// The host address bindings use: `host_ip`, or `0.0.0.0`.
    pub fn bind_ip(&self) -> Ipv4Addr {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The individual `(host port choice, container port)` pairs, in container-port
    /// order: one [`HostPortChoice::Exact`] per port for equal ranges, a single
    /// [`HostPortChoice::AnyIn`] for a host range with one container port, one
    /// [`HostPortChoice::Ephemeral`] per container port without host ports.
    pub fn expand(&self) -> Vec<(HostPortChoice, u16)> {
        match self.host_ports {
            None => self
                .container_ports
                .iter()
                .map(|c| (HostPortChoice::Ephemeral, c))
                .collect(),
            Some(host) if host.len() == self.container_ports.len() => host
                .iter()
                .zip(self.container_ports.iter())
                .map(|(h, c)| (HostPortChoice::Exact(h), c))
                .collect(),
            Some(host) => vec![(HostPortChoice::AnyIn(host), self.container_ports.start)],
        }
    }
}

impl fmt::Display for PortMapping {
    /// The canonical form: `[IP:][HOST]:CONTAINER/PROTO`, or `CONTAINER/PROTO`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, p) = (self.container_ports, self.protocol);
        match (self.host_ip, self.host_ports) {
            (None, None) => write!(f, "{c}/{p}"),
            (None, Some(h)) => write!(f, "{h}:{c}/{p}"),
            (Some(ip), None) => write!(f, "{ip}::{c}/{p}"),
            (Some(ip), Some(h)) => write!(f, "{ip}:{h}:{c}/{p}"),
        }
    }
}

impl FromStr for PortMapping {
    type Err = PublishError;

    /// Parses `[HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp]` (see the
    /// module documentation for the exact rules).
    fn from_str(spec: &str) -> Result<PortMapping, PublishError> {
        let owned = || spec.to_owned();
        let (ports, protocol) = match spec.split_once('/') {
            None => (spec, Protocol::Tcp),
            Some((ports, proto)) => {
                let protocol = parse_protocol(proto).ok_or_else(|| PublishError::InvalidProtocol {
                    spec: owned(),
                    protocol: proto.to_owned(),
                })?;
                (ports, protocol)
            }
        };
        // Fields from the right: container port, host port, and the rest is the IP
        // (which may hold colons: an IPv6 address, refused below).
        let mut fields = ports.rsplitn(3, ':');
        let container_text = fields.next().unwrap_or_default();
        let host_port_text = fields.next();
        let host_ip_text = fields.next();
        if container_text.is_empty() {
            return Err(PublishError::Malformed { spec: owned() });
        }

        let host_ip = match host_ip_text {
            None | Some("") => None,
            Some(text) => Some(parse_host_ip(spec, text)?),
        };

        let host_ports = match host_port_text {
            None | Some("") => None,
            Some(text) => {
                let bad = || PublishError::InvalidHostPort {
                    spec: owned(),
                    port: text.to_owned(),
                };
                let (start, end) = parse_range_text(text).ok_or_else(bad)?;
                if !text.contains('-') && start == 0 {
                    None // docker's `-p 0:80`: ephemeral
                } else {
                    Some(PortRange { start, end })
                }
            }
        };

        let (start, end) = parse_range_text(container_text).ok_or_else(|| PublishError::InvalidContainerPort {
            spec: owned(),
            port: container_text.to_owned(),
        })?;
        let mapping = PortMapping {
            host_ip,
            host_ports,
            container_ports: PortRange { start, end },
            protocol,
        };
        mapping.check(spec)?;
        Ok(mapping)
    }
}

/// Checks one range of a mapping: no port 0, `start <= end`.
fn check_range(spec: &str, range: PortRange, host: bool) -> Result<(), PublishError> {
    if range.start == 0 {
        return Err(if host {
            PublishError::InvalidHostPort {
                spec: spec.to_owned(),
                port: range.to_string(),
            }
        } else {
            PublishError::InvalidContainerPort {
                spec: spec.to_owned(),
                port: range.to_string(),
            }
        });
    }
    if range.start > range.end {
        return Err(PublishError::ReversedRange {
            spec: spec.to_owned(),
            range: format!("{}-{}", range.start, range.end),
        });
    }
    Ok(())
}

fn parse_host_ip(spec: &str, text: &str) -> Result<Ipv4Addr, PublishError> {
    let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    if unbracketed.unwrap_or(text).parse::<Ipv6Addr>().is_ok() {
        return Err(PublishError::Ipv6HostIp {
            spec: spec.to_owned(),
            ip: text.to_owned(),
        });
    }
    match unbracketed {
        None => text.parse::<Ipv4Addr>().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| PublishError::InvalidHostIp {
        spec: spec.to_owned(),
        ip: text.to_owned(),
    })
}

/// A port: plain decimal digits (leading zeros allowed), at most 65535. Port 0 passes.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `N` or `N-M`, as numbers only (range rules are checked later).
fn parse_range_text(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        None => parse_port(s).map(|p| (p, p)),
        Some((a, b)) => Some((parse_port(a)?, parse_port(b)?)),
    }
}

/// Errors of port publishing: one variant per malformed `--publish` case (each
/// carrying the input), and the allocator's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A host port an unprivileged (rootless) daemon may not bind.
    #[error(
        "host port {port} is below net.ipv4.ip_unprivileged_port_start ({start}): a rootless daemon cannot publish it \
         (use a port from {start} up, or an administrator can lower the sysctl)"
    )]
    Privileged {
        /// The host port asked for.
        port: u16,
        /// The first port an unprivileged process may bind.
        start: u16,
    },
    /// Empty, or no container port (`""`, `"8080:"`, `"/tcp"`).
    #[error("invalid port specification: {spec:?}")]
    Malformed {
        /// The input.
        spec: String,
    },
    /// A host IP that is not an IPv4 address.
    #[error("invalid port specification: {spec:?}: invalid IP address {ip:?}")]
    InvalidHostIp {
        /// The input.
        spec: String,
        /// The host IP text.
        ip: String,
    },
    /// An IPv6 host IP: not supported yet.
    #[error("invalid port specification: {spec:?}: IPv6 host address {ip} is not supported (IPv4 only for now)")]
    Ipv6HostIp {
        /// The input.
        spec: String,
        /// The host IP text.
        ip: String,
    },
    /// A host port or range that is not a number, is out of range, or has port 0 in a range.
    #[error("invalid port specification: {spec:?}: invalid host port {port:?}")]
    InvalidHostPort {
        /// The input.
        spec: String,
        /// The host port text.
        port: String,
    },
    /// A container port or range that is not a number, is out of range, or is 0.
    #[error("invalid port specification: {spec:?}: invalid container port {port:?}")]
    InvalidContainerPort {
        /// The input.
        spec: String,
        /// The container port text.
        port: String,
    },
    /// A range whose start is above its end.
    #[error("invalid port specification: {spec:?}: invalid range {range:?}: start is greater than end")]
    ReversedRange {
        /// The input.
        spec: String,
        /// The range text.
        range: String,
    },
    /// Host and container ranges of different lengths (a host range with a single
    /// container port is allowed).
    #[error(
        "invalid port specification: {spec:?}: invalid ranges specified for host and container ports: {host} and {container}"
    )]
    RangeMismatch {
        /// The input.
        spec: String,
        /// The host range.
        host: PortRange,
        /// The container range.
        container: PortRange,
    },
    /// A protocol other than `tcp` or `udp` (or an empty one).
    #[error("invalid port specification: {spec:?}: invalid protocol {protocol:?} (use tcp or udp)")]
    InvalidProtocol {
        /// The input.
        spec: String,
        /// The protocol text.
        protocol: String,
    },
    /// The host port is held by Plexus or by another program.
    #[error("Bind for {host_ip}:{port} failed: port is already allocated")]
    PortAllocated {
        /// The host address asked for (`0.0.0.0` = all).
        host_ip: Ipv4Addr,
        /// The host port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
    },
    /// Every port of a requested host range is held.
    #[error("Bind for {host_ip}:{range} failed: port is already allocated (every port of the range)")]
    RangeAllocated {
        /// The host address asked for.
        host_ip: Ipv4Addr,
        /// The host range.
        range: PortRange,
        /// The protocol.
        protocol: Protocol,
    },
    /// No free port left in the ephemeral range.
    #[error("Bind for {host_ip}:0 failed: all ports are allocated (ephemeral range {range}/{protocol})")]
    EphemeralExhausted {
        /// The host address asked for.
        host_ip: Ipv4Addr,
        /// The ephemeral range.
        range: PortRange,
        /// The protocol.
        protocol: Protocol,
    },
    /// An ephemeral range that is not `1 <= start <= end`.
    #[error("invalid ephemeral port range {start}-{end}")]
    InvalidEphemeralRange {
        /// Its start.
        start: u16,
        /// Its end.
        end: u16,
    },
    /// A binding with host or container port 0, given to [`PortAllocator::restore`].
    #[error("invalid port binding {0}: port 0")]
    InvalidBinding(Binding),
}

/// The host ports held by Plexus, and the choice of free ones.
///
/// Keyed by `(protocol, port)`, then host address; `0.0.0.0` conflicts with every
/// address. No syscalls: the caller passes a probe (in the daemon,
/// [`os_port_free`]) that says whether the OS would let it bind a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAllocator {
    ephemeral: PortRange,
    /// Next ephemeral candidate, always inside `ephemeral`.
    cursor: u16,
    held: BTreeMap<(Protocol, u16), BTreeSet<Ipv4Addr>>,
}

impl Default for PortAllocator {
    /// An allocator with [`PortRange::DEFAULT_EPHEMERAL`].
    fn default() -> Self {
        PortAllocator {
            ephemeral: PortRange::DEFAULT_EPHEMERAL,
            cursor: PortRange::DEFAULT_EPHEMERAL.start,
            held: BTreeMap::new(),
        }
    }
}

impl PortAllocator {
    /// An empty allocator taking ephemeral ports from `ephemeral` (the daemon reads
    /// `/proc/sys/net/ipv4/ip_local_port_range`, see
    /// [`PortRange::from_ip_local_port_range`]).
    pub fn new(ephemeral: PortRange) -> Result<PortAllocator, PublishError> {
        if !ephemeral.is_valid() {
            return Err(PublishError::InvalidEphemeralRange {
                start: ephemeral.start,
                end: ephemeral.end,
            });
        }
        Ok(PortAllocator {
            ephemeral,
            cursor: ephemeral.start,
            held: BTreeMap::new(),
        })
    }

    /// The ephemeral range.
    pub fn ephemeral_range(&self) -> PortRange {
        self.ephemeral
    }

    /// Number of `(host IP, protocol, port)` triples held.
    pub fn len(&self) -> usize {
        self.held.values().map(BTreeSet::len).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether Plexus holds exactly this `(host IP, protocol, port)`.
    pub fn is_held(&self, host_ip: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        self.held
            .get(&(protocol, port))
            .is_some_and(|ips| ips.contains(&host_ip))
    }

    /// Whether a binding of `host_ip:port` would conflict with one Plexus holds:
    /// the same address, or either side `0.0.0.0`.
    pub fn conflicts(&self, host_ip: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        self.held.get(&(protocol, port)).is_some_and(|ips| {
            host_ip.is_unspecified() || ips.contains(&host_ip) || ips.contains(&Ipv4Addr::UNSPECIFIED)
        })
    }

    /// The held `(host IP, protocol, port)` triples, ordered by protocol, port, address.
    pub fn held(&self) -> impl Iterator<Item = (Ipv4Addr, Protocol, u16)> + '_ {
        self.held
            .iter()
            .flat_map(|(&(protocol, port), ips)| ips.iter().map(move |&ip| (ip, protocol, port)))
    }

    /// Reserves host ports for every mapping of the list, all or nothing.
    ///
    /// `probe(ip, protocol, port)` says whether the OS port is free (it is asked only
    /// about ports Plexus does not hold). Exact ports are served first, then host
    /// ranges, then ephemeral ports; the bindings come back in request order
    /// (mapping order, then container-port order). On error nothing is reserved and
    /// the allocator is unchanged. A port named twice in one request is
    /// [`PublishError::PortAllocated`].
    pub fn allocate(
        &mut self,
        mappings: &[PortMapping],
        mut probe: impl FnMut(Ipv4Addr, Protocol, u16) -> bool,
    ) -> Result<Vec<Binding>, PublishError> {
        let mut wanted = Vec::new();
        for mapping in mappings {
            mapping.validate()?;
            let ip = mapping.bind_ip();
            for (choice, container_port) in mapping.expand() {
                wanted.push((ip, mapping.protocol, choice, container_port));
            }
        }
        let rank = |choice: &HostPortChoice| match choice {
            HostPortChoice::Exact(_) => 0,
            HostPortChoice::AnyIn(_) => 1,
            HostPortChoice::Ephemeral => 2,
        };
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_by_key(|&i| rank(&wanted[i].2));

        let cursor = self.cursor;
        let mut taken = Vec::with_capacity(wanted.len());
        let mut ports = vec![0u16; wanted.len()];
        for i in order {
            let (ip, protocol, choice, _) = wanted[i];
            match self.pick(ip, protocol, choice, &mut probe) {
                Ok(port) => {
                    self.insert(ip, protocol, port);
                    taken.push((ip, protocol, port));
                    ports[i] = port;
                }
                Err(e) => {
                    for (ip, protocol, port) in taken {
                        self.remove(ip, protocol, port);
                    }
                    self.cursor = cursor;
                    return Err(e);
                }
            }
        }
        Ok(wanted
            .iter()
            .zip(ports)
            .map(|(&(host_ip, protocol, _, container_port), host_port)| Binding {
                host_ip,
                host_port,
                container_port,
                protocol,
            })
            .collect())
    }

    fn pick(
        &mut self,
        ip: Ipv4Addr,
        protocol: Protocol,
        choice: HostPortChoice,
        probe: &mut impl FnMut(Ipv4Addr, Protocol, u16) -> bool,
    ) -> Result<u16, PublishError> {
        let mut free = |this: &Self, port: u16| !this.conflicts(ip, protocol, port) && probe(ip, protocol, port);
        match choice {
            HostPortChoice::Exact(port) => {
                if free(self, port) {
                    Ok(port)
                } else {
                    Err(PublishError::PortAllocated {
                        host_ip: ip,
                        port,
                        protocol,
                    })
                }
            }
            HostPortChoice::AnyIn(range) => {
                range
                    .iter()
                    .find(|&port| free(self, port))
                    .ok_or(PublishError::RangeAllocated {
                        host_ip: ip,
                        range,
                        protocol,
                    })
            }
            HostPortChoice::Ephemeral => {
                let PortRange { start, end } = self.ephemeral;
                let port = (self.cursor..=end)
                    .chain(start..self.cursor)
                    .find(|&port| free(self, port))
                    .ok_or(PublishError::EphemeralExhausted {
                        host_ip: ip,
                        range: self.ephemeral,
                        protocol,
                    })?;
                self.cursor = if port == end { start } else { port + 1 };
                Ok(port)
            }
        }
    }

    /// Frees the host side of the bindings. Bindings not held are ignored.
    pub fn release(&mut self, bindings: &[Binding]) {
        for b in bindings {
            self.remove(b.host_ip, b.protocol, b.host_port);
        }
    }

    /// Re-reserves bindings handed out before (daemon restart), without probing: the
    /// daemon re-binds its listeners itself. All or nothing: a binding with port 0, or
    /// one that conflicts with a held port or an earlier one of the list, is an error
    /// and nothing is reserved.
    pub fn restore(&mut self, bindings: &[Binding]) -> Result<(), PublishError> {
        for (i, b) in bindings.iter().enumerate() {
            let refusal = if b.host_port == 0 || b.container_port == 0 {
                Some(PublishError::InvalidBinding(*b))
            } else if self.conflicts(b.host_ip, b.protocol, b.host_port) {
                Some(PublishError::PortAllocated {
                    host_ip: b.host_ip,
                    port: b.host_port,
                    protocol: b.protocol,
                })
            } else {
                None
            };
            if let Some(e) = refusal {
                self.release(&bindings[..i]);
                return Err(e);
            }
            self.insert(b.host_ip, b.protocol, b.host_port);
        }
        Ok(())
    }

    fn insert(&mut self, ip: Ipv4Addr, protocol: Protocol, port: u16) {
        self.held.entry((protocol, port)).or_default().insert(ip);
    }

    fn remove(&mut self, ip: Ipv4Addr, protocol: Protocol, port: u16) {
        if let Some(ips) = self.held.get_mut(&(protocol, port)) {
            ips.remove(&ip);
            if ips.is_empty() {
                self.held.remove(&(protocol, port));
            }
        }
    }
}

/// The OS probe: whether this process could bind `ip:port` now. Binds a socket and
/// drops it at once; port 0 is never "free" (it would bind any port).
///
/// - TCP binds a [`std::net::TcpListener`], which sets `SO_REUSEADDR` as the daemon's
///   real listener (std or mio) will: any listening socket on the port, or any socket
///   bound without `SO_REUSEADDR`, makes it fail, while the `TIME_WAIT` leftovers of a
///   published port just released do not (with `SO_REUSEADDR` off the probe would
///   call such a port busy for a minute, though the daemon could bind it).
/// - UDP binds a [`std::net::UdpSocket`], without `SO_REUSEADDR` (std sets none), so
///   any socket on the port, sharing options or not, makes it fail.
///
/// Any bind error counts as "not free", including an address the host does not have
/// (`EADDRNOTAVAIL`), which the allocator then reports as "already allocated".
///
/// The answer is stale as soon as it is given (time of check to time of use): another
/// program may take the port before the daemon binds it. The daemon keeps the
/// listener it binds for a published port, so that final bind is the real check; the
/// probe only makes the common failure early and all-or-nothing.
pub fn os_port_free(ip: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
    if port == 0 {
        return false;
    }
    let addr = SocketAddrV4::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn r(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    fn pm(spec: &str) -> PortMapping {
        spec.parse().unwrap_or_else(|e| panic!("{spec:?}: {e}"))
    }

    fn free(_: Ipv4Addr, _: Protocol, _: u16) -> bool {
        true
    }

    // ---- parsing ----

    /// Input, host IP, host ports, container ports, protocol, canonical form.
    type Accepted = (
        &'static str,
        Option<Ipv4Addr>,
        Option<PortRange>,
        PortRange,
        Protocol,
        &'static str,
    );

    #[test]
    fn parse_accepts_every_form() {
        use Protocol::{Tcp, Udp};
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        #[rustfmt::skip]
        let table: &[Accepted] = &[
            ("80", None, None, r(80, 80), Tcp, "80/tcp"),
            ("80/tcp", None, None, r(80, 80), Tcp, "80/tcp"),
            ("80/udp", None, None, r(80, 80), Udp, "80/udp"),
            ("80/UDP", None, None, r(80, 80), Udp, "80/udp"),
            ("80/Tcp", None, None, r(80, 80), Tcp, "80/tcp"),
            ("80-90", None, None, r(80, 90), Tcp, "80-90/tcp"),
            (":80", None, None, r(80, 80), Tcp, "80/tcp"),
            ("::80", None, None, r(80, 80), Tcp, "80/tcp"),
            ("0:80", None, None, r(80, 80), Tcp, "80/tcp"),
            ("8080:80", None, Some(r(8080, 8080)), r(80, 80), Tcp, "8080:80/tcp"),
            ("8080:80/udp", None, Some(r(8080, 8080)), r(80, 80), Udp, "8080:80/udp"),
            ("8080:80-80", None, Some(r(8080, 8080)), r(80, 80), Tcp, "8080:80/tcp"),
            ("08080:0080", None, Some(r(8080, 8080)), r(80, 80), Tcp, "8080:80/tcp"),
            ("65535:65535", None, Some(r(65535, 65535)), r(65535, 65535), Tcp, "65535:65535/tcp"),
            ("1:1", None, Some(r(1, 1)), r(1, 1), Tcp, "1:1/tcp"),
            ("8000-8010:80-90", None, Some(r(8000, 8010)), r(80, 90), Tcp, "8000-8010:80-90/tcp"),
            ("8000-8010:80", None, Some(r(8000, 8010)), r(80, 80), Tcp, "8000-8010:80/tcp"),
            ("127.0.0.1:8080:80", ip("127.0.0.1"), Some(r(8080, 8080)), r(80, 80), Tcp, "127.0.0.1:8080:80/tcp"),
            ("127.0.0.1::80", ip("127.0.0.1"), None, r(80, 80), Tcp, "127.0.0.1::80/tcp"),
            ("127.0.0.1:0:80", ip("127.0.0.1"), None, r(80, 80), Tcp, "127.0.0.1::80/tcp"),
            ("10.1.2.3::80-81/udp", ip("10.1.2.3"), None, r(80, 81), Udp, "10.1.2.3::80-81/udp"),
            ("0.0.0.0:80:80", ip("0.0.0.0"), Some(r(80, 80)), r(80, 80), Tcp, "0.0.0.0:80:80/tcp"),
            ("192.168.1.1:5000-5001:6000-6001/udp", ip("192.168.1.1"), Some(r(5000, 5001)), r(6000, 6001), Udp,
             "192.168.1.1:5000-5001:6000-6001/udp"),
        ];
        for &(spec, host_ip, host_ports, container_ports, protocol, canonical) in table {
            let m = pm(spec);
            let want = PortMapping {
                host_ip,
                host_ports,
                container_ports,
                protocol,
            };
            assert_eq!(m, want, "{spec:?}");
            assert_eq!(m.to_string(), canonical, "{spec:?}");
            assert_eq!(pm(canonical), m, "{spec:?} canonical");
            assert_eq!(
                PortMapping::new(host_ip, host_ports, container_ports, protocol),
                Ok(want)
            );
        }
    }

    #[test]
    fn parse_rejects_every_malformed_case() {
        use PublishError as E;
        let s = |x: &str| x.to_owned();
        #[rustfmt::skip]
        let table: Vec<(&str, PublishError)> = vec![
            ("", E::Malformed { spec: s("") }),
            ("/tcp", E::Malformed { spec: s("/tcp") }),
            ("8080:", E::Malformed { spec: s("8080:") }),
            ("127.0.0.1:8080:", E::Malformed { spec: s("127.0.0.1:8080:") }),
            (":", E::Malformed { spec: s(":") }),
            ("1.2.3:80:80", E::InvalidHostIp { spec: s("1.2.3:80:80"), ip: s("1.2.3") }),
            ("localhost:80:80", E::InvalidHostIp { spec: s("localhost:80:80"), ip: s("localhost") }),
            ("[1.2.3.4]:80:80", E::InvalidHostIp { spec: s("[1.2.3.4]:80:80"), ip: s("[1.2.3.4]") }),
            ("01.2.3.4:80:80", E::InvalidHostIp { spec: s("01.2.3.4:80:80"), ip: s("01.2.3.4") }),
            ("a:b:80:80", E::InvalidHostIp { spec: s("a:b:80:80"), ip: s("a:b") }),
            ("[::1]:80:80", E::Ipv6HostIp { spec: s("[::1]:80:80"), ip: s("[::1]") }),
            ("::1:80:80", E::Ipv6HostIp { spec: s("::1:80:80"), ip: s("::1") }),
            ("[::]::80", E::Ipv6HostIp { spec: s("[::]::80"), ip: s("[::]") }),
            ("fe80::1::80", E::Ipv6HostIp { spec: s("fe80::1::80"), ip: s("fe80::1") }),
            ("127.0.0.1:80", E::InvalidHostPort { spec: s("127.0.0.1:80"), port: s("127.0.0.1") }),
            ("x:80", E::InvalidHostPort { spec: s("x:80"), port: s("x") }),
            ("65536:80", E::InvalidHostPort { spec: s("65536:80"), port: s("65536") }),
            ("+80:80", E::InvalidHostPort { spec: s("+80:80"), port: s("+80") }),
            (" 80:80", E::InvalidHostPort { spec: s(" 80:80"), port: s(" 80") }),
            ("80-:80", E::InvalidHostPort { spec: s("80-:80"), port: s("80-") }),
            ("-80:80", E::InvalidHostPort { spec: s("-80:80"), port: s("-80") }),
            ("1-2-3:80", E::InvalidHostPort { spec: s("1-2-3:80"), port: s("1-2-3") }),
            ("0-10:80", E::InvalidHostPort { spec: s("0-10:80"), port: s("0-10") }),
            ("0", E::InvalidContainerPort { spec: s("0"), port: s("0") }),
            ("8080:0", E::InvalidContainerPort { spec: s("8080:0"), port: s("0") }),
            ("0-5", E::InvalidContainerPort { spec: s("0-5"), port: s("0-5") }),
            ("x", E::InvalidContainerPort { spec: s("x"), port: s("x") }),
            ("65536", E::InvalidContainerPort { spec: s("65536"), port: s("65536") }),
            ("80-", E::InvalidContainerPort { spec: s("80-"), port: s("80-") }),
            ("80 ", E::InvalidContainerPort { spec: s("80 "), port: s("80 ") }),
            ("8080:80:", E::Malformed { spec: s("8080:80:") }),
            ("90-80", E::ReversedRange { spec: s("90-80"), range: s("90-80") }),
            ("90-80:80", E::ReversedRange { spec: s("90-80:80"), range: s("90-80") }),
            ("8000-8001:80-82", E::RangeMismatch { spec: s("8000-8001:80-82"), host: r(8000, 8001), container: r(80, 82) }),
            ("8080:80-81", E::RangeMismatch { spec: s("8080:80-81"), host: r(8080, 8080), container: r(80, 81) }),
            ("80/sctp", E::InvalidProtocol { spec: s("80/sctp"), protocol: s("sctp") }),
            ("80/", E::InvalidProtocol { spec: s("80/"), protocol: s("") }),
            ("80/tcp/udp", E::InvalidProtocol { spec: s("80/tcp/udp"), protocol: s("tcp/udp") }),
            ("80/tcpx", E::InvalidProtocol { spec: s("80/tcpx"), protocol: s("tcpx") }),
        ];
        for (spec, want) in table {
            assert_eq!(spec.parse::<PortMapping>(), Err(want), "{spec:?}");
        }
    }

    #[test]
    fn error_messages() {
        let msg = |spec: &str| spec.parse::<PortMapping>().unwrap_err().to_string();
        assert_eq!(msg(""), r#"invalid port specification: """#);
        assert_eq!(
            msg("8080:x"),
            r#"invalid port specification: "8080:x": invalid container port "x""#
        );
        assert_eq!(
            msg("x:80"),
            r#"invalid port specification: "x:80": invalid host port "x""#
        );
        assert_eq!(
            msg("1.2.3:80:80"),
            r#"invalid port specification: "1.2.3:80:80": invalid IP address "1.2.3""#
        );
        assert!(msg("[::1]:80:80").contains("IPv6 host address [::1] is not supported"));
        assert_eq!(
            msg("8000-8001:80-82"),
            r#"invalid port specification: "8000-8001:80-82": invalid ranges specified for host and container ports: 8000-8001 and 80-82"#
        );
        assert_eq!(
            msg("80/sctp"),
            r#"invalid port specification: "80/sctp": invalid protocol "sctp" (use tcp or udp)"#
        );
        let e = PublishError::PortAllocated {
            host_ip: ANY,
            port: 8080,
            protocol: Protocol::Tcp,
        };
        assert_eq!(e.to_string(), "Bind for 0.0.0.0:8080 failed: port is already allocated");
        let e = PublishError::RangeAllocated {
            host_ip: LO,
            range: r(8000, 8001),
            protocol: Protocol::Udp,
        };
        assert!(
            e.to_string()
                .starts_with("Bind for 127.0.0.1:8000-8001 failed: port is already allocated")
        );
    }

    #[test]
    fn new_and_validate_apply_the_parser_rules() {
        use PublishError as E;
        let tcp = Protocol::Tcp;
        assert!(matches!(
            PortMapping::new(None, None, r(0, 0), tcp),
            Err(E::InvalidContainerPort { .. })
        ));
        assert!(matches!(
            PortMapping::new(None, None, r(9, 8), tcp),
            Err(E::ReversedRange { .. })
        ));
        assert!(matches!(
            PortMapping::new(None, Some(r(0, 3)), r(1, 4), tcp),
            Err(E::InvalidHostPort { .. })
        ));
        assert!(matches!(
            PortMapping::new(None, Some(r(5, 4)), r(1, 1), tcp),
            Err(E::ReversedRange { .. })
        ));
        assert!(matches!(
            PortMapping::new(None, Some(r(1, 2)), r(1, 3), tcp),
            Err(E::RangeMismatch { .. })
        ));
        // A hand-built invalid mapping is refused by the allocator too.
        let bad = PortMapping {
            host_ip: None,
            host_ports: None,
            container_ports: r(0, 0),
            protocol: tcp,
        };
        assert!(bad.validate().is_err());
        let mut a = PortAllocator::default();
        assert!(matches!(a.allocate(&[bad], free), Err(E::InvalidContainerPort { .. })));
        assert!(a.is_empty());
    }

    #[test]
    fn expand_pairs() {
        use HostPortChoice::*;
        assert_eq!(pm("80").expand(), vec![(Ephemeral, 80)]);
        assert_eq!(
            pm("80-82").expand(),
            vec![(Ephemeral, 80), (Ephemeral, 81), (Ephemeral, 82)]
        );
        assert_eq!(pm("8080:80").expand(), vec![(Exact(8080), 80)]);
        assert_eq!(
            pm("8000-8001:80-81").expand(),
            vec![(Exact(8000), 80), (Exact(8001), 81)]
        );
        assert_eq!(pm("8000-8009:80").expand(), vec![(AnyIn(r(8000, 8009)), 80)]);
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let m = pm("127.0.0.1:8000-8001:80-81/udp");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"127.0.0.1","host_ports":{"start":8000,"end":8001},"container_ports":{"start":80,"end":81},"protocol":"udp"}"#
        );
        assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), m);
        let eph = pm("80");
        assert_eq!(
            serde_json::from_str::<PortMapping>(&serde_json::to_string(&eph).unwrap()).unwrap(),
            eph
        );
        // Invalid ranges and mismatched lengths are refused on the way in.
        let bad_range = r#"{"host_ip":null,"host_ports":null,"container_ports":{"start":0,"end":1},"protocol":"tcp"}"#;
        assert!(serde_json::from_str::<PortMapping>(bad_range).is_err());
        let mismatch = r#"{"host_ip":null,"host_ports":{"start":1,"end":2},"container_ports":{"start":1,"end":3},"protocol":"tcp"}"#;
        assert!(serde_json::from_str::<PortMapping>(mismatch).is_err());
        assert!(serde_json::from_str::<PortMapping>(&json.replace("udp", "sctp")).is_err());

        let b = Binding {
            host_ip: ANY,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!(b.to_string(), "0.0.0.0:8080->80/tcp");
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"0.0.0.0","host_port":8080,"container_port":80,"protocol":"tcp"}"#
        );
        assert_eq!(serde_json::from_str::<Binding>(&json).unwrap(), b);
    }

    #[test]
    fn port_range_helpers() {
        assert_eq!(PortRange::new(0, 1), None);
        assert_eq!(PortRange::new(2, 1), None);
        assert_eq!(PortRange::single(0), None);
        assert_eq!(PortRange::single(7), Some(r(7, 7)));
        assert_eq!(r(1, 65535).len(), 65535);
        assert_eq!(r(5, 4).len(), 0);
        assert!(r(5, 4).is_empty());
        assert!(r(10, 20).contains(20) && !r(10, 20).contains(21));
        assert_eq!(
            PortRange::from_ip_local_port_range("32768\t60999\n"),
            Some(PortRange::DEFAULT_EPHEMERAL)
        );
        assert_eq!(PortRange::from_ip_local_port_range("1024 65535"), Some(r(1024, 65535)));
        assert_eq!(PortRange::from_ip_local_port_range("60999 32768"), None);
        assert_eq!(PortRange::from_ip_local_port_range("32768"), None);
        assert_eq!(PortRange::from_ip_local_port_range("1 2 3"), None);
        assert_eq!(PortRange::from_ip_local_port_range("x 2"), None);
    }

    // ---- allocator ----

    #[test]
    fn exact_ports_conflict_by_address_both_ways() {
        let mut a = PortAllocator::default();
        a.allocate(&[pm("8080:80")], free).unwrap();
        // 0.0.0.0 held: a specific address conflicts.
        assert_eq!(
            a.allocate(&[pm("127.0.0.1:8080:80")], free),
            Err(PublishError::PortAllocated {
                host_ip: LO,
                port: 8080,
                protocol: Protocol::Tcp
            })
        );
        // Other protocol: no conflict.
        a.allocate(&[pm("8080:80/udp")], free).unwrap();

        let mut a = PortAllocator::default();
        a.allocate(&[pm("127.0.0.1:9090:90")], free).unwrap();
        // A different specific address: no conflict.
        a.allocate(&[pm("127.0.0.2:9090:90")], free).unwrap();
        // Specific held: 0.0.0.0 conflicts.
        let err = a.allocate(&[pm("9090:90")], free).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 0.0.0.0:9090 failed: port is already allocated"
        );
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn probe_failure_is_already_allocated_and_is_skipped_in_ranges() {
        let mut a = PortAllocator::new(r(100, 103)).unwrap();
        let busy = |_: Ipv4Addr, _: Protocol, p: u16| p != 8080 && p != 8000 && p != 100;
        assert!(matches!(
            a.allocate(&[pm("8080:80")], busy),
            Err(PublishError::PortAllocated { port: 8080, .. })
        ));
        let got = a.allocate(&[pm("8000-8002:80"), pm("81")], busy).unwrap();
        assert_eq!((got[0].host_port, got[1].host_port), (8001, 101));
        assert!(matches!(
            a.allocate(&[pm("8000-8001:80")], busy),
            Err(PublishError::RangeAllocated { .. })
        ));
    }

    #[test]
    fn probe_is_asked_with_the_binding_address_and_protocol() {
        let mut a = PortAllocator::default();
        let mut asked = Vec::new();
        a.allocate(&[pm("10.0.0.1:53:53/udp"), pm("8080:80")], |ip, proto, port| {
            asked.push((ip, proto, port));
            true
        })
        .unwrap();
        asked.sort();
        assert_eq!(
            asked,
            vec![
                (ANY, Protocol::Tcp, 8080),
                ("10.0.0.1".parse().unwrap(), Protocol::Udp, 53)
            ]
        );
    }

    #[test]
    fn ephemeral_rotates_and_wraps() {
        let mut a = PortAllocator::new(r(100, 102)).unwrap();
        let b1 = a.allocate(&[pm("80")], free).unwrap();
        assert_eq!(b1[0].host_port, 100);
        a.release(&b1);
        // Rotation: 100 was just freed, 101 comes next.
        let b2 = a.allocate(&[pm("81-82")], free).unwrap();
        assert_eq!(b2.iter().map(|b| b.host_port).collect::<Vec<_>>(), vec![101, 102]);
        // Wraps around to 100.
        let b3 = a.allocate(&[pm("83")], free).unwrap();
        assert_eq!(b3[0].host_port, 100);
        // Full (for TCP on any address).
        assert_eq!(
            a.allocate(&[pm("84")], free),
            Err(PublishError::EphemeralExhausted {
                host_ip: ANY,
                range: r(100, 102),
                protocol: Protocol::Tcp
            })
        );
        // UDP is separate.
        assert_eq!(a.allocate(&[pm("84/udp")], free).unwrap()[0].host_port, 101);
    }

    #[test]
    fn exact_ports_are_served_before_ephemeral_ones() {
        let mut a = PortAllocator::new(r(100, 101)).unwrap();
        // In request order the ephemeral pick would take 100 and the exact 100 would fail.
        let got = a.allocate(&[pm("80"), pm("100:81")], free).unwrap();
        assert_eq!(
            got,
            vec![
                Binding {
                    host_ip: ANY,
                    host_port: 101,
                    container_port: 80,
                    protocol: Protocol::Tcp
                },
                Binding {
                    host_ip: ANY,
                    host_port: 100,
                    container_port: 81,
                    protocol: Protocol::Tcp
                },
            ]
        );
    }

    #[test]
    fn all_or_nothing() {
        let mut a = PortAllocator::new(r(100, 110)).unwrap();
        a.allocate(&[pm("9000:90")], free).unwrap();
        let before = a.clone();
        let err = a
            .allocate(
                &[pm("8000-8005:80-85"), pm("81"), pm("7000-7001:70"), pm("9000:91")],
                free,
            )
            .unwrap_err();
        assert!(matches!(err, PublishError::PortAllocated { port: 9000, .. }));
        assert_eq!(a, before);
        // The same port twice in one request.
        let err = a.allocate(&[pm("8080:80"), pm("8080:81")], free).unwrap_err();
        assert!(matches!(err, PublishError::PortAllocated { port: 8080, .. }));
        assert_eq!(a, before);
        // An ephemeral failure after exact successes rolls those back too.
        let mut small = PortAllocator::new(r(100, 100)).unwrap();
        let before = small.clone();
        assert!(small.allocate(&[pm("8080:80"), pm("81-82")], free).is_err());
        assert_eq!(small, before);
    }

    #[test]
    fn release_and_restore() {
        let mut a = PortAllocator::default();
        let got = a.allocate(&[pm("127.0.0.1:8080:80"), pm("53:53/udp")], free).unwrap();
        assert!(a.is_held(LO, Protocol::Tcp, 8080) && a.conflicts(ANY, Protocol::Tcp, 8080));
        assert_eq!(a.held().count(), 2);
        a.release(&got);
        assert!(a.is_empty());
        a.release(&got); // idempotent
        assert_eq!(
            a.allocate(&[pm("127.0.0.1:8080:80"), pm("53:53/udp")], free).unwrap(),
            got
        );

        // Restore on a fresh allocator (daemon restart): no probe, all or nothing.
        let mut b = PortAllocator::default();
        b.restore(&got).unwrap();
        assert_eq!(b.held().collect::<Vec<_>>(), a.held().collect::<Vec<_>>());
        let mut c = PortAllocator::default();
        let dup = [got[0], got[1], got[0]];
        assert!(matches!(
            c.restore(&dup),
            Err(PublishError::PortAllocated { port: 8080, .. })
        ));
        assert!(c.is_empty());
        let zero = Binding { host_port: 0, ..got[0] };
        assert_eq!(c.restore(&[got[1], zero]), Err(PublishError::InvalidBinding(zero)));
        assert!(c.is_empty());
    }

    #[test]
    fn invalid_ephemeral_range() {
        assert!(PortAllocator::new(r(0, 10)).is_err());
        assert!(PortAllocator::new(r(10, 9)).is_err());
        assert_eq!(PortAllocator::default().ephemeral_range(), r(32768, 60999));
    }

    // ---- properties ----

    fn range_of(len: u16) -> impl Strategy<Value = PortRange> {
        (1u16..=65535 - (len - 1)).prop_map(move |start| r(start, start + (len - 1)))
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]
    }

    fn valid_mapping() -> impl Strategy<Value = PortMapping> {
        let ip = proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from));
        (ip, protocol(), 1u16..=40, 0u8..3)
            .prop_flat_map(|(host_ip, protocol, len, kind)| {
                let container = range_of(len);
                let host = match kind {
                    0 => Just(None).boxed(),
                    1 => range_of(len).prop_map(Some).boxed(),
                    _ => (1u16..=40).prop_flat_map(range_of).prop_map(Some).boxed(),
                };
                let container = if kind == 2 {
                    range_of(1).boxed()
                } else {
                    container.boxed()
                };
                (Just(host_ip), host, container, Just(protocol))
            })
            .prop_map(|(host_ip, host_ports, container_ports, protocol)| PortMapping {
                host_ip,
                host_ports,
                container_ports,
                protocol,
            })
    }

    proptest! {
        #[test]
        fn prop_valid_mappings_round_trip(m in valid_mapping()) {
            prop_assert_eq!(m.validate(), Ok(()));
            let text = m.to_string();
            prop_assert_eq!(text.parse::<PortMapping>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), m);
            let pairs = m.expand();
            let expected_len = match m.host_ports {
                Some(h) if h.len() != m.container_ports.len() => 1,
                _ => m.container_ports.len() as usize,
            };
            prop_assert_eq!(pairs.len(), expected_len);
        }

        #[test]
        fn prop_parser_never_panics_and_ok_round_trips(s in "[0-9:./a-fx\\-\\[\\] ]{0,24}") {
            if let Ok(m) = s.parse::<PortMapping>() {
                prop_assert_eq!(m.validate(), Ok(()));
                prop_assert_eq!(m.to_string().parse::<PortMapping>(), Ok(m));
            }
        }
    }

    /// A small world so that conflicts are frequent.
    fn small_mapping() -> impl Strategy<Value = PortMapping> {
        let ip = prop_oneof![
            Just(None),
            Just(Some(ANY)),
            Just(Some(LO)),
            Just(Some(Ipv4Addr::new(10, 0, 0, 1)))
        ];
        (ip, protocol(), 1u16..=3, 0u8..3, 1u16..=12, 1u16..=12).prop_map(|(host_ip, protocol, len, kind, hs, cs)| {
            let container_ports = r(cs, cs + len - 1);
            let (host_ports, container_ports) = match kind {
                0 => (None, container_ports),
                1 => (Some(r(hs, hs + len - 1)), container_ports),
                _ => (Some(r(hs, hs + len - 1)), r(cs, cs)),
            };
            PortMapping {
                host_ip,
                host_ports,
                container_ports,
                protocol,
            }
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(Vec<PortMapping>),
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => proptest::collection::vec(small_mapping(), 1..4).prop_map(Op::Allocate),
            1 => any::<usize>().prop_map(Op::Release),
        ]
    }

    fn clash(a: &Binding, b: &Binding) -> bool {
        a.protocol == b.protocol
            && a.host_port == b.host_port
            && (a.host_ip == b.host_ip || a.host_ip.is_unspecified() || b.host_ip.is_unspecified())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn prop_allocator_model(
            busy in proptest::collection::btree_set((0u8..4, protocol(), 1u16..=16), 0..10),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let ips = [ANY, LO, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
            let busy: BTreeSet<(Ipv4Addr, Protocol, u16)> =
                busy.into_iter().map(|(i, p, port)| (ips[usize::from(i)], p, port)).collect();
            // The OS has these ports taken by someone else (deterministic probe).
            let probe = |ip: Ipv4Addr, p: Protocol, port: u16| !busy.contains(&(ip, p, port));
            let mut a = PortAllocator::new(r(10, 16)).unwrap();
            let mut outstanding: Vec<Vec<Binding>> = Vec::new();
            for op in ops {
                match op {
                    Op::Allocate(list) => {
                        let before = a.clone();
                        match a.allocate(&list, probe) {
                            Ok(got) => {
                                // One binding per expanded pair, matching its mapping.
                                let pairs: Vec<_> = list
                                    .iter()
                                    .flat_map(|m| m.expand().into_iter().map(move |x| (*m, x)))
                                    .collect();
                                prop_assert_eq!(got.len(), pairs.len());
                                for (b, (m, (choice, c))) in got.iter().zip(&pairs) {
                                    prop_assert_eq!(b.container_port, *c);
                                    prop_assert_eq!(b.protocol, m.protocol);
                                    prop_assert_eq!(b.host_ip, m.bind_ip());
                                    prop_assert!(probe(b.host_ip, b.protocol, b.host_port));
                                    match choice {
                                        HostPortChoice::Exact(h) => prop_assert_eq!(b.host_port, *h),
                                        HostPortChoice::AnyIn(h) => prop_assert!(h.contains(b.host_port)),
                                        HostPortChoice::Ephemeral => prop_assert!(r(10, 16).contains(b.host_port)),
                                    }
                                    prop_assert!(a.is_held(b.host_ip, b.protocol, b.host_port));
                                }
                                outstanding.push(got);
                            }
                            Err(e) => {
                                prop_assert_eq!(&a, &before, "failed allocation changed state: {}", e);
                            }
                        }
                    }
                    Op::Release(i) => {
                        if !outstanding.is_empty() {
                            let set = outstanding.swap_remove(i % outstanding.len());
                            a.release(&set);
                            for b in &set {
                                prop_assert!(!a.is_held(b.host_ip, b.protocol, b.host_port));
                            }
                            // Released ports are allocatable again, exactly.
                            let exact: Vec<PortMapping> = set
                                .iter()
                                .map(|b| PortMapping {
                                    host_ip: Some(b.host_ip),
                                    host_ports: PortRange::single(b.host_port),
                                    container_ports: r(b.container_port, b.container_port),
                                    protocol: b.protocol,
                                })
                                .collect();
                            let again = a.allocate(&exact, probe);
                            prop_assert_eq!(again.as_ref(), Ok(&set));
                            a.release(&set);
                        }
                    }
                }
                // Never the same port twice: outstanding bindings never clash.
                let all: Vec<Binding> = outstanding.iter().flatten().copied().collect();
                for (i, x) in all.iter().enumerate() {
                    for y in &all[i + 1..] {
                        prop_assert!(!clash(x, y), "{} and {} both handed out", x, y);
                    }
                }
                prop_assert_eq!(a.len(), all.len());
            }
        }
    }

    // ---- the OS probe (real sockets) ----

    #[test]
    fn os_probe_tcp() {
        let listener = TcpListener::bind((LO, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!os_port_free(LO, Protocol::Tcp, port));
        assert!(!os_port_free(ANY, Protocol::Tcp, port), "0.0.0.0 overlaps 127.0.0.1");
        drop(listener);
        assert!(os_port_free(LO, Protocol::Tcp, port));
        assert!(!os_port_free(LO, Protocol::Tcp, 0));
    }

    #[test]
    fn os_probe_udp() {
        let socket = UdpSocket::bind((LO, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        assert!(!os_port_free(LO, Protocol::Udp, port));
        assert!(!os_port_free(ANY, Protocol::Udp, port));
        drop(socket);
        assert!(os_port_free(LO, Protocol::Udp, port));
    }

    /// A released TCP port whose connections sit in TIME_WAIT is free for a listener
    /// with SO_REUSEADDR (what the daemon binds), so the probe must say so.
    #[test]
    fn os_probe_tcp_ignores_time_wait() {
        use std::io::Read;
        let listener = TcpListener::bind((LO, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect((LO, port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(server); // the server closes first: its side goes to TIME_WAIT
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(client);
        drop(listener);
        let hex = format!(":{port:04X} ");
        let time_wait = || {
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|local| format!("{local} ").ends_with(&hex))
                        && l.split_whitespace().nth(3) == Some("06")
                })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !time_wait() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(time_wait(), "expected a TIME_WAIT socket on port {port}");
        assert!(os_port_free(LO, Protocol::Tcp, port));
    }
}
