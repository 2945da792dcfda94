//! `plexus bench --quick`: the benchmark's harness runs from a clean build
//! and produces a well-formed table, JSON lines and an SVG chart (the
//! figures themselves belong to the benchmark, not to a test).

mod common;

use std::process::Command;

/// Whether `program` runs here (the benchmark leaves its figures out without).
fn has(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn bench_quick_produces_a_well_formed_table() {
    let env = common::TestEnv::new();
    let results = env.state_dir.join("bench.jsonl");
    let chart = env.state_dir.join("bench.svg");
    let out = Command::new(common::plexus_bin())
        .args(["bench", "--quick", "--results"])
        .arg(&results)
        .arg("--svg")
        .arg(&chart)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let (text, paths) = stdout
        .split_once("Published port and outbound NAT")
        .unwrap_or_else(|| panic!("no table of the published port and outbound paths:\n{stdout}"));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    // Open vSwitch and vde_switch are measured where they are installed.
    let mut topologies = vec!["direct", "bridge", "plexus-veth", "plexus-xdp", "plexus-tap"];
    if Command::new("ovs-vswitchd").arg("--version").output().is_ok() {
        topologies.extend(["ovs", "ovs-afxdp"]);
    }
    if Command::new("vde_switch").arg("-v").output().is_ok() {
        topologies.push("vde");
    }
    assert_eq!(
        rows.len(),
        2 + topologies.len(),
        "header, rule, a row per topology:\n{text}"
    );
    let cells = |row: &str| -> Vec<String> { row.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect() };
    let header = cells(rows[0]);
    assert_eq!(header.len(), 11, "{text}");
    assert_eq!(header[0], "topology");
    for (row, topology) in rows[2..].iter().zip(topologies.iter().copied()) {
        let c = cells(row);
        assert_eq!(c.len(), 11, "{row}");
        assert_eq!(c[0], topology);
        // RTT and 64-byte frames/s are measured on every topology; the
        // bridge's ratios are 1.00.
        for col in [1, 3] {
            let median = c[col].split_whitespace().next().unwrap();
            let v: f64 = median
                .trim_end_matches(['k', 'M'])
                .parse()
                .unwrap_or_else(|_| panic!("{row}"));
            assert!(v > 0.0, "{row}");
            let ratio: f64 = c[col + 1].parse().unwrap_or_else(|_| panic!("{row}"));
            if topology == "bridge" {
                assert_eq!(ratio, 1.0, "{row}");
            }
        }
        // Only a switch process (Plexus, OVS, vde_switch) has CPU to count.
        let process = !matches!(topology, "direct" | "bridge");
        assert_eq!(c[5] == "-", !process, "{row}");
    }
    // The second table: a row per path, the kernel's DNAT and the daemon side
    // by side, the ratio, the senders' and the host's sockets' retransmits,
    // the daemon's CPU.
    let rows: Vec<&str> = paths.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 2 + 4, "header, rule, four paths:\n{paths}");
    let header = cells(rows[0]);
    assert_eq!(header[..3], ["path", "kernel-dnat", "plexus-daemon"], "{paths}");
    assert_eq!(header.len(), 7, "{paths}");
    assert!(header[5].starts_with("host's sockets' retransmits"), "{paths}");
    for (row, path) in rows[2..]
        .iter()
        .zip(["published port, in", "published port, -R", "outbound NAT", "short"])
    {
        let c = cells(row);
        assert_eq!(c.len(), 7, "{row}");
        assert!(c[0].starts_with(path), "{row}");
        let measured = if path == "short" { has("wrk") } else { has("iperf3") };
        if measured {
            for col in [1, 2] {
                let v: f64 = c[col]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('k')
                    .parse()
                    .unwrap_or_else(|_| panic!("{row}"));
                assert!(v > 0.0, "{row}");
            }
            let _: f64 = c[3].parse().unwrap_or_else(|_| panic!("ratio: {row}"));
            if path != "short" {
                // A count per peer; the kernel's DNAT has no TCP socket in H.
                let host: Vec<f64> = c[5]
                    .split(" / ")
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("host retransmits: {row}")))
                    .collect();
                assert_eq!(host.len(), 2, "{row}");
                assert_eq!(host[0], 0.0, "{row}");
            }
            let cores: f64 = c[6].parse().unwrap_or_else(|_| panic!("daemon CPU: {row}"));
            assert!(cores > 0.0 && cores < 4.0, "{row}");
        }
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "env");
    assert!(lines.iter().filter(|l| l["kind"] == "rep").count() >= 8);
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "summary" && l["topology"] == "plexus-veth" && l["metric"] == "pps_64")
    );
    // Per repetition, the generator offered at least what B received.
    let rep = |t: &str, m: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == "rep" && l["topology"] == t && l["metric"] == m)
            .and_then(|l| l["value"].as_f64())
            .unwrap_or_else(|| panic!("no {m} for {t}"))
    };
    let (sent, got) = (rep("plexus-veth", "pps_64_sent"), rep("plexus-veth", "pps_64"));
    assert!(sent > 0.0 && sent >= 0.95 * got, "sent {sent} received {got}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("plexus-tap") && svg.trim_end().ends_with("</svg>"));
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "rep" && l["topology"] == "plexus-daemon" && l["metric"] == "in_gbps")
            || !has("iperf3")
    );
    assert!(
        plexus_sandbox::netns::list()
            .unwrap()
            .iter()
            .all(|n| !n.starts_with("pxb") && !n.starts_with("pxp")),
        "bench left namespaces"
    );
}
