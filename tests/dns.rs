//! The DNS server at every network's gateway, with real resolvers inside
//! the sandboxes — glibc (`getent hosts`), busybox `nslookup`, `dig` — and a
//! real upstream (`dnsmasq`) in the hermetic "outside" namespace serving a
//! test zone that containers resolve through their gateway.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use common::dns::{big_txt, dnsmasq, upstream};
use common::net::HostOutside;
use common::{Daemon, TestEnv};
use serde_json::Value;

/// Runs `CMD` inside sandbox `sb` (its resolv.conf mounted over the host's).
fn exec(d: &Daemon, sb: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", sb, "--"];
    args.extend(cmd);
    let out = d.plexus(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short` of `query` (words: a name, or options and a name).
fn short(d: &Daemon, sb: &str, query: &str) -> Vec<String> {
    let mut args = vec!["dig", "+short", "+time=2", "+tries=1"];
    args.extend(query.split_whitespace());
    let out = exec(d, sb, &args);
    out.lines().map(str::to_owned).collect()
}

fn status(d: &Daemon, sb: &str, args: &[&str]) -> String {
    let mut all = vec!["dig", "+time=3", "+tries=1"];
    all.extend(args);
    let out = exec(d, sb, &all);
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| format!("no status in {out}"))
}

#[test]
#[cfg_attr(not(px_dns), ignore = "needs root, dig, dnsmasq and getent")]
fn the_gateway_answers_names_and_forwards_the_rest() {
    let env = TestEnv::new();
    let ho = HostOutside::new(&env, 71, false);
    let _dnsmasq = upstream(&env, &ho);
    let upstream_arg = ho.outside_ip.clone();
    let mut d = Daemon::start_in(&env, Some(&ho.host), &["--dns-upstream", &upstream_arg]);
    d.ok(&["network", "create", "--subnet", "10.61.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.62.0.0/24", "n2"]);
    d.ok(&["network", "create", "--subnet", "10.63.0.0/24", "--internal", "n3"]);
    d.ok(&["run", "--network", "n1", "--alias", "web", "--alias", "pool", "c1"]);
    d.ok(&["run", "--network", "n1", "--alias", "pool", "c2"]);
    d.ok(&["run", "--network", "n2", "c3"]);
    d.ok(&["run", "--network", "n3", "c4"]);
    // c1 is on n2 too: it sees n2's names, c2 does not.
    d.ok(&["endpoint", "create", "--network", "n2", "c1b"]);
    d.ok(&["endpoint", "join", "--alias", "db", "c1b", "c1"]);
    let (c1, c2, c3) = ("10.61.0.2", "10.61.0.3", "10.62.0.2");

    // Sandboxes get their gateway as nameserver.
    let sb: Value = d.json(&["sandbox", "inspect", "c2"]);
    let resolv = std::fs::read_to_string(sb["resolv_conf_path"].as_str().unwrap()).unwrap();
    assert!(resolv.starts_with("nameserver 10.61.0.1\n"), "{resolv}");

    // glibc, busybox and dig resolve local names.
    let getent = exec(&d, "c1", &["getent", "hosts", "c2"]);
    assert_eq!(getent.split_whitespace().collect::<Vec<_>>(), [c2, "c2"]);
    let nslookup = exec(&d, "c2", &["busybox", "nslookup", "web"]);
    assert!(nslookup.contains(&format!("Address: {c1}")), "{nslookup}");
    assert_eq!(short(&d, "c2", "c1.n1"), [c1]);
    assert_eq!(short(&d, "c2", "WEB.N1"), [c1]);
    let ptr = exec(&d, "c1", &["dig", "+short", "-x", c2]);
    assert_eq!(ptr.trim(), "c2.");
    // Over TCP too: local, reverse and forwarded names.
    assert_eq!(short(&d, "c2", "+tcp c1"), [c1]);
    let ptr = exec(&d, "c1", &["dig", "+short", "+tcp", "-x", c2]);
    assert_eq!(ptr.trim(), "c2.");
    // A shared alias: every address, the first in turn.
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..6 {
        let got = short(&d, "c3", "pool.n1");
        let got_c1 = short(&d, "c1", "pool");
        assert_eq!(got_c1.len(), 2, "{got_c1:?}");
        firsts.insert(got_c1[0].clone());
        assert!(
            got.is_empty() || !got.iter().any(|a| a.starts_with("10.61.")),
            "c3 is not on n1: {got:?}"
        );
    }
    assert_eq!(firsts.len(), 2, "round robin: {firsts:?}");
    // Names of a network the querier is not on stay there.
    assert_eq!(short(&d, "c1", "c3"), [c3]);
    assert!(!short(&d, "c2", "c3").contains(&c3.to_owned()));
    // An alias given at join, on n2: c3 finds it, n1's containers do not.
    assert_eq!(short(&d, "c3", "db.n2"), ["10.62.0.3"]);
    assert!(!short(&d, "c2", "db").contains(&"10.62.0.3".to_owned()));

    // Everything else: forwarded to dnsmasq (the test zone), NXDOMAIN relayed.
    assert_eq!(short(&d, "c2", "www.zone.test"), ["203.0.113.80"]);
    assert_eq!(short(&d, "c1", "+tcp www.zone.test"), ["203.0.113.80"]);
    assert_eq!(status(&d, "c2", &["+tcp", "tcpnosuch.zone.test"]), "NXDOMAIN");
    // A large answer: truncated over UDP (the client's 512 bytes), whole over
    // TCP — the gateway asks the upstream again over TCP when its UDP
    // answer was truncated for a TCP client.
    let udp = exec(
        &d,
        "c2",
        &[
            "dig",
            "+noedns",
            "+ignore",
            "+time=3",
            "+tries=1",
            "TXT",
            "big.zone.test",
        ],
    );
    assert!(udp.contains("flags: qr tc") || udp.contains(" tc "), "{udp}");
    let tcp = short(&d, "c2", "+tcp +noedns TXT big.zone.test");
    let want: Vec<String> = big_txt().iter().map(|t| format!("\"{t}\"")).collect();
    assert_eq!(tcp, [want.join(" ")], "the whole TXT over TCP");
    assert_eq!(status(&d, "c2", &["nosuch.zone.test"]), "NXDOMAIN");
    let got = exec(&d, "c1", &["getent", "hosts", "www.zone.test"]);
    assert!(got.starts_with("203.0.113.80"), "{got}");
    // An internal network answers its own names and forwards nothing.
    assert_eq!(short(&d, "c4", "c4"), ["10.63.0.2"]);
    assert_eq!(status(&d, "c4", &["www.zone.test"]), "REFUSED");

    // `plexus dns` lists what n1 answers.
    let names = d.json(&["dns", "n1"]);
    let listed: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["c1", "c1.n1", "c2", "pool", "pool.n1", "web", "web.n1"] {
        assert!(listed.contains(&n), "{n} not in {listed:?}");
    }
    assert!(!listed.contains(&"c3"), "{listed:?}");

    // A name that leaves stops resolving at once; a restart answers the same.
    d.ok(&["sandbox", "rm", "c2"]);
    assert_eq!(short(&d, "c1", "pool"), [c1]);
    assert!(!short(&d, "c1", "c2").contains(&c2.to_owned()));
    d.restart();
    assert_eq!(short(&d, "c1", "web"), [c1]);
    assert_eq!(short(&d, "c1", "c3"), [c3]);

    // Bad input is dropped and counted, never answered wrongly, and the
    // gateway keeps serving.
    let gw = SocketAddrV4::new(Ipv4Addr::new(10, 61, 0, 1), 53);
    let sock = plexus_sandbox::netns::run_in(&common::ns_path(&env.netns("c1")), || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    for junk in [&b"\x01"[..], &[0u8; 11], &[0x12, 0x34, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0]] {
        sock.send_to(junk, gw).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = d.json(&["stats", "--network", "n1"]);
    let drops: u64 = stats
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["drops"]["dns_malformed"].as_u64())
        .sum();
    assert_eq!(drops, 3, "{stats}");
    assert_eq!(short(&d, "c1", "web"), [c1]);
    // `info` shows the upstream and what the DNS did (since the restart).
    let dns = &d.json(&["info"])["dns"];
    assert_eq!(dns["upstreams"], serde_json::json!([format!("{}:53", ho.outside_ip)]));
    assert!(dns["local"].as_u64().unwrap() >= 3, "{dns}");
}

#[test]
#[cfg_attr(not(px_dns), ignore = "needs root, dig, dnsmasq and getent")]
fn a_loopback_upstream_and_the_sandboxes_own_resolver_settings() {
    let env = TestEnv::new();
    let ho = HostOutside::new(&env, 72, false);
    // The upstream on the daemon's own loopback, as systemd-resolved's
    // 127.0.0.53 would be: reached because queries leave as the daemon's
    // sockets, while containers can never reach that loopback themselves.
    let _dnsmasq = dnsmasq(&env, &ho.host_path(), "127.0.0.1", 5353);
    let d = Daemon::start_in(&env, Some(&ho.host), &["--dns-upstream", "127.0.0.1:5353"]);
    d.ok(&["network", "create", "--subnet", "10.64.0.0/24", "n1"]);
    d.ok(&["run", "--network", "n1", "c1"]);
    assert_eq!(short(&d, "c1", "www.zone.test"), ["203.0.113.80"]);
    let refused = exec(
        &d,
        "c1",
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            "-p",
            "5353",
            "@127.0.0.1",
            "www.zone.test",
        ],
    );
    assert!(
        !refused.contains("203.0.113.80"),
        "a container reached the host's loopback: {refused}"
    );
    // --dns-search and --dns-option as in docker run; the gateway stays the
    // nameserver, and the search list completes a short name.
    d.ok(&[
        "run",
        "--network",
        "n1",
        "--dns-search",
        "zone.test",
        "--dns-option",
        "ndots:1",
        "c2",
    ]);
    let sb: Value = d.json(&["sandbox", "inspect", "c2"]);
    let resolv = std::fs::read_to_string(sb["resolv_conf_path"].as_str().unwrap()).unwrap();
    assert!(resolv.starts_with("nameserver 10.64.0.1\n"), "{resolv}");
    assert!(
        resolv.contains("search zone.test\n") && resolv.contains("options ndots:1\n"),
        "{resolv}"
    );
    let got = exec(&d, "c2", &["getent", "hosts", "www"]);
    assert!(got.starts_with("203.0.113.80"), "{got}");
    // --dns: another nameserver instead of the gateway.
    d.ok(&["run", "--network", "n1", "--dns", "192.0.2.53", "c3"]);
    let sb: Value = d.json(&["sandbox", "inspect", "c3"]);
    let resolv = std::fs::read_to_string(sb["resolv_conf_path"].as_str().unwrap()).unwrap();
    assert!(
        resolv.starts_with("nameserver 192.0.2.53\n") && !resolv.contains("10.64.0.1"),
        "{resolv}"
    );
    let e = d.fails(1, &["run", "--network", "n1", "--dns", "not-an-ip", "c4"]);
    assert!(e.contains("dns"), "{e}");
}
