//! Rootless sandboxes: network namespaces owned by a user namespace the
//! daemon creates.
//!
//! Role: an unprivileged daemon cannot make namespaces in the host's user
//! namespace. It starts one *holder* process in a new user namespace (the
//! user mapped to root inside) with its own mount namespace, and every sandbox
//! is a network namespace created inside it and kept alive by a bind mount in
//! the holder's mount namespace — the rootless counterpart of `/run/netns`
//! (Podman's rootless network namespace works the same way). The holder is a
//! `sleep infinity` in its own session: it outlives the daemon, so sandboxes
//! survive a daemon restart; its pid and user-namespace inode are kept in a
//! file so a restarted daemon finds it again (and never mistakes a reused pid).
//!
//! Decisions:
//! - Joining a user namespace (`setns(CLONE_NEWUSER)`) needs a single-threaded
//!   process, so every operation runs in a forked child, in a `pre_exec` hook
//!   that only makes syscalls on data prepared before the fork, and ends with
//!   `_exit` (nothing is executed). The daemon never changes namespace.
//! - The namespace files (`NAME` in a directory of the daemon) are plain files
//!   on the host; only the holder's mount namespace sees the bind mount. From
//!   the host they are reached as `/proc/HOLDER/root/PATH` ([`Holder::visible`]),
//!   which works for the namespace's owner without joining anything.
//! - The user's own uid and gid map to root inside. With `newuidmap` and
//!   `newgidmap` installed and ranges in `/etc/subuid` and `/etc/subgid`, the
//!   subordinate ids map to 1.. as well (so a container's other users exist);
//!   without them, or if the tools refuse the ranges, the user alone is mapped
//!   (written directly, as the namespace's owner may).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::SandboxError;
use crate::netns::is_nsfs;

/// The process that owns the rootless namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pid: u32,
    userns_ino: u64,
}

fn err(op: &'static str, name: &Path, source: io::Error) -> SandboxError {
    SandboxError::Netns {
        op,
        name: name.display().to_string(),
        source,
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The `RTM_NEWLINK` request that sets link 1 (`lo` in a new namespace) up,
/// built before the fork.
fn lo_up_request() -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0..4].copy_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m[4..6].copy_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK
    m[6..8].copy_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    // ifinfomsg: family 0, type 0, index 1, flags IFF_UP, change IFF_UP.
    m[20..24].copy_from_slice(&1i32.to_ne_bytes());
    m[24..28].copy_from_slice(&1u32.to_ne_bytes());
    m[28..32].copy_from_slice(&1u32.to_ne_bytes());
    m
}

/// Sends `req` to the kernel's rtnetlink (fork-safe; no answer awaited).
fn netlink_send(req: &[u8]) -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    check(fd)?;
    // SAFETY: an all-zero sockaddr_nl is the kernel's address (pid 0, no groups).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or(16);
    // SAFETY: `req` and `addr` are valid for the lengths given; `fd` is open.
    let n = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const addr).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(12),
        )
    };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates TAP `name` (no packet info, a virtio-net header, the offloads the
/// switch reads) in the network namespace `netns` — a path the caller can open,
/// owned by the user namespace `userns` — and returns its fd and a
/// `NETLINK_ROUTE` socket of that namespace, through which the owner of the
/// user namespace configures the link without entering anything.
pub fn open_tap(userns: &Path, netns: &Path, name: &str) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    if !crate::netlink::valid_link_name(name) {
        return Err(SandboxError::InvalidLinkName(name.to_owned()));
    }
    let open = |p: &Path| std::fs::File::open(p).map(OwnedFd::from).map_err(|e| err("open", p, e));
    let (user, net) = (open(userns)?, open(netns)?);
    // The child opens the device as this user: say so clearly if it cannot.
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        let hint =
            format!("/dev/net/tun: {e} (an administrator can run chmod 0666 /dev/net/tun, or load the tun module)");
        return Err(SandboxError::Tap {
            name: name.to_owned(),
            op: "open",
            source: io::Error::new(e.kind(), hint),
        });
    }
    let mut ifname = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in ifname.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    let flags = libc::c_short::try_from(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR)
        .map_err(|_| err("flags", netns, io::Error::from(io::ErrorKind::InvalidInput)))?;
    let (parent, child) = socketpair(netns)?;
    let offloads = crate::tap::TUN_F_CSUM | crate::tap::TUN_F_TSO4 | crate::tap::TUN_F_TSO6 | crate::tap::TUN_F_TSO_ECN;
    let made = in_child(move || {
        // SAFETY: setns on an open namespace fd; no pointers.
        check(unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) })?;
        // SAFETY: as above.
        check(unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) })?;
        // SAFETY: a NUL-terminated static path.
        let tap = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        check(tap)?;
        // SAFETY: `ifreq` is a plain C struct; all-zero bytes are a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = ifname;
        req.ifr_ifru.ifru_flags = flags;
        // SAFETY: TUNSETIFF reads and writes the `ifreq`, a live local.
        check(unsafe { libc::ioctl(tap, libc::TUNSETIFF, &raw mut req) })?;
        let hdr: libc::c_int = 10;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer to a live local.
        check(unsafe { libc::ioctl(tap, libc::TUNSETVNETHDRSZ, &raw const hdr) })?;
        // SAFETY: TUNSETOFFLOAD takes its argument by value. Best effort: the
        // switch probes the port's offloads anyway.
        let _ = unsafe { libc::ioctl(tap, libc::TUNSETOFFLOAD, libc::c_ulong::from(offloads)) };
        // SAFETY: socket takes no pointers.
        let nl = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        check(nl)?;
        send_fds(child.as_raw_fd(), [tap, nl])
    });
    made.map_err(|e| err("create tap", netns, e))?;
    let [tap, nl] = recv_fds(&parent).map_err(|e| err("receive the tap", netns, e))?;
    Ok((tap, nl))
}

/// Sends `N` (1 or 2) fds over the Unix socket `sock` (fork-safe: a stack
/// buffer).
fn send_fds<const N: usize>(sock: libc::c_int, fds: [libc::c_int; N]) -> io::Result<()> {
    const { assert!(N == 1 || N == 2, "one SCM_RIGHTS message of one or two fds") };
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let data_len = u32::try_from(N * std::mem::size_of::<libc::c_int>()).unwrap_or(8);
    // Room for one SCM_RIGHTS message of two ints (CMSG_SPACE(8) = 24 on 64-bit).
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as usize;
    // SAFETY: `msg` has a control buffer of at least CMSG_SPACE(8) bytes, so
    // the first header and its data (at most 8 bytes) fit in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), data_len as usize);
    }
    // SAFETY: `msg` and every buffer it points to are live locals.
    let n = unsafe { libc::sendmsg(sock, &raw const msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives the `N` fds [`send_fds`] sent.
fn recv_fds<const N: usize>(sock: &OwnedFd) -> io::Result<[OwnedFd; N]> {
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            use std::os::fd::FromRawFd;
            // SAFETY: the kernel just installed these fds in this process for
            // us; nothing else owns them.
            let owned: Vec<OwnedFd> = fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
            if let Ok(all) = <[OwnedFd; N]>::try_from(owned) {
                return Ok(all);
            }
        }
    }
    Err(io::Error::other("the helper sent no fds"))
}

/// Opens a socket (`domain`, `ty`, `protocol` as for socket(2); close-on-exec
/// is added) inside the network namespace `netns` owned by the user namespace
/// `userns`, as root of that user namespace: a forked helper joins both,
/// makes the socket and passes it back. The socket stays in that namespace
/// wherever it is used, so the caller (the namespace's owner) binds, connects
/// and sends through it without entering anything — with root's rights
/// inside, such as a raw ICMP socket.
pub fn open_socket(
    userns: &Path,
    netns: &Path,
    domain: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
) -> Result<OwnedFd, SandboxError> {
    let open = |p: &Path| std::fs::File::open(p).map(OwnedFd::from).map_err(|e| err("open", p, e));
    let (user, net) = (open(userns)?, open(netns)?);
    let (parent, child) = socketpair(netns)?;
    let made = in_child(move || {
        // SAFETY: setns on an open namespace fd; no pointers.
        check(unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) })?;
        // SAFETY: as above.
        check(unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) })?;
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
        check(fd)?;
        send_fds(child.as_raw_fd(), [fd])
    });
    made.map_err(|e| err("open a socket", netns, e))?;
    let [fd] = recv_fds(&parent).map_err(|e| err("receive the socket", netns, e))?;
    Ok(fd)
}

/// A datagram socket pair for passing fds from a helper.
fn socketpair(what: &Path) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Datagram,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| err("socketpair", what, e.into()))
}

/// Joins the holder's user namespace (becoming root there) and its mount
/// namespace; for a forked, single-threaded child.
fn join(user: &OwnedFd, mnt: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on an open namespace fd; no pointers.
    check(unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) })?;
    // SAFETY: as above.
    check(unsafe { libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS) })
}

/// Runs `work` in a forked child (which exits without executing anything) and
/// waits for it; `work`'s error is the result.
fn in_child(work: impl FnMut() -> io::Result<()> + Send + Sync + 'static) -> io::Result<()> {
    let mut work = work;
    let mut cmd = Command::new("/");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the hook runs in the child after fork; `work` only makes
    // async-signal-safe syscalls (setns, unshare, mount, umount2, open, write,
    // socket, sendto, close, _exit) on data prepared before the fork, and never
    // allocates.
    unsafe {
        cmd.pre_exec(move || {
            work()?;
            libc::_exit(0);
        });
    }
    let status = cmd.spawn()?.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("helper exited with {status}")))
    }
}

/// The first range (start, count) of `user` (by name or uid) in a
/// `/etc/subuid`-style text.
pub fn subordinate_range(text: &str, user: &str, id: u32) -> Option<(u64, u64)> {
    let id = id.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who != id {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok().filter(|&c: &u64| c > 0)?))
    })
}

/// Where the setuid id-mapping helper `name` (`newuidmap`, `newgidmap`) is
/// installed, if it is.
pub fn id_mapper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Maps ids into the user namespace of process `pid`: the user to root and,
/// with `newuidmap`/`newgidmap` and ranges in `/etc/subuid` and `/etc/subgid`,
/// the subordinate ids to 1..; else only the user (written directly, which
/// the namespace's owner may do for its own ids).
fn write_maps(pid: u32) -> io::Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let ranges = |file: &str, id: u32| subordinate_range(&std::fs::read_to_string(file).unwrap_or_default(), &user, id);
    if let (Some(newuidmap), Some(newgidmap), Some((us, uc)), Some((gs, gc))) = (
        id_mapper("newuidmap"),
        id_mapper("newgidmap"),
        ranges("/etc/subuid", uid),
        ranges("/etc/subgid", gid),
    ) {
        let run = |tool: &Path, own: u32, start: u64, count: u64| {
            Command::new(tool)
                .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
                .args(["1".to_string(), start.to_string(), count.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if run(&newuidmap, uid, us, uc) && run(&newgidmap, gid, gs, gc) {
            return Ok(());
        }
        // A refused range (a wrong /etc/subuid): the user alone still works,
        // unless the uid map was written already.
        if !std::fs::read_to_string(format!("/proc/{pid}/uid_map"))?
            .trim()
            .is_empty()
        {
            return Err(io::Error::other("newgidmap failed after newuidmap"));
        }
    }
    std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1"))
}

impl Holder {
    /// The holder recorded in `pid_file` if it still runs, else a new one
    /// (recorded there).
    pub fn start(pid_file: &Path) -> Result<Holder, SandboxError> {
        if let Some(h) = Holder::read(pid_file) {
            return Ok(h);
        }
        // The child makes the namespaces and waits on its stdin while the
        // parent writes its id maps (newuidmap needs the child's pid); then it
        // becomes `sleep infinity`.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "read _ && exec sleep infinity"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the hook only makes async-signal-safe calls (setsid,
        // sigemptyset, sigprocmask, unshare, mount) on data prepared before the
        // fork.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: no terminal signal or daemon exit ends it.
                libc::setsid();
                // A clean signal mask (the daemon blocks the signals it waits
                // for, and a mask is inherited): SIGTERM must end the holder.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
                check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let hint = if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSPC | libc::EACCES)) {
                io::Error::new(
                    e.kind(),
                    format!("{e}: user namespaces are disabled or restricted on this host (see `plexus info`)"),
                )
            } else {
                e
            };
            err("create the user namespace", pid_file, hint)
        })?;
        let pid = child.id();
        if let Err(e) = write_maps(pid) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err("map ids into the user namespace", pid_file, e));
        }
        let released = child
            .stdin
            .take()
            .map(|mut stdin| io::Write::write_all(&mut stdin, b"\n"));
        if !matches!(released, Some(Ok(()))) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err("start the holder", pid_file, io::Error::other("its stdin is gone")));
        }
        let userns_ino = std::fs::metadata(format!("/proc/{pid}/ns/user"))
            .map_err(|e| err("stat the user namespace", pid_file, e))?
            .ino();
        let h = Holder { pid, userns_ino };
        if let Some(dir) = pid_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(pid_file, format!("{pid} {userns_ino}\n")).map_err(|e| err("record", pid_file, e))?;
        Ok(h)
    }

    /// The uid map of the holder's user namespace (`/proc/PID/uid_map`).
    pub fn uid_map(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/uid_map", self.pid)).unwrap_or_default()
    }

    /// The holder recorded in `pid_file`, if that process still holds that
    /// user namespace.
    pub fn read(pid_file: &Path) -> Option<Holder> {
        let text = std::fs::read_to_string(pid_file).ok()?;
        let mut f = text.split_whitespace();
        let pid: u32 = f.next()?.parse().ok()?;
        let userns_ino: u64 = f.next()?.parse().ok()?;
        let now = std::fs::metadata(format!("/proc/{pid}/ns/user")).ok()?.ino();
        (now == userns_ino).then_some(Holder { pid, userns_ino })
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Ends the holder (SIGKILL) and waits a bounded moment for it to go:
    /// every namespace it keeps goes with it. For a controller that leaves
    /// nothing behind (the demo); a daemon keeps its holder across restarts.
    pub fn stop(&self) -> Result<(), SandboxError> {
        let what = Path::new("holder");
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(self.pid).map_err(|_| err("kill", what, io::Error::from(io::ErrorKind::InvalidInput)))?,
        );
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(err("kill", what, e.into())),
        }
        // Reaped here if this process started it; else by its parent.
        let _ = nix::sys::wait::waitpid(pid, None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while Holder::alive(self) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// True while the process still holds the user namespace.
    fn alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}/ns/user", self.pid)).is_ok_and(|m| m.ino() == self.userns_ino)
    }

    /// `path` as the host sees it through the holder's mount namespace.
    pub fn visible(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        Path::new(&format!("/proc/{}/root", self.pid)).join(rel)
    }

    fn ns_fds(&self, what: &Path) -> Result<(OwnedFd, OwnedFd), SandboxError> {
        let open = |kind: &str| {
            std::fs::File::open(format!("/proc/{}/ns/{kind}", self.pid))
                .map(OwnedFd::from)
                .map_err(|e| err("open the holder's namespaces", what, e))
        };
        Ok((open("user")?, open("mnt")?))
    }

    /// Creates a network namespace kept at `path` (inside the holder's mount
    /// namespace), with `lo` up. Fails if `path` exists.
    pub fn create_netns(&self, path: &Path) -> Result<(), SandboxError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err("create directory", path, e))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => SandboxError::NetnsExists(path.display().to_string()),
                _ => err("create mount point", path, e),
            })?;
        let (user, mnt) = self.ns_fds(path)?;
        let target = cstring(path).map_err(|e| err("path", path, e))?;
        let req = lo_up_request();
        let made = in_child(move || {
            join(&user, &mnt)?;
            // SAFETY: unshare takes no pointers.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
            // SAFETY: source and target are NUL-terminated strings that outlive
            // the call; null type and data are allowed for a bind mount.
            check(unsafe {
                libc::mount(
                    c"/proc/self/ns/net".as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            })?;
            netlink_send(&req)
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(path);
            return Err(err("create", path, e));
        }
        Ok(())
    }

    /// Removes the network namespace kept at `path`. Missing is
    /// [`SandboxError::NoSuchNetns`].
    pub fn delete_netns(&self, path: &Path) -> Result<(), SandboxError> {
        if !path.exists() {
            return Err(SandboxError::NoSuchNetns(path.display().to_string()));
        }
        let (user, mnt) = self.ns_fds(path)?;
        let target = cstring(path).map_err(|e| err("path", path, e))?;
        let unmounted = in_child(move || {
            join(&user, &mnt)?;
            // SAFETY: the target is a NUL-terminated string owned by the closure.
            match check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }) {
                // Not mounted (a stale file): it is still removed below.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
                r => r,
            }
        });
        unmounted.map_err(|e| err("umount", path, e))?;
        std::fs::remove_file(path).map_err(|e| err("unlink", path, e))
    }

    /// True if `path` holds a network namespace in the holder's mount namespace.
    pub fn netns_exists(&self, path: &Path) -> bool {
        is_nsfs(&self.visible(path))
    }
}
