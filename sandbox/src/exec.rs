//! Running a command inside a sandbox.
//!
//! The child enters the sandbox right before `exec`, in a `pre_exec` hook that
//! makes only async-signal-safe syscalls on data prepared before the fork:
//! `setns` into the network namespace, then a private mount namespace in which
//! `/sys` is remounted (so `/sys/class/net` shows the sandbox's interfaces) and the
//! sandbox's `hosts` and `resolv.conf` are bind-mounted over `/etc`, and a private
//! UTS namespace carrying the sandbox's hostname — what `ip netns exec` does, plus
//! the files.
//!
//! Everything that can fail on bad input is checked before the fork and returned
//! as a [`SandboxError`]: the namespace file is opened (close-on-exec; the fd lives
//! in the hook's closure, so it stays open as long as the `Command`), the files
//! are resolved to absolute paths and turned into C strings, the hostname is
//! checked. The hook itself allocates nothing and calls raw `libc` functions only.
//!
//! The steps run in this order: `setns(CLONE_NEWNET)`; if a namespace or a file
//! is given, `unshare(CLONE_NEWNS)` and make `/` a recursive slave (so nothing
//! mounted here leaks to the host); with a namespace, detach `/sys` and mount a
//! fresh sysfs (best effort, as `ip netns exec`: a failure prints a warning on the
//! child's stderr and the command still runs); bind the files over `/etc/hosts`
//! and `/etc/resolv.conf` when those exist; with a hostname,
//! `unshare(CLONE_NEWUTS)` and `sethostname`. Without a namespace only the file
//! and hostname steps apply.
//!
//! Do not call `uid`/`gid`/`groups` on the returned `Command`: the standard library
//! drops privileges before the hook runs, and the hook needs them.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SandboxError;

/// Longest hostname the kernel accepts (HOST_NAME_MAX).
const HOST_NAME_MAX: usize = 64;

/// What to enter.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// The network namespace path (the sandbox key); `None` runs in the caller's.
    pub netns: Option<PathBuf>,
    /// Rootless: the user namespace that owns it, joined first (the caller
    /// becomes root there, which the other steps need).
    pub userns: Option<PathBuf>,
    /// Hostname for a private UTS namespace.
    pub hostname: Option<String>,
    /// Bind-mounted over `/etc/hosts` if given.
    pub hosts_file: Option<PathBuf>,
    /// Bind-mounted over `/etc/resolv.conf` if given.
    pub resolv_conf: Option<PathBuf>,
}

/// A bind mount prepared before the fork.
#[derive(Debug)]
struct Bind {
    source: CString,
    target: &'static CStr,
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
struct Prepared {
    /// The user namespace to join first, open with O_CLOEXEC.
    userns: Option<OwnedFd>,
    /// The network namespace, open with O_CLOEXEC.
    netns: Option<OwnedFd>,
    /// Whether to make a private mount namespace.
    mount_ns: bool,
    /// The files to bind over `/etc`.
    binds: Vec<Bind>,
    /// The hostname, without NUL.
    hostname: Option<Vec<u8>>,
}

const SYSFS_WARNING: &[u8] = b"plexus: warning: mounting /sys failed; /sys shows the host's interfaces\n";

/// `Err(last_os_error)` if `rc` is negative. `io::Error::last_os_error` only reads
/// errno and does not allocate.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Prepared {
    /// Runs in the forked child, before `exec`: async-signal-safe calls only, on
    /// data prepared before the fork; no allocation.
    fn enter(&self) -> io::Result<()> {
        // The command never outlives the plexus that started it: if plexus
        // dies (even by SIGKILL), the command gets SIGTERM.
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) })?;
        if let Some(fd) = &self.userns {
            // SAFETY: `fd` is an open namespace fd owned by `self`; setns takes no
            // pointers. The child is single-threaded, as joining a user namespace
            // requires.
            check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWUSER) })?;
        }
        if let Some(fd) = &self.netns {
            // SAFETY: `fd` is an open namespace fd owned by `self`; setns takes no
            // pointers.
            check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
        }
        if self.mount_ns {
            // SAFETY: unshare takes no pointers.
            check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
            // SAFETY: the target is a NUL-terminated static string; null source,
            // type and data are allowed for a propagation change.
            check(unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            if self.netns.is_some() {
                self.remount_sys();
            }
            for bind in &self.binds {
                // SAFETY: source and target are NUL-terminated strings that live in
                // `self` (prepared before the fork); null type and data are allowed
                // for a bind mount.
                check(unsafe {
                    libc::mount(
                        bind.source.as_ptr(),
                        bind.target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                })?;
            }
        }
        if let Some(name) = &self.hostname {
            // SAFETY: unshare takes no pointers.
            check(unsafe { libc::unshare(libc::CLONE_NEWUTS) })?;
            // SAFETY: `name` points to `name.len()` readable bytes owned by `self`.
            check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
        }
        Ok(())
    }

    /// A sysfs that describes the new network namespace, best effort (as
    /// `ip netns exec`): on failure a warning goes to stderr and `/sys` stays.
    fn remount_sys(&self) {
        // SAFETY: the target is a NUL-terminated static string.
        let detached = unsafe { libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) } == 0;
        let mount_sysfs = |flags: libc::c_ulong| {
            // SAFETY: source, target and type are NUL-terminated static strings;
            // null data is allowed for sysfs.
            unsafe {
                libc::mount(
                    c"sysfs".as_ptr(),
                    c"/sys".as_ptr(),
                    c"sysfs".as_ptr(),
                    flags,
                    std::ptr::null(),
                )
            }
        };
        // A read-only /sys that could not be detached cannot be shadowed by a
        // read-write one: retry read-only.
        let ok = mount_sysfs(0) == 0 || (!detached && mount_sysfs(libc::MS_RDONLY) == 0);
        if !ok {
            // SAFETY: writes a static buffer of the given length to fd 2; the
            // result is deliberately ignored (nothing to do if stderr is closed).
            let _ = unsafe { libc::write(2, SYSFS_WARNING.as_ptr().cast(), SYSFS_WARNING.len()) };
        }
    }
}

fn exec_err(program: &str, kind: io::ErrorKind, msg: String) -> SandboxError {
    SandboxError::Exec {
        program: program.to_owned(),
        source: io::Error::new(kind, msg),
    }
}

/// The absolute path of a file to bind, as a C string; it must exist.
fn bind_source(program: &str, path: &Path) -> Result<CString, SandboxError> {
    let abs =
        std::fs::canonicalize(path).map_err(|e| exec_err(program, e.kind(), format!("{}: {e}", path.display())))?;
    CString::new(abs.as_os_str().as_bytes()).map_err(|_| {
        exec_err(
            program,
            io::ErrorKind::InvalidInput,
            format!("{}: NUL in path", abs.display()),
        )
    })
}

/// A `Command` for `argv` that runs inside the sandbox described by `spec`.
/// Spawn or `exec` it as usual; errors of the namespace steps surface as the
/// spawn's `io::Error`.
///
/// Before the fork: an empty `argv`, an invalid hostname (empty, longer than 64
/// bytes, or with NUL) or a missing hosts/resolv file is [`SandboxError::Exec`];
/// a namespace path that is missing or not a namespace is
/// [`SandboxError::NoSuchNetns`].
pub fn command(spec: &ExecSpec, argv: &[String]) -> Result<Command, SandboxError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(exec_err("", io::ErrorKind::InvalidInput, "empty argv".to_owned()));
    };

    let netns = spec.netns.as_deref().map(crate::netns::open_path).transpose()?;
    let userns = spec
        .userns
        .as_deref()
        .map(|p| {
            std::fs::File::open(p)
                .map(OwnedFd::from)
                .map_err(|e| exec_err(program, e.kind(), format!("user namespace {}: {e}", p.display())))
        })
        .transpose()?;

    let hostname = match &spec.hostname {
        None => None,
        Some(h) if h.is_empty() || h.len() > HOST_NAME_MAX || h.contains('\0') => {
            return Err(exec_err(
                program,
                io::ErrorKind::InvalidInput,
                format!("invalid hostname {h:?}"),
            ));
        }
        Some(h) => Some(h.as_bytes().to_vec()),
    };

    let mut binds = Vec::new();
    for (file, target) in [
        (&spec.hosts_file, c"/etc/hosts"),
        (&spec.resolv_conf, c"/etc/resolv.conf"),
    ] {
        let Some(file) = file else { continue };
        let source = bind_source(program, file)?;
        // Only over a target that exists: a bind mount needs a mount point.
        let target_path = Path::new(std::ffi::OsStr::from_bytes(target.to_bytes()));
        if target_path.exists() {
            binds.push(Bind { source, target });
        }
    }

    let prepared = Prepared {
        userns,
        mount_ns: netns.is_some() || !binds.is_empty(),
        netns,
        binds,
        hostname,
    };

    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the hook only calls async-signal-safe libc functions (prctl, setns,
    // unshare, mount, umount2, sethostname, write) on data owned by `prepared`, which was
    // built before the fork; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || prepared.enter());
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn bad_input_is_rejected_before_fork() {
        let spec = ExecSpec::default();
        assert!(matches!(command(&spec, &[]), Err(SandboxError::Exec { .. })));

        let spec = ExecSpec {
            hostname: Some(String::new()),
            ..ExecSpec::default()
        };
        assert!(matches!(
            command(&spec, &argv(&["true"])),
            Err(SandboxError::Exec { .. })
        ));
        let spec = ExecSpec {
            hostname: Some("h".repeat(65)),
            ..ExecSpec::default()
        };
        assert!(matches!(
            command(&spec, &argv(&["true"])),
            Err(SandboxError::Exec { .. })
        ));

        let spec = ExecSpec {
            hosts_file: Some("/nonexistent/plexus/hosts".into()),
            ..ExecSpec::default()
        };
        assert!(matches!(
            command(&spec, &argv(&["true"])),
            Err(SandboxError::Exec { .. })
        ));

        let spec = ExecSpec {
            netns: Some("/run/netns/plexus-no-such-ns-x".into()),
            ..ExecSpec::default()
        };
        assert!(matches!(
            command(&spec, &argv(&["true"])),
            Err(SandboxError::NoSuchNetns(_))
        ));

        // A file that is not a namespace.
        let spec = ExecSpec {
            netns: Some("/etc/hostname".into()),
            ..ExecSpec::default()
        };
        if Path::new("/etc/hostname").exists() {
            assert!(matches!(
                command(&spec, &argv(&["true"])),
                Err(SandboxError::NoSuchNetns(_))
            ));
        }
    }

    #[test]
    fn plain_command_runs() {
        let out = command(&ExecSpec::default(), &argv(&["echo", "hi"]))
            .unwrap()
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
    }
}
