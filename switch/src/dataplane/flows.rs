//! NAT and published ports in the worker: what the gateway routes out, what
//! comes back on flows' sockets, and what clients send to published ports.
//!
//! Every flow is one entry of the NAT table's slab ([`NatTable`]): its row and
//! its I/O (`FlowIo`: a datagram socket, or a TCP stream with the relay's
//! connection state). The entry's key is the flow's id and, offset by
//! `NAT_TOKENS`, the poll token of its socket, so a readiness event finds
//! its flow — and knows its kind — in one lookup. Published listeners live in
//! a slab of their own (tokens from `PUB_TOKENS`).
//!
//! The walk of an outbound datagram: the gateway's routing decision
//! ([`crate::gateway::Routed`]: flow key, payload range, sender MAC) → the
//! table finds or admits the flow, opening its socket through the [`Host`] →
//! send. No header is parsed twice. Replies: socket readable → the table
//! names the flow → [`crate::nat::frames`] builds the frame → the port.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use mio::Token;
use slab::Slab;

use super::DataplaneError;
use super::dns::{DNS_TOKENS, GatewayDns};
use super::ports::PortSink;
use crate::dns::DnsConfig;
use crate::frame::{FrameBuf, MAX_FRAME_LEN};
use crate::gateway::Routed;
use crate::io::{Datagram, Host, Listener as HostListener, Stream};
use crate::l2::{Engine, PortConfig};
use crate::nat::frames::{inbound_frame, unreachable_frame, unreachable_quoting};
use crate::nat::tcp::{Conn, StackConfig, Step, TcpRelay};
use crate::nat::{Binding, FdUse, Flow, FlowId, FlowKey, FlowPath, NatConfig, NatProto, NatTable, Outbound, Protocol};
use crate::types::{DropReason, GatewayConfig, PortId};
use crate::wire::icmpv4::DstUnreachable;

/// Tokens from here up are flows' host sockets (`NAT_TOKENS + flow id`).
pub(crate) const NAT_TOKENS: usize = 1 << 31;
/// Tokens from here up to [`NAT_TOKENS`] are published listeners.
pub(crate) const PUB_TOKENS: usize = 1 << 30;
/// Datagrams read from one socket per wake-up before moving on.
const NAT_BURST: usize = 32;

/// What carries a flow.
pub(crate) enum FlowIo {
    /// UDP or ICMP echo: a connected datagram socket.
    Datagram(Box<dyn Datagram>),
    /// TCP: the host stream and the relay's state of the connection.
    Tcp(Box<TcpIo>),
}

/// A relayed TCP connection.
pub(crate) struct TcpIo {
    stream: Box<dyn Stream>,
    conn: Conn,
}

fn token(id: FlowId) -> Token {
    Token(NAT_TOKENS + id.0 as usize)
}

/// A published port's listener and where it delivers.
struct Listener {
    sock: Box<dyn HostListener>,
    proto: Protocol,
    port: PortId,
    /// The container's address and port it delivers to.
    container: SocketAddrV4,
}

/// A client's conversation with a published UDP port: the container answers
/// `apparent` (the client, or the gateway for a loopback client) and the reply
/// leaves through the listener towards the real client.
#[derive(Debug, Clone, Copy)]
struct Conversation {
    listener: usize,
    client: SocketAddrV4,
    last_seen: Instant,
}

/// NAT and published ports: the flows, the relay, the listeners, the host.
pub(crate) struct Nat {
    pub(crate) table: NatTable<FlowIo>,
    /// The gateways' DNS (its upstream sockets come from `host` too).
    pub(crate) dns: GatewayDns,
    relay: TcpRelay,
    host: Box<dyn Host>,
    listeners: Slab<Listener>,
    /// Published UDP conversations, keyed by (container, apparent client).
    conversations: HashMap<(SocketAddrV4, SocketAddrV4), Conversation>,
    /// Receive buffer for host sockets.
    rx: Box<[u8]>,
    /// The frame being delivered to a container.
    out: FrameBuf,
    /// Datagram flows whose sockets became readable; those whose burst ended
    /// before they ran dry (for the next round). An id kept for the next
    /// round may by then name another flow (ids are slab keys, reused): the
    /// worst it causes is one read that finds nothing, never an action on
    /// the wrong flow — the one kind of id that may be kept across turns.
    datagrams: Vec<FlowId>,
    datagrams_again: Vec<FlowId>,
    /// TCP flows whose streams were ready: (flow, readable, writable).
    streams: Vec<(FlowId, bool, bool)>,
    /// TCP flows that finished during the timer walk, closed right after it
    /// (flow, reset). Never kept past the walk: a flow id is a slab key that
    /// a new flow may take as soon as the old one is removed, so a queued id
    /// would later close the wrong flow.
    closing: Vec<(FlowId, bool)>,
    /// Listeners ready, ready again, and out of descriptors (retried each tick).
    listeners_ready: Vec<usize>,
    listeners_again: Vec<usize>,
    listeners_stalled: Vec<usize>,
}

impl Nat {
    /// No flows yet. `epoch` and `tsval` are the relay's clocks (see
    /// [`TcpRelay::new`]).
    pub(crate) fn new(
        config: NatConfig,
        dns: DnsConfig,
        epoch: Instant,
        tsval: fn() -> u32,
        host: Box<dyn Host>,
    ) -> Nat {
        Nat {
            table: NatTable::new(config),
            dns: GatewayDns::new(dns),
            relay: TcpRelay::new(epoch, tsval),
            host,
            listeners: Slab::new(),
            conversations: HashMap::new(),
            rx: vec![0u8; 65536].into_boxed_slice(),
            out: FrameBuf::with_capacity(MAX_FRAME_LEN),
            datagrams: Vec::with_capacity(256),
            datagrams_again: Vec::with_capacity(256),
            streams: Vec::with_capacity(256),
            closing: Vec::new(),
            listeners_ready: Vec::new(),
            listeners_again: Vec::new(),
            listeners_stalled: Vec::new(),
        }
    }

    /// A readiness event of token `t` (a flow's socket or a listener).
    pub(crate) fn on_event(&mut self, t: usize, readable: bool, writable: bool) {
        if t >= NAT_TOKENS {
            let Ok(key) = u32::try_from(t - NAT_TOKENS) else { return };
            let id = FlowId(key);
            match self.table.get(id).map(|e| &e.io) {
                Some(FlowIo::Datagram(_)) => self.datagrams.push(id),
                Some(FlowIo::Tcp(_)) => self.streams.push((id, readable, writable)),
                None => {}
            }
        } else if t >= PUB_TOKENS {
            self.listeners_ready.push(t - PUB_TOKENS);
        } else if t >= DNS_TOKENS {
            self.dns.on_event(t);
        }
    }

    /// Whether work is left from the last turn (a burst that filled up).
    pub(crate) fn has_more(&self) -> bool {
        !self.datagrams_again.is_empty()
            || !self.listeners_again.is_empty()
            || !self.streams.is_empty()
            || self.dns.has_more()
    }

    /// When the relay's timers next need a turn.
    pub(crate) fn next_timer(&self, now: Instant) -> Option<std::time::Duration> {
        let dns = self.dns.resolver.next_timer(now);
        match (self.relay.next_timer(now), dns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A DNS query to the gateway's port 53.
    pub(crate) fn dns_query(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        r: &Routed,
        gw: GatewayConfig,
        sink: &mut PortSink<'_>,
    ) {
        let client = dns_client(ingress, r, &gw);
        let query = frame.get(r.payload.clone()).unwrap_or(&[]);
        self.dns.query(now, &mut *self.host, client, query, gw.internal, sink);
    }

    /// Serves what is ready: replies on flows' sockets, host streams, clients
    /// of published ports, the relay's timers. Returns the frames delivered.
    pub(crate) fn serve(&mut self, now: Instant, sink: &mut PortSink<'_>) -> usize {
        self.datagrams.append(&mut self.datagrams_again);
        self.listeners_ready.append(&mut self.listeners_again);
        let mut frames = self.dns.serve(now, &mut *self.host, sink);
        if self.dns.resolver.next_timer(now).is_some_and(|t| t.is_zero()) {
            self.dns.expire(now, &mut *self.host, sink);
        }
        // DNS-over-TCP sessions with answers: their relay reads them now.
        self.streams
            .extend(self.dns.take_wakes().into_iter().map(|id| (id, true, true)));
        while let Some(id) = self.datagrams.pop() {
            frames += self.datagram_inbound(now, id, sink);
        }
        while let Some((id, r, w)) = self.streams.pop() {
            frames += self.stream_event(now, id, r, w, sink);
        }
        while let Some(i) = self.listeners_ready.pop() {
            frames += self.published_inbound(now, i, sink);
        }
        if self.relay.timers_due(now) {
            let closing = &mut self.closing;
            let conns = self.table.ios_mut().filter_map(|(id, io)| match io {
                FlowIo::Tcp(t) => Some((id, &mut t.conn)),
                FlowIo::Datagram(_) => None,
            });
            self.relay.poll_timers(now, conns, sink, |id, step| {
                if let Step::Done { reset } = step {
                    closing.push((id, reset));
                }
            });
        }
        self.finish_closing(now, sink);
        frames
    }

    /// The periodic sweep: idle flows and conversations expire; listeners out
    /// of descriptors try again.
    pub(crate) fn expire(&mut self, now: Instant, sink: &mut PortSink<'_>) {
        let relay = &mut self.relay;
        self.table.expire(now, |_, e| close_io(now, relay, sink, e.io, true));
        let timeout = self.table.config().udp_timeout;
        self.conversations
            .retain(|_, c| now.saturating_duration_since(c.last_seen) < timeout);
        self.listeners_again.append(&mut self.listeners_stalled);
    }

    /// Port `port` is going: its flows, stack and listeners go with it.
    pub(crate) fn remove_port(&mut self, now: Instant, port: PortId, sink: &mut PortSink<'_>) {
        let relay = &mut self.relay;
        self.table
            .remove_port(port, |_, e| close_io(now, relay, sink, e.io, true));
        self.relay.remove_stack(port);
        self.unpublish(port);
        self.dns.remove_port(port);
    }

    /// Closes port `port`'s published listeners and their UDP conversations;
    /// returns how many listeners closed.
    pub(crate) fn unpublish(&mut self, port: PortId) -> usize {
        let gone: Vec<usize> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.port == port)
            .map(|(k, _)| k)
            .collect();
        for &k in &gone {
            self.listeners.remove(k);
            self.conversations.retain(|_, c| c.listener != k);
        }
        gone.len()
    }

    /// Tells the table how many descriptors ports and listeners hold.
    pub(crate) fn set_fixed(&mut self, ports: usize) {
        self.table.set_fixed(ports, self.listeners.len());
    }

    /// Where the descriptor budget stands.
    pub(crate) fn fd_use(&self) -> FdUse {
        self.table.fd_use()
    }

    /// Binds every spec's host socket for the container behind `port`, or none.
    pub(crate) fn publish(
        &mut self,
        port: PortId,
        bindings: &[Binding],
        container: Ipv4Addr,
    ) -> Result<(), DataplaneError> {
        let mut made = Vec::with_capacity(bindings.len());
        for b in bindings {
            let entry = self.listeners.vacant_entry();
            let key = entry.key();
            match self.host.listen(b.protocol, b.host(), Token(PUB_TOKENS + key)) {
                Ok(sock) => {
                    entry.insert(Listener {
                        sock,
                        proto: b.protocol,
                        port,
                        container: SocketAddrV4::new(container, b.container_port),
                    });
                    made.push(key);
                }
                Err(source) => {
                    for k in made {
                        self.listeners.remove(k);
                    }
                    return Err(DataplaneError::Bind {
                        host: b.host(),
                        proto: b.protocol,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// What the NAT knows of a routed packet's `key` (for traces): its flow,
    /// and whether it is a published port's conversation — a UDP
    /// conversation of a listener, or a TCP flow from a published container
    /// port.
    pub(crate) fn lookup(&self, key: &FlowKey) -> super::explain::FlowLookup {
        let published = match key.proto {
            NatProto::Udp => self.conversations.contains_key(&(key.inside, key.outside)),
            NatProto::Tcp => self
                .listeners
                .iter()
                .any(|(_, l)| l.proto == Protocol::Tcp && l.container == key.inside),
            NatProto::Icmp => false,
        };
        super::explain::FlowLookup {
            id: self.table.find(key),
            published,
        }
    }

    /// Carries a packet the gateway routed out of `ingress`'s network (UDP,
    /// ICMP echo or TCP) through its flow.
    pub(crate) fn routed(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        r: &Routed,
        gw: GatewayConfig,
        sink: &mut PortSink<'_>,
    ) {
        if r.key.proto == NatProto::Tcp {
            return self.tcp_outbound(now, ingress, frame, r, gw, sink);
        }
        let payload = frame.get(r.payload.clone()).unwrap_or(&[]);
        // A reply of a published port's conversation goes back through its listener.
        if r.key.proto == NatProto::Udp && self.conversation_reply(now, r.key, payload, sink.engine, ingress) {
            return;
        }
        // UDP to the gateway itself that answers no conversation: the host's
        // loopback if the network allows it, else never NAT it.
        let Some(target) = host_target(&gw, r.key.outside) else {
            return sink.engine.count_drop(ingress, DropReason::GatewayUnhandled);
        };
        let path = FlowPath {
            port: ingress,
            mac: r.src_mac,
            gateway_mac: gw.mac,
        };
        let host = &mut self.host;
        let opened = self.table.outbound(now, r.key, path, |id| {
            // A raw ICMP fallback needs an identifier unique among live flows.
            let raw_ident = u16::try_from(id.0 & 0xffff).unwrap_or(0);
            host.datagram(r.key.proto, target, raw_ident, token(id))
                .map(FlowIo::Datagram)
        });
        let id = match opened {
            Outbound::Existing(id) | Outbound::New(id) => id,
            refused => return sink.engine.count_drop(ingress, refusal(&refused)),
        };
        let sent = match self.table.get_mut(id).map(|e| &mut e.io) {
            Some(FlowIo::Datagram(sock)) => sock.send(payload).is_ok(),
            _ => false,
        };
        if !sent {
            sink.engine.count_drop(ingress, DropReason::NatError);
        }
    }

    /// Hands a container's TCP segment to its connection; a SYN to the
    /// outside opens one (its host connect starts, the SYN waits for it);
    /// anything else gets the stack's answer (a reset).
    fn tcp_outbound(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        r: &Routed,
        gw: GatewayConfig,
        sink: &mut PortSink<'_>,
    ) {
        let Some(packet) = frame.get(r.payload.clone()) else {
            return;
        };
        if let Some(id) = self.table.find(&r.key) {
            let step = match self.table.get_mut(id).map(|e| &mut e.io) {
                Some(FlowIo::Tcp(t)) => Some(self.relay.ingress(now, &mut t.conn, packet, &mut *t.stream, sink)),
                _ => None,
            };
            match step {
                Some(Step::Open(phase)) => self.table.touch_tcp(now, id, phase),
                Some(Step::Done { reset }) => self.close_tcp(now, id, reset, sink),
                None => self.relay.stray(now, ingress, packet, sink),
            }
            if self.dns.is_session(id) {
                self.dns.session_input(now, &mut *self.host, id, sink);
                let wakes = self.dns.take_wakes();
                self.streams.extend(wakes.into_iter().map(|id| (id, true, true)));
            }
            return;
        }
        if let Some(cfg) = sink.engine.port_config(ingress) {
            self.relay.ensure_stack(now, ingress, stack_config(r.src_mac, &gw, cfg));
        }
        let path = FlowPath {
            port: ingress,
            mac: r.src_mac,
            gateway_mac: gw.mac,
        };
        if r.syn && r.key.outside == SocketAddrV4::new(gw.ip, crate::gateway::DNS_PORT) {
            return self.dns_tcp_open(now, ingress, packet, r, gw, path, sink);
        }
        let Some(target) = host_target(&gw, r.key.outside).filter(|_| r.syn) else {
            return self.relay.stray(now, ingress, packet, sink);
        };
        let (host, relay) = (&mut self.host, &mut self.relay);
        let opened = self.table.outbound(now, r.key, path, |id| {
            let stream = host.connect(target, token(id))?;
            let conn = relay.hold_syn(ingress, packet);
            Ok::<_, io::Error>(FlowIo::Tcp(Box::new(TcpIo { stream, conn })))
        });
        match opened {
            Outbound::New(_) | Outbound::Existing(_) => {}
            refused => {
                sink.engine.count_drop(ingress, refusal(&refused));
                self.relay.stray(now, ingress, packet, sink);
            }
        }
    }

    /// A container opens DNS over TCP to its gateway: the relay terminates
    /// the connection as any other, on an in-memory session of the gateways'
    /// DNS instead of a host socket; it is "connected" at once.
    #[allow(clippy::too_many_arguments)]
    fn dns_tcp_open(
        &mut self,
        now: Instant,
        ingress: PortId,
        packet: &[u8],
        r: &Routed,
        gw: GatewayConfig,
        path: FlowPath,
        sink: &mut PortSink<'_>,
    ) {
        let client = dns_client(ingress, r, &gw);
        let (dns, relay) = (&mut self.dns, &mut self.relay);
        let opened = self.table.outbound(now, r.key, path, |id| {
            let stream = dns.open_session(id, client, gw.internal);
            let conn = relay.hold_syn(ingress, packet);
            Ok::<_, io::Error>(FlowIo::Tcp(Box::new(TcpIo { stream, conn })))
        });
        match opened {
            // The connect "finishes" at the next serve.
            Outbound::New(id) | Outbound::Existing(id) => self.streams.push((id, false, true)),
            refused => {
                sink.engine.count_drop(ingress, refusal(&refused));
                self.relay.stray(now, ingress, packet, sink);
            }
        }
    }

    /// Reads what the outside sent on datagram flow `id` and delivers it to
    /// the container; returns the datagrams delivered.
    fn datagram_inbound(&mut self, now: Instant, id: FlowId, sink: &mut PortSink<'_>) -> usize {
        let mut delivered = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                // Readiness is edge-triggered: come back for the rest.
                self.datagrams_again.push(id);
            }
            let Some(FlowIo::Datagram(sock)) = self.table.get_mut(id).map(|e| &mut e.io) else {
                break;
            };
            let got = match sock.recv(&mut self.rx) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => match unreachable_of(&e) {
                    // The outside answered with an ICMP error, which the
                    // kernel reports on the connected socket: the container
                    // gets the same.
                    Some(reason) => Err(reason),
                    None => {
                        if let Some(f) = self.table.get(id) {
                            sink.engine.count_drop(f.flow.path.port, DropReason::NatRecvError);
                        }
                        break;
                    }
                },
            };
            let Some(flow) = self.table.inbound(now, id) else { break };
            let built = match got {
                Ok(n) => inbound_frame(&flow, &self.rx[..n], self.out.frame_area_mut()),
                Err(reason) => unreachable_frame(&flow, reason, self.out.frame_area_mut()),
            };
            match deliver(&mut self.out, flow.path.port, built, sink) {
                Some(true) => delivered += 1,
                Some(false) => {}
                None => break,
            }
        }
        delivered
    }

    /// Readiness of TCP flow `id`'s host stream: the end of its connect, or
    /// data or room to move.
    fn stream_event(
        &mut self,
        now: Instant,
        id: FlowId,
        readable: bool,
        writable: bool,
        sink: &mut PortSink<'_>,
    ) -> usize {
        let Some(FlowIo::Tcp(t)) = self.table.get_mut(id).map(|e| &mut e.io) else {
            return 0;
        };
        if !t.conn.is_connecting() {
            let step = self
                .relay
                .host_ready(now, &mut t.conn, readable, writable, &mut *t.stream, sink);
            self.apply(now, id, step, sink);
            return 1;
        }
        let step = match t.stream.connected() {
            Ok(false) => return 0,
            Ok(true) => self.relay.host_connected(now, &mut t.conn, true, &mut *t.stream, sink),
            Err(e) => match e.raw_os_error() {
                Some(libc::EHOSTUNREACH | libc::ETIMEDOUT) => {
                    return self.tcp_unreachable(now, id, DstUnreachable::HostUnreachable, sink);
                }
                Some(libc::ENETUNREACH) => return self.tcp_unreachable(now, id, DstUnreachable::NetUnreachable, sink),
                // Refused (or anything else): the container gets a reset.
                _ => self.relay.host_connected(now, &mut t.conn, false, &mut *t.stream, sink),
            },
        };
        self.apply(now, id, step, sink);
        1
    }

    /// The outside of outbound TCP flow `id` is unreachable: the container
    /// gets the ICMP error its SYN would have met, and the flow ends.
    fn tcp_unreachable(&mut self, now: Instant, id: FlowId, reason: DstUnreachable, sink: &mut PortSink<'_>) -> usize {
        let quote = match self.table.get(id).map(|e| &e.io) {
            Some(FlowIo::Tcp(t)) => t.conn.held_syn().and_then(|syn| {
                let ihl = usize::from(syn.first()? & 0x0f) * 4;
                <[u8; 8]>::try_from(syn.get(ihl..ihl + 8)?).ok()
            }),
            _ => None,
        };
        if let (Some(flow), Some(quote)) = (self.table.get(id).map(|e| e.flow), quote) {
            let built = unreachable_quoting(&flow, reason, quote, self.out.frame_area_mut());
            deliver(&mut self.out, flow.path.port, built, sink);
        }
        self.close_tcp(now, id, false, sink);
        1
    }

    /// Applies a relay step to TCP flow `id`.
    fn apply(&mut self, now: Instant, id: FlowId, step: Step, sink: &mut PortSink<'_>) {
        match step {
            Step::Open(phase) => self.table.touch_tcp(now, id, phase),
            Step::Done { reset } => self.close_tcp(now, id, reset, sink),
        }
    }

    /// Closes the TCP flows queued in `closing`.
    fn finish_closing(&mut self, now: Instant, sink: &mut PortSink<'_>) {
        while let Some((id, reset)) = self.closing.pop() {
            self.close_tcp(now, id, reset, sink);
        }
    }

    /// Ends TCP flow `id`: its host stream closes (a reset if `reset`), the
    /// container side is reset if still open, the flow goes.
    fn close_tcp(&mut self, now: Instant, id: FlowId, reset: bool, sink: &mut PortSink<'_>) {
        if let Some(e) = self.table.remove(id) {
            close_io(now, &mut self.relay, sink, e.io, reset);
        }
    }

    /// Delivers what clients sent to published listener `i` into its
    /// container, with the client's address as the source; returns the
    /// datagrams delivered (or connections accepted).
    fn published_inbound(&mut self, now: Instant, i: usize, sink: &mut PortSink<'_>) -> usize {
        match self.listeners.get(i).map(|l| l.proto) {
            Some(Protocol::Tcp) => self.published_accept(now, i, sink),
            Some(Protocol::Udp) => self.published_datagrams(now, i, sink),
            None => 0,
        }
    }

    fn published_datagrams(&mut self, now: Instant, i: usize, sink: &mut PortSink<'_>) -> usize {
        let mut delivered = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                self.listeners_again.push(i);
            }
            let Some(l) = self.listeners.get_mut(i) else { break };
            let (n, from) = match l.sock.recv_from(&mut self.rx) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    sink.engine.count_drop(l.port, DropReason::ListenerError);
                    break;
                }
            };
            let (port, container) = (l.port, l.container);
            let Some((path, stack)) = endpoint_path(sink.engine, port) else {
                break;
            };
            let apparent = apparent_client(from, stack.gateway_ip);
            self.conversations.insert(
                (container, apparent),
                Conversation {
                    listener: i,
                    client: from,
                    last_seen: now,
                },
            );
            let flow = Flow {
                key: FlowKey {
                    proto: NatProto::Udp,
                    inside: container,
                    outside: apparent,
                },
                path,
                last_seen: now,
                packets_out: 0,
                packets_in: 0,
                tcp: None,
            };
            let built = inbound_frame(&flow, &self.rx[..n], self.out.frame_area_mut());
            match deliver(&mut self.out, port, built, sink) {
                Some(true) => delivered += 1,
                Some(false) => {}
                None => break,
            }
        }
        delivered
    }

    /// Accepts clients of published TCP listener `i`; each becomes a flow
    /// whose stack connects to the container from the client's address.
    fn published_accept(&mut self, now: Instant, i: usize, sink: &mut PortSink<'_>) -> usize {
        let mut accepted = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                self.listeners_again.push(i);
            }
            let Some(l) = self.listeners.get_mut(i) else { break };
            let (port, container) = (l.port, l.container);
            let Some((path, stack)) = endpoint_path(sink.engine, port) else {
                break;
            };
            // The id the flow will get is its stream's token.
            let id = match self.table.room_for(port) {
                Ok(id) => id,
                Err(refused) => {
                    // Refused before accepting: take the client and reset it.
                    sink.engine.count_drop(port, refusal::<io::Error>(&refused));
                    match l.sock.accept(Token(usize::MAX)) {
                        Ok((mut s, _)) => s.reset_on_close(),
                        Err(_) => break,
                    }
                    continue;
                }
            };
            let (mut stream, from) = match l.sock.accept(token(id)) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // The client waits in the backlog; try again at the next
                    // tick, not at once (that would spin while nothing is freed).
                    sink.engine.count_drop(port, DropReason::FdBudget);
                    self.listeners_stalled.push(i);
                    break;
                }
                Err(_) => {
                    sink.engine.count_drop(port, DropReason::ListenerError);
                    break;
                }
            };
            let client = apparent_client(from, stack.gateway_ip);
            let key = FlowKey {
                proto: NatProto::Tcp,
                inside: container,
                outside: client,
            };
            if self.table.find(&key).is_some() {
                sink.engine.count_drop(port, DropReason::FlowBusy);
                stream.reset_on_close();
                continue;
            }
            self.relay.ensure_stack(now, port, stack);
            let Some(conn) = self.relay.open_published(now, port, container, client, sink) else {
                sink.engine.count_drop(port, DropReason::NatError);
                stream.reset_on_close();
                continue;
            };
            self.table
                .insert(now, key, path, FlowIo::Tcp(Box::new(TcpIo { stream, conn })));
            accepted += 1;
        }
        accepted
    }

    /// Sends a container's UDP reply through the listener of its conversation;
    /// false if the datagram belongs to no conversation.
    fn conversation_reply(
        &mut self,
        now: Instant,
        key: FlowKey,
        payload: &[u8],
        engine: &mut Engine,
        ingress: PortId,
    ) -> bool {
        let Some(c) = self.conversations.get_mut(&(key.inside, key.outside)) else {
            return false;
        };
        c.last_seen = now;
        if let Some(l) = self.listeners.get_mut(c.listener)
            && l.sock.send_to(payload, c.client).is_err()
        {
            engine.count_drop(ingress, DropReason::ListenerError);
        }
        true
    }
}

/// Closes a flow's I/O: a TCP flow's host stream (a reset if `reset`) and its
/// relay connection (the container side is reset if still open).
fn close_io(now: Instant, relay: &mut TcpRelay, sink: &mut PortSink<'_>, io: FlowIo, reset: bool) {
    if let FlowIo::Tcp(t) = io {
        let TcpIo { mut stream, conn } = *t;
        if reset {
            stream.reset_on_close();
        }
        relay.remove(now, conn, sink);
    }
}

/// Sends the frame of `built` bytes in `out` (none: building failed, counted
/// as `nat_error`) out of `port`; `None` when the port is gone, else whether
/// the frame left.
fn deliver(out: &mut FrameBuf, port: PortId, built: Option<usize>, sink: &mut PortSink<'_>) -> Option<bool> {
    let Some(len) = built else {
        sink.engine.count_drop(port, DropReason::NatError);
        return Some(false);
    };
    out.set_built(len);
    sink.send_counted(port, std::slice::from_ref(out)).map(|sent| sent == 1)
}

/// The DNS client behind `ingress` that sent `r` to gateway `gw` (over UDP;
/// a TCP session sets its flow).
fn dns_client(ingress: PortId, r: &Routed, gw: &GatewayConfig) -> crate::dns::Client {
    crate::dns::Client {
        port: ingress,
        mac: r.src_mac,
        addr: r.key.inside,
        gateway: gw.ip,
        gateway_mac: gw.mac,
        tcp: None,
    }
}

/// The ICMP error a socket error stands for.
fn unreachable_of(e: &io::Error) -> Option<DstUnreachable> {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Some(DstUnreachable::PortUnreachable),
        Some(libc::EHOSTUNREACH) => Some(DstUnreachable::HostUnreachable),
        Some(libc::ENETUNREACH) => Some(DstUnreachable::NetUnreachable),
        _ => None,
    }
}

/// The counter of a new flow NAT refused: the table or share full is
/// `nat_full`; out of descriptors (the budget, or the process's or system's:
/// EMFILE, ENFILE) is `fd_budget`; any other failure to open is `nat_error`.
fn refusal<E: std::borrow::Borrow<io::Error>>(o: &Outbound<E>) -> DropReason {
    match o {
        Outbound::OverBudget => DropReason::FdBudget,
        Outbound::Failed(e) if matches!(e.borrow().raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            DropReason::FdBudget
        }
        Outbound::Failed(_) => DropReason::NatError,
        _ => DropReason::NatFull,
    }
}

/// Where the host socket of a flow towards `outside` connects: `outside`
/// itself; for the gateway's own address the host's loopback (same port) if the
/// network allows it (never from an internal one), else nowhere.
fn host_target(gw: &GatewayConfig, outside: SocketAddrV4) -> Option<SocketAddrV4> {
    if *outside.ip() != gw.ip {
        return Some(outside);
    }
    (gw.host_loopback && !gw.internal).then(|| SocketAddrV4::new(Ipv4Addr::LOCALHOST, outside.port()))
}

/// How frames reach the container behind `port`: its flow path and stack.
fn endpoint_path(engine: &Engine, port: PortId) -> Option<(FlowPath, StackConfig)> {
    let cfg = engine.port_config(port)?;
    let (mac, gw) = (cfg.mac?, engine.domain_gateway(cfg.domain)?);
    let path = FlowPath {
        port,
        mac,
        gateway_mac: gw.mac,
    };
    Some((path, stack_config(mac, &gw, cfg)))
}

fn stack_config(mac: crate::MacAddr, gw: &GatewayConfig, port: &PortConfig) -> StackConfig {
    StackConfig {
        mac,
        gateway_mac: gw.mac,
        gateway_ip: gw.ip,
        prefix: gw.subnet.prefix_len(),
        mtu: u16::try_from(port.mtu).unwrap_or(u16::MAX),
        offload: port.offload,
    }
}

/// The address a container sees for a client of a published port: the client
/// itself, or the gateway for a loopback client (the container cannot answer
/// 127.0.0.1).
fn apparent_client(from: SocketAddrV4, gateway: Ipv4Addr) -> SocketAddrV4 {
    if from.ip().is_loopback() || from.ip().is_unspecified() {
        SocketAddrV4::new(gateway, from.port())
    } else {
        from
    }
}
