//! A daemon started by an ordinary user (no capabilities, no setuid helper):
//! it picks rootless mode by itself, keeps its socket and state in the user's
//! XDG directories (the CLI finds the socket with no flag), says in `info` which
//! mode it runs and why with the host checks, makes sandboxes as network
//! namespaces of a user namespace it owns (they survive a daemon restart, `exec`
//! enters them as root-in-namespace, `sandbox rm` removes them), gives them TAP
//! endpoints made inside them that the switch forwards between (ping and 10 MB
//! of TCP, again after a daemon restart), and creates nothing in the host's
//! network namespace.
//!
//! The test runs as root and starts the user's commands as `$PLEXUS_TEST_USER`
//! (`.ci/run` creates one; default `nobody`), with no groups and no
//! capability left ([`common::net::as_user`]). It talks from inside the
//! user's sandboxes through sockets it opens there as root
//! ([`common::peers`]), so the sandboxes need no programs of their own.
//! The build script probes unprivileged user namespaces, the user and
//! `/dev/net/tun`: what the host lacks shows as ignored tests.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::net::{HostOutside, as_user, in_netns};
use common::peers::{self, Cmd};
use common::{TestEnv, ns_path, plexus_bin};
use plexus_sandbox::sock::{self, NsKey};
use serde_json::Value;

/// The unprivileged user the tests run as: `$PLEXUS_TEST_USER`, else
/// `nobody`; (uid, gid).
fn test_user() -> (u32, u32) {
    let name = std::env::var("PLEXUS_TEST_USER").unwrap_or_else(|_| "nobody".to_owned());
    let u = nix::unistd::User::from_name(&name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {name}"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// The user's directories, removed on drop (with the daemon stopped first).
struct User {
    home: PathBuf,
    daemon: Option<Child>,
}

impl User {
    fn new(env: &TestEnv) -> User {
        let home = std::env::temp_dir().join(format!("plexus-rootless-{}", env.tag));
        for d in ["run", "data"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        for d in [&home, &home.join("run"), &home.join("data")] {
            std::os::unix::fs::chown(d, Some(test_user().0), Some(test_user().1)).unwrap();
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        }
        User { home, daemon: None }
    }

    /// `plexus ARGS` as the user, with only its own environment.
    fn command(&self, args: &[&str]) -> Command {
        self.command_in(None, args)
    }

    /// `plexus ARGS` as the user, started in network namespace `netns` if
    /// given (entered as root before dropping to the user).
    fn command_in(&self, netns: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(plexus_bin());
        if let Some(ns) = netns {
            in_netns(&mut c, &ns_path(ns));
        }
        let (uid, gid) = test_user();
        as_user(&mut c, uid, gid);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", self.home.join("run"))
            .env("XDG_DATA_HOME", self.home.join("data"));
        c
    }

    fn plexus(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.home.join("run/plexus/plexus.sock")
    }

    fn start_daemon(&mut self) {
        self.start_daemon_in(None);
    }

    /// Starts the daemon, in network namespace `netns` if given.
    fn start_daemon_in(&mut self, netns: Option<&str>) {
        self.start_daemon_with(netns, &[]);
    }

    /// [`User::start_daemon_in`] with more daemon arguments.
    fn start_daemon_with(&mut self, netns: Option<&str>, extra: &[&str]) {
        let log = std::fs::File::create(self.home.join("daemon.log")).unwrap();
        let mut args = vec!["daemon"];
        args.extend(extra);
        let child = self
            .command_in(netns, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "no socket; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            if let Ok(pid) = i32::try_from(d.id()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            let _ = d.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// What `plexus exec s -- sh -c SCRIPT` printed; panics if it failed.
    fn exec(&self, sandbox: &str, script: &str) -> String {
        let out = self.plexus(&["exec", sandbox, "--", "sh", "-c", script]);
        assert!(out.status.success(), "exec {script}: {out:?}\n{}", self.log());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// The sandbox key of `sandbox` (its namespace as the host sees it,
    /// through the holder): root opens sockets there directly.
    fn key(&self, sandbox: &str) -> PathBuf {
        let out = self.plexus(&["sandbox", "inspect", sandbox, "--format", "json"]);
        assert!(out.status.success(), "{out:?}\n{}", self.log());
        let sb: Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(sb["key"].as_str().unwrap_or_else(|| panic!("no key: {sb}")))
    }

    /// Pings from `sandbox`: true if every one of `count` requests was answered.
    fn ping(&self, sandbox: &str, to: &str, count: u16) -> bool {
        peers::ping(&self.key(sandbox), to.parse().unwrap(), count)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.stop_daemon();
        // The daemon's user-namespace holder (our descendant) outlives it.
        if let Some(pid) = std::fs::read_to_string(self.home.join("data/plexus/userns.pid"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()))
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!("--- rootless daemon log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Links of the host's namespace that were not there `before` (links other
/// tests remove meanwhile do not count).
fn new_host_links(before: &[String]) -> Vec<String> {
    host_links().into_iter().filter(|l| !before.contains(l)).collect()
}

/// The host's firewall ruleset (`nft -s list ruleset`: no counters), if nft
/// runs here. Plexus never touches it; where nft is missing there is nothing
/// to compare.
fn host_firewall() -> Option<String> {
    let out = Command::new("nft").args(["-s", "list", "ruleset"]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Routes of the host's namespace that were not there `before`.
fn new_host_routes(before: &[String]) -> Vec<String> {
    host_routes().into_iter().filter(|r| !before.contains(r)).collect()
}

fn here() -> &'static Path {
    Path::new("/proc/self/ns/net")
}

fn host_routes() -> Vec<String> {
    common::net::netlink(here())
        .routes()
        .unwrap()
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect()
}

fn host_links() -> Vec<String> {
    let mut names: Vec<String> = common::net::links(here()).into_iter().map(|l| l.name).collect();
    names.sort();
    names
}

fn owner(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().uid()
}

#[test]
#[cfg_attr(not(px_userns), ignore = "needs root, a test user and unprivileged user namespaces")]
fn an_ordinary_user_gets_a_rootless_daemon_that_says_so() {
    let env = TestEnv::new();
    let links_before = host_links();
    let mut user = User::new(&env);
    user.start_daemon();

    // The CLI finds the socket under XDG_RUNTIME_DIR by itself.
    let out = user.plexus(&["info", "--format", "json"]);
    assert!(out.status.success(), "{out:?}\n{}", user.log());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["mode"], "rootless", "{info}");
    let (uid, _) = test_user();
    assert!(
        info["mode_reason"].as_str().unwrap().contains(&format!("uid {uid} ")),
        "{info}"
    );
    assert_eq!(info["socket"], user.socket().to_str().unwrap());
    let state_dir = user.home.join("data/plexus");
    assert_eq!(info["state_dir"], state_dir.to_str().unwrap());
    let checks: Vec<&str> = info["rootless_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "user_namespaces",
            "tun",
            "subordinate_ids",
            "unprivileged_ports",
            "ping"
        ]
    );
    // The human form says it too.
    let text = String::from_utf8_lossy(&user.plexus(&["info"]).stdout).into_owned();
    assert!(text.contains(&format!("rootless (uid {uid} ")), "{text}");
    assert!(text.contains("Rootless tun:"), "{text}");

    // A network (control plane and switch only) works, in a store that is the
    // user's...
    let out = user.plexus(&["network", "create", "--subnet", "10.86.0.0/24", "rl"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(owner(&state_dir.join("state.json")), uid);
    // A sandbox: a network namespace of the daemon's user namespace, entered
    // by `exec` as root there, with its hostname and only `lo`, up.
    let out = user.plexus(&["sandbox", "create", "s1"]);
    assert!(out.status.success(), "{out:?}\n{}", user.log());
    let inside = user.exec("s1", "id -u; cat /proc/sys/kernel/hostname; readlink /proc/self/ns/net");
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines.len(), 3, "{inside}");
    assert_eq!(lines[0], "0", "{inside}");
    assert_eq!(lines[1], "s1", "{inside}");
    let netns = lines[2].to_owned();
    // The same namespace through its key: only `lo`, up.
    let key = user.key("s1");
    let links = common::net::links(&key);
    assert_eq!(links.len(), 1, "only lo: {links:?}");
    assert!(links[0].name == "lo" && links[0].up, "{links:?}");
    let ino = std::fs::metadata(&key).unwrap().ino();
    assert_eq!(
        netns,
        format!("net:[{ino}]"),
        "exec entered another namespace than the key's"
    );
    // With newuidmap and a range in /etc/subuid (as .ci/run sets up), the
    // subordinate ids map to 1.. inside; else only the user, to root.
    let subids = info["rootless_checks"][2]["ok"] == true;
    let uid_map = user.exec("s1", "cat /proc/self/uid_map");
    assert_eq!(uid_map.lines().count(), if subids { 2 } else { 1 }, "{uid_map}");
    assert!(
        uid_map
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["0", uid.to_string().as_str(), "1"]),
        "{uid_map}"
    );
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(netns, host_netns.to_str().unwrap());

    // The daemon restarts; the sandbox is still there, the same namespace.
    user.stop_daemon();
    user.start_daemon();
    let out = user.plexus(&["sandbox", "ls", "--format", "json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(user.exec("s1", "readlink /proc/self/ns/net").trim(), netns);

    // `sandbox rm` removes it.
    let out = user.plexus(&["sandbox", "rm", "s1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!user.plexus(&["exec", "s1", "--", "true"]).status.success());
    assert_eq!(
        std::fs::read_dir(state_dir.join("netns")).unwrap().count(),
        0,
        "a namespace file is left"
    );

    // Nothing was created in the host's network namespace.
    assert_eq!(new_host_links(&links_before), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    not(px_user_tun),
    ignore = "needs root, a test user, user namespaces and /dev/net/tun usable by that user"
)]
fn rootless_sandboxes_talk_through_the_switch_over_tap_endpoints() {
    let env = TestEnv::new();
    let links_before = host_links();
    let routes_before = host_routes();
    let firewall_before = host_firewall();
    let mut user = User::new(&env);
    user.start_daemon();
    let info: Value = serde_json::from_slice(&user.plexus(&["info", "--format", "json"]).stdout).unwrap();
    let tun = info["rootless_checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tun")
        .unwrap()
        .clone();
    // The build script found /dev/net/tun usable by the user; so must the daemon.
    assert_eq!(tun["ok"], true, "{tun}: touch build.rs if /dev/net/tun changed");
    let ok = |user: &User, args: &[&str]| {
        let out = user.plexus(args);
        assert!(out.status.success(), "{args:?}: {out:?}\n{}", user.log());
    };
    ok(
        &user,
        &["network", "create", "--subnet", "10.86.1.0/24", "--host-loopback", "rl"],
    );
    ok(&user, &["run", "--network", "rl", "c1"]);
    ok(&user, &["run", "--network", "rl", "c2"]);
    // Each sandbox has a TAP eth0 made inside it, with its address.
    let (c1, c2) = (user.key("c1"), user.key("c2"));
    assert_eq!(common::net::addrs(&c1, "eth0"), ["10.86.1.2/24".parse().unwrap()]);
    assert_eq!(common::net::link(&c1, "eth0").kind.as_deref(), Some("tun"));
    assert!(user.ping("c1", "10.86.1.3", 2), "c1 cannot ping c2");
    // The gateway's DNS answers the sandboxes' names rootless too (glibc's
    // resolver, through the resolv.conf `exec` mounts).
    let hosts = user.exec("c1", "getent hosts c2 c2.rl");
    assert_eq!(hosts.lines().count(), 2, "{hosts}");
    assert!(hosts.lines().all(|l| l.starts_with("10.86.1.3 ")), "{hosts}");
    // 10 MB over TCP through the switch, checked byte for byte.
    let sink = peers::tcp_server(&c2, Ipv4Addr::UNSPECIFIED, &[9000]);
    let put = peers::tcp_client(
        &c1,
        SocketAddrV4::new(Ipv4Addr::new(10, 86, 1, 3), 9000),
        Cmd::Put(10_000_000),
        None,
    );
    assert!(put.first.starts_with("from=10.86.1.2:"), "{put:?}");
    assert!(put.intact, "TCP through the switch: {put:?}");
    drop(sink);

    // The gateway's address reaches a server on the host's loopback (asked
    // for with --host-loopback; the container talks to 10.86.1.1).
    let host_server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut c, _) = host_server.accept().unwrap();
        std::io::Write::write_all(&mut c, b"hello from the host").unwrap();
    });
    let gateway = SocketAddrV4::new(Ipv4Addr::new(10, 86, 1, 1), port);
    let mut fetched = String::new();
    let c = sock::tcp_connect(NsKey::netns(&c1), gateway, None, Duration::from_secs(5)).unwrap();
    std::io::Read::read_to_string(&mut &c, &mut fetched).unwrap();
    assert_eq!(fetched, "hello from the host");
    serve.join().unwrap();
    // ...and is off by default.
    ok(&user, &["network", "create", "--subnet", "10.86.2.0/24", "closed"]);
    ok(&user, &["run", "--network", "closed", "c3"]);
    let closed = SocketAddrV4::new(Ipv4Addr::new(10, 86, 2, 1), port);
    let refused = sock::tcp_connect(NsKey::netns(&user.key("c3")), closed, None, Duration::from_secs(3));
    assert!(
        refused.is_err(),
        "host loopback reached from a network without --host-loopback"
    );
    ok(&user, &["sandbox", "rm", "c3"]);

    // A published port answers from the host (its loopback: the container
    // sees the gateway); one below the unprivileged start is refused clearly.
    ok(&user, &["run", "--network", "rl", "-p", "127.0.0.1:18086:9001", "web"]);
    let server = peers::tcp_server(&user.key("web"), Ipv4Addr::UNSPECIFIED, &[9001]);
    let conn = TcpStream::connect("127.0.0.1:18086").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply).unwrap();
    assert!(reply.starts_with("from=10.86.1.1:"), "{reply}");
    drop(conn);
    drop(server);
    let out = user.plexus(&["run", "--network", "rl", "-p", "80:80", "low"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ip_unprivileged_port_start"), "{err}");
    ok(&user, &["sandbox", "rm", "web"]);

    // The daemon restarts: the sandboxes are there and reach each other again.
    user.stop_daemon();
    user.start_daemon();
    assert!(
        user.ping("c2", "10.86.1.2", 2),
        "no traffic after the restart:\n{}",
        user.log()
    );
    ok(&user, &["sandbox", "rm", "c1"]);
    ok(&user, &["sandbox", "rm", "c2"]);
    let eps: Vec<Value> = serde_json::from_slice(&user.plexus(&["endpoint", "ls", "--format", "json"]).stdout).unwrap();
    assert!(eps.is_empty(), "{eps:?}");
    assert_eq!(
        new_host_links(&links_before),
        Vec::<String>::new(),
        "a link appeared in the host's namespace"
    );
    assert_eq!(
        new_host_routes(&routes_before),
        Vec::<String>::new(),
        "a route appeared in the host's namespace"
    );
    assert_eq!(host_firewall(), firewall_before, "the host's firewall changed");
}

#[test]
#[cfg_attr(
    not(px_user_tun),
    ignore = "needs root, a test user, user namespaces and /dev/net/tun usable by that user"
)]
fn rootless_containers_reach_the_outside_through_unprivileged_sockets() {
    let env = TestEnv::new();
    // "host" (the rootless daemon's namespace) and "outside", on 198.18.46.x.
    let world = HostOutside::new(&env, 46, true);
    let mut user = User::new(&env);
    user.start_daemon_in(Some(&world.host));
    let info: Value = serde_json::from_slice(&user.plexus(&["info", "--format", "json"]).stdout).unwrap();
    assert_eq!(info["mode"], "rootless", "{info}");
    assert_eq!(info["rootless_checks"][1]["ok"], true, "{info}");
    for args in [
        &["network", "create", "--subnet", "10.86.3.0/24", "out"][..],
        &[
            "run",
            "--network",
            "out",
            "-p",
            "198.18.46.1:9100:9100",
            "-p",
            "198.18.46.1:9101:9101/udp",
            "c1",
        ][..],
    ] {
        let out = user.plexus(args);
        assert!(out.status.success(), "{args:?}: {out:?}\n{}", user.log());
    }
    let c1 = user.key("c1");
    let outside_ip = Ipv4Addr::new(198, 18, 46, 2);
    // TCP: the outside sees the host's address (the daemon's own socket).
    let server = peers::tcp_server(&world.outside_path(), outside_ip, &[8080]);
    let got = peers::tcp_client(&c1, SocketAddrV4::new(outside_ip, 8080), Cmd::Get(100_000), None);
    drop(server);
    assert!(got.first.starts_with("from=198.18.46.1:"), "{got:?}");
    assert!(got.intact, "{got:?}");
    // UDP likewise.
    let echo = peers::udp_echo(&world.outside_path(), outside_ip, 7);
    let got = peers::udp_ask(&c1, SocketAddrV4::new(outside_ip, 7), 0, "x");
    drop(echo);
    assert!(got.starts_with("198.18.46.1:") && got.ends_with(" x"), "{got:?}");
    // Ping, through the daemon's unprivileged ping socket.
    assert!(
        user.ping("c1", "198.18.46.2", 1),
        "rootless ping to the outside failed:\n{}",
        user.log()
    );
    let flows: Vec<Value> = serde_json::from_slice(&user.plexus(&["nat", "--format", "json"]).stdout).unwrap();
    assert!(flows.iter().any(|f| f["proto"] == "udp"), "{flows:?}");
    assert!(flows.iter().any(|f| f["proto"] == "icmp"), "{flows:?}");

    // Published TCP and UDP ports answer a client outside, and the container
    // sees that client's own address.
    let tcp_server = peers::tcp_server(&c1, Ipv4Addr::UNSPECIFIED, &[9100]);
    let udp_server = peers::udp_tagged(&c1, &[9101]);
    let host = Ipv4Addr::new(198, 18, 46, 1);
    let tcp = peers::tcp_client(&world.outside_path(), SocketAddrV4::new(host, 9100), Cmd::Get(1), None);
    let udp = peers::udp_ask(&world.outside_path(), SocketAddrV4::new(host, 9101), 0, "x");
    drop((tcp_server, udp_server));
    assert!(tcp.first.starts_with("from=198.18.46.2:"), "published TCP: {tcp:?}");
    assert!(udp.starts_with("port=9101 from=198.18.46.2:"), "published UDP: {udp:?}");
    let out = user.plexus(&["sandbox", "rm", "c1"]);
    assert!(out.status.success(), "{out:?}");
}

/// The gateways' DNS rootless: local names and a forwarded one (the
/// upstream, dnsmasq in "outside", reached through the daemon's own
/// unprivileged socket), through glibc's resolver in the sandbox.
#[test]
#[cfg_attr(
    not(all(px_user_tun, px_dns)),
    ignore = "needs root, a test user, user namespaces, /dev/net/tun usable by that user, dig and dnsmasq"
)]
fn rootless_containers_resolve_names_through_their_gateway() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 47, false);
    let _upstream = common::dns::upstream(&env, &world);
    let mut user = User::new(&env);
    let upstream = world.outside_ip.clone();
    user.start_daemon_with(Some(&world.host), &["--dns-upstream", &upstream]);
    for args in [
        &["network", "create", "--subnet", "10.86.4.0/24", "dn"][..],
        &["run", "--network", "dn", "--alias", "api", "c1"][..],
        &["run", "--network", "dn", "c2"][..],
    ] {
        let out = user.plexus(args);
        assert!(out.status.success(), "{args:?}: {out:?}\n{}", user.log());
    }
    let got = user.exec("c2", "getent hosts api c1.dn www.zone.test");
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert!(
        lines[0].starts_with("10.86.4.2 ") && lines[1].starts_with("10.86.4.2 "),
        "{got}"
    );
    assert!(lines[2].starts_with("203.0.113.80 "), "{got}");
}

/// `plexus demo` run by an ordinary user runs rootless, needs nothing but
/// the binary, and leaves no process, namespace file or directory behind.
#[test]
#[cfg_attr(
    not(px_user_tun),
    ignore = "needs root, a test user, user namespaces and /dev/net/tun usable by that user"
)]
fn the_demo_runs_rootless_for_an_ordinary_user() {
    let env = TestEnv::new();
    let user = User::new(&env);
    let mark = format!("PLEXUS_TEST_DEMO={}", env.tag);
    let out = user
        .command(&["demo", "--seconds", "1"])
        .env("TMPDIR", &user.home)
        .env("PLEXUS_TEST_DEMO", &env.tag)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("mode: rootless (uid "), "{text}");
    assert!(
        text.contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{text}"
    );
    assert!(text.contains("moved "), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.trim_start().starts_with("02:42:")).count(),
        2,
        "{text}"
    );
    assert!(text.contains("removed the sandboxes"), "{text}");
    // Its state directory is gone, and so is the holder of its user namespace
    // (which would carry the demo's environment).
    let left: Vec<_> = std::fs::read_dir(&user.home)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("plexus-demo-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (uid, _) = test_user();
    let holders: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == mark.as_bytes()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(holders.is_empty(), "processes of the demo are left: {holders:?}");
}

/// Row 10 of the hostile tenant's table: rootless, a network made without
/// `--host-loopback` gives no way to the host's 127.0.0.1 — not through the
/// gateway's address, not with a crafted frame to 127.0.0.1.
#[test]
#[cfg_attr(
    not(px_user_tun),
    ignore = "needs root, a test user, user namespaces and /dev/net/tun usable by that user"
)]
fn rootless_containers_never_reach_the_hosts_loopback_by_default() {
    let env = TestEnv::new();
    let world = HostOutside::new(&env, 47, true);
    // A root-owned service on the host's loopback only.
    let service = sock::tcp_listener(
        NsKey::netns(&world.host_path()),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7779),
    )
    .unwrap();
    service.set_nonblocking(true).unwrap();
    let mut user = User::new(&env);
    user.start_daemon_in(Some(&world.host));
    for args in [
        &["network", "create", "--subnet", "10.86.4.0/24", "def"][..],
        &["run", "--network", "def", "c1"][..],
    ] {
        let out = user.plexus(args);
        assert!(out.status.success(), "{args:?}: {out:?}\n{}", user.log());
    }
    let key = user.key("c1");
    let gateway = Ipv4Addr::new(10, 86, 4, 1);
    let through_gateway = sock::tcp_connect(
        NsKey::netns(&key),
        SocketAddrV4::new(gateway, 7779),
        None,
        Duration::from_secs(3),
    );
    assert!(
        through_gateway.is_err(),
        "the gateway's address reached the host's loopback"
    );
    let ep: Value =
        serde_json::from_slice(&user.plexus(&["endpoint", "inspect", "c1", "--format", "json"]).stdout).unwrap();
    let mac: plexus_switch::MacAddr = ep["mac"].as_str().unwrap().parse().unwrap();
    let l2 = common::frames::L2 {
        src: mac,
        dst: plexus_switch::MacAddr::from_ipv4(gateway),
    };
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 86, 4, 2), 40000);
    let syn = common::frames::tcp(
        &l2,
        me,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7779),
        plexus_switch::wire::TcpFlags::SYN,
        b"",
    );
    let mut raw = plexus_sandbox::netns::run_in(&key, || plexus_switch::io::PacketPort::open("eth0", false))
        .unwrap()
        .unwrap();
    assert_eq!(common::send_all(&mut raw, &[syn.clone(), syn]), 2);
    std::thread::sleep(Duration::from_millis(500));
    assert!(service.accept().is_err(), "the host's loopback service was reached");
    let stats: Vec<Value> = serde_json::from_slice(&user.plexus(&["stats", "--format", "json"]).stdout).unwrap();
    let port = stats.iter().find(|p| p["endpoint"] == "c1").unwrap();
    assert!(port["drops"]["martian"].as_u64().unwrap() >= 2, "{port}");
}
