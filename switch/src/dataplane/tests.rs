//! The real worker, driven at memory speed without root: ports are
//! [`MemPort`] pairs (the test holds the container's end), the host is a
//! [`MemHost`] whose sockets the test reads and fills, the clock is virtual.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Poll;
use smoltcp::socket::tcp;

use super::DataplaneConfig;
use super::worker::{Event, Worker};
use crate::MacAddr;
use crate::io::fault::{FaultPort, Faults};
use crate::io::{MemPort, Port};
use crate::l2::{DomainConfig, PortConfig};
use crate::nat::{Binding, NatProto, Protocol};
use crate::testkit::{IpStack, MemHost, SharedListener, SharedPipe};
use crate::types::{DomainId, DropReason, GatewayConfig, PortId};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumMode, ETHERNET_HEADER_LEN, EtherType, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, vnet,
};

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn tsval() -> u32 {
    1_000
}

/// A worker with one network (10.0.0.0/24, gateway .1) and a virtual clock.
struct Bench {
    worker: Worker,
    host: MemHost,
    domain: DomainId,
    gw: GatewayConfig,
    t0: Instant,
    now: Instant,
    _poll: Poll,
}

/// A container: its end of the port, its MAC and address.
struct Container {
    id: PortId,
    end: MemPort,
    mac: MacAddr,
    ip: Ipv4Addr,
}

fn bench() -> Bench {
    let poll = Poll::new().unwrap();
    let registry = Arc::new(poll.registry().try_clone().unwrap());
    let host = MemHost::default();
    let t0 = Instant::now();
    let config = DataplaneConfig {
        busy_poll: Duration::ZERO,
        ..DataplaneConfig::default()
    };
    let mut worker = Worker::with_clocks(config, registry, Box::new(host.clone()), t0, tsval);
    let gw = GatewayConfig::new(GW, "10.0.0.0/24".parse().unwrap(), false);
    let domain = worker.engine_mut().add_domain(DomainConfig {
        gateway: Some(gw),
        ..DomainConfig::default()
    });
    Bench {
        worker,
        host,
        domain,
        gw,
        t0,
        now: t0,
        _poll: poll,
    }
}

impl Bench {
    /// Adds a container at 10.0.0.`last` on a port built by `wrap` around
    /// the switch's end of a memory pair.
    fn container_on(&mut self, last: u8, offload: bool, wrap: impl FnOnce(MemPort) -> Box<dyn Port>) -> Container {
        let ip = Ipv4Addr::new(10, 0, 0, last);
        let mac = MacAddr::from_ipv4(ip);
        let (switch_end, end) = MemPort::pair(offload);
        let id = self
            .worker
            .add_port(
                wrap(switch_end),
                PortConfig {
                    domain: self.domain,
                    name: format!("c{last}"),
                    mtu: 1500,
                    mac: Some(mac),
                    ips: vec![ip.into()],
                    offload,
                },
            )
            .unwrap();
        Container { id, end, mac, ip }
    }

    fn container(&mut self, last: u8, offload: bool) -> Container {
        self.container_on(last, offload, |p| Box::new(p))
    }

    /// Publishes host TCP port 8080 on `c`'s port 80; returns the listener
    /// the host opened for it.
    fn publish_tcp(&mut self, c: &Container) -> SharedListener {
        let binding = Binding {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        self.worker.publish(c.id, &[binding], c.ip).unwrap();
        let log = self.host.log();
        let l = log.listeners.last().expect("a listener");
        assert_eq!((l.1, l.2), (Protocol::Tcp, binding.host()));
        l.3.clone()
    }

    /// One turn, `dt` later, with `events`.
    fn turn(&mut self, dt: Duration, events: &[Event]) -> usize {
        self.now += dt;
        self.worker.turn(self.now, events)
    }

    /// Readiness of every socket the host opened (the worker copes with
    /// sockets that have nothing to give).
    fn all_ready(&self) -> Vec<Event> {
        let log = self.host.log();
        let tokens = log
            .datagrams
            .iter()
            .map(|d| d.0)
            .chain(log.streams.iter().map(|s| s.0))
            .chain(log.listeners.iter().map(|l| l.0))
            .chain(
                log.listeners
                    .iter()
                    .flat_map(|l| l.3.0.lock().unwrap().accepted.clone()),
            );
        tokens
            .map(|token| Event {
                token,
                readable: true,
                writable: true,
            })
            .collect()
    }

    fn drops(&mut self, port: PortId, r: DropReason) -> u64 {
        let s = self.worker.stats();
        s.iter().find(|p| p.id == port).unwrap().counters.dropped(r)
    }

    fn stamp(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(i64::try_from((self.now - self.t0).as_micros()).unwrap())
    }
}

fn eth(src: MacAddr, dst: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let l2 = EthernetRepr { src, dst, ethertype };
    let mut f = vec![0u8; l2.buffer_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
    l2.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    f
}

fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: l4.len(),
        ttl: 64,
    };
    let mut p = vec![0u8; ip.buffer_len() + l4.len()];
    let mut packet = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut packet);
    packet.payload_mut().copy_from_slice(l4);
    p
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload,
    };
    let mut b = vec![0u8; u.buffer_len()];
    u.emit(&mut UdpPacket::new_unchecked(&mut b[..]), *src.ip(), *dst.ip());
    ip_packet(*src.ip(), *dst.ip(), IpProtocol::Udp, &b)
}

/// The IPv4 packets among `frames` (Ethernet stripped).
fn ip_of(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .filter(|f| f.len() > ETHERNET_HEADER_LEN && f[12..14] == [0x08, 0x00])
        .map(|f| f[ETHERNET_HEADER_LEN..].to_vec())
        .collect()
}

fn drain(end: &mut MemPort) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| end.recv_frame()).collect()
}

#[test]
fn frames_are_switched_flooded_and_learned() {
    let mut b = bench();
    let mut x = b.container(2, false);
    let mut y = b.container(3, false);
    let mut z = b.container(4, false);
    // To a MAC nobody has announced: flooded to the others, not back.
    let hello = eth(x.mac, y.mac, EtherType::Unknown(0x88b5), b"hello");
    assert!(x.end.send_frame(&hello));
    assert_eq!(b.turn(Duration::from_millis(1), &[]), 1);
    assert_eq!(drain(&mut y.end), std::slice::from_ref(&hello));
    assert_eq!(drain(&mut z.end), [hello]);
    assert!(drain(&mut x.end).is_empty());
    // y answers: x is known now, so only x gets it.
    let back = eth(y.mac, x.mac, EtherType::Unknown(0x88b5), b"back");
    assert!(y.end.send_frame(&back));
    b.turn(Duration::from_millis(1), &[]);
    assert_eq!(drain(&mut x.end), [back]);
    assert!(drain(&mut z.end).is_empty());
    let stats = b.worker.stats();
    let of = |id: PortId| stats.iter().find(|p| p.id == id).unwrap().counters;
    assert_eq!((of(x.id).rx_frames, of(x.id).tx_frames), (1, 1));
    assert_eq!((of(z.id).rx_frames, of(z.id).tx_frames), (0, 1));
    // A spoofed source is dropped and counted.
    assert!(z.end.send_frame(&eth(
        MacAddr([2, 9, 9, 9, 9, 9]),
        x.mac,
        EtherType::Unknown(0x88b5),
        b"x"
    )));
    b.turn(Duration::from_millis(1), &[]);
    assert!(drain(&mut x.end).is_empty());
    assert_eq!(b.drops(z.id, DropReason::Spoofed), 1);
}

#[test]
fn a_super_frame_never_leaves_through_a_port_without_offloads() {
    let mut b = bench();
    let mut x = b.container(2, true);
    let mut plain = b.container(3, false);
    let mut offload = b.container(4, true);
    // A 3000-byte TCP GSO frame (header first, as an offload port reads it).
    let hdr = vnet::Repr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        gso_size: 1448,
        hdr_len: 66,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut bytes = vec![0u8; vnet::HDR_LEN];
    hdr.emit(&mut bytes);
    bytes.extend(eth(
        x.mac,
        MacAddr([2, 0, 0, 0, 0, 0x77]),
        EtherType::Ipv4,
        &ip_packet(x.ip, Ipv4Addr::new(10, 0, 0, 77), IpProtocol::Tcp, &[0u8; 3000]),
    ));
    assert_eq!(x.end.send(&[&bytes]).sent, 1);
    b.turn(Duration::from_millis(1), &[]);
    assert!(drain(&mut plain.end).is_empty());
    assert_eq!(b.drops(plain.id, DropReason::NoOffload), 1);
    assert_eq!(drain(&mut offload.end).len(), 1, "an offload port takes it whole");
}

/// `x` asks (broadcast) for the gateway's MAC.
fn arp_for_gateway(x: &Container) -> Vec<u8> {
    let req = ArpRepr {
        operation: ArpOperation::Request,
        sender_hardware_addr: x.mac,
        sender_protocol_addr: x.ip,
        target_hardware_addr: MacAddr::default(),
        target_protocol_addr: GW,
    };
    let mut arp = vec![0u8; req.buffer_len()];
    req.emit(&mut ArpPacket::new_unchecked(&mut arp[..]));
    eth(x.mac, MacAddr::BROADCAST, EtherType::Arp, &arp)
}

/// `x` pings the gateway (ident 7, sequence 1, data "ping").
fn ping_gateway(b: &Bench, x: &Container) -> Vec<u8> {
    let echo = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"ping",
    };
    let mut icmp = vec![0u8; echo.buffer_len()];
    echo.emit(&mut Icmpv4Packet::new_unchecked(&mut icmp[..]));
    eth(
        x.mac,
        b.gw.mac,
        EtherType::Ipv4,
        &ip_packet(x.ip, GW, IpProtocol::Icmp, &icmp),
    )
}

#[test]
fn the_gateway_answers_arp_and_echo() {
    let mut b = bench();
    let mut x = b.container(2, false);
    assert!(x.end.send_frame(&arp_for_gateway(&x)));
    assert!(x.end.send_frame(&ping_gateway(&b, &x)));
    b.turn(Duration::from_millis(1), &[]);
    let replies = drain(&mut x.end);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let a = EthernetFrame::new_checked(&replies[0][..]).unwrap();
    let reply = ArpRepr::parse(&ArpPacket::new_checked(a.payload()).unwrap()).unwrap();
    assert_eq!(
        (reply.operation, reply.sender_hardware_addr, reply.sender_protocol_addr),
        (ArpOperation::Reply, b.gw.mac, GW)
    );
    let e = EthernetFrame::new_checked(&replies[1][..]).unwrap();
    let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
    let msg = Icmpv4Repr::parse(
        &Icmpv4Packet::new_checked(ip.into_payload()).unwrap(),
        ChecksumMode::Verify,
    );
    assert_eq!(
        msg,
        Ok(Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 1,
            data: b"ping"
        })
    );
}

#[test]
fn a_udp_flow_goes_out_through_a_host_socket_and_comes_back() {
    let mut b = bench();
    let mut x = b.container(2, false);
    let (inside, outside) = (SocketAddrV4::new(x.ip, 5000), SocketAddrV4::new(OUTSIDE, 53));
    assert!(
        x.end
            .send_frame(&eth(x.mac, b.gw.mac, EtherType::Ipv4, &udp(inside, outside, b"query")))
    );
    b.turn(Duration::from_millis(1), &[]);
    let (token, sock) = {
        let log = b.host.log();
        assert_eq!(log.datagrams.len(), 1);
        let (token, proto, to, sock) = log.datagrams[0].clone();
        assert_eq!((proto, to), (NatProto::Udp, outside));
        (token, sock)
    };
    assert_eq!(sock.0.lock().unwrap().sent, [b"query".to_vec()]);
    sock.0.lock().unwrap().inbox.push_back(b"answer".to_vec());
    b.turn(
        Duration::from_millis(1),
        &[Event {
            token,
            readable: true,
            writable: false,
        }],
    );
    let got = ip_of(drain(&mut x.end));
    assert_eq!(got.len(), 1);
    let ip = Ipv4Packet::new_checked(&got[0][..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (OUTSIDE, x.ip));
    let u = UdpRepr::parse(
        &UdpPacket::new_checked(ip.into_payload()).unwrap(),
        OUTSIDE,
        x.ip,
        ChecksumMode::Verify,
    )
    .unwrap();
    assert_eq!((u.src_port, u.dst_port, u.payload), (53, 5000, &b"answer"[..]));
    let flows = b.worker.nat_flows(b.now);
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].flow.packets_out, flows[0].flow.packets_in), (1, 1));
    // Idle past the UDP timeout: the flow goes.
    b.turn(Duration::from_secs(31), &[]);
    assert!(b.worker.nat_flows(b.now).is_empty());
}

/// Moves a container's TCP/IP stack's packets through its port and the
/// worker, with every host socket ready, until `done` or `turns` run out.
fn exchange(
    what: &str,
    b: &mut Bench,
    c: &mut Container,
    stack: &mut IpStack,
    got: &mut Vec<u8>,
    turns: usize,
    mut done: impl FnMut(&mut Bench, &mut IpStack, &[u8]) -> bool,
) {
    for _ in 0..turns {
        let inbound = ip_of(drain(&mut c.end));
        let t = b.stamp();
        for p in stack.poll(t, inbound) {
            assert!(c.end.send_frame(&eth(c.mac, b.gw.mac, EtherType::Ipv4, &p)));
        }
        stack.drain(got);
        let events = b.all_ready();
        b.turn(Duration::from_millis(5), &events);
        if done(b, stack, got) {
            return;
        }
    }
    panic!(
        "{what}: did not finish in {turns} turns; flows {:?}",
        b.worker.nat_flows(b.now)
    );
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| u8::try_from(i % 251).unwrap() ^ seed).collect()
}

/// An outbound TCP connection relayed both ways, 200 kB each, and closed.
fn outbound_transfer(b: &mut Bench, mut x: Container) {
    let mut stack = IpStack::new(b.stamp(), x.ip, GW);
    stack.connect(SocketAddrV4::new(OUTSIDE, 80), 40000);
    let mut got = Vec::new();
    // The SYN opens a host connect; the handshake completes when it does.
    exchange("connect", b, &mut x, &mut stack, &mut got, 100, |b, _, _| {
        !b.host.log().streams.is_empty()
    });
    let (to, pipe): (SocketAddrV4, SharedPipe) = {
        let log = b.host.log();
        (log.streams[0].1, log.streams[0].2.clone())
    };
    assert_eq!(to, SocketAddrV4::new(OUTSIDE, 80));
    pipe.lock().connected = Some(true);
    let (up, down) = (pattern(200_000, 0x5a), pattern(200_000, 0xa5));
    pipe.lock().from_host.extend(&down);
    let mut sent = 0;
    exchange("transfer", b, &mut x, &mut stack, &mut got, 20_000, |_, stack, got| {
        if stack.sock().may_send() && sent < up.len() {
            sent += stack.sock().send_slice(&up[sent..]).unwrap_or(0);
        }
        pipe.lock().to_host.len() == up.len() && got.len() == down.len()
    });
    assert_eq!(pipe.lock().to_host, up, "container → host");
    assert_eq!(got, down, "host → container");
    // The host closes: the container sees the end, closes in turn, the host
    // is told, and the flow ends.
    pipe.lock().host_closed = true;
    exchange("close", b, &mut x, &mut stack, &mut got, 2_000, |b, stack, _| {
        if !stack.sock().may_recv() {
            stack.sock().close();
        }
        pipe.lock().shut && b.worker.nat_flows(b.now).is_empty()
    });
}

#[test]
fn a_tcp_connection_is_relayed_through_the_worker() {
    let mut b = bench();
    let x = b.container(2, false);
    outbound_transfer(&mut b, x);
}

#[test]
fn a_tcp_transfer_survives_a_lossy_port() {
    let mut b = bench();
    let rx = Faults {
        drop: 30,
        corrupt: 0,
        reorder: 30,
        delay: 30,
    };
    let tx = Faults {
        drop: 30,
        corrupt: 30,
        ..Faults::default()
    };
    let mut counter = None;
    let x = b.container_on(2, false, |p| {
        let f = FaultPort::new(p, rx, tx, 42);
        counter = Some(f.counter());
        Box::new(f)
    });
    outbound_transfer(&mut b, x);
    let c = *counter.unwrap().lock().unwrap();
    assert!(
        c.dropped > 10 && c.corrupted > 5 && c.reordered > 5 && c.delayed > 5,
        "{c:?}"
    );
}

#[test]
fn a_published_port_delivers_clients_with_their_own_address() {
    let mut b = bench();
    let mut x = b.container(2, false);
    let listener = b.publish_tcp(&x);
    let mut stack = IpStack::new(b.stamp(), x.ip, GW);
    stack.sock().listen(80).unwrap();
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 40000);
    let pipe = SharedPipe::open(b"GET / HTTP/1.0\r\n\r\n");
    listener.arrive(&pipe, client);
    let mut got = Vec::new();
    exchange(
        "accept",
        &mut b,
        &mut x,
        &mut stack,
        &mut got,
        1_000,
        |_, stack, got| {
            if stack.sock().can_send() && got.len() == 18 && stack.sock().send_queue() == 0 {
                let _ = stack.sock().send_slice(b"hello from the container");
            }
            got.len() == 18 && !pipe.lock().to_host.is_empty()
        },
    );
    // The container saw the client's own address, and the bytes went both ways.
    assert_eq!(
        stack.sock().remote_endpoint().map(|e| e.to_string()).as_deref(),
        Some("203.0.113.5:40000")
    );
    assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
    exchange("reply", &mut b, &mut x, &mut stack, &mut got, 100, |_, _, _| {
        pipe.lock().to_host.len() == 24
    });
    assert_eq!(pipe.lock().to_host, b"hello from the container");
}

#[test]
fn unpublishing_closes_a_ports_listeners_and_frees_their_descriptors() {
    let mut b = bench();
    let x = b.container(2, false);
    let y = b.container(3, false);
    b.publish_tcp(&x);
    let other = Binding {
        host_ip: Ipv4Addr::UNSPECIFIED,
        host_port: 8081,
        container_port: 80,
        protocol: Protocol::Tcp,
    };
    b.worker.publish(y.id, &[other], y.ip).unwrap();
    assert_eq!(b.worker.fd_use().listeners, 2);
    assert_eq!(b.worker.unpublish(x.id), 1);
    assert_eq!(b.worker.fd_use().listeners, 1, "only x's listener closed");
    assert_eq!(b.worker.unpublish(x.id), 0, "nothing left to close");
    // The port stays attached and can publish again.
    b.publish_tcp(&x);
    assert_eq!(b.worker.fd_use().listeners, 2);
}

/// A port that panics when the worker reads it: a stand-in for a bug.
#[derive(Debug)]
struct PanickingPort;

impl Port for PanickingPort {
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn offload(&self) -> bool {
        false
    }
    fn recv(&mut self, _: &mut [crate::frame::FrameBuf]) -> std::io::Result<crate::io::RecvResult> {
        panic!("a bug in a port")
    }
    fn send(&mut self, frames: &[&[u8]]) -> crate::io::SendResult {
        crate::io::SendResult {
            sent: frames.len(),
            failed: 0,
        }
    }
}

#[test]
fn a_dead_worker_says_why() {
    let dp = super::Dataplane::start(DataplaneConfig::default()).unwrap();
    assert_eq!(dp.health().dead, None, "a fresh worker runs");
    let domain = dp.add_domain(DomainConfig::default()).unwrap();
    let config = PortConfig {
        domain,
        name: "panics".into(),
        mtu: 1500,
        mac: None,
        ips: Vec::new(),
        offload: false,
    };
    // Adding the port may race with the worker's death; either answer is fine.
    let _ = dp.add_port(Box::new(PanickingPort), config);
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        if let Some(why) = dp.health().dead {
            break why;
        }
        assert!(Instant::now() < deadline, "the worker did not die");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(why, "panicked: a bug in a port");
    // Every later call names the cause instead of a bare "stopped".
    let err = dp.stats().unwrap_err();
    assert!(err.to_string().contains("a bug in a port"), "{err}");
}

/// Short connections to a published port, each closed by the container
/// first (an HTTP/1.0 server), the next client accepted in the turn the
/// previous flow ends: the new flow may take the old one's slab key, and
/// nothing meant for the old flow may close it (it once did — a reset
/// client in every few hundred under wrk).
#[test]
fn short_published_connections_follow_each_other_cleanly() {
    let mut b = bench();
    let mut x = b.container(2, false);
    let listener = b.publish_tcp(&x);
    let client = |i: u16| {
        (
            SharedPipe::open(b"GET"),
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 40000 + i),
        )
    };
    let listen = |stack: &mut IpStack| {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; 4096]),
            tcp::SocketBuffer::new(vec![0u8; 4096]),
        );
        sock.listen(80).unwrap();
        stack.handle = stack.sockets.add(sock);
    };
    let mut stack = IpStack::new(b.stamp(), x.ip, GW);
    listen(&mut stack);
    let mut next = client(0);
    listener.arrive(&next.0, next.1);
    // What the container's current socket received.
    let mut got = Vec::new();
    for i in 0..20u16 {
        let pipe = next.0.clone();
        let mut answered = false;
        // The request arrives; the container answers and closes first.
        exchange(
            &format!("request {i}"),
            &mut b,
            &mut x,
            &mut stack,
            &mut got,
            200,
            |_, stack, got| {
                if !answered && got == b"GET" && stack.sock().state() == tcp::State::Established {
                    stack.sock().send_slice(b"OK").unwrap();
                    stack.sock().close();
                    answered = true;
                }
                pipe.lock().shut
            },
        );
        assert_eq!(pipe.lock().to_host, b"OK", "connection {i}");
        got.clear();
        // The client closes too. Once the container has acknowledged the
        // relay's FIN (its socket in TIME-WAIT: the old flow ends in the
        // next turn), the next client arrives, to a new listening socket.
        pipe.lock().host_closed = true;
        let old = stack.handle;
        let mut arrived = false;
        exchange(
            &format!("close {i}"),
            &mut b,
            &mut x,
            &mut stack,
            &mut got,
            200,
            |_, stack, _| {
                if !arrived && stack.sockets.get::<tcp::Socket>(old).state() == tcp::State::TimeWait {
                    listen(stack);
                    next = client(i + 1);
                    listener.arrive(&next.0, next.1);
                    arrived = true;
                }
                arrived && stack.sock().state() == tcp::State::Established
            },
        );
        assert!(!pipe.lock().reset, "connection {i} ended with a reset");
    }
}

/// A client from the address and port of a live connection is refused
/// with a reset and counted; the live connection is untouched.
#[test]
fn a_client_on_a_busy_flow_is_reset_and_counted() {
    let mut b = bench();
    let x = b.container(2, false);
    let listener = b.publish_tcp(&x);
    let from = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 40000);
    let (first, second) = (SharedPipe::default(), SharedPipe::default());
    listener.arrive(&first, from);
    listener.arrive(&second, from);
    let events = b.all_ready();
    b.turn(Duration::from_millis(1), &events);
    assert!(second.lock().reset, "the second client is reset");
    assert!(!first.lock().reset);
    assert_eq!(b.drops(x.id, DropReason::FlowBusy), 1);
    let flows = b.worker.nat_flows(b.now);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].flow.key.outside, from);
}

#[test]
fn a_trace_says_what_became_of_each_frame() {
    let mut b = bench();
    let mut x = b.container(2, false);
    let y = b.container(3, false);
    let (tap, lines) = super::capture::Tap::detached(64, 256, true);
    let (done, _) = crossbeam_channel::bounded(1);
    assert!(
        b.worker
            .control(b.now, super::Command::Tap(vec![x.id, y.id], tap, done))
    );
    let step = |b: &mut Bench, from: &mut MemPort, frame: Vec<u8>| -> Vec<String> {
        assert!(from.send_frame(&frame));
        b.turn(Duration::from_millis(1), &[]);
        lines.try_iter().map(|c| String::from_utf8(c.bytes).unwrap()).collect()
    };
    let mut y_end = y.end;
    let hello = eth(x.mac, y.mac, EtherType::Unknown(0x88b5), b"hello");
    let got = step(&mut b, &mut x.end, hello.clone());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("c2 02:42:0a:00:00:02 > 02:42:0a:00:00:03 Unknown(34997): learned 02:42:0a:00:00:02 on c2, flooded to 1 ports"),
        "{got:?}"
    );
    let back = eth(y.mac, x.mac, EtherType::Unknown(0x88b5), b"back");
    let got = step(&mut b, &mut y_end, back);
    assert!(
        got[0].ends_with(": learned 02:42:0a:00:00:03 on c3, forwarded to c2 (MAC table hit)"),
        "{got:?}"
    );
    // Known now: no second "learned".
    let got = step(&mut b, &mut x.end, hello);
    assert!(got[0].ends_with(": forwarded to c3 (MAC table hit)"), "{got:?}");
    // The gateway: its answers are traced as they leave too.
    let frame = arp_for_gateway(&x);
    let got = step(&mut b, &mut x.end, frame);
    assert!(got[0].ends_with("ARP: gateway ARP reply"), "{got:?}");
    assert!(
        got[1].starts_with("to c2 ") && got[1].ends_with("ARP: sent by the switch: gateway ARP reply"),
        "{got:?}"
    );
    let frame = ping_gateway(&b, &x);
    let got = step(&mut b, &mut x.end, frame);
    assert!(
        got[0].ends_with("ICMP 10.0.0.2 > 10.0.0.1: gateway echo reply"),
        "{got:?}"
    );
    assert!(
        got[1].ends_with("ICMP 10.0.0.1 > 10.0.0.2: sent by the switch: gateway echo reply"),
        "{got:?}"
    );
    // Out through NAT: a new flow, then that flow.
    let out = SocketAddrV4::new(OUTSIDE, 53);
    let dgram = eth(
        x.mac,
        b.gw.mac,
        EtherType::Ipv4,
        &udp(SocketAddrV4::new(x.ip, 40000), out, b"q"),
    );
    let got = step(&mut b, &mut x.end, dgram.clone());
    assert!(
        got[0].ends_with(": NAT new flow -> host socket to 198.51.100.7:53"),
        "{got:?}"
    );
    let got = step(&mut b, &mut x.end, dgram);
    assert!(got[0].contains(": NAT flow #"), "{got:?}");
    // A forged source: dropped, and said so.
    let forged = eth(MacAddr([2, 9, 9, 9, 9, 9]), x.mac, EtherType::Unknown(0x88b5), b"x");
    let got = step(&mut b, &mut y_end, forged);
    assert!(got[0].ends_with(": dropped: spoofed"), "{got:?}");
}
