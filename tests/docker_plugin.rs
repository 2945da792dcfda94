//! Docker uses Plexus: a real dockerd (Debian's docker.io, private, inside a
//! namespace the test made) drives `plexus daemon --docker-plugin` through
//! libnetwork's remote network and IPAM driver protocol. Its containers talk
//! through the switch, reach the "outside" through NAT, publish ports with
//! the client's address kept, move between networks, survive a restart of
//! either daemon, and leave nothing behind. The protocol's own refusals and
//! replays are driven over the plugin socket directly (no dockerd needed).
//!
//! Layout of the engine tests: a "host" namespace (where the Plexus daemon and
//! dockerd both run, as they would in the host's) and an "outside" one joined
//! to it on 198.18.THIRD.0/24 (`net::HostOutside`).

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{Dockerd, plugin_socket};
use common::net::{self, HostOutside, TestNs};
use common::{Daemon, Proc, TestEnv, peers};
use serde_json::{Value, json};

/// The example `addr_echo` (answers each TCP connection and UDP datagram
/// with the client's address), built by `cargo test` with the examples.
fn addr_echo() -> PathBuf {
    let p = common::target_dir().join("examples/addr_echo");
    assert!(
        p.exists(),
        "{} not built: run `cargo build --examples` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A plugin socket that a test made without a dockerd to clean it.
struct PluginSocket(PathBuf);

impl Drop for PluginSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Polls `f` until it gives `Some` (or panics after `secs` with `what`).
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test bed: the engine first in drop order (it leaves the plugin's
/// networks while the Plexus daemon still answers), then the daemon, then
/// the namespaces.
struct Bed {
    docker: Dockerd,
    plexus: Daemon,
    plugin: String,
    ho: HostOutside,
    env: TestEnv,
}

impl Bed {
    fn new(third: u8) -> Bed {
        let env = TestEnv::new();
        let ho = HostOutside::new(&env, third, true);
        let docker = Dockerd::start(&env, &ho.host);
        let plugin = docker.plugin_name("");
        let plexus = Daemon::start_in(&env, Some(&ho.host), &["--docker-plugin", &plugin]);
        let echo = addr_echo();
        docker.import_busybox("bb", &[echo.to_str().expect("UTF-8 path")]);
        Bed {
            docker,
            plexus,
            plugin,
            ho,
            env,
        }
    }

    /// `docker network create -d PLUGIN --ipam-driver PLUGIN ARGS NAME`;
    /// returns Docker's network id.
    fn network(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["network", "create", "-d", &self.plugin, "--ipam-driver", &self.plugin];
        all.extend(args);
        all.push(name);
        self.docker.ok(&all).trim().to_owned()
    }

    /// `docker run OPTS bb CMD…` (OPTS split at blanks); returns its stdout.
    fn run(&self, opts: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run"];
        args.extend(opts.split_whitespace());
        args.push("bb");
        args.extend(cmd);
        self.docker.ok(&args)
    }

    /// `docker exec NAME sh -c SCRIPT`, whatever its outcome: (success, stdout).
    fn exec(&self, name: &str, script: &str) -> (bool, String) {
        let out = self.docker.docker(&["exec", name, "sh", "-c", script]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The host's address on the link to the outside.
    fn host_ip(&self) -> Ipv4Addr {
        self.ho.host_ip.parse().expect("host address")
    }

    /// Interfaces of this test in the host namespace.
    fn our_links(&self) -> Vec<String> {
        net::links(&self.ho.host_path())
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n.starts_with(&self.env.tag) && *n != format!("{}ho", self.env.tag))
            .collect()
    }

    /// The first line a TCP server at `to` says to a client in "outside".
    fn tcp_line_from_outside(&self, to: SocketAddrV4) -> std::io::Result<String> {
        let conn = plexus_sandbox::netns::run_in(&self.ho.outside_path(), || {
            TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))
        })
        .expect("enter the outside namespace")?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        (&conn).take(200).read_to_string(&mut line)?;
        Ok(line.trim().to_owned())
    }
}

#[test]
#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]
fn docker_containers_talk_through_the_plexus_switch() {
    let b = Bed::new(61);
    let id = b.network("pxnet", &["--subnet", "10.123.0.0/24"]);
    let short = &id[..12];
    // The Docker network is a Plexus network with Docker's id.
    let nets = b.plexus.json(&["network", "ls"]);
    assert_eq!(nets.as_array().map(Vec::len), Some(1), "{nets}");
    assert_eq!(nets[0]["id"], id.as_str());
    assert_eq!(nets[0]["engine"], "docker");
    assert_eq!(nets[0]["subnet"], "10.123.0.0/24");
    assert_eq!(nets[0]["gateway"], "10.123.0.1");
    let listed = b.plexus.ok(&["network", "ls"]);
    assert!(listed.contains(short) && listed.contains("docker"), "{listed}");

    // A server on the outside, reached through the switch's NAT.
    let site = b.env.state_dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("hello.txt"), "hello from outside\n").unwrap();
    let mut httpd = Command::new(common::docker::busybox_path().expect("busybox"));
    httpd
        .args(["httpd", "-f", "-p", &format!("{}:8000", b.ho.outside_ip), "-h"])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    net::in_netns(&mut httpd, &b.ho.outside_path());
    let _httpd = Proc(httpd.spawn().expect("start httpd outside"));

    // The receiver: nc quits when its stdin ends, so a FIFO held open keeps
    // it reading until the sender closes.
    let receive = "mkfifo /tmp/in; sleep 1000 > /tmp/in & nc -l -p 5000 < /tmp/in > /tmp/got; \
                   sha256sum /tmp/got > /tmp/sum; sleep 1000";
    b.run("-d --name srv --network pxnet", &["sh", "-c", receive]);
    b.run("-d --name peer --network pxnet", &["sleep", "1000"]);
    let ip = |name: &str| {
        b.docker
            .ok(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name,
            ])
            .trim()
            .to_owned()
    };
    let (srv, peer) = (ip("srv"), ip("peer"));
    assert!(
        srv.starts_with("10.123.0.") && peer.starts_with("10.123.0."),
        "{srv} {peer}"
    );
    // eth0 in Docker's sandbox is our veth end, with our MAC, on Docker's key.
    let (_, addr) = b.exec("peer", "ip addr show eth0");
    assert!(addr.contains(&format!("{peer}/24")), "{addr}");
    let eps = b.plexus.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().map(Vec::len), Some(2), "{eps}");
    for e in eps.as_array().unwrap() {
        assert_eq!(e["engine"], "docker");
        let key = e["external_sandbox"].as_str().expect("joined to Docker's sandbox");
        assert!(Path::new(key).starts_with(b.docker.exec_root()), "{key}");
        assert!(addr.contains(e["mac"].as_str().unwrap()) || e["address"] != format!("{peer}/24"));
    }
    // No docker_gwbridge: the switch's gateway is the default route.
    let (_, route) = b.exec("peer", "ip route");
    assert!(route.contains("default via 10.123.0.1 dev eth0"), "{route}");
    let (_, links) = b.exec("peer", "ip -o link");
    assert!(!links.contains("eth1"), "{links}");

    // Each other, the gateway, the outside.
    for (from, to) in [("peer", srv.as_str()), ("srv", peer.as_str()), ("peer", "10.123.0.1")] {
        let (ok, out) = b.exec(from, &format!("ping -c 3 -W 2 {to}"));
        assert!(ok && out.contains("3 packets received"), "{from} -> {to}: {out}");
    }
    // (busybox-static's wget crashes in an image without NSS libraries: nc
    // speaks the HTTP.)
    let (ok, got) = b.exec(
        "peer",
        &format!(
            "printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 8000",
            b.ho.outside_ip
        ),
    );
    assert!(
        ok && got.starts_with("HTTP/1.1 200 OK"),
        "HTTP to the outside failed: {got}"
    );
    assert!(got.ends_with("\r\n\r\nhello from outside\n"), "{got:?}");

    // 10 MB over TCP, container to container, the same bytes at the end.
    let (ok, sent) = b.exec(
        "peer",
        &format!(
            "dd if=/dev/urandom of=/tmp/f bs=1M count=10 2>/dev/null && sha256sum /tmp/f && nc {srv} 5000 < /tmp/f"
        ),
    );
    assert!(ok, "send failed: {sent}");
    let sent = sent.split_whitespace().next().expect("a hash").to_owned();
    let got = wait_for(30, "the receiver's hash", || {
        let (ok, s) = b.exec("srv", "cat /tmp/sum");
        ok.then(|| s.split_whitespace().next().map(str::to_owned)).flatten()
    });
    let (_, size) = b.exec("srv", "wc -c < /tmp/got");
    assert_eq!(size.trim(), "10485760", "bytes received");
    assert_eq!(got, sent, "10 MB crossed the switch changed");
    // The switch learned both containers.
    let fdb = b.plexus.json(&["fdb", &format!("docker-{short}")]);
    for e in eps.as_array().unwrap() {
        let mac = e["mac"].as_str().unwrap();
        assert!(
            fdb.as_array().unwrap().iter().any(|r| r["mac"] == mac),
            "{mac} not in {fdb}"
        );
    }

    // docker rm -f and docker network rm leave nothing.
    b.docker.ok(&["rm", "-f", "srv", "peer"]);
    assert_eq!(b.plexus.json(&["endpoint", "ls"]), json!([]));
    assert_eq!(b.our_links(), Vec::<String>::new());
    b.docker.ok(&["network", "rm", "pxnet"]);
    assert_eq!(b.plexus.json(&["network", "ls"]), json!([]));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(b.env.state_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["state"].get("docker_pools"),
        None,
        "an IPAM pool was left: {state}"
    );
}

#[test]
#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]
fn docker_published_ports_keep_the_client_address_and_internal_networks_stay_inside() {
    let b = Bed::new(62);
    b.network("pxnet", &[]);
    b.network("pxint", &["--internal", "--subnet", "10.124.0.0/24"]);
    b.run(
        "-d --name web --network pxnet --mac-address 02:42:de:ad:be:ef -p 8080:80 -p 8053:53/udp",
        &["sh", "-c", "addr_echo 80 & exec addr_echo 53"],
    );
    let host = b.host_ip();
    let outside: Ipv4Addr = b.ho.outside_ip.parse().unwrap();
    // TCP: the container sees the outside client's own address.
    let line = wait_for(20, "the published TCP port", || {
        b.tcp_line_from_outside(SocketAddrV4::new(host, 8080)).ok()
    });
    assert!(line.starts_with(&format!("{outside}:")), "the container saw {line}");
    // UDP likewise, port and all.
    let answer = peers::udp_ask(&b.ho.outside_path(), SocketAddrV4::new(host, 8053), 40053, "who am I");
    assert_eq!(answer.trim(), format!("{outside}:40053"));
    let eps = b.plexus.json(&["endpoint", "ls"]);
    let ports: Vec<String> = eps[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["host_port"], p["protocol"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, ["8080/tcp", "8053/udp"]);
    // The MAC Docker gave is the endpoint's (and the switch's anti-spoofing
    // lets it through).
    assert_eq!(eps[0]["mac"], "02:42:de:ad:be:ef");

    // An internal network: no default route, nothing outside, nothing published.
    b.run("-d --name inner --network pxint -p 8090:7000", &["addr_echo", "7000"]);
    let (_, route) = b.exec("inner", "ip route");
    assert!(!route.contains("default"), "{route}");
    let (ok, out) = b.exec("inner", &format!("ping -c 1 -W 2 {outside}"));
    assert!(!ok, "an internal container reached the outside: {out}");
    let (ok, _) = b.exec("inner", "ping -c 1 -W 2 10.124.0.1");
    assert!(ok, "the internal network's gateway answers ping");
    assert!(
        b.tcp_line_from_outside(SocketAddrV4::new(host, 8090)).is_err(),
        "an internal network published a port"
    );

    // Removing the container closes its ports at once, with its flows.
    b.docker.ok(&["rm", "-f", "web", "inner"]);
    assert_eq!(b.plexus.json(&["nat"]), json!([]), "flows left");
    assert!(
        b.tcp_line_from_outside(SocketAddrV4::new(host, 8080)).is_err(),
        "8080 still open"
    );
    assert_eq!(b.plexus.json(&["endpoint", "ls"]), json!([]));
    assert_eq!(b.our_links(), Vec::<String>::new());
}

#[test]
#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]
fn docker_network_connect_disconnect_and_restarts_of_both_daemons() {
    let mut b = Bed::new(63);
    b.network("net1", &["--subnet", "10.125.0.0/24"]);
    // net2 with Docker's own IPAM: Plexus takes the pool and addresses it gives.
    b.docker.ok(&[
        "network",
        "create",
        "-d",
        &b.plugin,
        "--subnet",
        "10.126.0.0/24",
        "net2",
    ]);
    b.run(
        "-d --name one --restart always --network net1 -p 8081:7000",
        &["addr_echo", "7000"],
    );
    b.run("-d --name two --network net2", &["sleep", "1000"]);
    let two = "10.126.0.2";

    // connect: a second interface on the second network, through the switch.
    let (ok, _) = b.exec("one", &format!("ping -c 1 -W 1 {two}"));
    assert!(!ok, "net1 reached net2 before connect");
    b.docker.ok(&["network", "connect", "net2", "one"]);
    let (ok, out) = b.exec("one", &format!("ping -c 2 -W 2 {two}"));
    assert!(ok, "after connect: {out}");
    let (_, addrs) = b.exec("one", "ip -o addr");
    assert!(addrs.contains("eth1") && addrs.contains("10.126.0."), "{addrs}");
    assert_eq!(b.plexus.json(&["endpoint", "ls"]).as_array().map(Vec::len), Some(3));
    // disconnect: gone from the container and from Plexus.
    b.docker.ok(&["network", "disconnect", "net2", "one"]);
    let (_, addrs) = b.exec("one", "ip -o addr");
    assert!(!addrs.contains("10.126.0."), "{addrs}");
    assert_eq!(b.plexus.json(&["endpoint", "ls"]).as_array().map(Vec::len), Some(2));
    assert_eq!(b.our_links().len(), 2, "{:?}", b.our_links());

    // The Plexus daemon restarts under running containers: state restored,
    // ports bound again, the switch carries on.
    let outside: Ipv4Addr = b.ho.outside_ip.parse().unwrap();
    let published = SocketAddrV4::new(b.host_ip(), 8081);
    b.plexus.restart();
    let line = wait_for(20, "the published port after a Plexus restart", || {
        b.tcp_line_from_outside(published).ok()
    });
    assert!(line.starts_with(&format!("{outside}:")), "{line}");
    let (ok, out) = b.exec("one", "ping -c 2 -W 2 10.125.0.1");
    assert!(ok, "gateway after the Plexus restart: {out}");
    let eps = b.plexus.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().map(Vec::len), Some(2), "{eps}");
    assert!(
        eps.as_array()
            .unwrap()
            .iter()
            .all(|e| e["external_sandbox"].is_string()),
        "{eps}"
    );

    // dockerd restarts: it stops its containers and starts `one` again
    // (restart policy), replaying its calls. No duplicate, no orphan.
    b.docker.restart();
    let line = wait_for(30, "the published port after a dockerd restart", || {
        b.tcp_line_from_outside(published).ok()
    });
    assert!(line.starts_with(&format!("{outside}:")), "{line}");
    let eps = b.plexus.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().map(Vec::len), Some(1), "only `one` runs again: {eps}");
    assert_eq!(b.our_links().len(), 1, "{:?}", b.our_links());
    assert_eq!(b.plexus.json(&["network", "ls"]).as_array().map(Vec::len), Some(2));
    let (ok, out) = b.exec("one", "ping -c 2 -W 2 10.125.0.1");
    assert!(ok, "gateway after the dockerd restart: {out}");
}

// ---- The plugin protocol, spoken over its socket (no dockerd needed) ----

/// One HTTP/1.1 call on the plugin's socket: (status, JSON body).
fn plugin_call(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} /{path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let (head, json) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no body: {answer:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.plugins.v1.2+json"),
        "{head}"
    );
    (
        status,
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {json:?}")),
    )
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn the_plugin_answers_every_call_and_refuses_bad_ones_with_err() {
    let env = TestEnv::new();
    let ns = TestNs::new(&env.netns("H"));
    let name = format!("px{}", env.tag);
    let d = Daemon::start_in(&env, Some(&ns.name), &["--docker-plugin", &name]);
    let _socket_guard = PluginSocket(plugin_socket(&name));
    let sock = plugin_socket(&name);
    let call = |path: &str, body: &str| plugin_call(&sock, "POST", path, body);

    let (st, v) = call("Plugin.Activate", "");
    assert_eq!((st, v), (200, json!({"Implements": ["NetworkDriver", "IpamDriver"]})));
    assert_eq!(call("NetworkDriver.GetCapabilities", "{}").1["Scope"], "local");
    assert_eq!(
        call("IpamDriver.GetDefaultAddressSpaces", "{}").1["LocalDefaultAddressSpace"],
        "PlexusLocal"
    );

    // Refusals: each answers Err naming the call, with the status that fits.
    let refused = [
        ("POST", "NetworkDriver.Frobnicate", "{}", 404, "unknown call"),
        (
            "POST",
            "NetworkDriver.CreateNetwork",
            "{not json",
            400,
            "malformed request",
        ),
        (
            "POST",
            "NetworkDriver.CreateEndpoint",
            r#"{"NetworkID": 7}"#,
            400,
            "malformed request",
        ),
        ("GET", "Plugin.Activate", "", 405, "instead of POST"),
        (
            "POST",
            "IpamDriver.RequestPool",
            r#"{"AddressSpace":"PlexusLocal","Pool":"","V6":true}"#,
            500,
            "IPv6",
        ),
        (
            "POST",
            "IpamDriver.RequestPool",
            r#"{"Pool":"10.1.2.3/24"}"#,
            500,
            "invalid CIDR",
        ),
        (
            "POST",
            "IpamDriver.RequestAddress",
            r#"{"PoolID":"PlexusLocal/10.9.9.0/24"}"#,
            500,
            "not found",
        ),
    ];
    for (method, path, body, status, text) in refused {
        let (st, v) = plugin_call(&sock, method, path, body);
        let err = v["Err"].as_str().unwrap_or_else(|| panic!("{path}: no Err in {v}"));
        assert_eq!(st, status, "{method} {path}: {err}");
        assert!(err.contains(text), "{path}: {err}");
    }
    // Node discovery is answered (nothing to learn locally); swarm's calls are refused.
    let discover = r#"{"DiscoveryType": 1, "DiscoveryData": {"Address": "198.18.0.9", "self": false}}"#;
    assert_eq!(call("NetworkDriver.DiscoverNew", discover), (200, json!({})));
    assert_eq!(call("NetworkDriver.DiscoverDelete", discover), (200, json!({})));
    let (st, v) = call("NetworkDriver.AllocateNetwork", r#"{"NetworkID": "x"}"#);
    assert!(st == 500 && v["Err"].as_str().unwrap().contains("local scope"), "{v}");
    // Nothing was made by the refused calls.
    assert_eq!(d.json(&["network", "ls"]), json!([]));

    // A network as dockerd makes it: pool, gateway, network; an unknown
    // option is refused and leaves nothing.
    let (st, pool) = call(
        "IpamDriver.RequestPool",
        r#"{"AddressSpace":"PlexusLocal","Pool":"10.123.0.0/24","SubPool":"","Options":{},"V6":false}"#,
    );
    assert_eq!(st, 200, "{pool}");
    let pool_id = pool["PoolID"].as_str().unwrap().to_owned();
    assert_eq!(pool["Pool"], "10.123.0.0/24");
    let (_, gw) = call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}})
            .to_string(),
    );
    assert_eq!(gw["Address"], "10.123.0.1/24");
    let net_id = "5e".repeat(32);
    let create = |generic: Value| {
        json!({"NetworkID": net_id, "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": generic},
               "IPv4Data": [{"AddressSpace": "PlexusLocal", "Gateway": "10.123.0.1/24", "Pool": "10.123.0.0/24"}], "IPv6Data": []})
        .to_string()
    };
    let (st, v) = call(
        "NetworkDriver.CreateNetwork",
        &create(json!({"com.docker.network.bridge.name": "br9"})),
    );
    assert_eq!(st, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("unknown option com.docker.network.bridge.name"),
        "{v}"
    );
    assert_eq!(d.json(&["network", "ls"]), json!([]));
    let (st, v) = call(
        "NetworkDriver.CreateNetwork",
        &create(json!({"com.docker.network.driver.mtu": "1400"})),
    );
    assert_eq!((st, &v), (200, &json!({})));
    // A replay answers as the first call, and makes nothing twice.
    assert_eq!(call("NetworkDriver.CreateNetwork", &create(json!({}))).0, 200);
    let nets = d.json(&["network", "ls"]);
    assert_eq!(nets.as_array().unwrap().len(), 1, "{nets}");
    assert_eq!(nets[0]["id"], net_id.as_str());
    assert_eq!(nets[0]["name"], format!("docker-{}", &net_id[..12]));
    assert_eq!(nets[0]["engine"], "docker");
    assert_eq!(nets[0]["mtu"], 1400);
    assert!(d.ok(&["network", "ls"]).contains(&net_id[..12]));

    // An endpoint: Docker gives the address; we give the MAC.
    let (_, addr) = call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "", "Options": null}).to_string(),
    );
    assert_eq!(addr["Address"], "10.123.0.2/24");
    let ep_id = "e1".repeat(32);
    let ep_call = json!({"NetworkID": net_id, "EndpointID": ep_id,
        "Interface": {"Address": "10.123.0.2/24", "AddressIPv6": "", "MacAddress": ""},
        "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}]}})
    .to_string();
    let (st, v) = call("NetworkDriver.CreateEndpoint", &ep_call);
    assert_eq!(
        (st, &v),
        (200, &json!({"Interface": {"MacAddress": "02:42:0a:7b:00:02"}}))
    );
    assert_eq!(
        call("NetworkDriver.CreateEndpoint", &ep_call).1,
        v,
        "a replay answers the same"
    );
    // The API refuses to change what Docker owns.
    let e = d.fails(1, &["network", "rm", &format!("docker-{}", &net_id[..12])]);
    assert!(e.contains("belongs to docker"), "{e}");
    let e = d.fails(1, &["endpoint", "rm", &format!("docker-{}", &ep_id[..12])]);
    assert!(e.contains("belongs to docker"), "{e}");

    // Join answers the interface to move and the switch's gateway.
    let key = "/var/run/docker/netns/0123456789ab";
    let join = json!({"NetworkID": net_id, "EndpointID": ep_id, "SandboxKey": key, "Options": {}}).to_string();
    let (st, j) = call("NetworkDriver.Join", &join);
    assert_eq!(st, 200, "{j}");
    assert_eq!(j["Gateway"], "10.123.0.1");
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth");
    let src = j["InterfaceName"]["SrcName"].as_str().unwrap().to_owned();
    let link = net::link(&ns.path(), &src);
    assert_eq!(link.mtu, 1400, "the interface carries the network's MTU");
    // Published ports from the port map, with EndpointOperInfo reporting them.
    let program = json!({"NetworkID": net_id, "EndpointID": ep_id, "Options": {"com.docker.network.portmap": [
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 18080, "HostPortEnd": 18080},
        {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 18053, "HostPortEnd": 18053}]}})
    .to_string();
    assert_eq!(call("NetworkDriver.ProgramExternalConnectivity", &program).0, 200);
    assert_eq!(
        call("NetworkDriver.ProgramExternalConnectivity", &program).0,
        200,
        "a replay"
    );
    let ep_ref = json!({"NetworkID": net_id, "EndpointID": ep_id}).to_string();
    let (_, info) = call("NetworkDriver.EndpointOperInfo", &ep_ref);
    let ports = &info["Value"]["com.docker.network.portmap"];
    assert_eq!(ports.as_array().map(Vec::len), Some(2), "{info}");
    assert_eq!(ports[0]["HostPort"], 18080);
    assert_eq!(ports[1]["Proto"], 17);
    let eps = d.json(&["endpoint", "ls"]);
    assert_eq!(eps[0]["external_sandbox"], key);
    assert_eq!(eps[0]["ports"].as_array().map(Vec::len), Some(2));
    // Teardown as dockerd does it, then each step again (a replay): done.
    for _ in 0..2 {
        for step in ["RevokeExternalConnectivity", "Leave", "DeleteEndpoint"] {
            let (st, v) = call(&format!("NetworkDriver.{step}"), &ep_ref);
            assert_eq!((st, &v), (200, &json!({})), "{step}");
        }
    }
    assert_eq!(d.json(&["endpoint", "ls"]), json!([]));
    assert!(
        net::links(&ns.path()).iter().all(|l| !l.name.starts_with(&env.tag)),
        "links left"
    );
    for (path, body) in [
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool_id, "Address": "10.123.0.2"}),
        ),
        ("NetworkDriver.DeleteNetwork", json!({"NetworkID": net_id})),
        ("NetworkDriver.DeleteNetwork", json!({"NetworkID": net_id})),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool_id, "Address": "10.123.0.1"}),
        ),
        ("IpamDriver.ReleasePool", json!({"PoolID": pool_id})),
    ] {
        let (st, v) = call(path, &body.to_string());
        assert_eq!(st, 200, "{path}: {v}");
    }
    assert_eq!(d.json(&["network", "ls"]), json!([]));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["state"].get("docker_pools"), None, "no pool left: {state}");
    // After all that the daemon still serves both sockets.
    assert_eq!(call("Plugin.Activate", "").0, 200);
    assert_eq!(d.json(&["info"])["docker_plugin"], sock.display().to_string());
}
