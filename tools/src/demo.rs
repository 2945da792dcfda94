//! `plexus demo`: the main job in one command. It builds a network with two
//! sandboxes in this process (its own controller and switch, a temporary state
//! directory, names under a random `pxd` tag), pings across, moves data over TCP,
//! shows the MAC table, the per-port counters and the rate, and removes
//! everything — also when a step fails.
//!
//! It needs nothing but this binary: the ping and the transfer use sockets
//! opened inside the sandboxes ([`plexus_sandbox::sock`]; a socket stays in the
//! namespace it was created in, whoever uses it), so neither `ping` nor
//! `iperf3` has to be installed. Run by an ordinary user it runs rootless (the
//! sandboxes live in a user namespace of its own, their endpoints are TAP
//! devices), after checking what the host must allow — the checks of `plexus
//! info` — and saying in one line what is missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use plexus::diag::{self, PingOptions};
use plexus::mode::{Mode, rootless_checks};
use plexus::{Config, Controller, EndpointKind, EndpointOptions, JoinOptions, NetworkOptions, SandboxInfo};
use plexus_sandbox::sock::{self, NsKey};

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
            if let Err(e) = c.stop_rootless_holder() {
                eprintln!("plexus demo: cleanup: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    let tag = format!("pxd{:02x}", rand_byte());
    let state_dir = std::env::temp_dir().join(format!("plexus-demo-{tag}-{}", std::process::id()));
    let config = Config {
        state_dir: state_dir.clone(),
        netns_prefix: format!("{tag}-"),
        ifname_prefix: tag.clone(),
        ..Config::default()
    };
    if config.mode == Mode::Rootless {
        preflight()?;
    }
    println!("mode: {} ({})", config.mode.as_str(), config.mode_reason);
    let mode = config.mode;
    let mut scene = Scene {
        controller: None,
        state_dir,
    };
    let c = Controller::new(config).context("starting the controller")?;
    scene.controller = Some(c.clone());

    let (ka, kb) = match (mode, args.kind) {
        // Rootless endpoints are TAP devices made inside the sandbox.
        (Mode::Rootless, _) | (_, Kind::Tap) => (EndpointKind::Tap, EndpointKind::Tap),
        (_, Kind::Veth) => (EndpointKind::Veth, EndpointKind::Veth),
        (_, Kind::Mixed) => (EndpointKind::Veth, EndpointKind::Tap),
    };
    let net = c.new_network("bridge", "demo", NetworkOptions::default())?;
    let info = net.info()?;
    println!(
        "network demo: subnet {}, gateway {}, switched by Plexus (no kernel bridge)",
        show(info.subnet),
        show(info.gateway)
    );
    let mut hosts: Vec<(Ipv4Addr, SandboxInfo)> = Vec::new();
    for (name, kind) in [("alpha", ka), ("beta", kb)] {
        let ep = net.create_endpoint(name, EndpointOptions::default().kind(kind).remove_with_sandbox(true))?;
        ep.join(name, JoinOptions::default())?;
        let i = ep.info()?;
        let addr = i.address.context("endpoint without address")?.addr();
        let sb = c.sandbox(name)?.info()?;
        println!(
            "sandbox {name:<5}  {} eth0 {addr}  mac {}  namespace {}",
            kind,
            show(i.mac),
            sb.key.as_ref().map_or_else(|| "-".into(), |k| k.display().to_string())
        );
        hosts.push((addr, sb));
    }
    let (alpha, beta) = (&hosts[0], &hosts[1]);

    let opts = PingOptions::default();
    println!("\n$ ping -c {} {} (from alpha)", opts.count, beta.0);
    println!(
        "PING {0} ({0}) {1}({2}) bytes of data.",
        beta.0,
        opts.payload,
        opts.payload + 28
    );
    let socket = diag::icmp_socket(key(&alpha.1)?).context("opening an ICMP socket in alpha")?;
    let summary = diag::ping(&socket, beta.0, opts, |r| println!("{r}")).context("pinging from alpha")?;
    println!("\n{summary}");
    if !summary.all_answered() {
        bail!(
            "ping from alpha to beta lost {}% of its requests",
            summary.loss_percent()
        );
    }

    println!("\nTCP alpha -> beta for {} s ...", args.seconds);
    let (bytes, elapsed) = tcp_transfer(&alpha.1, &beta.1, beta.0, Duration::from_secs(args.seconds))?;
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

fn rand_byte() -> u8 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id()).to_le_bytes()[0]
}

/// Where to open a socket of sandbox `sb`.
fn key(sb: &SandboxInfo) -> anyhow::Result<NsKey<'_>> {
    Ok(NsKey {
        netns: sb.key.as_deref().context("the sandbox has no namespace")?,
        userns: sb.userns.as_deref(),
    })
}

/// Streams data from a socket made in `from` to a listener made in `to` for
/// `duration`; returns the bytes the receiver counted and the time it took.
fn tcp_transfer(
    from: &SandboxInfo,
    to: &SandboxInfo,
    addr: Ipv4Addr,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let sa = SocketAddrV4::new(addr, 5201);
    let listener = sock::tcp_listener(key(to)?, sa).context("listening in beta")?;
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
    let mut stream =
        sock::tcp_connect(key(from)?, sa, None, Duration::from_secs(3)).context("connecting from alpha")?;
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

/// Rootless: what the host must allow for the demo (the checks of `plexus
/// info`); one line naming what is missing and what to do.
fn preflight() -> anyhow::Result<()> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let missing: Vec<String> = rootless_checks(&user, uid.as_raw(), gid.as_raw())
        .into_iter()
        .filter(|c| !c.ok && matches!(c.name.as_str(), "user_namespaces" | "tun"))
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if !missing.is_empty() {
        bail!(
            "rootless demo (uid {uid}) cannot run on this host: {} — or run it as root",
            missing.join("; ")
        );
    }
    Ok(())
}
