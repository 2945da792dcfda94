//! Namespaces, links and addresses for the tests, through the sandbox crate's
//! netlink (no `ip` needed), and child processes started inside a namespace.
#![allow(dead_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;
use plexus_sandbox::netlink::{LinkInfo, Netlink, RouteInfo};
use plexus_sandbox::netns;

use super::{TestEnv, ns_path};

/// A netlink socket of the namespace at `ns` (any namespace path).
pub fn netlink(ns: &Path) -> Netlink {
    Netlink::open_in(ns).unwrap_or_else(|e| panic!("netlink in {}: {e}", ns.display()))
}

/// Link `name` of namespace `ns`.
pub fn link(ns: &Path, name: &str) -> LinkInfo {
    netlink(ns)
        .link(name)
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", ns.display()))
}

/// Every link of namespace `ns`.
pub fn links(ns: &Path) -> Vec<LinkInfo> {
    netlink(ns).links().unwrap()
}

/// The IPv4 addresses of link `name` in namespace `ns`.
pub fn addrs(ns: &Path, name: &str) -> Vec<Ipv4Net> {
    let mut nl = netlink(ns);
    let l = nl.link(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    nl.addresses(l.index).unwrap()
}

/// The default routes of namespace `ns`: (gateway, output link name).
pub fn default_routes(ns: &Path) -> Vec<(Option<Ipv4Addr>, String)> {
    let mut nl = netlink(ns);
    let links = nl.links().unwrap();
    let name = |i: Option<u32>| {
        links
            .iter()
            .find(|l| Some(l.index) == i)
            .map_or_else(String::new, |l| l.name.clone())
    };
    nl.routes()
        .unwrap()
        .into_iter()
        .filter(|r: &RouteInfo| r.dst.prefix_len() == 0)
        .map(|r| (r.gateway, name(r.oif)))
        .collect()
}

/// Adds a route to `dst` through link `dev` in namespace `ns`, optionally via
/// a gateway (what `ip route add` does).
pub fn add_route(ns: &Path, dst: Ipv4Net, via: Option<Ipv4Addr>, dev: &str) {
    let mut nl = netlink(ns);
    let l = nl.link(dev).unwrap();
    nl.add_route(dst, via, l.index)
        .unwrap_or_else(|e| panic!("route {dst} in {}: {e}", ns.display()));
}

/// Sets link `name` of namespace `ns` to `mtu`.
pub fn set_mtu(ns: &Path, name: &str, mtu: u32) {
    let mut nl = netlink(ns);
    let l = nl.link(name).unwrap();
    nl.set_mtu(l.index, mtu).unwrap();
}

/// The neighbour (ARP) table of namespace `ns` as the kernel shows it in
/// `/proc/net/arp`: (address, MAC).
pub fn arp_table(ns: &Path) -> Vec<(String, String)> {
    let text = netns::run_in(ns, || std::fs::read_to_string("/proc/thread-self/net/arp"))
        .unwrap()
        .unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_owned(), f[3].to_owned()))
        })
        .collect()
}

/// Writes a sysctl of namespace `ns` (`key` as a path under /proc/sys).
pub fn sysctl(ns: &Path, key: &str, value: &str) {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    netns::run_in(ns, || std::fs::write(&path, value))
        .unwrap()
        .unwrap_or_else(|e| panic!("sysctl {key} in {}: {e}", ns.display()));
}

/// Makes `cmd` start inside the network namespace at `ns` (and only that: it
/// keeps our mount namespace), as `nsenter --net` does.
pub fn in_netns(cmd: &mut Command, ns: &Path) {
    let fd = OwnedFd::from(std::fs::File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display())));
    // SAFETY: the hook runs in the child between fork and exec and only calls
    // setns on an fd opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
        });
    }
}

/// `ethtool ARGS` in namespace `ns` (an independent witness and setter of an
/// interface's offloads): its stdout; panics if it fails.
#[allow(dead_code)]
pub fn ethtool(ns: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("ethtool");
    cmd.args(args);
    in_netns(&mut cmd, ns);
    let out = cmd.output().expect("running ethtool");
    assert!(out.status.success(), "ethtool {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `cmd` run as `uid`/`gid` with no supplementary groups and no
/// capabilities, as `setpriv --reuid --regid --clear-groups` does. After
/// [`in_netns`] if both are wanted: hooks run in the order they were added,
/// and entering a namespace needs root.
pub fn as_user(cmd: &mut Command, uid: u32, gid: u32) {
    // SAFETY: the hook runs in the child between fork and exec and only makes
    // async-signal-safe syscalls (setgroups, setgid, setuid) on plain values.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A veth pair: `a_name` in namespace `ns_a`, `b_name` in `ns_b`, with
/// addresses if given, both up.
pub fn veth_between(
    ns_a: &Path,
    a_name: &str,
    a_addr: Option<Ipv4Net>,
    ns_b: &Path,
    b_name: &str,
    b_addr: Option<Ipv4Net>,
) {
    let tmp_b = format!("{}x", &a_name[..a_name.len().min(14)]);
    let mut nl_a = netlink(ns_a);
    nl_a.create_veth(a_name, &tmp_b, None)
        .unwrap_or_else(|e| panic!("veth {a_name}: {e}"));
    let peer = nl_a.link(&tmp_b).unwrap();
    let b_fd = netns::open_path(ns_b).unwrap();
    nl_a.set_netns(peer.index, b_fd.as_fd()).unwrap();
    let mut nl_b = netlink(ns_b);
    let moved = nl_b.link(&tmp_b).unwrap();
    nl_b.set_name(moved.index, b_name).unwrap();
    for (nl, name, addr) in [(&mut nl_a, a_name, a_addr), (&mut nl_b, b_name, b_addr)] {
        let l = nl.link(name).unwrap();
        if let Some(addr) = addr {
            nl.add_address(l.index, addr).unwrap();
        }
        nl.set_up(l.index, true).unwrap();
    }
}

/// A named namespace made for a test, deleted on drop (with its links).
#[derive(Debug)]
pub struct TestNs {
    /// Its name under /run/netns.
    pub name: String,
}

impl TestNs {
    /// Creates the named namespace `name`, with `lo` up.
    pub fn new(name: &str) -> TestNs {
        netns::create(name).unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let ns = TestNs { name: name.to_owned() };
        let mut nl = netlink(&ns.path());
        let lo = nl.link("lo").unwrap();
        nl.set_up(lo.index, true).unwrap();
        ns
    }

    /// Its path.
    pub fn path(&self) -> PathBuf {
        ns_path(&self.name)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.name);
    }
}

/// A "host" namespace and an "outside" one joined by a veth on the test range
/// 198.18.THIRD.0/24 (host .1, outside .2), for NAT and published-port tests
/// that must not touch the real network; removed on drop.
#[derive(Debug)]
pub struct HostOutside {
    /// The "host" namespace's name.
    pub host: String,
    /// The "outside" namespace's name.
    pub outside: String,
    /// The host's address on the shared link.
    pub host_ip: String,
    /// The outside's address on the shared link.
    pub outside_ip: String,
    namespaces: [TestNs; 2],
}

impl HostOutside {
    /// `ping_sockets`: allow unprivileged ping sockets for every group in
    /// "host" (a new namespace starts with them off).
    pub fn new(env: &TestEnv, third: u8, ping_sockets: bool) -> HostOutside {
        let host = TestNs::new(&format!("{}-H", env.tag));
        let outside = TestNs::new(&format!("{}-O", env.tag));
        let host_ip = Ipv4Addr::new(198, 18, third, 1);
        let outside_ip = Ipv4Addr::new(198, 18, third, 2);
        veth_between(
            &host.path(),
            &format!("{}ho", env.tag),
            Some(Ipv4Net::new(host_ip, 24).unwrap()),
            &outside.path(),
            &format!("{}oh", env.tag),
            Some(Ipv4Net::new(outside_ip, 24).unwrap()),
        );
        if ping_sockets {
            sysctl(&host.path(), "net.ipv4.ping_group_range", "0 2147483647");
        }
        HostOutside {
            host: host.name.clone(),
            outside: outside.name.clone(),
            host_ip: host_ip.to_string(),
            outside_ip: outside_ip.to_string(),
            namespaces: [host, outside],
        }
    }

    /// The "host" namespace's path.
    pub fn host_path(&self) -> PathBuf {
        ns_path(&self.host)
    }

    /// The "outside" namespace's path.
    pub fn outside_path(&self) -> PathBuf {
        ns_path(&self.outside)
    }
}
