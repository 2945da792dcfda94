//! The client subcommands: each turns its arguments into one or more API
//! requests ([`plexus::api::Request`]) and prints the result.
//!
//! Decisions:
//! - The CLI sends strings as typed by the user (CIDRs, addresses, MACs); the
//!   daemon parses them, so every bad value gets the library's error kind and
//!   message, the same for CLI and API users.
//! - `create` commands print the new object's id (as docker does), `rm` prints
//!   the name given, `join`/`leave` print nothing.
//! - `exec` asks the daemon only for the sandbox's description and then runs the
//!   command itself ([`exec`]).

mod exec;
mod output;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use plexus::{EndpointInfo, FdbInfo, NatInfo, NetworkInfo, PortInfo, SandboxInfo};

use crate::client::{Client, Unreachable};
use crate::{Cli, Command, EndpointCmd, Format, NetworkCmd, SandboxCmd, daemon};
use plexus::api::{DaemonInfo, Request, RunResult, VersionInfo};

/// An error that ends plexus with a specific status (e.g. 127: command not found).
#[derive(Debug)]
pub struct ExitError {
    /// The exit status.
    pub code: u8,
    /// The message.
    pub message: String,
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

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

/// Runs the parsed command line; returns the exit status.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let socket = cli.socket.as_path();
    match cli.command {
        Command::Daemon(args) => {
            crate::logger::init("plexus daemon", args.log_level);
            daemon::run(daemon::Options {
                nat: args.nat(),
                state_dir: args
                    .state_dir
                    .unwrap_or_else(|| plexus::config::default_state_dir(plexus::mode::Mode::detect().0)),
                socket: socket.to_owned(),
                busy_poll: Duration::from_micros(args.busy_poll_us),
                api_max_clients: args.api_max_clients,
                api_idle: Duration::from_secs(args.api_idle_timeout),
            })?;
            Ok(0)
        }
        Command::Demo(args) => {
            crate::logger::init("plexus demo", crate::logger::LogLevel::Warn);
            crate::demo::run(&args)
        }
        Command::Switch(args) => {
            crate::logger::init("plexus switch", crate::logger::LogLevel::Info);
            crate::bare::run(&args)
        }
        Command::Network(cmd) => network(socket, cmd),
        Command::Sandbox(cmd) => sandbox(socket, cmd),
        Command::Endpoint(cmd) => endpoint(socket, cmd),
        Command::Run(a) => {
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
                (Err(e), Err(rm)) => {
                    Err(e.context(format!("(removing sandbox {} failed too: {rm:#})", res.sandbox.name)))
                }
            }
        }
        Command::Exec(a) => {
            let sb: SandboxInfo = Client::connect(socket)?.call_as(&Request::SandboxInspect { name: a.sandbox })?;
            exec::run_in(&sb, &a.cmd)
        }
        Command::Fdb { format, network } => {
            let mut rows: Vec<FdbInfo> = Client::connect(socket)?.call_as(&Request::Fdb { network })?;
            rows.sort_by_key(|r| r.mac);
            show(format.format, &rows, |v| output::fdb_table(v))
        }
        Command::Stats { network, format } => {
            let ports: Vec<PortInfo> = Client::connect(socket)?.call_as(&Request::Stats { network })?;
            show(format.format, &ports, |v| output::stats_table(v))
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

/// Prints `v` as JSON or with `text`.
fn show<T: serde::Serialize>(format: Format, v: &T, text: impl Fn(&T) -> String) -> anyhow::Result<u8> {
    let s = match format {
        Format::Json => output::json(v)?,
        Format::Text => text(v),
    };
    output::print(&s)?;
    Ok(0)
}

/// Prints a created object's id.
fn print_id(id: &str) -> anyhow::Result<u8> {
    output::print(&format!("{id}\n"))?;
    Ok(0)
}

fn network(socket: &Path, cmd: NetworkCmd) -> anyhow::Result<u8> {
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

fn sandbox(socket: &Path, cmd: SandboxCmd) -> anyhow::Result<u8> {
    let mut c = Client::connect(socket)?;
    match cmd {
        SandboxCmd::Create {
            hostname,
            domainname,
            name,
        } => {
            let s: SandboxInfo = c.call_as(&Request::SandboxCreate {
                name,
                hostname,
                domainname,
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

fn endpoint(socket: &Path, cmd: EndpointCmd) -> anyhow::Result<u8> {
    let mut c = Client::connect(socket)?;
    match cmd {
        EndpointCmd::Create {
            network,
            ip,
            mac,
            kind,
            publish,
            allowed_addresses,
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
        } => {
            c.call(&Request::EndpointJoin {
                name,
                network: endpoint.network,
                sandbox,
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
