//! The main job and the bare switch, run as a user runs them: `plexus demo`
//! and `plexus switch IFACE IFACE` as child processes. They need root.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::net::{TestNs, netlink, veth_between};
use common::{TestEnv, peers, plexus_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_sandbox::netns;

fn plexus() -> Command {
    Command::new(plexus_bin())
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn demo_pings_transfers_shows_tables_and_cleans_up() {
    for kind in ["veth", "mixed"] {
        let out = plexus()
            .args(["demo", "--seconds", "1", "--type", kind])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("3 packets transmitted, 3 received, 0% packet loss"),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("64 bytes from ")).count(),
            3,
            "{text}"
        );
        assert!(text.contains("rtt min/avg/max/mdev = "), "{text}");
        let rate = text
            .lines()
            .find_map(|l| l.strip_prefix("moved "))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no rate line: {text}"));
        assert!(rate > 0.05, "{kind}: {rate} Gbit/s");
        // The MAC table lists both sandboxes' MACs; both ports counted traffic.
        let fdb: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("02:42:")).collect();
        assert_eq!(fdb.len(), 2, "{text}");
        assert!(
            fdb.iter().any(|l| l.contains("alpha")) && fdb.iter().any(|l| l.contains("beta")),
            "{text}"
        );
        assert!(text.contains("removed the sandboxes"), "{text}");
    }
    let left = netns::list().unwrap();
    assert!(
        !left.iter().any(|n| n.starts_with("pxd")),
        "the demo left namespaces: {left:?}"
    );
    let links = common::net::links(std::path::Path::new("/proc/self/ns/net"));
    assert!(
        !links.iter().any(|l| l.name.starts_with("pxd")),
        "the demo left links: {links:?}"
    );
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn bare_switch_forwards_between_existing_interfaces_and_stops_on_sigterm() {
    let env = TestEnv::new();
    let ns = |s: &str| format!("{}-{s}", env.tag);
    let host = |s: &str| format!("{}h{s}", env.tag);
    let here = std::path::Path::new("/proc/self/ns/net");
    let mut spaces = Vec::new();
    for (s, ip) in [("a", "10.79.0.1/24"), ("b", "10.79.0.2/24")] {
        let space = TestNs::new(&ns(s));
        veth_between(here, &host(s), None, &space.path(), "eth0", Some(ip.parse().unwrap()));
        spaces.push(space);
    }
    let sw = plexus()
        .args(["switch", &host("a"), &host("b")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ping = |n: u16| peers::ping(&spaces[0].path(), Ipv4Addr::new(10, 79, 0, 2), n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(1) {
        assert!(Instant::now() < deadline, "no connectivity through plexus switch");
    }
    assert!(ping(3));
    kill(Pid::from_raw(i32::try_from(sw.id()).unwrap()), Signal::SIGTERM).unwrap();
    let out = sw.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("virtio-net header on"), "{log}");
    assert!(log.contains("SIGTERM, stopping"), "{log}");
    let rx_line = log
        .lines()
        .find(|l| l.trim_start().starts_with(&host("a")))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!rx_line.contains("rx 0 frames"), "{rx_line}");
    // Refuses a missing interface with one clear line.
    let bad = plexus().args(["switch", &host("a"), "nonexistent0"]).output().unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("plexus: ") && err.contains("nonexistent0") && err.lines().count() == 1,
        "{err}"
    );
    let mut nl = netlink(here);
    for s in ["a", "b"] {
        if let Ok(l) = nl.link(&host(s)) {
            let _ = nl.delete_link(l.index);
        }
    }
}
