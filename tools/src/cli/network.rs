//! `plexus network`: create, list, inspect and remove networks.

use std::path::Path;

use clap::Subcommand;
use plexus::NetworkInfo;
use plexus::api::Request;

use super::output::{self, FormatArgs, print_id, show};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
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

/// Runs `plexus network CMD`.
pub fn run(socket: &Path, cmd: NetworkCmd) -> anyhow::Result<u8> {
    let mut c = Client::connect(socket)?;
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            host_loopback,
            no_host_loopback,
            mtu,
            mac_ageing,
            mac_table_size,
            no_anti_spoofing,
            name,
        } => {
            let req = Request::NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                ip_range,
                internal,
                host_loopback: (host_loopback || no_host_loopback).then_some(host_loopback),
                mtu,
                mac_ageing_secs: mac_ageing,
                mac_table_size,
                anti_spoofing: !no_anti_spoofing,
            };
            let n: NetworkInfo = c.call_as(&req)?;
            print_id(&n.id)
        }
        NetworkCmd::Ls(f) => {
            let v: Vec<NetworkInfo> = c.call_as(&Request::NetworkLs {})?;
            show(f.format, &v, |v| output::networks_table(v))
        }
        NetworkCmd::Inspect { format, name } => {
            let n: NetworkInfo = c.call_as(&Request::NetworkInspect { name })?;
            show(format.format, &n, output::network)
        }
        NetworkCmd::Rm { name } => {
            c.call(&Request::NetworkRm { name: name.clone() })?;
            print_id(&name)
        }
    }
}
