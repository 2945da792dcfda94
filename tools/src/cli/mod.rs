//! The command line: its grammar ([`Cli`], one file per noun or verb for
//! its arguments and their handling) and the client subcommands, each of
//! which turns its arguments into one or more API requests
//! ([`plexus::api::Request`]) and prints the result.
//!
//! Decisions:
//! - The CLI sends strings as typed by the user (CIDRs, addresses, MACs); the
//!   daemon parses them, so every bad value gets the library's error kind and
//!   message, the same for CLI and API users.
//! - `create` commands print the new object's id (as docker does), `rm` prints
//!   the name given, `join`/`leave` print nothing.
//! - `exec` asks the daemon only for the sandbox's description and then runs the
//!   command itself ([`exec`]).

mod daemon;
mod endpoint;
mod exec;
mod network;
mod output;
mod run;
mod sandbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plexus::api::{DaemonInfo, Request, VersionInfo};
use plexus::{FdbInfo, NatInfo, PortInfo};

pub use exec::ExitError;
use output::{FormatArgs, show};

use crate::client::{Client, Unreachable};

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
pub struct Cli {
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
    pub socket: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    Daemon(daemon::DaemonArgs),

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
    Demo(crate::demo::DemoArgs),

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
    Switch(crate::bare::SwitchArgs),

    /// Measure the Plexus switch beside the kernel: RTT, 64-byte frames/s, TCP.
    #[command(
        long_about = "\
Build each topology in private namespaces (named pxb*, removed afterwards) — two hosts \
joined directly by a veth pair, by a kernel bridge, by the Plexus switch on veth host \
ends, by the Plexus switch on TAP devices, and where they are installed by Open vSwitch \
(userspace datapath; AF_PACKET ports, and AF_XDP ports with a polling thread) and by \
vde_switch on TAP devices — and measure ping RTT (median of the pings), \
64-byte frames/s (a generator on an AF_PACKET socket; the receiver's kernel counts what \
arrives), the switch's frames per CPU-second, and TCP with default offloads and with \
offloads off, 1514-byte frames (iperf3 and ethtool, when installed). Ping and generator on CPU 0, switch on CPU 1; the machine's idleness is checked \
before each repetition and reported. Then the published-port and outbound-NAT paths \
(namespaces pxp*): a client outside reaching a container's server through a published \
port (and -R, the container sending), the container reaching a server outside, and short \
connections (wrk, when installed) — through the kernel (bridge, nftables DNAT and \
masquerade) and through a Plexus daemon, with the senders' retransmits and the daemon's \
CPU. Prints two tables (median [min–max] and the ratio to the kernel's); --results \
writes JSON lines, --svg a chart. Needs root.",
        after_help = "\
Examples:
  plexus bench --quick
  plexus bench --reps 3 --duration 5 --results bench.jsonl --svg bench.svg
  plexus bench --only bridge,plexus-veth
  plexus bench --only kernel-dnat,plexus-daemon"
    )]
    Bench(BenchArgs),

    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),

    /// Create, list, inspect and remove sandboxes (containers' network namespaces).
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),

    /// Create, list, inspect, join, leave and remove endpoints.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCmd),

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
    Run(run::RunArgs),

    /// Why frames went where they went: live, or "what if" for a made-up packet.
    #[command(
        long_about = "\
Live (--network N or --endpoint E): a line per frame those switch ports receive — time, \
ingress endpoint, source > destination MAC, an L3/L4 summary — and the decision: \
learned (its source MAC, when new), dropped (and why), forwarded to E (MAC table hit), \
flooded to N ports, gateway ARP reply, gateway echo reply, DNS query to the gateway, NAT \
new flow -> host socket, NAT flow #id, published port conversation. Frames the switch \
builds for those ports (gateway replies, DNS answers, what comes back through NAT or a \
published port) get a `to E` line. Lines come from the switch's own verdicts, copied without slowing it (a slow reader loses lines, counted \
at the end).

What if (--from E --to IP): a made-up packet from an endpoint runs through the same \
classify (anti-spoofing, MAC table, flooding), gateway (ARP, ping, DNS, martians, \
isolation, internal networks) and NAT lookup as real frames, on a copy of the engine — \
nothing is sent, learned or counted — and every step is printed, in the style of Open \
vSwitch's ofproto/trace. The destination MAC is the one the container's ARP would find.",
        after_help = "\
Examples:
  plexus trace --network n1
  plexus trace --endpoint c1 --count 20
  plexus trace --from c1 --to 10.88.0.3 --tcp 80
  plexus trace --from c1 --to 127.0.0.1 --udp 53
  plexus trace --from c1 --to 10.88.0.3 --icmp --src-ip 10.88.0.99"
    )]
    Trace {
        /// Live: every endpoint of this network.
        #[arg(long, short = 'n', value_name = "NET", conflicts_with = "from")]
        network: Option<String>,
        /// Live: this endpoint only.
        #[arg(long, short = 'e', value_name = "EP", conflicts_with = "from")]
        endpoint: Option<String>,
        /// Live: stop after N lines.
        #[arg(long, short = 'c', value_name = "N", conflicts_with = "from")]
        count: Option<u64>,
        /// What if: the sending endpoint (name or id).
        #[arg(long, value_name = "EP", requires = "to", required_unless_present_any = ["network", "endpoint"])]
        from: Option<String>,
        /// What if: the destination address.
        #[arg(long, value_name = "IP", requires = "from")]
        to: Option<String>,
        /// What if: a TCP SYN to this port.
        #[arg(long, value_name = "PORT", group = "probe")]
        tcp: Option<u16>,
        /// What if: a UDP datagram to this port.
        #[arg(long, value_name = "PORT", group = "probe")]
        udp: Option<u16>,
        /// What if: an ICMP echo request (the default).
        #[arg(long, group = "probe")]
        icmp: bool,
        /// What if: send from this address instead of the endpoint's own.
        #[arg(long, value_name = "IP")]
        src_ip: Option<String>,
        #[command(flatten)]
        format: FormatArgs,
    },

    /// Capture the frames of a network's ports, or one endpoint's, as pcap.
    #[command(
        long_about = "\
Write the frames crossing the switch ports of every endpoint of a network (--network) \
or of one endpoint (--endpoint), both directions, as a pcap stream that tcpdump, tshark \
and Wireshark read as it is. Frames are written as the container sent or receives them \
(an offload super-frame whole, with its original length). Capturing costs the switch \
nothing when nobody captures, and a slow reader never stalls it: up to 4096 frames wait, \
more are dropped and counted; at the end the counts are printed on stderr.",
        after_help = "\
Examples:
  plexus capture --network n1 -w n1.pcap --count 100
  plexus capture --endpoint c1 -w - | tcpdump -nr -"
    )]
    Capture {
        /// Every endpoint of this network.
        #[arg(long, short = 'n', value_name = "NET", required_unless_present = "endpoint")]
        network: Option<String>,
        /// Only this endpoint (name or id; with --network if the name is ambiguous).
        #[arg(long, short = 'e', value_name = "EP")]
        endpoint: Option<String>,
        /// Where to write the pcap stream; - is stdout.
        #[arg(long = "write", short = 'w', value_name = "FILE", default_value = "-")]
        write: PathBuf,
        /// Stop after N frames (default: until interrupted).
        #[arg(long, short = 'c', value_name = "N")]
        count: Option<u64>,
        /// Bytes kept of each frame (64 to 262144).
        #[arg(long, short = 's', value_name = "N", default_value_t = 262_144)]
        snaplen: u32,
    },

    /// Show the names a network's gateway answers (its DNS).
    #[command(
        long_about = "\
Show the names a network's gateway answers: the DNS server in the switch at the \
gateway's address (port 53, UDP), which every sandbox gets as its nameserver. Each \
joined endpoint answers to its name, its sandbox's name and its --alias names, \
each also as NAME.NETWORK; containers see the names of every network they are on \
and no other. Other names are forwarded to the daemon's upstreams \
(`plexus daemon --dns-upstream`, else its resolv.conf); an --internal network \
forwards nothing.",
        after_help = "\
Examples:
  plexus dns n1
  plexus dns n1 --format json"
    )]
    Dns {
        #[command(flatten)]
        format: FormatArgs,
        /// Network name or id.
        network: String,
    },

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
  flow_busy     a published port's client came from the address and port of a
                connection still closing: reset (it retries from another port)
  fd_budget     a new flow refused: the file descriptors the daemon sets aside for
                flows are used up (plexus info shows the budget)
  dns_malformed  a DNS query to the gateway that is not one (too short, a response)
  dns_full      a DNS query to forward while too many of the endpoint's (128) or
                everyone's (1024) wait for an upstream (see plexus dns --help)

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
        /// Refresh in place every SECS seconds (default 1), like top: per-port
        /// frames/s, bits/s and drops/s each way since the last refresh.
        /// Ctrl-C stops.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1", value_parser = watch_interval)]
        watch: Option<f64>,
        /// With --watch: stop after N refreshes.
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
        #[command(flatten)]
        format: FormatArgs,
    },

    /// Show the outbound NAT flows: protocol, endpoint, addresses, packets, idle time.
    #[command(
        long_about = "\
Show the flows of outbound NAT: containers' UDP, TCP and ICMP echo traffic to addresses \
outside every Plexus network (from bridge networks that are not --internal), and the \
TCP connections and UDP conversations of published ports.

The switch's gateway takes such a packet and carries it over an ordinary socket of the \
daemon, one per flow: a connected UDP socket, an ICMP \"ping\" socket, or a TCP stream \
(the container's TCP connection ends in the switch's own TCP stack and its bytes are \
relayed to the stream). So the outside sees the host's address (and a port the host \
chose) as the source, and the host's routing table decides the way out; no iptables \
rules, no kernel forwarding. Replies come back on that socket and go to the container. \
Other protocols and other ICMP are not carried (dropped as no_route).

A flow is a container's conversation with one outside address: a UDP or TCP (inside \
address and port, outside address and port) pair, or an ICMP echo identifier towards \
one address (INSIDE shows the identifier as the port; OUTSIDE port 0). Columns: PROTO \
(udp, tcp, icmp), STATE (a TCP flow's connecting, established or closing), ENDPOINT, \
INSIDE, OUTSIDE, OUT and IN (packets from and to the container; UDP and ICMP), IDLE \
(seconds since the last packet either way).

Limits, set by the daemon's flags: a flow idle longer than its protocol's timeout \
(--nat-udp-timeout, default 30 s; --nat-icmp-timeout, default 10 s; \
--nat-tcp-timeout, default 7200 s, and --nat-tcp-transitory-timeout, default 120 s, for a \
TCP connection, which is then reset both ways) is closed; the table \
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
    Exec(run::ExecArgs),

    /// Show the daemon's configuration: pid, state directory, socket, drivers, limits.
    Info(FormatArgs),

    /// Show the versions of this client and of the daemon.
    Version,
}

/// The exit status for an error: 125 if the daemon cannot be reached, the
/// status an [`ExitError`] carries, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Unreachable>().is_some() {
        125
    } else if let Some(x) = e.downcast_ref::<ExitError>() {
        x.code
    } else {
        1
    }
}

/// Arguments of `plexus bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// One repetition of 1 s and 20 pings: checks the harness, not for figures.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per topology (default 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: Option<u32>,
    /// Seconds per throughput measurement (default 5).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: Option<u64>,
    /// Only these topologies (comma-separated): direct, bridge, plexus-veth, plexus-xdp
    /// (the switch with --veth-io af_xdp), plexus-tap, ovs, ovs-afxdp (when Open vSwitch is installed), vde (when vde_switch is), kernel-dnat,
    /// plexus-daemon.
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Write every figure as JSON lines here.
    #[arg(long, value_name = "FILE")]
    pub results: Option<std::path::PathBuf>,
    /// Draw the medians as an SVG chart here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

/// Runs the parsed command line; returns the exit status.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let socket = cli.socket.as_path();
    match cli.command {
        Command::Daemon(args) => daemon::run(socket, args),
        Command::Demo(args) => {
            crate::logger::init("plexus demo", crate::logger::LogLevel::Warn);
            crate::demo::run(&args)
        }
        Command::Switch(args) => {
            crate::logger::init("plexus switch", crate::logger::LogLevel::Info);
            crate::bare::run(&args)
        }
        Command::Bench(a) => {
            let quick = a.quick;
            let settings = crate::bench::Settings {
                reps: a.reps.unwrap_or(if quick { 1 } else { 3 }),
                duration: std::time::Duration::from_secs(a.duration.unwrap_or(if quick { 1 } else { 5 })),
                pings: if quick { 20 } else { 500 },
                only: a
                    .only
                    .map(|o| o.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                results: a.results,
                svg: a.svg,
            };
            print!("{}", crate::bench::run(&settings)?);
            Ok(0)
        }
        Command::Network(cmd) => network::run(socket, cmd),
        Command::Sandbox(cmd) => sandbox::run(socket, cmd),
        Command::Endpoint(cmd) => endpoint::run(socket, cmd),
        Command::Run(a) => run::run(socket, a),
        Command::Exec(a) => run::exec(socket, a),
        Command::Capture {
            network,
            endpoint,
            write,
            count,
            snaplen,
        } => capture(socket, network, endpoint, &write, count, snaplen),
        Command::Trace {
            from: None,
            network,
            endpoint,
            count,
            ..
        } => live_trace(socket, network, endpoint, count),
        Command::Trace {
            from: Some(from),
            to,
            tcp,
            udp,
            src_ip,
            format,
            ..
        } => {
            use plexus_switch::dataplane::explain::Probe;
            let probe = match (tcp, udp) {
                (Some(p), _) => Probe::Tcp(p),
                (None, Some(p)) => Probe::Udp(p),
                (None, None) => Probe::Icmp,
            };
            let to = to.unwrap_or_default();
            let steps: Vec<String> = Client::connect(socket)?.call_as(&Request::Trace {
                from,
                to,
                probe,
                src_ip,
            })?;
            show(format.format, &steps, |v| {
                v.iter().enumerate().map(|(i, s)| format!("{}. {s}\n", i + 1)).collect()
            })
        }
        Command::Dns { format, network } => {
            let rows: Vec<plexus::model::DnsRecord> = Client::connect(socket)?.call_as(&Request::Dns { network })?;
            show(format.format, &rows, |v| output::dns_table(v))
        }
        Command::Fdb { format, network } => {
            let mut rows: Vec<FdbInfo> = Client::connect(socket)?.call_as(&Request::Fdb { network })?;
            rows.sort_by_key(|r| r.mac);
            show(format.format, &rows, |v| output::fdb_table(v))
        }
        Command::Stats {
            network,
            watch: Some(secs),
            count,
            format,
        } => watch_stats(socket, network, secs, count, format.format),
        Command::Stats {
            network,
            watch: None,
            format,
            ..
        } => {
            let mut c = Client::connect(socket)?;
            let ports: Vec<PortInfo> = c.call_as(&Request::Stats { network })?;
            if format.format == output::Format::Json {
                return show(format.format, &ports, |v| output::stats_table(v));
            }
            // The switch's cost: its worker's CPU time per frame received.
            let info: DaemonInfo = c.call_as(&Request::Info {})?;
            let all: Vec<PortInfo> = c.call_as(&Request::Stats { network: None })?;
            #[allow(clippy::cast_precision_loss)]
            let cpu = info.switch.and_then(|s| s.cpu_us).map(|us| us as f64 / 1e6);
            show(format.format, &ports, |v| {
                output::stats_table(v) + &output::cpu_per_frame(cpu, &all)
            })
        }
        Command::Nat(f) => {
            let flows: Vec<NatInfo> = Client::connect(socket)?.call_as(&Request::Nat {})?;
            show(f.format, &flows, |v| output::nat_table(v))
        }
        Command::Info(f) => {
            let info: DaemonInfo = Client::connect(socket)?.call_as(&Request::Info {})?;
            show(f.format, &info, output::daemon_info)
        }
        Command::Version => {
            output::print(&format!("client: {}\n", env!("CARGO_PKG_VERSION")))?;
            let v: VersionInfo = Client::connect(socket)?.call_as(&Request::Version {})?;
            output::print(&format!("daemon: {} (API {})\n", v.version, v.api))?;
            Ok(0)
        }
    }
}

/// `plexus capture`: the pcap stream to a file or stdout, the counts on stderr.
fn capture(
    socket: &std::path::Path,
    network: Option<String>,
    endpoint: Option<String>,
    write: &std::path::Path,
    count: Option<u64>,
    snaplen: u32,
) -> anyhow::Result<u8> {
    let out: Box<dyn std::io::Write> = if write == std::path::Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(anyhow::Context::with_context(std::fs::File::create(write), || {
            format!("creating {}", write.display())
        })?)
    };
    let req = Request::Capture {
        network,
        endpoint,
        snaplen,
        count,
        decisions: false,
    };
    let end = stream(socket, &req, out)?;
    eprintln!(
        "{} frames captured, {} dropped (the reader was slower than the switch)",
        end.captured, end.dropped
    );
    Ok(0)
}

/// `plexus trace --network N | --endpoint E`: the live decisions on stdout.
fn live_trace(
    socket: &std::path::Path,
    network: Option<String>,
    endpoint: Option<String>,
    count: Option<u64>,
) -> anyhow::Result<u8> {
    let req = Request::Capture {
        network,
        endpoint,
        snaplen: 64,
        count,
        decisions: true,
    };
    let end = stream(socket, &req, Box::new(std::io::stdout().lock()))?;
    eprintln!(
        "{} lines, {} dropped (the reader was slower than the switch)",
        end.captured, end.dropped
    );
    Ok(0)
}

/// Sends a `capture` request and copies its stream to `out` until its end.
fn stream(
    socket: &std::path::Path,
    req: &Request,
    mut out: Box<dyn std::io::Write + '_>,
) -> anyhow::Result<plexus::api::CaptureEnd> {
    use std::io::{BufRead, Read};
    let mut c = Client::connect(socket)?;
    let start: plexus::api::CaptureStart = c.call_as(req)?;
    eprintln!("capturing {} (snaplen {})", start.endpoints.join(", "), start.snaplen);
    let mut r = c.into_reader();
    let mut chunk = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).is_err() {
            out.flush()?;
            anyhow::bail!("the capture stream ended early");
        }
        let n = usize::try_from(u32::from_be_bytes(len)).unwrap_or(0);
        if n == 0 {
            break;
        }
        chunk.resize(n, 0);
        r.read_exact(&mut chunk)?;
        out.write_all(&chunk)?;
        out.flush()?;
    }
    let mut last = String::new();
    r.read_line(&mut last)?;
    let end: plexus::api::Response = serde_json::from_str(&last)?;
    Ok(serde_json::from_value(end.into_result()?)?)
}

/// Seconds between refreshes of `stats --watch`: 0.1 to 3600.
fn watch_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give seconds from 0.1 to 3600")),
    }
}

/// `plexus stats --watch`: the rates between two reads of the counters,
/// redrawn in place (a JSON line per refresh with --format json).
fn watch_stats(
    socket: &std::path::Path,
    network: Option<String>,
    secs: f64,
    count: Option<u64>,
    format: output::Format,
) -> anyhow::Result<u8> {
    let mut client = Client::connect(socket)?;
    let read = |c: &mut Client| -> anyhow::Result<(std::time::Instant, Vec<PortInfo>)> {
        let ports: Vec<PortInfo> = c.call_as(&Request::Stats {
            network: network.clone(),
        })?;
        Ok((std::time::Instant::now(), ports))
    };
    let mut last = read(&mut client)?;
    let mut shown = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        let now = read(&mut client)?;
        let rates = output::port_rates(&last.1, &now.1, now.0.duration_since(last.0).as_secs_f64());
        match format {
            output::Format::Json => output::print(&format!("{}\n", serde_json::to_string(&rates)?))?,
            // Home and clear, then the table: redrawn in place.
            output::Format::Text => output::print(&format!("\x1b[H\x1b[2J{}", output::rates_table(&rates)))?,
        }
        last = now;
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::daemon::DaemonArgs;
    use super::endpoint::{EndpointCmd, EndpointType};
    use super::network::NetworkCmd;
    use super::output::Format;
    use super::run::{ExecArgs, RunArgs};
    use super::*;

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
            p(&["plexus", "stats", "--watch", "--count", "3"]).unwrap(),
            Command::Stats {
                watch: Some(w),
                count: Some(3),
                ..
            } if w == 1.0
        ));
        assert!(p(&["plexus", "stats", "--watch", "0"]).is_err());
        assert!(
            p(&["plexus", "stats", "--count", "3"]).is_err(),
            "--count needs --watch"
        );
        assert!(matches!(
            p(&["plexus", "stats"]).unwrap(),
            Command::Stats {
                network: None,
                watch: None,
                count: None,
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
            format!("--nat-tcp-timeout, default {} s", d.tcp_timeout.as_secs()),
            format!(
                "--nat-tcp-transitory-timeout, default {} s",
                d.tcp_transitory_timeout.as_secs()
            ),
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
