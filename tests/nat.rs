//! Outbound NAT, hermetic (the netavark pattern): the test makes a "host"
//! namespace and an "outside" namespace joined by a veth (198.18.0.0/15, a test
//! range), runs `plexus daemon` inside the "host" one, and containers on a
//! Plexus network reach the "outside" through the switch's gateway and NAT —
//! ordinary host sockets of the daemon, no iptables, no kernel forwarding.
//! Nothing leaves the test's namespaces. Clients and servers are sockets this
//! test opens inside the namespaces ([`common::peers`]). Needs root.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::net::HostOutside;
use common::peers::{self, Cmd, Exchange};
use common::{Daemon, TestEnv, ns_path};
use plexus::Ipv4Net;
use serde_json::Value;

/// The namespace of sandbox `name` of this test's daemon.
fn sb(env: &TestEnv, name: &str) -> PathBuf {
    ns_path(&env.netns(name))
}

fn addr(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse().unwrap(), port)
}

/// A UDP exchange from a sandbox: sends `msg` to `to:port` from local port
/// `from_port` and returns the reply (empty on timeout).
fn udp_ask(env: &TestEnv, sandbox: &str, to: &str, port: u16, from_port: u16, msg: &str) -> String {
    peers::udp_ask(&sb(env, sandbox), addr(to, port), from_port, msg)
}

fn nat_flows(d: &Daemon) -> Vec<Value> {
    let out = d.plexus(&["nat", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("nat --format json")
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn udp_and_ping_reach_the_outside_through_host_sockets() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 40, true);
    let _echo = peers::udp_echo(&world.outside_path(), world.outside_ip.parse().unwrap(), 7);
    let d = Daemon::start_in(
        &env,
        Some(&world.host),
        &["--nat-udp-timeout", "2", "--nat-icmp-timeout", "2"],
    );
    d.ok(&["network", "create", "--subnet", "10.84.0.0/24", "out"]);
    d.ok(&["run", "--network", "out", "c1"]);

    // The outside sees the host's address: the NAT worked.
    let reply = udp_ask(&env, "c1", &world.outside_ip, 7, 40000, "hello");
    assert!(reply.starts_with(&format!("{}:", world.host_ip)), "reply {reply:?}");
    assert!(reply.ends_with("hello"), "reply {reply:?}");
    let ping = peers::ping_summary(&sb(&env, "c1"), world.outside_ip.parse().unwrap(), 2);
    assert!(ping.all_answered(), "{ping}");

    // `plexus nat` lists both flows, then none once they idle out.
    let flows = nat_flows(&d);
    let has = |proto: &str| flows.iter().any(|f| f["proto"] == proto && f["endpoint"] == "c1");
    assert!(has("udp") && has("icmp"), "{flows:?}");
    let udp = flows.iter().find(|f| f["proto"] == "udp").unwrap();
    assert_eq!(udp["inside"], "10.84.0.2:40000");
    assert_eq!(udp["outside"], format!("{}:7", world.outside_ip));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nat_flows(&d).is_empty() {
        assert!(Instant::now() < deadline, "flows never expired: {:?}", nat_flows(&d));
        std::thread::sleep(Duration::from_millis(250));
    }

    // A closed port outside: the refusal comes back as the container's stack
    // expects it (ICMP port unreachable → ECONNREFUSED on a connected socket).
    assert_eq!(
        peers::udp_connected(&sb(&env, "c1"), addr(&world.outside_ip, 9)),
        "refused"
    );

    // An internal network's container gets nowhere, even with a route by hand.
    d.ok(&["network", "create", "--internal", "--subnet", "10.84.1.0/24", "closed"]);
    d.ok(&["run", "--network", "closed", "shut"]);
    common::net::add_route(
        &sb(&env, "shut"),
        Ipv4Net::default(),
        Some(Ipv4Addr::new(10, 84, 1, 1)),
        "eth0",
    );
    assert_eq!(udp_ask(&env, "shut", &world.outside_ip, 7, 40001, "x"), "");
    let flows = nat_flows(&d);
    assert!(!flows.iter().any(|f| f["endpoint"] == "shut"), "{flows:?}");
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_full_nat_table_refuses_new_flows_and_keeps_old_ones() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 41, true);
    let _echo = peers::udp_echo(&world.outside_path(), world.outside_ip.parse().unwrap(), 7);
    let d = Daemon::start_in(&env, Some(&world.host), &["--nat-max-flows-per-endpoint", "2"]);
    d.ok(&["network", "create", "--subnet", "10.84.2.0/24", "small"]);
    d.ok(&["run", "--network", "small", "c"]);
    for p in [41000, 41001] {
        assert!(
            !udp_ask(&env, "c", &world.outside_ip, 7, p, "in").is_empty(),
            "flow from {p}"
        );
    }
    // A third flow from the same endpoint is refused and counted...
    assert_eq!(udp_ask(&env, "c", &world.outside_ip, 7, 41002, "out"), "");
    let stats: Vec<Value> = serde_json::from_slice(&d.plexus(&["stats", "--format", "json"]).stdout).unwrap();
    let port = stats.iter().find(|p| p["endpoint"] == "c").unwrap();
    assert!(port["drops"]["nat_full"].as_u64().unwrap() >= 1, "{port}");
    // ...while the old flows keep working.
    assert!(udp_ask(&env, "c", &world.outside_ip, 7, 41000, "still").ends_with("still"));
    assert_eq!(nat_flows(&d).len(), 2);
    // A TCP connection is a flow too: refused at once (a reset), and counted.
    let server = peers::tcp_server(&world.outside_path(), world.outside_ip.parse().unwrap(), &[8080]);
    let full = |d: &Daemon| {
        let stats: Vec<Value> = serde_json::from_slice(&d.plexus(&["stats", "--format", "json"]).stdout).unwrap();
        stats.iter().find(|p| p["endpoint"] == "c").unwrap()["drops"]["nat_full"]
            .as_u64()
            .unwrap()
    };
    let before = full(&d);
    let first = tcp_from_sandbox(&env, "c", addr(&world.outside_ip, 8080), Cmd::Get(1)).first;
    assert_eq!(first, "refused");
    assert_eq!(full(&d), before + 1);
    drop(server);
    drop(d);
    assert!(env.leftover_links().is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn ping_falls_back_to_raw_sockets_where_ping_sockets_are_not_allowed() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 42, false);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.3.0/24", "raw"]);
    d.ok(&["run", "--network", "raw", "a"]);
    d.ok(&["run", "--network", "raw", "b"]);
    // Two containers with pings of their own identifiers to the same address.
    for c in ["a", "b"] {
        let ping = peers::ping_summary(&sb(&env, c), world.outside_ip.parse().unwrap(), 3);
        assert!(ping.all_answered(), "{c}: {ping}");
    }
    assert!(d.log().contains("outbound ICMP echo uses raw sockets"), "{}", d.log());
    let flows = nat_flows(&d);
    assert_eq!(flows.iter().filter(|f| f["proto"] == "icmp").count(), 2, "{flows:?}");
}

/// A UDP exchange from a namespace, or `None` on timeout.
fn udp_ask_from_ns(ns: &str, to: &str, port: u16) -> Option<String> {
    Some(peers::udp_ask(&ns_path(ns), addr(to, port), 0, "hi")).filter(|s| !s.is_empty())
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn published_udp_ports_keep_the_clients_address() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 43, true);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.4.0/24", "pub"]);
    d.ok(&[
        "run",
        "--network",
        "pub",
        "-p",
        "8053:53/udp",
        "-p",
        "9000-9001:7000-7001/udp",
        "srv",
    ]);
    let server = peers::udp_tagged(&sb(&env, "srv"), &[53, 7000, 7001]);

    // A client outside reaches the published port; the container sees its real address.
    let reply = udp_ask_from_ns(&world.outside, &world.host_ip, 8053).expect("no answer from the published port");
    assert!(
        reply.starts_with(&format!("port=53 from={}:", world.outside_ip)),
        "{reply}"
    );
    // A range maps each host port to its container port.
    for (host, container) in [(9000, 7000), (9001, 7001)] {
        let reply = udp_ask_from_ns(&world.outside, &world.host_ip, host).unwrap_or_default();
        assert!(
            reply.starts_with(&format!("port={container} from={}:", world.outside_ip)),
            "{host}: {reply}"
        );
    }
    // The host's own loopback reaches it too (the container sees the gateway).
    let reply = udp_ask_from_ns(&world.host, "127.0.0.1", 8053).expect("no answer on 127.0.0.1");
    assert!(reply.starts_with("port=53 from=10.84.4.1:"), "{reply}");
    // Another container reaches it through the host's address (hairpin).
    d.ok(&["run", "--network", "pub", "peer"]);
    let hairpin = udp_ask(&env, "peer", &world.host_ip, 8053, 42000, "x");
    assert!(
        hairpin.starts_with(&format!("port=53 from={}:", world.host_ip)),
        "{hairpin}"
    );

    // The same host port again fails whole, and leaves nothing behind.
    let out = d.plexus(&["run", "--network", "pub", "-p", "8053:53/udp", "again"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(
        !d.plexus(&["sandbox", "inspect", "again"]).status.success(),
        "a failed run left its sandbox"
    );
    // So does a port another program holds on the host.
    let blocker = plexus_sandbox::sock::udp_socket(
        plexus_sandbox::sock::NsKey::netns(&world.host_path()),
        addr("0.0.0.0", 8054),
    )
    .unwrap();
    let out = d.plexus(&["run", "--network", "pub", "-p", "8054:53/udp", "blocked"]);
    drop(blocker);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port is already allocated"),
        "{out:?}"
    );
    // An empty host port takes an ephemeral one, shown by inspect.
    d.ok(&["run", "--network", "pub", "-p", "53/udp", "eph"]);
    let ep: Value = serde_json::from_str(&d.ok(&["endpoint", "inspect", "eph", "--format", "json"])).unwrap();
    let host_port = ep["ports"][0]["host_port"].as_u64().unwrap();
    assert!(host_port >= 1024, "{ep}");

    drop(server);
}

/// A TCP exchange from a sandbox of this test's daemon.
fn tcp_from_sandbox(env: &TestEnv, sandbox: &str, to: SocketAddrV4, cmd: Cmd) -> Exchange {
    peers::tcp_client(&sb(env, sandbox), to, cmd, None)
}

const TEN_MB: usize = 10_000_000;

/// With `--rx-steering auto`, a veth host end steers what it receives to one
/// CPU per flow (RPS); by default it does not. Read back through a sysfs of
/// the host namespace that `ip` mounts itself.
#[test]
#[cfg_attr(not(all(px_root, px_ip)), ignore = "needs root, /dev/net/tun and iproute2's ip")]
fn veth_host_ends_steer_received_frames_per_flow() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 47, true);
    // Whether each host end of the env steers (the uplink, `{tag}ho`, is none).
    let steered = || -> (String, Vec<bool>) {
        let rps = common::run_ok(
            std::process::Command::new("ip")
                .args(["netns", "exec", &world.host, "sh", "-c"])
                .arg(format!(
                    "for q in /sys/class/net/{}h[0-9a-f]*/queues/rx-*/rps_cpus; do echo $q $(cat $q); done",
                    env.tag
                )),
        );
        let set = rps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|m| m.chars().any(|c| c != '0' && c != ','))
            .collect();
        (rps, set)
    };
    let d = Daemon::start_in(&env, Some(&world.host), &["--rx-steering", "auto"]);
    d.ok(&["network", "create", "--subnet", "10.84.9.0/24", "steer"]);
    d.ok(&["run", "--network", "steer", "c1"]);
    let (rps, set) = steered();
    assert!(
        set.len() == 1 && set[0],
        "c1's host end without receive steering:\n{rps}"
    );
    assert!(d.log().contains("steer received frames to CPUs"), "{}", d.log());
    assert_eq!(d.json(&["info"])["rx_steering"], "auto");
    drop(d);

    // A daemon with the default leaves a new host end alone.
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["run", "--network", "steer", "c2"]);
    let (rps, set) = steered();
    assert_eq!(set.len(), 2, "{rps}");
    assert_eq!(
        set.iter().filter(|s| **s).count(),
        1,
        "c2's host end is steered:\n{rps}"
    );
    assert_eq!(d.json(&["info"])["rx_steering"], "off");
    assert_eq!(d.json(&["info"])["veth_io"], "af_packet");
}

/// `--veth-io af_xdp`: host ends are AF_XDP ports (their `io` in the stats
/// says so, `plexus info` shows the setting), and the relay's TCP, built for
/// ports without offloads, crosses them both ways intact; containers talk to
/// each other with their default offloads on.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn af_xdp_host_ends_carry_containers_and_nat() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 76, true);
    let d = Daemon::start_in(&env, Some(&world.host), &["--veth-io", "af_xdp"]);
    d.ok(&["network", "create", "--subnet", "10.84.10.0/24", "xdp"]);
    d.ok(&["run", "--network", "xdp", "c1"]);
    d.ok(&["run", "--network", "xdp", "c2"]);
    assert_eq!(d.json(&["info"])["veth_io"], "af_xdp");
    let stats = d.json(&["stats"]);
    let ports = stats.as_array().expect("stats is a list");
    assert_eq!(ports.len(), 2, "{stats}");
    for p in ports {
        let io = p["io"].as_str().unwrap_or_default();
        assert!(io.starts_with("af_xdp (native"), "{p}");
    }
    assert!(d.log().contains("AF_XDP ports"), "{}", d.log());

    let outside = addr(&world.outside_ip, 8080);
    let server = peers::tcp_server(&world.outside_path(), world.outside_ip.parse().unwrap(), &[8080]);
    for cmd in [Cmd::Get(TEN_MB), Cmd::Put(TEN_MB)] {
        let x = tcp_from_sandbox(&env, "c1", outside, cmd);
        assert!(x.first.starts_with(&format!("from={}:", world.host_ip)), "{x:?}");
        assert!(x.intact, "{cmd:?} through NAT: {x:?}");
    }
    drop(server);
    let c2_ip = d.endpoint_ip("c2");
    let server = peers::tcp_server(&sb(&env, "c2"), c2_ip.parse().unwrap(), &[7000]);
    let x = tcp_from_sandbox(&env, "c1", addr(&c2_ip, 7000), Cmd::Put(TEN_MB));
    assert!(x.intact, "c1 -> c2: {x:?} {}", d.json(&["stats"]));
    drop(server);

    // Where AF_XDP cannot serve (an MTU above its 2 KiB frames), the port is
    // AF_PACKET, says why, and works.
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.84.11.0/24",
        "--mtu",
        "3000",
        "jumbo",
    ]);
    d.ok(&["run", "--network", "jumbo", "c3"]);
    let stats = d.json(&["stats", "--network", "jumbo"]);
    let io = stats[0]["io"].as_str().unwrap_or_default();
    assert!(io.starts_with("af_packet (af_xdp refused: MTU 3000"), "{stats}");
    let server = peers::tcp_server(&world.outside_path(), world.outside_ip.parse().unwrap(), &[8080]);
    assert!(tcp_from_sandbox(&env, "c3", outside, Cmd::Get(TEN_MB)).intact);
    drop(server);
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn tcp_reaches_the_outside_through_host_streams() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 44, true);
    let d = Daemon::start_in(&env, Some(&world.host), &["--nat-tcp-transitory-timeout", "5"]);
    // A container MTU below the host's: each side of the relay has its own MSS.
    d.ok(&["network", "create", "--subnet", "10.84.5.0/24", "--mtu", "1280", "out"]);
    d.ok(&["run", "--network", "out", "c1"]);
    let server = peers::tcp_server(&world.outside_path(), world.outside_ip.parse().unwrap(), &[8080]);
    let outside = addr(&world.outside_ip, 8080);

    // 10 MB each way; the server sees the host's address (the NAT worked).
    let got = tcp_from_sandbox(&env, "c1", outside, Cmd::Get(TEN_MB));
    assert!(got.first.starts_with(&format!("from={}:", world.host_ip)), "{got:?}");
    assert!(got.intact, "download corrupted: {got:?}");
    let put = tcp_from_sandbox(&env, "c1", outside, Cmd::Put(TEN_MB));
    assert!(put.first.starts_with(&format!("from={}:", world.host_ip)), "{put:?}");
    assert!(put.intact, "upload corrupted: {put:?}");

    // A refused connect reaches the container as a reset; an address nobody
    // answers for, as ICMP host unreachable (EHOSTUNREACH, 113).
    let first = tcp_from_sandbox(&env, "c1", addr(&world.outside_ip, 8081), Cmd::Get(1)).first;
    assert_eq!(first, "refused");
    let first = tcp_from_sandbox(&env, "c1", addr("198.18.44.3", 8080), Cmd::Get(1)).first;
    assert_eq!(first, "error 113");

    // `plexus nat` shows the connection while it is open, and not after.
    let slow = {
        let c1 = sb(&env, "c1");
        std::thread::spawn(move || {
            let key = plexus_sandbox::sock::NsKey::netns(&c1);
            let c = plexus_sandbox::sock::tcp_connect(key, outside, None, Duration::from_secs(5)).unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(&c), &mut line).unwrap();
            std::thread::sleep(Duration::from_secs(4));
            line
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let flows = nat_flows(&d);
    // (The unreachable address may still have a flow: the container's SYN
    // retransmissions open new attempts, each failing as the first did.)
    let server_addr = outside.to_string();
    let tcp: Vec<&Value> = flows
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["outside"] == server_addr.as_str())
        .collect();
    assert_eq!(tcp.len(), 1, "{flows:?}");
    assert_eq!(tcp[0]["state"], "established", "{flows:?}");
    let line = slow.join().unwrap();
    assert!(line.starts_with("from="), "{line}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while nat_flows(&d).iter().any(|f| f["outside"] == server_addr.as_str()) {
        assert!(Instant::now() < deadline, "TCP flow never went: {:?}", nat_flows(&d));
        std::thread::sleep(Duration::from_millis(300));
    }

    // An internal network never gets a TCP connection out.
    d.ok(&["network", "create", "--internal", "--subnet", "10.84.6.0/24", "int"]);
    d.ok(&["run", "--network", "int", "c2"]);
    let first = tcp_from_sandbox(&env, "c2", outside, Cmd::Get(1)).first;
    assert!(!first.starts_with("from="), "internal network got out: {first}");

    drop(server);
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn published_tcp_ports_keep_the_clients_address() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 45, true);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.7.0/24", "pubt"]);
    d.ok(&[
        "run",
        "--network",
        "pubt",
        "-p",
        "8080:80",
        "-p",
        "9000-9001:7000-7001/tcp",
        "web",
    ]);
    let server = peers::tcp_server(&sb(&env, "web"), Ipv4Addr::UNSPECIFIED, &[80, 7000, 7001]);
    let from_outside = |port: u16, cmd: Cmd, src: Option<u16>| {
        peers::tcp_client(&world.outside_path(), addr(&world.host_ip, port), cmd, src)
    };

    // A client outside: the container sees its real address; 10 MB each way.
    let got = from_outside(8080, Cmd::Get(TEN_MB), Some(41000));
    assert_eq!(got.first, format!("from={}:41000 port=80", world.outside_ip));
    assert!(got.intact, "download from the published port corrupted: {got:?}");
    let put = from_outside(8080, Cmd::Put(TEN_MB), None);
    assert!(put.first.starts_with(&format!("from={}:", world.outside_ip)), "{put:?}");
    assert!(put.intact, "upload to the published port corrupted: {put:?}");
    // A range maps each host port to its container port.
    for (host, container) in [(9000, 7000), (9001, 7001)] {
        let first = from_outside(host, Cmd::Get(1), None).first;
        assert!(first.ends_with(&format!("port={container}")), "{host}: {first}");
    }
    // 127.0.0.1 in the host reaches it (the container sees the gateway).
    let got = peers::tcp_client(&world.host_path(), addr("127.0.0.1", 8080), Cmd::Get(100_000), None);
    assert!(got.first.starts_with("from=10.84.7.1:"), "{got:?}");
    assert!(got.intact, "{got:?}");
    // Another container reaches it through the host's address (hairpin).
    d.ok(&["run", "--network", "pubt", "peer"]);
    let got = tcp_from_sandbox(&env, "peer", addr(&world.host_ip, 8080), Cmd::Get(100_000));
    assert!(got.first.starts_with(&format!("from={}:", world.host_ip)), "{got:?}");
    assert!(got.intact, "{got:?}");

    // A published port with no server in the container: the client is reset.
    d.ok(&["run", "--network", "pubt", "-p", "8090:90", "empty"]);
    let first = from_outside(8090, Cmd::Get(1), None).first;
    assert!(!first.starts_with("from="), "{first}");

    // The same host port again fails whole, and leaves nothing behind.
    let out = d.plexus(&["run", "--network", "pubt", "-p", "8080:80", "again"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(!d.plexus(&["sandbox", "inspect", "again"]).status.success());
    // A port another program listens on fails the same way.
    let blocker = peers::tcp_server(&world.host_path(), Ipv4Addr::UNSPECIFIED, &[8091]);
    let out = d.plexus(&["run", "--network", "pubt", "-p", "8091:80", "blocked"]);
    drop(blocker);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port is already allocated"),
        "{out:?}"
    );

    drop(server);
}
