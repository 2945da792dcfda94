//! TCP through the gateway: outbound NAT and published ports, by terminating
//! each container connection in the switch.
//!
//! Role: a container's TCP connection to the outside ends at the gateway, in a
//! [smoltcp] socket of the container's endpoint, and continues as an ordinary
//! host `TcpStream` of the daemon; a client of a published port is accepted by a
//! host listener and continues as a smoltcp connection *from the client's own
//! address* to the container. No iptables, no kernel forwarding, no process per
//! port.
//!
//! Decisions:
//! - Termination rather than rewriting: each side negotiates its own MSS and
//!   window, so a container MTU that differs from the host's cannot black-hole
//!   large segments (item 6 of the gateway issue), and the host side is a plain
//!   socket that works without privileges (rootless).
//! - One smoltcp `Interface` (IP medium, "any IP") per endpoint: frames the
//!   stack emits go to that endpoint's port, with the gateway's MAC as source.
//! - An outbound SYN is held until the host connect finishes: the container sees
//!   the handshake complete only if the outside accepted, a reset if the outside
//!   refused, and an ICMP unreachable if it was unreachable.
//! - No SACK on either side: the SACK-permitted option is taken out of the
//!   container's SYN and SYN-ACK and out of the stack's own SYN. smoltcp
//!   reports one SACK block and never a duplicate (DSACK); a Linux sender
//!   whose segments merely arrive out of order (a veth delivers from two
//!   CPUs' backlogs) takes such SACKs for losses, retransmits at once and,
//!   without DSACK, never learns better: 41k–67k retransmitted segments in
//!   five seconds of one stream. Without SACK it waits for three duplicate
//!   ACKs and learns reordering from timestamps: 0–1.
//! - Received checksums are not verified: frames come from the container's own
//!   kernel over a veth or TAP, often with a partial checksum (offloads), which
//!   the kernel itself trusts the same way.
//! - Offloads both ways on ports that carry virtio-net headers: the container's
//!   TSO super-frames are read whole, and the stack sends up to 64 KiB segments
//!   that leave as GSO frames (segments of the port's MTU) with a partial
//!   checksum, which the kernel segments — or, on a veth, hands to the
//!   container's stack whole. For that the stack must believe the container's
//!   MSS is large: the MSS option of the container's SYN and SYN-ACK is raised
//!   before the stack reads it (the container's own segments stay bounded by
//!   its MTU).
//! - Sans-IO: the relay takes `now`, frames and host streams (any
//!   [`HostStream`]) and hands the frames it emits to a [`FrameSink`]; it reads
//!   no clock (the caller passes `now`, and at construction the clock of the
//!   TCP timestamps) and owns no socket. Each connection's state ([`Conn`])
//!   lives with its flow, in the caller's slab entry; the relay keeps what the
//!   endpoints share: their stacks, a pool of socket buffers, the frames being
//!   sent, the earliest timer.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use super::device::{Dev, FrameSink, NoSink, TxQueue};
use super::segment::{forbid_sack, is_syn, raise_mss, syn_destination};
use crate::MacAddr;
use crate::nat::table::TcpPhase;
use crate::types::PortId;
use crate::wire::ETHERNET_HEADER_LEN;

/// Receive buffer of each terminated connection (what the container may
/// send ahead): larger than 64 KiB so window scaling is used.
pub const RECV_BUFFER: usize = 256 * 1024;
/// Send buffer of each terminated connection (what the stack may have in
/// flight towards the container). Larger than the receive side: towards the
/// container every round trip includes the switch's turn, and 256 KiB held a
/// published port's downloads to ~8.5 Gbit/s where 1 MiB gives ~10.
pub const SEND_BUFFER: usize = 1024 * 1024;
/// Closed sockets the relay keeps for reuse (at most this many buffers pairs).
const SOCKET_POOL: usize = 128;
/// The IP MTU of a stack on a port with offloads: its segments leave as GSO
/// frames of up to this size (an AF_PACKET send of a 64 KiB IP packet plus its
/// Ethernet header is refused with ENOBUFS by a veth, so a little less).
const GSO_MTU: usize = 65000;
/// The MSS the stack is told a container on an offload port has.
const GSO_MSS: u16 = 65000 - IPV4_TCP_HEADERS;
const IPV4_TCP_HEADERS: u16 = 40;

/// The host half of a connection (a nonblocking `TcpStream` in the daemon).
pub trait HostStream {
    /// Reads what the host peer sent; `WouldBlock` when nothing is there.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes towards the host peer; `WouldBlock` when its buffer is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Sends FIN to the host peer.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// How to reach an endpoint's container: what its stack needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackConfig {
    /// The container's MAC.
    pub mac: MacAddr,
    /// The gateway's MAC (source of the frames).
    pub gateway_mac: MacAddr,
    /// The gateway's address and the network's prefix length.
    pub gateway_ip: Ipv4Addr,
    /// Prefix length of the network.
    pub prefix: u8,
    /// The endpoint's MTU.
    pub mtu: u16,
    /// The port carries virtio-net headers (GSO and partial checksums).
    pub offload: bool,
}

/// What a relay step asks of the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the connection.
    Open(TcpPhase),
    /// The connection is over: close the host stream (with a reset if `reset`)
    /// and remove the flow.
    Done {
        /// Reset the host peer instead of a graceful close.
        reset: bool,
    },
}

/// An endpoint's stack: the interface that parses and builds its packets.
/// Sockets live in their connection (one set each), so a packet costs the
/// work of its own connection, not of every connection of the endpoint.
struct Stack {
    iface: Interface,
    l2: [u8; ETHERNET_HEADER_LEN],
    mtu: usize,
    /// With offloads: the port's MTU, which GSO frames are segmented to.
    gso: Option<u16>,
}

/// A socket set holding one TCP socket (pooled with the socket).
struct OneSocket {
    set: SocketSet<'static>,
    handle: SocketHandle,
}

/// One terminated connection: its socket, the SYN it may hold, its timer and
/// what is known of its host stream. Owned by the caller (with the flow).
pub struct Conn {
    port: PortId,
    socket: OneSocket,
    /// An outbound SYN waiting for the host connect (IP packet).
    syn: Option<Box<[u8]>>,
    /// When the socket's timers next need a poll.
    deadline: Option<smoltcp::time::Instant>,
    host: HostState,
}

/// What is known of a connection's host stream.
#[derive(Debug, Clone, Copy)]
struct HostState {
    /// May have bytes to read (until a read would block).
    readable: bool,
    /// May take bytes (until a write would block).
    writable: bool,
    /// The host peer closed its side (or reset).
    eof: bool,
    /// The host peer was told the container closed (or was reset).
    shut: bool,
}

/// The TCP relay of every endpoint.
pub struct TcpRelay {
    epoch: Instant,
    /// The clock of TCP timestamps (milliseconds).
    tsval: fn() -> u32,
    stacks: HashMap<PortId, Stack>,
    tx: TxQueue,
    /// A copy of a SYN-ACK whose MSS is raised before the stack reads it.
    scratch: Vec<u8>,
    /// Closed sockets kept for the next connections.
    pool: Vec<OneSocket>,
    /// A set with no socket, to let a stack answer packets of no connection.
    empty: SocketSet<'static>,
    /// No connection's timers are due before this (kept as deadlines are set,
    /// recomputed by each timer walk), so the event loop's wait is O(1).
    earliest: Option<smoltcp::time::Instant>,
}

impl std::fmt::Debug for TcpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TcpRelay({} stacks)", self.stacks.len())
    }
}

fn endpoint(a: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*a.ip()), a.port())
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("port", &self.port)
            .field("connecting", &self.syn.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Whether this outbound connection still waits for its host connect.
    pub fn is_connecting(&self) -> bool {
        self.syn.is_some()
    }

    /// The held SYN (to quote in an ICMP error).
    pub fn held_syn(&self) -> Option<&[u8]> {
        self.syn.as_deref()
    }

    /// The endpoint's port.
    pub fn port(&self) -> PortId {
        self.port
    }
}

impl TcpRelay {
    /// An empty relay: `epoch` is the origin of its clock (the `now` it is
    /// given later is measured from it) and `tsval` the clock of TCP
    /// timestamps, in milliseconds (the wall clock in the daemon, so that a
    /// container's TIME-WAIT socket takes a new SYN on the same four-tuple
    /// when its timestamp is newer, as between two kernels; a virtual one in
    /// tests).
    pub fn new(epoch: Instant, tsval: fn() -> u32) -> TcpRelay {
        TcpRelay {
            epoch,
            tsval,
            stacks: HashMap::new(),
            tx: TxQueue::new(),
            scratch: Vec::new(),
            pool: Vec::new(),
            empty: SocketSet::new(Vec::new()),
            earliest: None,
        }
    }

    /// `now` on the stacks' clock.
    pub fn stamp(&self, now: Instant) -> smoltcp::time::Instant {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// Makes (or refreshes) the stack of endpoint `port`.
    pub fn ensure_stack(&mut self, now: Instant, port: PortId, cfg: StackConfig) {
        let mut l2 = [0u8; ETHERNET_HEADER_LEN];
        l2[..6].copy_from_slice(&cfg.mac.0);
        l2[6..12].copy_from_slice(&cfg.gateway_mac.0);
        l2[12..].copy_from_slice(&0x0800u16.to_be_bytes());
        let gso = cfg.offload.then_some(cfg.mtu).filter(|&m| m > IPV4_TCP_HEADERS);
        let mtu = if gso.is_some() { GSO_MTU } else { usize::from(cfg.mtu) };
        if let Some(s) = self.stacks.get_mut(&port) {
            // The interface's MTU was fixed at its creation; a port whose
            // offloads changed keeps the stack's first choice.
            s.l2 = l2;
            return;
        }
        let mut config = Config::new(HardwareAddress::Ip);
        let seed = now.saturating_duration_since(self.epoch).as_nanos();
        config.random_seed = u64::try_from(seed & u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(port.0) << 32;
        let stamp = self.stamp(now);
        let mut queue = TxQueue::new();
        let mut device = Dev {
            rx: None,
            tx: &mut queue,
            sink: &mut NoSink,
            port,
            l2,
            mtu,
            gso,
        };
        let mut iface = Interface::new(config, &mut device, stamp);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.gateway_ip), cfg.prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway_ip);
        iface.set_any_ip(true);
        self.stacks.insert(port, Stack { iface, l2, mtu, gso });
    }

    /// Forgets endpoint `port`'s stack (its flows were removed first).
    pub fn remove_stack(&mut self, port: PortId) {
        self.stacks.remove(&port);
    }

    fn new_conn(&mut self, port: PortId, syn: Option<Box<[u8]>>) -> Conn {
        Conn {
            port,
            socket: new_socket(&mut self.pool, self.tsval),
            syn,
            deadline: None,
            host: HostState {
                readable: true,
                writable: true,
                eof: false,
                shut: false,
            },
        }
    }

    /// A new outbound connection of endpoint `port`: holds the container's SYN
    /// (`packet`, the IP packet) until [`TcpRelay::host_connected`].
    pub fn hold_syn(&mut self, port: PortId, packet: &[u8]) -> Conn {
        self.new_conn(port, Some(packet.into()))
    }

    /// The host connect of an outbound connection finished. On success the
    /// held SYN reaches a listening socket (the container gets its SYN-ACK); on
    /// failure the container gets a reset.
    pub fn host_connected(
        &mut self,
        now: Instant,
        conn: &mut Conn,
        ok: bool,
        stream: &mut dyn HostStream,
        sink: &mut dyn FrameSink,
    ) -> Step {
        let stamp = self.stamp(now);
        let Some(mut syn) = conn.syn.take() else {
            return Step::Open(TcpPhase::Connecting);
        };
        let port = conn.port;
        let Some(stack) = self.stacks.get_mut(&port) else {
            return Step::Done { reset: true };
        };
        if stack.gso.is_some() {
            raise_mss(&mut syn, GSO_MSS);
        }
        forbid_sack(&mut syn);
        if !ok {
            // With no socket listening, the stack answers the SYN with a reset.
            poll_stack(stack, &mut self.empty, &mut self.tx, sink, port, stamp, Some(&syn));
            return Step::Done { reset: false };
        }
        let Some(local) = syn_destination(&syn) else {
            return Step::Done { reset: true };
        };
        let sock = conn.socket.set.get_mut::<tcp::Socket>(conn.socket.handle);
        if sock.listen(IpListenEndpoint::from(endpoint(local))).is_err() {
            return Step::Done { reset: true };
        }
        conn.deadline = poll_stack(stack, &mut conn.socket.set, &mut self.tx, sink, port, stamp, Some(&syn));
        self.earliest = earlier(self.earliest, conn.deadline);
        self.pump(now, conn, stream, sink)
    }

    /// A client accepted on a published port of endpoint `port`: the stack
    /// connects to the container from `client` (the apparent client address).
    /// `None` if the endpoint has no stack or the connect is refused.
    pub fn open_published(
        &mut self,
        now: Instant,
        port: PortId,
        container: SocketAddrV4,
        client: SocketAddrV4,
        sink: &mut dyn FrameSink,
    ) -> Option<Conn> {
        let stamp = self.stamp(now);
        let mut conn = self.new_conn(port, None);
        let stack = self.stacks.get_mut(&port)?;
        let sock = conn.socket.set.get_mut::<tcp::Socket>(conn.socket.handle);
        sock.connect(stack.iface.context(), endpoint(container), endpoint(client))
            .ok()?;
        conn.deadline = poll_stack(stack, &mut conn.socket.set, &mut self.tx, sink, port, stamp, None);
        self.earliest = earlier(self.earliest, conn.deadline);
        Some(conn)
    }

    /// A packet of connection `conn` from the container (an IP packet).
    pub fn ingress(
        &mut self,
        now: Instant,
        conn: &mut Conn,
        packet: &[u8],
        stream: &mut dyn HostStream,
        sink: &mut dyn FrameSink,
    ) -> Step {
        let stamp = self.stamp(now);
        if conn.syn.is_some() {
            // A retransmitted SYN while the host connect is in progress.
            return Step::Open(TcpPhase::Connecting);
        }
        let port = conn.port;
        let Some(stack) = self.stacks.get_mut(&port) else {
            return Step::Done { reset: true };
        };
        let packet = if is_syn(packet) {
            // A SYN-ACK: the stack must see a large MSS to send large
            // segments, and no SACK.
            self.scratch.clear();
            self.scratch.extend_from_slice(packet);
            if stack.gso.is_some() {
                raise_mss(&mut self.scratch, GSO_MSS);
            }
            forbid_sack(&mut self.scratch);
            &self.scratch[..]
        } else {
            packet
        };
        conn.deadline = poll_stack(
            stack,
            &mut conn.socket.set,
            &mut self.tx,
            sink,
            port,
            stamp,
            Some(packet),
        );
        self.earliest = earlier(self.earliest, conn.deadline);
        self.pump(now, conn, stream, sink)
    }

    /// A packet from the container that belongs to no connection: the stack
    /// answers it (a reset, unless it is one).
    pub fn stray(&mut self, now: Instant, port: PortId, packet: &[u8], sink: &mut dyn FrameSink) {
        let stamp = self.stamp(now);
        if let Some(stack) = self.stacks.get_mut(&port) {
            poll_stack(stack, &mut self.empty, &mut self.tx, sink, port, stamp, Some(packet));
        }
    }

    /// The host stream of `conn` became readable and/or writable.
    pub fn host_ready(
        &mut self,
        now: Instant,
        conn: &mut Conn,
        readable: bool,
        writable: bool,
        stream: &mut dyn HostStream,
        sink: &mut dyn FrameSink,
    ) -> Step {
        conn.host.readable |= readable;
        conn.host.writable |= writable;
        self.pump(now, conn, stream, sink)
    }

    /// Ends `conn`, resetting the container side if it is still open; its
    /// socket buffers go back to the pool.
    pub fn remove(&mut self, now: Instant, mut conn: Conn, sink: &mut dyn FrameSink) {
        let stamp = self.stamp(now);
        let Some(stack) = self.stacks.get_mut(&conn.port) else {
            return;
        };
        let sock = conn.socket.set.get_mut::<tcp::Socket>(conn.socket.handle);
        // TIME-WAIT is the end of a clean close: nothing to reset.
        if sock.is_open() && sock.state() != tcp::State::TimeWait {
            sock.abort();
            poll_stack(stack, &mut conn.socket.set, &mut self.tx, sink, conn.port, stamp, None);
        }
        let sock = conn.socket.set.get::<tcp::Socket>(conn.socket.handle);
        if sock.state() == tcp::State::Closed && self.pool.len() < SOCKET_POOL {
            self.pool.push(conn.socket);
        }
    }

    /// Whether some connection's timers may be due by `now` (else
    /// [`TcpRelay::poll_timers`] has nothing to do). Constant time.
    pub fn timers_due(&self, now: Instant) -> bool {
        self.earliest.is_some_and(|e| e <= self.stamp(now))
    }

    /// Runs the timers (retransmissions, delayed ACKs, TIME-WAIT) of `conns`
    /// due by `now` — every connection, when [`TcpRelay::timers_due`] — and
    /// calls `finished` with the key of each that ended.
    pub fn poll_timers<'c, K>(
        &mut self,
        now: Instant,
        conns: impl Iterator<Item = (K, &'c mut Conn)>,
        sink: &mut dyn FrameSink,
        mut finished: impl FnMut(K, Step),
    ) {
        let stamp = self.stamp(now);
        // This walk also recomputes the earliest deadline exactly.
        let mut earliest = None;
        for (key, c) in conns {
            if let (Some(stack), true) = (self.stacks.get_mut(&c.port), c.deadline.is_some_and(|d| d <= stamp)) {
                c.deadline = poll_stack(stack, &mut c.socket.set, &mut self.tx, sink, c.port, stamp, None);
                let sock = c.socket.set.get::<tcp::Socket>(c.socket.handle);
                if let Step::Done { reset } = judge(c, sock) {
                    finished(key, Step::Done { reset });
                }
            }
            earliest = earlier(earliest, c.deadline);
        }
        self.earliest = earliest;
    }

    /// When the connections next need [`TcpRelay::poll_timers`]: no later than
    /// the earliest deadline (it may be early after a deadline moved later,
    /// which costs one walk). Constant time.
    pub fn next_timer(&self, now: Instant) -> Option<Duration> {
        let stamp = self.stamp(now);
        let next = self.earliest?;
        Some(Duration::from_micros((next - stamp.min(next)).total_micros()))
    }

    /// Moves data both ways between `conn`'s socket and its host stream and
    /// sends what the stack has to send.
    fn pump(&mut self, now: Instant, conn: &mut Conn, stream: &mut dyn HostStream, sink: &mut dyn FrameSink) -> Step {
        let stamp = self.stamp(now);
        let Some(stack) = self.stacks.get_mut(&conn.port) else {
            return Step::Done { reset: true };
        };
        let port = conn.port;
        for _ in 0..64 {
            let sock = conn.socket.set.get_mut::<tcp::Socket>(conn.socket.handle);
            let moved = relay(&mut conn.host, sock, stream);
            conn.deadline = poll_stack(stack, &mut conn.socket.set, &mut self.tx, sink, port, stamp, None);
            self.earliest = earlier(self.earliest, conn.deadline);
            if !moved {
                break;
            }
        }
        let sock = conn.socket.set.get::<tcp::Socket>(conn.socket.handle);
        judge(conn, sock)
    }
}

/// A set with one closed socket: a pooled one, or a new one (two buffers of
/// [`RECV_BUFFER`] and [`SEND_BUFFER`], which are costly to allocate and zero per connection).
fn new_socket(pool: &mut Vec<OneSocket>, tsval: fn() -> u32) -> OneSocket {
    let mut one = pool.pop().unwrap_or_else(|| {
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; RECV_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; SEND_BUFFER]),
        );
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(sock);
        OneSocket { set, handle }
    });
    let s = one.set.get_mut::<tcp::Socket>(one.handle);
    s.set_nagle_enabled(false);
    s.set_tsval_generator(Some(tsval));
    one
}

/// Moves what can move between a socket and its host stream; true if any
/// byte moved.
fn relay(host: &mut HostState, sock: &mut tcp::Socket, stream: &mut dyn HostStream) -> bool {
    let mut moved = false;
    // Container → host.
    while host.writable && sock.can_recv() {
        match sock.recv(|buf| match stream.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(n)) if n > 0 => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => host.writable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(_) | Err(_) => {
                // The host peer is gone: reset the container.
                sock.abort();
                host.eof = true;
                host.shut = true;
                return moved;
            }
        }
    }
    // The container closed its side and everything it sent went out.
    if !host.shut
        && !sock.can_recv()
        && matches!(
            sock.state(),
            tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
        )
    {
        host.shut = true;
        let _ = stream.shutdown_write();
    }
    // Host → container.
    while host.readable && !host.eof && sock.can_send() {
        match sock.send(|buf| match stream.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) => {
                host.eof = true;
                sock.close();
            }
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => host.readable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) | Err(_) => {
                // Reset by the host peer: the container gets a reset.
                host.eof = true;
                host.shut = true;
                sock.abort();
            }
        }
    }
    moved
}

/// The earlier of two optional deadlines (`None`: none).
fn earlier(a: Option<smoltcp::time::Instant>, b: Option<smoltcp::time::Instant>) -> Option<smoltcp::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The phase of a connection, or whether it is over.
fn judge(conn: &Conn, sock: &tcp::Socket) -> Step {
    match sock.state() {
        tcp::State::Closed | tcp::State::TimeWait => Step::Done {
            // Closed before the host peer was told: the container reset it.
            reset: !conn.host.shut,
        },
        tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => Step::Open(TcpPhase::Connecting),
        tcp::State::Established => Step::Open(TcpPhase::Established),
        _ => Step::Open(TcpPhase::Closing),
    }
}

/// Feeds `rx` (if any) to the stack with `sockets`, sends everything it
/// emits, and returns when the sockets next need a poll.
fn poll_stack(
    stack: &mut Stack,
    sockets: &mut SocketSet<'static>,
    tx: &mut TxQueue,
    sink: &mut dyn FrameSink,
    port: PortId,
    stamp: smoltcp::time::Instant,
    rx: Option<&[u8]>,
) -> Option<smoltcp::time::Instant> {
    let mut dev = Dev {
        rx,
        tx,
        sink,
        port,
        l2: stack.l2,
        mtu: stack.mtu,
        gso: stack.gso,
    };
    stack.iface.poll(stamp, &mut dev, sockets);
    dev.tx.flush(port, dev.sink);
    stack.iface.poll_at(stamp, sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameBuf;
    use crate::testkit::{IpStack, Pipe};
    use smoltcp::wire::TcpControl;

    /// The frames the relay sent, as IP packets.
    #[derive(Default)]
    struct Frames(Vec<Vec<u8>>);

    impl FrameSink for Frames {
        fn send(&mut self, port: PortId, frames: &[FrameBuf]) {
            assert_eq!(port, PORT);
            for f in frames {
                self.0.push(f.frame()[ETHERNET_HEADER_LEN..].to_vec());
            }
        }
    }

    const PORT: PortId = PortId(3);
    const OUTSIDE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 80);

    /// A virtual clock of TCP timestamps.
    fn tsval() -> u32 {
        1_000
    }

    fn relay(t0: Instant) -> TcpRelay {
        let mut r = TcpRelay::new(t0, tsval);
        r.ensure_stack(
            t0,
            PORT,
            StackConfig {
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                gateway_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                gateway_ip: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 24,
                mtu: 1500,
                offload: false,
            },
        );
        r
    }

    fn container(t: smoltcp::time::Instant) -> IpStack {
        let mut c = IpStack::new(t, Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        c.connect(OUTSIDE, 40000);
        c
    }

    /// Moves packets both ways until nothing moves, `steps` at most; the
    /// container reads everything it gets into `got`.
    fn exchange(
        r: &mut TcpRelay,
        conn: &mut Conn,
        c: &mut IpStack,
        pipe: &mut Pipe,
        frames: &mut Frames,
        now: &mut Instant,
        got: &mut Vec<u8>,
    ) -> Step {
        let mut step = Step::Open(TcpPhase::Connecting);
        for _ in 0..10_000 {
            *now += Duration::from_micros(50);
            let t = r.stamp(*now);
            let out = c.poll(t, frames.0.drain(..));
            c.drain(got);
            for p in &out {
                step = r.ingress(*now, conn, p, pipe, frames);
            }
            if !out.is_empty() || !pipe.from_host.is_empty() {
                step = r.host_ready(*now, conn, true, true, pipe, frames);
            }
            if r.timers_due(*now) {
                r.poll_timers(*now, std::iter::once(((), &mut *conn)), frames, |(), s| step = s);
            }
            if out.is_empty() && frames.0.is_empty() && c.iface.poll_at(t, &c.sockets).is_none_or(|d| d > t) {
                break;
            }
        }
        step
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i % 251).unwrap_or(0) ^ seed).collect()
    }

    /// A relay, a container that has just sent its SYN (returned), no frames
    /// yet, and a host stream taking `room` bytes before it blocks.
    fn setup(room: usize) -> (Instant, TcpRelay, IpStack, Frames, Pipe, Vec<Vec<u8>>) {
        let t0 = Instant::now();
        let r = relay(t0);
        let mut c = container(r.stamp(t0));
        let mut frames = Frames::default();
        let pipe = Pipe {
            room,
            ..Pipe::default()
        };
        let syn = c.poll(r.stamp(t0), frames.0.drain(..));
        (t0, r, c, frames, pipe, syn)
    }

    #[test]
    fn a_connection_is_relayed_both_ways_and_closed_in_order() {
        let (t0, mut r, mut c, mut frames, mut pipe, syn) = setup(100_000);
        let mut now = t0;
        // The container's SYN waits for the host connect.
        assert_eq!(syn.len(), 1);
        assert_eq!(syn_destination(&syn[0]), Some(OUTSIDE));
        let mut conn = r.hold_syn(PORT, &syn[0]);
        assert!(conn.is_connecting());
        assert!(frames.0.is_empty(), "nothing answered before the host connected");
        let step = r.host_connected(now, &mut conn, true, &mut pipe, &mut frames);
        assert_eq!(step, Step::Open(TcpPhase::Connecting));
        let mut got = Vec::new();
        let step = exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
        assert_eq!(step, Step::Open(TcpPhase::Established));
        assert_eq!(c.sock().state(), tcp::State::Established);

        // 1 MB each way, through a host stream that blocks every 100 kB.
        let up = pattern(1 << 20, 0x5a);
        let down = pattern(1 << 20, 0xa5);
        pipe.from_host.extend(&down);
        let mut sent = 0;
        for _ in 0..1000 {
            sent += c.sock().send_slice(&up[sent..]).unwrap();
            exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
            pipe.room = 100_000;
            if sent == up.len() && pipe.to_host.len() == up.len() && got.len() == down.len() {
                break;
            }
        }
        assert_eq!(pipe.to_host, up, "container → host");
        assert_eq!(got, down, "host → container");

        // The host closes: the container reads EOF, closes in turn, the host
        // is told, and the flow ends without a reset.
        pipe.host_closed = true;
        let step = r.host_ready(now, &mut conn, true, false, &mut pipe, &mut frames);
        assert_eq!(step, Step::Open(TcpPhase::Closing));
        exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
        assert!(!c.sock().may_recv(), "the container saw the FIN");
        c.sock().close();
        let step = exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
        assert_eq!(step, Step::Done { reset: false });
        assert!(pipe.shut);
    }

    /// The options of a SYN (an IPv4 packet) the tests look at, read by
    /// smoltcp's parser: (SACK permitted, window scale).
    fn syn_options(packet: &[u8]) -> (bool, Option<u8>) {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, TcpRepr};
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::ignored()).unwrap();
        (repr.sack_permitted, repr.window_scale)
    }

    fn offers_sack(packet: &[u8]) -> bool {
        syn_options(packet).0
    }

    #[test]
    fn neither_side_is_offered_sack() {
        // Outbound: the container's SYN offers SACK (a smoltcp stack's does);
        // the SYN-ACK it gets does not.
        let (t0, mut r, _c, mut frames, mut pipe, syn) = setup(1000);
        assert!(offers_sack(&syn[0]), "the test's container offers SACK");
        let mut conn = r.hold_syn(PORT, &syn[0]);
        r.host_connected(t0, &mut conn, true, &mut pipe, &mut frames);
        assert!(is_syn(&frames.0[0]) && !offers_sack(&frames.0[0]), "{:?}", frames.0[0]);
        // Published: the stack's own SYN to the container offers none either,
        // and its checksum (full: this port has no offloads) still holds.
        let mut frames = Frames::default();
        let container = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 50000);
        r.open_published(t0, PORT, container, client, &mut frames).unwrap();
        let syn = &frames.0[0];
        assert!(is_syn(syn) && !offers_sack(syn));
        let (ip, tcp) = super::super::segment::tcp_view(syn).unwrap();
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn a_refused_connect_resets_the_container() {
        let (t0, mut r, mut c, mut frames, mut pipe, syn) = setup(0);
        let mut conn = r.hold_syn(PORT, &syn[0]);
        let step = r.host_connected(t0, &mut conn, false, &mut pipe, &mut frames);
        assert_eq!(step, Step::Done { reset: false });
        assert_eq!(frames.0.len(), 1, "one reset");
        c.poll(r.stamp(t0), frames.0.drain(..));
        assert_eq!(c.sock().state(), tcp::State::Closed);
    }

    #[test]
    fn a_container_reset_resets_the_host() {
        let (t0, mut r, mut c, mut frames, mut pipe, syn) = setup(1000);
        let mut now = t0;
        let mut conn = r.hold_syn(PORT, &syn[0]);
        r.host_connected(now, &mut conn, true, &mut pipe, &mut frames);
        let mut got = Vec::new();
        exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
        c.sock().abort();
        let step = exchange(&mut r, &mut conn, &mut c, &mut pipe, &mut frames, &mut now, &mut got);
        assert_eq!(step, Step::Done { reset: true });
    }

    /// A segment from the container (10.0.0.2:40000) to [`OUTSIDE`], built
    /// by hand: the test decides what is sent and when.
    fn from_container(
        seq: u32,
        ack: Option<u32>,
        control: TcpControl,
        window_scale: Option<u8>,
        payload: &[u8],
    ) -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{IpAddress, Ipv4Repr, TcpRepr, TcpSeqNumber};
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), *OUTSIDE.ip());
        let sn = |n: u32| TcpSeqNumber(n.cast_signed());
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: OUTSIDE.port(),
            control,
            seq_number: sn(seq),
            ack_number: ack.map(sn),
            window_len: 65535,
            window_scale,
            max_seg_size: window_scale.map(|_| 1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: smoltcp::wire::IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let caps = ChecksumCapabilities::default();
        let mut buf = vec![0; ip.buffer_len() + tcp.buffer_len()];
        ip.emit(&mut smoltcp::wire::Ipv4Packet::new_unchecked(&mut buf[..]), &caps);
        tcp.emit(
            &mut smoltcp::wire::TcpPacket::new_unchecked(&mut buf[ip.buffer_len()..]),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        buf
    }

    #[test]
    fn a_sender_that_fills_every_window_it_was_offered_loses_no_byte() {
        // The container behaves as Linux does: it sends up to the farthest
        // right edge any ACK has offered, in segments of odd sizes, and
        // never retransmits; the host takes a little at a time, so the
        // stack's window keeps shrinking and reopening. Had an edge ever
        // receded, the bytes past it would be trimmed and never arrive.
        let t0 = Instant::now();
        let mut r = relay(t0);
        let (mut frames, mut now) = (Frames::default(), t0);
        let mut pipe = Pipe::default();
        let isn: u32 = 0xfff0_0000;
        let mut conn = r.hold_syn(PORT, &from_container(isn, None, TcpControl::Syn, Some(7), &[]));
        r.host_connected(now, &mut conn, true, &mut pipe, &mut frames);
        // The SYN-ACK's window is not scaled.
        let syn_ack = frames.0.remove(0);
        let (_, tcp) = super::super::segment::tcp_view(&syn_ack).unwrap();
        let (ack, shift) = (tcp.seq_number().wrapping_add(1), syn_options(&syn_ack).1.unwrap());
        assert!(shift > 0, "a 256 KiB buffer is advertised scaled");
        let mut nxt = isn.wrapping_add(1);
        let mut edge = nxt.wrapping_add(u32::from(tcp.window_len()));
        r.ingress(
            now,
            &mut conn,
            &from_container(nxt, Some(ack), TcpControl::None, None, &[]),
            &mut pipe,
            &mut frames,
        );
        let data = pattern(3 << 20, 0x3c);
        let mut sent = 0;
        let mut x: u32 = 0x2545_f491;
        let mut rand = move |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % n
        };
        for _ in 0..200_000 {
            for f in frames.0.drain(..) {
                let (_, tcp) = super::super::segment::tcp_view(&f).unwrap();
                let right = tcp.ack_number().wrapping_add(u32::from(tcp.window_len()) << shift);
                if right.wrapping_sub(edge).cast_signed() > 0 {
                    edge = right;
                }
            }
            while sent < data.len() && edge.wrapping_sub(nxt).cast_signed() > 0 {
                let room = usize::try_from(edge.wrapping_sub(nxt)).unwrap();
                let n = (1 + rand(1448) as usize).min(room).min(data.len() - sent);
                let seg = from_container(nxt, Some(ack), TcpControl::Psh, None, &data[sent..sent + n]);
                r.ingress(now, &mut conn, &seg, &mut pipe, &mut frames);
                nxt = nxt.wrapping_add(u32::try_from(n).unwrap());
                sent += n;
            }
            now += Duration::from_micros(20);
            pipe.room += rand(3000) as usize;
            r.host_ready(now, &mut conn, false, true, &mut pipe, &mut frames);
            if r.timers_due(now) {
                r.poll_timers(now, std::iter::once(((), &mut conn)), &mut frames, |(), _| {});
            }
            if sent == data.len() && pipe.to_host.len() == sent {
                break;
            }
        }
        assert_eq!(
            pipe.to_host.len(),
            sent,
            "bytes the container sent within an offered window were lost"
        );
        assert_eq!(sent, data.len(), "the stack kept its window open");
        assert!(pipe.to_host == data, "relayed in order");
    }
}
