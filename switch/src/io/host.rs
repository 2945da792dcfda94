//! The host side of NAT and published ports, behind one trait.
//!
//! Role: the worker needs sockets of the host — a connected datagram socket
//! per UDP or ping flow, a TCP stream per relayed connection, a listener per
//! published port — and readiness for each. [`Host`] opens them and registers
//! each under the poll token the worker gives; the worker holds them as trait
//! objects ([`Datagram`], [`Stream`], [`Listener`]) in its flow and listener
//! slabs and never calls a socket function itself. [`OsHost`] is the real one
//! (mio on the kernel's sockets); tests give the worker a host in memory and
//! drive it without root.
//!
//! Decision: closing a socket removes it from the epoll set (no other fd
//! shares its file description), so a socket is never deregistered by hand and
//! holds no extra descriptor for it.
//!
//! Decision: a relayed TCP stream queues at most [`NOTSENT_LOWAT`] bytes
//! that the kernel has not sent yet (`TCP_NOTSENT_LOWAT`); the rest waits in
//! the relay. A stream with a deep unsent queue is transmitted from two CPUs —
//! the worker's, when it writes, and whichever CPU an ACK from the outside
//! arrives on, which sends more of the queue — so its segments reach the peer
//! out of order, and the peer's duplicate ACKs made the kernel retransmit
//! about one segment in a hundred (nstat in the daemon's namespace on the
//! 2-vCPU VM: TcpRetransSegs 38k–57k in 5 s with the container sending).
//! With the unsent queue kept short, nearly every segment leaves from the
//! worker's writes: 225–670 retransmits, and the container's uploads through
//! the relay 8.5–9.3 → 9.7–10.4 Gbit/s (docs/bench.md).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
// nix's option macro calls itself and its helpers unqualified.
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

use super::flowsock::FlowSocket;
use crate::nat::tcp::HostStream;
use crate::nat::{NatProto, Protocol};

/// Opens the host's sockets for the worker, each watched under a token.
pub trait Host: Send {
    /// A datagram socket for a UDP or ICMP echo flow, connected to `to`
    /// (`raw_ident`: the echo identifier a raw ICMP fallback uses), watched
    /// for reading.
    fn datagram(
        &mut self,
        proto: NatProto,
        to: SocketAddrV4,
        raw_ident: u16,
        token: Token,
    ) -> io::Result<Box<dyn Datagram>>;
    /// A TCP stream connecting (without blocking) to `to`, watched both ways.
    fn connect(&mut self, to: SocketAddrV4, token: Token) -> io::Result<Box<dyn Stream>>;
    /// A published port's listener (TCP or UDP) bound to `at`, watched for
    /// reading.
    fn listen(&mut self, proto: Protocol, at: SocketAddrV4, token: Token) -> io::Result<Box<dyn Listener>>;
}

/// A flow's connected datagram socket.
pub trait Datagram: Send {
    /// Sends one datagram.
    fn send(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Receives one datagram; `WouldBlock` when none is queued. An ICMP error
    /// from the outside comes back as its errno (ECONNREFUSED, EHOSTUNREACH).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A TCP stream of the relay.
pub trait Stream: HostStream + Send {
    /// Where a connect stands: `Ok(false)` still connecting, `Ok(true)`
    /// connected, `Err` the failure (refused, unreachable, timed out).
    fn connected(&mut self) -> io::Result<bool>;
    /// Makes closing it send a reset instead of a FIN.
    fn reset_on_close(&mut self);
}

/// A published port's host socket.
pub trait Listener: Send {
    /// TCP: accepts one client, its stream watched under `token`.
    fn accept(&mut self, token: Token) -> io::Result<(Box<dyn Stream>, SocketAddrV4)>;
    /// UDP: receives one datagram and who sent it.
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)>;
    /// UDP: sends one datagram to `to`.
    fn send_to(&mut self, data: &[u8], to: SocketAddrV4) -> io::Result<usize>;
}

/// The kernel's sockets, watched by the worker's poll.
#[derive(Debug, Clone)]
pub struct OsHost {
    registry: Arc<Registry>,
}

impl OsHost {
    /// A host whose sockets the poll of `registry` watches.
    pub fn new(registry: Arc<Registry>) -> OsHost {
        OsHost { registry }
    }
}

/// Unsent bytes a relayed stream may hold in the kernel (the module's
/// decision): 4–64 KiB measured alike; 128 KiB brought the retransmits back.
pub const NOTSENT_LOWAT: usize = 32 * 1024;

sockopt_impl!(
    /// `TCP_NOTSENT_LOWAT` (Linux 3.12): a TCP socket is writable only while
    /// fewer unsent bytes than this are queued.
    NotSentLowat,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_NOTSENT_LOWAT,
    usize
);

/// Options of every relayed stream: no Nagle delay (the relay writes what it
/// has), and a short unsent queue. Both are optimisations: a kernel that
/// refuses them still relays.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = nix::sys::socket::setsockopt(&stream.as_fd(), NotSentLowat, &NOTSENT_LOWAT);
}

fn not_v4() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "an IPv6 peer on an IPv4 socket")
}

impl Host for OsHost {
    fn datagram(
        &mut self,
        proto: NatProto,
        to: SocketAddrV4,
        raw_ident: u16,
        token: Token,
    ) -> io::Result<Box<dyn Datagram>> {
        let sock = FlowSocket::connect(proto, to, raw_ident)?;
        let fd = sock.raw_fd();
        self.registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        Ok(Box::new(sock))
    }

    fn connect(&mut self, to: SocketAddrV4, token: Token) -> io::Result<Box<dyn Stream>> {
        let mut stream = TcpStream::connect(SocketAddr::V4(to))?;
        tune(&stream);
        self.registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Box::new(stream))
    }

    fn listen(&mut self, proto: Protocol, at: SocketAddrV4, token: Token) -> io::Result<Box<dyn Listener>> {
        match proto {
            Protocol::Tcp => {
                let mut l = TcpListener::bind(SocketAddr::V4(at))?;
                self.registry.register(&mut l, token, Interest::READABLE)?;
                Ok(Box::new(OsTcpListener {
                    listener: l,
                    registry: self.registry.clone(),
                }))
            }
            Protocol::Udp => {
                let sock = UdpSocket::bind(at)?;
                sock.set_nonblocking(true)?;
                let fd = sock.as_raw_fd();
                self.registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
                Ok(Box::new(sock))
            }
        }
    }
}

impl Datagram for FlowSocket {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        FlowSocket::send(self, data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        FlowSocket::recv(self, buf)
    }
}

impl HostStream for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(self, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Write)
    }
}

impl Stream for TcpStream {
    fn connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        match self.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn reset_on_close(&mut self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(&self.as_fd(), nix::sys::socket::sockopt::Linger, &linger);
    }
}

/// A published TCP port's listener; accepted streams are watched by the same
/// poll.
struct OsTcpListener {
    listener: TcpListener,
    registry: Arc<Registry>,
}

impl Listener for OsTcpListener {
    fn accept(&mut self, token: Token) -> io::Result<(Box<dyn Stream>, SocketAddrV4)> {
        let (mut stream, from) = self.listener.accept()?;
        let SocketAddr::V4(from) = from else {
            return Err(not_v4());
        };
        tune(&stream);
        self.registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok((Box::new(stream), from))
    }
    fn recv_from(&mut self, _: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn send_to(&mut self, _: &[u8], _: SocketAddrV4) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Listener for UdpSocket {
    fn accept(&mut self, _: Token) -> io::Result<(Box<dyn Stream>, SocketAddrV4)> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        match UdpSocket::recv_from(self, buf)? {
            (n, SocketAddr::V4(from)) => Ok((n, from)),
            _ => Err(not_v4()),
        }
    }
    fn send_to(&mut self, data: &[u8], to: SocketAddrV4) -> io::Result<usize> {
        UdpSocket::send_to(self, data, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_streams_keep_a_short_unsent_queue_and_no_nagle() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = stream.as_fd();
        let before = nix::sys::socket::getsockopt(&fd, NotSentLowat).unwrap();
        assert_ne!(before, NOTSENT_LOWAT, "the kernel's default is unlimited");
        tune(&stream);
        assert_eq!(nix::sys::socket::getsockopt(&fd, NotSentLowat).unwrap(), NOTSENT_LOWAT);
        assert!(stream.nodelay().unwrap());
    }
}
