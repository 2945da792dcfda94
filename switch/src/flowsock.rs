//! The host side of an outbound NAT flow: a connected, non-blocking datagram
//! socket of the daemon — UDP, or an unprivileged ICMP "ping" socket
//! (`SOCK_DGRAM`/`IPPROTO_ICMP`), whose echo identifier the kernel chooses and
//! whose replies it matches for us. Both are ordinary sockets: no raw sockets,
//! no firewall rules, and they work without privileges where ping sockets are
//! allowed (`net.ipv4.ping_group_range`).

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, connect, recv, send, socket,
};

use crate::nat::NatProto;

/// A flow's host socket.
#[derive(Debug)]
pub struct FlowSocket {
    fd: OwnedFd,
}

impl FlowSocket {
    /// Opens a socket for `proto` connected to `outside`.
    pub fn connect(proto: NatProto, outside: SocketAddrV4) -> io::Result<FlowSocket> {
        let p = match proto {
            NatProto::Udp => SockProtocol::Udp,
            NatProto::Icmp => SockProtocol::Icmp,
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket(AddressFamily::Inet, SockType::Datagram, flags, p)?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(outside))?;
        Ok(FlowSocket { fd })
    }

    /// Sends one datagram (a UDP payload, or an ICMP echo message).
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        Ok(send(self.fd.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT)?)
    }

    /// Receives one datagram; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?)
    }

    /// The fd to poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
