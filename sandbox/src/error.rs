//! The sandbox crate's error type: one enum, each variant naming the object and
//! carrying the failing syscall's error.

use std::io;

/// Errors of namespace, link and file operations.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A namespace name that `ip netns` could not use.
    #[error("invalid namespace name {0:?}")]
    InvalidNetnsName(String),
    /// The namespace already exists.
    #[error("network namespace {0} already exists")]
    NetnsExists(String),
    /// The namespace does not exist.
    #[error("network namespace {0} does not exist")]
    NoSuchNetns(String),
    /// A syscall on a namespace failed.
    #[error("{op} for namespace {name}: {source}")]
    Netns {
        /// What was being done (e.g. "mount", "setns").
        op: &'static str,
        /// The namespace name or path.
        name: String,
        /// The syscall's error.
        source: io::Error,
    },
    /// No link of that name in the namespace the socket talks to.
    #[error("no network interface named {0}")]
    NoSuchLink(String),
    /// The kernel refused a netlink request.
    #[error("netlink {op} {object}: {source}")]
    Netlink {
        /// The request (e.g. "RTM_NEWLINK").
        op: &'static str,
        /// The interface, address or route concerned.
        object: String,
        /// The kernel's errno.
        source: io::Error,
    },
    /// A TAP device could not be created or configured.
    #[error("tap {name}: {op}: {source}")]
    Tap {
        /// The device name.
        name: String,
        /// The failing step (e.g. "open /dev/net/tun", "TUNSETIFF").
        op: &'static str,
        /// The syscall's error.
        source: io::Error,
    },
    /// An interface name longer than 15 bytes, empty, or with '/' or whitespace.
    #[error("invalid interface name {0:?}")]
    InvalidLinkName(String),
    /// Writing a sandbox file failed.
    #[error("writing {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A sysfs setting of an interface could not be made.
    #[error("sysfs {ifname}: {op}: {source}")]
    Sysfs {
        /// The interface (empty for a machine-wide read).
        ifname: String,
        /// The failing step (e.g. "mount sysfs").
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Running a command inside a sandbox failed before the command started.
    #[error("exec {program:?}: {source}")]
    Exec {
        /// argv\[0\].
        program: String,
        /// The error.
        source: io::Error,
    },
}

impl SandboxError {
    /// The errno behind the error, if a syscall or the kernel reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SandboxError::Netns { source, .. }
            | SandboxError::Netlink { source, .. }
            | SandboxError::Tap { source, .. }
            | SandboxError::File { source, .. }
            | SandboxError::Sysfs { source, .. }
            | SandboxError::Exec { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True if the object concerned does not exist: [`SandboxError::NoSuchNetns`],
    /// [`SandboxError::NoSuchLink`], or a kernel ENODEV/ENOENT (e.g. deleting a
    /// link by an ifindex that is gone). Teardown uses it to be idempotent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SandboxError::NoSuchNetns(_) | SandboxError::NoSuchLink(_))
            || matches!(self.raw_os_error(), Some(libc::ENODEV | libc::ENOENT))
    }
}

/// Errors collected by a teardown that kept going after the first failure.
#[derive(Debug, Default, thiserror::Error)]
#[error("{} teardown error(s): {}", .0.len(), join(.0))]
pub struct TeardownErrors(pub Vec<SandboxError>);

fn join(errs: &[SandboxError]) -> String {
    errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl TeardownErrors {
    /// Records the error of one step, if any.
    pub fn push<T>(&mut self, r: Result<T, SandboxError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// `Ok(())` if no step failed.
    pub fn into_result(self) -> Result<(), TeardownErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}
