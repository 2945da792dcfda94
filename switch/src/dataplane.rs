//! The dataplane: one worker thread that owns every port and runs the engine in
//! bursts, and the [`Dataplane`] handle through which the control plane talks to
//! it over a channel — never by sharing a lock with the hot path.
//!
//! The loop: wait for readiness (epoll through mio), receive a burst of up to
//! [`BATCH`] frames from each ready port, classify each frame, gather frames per
//! egress port, and send each gather with one batched call. Buffers, gather lists
//! and iovec arrays are allocated when ports are added, so the per-frame path
//! allocates nothing, takes no lock and logs nothing.
//!
//! Adaptive polling: after traffic the worker keeps polling without sleeping for
//! [`DataplaneConfig::busy_poll`] (waking a halted vCPU costs about 70 µs in a
//! VM, which is what makes event-driven switches show 90–170 µs round trips);
//! when that window passes with no frame it blocks in `epoll_wait`, so an idle
//! switch costs no CPU. Control messages wake it through an eventfd
//! (`mio::Waker`).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::engine::{
    DomainConfig, DomainId, DropReason, Engine, EngineError, GatewayOutcome, PortConfig, PortCounters, PortId, Verdict,
};
use crate::fdb::FdbEntry;
use crate::flowsock::FlowSocket;
use crate::gateway::{self, GatewayConfig, Routed};
use crate::nat::{Flow, FlowId, FlowKey, FlowPath, NatConfig, NatProto, NatTable, Outbound, PublishSpec};
use crate::port::{BATCH, FrameBuf, MAX_FRAME_LEN, Port, RxBatch, SendResult};
use crate::wire::EthernetFrame;
use crate::wire::icmpv4::DstUnreachable;
use crate::wire::vnet;

/// Dataplane settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// How long to keep polling after the last frame before sleeping in the
    /// kernel. Zero makes the worker purely event driven.
    pub busy_poll: Duration,
    /// Outbound NAT's limits and timeouts.
    pub nat: NatConfig,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            busy_poll: Duration::from_millis(5),
            nat: NatConfig::default(),
        }
    }
}

/// Errors of dataplane control calls.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The port's fd could not be registered for polling.
    #[error("register port {name}: {source}")]
    Register {
        /// The port's name.
        name: String,
        /// The epoll error.
        source: io::Error,
    },
    /// A published host port could not be bound.
    #[error("bind {host}: {source}")]
    Bind {
        /// The host address and port.
        host: std::net::SocketAddrV4,
        /// The bind error (EADDRINUSE: taken by another program).
        source: io::Error,
    },
    /// The worker thread is gone.
    #[error("the dataplane worker has stopped")]
    Stopped,
    /// The worker could not start.
    #[error("start the dataplane worker: {0}")]
    Start(io::Error),
}

/// One port's settings and counters, as `stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStats {
    /// The port.
    pub id: PortId,
    /// Its settings.
    pub config: PortConfig,
    /// Its counters.
    pub counters: PortCounters,
}

enum Command {
    AddDomain(DomainConfig, Sender<DomainId>),
    ConfigureDomain(DomainId, DomainConfig, Sender<Result<(), EngineError>>),
    RemoveDomain(DomainId, Sender<Result<(), EngineError>>),
    AddPort(Box<dyn Port>, PortConfig, Sender<Result<PortId, DataplaneError>>),
    RemovePort(PortId, Sender<Result<(), EngineError>>),
    Fdb(DomainId, Sender<Result<Vec<FdbEntry>, EngineError>>),
    FdbLen(DomainId, Sender<Result<usize, EngineError>>),
    Stats(Sender<Vec<PortStats>>),
    Nat(Sender<Vec<NatFlow>>),
    Publish(PortId, Vec<PublishSpec>, Ipv4Addr, Sender<Result<(), DataplaneError>>),
    Shutdown,
}

/// One outbound NAT flow, as `plexus nat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatFlow {
    /// The flow.
    pub flow: Flow,
    /// Time since it last carried a packet.
    pub idle: Duration,
}

const WAKER: Token = Token(usize::MAX);
/// Tokens from here up are NAT flows' host sockets (`NAT_TOKENS + flow id`).
const NAT_TOKENS: usize = 1 << 31;
/// Tokens from here up to `NAT_TOKENS` are published ports' listening sockets.
const PUB_TOKENS: usize = 1 << 30;
/// Datagrams read from one flow socket per wake-up before moving on.
const NAT_BURST: usize = 32;
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// Gateway replies one burst can carry; more in one burst are dropped (`tx_full`).
const REPLY_SLOTS: usize = 8;

/// The handle of a running dataplane. Clones share the worker; the worker stops
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Dataplane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: Sender<Command>,
    waker: Waker,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Dataplane {
    /// Starts the worker thread.
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        let poll = Poll::new().map_err(DataplaneError::Start)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(DataplaneError::Start)?;
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("plexus-dataplane".into())
            .spawn(move || Worker::new(poll, rx, config).run())
            .map_err(DataplaneError::Start)?;
        Ok(Dataplane {
            inner: Arc::new(Inner {
                tx,
                waker,
                thread: std::sync::Mutex::new(Some(thread)),
            }),
        })
    }

    fn call<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Result<T, DataplaneError> {
        let (rtx, rrx) = bounded(1);
        self.inner.tx.send(make(rtx)).map_err(|_| DataplaneError::Stopped)?;
        self.inner.waker.wake().map_err(|_| DataplaneError::Stopped)?;
        rrx.recv().map_err(|_| DataplaneError::Stopped)
    }

    /// Adds a bridge domain.
    pub fn add_domain(&self, config: DomainConfig) -> Result<DomainId, DataplaneError> {
        self.call(|r| Command::AddDomain(config, r))
    }

    /// Changes a bridge domain's settings.
    pub fn configure_domain(&self, id: DomainId, config: DomainConfig) -> Result<(), DataplaneError> {
        Ok(self.call(|r| Command::ConfigureDomain(id, config, r))??)
    }

    /// Removes an empty bridge domain.
    pub fn remove_domain(&self, id: DomainId) -> Result<(), DataplaneError> {
        Ok(self.call(|r| Command::RemoveDomain(id, r))??)
    }

    /// Hands a port to the worker; frames flow as soon as this returns.
    pub fn add_port(&self, port: Box<dyn Port>, config: PortConfig) -> Result<PortId, DataplaneError> {
        self.call(|r| Command::AddPort(port, config, r))?
    }

    /// Removes a port; its fd is closed by the worker.
    pub fn remove_port(&self, id: PortId) -> Result<(), DataplaneError> {
        Ok(self.call(|r| Command::RemovePort(id, r))??)
    }

    /// A domain's MAC table.
    pub fn fdb(&self, id: DomainId) -> Result<Vec<FdbEntry>, DataplaneError> {
        Ok(self.call(|r| Command::Fdb(id, r))??)
    }

    /// Number of entries in a domain's MAC table.
    pub fn fdb_len(&self, id: DomainId) -> Result<usize, DataplaneError> {
        Ok(self.call(|r| Command::FdbLen(id, r))??)
    }

    /// Every port's counters.
    pub fn stats(&self) -> Result<Vec<PortStats>, DataplaneError> {
        self.call(Command::Stats)
    }

    /// The outbound NAT flows.
    pub fn nat(&self) -> Result<Vec<NatFlow>, DataplaneError> {
        self.call(Command::Nat)
    }

    /// Publishes UDP ports of the container behind `port` (address
    /// `container`): binds every host socket or none. The client's source
    /// address is kept (a loopback client appears as the network's gateway).
    /// The sockets close when the port is removed.
    pub fn publish(&self, port: PortId, specs: Vec<PublishSpec>, container: Ipv4Addr) -> Result<(), DataplaneError> {
        self.call(|r| Command::Publish(port, specs, container, r))?
    }
}

struct Slot {
    port: Box<dyn Port>,
    ready: bool,
    /// Indices into the current rx batch, to send out of this port.
    gather: Vec<u8>,
}

struct Worker {
    poll: Poll,
    rx: Receiver<Command>,
    config: DataplaneConfig,
    engine: Engine,
    slots: Vec<Option<Slot>>,
    batch: RxBatch,
    /// Replies the gateway built during the current burst.
    replies: Vec<FrameBuf>,
    /// Egress ports with a non-empty gather in the current burst.
    touched: Vec<PortId>,
    /// Outbound NAT's table (sans-IO) and the host socket of each flow.
    nat: NatTable,
    nat_sockets: Vec<Option<FlowSocket>>,
    /// Flows whose sockets became readable in this wake-up.
    nat_ready: Vec<FlowId>,
    /// Receive buffer for flow sockets.
    nat_rx: Box<[u8]>,
    /// Published ports: listening sockets, and the conversations they carry.
    published: Published,
    last_expire: Instant,
    last_work: Instant,
    stop: bool,
}

fn slot_index(id: PortId) -> usize {
    id.0 as usize
}

impl Worker {
    fn new(poll: Poll, rx: Receiver<Command>, config: DataplaneConfig) -> Worker {
        let now = Instant::now();
        Worker {
            poll,
            rx,
            config,
            engine: Engine::new(),
            slots: Vec::new(),
            batch: RxBatch::default(),
            replies: (0..REPLY_SLOTS)
                .map(|_| FrameBuf::with_capacity(MAX_FRAME_LEN))
                .collect(),
            touched: Vec::new(),
            nat: NatTable::new(config.nat),
            nat_sockets: Vec::new(),
            nat_ready: Vec::with_capacity(256),
            nat_rx: vec![0u8; 65536].into_boxed_slice(),
            published: Published::default(),
            last_expire: now,
            last_work: now,
            stop: false,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let now = Instant::now();
            let any_ready = self.slots.iter().flatten().any(|s| s.ready);
            let spinning = now.saturating_duration_since(self.last_work) < self.config.busy_poll;
            let timeout = if any_ready || spinning {
                Duration::ZERO
            } else {
                EXPIRE_EVERY.saturating_sub(now.saturating_duration_since(self.last_expire))
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // epoll_wait fails only on programming errors (EBADF, EINVAL);
                // nothing sensible is left to do but stop.
                Err(_) => return,
            }
            for ev in &events {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t >= NAT_TOKENS => {
                        if let Ok(id) = u32::try_from(t - NAT_TOKENS) {
                            self.nat_ready.push(FlowId(id));
                        }
                    }
                    Token(t) if t >= PUB_TOKENS => self.published.ready.push(t - PUB_TOKENS),
                    Token(t) => {
                        if let Some(Some(s)) = self.slots.get_mut(t) {
                            s.ready = true;
                        }
                    }
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.control(cmd);
            }
            let now = Instant::now();
            let mut frames = 0;
            while let Some(id) = self.nat_ready.pop() {
                frames += self.nat_inbound(now, id);
            }
            while let Some(i) = self.published.ready.pop() {
                frames += self.published_inbound(now, i);
            }
            for i in 0..self.slots.len() {
                if self.slots[i].as_ref().is_some_and(|s| s.ready) {
                    frames += self.burst(now, i);
                }
            }
            if frames > 0 {
                self.last_work = now;
            }
            if now.saturating_duration_since(self.last_expire) >= EXPIRE_EVERY {
                self.engine.expire(now);
                self.collect_overruns();
                let (sockets, poll) = (&mut self.nat_sockets, &self.poll);
                self.nat.expire(now, |id| close_flow(poll, sockets, id));
                let timeout = self.config.nat.udp_timeout;
                self.published
                    .conversations
                    .retain(|_, c| now.saturating_duration_since(c.last_seen) < timeout);
                self.last_expire = now;
            }
        }
    }

    /// Receives one burst from port `i` and forwards it; returns the frame count.
    fn burst(&mut self, now: Instant, i: usize) -> usize {
        let ingress = PortId(u32::try_from(i).unwrap_or(u32::MAX));
        let Some(slot) = self.slots[i].as_mut() else { return 0 };
        let in_offload = slot.port.offload();
        let r = match slot.port.recv(&mut self.batch.bufs) {
            Ok(r) => r,
            Err(_) => {
                // The device is gone or broken; wait for the next readiness edge
                // (or the control plane removing the port).
                slot.ready = false;
                self.engine.count_drop(ingress, DropReason::RxError);
                return 0;
            }
        };
        slot.ready = r.more;
        for _ in 0..r.truncated {
            self.engine.count_drop(ingress, DropReason::Oversize);
        }
        let mut replies = 0;
        for (k, buf) in self.batch.bufs[..r.frames].iter().enumerate() {
            let hdr = in_offload.then(|| buf.vnet_hdr());
            let idx = u8::try_from(k).unwrap_or(u8::MAX);
            match self.engine.classify(now, ingress, hdr, buf.frame()) {
                Verdict::Drop(_) => {}
                Verdict::Gateway => {
                    let Some(out) = self.replies.get_mut(replies) else {
                        self.engine.count_drop(ingress, DropReason::TxFull);
                        continue;
                    };
                    match self.engine.gateway(ingress, buf.frame(), out.frame_area_mut()) {
                        GatewayOutcome::Reply(n) => {
                            out.set_built(n);
                            replies += 1;
                        }
                        GatewayOutcome::Routed(r, gw) => {
                            nat_outbound(NatCtx {
                                now,
                                ingress,
                                frame: buf.frame(),
                                routed: &r,
                                gateway: gw,
                                published: &mut self.published,
                                engine: &mut self.engine,
                                nat: &mut self.nat,
                                sockets: &mut self.nat_sockets,
                                poll: &self.poll,
                            });
                        }
                        GatewayOutcome::Dropped => {}
                    }
                }
                Verdict::Unicast(q) => gather(&mut self.slots, &mut self.touched, q, idx),
                Verdict::Flood(d) => {
                    for &q in self.engine.domain_ports(d) {
                        if q != ingress {
                            gather(&mut self.slots, &mut self.touched, q, idx);
                        }
                    }
                }
            }
        }
        for t in 0..self.touched.len() {
            let q = self.touched[t];
            self.flush(q, in_offload);
        }
        self.touched.clear();
        if replies > 0 {
            self.send_replies(ingress, replies);
        }
        r.frames
    }

    /// Sends the gateway's replies of this burst back out of the ingress port.
    fn send_replies(&mut self, ingress: PortId, n: usize) {
        let Some(slot) = self.slots.get_mut(slot_index(ingress)).and_then(Option::as_mut) else {
            return;
        };
        let offload = slot.port.offload();
        let mut frames: [&[u8]; REPLY_SLOTS] = [&[]; REPLY_SLOTS];
        for (f, r) in frames.iter_mut().zip(&self.replies[..n]) {
            *f = if offload { r.bytes_with_hdr() } else { r.frame() };
        }
        let r = slot.port.send(&frames[..n]);
        for f in &self.replies[..r.sent.min(n)] {
            self.engine.count_tx(ingress, f.len());
        }
        count_send_drops(&mut self.engine, ingress, n, r);
    }

    /// Sends the gathered frames out of port `q` in one batched call.
    fn flush(&mut self, q: PortId, in_offload: bool) {
        let Some(slot) = self.slots.get_mut(slot_index(q)).and_then(Option::as_mut) else {
            return;
        };
        let out_offload = slot.port.offload();
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        let mut n = 0;
        for &k in &slot.gather {
            let buf = &self.batch.bufs[usize::from(k)];
            if out_offload {
                frames[n] = buf.bytes_with_hdr();
            } else {
                // A super-frame or partial checksum cannot leave through a port
                // without offloads as it is.
                let needs = in_offload && vnet::Header::new_checked(buf.vnet_hdr()).map_or(true, |h| h.needs_offload());
                if needs {
                    self.engine.count_drop(q, DropReason::NoOffload);
                    continue;
                }
                frames[n] = buf.frame();
            }
            n += 1;
        }
        let r = slot.port.send(&frames[..n]);
        let hdr = if out_offload { crate::port::VNET_HDR_LEN } else { 0 };
        // Bytes are those of the first `sent` frames: exact unless a frame failed.
        for f in &frames[..r.sent.min(n)] {
            self.engine.count_tx(q, f.len() - hdr);
        }
        slot.gather.clear();
        count_send_drops(&mut self.engine, q, n, r);
    }

    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::AddDomain(c, r) => {
                let _ = r.send(self.engine.add_domain(c));
            }
            Command::ConfigureDomain(id, c, r) => {
                let _ = r.send(self.engine.configure_domain(id, c));
            }
            Command::RemoveDomain(id, r) => {
                let _ = r.send(self.engine.remove_domain(id));
            }
            Command::AddPort(port, config, r) => {
                let _ = r.send(self.add_port(port, config));
            }
            Command::RemovePort(id, r) => {
                let (sockets, poll) = (&mut self.nat_sockets, &self.poll);
                self.nat.remove_port(id, |f| close_flow(poll, sockets, f));
                self.published.remove_port(&self.poll, id);
                let res = self.engine.remove_port(id).map(|_| {
                    if let Some(slot) = self.slots.get_mut(slot_index(id)).and_then(Option::take) {
                        let fd = slot.port.raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                });
                let _ = r.send(res);
            }
            Command::Fdb(id, r) => {
                let _ = r.send(self.engine.fdb(id, Instant::now()));
            }
            Command::FdbLen(id, r) => {
                let _ = r.send(self.engine.fdb_len(id));
            }
            Command::Stats(r) => {
                self.collect_overruns();
                let stats = self
                    .engine
                    .ports()
                    .map(|(id, config, counters)| PortStats {
                        id,
                        config: config.clone(),
                        counters,
                    })
                    .collect();
                let _ = r.send(stats);
            }
            Command::Nat(r) => {
                let now = Instant::now();
                let flows = self
                    .nat
                    .flows()
                    .map(|(_, f)| NatFlow {
                        flow: *f,
                        idle: now.saturating_duration_since(f.last_seen),
                    })
                    .collect();
                let _ = r.send(flows);
            }
            Command::Publish(port, specs, container, r) => {
                let _ = r.send(self.published.add(&self.poll, port, &specs, container));
            }
            Command::Shutdown => self.stop = true,
        }
    }

    /// Reads what the outside sent on flow `id`'s socket and delivers it to the
    /// container; returns the datagrams delivered.
    fn nat_inbound(&mut self, now: Instant, id: FlowId) -> usize {
        let mut delivered = 0;
        for _ in 0..NAT_BURST {
            let Some(sock) = self.nat_sockets.get(id.0 as usize).and_then(Option::as_ref) else {
                break;
            };
            let got = match sock.recv(&mut self.nat_rx) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The outside answered with an ICMP error, which the kernel
                // reports on the connected socket: the container gets the same.
                Err(e) => match e.raw_os_error() {
                    Some(libc::ECONNREFUSED) => Err(DstUnreachable::PortUnreachable),
                    Some(libc::EHOSTUNREACH) => Err(DstUnreachable::HostUnreachable),
                    Some(libc::ENETUNREACH) => Err(DstUnreachable::NetUnreachable),
                    _ => continue,
                },
            };
            let Some(flow) = self.nat.inbound(now, id) else { break };
            let port = flow.path.port;
            let out = &mut self.replies[0];
            let built = match got {
                Ok(n) => gateway::inbound_frame(&flow, &self.nat_rx[..n], out.frame_area_mut()),
                Err(reason) => gateway::unreachable_frame(&flow, reason, out.frame_area_mut()),
            };
            let Some(len) = built else {
                self.engine.count_drop(port, DropReason::NatError);
                continue;
            };
            out.set_built(len);
            match self.deliver_reply(port) {
                Some(true) => delivered += 1,
                Some(false) => {}
                None => break,
            }
        }
        delivered
    }

    /// Delivers what clients sent to published listener `i` into its container,
    /// with the client's address as the source; returns the datagrams delivered.
    fn published_inbound(&mut self, now: Instant, i: usize) -> usize {
        let mut delivered = 0;
        for _ in 0..NAT_BURST {
            let Some(l) = self.published.listeners.get(i).and_then(Option::as_ref) else {
                break;
            };
            let (n, from) = match l.sock.recv_from(&mut self.nat_rx) {
                Ok((n, SocketAddr::V4(from))) => (n, from),
                Ok(_) => continue,
                Err(_) => break,
            };
            let (port, container) = (l.port, l.container);
            let Some(cfg) = self.engine.port_config(port) else {
                break;
            };
            let (Some(mac), Some(gw)) = (cfg.mac, self.engine.domain_gateway(cfg.domain)) else {
                break;
            };
            // The container cannot answer a loopback source: it sees the gateway.
            let apparent = if from.ip().is_loopback() || from.ip().is_unspecified() {
                SocketAddrV4::new(gw.ip, from.port())
            } else {
                from
            };
            self.published.conversations.insert(
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
                path: FlowPath {
                    port,
                    mac,
                    gateway_mac: gw.mac,
                },
                last_seen: now,
                packets_out: 0,
                packets_in: 0,
            };
            let out = &mut self.replies[0];
            let Some(len) = gateway::inbound_frame(&flow, &self.nat_rx[..n], out.frame_area_mut()) else {
                self.engine.count_drop(port, DropReason::NatError);
                continue;
            };
            out.set_built(len);
            match self.deliver_reply(port) {
                Some(true) => delivered += 1,
                Some(false) => {}
                None => break,
            }
        }
        delivered
    }

    /// Sends the frame built in `replies[0]` out of `port` and counts it;
    /// `None` when the port is gone, else whether the frame left.
    fn deliver_reply(&mut self, port: PortId) -> Option<bool> {
        let out = &self.replies[0];
        let len = out.frame().len();
        let slot = self.slots.get_mut(slot_index(port)).and_then(Option::as_mut)?;
        let frame = if slot.port.offload() {
            out.bytes_with_hdr()
        } else {
            out.frame()
        };
        let r = slot.port.send(&[frame]);
        if r.sent == 1 {
            self.engine.count_tx(port, len);
            Some(true)
        } else {
            count_send_drops(&mut self.engine, port, 1, r);
            Some(false)
        }
    }

    /// Moves the kernel's per-port drop counts into the engine's counters.
    fn collect_overruns(&mut self) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let n = slot.port.take_rx_overruns();
            if n > 0 {
                let id = PortId(u32::try_from(i).unwrap_or(u32::MAX));
                self.engine.count_drops(id, DropReason::RxOverrun, n);
            }
        }
    }

    fn add_port(&mut self, port: Box<dyn Port>, config: PortConfig) -> Result<PortId, DataplaneError> {
        let name = config.name.clone();
        let id = self.engine.add_port(config)?;
        let fd = port.raw_fd();
        let i = slot_index(id);
        if let Err(source) = self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)
        {
            let _ = self.engine.remove_port(id);
            return Err(DataplaneError::Register { name, source });
        }
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        // Ready at once: frames may have queued before registration.
        self.slots[i] = Some(Slot {
            port,
            ready: true,
            gather: Vec::with_capacity(BATCH),
        });
        if self.touched.capacity() < self.slots.len() {
            self.touched.reserve(self.slots.len() - self.touched.len());
        }
        Ok(id)
    }
}

fn gather(slots: &mut [Option<Slot>], touched: &mut Vec<PortId>, q: PortId, idx: u8) {
    if let Some(Some(s)) = slots.get_mut(slot_index(q)) {
        if s.gather.is_empty() {
            touched.push(q);
        }
        s.gather.push(idx);
    }
}

/// Everything the outbound half of NAT touches for one packet.
struct NatCtx<'a> {
    now: Instant,
    ingress: PortId,
    frame: &'a [u8],
    routed: &'a Routed,
    gateway: GatewayConfig,
    published: &'a mut Published,
    engine: &'a mut Engine,
    nat: &'a mut NatTable,
    sockets: &'a mut Vec<Option<FlowSocket>>,
    poll: &'a Poll,
}

/// Carries a routed packet out through its flow's host socket, opening the
/// socket for a new flow.
fn nat_outbound(c: NatCtx<'_>) {
    let Ok(eth) = EthernetFrame::new_checked(c.frame) else {
        return;
    };
    let payload = c.frame.get(c.routed.payload.clone()).unwrap_or(&[]);
    // A reply of a published port's conversation goes back through its listener.
    if c.routed.key.proto == NatProto::Udp && c.published.reply(c.now, c.routed.key, payload) {
        return;
    }
    if *c.routed.key.outside.ip() == c.gateway.ip {
        // UDP to the gateway itself that answers no conversation: never NAT it
        // (the gateway's address is not the host's).
        return c.engine.count_drop(c.ingress, DropReason::GatewayUnhandled);
    }
    let path = FlowPath {
        port: c.ingress,
        mac: eth.src(),
        gateway_mac: c.gateway.mac,
    };
    let id = match c.nat.outbound(c.now, c.routed.key, path) {
        Outbound::Full => return c.engine.count_drop(c.ingress, DropReason::NatFull),
        Outbound::Existing(id) => id,
        Outbound::New(id) => {
            // A raw ICMP fallback needs an identifier unique among live flows.
            let raw_ident = u16::try_from(id.0 & 0xffff).unwrap_or(0);
            let opened = FlowSocket::connect(c.routed.key.proto, c.routed.key.outside, raw_ident).and_then(|sock| {
                let fd = sock.raw_fd();
                c.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(NAT_TOKENS + id.0 as usize),
                    Interest::READABLE,
                )?;
                Ok(sock)
            });
            match opened {
                Ok(sock) => {
                    let i = id.0 as usize;
                    if c.sockets.len() <= i {
                        c.sockets.resize_with(i + 1, || None);
                    }
                    c.sockets[i] = Some(sock);
                }
                Err(_) => {
                    c.nat.remove(id);
                    return c.engine.count_drop(c.ingress, DropReason::NatError);
                }
            }
            id
        }
    };
    let sent = c
        .sockets
        .get_mut(id.0 as usize)
        .and_then(Option::as_mut)
        .map(|s| s.send(payload));
    if !matches!(sent, Some(Ok(_))) {
        c.engine.count_drop(c.ingress, DropReason::NatError);
    }
}

/// Closes a flow's host socket.
fn close_flow(poll: &Poll, sockets: &mut [Option<FlowSocket>], id: FlowId) {
    if let Some(sock) = sockets.get_mut(id.0 as usize).and_then(Option::take) {
        let fd = sock.raw_fd();
        let _ = poll.registry().deregister(&mut SourceFd(&fd));
    }
}

/// Counts the frames of a send of `n` that did not go: refused ones as
/// `tx_error`, the rest (a full queue) as `tx_full`.
fn count_send_drops(engine: &mut Engine, port: PortId, n: usize, r: SendResult) {
    let full = n.saturating_sub(r.sent + r.failed);
    engine.count_drops(port, DropReason::TxError, r.failed as u64);
    engine.count_drops(port, DropReason::TxFull, full as u64);
}

/// A published port's listening socket.
#[derive(Debug)]
struct Listener {
    sock: UdpSocket,
    port: PortId,
    /// The container's address and port it delivers to.
    container: SocketAddrV4,
}

/// A client's conversation with a published port: the container answers
/// `apparent` (the client, or the gateway for a loopback client) and the reply
/// leaves through the listener towards the real client.
#[derive(Debug, Clone, Copy)]
struct Conversation {
    listener: usize,
    client: SocketAddrV4,
    last_seen: Instant,
}

/// Published ports: listeners (token `PUB_TOKENS + index`) and conversations,
/// keyed by (container, apparent client).
#[derive(Debug, Default)]
struct Published {
    listeners: Vec<Option<Listener>>,
    conversations: HashMap<(SocketAddrV4, SocketAddrV4), Conversation>,
    ready: Vec<usize>,
}

impl Published {
    /// Binds every spec's host socket, or none.
    fn add(
        &mut self,
        poll: &Poll,
        port: PortId,
        specs: &[PublishSpec],
        container: Ipv4Addr,
    ) -> Result<(), DataplaneError> {
        let mut bound = Vec::with_capacity(specs.len());
        for s in specs {
            let sock = UdpSocket::bind(s.host)
                .and_then(|sock| sock.set_nonblocking(true).map(|()| sock))
                .map_err(|source| DataplaneError::Bind { host: s.host, source })?;
            bound.push((sock, SocketAddrV4::new(container, s.container_port)));
        }
        for (sock, container) in bound {
            let i = self
                .listeners
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.listeners.len());
            let fd = sock.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(PUB_TOKENS + i), Interest::READABLE)
                .map_err(|source| DataplaneError::Register {
                    name: format!("published port {container}"),
                    source,
                })?;
            if i == self.listeners.len() {
                self.listeners.push(None);
            }
            self.listeners[i] = Some(Listener { sock, port, container });
        }
        Ok(())
    }

    /// Closes the listeners of `port` and forgets their conversations.
    fn remove_port(&mut self, poll: &Poll, port: PortId) {
        for (i, slot) in self.listeners.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|l| l.port == port) {
                if let Some(l) = slot.take() {
                    let fd = l.sock.as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                }
                self.conversations.retain(|_, c| c.listener != i);
            }
        }
    }

    /// Sends a container's UDP reply through the listener of its conversation;
    /// false if the datagram belongs to no conversation.
    fn reply(&mut self, now: Instant, key: FlowKey, payload: &[u8]) -> bool {
        let Some(c) = self.conversations.get_mut(&(key.inside, key.outside)) else {
            return false;
        };
        c.last_seen = now;
        if let Some(l) = self.listeners.get(c.listener).and_then(Option::as_ref) {
            let _ = l.sock.send_to(payload, c.client);
        }
        true
    }
}
