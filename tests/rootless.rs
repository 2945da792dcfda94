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
//! The test runs as root and drops to the user `$PLEXUS_TEST_USER` (`.ci/run`
//! creates one; default `nobody`) with util-linux's
//! `setpriv`, which clears every capability.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestEnv, plexus_bin};
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
        let mut c = Command::new("setpriv");
        let (uid, gid) = test_user();
        c.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &gid.to_string(),
            "--clear-groups",
        ])
        .arg(plexus_bin())
        .args(args)
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

    /// Starts the daemon, in network namespace `netns` if given (entered as
    /// root with nsenter before dropping to the user).
    fn start_daemon_in(&mut self, netns: Option<&str>) {
        let log = std::fs::File::create(self.home.join("daemon.log")).unwrap();
        let mut cmd = self.command(&["daemon"]);
        if let Some(ns) = netns {
            let inner = cmd;
            cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(inner.get_program())
                .args(inner.get_args())
                .env_clear()
                .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        }
        let child = cmd
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
            // setpriv execs the daemon: this pid is the daemon's.
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
/// runs here.
fn host_firewall() -> Option<String> {
    let out = Command::new("nft").args(["-s", "list", "ruleset"]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Routes of the host's namespace (every table) that were not there `before`.
fn new_host_routes(before: &[String]) -> Vec<String> {
    host_routes().into_iter().filter(|r| !before.contains(r)).collect()
}

fn host_routes() -> Vec<String> {
    let out = Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn host_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        })
        .collect();
    names.sort();
    names
}

fn owner(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().uid()
}

#[test]
fn an_ordinary_user_gets_a_rootless_daemon_that_says_so() {
    require_root!();
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
    let inside = user.exec("s1", "id -u; hostname; ip -o link; readlink /proc/self/ns/net");
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[0], "0", "{inside}");
    assert_eq!(lines[1], "s1", "{inside}");
    assert_eq!(lines.len(), 4, "only lo: {inside}");
    assert!(lines[2].starts_with("1: lo: <LOOPBACK,UP"), "{inside}");
    let netns = lines[3].to_owned();
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

const TCP_SINK: &str = "import socket,hashlib\ns=socket.socket();s.bind(('0.0.0.0',9000));s.listen(1)\n\
c,a=s.accept();h=hashlib.sha256()\nwhile True:\n b=c.recv(1<<20)\n if not b: break\n h.update(b)\n\
print(a[0],h.hexdigest())";
const TCP_SOURCE: &str = "import socket,hashlib,random\nd=random.Random(3).randbytes(10000000)\n\
c=socket.create_connection(('10.86.1.3',9000));c.sendall(d);c.close()\nprint(hashlib.sha256(d).hexdigest())";

#[test]
fn rootless_sandboxes_talk_through_the_switch_over_tap_endpoints() {
    require_root!();
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
    if tun["ok"] != true {
        // .ci/run makes /dev/net/tun usable for every user, as rootless
        // container hosts do.
        eprintln!(
            "skipped: /dev/net/tun is not usable by the test user: {}",
            tun["detail"]
        );
        return;
    }
    let ok = |user: &User, args: &[&str]| {
        let out = user.plexus(args);
        assert!(out.status.success(), "{args:?}: {out:?}\n{}", user.log());
    };
    ok(&user, &["network", "create", "--subnet", "10.86.1.0/24", "rl"]);
    ok(&user, &["run", "--network", "rl", "c1"]);
    ok(&user, &["run", "--network", "rl", "c2"]);
    // Each sandbox has a TAP eth0 made inside it, with its address.
    let inside = user.exec("c1", "ip -o -4 addr show eth0; ip -o link show eth0");
    assert!(inside.contains("10.86.1.2/24"), "{inside}");
    assert!(inside.contains("tun") || inside.contains("link/ether"), "{inside}");
    assert!(
        user.exec("c1", "ping -c 2 -W 2 10.86.1.3 >/dev/null && echo ok")
            .contains("ok"),
        "c1 cannot ping c2"
    );
    // 10 MB over TCP through the switch; the hash matches.
    let sink = user
        .command(&["exec", "c2", "--", "python3", "-c", TCP_SINK])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = user.exec("c1", &format!("python3 -c \"{TCP_SOURCE}\""));
    let got = sink.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&got.stdout).into_owned();
    assert_eq!(
        got.trim(),
        format!("10.86.1.2 {}", sent.trim()),
        "TCP through the switch"
    );

    // The gateway's address reaches a server on the host's loopback (on by
    // default rootless; the container talks to 10.86.1.1).
    let host_server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut c, _) = host_server.accept().unwrap();
        std::io::Write::write_all(&mut c, b"hello from the host").unwrap();
    });
    let fetched = user.exec(
        "c1",
        &format!(
            "python3 -c \"import socket;c=socket.create_connection(('10.86.1.1',{port}));print(c.recv(100).decode())\""
        ),
    );
    assert_eq!(fetched.trim(), "hello from the host");
    serve.join().unwrap();
    // ...and can be switched off per network.
    ok(
        &user,
        &[
            "network",
            "create",
            "--subnet",
            "10.86.2.0/24",
            "--no-host-loopback",
            "closed",
        ],
    );
    ok(&user, &["run", "--network", "closed", "c3"]);
    let refused = user.exec(
        "c3",
        &format!(
            "python3 -c \"import socket\ntry:\n socket.create_connection(('10.86.2.1',{port}),timeout=3);print('open')\nexcept OSError as e:\n print('refused')\""
        ),
    );
    assert_eq!(refused.trim(), "refused");
    ok(&user, &["sandbox", "rm", "c3"]);

    // A published port answers from the host (its loopback: the container
    // sees the gateway); one below the unprivileged start is refused clearly.
    ok(&user, &["run", "--network", "rl", "-p", "127.0.0.1:18086:9001", "web"]);
    let server = user
        .command(&["exec", "web", "--", "python3", "-c"])
        .arg(
            "import socket\ns=socket.socket();s.bind(('0.0.0.0',9001));s.listen(1)\n\
             c,a=s.accept();c.sendall(('from=%s'%a[0]).encode());c.close()",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut reply = String::new();
    let mut conn = std::net::TcpStream::connect("127.0.0.1:18086").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Read::read_to_string(&mut conn, &mut reply).unwrap();
    assert_eq!(reply, "from=10.86.1.1");
    let _ = server.wait_with_output();
    let out = user.plexus(&["run", "--network", "rl", "-p", "80:80", "low"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ip_unprivileged_port_start"), "{err}");
    ok(&user, &["sandbox", "rm", "web"]);

    // The daemon restarts: the sandboxes are there and reach each other again.
    user.stop_daemon();
    user.start_daemon();
    assert!(
        user.exec("c2", "ping -c 2 -W 2 10.86.1.2 >/dev/null && echo ok")
            .contains("ok"),
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

/// A one-shot server in namespace `ns`: answers one TCP connection (or UDP
/// datagram) with the address it came from.
fn answer_once(ns: &str, udp: bool) -> Child {
    let code = if udp {
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('198.18.46.2',7))\n\
         d,a=s.recvfrom(100);s.sendto(('from=%s'%a[0]).encode(),a)"
    } else {
        "import socket\ns=socket.socket();s.bind(('198.18.46.2',8080));s.listen(1)\n\
         c,a=s.accept();c.sendall(('from=%s'%a[0]).encode());c.close()"
    };
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", code])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    child
}

#[test]
fn rootless_containers_reach_the_outside_through_unprivileged_sockets() {
    require_root!();
    let env = TestEnv::new();
    // "host" (the rootless daemon's namespace) and "outside", on 198.18.46.x.
    let world = common::HostOutside::new(&env, 46, true);
    let mut user = User::new(&env);
    user.start_daemon_in(Some(&world.host));
    let info: Value = serde_json::from_slice(&user.plexus(&["info", "--format", "json"]).stdout).unwrap();
    assert_eq!(info["mode"], "rootless", "{info}");
    if info["rootless_checks"][1]["ok"] != true {
        eprintln!("skipped: /dev/net/tun is not usable by the test user");
        return;
    }
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
    // TCP: the outside sees the host's address (the daemon's own socket).
    let mut server = answer_once(&world.outside, false);
    let got = user.exec(
        "c1",
        "python3 -c \"import socket;c=socket.create_connection(('198.18.46.2',8080),timeout=5);print(c.recv(100).decode())\"",
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got.trim(), "from=198.18.46.1");
    // UDP likewise.
    let mut server = answer_once(&world.outside, true);
    let got = user.exec(
        "c1",
        "python3 -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);\
         s.sendto(b'x',('198.18.46.2',7));print(s.recv(100).decode())\"",
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got.trim(), "from=198.18.46.1");
    // Ping, through the daemon's unprivileged ping socket.
    assert!(
        user.exec("c1", "ping -c 1 -W 3 198.18.46.2 >/dev/null && echo ok")
            .contains("ok"),
        "rootless ping to the outside failed:\n{}",
        user.log()
    );
    let flows: Vec<Value> = serde_json::from_slice(&user.plexus(&["nat", "--format", "json"]).stdout).unwrap();
    assert!(flows.iter().any(|f| f["proto"] == "udp"), "{flows:?}");
    assert!(flows.iter().any(|f| f["proto"] == "icmp"), "{flows:?}");

    // Published TCP and UDP ports answer a client outside, and the container
    // sees that client's own address.
    let server = user
        .command(&["exec", "c1", "--", "python3", "-c"])
        .arg(
            "import socket\nt=socket.socket();t.bind(('0.0.0.0',9100));t.listen(1)\n\
             u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.bind(('0.0.0.0',9101))\n\
             c,a=t.accept();c.sendall(('from=%s'%a[0]).encode());c.close()\n\
             d,a=u.recvfrom(100);u.sendto(('from=%s'%a[0]).encode(),a)",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ask = |code: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &world.outside, "python3", "-c", code])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let tcp =
        ask("import socket;c=socket.create_connection(('198.18.46.1',9100),timeout=5);print(c.recv(100).decode())");
    let udp = ask(
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);\
         s.sendto(b'x',('198.18.46.1',9101));print(s.recv(100).decode())",
    );
    let _ = server.wait_with_output();
    assert_eq!(tcp, "from=198.18.46.2", "published TCP");
    assert_eq!(udp, "from=198.18.46.2", "published UDP");
    let out = user.plexus(&["sandbox", "rm", "c1"]);
    assert!(out.status.success(), "{out:?}");
}
