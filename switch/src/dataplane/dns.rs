//! The gateways' DNS in the worker: queries the gateway routed here
//! ([`crate::gateway::Action::Dns`]) go through the sans-IO
//! [`Resolver`]; answers leave as UDP frames from `GATEWAY:53` to the
//! client, forwarded queries leave through one connected host socket per
//! upstream (opened on first use, under tokens from [`DNS_TOKENS`]), and
//! what the upstreams answer comes back on those sockets' readiness. The
//! timer walk expires forwarded queries (next upstream, then SERVFAIL).
//!
//! DNS over TCP: a container's connection to `GATEWAY:53` is terminated by
//! the TCP relay like any other, but its "host stream" is a [`TcpSession`]
//! in memory instead of a socket: what the container sends is read as
//! length-prefixed queries, each answered (or forwarded, over UDP) by the
//! same resolver, and the answers are queued for the relay to send back.
//! The session is shared between the relay's flow and this table; a flow
//! with news is woken ([`GatewayDns::take_wakes`]), since an in-memory
//! stream has no readiness of its own.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mio::Token;

use super::ports::PortSink;
use crate::dns::{Client, DnsConfig, Relayed, Resolver, Verdict};
use crate::frame::{FrameBuf, MAX_FRAME_LEN};
use crate::io::{Datagram, Host, Stream};
use crate::nat::frames::inbound_frame_on;
use crate::nat::tcp::HostStream;
use crate::nat::{FlowId, FlowKey, FlowPath, NatProto};
use crate::types::{DropReason, PortId};

/// Tokens from here up to the published listeners' are the upstream sockets.
pub(crate) const DNS_TOKENS: usize = 1 << 29;
/// Tokens from `DNS_TOKENS + DNS_TCP_TOKENS` up are TCP connections to
/// upstreams (the UDP sockets take the first few).
const DNS_TCP_TOKENS: usize = 1 << 20;
/// Answers read from one upstream socket per wake-up.
const DNS_BURST: usize = 32;
/// Largest DNS message handled (EDNS answers up to 4096 bytes).
const MAX_MESSAGE: usize = 4096;
/// Bytes a TCP session buffers from the container before it pushes back.
const SESSION_BUFFER: usize = 64 * 1024;

/// One DNS-over-TCP connection of a container: the bytes it sent not yet
/// read as queries, the answers not yet sent, and what is still upstream.
#[derive(Debug, Default)]
pub(crate) struct TcpSession {
    from_container: Vec<u8>,
    to_container: Vec<u8>,
    /// Queries of this session forwarded and not answered yet.
    pending: usize,
    /// The container sent FIN.
    closed: bool,
}

/// The relay's end of a [`TcpSession`].
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle(Arc<Mutex<TcpSession>>);

impl SessionHandle {
    fn lock(&self) -> MutexGuard<'_, TcpSession> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HostStream for SessionHandle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.lock();
        if s.to_container.is_empty() {
            // The "host" closes once the container did and every answer is out.
            return if s.closed && s.pending == 0 {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(s.to_container.len());
        buf[..n].copy_from_slice(&s.to_container[..n]);
        s.to_container.drain(..n);
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.lock();
        let room = SESSION_BUFFER.saturating_sub(s.from_container.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(room);
        s.from_container.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.lock().closed = true;
        Ok(())
    }
}

impl Stream for SessionHandle {
    fn connected(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn reset_on_close(&mut self) {}
}

/// A TCP connection to an upstream, asking again a query whose UDP answer
/// was truncated.
struct UpstreamTcp {
    stream: Box<dyn Stream>,
    upstream: usize,
    /// The framed query, and how much of it went.
    out: Vec<u8>,
    written: usize,
    /// What came back so far (framed).
    answer: Vec<u8>,
    connected: bool,
    started: Instant,
}

/// A TCP session and who it serves.
struct Session {
    handle: SessionHandle,
    client: Client,
    internal: bool,
    serial: u64,
}

/// DNS state of the worker.
pub(crate) struct GatewayDns {
    pub(crate) resolver: Resolver,
    /// One socket per upstream, opened on first use.
    socks: Vec<Option<Box<dyn Datagram>>>,
    /// Upstream sockets that became readable, and those whose burst ended
    /// before they ran dry.
    ready: Vec<usize>,
    ready_again: Vec<usize>,
    msg: Box<[u8]>,
    rx: Box<[u8]>,
    out: FrameBuf,
    /// DNS-over-TCP connections, by their flow.
    sessions: HashMap<FlowId, Session>,
    /// Flows whose session has answers for the relay to send.
    wakes: Vec<FlowId>,
    /// The next session's serial.
    serial: u64,
    /// TCP connections to upstreams, and those ready.
    tcp_upstreams: slab::Slab<UpstreamTcp>,
    tcp_ready: Vec<usize>,
}

impl GatewayDns {
    pub(crate) fn new(config: DnsConfig) -> GatewayDns {
        let n = config.upstreams.len();
        GatewayDns {
            resolver: Resolver::new(config),
            socks: (0..n).map(|_| None).collect(),
            ready: Vec::new(),
            ready_again: Vec::new(),
            msg: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            rx: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            out: FrameBuf::with_capacity(MAX_FRAME_LEN),
            sessions: HashMap::new(),
            wakes: Vec::new(),
            serial: 0,
            tcp_upstreams: slab::Slab::new(),
            tcp_ready: Vec::new(),
        }
    }

    /// A new DNS-over-TCP connection (flow `id`) of `client`: its in-memory
    /// stream for the relay.
    pub(crate) fn open_session(&mut self, id: FlowId, client: Client, internal: bool) -> Box<dyn Stream> {
        // Sessions whose flow is gone (only this table holds them) go first.
        self.sessions.retain(|_, s| Arc::strong_count(&s.handle.0) > 1);
        let handle = SessionHandle(Arc::default());
        self.serial += 1;
        let client = Client {
            tcp: Some((id, self.serial)),
            ..client
        };
        self.sessions.insert(
            id,
            Session {
                handle: handle.clone(),
                client,
                internal,
                serial: self.serial,
            },
        );
        Box::new(handle)
    }

    /// Whether flow `id` is a DNS-over-TCP session.
    pub(crate) fn is_session(&self, id: FlowId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Flows with answers to send (drained).
    pub(crate) fn take_wakes(&mut self) -> Vec<FlowId> {
        std::mem::take(&mut self.wakes)
    }

    /// Reads the whole queries session `id` received and answers or
    /// forwards each.
    pub(crate) fn session_input(&mut self, now: Instant, host: &mut dyn Host, id: FlowId, sink: &mut PortSink<'_>) {
        let Some(session) = self.sessions.get(&id) else { return };
        let (handle, client, internal) = (session.handle.clone(), session.client, session.internal);
        let Some(domain) = sink.engine.port_config(client.port).map(|c| c.domain) else {
            return;
        };
        loop {
            let query = {
                let mut s = handle.lock();
                let Some(len) = s
                    .from_container
                    .get(..2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    break;
                };
                if s.from_container.len() < 2 + len {
                    break;
                }
                let q: Vec<u8> = s.from_container[2..2 + len].to_vec();
                s.from_container.drain(..2 + len);
                q
            };
            match self
                .resolver
                .query(now, domain, internal, client, &query, &mut self.msg)
            {
                Verdict::Reply(n) => {
                    push_framed(&mut handle.lock().to_container, &self.msg[..n]);
                    self.wakes.push(id);
                }
                Verdict::Forward { upstream, len } => {
                    handle.lock().pending += 1;
                    if self.send_upstream(host, upstream, len).is_err() {
                        sink.engine.count_drop(client.port, DropReason::NatError);
                    }
                }
                Verdict::Drop(reason) => sink.engine.count_drop(client.port, reason),
            }
        }
    }

    /// Hands `msg` to `client`: a UDP frame, or its TCP session's queue.
    /// (The message is the first `msg_len` bytes of the message buffer.)
    fn deliver(&mut self, client: Client, msg_len: usize, sink: &mut PortSink<'_>) {
        let msg = &self.msg[..msg_len];
        match client.tcp {
            None => send_answer(&mut self.out, client, msg, sink),
            Some((id, serial)) => {
                // Only the session asked: not a later one on a reused flow id.
                if let Some(s) = self.sessions.get(&id).filter(|s| s.serial == serial) {
                    let mut st = s.handle.lock();
                    st.pending = st.pending.saturating_sub(1);
                    push_framed(&mut st.to_container, msg);
                    self.wakes.push(id);
                }
            }
        }
    }

    /// Whether a socket has more to read than the last burst took.
    pub(crate) fn has_more(&self) -> bool {
        !self.ready_again.is_empty()
    }

    /// Readiness of token `t` (an upstream socket, UDP or TCP).
    pub(crate) fn on_event(&mut self, t: usize) {
        let i = t - DNS_TOKENS;
        if i >= DNS_TCP_TOKENS {
            self.tcp_ready.push(i - DNS_TCP_TOKENS);
        } else {
            self.ready.push(i);
        }
    }

    /// A query from `client`, the container behind its port, to its gateway
    /// (on an `internal` network: nothing is forwarded).
    pub(crate) fn query(
        &mut self,
        now: Instant,
        host: &mut dyn Host,
        client: Client,
        query: &[u8],
        internal: bool,
        sink: &mut PortSink<'_>,
    ) {
        let Some(domain) = sink.engine.port_config(client.port).map(|c| c.domain) else {
            return;
        };
        match self.resolver.query(now, domain, internal, client, query, &mut self.msg) {
            Verdict::Reply(n) => {
                let (msg, out) = (&self.msg[..n], &mut self.out);
                send_answer(out, client, msg, sink);
            }
            Verdict::Forward { upstream, len } => {
                if self.send_upstream(host, upstream, len).is_err() {
                    // The query stays pending: the timer walk tries the next
                    // upstream or answers SERVFAIL.
                    sink.engine.count_drop(client.port, DropReason::NatError);
                }
            }
            Verdict::Drop(reason) => sink.engine.count_drop(client.port, reason),
        }
    }

    /// Sends the first `len` bytes of the message buffer to `upstream`.
    fn send_upstream(&mut self, host: &mut dyn Host, upstream: usize, len: usize) -> std::io::Result<()> {
        let to = self.upstream(upstream)?;
        let slot = self
            .socks
            .get_mut(upstream)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        if slot.is_none() {
            *slot = Some(host.datagram(NatProto::Udp, to, 0, Token(DNS_TOKENS + upstream))?);
        }
        match slot.as_mut() {
            Some(sock) => sock.send(&self.msg[..len]).map(drop),
            None => Ok(()),
        }
    }

    fn upstream(&self, i: usize) -> std::io::Result<SocketAddrV4> {
        self.resolver
            .config()
            .upstreams
            .get(i)
            .copied()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    /// Reads what ready upstreams answered and delivers it; returns the
    /// answers delivered.
    pub(crate) fn serve(&mut self, now: Instant, host: &mut dyn Host, sink: &mut PortSink<'_>) -> usize {
        let mut delivered = 0;
        let mut retry = Vec::new();
        // Taken for the walk and given back, so its room is kept.
        let mut ready = std::mem::take(&mut self.ready);
        ready.append(&mut self.ready_again);
        for &i in &ready {
            for round in 0..DNS_BURST {
                if round + 1 == DNS_BURST {
                    // Readiness is edge-triggered: come back for the rest.
                    self.ready_again.push(i);
                }
                let Some(Some(sock)) = self.socks.get_mut(i) else { break };
                let n = match sock.recv(&mut self.rx) {
                    Ok(n) => n,
                    // Would block, or an ICMP error (the upstream is down):
                    // the timer walk takes the query on.
                    Err(_) => break,
                };
                match self.resolver.upstream_reply(now, i, &self.rx[..n], &mut self.msg) {
                    Some(Relayed::Answer(client, len)) => {
                        self.deliver(client, len, sink);
                        delivered += 1;
                    }
                    Some(Relayed::RetryTcp { upstream, len }) => retry.push((upstream, self.msg[..len].to_vec())),
                    None => {}
                }
            }
        }
        ready.clear();
        self.ready = ready;
        for (upstream, query) in retry {
            self.open_tcp_upstream(now, host, upstream, &query);
        }
        for key in std::mem::take(&mut self.tcp_ready) {
            delivered += self.drive_tcp_upstream(now, key, sink);
        }
        delivered
    }

    /// Asks `query` again of `upstream` over TCP (its UDP answer was
    /// truncated and the client asked over TCP).
    fn open_tcp_upstream(&mut self, now: Instant, host: &mut dyn Host, upstream: usize, query: &[u8]) {
        let Ok(to) = self.upstream(upstream) else { return };
        let entry = self.tcp_upstreams.vacant_entry();
        let token = Token(DNS_TOKENS + DNS_TCP_TOKENS + entry.key());
        let Ok(stream) = host.connect(to, token) else { return };
        let mut out = Vec::with_capacity(query.len() + 2);
        push_framed(&mut out, query);
        entry.insert(UpstreamTcp {
            stream,
            upstream,
            out,
            written: 0,
            answer: Vec::new(),
            connected: false,
            started: now,
        });
    }

    /// Moves TCP connection `key` to an upstream on: connect, send the
    /// query, read the answer; a whole answer goes to its client.
    fn drive_tcp_upstream(&mut self, now: Instant, key: usize, sink: &mut PortSink<'_>) -> usize {
        let Some(t) = self.tcp_upstreams.get_mut(key) else {
            return 0;
        };
        if !t.connected {
            match t.stream.connected() {
                Ok(true) => t.connected = true,
                Ok(false) => return 0,
                Err(_) => {
                    // The query stays pending: the timer walk takes it on.
                    self.tcp_upstreams.remove(key);
                    return 0;
                }
            }
        }
        while t.written < t.out.len() {
            match t.stream.write(&t.out[t.written..]) {
                Ok(n) if n > 0 => t.written += n,
                _ => break,
            }
        }
        let mut buf = [0u8; 2048];
        let done = loop {
            match t.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    t.answer.extend_from_slice(&buf[..n]);
                    if t.answer.len() > MAX_MESSAGE + 2 {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        let whole = t
            .answer
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .filter(|&len| t.answer.len() >= 2 + len && len <= MAX_MESSAGE);
        if whole.is_none() && !done {
            return 0;
        }
        let Some(t) = self.tcp_upstreams.try_remove(key) else {
            return 0;
        };
        let Some(len) = whole else { return 0 };
        let answer = &t.answer[2..2 + len];
        match self.resolver.upstream_reply(now, t.upstream, answer, &mut self.msg) {
            Some(Relayed::Answer(client, n)) => {
                self.deliver(client, n, sink);
                1
            }
            _ => 0,
        }
    }

    /// Forwarded queries that timed out: on to the next upstream, or SERVFAIL.
    pub(crate) fn expire(&mut self, now: Instant, host: &mut dyn Host, sink: &mut PortSink<'_>) {
        // TCP connections to upstreams outlive no query: two timeouts at most.
        let limit = self.resolver.config().timeout * 2;
        self.tcp_upstreams
            .retain(|_, t| now.saturating_duration_since(t.started) < limit);
        let mut resend: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut answers: Vec<(Client, Vec<u8>)> = Vec::new();
        self.resolver.expire(
            now,
            &mut self.msg,
            |u, q| resend.push((u, q.to_vec())),
            |c, a| answers.push((c, a.to_vec())),
        );
        for (u, q) in resend {
            let len = q.len().min(self.msg.len());
            self.msg[..len].copy_from_slice(&q[..len]);
            let _ = self.send_upstream(host, u, len);
        }
        for (c, a) in answers {
            let len = a.len().min(self.msg.len());
            self.msg[..len].copy_from_slice(&a[..len]);
            self.deliver(c, len, sink);
        }
    }

    /// Port `port` is going: its queries in flight are forgotten.
    pub(crate) fn remove_port(&mut self, port: PortId) {
        self.resolver.remove_port(port);
    }
}

/// Appends `msg` with its two-byte length (DNS over TCP).
fn push_framed(queue: &mut Vec<u8>, msg: &[u8]) {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    queue.extend_from_slice(&len.to_be_bytes());
    queue.extend_from_slice(&msg[..usize::from(len)]);
}

/// Sends DNS message `msg` to `client` as a UDP datagram from its gateway's
/// port 53.
fn send_answer(out: &mut FrameBuf, client: Client, msg: &[u8], sink: &mut PortSink<'_>) {
    let built = answer_frame(client, msg, out.frame_area_mut());
    let Some(len) = built else {
        sink.engine.count_drop(client.port, DropReason::DnsMalformed);
        return;
    };
    out.set_built(len);
    sink.send_counted(client.port, std::slice::from_ref(out));
}

/// Writes the frame carrying `msg` from `client.gateway:53` to the client.
fn answer_frame(client: Client, msg: &[u8], out: &mut [u8]) -> Option<usize> {
    let key = FlowKey {
        proto: NatProto::Udp,
        inside: client.addr,
        outside: SocketAddrV4::new(client.gateway, crate::gateway::DNS_PORT),
    };
    let path = FlowPath {
        port: client.port,
        mac: client.mac,
        gateway_mac: client.gateway_mac,
    };
    inbound_frame_on(&key, &path, msg, out)
}
