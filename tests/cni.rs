//! `plexus-cni`, the CNI plugin: run directly with the environment and
//! stdin of each command (as a runtime does), and end to end under a real
//! Podman 4.3 with its CNI backend (tests/common/podman.rs).

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::net::TestNs;
use common::{Daemon, TestEnv, ns_path, peers};
use plexus_sandbox::netlink::Netlink;
use serde_json::{Value, json};

/// A directory with `plexus-cni` (a symlink to the test build of `plexus`),
/// removed on drop.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(env: &TestEnv) -> PluginDir {
        let dir = std::env::temp_dir().join(format!("plexus-cni-{}-{}", env.tag, rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(common::plexus_bin(), dir.join("plexus-cni")).unwrap();
        PluginDir(dir)
    }

    fn plugin(&self) -> PathBuf {
        self.0.join("plexus-cni")
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of the plugin gave: exit status and stdout as JSON (Null
/// when empty).
#[derive(Debug)]
struct Ran {
    ok: bool,
    out: Value,
}

/// Runs the plugin with `CNI_COMMAND=command`, the other `CNI_*` from
/// `vars`, and `config` on stdin, inside network namespace `ns`.
fn cni(plugin: &Path, ns: &str, command: &str, vars: &[(&str, &str)], config: &Value) -> Ran {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg(plugin)
        .env_remove("PLEXUS_SOCKET")
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", plugin.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    if !out.status.success() {
        eprintln!("plexus-cni {command}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ran {
        ok: out.status.success(),
        out: v,
    }
}

/// A CNI error object with `code`.
fn is_error(r: &Ran, code: u64) -> bool {
    !r.ok && r.out["code"].as_u64() == Some(code) && r.out["msg"].as_str().is_some_and(|m| !m.is_empty())
}

/// The network configuration of the tests' Plexus network.
fn netconf(socket: &Path, name: &str, subnet: Option<&str>) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "plexus-cni",
        "socket": socket,
    });
    if let Some(s) = subnet {
        c["subnet"] = json!(s);
    }
    c
}

/// `CNI_*` of an attachment.
fn vars<'a>(id: &'a str, netns: &'a str, ifname: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
    ]
}

/// Endpoints of the daemon whose engine is CNI.
fn cni_endpoints(d: &Daemon) -> Vec<Value> {
    d.json(&["endpoint", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["engine"] == "cni")
        .cloned()
        .collect()
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn the_plugin_speaks_the_spec() {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &[]);
    let dir = PluginDir::new(&env);
    let p = dir.plugin();
    let net = format!("{}cni", env.tag);
    let conf = netconf(&d.socket, &net, Some("10.71.0.0/24"));
    let c1 = TestNs::new(&env.netns("k1"));
    let c1_path = ns_path(&c1.name).display().to_string();
    let c2 = TestNs::new(&env.netns("k2"));
    let c2_path = ns_path(&c2.name).display().to_string();

    // VERSION needs nothing else.
    let v = cni(&p, &host.name, "VERSION", &[], &json!({}));
    assert!(v.ok, "{v:?}");
    let versions: Vec<&str> = v.out["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(versions.contains(&"1.0.0") && versions.contains(&"1.1.0"), "{v:?}");

    // ADD creates the network from the subnet and attaches c1.
    let r = cni(&p, &host.name, "ADD", &vars("aaaa1111", &c1_path, "eth0"), &conf);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.out["cniVersion"], "1.0.0");
    assert_eq!(r.out["ips"][0]["address"], "10.71.0.2/24", "{}", r.out);
    assert_eq!(r.out["ips"][0]["gateway"], "10.71.0.1");
    assert_eq!(r.out["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.71.0.1"}));
    assert_eq!(r.out["dns"]["nameservers"][0], "10.71.0.1");
    let iface = &r.out["interfaces"][usize::try_from(r.out["ips"][0]["interface"].as_u64().unwrap()).unwrap()];
    assert_eq!(
        (iface["name"].as_str(), iface["sandbox"].as_str()),
        (Some("eth0"), Some(c1_path.as_str()))
    );
    // The interface really is in c1, with that MAC and address.
    let mut nl = Netlink::open_in(&ns_path(&c1.name)).unwrap();
    let link = nl.link("eth0").unwrap();
    let mac = link.mac.map(|m| plexus_switch::MacAddr(m).to_string());
    assert_eq!(mac.as_deref(), iface["mac"].as_str());
    assert!(
        nl.addresses(link.index)
            .unwrap()
            .contains(&"10.71.0.2/24".parse().unwrap())
    );
    // The network's gateway answers it: the switch carries it.
    assert!(peers::ping(&ns_path(&c1.name), Ipv4Addr::new(10, 71, 0, 1), 1));
    // The container's name (K8S_POD_NAME) is a DNS name of the network.
    let names = d.json(&["dns", &net]);
    assert!(names.as_array().unwrap().iter().any(|n| n["name"] == "web"), "{names}");

    // A second container, with a published port; the two talk.
    let mut with_ports = conf.clone();
    with_ports["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]});
    let r2 = cni(&p, &host.name, "ADD", &vars("bbbb2222", &c2_path, "eth0"), &with_ports);
    assert!(r2.ok, "{r2:?}");
    assert!(peers::ping(&ns_path(&c1.name), Ipv4Addr::new(10, 71, 0, 3), 1));
    let eps = cni_endpoints(&d);
    assert_eq!(eps.len(), 2, "{eps:?}");
    assert!(
        eps.iter().any(|e| e["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|b| b["host_port"] == 18081))),
        "{eps:?}"
    );
    // Engine-owned: the CLI refuses to remove it.
    let name = eps[0]["name"].as_str().unwrap();
    let e = d.fails(1, &["endpoint", "rm", name]);
    assert!(e.contains("belongs to cni"), "{e}");

    // CHECK: as ADD left it; then a missing route is found.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = r.out.clone();
    let ok = cni(
        &p,
        &host.name,
        "CHECK",
        &vars("aaaa1111", &c1_path, "eth0"),
        &check_conf,
    );
    assert!(ok.ok, "{ok:?}");
    let status = Command::new("ip")
        .args(["-n", &c1.name, "route", "del", "default"])
        .status()
        .unwrap();
    assert!(status.success());
    let bad = cni(
        &p,
        &host.name,
        "CHECK",
        &vars("aaaa1111", &c1_path, "eth0"),
        &check_conf,
    );
    assert!(is_error(&bad, 101), "{bad:?}");
    assert!(bad.out["msg"].as_str().unwrap().contains("default route"), "{bad:?}");
    let unknown = cni(
        &p,
        &host.name,
        "CHECK",
        &vars("cccc3333", &c1_path, "eth0"),
        &check_conf,
    );
    assert!(is_error(&unknown, 3), "{unknown:?}");

    // Bad input: typed errors, nothing made.
    let mut wrong_type = conf.clone();
    wrong_type["type"] = json!("bridge");
    assert!(is_error(
        &cni(&p, &host.name, "ADD", &vars("dd", &c1_path, "eth1"), &wrong_type),
        7
    ));
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.3.1");
    assert!(is_error(
        &cni(&p, &host.name, "ADD", &vars("dd", &c1_path, "eth1"), &old),
        1
    ));
    let r = cni(
        &p,
        &host.name,
        "ADD",
        &vars("dd", &c1_path, "eth1"),
        &json!("not a config"),
    );
    assert!(is_error(&r, 6), "{r:?}");
    let r = cni(&p, &host.name, "ADD", &vars("", &c1_path, "eth1"), &conf);
    assert!(is_error(&r, 4), "{r:?}");
    let r = cni(
        &p,
        &host.name,
        "ADD",
        &vars("dd", "/run/netns/nope-not-there", "eth1"),
        &conf,
    );
    assert!(is_error(&r, 3), "{r:?}");
    let mut other_subnet = conf.clone();
    other_subnet["subnet"] = json!("10.72.0.0/24");
    let r = cni(&p, &host.name, "ADD", &vars("dd", &c1_path, "eth1"), &other_subnet);
    assert!(
        is_error(&r, 7) && r.out["msg"].as_str().unwrap().contains("10.71.0.0/24"),
        "{r:?}"
    );
    let missing = netconf(&d.socket, &format!("{}none", env.tag), None);
    let r = cni(&p, &host.name, "ADD", &vars("dd", &c1_path, "eth1"), &missing);
    assert!(
        is_error(&r, 7) && r.out["msg"].as_str().unwrap().contains("plexus network create"),
        "{r:?}"
    );
    // A port that is taken: the failed ADD leaves nothing behind.
    let mut taken = conf.clone();
    taken["runtimeConfig"] = json!({"portMappings": [{"hostPort": 18081, "containerPort": 80}]});
    let r = cni(&p, &host.name, "ADD", &vars("eeee5555", &c1_path, "eth1"), &taken);
    assert!(is_error(&r, 100), "{r:?}");
    assert_eq!(cni_endpoints(&d).len(), 2);
    assert!(
        Netlink::open_in(&ns_path(&c1.name)).unwrap().link("eth1").is_err(),
        "eth1 was left in c1"
    );

    // STATUS: up, and not available for a network ADD could not make.
    assert!(cni(&p, &host.name, "STATUS", &[], &conf).ok);
    assert!(is_error(&cni(&p, &host.name, "STATUS", &[], &missing), 50));

    // GC keeps the valid attachments only.
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "aaaa1111", "ifname": "eth0"}]);
    let r = cni(&p, &host.name, "GC", &[], &gc);
    assert!(r.ok, "{r:?}");
    let eps = cni_endpoints(&d);
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert!(Netlink::open_in(&ns_path(&c2.name)).unwrap().link("eth0").is_err());
    // Its published port went with it: the host port is free again.
    let free =
        plexus_sandbox::netns::run_in(&ns_path(&host.name), || std::net::TcpListener::bind("0.0.0.0:18081")).unwrap();
    assert!(free.is_ok(), "port 18081 still held after GC: {free:?}");

    // DEL, twice, and after the namespace is gone: all succeed.
    let del = cni(&p, &host.name, "DEL", &vars("aaaa1111", &c1_path, "eth0"), &conf);
    assert!(del.ok && del.out.is_null(), "{del:?}");
    assert!(cni(&p, &host.name, "DEL", &vars("aaaa1111", &c1_path, "eth0"), &conf).ok);
    assert!(cni_endpoints(&d).is_empty());
    let r = cni(&p, &host.name, "ADD", &vars("ffff6666", &c2_path, "eth0"), &conf);
    assert!(r.ok, "{r:?}");
    drop(c2);
    let del = cni(&p, &host.name, "DEL", &vars("ffff6666", &c2_path, "eth0"), &conf);
    assert!(del.ok, "{del:?}");
    assert!(cni_endpoints(&d).is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_daemon_that_is_down_is_try_again_later() {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let dir = PluginDir::new(&env);
    let c1 = TestNs::new(&env.netns("k1"));
    let c1_path = ns_path(&c1.name).display().to_string();
    let socket = env.state_dir.join("nobody-here.sock");
    let conf = netconf(&socket, "n", Some("10.73.0.0/24"));
    let r = cni(&dir.plugin(), &host.name, "ADD", &vars("aaaa", &c1_path, "eth0"), &conf);
    assert!(is_error(&r, 11), "{r:?}");
    let msg = r.out["msg"].as_str().unwrap();
    assert!(
        msg.contains("plexus daemon") && msg.contains("nobody-here.sock"),
        "{msg}"
    );
    let r = cni(&dir.plugin(), &host.name, "STATUS", &[], &conf);
    assert!(is_error(&r, 50), "{r:?}");
    // Without a command: not run by a runtime.
    let r = cni(&dir.plugin(), &host.name, "", &[], &conf);
    assert!(is_error(&r, 4), "{r:?}");
}

/// The conflist of a Plexus network for Podman: `plexus-cni` with the
/// `portMappings` capability.
fn podman_conflist(name: &str, socket: &Path, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "plexus-cni",
            "subnet": subnet,
            "socket": socket,
            "capabilities": { "portMappings": true },
        }],
    })
}

#[test]
#[cfg_attr(not(px_podman), ignore = "needs root, podman and busybox-static")]
fn podman_containers_use_the_plexus_switch() {
    use common::podman::Podman;
    let env = TestEnv::new();
    let ho = common::net::HostOutside::new(&env, 75, false);
    let mut d = Daemon::start_in(&env, Some(&ho.host), &[]);
    let dir = PluginDir::new(&env);
    let p = Podman::new(&env, &ho.host, &[&dir.0]);
    p.import_busybox("pxbb");
    let net = p.add_network(&podman_conflist(&format!("{}px", env.tag), &d.socket, "10.76.0.0/24"));
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--network", &net, "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["pxbb", "sleep", "1000"]);
        p.ok(&args);
    };
    run("a", &[]);
    run("b", &["-p", "18082:80"]);
    let (a_ip, b_ip) = (p.container_ip("a", &net), p.container_ip("b", &net));
    assert_eq!(
        (a_ip, b_ip),
        (Ipv4Addr::new(10, 76, 0, 2), Ipv4Addr::new(10, 76, 0, 3)),
        "the addresses Podman reports are Plexus's"
    );
    // Through the switch: ping, TCP, and the MAC table learns both.
    let ping = p.ping("a", b_ip, 2);
    assert_eq!(ping.received, 2, "{ping:?}");
    let t = p.tcp_transfer("a", "b", b_ip, 5001, 16);
    assert_eq!(t.received, t.sent, "{t:?}");
    let fdb = d.json(&["fdb", &net]);
    let owners: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["endpoint"].as_str())
        .collect();
    assert_eq!(owners.len(), 2, "{fdb}");
    let stats = d.json(&["stats"]);
    let tx: u64 = stats
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["rx_bytes"].as_u64())
        .sum();
    assert!(tx > 16 << 20, "the switch carried {tx} bytes of a 16 MiB transfer");
    // The gateway's DNS knows the containers by their Podman names.
    let out = p.exec("a", &["nslookup", "b", "10.76.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.76.0.3"), "nslookup b: {text}");
    // Out through NAT to the "outside" namespace.
    let outside: Ipv4Addr = ho.outside_ip.parse().unwrap();
    let ping = p.ping("a", outside, 1);
    assert_eq!(ping.received, 1, "{ping:?}");
    // The published port answers an outside client, which b sees by its own
    // address (busybox httpd gives a CGI script REMOTE_ADDR).
    let cgi = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
               > /www/cgi-bin/addr && chmod +x /www/cgi-bin/addr && httpd -p 80 -h /www";
    p.ok(&["exec", "b", "sh", "-c", cgi]);
    p.wait_listening("b", 80);
    let url = format!("http://{}:18082/cgi-bin/addr", ho.host_ip);
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ho.outside))
        .args([
            common::docker::busybox_path().unwrap().to_str().unwrap(),
            "wget",
            "-qO-",
            &url,
        ])
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    // (httpd listens on both families: an IPv4 client shows v4-mapped.)
    let client = seen.trim().trim_start_matches("[::ffff:").trim_end_matches(']');
    assert_eq!(client, ho.outside_ip, "b saw the client as {seen:?} ({out:?})");
    // podman rm -f: the endpoint and its published port go.
    assert_eq!(cni_endpoints(&d).len(), 2);
    p.ok(&["rm", "-f", "-t", "0", "b"]);
    let eps = cni_endpoints(&d);
    assert_eq!(eps.len(), 1, "{eps:?}");
    let free =
        plexus_sandbox::netns::run_in(&ns_path(&ho.host), || std::net::TcpListener::bind("0.0.0.0:18082")).unwrap();
    assert!(free.is_ok(), "port 18082 still held: {free:?}");
    // A daemon that is down: Podman says so.
    d.stop();
    let err = p.fails(&["run", "--rm", "--network", &net, "pxbb", "true"]);
    assert!(
        err.contains("Plexus daemon cannot be reached") && err.contains("plexus daemon` running"),
        "{err}"
    );
    d.restart();
    p.ok(&["rm", "-f", "-t", "0", "a"]);
    assert!(cni_endpoints(&d).is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn concurrent_adds_get_their_own_addresses() {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &[]);
    let dir = PluginDir::new(&env);
    let conf = netconf(&d.socket, &format!("{}par", env.tag), Some("10.79.0.0/24"));
    let sandboxes: Vec<TestNs> = (0..4).map(|i| TestNs::new(&env.netns(&format!("p{i}")))).collect();
    // Four runtimes' ADDs at once, on a network the first of them makes.
    let results: Vec<Ran> = std::thread::scope(|s| {
        let handles: Vec<_> = sandboxes
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (p, host, conf) = (dir.plugin(), &host.name, &conf);
                s.spawn(move || {
                    let path = ns_path(&ns.name).display().to_string();
                    let id = format!("c{i}");
                    cni(&p, host, "ADD", &vars(&id, &path, "eth0"), conf)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(r.ok, "{r:?}");
    }
    let mut addrs: Vec<&str> = results
        .iter()
        .map(|r| r.out["ips"][0]["address"].as_str().unwrap())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    assert_eq!(cni_endpoints(&d).len(), 4);
}
