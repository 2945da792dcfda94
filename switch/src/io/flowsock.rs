//! The host side of an outbound NAT flow: a connected, non-blocking socket of the
//! daemon — UDP, or for ICMP echo an unprivileged "ping" socket
//! (`SOCK_DGRAM`/`IPPROTO_ICMP`), whose echo identifier the kernel chooses and
//! whose replies it matches for us. These are ordinary sockets: no firewall
//! rules, no kernel forwarding, and no privileges where ping sockets are allowed
//! (`net.ipv4.ping_group_range`).
//!
//! Probe and degrade: where ping sockets are not allowed for us, a daemon with
//! `CAP_NET_RAW` falls back to a raw ICMP socket per flow, connected to the
//! outside address (so the kernel only hands it that address's ICMP); the
//! switch then puts its own per-flow identifier in the echo requests and keeps
//! only the echo replies that carry it. The choice is logged once.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, connect, recv, send, socket,
};

use crate::nat::NatProto;
use crate::wire::checksum;

/// A flow's host socket.
#[derive(Debug)]
pub struct FlowSocket {
    fd: OwnedFd,
    /// For a raw ICMP socket: the echo identifier this flow uses outside, and a
    /// scratch buffer for rewriting requests.
    raw: Option<(u16, Vec<u8>)>,
}

static RAW_FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

const ICMP_ECHO_REPLY: u8 = 0;

fn open(ty: SockType, proto: SockProtocol, outside: SocketAddrV4) -> io::Result<OwnedFd> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(AddressFamily::Inet, ty, flags, proto)?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(outside))?;
    Ok(fd)
}

impl FlowSocket {
    /// Opens a socket for `proto` connected to `outside`. `raw_ident` is the echo
    /// identifier a raw ICMP fallback uses (unique among live flows).
    pub fn connect(proto: NatProto, outside: SocketAddrV4, raw_ident: u16) -> io::Result<FlowSocket> {
        match proto {
            // TCP flows are streams of the relay, not datagram sockets.
            NatProto::Tcp => Err(io::Error::from(io::ErrorKind::Unsupported)),
            NatProto::Udp => Ok(FlowSocket {
                fd: open(SockType::Datagram, SockProtocol::Udp, outside)?,
                raw: None,
            }),
            NatProto::Icmp => match open(SockType::Datagram, SockProtocol::Icmp, outside) {
                Ok(fd) => Ok(FlowSocket { fd, raw: None }),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                    let fd = open(SockType::Raw, SockProtocol::Icmp, outside)?;
                    if !RAW_FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                        log::info!(
                            "ping sockets are not allowed here (net.ipv4.ping_group_range); outbound ICMP echo \
                             uses raw sockets"
                        );
                    }
                    Ok(FlowSocket {
                        fd,
                        raw: Some((raw_ident, Vec::new())),
                    })
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Sends one datagram: a UDP payload, or an ICMP echo request message.
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let Some((ident, scratch)) = self.raw.as_mut() else {
            return Ok(send(fd, data, MsgFlags::MSG_DONTWAIT)?);
        };
        if data.len() < 8 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        scratch.clear();
        scratch.extend_from_slice(data);
        let old = u16::from_be_bytes([scratch[4], scratch[5]]);
        scratch[4..6].copy_from_slice(&ident.to_be_bytes());
        let check = checksum::update_u16(u16::from_be_bytes([scratch[2], scratch[3]]), old, *ident);
        scratch[2..4].copy_from_slice(&check.to_be_bytes());
        Ok(send(fd, scratch, MsgFlags::MSG_DONTWAIT)?)
    }

    /// Receives one datagram (for ICMP: the echo reply message, without the IP
    /// header); `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let Some((ident, _)) = &self.raw else {
            return Ok(recv(fd, buf, MsgFlags::MSG_DONTWAIT)?);
        };
        loop {
            let n = recv(fd, buf, MsgFlags::MSG_DONTWAIT)?;
            // A raw socket hands over the IP header too, and every ICMP message
            // from the outside address: keep our echo replies only.
            let ihl = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
            let Some(icmp) = buf.get(ihl..n) else { continue };
            if icmp.len() >= 8 && icmp[0] == ICMP_ECHO_REPLY && icmp[4..6] == ident.to_be_bytes() {
                buf.copy_within(ihl..n, 0);
                return Ok(n - ihl);
            }
        }
    }

    /// The fd to poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
