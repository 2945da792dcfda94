//! End-to-end tests of the userspace switch through the CNM library: sandboxes
//! on one network reach each other through Plexus and nothing else. Real
//! namespaces, veth pairs, TAP devices, pings from raw ICMP sockets in the
//! sandboxes, and iperf3. They need root.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestEnv, injector, net, ns_path, peers, random_frame, send_all};
use plexus::Ipv4Net;
use plexus::ipam::parse_cidr;
use plexus::{Controller, EndpointKind, EndpointOptions, JoinOptions, NetworkOptions};
use rand::Rng;

fn net_opts(cidr: &str) -> NetworkOptions {
    NetworkOptions::default().subnet(parse_cidr(cidr).unwrap())
}

/// Pings from a sandbox's namespace; true if every reply came back.
fn ping(env: &TestEnv, from: &str, to: Ipv4Addr, count: u16) -> bool {
    peers::ping(&ns_path(&env.netns(from)), to, count)
}

/// Creates an endpoint of `kind` and joins it to a new sandbox `name`;
/// returns its address.
fn container(net: &plexus::Network, name: &str, kind: EndpointKind) -> Ipv4Addr {
    let ep = net
        .create_endpoint(name, EndpointOptions::default().kind(kind))
        .unwrap();
    ep.join(name, JoinOptions::default()).unwrap();
    ep.info().unwrap().address.unwrap().addr()
}

/// No bridge device anywhere (host namespace or sandboxes), and no host end
/// has a master.
fn assert_no_kernel_bridge(env: &TestEnv, sandboxes: &[&str]) {
    let host = net::links(std::path::Path::new("/proc/self/ns/net"));
    for l in host.iter().filter(|l| l.name.starts_with(&env.tag)) {
        assert_eq!(l.master, None, "host end has a master: {l:?}");
        assert_ne!(l.kind.as_deref(), Some("bridge"), "{l:?}");
    }
    for sb in sandboxes {
        for l in net::links(&ns_path(&env.netns(sb))) {
            assert_eq!(l.master, None, "{sb}: {l:?}");
            assert_ne!(l.kind.as_deref(), Some("bridge"), "{sb}: {l:?}");
        }
    }
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn ping_across_for_every_kind_pair() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let pairs = [
        ("vv", EndpointKind::Veth, EndpointKind::Veth),
        ("vt", EndpointKind::Veth, EndpointKind::Tap),
        ("tt", EndpointKind::Tap, EndpointKind::Tap),
    ];
    for (i, (tag, ka, kb)) in pairs.into_iter().enumerate() {
        let net = c
            .new_network("bridge", tag, net_opts(&format!("10.90.{i}.0/24")))
            .unwrap();
        let (a, b) = (format!("{tag}a"), format!("{tag}b"));
        let ia = container(&net, &a, ka);
        let ib = container(&net, &b, kb);
        assert!(ping(&env, &a, ib, 3), "{tag}: {a} -> {b}");
        assert!(ping(&env, &b, ia, 3), "{tag}: {b} -> {a}");
        let eth0 = net::link(&ns_path(&env.netns(&a)), "eth0");
        match ka {
            EndpointKind::Tap => assert_eq!(eth0.kind.as_deref(), Some("tun"), "{eth0:?}"),
            EndpointKind::Veth => assert_eq!(eth0.kind.as_deref(), Some("veth"), "{eth0:?}"),
        }
        assert_no_kernel_bridge(&env, &[&a, &b]);
    }
    // Every port moved frames both ways.
    let stats = c.stats().unwrap();
    assert_eq!(stats.len(), 6, "{stats:?}");
    for p in &stats {
        assert!(p.rx_frames >= 3 && p.tx_frames >= 3, "{p:?}");
    }
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn networks_are_isolated_at_l2() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let n1 = c.new_network("bridge", "one", net_opts("10.91.1.0/24")).unwrap();
    let n2 = c.new_network("bridge", "two", net_opts("10.91.2.0/24")).unwrap();
    let a = container(&n1, "a", EndpointKind::Veth);
    let b = container(&n2, "b", EndpointKind::Veth);
    let peer = container(&n1, "peer", EndpointKind::Tap);
    // Make b's address look on-link for a, so a ARPs for it on its own segment:
    // only a switch that leaks between domains would carry that broadcast to b.
    net::add_route(&ns_path(&env.netns("a")), Ipv4Net::from(b), None, "eth0");
    net::add_route(&ns_path(&env.netns("b")), Ipv4Net::from(a), None, "eth0");
    assert!(!ping(&env, "a", b, 2));
    assert!(!ping(&env, "b", a, 2));
    // The same sandboxes do reach their own network.
    assert!(ping(&env, "a", peer, 2));
    let fdb_two = c.fdb("two").unwrap();
    assert!(fdb_two.iter().all(|r| r.endpoint == "b"), "{fdb_two:?}");
}

#[test]
#[cfg_attr(not(all(px_root, px_iperf3)), ignore = "needs root, /dev/net/tun and iperf3")]
fn iperf3_tcp_moves_data() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c.new_network("bridge", "perf", net_opts("10.92.0.0/24")).unwrap();
    let _client = container(&net, "cli", EndpointKind::Veth);
    let server = container(&net, "srv", EndpointKind::Tap);
    let iperf3 = |ns: &str| {
        let mut cmd = Command::new("iperf3");
        net::in_netns(&mut cmd, &ns_path(&env.netns(ns)));
        cmd
    };
    let mut srv = iperf3("srv")
        .args(["-s", "-1", "-B", &server.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 is installed (apt-get install iperf3)");
    std::thread::sleep(Duration::from_millis(300));
    let out = iperf3("cli")
        .args(["-c", &server.to_string()])
        .args(["-t", "2", "-J", "--connect-timeout", "3000"])
        .output()
        .unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    let bytes = json["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    let bps = json["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    eprintln!("iperf3 veth -> tap through the switch: {:.2} Gbit/s", bps / 1e9);
    assert!(
        bytes > 10e6,
        "moved only {bytes} bytes: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn fdb_shows_endpoints_and_entries_age_out() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c
        .new_network("bridge", "age", net_opts("10.89.0.0/24").mac_ageing_secs(2))
        .unwrap();
    let a = container(&net, "a", EndpointKind::Veth);
    let b = container(&net, "b", EndpointKind::Tap);
    assert!(ping(&env, "a", b, 2));
    let fdb = c.fdb("age").unwrap();
    let mac_of = |n: &str| net.endpoint(n).unwrap().info().unwrap().mac.unwrap();
    for n in ["a", "b"] {
        assert!(
            fdb.iter()
                .any(|r| r.mac == mac_of(n) && r.endpoint == n && r.age_secs < 2.0),
            "{n}: {fdb:?}"
        );
    }
    let _ = a;
    // No traffic now: after the ageing time both entries are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.fdb("age").unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "entries never aged out: {:?}",
            c.fdb("age").unwrap()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn late_join_is_reachable_and_leave_rm_leave_nothing() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c.new_network("bridge", "late", net_opts("10.88.0.0/24")).unwrap();
    let a = container(&net, "a", EndpointKind::Veth);
    let b = container(&net, "b", EndpointKind::Veth);
    assert!(ping(&env, "a", b, 1));
    // A third sandbox, later, with nothing restarted.
    let late = container(&net, "late", EndpointKind::Tap);
    assert!(ping(&env, "a", late, 2));
    assert!(ping(&env, "late", a, 2));
    // Leave and rm: no link, port or table entry is left of it.
    let ep = net.endpoint("late").unwrap();
    let info = ep.info().unwrap();
    ep.leave().unwrap();
    ep.delete(false).unwrap();
    c.sandbox("late").unwrap().delete().unwrap();
    assert!(!env.leftover_netns().contains(&env.netns("late")));
    let links = env.leftover_links();
    assert!(
        !links
            .iter()
            .any(|l| l.ends_with(&info.host_ifname[env.tag.len() + 1..])),
        "{links:?}"
    );
    assert_eq!(links.len(), 2, "only a's and b's host ends remain: {links:?}");
    let stats = c.stats().unwrap();
    assert!(!stats.iter().any(|p| p.endpoint == "late"), "{stats:?}");
    assert!(c.fdb("late").unwrap().iter().all(|r| r.mac != info.mac.unwrap()));
    assert!(ping(&env, "a", b, 1));
}

#[test]
#[cfg_attr(not(all(px_root, px_ethtool)), ignore = "needs root, /dev/net/tun and ethtool")]
fn a_taps_mtu_sized_segments_leave_coalesced_and_intact() {
    use peers::{Cmd, tcp_client, tcp_server};

    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c.new_network("bridge", "gro", net_opts("10.93.0.0/24")).unwrap();
    container(&net, "a", EndpointKind::Tap);
    let b = container(&net, "b", EndpointKind::Tap);
    // Each namespace sends MTU-sized segments with their checksums filled (no
    // TSO, GSO or checksum offload), which its TAP hands to the switch one
    // read at a time.
    for sb in ["a", "b"] {
        net::ethtool(
            &ns_path(&env.netns(sb)),
            &["-K", "eth0", "tx", "off", "tso", "off", "gso", "off"],
        );
    }
    let server = tcp_server(&ns_path(&env.netns("b")), b, &[7000]);
    for cmd in [Cmd::Put(16 << 20), Cmd::Get(16 << 20)] {
        let x = tcp_client(&ns_path(&env.netns("a")), SocketAddrV4::new(b, 7000), cmd, None);
        assert!(x.intact, "{cmd:?}: {x:?} {:#?}", c.stats());
    }
    drop(server);
    let stats = c.stats().unwrap();
    let port = |name: &str| stats.iter().find(|p| p.endpoint == name).unwrap();
    for (from, to) in [("a", "b"), ("b", "a")] {
        let (rx, tx) = (port(from), port(to));
        // Both directions carried data, so both TAPs got super-frames the
        // switch made of consecutive segments ...
        assert!(tx.tx_coalesced > 1000, "{tx:?}");
        // ... and every segment is accounted for: sent whole or folded
        // (ARP and the like aside, all `from` sent went to `to`).
        let out = tx.tx_frames + tx.tx_coalesced;
        assert!(out <= rx.rx_frames && out + 50 >= rx.rx_frames, "{rx:?} {tx:?}");
    }
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn malformed_and_random_frames_are_dropped_and_counted() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c.new_network("bridge", "junk", net_opts("10.87.0.0/24")).unwrap();
    let a = container(&net, "a", EndpointKind::Veth);
    let b = container(&net, "b", EndpointKind::Tap);
    let b_mac = net.endpoint("b").unwrap().info().unwrap().mac.unwrap().octets();
    // Let the oversize frames through the kernel's own veth checks to our port.
    let host_a = net.endpoint("a").unwrap().info().unwrap().host_ifname;
    net::set_mtu(std::path::Path::new("/proc/self/ns/net"), &host_a, 9000);
    net::set_mtu(&ns_path(&env.netns("a")), "eth0", 9000);

    let mut rng = rand::rng();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // Random bytes: random (often multicast) sources, spoofed sources, garbage types.
    for _ in 0..3000 {
        let len = rng.random_range(14..1500);
        frames.push(random_frame(&mut rng, b_mac, len));
    }
    // Minimal frames: an Ethernet header and nothing else.
    for _ in 0..500 {
        frames.push(random_frame(&mut rng, b_mac, 14));
    }
    // Larger than the network's MTU allows, with a's own source so only the size is wrong.
    let a_mac = net.endpoint("a").unwrap().info().unwrap().mac.unwrap().octets();
    for _ in 0..500 {
        let mut f = random_frame(&mut rng, b_mac, 4000);
        f[6..12].copy_from_slice(&a_mac);
        frames.push(f);
    }
    let mut inj = injector(&env, "a");
    let sent = send_all(&mut inj, &frames);
    assert!(sent > 3500, "only {sent} injected");
    std::thread::sleep(Duration::from_millis(500));

    let port_a = c.stats().unwrap().into_iter().find(|p| p.endpoint == "a").unwrap();
    let dropped: u64 = port_a.drops.values().sum();
    assert!(port_a.drops["oversize"] >= 400, "{port_a:?}");
    assert!(port_a.drops["bad_src"] >= 500, "{port_a:?}");
    assert!(port_a.drops["spoofed"] >= 500, "{port_a:?}");
    assert!(dropped >= sent as u64 - 600, "{dropped} of {sent} dropped: {port_a:?}");
    // b received none of it.
    let port_b = c.stats().unwrap().into_iter().find(|p| p.endpoint == "b").unwrap();
    assert!(port_b.tx_frames < 100, "{port_b:?}");
    // The switch still forwards.
    assert!(ping(&env, "a", b, 2));
    assert!(ping(&env, "b", a, 2));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mac_flood(env: &TestEnv, from: &str, dst: [u8; 6], count: usize) -> usize {
    let mut rng = rand::rng();
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let mut f = random_frame(&mut rng, dst, 60);
            f[6] = (f[6] & 0xfe) | 0x02; // unicast, locally administered
            f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
            f
        })
        .collect();
    let mut inj = injector(env, from);
    send_all(&mut inj, &frames)
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn mac_flood_is_bounded_without_anti_spoofing_and_dropped_with_it() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    const BOUND: usize = 1024;
    let open = c
        .new_network(
            "bridge",
            "open",
            net_opts("10.86.1.0/24").anti_spoofing(false).mac_table_size(BOUND),
        )
        .unwrap();
    let a = container(&open, "a", EndpointKind::Veth);
    let b = container(&open, "b", EndpointKind::Veth);
    assert!(ping(&env, "a", b, 1));
    let b_mac = open.endpoint("b").unwrap().info().unwrap().mac.unwrap().octets();
    let rss_before = rss_kib();
    let sent = mac_flood(&env, "a", b_mac, 100_000);
    assert!(sent > 90_000, "only {sent} flood frames sent");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.fdb_len("open").unwrap(), BOUND);
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB during the flood");
    let port_a = c
        .stats()
        .unwrap()
        .into_iter()
        .find(|p| p.network == "open" && p.endpoint == "a")
        .unwrap();
    // The kernel may drop part of a burst before the switch sees it; every
    // frame the switch did see beyond the bound was refused a table entry.
    // (Frames the kernel dropped on a full receive ring are counted as rx_overrun.)
    assert!(
        port_a.rx_frames + port_a.drops["rx_overrun"] + 1000 >= sent as u64,
        "{port_a:?}"
    );
    assert!(port_a.rx_frames >= 10 * BOUND as u64, "{port_a:?}");
    assert!(
        port_a.learn_table_full + BOUND as u64 + 100 >= port_a.rx_frames,
        "{port_a:?}"
    );
    // The real hosts keep their entries and their traffic.
    assert!(ping(&env, "a", b, 2));
    assert!(ping(&env, "b", a, 2));

    // Anti-spoofing on (the default): the same flood is dropped and counted.
    let guarded = c.new_network("bridge", "guarded", net_opts("10.86.2.0/24")).unwrap();
    let ga = container(&guarded, "ga", EndpointKind::Veth);
    let gb = container(&guarded, "gb", EndpointKind::Tap);
    assert!(ping(&env, "ga", gb, 1));
    let gb_mac = guarded.endpoint("gb").unwrap().info().unwrap().mac.unwrap().octets();
    let sent = mac_flood(&env, "ga", gb_mac, 100_000);
    std::thread::sleep(Duration::from_millis(500));
    let port = c.stats().unwrap().into_iter().find(|p| p.endpoint == "ga").unwrap();
    assert!(sent > 90_000 && port.rx_frames >= 10_000, "{sent} sent: {port:?}");
    assert!(
        port.rx_frames + port.drops["rx_overrun"] + 1000 >= sent as u64,
        "{port:?}"
    );
    assert!(port.drops["spoofed"] + 100 >= port.rx_frames, "{port:?}");
    assert!(c.fdb_len("guarded").unwrap() <= 2);
    assert!(ping(&env, "ga", gb, 2));
    assert!(ping(&env, "gb", ga, 2));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn gateway_answers_arp_and_ping_and_routing_between_networks_is_dropped() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let n1 = c.new_network("bridge", "gw1", net_opts("10.85.1.0/24")).unwrap();
    let n2 = c.new_network("bridge", "gw2", net_opts("10.85.2.0/24")).unwrap();
    let n3 = c
        .new_network("bridge", "gw3", net_opts("10.85.3.0/24").internal(true))
        .unwrap();
    let _a = container(&n1, "a", EndpointKind::Veth);
    let b = container(&n2, "b", EndpointKind::Tap);
    let _i = container(&n3, "i", EndpointKind::Veth);

    // The gateway address belongs to the switch: it answers ARP and ping.
    assert!(ping(&env, "a", Ipv4Addr::new(10, 85, 1, 1), 2));
    let neigh = net::arp_table(&ns_path(&env.netns("a")));
    assert!(
        neigh.contains(&("10.85.1.1".to_owned(), "02:42:0a:55:01:01".to_owned())),
        "{neigh:?}"
    );
    assert!(
        ping(&env, "i", Ipv4Addr::new(10, 85, 3, 1), 1),
        "an internal network still has its gateway"
    );

    let drops = |ep: &str| c.stats().unwrap().into_iter().find(|p| p.endpoint == ep).unwrap().drops;
    // Another network's subnet, through the default route: dropped at the gateway.
    assert!(!ping(&env, "a", b, 2));
    assert!(drops("a")["isolated"] >= 2, "{:?}", drops("a"));
    // (Traffic to the outside is left to tests/nat.rs: this controller's switch
    // runs in the test's own namespace, and NAT would carry it onto the host's
    // network.)
    // An internal network has no default route; one added by hand gets nowhere:
    // dropped at the gateway, never handed to NAT.
    net::add_route(
        &ns_path(&env.netns("i")),
        Ipv4Net::default(),
        Some(Ipv4Addr::new(10, 85, 3, 1)),
        "eth0",
    );
    assert!(!ping(&env, "i", Ipv4Addr::new(198, 18, 0, 9), 1));
    assert!(drops("i")["internal"] >= 1, "{:?}", drops("i"));
    // TCP to the gateway's own address is served by no one: the switch's
    // TCP stack refuses it at once with a reset.
    let to_gateway = peers::tcp_client(
        &ns_path(&env.netns("a")),
        SocketAddrV4::new(Ipv4Addr::new(10, 85, 1, 1), 80),
        peers::Cmd::Get(1),
        None,
    );
    assert_eq!(to_gateway.first, "refused", "{to_gateway:?}");
}
