//! `plexus demo`: the main job in one command. It builds a network with two
//! sandboxes in this process (its own controller and switch, a temporary state
//! directory, names under a random `pxd` tag), pings across, moves data over TCP,
//! shows the MAC table, the per-port counters and the rate, and removes
//! everything — also when a step fails.
//!
//! The TCP transfer uses plain sockets opened inside the sandboxes (a socket stays
//! in the namespace it was created in, so a short-lived thread that entered the
//! namespace opens it and any thread uses it): no iperf3 needed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use plexus::{Config, Controller, EndpointKind, EndpointOptions, JoinOptions, NetworkOptions};
use plexus_sandbox::exec::{self, ExecSpec};
use plexus_sandbox::netns;

/// Arguments of `plexus demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds of TCP transfer.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub seconds: u64,
    /// Endpoint kind of the two sandboxes.
    #[arg(long = "type", value_enum, default_value_t = Kind::Veth)]
    pub kind: Kind,
}

/// Endpoint kinds as the demo offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Both veth pairs.
    Veth,
    /// Both TAP devices.
    Tap,
    /// One of each.
    Mixed,
}

/// What the demo made, removed on drop whatever happened.
struct Scene {
    controller: Option<Controller>,
    state_dir: PathBuf,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(c) = self.controller.take() {
            for sb in c.sandboxes() {
                if let Err(e) = sb.delete() {
                    eprintln!("plexus demo: cleanup: {e}");
                }
            }
            for net in c.networks() {
                if let Err(e) = net.delete() {
                    eprintln!("plexus demo: cleanup: {e}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates network namespaces and interfaces: run it as root");
    }
    let tag = format!("pxd{:02x}", rand_byte());
    let state_dir = std::env::temp_dir().join(format!("plexus-demo-{tag}-{}", std::process::id()));
    let config = Config {
        state_dir: state_dir.clone(),
        netns_prefix: format!("{tag}-"),
        ifname_prefix: tag.clone(),
        ..Config::default()
    };
    let mut scene = Scene {
        controller: None,
        state_dir,
    };
    let c = Controller::new(config).context("starting the controller")?;
    scene.controller = Some(c.clone());

    let (ka, kb) = match args.kind {
        Kind::Veth => (EndpointKind::Veth, EndpointKind::Veth),
        Kind::Tap => (EndpointKind::Tap, EndpointKind::Tap),
        Kind::Mixed => (EndpointKind::Veth, EndpointKind::Tap),
    };
    let net = c.new_network("bridge", "demo", NetworkOptions::default())?;
    let info = net.info()?;
    println!(
        "network demo: subnet {}, gateway {}, switched by Plexus (no kernel bridge)",
        show(info.subnet),
        show(info.gateway)
    );
    let mut hosts = Vec::new();
    for (name, kind) in [("alpha", ka), ("beta", kb)] {
        let ep = net.create_endpoint(name, EndpointOptions::default().kind(kind).remove_with_sandbox(true))?;
        let key = ep.join(name, JoinOptions::default())?;
        let i = ep.info()?;
        let addr = i.address.context("endpoint without address")?.addr();
        println!(
            "sandbox {name:<5}  {} eth0 {addr}  mac {}  namespace {}",
            kind,
            show(i.mac),
            key.display()
        );
        hosts.push((name, addr, key));
    }
    let (alpha, beta) = (&hosts[0], &hosts[1]);

    println!("\n$ ping -c 3 {} (from alpha)", beta.1);
    let ping = exec::command(
        &ExecSpec {
            netns: Some(alpha.2.clone()),
            ..ExecSpec::default()
        },
        &ping_argv(beta.1),
    )?
    .output()
    .context("running ping (apt-get install iputils-ping)")?;
    print!("{}", String::from_utf8_lossy(&ping.stdout));
    if !ping.status.success() {
        bail!(
            "ping from alpha to beta failed: {}",
            String::from_utf8_lossy(&ping.stderr).trim()
        );
    }

    println!("\nTCP alpha -> beta for {} s ...", args.seconds);
    let (bytes, elapsed) = tcp_transfer(&alpha.2, &beta.2, beta.1, Duration::from_secs(args.seconds))?;
    #[allow(clippy::cast_precision_loss)] // a rate for display
    let gbits = bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9;
    println!(
        "moved {:.1} MB in {:.2} s: {gbits:.2} Gbit/s",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    );

    println!("\nMAC table of network demo (plexus fdb demo):");
    println!("  {:<19} {:<8} {:>8}", "MAC", "ENDPOINT", "AGE (s)");
    for r in c.fdb("demo")? {
        println!("  {:<19} {:<8} {:>8.1}", r.mac.to_string(), r.endpoint, r.age_secs);
    }
    println!("\nPort counters (plexus stats):");
    println!(
        "  {:<8} {:>10} {:>14} {:>10} {:>14}  DROPS",
        "ENDPOINT", "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES"
    );
    for p in c.stats()? {
        let drops: Vec<String> = p
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!(
            "  {:<8} {:>10} {:>14} {:>10} {:>14}  {}",
            p.endpoint,
            p.rx_frames,
            p.rx_bytes,
            p.tx_frames,
            p.tx_bytes,
            if drops.is_empty() {
                "none".into()
            } else {
                drops.join(" ")
            }
        );
    }
    drop(scene);
    println!("\nremoved the sandboxes, endpoints and network");
    Ok(0)
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn ping_argv(to: Ipv4Addr) -> Vec<String> {
    ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([to.to_string()])
        .collect()
}

fn rand_byte() -> u8 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id()).to_le_bytes()[0]
}

/// Streams data from a socket made in `from` to a listener made in `to` for
/// `duration`; returns the bytes the receiver counted and the time it took.
fn tcp_transfer(from: &Path, to: &Path, addr: Ipv4Addr, duration: Duration) -> anyhow::Result<(u64, Duration)> {
    let sa = SocketAddr::from((addr, 5201));
    let listener = netns::run_in(to, || TcpListener::bind(sa))?.context("listening in beta")?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 18];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut stream = netns::run_in(from, || TcpStream::connect_timeout(&sa, Duration::from_secs(3)))?
        .context("connecting from alpha")?;
    let chunk = vec![0x5au8; 1 << 18];
    let start = Instant::now();
    while start.elapsed() < duration {
        stream.write_all(&chunk).context("sending")?;
    }
    drop(stream);
    let bytes = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?
        .context("receiving")?;
    Ok((bytes, start.elapsed()))
}
