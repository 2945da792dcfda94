//! `plexus`: the command line of Plexus and its daemon.
//!
//! `plexus daemon` owns the CNM controller and serves a JSON API on a Unix socket
//! ([`api`], [`daemon`]); every other subcommand is a client of that API
//! ([`client`], [`cli`]), except that `exec` (and `run -- CMD`) start the command
//! locally, inside the sandbox's namespaces, so it inherits the terminal.
//!
//! Exit codes: 0 success; 1 the daemon refused or an operation failed; 2 usage
//! (clap); 125 the daemon cannot be reached; `exec`/`run -- CMD` exit with the
//! command's code (128+N if killed by signal N; 126 if it cannot be started,
//! 127 if not found). Every error is one line `plexus: <message>` on stderr.

mod bare;
mod cli;
mod client;
mod daemon;
mod demo;
mod logger;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

const MAIN_AFTER_HELP: &str = "\
Examples:
  plexus daemon &                                  # as root
  plexus network create --subnet 10.99.0.0/24 n1
  plexus run --network n1 c1
  plexus exec c1 -- ip -4 addr show eth0
  plexus run --network n1 --type tap --rm c2 -- ping -c1 10.99.0.2
  plexus fdb n1
  plexus stats
  plexus nat
  plexus sandbox rm c1
  plexus network rm n1

Environment:
  PLEXUS_SOCKET        the daemon's socket (same as --socket)
  PLEXUS_STATE_DIR     the daemon's state directory (same as daemon --state-dir)
  PLEXUS_NETNS_PREFIX  prefix of sandbox namespace names (daemon; default plexus-)
  PLEXUS_IFNAME_PREFIX prefix of host interface names (daemon; default px)

Exit status: 0 ok, 1 refused or failed, 2 usage, 125 daemon unreachable;
exec and run -- CMD exit with the command's status.";

/// Container networking on a userspace switch, in the model of Docker's
/// libnetwork (CNM).
#[derive(Debug, Parser)]
#[command(name = "plexus", version, after_help = MAIN_AFTER_HELP)]
#[command(long_about = "\
Container networking on a userspace switch, in the model of Docker's libnetwork (CNM).

A network is a group of endpoints that reach each other at layer 2. An endpoint is one \
interface of one network, with its address reserved when it is created. A sandbox is one \
container's network stack: a network namespace with its hostname, /etc/hosts and \
resolv.conf. Endpoints join sandboxes.

`plexus daemon` keeps this state; the other commands talk to it over a Unix socket.")]
struct Cli {
    /// Unix socket of the daemon.
    ///
    /// The daemon listens on it; the other commands connect to it. Default:
    /// /run/plexus/plexus.sock as root, $XDG_RUNTIME_DIR/plexus/plexus.sock for
    /// other users.
    #[arg(
        long,
        global = true,
        env = "PLEXUS_SOCKET",
        value_name = "PATH",
        default_value_os_t = plexus::api::default_socket(),
        help_heading = "Global options"
    )]
    socket: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: keep the networks, endpoints and sandboxes and serve the API.
    #[command(
        long_about = "\
Run the daemon in the foreground: open (and lock) the state directory, restore its \
networks, endpoints and sandboxes, and serve the JSON API (docs/api.md) on the socket.

Prints one line with its pid, state directory and socket on stderr once it accepts \
connections, then one line per change. SIGINT or SIGTERM stop it cleanly: the socket is \
removed and the state directory unlocked; the networks and sandboxes stay and are \
restored at the next start. Refuses to start if another daemon answers on the socket \
or holds the state directory. Needs root to create namespaces and interfaces.",
        after_help = "\
Examples:
  plexus daemon
  plexus daemon --state-dir /tmp/px-state --socket /tmp/px.sock
  plexus daemon --busy-poll-us 0                   # no polling: least CPU, more latency
  plexus daemon --nat-max-flows-per-endpoint 256 --nat-udp-timeout 120
  PLEXUS_NETNS_PREFIX=test- PLEXUS_IFNAME_PREFIX=tst plexus daemon --state-dir /tmp/t"
    )]
    Daemon(DaemonArgs),

    /// Run the main job: two sandboxes talking through the switch, with its tables shown.
    #[command(
        long_about = "\
Build a network with two sandboxes in this process (no daemon needed), ping across \
through the Plexus switch, run a short TCP transfer, print the MAC table, the per-port \
counters and the rate seen, then remove everything.

Needs nothing but this binary: the ping and the transfer are sockets opened inside the \
sandboxes, not `ping` or `iperf3`. As root it runs rootful; run by an ordinary user it \
runs rootless (sandboxes in a user namespace of its own, TAP endpoints, whatever --type \
says), or says in one line what the host lacks (user namespaces, /dev/net/tun) and how \
to fix it — the checks of `plexus info`.

Everything is named with a random `pxd` tag and kept in a temporary state directory, so \
the demo runs beside a daemon without touching it.",
        after_help = "\
Examples:
  plexus demo
  plexus demo --seconds 5 --type tap"
    )]
    Demo(demo::DemoArgs),

    /// Run a bare switch on existing interfaces, in the foreground.
    #[command(
        long_about = "\
Attach the given existing interfaces (e.g. host ends of veth pairs) to one bridge domain \
of the Plexus switch and forward between them until SIGTERM or SIGINT. No daemon, no \
state, no anti-spoofing (the switch does not know the hosts' MACs): MAC learning, \
flooding and ageing as in a network. Prints the per-port counters when it stops.

This is the hook for benchmarks: ../shared/bench/peers.sh --switch-cmd 'plexus switch {A} {B}'.",
        after_help = "\
Examples:
  plexus switch vethA vethB
  plexus switch --busy-poll-us 0 vethA vethB vethC"
    )]
    Switch(bare::SwitchArgs),

    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCmd),

    /// Create, list, inspect and remove sandboxes (containers' network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),

    /// Create, list, inspect, join, leave and remove endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCmd),

    /// Create a sandbox attached to a network in one step, optionally run a command in it.
    #[command(
        long_about = "\
Create a sandbox NAME, an endpoint NAME on the network (deleted together with the \
sandbox) and join them, all or nothing: if a step fails, the earlier ones are undone. \
Refused if a sandbox NAME exists.

Without CMD, prints the sandbox id. With CMD, runs it inside the sandbox like `plexus \
exec` and exits with its status; --rm then removes the sandbox (and the endpoint).",
        after_help = "\
Examples:
  plexus run --network n1 c1
  plexus run --network n1 --ip 10.99.0.10 --hostname web c2
  plexus run --network n1 --type tap c4
  plexus run --network n1 -p 8053:53/udp dns       # host UDP port 8053 -> dns:53
  plexus run --network n1 -p 127.0.0.1::53/udp c5  # an ephemeral host port, on loopback
  plexus run --network n1 -p 9000-9002:7000-7002/udp c6
  plexus run --network n1 --rm c3 -- ping -c1 10.99.0.1"
    )]
    Run(RunArgs),

    /// Show a network's MAC table: address, endpoint, age; sorted by MAC.
    #[command(
        long_about = "\
Show the MAC table (forwarding database) of a network's bridge domain in the Plexus \
switch: each learned source MAC, the endpoint whose port it was learned on, and the \
seconds since it was last seen. Entries idle longer than the network's --mac-ageing \
time are removed. Sorted by MAC.",
        after_help = "\
Examples:
  plexus fdb n1
  plexus fdb n1 --format json"
    )]
    Fdb {
        #[command(flatten)]
        format: FormatArgs,
        /// Network name or id.
        network: String,
    },

    /// Show the switch's per-port counters: frames, bytes and drops by reason.
    #[command(
        long_about = "\
Show the counters of every port of the Plexus switch (one per endpoint of a bridge \
network): frames and bytes received from and sent to the endpoint, source MACs not \
learned because the MAC table was full, and the frames dropped, by reason:

  runt          shorter than an Ethernet header
  oversize      longer than the network's MTU allows
  bad_vnet_hdr  a TAP frame whose virtio-net header does not parse
  bad_src       source MAC multicast or zero
  spoofed       source MAC not the endpoint's own (anti-spoofing)
  arp_spoofed   ARP whose sender MAC or address is not the endpoint's (anti-spoofing)
  ip_spoofed    IPv4 from an address the endpoint may not use (anti-spoofing;
                see --allowed-address)
  same_port     destination on the port it came from
  no_offload    a GSO frame or partial checksum towards a port without offloads
  tx_full       the egress port's queue was full
  tx_error      the egress port's send failed
  rx_overrun    the kernel dropped it before the switch read it (receive ring full)
  rx_error      receiving from the port failed (its device is gone or broken)
  unknown_port  came in on a port the switch no longer knows (being removed)
  malformed     an ARP or IPv4 packet that does not parse
  gateway_unhandled  for the gateway, but nothing it serves (e.g. TCP to its address)
  martian       routed to loopback, 0.0.0.0/8, link-local, multicast or broadcast:
                never carried out (it would reach the host itself)
  isolated      routed to another network's subnet (networks never reach each other)
  internal      routed out of an --internal network
  no_route      routed out of the network in a protocol outbound NAT does not carry
                (TCP, ICMP other than echo)
  nat_full      a new outbound flow refused: the NAT table, or the endpoint's share
                of it, is full (see plexus nat --help)
  nat_error     outbound NAT could not open or use the flow's host socket
  nat_recv_error  a flow's host socket failed to receive
  listener_error  a published port's listener failed to accept, receive or send
  fd_budget     a new flow refused: the file descriptors the daemon sets aside for
                flows are used up (plexus info shows the budget)

The table shows only the nonzero drops; --format json lists every reason.",
        after_help = "\
Examples:
  plexus stats
  plexus stats --network n1 --format json"
    )]
    Stats {
        /// Only the ports of this network (name or id).
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        #[command(flatten)]
        format: FormatArgs,
    },

    /// Show the outbound NAT flows: protocol, endpoint, addresses, packets, idle time.
    #[command(
        long_about = "\
Show the flows of outbound NAT: containers' UDP and ICMP echo traffic to addresses \
outside every Plexus network (from bridge networks that are not --internal).

The switch's gateway takes such a packet and sends its payload from an ordinary socket \
of the daemon: a connected UDP socket, or an ICMP \"ping\" socket, one per flow. So the \
outside sees the host's address (and a port the host chose) as the source, and the host's \
routing table decides the way out; no iptables rules, no kernel forwarding, no raw \
sockets. Replies come back on that socket and go to the container. TCP and other ICMP \
are not carried (dropped as no_route).

A flow is a container's conversation with one outside address: a UDP (inside address \
and port, outside address and port) pair, or an ICMP echo identifier towards one address \
(INSIDE shows the identifier as the port; OUTSIDE port 0). Columns: PROTO (udp, icmp), \
ENDPOINT, INSIDE, OUTSIDE, OUT and IN (packets from and to the container), IDLE \
(seconds since the last packet either way).

Limits, set by the daemon's flags: a flow idle longer than its protocol's timeout \
(--nat-udp-timeout, default 30 s; --nat-icmp-timeout, default 10 s) is closed; the table \
holds at most --nat-max-flows flows (default 65536), and at most \
--nat-max-flows-per-endpoint (default a fair share) of one endpoint. A new flow beyond a \
limit is refused, never an old one evicted, and counted as nat_full in plexus stats. \
Each flow holds a socket of the daemon: the daemon raises its open-file limit to the hard \
one at start, keeps descriptors for its API and itself, and lets ports, published \
listeners and flows share the rest (the fd budget); a flow beyond it is refused as \
fd_budget, and one endpoint's fair share is the flows' part of the budget divided by the \
number of endpoints plus one (at least 64). A host socket that cannot be used counts as \
nat_error. `plexus info` shows the limits and the budget in force. Removing an endpoint \
closes its flows.",
        after_help = "\
Examples:
  plexus nat
  plexus nat --format json
  plexus daemon --nat-max-flows-per-endpoint 256 --nat-udp-timeout 120   # the limits"
    )]
    Nat(FormatArgs),

    /// Run a command inside a sandbox.
    #[command(
        long_about = "\
Run a command inside a sandbox: in its network namespace, with its hostname, and with \
its hosts and resolv.conf mounted over /etc/hosts and /etc/resolv.conf (in a private \
mount namespace). The command runs here, not in the daemon, with this terminal's \
stdin, stdout and stderr; plexus exits with its status (128+N if killed by signal N). \
Needs root (entering namespaces).",
        after_help = "\
Examples:
  plexus exec c1 -- ip -4 addr show eth0
  plexus exec c1 -- sh
  plexus exec c1 cat /etc/hosts"
    )]
    Exec(ExecArgs),

    /// Show the daemon's configuration: pid, state directory, socket, drivers, limits.
    Info(FormatArgs),

    /// Show the versions of this client and of the daemon.
    Version,
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// Directory of the store (state.json and its lock) and the sandboxes' files.
    ///
    /// Default: /var/lib/plexus (rootful); for a rootless daemon
    /// $XDG_DATA_HOME/plexus, else ~/.local/share/plexus.
    #[arg(long, env = "PLEXUS_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Microseconds the switch keeps polling its ports after traffic before it
    /// sleeps until the next frame.
    ///
    /// Polling saves the wake-up latency of the next frame at the cost of CPU
    /// while traffic flows; an idle switch never polls. 0: never poll (least CPU,
    /// higher latency).
    #[arg(long, value_name = "US", default_value_t = default_busy_poll_us())]
    busy_poll_us: u64,
    /// Most outbound NAT flows in total (at least 1).
    ///
    /// A new flow beyond it is refused (counted as nat_full); existing flows are
    /// never evicted. Each flow holds one socket of the daemon: at start the
    /// daemon raises its open-file limit to the hard one, keeps descriptors for
    /// the API and its own use, and gives the rest to ports, published listeners
    /// and flows (the fd budget, `plexus info`); a flow beyond the budget is
    /// refused as fd_budget.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = nat_defaults().max_flows)]
    nat_max_flows: usize,
    /// Most outbound NAT flows of one endpoint (at least 1).
    ///
    /// Keeps one container from taking the whole table; beyond it the container's
    /// new flows are refused (nat_full). Default: a fair share — the flows' part
    /// of the fd budget divided by the number of endpoints plus one, at least 64.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    nat_max_flows_per_endpoint: Option<usize>,
    /// Seconds a UDP flow of outbound NAT stays open without a packet either way
    /// (at least 1).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().udp_timeout.as_secs())]
    nat_udp_timeout: u64,
    /// Seconds an ICMP echo flow of outbound NAT stays open without a packet either
    /// way (at least 1).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().icmp_timeout.as_secs())]
    nat_icmp_timeout: u64,
    /// Seconds an established TCP connection (outbound or to a published port)
    /// stays open without a segment either way (at least 1); then both sides
    /// are reset.
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = nat_defaults().tcp_timeout.as_secs())]
    nat_tcp_timeout: u64,
    /// Seconds a TCP connection in its handshake or closing stays without a
    /// segment (at least 1).
    #[arg(
        long,
        value_name = "SECS",
        value_parser = at_least_one::<u64>,
        default_value_t = nat_defaults().tcp_transitory_timeout.as_secs()
    )]
    nat_tcp_transitory_timeout: u64,
    /// Most API connections open at once (at least 1); one more is answered
    /// with a TooManyClients error and closed (counted in `plexus info`).
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = daemon::DEFAULT_API_MAX_CLIENTS)]
    api_max_clients: usize,
    /// Seconds an API connection may wait between requests, or take to send one,
    /// before the daemon closes it (at least 1; counted in `plexus info`).
    #[arg(long, value_name = "SECS", value_parser = at_least_one::<u64>, default_value_t = daemon::DEFAULT_API_IDLE_SECS)]
    api_idle_timeout: u64,
    /// What the daemon logs on stderr: error, warn, info (what it does: start,
    /// stop, each change), or debug. Repeated messages are rate-limited.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = logger::LogLevel::Info)]
    log_level: logger::LogLevel,
}

/// The library's NAT limits and timeouts, which the daemon's flags default to.
fn nat_defaults() -> plexus_switch::NatConfig {
    plexus_switch::NatConfig::default()
}

impl DaemonArgs {
    /// The NAT limits and timeouts the flags ask for.
    fn nat(&self) -> plexus_switch::NatConfig {
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
fn at_least_one<T>(s: &str) -> Result<T, String>
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

/// Short help of `--allowed-address`.
const ALLOWED_HELP: &str = "Let the container also send from this address or CIDR (repeatable)";

/// Long help of `--allowed-address` (`endpoint create`, `run`).
const ALLOWED_LONG_HELP: &str = "\
Let the container also send from this address or CIDR (repeatable), e.g. a router or a \
VM inside it. By default (anti-spoofing) the switch drops an IPv4 packet whose source is \
not the endpoint's own address (counted ip_spoofed) and an ARP packet whose sender is \
not the endpoint's address and MAC (arp_spoofed). A network created with \
--no-anti-spoofing checks nothing.";

/// Short help of `--publish`.
const PUBLISH_HELP: &str = "Publish a container port on the host: \
[HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp] (repeatable; the container sees the client's address)";

/// Long help of `--publish` (`endpoint create`, `run`).
const PUBLISH_LONG_HELP: &str = "\
Publish a container port on the host (repeatable): the daemon listens on \
HOST_IP:HOST_PORT itself (no proxy process, no iptables) and delivers TCP connections \
and UDP datagrams to the endpoint's CONTAINER_PORT with the client's own source address \
and port kept (a client on the host's loopback appears as the network's gateway). \
Docker's syntax; the protocol defaults to tcp:

  [HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp]

  -p 8080:80                      TCP host port 8080 (all addresses) -> container port 80
  -p 8053:53/udp                  UDP host port 8053 -> container port 53
  -p 127.0.0.1:8053:53/udp        only on 127.0.0.1
  -p 127.0.0.1::53/udp            an ephemeral host port on 127.0.0.1
  -p 53/udp                       an ephemeral host port on all addresses
  -p 9000-9002:7000-7002/udp      a range, port by port
  -p 8000-8010:53/udp             the first free host port of 8000-8010

HOST_IP defaults to 0.0.0.0 (all addresses; IPv4 only). An empty or absent HOST_PORT \
takes an ephemeral one; `plexus endpoint inspect` (Ports) and `endpoint ls` (PORTS) show \
the port taken. A host port already taken, by Plexus or by any other program, fails the \
whole command with \"port is already allocated\" and leaves nothing behind; a malformed \
SPEC fails it with \"invalid port specification\".";

/// `--type` of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum EndpointType {
    /// A veth pair: the container end moves into the sandbox, the switch reads the
    /// host end through AF_PACKET.
    #[default]
    Veth,
    /// A TAP device in the sandbox whose fd the switch holds.
    Tap,
}

impl From<EndpointType> for plexus::EndpointKind {
    fn from(t: EndpointType) -> Self {
        match t {
            EndpointType::Veth => plexus::EndpointKind::Veth,
            EndpointType::Tap => plexus::EndpointKind::Tap,
        }
    }
}

/// Output format of `ls`, `inspect`, `info`, `fdb`, `stats` and `nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum Format {
    /// A table (ls, fdb, stats, nat) or `Key: value` lines (inspect, info).
    #[default]
    #[value(alias = "table")]
    Text,
    /// The API's JSON result, pretty-printed.
    Json,
}

#[derive(Debug, Args)]
struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum NetworkCmd {
    /// Create a network; prints its id.
    #[command(
        long_about = "\
Create a network. With the bridge driver (default) it is a bridge domain of the Plexus \
switch, with a subnet (given, or the first free default pool: 172.17.0.0/16 ... \
172.31.0.0/16, then /20s of 192.168.0.0/16) and a gateway. Prints the network's id.",
        after_help = "\
Examples:
  plexus network create n1
  plexus network create --subnet 10.99.0.0/24 --ip-range 10.99.0.128/25 n2
  plexus network create --subnet 10.98.0.0/24 --gateway 10.98.0.254 --internal --mtu 9000 n3
  plexus network create --mac-ageing 60 --mac-table-size 1024 n4
  plexus network create --no-anti-spoofing routers
  plexus network create --driver null isolated"
    )]
    Create {
        /// Driver: bridge (the Plexus switch), host (the host's namespace) or null
        /// (no interface).
        #[arg(long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR notation, e.g. 10.99.0.0/24. Default: a free pool.
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// Gateway address inside the subnet. Default: the subnet's first address.
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Allocate endpoint addresses only from this CIDR inside the subnet.
        #[arg(long, value_name = "CIDR")]
        ip_range: Option<String>,
        /// No external connectivity: containers get no default route.
        #[arg(long)]
        internal: bool,
        /// TCP and UDP to the network's gateway address reach services on the
        /// host's loopback (127.0.0.1, same port), like slirp4netns's 10.0.2.2.
        /// Off by default (as Podman does): any service listening on the host's
        /// 127.0.0.1 becomes reachable from the containers. Never for --internal.
        #[arg(long, conflicts_with = "no_host_loopback")]
        host_loopback: bool,
        /// The gateway address does not reach the host's loopback (the default).
        #[arg(long)]
        no_host_loopback: bool,
        /// MTU of the network's endpoints (68-65535). Default: 1500.
        #[arg(long, value_name = "N")]
        mtu: Option<u32>,
        /// Seconds a learned MAC stays in the switch's table without traffic from
        /// it (1-1000000). Default: 300.
        #[arg(long, value_name = "SECS")]
        mac_ageing: Option<u64>,
        /// Most MAC table entries of the network (1-1048576); beyond it new source
        /// MACs are not learned (frames to them are flooded). Default: 8192.
        #[arg(long, value_name = "N")]
        mac_table_size: Option<usize>,
        /// Accept frames whatever their source MAC. Default: drop frames whose source
        /// MAC is not their endpoint's own (anti-spoofing).
        #[arg(long)]
        no_anti_spoofing: bool,
        /// Network name: 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit.
        name: String,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(FormatArgs),
    /// Show a network.
    Inspect {
        #[command(flatten)]
        format: FormatArgs,
        /// Network name or id.
        name: String,
    },
    /// Remove a network (refused while it has endpoints).
    #[command(visible_alias = "remove")]
    Rm {
        /// Network name or id.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SandboxCmd {
    /// Create a sandbox: a network namespace with lo up, a hosts file and a
    /// resolv.conf; prints its id.
    #[command(after_help = "\
Examples:
  plexus sandbox create c1
  plexus sandbox create --hostname web --domainname example.org c2
  plexus endpoint join ep1 c1")]
    Create {
        /// Hostname inside the sandbox. Default: the sandbox name.
        #[arg(long, value_name = "H")]
        hostname: Option<String>,
        /// Domain name (added to /etc/hosts and as search domain in resolv.conf).
        #[arg(long, value_name = "D")]
        domainname: Option<String>,
        /// Sandbox name (the container id): 1-64 characters of [A-Za-z0-9_.-].
        name: String,
    },
    /// List sandboxes.
    #[command(visible_alias = "list")]
    Ls(FormatArgs),
    /// Show a sandbox: its key (namespace path), hostname, files and endpoints.
    Inspect {
        #[command(flatten)]
        format: FormatArgs,
        /// Sandbox name or id.
        name: String,
    },
    /// Remove a sandbox: its endpoints leave (those made by `run` are removed),
    /// then its namespace and files go.
    #[command(visible_alias = "remove")]
    Rm {
        /// Sandbox name or id.
        name: String,
    },
}

/// `--network` for commands that name an existing endpoint.
#[derive(Debug, Args)]
struct EndpointRef {
    /// The endpoint's network; needed when the name is used in several networks.
    #[arg(long, value_name = "NET")]
    network: Option<String>,
}

#[derive(Debug, Subcommand)]
enum EndpointCmd {
    /// Create an endpoint on a network (reserving its address, MAC and published
    /// host ports); prints its id.
    #[command(after_help = "\
Examples:
  plexus endpoint create --network n1 ep1
  plexus endpoint create --network n1 --ip 10.99.0.50 --mac 02:42:0a:63:00:32 ep2
  plexus endpoint create --network n1 --type tap ep3
  plexus endpoint create --network n1 -p 8053:53/udp -p 127.0.0.1::5353/udp dns
  plexus endpoint inspect dns                      # Ports: the host ports taken")]
    Create {
        /// The network (name or id).
        #[arg(long, value_name = "NET")]
        network: String,
        /// Static IPv4 address (only on a network created with --subnet).
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        /// Static MAC address, e.g. 02:42:0a:63:00:32. Default: 02:42 + the IPv4 address.
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
        /// The interface the sandbox gets (bridge networks).
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t)]
        kind: EndpointType,
        #[arg(long, short = 'p', value_name = "SPEC", help = PUBLISH_HELP, long_help = PUBLISH_LONG_HELP)]
        publish: Vec<String>,
        #[arg(long = "allowed-address", value_name = "CIDR", help = ALLOWED_HELP, long_help = ALLOWED_LONG_HELP)]
        allowed_addresses: Vec<String>,
        /// Endpoint name, unique within its network.
        name: String,
    },
    /// List endpoints.
    #[command(visible_alias = "list")]
    Ls {
        /// Only the endpoints of this network.
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Show an endpoint.
    Inspect {
        #[command(flatten)]
        endpoint: EndpointRef,
        #[command(flatten)]
        format: FormatArgs,
        /// Endpoint name or id.
        name: String,
    },
    /// Join an endpoint to an existing sandbox; it appears there as eth0, eth1, ...
    #[command(after_help = "\
Examples:
  plexus endpoint join ep1 c1
  plexus endpoint join --network n2 web c1")]
    Join {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// Endpoint name or id.
        name: String,
        /// Sandbox name or id.
        sandbox: String,
    },
    /// Take an endpoint out of its sandbox; it keeps its address.
    Leave {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// Endpoint name or id.
        name: String,
    },
    /// Remove an endpoint and release its address (refused while joined unless --force).
    #[command(visible_alias = "remove")]
    Rm {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// Leave the sandbox first if the endpoint is joined.
        #[arg(long, short)]
        force: bool,
        /// Endpoint name or id.
        name: String,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The network to attach to (name or id).
    #[arg(long, value_name = "NET")]
    network: String,
    /// Static IPv4 address.
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// Static MAC address.
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// The interface the sandbox gets (bridge networks).
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t)]
    kind: EndpointType,
    #[arg(long, short = 'p', value_name = "SPEC", help = PUBLISH_HELP, long_help = PUBLISH_LONG_HELP)]
    publish: Vec<String>,
    #[arg(long = "allowed-address", value_name = "CIDR", help = ALLOWED_HELP, long_help = ALLOWED_LONG_HELP)]
    allowed_addresses: Vec<String>,
    /// Hostname inside the sandbox. Default: NAME.
    #[arg(long, value_name = "H")]
    hostname: Option<String>,
    /// Domain name.
    #[arg(long, value_name = "D")]
    domainname: Option<String>,
    /// Remove the sandbox (and its endpoint) when CMD exits.
    #[arg(long, requires = "cmd")]
    rm: bool,
    /// Name of the sandbox and of its endpoint.
    name: String,
    /// Command to run inside the sandbox, after `--`.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Sandbox name or id.
    sandbox: String,
    /// The command and its arguments (put `--` before it if it has options).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    cmd: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = cli::exit_code(&e);
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("plexus: {msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_shapes() {
        let p = |args: &[&str]| Cli::try_parse_from(args.iter().copied()).map(|c| c.command);
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "--rm", "c1", "--", "ip", "-4", "a"]).unwrap(),
            Command::Run(RunArgs { ref cmd, rm: true, .. }) if cmd == &["ip", "-4", "a"]
        ));
        assert!(
            p(&["plexus", "run", "--network", "n1", "--rm", "c1"]).is_err(),
            "--rm needs CMD"
        );
        assert!(matches!(
            p(&["plexus", "exec", "c1", "--", "ip", "-4", "addr"]).unwrap(),
            Command::Exec(ExecArgs { ref cmd, .. }) if cmd == &["ip", "-4", "addr"]
        ));
        assert!(matches!(
            p(&["plexus", "exec", "c1", "ip", "-4", "addr"]).unwrap(),
            Command::Exec(ExecArgs { ref cmd, .. }) if cmd == &["ip", "-4", "addr"]
        ));
        assert!(p(&["plexus", "exec", "c1"]).is_err());
        assert!(matches!(
            p(&["plexus", "endpoint", "rm", "--force", "--network", "n1", "ep"]).unwrap(),
            Command::Endpoint(EndpointCmd::Rm { force: true, .. })
        ));
        assert!(matches!(
            p(&["plexus", "network", "ls", "--format", "json"]).unwrap(),
            Command::Network(NetworkCmd::Ls(FormatArgs { format: Format::Json }))
        ));
        let c = Cli::try_parse_from(["plexus", "daemon", "--socket", "/tmp/x.sock", "--state-dir", "/tmp/s"]).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        let c = Cli::try_parse_from(["plexus", "--socket", "/tmp/y.sock", "info"]).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/y.sock"));
    }

    #[test]
    fn parses_the_switch_options() {
        let p = |args: &[&str]| Cli::try_parse_from(args.iter().copied()).map(|c| c.command);
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "c1"]).unwrap(),
            Command::Run(RunArgs {
                kind: EndpointType::Veth,
                ..
            })
        ));
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "--type", "tap", "c1"]).unwrap(),
            Command::Run(RunArgs {
                kind: EndpointType::Tap,
                ..
            })
        ));
        assert!(matches!(
            p(&["plexus", "endpoint", "create", "--network", "n1", "--type", "tap", "e"]).unwrap(),
            Command::Endpoint(EndpointCmd::Create {
                kind: EndpointType::Tap,
                ..
            })
        ));
        assert!(p(&["plexus", "run", "--network", "n1", "--type", "macvlan", "c1"]).is_err());
        assert!(matches!(
            p(&["plexus", "network", "create", "n"]).unwrap(),
            Command::Network(NetworkCmd::Create {
                mac_ageing: None,
                mac_table_size: None,
                no_anti_spoofing: false,
                ..
            })
        ));
        assert!(matches!(
            p(&[
                "plexus",
                "network",
                "create",
                "--mac-ageing",
                "2",
                "--mac-table-size",
                "64",
                "--no-anti-spoofing",
                "n"
            ])
            .unwrap(),
            Command::Network(NetworkCmd::Create {
                mac_ageing: Some(2),
                mac_table_size: Some(64),
                no_anti_spoofing: true,
                ..
            })
        ));
        assert!(matches!(
            p(&["plexus", "fdb", "n1", "--format", "json"]).unwrap(),
            Command::Fdb { ref network, format: FormatArgs { format: Format::Json } } if network == "n1"
        ));
        assert!(p(&["plexus", "fdb"]).is_err());
        assert!(matches!(
            p(&["plexus", "stats"]).unwrap(),
            Command::Stats {
                network: None,
                format: FormatArgs { format: Format::Text }
            }
        ));
        let default_us = u64::try_from(plexus::Config::default().busy_poll.as_micros()).unwrap();
        assert!(matches!(
            p(&["plexus", "daemon"]).unwrap(),
            Command::Daemon(DaemonArgs { busy_poll_us, .. }) if busy_poll_us == default_us
        ));
        assert!(matches!(
            p(&["plexus", "daemon", "--busy-poll-us", "0"]).unwrap(),
            Command::Daemon(DaemonArgs { busy_poll_us: 0, .. })
        ));
    }

    #[test]
    fn parses_publish() {
        let p = |args: &[&str]| Cli::try_parse_from(args.iter().copied()).map(|c| c.command);
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "c1"]).unwrap(),
            Command::Run(RunArgs { ref publish, .. }) if publish.is_empty()
        ));
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "-p", "8053:53/udp", "--publish", "127.0.0.1::53/udp", "c1"]).unwrap(),
            Command::Run(RunArgs { ref publish, .. }) if publish == &["8053:53/udp", "127.0.0.1::53/udp"]
        ));
        assert!(matches!(
            p(&["plexus", "endpoint", "create", "--network", "n1", "-p", "9000-9002:7000-7002/udp", "e"]).unwrap(),
            Command::Endpoint(EndpointCmd::Create { ref publish, .. }) if publish == &["9000-9002:7000-7002/udp"]
        ));
        // The spec is the daemon's to parse (typed InvalidPort), not clap's.
        assert!(matches!(
            p(&["plexus", "run", "--network", "n1", "-p", "nope", "c1"]).unwrap(),
            Command::Run(RunArgs { ref publish, .. }) if publish == &["nope"]
        ));
        assert!(p(&["plexus", "run", "--network", "n1", "-p"]).is_err());
        let mut cmd = Cli::command();
        for path in [&["run"][..], &["endpoint", "create"]] {
            let mut sub = &mut cmd;
            for name in path {
                sub = sub.find_subcommand_mut(name).expect("subcommand");
            }
            let help = sub.render_long_help().to_string();
            for want in [
                "-p, --publish <SPEC>",
                "[HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp]",
                "-p 8053:53/udp",
                "-p 127.0.0.1::53/udp",
                "-p 9000-9002:7000-7002/udp",
                "source address",
                "port is already allocated",
                "leaves nothing behind",
            ] {
                assert!(help.contains(want), "{path:?} --help lacks {want:?}:\n{help}");
            }
        }
    }

    #[test]
    fn stats_help_lists_every_drop_reason() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("stats")
            .expect("stats")
            .render_long_help()
            .to_string();
        for r in plexus_switch::DropReason::ALL {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{} ", r.name()))),
                "{} missing from `plexus stats --help`",
                r.name()
            );
        }
    }

    #[test]
    fn parses_the_nat_options() {
        let p = |args: &[&str]| Cli::try_parse_from(args.iter().copied()).map(|c| c.command);
        let Command::Daemon(d) = p(&["plexus", "daemon"]).unwrap() else {
            panic!("daemon")
        };
        assert_eq!(d.nat(), plexus_switch::NatConfig::default());
        let Command::Daemon(d) = p(&[
            "plexus",
            "daemon",
            "--nat-max-flows",
            "100",
            "--nat-max-flows-per-endpoint",
            "2",
            "--nat-udp-timeout",
            "2",
            "--nat-icmp-timeout",
            "3",
            "--nat-tcp-timeout",
            "60",
            "--nat-tcp-transitory-timeout",
            "4",
        ])
        .unwrap() else {
            panic!("daemon")
        };
        assert_eq!(
            d.nat(),
            plexus_switch::NatConfig {
                max_flows: 100,
                max_flows_per_port: Some(2),
                udp_timeout: std::time::Duration::from_secs(2),
                icmp_timeout: std::time::Duration::from_secs(3),
                tcp_timeout: std::time::Duration::from_secs(60),
                tcp_transitory_timeout: std::time::Duration::from_secs(4),
                fd_budget: None,
            }
        );
        for flag in [
            "--nat-max-flows",
            "--nat-max-flows-per-endpoint",
            "--nat-udp-timeout",
            "--nat-icmp-timeout",
            "--nat-tcp-timeout",
            "--nat-tcp-transitory-timeout",
            "--api-max-clients",
            "--api-idle-timeout",
        ] {
            for bad in ["0", "-1", "x"] {
                assert!(p(&["plexus", "daemon", flag, bad]).is_err(), "{flag} {bad}");
            }
        }
        let e = p(&["plexus", "daemon", "--nat-max-flows", "0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be at least 1"), "{e}");
        assert!(matches!(
            p(&["plexus", "nat", "--format", "json"]).unwrap(),
            Command::Nat(FormatArgs { format: Format::Json })
        ));
        assert!(p(&["plexus", "nat", "n1"]).is_err(), "nat takes no network");
    }

    #[test]
    fn nat_help_states_the_library_defaults() {
        let d = plexus_switch::NatConfig::default();
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("nat")
            .expect("nat")
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            format!("--nat-udp-timeout, default {} s", d.udp_timeout.as_secs()),
            format!("--nat-icmp-timeout, default {} s", d.icmp_timeout.as_secs()),
            format!("--nat-max-flows flows (default {})", d.max_flows),
            format!(
                "--nat-max-flows-per-endpoint (default {})",
                d.max_flows_per_port
                    .map_or("a fair share".to_owned(), |n| n.to_string())
            ),
        ] {
            assert!(help.contains(&want), "`plexus nat --help` should say {want:?}:\n{help}");
        }
    }

    #[test]
    fn documented_switch_defaults_are_the_library_defaults() {
        // The help of `network create` states these.
        let d = plexus::Switching::default();
        assert_eq!(
            (d.mac_ageing_secs, d.mac_table_size, d.anti_spoofing),
            (300, 8192, true)
        );
    }
}
