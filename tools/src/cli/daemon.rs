//! `plexus daemon`: its flags, turned into the daemon's options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::{daemon, logger};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Directory of the store (state.json and its lock) and the sandboxes' files.
    ///
    /// Default: /var/lib/plexus (rootful); for a rootless daemon
    /// $XDG_DATA_HOME/plexus, else ~/.local/share/plexus.
    #[arg(long, env = "PLEXUS_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Microseconds the switch keeps polling its ports after traffic before it
    /// sleeps until the next frame.
    ///
    /// Polling saves the wake-up latency of the next frame at the cost of CPU
    /// while traffic flows; an idle switch never polls. 0: never poll (least CPU,
    /// higher latency).
    #[arg(long, value_name = "US", default_value_t = default_busy_poll_us())]
    pub busy_poll_us: u64,
    /// Receive steering (RPS) on veth host ends: off, auto, or a CPU list.
    ///
    /// A veth hands each frame to the switch on the CPU that sent it; steering
    /// sends every frame of a flow through one CPU instead. auto: the CPUs the
    /// daemon is not pinned to (all when unpinned). On a 2-vCPU VM it raised TCP
    /// with 1500-byte frames through the switch by a third and added ~8 µs to
    /// ping RTT (docs/bench.md); hence off by default.
    #[arg(
        long,
        env = "PLEXUS_RX_STEERING",
        value_name = "off|auto|CPUS",
        default_value = "off"
    )]
    pub rx_steering: plexus_sandbox::sysfs::RxSteering,
    /// How the switch reads and writes veth host ends: af_packet or af_xdp.
    ///
    /// af_packet: an AF_PACKET socket with a receive ring and virtio-net
    /// headers, so GSO super-frames cross whole. af_xdp: an XDP program on each
    /// host end redirects its frames into an AF_XDP socket, skipping the host's
    /// receive path: more small frames per second and faster TCP at 1500-byte
    /// frames, but a veth takes GSO from the container's end while the program
    /// is attached, so container TCP runs at MTU-sized frames (about a sixth of
    /// af_packet's on a 2-vCPU VM; docs/bench.md). Needs root and BPF links
    /// (Linux 5.9+); where refused, the port is AF_PACKET and `plexus stats`
    /// says why.
    #[arg(
        long,
        env = "PLEXUS_VETH_IO",
        value_name = "af_packet|af_xdp",
        default_value = "af_packet"
    )]
    pub veth_io: plexus::config::VethIo,
    /// Most outbound NAT flows in total (at least 1).
    ///
    /// A new flow beyond it is refused (counted as nat_full); existing flows are
    /// never evicted. Each flow holds one socket of the daemon: at start the
    /// daemon raises its open-file limit to the hard one, keeps descriptors for
    /// the API and its own use, and gives the rest to ports, published listeners
    /// and flows (the fd budget, `plexus info`); a flow beyond the budget is
    /// refused as fd_budget.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = nat_defaults().max_flows)]
    pub nat_max_flows: usize,
    /// Most outbound NAT flows of one endpoint (at least 1).
    ///
    /// Keeps one container from taking the whole table; beyond it the container's
    /// new flows are refused (nat_full). Default: a fair share — the flows' part
    /// of the fd budget divided by the number of endpoints plus one, at least 64.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    pub nat_max_flows_per_endpoint: Option<usize>,
    /// Seconds a UDP flow of outbound NAT stays open without a packet either way
    /// (at least 1).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().udp_timeout.as_secs())]
    pub nat_udp_timeout: u64,
    /// Seconds an ICMP echo flow of outbound NAT stays open without a packet either
    /// way (at least 1).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().icmp_timeout.as_secs())]
    pub nat_icmp_timeout: u64,
    /// Seconds an established TCP connection (outbound or to a published port)
    /// stays open without a segment either way (at least 1); then both sides
    /// are reset.
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().tcp_timeout.as_secs())]
    pub nat_tcp_timeout: u64,
    /// Seconds a TCP connection in its handshake or closing stays without a
    /// segment (at least 1).
    #[arg(
        long,
        value_name = "SECS",
        value_parser = at_least_one::<u64>,
        default_value_t = nat_defaults().tcp_transitory_timeout.as_secs()
    )]
    pub nat_tcp_transitory_timeout: u64,
    /// Most API connections open at once (at least 1); one more is answered
    /// with a TooManyClients error and closed (counted in `plexus info`).
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = daemon::DEFAULT_API_MAX_CLIENTS)]
    pub api_max_clients: usize,
    /// Seconds an API connection may wait between requests, or take to send one,
    /// before the daemon closes it (at least 1; counted in `plexus info`).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = daemon::DEFAULT_API_IDLE_SECS)]
    pub api_idle_timeout: u64,
    /// What the daemon logs on stderr: error, warn, info (what it does: start,
    /// stop, each change), or debug. Repeated messages are rate-limited.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = logger::LogLevel::Info)]
    pub log_level: logger::LogLevel,
    /// Also be a Docker network and IPAM plugin named NAME (default: plexus).
    ///
    /// Serves libnetwork's remote driver protocol on
    /// /run/docker/plugins/NAME.sock, so `docker network create -d NAME
    /// --ipam-driver NAME NET` makes a Plexus network (its id is Docker's,
    /// its name docker-ID) and `docker run --network NET -p 8080:80 ...`
    /// puts the container on this daemon's switch with its ports published
    /// (client address kept). `-o` options of such a network:
    /// com.docker.network.driver.mtu, plexus.name, plexus.host_loopback,
    /// plexus.anti_spoofing, plexus.mac_ageing, plexus.mac_table_size.
    /// Rootful only; dockerd must run in the daemon's network namespace.
    /// See docs/docker.md.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "plexus", require_equals = false)]
    pub docker_plugin: Option<String>,
    /// Where the networks' gateways forward names that are not their own
    /// (repeatable, tried in order; PORT defaults to 53).
    ///
    /// Default: the IPv4 nameservers of the daemon's /etc/resolv.conf. A
    /// loopback resolver such as 127.0.0.53 works: the queries leave as the
    /// daemon's own sockets. Each gateway answers its network's names itself
    /// (`plexus dns NET`); an --internal network forwards nothing.
    #[arg(long = "dns-upstream", value_name = "IP[:PORT]", value_parser = parse_upstream)]
    pub dns_upstreams: Vec<std::net::SocketAddrV4>,
    /// Serve the switch's counters in the Prometheus text format at
    /// http://ADDR:PORT/metrics (read-only; e.g. 127.0.0.1:9464).
    ///
    /// Per-port frames, bytes and drops by reason, MAC table sizes, NAT flows
    /// by protocol and state, published ports, the gateways' DNS counters and
    /// the switch worker's CPU time — the numbers `plexus stats`, `fdb`,
    /// `nat` and `info` show. The same listener serves a live picture of the
    /// networks at http://ADDR:PORT/ (a graph with rates on the links, the
    /// MAC and NAT tables; read-only, no outside resources). Use a loopback
    /// address unless the scraper is elsewhere: both name every network and
    /// endpoint.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `IP` or `IP:PORT` of a DNS upstream.
fn parse_upstream(s: &str) -> Result<std::net::SocketAddrV4, String> {
    if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
        return Ok(std::net::SocketAddrV4::new(ip, 53));
    }
    s.parse::<std::net::SocketAddrV4>()
        .map_err(|_| format!("{s:?} is not an IPv4 address or IPv4:PORT"))
}

/// The library's NAT limits and timeouts, which the daemon's flags default to.
fn nat_defaults() -> plexus_switch::NatConfig {
    plexus_switch::NatConfig::default()
}

impl DaemonArgs {
    /// The NAT limits and timeouts the flags ask for.
    pub fn nat(&self) -> plexus_switch::NatConfig {
        plexus_switch::NatConfig {
            max_flows: self.nat_max_flows,
            max_flows_per_port: self.nat_max_flows_per_endpoint,
            udp_timeout: std::time::Duration::from_secs(self.nat_udp_timeout),
            icmp_timeout: std::time::Duration::from_secs(self.nat_icmp_timeout),
            tcp_timeout: std::time::Duration::from_secs(self.nat_tcp_timeout),
            tcp_transitory_timeout: std::time::Duration::from_secs(self.nat_tcp_transitory_timeout),
            // Sized by the daemon from its descriptor limit.
            fd_budget: None,
        }
    }
}

/// A positive integer (a flag's value parser).
pub(super) fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    match s.parse::<T>() {
        Ok(n) if n == T::default() => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `plexus::Config::default().busy_poll` in microseconds.
fn default_busy_poll_us() -> u64 {
    u64::try_from(plexus::Config::default().busy_poll.as_micros()).unwrap_or(u64::MAX)
}

/// Runs `plexus daemon` until SIGINT or SIGTERM.
pub fn run(socket: &Path, args: DaemonArgs) -> anyhow::Result<u8> {
    crate::logger::init("plexus daemon", args.log_level);
    daemon::run(daemon::Options {
        nat: args.nat(),
        state_dir: args
            .state_dir
            .unwrap_or_else(|| plexus::config::default_state_dir(plexus::mode::Mode::detect().0)),
        socket: socket.to_owned(),
        busy_poll: Duration::from_micros(args.busy_poll_us),
        rx_steering: args.rx_steering,
        veth_io: args.veth_io,
        api_max_clients: args.api_max_clients,
        api_idle: Duration::from_secs(args.api_idle_timeout),
        docker_plugin: args.docker_plugin,
        dns_upstreams: (!args.dns_upstreams.is_empty()).then_some(args.dns_upstreams),
        metrics: args.metrics,
    })?;
    Ok(0)
}
