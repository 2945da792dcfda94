//! The dataplane on real veth pairs: two namespaces reach each other only
//! through the switch. Needs root; skips otherwise. Topology is made with `ip`
//! (this crate knows no namespaces) under a random tag and removed on drop.

use std::process::Command;
use std::time::Duration;

use plexus_switch::port::PacketPort;
use plexus_switch::{Dataplane, DataplaneConfig, DomainConfig, DropReason, MacAddr, PortConfig};

struct Topo {
    tag: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Topo {
    /// Namespaces `{tag}a`/`{tag}b` with eth0 10.201.X.1/.2 on veth pairs whose
    /// host ends `{tag}ha`/`{tag}hb` are up and unattached.
    fn new(subnet: u8) -> Topo {
        let tag = format!("s{:04x}", rand_tag());
        let t = Topo { tag: tag.clone() };
        for (side, host) in [("a", 1), ("b", 2)] {
            let ns = format!("{tag}{side}");
            let h = format!("{tag}h{side}");
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &h, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["link", "set", &h, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.201.{subnet}.{host}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        t
    }

    fn ns(&self, side: &str) -> String {
        format!("{}{side}", self.tag)
    }

    fn host(&self, side: &str) -> String {
        format!("{}h{side}", self.tag)
    }

    fn mac(&self, side: &str) -> MacAddr {
        let out = Command::new("ip")
            .args(["-n", &self.ns(side), "-br", "link", "show", "eth0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(from),
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                to,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for side in ["a", "b"] {
            let _ = Command::new("ip").args(["link", "del", &self.host(side)]).output();
            let _ = Command::new("ip").args(["netns", "del", &self.ns(side)]).output();
        }
    }
}

fn rand_tag() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    ((t.subsec_nanos() ^ std::process::id()) & 0xffff)
        .try_into()
        .unwrap_or(0)
}

fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

#[test]
fn two_namespaces_ping_through_the_switch() {
    if !root() {
        return;
    }
    let topo = Topo::new(1);
    assert!(!topo.ping("a", "10.201.1.2"), "reachable before the switch runs");
    // Forget the failed ARP resolution, or its pending probes swallow the next pings.
    ip(&["-n", &topo.ns("a"), "neigh", "flush", "all"]);
    let dp = Dataplane::start(DataplaneConfig::default()).unwrap();
    let d = dp.add_domain(DomainConfig::default()).unwrap();
    let mut ids = Vec::new();
    for side in ["a", "b"] {
        let port = PacketPort::open(&topo.host(side), true).unwrap();
        assert!(port.features().vnet_hdr && port.features().ignore_outgoing);
        let cfg = PortConfig {
            domain: d,
            name: side.into(),
            mtu: 1500,
            mac: Some(topo.mac(side)),
            offload: true,
        };
        ids.push(dp.add_port(Box::new(port), cfg).unwrap());
    }
    let ok = topo.ping("a", "10.201.1.2");
    assert!(ok, "{:#?}", dp.stats());
    assert!(topo.ping("b", "10.201.1.1"));
    let fdb = dp.fdb(d).unwrap();
    for (side, id) in ["a", "b"].iter().zip(&ids) {
        let mac = topo.mac(side);
        assert!(
            fdb.iter().any(|e| e.mac == mac && e.port == *id),
            "{side} missing in {fdb:?}"
        );
    }
    let stats = dp.stats().unwrap();
    assert_eq!(stats.len(), 2);
    for s in &stats {
        assert!(s.counters.rx_frames >= 3 && s.counters.tx_frames >= 3, "{s:?}");
    }
    // Removing a port cuts the path and forgets its MACs.
    dp.remove_port(ids[1]).unwrap();
    assert!(!topo.ping("a", "10.201.1.2"));
    assert!(dp.fdb(d).unwrap().iter().all(|e| e.port != ids[1]));
}

#[test]
fn spoofed_sources_are_dropped_and_counted() {
    if !root() {
        return;
    }
    let topo = Topo::new(2);
    let dp = Dataplane::start(DataplaneConfig {
        busy_poll: Duration::ZERO,
        ..DataplaneConfig::default()
    })
    .unwrap();
    let d = dp.add_domain(DomainConfig::default()).unwrap();
    // Port a expects a MAC its interface does not have: everything it sends is spoofed.
    let wrong: MacAddr = "02:00:00:00:00:99".parse().unwrap();
    let a = dp
        .add_port(
            Box::new(PacketPort::open(&topo.host("a"), true).unwrap()),
            PortConfig {
                domain: d,
                name: "a".into(),
                mtu: 1500,
                mac: Some(wrong),
                offload: true,
            },
        )
        .unwrap();
    dp.add_port(
        Box::new(PacketPort::open(&topo.host("b"), true).unwrap()),
        PortConfig {
            domain: d,
            name: "b".into(),
            mtu: 1500,
            mac: Some(topo.mac("b")),
            offload: true,
        },
    )
    .unwrap();
    assert!(!topo.ping("a", "10.201.2.2"));
    let st = dp.stats().unwrap().into_iter().find(|s| s.id == a).unwrap();
    assert!(st.counters.dropped(DropReason::Spoofed) >= 1, "{st:?}");
}
