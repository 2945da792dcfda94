//! Real-kernel tests of the sandbox crate: namespaces, veth, TAP, addresses,
//! routes, exec. They need root (ignored otherwise); one checks our netlink
//! against iproute2's `ip` as an independent witness (ignored without it).
//!
//! Hygiene: every test names its namespaces and links with a fresh random prefix
//! (`t` + 4 hex digits), works inside namespaces it created (never the host's
//! links, addresses or routes; reading the host's link list is the one exception),
//! and removes what it made through Drop guards, also when it fails. The test
//! threads never change namespace: everything goes through `netns::run_in`,
//! `Netlink::open_in` or `exec::command`.

use std::collections::HashSet;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use plexus::diag::{self, PingOptions};
use plexus_sandbox::SandboxError;
use plexus_sandbox::exec::{self, ExecSpec};
use plexus_sandbox::files::{self, HostsEntry};
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::netns::{self, Netns};
use plexus_sandbox::sock::NsKey;
use plexus_sandbox::tap::{self, TapOptions};
use serde_json::Value;

/// A fresh prefix `t` + 4 hex digits, unique in this process and not the prefix
/// of any existing namespace.
fn prefix() -> String {
    static USED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut used = USED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let used = used.get_or_insert_with(HashSet::new);
    loop {
        let p = format!("t{:04x}", rand::random::<u16>());
        let taken = netns::list().unwrap_or_default().iter().any(|n| n.starts_with(&p));
        if !taken && used.insert(p.clone()) {
            return p;
        }
    }
}

/// Deletes its namespace on drop (which also destroys the links inside).
struct NsGuard(Netns);

impl NsGuard {
    fn new(name: &str) -> NsGuard {
        NsGuard(netns::create(name).unwrap_or_else(|e| panic!("create {name}: {e}")))
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn netlink(&self) -> Netlink {
        Netlink::open_in(self.path()).unwrap()
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = netns::delete(self.0.name());
    }
}

/// A scratch directory removed on drop.
struct DirGuard(PathBuf);

impl DirGuard {
    fn new(prefix: &str) -> DirGuard {
        DirGuard(std::env::temp_dir().join(format!("plexus-sandbox-{prefix}-{}", std::process::id())))
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ip_json(args: &[&str]) -> Value {
    let text = run(Command::new("ip").arg("-j").args(args));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
}

fn ip_netns_list() -> Vec<String> {
    run(Command::new("ip").args(["netns", "list"]))
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn in_ns(ns: &NsGuard) -> ExecSpec {
    ExecSpec {
        netns: Some(ns.path().to_owned()),
        ..ExecSpec::default()
    }
}

fn exec_output(spec: &ExecSpec, words: &[&str]) -> String {
    run(&mut exec::command(spec, &argv(words)).unwrap())
}

/// Two namespaces joined by a veth pair: `a` holds `{p}a` with 10.99.0.1/24,
/// `b` holds `{p}b` with 10.99.0.2/24, both up.
fn connected_pair(p: &str) -> (NsGuard, NsGuard) {
    let a = NsGuard::new(&format!("{p}-a"));
    let b = NsGuard::new(&format!("{p}-b"));
    let (end_a, end_b) = (format!("{p}a"), format!("{p}b"));
    let mut nl_a = a.netlink();
    nl_a.create_veth(&end_a, &end_b, None).unwrap();
    let peer = nl_a.link(&end_b).unwrap();
    nl_a.set_netns(peer.index, b.0.open_fd().unwrap().as_fd()).unwrap();
    let mut nl_b = b.netlink();
    for (nl, name, addr) in [(&mut nl_a, &end_a, "10.99.0.1/24"), (&mut nl_b, &end_b, "10.99.0.2/24")] {
        let link = nl.link(name).unwrap();
        nl.add_address(link.index, addr.parse().unwrap()).unwrap();
        nl.set_up(link.index, true).unwrap();
        let lo = nl.link("lo").unwrap();
        nl.set_up(lo.index, true).unwrap();
    }
    (a, b)
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn netns_create_list_delete() {
    let name = format!("{}-ns", prefix());
    let guard = NsGuard::new(&name);
    assert_eq!(guard.path(), Path::new("/run/netns").join(&name));
    assert!(netns::exists(&name));
    assert!(netns::list().unwrap().contains(&name));
    assert_eq!(Netns::open_named(&name).unwrap(), guard.0);
    guard.0.open_fd().unwrap();

    assert!(matches!(netns::create(&name), Err(SandboxError::NetnsExists(n)) if n == name));

    netns::delete(&name).unwrap();
    assert!(!netns::exists(&name));
    assert!(!Path::new("/run/netns").join(&name).exists());
    assert!(matches!(netns::delete(&name), Err(SandboxError::NoSuchNetns(n)) if n == name));
    assert!(matches!(Netns::open_named(&name), Err(SandboxError::NoSuchNetns(_))));
    assert!(matches!(guard.0.open_fd(), Err(SandboxError::NoSuchNetns(_))));
    let err = netns::run_in(guard.path(), || ()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn netns_is_fresh_and_run_in_leaves_the_caller_alone() {
    let ns = NsGuard::new(&format!("{}-ns", prefix()));
    let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = netns::run_in(ns.path(), || std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
    assert_ne!(own, inside);
    assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), own);

    // Only `lo`, down, as the kernel makes it.
    let links = ns.netlink().links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert!(!links[0].up);
    assert!(ns.netlink().routes().unwrap().is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn host_links_can_be_read() {
    // Read-only: the host's link list parses and has `lo`.
    let links = Netlink::open().unwrap().links().unwrap();
    assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn veth_into_netns_configured() {
    let p = prefix();
    let host = NsGuard::new(&format!("{p}-host"));
    let ctr = NsGuard::new(&format!("{p}-ctr"));
    let (host_end, peer_end) = (format!("{p}h"), format!("{p}c"));

    let mut nl_host = host.netlink();
    nl_host.create_veth(&host_end, &peer_end, Some(1400)).unwrap();
    let h = nl_host.link(&host_end).unwrap();
    let c = nl_host.link(&peer_end).unwrap();
    for link in [&h, &c] {
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert_eq!(link.mtu, 1400);
        assert!(!link.up);
        assert!(link.mac.is_some());
        assert_eq!(link.master, None);
    }
    nl_host.set_up(h.index, true).unwrap();

    nl_host.set_netns(c.index, ctr.0.open_fd().unwrap().as_fd()).unwrap();
    assert!(matches!(nl_host.link(&peer_end), Err(SandboxError::NoSuchLink(_))));

    let mut nl = ctr.netlink();
    let c = nl.link(&peer_end).unwrap();
    nl.set_name(c.index, "eth0").unwrap();
    let mac = [0x02, 0x42, 0xac, 0x1e, 0x00, 0x02];
    nl.set_mac(c.index, mac).unwrap();
    nl.set_mtu(c.index, 1450).unwrap();
    let addr: Ipv4Net = "172.30.0.2/24".parse().unwrap();
    nl.add_address(c.index, addr).unwrap();
    nl.set_up(c.index, true).unwrap();
    let gw = Ipv4Addr::new(172, 30, 0, 1);
    nl.add_default_route(gw, c.index).unwrap();

    let eth0 = nl.link("eth0").unwrap();
    assert_eq!(
        (eth0.index, eth0.mac, eth0.mtu, eth0.up),
        (c.index, Some(mac), 1450, true)
    );
    assert_eq!(nl.addresses(c.index).unwrap(), vec![addr]);
    let routes = nl.routes().unwrap();
    let default = routes
        .iter()
        .find(|r| r.dst == "0.0.0.0/0".parse::<Ipv4Net>().unwrap())
        .unwrap();
    assert_eq!((default.gateway, default.oif), (Some(gw), Some(c.index)));
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "172.30.0.0/24".parse::<Ipv4Net>().unwrap() && r.gateway.is_none())
    );
    // Adding it twice is the kernel's EEXIST.
    let err = nl.add_default_route(gw, c.index).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");

    // Deleting one end deletes both.
    nl_host.delete_link(h.index).unwrap();
    assert!(matches!(nl_host.link(&host_end), Err(SandboxError::NoSuchLink(_))));
    assert!(matches!(nl.link("eth0"), Err(SandboxError::NoSuchLink(_))));
    let err = nl_host.delete_link(h.index).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn connected_namespaces_ping_each_other() {
    let (a, b) = connected_pair(&prefix());
    for (from, to) in [(&a, "10.99.0.2"), (&b, "10.99.0.1")] {
        let socket = diag::icmp_socket(NsKey::netns(from.path())).unwrap();
        let seen = diag::ping(&socket, to.parse().unwrap(), PingOptions::default(), |_| {}).unwrap();
        assert!(seen.all_answered(), "ping {to} from {}: {seen}", from.name());
    }

    // The same path through a command run in `a` (`exec`): a TCP connection
    // to a listener opened in `b`.
    let listener = netns::run_in(b.path(), || TcpListener::bind("10.99.0.2:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("echo hello >/dev/tcp/10.99.0.2/{port}");
    let status = exec::command(&in_ns(&a), &argv(&["bash", "-c", &script]))
        .unwrap()
        .status()
        .unwrap();
    assert!(status.success());
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut conn, from) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    assert_eq!(from.ip(), Ipv4Addr::new(10, 99, 0, 1));
    conn.set_nonblocking(false).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello\n");
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn tap_in_netns() {
    let features = tap::probe_features().unwrap();
    let ns = NsGuard::new(&format!("{}-ns", prefix()));
    let name = format!("{}tap", &ns.name()[..5]);
    let opts = TapOptions {
        vnet_hdr: features.vnet_hdr,
        multi_queue: features.multi_queue,
    };
    let q0 = netns::run_in(ns.path(), || tap::create(&name, opts)).unwrap().unwrap();
    if features.vnet_hdr {
        tap::set_offload(q0.as_fd(), tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6).unwrap();
    }
    let q1 = features
        .multi_queue
        .then(|| netns::run_in(ns.path(), || tap::create(&name, opts)).unwrap().unwrap());

    let mut nl = ns.netlink();
    let link = nl.link(&name).unwrap();
    assert_eq!(link.kind.as_deref(), Some("tun"));
    assert!(link.mac.is_some());
    // The fd works from this (other) namespace: non-blocking read of a down TAP.
    let mut buf = [0u8; 64];
    let err = nix::unistd::read(&q0, &mut buf).unwrap_err();
    assert!(
        err == nix::errno::Errno::EAGAIN || err == nix::errno::Errno::EIO,
        "{err}"
    );
    let flags = nix::fcntl::fcntl(&q0, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0);

    // Not persistent: it goes with its last fd.
    drop(q0);
    drop(q1);
    assert!(matches!(nl.link(&name), Err(SandboxError::NoSuchLink(_))));

    assert!(matches!(
        tap::create("bad name", opts),
        Err(SandboxError::InvalidLinkName(_))
    ));
    assert!(matches!(
        tap::create("waytoolongtapname0", opts),
        Err(SandboxError::InvalidLinkName(_))
    ));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn exec_with_hostname_and_files() {
    let p = prefix();
    let ns = NsGuard::new(&format!("{p}-ns"));
    let dir = DirGuard::new(&p);
    let hosts = dir.0.join("hosts");
    let resolv = dir.0.join("resolv.conf");
    let entry = HostsEntry {
        addr: Ipv4Addr::new(172, 30, 0, 2),
        names: vec![format!("{p}.example.org"), p.clone()],
    };
    files::write_hosts(&hosts, std::slice::from_ref(&entry)).unwrap();
    files::write_resolv_conf(
        &resolv,
        "nameserver 127.0.0.53\nnameserver 192.0.2.53\n",
        Some("example.org"),
    )
    .unwrap();

    let host_hosts = std::fs::read_to_string("/etc/hosts").ok();
    let host_hostname = nix::unistd::gethostname().unwrap();
    let hostname = format!("{p}-box");
    let spec = ExecSpec {
        netns: Some(ns.path().to_owned()),
        hostname: Some(hostname.clone()),
        hosts_file: Some(hosts.clone()),
        resolv_conf: Some(resolv.clone()),
        userns: None,
    };
    assert_eq!(exec_output(&spec, &["hostname"]).trim(), hostname);
    if host_hosts.is_some() {
        assert_eq!(
            exec_output(&spec, &["cat", "/etc/hosts"]),
            std::fs::read_to_string(&hosts).unwrap()
        );
    }
    if Path::new("/etc/resolv.conf").exists() {
        assert_eq!(
            exec_output(&spec, &["cat", "/etc/resolv.conf"]),
            "nameserver 192.0.2.53\nsearch example.org\n"
        );
    }
    // /sys describes the sandbox: only its `lo`.
    assert_eq!(
        exec_output(&spec, &["ls", "/sys/class/net"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo"]
    );

    // Hostname without a namespace.
    let spec = ExecSpec {
        hostname: Some(hostname.clone()),
        ..ExecSpec::default()
    };
    assert_eq!(exec_output(&spec, &["hostname"]).trim(), hostname);

    // The host is untouched.
    assert_eq!(nix::unistd::gethostname().unwrap(), host_hostname);
    assert_eq!(std::fs::read_to_string("/etc/hosts").ok(), host_hosts);
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn exec_errors() {
    let ns = NsGuard::new(&format!("{}-ns", prefix()));
    let path = ns.path().to_owned();
    netns::delete(ns.name()).unwrap();
    let spec = ExecSpec {
        netns: Some(path),
        ..ExecSpec::default()
    };
    assert!(matches!(
        exec::command(&spec, &argv(&["true"])),
        Err(SandboxError::NoSuchNetns(_))
    ));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn link_errors() {
    let p = prefix();
    let ns = NsGuard::new(&format!("{p}-ns"));
    let mut nl = ns.netlink();
    assert!(matches!(nl.link("nope"), Err(SandboxError::NoSuchLink(n)) if n == "nope"));
    for bad in ["", "bad/name", "a b", "has:colon", "sixteen-chars-xx"] {
        assert!(matches!(nl.link(bad), Err(SandboxError::InvalidLinkName(_))), "{bad:?}");
        assert!(
            matches!(nl.create_veth(bad, "ok0", None), Err(SandboxError::InvalidLinkName(_))),
            "{bad:?}"
        );
        assert!(
            matches!(nl.create_veth("ok0", bad, None), Err(SandboxError::InvalidLinkName(_))),
            "{bad:?}"
        );
    }
    let lo = nl.link("lo").unwrap();
    assert!(matches!(
        nl.set_name(lo.index, "x y"),
        Err(SandboxError::InvalidLinkName(_))
    ));

    let (a, b) = (format!("{p}a"), format!("{p}b"));
    nl.create_veth(&a, &b, None).unwrap();
    let err = nl.create_veth(&a, &format!("{p}z"), None).unwrap_err();
    assert!(matches!(&err, SandboxError::Netlink { op: "RTM_NEWLINK", .. }), "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");

    let err = nl.set_mtu(999_999, 1500).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    assert!(err.is_not_found());
    // A broken request does not disturb the next one.
    assert_eq!(nl.link(&a).unwrap().kind.as_deref(), Some("veth"));
    assert_eq!(nl.links().unwrap().len(), 3);
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn many_links_dump_across_datagrams() {
    let p = prefix();
    let ns = NsGuard::new(&format!("{p}-ns"));
    let mut nl = ns.netlink();
    for i in 0..40 {
        nl.create_veth(&format!("{p}x{i}"), &format!("{p}y{i}"), None).unwrap();
    }
    let links = nl.links().unwrap();
    assert_eq!(links.len(), 81);
    let names: HashSet<_> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 81);
    let idx = links.iter().find(|l| l.name == format!("{p}x39")).unwrap().index;
    assert_eq!(nl.addresses(idx).unwrap(), vec![]);
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn run_in_proc_path_and_panics_propagate() {
    // Any namespace file works, e.g. our own through /proc.
    let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let seen = netns::run_in(Path::new("/proc/self/ns/net"), || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    });
    assert_eq!(seen.unwrap(), own);
    // A panic inside reaches the caller (and only the short-lived thread moved).
    let caught = std::panic::catch_unwind(|| netns::run_in(Path::new("/proc/self/ns/net"), || panic!("inside")));
    assert!(caught.is_err());
    // A file that is not a namespace fails setns.
    let err = netns::run_in(Path::new("/etc/hosts"), || ()).unwrap_err();
    assert!(matches!(err, SandboxError::Netns { op: "setns", .. }), "{err}");
}

/// What our netlink configured, as iproute2 shows it: the namespace, a veth
/// with its MAC, MTU, address and default route, a TAP.
#[test]
#[cfg_attr(not(all(px_root, px_ip)), ignore = "needs root, /dev/net/tun and iproute2's ip")]
fn ip_sees_what_netlink_configured() {
    let p = prefix();
    let host = NsGuard::new(&format!("{p}-host"));
    let ctr = NsGuard::new(&format!("{p}-ctr"));
    assert!(
        ip_netns_list().contains(&ctr.name().to_owned()),
        "{:?}",
        ip_netns_list()
    );
    let (host_end, peer_end) = (format!("{p}h"), format!("{p}c"));
    let mut nl_host = host.netlink();
    nl_host.create_veth(&host_end, &peer_end, None).unwrap();
    let c = nl_host.link(&peer_end).unwrap();
    nl_host.set_netns(c.index, ctr.0.open_fd().unwrap().as_fd()).unwrap();
    let mut nl = ctr.netlink();
    let c = nl.link(&peer_end).unwrap();
    nl.set_name(c.index, "eth0").unwrap();
    nl.set_mac(c.index, [0x02, 0x42, 0xac, 0x1e, 0x00, 0x02]).unwrap();
    nl.set_mtu(c.index, 1450).unwrap();
    nl.add_address(c.index, "172.30.0.2/24".parse().unwrap()).unwrap();
    nl.set_up(c.index, true).unwrap();
    nl.add_default_route(Ipv4Addr::new(172, 30, 0, 1), c.index).unwrap();

    let shown = ip_json(&["-n", ctr.name(), "addr", "show", "eth0"]);
    let link = &shown[0];
    assert_eq!(link["ifname"], "eth0");
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["address"], "02:42:ac:1e:00:02");
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{link}");
    let inet: Vec<_> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(inet.len(), 1, "{link}");
    assert_eq!(
        (&inet[0]["local"], &inet[0]["prefixlen"]),
        (&Value::from("172.30.0.2"), &Value::from(24))
    );
    let route = ip_json(&["-n", ctr.name(), "route", "show", "default"]);
    assert_eq!(route[0]["gateway"], "172.30.0.1", "{route}");
    assert_eq!(route[0]["dev"], "eth0", "{route}");
    let peer = ip_json(&["-n", host.name(), "-d", "link", "show", &host_end]);
    assert_eq!(peer[0]["linkinfo"]["info_kind"], "veth", "{peer}");

    let features = tap::probe_features().unwrap();
    let opts = TapOptions {
        vnet_hdr: features.vnet_hdr,
        multi_queue: false,
    };
    let name = format!("{p}tap");
    let _tap = netns::run_in(ctr.path(), || tap::create(&name, opts)).unwrap().unwrap();
    let shown = ip_json(&["-n", ctr.name(), "-d", "link", "show", &name]);
    assert_eq!(shown[0]["linkinfo"]["info_kind"], "tun", "{shown}");
    assert_eq!(shown[0]["linkinfo"]["info_data"]["type"], "tap", "{shown}");
}
