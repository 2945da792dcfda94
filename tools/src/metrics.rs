//! `plexus daemon --metrics ADDR:PORT`: the switch's counters in the
//! Prometheus text format (version 0.0.4) at `GET /metrics`; the same
//! listener serves the picture of the network (`GET /`, see [`crate::page`]).
//!
//! Decisions:
//! - Read-only and pull-only: each scrape asks the controller for the same
//!   views `plexus stats`, `fdb`, `nat`, `endpoint ls` and `info` show, so
//!   the numbers agree with the CLI's; nothing is kept between scrapes.
//! - One thread (tiny_http on the given address; loopback is the expected
//!   place), answering one scrape at a time: a scrape is a few locks of the
//!   controller and one round trip to the switch, never the hot path.
//! - The switch worker's CPU time comes from the kernel's account of its
//!   thread (`/proc/self/task/TID/stat`, utime + stime), found by name.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::Context;
use plexus::{Controller, EndpointInfo, NatInfo, PortInfo};

/// The name the switch's worker thread carries (as the kernel truncates it).
const WORKER_COMM: &str = "plexus-dataplan";

/// Everything one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Per-port counters (`plexus stats`).
    pub ports: Vec<PortInfo>,
    /// MAC table sizes, per network name.
    pub fdb: Vec<(String, usize)>,
    /// NAT flows (`plexus nat`).
    pub nat: Vec<NatInfo>,
    /// Endpoints, for their published ports.
    pub endpoints: Vec<EndpointInfo>,
    /// The gateways' DNS counters.
    pub dns: Option<plexus_switch::dns::DnsStats>,
    /// The switch worker's CPU seconds (user + system).
    pub worker_cpu_secs: Option<f64>,
    /// The worker runs.
    pub switch_up: bool,
}

impl Snapshot {
    /// Takes one from the controller.
    pub fn take(ctrl: &Controller) -> Snapshot {
        let nets = ctrl.networks();
        Snapshot {
            ports: ctrl.stats().unwrap_or_default(),
            fdb: nets
                .iter()
                .filter_map(|n| {
                    let name = n.name().ok()?;
                    Some((name.clone(), ctrl.fdb_len(&name).ok()?))
                })
                .collect(),
            nat: ctrl.nat().unwrap_or_default(),
            endpoints: ctrl.endpoints().iter().filter_map(|e| e.info().ok()).collect(),
            dns: ctrl.dns_stats().ok().map(|(s, _)| s),
            worker_cpu_secs: worker_cpu_secs(),
            switch_up: ctrl.health().is_ok_and(|h| h.dead.is_none()),
        }
    }
}

/// CPU seconds of the switch's worker thread, from /proc.
pub fn worker_cpu_secs() -> Option<f64> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == WORKER_COMM))
        .and_then(|t| cpu_secs(&t.path().join("stat")))
}

/// User + system CPU seconds in a `/proc/.../stat` file (a process's or a
/// thread's).
pub fn cpu_secs(stat: &std::path::Path) -> Option<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let stat = std::fs::read_to_string(stat).ok()?;
    // Fields after the command's closing parenthesis: state is the 3rd
    // field of the line, utime the 14th and stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some((utime + stime) / ticks as f64)
}

/// A per-port counter: its metric name, help and field.
type PortCounter = (&'static str, &'static str, fn(&PortInfo) -> u64);

/// A label value, escaped as the text format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes one metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let port = |p: &PortInfo| format!("network=\"{}\",endpoint=\"{}\"", esc(&p.network), esc(&p.endpoint));
    let counters: [PortCounter; 6] = [
        (
            "plexus_port_rx_frames_total",
            "Frames received from the endpoint.",
            |p| p.rx_frames,
        ),
        ("plexus_port_rx_bytes_total", "Bytes received from the endpoint.", |p| {
            p.rx_bytes
        }),
        ("plexus_port_tx_frames_total", "Frames sent to the endpoint.", |p| {
            p.tx_frames
        }),
        ("plexus_port_tx_bytes_total", "Bytes sent to the endpoint.", |p| {
            p.tx_bytes
        }),
        (
            "plexus_port_tx_coalesced_total",
            "TCP segments sent to the endpoint folded into a super-frame the switch made.",
            |p| p.tx_coalesced,
        ),
        (
            "plexus_port_learn_table_full_total",
            "Source MACs not learned because the MAC table was full.",
            |p| p.learn_table_full,
        ),
    ];
    for (name, help, get) in counters {
        family(&mut out, name, "counter", help);
        for p in &s.ports {
            let _ = writeln!(out, "{name}{{{}}} {}", port(p), get(p));
        }
    }
    family(
        &mut out,
        "plexus_port_drops_total",
        "counter",
        "Frames dropped, by reason (plexus stats --help explains each).",
    );
    for p in &s.ports {
        for (reason, n) in &p.drops {
            let _ = writeln!(
                out,
                "plexus_port_drops_total{{{},reason=\"{}\"}} {n}",
                port(p),
                esc(reason)
            );
        }
    }
    family(
        &mut out,
        "plexus_fdb_entries",
        "gauge",
        "Entries of a network's MAC table.",
    );
    for (net, n) in &s.fdb {
        let _ = writeln!(out, "plexus_fdb_entries{{network=\"{}\"}} {n}", esc(net));
    }
    family(
        &mut out,
        "plexus_nat_flows",
        "gauge",
        "Outbound NAT flows, by protocol and TCP phase.",
    );
    let mut flows: std::collections::BTreeMap<(String, String), u64> = std::collections::BTreeMap::new();
    for f in &s.nat {
        let proto = serde_json::to_value(f.proto)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        let state = f
            .state
            .and_then(|st| serde_json::to_value(st).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "-".to_owned());
        *flows.entry((proto.unwrap_or_default(), state)).or_default() += 1;
    }
    for ((proto, state), n) in &flows {
        let _ = writeln!(
            out,
            "plexus_nat_flows{{proto=\"{}\",state=\"{}\"}} {n}",
            esc(proto),
            esc(state)
        );
    }
    family(
        &mut out,
        "plexus_published_ports",
        "gauge",
        "Published host ports, one series per binding (value 1).",
    );
    for e in &s.endpoints {
        for b in &e.ports {
            let _ = writeln!(
                out,
                "plexus_published_ports{{network=\"{}\",endpoint=\"{}\",host_ip=\"{}\",host_port=\"{}\",container_port=\"{}\",protocol=\"{}\"}} 1",
                esc(&e.network),
                esc(&e.name),
                b.host_ip,
                b.host_port,
                b.container_port,
                b.protocol
            );
        }
    }
    if let Some(d) = s.dns {
        family(
            &mut out,
            "plexus_dns_queries_total",
            "counter",
            "Queries to the gateways' DNS, by what became of them.",
        );
        for (kind, n) in [
            ("local", d.local),
            ("cached", d.cached),
            ("forwarded", d.forwarded),
            ("refused", d.refused),
        ] {
            let _ = writeln!(out, "plexus_dns_queries_total{{result=\"{kind}\"}} {n}");
        }
        family(
            &mut out,
            "plexus_dns_upstream_answers_total",
            "counter",
            "Upstream answers, by fate.",
        );
        for (kind, n) in [
            ("relayed", d.relayed),
            ("servfail", d.servfail),
            ("stray", d.stray),
            ("tcp_retry", d.tcp_retries),
        ] {
            let _ = writeln!(out, "plexus_dns_upstream_answers_total{{result=\"{kind}\"}} {n}");
        }
    }
    family(
        &mut out,
        "plexus_switch_up",
        "gauge",
        "1 while the switch's worker runs.",
    );
    let _ = writeln!(out, "plexus_switch_up {}", u8::from(s.switch_up));
    if let Some(cpu) = s.worker_cpu_secs {
        family(
            &mut out,
            "plexus_switch_cpu_seconds_total",
            "counter",
            "CPU time (user and system) of the switch's worker thread.",
        );
        let _ = writeln!(out, "plexus_switch_cpu_seconds_total {cpu}");
    }
    out
}

/// The text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `method path`: status, content type and body.
fn answer(ctrl: &Controller, method: &tiny_http::Method, url: &str) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or(url);
    if *method != tiny_http::Method::Get {
        return (
            405,
            TEXT_FORMAT,
            "read-only: GET /, /view.json or /metrics\n".to_owned(),
        );
    }
    match path {
        "/metrics" => (200, TEXT_FORMAT, render(&Snapshot::take(ctrl))),
        "/view.json" => (
            200,
            "application/json",
            serde_json::to_string(&crate::page::View::take(ctrl, worker_cpu_secs()))
                .unwrap_or_else(|_| "{}".to_owned()),
        ),
        _ => match crate::page::asset(path) {
            Some((kind, body)) => (200, kind, body.to_owned()),
            None => (
                404,
                TEXT_FORMAT,
                "not found: the page is at /, its data at /view.json, the metrics at /metrics\n".to_owned(),
            ),
        },
    }
}

/// The metrics listener (`/metrics`, and the page at `/`), on its thread.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `addr` and serves scrapes of `ctrl`.
    pub fn start(addr: SocketAddr, ctrl: Controller) -> anyhow::Result<MetricsServer> {
        let server =
            Arc::new(tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("metrics: listening on {addr}: {e}"))?);
        let thread = {
            let server = Arc::clone(&server);
            thread::Builder::new()
                .name("metrics".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        let (status, kind, body) = answer(&ctrl, request.method(), request.url());
                        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                        for (name, value) in [("Content-Type", kind), ("Content-Security-Policy", crate::page::CSP)] {
                            if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                                response.add_header(h);
                            }
                        }
                        let _ = request.respond(response);
                    }
                })
                .context("starting the metrics thread")?
        };
        log::info!("metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// Stops serving.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_a_header_per_family_and_escaped_labels() {
        let mut drops = std::collections::BTreeMap::new();
        drops.insert("spoofed".to_owned(), 3);
        let s = Snapshot {
            ports: vec![PortInfo {
                endpoint: "c\"1".into(),
                network: "n1".into(),
                io: "af_packet".into(),
                rx_frames: 10,
                rx_bytes: 1000,
                tx_frames: 9,
                tx_bytes: 900,
                tx_coalesced: 0,
                learn_table_full: 0,
                drops,
            }],
            fdb: vec![("n1".into(), 2)],
            switch_up: true,
            worker_cpu_secs: Some(1.5),
            ..Snapshot::default()
        };
        let text = render(&s);
        assert!(
            text.contains("plexus_port_rx_frames_total{network=\"n1\",endpoint=\"c\\\"1\"} 10\n"),
            "{text}"
        );
        assert!(text.contains("plexus_port_drops_total{network=\"n1\",endpoint=\"c\\\"1\",reason=\"spoofed\"} 3\n"));
        assert!(text.contains("plexus_fdb_entries{network=\"n1\"} 2\n"));
        assert!(text.contains("plexus_switch_cpu_seconds_total 1.5\n"));
        // Every sample's family has its TYPE line before it.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split_whitespace().next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} has no TYPE before it");
            }
        }
    }
}
