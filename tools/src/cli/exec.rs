//! Running a command inside a sandbox, for `plexus exec` and `plexus run -- CMD`.
//!
//! The command is started by this process (not the daemon) through
//! [`plexus_sandbox::exec::command`], so it inherits our terminal, environment and
//! working directory, like `ip netns exec`.
//!
//! Signals while it runs: SIGINT and SIGQUIT from the terminal reach the command
//! directly (same process group); plexus ignores them and waits, so that it can
//! report the status and, for `run --rm`, clean up. SIGTERM and SIGHUP sent to
//! plexus are forwarded to the command. This uses a mask blocked right after the
//! spawn (a mask set before it would be inherited by the command) and `sigwait` on
//! a helper thread: no signal handlers.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use plexus::SandboxInfo;
use plexus_sandbox::exec::{ExecSpec, command};

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

/// What to enter for `sb`: its namespace, hostname and files; nothing for a
/// host-mode sandbox (no namespace of its own).
pub fn spec_for(sb: &SandboxInfo) -> ExecSpec {
    match &sb.key {
        Some(key) => ExecSpec {
            netns: Some(key.clone()),
            userns: sb.userns.clone(),
            hostname: Some(sb.hostname.clone()),
            hosts_file: Some(sb.hosts_path.clone()),
            resolv_conf: Some(sb.resolv_conf_path.clone()),
        },
        None => ExecSpec::default(),
    }
}

/// The conventional status of a finished process: its exit code, or 128+N if
/// signal N killed it.
pub fn status_code(status: std::process::ExitStatus) -> u8 {
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code & 0xff).unwrap_or(1)
}

/// Runs `argv` inside `sb` and returns its status code. Leaves SIGINT, SIGQUIT,
/// SIGTERM and SIGHUP blocked (and swallowed) afterwards, so that clean-up that
/// follows (`run --rm`) is not cut short.
pub fn run_in(sb: &SandboxInfo, argv: &[String]) -> anyhow::Result<u8> {
    let program = argv.first().context("no command given")?;
    let mut cmd =
        command(&spec_for(sb), argv).with_context(|| format!("preparing to run {program} in sandbox {}", sb.name))?;

    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(ExitError {
                code,
                message: format!(
                    "cannot run {program} in sandbox {}: {}",
                    sb.name,
                    crate::client::describe(&e)
                ),
            }
            .into());
        }
    };

    // Blocked only now: a blocked mask would be inherited by the command (std
    // does not reset it), and the command must see its signals. A signal in the
    // instant between spawn and block acts on plexus as usual.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    let running = Arc::new(AtomicBool::new(true));
    let pid = i32::try_from(child.id()).ok().map(Pid::from_raw);
    {
        let running = Arc::clone(&running);
        // If the thread cannot start, signals simply stay swallowed.
        let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
            while let Ok(sig) = signals.wait() {
                let forward = matches!(sig, Signal::SIGTERM | Signal::SIGHUP);
                if let Some(pid) = pid.filter(|_| forward && running.load(Ordering::SeqCst)) {
                    let _ = kill(pid, sig);
                }
            }
        });
    }
    let status = child.wait();
    running.store(false, Ordering::SeqCst);
    let status = status.with_context(|| format!("waiting for {program}"))?;
    Ok(status_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn status_codes() {
        use std::process::ExitStatus;
        assert_eq!(status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn host_mode_sandbox_enters_nothing() {
        let mut sb = SandboxInfo {
            id: "x".into(),
            name: "c1".into(),
            key: None,
            userns: None,
            hostname: "h".into(),
            domainname: None,
            hosts_path: PathBuf::from("/s/hosts"),
            resolv_conf_path: PathBuf::from("/s/resolv.conf"),
            endpoints: vec![],
        };
        assert!(spec_for(&sb).netns.is_none() && spec_for(&sb).hostname.is_none());
        sb.key = Some(PathBuf::from("/run/netns/plexus-c1"));
        let s = spec_for(&sb);
        assert_eq!(s.netns, sb.key);
        assert_eq!(s.hostname.as_deref(), Some("h"));
        assert_eq!(s.hosts_file, Some(PathBuf::from("/s/hosts")));
    }
}
