//! The worker: one thread that owns the engine, the ports and the flows.
//!
//! `Runner::run` is the loop: wait for readiness (epoll through mio, or not
//! at all while busy-polling — then a turn that found nothing yields the CPU
//! to anything else runnable on it), serve control commands, then
//! [`Worker::turn`] — one pass of the switch: flows' sockets, published
//! listeners, each ready port's burst, timers. A burst is the model path of
//! the switch: `burst` (receive up to [`BATCH`] frames) → `classify` (the
//! engine's verdict per frame) → `gather` (frame indices per egress port) →
//! `flush` (one batched send per port). Frames for the gateway take the
//! gateway's verdict: a reply back out of the ingress port, a routed packet to
//! NAT ([`super::flows`]), or a counted drop.
//!
//! `turn` takes `now` and the readiness events; it never waits and reads no
//! clock, so tests drive the real worker with ports and a host in memory, at
//! memory speed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Poll, Registry, Token};

use super::dns::DNS_TOKENS;
use super::flows::Nat;
use super::ports::{PortSink, Ports};
use super::{Command, DataplaneConfig, DataplaneError, Health, NatFlow, PortStats};
use crate::frame::BATCH;
use crate::gateway::{self, Action};
use crate::io::{Host, Port};
use crate::l2::{Engine, PortConfig, Verdict};
use crate::types::{DropReason, PortId};

/// The control channel's waker.
pub(crate) const WAKER: Token = Token(usize::MAX);
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// One readiness event: a port (token = its id), a published listener, or a
/// flow's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Whose.
    pub token: Token,
    /// Readable (or closed, or in error).
    pub readable: bool,
    /// Writable (or closed, or in error).
    pub writable: bool,
}

/// The switch the worker runs: engine, ports, NAT, and when it last did what.
pub struct Worker {
    config: DataplaneConfig,
    engine: Engine,
    ports: Ports,
    nat: Nat,
    health: Health,
    last_expire: Instant,
    last_work: Instant,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("ports", &self.ports.count())
            .field("flows", &self.nat.table.len())
            .finish_non_exhaustive()
    }
}

/// The TCP timestamps of the daemon: the wall clock in milliseconds.
fn wall_clock_ms() -> u32 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    u32::try_from(ms & u128::from(u32::MAX)).unwrap_or(0)
}

impl Worker {
    /// A worker with no domains and no ports; its ports' fds are watched by
    /// `registry`, its flows' sockets come from `host`.
    pub fn new(config: DataplaneConfig, registry: Arc<Registry>, host: Box<dyn Host>) -> Worker {
        Worker::with_clocks(config, registry, host, Instant::now(), wall_clock_ms)
    }

    /// [`Worker::new`] with the relay's clocks given: `epoch` (the origin of
    /// the `now` passed to [`Worker::turn`]) and the TCP timestamp clock.
    pub fn with_clocks(
        config: DataplaneConfig,
        registry: Arc<Registry>,
        host: Box<dyn Host>,
        epoch: Instant,
        tsval: fn() -> u32,
    ) -> Worker {
        let nat = Nat::new(config.nat, config.dns.clone(), epoch, tsval, host);
        Worker {
            config,
            engine: Engine::new(),
            ports: Ports::new(registry),
            nat,
            health: Health::default(),
            last_expire: epoch,
            last_work: epoch,
        }
    }

    /// One pass of the switch at `now`: what `events` made ready, every port
    /// without an fd, and the timers that are due. Returns the frames moved.
    pub fn turn(&mut self, now: Instant, events: &[Event]) -> usize {
        for ev in events {
            match ev.token {
                WAKER => {}
                Token(t) if t >= DNS_TOKENS => self.nat.on_event(t, ev.readable, ev.writable),
                Token(t) => self.ports.mark_ready(t),
            }
        }
        for i in 0..self.ports.slots.len() {
            if self.ports.slots[i].as_ref().is_some_and(|s| s.port.raw_fd().is_none()) {
                self.ports.mark_ready(i);
            }
        }
        let mut frames = {
            let mut sink = PortSink {
                slots: &mut self.ports.slots,
                engine: &mut self.engine,
            };
            self.nat.serve(now, &mut sink)
        };
        for i in 0..self.ports.slots.len() {
            if self.ports.slots[i].as_ref().is_some_and(|s| s.ready) {
                frames += self.burst(now, i);
            }
        }
        if frames > 0 {
            self.last_work = now;
        }
        if now.saturating_duration_since(self.last_expire) >= EXPIRE_EVERY {
            self.engine.expire(now);
            self.ports.collect_overruns(&mut self.engine);
            let mut sink = PortSink {
                slots: &mut self.ports.slots,
                engine: &mut self.engine,
            };
            self.nat.expire(now, &mut sink);
            self.last_expire = now;
        }
        frames
    }

    /// How long the loop may wait for events at `now`: not at all while work
    /// is left or while busy-polling, else until the next timer.
    fn timeout(&self, now: Instant) -> Duration {
        let spinning = now.saturating_duration_since(self.last_work) < self.config.busy_poll;
        if self.ports.any_ready() || self.nat.has_more() || spinning {
            return Duration::ZERO;
        }
        let expire = EXPIRE_EVERY.saturating_sub(now.saturating_duration_since(self.last_expire));
        self.nat.next_timer(now).map_or(expire, |t| t.min(expire))
    }

    /// Receives one burst from port `i` and forwards it; returns the frame count.
    fn burst(&mut self, now: Instant, i: usize) -> usize {
        let ingress = PortId(u32::try_from(i).unwrap_or(u32::MAX));
        let Some(slot) = self.ports.slots[i].as_mut() else {
            return 0;
        };
        let in_offload = slot.port.offload();
        let r = match slot.port.recv(&mut self.ports.batch.bufs) {
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
        self.engine
            .count_drops(ingress, DropReason::Oversize, r.truncated as u64);
        for tap in &slot.taps {
            for buf in &self.ports.batch.bufs[..r.frames] {
                tap.frame(buf.frame());
            }
        }
        // Decision traces of this port (none: nothing below is formatted).
        let traces: Vec<std::sync::Arc<super::capture::Tap>> =
            slot.taps.iter().filter(|t| t.decisions).cloned().collect();
        let mut replies = 0;
        for k in 0..r.frames {
            let buf = &self.ports.batch.bufs[k];
            let hdr = in_offload.then(|| buf.vnet_hdr());
            let idx = u8::try_from(k).unwrap_or(u8::MAX);
            let src = (!traces.is_empty())
                .then(|| {
                    crate::wire::EthernetFrame::new_checked(buf.frame())
                        .ok()
                        .map(|e| e.src())
                })
                .flatten();
            let known = src.is_some_and(|m| self.engine.knows(now, ingress, m));
            let verdict = self.engine.classify(now, ingress, hdr, buf.frame());
            if !traces.is_empty() {
                let learned = !known && src.is_some_and(|m| self.engine.knows(now, ingress, m));
                let flow = |k: &crate::nat::FlowKey| self.nat.lookup(k);
                let line = super::explain::decision_line(&self.engine, flow, ingress, buf.frame(), verdict, learned);
                for t in &traces {
                    t.line(line.clone());
                }
            }
            let buf = &self.ports.batch.bufs[k];
            match verdict {
                Verdict::Drop(_) => {}
                Verdict::Unicast(q) => self.ports.gather(q, idx),
                Verdict::Flood(d) => {
                    self.ports.mark_shared(idx);
                    for &q in self.engine.domain_ports(d) {
                        if q != ingress {
                            self.ports.gather(q, idx);
                        }
                    }
                }
                Verdict::Gateway(gw) => {
                    let Some(out) = self.ports.replies.get_mut(replies) else {
                        self.engine.count_drop(ingress, DropReason::TxFull);
                        continue;
                    };
                    let domain = self.engine.port_config(ingress).map(|c| c.domain);
                    let engine = &self.engine;
                    let isolated = |a| domain.is_some_and(|d| engine.is_other_network(d, a));
                    match gateway::handle(&gw, isolated, buf.frame(), out.frame_area_mut()) {
                        Action::Reply(n) => {
                            out.set_built(n);
                            replies += 1;
                        }
                        Action::Dns(query) => {
                            let frame = self.ports.batch.bufs[k].frame();
                            let mut sink = PortSink {
                                slots: &mut self.ports.slots,
                                engine: &mut self.engine,
                            };
                            self.nat.dns_query(now, ingress, frame, &query, gw, &mut sink);
                        }
                        Action::Routed(routed) => {
                            let frame = self.ports.batch.bufs[k].frame();
                            let mut sink = PortSink {
                                slots: &mut self.ports.slots,
                                engine: &mut self.engine,
                            };
                            self.nat.routed(now, ingress, frame, &routed, gw, &mut sink);
                        }
                        Action::Drop(reason) => self.engine.count_drop(ingress, reason),
                    }
                }
            }
        }
        self.ports.flush_all(&mut self.engine, in_offload);
        if replies > 0 {
            self.ports.send_replies(&mut self.engine, ingress, replies);
        }
        r.frames
    }

    /// Takes `port` into the engine and the poll.
    pub fn add_port(&mut self, port: Box<dyn Port>, config: PortConfig) -> Result<PortId, DataplaneError> {
        let name = config.name.clone();
        let id = self.engine.add_port(config)?;
        if let Err(source) = self.ports.insert(id, port) {
            let _ = self.engine.remove_port(id);
            return Err(DataplaneError::Register { name, source });
        }
        self.nat.set_fixed(self.ports.count());
        Ok(id)
    }

    /// Serves one control command; false when it asks the worker to stop.
    pub(crate) fn control(&mut self, now: Instant, cmd: Command) -> bool {
        self.health.commands += 1;
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
                let _ = r.send(self.remove_port(now, id));
            }
            Command::Fdb(id, r) => {
                let _ = r.send(self.engine.fdb(id, now));
            }
            Command::FdbLen(id, r) => {
                let _ = r.send(self.engine.fdb_len(id));
            }
            Command::Stats(r) => {
                let _ = r.send(self.stats());
            }
            Command::Nat(r) => {
                let _ = r.send(self.nat_flows(now));
            }
            Command::Publish(port, bindings, container, r) => {
                let added = self.nat.publish(port, &bindings, container);
                self.nat.set_fixed(self.ports.count());
                let _ = r.send(added);
            }
            Command::Tap(ports, tap, r) => {
                for p in ports {
                    if let Some(slot) = self.ports.slots.get_mut(p.0 as usize).and_then(Option::as_mut) {
                        slot.taps.push(std::sync::Arc::clone(&tap));
                    }
                }
                let _ = r.send(());
            }
            Command::Explain(port, frame, r) => {
                let flow = |k: &crate::nat::FlowKey| self.nat.lookup(k);
                let _ = r.send(super::explain::explain(&self.engine, flow, now, port, &frame));
            }
            Command::Untap(tap) => {
                for slot in self.ports.slots.iter_mut().flatten() {
                    super::capture::untap(&mut slot.taps, &tap);
                }
            }
            Command::SetNames(names, r) => {
                self.nat.dns.resolver.set_names(names);
                let _ = r.send(());
            }
            Command::DnsStats(r) => {
                let _ = r.send(self.nat.dns.resolver.stats());
            }
            Command::Unpublish(port, r) => {
                let _ = r.send(self.unpublish(port));
            }
            Command::FdUse(r) => {
                let _ = r.send(self.nat.fd_use());
            }
            Command::Health(r) => {
                let _ = r.send(self.health.clone());
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Removes a port with its flows, stack, listeners and table entries.
    pub fn remove_port(&mut self, now: Instant, id: PortId) -> Result<(), crate::l2::EngineError> {
        let mut sink = PortSink {
            slots: &mut self.ports.slots,
            engine: &mut self.engine,
        };
        self.nat.remove_port(now, id, &mut sink);
        let res = self.engine.remove_port(id).map(|_| self.ports.remove(id));
        self.nat.set_fixed(self.ports.count());
        res
    }

    /// Every port's settings and counters.
    pub fn stats(&mut self) -> Vec<PortStats> {
        self.ports.collect_overruns(&mut self.engine);
        self.engine
            .ports()
            .map(|(id, config, counters)| PortStats {
                id,
                config: config.clone(),
                counters,
            })
            .collect()
    }

    /// The NAT flows at `now`.
    pub fn nat_flows(&self, now: Instant) -> Vec<NatFlow> {
        self.nat
            .table
            .flows()
            .map(|(_, f)| NatFlow {
                flow: *f,
                idle: now.saturating_duration_since(f.last_seen),
            })
            .collect()
    }

    /// The engine (domains, MAC tables, counters).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Publishes ports of the container behind `port`.
    pub fn publish(
        &mut self,
        port: PortId,
        bindings: &[crate::nat::Binding],
        container: std::net::Ipv4Addr,
    ) -> Result<(), DataplaneError> {
        let r = self.nat.publish(port, bindings, container);
        self.nat.set_fixed(self.ports.count());
        r
    }
}

impl Worker {
    /// Closes the published listeners of `port`; returns how many.
    pub fn unpublish(&mut self, port: PortId) -> usize {
        let closed = self.nat.unpublish(port);
        self.nat.set_fixed(self.ports.count());
        closed
    }

    /// Where the descriptor budget stands.
    pub fn fd_use(&self) -> crate::FdUse {
        self.nat.fd_use()
    }
}

/// The worker's thread: its poll, its control channel, and where it records
/// its death.
pub(crate) struct Runner {
    poll: Poll,
    rx: Receiver<Command>,
    worker: Worker,
    dead: Arc<OnceLock<String>>,
}

impl Runner {
    pub(crate) fn new(poll: Poll, rx: Receiver<Command>, worker: Worker, dead: Arc<OnceLock<String>>) -> Runner {
        Runner { poll, rx, worker, dead }
    }

    /// [`Runner::run`], with a panic recorded and logged as the cause of
    /// death like an epoll failure (the handle reports it).
    pub(crate) fn run_guarded(mut self) {
        // `run` borrows: the runner, and with it the control channel's
        // receiver, outlives a panic, so the cause is recorded before the
        // channel closes and a caller never sees a bare "stopped".
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())) {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_owned());
            let why = format!("panicked: {msg}");
            log::error!("the dataplane worker stops: {why}");
            let _ = self.dead.set(why);
        }
    }

    /// Runs until shut down, or until epoll fails — then the cause is
    /// recorded (the handle reports it) and logged.
    pub(crate) fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<Event> = Vec::with_capacity(256);
        loop {
            let timeout = self.worker.timeout(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    self.worker.health.poll_interrupted += 1;
                }
                Err(e) => {
                    // epoll_wait fails only on programming errors (EBADF,
                    // EINVAL): nothing sensible is left to do but stop, loudly.
                    let why = format!("epoll_wait: {e}");
                    log::error!("the dataplane worker stops: {why}");
                    let _ = self.dead.set(why);
                    return;
                }
            }
            ready.clear();
            ready.extend(events.iter().map(|ev| Event {
                token: ev.token(),
                readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                writable: ev.is_writable() || ev.is_write_closed() || ev.is_error(),
            }));
            let now = Instant::now();
            while let Ok(cmd) = self.rx.try_recv() {
                if !self.worker.control(now, cmd) {
                    return;
                }
            }
            let frames = self.worker.turn(Instant::now(), &ready);
            if frames == 0 && timeout.is_zero() {
                // Busy-polling with nothing to do: let whatever else is
                // runnable on this CPU run first (sched_yield; it returns at
                // once when nothing is). On a 2-vCPU machine the endpoints of
                // a TCP stream otherwise share the other CPU while this one
                // spins: with it, TCP through the switch 13.2 -> 14.2 Gbit/s
                // (veth, default offloads) and 9.0 -> 10.8 (1500-byte
                // frames), small frames and ping unchanged (docs/bench.md).
                std::thread::yield_now();
            }
        }
    }
}

/// Frames in one burst.
const _: () = assert!(BATCH <= u8::MAX as usize + 1);
