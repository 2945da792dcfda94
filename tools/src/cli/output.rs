//! Human output of the CLI: tables for `ls`, `Key: value` blocks for `inspect`
//! and `info`, pretty JSON for `--format json`.
//!
//! Decisions: empty values print as `-`; ids are cut to 12 hex digits in tables
//! (as docker does) and shown whole elsewhere; stdout closed early (`| head`) is
//! not an error.

use std::io::{ErrorKind, Write};

use clap::{Args, ValueEnum};

use plexus::{EndpointInfo, FdbInfo, NatInfo, NetworkInfo, PortInfo, SandboxInfo};
use serde::Serialize;

use plexus::api::{DaemonInfo, SwitchHealth};

/// Output format of `ls`, `inspect`, `info`, `fdb`, `stats` and `nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A table (ls, fdb, stats, nat) or `Key: value` lines (inspect, info).
    #[default]
    #[value(alias = "table")]
    Text,
    /// The API's JSON result, pretty-printed.
    Json,
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Prints `v` as JSON or with `text`.
pub fn show<T: serde::Serialize>(format: Format, v: &T, text: impl Fn(&T) -> String) -> anyhow::Result<u8> {
    let s = match format {
        Format::Json => json(v)?,
        Format::Text => text(v),
    };
    print(&s)?;
    Ok(0)
}

/// Prints a created object's id.
pub fn print_id(id: &str) -> anyhow::Result<u8> {
    print(&format!("{id}\n"))?;
    Ok(0)
}

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(anyhow::Error::from(e).context("writing to stdout")),
        _ => Ok(()),
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

fn or_dash(s: Option<impl ToString>) -> String {
    s.map(|v| v.to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Columns aligned with two spaces; no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<w$} {v}\n", format!("{k}:")))
        .collect()
}

pub fn networks_table(nets: &[NetworkInfo]) -> String {
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                short_id(&n.id),
                n.name.clone(),
                n.driver.clone(),
                or_dash(n.subnet),
                or_dash(n.gateway),
                n.endpoints.len().to_string(),
                or_dash(n.engine.map(plexus::Engine::as_str)),
            ]
        })
        .collect();
    table(
        &[
            "NETWORK ID",
            "NAME",
            "DRIVER",
            "SUBNET",
            "GATEWAY",
            "ENDPOINTS",
            "ENGINE",
        ],
        &rows,
    )
}

pub fn network(n: &NetworkInfo) -> String {
    key_values(&[
        ("Name", n.name.clone()),
        ("ID", n.id.clone()),
        ("Driver", n.driver.clone()),
        ("Engine", or_dash(n.engine.map(plexus::Engine::as_str))),
        ("Subnet", or_dash(n.subnet)),
        ("IP range", or_dash(n.ip_range)),
        ("Gateway", or_dash(n.gateway)),
        ("Internal", n.internal.to_string()),
        ("MTU", n.mtu.to_string()),
        ("MAC ageing", format!("{}s", n.switching.mac_ageing_secs)),
        ("MAC table size", n.switching.mac_table_size.to_string()),
        ("Anti-spoofing", n.switching.anti_spoofing.to_string()),
        ("Endpoints", list(&n.endpoints)),
    ])
}

pub fn sandboxes_table(sbs: &[SandboxInfo]) -> String {
    let rows: Vec<Vec<String>> = sbs
        .iter()
        .map(|s| {
            vec![
                short_id(&s.id),
                s.name.clone(),
                s.hostname.clone(),
                list(&s.endpoints),
                s.key
                    .as_ref()
                    .map_or_else(|| "host".to_owned(), |k| k.display().to_string()),
            ]
        })
        .collect();
    table(&["SANDBOX ID", "NAME", "HOSTNAME", "ENDPOINTS", "KEY"], &rows)
}

pub fn sandbox(s: &SandboxInfo) -> String {
    key_values(&[
        ("Name", s.name.clone()),
        ("ID", s.id.clone()),
        (
            "Key",
            s.key.as_ref().map_or_else(
                || "host (no namespace of its own)".to_owned(),
                |k| k.display().to_string(),
            ),
        ),
        ("Hostname", s.hostname.clone()),
        ("Domainname", or_dash(s.domainname.as_deref())),
        ("Hosts file", s.hosts_path.display().to_string()),
        ("resolv.conf", s.resolv_conf_path.display().to_string()),
        ("Endpoints", list(&s.endpoints)),
    ])
}

/// The sandbox an endpoint is in: a Plexus sandbox's name, or for an
/// engine's sandbox `ENGINE:KEY_NAME` (Docker's key ends in its sandbox id).
fn where_joined(e: &EndpointInfo) -> String {
    match (&e.sandbox, &e.external_sandbox, e.engine) {
        (Some(s), _, _) => s.clone(),
        (None, Some(key), engine) => format!(
            "{}:{}",
            engine.map_or("external", plexus::Engine::as_str),
            key.file_name()
                .map_or_else(|| key.display().to_string(), |n| n.to_string_lossy().into_owned())
        ),
        (None, None, _) => "-".into(),
    }
}

pub fn endpoints_table(eps: &[EndpointInfo]) -> String {
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|e| {
            vec![
                short_id(&e.id),
                e.name.clone(),
                e.network.clone(),
                e.kind.to_string(),
                or_dash(e.address),
                or_dash(e.mac),
                where_joined(e),
                or_dash(e.ifname.as_deref()),
                ports(e),
            ]
        })
        .collect();
    table(
        &[
            "ENDPOINT ID",
            "NAME",
            "NETWORK",
            "TYPE",
            "ADDRESS",
            "MAC",
            "SANDBOX",
            "IFNAME",
            "PORTS",
        ],
        &rows,
    )
}

pub fn endpoint(e: &EndpointInfo) -> String {
    key_values(&[
        ("Name", e.name.clone()),
        ("ID", e.id.clone()),
        ("Network", e.network.clone()),
        ("Address", or_dash(e.address)),
        ("MAC", or_dash(e.mac)),
        ("Gateway", or_dash(e.gateway)),
        ("Kind", e.kind.to_string()),
        ("Host interface", or_dash(Some(&e.host_ifname))),
        ("Sandbox", where_joined(e)),
        ("Interface", or_dash(e.ifname.as_deref())),
        ("Ports", ports(e)),
    ])
}

/// An endpoint's published ports as `docker ps` shows them
/// (`0.0.0.0:8053->53/udp, ...`), or `-`.
pub fn ports(e: &EndpointInfo) -> String {
    list(&e.ports.iter().map(ToString::to_string).collect::<Vec<_>>())
}

pub fn daemon_info(i: &DaemonInfo) -> String {
    let mut out = key_values(&[
        ("Version", i.version.clone()),
        ("API", i.api.to_string()),
        ("PID", i.pid.to_string()),
        ("Mode", format!("{} ({})", i.mode.as_str(), i.mode_reason)),
        ("State dir", i.state_dir.display().to_string()),
        ("Socket", i.socket.display().to_string()),
        (
            "Docker plugin",
            i.docker_plugin
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
        ),
        ("Drivers", list(&i.drivers)),
        ("Netns prefix", i.netns_prefix.clone()),
        ("Ifname prefix", i.ifname_prefix.clone()),
        ("Busy poll", format!("{}us", i.busy_poll_us)),
        ("Rx steering", i.rx_steering.clone()),
        ("Veth I/O", i.veth_io.clone()),
        (
            "NAT flows",
            format!(
                "at most {} ({} per endpoint)",
                i.nat.max_flows,
                i.nat.max_flows_per_endpoint.map_or_else(
                    || match i.fds {
                        Some(f) => format!("a fair share, now {}", f.per_endpoint),
                        None => "a fair share".to_owned(),
                    },
                    |n| format!("at most {n}")
                )
            ),
        ),
        (
            "NAT timeouts",
            format!(
                "udp {}s, icmp {}s, tcp {}s (handshake/closing {}s)",
                i.nat.udp_timeout_secs,
                i.nat.icmp_timeout_secs,
                i.nat.tcp_timeout_secs,
                i.nat.tcp_transitory_timeout_secs
            ),
        ),
        (
            "Open files",
            i.fds.map_or_else(
                || "-".to_owned(),
                |f| {
                    format!(
                        "limit {} (hard {}), {} kept for the API and the daemon; budget {}: {} ports, {} listeners, \
                         {} flows",
                        f.limit, f.hard_limit, f.reserved, f.budget, f.ports, f.listeners, f.flows
                    )
                },
            ),
        ),
        (
            "API clients",
            i.api_limits.map_or_else(
                || "-".to_owned(),
                |a| {
                    format!(
                        "{} of at most {}, idle timeout {}s; {} refused, {} closed idle",
                        a.clients, a.max_clients, a.idle_timeout_secs, a.refused, a.idle_closed
                    )
                },
            ),
        ),
        (
            "Switch",
            match &i.switch {
                None => "-".to_owned(),
                Some(SwitchHealth { dead: Some(why), .. }) => {
                    format!("DEAD ({why}): it forwards nothing; restart the daemon")
                }
                Some(h) => format!(
                    "running; {} control requests served, {} waits interrupted",
                    h.commands, h.poll_interrupted
                ),
            },
        ),
        (
            "DNS",
            i.dns.as_ref().map_or_else(
                || "-".to_owned(),
                |d| {
                    let ups: Vec<String> = d.upstreams.iter().map(ToString::to_string).collect();
                    format!(
                        "upstreams {}; {} local, {} cached, {} forwarded ({} relayed, {} servfail, {} over TCP), {} refused",
                        if ups.is_empty() { "none".to_owned() } else { ups.join(", ") },
                        d.stats.local,
                        d.stats.cached,
                        d.stats.forwarded,
                        d.stats.relayed,
                        d.stats.servfail,
                        d.stats.tcp_retries,
                        d.stats.refused
                    )
                },
            ),
        ),
        ("Networks", i.networks.to_string()),
        ("Endpoints", i.endpoints.to_string()),
        ("Sandboxes", i.sandboxes.to_string()),
    ]);
    // A rootless daemon: what the host allows, and what to do where it does not.
    for c in &i.rootless_checks {
        let mark = if c.ok { "ok" } else { "MISSING" };
        out.push_str(&format!("Rootless {}: {mark}: {}\n", c.name, c.detail));
    }
    out
}

/// `plexus fdb`: one row per learned MAC.
pub fn dns_table(rows: &[plexus::model::DnsRecord]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.name.clone(), r.address.to_string(), r.endpoint.clone()])
        .collect();
    table(&["NAME", "ADDRESS", "ENDPOINT"], &rows)
}

pub fn fdb_table(rows: &[FdbInfo]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.mac.to_string(), r.endpoint.clone(), format!("{:.1}s", r.age_secs)])
        .collect();
    table(&["MAC", "ENDPOINT", "AGE"], &rows)
}

/// `plexus nat`: one row per flow, in the daemon's order.
pub fn nat_table(flows: &[NatInfo]) -> String {
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let state = match f.state {
                Some(plexus_switch::nat::TcpPhase::Connecting) => "connecting",
                Some(plexus_switch::nat::TcpPhase::Established) => "established",
                Some(plexus_switch::nat::TcpPhase::Closing) => "closing",
                None => "-",
            };
            vec![
                f.proto.as_str().to_owned(),
                state.to_owned(),
                f.endpoint.clone(),
                f.inside.to_string(),
                f.outside.to_string(),
                f.packets_out.to_string(),
                f.packets_in.to_string(),
                format!("{:.1}s", f.idle_secs),
            ]
        })
        .collect();
    table(
        &["PROTO", "STATE", "ENDPOINT", "INSIDE", "OUTSIDE", "OUT", "IN", "IDLE"],
        &rows,
    )
}

/// The nonzero drop counters, `reason=count` separated by spaces, or `-`.
pub fn drops(p: &PortInfo) -> String {
    let nonzero: Vec<String> = p
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    if nonzero.is_empty() {
        "-".to_owned()
    } else {
        nonzero.join(" ")
    }
}

/// `plexus stats`: one row per port.
/// One port's rates between two reads of its counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortRates {
    pub network: String,
    pub endpoint: String,
    pub rx_frames_per_sec: f64,
    pub rx_bits_per_sec: f64,
    pub tx_frames_per_sec: f64,
    pub tx_bits_per_sec: f64,
    pub drops_per_sec: f64,
}

/// The rates of each port present in both reads, `secs` apart.
#[allow(clippy::cast_precision_loss)]
pub fn port_rates(before: &[PortInfo], after: &[PortInfo], secs: f64) -> Vec<PortRates> {
    let secs = secs.max(1e-6);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    after
        .iter()
        .filter_map(|p| {
            let q = before
                .iter()
                .find(|q| q.network == p.network && q.endpoint == p.endpoint)?;
            let drops = |x: &PortInfo| x.drops.values().sum::<u64>();
            Some(PortRates {
                network: p.network.clone(),
                endpoint: p.endpoint.clone(),
                rx_frames_per_sec: rate(q.rx_frames, p.rx_frames),
                rx_bits_per_sec: 8.0 * rate(q.rx_bytes, p.rx_bytes),
                tx_frames_per_sec: rate(q.tx_frames, p.tx_frames),
                tx_bits_per_sec: 8.0 * rate(q.tx_bytes, p.tx_bytes),
                drops_per_sec: rate(drops(q), drops(p)),
            })
        })
        .collect()
}

/// A rate with an SI prefix: `1.2M`, `830k`, `12`.
fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The table `stats --watch` redraws.
pub fn rates_table(rates: &[PortRates]) -> String {
    let rows: Vec<Vec<String>> = rates
        .iter()
        .map(|r| {
            vec![
                r.network.clone(),
                r.endpoint.clone(),
                si(r.rx_frames_per_sec),
                format!("{}b", si(r.rx_bits_per_sec)),
                si(r.tx_frames_per_sec),
                format!("{}b", si(r.tx_bits_per_sec)),
                si(r.drops_per_sec),
            ]
        })
        .collect();
    table(
        &[
            "NETWORK",
            "ENDPOINT",
            "RX FRAMES/S",
            "RX BITS/S",
            "TX FRAMES/S",
            "TX BITS/S",
            "DROPS/S",
        ],
        &rows,
    )
}

/// The footer of `stats`: the switch worker's CPU time per frame it received.
#[allow(clippy::cast_precision_loss)]
pub fn cpu_per_frame(cpu_secs: Option<f64>, all_ports: &[PortInfo]) -> String {
    let frames: u64 = all_ports.iter().map(|p| p.rx_frames).sum();
    match cpu_secs {
        Some(cpu) if frames > 0 => format!(
            "switch worker: {cpu:.2} s CPU for {frames} frames received, {:.0} ns per frame\n",
            cpu * 1e9 / frames as f64
        ),
        Some(cpu) => format!("switch worker: {cpu:.2} s CPU, no frames yet\n"),
        None => String::new(),
    }
}

/// A port's `io` for the table: its kind, and `af_packet*` where AF_XDP was
/// asked for and refused (`--json` has the reason).
fn short_io(io: &str) -> String {
    let kind = io.split(' ').next().unwrap_or("");
    match (kind, io.contains("refused")) {
        ("", _) => "-".to_owned(),
        (k, true) => format!("{k}*"),
        (k, false) => k.to_owned(),
    }
}

pub fn stats_table(ports: &[PortInfo]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p.network.clone(),
                p.endpoint.clone(),
                short_io(&p.io),
                p.rx_frames.to_string(),
                p.rx_bytes.to_string(),
                p.tx_frames.to_string(),
                p.tx_bytes.to_string(),
                p.learn_table_full.to_string(),
                drops(p),
            ]
        })
        .collect();
    table(
        &[
            "NETWORK",
            "ENDPOINT",
            "IO",
            "RX FRAMES",
            "RX BYTES",
            "TX FRAMES",
            "TX BYTES",
            "LEARN FULL",
            "DROPS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_frame_is_cpu_over_frames_received() {
        let port = |rx: u64| PortInfo {
            endpoint: "c".into(),
            network: "n".into(),
            io: "af_packet".into(),
            rx_frames: rx,
            rx_bytes: 0,
            tx_frames: 0,
            tx_bytes: 0,
            tx_coalesced: 0,
            learn_table_full: 0,
            drops: Default::default(),
        };
        assert_eq!(
            cpu_per_frame(Some(0.5), &[port(600_000), port(400_000)]),
            "switch worker: 0.50 s CPU for 1000000 frames received, 500 ns per frame\n"
        );
        assert_eq!(cpu_per_frame(None, &[port(1)]), "");
        assert!(cpu_per_frame(Some(0.0), &[]).contains("no frames yet"));
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let port = |rx: u64, bytes: u64, dropped: u64| PortInfo {
            endpoint: "c1".into(),
            network: "n1".into(),
            io: "af_packet".into(),
            rx_frames: rx,
            rx_bytes: bytes,
            tx_frames: 0,
            tx_bytes: 0,
            tx_coalesced: 0,
            learn_table_full: 0,
            drops: [("spoofed".to_owned(), dropped)].into_iter().collect(),
        };
        let r = port_rates(&[port(100, 10_000, 1)], &[port(300, 260_000, 5)], 2.0);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].rx_frames_per_sec, r[0].rx_bits_per_sec, r[0].drops_per_sec),
            (100.0, 1e6, 2.0)
        );
        let t = rates_table(&r);
        assert!(t.contains("1.0Mb") && t.contains("100"), "{t}");
        // A port that appeared meanwhile has no rate yet.
        assert!(port_rates(&[], &[port(1, 1, 0)], 1.0).is_empty());
    }

    #[test]
    fn table_aligns_without_trailing_blanks() {
        let t = table(&["A", "LONG NAME", "C"], &[vec!["xyz".into(), "b".into(), "-".into()]]);
        assert_eq!(t, "A    LONG NAME  C\nxyz  b          -\n");
    }

    #[test]
    fn fdb_and_stats_tables() {
        let fdb = [FdbInfo {
            mac: "02:42:0a:63:00:02".parse().unwrap(),
            endpoint: "c1".into(),
            age_secs: 1.25,
        }];
        assert_eq!(
            fdb_table(&fdb),
            "MAC                ENDPOINT  AGE\n02:42:0a:63:00:02  c1        1.2s\n"
        );
        let port = |drops: &[(&str, u64)]| PortInfo {
            endpoint: "c1".into(),
            network: "n1".into(),
            io: "af_packet".into(),
            rx_frames: 10,
            rx_bytes: 1000,
            tx_frames: 9,
            tx_bytes: 900,
            tx_coalesced: 0,
            learn_table_full: 0,
            drops: drops.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        };
        let busy = port(&[("oversize", 3), ("runt", 0), ("spoofed", 12)]);
        assert_eq!(drops(&busy), "oversize=3 spoofed=12");
        assert_eq!(drops(&port(&[("runt", 0)])), "-");
        let t = stats_table(&[busy]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NETWORK  ENDPOINT  IO         RX FRAMES  RX BYTES  TX FRAMES  TX BYTES  LEARN FULL  DROPS"
        );
        assert_eq!(
            lines[1],
            "n1       c1        af_packet  10         1000      9          900       0           oversize=3 spoofed=12"
        );
        // The table shows a port's kind; a refused AF_XDP is starred (the
        // reason is in --json); an older daemon's rows have no io.
        assert_eq!(short_io("af_xdp (native, copy, 2 queues)"), "af_xdp");
        assert_eq!(
            short_io("af_packet (af_xdp refused: bpf(BPF_LINK_CREATE): EPERM)"),
            "af_packet*"
        );
        assert_eq!(short_io(""), "-");
    }

    #[test]
    fn nat_table_rows() {
        let flow = |proto, inside: &str, outside: &str| NatInfo {
            proto,
            state: (proto == plexus_switch::NatProto::Tcp).then_some(plexus_switch::nat::TcpPhase::Established),
            inside: inside.parse().unwrap(),
            outside: outside.parse().unwrap(),
            endpoint: "c1".into(),
            packets_out: 2,
            packets_in: 1,
            idle_secs: 0.25,
        };
        let t = nat_table(&[
            flow(plexus_switch::NatProto::Udp, "10.84.0.2:40000", "192.0.2.1:53"),
            flow(plexus_switch::NatProto::Icmp, "10.84.0.2:7", "192.0.2.1:0"),
            flow(plexus_switch::NatProto::Tcp, "10.84.0.2:40001", "192.0.2.1:80"),
        ]);
        assert_eq!(
            t,
            "\
PROTO  STATE        ENDPOINT  INSIDE           OUTSIDE       OUT  IN  IDLE
udp    -            c1        10.84.0.2:40000  192.0.2.1:53  2    1   0.2s
icmp   -            c1        10.84.0.2:7      192.0.2.1:0   2    1   0.2s
tcp    established  c1        10.84.0.2:40001  192.0.2.1:80  2    1   0.2s
"
        );
        assert_eq!(
            nat_table(&[]),
            "PROTO  STATE  ENDPOINT  INSIDE  OUTSIDE  OUT  IN  IDLE\n"
        );
    }

    fn endpoint_with_ports(ports: serde_json::Value) -> EndpointInfo {
        serde_json::from_value(serde_json::json!({
            "id": "c0ffee00c0ffee00c0ffee00c0ffee00",
            "name": "dns",
            "network": "n1",
            "address": "10.99.0.2/24",
            "mac": "02:42:0a:63:00:02",
            "gateway": "10.99.0.1",
            "kind": "veth",
            "host_ifname": "pxh1a2b3c",
            "sandbox": "dns",
            "ifname": "eth0",
            "ports": ports,
        }))
        .unwrap()
    }

    #[test]
    fn endpoints_show_their_ports() {
        let e = endpoint_with_ports(serde_json::json!([
            {"host_ip": "0.0.0.0", "host_port": 8053, "container_port": 53, "protocol": "udp"},
            {"host_ip": "127.0.0.1", "host_port": 40001, "container_port": 5353, "protocol": "udp"},
        ]));
        let want = "0.0.0.0:8053->53/udp, 127.0.0.1:40001->5353/udp";
        assert_eq!(ports(&e), want);
        let t = endpoints_table(std::slice::from_ref(&e));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].ends_with("IFNAME  PORTS"), "{t}");
        assert!(lines[1].ends_with(&format!("eth0    {want}")), "{t}");
        let shown = endpoint(&e);
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("Ports:") && l.ends_with(&format!(" {want}"))),
            "{shown}"
        );
        let none = endpoint_with_ports(serde_json::json!([]));
        assert_eq!(ports(&none), "-");
        assert!(endpoints_table(&[none]).lines().nth(1).unwrap().ends_with("eth0    -"));
        // Older daemons send no `ports`: the library's serde default is empty.
        let mut v = serde_json::to_value(&e).unwrap();
        v.as_object_mut().unwrap().remove("ports");
        assert!(serde_json::from_value::<EndpointInfo>(v).unwrap().ports.is_empty());
    }

    #[test]
    fn key_values_align() {
        assert_eq!(
            key_values(&[("A", "1".into()), ("Bcd", "2".into())]),
            "A:   1\nBcd: 2\n"
        );
    }
}
