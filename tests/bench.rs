//! `plexus bench --quick`: the benchmark's harness runs from a clean build
//! and produces a well-formed table, JSON lines and an SVG chart (the
//! figures themselves belong to the benchmark, not to a test).

mod common;

use std::process::Command;

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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 2 + 4, "header, rule, four topologies:\n{text}");
    let cells = |row: &str| -> Vec<String> { row.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect() };
    let header = cells(rows[0]);
    assert_eq!(header.len(), 11, "{text}");
    assert_eq!(header[0], "topology");
    for (row, topology) in rows[2..].iter().zip(["direct", "bridge", "plexus-veth", "plexus-tap"]) {
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
        // Only a Plexus switch has CPU to count.
        assert_eq!(c[5] == "-", !topology.starts_with("plexus"), "{row}");
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
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("plexus-tap") && svg.trim_end().ends_with("</svg>"));
    assert!(
        plexus_sandbox::netns::list()
            .unwrap()
            .iter()
            .all(|n| !n.starts_with("pxb")),
        "bench left namespaces"
    );
}
