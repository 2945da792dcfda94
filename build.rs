//! Probes what the end-to-end tests (`tests/`) need from this machine, so that
//! a test that cannot run here is reported as `ignored` in cargo's own summary,
//! with its reason, instead of passing without doing anything.
//!
//! Each probe sets a `cfg` the tests read with
//! `#[cfg_attr(not(px_root), ignore = "needs root")]`:
//!
//! | cfg | true when |
//! |---|---|
//! | `px_root` | the build runs as root and `/dev/net/tun` exists (tests create namespaces, veth pairs and TAP devices) |
//! | `px_ip` | iproute2's `ip` is on `PATH` (a test that uses it as an independent witness) |
//! | `px_iperf3` | `iperf3` is on `PATH` (the test whose client is iperf3) |
//! | `px_ethtool` | `ethtool` is on `PATH` (it sets a namespace's offloads and witnesses the ports' GRO) |
//! | `px_userns` | as root, with unprivileged user namespaces allowed and a test user (`$PLEXUS_TEST_USER`, else `nobody`) |
//! | `px_user_tun` | `px_userns`, and `/dev/net/tun` opens for that user |
//! | `px_tcpdump` | `tcpdump` is on `PATH` (it reads back `plexus capture`'s files) |
//! | `px_tshark` | `tshark` is on `PATH` (Wireshark's reader, the second witness of a capture) |
//! | `px_dns` | `px_root`, with `dig` (bind9-dnsutils), `dnsmasq` and `getent` on `PATH`: the tests of the gateways' DNS with real resolvers and a real upstream |
//! | `px_chromium` | `px_root`, with `chromium` and `nsenter` on `PATH`: headless Chromium loads the daemon's page |
//! | `px_docker` | `px_root`, with `dockerd` and `tar` on `PATH`, a `docker` client (`/usr/bin/docker`, else on `PATH`) and a static `busybox` (`/bin/busybox`, else on `PATH`) — the tests that run a private Docker engine (`tests/common/docker.rs`) |
//! | `px_podman` | `px_root`, with `podman`, `runc`, `nsenter` and `tar` on `PATH`, the CNI plugins `bridge` and `host-local` in `/usr/lib/cni` and a static `busybox` (`/bin/busybox`, else on `PATH`) — the tests that run a private Podman with the CNI backend (`tests/common/podman.rs`) |
//!
//! The probes run when the crate is built, so cargo re-runs them when `PATH`,
//! `PLEXUS_TEST_USER` or a `PATH` directory changes (a package installed);
//! after a `chmod` of `/dev/net/tun`, `touch build.rs`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn main() {
    for cfg in [
        "px_root",
        "px_ip",
        "px_iperf3",
        "px_ethtool",
        "px_userns",
        "px_user_tun",
        "px_docker",
        "px_podman",
        "px_dns",
        "px_tcpdump",
        "px_tshark",
        "px_chromium",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=PLEXUS_TEST_USER");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).filter(|d| d.is_dir()).collect();
    for d in &dirs {
        println!("cargo::rerun-if-changed={}", d.display());
    }

    let root = effective_uid() == Some(0) && is_char_device("/dev/net/tun");
    let has = |program: &str| dirs.iter().any(|d| executable(&d.join(program)));
    let user = test_user();
    let userns = root && user.is_some() && user_namespaces_allowed();
    let user_tun = userns && user.is_some_and(|(uid, gid)| tun_usable_by(uid, gid));
    let find = |program: &str| dirs.iter().map(|d| d.join(program)).find(|p| executable(p));
    let busybox = Some(PathBuf::from("/bin/busybox"))
        .filter(|p| executable(p))
        .or_else(|| find("busybox"));
    let static_busybox = busybox.is_some_and(|b| static_elf(&b));
    let docker = root
        && has("dockerd")
        && has("tar")
        && (executable(Path::new("/usr/bin/docker")) || has("docker"))
        && static_busybox;
    let podman = root
        && has("podman")
        && has("runc")
        && has("nsenter")
        && has("tar")
        && ["bridge", "host-local"]
            .iter()
            .all(|p| executable(&Path::new("/usr/lib/cni").join(p)))
        && static_busybox;
    for (cfg, on) in [
        ("px_root", root),
        ("px_ip", has("ip")),
        ("px_iperf3", has("iperf3")),
        ("px_ethtool", has("ethtool")),
        ("px_userns", userns),
        ("px_user_tun", user_tun),
        ("px_docker", docker),
        ("px_podman", podman),
        ("px_dns", root && has("dig") && has("dnsmasq") && has("getent")),
        ("px_tcpdump", has("tcpdump")),
        ("px_tshark", has("tshark")),
        ("px_chromium", root && has("chromium") && has("nsenter")),
    ] {
        if on {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// The effective uid of this process (`/proc/self/status`, `Uid:` second field).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn is_char_device(p: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// `p` is an ELF executable without a program interpreter (`PT_INTERP`): a
/// static binary, which runs in an image that has no C library (Debian's
/// `busybox-static`; its plain `busybox` is dynamic).
fn static_elf(p: &Path) -> bool {
    let Ok(b) = std::fs::read(p) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return false;
    }
    let (wide, little) = (b[4] == 2, b[5] == 1);
    let int = |at: usize, len: usize| -> Option<usize> {
        let bytes = b.get(at..at.checked_add(len)?)?;
        let fold = |acc: u64, x: &u8| (acc << 8) | u64::from(*x);
        let v = if little {
            bytes.iter().rev().fold(0, fold)
        } else {
            bytes.iter().fold(0, fold)
        };
        usize::try_from(v).ok()
    };
    let header = if wide {
        (int(0x20, 8), int(0x36, 2), int(0x38, 2))
    } else {
        (int(0x1c, 4), int(0x2a, 2), int(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = header else {
        return false;
    };
    const PT_INTERP: usize = 3;
    (0..phnum).all(|i| {
        let at = i.checked_mul(phentsize).and_then(|o| o.checked_add(phoff));
        at.and_then(|at| int(at, 4)).is_some_and(|t| t != PT_INTERP)
    })
}

/// (uid, gid) of the rootless tests' user: `$PLEXUS_TEST_USER`, else `nobody`.
fn test_user() -> Option<(u32, u32)> {
    let name = std::env::var("PLEXUS_TEST_USER").unwrap_or_else(|_| "nobody".to_owned());
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Unprivileged user namespaces are allowed (the sysctls `plexus info` checks).
fn user_namespaces_allowed() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    read("/proc/sys/user/max_user_namespaces").is_none_or(|v| v != "0")
        && read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0")
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_none_or(|v| v != "1")
}

/// `/dev/net/tun` is readable and writable by `uid`/`gid` (its mode bits;
/// the test user has no supplementary groups).
fn tun_usable_by(uid: u32, gid: u32) -> bool {
    let Ok(m) = std::fs::metadata("/dev/net/tun") else {
        return false;
    };
    let mode = m.mode();
    let rw = |shift: u32| (mode >> shift) & 0o6 == 0o6;
    if m.uid() == uid {
        rw(6)
    } else if m.gid() == gid {
        rw(3)
    } else {
        rw(0)
    }
}
