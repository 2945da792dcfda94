//! The dataplane on real veth pairs: two namespaces reach each other only
//! through the switch. Needs root (ignored otherwise). The topology is made
//! under a random tag and removed on drop.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::net::{TestNs, ethtool, netlink, veth_between};
use common::peers;
use plexus_switch::io::PacketPort;
use plexus_switch::{Dataplane, DataplaneConfig, DomainConfig, DropReason, MacAddr, PortConfig};

/// Namespaces `{tag}a`/`{tag}b` with eth0 10.201.X.1/.2 on veth pairs whose
/// host ends `{tag}ha`/`{tag}hb` are up and unattached; removed on drop.
struct Topo {
    tag: String,
    spaces: Vec<TestNs>,
}

impl Topo {
    fn new(subnet: u8) -> Topo {
        let tag = format!("s{:04x}", rand::random::<u16>());
        let mut spaces = Vec::new();
        for (side, host) in [("a", 1), ("b", 2)] {
            let ns = TestNs::new(&format!("{tag}{side}"));
            let addr = format!("10.201.{subnet}.{host}/24").parse().unwrap();
            veth_between(here(), &format!("{tag}h{side}"), None, &ns.path(), "eth0", Some(addr));
            spaces.push(ns);
        }
        Topo { tag, spaces }
    }

    fn ns(&self, side: &str) -> std::path::PathBuf {
        self.spaces[usize::from(side == "b")].path()
    }

    fn host(&self, side: &str) -> String {
        format!("{}h{side}", self.tag)
    }

    fn mac(&self, side: &str) -> MacAddr {
        MacAddr(common::net::link(&self.ns(side), "eth0").mac.unwrap())
    }

    /// The port of host `side` in domain `d`: its MAC, MTU 1500.
    fn port_config(&self, d: plexus_switch::DomainId, side: &str, offload: bool) -> PortConfig {
        PortConfig {
            domain: d,
            name: side.into(),
            mtu: 1500,
            mac: Some(self.mac(side)),
            ips: Vec::new(),
            offload,
        }
    }

    /// 8 MB from A to B's 10.201.`subnet`.2:7000 and 8 MB back, each
    /// byte-exact, through `dp`.
    fn tcp_both_ways(&self, subnet: u8, dp: &Dataplane) {
        use common::peers::{Cmd, tcp_client, tcp_server};
        let ip = Ipv4Addr::new(10, 201, subnet, 2);
        let server = tcp_server(&self.ns("b"), ip, &[7000]);
        let to = std::net::SocketAddrV4::new(ip, 7000);
        for cmd in [Cmd::Put(8 << 20), Cmd::Get(8 << 20)] {
            let x = tcp_client(&self.ns("a"), to, cmd, None);
            assert!(x.intact, "{cmd:?}: {x:?} {:#?}", dp.stats());
        }
        drop(server);
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        peers::ping(&self.ns(from), to.parse::<Ipv4Addr>().unwrap(), 2)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let mut nl = netlink(here());
        for side in ["a", "b"] {
            if let Ok(l) = nl.link(&self.host(side)) {
                let _ = nl.delete_link(l.index);
            }
        }
    }
}

/// A dataplane that never busy-polls (every frame wakes it), with one domain.
fn event_driven() -> (Dataplane, plexus_switch::DomainId) {
    let dp = Dataplane::start(DataplaneConfig {
        busy_poll: Duration::ZERO,
        ..DataplaneConfig::default()
    })
    .unwrap();
    let d = dp.add_domain(DomainConfig::default()).unwrap();
    (dp, d)
}

fn here() -> &'static Path {
    Path::new("/proc/self/ns/net")
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn two_namespaces_ping_through_the_switch() {
    let topo = Topo::new(1);
    assert!(!topo.ping("a", "10.201.1.2"), "reachable before the switch runs");
    // Forget the failed ARP resolution, or its pending probes swallow the next
    // pings: taking the link down and up flushes its neighbour entries.
    let mut nl = netlink(&topo.ns("a"));
    let eth0 = nl.link("eth0").unwrap();
    nl.set_up(eth0.index, false).unwrap();
    nl.set_up(eth0.index, true).unwrap();
    let dp = Dataplane::start(DataplaneConfig::default()).unwrap();
    let d = dp.add_domain(DomainConfig::default()).unwrap();
    let mut ids = Vec::new();
    for side in ["a", "b"] {
        let port = PacketPort::open(&topo.host(side), true).unwrap();
        assert!(port.features().vnet_hdr && port.features().ignore_outgoing);
        let cfg = topo.port_config(d, side, true);
        ids.push(dp.add_port(Box::new(port), cfg).unwrap());
    }
    let ok = topo.ping("a", "10.201.1.2");
    assert!(ok, "{:#?}", dp.stats());
    assert!(topo.ping("b", "10.201.1.1"));
    let fdb = dp.fdb(d).unwrap();
    for (side, id) in ["a", "b"].iter().zip(&ids) {
        let mac = topo.mac(side);
        assert!(
            fdb.iter().any(|e| e.mac == mac && e.port == *id),
            "{side} missing in {fdb:?}"
        );
    }
    let stats = dp.stats().unwrap();
    assert_eq!(stats.len(), 2);
    for s in &stats {
        assert!(s.counters.rx_frames >= 3 && s.counters.tx_frames >= 3, "{s:?}");
    }
    // Removing a port cuts the path and forgets its MACs.
    dp.remove_port(ids[1]).unwrap();
    assert!(!topo.ping("a", "10.201.1.2"));
    assert!(dp.fdb(d).unwrap().iter().all(|e| e.port != ids[1]));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn spoofed_sources_are_dropped_and_counted() {
    let topo = Topo::new(2);
    let (dp, d) = event_driven();
    // Port a expects a MAC its interface does not have: everything it sends is spoofed.
    let wrong: MacAddr = "02:00:00:00:00:99".parse().unwrap();
    let a = dp
        .add_port(
            Box::new(PacketPort::open(&topo.host("a"), true).unwrap()),
            PortConfig {
                domain: d,
                name: "a".into(),
                mtu: 1500,
                mac: Some(wrong),
                ips: Vec::new(),
                offload: true,
            },
        )
        .unwrap();
    dp.add_port(
        Box::new(PacketPort::open(&topo.host("b"), true).unwrap()),
        PortConfig {
            domain: d,
            name: "b".into(),
            mtu: 1500,
            mac: Some(topo.mac("b")),
            ips: Vec::new(),
            offload: true,
        },
    )
    .unwrap();
    assert!(!topo.ping("a", "10.201.2.2"));
    let st = dp.stats().unwrap().into_iter().find(|s| s.id == a).unwrap();
    assert!(st.counters.dropped(DropReason::Spoofed) >= 1, "{st:?}");
}

/// A 60-byte broadcast frame of the local experimental EtherType from
/// source `marker`.
fn marked_frame(marker: MacAddr) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&marker.0);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.resize(60, 0x5a);
    frame
}

/// [`marked_frame`] behind an empty virtio-net header, as a port with the
/// header on sends it.
fn marked_frame_with_header(marker: MacAddr) -> Vec<u8> {
    let mut f = vec![0; plexus_switch::frame::VNET_HDR_LEN];
    f.extend_from_slice(&marked_frame(marker));
    f
}

/// Receives what `port` has queued and counts the frames from `marker`.
fn count_marked(port: &mut PacketPort, marker: MacAddr) -> usize {
    use plexus_switch::frame::FrameBuf;
    use plexus_switch::io::Port;
    let mut bufs: Vec<FrameBuf> = (0..32).map(|_| FrameBuf::default()).collect();
    let mut n = 0;
    while let Ok(r) = port.recv(&mut bufs) {
        if r.frames == 0 {
            break;
        }
        n += bufs[..r.frames]
            .iter()
            .filter(|b| b.frame().get(6..12) == Some(&marker.0[..]))
            .count();
    }
    n
}

/// A port hears its own interface and nothing else, from the first frame:
/// while another interface of the daemon's namespace is flooded, ports
/// opened on a quiet one never receive a flooded frame (an AF_PACKET socket
/// opened for every protocol hears every interface until it is bound, so a
/// port once took a neighbour's frames at attach time).
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_port_hears_only_its_own_interface() {
    use plexus_switch::io::Port;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let topo = Topo::new(3);
    let marker = MacAddr([0x02, 0, 0, 0, 0xbe, 0xef]);
    let frame = marked_frame(marker);
    let mut flood = plexus_sandbox::netns::run_in(&topo.ns("b"), || PacketPort::open("eth0", false))
        .unwrap()
        .unwrap();
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let burst: Vec<&[u8]> = vec![&frame[..]; 32];
            while !stop.load(Ordering::Relaxed) {
                let r = flood.send(&burst);
                sent.fetch_add(r.sent as u64, Ordering::Relaxed);
            }
        })
    };
    let mut heard = 0;
    for _ in 0..100 {
        let mut port = PacketPort::open(&topo.host("a"), false).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        heard += count_marked(&mut port, marker);
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 10_000, "the flood did not run: {sent} frames");
    assert_eq!(
        heard,
        0,
        "a port on {} heard {heard} of {sent} frames sent on another interface",
        topo.host("a")
    );
}

/// A port sends through its own second socket; the receiving one must never
/// hear those frames (they would come back into the switch as if the
/// container had sent them).
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_port_never_hears_the_frames_it_sends() {
    use plexus_switch::io::Port;

    let topo = Topo::new(6);
    let marker = MacAddr([0x02, 0, 0, 0, 0xfe, 0xed]);
    let mut port = PacketPort::open(&topo.host("a"), true).unwrap();
    let f = port.features();
    assert!(f.send_socket && f.tx_ring, "{f:?}");
    let mut peer = plexus_sandbox::netns::run_in(&topo.ns("a"), || PacketPort::open("eth0", false))
        .unwrap()
        .unwrap();
    let with_hdr = marked_frame_with_header(marker);
    let burst: Vec<&[u8]> = vec![&with_hdr[..]; 32];
    let mut sent = 0;
    for _ in 0..32 {
        sent += port.send(&burst).sent;
    }
    std::thread::sleep(Duration::from_millis(50));
    let (echoed, arrived) = (count_marked(&mut port, marker), count_marked(&mut peer, marker));
    assert!(
        sent > 0 && arrived == sent,
        "sent {sent}, the container's end got {arrived}"
    );
    assert_eq!(echoed, 0, "the port heard {echoed} of the {sent} frames it sent");
}

/// Frames the kernel refuses from the TX ring (here: the interface has no
/// carrier, its peer is down) are counted failed and taken back, and the ring
/// goes on: once the peer is up, every frame arrives. A ring left with
/// frames marked that the kernel will not send would send nothing more.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_refused_burst_does_not_jam_the_tx_ring() {
    use plexus_switch::io::Port;

    let topo = Topo::new(7);
    let marker = MacAddr([0x02, 0, 0, 0, 0xca, 0xfe]);
    let mut port = PacketPort::open(&topo.host("a"), true).unwrap();
    assert!(port.features().tx_ring, "{:?}", port.features());
    let with_hdr = marked_frame_with_header(marker);
    let burst: Vec<&[u8]> = vec![&with_hdr[..]; 32];
    let mut nl = netlink(&topo.ns("a"));
    let eth0 = nl.link("eth0").unwrap();
    nl.set_up(eth0.index, false).unwrap();
    // More bursts than the ring has slots: refused slots must come back.
    for _ in 0..16 {
        let r = port.send(&burst);
        assert_eq!((r.sent, r.failed), (0, 32), "{r:?}");
    }
    nl.set_up(eth0.index, true).unwrap();
    let mut peer = plexus_sandbox::netns::run_in(&topo.ns("a"), || PacketPort::open("eth0", false))
        .unwrap()
        .unwrap();
    // The carrier comes back a moment after the peer is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while port.send(&burst[..1]).sent == 0 {
        assert!(std::time::Instant::now() < deadline, "the port never sent again");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut sent = 0;
    for _ in 0..16 {
        sent += port.send(&burst).sent;
    }
    std::thread::sleep(Duration::from_millis(50));
    let arrived = count_marked(&mut peer, marker);
    assert_eq!(sent, 16 * 32, "the ring sent {sent} of {}", 16 * 32);
    assert!(arrived >= sent, "sent {sent}, the container's end got {arrived}");
}

/// Whether `ethtool -k` shows GRO on for host-namespace interface `ifname`.
fn gro_on(ifname: &str) -> bool {
    let k = ethtool(here(), &["-k", ifname]);
    let line = k
        .lines()
        .find(|l| l.starts_with("generic-receive-offload:"))
        .unwrap_or_else(|| panic!("no GRO line in {k}"));
    line.split_whitespace().nth(1) == Some("on")
}

#[test]
#[cfg_attr(not(all(px_root, px_ethtool)), ignore = "needs root and ethtool")]
fn gro_brings_a_containers_mtu_sized_segments_in_coalesced() {
    let topo = Topo::new(5);
    // The namespaces send every TCP segment as one MTU-sized frame with its
    // checksum filled: no TSO, no GSO, no transmit checksum offload.
    for side in ["a", "b"] {
        ethtool(&topo.ns(side), &["-K", "eth0", "tx", "off", "tso", "off", "gso", "off"]);
    }
    // A veth starts with GRO off; the port turns it on.
    assert!(!gro_on(&topo.host("a")));
    let (dp, d) = event_driven();
    for side in ["a", "b"] {
        let port = PacketPort::open(&topo.host(side), true).unwrap();
        assert!(port.features().gro, "{:?}", port.features());
        assert!(gro_on(&topo.host(side)));
        dp.add_port(Box::new(port), topo.port_config(d, side, true)).unwrap();
    }
    topo.tcp_both_ways(5, &dp);
    // Each sender's segments reached the switch coalesced: its port received
    // more bytes per frame than one 1514-byte frame holds (without GRO every
    // frame is at most that).
    for s in dp.stats().unwrap() {
        let per_frame = s.counters.rx_bytes / s.counters.rx_frames.max(1);
        assert!(per_frame > 3000, "{} bytes per received frame: {s:?}", per_frame);
    }
    // The ports put GRO back as they found it.
    drop(dp);
    for side in ["a", "b"] {
        assert!(!gro_on(&topo.host(side)), "{} keeps GRO on", topo.host(side));
    }
}

/// True if `ifname` in this namespace has an XDP program attached.
fn has_xdp(ifname: &str) -> bool {
    netlink(here()).link(ifname).unwrap().xdp_prog.is_some()
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn af_xdp_ports_carry_ping_and_tcp_with_the_containers_offloads_on() {
    use plexus_switch::io::{Port, XdpMode, XdpPort};

    let topo = Topo::new(4);
    // Event driven: the worker must be woken through the port's epoll fd.
    let (dp, d) = event_driven();
    for side in ["a", "b"] {
        let port = XdpPort::open(&topo.host(side), 1500).unwrap();
        // A veth runs XDP in its driver, with a socket on each receive queue.
        assert_eq!(port.mode(), XdpMode::Native);
        assert!(port.queues() >= 1 && !port.offload());
        // Frames leave through queue 0's send-only socket.
        assert!(port.send_socket(), "{}", port.summary());
        assert!(has_xdp(&topo.host(side)));
        let cfg = topo.port_config(d, side, false);
        dp.add_port(Box::new(port), cfg).unwrap();
    }
    assert!(topo.ping("a", "10.201.4.2"), "{:#?}", dp.stats());
    // The namespaces keep their default offloads: TCP and UDP leave them with
    // partial checksums, which the port completes (else every segment is
    // dropped by the receiver). Both directions, several MB, byte-exact.
    topo.tcp_both_ways(4, &dp);
    let stats = dp.stats().unwrap();
    for s in &stats {
        assert!(s.counters.rx_frames > 1000, "{s:?}");
    }
    // The program leaves the interface with the port.
    drop(dp);
    for side in ["a", "b"] {
        assert!(!has_xdp(&topo.host(side)), "{} keeps its XDP program", topo.host(side));
    }
}
