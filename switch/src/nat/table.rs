//! Outbound NAT's connection table. Sans-IO: it decides which flows exist, when
//! they expire and when a new one is refused. Each flow's entry also holds its
//! I/O — a value of the caller's type `T`, opened by the caller when the table
//! admits the flow — so a flow's row and its socket (or stream and relay state)
//! live in one slab entry, whose key is the flow's id and the worker's poll
//! token: no parallel arrays.
//!
//! A flow is a container's conversation with one outside address: a UDP
//! (source, destination) pair, an ICMP echo identifier towards one address, or
//! a TCP connection (outbound, or from a published port's client). Each flow
//! leaves the host as an ordinary socket of the daemon — a connected UDP
//! socket, an unprivileged ICMP "ping" socket, a TCP stream — so no iptables,
//! no kernel forwarding, and the outside sees the host's address as the
//! source.
//!
//! Limits: a total and a per-endpoint bound. A full table refuses the new flow
//! (counted as `nat_full`) and never evicts an existing one. Idle flows expire
//! after their protocol's timeout; removing an endpoint's port removes its flows.
//!
//! File descriptors: every flow holds one (its socket or stream), and so does
//! every port and published listener of the dataplane. With a budget
//! ([`NatConfig::fd_budget`], which the daemon sizes from its fd limit), a new
//! flow is refused — counted as `fd_budget`, the old ones untouched — once
//! ports, listeners and flows would exceed it, so a container opening sockets
//! without end never takes the descriptors the API, the published ports and the
//! other containers need. Unless a fixed per-endpoint bound is given, one
//! endpoint's share is the flows' part of the budget divided by the number of
//! ports plus one (a reserve for newcomers), and never below [`MIN_SHARE`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::MacAddr;
use crate::types::PortId;

/// A connection's phase, which sets its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpPhase {
    /// Handshakes in progress (host connect, or the container's SYN-ACK).
    Connecting,
    /// Both sides open.
    Established,
    /// One side has closed or reset; draining.
    Closing,
}

/// The protocols outbound NAT carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatProto {
    /// UDP datagrams over a connected host UDP socket.
    Udp,
    /// ICMP echo over a host ping socket; the "port" is the echo identifier.
    Icmp,
    /// TCP, terminated in the switch and relayed to a host stream.
    Tcp,
}

impl NatProto {
    /// `"udp"`, `"icmp"` or `"tcp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NatProto::Udp => "udp",
            NatProto::Icmp => "icmp",
            NatProto::Tcp => "tcp",
        }
    }
}

/// What identifies a flow: protocol, the container's address and port (or echo
/// identifier), and the outside address and port (0 for ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Protocol.
    pub proto: NatProto,
    /// The container side.
    pub inside: SocketAddrV4,
    /// The outside side.
    pub outside: SocketAddrV4,
}

/// A flow's handle, stable for its life: its slab key (and the worker's poll
/// token of its socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// How to reach the container of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPath {
    /// The container's switch port.
    pub port: PortId,
    /// The container's MAC.
    pub mac: MacAddr,
    /// The gateway's MAC (source of frames towards the container).
    pub gateway_mac: MacAddr,
}

/// One flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Its key.
    pub key: FlowKey,
    /// Where replies go.
    pub path: FlowPath,
    /// When it last carried a packet either way.
    pub last_seen: Instant,
    /// Packets out (container → outside).
    pub packets_out: u64,
    /// Packets in (outside → container).
    pub packets_in: u64,
    /// A TCP flow's phase (sets its timeout); `None` for UDP and ICMP.
    pub tcp: Option<TcpPhase>,
}

/// Limits and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Flows in total.
    pub max_flows: usize,
    /// Flows per endpoint (port); `None`: a fair share of the budget (see the
    /// module doc), or `max_flows` without a budget.
    pub max_flows_per_port: Option<usize>,
    /// Idle timeout of UDP flows.
    pub udp_timeout: Duration,
    /// Idle timeout of ICMP echo flows.
    pub icmp_timeout: Duration,
    /// Idle timeout of established TCP connections.
    pub tcp_timeout: Duration,
    /// Idle timeout of TCP connections in a handshake or closing.
    pub tcp_transitory_timeout: Duration,
    /// File descriptors the dataplane may hold for ports, published listeners
    /// and flows together; `None`: no budget (the process's own limit applies).
    pub fd_budget: Option<usize>,
}

/// The smallest fair share of flows an endpoint gets (when the budget allows).
pub const MIN_SHARE: usize = 64;

impl Default for NatConfig {
    /// 65536 flows, a fair share per endpoint, UDP 30 s, ICMP 10 s, TCP
    /// established 2 h and in handshake or closing 120 s, no fd budget.
    fn default() -> Self {
        NatConfig {
            max_flows: 65536,
            max_flows_per_port: None,
            udp_timeout: Duration::from_secs(30),
            icmp_timeout: Duration::from_secs(10),
            tcp_timeout: Duration::from_secs(7200),
            tcp_transitory_timeout: Duration::from_secs(120),
            fd_budget: None,
        }
    }
}

/// The transport of a published port: TCP or UDP. Every one is a
/// [`NatProto`] (`From`); the reverse holds only for these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default of `--publish`).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Protocol> for NatProto {
    fn from(p: Protocol) -> NatProto {
        match p {
            Protocol::Tcp => NatProto::Tcp,
            Protocol::Udp => NatProto::Udp,
        }
    }
}

/// A published port as it is bound: the host address the switch listens on
/// (`0.0.0.0` = every address of the host), the host port, the container port
/// it delivers to, and the protocol. The controller records these (the
/// allocator chose the host port); the switch binds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    /// The host address (`0.0.0.0` = all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl Binding {
    /// The host address and port to bind.
    pub fn host(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.host_ip, self.host_port)
    }
}

impl std::fmt::Display for Binding {
    /// `0.0.0.0:8080->80/tcp` (as `docker ps`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.protocol
        )
    }
}

/// The answer to an outbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound<E> {
    /// An existing flow carries it.
    Existing(FlowId),
    /// A new flow, whose I/O the caller opened.
    New(FlowId),
    /// The table (or the endpoint's share of it) is full.
    Full,
    /// The file descriptors set aside for flows are used up.
    OverBudget,
    /// The caller could not open the flow's I/O; nothing was added.
    Failed(E),
}

/// One flow: its row and its I/O.
#[derive(Debug)]
pub struct Entry<T> {
    /// The row.
    pub flow: Flow,
    /// What carries it (the caller's).
    pub io: T,
}

/// Where the file descriptor budget stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdUse {
    /// The budget, if any.
    pub budget: Option<usize>,
    /// Held by ports.
    pub ports: usize,
    /// Held by published listeners.
    pub listeners: usize,
    /// Held by flows.
    pub flows: usize,
    /// One endpoint's bound on flows now.
    pub share: usize,
}

/// The connection table: flows and their I/O of type `T`.
#[derive(Debug)]
pub struct NatTable<T> {
    config: NatConfig,
    by_key: HashMap<FlowKey, FlowId>,
    flows: Slab<Entry<T>>,
    per_port: HashMap<PortId, usize>,
    /// Descriptors held besides flows, and the number of ports.
    ports: usize,
    listeners: usize,
}

fn id_of(key: usize) -> FlowId {
    FlowId(u32::try_from(key).unwrap_or(u32::MAX))
}

impl<T> NatTable<T> {
    /// An empty table.
    pub fn new(config: NatConfig) -> NatTable<T> {
        NatTable {
            config,
            by_key: HashMap::new(),
            flows: Slab::new(),
            per_port: HashMap::new(),
            ports: 0,
            listeners: 0,
        }
    }

    /// Changes the limits and timeouts (existing flows stay).
    pub fn configure(&mut self, config: NatConfig) {
        self.config = config;
    }

    /// The limits and timeouts.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// Tells the table how many ports and published listeners hold a
    /// descriptor now (they count against the budget).
    pub fn set_fixed(&mut self, ports: usize, listeners: usize) {
        self.ports = ports;
        self.listeners = listeners;
    }

    /// Descriptors the budget leaves for flows (`max_flows` without a budget).
    fn flow_room(&self) -> usize {
        self.config.fd_budget.map_or(self.config.max_flows, |b| {
            b.saturating_sub(self.ports + self.listeners).min(self.config.max_flows)
        })
    }

    /// One endpoint's bound on flows: the fixed one, or a fair share.
    pub fn share(&self) -> usize {
        match self.config.max_flows_per_port {
            Some(n) => n,
            None if self.config.fd_budget.is_none() => self.config.max_flows,
            None => {
                let room = self.flow_room();
                (room / (self.ports + 1)).max(MIN_SHARE.min(room))
            }
        }
    }

    /// Where the budget stands.
    pub fn fd_use(&self) -> FdUse {
        FdUse {
            budget: self.config.fd_budget,
            ports: self.ports,
            listeners: self.listeners,
            flows: self.by_key.len(),
            share: self.share(),
        }
    }

    fn timeout(&self, f: &Flow) -> Duration {
        match (f.key.proto, f.tcp) {
            (NatProto::Udp, _) => self.config.udp_timeout,
            (NatProto::Icmp, _) => self.config.icmp_timeout,
            (NatProto::Tcp, Some(TcpPhase::Established)) => self.config.tcp_timeout,
            (NatProto::Tcp, _) => self.config.tcp_transitory_timeout,
        }
    }

    /// The flow of `key`, if there is one.
    pub fn find(&self, key: &FlowKey) -> Option<FlowId> {
        self.by_key.get(key).copied()
    }

    /// Records activity of TCP flow `id` and its phase.
    pub fn touch_tcp(&mut self, now: Instant, id: FlowId, phase: TcpPhase) {
        if let Some(e) = self.flows.get_mut(id.0 as usize) {
            e.flow.last_seen = now;
            e.flow.tcp = Some(phase);
        }
    }

    /// A packet from a container: finds its flow, or admits a new one and
    /// lets `open` make its I/O (given the flow's id, before it exists).
    pub fn outbound<E>(
        &mut self,
        now: Instant,
        key: FlowKey,
        path: FlowPath,
        open: impl FnOnce(FlowId) -> Result<T, E>,
    ) -> Outbound<E> {
        if let Some(&id) = self.by_key.get(&key)
            && let Some(e) = self.flows.get_mut(id.0 as usize)
        {
            e.flow.last_seen = now;
            e.flow.packets_out += 1;
            e.flow.path = path;
            return Outbound::Existing(id);
        }
        let id = match self.room_for(path.port) {
            Ok(id) => id,
            Err(refused) => return refused,
        };
        match open(id) {
            Ok(io) => Outbound::New(self.insert(now, key, path, io)),
            Err(e) => Outbound::Failed(e),
        }
    }

    /// Whether a new flow of `port` is admitted now: the id it will get, or
    /// why not ([`Outbound::Full`], [`Outbound::OverBudget`]). For a caller
    /// that learns the flow's key only while opening its I/O (an accepted
    /// client): then [`NatTable::insert`], with nothing added in between.
    pub fn room_for<E>(&self, port: PortId) -> Result<FlowId, Outbound<E>> {
        let mine = self.per_port.get(&port).copied().unwrap_or(0);
        if self.by_key.len() >= self.config.max_flows || mine >= self.share() {
            return Err(Outbound::Full);
        }
        if self.config.fd_budget.is_some() && self.by_key.len() >= self.flow_room() {
            return Err(Outbound::OverBudget);
        }
        Ok(id_of(self.flows.vacant_key()))
    }

    /// Adds a flow admitted by [`NatTable::room_for`] (its key must be new);
    /// returns its id.
    pub fn insert(&mut self, now: Instant, key: FlowKey, path: FlowPath, io: T) -> FlowId {
        let flow = Flow {
            key,
            path,
            last_seen: now,
            packets_out: 1,
            packets_in: 0,
            tcp: (key.proto == NatProto::Tcp).then_some(TcpPhase::Connecting),
        };
        let id = id_of(self.flows.insert(Entry { flow, io }));
        self.by_key.insert(key, id);
        *self.per_port.entry(path.port).or_insert(0) += 1;
        id
    }

    /// A packet from outside for flow `id`: where to deliver it.
    pub fn inbound(&mut self, now: Instant, id: FlowId) -> Option<Flow> {
        let f = &mut self.flows.get_mut(id.0 as usize)?.flow;
        f.last_seen = now;
        f.packets_in += 1;
        Some(*f)
    }

    /// A flow and its I/O.
    pub fn get(&self, id: FlowId) -> Option<&Entry<T>> {
        self.flows.get(id.0 as usize)
    }

    /// A flow and its I/O, to use.
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Entry<T>> {
        self.flows.get_mut(id.0 as usize)
    }

    /// Removes a flow and hands back its I/O (the caller's to close).
    pub fn remove(&mut self, id: FlowId) -> Option<Entry<T>> {
        let e = self.flows.try_remove(id.0 as usize)?;
        self.by_key.remove(&e.flow.key);
        if let Some(n) = self.per_port.get_mut(&e.flow.path.port) {
            *n -= 1;
            if *n == 0 {
                self.per_port.remove(&e.flow.path.port);
            }
        }
        Some(e)
    }

    /// Removes the flows idle past their timeout, handing each to `closed`.
    pub fn expire(&mut self, now: Instant, closed: impl FnMut(FlowId, Entry<T>)) {
        let due: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.flow.last_seen) >= self.timeout(&e.flow))
            .map(|(k, _)| id_of(k))
            .collect();
        self.remove_all(due, closed);
    }

    /// Removes every flow of a port (its endpoint is gone), handing each to
    /// `closed`.
    pub fn remove_port(&mut self, port: PortId, closed: impl FnMut(FlowId, Entry<T>)) {
        let gone: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, e)| e.flow.path.port == port)
            .map(|(k, _)| id_of(k))
            .collect();
        self.remove_all(gone, closed);
    }

    fn remove_all(&mut self, ids: Vec<FlowId>, mut closed: impl FnMut(FlowId, Entry<T>)) {
        for id in ids {
            if let Some(e) = self.remove(id) {
                closed(id, e);
            }
        }
    }

    /// The flows, in id order.
    pub fn flows(&self) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.flows.iter().map(|(k, e)| (id_of(k), &e.flow))
    }

    /// Every flow's I/O, to walk (the relay's timers).
    pub fn ios_mut(&mut self) -> impl Iterator<Item = (FlowId, &mut T)> {
        self.flows.iter_mut().map(|(k, e)| (id_of(k), &mut e.io))
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if no flow.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            proto: NatProto::Udp,
            inside: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port),
            outside: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 53),
        }
    }

    /// Admits `key` with no I/O.
    fn open(t: &mut NatTable<()>, now: Instant, key: FlowKey, path: FlowPath) -> Outbound<()> {
        t.outbound(now, key, path, |_| Ok(()))
    }

    fn path(p: u32) -> FlowPath {
        FlowPath {
            port: PortId(p),
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            gateway_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn flows_are_found_counted_and_expire() {
        let t0 = Instant::now();
        let mut t = NatTable::<()>::new(NatConfig::default());
        let Outbound::New(id) = open(&mut t, t0, key(1000), path(0)) else {
            panic!()
        };
        assert_eq!(open(&mut t, t0, key(1000), path(0)), Outbound::Existing(id));
        assert_eq!(t.inbound(t0, id).unwrap().packets_in, 1);
        assert_eq!(t.get(id).unwrap().flow.packets_out, 2);
        let mut closed = Vec::new();
        t.expire(t0 + Duration::from_secs(29), |i, _| closed.push(i));
        assert!(closed.is_empty());
        t.expire(t0 + Duration::from_secs(30), |i, _| closed.push(i));
        assert_eq!(closed, [id]);
        assert!(t.is_empty());
        assert!(t.inbound(t0, id).is_none());
    }

    #[test]
    fn a_full_table_refuses_new_flows_and_keeps_old_ones() {
        let t0 = Instant::now();
        let cfg = NatConfig {
            max_flows: 4,
            max_flows_per_port: Some(3),
            ..NatConfig::default()
        };
        let mut t = NatTable::<()>::new(cfg);
        for p in 0..3 {
            assert!(matches!(open(&mut t, t0, key(p), path(0)), Outbound::New(_)));
        }
        // Port 0 has its share; port 1 gets the last slot; then the table is full.
        assert_eq!(open(&mut t, t0, key(9), path(0)), Outbound::Full);
        assert!(matches!(open(&mut t, t0, key(10), path(1)), Outbound::New(_)));
        assert_eq!(open(&mut t, t0, key(11), path(1)), Outbound::Full);
        // Existing flows keep working.
        assert!(matches!(open(&mut t, t0, key(0), path(0)), Outbound::Existing(_)));
        let mut closed = 0;
        t.remove_port(PortId(0), |_, _| closed += 1);
        assert_eq!((closed, t.len()), (3, 1));
        assert!(matches!(open(&mut t, t0, key(9), path(0)), Outbound::New(_)));
    }

    #[test]
    fn a_flow_whose_io_cannot_open_is_not_added() {
        let t0 = Instant::now();
        let mut t = NatTable::<u8>::new(NatConfig::default());
        assert_eq!(
            t.outbound(t0, key(1), path(0), |_| Err::<u8, _>("EMFILE")),
            Outbound::Failed("EMFILE")
        );
        assert!(t.is_empty());
        let Outbound::New(id) = t.outbound(t0, key(1), path(0), |id| Ok::<u8, ()>(u8::try_from(id.0).unwrap() + 7))
        else {
            panic!()
        };
        assert_eq!(t.get(id).unwrap().io, 7);
        assert_eq!(t.ios_mut().count(), 1);
        assert_eq!(t.remove(id).unwrap().io, 7);
        assert!(t.remove(id).is_none());
    }

    #[test]
    fn the_fd_budget_bounds_flows_and_shares_them_fairly() {
        let t0 = Instant::now();
        let cfg = NatConfig {
            fd_budget: Some(1000),
            ..NatConfig::default()
        };
        let mut t = NatTable::<()>::new(cfg);
        // 3 ports and 100 listeners hold descriptors: 897 are left for flows,
        // and one endpoint gets a quarter of them.
        t.set_fixed(3, 100);
        assert_eq!(t.share(), 224);
        let mut n = 0u16;
        let mut next = |t: &mut NatTable<()>, port: u32| {
            n += 1;
            open(t, t0, key(n), path(port))
        };
        for _ in 0..224 {
            assert!(matches!(next(&mut t, 0), Outbound::New(_)));
        }
        // The greedy endpoint is at its share; the others are not.
        assert_eq!(next(&mut t, 0), Outbound::Full);
        for p in [1, 2] {
            for _ in 0..224 {
                assert!(matches!(next(&mut t, p), Outbound::New(_)));
            }
        }
        // Listeners grow: the budget is used up, whoever asks.
        t.set_fixed(3, 400);
        assert_eq!(t.fd_use().flows, 672);
        assert_eq!(next(&mut t, 3), Outbound::OverBudget);
        t.set_fixed(3, 100);
        assert!(matches!(next(&mut t, 3), Outbound::New(_)));
        // A tiny budget still gives each endpoint what is there, at most.
        let mut tiny = NatTable::<()>::new(NatConfig {
            fd_budget: Some(40),
            ..NatConfig::default()
        });
        tiny.set_fixed(10, 0);
        assert_eq!(tiny.share(), 30);
        // A fixed per-endpoint bound wins over the share.
        let fixed = NatTable::<()>::new(NatConfig {
            fd_budget: Some(1000),
            max_flows_per_port: Some(5),
            ..NatConfig::default()
        });
        assert_eq!(fixed.share(), 5);
    }
}
