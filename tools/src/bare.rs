//! `plexus switch IFACE...`: the switch alone, in the foreground, on interfaces
//! that already exist — one bridge domain, no daemon, no state. It is what
//! benchmarks plug in (`peers.sh --switch-cmd 'plexus switch {A} {B}'`).
//!
//! Anti-spoofing is off (the switch does not know the hosts' MACs); learning,
//! flooding and ageing work as in a network. SIGINT and SIGTERM are blocked
//! before the dataplane thread starts (it inherits the mask) and taken with
//! `sigwait`, so the stop is an ordinary return: ports are closed, TAPs made with
//! `--tap` vanish, and the counters are printed.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use plexus_sandbox::{sysfs, tap};
use plexus_switch::io::{PacketPort, Port, TapPort, XdpPort};
use plexus_switch::{Dataplane, DataplaneConfig, DomainConfig, PortConfig};

/// Arguments of `plexus switch`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Keep polling this long after the last frame before sleeping in epoll
    /// (0 = purely event driven). Polling saves the ~70 µs wake-up of an idle
    /// vCPU per burst at the cost of a busy core while traffic flows.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = default_busy_poll_us())]
    pub busy_poll_us: u64,
    /// Create TAP devices with these names (virtio-net headers, TSO) and switch
    /// between them, instead of opening existing interfaces. They disappear when
    /// the switch stops.
    #[arg(long)]
    pub tap: bool,
    /// Do not ask for virtio-net headers: GSO frames and partial checksums are
    /// then not carried, so hosts must turn their offloads off. With the
    /// headers (the default) each AF_PACKET interface gets GRO turned on while
    /// the switch runs (back off at exit if it was off), so MTU-sized TCP
    /// segments arrive coalesced; with this flag GRO is left alone.
    #[arg(long)]
    pub no_offload: bool,
    /// How to read and write the interfaces: af_packet, or af_xdp (an XDP
    /// program redirects each interface's frames into an AF_XDP socket). An
    /// interface the kernel refuses AF_XDP on (no root, no BPF links) falls
    /// back to AF_PACKET, and the start line says why. With af_xdp a veth
    /// peer sends MTU-sized frames (no GSO); see `plexus daemon --help`.
    #[arg(
        long,
        env = "PLEXUS_VETH_IO",
        value_name = "af_packet|af_xdp",
        default_value = "af_packet",
        conflicts_with = "tap"
    )]
    pub veth_io: plexus::config::VethIo,
    /// Receive steering (RPS) on the interfaces: off, auto (the CPUs the switch
    /// is not pinned to; all when unpinned), or a CPU list. See `plexus daemon
    /// --help`.
    #[arg(
        long,
        env = "PLEXUS_RX_STEERING",
        value_name = "off|auto|CPUS",
        default_value = "off"
    )]
    pub rx_steering: sysfs::RxSteering,
    /// MAC table ageing time.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub mac_ageing: u64,
    /// Interface MTU the switch accepts frames up to (the hosts' MTU).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Interfaces to attach (at least two).
    #[arg(required = true, num_args = 2.., value_name = "IFACE")]
    pub ifaces: Vec<String>,
}

fn default_busy_poll_us() -> u64 {
    u64::try_from(DataplaneConfig::default().busy_poll.as_micros()).unwrap_or(u64::MAX)
}

fn open(args: &SwitchArgs, iface: &str) -> anyhow::Result<(Box<dyn Port>, String)> {
    if args.tap {
        let offload = !args.no_offload;
        let fd = tap::create(
            iface,
            tap::TapOptions {
                vnet_hdr: offload,
                multi_queue: false,
            },
        )
        .with_context(|| format!("creating TAP {iface}"))?;
        if offload {
            tap::set_offload(
                fd.as_fd(),
                tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6 | tap::TUN_F_TSO_ECN,
            )?;
        }
        let how = if offload {
            "TAP, virtio-net header, TSO"
        } else {
            "TAP, no offloads"
        };
        return Ok((Box::new(TapPort::new(fd, offload)), how.into()));
    }
    // Before the port opens.
    let steering = match args.rx_steering.resolve() {
        Ok(None) => "off".to_owned(),
        Ok(Some(cpus)) => match sysfs::set_rps(iface, &cpus) {
            Ok(_) => format!("CPUs {cpus}"),
            Err(e) => format!("off ({e})"),
        },
        Err(e) => format!("off ({e})"),
    };
    let mut fallback = String::new();
    if args.veth_io == plexus::config::VethIo::AfXdp {
        match XdpPort::open(iface, args.mtu) {
            Ok(port) => {
                let how = format!("AF_XDP ({}), receive steering {steering}", port.summary());
                return Ok((Box::new(port), how));
            }
            Err(e) => fallback = format!(" (AF_XDP refused: {e})"),
        }
    }
    let port = PacketPort::open(iface, !args.no_offload).with_context(|| format!("opening AF_PACKET on {iface}"))?;
    let f = port.features();
    let how = format!(
        "AF_PACKET, virtio-net header {}, GRO {}, ignore-outgoing {}, qdisc bypass {}, send socket {}, TX ring {}, receive steering {steering}{fallback}",
        on(f.vnet_hdr),
        on(f.gro),
        on(f.ignore_outgoing),
        on(f.qdisc_bypass),
        on(f.send_socket),
        on(f.tx_ring)
    );
    Ok((Box::new(port), how))
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Runs the bare switch until SIGTERM/SIGINT.
pub fn run(args: &SwitchArgs) -> anyhow::Result<u8> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT and SIGTERM")?;

    let dp = Dataplane::start(DataplaneConfig {
        busy_poll: Duration::from_micros(args.busy_poll_us),
        ..DataplaneConfig::default()
    })?;
    let domain = dp.add_domain(DomainConfig {
        anti_spoofing: false,
        ageing: Duration::from_secs(args.mac_ageing),
        ..DomainConfig::default()
    })?;
    let ports = args
        .ifaces
        .iter()
        .map(|i| open(args, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (iface, (port, how)) in args.ifaces.iter().zip(ports) {
        let offload = port.offload();
        let config = PortConfig {
            domain,
            name: iface.clone(),
            mtu: args.mtu,
            mac: None,
            ips: Vec::new(),
            offload,
        };
        dp.add_port(port, config)?;
        eprintln!("plexus switch: {iface}: {how}");
    }
    eprintln!(
        "plexus switch: forwarding between {} ports (busy poll {} µs); SIGTERM or Ctrl-C stops",
        args.ifaces.len(),
        args.busy_poll_us
    );
    let sig = signals.wait().context("waiting for a signal")?;
    let stats = dp.stats()?;
    eprintln!("plexus switch: {sig}, stopping");
    for s in stats {
        let c = s.counters;
        let drops: Vec<String> = plexus_switch::DropReason::ALL
            .iter()
            .filter(|r| c.dropped(**r) > 0)
            .map(|r| format!("{}={}", r.name(), c.dropped(*r)))
            .collect();
        eprintln!(
            "  {:<12} rx {} frames {} bytes, tx {} frames {} bytes, drops {}",
            s.config.name,
            c.rx_frames,
            c.rx_bytes,
            c.tx_frames,
            c.tx_bytes,
            if drops.is_empty() {
                "none".to_owned()
            } else {
                drops.join(" ")
            }
        );
    }
    Ok(0)
}
