//! Micro-benchmarks of the sans-IO core: the in-memory ceiling each
//! end-to-end figure of `bench/` is held against. No ports, no syscalls:
//! frames in memory through the very functions the worker calls.
//!
//! Run: `cargo bench -p plexus-switch --bench core` (divan prints the time
//! per call; frames/s = 1 / that time). Each case works on a batch of 256
//! frames, as the worker does, and divan reports per frame.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use plexus_switch::dataplane::explain::{Probe, probe_frame};
use plexus_switch::nat::{FlowKey, FlowPath, NatTable, Outbound};
use plexus_switch::wire::checksum;
use plexus_switch::{DomainConfig, Engine, GatewayConfig, MacAddr, NatConfig, NatProto, PortConfig, PortId, Verdict};

/// Frames per batch, as the worker's bursts.
const BATCH: usize = 256;

fn main() {
    divan::main();
}

/// A 64-byte UDP frame (60 without the FCS) from `src` (`src_ip`) to `dst`,
/// built by the switch's own probe builder and padded.
fn frame(src: MacAddr, src_ip: Ipv4Addr, dst: MacAddr) -> Vec<u8> {
    let mut f = probe_frame(src, dst, src_ip, Ipv4Addr::new(10, 0, 0, 250), Probe::Udp(9));
    f.resize(60, 0);
    f
}

/// An engine with one network of `ports` endpoints, every MAC learned.
fn engine(ports: u32) -> (Engine, Vec<(PortId, MacAddr)>) {
    let mut e = Engine::new();
    let gw = GatewayConfig::new(Ipv4Addr::new(10, 0, 0, 1), "10.0.0.0/16".parse().unwrap(), false);
    let d = e.add_domain(DomainConfig {
        gateway: Some(gw),
        ..DomainConfig::default()
    });
    let now = Instant::now();
    let mut eps = Vec::new();
    for i in 0..ports {
        let ip = Ipv4Addr::from(0x0a00_0002 + i);
        let mac = MacAddr::from_ipv4(ip);
        let id = e
            .add_port(PortConfig {
                domain: d,
                name: format!("c{i}"),
                mtu: 1500,
                mac: Some(mac),
                ips: vec![ip.into()],
                offload: false,
            })
            .unwrap();
        // Learn it: a frame from it to everyone.
        let learned = e.classify(now, id, None, &frame(mac, ip, MacAddr::BROADCAST));
        assert!(matches!(learned, Verdict::Flood(_)), "port {i}: {learned:?}");
        eps.push((id, mac));
    }
    (e, eps)
}

/// classify: a 64-byte frame between two known endpoints (learning, the
/// anti-spoofing check and a MAC table hit), per frame.
#[divan::bench(args = [2, 64, 1024])]
fn classify_unicast(bencher: divan::Bencher, ports: u32) {
    let (mut e, eps) = engine(ports);
    let (from, from_mac) = eps[0];
    let (to, to_mac) = eps[eps.len() - 1];
    let f = frame(from_mac, Ipv4Addr::new(10, 0, 0, 2), to_mac);
    let now = Instant::now();
    assert_eq!(
        e.classify(now, from, None, &f),
        Verdict::Unicast(to),
        "not a MAC table hit"
    );
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            black_box(e.classify(now, from, None, black_box(&f)));
        }
    });
}

/// classify: a frame for the gateway (its routing starts here).
#[divan::bench]
fn classify_to_gateway(bencher: divan::Bencher) {
    let (mut e, eps) = engine(2);
    let (from, from_mac) = eps[0];
    let gw_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 0, 1));
    let f = frame(from_mac, Ipv4Addr::new(10, 0, 0, 2), gw_mac);
    let now = Instant::now();
    assert!(matches!(e.classify(now, from, None, &f), Verdict::Gateway(_)));
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            black_box(e.classify(now, from, None, black_box(&f)));
        }
    });
}

/// The NAT table: finding an existing flow among `flows`, per packet.
#[divan::bench(args = [16, 4096, 65536])]
fn nat_lookup(bencher: divan::Bencher, flows: u32) {
    let mut t: NatTable<()> = NatTable::new(NatConfig {
        max_flows: 70_000,
        max_flows_per_port: Some(70_000),
        ..NatConfig::default()
    });
    let now = Instant::now();
    let path = FlowPath {
        port: PortId(0),
        mac: MacAddr([2, 0, 0, 0, 0, 2]),
        gateway_mac: MacAddr([2, 0, 0, 0, 0, 1]),
    };
    let key = |i: u32| FlowKey {
        proto: NatProto::Udp,
        inside: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), u16::try_from(1024 + i % 60_000).unwrap()),
        outside: SocketAddrV4::new(Ipv4Addr::from(0xc633_6400 + i / 60_000), 53),
    };
    for i in 0..flows {
        let r = t.outbound(now, key(i), path, |_| Ok::<(), ()>(()));
        assert!(matches!(r, Outbound::New(_)), "flow {i} refused");
    }
    let probe: Vec<FlowKey> = (0..u32::try_from(BATCH).unwrap())
        .map(|i| key(i * 7919 % flows))
        .collect();
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        for k in &probe {
            black_box(t.find(black_box(k)));
        }
    });
}

/// Segment `i` of one TCP stream: 1448 bytes of payload, the checksum
/// filled, no offload flags (as a TAP hands over what a namespace with its
/// offloads off sent).
fn tcp_segment(i: u32) -> Vec<u8> {
    use plexus_switch::wire::{EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr};
    use plexus_switch::wire::{TcpFlags, TcpPacket, TcpRepr};
    let payload = vec![0x5a_u8; 1448];
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3));
    let tcp = TcpRepr {
        src_port: 40000,
        dst_port: 5201,
        seq_number: 1 + i * 1448,
        ack_number: 1,
        flags: TcpFlags::ACK,
        window_len: 512,
        mss: None,
        payload: &payload,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        ttl: 64,
    };
    let eth = EthernetRepr {
        src: MacAddr([2, 0, 0, 0, 0, 2]),
        dst: MacAddr([2, 0, 0, 0, 0, 3]),
        ethertype: EtherType::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p);
    tcp.emit(&mut TcpPacket::new_unchecked(p.payload_mut()), src, dst);
    buf
}

/// coalesce: a burst of 32 MTU-sized segments of one TCP stream folded into
/// one super-frame (each segment's checksum verified, its payload copied);
/// per segment.
#[divan::bench]
fn coalesce_segments(bencher: divan::Bencher) {
    use plexus_switch::coalesce::coalesce;
    use plexus_switch::frame::FrameBuf;
    const SEGMENTS: u8 = 32;
    let segments: Vec<Vec<u8>> = (0..u32::from(SEGMENTS)).map(tcp_segment).collect();
    let burst = || {
        let bufs: Vec<FrameBuf> = segments
            .iter()
            .map(|s| {
                let mut b = FrameBuf::default();
                b.fill(s);
                b
            })
            .collect();
        let order: Vec<u8> = (0..SEGMENTS).collect();
        (bufs, order)
    };
    let (mut bufs, mut order) = burst();
    assert_eq!(
        coalesce(&mut bufs, &mut order, 0),
        usize::from(SEGMENTS) - 1,
        "not one super-frame"
    );
    bencher
        .counter(divan::counter::ItemsCount::new(usize::from(SEGMENTS)))
        .with_inputs(burst)
        .bench_local_values(|(mut bufs, mut order)| {
            black_box(coalesce(&mut bufs, &mut order, 0));
            (bufs, order)
        });
}

/// The Internet checksum over `len` bytes (headers: 20; a full frame: 1500).
#[divan::bench(args = [20, 1500])]
fn checksum_sum(bencher: divan::Bencher, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
    bencher
        .counter(divan::counter::BytesCount::new(len))
        .bench_local(|| black_box(checksum::sum(black_box(&data))));
}
