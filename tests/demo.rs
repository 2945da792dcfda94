//! The main job and the bare switch, run as a user runs them: `plexus demo`
//! and `plexus switch IFACE IFACE` as child processes. They need root.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestEnv, plexus_bin, run_ok};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn plexus() -> Command {
    Command::new(plexus_bin())
}

#[test]
fn demo_pings_transfers_shows_tables_and_cleans_up() {
    require_root!();
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
        assert!(text.contains("3 packets transmitted, 3 received"), "{text}");
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
    let left = run_ok(Command::new("ip").args(["netns", "list"]));
    assert!(
        !left.lines().any(|l| l.starts_with("pxd")),
        "the demo left namespaces: {left}"
    );
    let links = run_ok(Command::new("ip").args(["-o", "link"]));
    assert!(!links.contains(": pxd"), "the demo left links: {links}");
}

#[test]
fn bare_switch_forwards_between_existing_interfaces_and_stops_on_sigterm() {
    require_root!();
    let env = TestEnv::new();
    let ns = |s: &str| format!("{}-{s}", env.tag);
    let host = |s: &str| format!("{}h{s}", env.tag);
    for (s, ip) in [("a", "10.79.0.1/24"), ("b", "10.79.0.2/24")] {
        run_ok(Command::new("ip").args(["netns", "add", &ns(s)]));
        run_ok(Command::new("ip").args([
            "link",
            "add",
            &host(s),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns(s),
        ]));
        run_ok(Command::new("ip").args(["link", "set", &host(s), "up"]));
        run_ok(Command::new("ip").args(["-n", &ns(s), "addr", "add", ip, "dev", "eth0"]));
        run_ok(Command::new("ip").args(["-n", &ns(s), "link", "set", "eth0", "up"]));
    }
    let sw = plexus()
        .args(["switch", &host("a"), &host("b")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ping = |n: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns("a"),
                "ping",
                "-c",
                n,
                "-i",
                "0.2",
                "-W",
                "2",
                "10.79.0.2",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping("1") {
        assert!(Instant::now() < deadline, "no connectivity through plexus switch");
    }
    assert!(ping("3"));
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
    for s in ["a", "b"] {
        let _ = Command::new("ip").args(["link", "del", &host(s)]).output();
        let _ = Command::new("ip").args(["netns", "del", &ns(s)]).output();
    }
}
