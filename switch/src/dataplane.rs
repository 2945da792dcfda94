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
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::engine::{
    DomainConfig, DomainId, DropReason, Engine, EngineError, GatewayOutcome, PortConfig, PortCounters, PortId, Verdict,
};
use crate::fdb::FdbEntry;
use crate::flowsock::FlowSocket;
use crate::gateway::{self, GatewayConfig, Routed};
use crate::nat::{FdUse, Flow, FlowId, FlowKey, FlowPath, NatConfig, NatProto, NatTable, Outbound, PublishSpec};
use crate::port::{BATCH, FrameBuf, MAX_FRAME_LEN, Port, RxBatch, SendResult};
use crate::tcp::{FrameSink, StackConfig, Step, TcpRelay};
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
    #[error("bind {host}/{}: {source}", proto.as_str())]
    Bind {
        /// The host address and port.
        host: std::net::SocketAddrV4,
        /// TCP or UDP.
        proto: NatProto,
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
    FdUse(Sender<FdUse>),
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

    /// Where the file descriptor budget stands (ports, listeners, flows, and
    /// one endpoint's share of flows).
    pub fn fd_use(&self) -> Result<FdUse, DataplaneError> {
        self.call(Command::FdUse)
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
    /// Flows whose burst ended before their socket ran dry (for the next round).
    nat_again: Vec<FlowId>,
    /// Receive buffer for flow sockets.
    nat_rx: Box<[u8]>,
    /// Published ports: listening sockets, and the conversations they carry.
    published: Published,
    /// TCP: the relay (one smoltcp stack per endpoint) and each flow's host
    /// stream (token `NAT_TOKENS + flow id`, like the datagram sockets).
    tcp: TcpRelay,
    streams: Vec<Option<TcpStream>>,
    /// TCP flows whose streams were ready: (flow, readable, writable).
    tcp_ready: Vec<(FlowId, bool, bool)>,
    /// TCP flows that finished during a walk, closed after it: (flow, reset).
    closing: Vec<(FlowId, bool)>,
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
            nat_again: Vec::with_capacity(256),
            nat_rx: vec![0u8; 65536].into_boxed_slice(),
            published: Published::default(),
            tcp: TcpRelay::new(now),
            streams: Vec::new(),
            tcp_ready: Vec::with_capacity(256),
            closing: Vec::new(),
            last_expire: now,
            last_work: now,
            stop: false,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let now = Instant::now();
            let any_ready = self.slots.iter().flatten().any(|s| s.ready)
                || !self.nat_again.is_empty()
                || !self.published.again.is_empty();
            let spinning = now.saturating_duration_since(self.last_work) < self.config.busy_poll;
            let timeout = if any_ready || spinning {
                Duration::ZERO
            } else {
                let expire = EXPIRE_EVERY.saturating_sub(now.saturating_duration_since(self.last_expire));
                self.tcp.next_timer(now).map_or(expire, |t| t.min(expire))
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
                        let Ok(id) = u32::try_from(t - NAT_TOKENS) else {
                            continue;
                        };
                        if self.streams.get(id as usize).is_some_and(Option::is_some) {
                            let r = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                            let w = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                            self.tcp_ready.push((FlowId(id), r, w));
                        } else {
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
            self.nat_ready.append(&mut self.nat_again);
            self.published.ready.append(&mut self.published.again);
            let now = Instant::now();
            let mut frames = 0;
            while let Some(id) = self.nat_ready.pop() {
                frames += self.nat_inbound(now, id);
            }
            while let Some((id, r, w)) = self.tcp_ready.pop() {
                frames += self.tcp_host_event(now, id, r, w);
            }
            while let Some(i) = self.published.ready.pop() {
                frames += self.published_inbound(now, i);
            }
            for i in 0..self.slots.len() {
                if self.slots[i].as_ref().is_some_and(|s| s.ready) {
                    frames += self.burst(now, i);
                }
            }
            self.tcp_timers(now);
            self.finish_closing(now);
            if frames > 0 {
                self.last_work = now;
            }
            if now.saturating_duration_since(self.last_expire) >= EXPIRE_EVERY {
                self.engine.expire(now);
                self.collect_overruns();
                let (sockets, poll, closing) = (&mut self.nat_sockets, &self.poll, &mut self.closing);
                self.nat.expire(now, |id| {
                    close_flow(poll, sockets, id);
                    closing.push((id, true));
                });
                self.finish_closing(now);
                let timeout = self.config.nat.udp_timeout;
                self.published
                    .conversations
                    .retain(|_, c| now.saturating_duration_since(c.last_seen) < timeout);
                self.published.again.append(&mut self.published.stalled);
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
                        GatewayOutcome::Routed(r, gw) if r.key.proto == NatProto::Tcp => {
                            let c = TcpCtx {
                                now,
                                poll: &self.poll,
                                engine: &mut self.engine,
                                slots: &mut self.slots,
                                nat: &mut self.nat,
                                tcp: &mut self.tcp,
                                streams: &mut self.streams,
                                closing: &mut self.closing,
                            };
                            tcp_outbound(c, ingress, buf.frame(), &r, gw);
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
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine: &mut self.engine,
        };
        sink.send(ingress, &self.replies[..n]);
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
                let added = self.add_port(port, config);
                self.refresh_fixed();
                let _ = r.send(added);
            }
            Command::RemovePort(id, r) => {
                let (sockets, poll, closing) = (&mut self.nat_sockets, &self.poll, &mut self.closing);
                self.nat.remove_port(id, |f| {
                    close_flow(poll, sockets, f);
                    closing.push((f, true));
                });
                self.finish_closing(Instant::now());
                self.tcp.remove_stack(id);
                self.published.remove_port(&self.poll, id);
                let res = self.engine.remove_port(id).map(|_| {
                    if let Some(slot) = self.slots.get_mut(slot_index(id)).and_then(Option::take) {
                        let fd = slot.port.raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                });
                self.refresh_fixed();
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
                let added = self.published.add(&self.poll, port, &specs, container);
                self.refresh_fixed();
                let _ = r.send(added);
            }
            Command::FdUse(r) => {
                let _ = r.send(self.nat.fd_use());
            }
            Command::Shutdown => self.stop = true,
        }
    }

    /// Reads what the outside sent on flow `id`'s socket and delivers it to the
    /// container; returns the datagrams delivered.
    fn nat_inbound(&mut self, now: Instant, id: FlowId) -> usize {
        let mut delivered = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                // Readiness is edge-triggered: come back for the rest.
                self.nat_again.push(id);
            }
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
            let out = self.replies[0].frame_area_mut();
            let built = match got {
                Ok(n) => gateway::inbound_frame(&flow, &self.nat_rx[..n], out),
                Err(reason) => gateway::unreachable_frame(&flow, reason, out),
            };
            match self.deliver_built(flow.path.port, built) {
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
        if matches!(
            self.published.listeners.get(i),
            Some(Some(Listener {
                sock: ListenSock::Tcp(_),
                ..
            }))
        ) {
            return self.published_accept(now, i);
        }
        let mut delivered = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                self.published.again.push(i);
            }
            let Some(Some(Listener {
                sock: ListenSock::Udp(sock),
                port,
                container,
            })) = self.published.listeners.get(i)
            else {
                break;
            };
            let (n, from) = match sock.recv_from(&mut self.nat_rx) {
                Ok((n, SocketAddr::V4(from))) => (n, from),
                Ok(_) => continue,
                Err(_) => break,
            };
            let (port, container) = (*port, *container);
            let Some((path, stack)) = self.endpoint_path(port) else {
                break;
            };
            let apparent = apparent_client(from, stack.gateway_ip);
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
                path,
                last_seen: now,
                packets_out: 0,
                packets_in: 0,
                tcp: None,
            };
            let built = gateway::inbound_frame(&flow, &self.nat_rx[..n], self.replies[0].frame_area_mut());
            match self.deliver_built(port, built) {
                Some(true) => delivered += 1,
                Some(false) => {}
                None => break,
            }
        }
        delivered
    }

    /// Sends the frame of `built` bytes in `replies[0]` (none: building failed,
    /// counted as `nat_error`) out of `port`; `None` when the port is gone,
    /// else whether the frame left.
    fn deliver_built(&mut self, port: PortId, built: Option<usize>) -> Option<bool> {
        let Some(len) = built else {
            self.engine.count_drop(port, DropReason::NatError);
            return Some(false);
        };
        self.replies[0].set_built(len);
        self.deliver_reply(port)
    }

    /// Sends the frame built in `replies[0]` out of `port` and counts it;
    /// `None` when the port is gone, else whether the frame left.
    fn deliver_reply(&mut self, port: PortId) -> Option<bool> {
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine: &mut self.engine,
        };
        sink.send_counted(port, &self.replies[..1]).map(|sent| sent == 1)
    }

    /// Handles readiness of TCP flow `id`'s host stream: the end of its
    /// connect, or data or room to move.
    fn tcp_host_event(&mut self, now: Instant, id: FlowId, readable: bool, writable: bool) -> usize {
        let Some(stream) = self.streams.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return 0;
        };
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine: &mut self.engine,
        };
        if !self.tcp.is_connecting(id) {
            let step = self.tcp.host_ready(now, id, readable, writable, stream, &mut sink);
            self.tcp_step(now, id, step);
            return 1;
        }
        let status = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        let step = match status {
            Ok(false) => return 0,
            Ok(true) => self.tcp.host_connected(now, id, true, stream, &mut sink),
            Err(e) => match e.raw_os_error() {
                Some(libc::EHOSTUNREACH) => return self.tcp_unreachable(now, id, DstUnreachable::HostUnreachable),
                Some(libc::ENETUNREACH) => return self.tcp_unreachable(now, id, DstUnreachable::NetUnreachable),
                Some(libc::ETIMEDOUT) => return self.tcp_unreachable(now, id, DstUnreachable::HostUnreachable),
                // Refused (or anything else): the container gets a reset.
                _ => self.tcp.host_connected(now, id, false, stream, &mut sink),
            },
        };
        self.tcp_step(now, id, step);
        1
    }

    /// The outside of outbound TCP flow `id` is unreachable: the container
    /// gets the ICMP error its SYN would have met, and the flow ends.
    fn tcp_unreachable(&mut self, now: Instant, id: FlowId, reason: DstUnreachable) -> usize {
        let quote = self.tcp.held_syn(id).and_then(|syn| {
            let ihl = usize::from(syn.first()? & 0x0f) * 4;
            <[u8; 8]>::try_from(syn.get(ihl..ihl + 8)?).ok()
        });
        if let (Some(flow), Some(quote)) = (self.nat.get(id).copied(), quote) {
            let built = gateway::unreachable_quoting(&flow, reason, quote, self.replies[0].frame_area_mut());
            self.deliver_built(flow.path.port, built);
        }
        self.close_tcp(now, id, false);
        1
    }

    /// Applies a relay step to flow `id`.
    fn tcp_step(&mut self, now: Instant, id: FlowId, step: Step) {
        match step {
            Step::Open(phase) => self.nat.touch_tcp(now, id, phase),
            Step::Done { reset } => self.close_tcp(now, id, reset),
        }
    }

    /// Runs the TCP stacks' timers that are due (nothing when none is) and
    /// closes the connections that ended.
    fn tcp_timers(&mut self, now: Instant) {
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine: &mut self.engine,
        };
        let closing = &mut self.closing;
        self.tcp.poll_timers(now, &mut sink, |id, step| {
            if let Step::Done { reset } = step {
                closing.push((id, reset));
            }
        });
    }

    /// Closes the TCP flows queued in `closing`.
    fn finish_closing(&mut self, now: Instant) {
        while let Some((id, reset)) = self.closing.pop() {
            self.close_tcp(now, id, reset);
        }
    }

    /// Ends TCP flow `id`: closes its host stream (a reset if `reset`), resets
    /// the container side if still open, removes the flow.
    fn close_tcp(&mut self, now: Instant, id: FlowId, reset: bool) {
        if let Some(mut s) = self.streams.get_mut(id.0 as usize).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut s);
            if reset {
                reset_on_close(&s);
            }
        }
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine: &mut self.engine,
        };
        self.tcp.remove(now, id, &mut sink);
        self.nat.remove(id);
    }

    /// Accepts clients of published TCP listener `i`; each becomes a flow whose
    /// stack connects to the container from the client's address.
    fn published_accept(&mut self, now: Instant, i: usize) -> usize {
        let mut accepted = 0;
        for round in 0..NAT_BURST {
            if round + 1 == NAT_BURST {
                self.published.again.push(i);
            }
            let Some(l) = self.published.listeners.get(i).and_then(Option::as_ref) else {
                break;
            };
            let ListenSock::Tcp(ls) = &l.sock else { break };
            let (mut stream, from) = match ls.accept() {
                Ok((s, SocketAddr::V4(from))) => (s, from),
                Ok(_) => continue,
                Err(e) => {
                    // Out of descriptors: the client waits in the backlog
                    // until the next connection wakes the listener.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.engine.count_drop(l.port, DropReason::FdBudget);
                        // Try again at the next tick, not at once (that would
                        // spin while nothing is freed).
                        self.published.stalled.push(i);
                    }
                    break;
                }
            };
            let (port, container) = (l.port, l.container);
            let Some((path, stack)) = self.endpoint_path(port) else {
                reset_on_close(&stream);
                break;
            };
            let client = apparent_client(from, stack.gateway_ip);
            let key = FlowKey {
                proto: NatProto::Tcp,
                inside: container,
                outside: client,
            };
            let id = match self.nat.outbound(now, key, path) {
                Outbound::New(id) => id,
                refused @ (Outbound::Full | Outbound::OverBudget) => {
                    self.engine.count_drop(port, refusal(refused));
                    reset_on_close(&stream);
                    continue;
                }
                Outbound::Existing(_) => {
                    reset_on_close(&stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let token = Token(NAT_TOKENS + id.0 as usize);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.nat.remove(id);
                self.engine.count_drop(port, DropReason::NatError);
                reset_on_close(&stream);
                continue;
            }
            put_stream(&mut self.streams, id, stream);
            self.tcp.ensure_stack(now, port, stack);
            let mut sink = PortSink {
                slots: &mut self.slots,
                engine: &mut self.engine,
            };
            if !self.tcp.open_published(now, id, port, container, client, &mut sink) {
                self.engine.count_drop(port, DropReason::NatError);
                self.close_tcp(now, id, true);
            }
            accepted += 1;
        }
        accepted
    }

    /// How frames reach the container behind `port`: its flow path and stack.
    fn endpoint_path(&self, port: PortId) -> Option<(FlowPath, StackConfig)> {
        let cfg = self.engine.port_config(port)?;
        let (mac, gw) = (cfg.mac?, self.engine.domain_gateway(cfg.domain)?);
        let path = FlowPath {
            port,
            mac,
            gateway_mac: gw.mac,
        };
        Some((path, stack_config(mac, &gw, cfg)))
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

    /// Tells NAT how many descriptors ports and listeners hold (they count
    /// against the fd budget).
    fn refresh_fixed(&mut self) {
        let ports = self.slots.iter().flatten().count();
        let listeners = self.published.listeners.iter().flatten().count();
        self.nat.set_fixed(ports, listeners);
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
    // UDP to the gateway itself that answers no conversation: the host's
    // loopback if the network allows it, else never NAT it.
    let Some(target) = host_target(&c.gateway, c.routed.key.outside) else {
        return c.engine.count_drop(c.ingress, DropReason::GatewayUnhandled);
    };
    let path = FlowPath {
        port: c.ingress,
        mac: eth.src(),
        gateway_mac: c.gateway.mac,
    };
    let id = match c.nat.outbound(c.now, c.routed.key, path) {
        refused @ (Outbound::Full | Outbound::OverBudget) => return c.engine.count_drop(c.ingress, refusal(refused)),
        Outbound::Existing(id) => id,
        Outbound::New(id) => {
            // A raw ICMP fallback needs an identifier unique among live flows.
            let raw_ident = u16::try_from(id.0 & 0xffff).unwrap_or(0);
            let opened = FlowSocket::connect(c.routed.key.proto, target, raw_ident).and_then(|sock| {
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
                Err(e) => {
                    c.nat.remove(id);
                    return c.engine.count_drop(c.ingress, open_failure(&e));
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

/// Everything the TCP half of NAT touches for one packet.
struct TcpCtx<'a> {
    now: Instant,
    poll: &'a Poll,
    engine: &'a mut Engine,
    slots: &'a mut Vec<Option<Slot>>,
    nat: &'a mut NatTable,
    tcp: &'a mut TcpRelay,
    streams: &'a mut Vec<Option<TcpStream>>,
    closing: &'a mut Vec<(FlowId, bool)>,
}

/// Hands a container's TCP segment to its flow's stack; a SYN to the outside
/// opens a flow (its host connect starts, the SYN waits for it); anything else
/// gets the stack's answer (a reset).
fn tcp_outbound(c: TcpCtx<'_>, ingress: PortId, frame: &[u8], routed: &Routed, gw: GatewayConfig) {
    let (Some(packet), Ok(eth)) = (frame.get(routed.payload.clone()), EthernetFrame::new_checked(frame)) else {
        return;
    };
    let now = c.now;
    let mut sink = PortSink {
        slots: c.slots,
        engine: c.engine,
    };
    let key = routed.key;
    if let Some(id) = c.nat.find(&key) {
        match c.streams.get_mut(id.0 as usize).and_then(Option::as_mut) {
            Some(stream) => match c.tcp.ingress(now, id, packet, stream, &mut sink) {
                Step::Open(phase) => c.nat.touch_tcp(now, id, phase),
                Step::Done { reset } => c.closing.push((id, reset)),
            },
            None => c.tcp.stray(now, ingress, packet, &mut sink),
        }
        return;
    }
    if let Some(cfg) = sink.engine.port_config(ingress) {
        c.tcp.ensure_stack(now, ingress, stack_config(eth.src(), &gw, cfg));
    }
    let Some(target) = host_target(&gw, key.outside).filter(|_| routed.syn) else {
        return c.tcp.stray(now, ingress, packet, &mut sink);
    };
    let path = FlowPath {
        port: ingress,
        mac: eth.src(),
        gateway_mac: gw.mac,
    };
    match c.nat.outbound(now, key, path) {
        refused @ (Outbound::Full | Outbound::OverBudget) => {
            sink.engine.count_drop(ingress, refusal(refused));
            c.tcp.stray(now, ingress, packet, &mut sink);
        }
        Outbound::Existing(_) => {}
        Outbound::New(id) => match open_stream(c.poll, target, id) {
            Ok(stream) => {
                put_stream(c.streams, id, stream);
                c.tcp.hold_syn(id, ingress, packet);
            }
            Err(e) => {
                c.nat.remove(id);
                sink.engine.count_drop(ingress, open_failure(&e));
                c.tcp.stray(now, ingress, packet, &mut sink);
            }
        },
    }
}

/// The counter of a new flow NAT refused.
fn refusal(o: Outbound) -> DropReason {
    match o {
        Outbound::OverBudget => DropReason::FdBudget,
        _ => DropReason::NatFull,
    }
}

/// The counter of a flow whose host socket could not be opened: out of
/// descriptors (the process's or the system's) is `fd_budget`, anything else
/// `nat_error`.
fn open_failure(e: &io::Error) -> DropReason {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => DropReason::FdBudget,
        _ => DropReason::NatError,
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

/// Starts a nonblocking connect to `outside` for flow `id`.
fn open_stream(poll: &Poll, outside: SocketAddrV4, id: FlowId) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(SocketAddr::V4(outside))?;
    let _ = stream.set_nodelay(true);
    let token = Token(NAT_TOKENS + id.0 as usize);
    poll.registry()
        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(stream)
}

fn put_stream(streams: &mut Vec<Option<TcpStream>>, id: FlowId, stream: TcpStream) {
    let i = id.0 as usize;
    if streams.len() <= i {
        streams.resize_with(i + 1, || None);
    }
    streams[i] = Some(stream);
}

/// Makes closing `stream` send a reset instead of a FIN (SO_LINGER 0).
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(&stream.as_fd(), nix::sys::socket::sockopt::Linger, &linger);
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

/// Sends frames the switch built out of a port, counting them.
struct PortSink<'a> {
    slots: &'a mut Vec<Option<Slot>>,
    engine: &'a mut Engine,
}

impl PortSink<'_> {
    /// Sends up to [`BATCH`] frames out of `port` in one call; `None` if the
    /// port is gone, else how many left.
    fn send_counted(&mut self, port: PortId, bufs: &[FrameBuf]) -> Option<usize> {
        let slot = self.slots.get_mut(slot_index(port)).and_then(Option::as_mut)?;
        let offload = slot.port.offload();
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        let n = bufs.len().min(BATCH);
        for (f, b) in frames.iter_mut().zip(&bufs[..n]) {
            *f = if offload { b.bytes_with_hdr() } else { b.frame() };
        }
        let r = slot.port.send(&frames[..n]);
        for b in &bufs[..r.sent.min(n)] {
            self.engine.count_tx(port, b.len());
        }
        count_send_drops(self.engine, port, n, r);
        Some(r.sent)
    }
}

impl FrameSink for PortSink<'_> {
    fn send(&mut self, port: PortId, frames: &[FrameBuf]) {
        for chunk in frames.chunks(BATCH) {
            self.send_counted(port, chunk);
        }
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
enum ListenSock {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

impl ListenSock {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            ListenSock::Udp(s) => s.as_raw_fd(),
            ListenSock::Tcp(s) => s.as_raw_fd(),
        }
    }
}

/// A published port's listener and where it delivers.
#[derive(Debug)]
struct Listener {
    sock: ListenSock,
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
    /// Listeners whose burst ended before they ran dry.
    again: Vec<usize>,
    /// TCP listeners whose accept ran out of descriptors: retried each tick.
    stalled: Vec<usize>,
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
            let sock = match s.proto {
                NatProto::Tcp => TcpListener::bind(SocketAddr::V4(s.host)).map(ListenSock::Tcp),
                _ => UdpSocket::bind(s.host)
                    .and_then(|sock| sock.set_nonblocking(true).map(|()| sock))
                    .map(ListenSock::Udp),
            }
            .map_err(|source| DataplaneError::Bind {
                host: s.host,
                proto: s.proto,
                source,
            })?;
            bound.push((sock, SocketAddrV4::new(container, s.container_port)));
        }
        for (sock, container) in bound {
            let i = self
                .listeners
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.listeners.len());
            let fd = sock.raw_fd();
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
                    let fd = l.sock.raw_fd();
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
        if let Some(Listener {
            sock: ListenSock::Udp(sock),
            ..
        }) = self.listeners.get(c.listener).and_then(Option::as_ref)
        {
            let _ = sock.send_to(payload, c.client);
        }
        true
    }
}
