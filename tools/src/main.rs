//! `plexus`: the command line of Plexus and its daemon.
//!
//! `plexus daemon` owns the CNM controller and serves a JSON API on a Unix socket
//! ([`plexus::api`], [`daemon`]); every other subcommand is a client of that API
//! ([`client`], [`cli`]), except that `exec` (and `run -- CMD`) start the command
//! locally, inside the sandbox's namespaces, so it inherits the terminal.
//!
//! Started by the name `plexus-cni`, it is the CNI plugin instead ([`cni`]).
//!
//! Exit codes: 0 success; 1 the daemon refused or an operation failed; 2 usage
//! (clap); 125 the daemon cannot be reached; `exec`/`run -- CMD` exit with the
//! command's code (128+N if killed by signal N; 126 if it cannot be started,
//! 127 if not found). Every error is one line `plexus: <message>` on stderr.

mod bare;
mod bench;
mod cli;
mod client;
mod cni;
mod daemon;
mod demo;
mod docker_plugin;
mod logger;
mod metrics;
mod page;
mod socket;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Started as `plexus-cni` (a symlink or copy): the CNI plugin.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new(cni::NAME)) {
        return ExitCode::from(cni::main());
    }
    let cli = cli::Cli::parse();
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
