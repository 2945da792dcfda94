//! The picture of the network (`plexus daemon --metrics`, `GET /`) in a real
//! browser: headless Chromium, in the namespace of the daemon's loopback,
//! finds the test's endpoints, gateway and published port in the drawn
//! graph and the MAC table beside it, and sees the rate on an endpoint's
//! link rise while it sends; a screenshot is kept under the test's temp dir.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::chromium::Browser;
use common::net::TestNs;
use common::{Daemon, TestEnv, ns_path};
use plexus::diag::{self, PingOptions};
use plexus_sandbox::sock::NsKey;
use serde_json::Value;

/// c1's link in the graph: [frames/s, bits/s] as drawn, or null.
const C1_RATE: &str = "(() => { const g = document.querySelector('#graph g.link[data-endpoint=\"c1\"]'); \
     return g ? [Number(g.dataset.fps), Number(g.dataset.bps)] : null; })()";

#[test]
#[cfg_attr(not(px_chromium), ignore = "needs root, chromium and nsenter")]
fn chromium_draws_the_network_and_its_live_rates() {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &["--metrics", "127.0.0.1:9464"]);
    d.ok(&["network", "create", "--subnet", "10.67.0.0/24", "n1"]);
    d.ok(&["run", "--network", "n1", "-p", "18080:80", "c1"]);
    d.ok(&["run", "--network", "n1", "c2"]);
    let c1 = ns_path(&env.netns("c1"));
    assert!(common::peers::ping(&c1, Ipv4Addr::new(10, 67, 0, 3), 2));

    let mut b = Browser::open(&ns_path(&host.name), "http://127.0.0.1:9464/", 1400, 900);
    // The graph: both endpoints, the network's switch and gateway, the host.
    let (ok, drawn) = b.wait_for(
        "[...document.querySelectorAll('#graph g.endpoint, #graph g.switch, #graph g.gateway, #graph g.host')]\
         .map(g => g.getAttribute('class') + ':' + (g.dataset.name || g.dataset.network)).sort()",
        Duration::from_secs(20),
        |v| v.as_array().is_some_and(|a| a.len() >= 5),
    );
    assert!(ok, "the page drew {drawn}");
    for node in ["endpoint:c1", "endpoint:c2", "switch:n1", "gateway:n1", "host:host"] {
        assert!(
            drawn.as_array().unwrap().iter().any(|v| v == node),
            "{node} not in {drawn}"
        );
    }
    // The endpoints' addresses are drawn; c1's published port too.
    let text = b.eval("document.getElementById('graph').textContent");
    let text = text.as_str().unwrap();
    for want in ["10.67.0.2", "10.67.0.3", "10.67.0.1", "18080", "n1"] {
        assert!(text.contains(want), "{want} not drawn: {text}");
    }
    // The MAC table beside it has what `plexus fdb` has.
    let fdb: Value = d.json(&["fdb", "n1"]);
    let macs: Vec<String> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mac"].as_str().unwrap().to_owned())
        .collect();
    assert!(macs.len() >= 2, "{fdb}");
    let (ok, table) = b.wait_for(
        "document.getElementById('fdb').textContent",
        Duration::from_secs(5),
        |v| macs.iter().all(|m| v.as_str().is_some_and(|t| t.contains(m.as_str()))),
    );
    assert!(ok, "MAC table {table} lacks one of {macs:?}");

    // Idle: after a few refreshes, c1's link shows a small rate.
    let (ok, _) = b.wait_for(
        "Number(document.body.dataset.updates || 0)",
        Duration::from_secs(10),
        |v| v.as_u64().is_some_and(|n| n >= 3),
    );
    assert!(ok, "the page does not refresh itself");
    let idle = b.eval(C1_RATE);
    let idle_fps = idle[0]
        .as_f64()
        .unwrap_or_else(|| panic!("no rate on c1's link: {idle}"));
    assert!(idle_fps < 50.0, "an idle c1 at {idle_fps} frames/s");

    // Traffic: c1 pings c2 200 times a second with 1000-byte payloads.
    let pinger = std::thread::spawn(move || {
        let socket = diag::icmp_socket(NsKey::netns(&c1)).expect("ICMP socket");
        let opts = PingOptions {
            count: 1200,
            interval: Duration::from_millis(5),
            payload: 1000,
            ..PingOptions::default()
        };
        diag::ping(&socket, Ipv4Addr::new(10, 67, 0, 3), opts, |_| {}).expect("ping")
    });
    let (ok, busy) = b.wait_for(C1_RATE, Duration::from_secs(5), |v| {
        v[0].as_f64().is_some_and(|f| f > 150.0) && v[1].as_f64().is_some_and(|bps| bps > 1e6)
    });
    assert!(
        ok,
        "c1's link shows {busy} while it sends ~400 frames/s (idle: {idle_fps})"
    );
    let busy_class = b.eval("document.querySelector('#graph g.link[data-endpoint=\"c1\"]').getAttribute('class')");
    assert_eq!(busy_class, "link busy");
    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(png.len() > 10_000, "a {}-byte screenshot", png.len());
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("page-{}.png", env.tag));
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    let summary = pinger.join().unwrap();
    assert!(summary.received > 1000, "{summary:?}");
    // And down again once the pings stop.
    let (ok, after) = b.wait_for(C1_RATE, Duration::from_secs(5), |v| {
        v[0].as_f64().is_some_and(|f| f < 50.0)
    });
    assert!(ok, "c1's link still shows {after} after the pings");
}
