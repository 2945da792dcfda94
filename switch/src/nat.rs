//! Outbound NAT's connection table. Sans-IO: it decides which flows exist, when
//! they expire and when a new one is refused; the dataplane owns the host socket
//! of each flow and moves the payloads.
//!
//! A flow is a container's conversation with one outside address: a UDP
//! (source, destination) pair, or an ICMP echo identifier towards one address.
//! Each flow leaves the host as an ordinary socket of the daemon — a connected
//! UDP socket, or an unprivileged ICMP "ping" socket — so no iptables, no kernel
//! forwarding and no raw packets are involved, and the outside sees the host's
//! address as the source.
//!
//! Limits: a total and a per-endpoint bound. A full table refuses the new flow
//! (counted as `nat_full`) and never evicts an existing one. Idle flows expire
//! after their protocol's timeout; removing an endpoint's port removes its flows.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::MacAddr;
use crate::engine::PortId;
use crate::tcp::TcpPhase;

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

/// A flow's handle, stable for its life (the dataplane keys its socket by it).
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
    /// Flows per endpoint (port).
    pub max_flows_per_port: usize,
    /// Idle timeout of UDP flows.
    pub udp_timeout: Duration,
    /// Idle timeout of ICMP echo flows.
    pub icmp_timeout: Duration,
    /// Idle timeout of established TCP connections.
    pub tcp_timeout: Duration,
    /// Idle timeout of TCP connections in a handshake or closing.
    pub tcp_transitory_timeout: Duration,
}

impl Default for NatConfig {
    /// 65536 flows, 4096 per endpoint, UDP 30 s, ICMP 10 s, TCP established
    /// 2 h and in handshake or closing 120 s.
    fn default() -> Self {
        NatConfig {
            max_flows: 65536,
            max_flows_per_port: 4096,
            udp_timeout: Duration::from_secs(30),
            icmp_timeout: Duration::from_secs(10),
            tcp_timeout: Duration::from_secs(7200),
            tcp_transitory_timeout: Duration::from_secs(120),
        }
    }
}

/// A published port: the host address the switch listens on, the container
/// port it delivers to, and the protocol (UDP or TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishSpec {
    /// [`NatProto::Udp`] or [`NatProto::Tcp`].
    pub proto: NatProto,
    /// Host address and port (`0.0.0.0` = every address of the host).
    pub host: SocketAddrV4,
    /// The container's port.
    pub container_port: u16,
}

/// The answer to an outbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// An existing flow carries it.
    Existing(FlowId),
    /// A new flow: the caller opens its socket (or calls [`NatTable::remove`]
    /// if it cannot).
    New(FlowId),
    /// The table (or the endpoint's share of it) is full.
    Full,
}

/// The connection table.
#[derive(Debug, Default)]
pub struct NatTable {
    config: NatConfig,
    by_key: HashMap<FlowKey, FlowId>,
    flows: Vec<Option<Flow>>,
    free: Vec<u32>,
    per_port: HashMap<PortId, usize>,
}

impl NatTable {
    /// An empty table.
    pub fn new(config: NatConfig) -> NatTable {
        NatTable {
            config,
            ..NatTable::default()
        }
    }

    /// Changes the limits and timeouts (existing flows stay).
    pub fn configure(&mut self, config: NatConfig) {
        self.config = config;
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
        if let Some(f) = self.flow_mut(id) {
            f.last_seen = now;
            f.tcp = Some(phase);
        }
    }

    /// A packet from a container: finds or makes its flow.
    pub fn outbound(&mut self, now: Instant, key: FlowKey, path: FlowPath) -> Outbound {
        if let Some(&id) = self.by_key.get(&key)
            && let Some(f) = self.flow_mut(id)
        {
            f.last_seen = now;
            f.packets_out += 1;
            f.path = path;
            return Outbound::Existing(id);
        }
        let share = self.per_port.get(&path.port).copied().unwrap_or(0);
        if self.by_key.len() >= self.config.max_flows || share >= self.config.max_flows_per_port {
            return Outbound::Full;
        }
        let flow = Flow {
            key,
            path,
            last_seen: now,
            packets_out: 1,
            packets_in: 0,
            tcp: (key.proto == NatProto::Tcp).then_some(TcpPhase::Connecting),
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = Some(flow);
                FlowId(i)
            }
            None => {
                self.flows.push(Some(flow));
                FlowId(u32::try_from(self.flows.len() - 1).unwrap_or(u32::MAX))
            }
        };
        self.by_key.insert(key, id);
        *self.per_port.entry(path.port).or_insert(0) += 1;
        Outbound::New(id)
    }

    /// A packet from outside for flow `id`: where to deliver it.
    pub fn inbound(&mut self, now: Instant, id: FlowId) -> Option<Flow> {
        let f = self.flow_mut(id)?;
        f.last_seen = now;
        f.packets_in += 1;
        Some(*f)
    }

    /// A flow.
    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.flows.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn flow_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.flows.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    /// Removes a flow (its socket is the caller's to close).
    pub fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let f = self.flows.get_mut(id.0 as usize)?.take()?;
        self.by_key.remove(&f.key);
        if let Some(n) = self.per_port.get_mut(&f.path.port) {
            *n -= 1;
            if *n == 0 {
                self.per_port.remove(&f.path.port);
            }
        }
        self.free.push(id.0);
        Some(f)
    }

    /// Removes the flows idle past their timeout, calling `closed` for each.
    pub fn expire(&mut self, now: Instant, mut closed: impl FnMut(FlowId)) {
        for i in 0..self.flows.len() {
            let Some(f) = self.flows[i] else { continue };
            if now.saturating_duration_since(f.last_seen) >= self.timeout(&f) {
                let id = FlowId(u32::try_from(i).unwrap_or(u32::MAX));
                self.remove(id);
                closed(id);
            }
        }
    }

    /// Removes every flow of a port (its endpoint is gone), calling `closed`.
    pub fn remove_port(&mut self, port: PortId, mut closed: impl FnMut(FlowId)) {
        for i in 0..self.flows.len() {
            if self.flows[i].is_some_and(|f| f.path.port == port) {
                let id = FlowId(u32::try_from(i).unwrap_or(u32::MAX));
                self.remove(id);
                closed(id);
            }
        }
    }

    /// The flows, in id order.
    pub fn flows(&self) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((FlowId(u32::try_from(i).ok()?), f.as_ref()?)))
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
        let mut t = NatTable::new(NatConfig::default());
        let Outbound::New(id) = t.outbound(t0, key(1000), path(0)) else {
            panic!()
        };
        assert_eq!(t.outbound(t0, key(1000), path(0)), Outbound::Existing(id));
        assert_eq!(t.inbound(t0, id).unwrap().packets_in, 1);
        assert_eq!(t.get(id).unwrap().packets_out, 2);
        let mut closed = Vec::new();
        t.expire(t0 + Duration::from_secs(29), |i| closed.push(i));
        assert!(closed.is_empty());
        t.expire(t0 + Duration::from_secs(30), |i| closed.push(i));
        assert_eq!(closed, [id]);
        assert!(t.is_empty());
        assert!(t.inbound(t0, id).is_none());
    }

    #[test]
    fn a_full_table_refuses_new_flows_and_keeps_old_ones() {
        let t0 = Instant::now();
        let cfg = NatConfig {
            max_flows: 4,
            max_flows_per_port: 3,
            ..NatConfig::default()
        };
        let mut t = NatTable::new(cfg);
        for p in 0..3 {
            assert!(matches!(t.outbound(t0, key(p), path(0)), Outbound::New(_)));
        }
        // Port 0 has its share; port 1 gets the last slot; then the table is full.
        assert_eq!(t.outbound(t0, key(9), path(0)), Outbound::Full);
        assert!(matches!(t.outbound(t0, key(10), path(1)), Outbound::New(_)));
        assert_eq!(t.outbound(t0, key(11), path(1)), Outbound::Full);
        // Existing flows keep working.
        assert!(matches!(t.outbound(t0, key(0), path(0)), Outbound::Existing(_)));
        let mut closed = 0;
        t.remove_port(PortId(0), |_| closed += 1);
        assert_eq!((closed, t.len()), (3, 1));
        assert!(matches!(t.outbound(t0, key(9), path(0)), Outbound::New(_)));
    }
}
