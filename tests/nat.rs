//! Outbound NAT, hermetic (the netavark pattern): the test makes a "host"
//! namespace and an "outside" namespace joined by a veth (198.18.0.0/15, a test
//! range), runs `plexus daemon` inside the "host" one, and containers on a
//! Plexus network reach the "outside" through the switch's gateway and NAT —
//! ordinary host sockets of the daemon, no iptables, no kernel forwarding.
//! Nothing leaves the test's namespaces. Needs root.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, HostOutside, TestEnv};
use serde_json::Value;

/// A process a test started, killed and reaped when the test ends (even by a
/// panic).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The "host" and "outside" namespaces, and the servers started in them;
/// removed on drop.
struct World {
    net: HostOutside,
    servers: Vec<Child>,
}

impl std::ops::Deref for World {
    type Target = HostOutside;
    fn deref(&self) -> &HostOutside {
        &self.net
    }
}

impl World {
    /// `ping_sockets`: allow unprivileged ping sockets in the "host" (a new
    /// namespace starts with them off; the daemon then falls back to raw ones).
    fn new(env: &TestEnv, third: u8, ping_sockets: bool) -> World {
        World {
            net: HostOutside::new(env, third, ping_sockets),
            servers: Vec::new(),
        }
    }

    /// A UDP server in "outside" on `port` that answers each datagram with the
    /// address and port it came from.
    fn udp_echo(&mut self, port: u16) {
        let code = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{}',{port}))\n\
             while True:\n d,a=s.recvfrom(65535)\n s.sendto(('%s:%d '%a).encode()+d,a)\n",
            self.outside_ip
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.outside, "python3", "-c", &code])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 is installed");
        self.servers.push(child);
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // The namespaces go after this, with `net`.
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// A UDP exchange from a sandbox: sends `msg` to `to:port` from local port
/// `from_port` and returns the reply (empty on timeout).
fn udp_ask(d: &Daemon, sandbox: &str, to: &str, port: u16, from_port: u16, msg: &str) -> String {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',{from_port}))\n\
         s.settimeout(2)\ns.sendto(b'{msg}',('{to}',{port}))\ntry:\n print(s.recv(65535).decode())\n\
         except Exception:\n print('')\n"
    );
    let out = d.plexus(&["exec", sandbox, "--", "python3", "-c", &code]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn nat_flows(d: &Daemon) -> Vec<Value> {
    let out = d.plexus(&["nat", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("nat --format json")
}

#[test]
fn udp_and_ping_reach_the_outside_through_host_sockets() {
    require_root!();
    let env = TestEnv::new();
    let mut world = World::new(&env, 40, true);
    world.udp_echo(7);
    let d = Daemon::start_in(
        &env,
        Some(&world.host),
        &["--nat-udp-timeout", "2", "--nat-icmp-timeout", "2"],
    );
    d.ok(&["network", "create", "--subnet", "10.84.0.0/24", "out"]);
    d.ok(&["run", "--network", "out", "c1"]);

    // The outside sees the host's address: the NAT worked.
    let reply = udp_ask(&d, "c1", &world.outside_ip, 7, 40000, "hello");
    assert!(reply.starts_with(&format!("{}:", world.host_ip)), "reply {reply:?}");
    assert!(reply.ends_with("hello"), "reply {reply:?}");
    let ping = d.plexus(&[
        "exec",
        "c1",
        "--",
        "ping",
        "-n",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        &world.outside_ip,
    ]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    // `plexus nat` lists both flows, then none once they idle out.
    let flows = nat_flows(&d);
    let has = |proto: &str| flows.iter().any(|f| f["proto"] == proto && f["endpoint"] == "c1");
    assert!(has("udp") && has("icmp"), "{flows:?}");
    let udp = flows.iter().find(|f| f["proto"] == "udp").unwrap();
    assert_eq!(udp["inside"], "10.84.0.2:40000");
    assert_eq!(udp["outside"], format!("{}:7", world.outside_ip));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nat_flows(&d).is_empty() {
        assert!(Instant::now() < deadline, "flows never expired: {:?}", nat_flows(&d));
        std::thread::sleep(Duration::from_millis(250));
    }

    // A closed port outside: the refusal comes back as the container's stack
    // expects it (ICMP port unreachable → ECONNREFUSED on a connected socket).
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.connect(('{}',9))\ns.send(b'x')\ntry:\n s.recv(100)\n print('answered')\n\
         except ConnectionRefusedError:\n print('refused')\nexcept Exception as e:\n print(type(e).__name__)\n",
        world.outside_ip
    );
    let out = d.plexus(&["exec", "c1", "--", "python3", "-c", &code]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");

    // An internal network's container gets nowhere, even with a route by hand.
    d.ok(&["network", "create", "--internal", "--subnet", "10.84.1.0/24", "closed"]);
    d.ok(&["run", "--network", "closed", "shut"]);
    let _ = d.plexus(&[
        "exec",
        "shut",
        "--",
        "ip",
        "route",
        "add",
        "default",
        "via",
        "10.84.1.1",
    ]);
    assert_eq!(udp_ask(&d, "shut", &world.outside_ip, 7, 40001, "x"), "");
    let flows = nat_flows(&d);
    assert!(!flows.iter().any(|f| f["endpoint"] == "shut"), "{flows:?}");
}

#[test]
fn a_full_nat_table_refuses_new_flows_and_keeps_old_ones() {
    require_root!();
    let env = TestEnv::new();
    let mut world = World::new(&env, 41, true);
    world.udp_echo(7);
    let d = Daemon::start_in(&env, Some(&world.host), &["--nat-max-flows-per-endpoint", "2"]);
    d.ok(&["network", "create", "--subnet", "10.84.2.0/24", "small"]);
    d.ok(&["run", "--network", "small", "c"]);
    for p in [41000, 41001] {
        assert!(
            !udp_ask(&d, "c", &world.outside_ip, 7, p, "in").is_empty(),
            "flow from {p}"
        );
    }
    // A third flow from the same endpoint is refused and counted...
    assert_eq!(udp_ask(&d, "c", &world.outside_ip, 7, 41002, "out"), "");
    let stats: Vec<Value> = serde_json::from_slice(&d.plexus(&["stats", "--format", "json"]).stdout).unwrap();
    let port = stats.iter().find(|p| p["endpoint"] == "c").unwrap();
    assert!(port["drops"]["nat_full"].as_u64().unwrap() >= 1, "{port}");
    // ...while the old flows keep working.
    assert!(udp_ask(&d, "c", &world.outside_ip, 7, 41000, "still").ends_with("still"));
    assert_eq!(nat_flows(&d).len(), 2);
    // A TCP connection is a flow too: refused at once (a reset), and counted.
    let server = tcp_server_in_ns(&world.outside, &world.outside_ip, &["8080"]);
    let full = |d: &Daemon| {
        let stats: Vec<Value> = serde_json::from_slice(&d.plexus(&["stats", "--format", "json"]).stdout).unwrap();
        stats.iter().find(|p| p["endpoint"] == "c").unwrap()["drops"]["nat_full"]
            .as_u64()
            .unwrap()
    };
    let before = full(&d);
    let (first, _, _) = tcp_from_sandbox(&d, "c", &[&world.outside_ip, "8080", "GET", "1"]);
    assert_eq!(first, "refused");
    assert_eq!(full(&d), before + 1);
    drop(server);
    drop(d);
    assert!(env.leftover_links().is_empty());
}

#[test]
fn ping_falls_back_to_raw_sockets_where_ping_sockets_are_not_allowed() {
    require_root!();
    let env = TestEnv::new();
    let world = World::new(&env, 42, false);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.3.0/24", "raw"]);
    d.ok(&["run", "--network", "raw", "a"]);
    d.ok(&["run", "--network", "raw", "b"]);
    // Two containers with pings of their own identifiers to the same address.
    for c in ["a", "b"] {
        let ping = d.plexus(&[
            "exec",
            c,
            "--",
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &world.outside_ip,
        ]);
        assert!(ping.status.success(), "{c}: {}", String::from_utf8_lossy(&ping.stdout));
    }
    assert!(d.log().contains("outbound ICMP echo uses raw sockets"), "{}", d.log());
    let flows = nat_flows(&d);
    assert_eq!(flows.iter().filter(|f| f["proto"] == "icmp").count(), 2, "{flows:?}");
}

/// A UDP server inside a sandbox on `ports` that answers each datagram with
/// `port=<its port> from=<client address:port>`.
fn udp_server_in(d: &Daemon, sandbox: &str, ports: &[u16]) -> Reap {
    let code = format!(
        "import socket,selectors\nsel=selectors.DefaultSelector()\nfor p in {ports:?}:\n \
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n s.bind(('0.0.0.0',p))\n sel.register(s,selectors.EVENT_READ)\n\
         while True:\n for k,_ in sel.select():\n  d,a=k.fileobj.recvfrom(65535)\n  \
         k.fileobj.sendto(('port=%d from=%s:%d'%(k.fileobj.getsockname()[1],a[0],a[1])).encode(),a)\n"
    );
    let child = Command::new(common::plexus_bin())
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "exec",
            sandbox,
            "--",
            "python3",
            "-c",
            &code,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Reap(child)
}

/// A UDP exchange from a namespace (`ip netns exec`), or `None` on timeout.
fn udp_ask_from_ns(ns: &str, to: &str, port: u16) -> Option<String> {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'hi',('{to}',{port}))\ntry:\n print(s.recv(65535).decode())\nexcept Exception:\n print('')\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &code])
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

#[test]
fn published_udp_ports_keep_the_clients_address() {
    require_root!();
    let env = TestEnv::new();
    let world = World::new(&env, 43, true);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.4.0/24", "pub"]);
    d.ok(&[
        "run",
        "--network",
        "pub",
        "-p",
        "8053:53/udp",
        "-p",
        "9000-9001:7000-7001/udp",
        "srv",
    ]);
    let server = udp_server_in(&d, "srv", &[53, 7000, 7001]);

    // A client outside reaches the published port; the container sees its real address.
    let reply = udp_ask_from_ns(&world.outside, &world.host_ip, 8053).expect("no answer from the published port");
    assert!(
        reply.starts_with(&format!("port=53 from={}:", world.outside_ip)),
        "{reply}"
    );
    // A range maps each host port to its container port.
    for (host, container) in [(9000, 7000), (9001, 7001)] {
        let reply = udp_ask_from_ns(&world.outside, &world.host_ip, host).unwrap_or_default();
        assert!(
            reply.starts_with(&format!("port={container} from={}:", world.outside_ip)),
            "{host}: {reply}"
        );
    }
    // The host's own loopback reaches it too (the container sees the gateway).
    let reply = udp_ask_from_ns(&world.host, "127.0.0.1", 8053).expect("no answer on 127.0.0.1");
    assert!(reply.starts_with("port=53 from=10.84.4.1:"), "{reply}");
    // Another container reaches it through the host's address (hairpin).
    d.ok(&["run", "--network", "pub", "peer"]);
    let hairpin = udp_ask(&d, "peer", &world.host_ip, 8053, 42000, "x");
    assert!(
        hairpin.starts_with(&format!("port=53 from={}:", world.host_ip)),
        "{hairpin}"
    );

    // The same host port again fails whole, and leaves nothing behind.
    let out = d.plexus(&["run", "--network", "pub", "-p", "8053:53/udp", "again"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(
        !d.plexus(&["sandbox", "inspect", "again"]).status.success(),
        "a failed run left its sandbox"
    );
    // So does a port another program holds on the host.
    let blocker = Reap(
        Command::new("ip")
            .args(["netns", "exec", &world.host, "python3", "-c"])
            .arg("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',8054))\ntime.sleep(30)")
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(400));
    let out = d.plexus(&["run", "--network", "pub", "-p", "8054:53/udp", "blocked"]);
    drop(blocker);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port is already allocated"),
        "{out:?}"
    );
    // An empty host port takes an ephemeral one, shown by inspect.
    d.ok(&["run", "--network", "pub", "-p", "53/udp", "eph"]);
    let ep: Value = serde_json::from_str(&d.ok(&["endpoint", "inspect", "eph", "--format", "json"])).unwrap();
    let host_port = ep["ports"][0]["host_port"].as_u64().unwrap();
    assert!(host_port >= 1024, "{ep}");

    drop(server);
}

/// A TCP test peer (python3, no other tool needed). `server ADDR PORT...`
/// answers each connection with `from=IP:PORT port=P` and then serves `GET N`
/// (sends N deterministic bytes) or `PUT N` (reads N bytes, answers their
/// SHA-256). `client HOST PORT GET|PUT N [SRCPORT]` prints the server's first
/// line, then the SHA-256 of what it received (GET) or the server's (PUT),
/// then the SHA-256 of the expected bytes. A refused connect prints `refused`.
const TCP_PEER: &str = r#"
import socket, sys, hashlib, random, threading
def data(n):
    return random.Random(7).randbytes(n)
def recv_exact(c, n):
    h = hashlib.sha256(); got = 0
    while got < n:
        b = c.recv(min(1 << 20, n - got))
        if not b: break
        h.update(b); got += len(b)
    return h.hexdigest(), got
def line(f):
    return f.readline().decode().strip()
def serve(c, a):
    f = c.makefile('rb')
    c.sendall(('from=%s:%d port=%d\n' % (a[0], a[1], c.getsockname()[1])).encode())
    cmd, n = line(f).split(); n = int(n)
    if cmd == 'GET':
        c.sendall(data(n)); c.shutdown(socket.SHUT_WR); c.recv(1)
    else:
        h = hashlib.sha256(); got = 0
        while got < n:
            b = f.read(min(1 << 20, n - got))
            if not b: break
            h.update(b); got += len(b)
        c.sendall((h.hexdigest() + '\n').encode())
    c.close()
if sys.argv[1] == 'server':
    for p in sys.argv[3:]:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[2], int(p))); s.listen(64)
        def loop(s=s):
            while True:
                c, a = s.accept()
                threading.Thread(target=serve, args=(c, a), daemon=True).start()
        threading.Thread(target=loop, daemon=True).start()
    print('ready', flush=True)
    threading.Event().wait()
else:
    host, port, cmd, n = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    c = socket.socket(); c.settimeout(20)
    if len(sys.argv) > 6: c.bind(('0.0.0.0', int(sys.argv[6])))
    try:
        c.connect((host, port))
    except ConnectionRefusedError:
        print('refused'); sys.exit(0)
    except OSError as e:
        print('error', e.errno); sys.exit(0)
    f = c.makefile('rb')
    print(line(f))
    c.sendall(('%s %d\n' % (cmd, n)).encode())
    if cmd == 'GET':
        h = hashlib.sha256(); got = 0
        while True:
            b = f.read(1 << 20)
            if not b: break
            h.update(b); got += len(b)
        print(h.hexdigest())
    else:
        c.sendall(data(n)); print(line(f))
    print(hashlib.sha256(data(n)).hexdigest())
"#;

/// Starts a TCP peer server in namespace `ns` (or, with `sandbox`, in a
/// container through `plexus exec`) and waits until it listens.
fn tcp_server(cmd: &mut Command) -> Reap {
    let mut child = Reap(cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap());
    let mut ready = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "TCP server did not start");
    child
}

fn tcp_server_in_ns(ns: &str, addr: &str, ports: &[&str]) -> Reap {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "python3", "-c", TCP_PEER, "server", addr])
        .args(ports);
    tcp_server(&mut cmd)
}

fn tcp_server_in_sandbox(d: &Daemon, sandbox: &str, ports: &[&str]) -> Reap {
    let mut cmd = Command::new(common::plexus_bin());
    cmd.args(["--socket", d.socket.to_str().unwrap(), "exec", sandbox, "--"])
        .args(["python3", "-c", TCP_PEER, "server", "0.0.0.0"])
        .args(ports);
    tcp_server(&mut cmd)
}

/// What a TCP peer client printed: (server's first line, received hash,
/// expected hash).
fn tcp_client(cmd: &mut Command, args: &[&str]) -> (String, String, String) {
    let out = cmd
        .args(["python3", "-c", TCP_PEER, "client"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::to_owned);
    let first = lines.next().unwrap_or_default();
    let got = lines.next().unwrap_or_default();
    let want = lines.next().unwrap_or_default();
    // A client that failed midway prints no hashes: never let two empty
    // strings compare equal.
    if first.starts_with("from=") {
        assert_eq!(
            want.len(),
            64,
            "TCP client failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (first, got, want)
}

fn tcp_from_ns(ns: &str, args: &[&str]) -> (String, String, String) {
    tcp_client(Command::new("ip").args(["netns", "exec", ns]), args)
}

fn tcp_from_sandbox(d: &Daemon, sandbox: &str, args: &[&str]) -> (String, String, String) {
    let mut cmd = Command::new(common::plexus_bin());
    cmd.args(["--socket", d.socket.to_str().unwrap(), "exec", sandbox, "--"]);
    tcp_client(&mut cmd, args)
}

const TEN_MB: &str = "10000000";

#[test]
fn tcp_reaches_the_outside_through_host_streams() {
    require_root!();
    let env = TestEnv::new();
    let world = World::new(&env, 44, true);
    let d = Daemon::start_in(&env, Some(&world.host), &["--nat-tcp-transitory-timeout", "5"]);
    // A container MTU below the host's: each side of the relay has its own MSS.
    d.ok(&["network", "create", "--subnet", "10.84.5.0/24", "--mtu", "1280", "out"]);
    d.ok(&["run", "--network", "out", "c1"]);
    let server = tcp_server_in_ns(&world.outside, &world.outside_ip, &["8080"]);

    // 10 MB each way; the server sees the host's address (the NAT worked).
    let (from, got, want) = tcp_from_sandbox(&d, "c1", &[&world.outside_ip, "8080", "GET", TEN_MB]);
    assert!(from.starts_with(&format!("from={}:", world.host_ip)), "{from}");
    assert_eq!(got, want, "download corrupted");
    let (from, got, want) = tcp_from_sandbox(&d, "c1", &[&world.outside_ip, "8080", "PUT", TEN_MB]);
    assert!(from.starts_with(&format!("from={}:", world.host_ip)), "{from}");
    assert_eq!(got, want, "upload corrupted");

    // A refused connect reaches the container as a reset; an address nobody
    // answers for, as ICMP host unreachable (EHOSTUNREACH, 113).
    let (first, _, _) = tcp_from_sandbox(&d, "c1", &[&world.outside_ip, "8081", "GET", "1"]);
    assert_eq!(first, "refused");
    let (first, _, _) = tcp_from_sandbox(&d, "c1", &["198.18.44.3", "8080", "GET", "1"]);
    assert_eq!(first, "error 113");

    // `plexus nat` shows the connection while it is open, and not after.
    let mut slow = Command::new(common::plexus_bin())
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "exec",
            "c1",
            "--",
            "python3",
            "-c",
        ])
        .arg(format!(
            "import socket,time\nc=socket.create_connection(('{}',8080))\nc.recv(100)\ntime.sleep(4)\n",
            world.outside_ip
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let flows = nat_flows(&d);
    // (The unreachable address may still have a flow: the container's SYN
    // retransmissions open new attempts, each failing as the first did.)
    let server_addr = format!("{}:8080", world.outside_ip);
    let tcp: Vec<&Value> = flows
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["outside"] == server_addr.as_str())
        .collect();
    assert_eq!(tcp.len(), 1, "{flows:?}");
    assert_eq!(tcp[0]["state"], "established", "{flows:?}");
    assert_eq!(tcp[0]["outside"], format!("{}:8080", world.outside_ip), "{flows:?}");
    let _ = slow.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while nat_flows(&d).iter().any(|f| f["outside"] == server_addr.as_str()) {
        assert!(Instant::now() < deadline, "TCP flow never went: {:?}", nat_flows(&d));
        std::thread::sleep(Duration::from_millis(300));
    }

    // An internal network never gets a TCP connection out.
    d.ok(&["network", "create", "--internal", "--subnet", "10.84.6.0/24", "int"]);
    d.ok(&["run", "--network", "int", "c2"]);
    let (first, _, _) = tcp_from_sandbox(&d, "c2", &[&world.outside_ip, "8080", "GET", "1"]);
    assert!(!first.starts_with("from="), "internal network got out: {first}");

    drop(server);
}

#[test]
fn published_tcp_ports_keep_the_clients_address() {
    require_root!();
    let env = TestEnv::new();
    let world = World::new(&env, 45, true);
    let d = Daemon::start_in(&env, Some(&world.host), &[]);
    d.ok(&["network", "create", "--subnet", "10.84.7.0/24", "pubt"]);
    d.ok(&[
        "run",
        "--network",
        "pubt",
        "-p",
        "8080:80",
        "-p",
        "9000-9001:7000-7001/tcp",
        "web",
    ]);
    let server = tcp_server_in_sandbox(&d, "web", &["80", "7000", "7001"]);

    // A client outside: the container sees its real address; 10 MB each way.
    let (from, got, want) = tcp_from_ns(&world.outside, &[&world.host_ip, "8080", "GET", TEN_MB, "41000"]);
    assert_eq!(from, format!("from={}:41000 port=80", world.outside_ip));
    assert_eq!(got, want, "download from the published port corrupted");
    let (from, got, want) = tcp_from_ns(&world.outside, &[&world.host_ip, "8080", "PUT", TEN_MB]);
    assert!(from.starts_with(&format!("from={}:", world.outside_ip)), "{from}");
    assert_eq!(got, want, "upload to the published port corrupted");
    // A range maps each host port to its container port.
    for (host, container) in [("9000", 7000), ("9001", 7001)] {
        let (from, _, _) = tcp_from_ns(&world.outside, &[&world.host_ip, host, "GET", "1"]);
        assert!(from.ends_with(&format!("port={container}")), "{host}: {from}");
    }
    // 127.0.0.1 in the host reaches it (the container sees the gateway).
    let (from, got, want) = tcp_from_ns(&world.host, &["127.0.0.1", "8080", "GET", "100000"]);
    assert!(from.starts_with("from=10.84.7.1:"), "{from}");
    assert_eq!(got, want);
    // Another container reaches it through the host's address (hairpin).
    d.ok(&["run", "--network", "pubt", "peer"]);
    let (from, got, want) = tcp_from_sandbox(&d, "peer", &[&world.host_ip, "8080", "GET", "100000"]);
    assert!(from.starts_with(&format!("from={}:", world.host_ip)), "{from}");
    assert_eq!(got, want);

    // A published port with no server in the container: the client is reset.
    d.ok(&["run", "--network", "pubt", "-p", "8090:90", "empty"]);
    let (first, _, _) = tcp_from_ns(&world.outside, &[&world.host_ip, "8090", "GET", "1"]);
    assert!(!first.starts_with("from="), "{first}");

    // The same host port again fails whole, and leaves nothing behind.
    let out = d.plexus(&["run", "--network", "pubt", "-p", "8080:80", "again"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(!d.plexus(&["sandbox", "inspect", "again"]).status.success());
    // A port another program listens on fails the same way.
    let blocker = tcp_server_in_ns(&world.host, "0.0.0.0", &["8091"]);
    let out = d.plexus(&["run", "--network", "pubt", "-p", "8091:80", "blocked"]);
    drop(blocker);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port is already allocated"),
        "{out:?}"
    );

    drop(server);
}
