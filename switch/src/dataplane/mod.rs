//! The dataplane: one worker thread that owns every port, flow and listener
//! and runs the switch in bursts, and the [`Dataplane`] handle through which
//! the control plane talks to it over a channel — never by sharing a lock with
//! the hot path.
//!
//! - [`worker`]: the loop — wait for readiness, receive bursts, classify,
//!   gather, flush; flows and listeners when their sockets are ready; timers.
//!   [`worker::Worker::turn`] is one pass of it without the wait, so tests
//!   drive the real worker with ports and a host in memory;
//! - [`ports`]: the ports' slots, gathering frames per egress port and
//!   sending each gather with one batched call;
//! - [`flows`]: NAT and published ports — one slab entry per flow holding its
//!   table row and its I/O, keyed by its poll token.
//!
//! Adaptive polling: after traffic the worker keeps polling without sleeping
//! for [`DataplaneConfig::busy_poll`] (waking a halted vCPU costs about 70 µs in
//! a VM); when that window passes with no frame it blocks in `epoll_wait`, so an
//! idle switch costs no CPU. Control messages wake it through an eventfd.
//!
//! A worker that dies (epoll failing is the one way) records why, logs it, and
//! every later call reports it ([`DataplaneError::Dead`]).

pub mod capture;
mod dns;
pub mod explain;
pub mod flows;
pub mod ports;
pub mod worker;

#[cfg(test)]
mod tests;

use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, unbounded};
use mio::{Poll, Waker};

use crate::io::{OsHost, Port};
use crate::l2::{DomainConfig, EngineError, FdbEntry, PortConfig};
use crate::nat::{Binding, FdUse, Flow, NatConfig, Protocol};
use crate::types::{DomainId, PortCounters, PortId};
use worker::{Runner, WAKER, Worker};

/// Dataplane settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// How long to keep polling after the last frame before sleeping in the
    /// kernel. Zero makes the worker purely event driven.
    pub busy_poll: Duration,
    /// Outbound NAT's limits and timeouts.
    pub nat: NatConfig,
    /// The gateways' DNS: upstreams, timeouts, bounds.
    pub dns: crate::dns::DnsConfig,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            busy_poll: Duration::from_millis(5),
            nat: NatConfig::default(),
            dns: crate::dns::DnsConfig::default(),
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
        proto: Protocol,
        /// The bind error (EADDRINUSE: taken by another program).
        source: io::Error,
    },
    /// The worker thread is gone (the dataplane was shut down).
    #[error("the dataplane worker has stopped")]
    Stopped,
    /// The worker died, and this is why.
    #[error("the dataplane worker died: {0}")]
    Dead(String),
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

/// One outbound NAT flow, as `plexus nat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatFlow {
    /// The flow.
    pub flow: Flow,
    /// Time since it last carried a packet either way.
    pub idle: Duration,
}

/// Whether the worker runs, and its own counters (those of no port).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Why the worker died; `None` while it runs.
    pub dead: Option<String>,
    /// Wake-ups whose `epoll_wait` was interrupted (retried).
    pub poll_interrupted: u64,
    /// Control commands served.
    pub commands: u64,
}

/// What the control plane asks of the worker.
pub(crate) enum Command {
    AddDomain(DomainConfig, Sender<DomainId>),
    ConfigureDomain(DomainId, DomainConfig, Sender<Result<(), EngineError>>),
    RemoveDomain(DomainId, Sender<Result<(), EngineError>>),
    AddPort(Box<dyn Port>, PortConfig, Sender<Result<PortId, DataplaneError>>),
    RemovePort(PortId, Sender<Result<(), EngineError>>),
    Fdb(DomainId, Sender<Result<Vec<FdbEntry>, EngineError>>),
    FdbLen(DomainId, Sender<Result<usize, EngineError>>),
    Stats(Sender<Vec<PortStats>>),
    Nat(Sender<Vec<NatFlow>>),
    Publish(PortId, Vec<Binding>, Ipv4Addr, Sender<Result<(), DataplaneError>>),
    Unpublish(PortId, Sender<usize>),
    SetNames(crate::dns::DnsNames, Sender<()>),
    Tap(capture::TapPorts, Arc<capture::Tap>, Sender<()>),
    Untap(Arc<capture::Tap>),
    Explain(PortId, Vec<u8>, Sender<Vec<String>>),
    DnsStats(Sender<crate::dns::DnsStats>),
    FdUse(Sender<FdUse>),
    Health(Sender<Health>),
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

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
    /// Set once, by a worker that dies.
    dead: Arc<OnceLock<String>>,
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

impl Dataplane {
    /// Starts the worker thread, with the host's sockets for NAT and
    /// published ports.
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        let poll = Poll::new().map_err(DataplaneError::Start)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(DataplaneError::Start)?;
        let registry = Arc::new(poll.registry().try_clone().map_err(DataplaneError::Start)?);
        let host = Box::new(OsHost::new(registry.clone()));
        let (tx, rx) = unbounded();
        let dead = Arc::new(OnceLock::new());
        let runner = Runner::new(poll, rx, Worker::new(config, registry, host), dead.clone());
        let thread = std::thread::Builder::new()
            .name("plexus-dataplane".into())
            .spawn(move || runner.run_guarded())
            .map_err(DataplaneError::Start)?;
        Ok(Dataplane {
            inner: Arc::new(Inner {
                tx,
                waker,
                thread: std::sync::Mutex::new(Some(thread)),
                dead,
            }),
        })
    }

    fn gone(&self) -> DataplaneError {
        match self.inner.dead.get() {
            Some(why) => DataplaneError::Dead(why.clone()),
            None => DataplaneError::Stopped,
        }
    }

    fn call<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Result<T, DataplaneError> {
        let (rtx, rrx) = bounded(1);
        self.inner.tx.send(make(rtx)).map_err(|_| self.gone())?;
        self.inner.waker.wake().map_err(|_| self.gone())?;
        rrx.recv().map_err(|_| self.gone())
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

    /// Whether the worker runs (and why it died if not), with its counters.
    pub fn health(&self) -> Health {
        self.call(Command::Health).unwrap_or_else(|e| Health {
            dead: Some(match e {
                DataplaneError::Dead(why) => why,
                other => other.to_string(),
            }),
            ..Health::default()
        })
    }

    /// Publishes ports of the container behind `port` (address `container`):
    /// binds every host socket or none. The client's source address is kept
    /// (a loopback client appears as the network's gateway). The sockets close
    /// when the port is removed.
    pub fn publish(&self, port: PortId, bindings: Vec<Binding>, container: Ipv4Addr) -> Result<(), DataplaneError> {
        self.call(|r| Command::Publish(port, bindings, container, r))?
    }

    /// Replaces the names the gateways answer: one table per domain, and
    /// the other domains each port's container sees (it is on them too).
    pub fn set_names(&self, names: crate::dns::DnsNames) -> Result<(), DataplaneError> {
        self.call(|r| Command::SetNames(names, r))
    }

    /// Starts capturing the frames of `ports`, both directions: up to
    /// `queue` frames wait for the reader (more are dropped and counted),
    /// each cut to `snaplen` bytes. Stops when the capture is dropped.
    pub fn capture(&self, ports: Vec<PortId>, queue: usize, snaplen: u32) -> Result<capture::Capture, DataplaneError> {
        self.tap(ports, queue, snaplen, false)
    }

    /// Starts tracing the decisions about the frames `ports` receive: one
    /// text line per frame (its summary and what the switch did with it).
    pub fn trace(&self, ports: Vec<PortId>, queue: usize) -> Result<capture::Capture, DataplaneError> {
        self.tap(ports, queue, 0, true)
    }

    fn tap(
        &self,
        ports: Vec<PortId>,
        queue: usize,
        snaplen: u32,
        decisions: bool,
    ) -> Result<capture::Capture, DataplaneError> {
        let (cap, tap) = capture::Capture::new(self.clone(), queue, snaplen, decisions);
        self.call(|r| Command::Tap(ports, tap, r))?;
        Ok(cap)
    }

    /// Every step a made-up `frame` entering at `port` would take, taken by
    /// a copy of the engine: nothing is sent, learned or counted.
    pub fn explain(&self, port: PortId, frame: Vec<u8>) -> Result<Vec<String>, DataplaneError> {
        self.call(|r| Command::Explain(port, frame, r))
    }

    fn send_command(&self, cmd: Command) -> Result<(), DataplaneError> {
        self.inner.tx.send(cmd).map_err(|_| self.gone())?;
        self.inner.waker.wake().map_err(|_| self.gone())
    }

    /// The gateways' DNS counters.
    pub fn dns_stats(&self) -> Result<crate::dns::DnsStats, DataplaneError> {
        self.call(Command::DnsStats)
    }

    /// Closes every published listener of `port` (its conversations go with
    /// them; established connections keep running). Returns how many closed.
    pub fn unpublish(&self, port: PortId) -> Result<usize, DataplaneError> {
        self.call(|r| Command::Unpublish(port, r))
    }
}
