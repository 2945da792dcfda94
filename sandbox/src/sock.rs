//! Sockets inside a sandbox, opened from outside it.
//!
//! Role: a socket belongs to the network namespace it was created in, wherever
//! it is used afterwards. So a process that wants to talk *from* a sandbox —
//! the demo's ping and TCP transfer, a test's client or server — does not need
//! `ping`, `iperf3` or a shell inside: it creates the socket in the sandbox and
//! uses it from any thread.
//!
//! Decisions:
//! - Rootful: a short-lived thread enters the namespace ([`netns::run_in`]) and
//!   makes the socket; no long-lived thread ever changes namespace.
//! - Rootless: the namespace belongs to a user namespace, which a
//!   multi-threaded process cannot join; a forked helper joins both and passes
//!   the socket back ([`userns::open_socket`]). It is made as root of that user
//!   namespace, so a raw ICMP socket works there too.
//! - Binding, connecting and sending happen afterwards, outside: they act on
//!   the socket's own namespace.

use std::io;
use std::net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn, bind, connect, listen, setsockopt, sockopt,
};
use nix::sys::time::TimeVal;

use crate::{SandboxError, netns, userns};

/// Where a socket is made: a sandbox's network namespace (its key), and for
/// a rootless sandbox the user namespace that owns it.
#[derive(Debug, Clone, Copy)]
pub struct NsKey<'a> {
    /// The network namespace file (`/run/netns/NAME`, a rootless sandbox's key,
    /// `/proc/PID/ns/net`).
    pub netns: &'a Path,
    /// The owning user namespace to join first (rootless), if any.
    pub userns: Option<&'a Path>,
}

impl<'a> NsKey<'a> {
    /// A namespace the caller may enter directly (rootful, or any as root).
    pub fn netns(netns: &'a Path) -> NsKey<'a> {
        NsKey { netns, userns: None }
    }
}

fn sock_err(key: NsKey<'_>, op: &'static str, e: impl Into<io::Error>) -> SandboxError {
    SandboxError::Netns {
        op,
        name: key.netns.display().to_string(),
        source: e.into(),
    }
}

/// Opens a socket of `family`, `ty` and `protocol` inside `key`'s namespace
/// (close-on-exec).
pub fn socket(
    key: NsKey<'_>,
    family: AddressFamily,
    ty: SockType,
    protocol: Option<SockProtocol>,
) -> Result<OwnedFd, SandboxError> {
    match key.userns {
        Some(user) => userns::open_socket(
            user,
            key.netns,
            family as i32,
            ty as i32,
            protocol.map_or(0, |p| p as i32),
        ),
        None => netns::run_in(key.netns, || {
            nix::sys::socket::socket(family, ty, SockFlag::SOCK_CLOEXEC, protocol)
        })?
        .map_err(|e| sock_err(key, "socket", e)),
    }
}

/// A TCP listener on `addr` inside `key`'s namespace (`SO_REUSEADDR`, backlog 128).
pub fn tcp_listener(key: NsKey<'_>, addr: SocketAddrV4) -> Result<TcpListener, SandboxError> {
    let fd = socket(key, AddressFamily::Inet, SockType::Stream, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| sock_err(key, "SO_REUSEADDR", e))?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|e| sock_err(key, "bind", e))?;
    listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN)).map_err(|e| sock_err(key, "listen", e))?;
    Ok(TcpListener::from(fd))
}

/// A TCP connection from inside `key`'s namespace to `to`, from local address
/// `from` if given, giving up after `timeout`. The connect's own error (refused,
/// unreachable, timed out) is the `io::Error` of [`SandboxError::Netns`] with op
/// `connect`.
pub fn tcp_connect(
    key: NsKey<'_>,
    to: SocketAddrV4,
    from: Option<SocketAddrV4>,
    timeout: Duration,
) -> Result<TcpStream, SandboxError> {
    let fd = socket(key, AddressFamily::Inet, SockType::Stream, None)?;
    if let Some(from) = from {
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| sock_err(key, "SO_REUSEADDR", e))?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(from)).map_err(|e| sock_err(key, "bind", e))?;
    }
    // Linux bounds a blocking connect by the send timeout.
    let limit = TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    setsockopt(&fd, sockopt::SendTimeout, &limit).map_err(|e| sock_err(key, "SO_SNDTIMEO", e))?;
    match connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) => {}
        // The timeout struck (Linux reports it as EINPROGRESS).
        Err(nix::errno::Errno::EINPROGRESS) => {
            return Err(sock_err(key, "connect", io::Error::from(io::ErrorKind::TimedOut)));
        }
        Err(e) => return Err(sock_err(key, "connect", e)),
    }
    let stream = TcpStream::from(fd);
    stream
        .set_write_timeout(None)
        .map_err(|e| sock_err(key, "SO_SNDTIMEO", e))?;
    Ok(stream)
}

/// A UDP socket bound to `addr` inside `key`'s namespace.
pub fn udp_socket(key: NsKey<'_>, addr: SocketAddrV4) -> Result<UdpSocket, SandboxError> {
    let fd = socket(key, AddressFamily::Inet, SockType::Datagram, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|e| sock_err(key, "bind", e))?;
    Ok(UdpSocket::from(fd))
}
