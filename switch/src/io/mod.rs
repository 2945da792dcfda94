//! The I/O layer of the switch: where frames and payloads meet the kernel.
//!
//! - [`port`]: the [`Port`] trait (batch receive, batch send) and its
//!   backends: [`packet`] (AF_PACKET on a veth host end, TPACKET_V2 ring),
//!   [`xdp`] (AF_XDP on a veth host end, an XDP redirect program, opt-in),
//!   [`tap`] (a TAP fd), [`mem`] (a pair of ports in memory, for tests);
//! - port wrappers in smoltcp's style: [`pcap`] (writes what crosses a port as
//!   tcpdump would see it) and [`fault`] (drops, corrupts, reorders, delays at
//!   a seeded rate);
//! - [`host`]: the host side of NAT and published ports behind one trait
//!   ([`Host`]: datagram sockets, TCP streams, listeners), with its operating
//!   system implementation on mio ([`OsHost`]) — the worker never calls a
//!   socket function itself, so tests drive it with a host in memory;
//! - [`flowsock`]: a flow's connected datagram socket (UDP, ping, raw ICMP).
//!
//! `unsafe` lives here only (the sys layers of `packet`, `xdp` and `tap`).

pub mod fault;
pub mod flowsock;
pub mod host;
pub mod mem;
mod mmap;
pub mod packet;
pub mod pcap;
pub mod port;
pub mod tap;
pub mod xdp;

pub use host::{Datagram, Host, Listener, OsHost, Stream};
pub use mem::MemPort;
pub use packet::{PacketFeatures, PacketPort};
pub use port::{Port, RecvResult, SendResult};
pub use tap::TapPort;
pub use xdp::{XdpError, XdpMode, XdpPort};
