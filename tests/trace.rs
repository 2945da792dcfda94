//! `plexus trace --from E --to IP`: a made-up packet through the switch's
//! own decisions, without sending it — and the same packet sent for real
//! meets the fate the trace announced.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::frames::{L2, tcp, udp};
use common::net::HostOutside;
use common::{Daemon, TestEnv, injector, ns_path, peers, send_all};
use plexus_switch::MacAddr;
use plexus_switch::wire::TcpFlags;
use serde_json::Value;

fn trace(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut all = vec!["trace"];
    all.extend(args);
    let v = d.json(&all);
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn drops(d: &Daemon, endpoint: &str, reason: &str) -> u64 {
    let stats: Value = d.json(&["stats"]);
    stats
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["endpoint"] == endpoint)
        .and_then(|p| p["drops"][reason].as_u64())
        .unwrap_or(0)
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn what_if_agrees_with_what_happens() {
    let env = TestEnv::new();
    let ho = HostOutside::new(&env, 73, false);
    let d = Daemon::start_in(&env, Some(&ho.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.68.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.69.0.0/24", "n2"]);
    d.ok(&["run", "--network", "n1", "c1"]);
    d.ok(&["run", "--network", "n1", "c2"]);
    d.ok(&["run", "--network", "n2", "c3"]);

    // Until c2 sent a frame its MAC is unknown (flooded); after a ping the
    // same packet is a MAC table hit.
    let steps = trace(&d, &["--from", "c1", "--to", "10.68.0.3", "--tcp", "80"]);
    assert!(
        steps[0].contains("c1 sends Tcp(80) 10.68.0.2 -> 10.68.0.3"),
        "{steps:?}"
    );
    let last = steps.last().unwrap();
    assert!(
        last.contains("flooded to 1 ports") || last.contains("forwarded to c2"),
        "{steps:?}"
    );
    assert!(peers::ping(&ns_path(&env.netns("c1")), Ipv4Addr::new(10, 68, 0, 3), 1));
    let steps = trace(&d, &["--from", "c1", "--to", "10.68.0.3", "--tcp", "80"]);
    assert!(
        steps.last().unwrap().contains("forwarded to c2 (MAC table hit)"),
        "{steps:?}"
    );
    // The traces below drop nothing for real: no drop counter moves.

    // The gateway answers ping; the outside goes through NAT; the host's
    // loopback and another network are refused.
    let steps = trace(&d, &["--from", "c1", "--to", "10.68.0.1", "--icmp"]);
    assert!(steps.last().unwrap().contains("the gateway answers it"), "{steps:?}");
    let steps = trace(&d, &["--from", "c1", "--to", &ho.outside_ip, "--udp", "53"]);
    assert!(steps.last().unwrap().contains("NAT: a new flow"), "{steps:?}");
    let steps = trace(&d, &["--from", "c1", "--to", "127.0.0.1", "--tcp", "22"]);
    assert_eq!(steps.last().unwrap(), "dropped: martian", "{steps:?}");
    let steps = trace(&d, &["--from", "c1", "--to", "10.69.0.2", "--tcp", "22"]);
    assert_eq!(steps.last().unwrap(), "dropped: isolated", "{steps:?}");
    let steps = trace(
        &d,
        &[
            "--from",
            "c1",
            "--to",
            "10.68.0.3",
            "--udp",
            "9",
            "--src-ip",
            "10.68.0.77",
        ],
    );
    assert_eq!(steps.last().unwrap(), "dropped: ip_spoofed", "{steps:?}");
    let steps = trace(&d, &["--from", "c1", "--to", "10.68.0.1", "--udp", "53"]);
    assert!(steps.last().unwrap().contains("DNS query"), "{steps:?}");
    for reason in ["martian", "isolated", "ip_spoofed"] {
        assert_eq!(drops(&d, "c1", reason), 0, "a trace counted a {reason} drop");
    }

    // The same packets for real: each meets the announced drop.
    let c1_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 68, 0, 2));
    let gw_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 68, 0, 1));
    let c2_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 68, 0, 3));
    let to_gw = L2 {
        src: c1_mac,
        dst: gw_mac,
    };
    let me = |port| SocketAddrV4::new(Ipv4Addr::new(10, 68, 0, 2), port);
    let real = [
        (
            tcp(
                &to_gw,
                me(40000),
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 22),
                TcpFlags::SYN,
                b"",
            ),
            "martian",
        ),
        (
            tcp(
                &to_gw,
                me(40001),
                SocketAddrV4::new(Ipv4Addr::new(10, 69, 0, 2), 22),
                TcpFlags::SYN,
                b"",
            ),
            "isolated",
        ),
        (
            udp(
                &L2 {
                    src: c1_mac,
                    dst: c2_mac,
                },
                SocketAddrV4::new(Ipv4Addr::new(10, 68, 0, 77), 40000),
                SocketAddrV4::new(Ipv4Addr::new(10, 68, 0, 3), 9),
                b"what",
            ),
            "ip_spoofed",
        ),
    ];
    for (frame, reason) in real {
        let before = drops(&d, "c1", reason);
        assert_eq!(send_all(&mut injector(&env, "c1"), std::slice::from_ref(&frame)), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while drops(&d, "c1", reason) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the real frame was not dropped as {reason}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A sender that does not exist, a destination nobody has.
    let e = d.fails(1, &["trace", "--from", "ghost", "--to", "10.68.0.3"]);
    assert!(e.contains("ghost"), "{e}");
    let steps = trace(&d, &["--from", "c1", "--to", "10.68.0.99"]);
    assert!(steps[0].contains("no endpoint has it"), "{steps:?}");
}

/// A DNS query for `name` (type A, recursion desired).
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn the_live_trace_says_what_became_of_each_frame() {
    use plexus::diag::{self, PingOptions};
    use plexus_sandbox::sock::NsKey;
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    let ho = HostOutside::new(&env, 74, false);
    let d = Daemon::start_in(&env, Some(&ho.host), &[]);
    // MACs age out after a second: with the sandboxes' IPv6 off (their
    // kernels' own reports and solicitations) and a quiet second, the
    // switch has forgotten both when the trace starts.
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.70.0.0/24",
        "--mac-ageing",
        "1",
        "n1",
    ]);
    d.ok(&["run", "--network", "n1", "c1"]);
    d.ok(&["run", "--network", "n1", "-p", "18090:80", "c2"]);
    for c in ["c1", "c2"] {
        plexus_sandbox::netns::run_in(&ns_path(&env.netns(c)), || {
            std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
        })
        .unwrap()
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut live = d
        .cmd(&["trace", "--network", "n1", "--count", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(live.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("capturing c1, c2"), "{first}");
    // A forged source address first (dropped before anything is learned
    // from it), then the gateway, then c2.
    let c1_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 70, 0, 2));
    let lie = udp(
        &L2 {
            src: c1_mac,
            dst: MacAddr::from_ipv4(Ipv4Addr::new(10, 70, 0, 3)),
        },
        SocketAddrV4::new(Ipv4Addr::new(10, 70, 0, 66), 40000),
        SocketAddrV4::new(Ipv4Addr::new(10, 70, 0, 3), 9),
        b"lie",
    );
    assert_eq!(send_all(&mut injector(&env, "c1"), &[lie]), 1);
    let c1 = ns_path(&env.netns("c1"));
    assert!(peers::ping(&c1, Ipv4Addr::new(10, 70, 0, 1), 2));
    assert!(peers::ping(&c1, Ipv4Addr::new(10, 70, 0, 3), 2));
    // Out through NAT, twice: a new flow, then that flow.
    let outside: Ipv4Addr = ho.outside_ip.parse().unwrap();
    assert!(peers::ping(&c1, outside, 2));
    // A DNS query to the gateway, answered by the switch.
    let query = udp(
        &L2 {
            src: c1_mac,
            dst: MacAddr::from_ipv4(Ipv4Addr::new(10, 70, 0, 1)),
        },
        SocketAddrV4::new(Ipv4Addr::new(10, 70, 0, 2), 40053),
        SocketAddrV4::new(Ipv4Addr::new(10, 70, 0, 1), 53),
        &dns_query("c2"),
    );
    assert_eq!(send_all(&mut injector(&env, "c1"), &[query]), 1);
    // A client of c2's published port (c2 listens on nothing: it resets).
    let _ = plexus_sandbox::netns::run_in(&ns_path(&ho.host), || {
        std::net::TcpStream::connect_timeout(&"127.0.0.1:18090".parse().unwrap(), Duration::from_secs(2))
    });
    // Enough frames to reach the count whatever the kernels add.
    let socket = diag::icmp_socket(NsKey::netns(&c1)).unwrap();
    let opts = PingOptions {
        count: 150,
        interval: Duration::from_millis(5),
        ..PingOptions::default()
    };
    let _ = diag::ping(&socket, Ipv4Addr::new(10, 70, 0, 3), opts, |_| {});
    let out = live.wait_with_output().unwrap();
    let mut rest = String::new();
    for l in err.lines() {
        rest.push_str(&l.unwrap());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{rest}\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200, "{text}");
    for want in [
        "c1 02:42:0a:46:00:02 > 02:42:0a:46:00:03 UDP 10.70.0.66:40000 > 10.70.0.3:9: dropped: ip_spoofed",
        "ARP: learned 02:42:0a:46:00:02 on c1, gateway ARP reply",
        "to c1 02:42:0a:46:00:01 > 02:42:0a:46:00:02 ARP: sent by the switch: gateway ARP reply",
        "ICMP 10.70.0.2 > 10.70.0.1: gateway echo reply",
        "ICMP 10.70.0.1 > 10.70.0.2: sent by the switch: gateway echo reply",
        "> ff:ff:ff:ff:ff:ff ARP: flooded to 1 ports",
        "ICMP 10.70.0.2 > 10.70.0.3: forwarded to c2 (MAC table hit)",
        "c2 02:42:0a:46:00:03 > 02:42:0a:46:00:02 ARP: learned 02:42:0a:46:00:03 on c2, forwarded to c1",
        &format!("ICMP 10.70.0.2 > {outside}: NAT new flow -> host socket to {outside}:0"),
        &format!("ICMP 10.70.0.2 > {outside}: NAT flow #"),
        &format!("ICMP {outside} > 10.70.0.2: sent by the switch: from outside, through NAT"),
        "UDP 10.70.0.2:40053 > 10.70.0.1:53: DNS query to the gateway",
        "UDP 10.70.0.1:53 > 10.70.0.2:40053: sent by the switch: DNS answer",
        "TCP 10.70.0.3:80 > 10.70.0.1:",
        ": published port conversation",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "no line has {want:?}:\n{text}");
    }
    assert!(rest.contains("200 lines, 0 dropped"), "{rest}");
    eprintln!("{text}");
}
