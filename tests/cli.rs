//! End-to-end tests of the `plexus` command line against a real `plexus daemon`:
//! the foundation's walk-through (with a daemon restart), its error reporting,
//! and the switch as the CLI shows it. They need root (ignored otherwise), and
//! need `target/debug/plexus` (`cargo test --workspace` builds it).
//!
//! Each test runs its own daemon on its own state directory, socket, namespace
//! and interface prefixes ([`TestEnv`]), so they run in parallel.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, TestEnv, expect_failure, injector, net, ns_path, peers, plexus_bin, random_frame, send_all};
use rand::Rng;
use serde_json::Value;

/// The names `ip netns list` would show.
fn netns_list() -> Vec<String> {
    plexus_sandbox::netns::list().unwrap()
}

/// The `NAME` column of an `ls` table (its second column).
fn names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// Pings from sandbox `from` (its namespace, as the daemon named it): true
/// if every one of `count` requests was answered.
fn ping(env: &TestEnv, from: &str, to: &str, count: u16) -> bool {
    peers::ping(&ns_path(&env.netns(from)), to.parse::<Ipv4Addr>().unwrap(), count)
}

/// What `plexus exec SANDBOX -- cat FILE` printed: `exec` enters the
/// sandbox, where `/proc/net` and `/sys` describe its own network.
fn cat_in(d: &Daemon, sandbox: &str, file: &str) -> String {
    d.ok(&["exec", sandbox, "--", "cat", file])
}

/// The address (without prefix) and MAC of an endpoint, from `endpoint inspect --format json`.
fn addr_and_mac(d: &Daemon, endpoint: &str) -> (String, String) {
    let e = d.json(&["endpoint", "inspect", endpoint]);
    (d.endpoint_ip(endpoint), e["mac"].as_str().expect("mac").to_owned())
}

/// The `stats --format json` entry of an endpoint.
fn port(d: &Daemon, endpoint: &str) -> Value {
    let stats = d.json(&["stats"]);
    stats
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no port of {endpoint} in {stats}"))
        .clone()
}

fn counter(p: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(p, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in {p}"))
}

fn assert_nothing_left(env: &TestEnv) {
    assert!(env.leftover_netns().is_empty(), "{:?}", env.leftover_netns());
    assert!(env.leftover_links().is_empty(), "{:?}", env.leftover_links());
}

/// The foundation's check: create, run, exec; restart the daemon; everything is
/// still there and works; remove it all and nothing is left.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn walkthrough_survives_a_daemon_restart() {
    let env = TestEnv::new();
    let mut d = Daemon::start(&env);

    let id = d.ok(&["network", "create", "--subnet", "10.99.0.0/24", "n1"]);
    assert!(
        id.trim().len() == 32 && id.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "{id:?}"
    );
    let sb_id = d.ok(&["run", "--network", "n1", "c1"]);
    assert_eq!(sb_id.trim().len(), 32, "{sb_id:?}");
    d.ok(&["run", "--network", "n1", "--type", "tap", "c2"]);
    // `exec` runs inside: the sandbox's own address and MAC.
    let local = cat_in(&d, "c1", "/proc/net/fib_trie");
    assert!(local.contains("10.99.0.2"), "{local}");
    let (_, c1_mac) = addr_and_mac(&d, "c1");
    assert_eq!(cat_in(&d, "c1", "/sys/class/net/eth0/address").trim(), c1_mac);
    assert!(ping(&env, "c1", "10.99.0.3", 1));
    assert!(netns_list().contains(&env.netns("c1")));

    let pid = d.pid();
    d.restart();
    assert_ne!(d.pid(), pid);

    assert_eq!(names(&d.ok(&["network", "ls"])), ["n1"]);
    assert_eq!(names(&d.ok(&["sandbox", "ls"])), ["c1", "c2"]);
    let ep = d.json(&["endpoint", "inspect", "c1"]);
    assert_eq!(ep["address"], "10.99.0.2/24", "{ep}");
    assert_eq!(ep["network"], "n1", "{ep}");
    assert_eq!(ep["sandbox"], "c1", "{ep}");
    assert_eq!(ep["ifname"], "eth0", "{ep}");
    assert_eq!(ep["kind"], "veth", "{ep}");
    assert_eq!(d.json(&["endpoint", "inspect", "c2"])["kind"], "tap");
    assert!(cat_in(&d, "c1", "/proc/net/fib_trie").contains("10.99.0.2"));
    // The restored switch forwards, veth to TAP.
    assert!(ping(&env, "c1", "10.99.0.3", 2));
    assert!(ping(&env, "c2", "10.99.0.2", 2));

    assert_eq!(d.ok(&["sandbox", "rm", "c1"]), "c1\n");
    assert_eq!(d.ok(&["sandbox", "rm", "c2"]), "c2\n");
    assert_eq!(d.ok(&["network", "rm", "n1"]), "n1\n");
    assert_eq!(d.json(&["network", "ls"]), Value::Array(vec![]));
    assert_eq!(d.json(&["endpoint", "ls"]), Value::Array(vec![]));
    assert!(!netns_list().iter().any(|n| n.starts_with(&env.tag)));
    assert_nothing_left(&env);
    d.stop();
}

/// Every refusal is one line on stderr and exit 1 (125 without a daemon), and
/// leaves nothing half-done; `--format json` prints parseable JSON.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn errors_are_one_line_and_nonzero() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);

    let e = d.fails(1, &["run", "--network", "ghost", "x"]);
    assert_eq!(e, "plexus: network ghost not found");
    d.ok(&["network", "create", "--subnet", "10.81.0.0/24", "e1"]);
    let e = d.fails(1, &["network", "create", "--subnet", "10.81.9.0/24", "e1"]);
    assert!(e.contains("network with name e1 already exists"), "{e}");
    let e = d.fails(1, &["network", "create", "--subnet", "10.81.2.1/24", "bad"]);
    assert!(e.contains("invalid CIDR \"10.81.2.1/24\""), "{e}");
    let e = d.fails(1, &["network", "create", "--mac-ageing", "0", "bad"]);
    assert!(e.contains("MAC ageing"), "{e}");

    d.ok(&["run", "--network", "e1", "c1"]);
    let e = d.fails(1, &["network", "rm", "e1"]);
    assert!(e.contains("network e1 has active endpoints (c1)"), "{e}");
    let e = d.fails(1, &["endpoint", "rm", "c1"]);
    assert!(e.contains("endpoint c1 is joined to sandbox c1"), "{e}");
    let e = d.fails(1, &["run", "--network", "e1", "--ip", "10.81.0.2", "c2"]);
    assert!(e.contains("address 10.81.0.2 is already allocated"), "{e}");
    // The failed run left no sandbox behind.
    assert_eq!(names(&d.ok(&["sandbox", "ls"])), ["c1"]);
    assert_eq!(env.leftover_netns(), [env.netns("c1")]);

    d.ok(&["network", "create", "--subnet", "10.81.1.0/30", "tiny"]);
    d.ok(&["endpoint", "create", "--network", "tiny", "t1"]);
    let e = d.fails(1, &["endpoint", "create", "--network", "tiny", "t2"]);
    assert!(e.contains("no available addresses"), "{e}");
    let e = d.fails(1, &["exec", "ghost", "--", "true"]);
    assert_eq!(e, "plexus: sandbox ghost not found");
    let e = d.fails(1, &["fdb", "ghost"]);
    assert_eq!(e, "plexus: network ghost not found");

    // A usage error is clap's: exit 2.
    assert_eq!(d.plexus(&["network", "create"]).status.code(), Some(2));
    assert_eq!(
        d.plexus(&["run", "--network", "e1", "--type", "macvlan", "x"])
            .status
            .code(),
        Some(2)
    );

    // JSON outputs parse and carry the objects.
    let nets = d.json(&["network", "ls"]);
    let nets: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nets, ["e1", "tiny"]);
    let tiny = d.json(&["network", "inspect", "tiny"]);
    assert_eq!(tiny["subnet"], "10.81.1.0/30");
    assert_eq!(tiny["endpoints"], serde_json::json!(["t1"]));
    let sbs = d.json(&["sandbox", "ls"]);
    assert_eq!(sbs[0]["name"], "c1");
    assert_eq!(sbs[0]["key"], format!("/run/netns/{}", env.netns("c1")));
    let sb = d.json(&["sandbox", "inspect", "c1"]);
    assert_eq!(sb["endpoints"], serde_json::json!(["c1"]));
    let eps = d.json(&["endpoint", "ls", "--network", "tiny"]);
    assert_eq!(eps[0]["address"], "10.81.1.2/30", "{eps}");
    assert_eq!(eps[0]["sandbox"], Value::Null);
    let info = d.json(&["info"]);
    assert_eq!(info["networks"], 2);
    assert_eq!(info["sandboxes"], 1);
    assert_eq!(info["pid"], d.pid());
    assert!(info["busy_poll_us"].is_u64(), "{info}");
    // The switch's worker runs (it served the network and endpoint creations).
    assert_eq!(info["switch"]["dead"], Value::Null, "{info}");
    assert!(info["switch"]["commands"].as_u64().is_some_and(|n| n > 0), "{info}");
    let text = d.ok(&["info"]);
    assert!(
        text.lines().any(|l| l.starts_with("Switch:") && l.contains("running;")),
        "{text}"
    );

    assert_eq!(d.ok(&["endpoint", "rm", "t1"]), "t1\n");
    d.ok(&["sandbox", "rm", "c1"]);
    d.ok(&["network", "rm", "e1"]);
    d.ok(&["network", "rm", "tiny"]);
    assert_nothing_left(&env);

    // No daemon on the socket: 125 and the hint.
    let nowhere = env.state_dir.join("nobody.sock");
    let out = Command::new(plexus_bin())
        .args(["network", "ls"])
        .env("PLEXUS_SOCKET", &nowhere)
        .output()
        .unwrap();
    let e = expect_failure(out, 125, &["network", "ls"]);
    assert!(e.contains("is `plexus daemon` running?"), "{e}");
    assert!(e.contains(&nowhere.display().to_string()), "{e}");
}

/// The switch through the CLI: veth and TAP sandboxes talk; `fdb` and `stats`
/// show it; a short MAC ageing empties the table; the switching options show in
/// `network inspect`.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn switch_tables_through_the_cli() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);

    d.ok(&["network", "create", "--subnet", "10.82.0.0/24", "sw"]);
    d.ok(&["run", "--network", "sw", "a"]);
    d.ok(&["run", "--network", "sw", "--type", "tap", "b"]);
    let (a_ip, a_mac) = addr_and_mac(&d, "a");
    let (b_ip, b_mac) = addr_and_mac(&d, "b");
    assert_eq!(d.json(&["endpoint", "inspect", "b"])["kind"], "tap");
    let link = net::link(&ns_path(&env.netns("b")), "eth0");
    assert_eq!(link.kind.as_deref(), Some("tun"), "{link:?}");
    // TUN/TAP devices say what they are in sysfs: tun_flags has IFF_TAP (2).
    let flags = cat_in(&d, "b", "/sys/class/net/eth0/tun_flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 0x3, 0x2, "not a TAP: tun_flags {flags:#x}");
    assert!(ping(&env, "a", &b_ip, 2), "a -> b");
    assert!(ping(&env, "b", &a_ip, 2), "b -> a");

    let fdb = d.json(&["fdb", "sw"]);
    let rows: Vec<(&str, &str)> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["mac"].as_str().unwrap(), r["endpoint"].as_str().unwrap()))
        .collect();
    assert!(rows.contains(&(a_mac.as_str(), "a")), "{fdb}");
    assert!(rows.contains(&(b_mac.as_str(), "b")), "{fdb}");
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "not sorted by MAC: {fdb}");
    let text = d.ok(&["fdb", "sw"]);
    assert!(text.starts_with("MAC "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&a_mac) && l.split_whitespace().nth(1) == Some("a")),
        "{text}"
    );

    for ep in ["a", "b"] {
        let p = port(&d, ep);
        assert_eq!(p["network"], "sw");
        for c in ["rx_frames", "rx_bytes", "tx_frames", "tx_bytes"] {
            assert!(counter(&p, &[c]) > 0, "{ep}: {c} is 0: {p}");
        }
        assert!(p["drops"].as_object().is_some_and(|m| m.contains_key("spoofed")), "{p}");
    }
    // How each port reads and writes: a veth host end is AF_PACKET by
    // default, a TAP endpoint a TAP fd.
    assert_eq!(port(&d, "a")["io"], "af_packet");
    assert_eq!(port(&d, "b")["io"], "tap");
    let text = d.ok(&["stats"]);
    assert!(text.starts_with("NETWORK  ENDPOINT  IO         RX FRAMES"), "{text}");
    // Two ports, then the worker's cost per frame.
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().last().unwrap().starts_with("switch worker: "), "{text}");
    assert_eq!(
        d.fails(1, &["stats", "--network", "ghost"]),
        "plexus: network ghost not found"
    );

    // Switching options, as given and as defaults.
    let sw = d.json(&["network", "inspect", "sw"]);
    assert_eq!(
        sw["switching"],
        serde_json::json!({"mac_ageing_secs": 300, "mac_table_size": 8192, "anti_spoofing": true})
    );
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.82.1.0/24",
        "--mac-ageing",
        "2",
        "--mac-table-size",
        "64",
        "--no-anti-spoofing",
        "age",
    ]);
    let age = d.json(&["network", "inspect", "age"]);
    assert_eq!(
        age["switching"],
        serde_json::json!({"mac_ageing_secs": 2, "mac_table_size": 64, "anti_spoofing": false})
    );
    let text = d.ok(&["network", "inspect", "age"]);
    for (key, want) in [
        ("MAC ageing:", "2s"),
        ("MAC table size:", "64"),
        ("Anti-spoofing:", "false"),
    ] {
        let l = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(l[key.len()..].trim(), want, "{text}");
    }

    // A 2 s ageing time: once the traffic stops, the table empties.
    d.ok(&["run", "--network", "age", "x"]);
    d.ok(&["run", "--network", "age", "--type", "tap", "y"]);
    let (_, x_mac) = addr_and_mac(&d, "x");
    let (y_ip, y_mac) = addr_and_mac(&d, "y");
    assert!(ping(&env, "x", &y_ip, 1));
    let fdb = d.json(&["fdb", "age"]);
    let mut rows: Vec<(&str, &str)> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["mac"].as_str().unwrap(), r["endpoint"].as_str().unwrap()))
        .collect();
    rows.sort_unstable();
    let mut want = vec![(x_mac.as_str(), "x"), (y_mac.as_str(), "y")];
    want.sort_unstable();
    assert_eq!(rows, want, "{fdb}");
    let stopped = Instant::now();
    loop {
        let fdb = d.json(&["fdb", "age"]);
        if fdb.as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "entries never aged out: {fdb}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(stopped.elapsed() >= Duration::from_secs(1), "aged out too early");
    // The other network's entries (300 s) are still there.
    assert!(d.json(&["fdb", "sw"]).as_array().unwrap().len() >= 2);
    // stats --network keeps to that network.
    let ports = d.json(&["stats", "--network", "age"]);
    let eps: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(eps, ["x", "y"]);

    for sb in ["a", "b", "x", "y"] {
        d.ok(&["sandbox", "rm", sb]);
    }
    d.ok(&["network", "rm", "sw"]);
    d.ok(&["network", "rm", "age"]);
    assert_nothing_left(&env);
}

/// A few thousand random frames into a port: the daemon drops and counts them,
/// keeps answering and keeps forwarding.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn daemon_survives_junk_frames() {
    let env = TestEnv::new();
    let d = Daemon::start(&env);

    d.ok(&["network", "create", "--subnet", "10.83.0.0/24", "junk"]);
    d.ok(&["run", "--network", "junk", "a"]);
    d.ok(&["run", "--network", "junk", "--type", "tap", "b"]);
    let (a_ip, _) = addr_and_mac(&d, "a");
    let (b_ip, b_mac) = addr_and_mac(&d, "b");
    assert!(ping(&env, "a", &b_ip, 1));
    let b_mac: Vec<u8> = b_mac.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    let b_mac: [u8; 6] = b_mac.try_into().unwrap();

    let mut rng = rand::rng();
    // Random bytes after b's MAC: random (often multicast) sources, spoofed
    // sources, garbage EtherTypes; and bare Ethernet headers.
    let mut frames: Vec<Vec<u8>> = (0..3000)
        .map(|_| {
            let len = rng.random_range(14..1500);
            random_frame(&mut rng, b_mac, len)
        })
        .collect();
    frames.extend((0..500).map(|_| random_frame(&mut rng, b_mac, 14)));
    let before = port(&d, "a");
    let b_before = port(&d, "b");
    let sent = send_all(&mut injector(&env, "a"), &frames);
    assert!(sent > 3000, "only {sent} injected");

    // The counters settle once the switch has read the burst.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = |p: &Value| -> u64 { p["drops"].as_object().unwrap().values().filter_map(Value::as_u64).sum() };
    let after = loop {
        let p = port(&d, "a");
        if dropped(&p) >= sent as u64 - 100 || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every injected frame is accounted for: read by the switch, or dropped by
    // the kernel on a full receive ring (counted as rx_overrun).
    let rx = counter(&after, &["rx_frames"]) - counter(&before, &["rx_frames"]);
    let overrun = counter(&after, &["drops", "rx_overrun"]) - counter(&before, &["drops", "rx_overrun"]);
    assert!(
        rx + overrun >= sent as u64 - 100,
        "the switch saw {rx} (+{overrun} overrun) of {sent}: {after}"
    );
    assert!(
        dropped(&after) >= sent as u64 - 100,
        "{} of {sent} dropped: {after}",
        dropped(&after)
    );
    assert!(counter(&after, &["drops", "spoofed"]) >= 500, "{after}");
    assert!(counter(&after, &["drops", "bad_src"]) >= 500, "{after}");
    let text = d.ok(&["stats"]);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("a"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("spoofed=") && line.contains("bad_src="), "{line}");
    // b got none of it.
    let b_after = port(&d, "b");
    assert!(
        counter(&b_after, &["tx_frames"]) - counter(&b_before, &["tx_frames"]) < 50,
        "{b_before} -> {b_after}"
    );

    // Still answering, still the same process, still forwarding.
    assert_eq!(d.json(&["info"])["pid"], d.pid());
    assert!(ping(&env, "a", &b_ip, 2));
    assert!(ping(&env, "b", &a_ip, 2));

    d.ok(&["sandbox", "rm", "a"]);
    d.ok(&["sandbox", "rm", "b"]);
    d.ok(&["network", "rm", "junk"]);
    assert_nothing_left(&env);
}
