//! `plexus bench`: the project's own benchmark. It builds each topology in
//! private namespaces — two hosts A and B joined directly by a veth pair, by
//! a kernel bridge, by the Plexus switch on veth host ends (AF_PACKET, and
//! AF_XDP as `plexus-xdp`), and by the Plexus switch on TAP devices — and
//! measures, per repetition, ping RTT (our own
//! ICMP client), 64-byte frames/s (our own generator on an AF_PACKET socket
//! in A; B's kernel counts what arrives), TCP with default offloads and
//! with offloads off — every segment a 1514-byte frame (iperf3 and ethtool,
//! when installed); then prints a side-by-side table with ratios to
//! the kernel bridge, writes JSON lines and draws an SVG chart.
//!
//! Decisions:
//! - Same method as `../shared/bench/peers.sh` so the figures agree: the
//!   load (ping, generator) on CPU 0, iperf3 unpinned, a switch process on
//!   CPU 1; the
//!   Plexus switch is `plexus switch` (the bare switch) in the topology's
//!   own namespace, so the daemon's control plane is not measured.
//! - Built fresh for every repetition, named `pxb<random>`, removed on exit
//!   (a Drop guard), never touching anything else.
//! - The machine is checked for quiet before each repetition (busy CPU over
//!   0.5 s) and the figure is reported; a busy machine is said, not hidden.
//! - `--quick` (1 repetition of 1 s, 20 pings) is for checking the harness,
//!   not for figures.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plexus::diag::{self, PingOptions};
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::netns;
use plexus_sandbox::sock::NsKey;
use plexus_switch::io::{PacketPort, Port};
use serde_json::json;

/// The topologies, in the order of the table (`ovs*` and `vde`: when Open
/// vSwitch and vde_switch are installed).
pub const TOPOLOGIES: [&str; 8] = [
    "direct",
    "bridge",
    "plexus-veth",
    "plexus-xdp",
    "plexus-tap",
    "ovs",
    "ovs-afxdp",
    "vde",
];

mod ovs;
mod paths;

/// A metric: name, column title, whether higher is better.
type Metric = (&'static str, &'static str, bool);

/// The metrics, in the order of the table.
const METRICS: [Metric; 5] = [
    ("rtt_us", "ping RTT µs", false),
    ("pps_64", "64 B frames/s", true),
    ("switch_frames_per_cpu_s", "frames per switch CPU-s", true),
    ("tcp_gbps", "TCP Gbit/s", true),
    ("tcp_1500_gbps", "TCP 1500 B frames Gbit/s", true),
];

/// `plexus bench`'s settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Repetitions per topology.
    pub reps: u32,
    /// Seconds per throughput measurement.
    pub duration: Duration,
    /// Pings per RTT measurement.
    pub pings: u16,
    /// Topologies to run.
    pub only: Vec<String>,
    /// JSON lines here.
    pub results: Option<PathBuf>,
    /// The SVG chart here.
    pub svg: Option<PathBuf>,
}

/// One figure of one repetition.
#[derive(Debug, Clone)]
struct Sample {
    topology: &'static str,
    metric: &'static str,
    value: f64,
}

/// Seconds iperf3 runs before its counted window (`--omit`): slow start and
/// the switch's poll loop settle.
const WARM_UP_SECS: &str = "1";

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 2);

/// What a topology made, undone on drop: its processes stopped (SIGTERM,
/// then waited for; the last started first), its namespaces deleted, its
/// scratch directory removed.
#[derive(Default)]
struct Made {
    namespaces: Vec<String>,
    processes: Vec<Child>,
    dir: Option<PathBuf>,
}

impl Made {
    /// Creates namespace `name`; returns its path.
    fn netns(&mut self, name: String) -> anyhow::Result<PathBuf> {
        let ns = netns::create(&name).with_context(|| format!("creating namespace {name}"))?;
        self.namespaces.push(name);
        Ok(ns.path().to_owned())
    }

    /// Takes a started process; returns its pid.
    fn process(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// A scratch directory `{tag}-{what}` in the temporary directory.
    fn scratch_dir(&mut self, tag: &str, what: &str) -> anyhow::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("{tag}-{what}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in self.processes.iter_mut().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        for n in &self.namespaces {
            let _ = netns::delete(n);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// One topology, built; removed on drop.
struct Rig {
    /// Undone when the rig goes.
    _made: Made,
    /// The switch process's pid, whose CPU is counted.
    switch: Option<u32>,
    a: PathBuf,
    b: PathBuf,
}

/// Spawns `cmd` in namespace `ns` on CPU `cpu` (pinned before it starts: its
/// threads, and the CPUs its veth ports may steer to, follow).
fn spawn_in(ns: &Path, cpu: usize, cmd: &mut Command) -> anyhow::Result<Child> {
    netns::run_in(ns, || {
        pin_me(cpu);
        cmd.spawn()
    })?
    .with_context(|| format!("starting {cmd:?}"))
}

/// Runs `cmd` in namespace `ns` to its end: its stdout, or an error with its
/// output if it failed.
fn run_ok_in(ns: &Path, cmd: &mut Command) -> anyhow::Result<String> {
    let out = netns::run_in(ns, || cmd.output())?.with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Waits up to 10 s for `ready` (a socket a process makes, a device).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what}: not ready in 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Pins the calling thread to `cpu`.
fn pin_me(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Gives `ifname` in namespace `ns` address `ip`/24, up, IPv6 off, lo up.
fn host_side(ns: &Path, ifname: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    netns::run_in(ns, || {
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    })?;
    let mut nl = Netlink::open_in(ns)?;
    let lo = nl.link("lo")?;
    nl.set_up(lo.index, true)?;
    let l = nl.link(ifname)?;
    if l.name != "eth0" {
        nl.set_name(l.index, "eth0")?;
    }
    nl.add_address(l.index, ipnet::Ipv4Net::new(ip, 24)?)?;
    nl.set_up(l.index, true)?;
    Ok(())
}

/// `prefix` and four random hex digits: the names of one topology.
fn random_tag(prefix: &str) -> String {
    // (RandomState's keys are random per instance: a random number without a crate.)
    let random = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
    format!("{prefix}{:04x}", random & 0xffff)
}

/// Moves link `name` of namespace `from` (None: ours) into `to`.
fn move_link(from: &Path, name: &str, to: &Path) -> anyhow::Result<()> {
    let mut nl = Netlink::open_in(from)?;
    let l = nl.link(name)?;
    let fd = netns::open_path(to)?;
    use std::os::fd::AsFd;
    nl.set_netns(l.index, fd.as_fd())?;
    Ok(())
}

/// Builds `topology` with a fresh random prefix.
fn build(topology: &str, plexus: &Path) -> anyhow::Result<Rig> {
    let tag = random_tag("pxb");
    let mut made = Made::default();
    let (a, b, s) = (
        made.netns(format!("{tag}A"))?,
        made.netns(format!("{tag}B"))?,
        made.netns(format!("{tag}S"))?,
    );
    let mut switch = None;
    let mut nl = Netlink::open_in(&s)?;
    match topology {
        "direct" => {
            nl.create_veth("eA", "eB", Some(1500))?;
            move_link(&s, "eA", &a)?;
            move_link(&s, "eB", &b)?;
        }
        "bridge" | "plexus-veth" | "plexus-xdp" | "ovs" | "ovs-afxdp" => {
            nl.create_veth("hA", "eA", Some(1500))?;
            nl.create_veth("hB", "eB", Some(1500))?;
            move_link(&s, "eA", &a)?;
            move_link(&s, "eB", &b)?;
            for h in ["hA", "hB"] {
                let l = nl.link(h)?;
                nl.set_up(l.index, true)?;
            }
            if topology == "bridge" {
                nl.create_bridge("br0")?;
                let br = nl.link("br0")?;
                for h in ["hA", "hB"] {
                    let l = nl.link(h)?;
                    nl.set_master(l.index, br.index)?;
                }
                nl.set_up(br.index, true)?;
            } else if topology == "plexus-veth" {
                switch = Some(made.process(spawn_switch(&s, plexus, &["hA", "hB"])?));
            } else if topology == "plexus-xdp" {
                let args = ["--veth-io", "af_xdp", "hA", "hB"];
                switch = Some(made.process(spawn_switch(&s, plexus, &args)?));
                // The switch falls back to AF_PACKET where the kernel refuses
                // AF_XDP; this row measures AF_XDP or nothing.
                wait_until("AF_XDP on hA and hB (plexus switch --veth-io af_xdp)", || {
                    ["hA", "hB"]
                        .iter()
                        .all(|h| nl.link(h).is_ok_and(|l| l.xdp_prog.is_some()))
                })?;
            } else {
                let dir = made.scratch_dir(&tag, "ovs")?;
                switch = Some(ovs::start(&s, &dir, topology == "ovs-afxdp", &mut made)?);
            }
        }
        "plexus-tap" | "vde" => {
            let child = if topology == "vde" {
                // vde_switch makes and owns the TAPs; it reads commands from
                // stdin, so the pipe stays open while the child lives.
                let dir = made.scratch_dir(&tag, "vde")?;
                let mut cmd = Command::new("vde_switch");
                cmd.arg("-s")
                    .arg(dir.join("ctl"))
                    .arg("-M")
                    .arg(dir.join("mgmt"))
                    .args(["-t", "tA", "-t", "tB"])
                    .stdin(Stdio::piped());
                spawn_switch_process(&s, &mut cmd)?
            } else {
                spawn_switch(&s, plexus, &["--tap", "tA", "tB"])?
            };
            switch = Some(made.process(child));
            wait_until(&format!("{topology}'s TAP devices"), || nl.link("tB").is_ok())?;
            move_link(&s, "tA", &a)?;
            move_link(&s, "tB", &b)?;
        }
        other => bail!("no topology {other:?} (one of {})", TOPOLOGIES.join(", ")),
    }
    let (ia, ib) = match topology {
        "plexus-tap" | "vde" => ("tA", "tB"),
        _ => ("eA", "eB"),
    };
    host_side(&a, ia, A_IP)?;
    host_side(&b, ib, B_IP)?;
    // Until A reaches B (ARP, the switch's learning).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = ping(&a, 1, Duration::from_millis(10))?;
        if s.all_answered() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{topology}: A does not reach B");
        }
    }
    Ok(Rig {
        _made: made,
        switch,
        a,
        b,
    })
}

/// `plexus switch ARGS` in namespace `ns`, on CPU 1.
fn spawn_switch(ns: &Path, plexus: &Path, args: &[&str]) -> anyhow::Result<Child> {
    spawn_switch_process(ns, Command::new(plexus).arg("switch").args(args).stdin(Stdio::null()))
}

/// A switch process in namespace `ns`, on CPU 1, given 200 ms to open its
/// ports.
fn spawn_switch_process(ns: &Path, cmd: &mut Command) -> anyhow::Result<Child> {
    let child = spawn_in(ns, 1, cmd.stdout(Stdio::null()).stderr(Stdio::null()))?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(child)
}

fn ping(ns: &Path, count: u16, interval: Duration) -> anyhow::Result<diag::PingSummary> {
    let socket = diag::icmp_socket(NsKey::netns(ns))?;
    let opts = PingOptions {
        count,
        interval,
        wait: Duration::from_secs(1),
        ..PingOptions::default()
    };
    Ok(diag::ping(&socket, B_IP, opts, |_| {})?)
}

/// Received frames of `eth0` in namespace `ns` (its kernel's counter).
fn rx_packets(ns: &Path) -> anyhow::Result<u64> {
    let text = netns::run_in(ns, || std::fs::read_to_string("/proc/thread-self/net/dev"))??;
    text.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == "eth0").then(|| rest.split_whitespace().nth(1)?.parse().ok())?
        })
        .context("no eth0 in /proc/net/dev")
}

/// CPU seconds of process `pid` so far.
fn cpu_secs(pid: u32) -> f64 {
    crate::metrics::cpu_secs(Path::new(&format!("/proc/{pid}/stat"))).unwrap_or(0.0)
}

/// 64-byte UDP frames from A to B for `dur` from one AF_PACKET socket on
/// CPU 0: (frames/s B received, frames sent).
fn blast(rig: &Rig, dur: Duration) -> anyhow::Result<(f64, u64)> {
    let b_mac = netns::run_in(&rig.b, || Netlink::open().and_then(|mut n| n.link("eth0")))??
        .mac
        .context("B has no MAC")?;
    let a = rig.a.clone();
    let before = rx_packets(&rig.b)?;
    let sent = netns::run_in(&a, move || -> anyhow::Result<u64> {
        pin_me(0);
        let mut port = PacketPort::open("eth0", false)?;
        let mut nl = Netlink::open()?;
        let a_mac = nl.link("eth0")?.mac.unwrap_or([2, 0, 0, 0, 0, 1]);
        // The project's own frame builder (checksums right); padded to the
        // 60 bytes of a minimal Ethernet frame (64 on the wire).
        let mut f = plexus_switch::dataplane::explain::probe_frame(
            plexus_switch::MacAddr(a_mac),
            plexus_switch::MacAddr(b_mac),
            A_IP,
            B_IP,
            plexus_switch::dataplane::explain::Probe::Udp(9),
        );
        f.resize(60, 0);
        let batch = [&f[..]; 64];
        let end = Instant::now() + dur;
        let mut sent = 0u64;
        while Instant::now() < end {
            sent += port.send(&batch).sent as u64;
        }
        Ok(sent)
    })??;
    std::thread::sleep(Duration::from_millis(200));
    let got = rx_packets(&rig.b)? - before;
    #[allow(clippy::cast_precision_loss)]
    Ok((got as f64 / dur.as_secs_f64(), sent))
}

/// iperf3 A -> B for `dur`: Gbit/s, or None without iperf3. Unpinned, as
/// peers.sh runs it (both ends on one CPU would change TCP's behaviour).
fn tcp(rig: &Rig, dur: Duration) -> anyhow::Result<Option<f64>> {
    if Command::new("iperf3").arg("--version").output().is_err() {
        return Ok(None);
    }
    let mut server = netns::run_in(&rig.b, || {
        Command::new("iperf3")
            .args(["-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })??;
    std::thread::sleep(Duration::from_millis(300));
    let secs = dur.as_secs().max(1).to_string();
    let client = netns::run_in(&rig.a, || {
        Command::new("iperf3")
            .args(["-c", &B_IP.to_string(), "-t", &secs, "-O", WARM_UP_SECS, "-J"])
            .args(["--connect-timeout", "3000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    })??;
    // A path that breaks TCP (OVS's userspace datapath with offloads on)
    // stalls iperf3 for minutes: give up 10 s after the run should end.
    let out = wait_deadline(client, dur + Duration::from_secs(11));
    let _ = server.kill();
    let _ = server.wait();
    let Some(out) = out else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_slice(&out).context("iperf3's JSON")?;
    Ok(v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9))
}

/// The stdout of `child` once it exits; `None`, and the child killed, if it
/// runs past `limit`.
fn wait_deadline(mut child: Child, limit: Duration) -> Option<Vec<u8>> {
    // Read while it runs: a long run's output outgrows the pipe.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = Instant::now() + limit;
    let mut exited = false;
    while !exited {
        exited = child.try_wait().ok().flatten().is_some();
        if !exited && Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().ok()?.ok()
}

/// Turns transmit checksum offload, TSO, GSO and GRO off on both hosts'
/// `eth0` (as peers.sh);
/// false without `ethtool` or when it fails.
fn offloads_off(rig: &Rig) -> bool {
    [&rig.a, &rig.b].iter().all(|ns| {
        netns::run_in(ns, || {
            Command::new("ethtool")
                .args(["-K", "eth0", "tx", "off", "tso", "off", "gso", "off", "gro", "off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        })
        .ok()
        .and_then(Result::ok)
        .is_some_and(|s| s.success())
    })
}

/// Busy cores of the machine over 0.5 s (from /proc/stat).
fn busy_cores() -> f64 {
    let read = || -> (f64, f64) {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<f64> = text
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
        (v.iter().sum(), idle)
    };
    let (t0, i0) = read();
    std::thread::sleep(Duration::from_millis(500));
    let (t1, i1) = read();
    let total = t1 - t0;
    if total <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    (1.0 - (i1 - i0) / total) * cpus
}

/// One repetition of `topology`.
fn rep(topology: &'static str, plexus: &Path, s: &Settings) -> anyhow::Result<Vec<Sample>> {
    let rig = build(topology, plexus)?;
    let mut out = Vec::new();
    let mut push = |metric, value| {
        out.push(Sample {
            topology,
            metric,
            value,
        })
    };
    let pinger = {
        let a = rig.a.clone();
        let pings = s.pings;
        std::thread::spawn(move || {
            pin_me(0);
            ping(&a, pings, Duration::from_millis(2))
        })
    };
    let summary = pinger.join().map_err(|_| anyhow::anyhow!("the pinger panicked"))??;
    let mut rtts: Vec<Duration> = summary.rtts.clone();
    rtts.sort_unstable();
    if let Some(m) = rtts.get(rtts.len() / 2) {
        push("rtt_us", m.as_secs_f64() * 1e6);
    }
    // Warm-up: the generator runs a while before the counted window (ARP,
    // the switch's learning and its poll loop settle).
    blast(
        &rig,
        (s.duration / 5).clamp(Duration::from_millis(200), Duration::from_secs(1)),
    )?;
    let cpu0 = rig.switch.map(cpu_secs);
    let (pps, sent) = blast(&rig, s.duration)?;
    push("pps_64", pps);
    // The generator's own rate (JSON only): what it offered, against what B
    // received. How far a generator overdrives a path changes what the path
    // forwards (docs/bench.md, peers.sh's TAP figure).
    #[allow(clippy::cast_precision_loss)]
    push("pps_64_sent", sent as f64 / s.duration.as_secs_f64());
    if let (Some(pid), Some(cpu0)) = (rig.switch, cpu0) {
        let used = cpu_secs(pid) - cpu0;
        if used > 0.0 {
            push("switch_frames_per_cpu_s", pps * s.duration.as_secs_f64() / used);
        }
    }
    if let Some(g) = tcp(&rig, s.duration)? {
        push("tcp_gbps", g);
    }
    // Every segment a real frame of at most 1514 bytes: offloads off at both
    // ends (ethtool), as peers.sh's "offloads off".
    if offloads_off(&rig)
        && let Some(g) = tcp(&rig, s.duration)?
    {
        push("tcp_1500_gbps", g);
    }
    Ok(out)
}

/// min, median, max.
fn spread(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary: per topology and metric, (min, median, max).
type Summary = Vec<(&'static str, &'static str, (f64, f64, f64))>;

fn summarize(samples: &[Sample], topologies: &[&'static str], metrics: &[Metric]) -> Summary {
    let mut out = Vec::new();
    for &t in topologies {
        for &(m, _, _) in metrics {
            let vals = samples
                .iter()
                .filter(|s| s.topology == t && s.metric == m)
                .map(|s| s.value)
                .collect();
            if let Some(x) = spread(vals) {
                out.push((t, m, x));
            }
        }
    }
    out
}

/// The table: a row per topology, a column per metric, `median [min–max]`
/// and the ratio of the median to the median of `base` (the kernel's).
fn table(summary: &Summary, topologies: &[&'static str], metrics: &[Metric], base: &str) -> String {
    let get = |t: &str, m: &str| summary.iter().find(|(st, sm, _)| *st == t && *sm == m).map(|x| x.2);
    let mut out = String::new();
    let _ = write!(out, "| topology |");
    for (_, unit, _) in metrics {
        let _ = write!(out, " {unit} | ÷ {base} |");
    }
    out.push('\n');
    out.push_str("|---|");
    for _ in metrics {
        out.push_str("---|---|");
    }
    out.push('\n');
    for &t in topologies {
        let _ = write!(out, "| {t} |");
        for &(m, _, _) in metrics {
            match get(t, m) {
                Some((lo, med, hi)) => {
                    let ratio = get(base, m)
                        .filter(|b| b.1 > 0.0)
                        .map_or_else(|| "-".to_owned(), |b| format!("{:.2}", med / b.1));
                    let _ = write!(out, " {} [{}–{}] | {ratio} |", human(med), human(lo), human(hi));
                }
                None => out.push_str(" - | - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// One table of the benchmark: its rows, its columns, the row the ratios are to.
struct Section<'a> {
    topologies: &'a [&'static str],
    metrics: &'a [Metric],
    base: &'static str,
}

/// A bar chart per section: each metric's median as a ratio to the base's
/// (metrics the base has no positive figure for are left out).
fn svg(summary: &Summary, sections: &[Section<'_>]) -> String {
    let (w, row, bar_h) = (760.0_f64, 26.0_f64, 18.0_f64);
    let get = |t: &str, m: &str| summary.iter().find(|(st, sm, _)| *st == t && *sm == m).map(|x| x.2.1);
    let mut body = String::new();
    let mut y = 40.0;
    for sec in sections {
        let base_of = |m: &str| get(sec.base, m).filter(|b| *b > 0.0);
        for (m, unit, higher) in sec.metrics.iter().filter(|(m, _, _)| base_of(m).is_some()) {
            let _ = write!(
                body,
                "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{unit} (÷ {})</text>",
                y + 12.0,
                sec.base
            );
            y += 18.0;
            let top = y;
            let base = base_of(m).unwrap_or(1.0);
            for &t in sec.topologies {
                if let Some(v) = get(t, m).filter(|v| *v > 0.0) {
                    let ratio = if *higher { v / base } else { base / v };
                    let len = (ratio.min(3.0) / 3.0) * 480.0;
                    let _ = write!(
                        body,
                        "<text x=\"20\" y=\"{ty}\">{t}</text><rect x=\"130\" y=\"{y}\" width=\"{len:.1}\" height=\"{bar_h}\" fill=\"{c}\"/>\
                         <text x=\"{tx:.1}\" y=\"{ty}\">{ratio:.2}× ({v})</text>",
                        ty = y + 13.0,
                        c = if t.starts_with("plexus") { "#2f6db5" } else { "#9aa6b4" },
                        tx = 136.0 + len,
                        v = human(v),
                    );
                    y += row;
                }
            }
            let x1 = 130.0 + 160.0;
            let _ = write!(
                body,
                "<line x1=\"{x1}\" x2=\"{x1}\" y1=\"{top}\" y2=\"{y}\" stroke=\"#d08a14\" stroke-dasharray=\"4 3\"/>"
            );
            y += 12.0;
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <text x=\"10\" y=\"20\" font-size=\"14\">plexus bench: median ÷ the kernel's (1.0 = the kernel; right is better)</text>{body}</svg>\n",
        h = y + 10.0
    )
}

/// Runs the benchmark; returns the tables.
pub fn run(s: &Settings) -> anyhow::Result<String> {
    if !nix::unistd::geteuid().is_root() {
        bail!("plexus bench needs root: it makes namespaces, veth pairs, a bridge and TAP devices");
    }
    let plexus = std::env::current_exe().context("finding the plexus binary")?;
    let wanted = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|t| s.only.is_empty() || s.only.iter().any(|o| o == t))
            .collect()
    };
    let has = |p: &str| Command::new(p).arg("--version").output().is_ok();
    let mut topologies = wanted(&TOPOLOGIES);
    // vde_switch -v prints its version; it has no --version.
    if Command::new("vde_switch").arg("-v").output().is_err() {
        topologies.retain(|t| *t != "vde");
    }
    if !ovs::installed() {
        topologies.retain(|t| !ovs::TOPOLOGIES.contains(t));
    }
    let peers = wanted(&paths::PEERS);
    if topologies.is_empty() && peers.is_empty() {
        bail!(
            "--only names no topology (one of {}, {})",
            TOPOLOGIES.join(", "),
            paths::PEERS.join(", ")
        );
    }
    let mut lines = vec![json!({
        "kind": "env",
        "reps": s.reps,
        "duration_s": s.duration.as_secs_f64(),
        "pings": s.pings,
        "cpus": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "iperf3": has("iperf3"),
        "wrk": has("wrk"),
    })];
    let mut samples = Vec::new();
    let mut noisiest: f64 = 0.0;
    for r in 0..s.reps {
        type Measure = fn(&'static str, &Path, &Settings) -> anyhow::Result<Vec<Sample>>;
        let runs = topologies
            .iter()
            .map(|&t| (t, rep as Measure))
            .chain(peers.iter().map(|&p| (p, paths::rep as Measure)));
        for (t, measure) in runs {
            let busy = busy_cores();
            noisiest = noisiest.max(busy);
            eprintln!(
                "plexus bench: {t} rep {}/{} (machine busy {busy:.2} cores before)",
                r + 1,
                s.reps
            );
            let got: Vec<Sample> = measure(t, &plexus, s).with_context(|| format!("topology {t}"))?;
            for x in &got {
                lines.push(
                    json!({"kind": "rep", "rep": r, "topology": x.topology, "metric": x.metric,
                                  "value": x.value, "busy_cores_before": busy}),
                );
            }
            samples.extend(got);
        }
    }
    let sections = [
        Section {
            topologies: &topologies,
            metrics: &METRICS,
            base: "bridge",
        },
        Section {
            topologies: &peers,
            metrics: &paths::METRICS,
            base: paths::PEERS[0],
        },
    ];
    let mut summary = Vec::new();
    for sec in &sections {
        summary.extend(summarize(&samples, sec.topologies, sec.metrics));
    }
    for (t, m, (lo, med, hi)) in &summary {
        lines.push(json!({"kind": "summary", "topology": t, "metric": m, "min": lo, "median": med, "max": hi}));
    }
    if let Some(p) = &s.results {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &s.svg {
        std::fs::write(p, svg(&summary, &sections)).with_context(|| format!("writing {}", p.display()))?;
    }
    let mut out = format!(
        "plexus bench: {} repetition(s) of {:.0} s after a warm-up, {} pings; ping and generator on CPU 0, iperf3 unpinned, switch on CPU 1; \
         machine busy before a repetition: at most {noisiest:.2} cores{}\n",
        s.reps,
        s.duration.as_secs_f64(),
        s.pings,
        if noisiest > 0.25 {
            " (NOT quiet: figures are noisy)"
        } else {
            ""
        }
    );
    if !topologies.is_empty() {
        out.push('\n');
        out.push_str(&table(&summary, &topologies, &METRICS, "bridge"));
    }
    if !peers.is_empty() {
        let _ = write!(
            out,
            "\nPublished port and outbound NAT (clients outside, servers in the container; all on CPU 0, the daemon on CPU 1{}):\n\n",
            if has("iperf3") { "" } else { "; no iperf3: no figures" }
        );
        out.push_str(&paths::table(&summary, &peers));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_topology_and_ratios_to_the_bridge() {
        let samples = vec![
            Sample {
                topology: "bridge",
                metric: "pps_64",
                value: 200_000.0,
            },
            Sample {
                topology: "bridge",
                metric: "pps_64",
                value: 220_000.0,
            },
            Sample {
                topology: "plexus-veth",
                metric: "pps_64",
                value: 300_000.0,
            },
            Sample {
                topology: "bridge",
                metric: "rtt_us",
                value: 20.0,
            },
            Sample {
                topology: "plexus-veth",
                metric: "rtt_us",
                value: 40.0,
            },
        ];
        let topologies = ["bridge", "plexus-veth"];
        let summary = summarize(&samples, &topologies, &METRICS);
        let t = table(&summary, &topologies, &METRICS, "bridge");
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 4, "{t}");
        assert!(rows[2].starts_with("| bridge | 20.00 [20.00–20.00] | 1.00 |"), "{t}");
        // The median of two is the upper one; 300k / 220k.
        assert!(rows[3].contains("300k [300k–300k] | 1.36 |"), "{t}");
        assert!(rows[3].ends_with(" - | - |"), "no TCP figure: {t}");
        let chart = svg(
            &summary,
            &[Section {
                topologies: &topologies,
                metrics: &METRICS,
                base: "bridge",
            }],
        );
        assert!(chart.starts_with("<svg") && chart.contains("plexus-veth"));
    }
}
