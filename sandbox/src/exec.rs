//! Running a command inside a sandbox.
//!
//! The child enters the sandbox right before `exec`, in a `pre_exec` hook that
//! makes only async-signal-safe syscalls on data prepared before the fork:
//! `setns` into the network namespace, then a private mount namespace in which
//! `/sys` is remounted (so `/sys/class/net` shows the sandbox's interfaces) and the
//! sandbox's `hosts` and `resolv.conf` are bind-mounted over `/etc`, and a private
//! UTS namespace carrying the sandbox's hostname — what `ip netns exec` does, plus
//! the files.

use std::path::PathBuf;
use std::process::Command;

use crate::SandboxError;

/// What to enter.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// The network namespace path (the sandbox key); `None` runs in the caller's.
    pub netns: Option<PathBuf>,
    /// Hostname for a private UTS namespace.
    pub hostname: Option<String>,
    /// Bind-mounted over `/etc/hosts` if given.
    pub hosts_file: Option<PathBuf>,
    /// Bind-mounted over `/etc/resolv.conf` if given.
    pub resolv_conf: Option<PathBuf>,
}

/// A `Command` for `argv` that runs inside the sandbox described by `spec`.
/// Spawn or `exec` it as usual; errors of the namespace steps surface as the
/// spawn's `io::Error`.
pub fn command(spec: &ExecSpec, argv: &[String]) -> Result<Command, SandboxError> {
    todo!("{spec:?}{argv:?}")
}
