//! Test support, in memory: a container's TCP/IP stack (smoltcp, IP medium —
//! the tests wrap its packets in Ethernet themselves), a host stream, and a
//! [`Host`] whose sockets are queues the test reads and fills. With
//! [`crate::io::MemPort`], the worker runs at memory speed, without root.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Token;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::io::{Datagram, Host, Listener, Stream};
use crate::nat::tcp::HostStream;
use crate::nat::{NatProto, Protocol};

/// A device of IP packets in memory.
#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
}

pub(crate) struct QRx(Vec<u8>);
pub(crate) struct QTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for QRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for QTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl phy::Device for Queue {
    type RxToken<'b>
        = QRx
    where
        Self: 'b;
    type TxToken<'b>
        = QTx<'b>
    where
        Self: 'b;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(QRx, QTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((QRx(p), QTx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<QTx<'_>> {
        Some(QTx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A container's TCP/IP stack with one TCP socket.
pub(crate) struct IpStack {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) handle: SocketHandle,
    pub(crate) dev: Queue,
}

pub(crate) fn endpoint(a: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*a.ip()), a.port())
}

impl IpStack {
    /// A stack at `addr`/24 with a default route via `gateway` and one TCP
    /// socket of 64 KiB buffers.
    pub(crate) fn new(t: smoltcp::time::Instant, addr: Ipv4Addr, gateway: Ipv4Addr) -> IpStack {
        let mut dev = Queue::default();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, t);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), 24));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        let mut sockets = SocketSet::new(Vec::new());
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0u8; 64 * 1024]),
        );
        let handle = sockets.add(sock);
        IpStack {
            iface,
            sockets,
            handle,
            dev,
        }
    }

    /// Its socket.
    pub(crate) fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    /// Connects its socket to `to` from local port `port`.
    pub(crate) fn connect(&mut self, to: SocketAddrV4, port: u16) {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(self.handle)
            .connect(cx, endpoint(to), port)
            .unwrap();
    }

    /// Feeds it `inbound` packets, polls, and returns the packets it sent.
    pub(crate) fn poll(
        &mut self,
        t: smoltcp::time::Instant,
        inbound: impl IntoIterator<Item = Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        self.dev.rx.extend(inbound);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        std::mem::take(&mut self.dev.tx)
    }

    /// Reads everything its socket has received into `got`.
    pub(crate) fn drain(&mut self, got: &mut Vec<u8>) {
        let s = self.sock();
        while s.can_recv() {
            let _ = s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            });
        }
    }
}

/// A host stream in memory: what the host peer sends, what it got, and a
/// bound on what it takes before a write would block.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    pub(crate) from_host: VecDeque<u8>,
    pub(crate) host_closed: bool,
    pub(crate) to_host: Vec<u8>,
    pub(crate) shut: bool,
    pub(crate) room: usize,
    /// The outcome of the connect (`None`: still connecting).
    pub(crate) connected: Option<bool>,
    pub(crate) reset: bool,
}

impl HostStream for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.from_host.is_empty() {
            return if self.host_closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.from_host.len());
        for (b, v) in buf.iter_mut().zip(self.from_host.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.room);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.room -= n;
        self.to_host.extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }
}

/// A shared handle on a [`Pipe`]: the worker holds one, the test the other.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPipe(pub(crate) Arc<Mutex<Pipe>>);

impl SharedPipe {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Pipe> {
        self.0.lock().unwrap()
    }

    /// An open stream that takes whatever is written and has `from_host`
    /// to read.
    pub(crate) fn open(from_host: &[u8]) -> SharedPipe {
        let p = SharedPipe::default();
        p.lock().room = usize::MAX;
        p.lock().from_host.extend(from_host);
        p
    }
}

impl HostStream for SharedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.lock().shutdown_write()
    }
}

impl Stream for SharedPipe {
    fn connected(&mut self) -> io::Result<bool> {
        match self.lock().connected {
            None => Ok(false),
            Some(true) => Ok(true),
            Some(false) => Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
        }
    }
    fn reset_on_close(&mut self) {
        self.lock().reset = true;
    }
}

/// A flow's datagram socket in memory.
#[derive(Debug, Default)]
pub(crate) struct Dgram {
    pub(crate) sent: Vec<Vec<u8>>,
    pub(crate) inbox: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SharedDgram(pub(crate) Arc<Mutex<Dgram>>);

impl Datagram for SharedDgram {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().sent.push(data.to_vec());
        Ok(data.len())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.0.lock().unwrap().inbox.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

/// A published listener in memory: clients waiting to be accepted.
#[derive(Debug, Default)]
pub(crate) struct Listening {
    pub(crate) pending: VecDeque<(SharedPipe, SocketAddrV4)>,
    /// Tokens the accepted streams were given.
    pub(crate) accepted: Vec<Token>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SharedListener(pub(crate) Arc<Mutex<Listening>>);

impl SharedListener {
    /// A client connects from `from`; `pipe` is its stream.
    pub(crate) fn arrive(&self, pipe: &SharedPipe, from: SocketAddrV4) {
        self.0.lock().unwrap().pending.push_back((pipe.clone(), from));
    }
}

impl Listener for SharedListener {
    fn accept(&mut self, token: Token) -> io::Result<(Box<dyn Stream>, SocketAddrV4)> {
        let mut l = self.0.lock().unwrap();
        let (pipe, from) = l.pending.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        l.accepted.push(token);
        Ok((Box::new(pipe), from))
    }
    fn recv_from(&mut self, _: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send_to(&mut self, data: &[u8], _: SocketAddrV4) -> io::Result<usize> {
        Ok(data.len())
    }
}

/// What a [`MemHost`] opened, for the test to look at and to drive.
#[derive(Debug, Default)]
pub(crate) struct HostLog {
    pub(crate) datagrams: Vec<(Token, NatProto, SocketAddrV4, SharedDgram)>,
    pub(crate) streams: Vec<(Token, SocketAddrV4, SharedPipe)>,
    pub(crate) listeners: Vec<(Token, Protocol, SocketAddrV4, SharedListener)>,
}

/// A [`Host`] in memory; its log is shared with the test.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemHost(pub(crate) Arc<Mutex<HostLog>>);

impl MemHost {
    pub(crate) fn log(&self) -> MutexGuard<'_, HostLog> {
        self.0.lock().unwrap()
    }
}

impl Host for MemHost {
    fn datagram(&mut self, proto: NatProto, to: SocketAddrV4, _: u16, token: Token) -> io::Result<Box<dyn Datagram>> {
        let d = SharedDgram::default();
        self.log().datagrams.push((token, proto, to, d.clone()));
        Ok(Box::new(d))
    }
    fn connect(&mut self, to: SocketAddrV4, token: Token) -> io::Result<Box<dyn Stream>> {
        let p = SharedPipe::open(&[]);
        self.log().streams.push((token, to, p.clone()));
        Ok(Box::new(p))
    }
    fn listen(&mut self, proto: Protocol, at: SocketAddrV4, token: Token) -> io::Result<Box<dyn Listener>> {
        let l = SharedListener::default();
        self.log().listeners.push((token, proto, at, l.clone()));
        Ok(Box::new(l))
    }
}
