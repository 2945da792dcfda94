//! `plexus-cni`: the CNI plugin (specification 1.0 and 1.1). Runtimes find
//! it under that name in their plugin directories; it is the `plexus` binary
//! itself (a symlink, or a copy, named `plexus-cni`), which switches on the
//! name it was started by.
//!
//! Decisions:
//! - VERSION is answered here; ADD, DEL, CHECK, GC and STATUS go to the
//!   running daemon as one `cni` API request with the environment and the
//!   configuration, where [`plexus::cni`] does the work: the daemon already
//!   makes interfaces, moves them into namespaces and publishes ports, with
//!   its state and its locks.
//! - A daemon that cannot be reached is the spec's "try again later" (11),
//!   or "not available" (50) for STATUS, with the socket in the message.
//! - stdout carries only the CNI result or error object; the exit status is
//!   0 on success, 1 on an error object.
//! - The socket: the configuration's `socket`, else `PLEXUS_SOCKET`, else the
//!   daemon's default.

use std::io::{Read, Write};
use std::path::PathBuf;

use plexus::api::{CniAnswer, Request};
use plexus::cni::{Call, CniError, Command, code};
use serde_json::Value;

/// The name the plugin answers to.
pub const NAME: &str = "plexus-cni";

/// Runs the plugin; returns the exit status.
pub fn main() -> u8 {
    let mut stdin = String::new();
    let outcome = run(|| std::io::stdin().read_to_string(&mut stdin).map(|_| stdin.clone()));
    let text = match &outcome {
        Ok(Some(v)) => serde_json::to_string(v),
        Ok(None) => Ok(String::new()),
        Err(e) => serde_json::to_string(e),
    }
    .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if !text.is_empty() {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
    u8::from(outcome.is_err())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The plugin's work: what to print on success (`None`: nothing).
fn run(read_stdin: impl FnOnce() -> std::io::Result<String>) -> Result<Option<Value>, CniError> {
    let command = match env("CNI_COMMAND").as_str() {
        "VERSION" => return Ok(Some(plexus::cni::version_answer())),
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "GC" => Command::Gc,
        "STATUS" => Command::Status,
        "" => {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                "CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime (docs/cni.md)",
            ));
        }
        other => {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_COMMAND {other:?}: ADD, DEL, CHECK, GC, STATUS or VERSION"),
            ));
        }
    };
    let text = read_stdin().map_err(|e| CniError::new(code::IO_FAILURE, format!("reading stdin: {e}")))?;
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("the network configuration on stdin is not JSON: {e}"),
        )
    })?;
    let version = config
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let with_version = |mut e: CniError| {
        if !version.is_empty() {
            e.cni_version.clone_from(&version);
        }
        e
    };
    // Checked here too, so a bad configuration is told apart from a daemon
    // that is down.
    plexus::cni::parse_config(&config, command)?;
    let socket = config
        .get("socket")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PLEXUS_SOCKET").map(PathBuf::from))
        .unwrap_or_else(plexus::api::default_socket);
    let call = Call {
        command,
        container_id: env("CNI_CONTAINERID"),
        netns: env("CNI_NETNS"),
        ifname: env("CNI_IFNAME"),
        args: env("CNI_ARGS"),
        config,
    };
    let down = |reason: String| {
        let code = if command == Command::Status {
            code::NOT_AVAILABLE
        } else {
            code::TRY_AGAIN_LATER
        };
        with_version(CniError::new(
            code,
            format!(
                "the Plexus daemon cannot be reached at {} ({reason}): is `plexus daemon` running?",
                socket.display()
            ),
        ))
    };
    let mut client = crate::client::Client::connect(&socket).map_err(|e| down(e.reason))?;
    let value = client.call(&Request::Cni { call }).map_err(|e| {
        if e.downcast_ref::<crate::client::Unreachable>().is_some() {
            down(format!("{e}"))
        } else {
            with_version(CniError::new(
                code::REFUSED,
                format!("the Plexus daemon refused: {e:#}"),
            ))
        }
    })?;
    let answer: CniAnswer = serde_json::from_value(value).map_err(|e| {
        with_version(CniError::new(
            code::DECODING_FAILURE,
            format!("the daemon's answer: {e}"),
        ))
    })?;
    match answer {
        CniAnswer { error: Some(e), .. } => Err(e),
        CniAnswer { result, .. } => Ok(result.filter(|r| !r.is_null())),
    }
}
