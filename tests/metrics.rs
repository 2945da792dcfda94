//! `plexus daemon --metrics`: the Prometheus text at `/metrics` parses, and
//! its counters are the ones `plexus stats --format json` shows, after real
//! traffic and crafted frames through the switch.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use common::net::TestNs;
use common::{Daemon, TestEnv, injector, ns_path, peers, random_frame, send_all};
use serde_json::Value;

/// `METHOD PATH` against the metrics listener inside namespace `ns`:
/// (status, body).
fn http(ns: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = plexus_sandbox::netns::run_in(&ns_path(ns), || TcpStream::connect("127.0.0.1:9464"))
        .unwrap()
        .expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Samples by `name{labels}`; panics on a line that is not the text format.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap();
            assert!(matches!(w.next(), Some("counter" | "gauge")), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "{name} sampled before its TYPE");
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad metric name {name}"
        );
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        out.insert(series.to_owned(), v);
    }
    out
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn metrics_parse_and_match_plexus_stats() {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &["--metrics", "127.0.0.1:9464"]);
    d.ok(&["network", "create", "--subnet", "10.65.0.0/24", "n1"]);
    d.ok(&["run", "--network", "n1", "c1"]);
    d.ok(&["run", "--network", "n1", "c2"]);
    assert!(peers::ping(&ns_path(&env.netns("c1")), Ipv4Addr::new(10, 65, 0, 3), 3));
    // Frames with forged source MACs: counted drops.
    let mut rng = rand::rng();
    let forged: Vec<Vec<u8>> = (0..5).map(|_| random_frame(&mut rng, [0xff; 6], 80)).collect();
    assert_eq!(send_all(&mut injector(&env, "c1"), &forged), 5);
    std::thread::sleep(Duration::from_millis(300));

    // The scrape between two `stats`: every counter of the scrape lies
    // between the two (equal to both when no frame came meanwhile; the
    // sandboxes' kernels may send one of their own at any time).
    let before = d.json(&["stats"]);
    let (status, text) = http(&host.name, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    let m = parse(&text);
    let after = d.json(&["stats"]);
    let ports = after.as_array().unwrap();
    assert_eq!(ports.len(), 2);
    let earlier = |p: &Value| {
        before
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["endpoint"] == p["endpoint"])
            .cloned()
            .unwrap()
    };
    let between = |what: &str, got: Option<f64>, lo: &Value, hi: &Value| {
        let (lo, hi) = (lo.as_u64().unwrap() as f64, hi.as_u64().unwrap() as f64);
        let got = got.unwrap_or_else(|| panic!("{what} missing from the scrape"));
        assert!(lo <= got && got <= hi, "{what}: scrape {got}, stats {lo} then {hi}");
    };
    for p in ports {
        let q = earlier(p);
        let labels = format!(
            "network=\"{}\",endpoint=\"{}\"",
            p["network"].as_str().unwrap(),
            p["endpoint"].as_str().unwrap()
        );
        for (metric, field) in [
            ("plexus_port_rx_frames_total", "rx_frames"),
            ("plexus_port_rx_bytes_total", "rx_bytes"),
            ("plexus_port_tx_frames_total", "tx_frames"),
            ("plexus_port_tx_bytes_total", "tx_bytes"),
        ] {
            let got = m.get(&format!("{metric}{{{labels}}}")).copied();
            between(&format!("{metric} of {labels}"), got, &q[field], &p[field]);
        }
        for (reason, n) in p["drops"].as_object().unwrap() {
            let got = m
                .get(&format!("plexus_port_drops_total{{{labels},reason=\"{reason}\"}}"))
                .copied();
            between(&format!("drops {reason} of {labels}"), got, &q["drops"][reason], n);
        }
    }
    // Each forged frame is dropped as spoofed, or as bad_src where its
    // random source MAC is a multicast one.
    let forged_drops: f64 = ["spoofed", "bad_src"]
        .iter()
        .map(|r| m[&format!("plexus_port_drops_total{{network=\"n1\",endpoint=\"c1\",reason=\"{r}\"}}")])
        .sum();
    assert!(forged_drops >= 5.0, "{forged_drops}");
    let fdb: Value = d.json(&["fdb", "n1"]);
    assert_eq!(
        m["plexus_fdb_entries{network=\"n1\"}"],
        fdb.as_array().unwrap().len() as f64
    );
    assert_eq!(m["plexus_switch_up"], 1.0);
    assert!(m.contains_key("plexus_switch_cpu_seconds_total"), "{text}");
    // Live rates: while c1 pings c2, `stats --watch` sees c1 send.
    let c1 = ns_path(&env.netns("c1"));
    let pinger = std::thread::spawn(move || peers::ping(&c1, Ipv4Addr::new(10, 65, 0, 3), 12));
    let out = d.ok(&["stats", "--watch", "0.5", "--count", "2", "--format", "json"]);
    assert!(pinger.join().unwrap(), "ping during the watch");
    let refreshes: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(refreshes.len(), 2, "{out}");
    let c1_rate = refreshes
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter())
        .filter(|p| p["endpoint"] == "c1")
        .map(|p| p["rx_frames_per_sec"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(c1_rate > 0.0, "{out}");
    // `stats` ends with the worker's cost per frame.
    let text = d.ok(&["stats"]);
    let footer = text.lines().last().unwrap();
    assert!(
        footer.starts_with("switch worker: ") && footer.contains(" frames received, "),
        "{text}"
    );
    assert!(d.json(&["info"])["switch"]["cpu_us"].is_u64());
    // Read-only, one path.
    assert_eq!(http(&host.name, "GET", "/nothing-here").0, 404);
    assert_eq!(http(&host.name, "POST", "/metrics").0, 405);
}
