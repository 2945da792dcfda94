//! `plexus run` (a sandbox on a network in one step, optionally running a
//! command) and `plexus exec` (a command in a sandbox).

use std::path::Path;

use clap::Args;
use plexus::SandboxInfo;
use plexus::api::{Request, RunResult};

use super::endpoint::{
    ALIAS_HELP, ALIAS_LONG_HELP, ALLOWED_HELP, ALLOWED_LONG_HELP, EndpointType, PUBLISH_HELP, PUBLISH_LONG_HELP,
};
use super::{exec, output};
use crate::client::Client;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The network to attach to (name or id).
    #[arg(long, value_name = "NET")]
    pub network: String,
    /// Static IPv4 address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Static MAC address.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// The interface the sandbox gets (bridge networks).
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t)]
    pub kind: EndpointType,
    #[arg(long, short = 'p', value_name = "SPEC", help = PUBLISH_HELP, long_help = PUBLISH_LONG_HELP)]
    pub publish: Vec<String>,
    #[arg(long = "allowed-address", value_name = "CIDR", help = ALLOWED_HELP, long_help = ALLOWED_LONG_HELP)]
    pub allowed_addresses: Vec<String>,
    #[arg(long = "alias", value_name = "NAME", help = ALIAS_HELP, long_help = ALIAS_LONG_HELP)]
    pub aliases: Vec<String>,
    /// Nameserver for the sandbox's resolv.conf instead of the network's
    /// gateway, which answers the names of the sandbox's networks and
    /// forwards the rest (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Search domain for the sandbox's resolv.conf (repeatable).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Resolver option for the sandbox's resolv.conf, e.g. ndots:2 (repeatable).
    #[arg(long = "dns-option", value_name = "OPT")]
    pub dns_options: Vec<String>,
    /// Hostname inside the sandbox. Default: NAME.
    #[arg(long, value_name = "H")]
    pub hostname: Option<String>,
    /// Domain name.
    #[arg(long, value_name = "D")]
    pub domainname: Option<String>,
    /// Remove the sandbox (and its endpoint) when CMD exits.
    #[arg(long, requires = "cmd")]
    pub rm: bool,
    /// Name of the sandbox and of its endpoint.
    pub name: String,
    /// Command to run inside the sandbox, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox name or id.
    pub sandbox: String,
    /// The command and its arguments (put `--` before it if it has options).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// Runs `plexus run`.
pub fn run(socket: &Path, a: RunArgs) -> anyhow::Result<u8> {
    let req = Request::Run {
        name: a.name,
        network: a.network,
        ip: a.ip,
        mac: a.mac,
        kind: a.kind.into(),
        publish: a.publish,
        allowed_addresses: a.allowed_addresses,
        hostname: a.hostname,
        domainname: a.domainname,
        aliases: a.aliases,
        dns: a.dns,
        dns_search: a.dns_search,
        dns_options: a.dns_options,
    };
    let res: RunResult = Client::connect(socket)?.call_as(&req)?;
    if a.cmd.is_empty() {
        output::print(&format!("{}\n", res.sandbox.id))?;
        return Ok(0);
    }
    let status = exec::run_in(&res.sandbox, &a.cmd);
    if !a.rm {
        return status;
    }
    let removed = Client::connect(socket).map_err(anyhow::Error::from).and_then(|mut c| {
        c.call(&Request::SandboxRm {
            name: res.sandbox.id.clone(),
        })
    });
    match (status, removed) {
        (status, Ok(_)) => status,
        (Ok(_), Err(e)) => Err(e.context(format!("removing sandbox {}", res.sandbox.name))),
        (Err(e), Err(rm)) => Err(e.context(format!("(removing sandbox {} failed too: {rm:#})", res.sandbox.name))),
    }
}

/// Runs `plexus exec`.
pub fn exec(socket: &Path, a: ExecArgs) -> anyhow::Result<u8> {
    let sb: SandboxInfo = Client::connect(socket)?.call_as(&Request::SandboxInspect { name: a.sandbox })?;
    exec::run_in(&sb, &a.cmd)
}
