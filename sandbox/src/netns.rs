//! Named network namespaces, made the way `ip netns add` makes them.
//!
//! A named namespace is a bind mount of a namespace file on `/run/netns/NAME`
//! (iproute2's recipe: `/run/netns` is made a shared mount point first, so that an
//! unmount propagates and the namespace can be freed). The bind mount keeps the
//! namespace alive with no process inside, and `ip netns list` shows it.
//!
//! The namespace is created on a short-lived thread that calls
//! `unshare(CLONE_NEWNET)` and bind-mounts `/proc/thread-self/ns/net`; the calling
//! thread never changes namespace. `setns` and `unshare(CLONE_NEWNET)` act on the
//! calling thread only, so no other thread of the process is moved.
//!
//! Rejected alternative: forking a helper (`rtnetlink`'s `NetworkNamespace::add`)
//! is unsafe in a threaded daemon and slower; a thread is enough for `CLONE_NEWNET`.
//!
//! "Exists" means "is a mounted namespace file" (checked with `statfs`: the file
//! system is nsfs). A stale, unmounted `/run/netns/NAME` left by a crash does not
//! exist for [`exists`], but still blocks [`create`] (as with `ip netns add`);
//! [`delete`] removes it.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs, statfs};

use crate::SandboxError;

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest namespace name (the file name limit, NAME_MAX).
pub const MAX_NETNS_NAME_LEN: usize = 255;

/// Serialises the preparation of [`NETNS_DIR`] within this process, so that two
/// threads creating namespaces at once do not both bind-mount it onto itself.
static PREPARE_DIR: Mutex<()> = Mutex::new(());

/// A named network namespace (a bind mount under [`NETNS_DIR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// The handle of an existing named namespace (checked with [`exists`]).
    pub fn open_named(name: &str) -> Result<Netns, SandboxError> {
        check_name(name)?;
        if !exists(name) {
            return Err(SandboxError::NoSuchNetns(name.to_owned()));
        }
        Ok(Netns::handle(name))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's path: the sandbox key.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file (O_RDONLY|O_CLOEXEC) for `setns` or `IFLA_NET_NS_FD`.
    pub fn open_fd(&self) -> Result<OwnedFd, SandboxError> {
        open_ns_file(&self.path).map_err(|e| match e {
            Errno::ENOENT => SandboxError::NoSuchNetns(self.name.clone()),
            e => SandboxError::Netns {
                op: "open",
                name: self.name.clone(),
                source: e.into(),
            },
        })
    }

    fn handle(name: &str) -> Netns {
        Netns {
            name: name.to_owned(),
            path: path_of(name),
        }
    }
}

/// Checks a namespace name the way `ip netns` does: 1..=255 bytes, no '/', no NUL,
/// not "." or "..".
pub fn valid_netns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NETNS_NAME_LEN
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0)
}

fn check_name(name: &str) -> Result<(), SandboxError> {
    if valid_netns_name(name) {
        Ok(())
    } else {
        Err(SandboxError::InvalidNetnsName(name.to_owned()))
    }
}

fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn open_ns_file(path: &Path) -> Result<OwnedFd, Errno> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
}

fn netns_err(op: &'static str, name: &str, e: Errno) -> SandboxError {
    SandboxError::Netns {
        op,
        name: name.to_owned(),
        source: e.into(),
    }
}

/// Step 1 and 2 of iproute2's recipe: `/run/netns` exists and is a shared mount.
fn prepare_dir() -> Result<(), SandboxError> {
    // A poisoned lock only means another thread panicked while holding it; the
    // guarded state is the kernel's, so carry on.
    let _guard = PREPARE_DIR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match nix::unistd::mkdir(NETNS_DIR, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(netns_err("mkdir", NETNS_DIR, e)),
    }
    let mut made_bind_mount = false;
    loop {
        match mount(
            None::<&str>,
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if !made_bind_mount => {
                // Not a mount point yet: make it one by bind-mounting it onto itself.
                mount(
                    Some(NETNS_DIR),
                    NETNS_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| netns_err("bind mount", NETNS_DIR, e))?;
                made_bind_mount = true;
            }
            Err(e) => return Err(netns_err("make shared", NETNS_DIR, e)),
        }
    }
}

/// Creates the named namespace `name` (with `lo` down, as the kernel makes it).
/// Fails with [`SandboxError::NetnsExists`] if it exists; leaves nothing behind on
/// failure.
pub fn create(name: &str) -> Result<Netns, SandboxError> {
    check_name(name)?;
    prepare_dir()?;
    let ns = Netns::handle(name);
    // Step 3: the mount point, created exclusively.
    match open(
        &ns.path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => drop(fd),
        Err(Errno::EEXIST) => return Err(SandboxError::NetnsExists(name.to_owned())),
        Err(e) => return Err(netns_err("create mount point", name, e)),
    }
    // Steps 4 and 5 on a short-lived thread: a new namespace, bind-mounted.
    let path = ns.path.as_path();
    let made = std::thread::scope(|s| {
        let worker = s.spawn(move || -> Result<(), SandboxError> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| netns_err("unshare(CLONE_NEWNET)", name, e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| netns_err("bind mount", name, e))
        });
        worker.join().unwrap_or_else(|_| {
            Err(SandboxError::Netns {
                op: "create",
                name: name.to_owned(),
                source: io::Error::other("namespace thread panicked"),
            })
        })
    });
    if let Err(e) = made {
        // Step 6: leave nothing behind.
        let _ = umount2(&ns.path, MntFlags::MNT_DETACH);
        let _ = nix::unistd::unlink(&ns.path);
        return Err(e);
    }
    Ok(ns)
}

/// Deletes the named namespace: lazy unmount and unlink. Missing is
/// [`SandboxError::NoSuchNetns`].
pub fn delete(name: &str) -> Result<(), SandboxError> {
    check_name(name)?;
    let path = path_of(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a stale file); it is still unlinked below.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(Errno::ENOENT) => return Err(SandboxError::NoSuchNetns(name.to_owned())),
        Err(e) => return Err(netns_err("umount", name, e)),
    }
    match nix::unistd::unlink(&path) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(SandboxError::NoSuchNetns(name.to_owned())),
        Err(e) => Err(netns_err("unlink", name, e)),
    }
}

/// True if `/run/netns/NAME` is a mounted namespace.
pub fn exists(name: &str) -> bool {
    valid_netns_name(name) && is_nsfs(&path_of(name))
}

/// True if `path` is a namespace file (its file system is nsfs).
pub fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// The names of the mounted namespaces under [`NETNS_DIR`], sorted. A missing
/// directory is an empty list.
pub fn list() -> Result<Vec<String>, SandboxError> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(SandboxError::Netns {
                op: "read dir",
                name: NETNS_DIR.to_owned(),
                source: e,
            });
        }
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| SandboxError::Netns {
            op: "read dir",
            name: NETNS_DIR.to_owned(),
            source: e,
        })?;
        if let Some(name) = entry.file_name().to_str()
            && is_nsfs(&entry.path())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs `f` on a new thread that has entered the network namespace at `path`
/// (a named namespace or any `/proc/PID/ns/net`), and returns its result. The
/// thread ends afterwards, so no long-lived thread ever changes namespace.
///
/// A missing `path` is [`SandboxError::NoSuchNetns`]; a file that is not a network
/// namespace fails `setns` with EINVAL. A panic in `f` is propagated to the caller.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, SandboxError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let shown = || path.display().to_string();
    let fd = open_ns_file(path).map_err(|e| match e {
        Errno::ENOENT => SandboxError::NoSuchNetns(shown()),
        e => netns_err("open", &shown(), e),
    })?;
    let joined = std::thread::scope(|s| {
        s.spawn(move || -> Result<T, SandboxError> {
            setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| netns_err("setns", &shown(), e))?;
            drop(fd);
            Ok(f())
        })
        .join()
    });
    match joined {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Opens a namespace file at any path (`/run/netns/NAME`, `/proc/PID/ns/net`) with
/// O_RDONLY|O_CLOEXEC and checks that it is a namespace file (nsfs). Missing or
/// not a namespace is [`SandboxError::NoSuchNetns`].
pub fn open_path(path: &Path) -> Result<OwnedFd, SandboxError> {
    let shown = || path.display().to_string();
    let fd = open_ns_file(path).map_err(|e| match e {
        Errno::ENOENT => SandboxError::NoSuchNetns(shown()),
        e => netns_err("open", &shown(), e),
    })?;
    match fstatfs(&fd) {
        Ok(s) if s.filesystem_type() == NSFS_MAGIC => Ok(fd),
        Ok(_) => Err(SandboxError::NoSuchNetns(shown())),
        Err(e) => Err(netns_err("fstatfs", &shown(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_netns_name("c1"));
        assert!(valid_netns_name("plexus-0123456789abcdef"));
        assert!(valid_netns_name(&"a".repeat(255)));
        assert!(!valid_netns_name(&"a".repeat(256)));
        assert!(!valid_netns_name(""));
        assert!(!valid_netns_name("."));
        assert!(!valid_netns_name(".."));
        assert!(!valid_netns_name("a/b"));
        assert!(!valid_netns_name("a\0b"));
        assert!(valid_netns_name("...")); // iproute2 accepts it too
    }

    #[test]
    fn invalid_names_are_typed_errors() {
        assert!(matches!(create("a/b"), Err(SandboxError::InvalidNetnsName(_))));
        assert!(matches!(delete(".."), Err(SandboxError::InvalidNetnsName(_))));
        assert!(matches!(Netns::open_named(""), Err(SandboxError::InvalidNetnsName(_))));
        assert!(!exists("../etc"));
    }

    #[test]
    fn run_in_missing_path() {
        let r = run_in(Path::new("/run/netns/plexus-test-no-such-ns-x"), || 1);
        assert!(matches!(r, Err(SandboxError::NoSuchNetns(_))), "{r:?}");
    }
}
