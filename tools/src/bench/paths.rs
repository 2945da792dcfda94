//! `plexus bench`'s second table: the two paths a container network offers
//! besides switching — a published port (a client outside → the host's port
//! → the container's server; with `-R` the container sends) and outbound NAT
//! (the container → a server outside) — through the kernel and through the
//! Plexus daemon, measured as `../shared/bench/publish.sh` measures them.
//!
//! Topology, built fresh per repetition under a random `pxp` prefix: an
//! "outside" namespace O (198.18.0.2/24) and a "host" namespace H
//! (198.18.0.1/24, default route via O) joined by a veth pair; the container
//! C (10.88.0.2/24) is attached in H by the peer under test:
//! - `kernel-dnat`: a kernel bridge (10.88.0.1) and a veth pair, forwarding
//!   on, nftables DNAT of the published ports and masquerade of the rest —
//!   Docker's rootful path without its userland proxy.
//! - `plexus-daemon`: `plexus daemon` in H (`network create`, `run
//!   --publish`), exactly as publish.sh's `--plexus` contract runs it.
//!
//! Servers run in C (iperf3 on 5201; on 8080 an HTTP server of ours that
//! does one read, one write and a close per connection, as publish.sh's
//! pp_srv), clients in O; the outbound iperf3 server in O. Clients and
//! servers on CPU 0, the daemon on CPU 1. Figures: iperf3's Gbit/s and its
//! sender's retransmits for in, -R and outbound, and the retransmits of H's
//! own TCP sockets meanwhile (the kernel's counter in H: the daemon's relayed
//! host streams, which iperf3 does not see; none for the kernel's DNAT, which
//! forwards); connections per second of `wrk -c 32` with `Connection: close`
//! (when wrk is installed); and the daemon's CPU (cores) during each.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::netns;

use super::{
    Made, Metric, Sample, Settings, Summary, cpu_secs, human, move_link, pin_me, random_tag, run_ok_in, spawn_in,
    wait_until,
};

/// The peers, in the order of the table; the first is the baseline.
pub const PEERS: [&str; 2] = ["kernel-dnat", "plexus-daemon"];

/// The metrics, as they are summarized and written as JSON lines.
pub const METRICS: [Metric; 14] = [
    ("in_gbps", "published port, in: Gbit/s", true),
    ("in_retr", "in: retransmits", false),
    ("in_host_retr", "in: retransmits of the host's sockets", false),
    ("rev_gbps", "published, -R: Gbit/s", true),
    ("rev_retr", "-R: retransmits", false),
    ("rev_host_retr", "-R: retransmits of the host's sockets", false),
    ("out_gbps", "outbound: Gbit/s", true),
    ("out_retr", "outbound: retransmits", false),
    ("out_host_retr", "outbound: retransmits of the host's sockets", false),
    ("crr", "short connections/s", true),
    ("in_cores", "daemon cores, in", false),
    ("rev_cores", "daemon cores, -R", false),
    ("out_cores", "daemon cores, outbound", false),
    ("crr_cores", "daemon cores, short conn.", false),
];

/// A row of the table: the path, its figure, the sender's retransmits, the
/// host's own sockets' retransmits, the daemon's CPU meanwhile.
struct PathRow {
    label: &'static str,
    metric: &'static str,
    retr: Option<&'static str>,
    host_retr: Option<&'static str>,
    cores: &'static str,
}

const PATHS: [PathRow; 4] = [
    PathRow {
        label: "published port, in: Gbit/s",
        metric: "in_gbps",
        retr: Some("in_retr"),
        host_retr: Some("in_host_retr"),
        cores: "in_cores",
    },
    PathRow {
        label: "published port, -R (container sends): Gbit/s",
        metric: "rev_gbps",
        retr: Some("rev_retr"),
        host_retr: Some("rev_host_retr"),
        cores: "rev_cores",
    },
    PathRow {
        label: "outbound NAT (container sends): Gbit/s",
        metric: "out_gbps",
        retr: Some("out_retr"),
        host_retr: Some("out_host_retr"),
        cores: "out_cores",
    },
    PathRow {
        label: "short connections/s to a published port",
        metric: "crr",
        retr: None,
        host_retr: None,
        cores: "crr_cores",
    },
];

/// The table: a row per path; per peer its `median [min–max]`, the ratio of
/// the last peer to the first (the kernel), the senders' and the host's
/// sockets' retransmits (medians) and the daemon's CPU cores.
pub fn table(summary: &Summary, peers: &[&'static str]) -> String {
    let get = |t: &str, m: &str| summary.iter().find(|(st, sm, _)| *st == t && *sm == m).map(|x| x.2);
    let base = PEERS[0];
    let mut out = String::from("| path |");
    for p in peers {
        let _ = write!(out, " {p} |");
    }
    let _ = writeln!(
        out,
        " ÷ {base} | sender's retransmits ({which}) | host's sockets' retransmits ({which}) | daemon CPU cores |",
        which = peers.join(" / ")
    );
    out.push_str(&"|---".repeat(peers.len() + 5));
    out.push_str("|\n");
    for PathRow {
        label,
        metric,
        retr,
        host_retr,
        cores,
    } in PATHS
    {
        let _ = write!(out, "| {label} |");
        for p in peers {
            match get(p, metric) {
                Some((lo, med, hi)) => {
                    let _ = write!(out, " {} [{}–{}] |", human(med), human(lo), human(hi));
                }
                None => out.push_str(" - |"),
            }
        }
        let ratio = match (get(base, metric), peers.last().and_then(|p| get(p, metric))) {
            (Some(b), Some(v)) if b.1 > 0.0 && peers.len() > 1 => format!("{:.2}", v.1 / b.1),
            _ => "-".to_owned(),
        };
        let medians = |m: Option<&str>| -> String {
            let each: Vec<String> = peers
                .iter()
                .map(|p| {
                    m.and_then(|r| get(p, r))
                        .map_or_else(|| "-".to_owned(), |x| format!("{:.0}", x.1))
                })
                .collect();
            each.join(" / ")
        };
        let cores = peers
            .iter()
            .find_map(|p| get(p, cores))
            .map_or_else(|| "-".to_owned(), |x| format!("{:.2}", x.1));
        let _ = writeln!(out, " {ratio} | {} | {} | {cores} |", medians(retr), medians(host_retr));
    }
    out
}

const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SUBNET: &str = "10.88.0.0/24";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
const IPERF_PORT: u16 = 5201;
const OUTBOUND_PORT: u16 = 5202;
const HTTP_PORT: u16 = 8080;

/// The kernel's NAT: DNAT of the published ports to the container, masquerade
/// of what the container sends elsewhere (nftables, in H only).
const NFT_RULES: &str = "table ip pxbench {
  chain pre { type nat hook prerouting priority dstnat; ip daddr 198.18.0.1 tcp dport { 5201, 8080 } dnat to 10.88.0.2; }
  chain post { type nat hook postrouting priority srcnat; ip saddr 10.88.0.0/24 oifname != \"br0\" masquerade; }
}
";

/// One topology, built; everything removed on drop.
struct Rig {
    made: Made,
    /// Stops the HTTP server's thread.
    stop: Arc<AtomicBool>,
    o: PathBuf,
    h: PathBuf,
    c: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Then `made` goes.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Address `ip`/24 on `ifname` of `ns`, up, renamed eth0, IPv6 off, lo up,
/// and a default route via `gw`.
fn configure(ns: &Path, ifname: &str, ip: Ipv4Addr, gw: Option<Ipv4Addr>) -> anyhow::Result<()> {
    super::host_side(ns, ifname, ip)?;
    if let Some(gw) = gw {
        let mut nl = Netlink::open_in(ns)?;
        let l = nl.link("eth0")?;
        nl.add_default_route(gw, l.index)?;
    }
    Ok(())
}

fn rig(made: Made, o: PathBuf, h: PathBuf, c: PathBuf) -> Rig {
    Rig {
        made,
        stop: Arc::new(AtomicBool::new(false)),
        o,
        h,
        c,
    }
}

/// Segments the TCP sockets of namespace `ns` have retransmitted so far (its
/// kernel's `RetransSegs`).
fn tcp_retransmits(ns: &Path) -> anyhow::Result<f64> {
    let text = netns::run_in(ns, || std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut tcp = text.lines().filter_map(|l| l.strip_prefix("Tcp: "));
    let (names, values) = tcp.next().zip(tcp.next()).context("no Tcp lines in /proc/net/snmp")?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .context("no RetransSegs in /proc/net/snmp")
}

fn build(peer: &str, plexus: &Path) -> anyhow::Result<(Rig, Option<u32>)> {
    let tag = random_tag("pxp");
    let mut made = Made::default();
    let (o, h) = (made.netns(format!("{tag}O"))?, made.netns(format!("{tag}H"))?);
    let mut nl = Netlink::open_in(&h)?;
    nl.create_veth("up", "down", Some(1500))?;
    move_link(&h, "down", &o)?;
    configure(&o, "down", OUTSIDE_IP, None)?;
    configure(&h, "up", HOST_IP, Some(OUTSIDE_IP))?;
    match peer {
        "kernel-dnat" => {
            let c = made.netns(format!("{tag}C"))?;
            nl.create_bridge("br0")?;
            let br = nl.link("br0")?;
            nl.add_address(br.index, ipnet::Ipv4Net::new(GATEWAY, 24)?)?;
            nl.set_up(br.index, true)?;
            nl.create_veth("hC", "eC", Some(1500))?;
            let hc = nl.link("hC")?;
            nl.set_master(hc.index, br.index)?;
            nl.set_up(hc.index, true)?;
            move_link(&h, "eC", &c)?;
            configure(&c, "eC", CONTAINER_IP, Some(GATEWAY))?;
            netns::run_in(&h, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))??;
            let mut nft = spawn_in(
                &h,
                0,
                Command::new("nft")
                    .args(["-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )
            .context("nftables (nft) is needed for the kernel's DNAT")?;
            let mut stdin = nft.stdin.take().context("nft's stdin")?;
            stdin.write_all(NFT_RULES.as_bytes())?;
            drop(stdin);
            let done = nft.wait_with_output()?;
            if !done.status.success() {
                bail!("nft refused the DNAT rules: {}", String::from_utf8_lossy(&done.stderr));
            }
            Ok((rig(made, o, h, c), None))
        }
        "plexus-daemon" => {
            let dir = made.scratch_dir(&tag, "plexus")?;
            std::fs::create_dir_all(dir.join("state"))?;
            // The container's namespace, which the daemon makes.
            made.namespaces.push(format!("{tag}-c"));
            let socket = dir.join("plexus.sock");
            let log = std::fs::File::create(dir.join("daemon.log"))?;
            // Pinned before it starts: its threads, and the CPUs its veth host
            // ends steer to, follow.
            let daemon = spawn_in(
                &h,
                1,
                Command::new(plexus)
                    .arg("daemon")
                    .arg("--state-dir")
                    .arg(dir.join("state"))
                    .arg("--socket")
                    .arg(&socket)
                    .env("PLEXUS_NETNS_PREFIX", format!("{tag}-"))
                    .env("PLEXUS_IFNAME_PREFIX", &tag)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log),
            )?;
            let pid = made.process(daemon);
            wait_until("plexus daemon", || socket.exists())
                .with_context(|| format!("log: {}", dir.join("daemon.log").display()))?;
            let cli = |args: &[&str]| -> anyhow::Result<String> {
                run_ok_in(&h, Command::new(plexus).args(args).env("PLEXUS_SOCKET", &socket))
            };
            cli(&["network", "create", "--subnet", SUBNET, "pxnet"])?;
            cli(&[
                "run",
                "--network",
                "pxnet",
                "--ip",
                &CONTAINER_IP.to_string(),
                "--publish",
                "5201:5201",
                "--publish",
                "8080:8080",
                "c",
            ])?;
            let c = PathBuf::from(netns::NETNS_DIR).join(format!("{tag}-c"));
            Ok((rig(made, o, h, c), Some(pid)))
        }
        other => bail!("no path peer {other:?} (one of {})", PEERS.join(", ")),
    }
}

/// The HTTP server of the short connections, in C: per connection one read,
/// one write, a close. Stops when `stop` is set (accept wakes every 100 ms).
fn http_server(c: &Path, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener = netns::run_in(c, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, HTTP_PORT)))??;
    nix::sys::socket::setsockopt(
        &listener,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 100_000),
    )?;
    std::thread::spawn(move || {
        pin_me(0);
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        }
    });
    Ok(())
}

/// iperf3 from `from` to `to:port` for `dur` (`-R`: the server sends), both
/// ends on CPU 0: (Gbit/s, the sender's retransmits).
fn iperf(from: &Path, to: Ipv4Addr, port: u16, reverse: bool, dur: Duration) -> anyhow::Result<(f64, f64)> {
    let secs = dur.as_secs().max(1).to_string();
    let mut cmd = Command::new("iperf3");
    cmd.args(["-c", &to.to_string(), "-p", &port.to_string(), "-t", &secs, "-J"])
        .args(["-O", super::WARM_UP_SECS]);
    if reverse {
        cmd.arg("-R");
    }
    let out = netns::run_in(from, || {
        pin_me(0);
        cmd.output()
    })??;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3's JSON")?;
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 gave no rate: {}", v["error"]))?;
    Ok((gbps / 1e9, v["end"]["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0)))
}

/// `wrk -c 32` with `Connection: close` against the published HTTP port for
/// `dur`: connections per second; None without wrk.
fn crr(o: &Path, dur: Duration) -> anyhow::Result<Option<f64>> {
    if Command::new("wrk").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out = netns::run_in(o, || {
        pin_me(0);
        Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{}s", dur.as_secs().max(1))])
            .args(["-H", "Connection: close", &format!("http://{HOST_IP}:{HTTP_PORT}/")])
            .output()
    })??;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok()))
}

/// One repetition of `peer`.
pub fn rep(peer: &'static str, plexus: &Path, s: &Settings) -> anyhow::Result<Vec<Sample>> {
    if Command::new("iperf3").arg("--version").output().is_err() {
        return Ok(Vec::new());
    }
    let (mut rig, daemon) = build(peer, plexus)?;
    let iperf_server = |ns: &Path, port: u16| {
        spawn_in(
            ns,
            0,
            Command::new("iperf3")
                .args(["-s", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let servers = [iperf_server(&rig.c, IPERF_PORT)?, iperf_server(&rig.o, OUTBOUND_PORT)?];
    for s in servers {
        rig.made.process(s);
    }
    http_server(&rig.c, Arc::clone(&rig.stop))?;
    std::thread::sleep(Duration::from_millis(300));
    let mut out = Vec::new();
    // Runs `f`, records its figures under `names`, the retransmits of H's
    // sockets meanwhile under `host_retr`, and the daemon's CPU under `cores`.
    let h = rig.h.clone();
    let mut measure = |names: &[&'static str],
                       host_retr: Option<&'static str>,
                       cores: &'static str,
                       f: &mut dyn FnMut() -> anyhow::Result<Vec<f64>>| {
        let t0 = Instant::now();
        let cpu0 = daemon.map(cpu_secs);
        let retr0 = tcp_retransmits(&h)?;
        let got = f()?;
        if let Some(metric) = host_retr {
            out.push(Sample {
                topology: peer,
                metric,
                value: tcp_retransmits(&h)? - retr0,
            });
        }
        for (&metric, value) in names.iter().zip(got) {
            out.push(Sample {
                topology: peer,
                metric,
                value,
            });
        }
        if let (Some(pid), Some(cpu0)) = (daemon, cpu0) {
            out.push(Sample {
                topology: peer,
                metric: cores,
                value: (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64(),
            });
        }
        anyhow::Ok(())
    };
    let (o, c, dur) = (rig.o.clone(), rig.c.clone(), s.duration);
    measure(&["in_gbps", "in_retr"], Some("in_host_retr"), "in_cores", &mut || {
        iperf(&o, HOST_IP, IPERF_PORT, false, dur).map(|(g, r)| vec![g, r])
    })?;
    measure(
        &["rev_gbps", "rev_retr"],
        Some("rev_host_retr"),
        "rev_cores",
        &mut || iperf(&o, HOST_IP, IPERF_PORT, true, dur).map(|(g, r)| vec![g, r]),
    )?;
    measure(
        &["out_gbps", "out_retr"],
        Some("out_host_retr"),
        "out_cores",
        &mut || iperf(&c, OUTSIDE_IP, OUTBOUND_PORT, false, dur).map(|(g, r)| vec![g, r]),
    )?;
    measure(&["crr"], None, "crr_cores", &mut || {
        Ok(crr(&o, dur)?.into_iter().collect())
    })?;
    Ok(out)
}
