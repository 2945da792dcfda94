//! `plexus endpoint`: create, list, inspect, join, leave and remove
//! endpoints; the options `endpoint create` shares with `run`.

use std::path::Path;

use clap::{Args, Subcommand, ValueEnum};
use plexus::EndpointInfo;
use plexus::api::Request;

use super::output::{self, FormatArgs, print_id, show};
use crate::client::Client;

/// Short help of `--allowed-address`.
pub const ALLOWED_HELP: &str = "Let the container also send from this address or CIDR (repeatable)";

/// Long help of `--allowed-address` (`endpoint create`, `run`).
pub const ALLOWED_LONG_HELP: &str = "\
Let the container also send from this address or CIDR (repeatable), e.g. a router or a \
VM inside it. By default (anti-spoofing) the switch drops an IPv4 packet whose source is \
not the endpoint's own address (counted ip_spoofed) and an ARP packet whose sender is \
not the endpoint's address and MAC (arp_spoofed). A network created with \
--no-anti-spoofing checks nothing.";

/// Short help of `--alias`.
pub const ALIAS_HELP: &str = "One more name the network's DNS answers for it (repeatable)";
/// Long help of `--alias` (`endpoint create`, `run`).
pub const ALIAS_LONG_HELP: &str = "One more name the network's DNS answers for the endpoint \
(repeatable). The gateway answers every joined endpoint's name, its sandbox's name and its \
aliases, each also as NAME.NETWORK, to the containers on that network; an alias several \
endpoints share answers all their addresses, in turn. `plexus dns NET` lists them.";

/// Short help of `--publish`.
pub const PUBLISH_HELP: &str = "Publish a container port on the host: \
[HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/tcp|/udp] (repeatable; the container sees the client's address)";

/// Long help of `--publish` (`endpoint create`, `run`).
pub const PUBLISH_LONG_HELP: &str = "\
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
pub enum EndpointType {
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

/// `--network` for commands that name an existing endpoint.
#[derive(Debug, Args)]
pub struct EndpointRef {
    /// The endpoint's network; needed when the name is used in several networks.
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
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
        #[arg(long = "alias", value_name = "NAME", help = ALIAS_HELP, long_help = ALIAS_LONG_HELP)]
        aliases: Vec<String>,
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
        #[arg(long = "alias", value_name = "NAME", help = ALIAS_HELP, long_help = ALIAS_LONG_HELP)]
        aliases: Vec<String>,
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

/// Runs `plexus endpoint CMD`.
pub fn run(socket: &Path, cmd: EndpointCmd) -> anyhow::Result<u8> {
    let mut c = Client::connect(socket)?;
    match cmd {
        EndpointCmd::Create {
            network,
            ip,
            mac,
            kind,
            publish,
            allowed_addresses,
            aliases,
            name,
        } => {
            let e: EndpointInfo = c.call_as(&Request::EndpointCreate {
                name,
                network,
                ip,
                mac,
                kind: kind.into(),
                publish,
                allowed_addresses,
                aliases,
            })?;
            print_id(&e.id)
        }
        EndpointCmd::Ls { network, format } => {
            let v: Vec<EndpointInfo> = c.call_as(&Request::EndpointLs { network })?;
            show(format.format, &v, |v| output::endpoints_table(v))
        }
        EndpointCmd::Inspect { endpoint, format, name } => {
            let e: EndpointInfo = c.call_as(&Request::EndpointInspect {
                name,
                network: endpoint.network,
            })?;
            show(format.format, &e, output::endpoint)
        }
        EndpointCmd::Join {
            endpoint,
            name,
            sandbox,
            aliases,
        } => {
            c.call(&Request::EndpointJoin {
                name,
                network: endpoint.network,
                sandbox,
                aliases,
            })?;
            Ok(0)
        }
        EndpointCmd::Leave { endpoint, name } => {
            c.call(&Request::EndpointLeave {
                name,
                network: endpoint.network,
            })?;
            Ok(0)
        }
        EndpointCmd::Rm { endpoint, force, name } => {
            c.call(&Request::EndpointRm {
                name: name.clone(),
                network: endpoint.network,
                force,
            })?;
            print_id(&name)
        }
    }
}
