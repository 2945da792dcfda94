//! `plexus daemon`: owns the [`Controller`] and serves the JSON API
//! ([`plexus::api`]) on a Unix socket.
//!
//! Decisions:
//! - std only: one thread per connection, one request per line. The controller
//!   serializes its own operations (`run` is one of them, all or nothing, also
//!   across a crash).
//! - Signals: SIGINT and SIGTERM are blocked in every thread (the mask is set
//!   before any thread starts, and threads inherit it) and taken by `sigwait` on a
//!   dedicated thread, so no code runs in signal-handler context. That thread
//!   `shutdown(2)`s the listening socket, which makes the blocked `accept` fail on
//!   Linux and ends the accept loop. The daemon spawns no processes; one that
//!   ever does must unblock the signals in the child, since a blocked mask is
//!   inherited across `fork` and `exec` (std does not reset it).
//! - Clean stop: the socket file is removed (only if it is still the one we
//!   bound), in-flight requests finish, then the controller is dropped, which
//!   releases the store lock. Idle connections are simply cut by the exit.
//! - Start: a socket path that answers is left alone and the daemon refuses to
//!   start; a dead socket (ECONNREFUSED) is removed; anything that is not a socket
//!   is never removed. The socket is created with mode 0660 (umask set around
//!   `bind`, so there is no window with wider permissions).
//! - A request that panics gets an `Internal` error; the daemon stays up.
//! - Logging: through the `log` facade ([`crate::logger`]: stderr, `--log-level`,
//!   repeats rate-limited): one line on start and stop, one per mutating
//!   request; accept errors at most one line per ten seconds.
//! - Bounds: at most `--api-max-clients` connections at once (one more gets a
//!   `TooManyClients` error and is closed), and a connection that sends no
//!   complete request within `--api-idle-timeout` is closed; both are counted
//!   (`info`). So no client, root's included, can take every thread or fd.
//! - File descriptors: at start the daemon raises its soft open-file limit to
//!   the hard one, keeps [`FD_RESERVE_BASE`] plus two per API connection for
//!   itself, and gives the rest to the switch as its budget for ports,
//!   published listeners and NAT flows ([`plexus_switch::NatConfig::fd_budget`]):
//!   a container opening sockets without end is refused new flows
//!   (`fd_budget`) long before the API or the published ports run dry.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{Shutdown, shutdown};
use plexus::publish::PortMapping;
use plexus::{
    Config, Controller, Endpoint, EndpointKind, EndpointOptions, Error, MacAddr, NetworkOptions, SandboxOptions,
};
use serde::Serialize;
use serde_json::Value;

use plexus::api::{
    API_VERSION, ApiError, ApiLimits, DaemonInfo, FdInfo, KIND_BAD_REQUEST, KIND_INTERNAL, KIND_SHUTTING_DOWN,
    KIND_TOO_MANY_CLIENTS, MAX_REQUEST_LEN, NatLimits, Request, Response, RunResult, SwitchHealth, VersionInfo,
};

/// API connections open at once, by default (`--api-max-clients`).
pub const DEFAULT_API_MAX_CLIENTS: usize = 64;
/// Seconds an API connection may idle, by default (`--api-idle-timeout`).
pub const DEFAULT_API_IDLE_SECS: u64 = 60;
/// Descriptors the daemon keeps for itself besides two per API connection:
/// stdio, the store's lock, the listening socket, epoll and its waker, the
/// short-lived netlink sockets and namespace files of control operations.
pub const FD_RESERVE_BASE: u64 = 64;
/// How long a starting daemon waits for the store's lock (a killed daemon
/// still exiting holds it).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What `plexus daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The controller's state directory.
    pub state_dir: PathBuf,
    /// The socket to listen on.
    pub socket: PathBuf,
    /// How long the switch keeps polling after traffic ([`Config::busy_poll`]).
    pub busy_poll: Duration,
    /// Receive steering of veth host ends ([`Config::rx_steering`]).
    pub rx_steering: plexus_sandbox::sysfs::RxSteering,
    /// How the switch reads and writes veth host ends ([`Config::veth_io`]).
    pub veth_io: plexus::config::VethIo,
    /// Outbound NAT's limits and timeouts ([`Config::nat`]); its fd budget is
    /// sized here.
    pub nat: plexus_switch::NatConfig,
    /// Most API connections at once.
    pub api_max_clients: usize,
    /// How long an API connection may idle.
    pub api_idle: Duration,
    /// Also serve Docker's plugin protocol under this plugin name.
    pub docker_plugin: Option<String>,
    /// The gateways' DNS upstreams (`None`: the daemon's resolv.conf).
    pub dns_upstreams: Option<Vec<std::net::SocketAddrV4>>,
    /// Serve the Prometheus metrics here.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The daemon's descriptors: its limit, what it keeps, the switch's budget.
#[derive(Debug, Clone, Copy)]
struct Fds {
    limit: u64,
    hard: u64,
    raised_from: u64,
    reserved: u64,
    budget: u64,
}

/// Raises the soft open-file limit to the hard one and splits it: a reserve
/// for the API's connections and the daemon, the rest for the switch.
fn size_fds(api_max_clients: usize) -> Fds {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    // An "unlimited" hard limit is still bounded by fs.nr_open.
    let target = hard.min(1 << 20);
    let limit = if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    };
    let reserved = FD_RESERVE_BASE + 2 * u64::try_from(api_max_clients).unwrap_or(u64::MAX / 4);
    Fds {
        limit,
        hard,
        raised_from: soft,
        reserved,
        budget: limit.saturating_sub(reserved),
    }
}

/// The API's bounds and counters.
#[derive(Debug)]
struct ApiBounds {
    max_clients: usize,
    idle: Duration,
    clients: AtomicUsize,
    refused: AtomicU64,
    idle_closed: AtomicU64,
}

/// Shared by the connection threads.
#[derive(Debug)]
struct Server {
    /// `None` once shutdown has begun. Requests hold the read side while they run;
    /// shutdown takes the write side, so it waits for them.
    ctrl: RwLock<Option<Controller>>,
    socket: PathBuf,
    /// The Docker plugin's socket, if it serves one.
    docker_plugin: Option<PathBuf>,
    fds: Fds,
    api: ApiBounds,
}

/// Counts a connection thread for as long as it lives.
struct ClientSlot(Arc<Server>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.api.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The rootless checks for this user (none when rootful).
fn rootless_checks(mode: plexus::mode::Mode) -> Vec<plexus::mode::Check> {
    if mode == plexus::mode::Mode::Rootful {
        return Vec::new();
    }
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    plexus::mode::rootless_checks(&name, uid.as_raw(), gid.as_raw())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(mut opts: Options) -> anyhow::Result<()> {
    // Absolute paths: the sandboxes' file paths are derived from the state
    // directory and used by clients running elsewhere.
    opts.state_dir = std::path::absolute(&opts.state_dir).context("resolving the state directory")?;
    opts.socket = std::path::absolute(&opts.socket).context("resolving the socket path")?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT and SIGTERM")?;

    crate::socket::check_path(&opts.socket)?;
    let fds = size_fds(opts.api_max_clients);
    let config = Config {
        state_dir: opts.state_dir.clone(),
        busy_poll: opts.busy_poll,
        rx_steering: opts.rx_steering.clone(),
        veth_io: opts.veth_io,
        // A daemon restarted right after a kill waits for the old one to go.
        lock_wait: LOCK_WAIT,
        dns_upstreams: opts.dns_upstreams.clone(),
        nat: plexus_switch::NatConfig {
            fd_budget: Some(usize::try_from(fds.budget).unwrap_or(usize::MAX)),
            ..opts.nat
        },
        ..Config::default()
    };
    let ctrl =
        Controller::new(config).with_context(|| format!("opening state directory {}", opts.state_dir.display()))?;
    let plugin = match &opts.docker_plugin {
        Some(name) => Some(crate::docker_plugin::PluginServer::start(name, ctrl.clone())?),
        None => None,
    };
    let metrics = match opts.metrics {
        Some(addr) => Some(crate::metrics::MetricsServer::start(addr, ctrl.clone())?),
        None => None,
    };
    let listener = crate::socket::bind(&opts.socket)?;
    let bound = fs::metadata(&opts.socket).map(|m| (m.dev(), m.ino())).ok();

    let server = Arc::new(Server {
        ctrl: RwLock::new(Some(ctrl)),
        socket: opts.socket,
        docker_plugin: plugin.as_ref().map(|p| p.socket().to_owned()),
        fds,
        api: ApiBounds {
            max_clients: opts.api_max_clients,
            idle: opts.api_idle,
            clients: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
        },
    });
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let wake = listener.try_clone().context("duplicating the listening socket")?;
        let stopping = Arc::clone(&stopping);
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Ok(sig) = signals.wait() {
                    log::info!("{sig}, shutting down");
                }
                stopping.store(true, Ordering::SeqCst);
                // Wakes the accept below: on Linux, accept on a shut-down listening
                // socket returns EINVAL.
                let _ = shutdown(wake.as_raw_fd(), Shutdown::Both);
            })
            .context("starting the signal thread")?;
    }

    let (mode, why) = plexus::mode::Mode::detect();
    log::info!(
        "pid {}, {} ({why}), state dir {}, socket {}",
        std::process::id(),
        mode.as_str(),
        opts.state_dir.display(),
        server.socket.display()
    );
    for c in rootless_checks(mode).iter().filter(|c| !c.ok) {
        log::warn!("rootless: {}: {}", c.name, c.detail);
    }
    if let Some(ctrl) = server.ctrl.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
        for line in ctrl.recovered() {
            log::warn!("recovered after a crash: {line}");
        }
    }
    log::info!(
        "open files: limit {} (was {}, hard {}); {} kept for the API and the daemon, {} for ports, published \
         listeners and NAT flows",
        fds.limit,
        fds.raised_from,
        fds.hard,
        fds.reserved,
        fds.budget
    );

    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                if server.api.clients.load(Ordering::SeqCst) >= server.api.max_clients {
                    server.api.refused.fetch_add(1, Ordering::Relaxed);
                    refuse(stream, server.api.max_clients);
                    continue;
                }
                server.api.clients.fetch_add(1, Ordering::SeqCst);
                let slot = ClientSlot(Arc::clone(&server));
                if let Err(e) = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || slot.0.serve(stream, &slot))
                {
                    log::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // EMFILE and the like: back off instead of spinning, and say
                // so once in a while, not once per attempt.
                log::warn!("accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    // Stop: no new clients, let in-flight requests finish, release the store.
    let still_ours = fs::metadata(&server.socket).map(|m| (m.dev(), m.ino())).ok() == bound;
    if still_ours {
        let _ = fs::remove_file(&server.socket);
    }
    // The plugin holds a controller too: it goes first, so the store's lock
    // is released when the last one drops.
    if let Some(p) = plugin {
        p.stop();
    }
    if let Some(m) = metrics {
        m.stop();
    }
    let ctrl = server.ctrl.write().unwrap_or_else(PoisonError::into_inner).take();
    drop(ctrl);
    log::info!("stopped");
    Ok(())
}

/// What a `capture` request taps.
#[derive(Debug, Clone, Copy)]
struct Tapped<'a> {
    network: Option<&'a str>,
    endpoint: Option<&'a str>,
    snaplen: u32,
    count: Option<u64>,
    decisions: bool,
}

/// Frames a capture keeps for its reader; more are dropped and counted.
const CAPTURE_QUEUE: usize = 4096;

/// True if the client closed its end (a read would return end of file).
fn peer_gone(w: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    let _ = w.set_nonblocking(true);
    let gone = matches!(
        nix::sys::socket::recv(w.as_raw_fd(), &mut b, nix::sys::socket::MsgFlags::MSG_PEEK),
        Ok(0)
    );
    let _ = w.set_nonblocking(false);
    gone
}

/// Tells a client over the connection limit why it is closed (without
/// waiting on it: a client that does not read loses the message).
fn refuse(stream: UnixStream, max: usize) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut stream = stream;
    let e = ApiError::new(
        KIND_TOO_MANY_CLIENTS,
        format!("the daemon serves {max} connections already (--api-max-clients); try again later"),
    );
    let _ = send(&mut stream, &Response::failure(e));
}

/// Reads one line (up to and including `\n`, at most `limit` bytes) into
/// `line` before `deadline`; returns the bytes read (0: the client closed).
/// A deadline that passes is `ErrorKind::TimedOut`.
fn read_line_by(
    reader: &mut BufReader<UnixStream>,
    line: &mut Vec<u8>,
    deadline: Instant,
    limit: usize,
) -> std::io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ErrorKind::TimedOut.into());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(line.len());
        }
        let room = limit.saturating_sub(line.len());
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) if i < room => (i + 1, true),
            _ => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done || line.len() >= limit {
            return Ok(line.len());
        }
    }
}

impl Server {
    /// Serves one connection: a request per line, a response per line. A
    /// client that sends no complete request within the idle timeout is
    /// closed. `_slot` counts the connection until this returns.
    fn serve(&self, stream: UnixStream, _slot: &ClientSlot) {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut writer = stream;
        let mut line = Vec::new();
        loop {
            line.clear();
            let deadline = Instant::now() + self.api.idle;
            match read_line_by(&mut reader, &mut line, deadline, MAX_REQUEST_LEN + 1) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    self.api.idle_closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => return,
            }
            let complete = line.last() == Some(&b'\n');
            if !complete && line.len() > MAX_REQUEST_LEN {
                let msg = format!("request longer than {MAX_REQUEST_LEN} bytes");
                let _ = send(&mut writer, &Response::failure(ApiError::new(KIND_BAD_REQUEST, msg)));
                return;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Ok(Request::Capture {
                network,
                endpoint,
                snaplen,
                count,
                decisions,
            }) = serde_json::from_slice::<Request>(&line)
            {
                // The connection carries the capture's stream, then ends.
                let what = Tapped {
                    network: network.as_deref(),
                    endpoint: endpoint.as_deref(),
                    snaplen,
                    count,
                    decisions,
                };
                return self.capture(&mut writer, &what);
            }
            let response = self.handle_line(&line);
            if send(&mut writer, &response).is_err() {
                return;
            }
        }
    }

    /// Streams a capture on `w`: the response line, then chunks of the pcap
    /// stream (a 4-byte big-endian length, then that many bytes), then a
    /// zero length and a last line with what was captured and dropped. Ends
    /// after `count` frames, when the client goes, or when the daemon stops.
    fn capture(&self, w: &mut UnixStream, what: &Tapped<'_>) {
        let Tapped {
            network,
            endpoint,
            snaplen,
            count,
            decisions,
        } = *what;
        let Some(ctrl) = self.ctrl.read().unwrap_or_else(PoisonError::into_inner).clone() else {
            let _ = send(
                w,
                &Response::failure(ApiError::new(KIND_SHUTTING_DOWN, "the daemon is shutting down")),
            );
            return;
        };
        let snaplen = snaplen.clamp(64, 262_144);
        let started = ctrl.capture(network, endpoint, CAPTURE_QUEUE, snaplen, decisions);
        let (cap, endpoints) = match started {
            Ok(c) => c,
            Err(e) => {
                log::warn!("capture: {e}");
                let _ = send(w, &Response::failure(e.into()));
                return;
            }
        };
        drop(ctrl);
        log::info!("capture of {} started", endpoints.join(", "));
        let start = plexus::api::CaptureStart { endpoints, snaplen };
        if send(w, &Response::success(serde_json::to_value(&start).unwrap_or_default())).is_err() {
            return;
        }
        let chunk = |w: &mut UnixStream, bytes: &[u8]| -> std::io::Result<()> {
            w.write_all(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            w.write_all(bytes)
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        if !decisions {
            let _ = plexus_switch::io::pcap::write_header(&mut buf, snaplen);
        }
        let mut written = 0u64;
        // (An empty chunk would end the stream: the header only if there is one.)
        let mut alive = buf.is_empty() || chunk(w, &buf).is_ok();
        while alive && count.is_none_or(|n| written < n) {
            if self.ctrl.read().unwrap_or_else(PoisonError::into_inner).is_none() {
                break;
            }
            buf.clear();
            match cap.recv(Duration::from_millis(200)) {
                Ok(f) => {
                    let mut next = Some(f);
                    while let Some(f) = next.take() {
                        if decisions {
                            let t = f.ts;
                            let clock = format!(
                                "{:02}:{:02}:{:02}.{:06}",
                                t.as_secs() / 3600 % 24,
                                t.as_secs() / 60 % 60,
                                t.as_secs() % 60,
                                t.subsec_micros()
                            );
                            buf.extend_from_slice(clock.as_bytes());
                            buf.push(b' ');
                            buf.extend_from_slice(&f.bytes);
                            buf.push(b'\n');
                        } else {
                            let _ = plexus_switch::io::pcap::write_cut_record(
                                &mut buf, f.ts, &f.bytes, f.orig_len, snaplen,
                            );
                        }
                        written += 1;
                        if count.is_some_and(|n| written >= n) || buf.len() > 60 * 1024 {
                            break;
                        }
                        next = cap.try_next();
                    }
                    alive = chunk(w, &buf).is_ok();
                }
                Err(plexus_switch::dataplane::capture::RecvTimeoutError::Timeout) => {
                    // Nothing to write: notice a client that left.
                    alive = !peer_gone(w);
                }
                Err(plexus_switch::dataplane::capture::RecvTimeoutError::Disconnected) => break,
            }
        }
        let dropped = cap.dropped();
        drop(cap);
        log::info!("capture ended: {written} frames, {dropped} dropped");
        if alive {
            let end = plexus::api::CaptureEnd {
                captured: written,
                dropped,
            };
            let _ = w.write_all(&0u32.to_be_bytes());
            let _ = send(w, &Response::success(serde_json::to_value(end).unwrap_or_default()));
        }
    }

    fn handle_line(&self, line: &[u8]) -> Response {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                return Response::failure(ApiError::new(KIND_BAD_REQUEST, format!("bad request: {e}")));
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.handle(&req))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(ApiError::new(
                KIND_INTERNAL,
                format!("internal error in {}: {what}", req.op()),
            ))
        });
        if mutates(&req) || result.as_ref().is_err_and(|e| e.kind == KIND_INTERNAL) {
            let shown = serde_json::to_string(&req).unwrap_or_default();
            match &result {
                Ok(_) => log::info!("{shown}: ok"),
                Err(e) => log::warn!("{shown}: {}: {}", e.kind, e.message),
            }
        }
        match result {
            Ok(v) => Response::success(v),
            Err(e) => Response::failure(e),
        }
    }

    /// Performs one request.
    fn handle(&self, req: &Request) -> Result<Value, ApiError> {
        let guard = self.ctrl.read().unwrap_or_else(PoisonError::into_inner);
        let Some(ctrl) = guard.as_ref() else {
            return Err(ApiError::new(KIND_SHUTTING_DOWN, "the daemon is shutting down"));
        };
        match req {
            Request::NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                ip_range,
                internal,
                host_loopback,
                mtu,
                mac_ageing_secs,
                mac_table_size,
                anti_spoofing,
            } => {
                let mut o = NetworkOptions::default()
                    .internal(*internal)
                    .anti_spoofing(*anti_spoofing);
                if let Some(h) = host_loopback {
                    o = o.host_loopback(*h);
                }
                if let Some(s) = subnet {
                    o = o.subnet(cidr(s)?);
                }
                if let Some(r) = ip_range {
                    o = o.ip_range(cidr(r)?);
                }
                if let Some(g) = gateway {
                    o = o.gateway(ipv4(g, "gateway")?);
                }
                if let Some(m) = mtu {
                    o = o.mtu(*m);
                }
                if let Some(secs) = mac_ageing_secs {
                    o = o.mac_ageing_secs(*secs);
                }
                if let Some(n) = mac_table_size {
                    o = o.mac_table_size(*n);
                }
                json(ctrl.new_network(driver, name, o)?.info()?)
            }
            Request::NetworkLs {} => json(ctrl.networks().iter().filter_map(|n| n.info().ok()).collect::<Vec<_>>()),
            Request::NetworkInspect { name } => json(ctrl.network(name)?.info()?),
            Request::NetworkRm { name } => {
                let net = ctrl.network(name)?;
                not_owned("network", net.info()?.name, net.info()?.engine, "docker network rm")?;
                net.delete()?;
                Ok(Value::Null)
            }

            Request::SandboxCreate {
                name,
                hostname,
                domainname,
                dns,
                dns_search,
                dns_options,
            } => {
                let opts = sandbox_options(hostname, domainname, dns, dns_search, dns_options)?;
                json(ctrl.new_sandbox(name, opts)?.info()?)
            }
            Request::SandboxLs {} => json(
                ctrl.sandboxes()
                    .iter()
                    .filter_map(|s| s.info().ok())
                    .collect::<Vec<_>>(),
            ),
            Request::SandboxInspect { name } => json(ctrl.sandbox(name)?.info()?),
            Request::SandboxRm { name } => {
                ctrl.sandbox(name)?.delete()?;
                Ok(Value::Null)
            }

            Request::EndpointCreate {
                name,
                network,
                ip,
                mac,
                kind,
                publish,
                allowed_addresses,
                aliases,
            } => {
                let mut opts = endpoint_options(ip.as_deref(), mac.as_deref(), *kind, publish, allowed_addresses)?;
                opts.aliases.clone_from(aliases);
                json(ctrl.network(network)?.create_endpoint(name, opts)?.info()?)
            }
            Request::EndpointLs { network } => {
                let eps = match network {
                    Some(n) => ctrl.network(n)?.endpoints()?,
                    None => ctrl.endpoints(),
                };
                json(eps.iter().filter_map(|e| e.info().ok()).collect::<Vec<_>>())
            }
            Request::EndpointInspect { name, network } => json(endpoint(ctrl, name, network.as_deref())?.info()?),
            Request::EndpointJoin {
                name,
                network,
                sandbox,
                aliases,
            } => {
                let ep = endpoint(ctrl, name, network.as_deref())?;
                not_owned("endpoint", ep.info()?.name, ep.info()?.engine, "docker network connect")?;
                let sb = ctrl.sandbox(sandbox)?;
                ep.add_aliases(aliases)?;
                ep.join_sandbox(&sb)?;
                json(ep.info()?)
            }
            Request::EndpointLeave { name, network } => {
                let ep = endpoint(ctrl, name, network.as_deref())?;
                not_owned(
                    "endpoint",
                    ep.info()?.name,
                    ep.info()?.engine,
                    "docker network disconnect",
                )?;
                ep.leave()?;
                json(ep.info()?)
            }
            Request::EndpointRm { name, network, force } => {
                let ep = endpoint(ctrl, name, network.as_deref())?;
                not_owned(
                    "endpoint",
                    ep.info()?.name,
                    ep.info()?.engine,
                    "docker rm or docker network disconnect",
                )?;
                ep.delete(*force)?;
                Ok(Value::Null)
            }

            Request::Run {
                name,
                network,
                ip,
                mac,
                kind,
                publish,
                allowed_addresses,
                hostname,
                domainname,
                aliases,
                dns,
                dns_search,
                dns_options,
            } => {
                let mut opts = endpoint_options(ip.as_deref(), mac.as_deref(), *kind, publish, allowed_addresses)?
                    .remove_with_sandbox(true);
                opts.aliases.clone_from(aliases);
                let sb = sandbox_options(hostname, domainname, dns, dns_search, dns_options)?;
                let (sandbox, endpoint) = ctrl.run(name, network, opts, sb)?;
                json(RunResult {
                    sandbox: sandbox.info()?,
                    endpoint: endpoint.info()?,
                })
            }

            Request::Dns { network } => json(ctrl.dns(network)?),
            Request::Cni { call } => {
                let answer = match plexus::cni::run(ctrl, call) {
                    Ok(result) => plexus::api::CniAnswer {
                        result: Some(result),
                        error: None,
                    },
                    Err(e) => {
                        log::warn!("cni {:?} {}: {}", call.command, call.container_id, e.msg);
                        plexus::api::CniAnswer {
                            result: None,
                            error: Some(e),
                        }
                    }
                };
                json(answer)
            }
            Request::Trace {
                from,
                to,
                probe,
                src_ip,
            } => {
                let src = src_ip.as_deref().map(|s| ipv4(s, "src_ip")).transpose()?;
                json(ctrl.trace(from, ipv4(to, "to")?, *probe, src)?)
            }
            // Served as a stream by `serve` before it gets here.
            Request::Capture { .. } => Err(ApiError::new(
                KIND_BAD_REQUEST,
                "capture streams on a connection of its own (its first request)",
            )),
            Request::Fdb { network } => {
                let mut rows = ctrl.fdb(network)?;
                rows.sort_by_key(|r| r.mac);
                json(rows)
            }
            Request::Stats { network } => {
                let mut ports = ctrl.stats()?;
                if let Some(n) = network {
                    let name = ctrl.network(n)?.name()?;
                    ports.retain(|p| p.network == name);
                }
                json(ports)
            }
            Request::Nat {} => json(ctrl.nat()?),

            Request::Version {} => json(VersionInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                api: API_VERSION,
            }),
            Request::Info {} => {
                let config = ctrl.config();
                json(DaemonInfo {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    api: API_VERSION,
                    pid: std::process::id(),
                    mode: config.mode,
                    mode_reason: config.mode_reason.clone(),
                    rootless_checks: rootless_checks(config.mode),
                    state_dir: config.state_dir.clone(),
                    socket: self.socket.clone(),
                    docker_plugin: self.docker_plugin.clone(),
                    drivers: ctrl.drivers().into_iter().map(str::to_owned).collect(),
                    netns_prefix: config.netns_prefix.clone(),
                    ifname_prefix: config.ifname_prefix.clone(),
                    busy_poll_us: u64::try_from(config.busy_poll.as_micros()).unwrap_or(u64::MAX),
                    rx_steering: config.rx_steering.to_string(),
                    veth_io: config.veth_io.to_string(),
                    nat: NatLimits::from(&config.nat),
                    fds: ctrl.fd_use().ok().map(|u| FdInfo {
                        limit: self.fds.limit,
                        hard_limit: self.fds.hard,
                        reserved: self.fds.reserved,
                        budget: self.fds.budget,
                        ports: u.ports,
                        listeners: u.listeners,
                        flows: u.flows,
                        per_endpoint: u.share,
                    }),
                    api_limits: Some(ApiLimits {
                        max_clients: self.api.max_clients,
                        idle_timeout_secs: self.api.idle.as_secs(),
                        clients: self.api.clients.load(Ordering::SeqCst),
                        refused: self.api.refused.load(Ordering::Relaxed),
                        idle_closed: self.api.idle_closed.load(Ordering::Relaxed),
                    }),
                    switch: ctrl.health().ok().map(|h| SwitchHealth {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        cpu_us: crate::metrics::worker_cpu_secs().map(|s| (s * 1e6) as u64),
                        ..h.into()
                    }),
                    dns: ctrl
                        .dns_stats()
                        .ok()
                        .map(|(stats, upstreams)| plexus::api::DnsInfo { upstreams, stats }),
                    networks: ctrl.networks().len(),
                    endpoints: ctrl.endpoints().len(),
                    sandboxes: ctrl.sandboxes().len(),
                })
            }
        }
    }
}

/// Requests worth a log line.
fn mutates(req: &Request) -> bool {
    !matches!(
        req,
        Request::NetworkLs {}
            | Request::NetworkInspect { .. }
            | Request::SandboxLs {}
            | Request::SandboxInspect { .. }
            | Request::EndpointLs { .. }
            | Request::EndpointInspect { .. }
            | Request::Dns { .. }
            | Request::Capture { .. }
            | Request::Trace { .. }
            | Request::Fdb { .. }
            | Request::Stats { .. }
            | Request::Nat {}
            | Request::Version {}
            | Request::Info {}
    )
}

fn send(w: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Refuses to change through the API what a container engine made.
fn not_owned(
    what: &'static str,
    name: String,
    engine: Option<plexus::Engine>,
    hint: &'static str,
) -> Result<(), Error> {
    match engine {
        Some(e) => Err(Error::OwnedByEngine {
            what,
            name,
            engine: e.as_str(),
            hint: match e {
                plexus::Engine::Docker => hint,
                plexus::Engine::Cni => "the container runtime (removing the container runs the CNI DEL)",
            },
        }),
        None => Ok(()),
    }
}

fn json<T: Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(KIND_INTERNAL, format!("encoding the result: {e}")))
}

/// An endpoint by name or id, within `network` if given.
fn endpoint(ctrl: &Controller, name: &str, network: Option<&str>) -> Result<Endpoint, Error> {
    match network {
        Some(n) => ctrl.network(n)?.endpoint(name),
        None => ctrl.endpoint(name),
    }
}

fn cidr(s: &str) -> Result<ipnet::Ipv4Net, Error> {
    plexus::ipam::parse_cidr(s).map_err(Error::from)
}

/// A CIDR whose address need not be the network's own (`10.0.0.5/24` is
/// `10.0.0.0/24`).
fn cidr_any(s: &str) -> Result<ipnet::Ipv4Net, Error> {
    s.parse::<ipnet::Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| Error::InvalidOption(format!("invalid address or CIDR {s:?} for --allowed-address")))
}

fn ipv4(s: &str, what: &str) -> Result<Ipv4Addr, Error> {
    s.parse()
        .map_err(|_| Error::InvalidOption(format!("invalid IPv4 address {s:?} for {what}")))
}

fn sandbox_options(
    hostname: &Option<String>,
    domainname: &Option<String>,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> Result<SandboxOptions, Error> {
    let mut o = SandboxOptions::default();
    if let Some(h) = hostname {
        o = o.hostname(h);
    }
    if let Some(d) = domainname {
        o = o.domainname(d);
    }
    for s in dns {
        o.dns.servers.push(ipv4(s, "dns")?);
    }
    for (what, list) in [("dns-search", search), ("dns-option", options)] {
        if let Some(bad) = list
            .iter()
            .find(|v| v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::InvalidOption(format!("--{what} {bad:?}: one word, no blanks")));
        }
    }
    o.dns.search = search.to_vec();
    o.dns.options = options.to_vec();
    Ok(o)
}

/// The endpoint options of `endpoint.create` and `run`. Port specs are parsed with
/// the library's parser, so a bad one is the typed `InvalidPort`; whether a host
/// port is free (and whether the protocol is supported) is the library's call.
fn endpoint_options(
    ip: Option<&str>,
    mac: Option<&str>,
    kind: EndpointKind,
    publish: &[String],
    allowed: &[String],
) -> Result<EndpointOptions, Error> {
    let mut o = EndpointOptions::default().kind(kind);
    for spec in publish {
        o = o.publish(PortMapping::from_str(spec)?);
    }
    for net in allowed {
        // An address alone is its /32.
        let with_len = if net.contains('/') {
            net.clone()
        } else {
            format!("{net}/32")
        };
        o = o.allowed_address(cidr_any(&with_len)?);
    }
    if let Some(ip) = ip {
        o = o.ip(ipv4(ip, "ip")?);
    }
    if let Some(mac) = mac {
        let m: MacAddr = mac
            .parse()
            .map_err(|_| Error::InvalidOption(format!("invalid MAC address {mac:?}")))?;
        o = o.mac(m);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_parsing_gives_typed_kinds() {
        assert_eq!(cidr("10.0.0.0/33").unwrap_err().kind(), "BadCidr");
        assert_eq!(cidr("10.0.0.1/24").unwrap_err().kind(), "BadCidr");
        assert_eq!(cidr("10.0.0.0/24").unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(ipv4("10.0.0.300", "gateway").unwrap_err().kind(), "InvalidOption");
        assert_eq!(
            endpoint_options(None, Some("zz:00:00:00:00:00"), EndpointKind::Veth, &[], &[])
                .unwrap_err()
                .kind(),
            "InvalidOption"
        );
        let o = endpoint_options(
            Some("10.0.0.5"),
            Some("02:42:0a:00:00:05"),
            EndpointKind::Tap,
            &[],
            &["192.168.50.0/24".to_owned(), "10.1.2.3".to_owned()],
        )
        .unwrap();
        assert_eq!(o.ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(o.kind, EndpointKind::Tap);
        assert_eq!(o.mac.unwrap().to_string(), "02:42:0a:00:00:05");
        assert!(o.publish.is_empty());
        let allowed: Vec<String> = o.allowed.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["192.168.50.0/24", "10.1.2.3/32"]);
        let e = endpoint_options(None, None, EndpointKind::Veth, &[], &["10.0.0.300/8".to_owned()]).unwrap_err();
        assert_eq!(e.kind(), "InvalidOption", "{e}");
    }

    #[test]
    fn publish_specs_parse_with_the_library_parser() {
        let specs: Vec<String> = ["8053:53/udp", "127.0.0.1::53/udp", "9000-9002:7000-7002/udp"]
            .map(String::from)
            .to_vec();
        let o = endpoint_options(None, None, EndpointKind::Veth, &specs, &[]).unwrap();
        let shown: Vec<String> = o.publish.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["8053:53/udp", "127.0.0.1::53/udp", "9000-9002:7000-7002/udp"]);
        for bad in [
            "",
            "8053:",
            "80:abc/udp",
            "53/sctp",
            "9000-9001:7000-7002/udp",
            "[::1]:80:80/udp",
        ] {
            let e = endpoint_options(None, None, EndpointKind::Veth, &[bad.to_owned()], &[]).unwrap_err();
            assert_eq!(e.kind(), "InvalidPort", "{bad:?}: {e}");
            assert!(e.to_string().contains("invalid port specification"), "{bad:?}: {e}");
        }
        // The default protocol is TCP; refusing it (for now) is the library's job.
        let o = endpoint_options(None, None, EndpointKind::Veth, &["8080:80".to_owned()], &[]).unwrap();
        assert_eq!(o.publish[0].to_string(), "8080:80/tcp");
    }
}
