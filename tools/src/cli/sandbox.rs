//! `plexus sandbox`: create, list, inspect and remove sandboxes.

use std::path::Path;

use clap::Subcommand;
use plexus::SandboxInfo;
use plexus::api::Request;

use super::output::{self, FormatArgs, print_id, show};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
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
        /// Nameserver for the sandbox's resolv.conf instead of the network's
        /// gateway, which answers the names of the sandbox's networks and
        /// forwards the rest (repeatable).
        #[arg(long = "dns", value_name = "IP")]
        dns: Vec<String>,
        /// Search domain for the sandbox's resolv.conf (repeatable).
        #[arg(long = "dns-search", value_name = "DOMAIN")]
        dns_search: Vec<String>,
        /// Resolver option for the sandbox's resolv.conf, e.g. ndots:2 (repeatable).
        #[arg(long = "dns-option", value_name = "OPT")]
        dns_options: Vec<String>,
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

/// Runs `plexus sandbox CMD`.
pub fn run(socket: &Path, cmd: SandboxCmd) -> anyhow::Result<u8> {
    let mut c = Client::connect(socket)?;
    match cmd {
        SandboxCmd::Create {
            hostname,
            domainname,
            dns,
            dns_search,
            dns_options,
            name,
        } => {
            let s: SandboxInfo = c.call_as(&Request::SandboxCreate {
                name,
                hostname,
                domainname,
                dns,
                dns_search,
                dns_options,
            })?;
            print_id(&s.id)
        }
        SandboxCmd::Ls(f) => {
            let v: Vec<SandboxInfo> = c.call_as(&Request::SandboxLs {})?;
            show(f.format, &v, |v| output::sandboxes_table(v))
        }
        SandboxCmd::Inspect { format, name } => {
            let s: SandboxInfo = c.call_as(&Request::SandboxInspect { name })?;
            show(format.format, &s, output::sandbox)
        }
        SandboxCmd::Rm { name } => {
            c.call(&Request::SandboxRm { name: name.clone() })?;
            print_id(&name)
        }
    }
}
