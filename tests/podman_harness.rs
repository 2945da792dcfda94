//! The Podman harness itself (`tests/common/podman.rs`): a private Podman in
//! a test's namespace runs two busybox containers on a network of the CNI
//! `bridge` plugin, they ping each other and move bytes over TCP, and nothing
//! of theirs is left afterwards — no process, no mount, no directory, no
//! container namespace, no IPAM state, no link in our namespace. It needs
//! root, podman, the CNI plugins in `/usr/lib/cni` and busybox-static
//! (ignored otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::docker::{mounts_under, owned_processes};
use common::podman::{CNI_IPAM_DIR, CNI_RESULTS_DIR, Podman};
use common::{TestEnv, net};
use ipnet::Ipv4Net;

/// The test network's subnet (inside the test's namespace only).
const SUBNET: &str = "10.123.0.0/24";

/// Files of `dir` whose names start with `prefix`.
fn files_starting(dir: &str, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Starts container `name` (image `pxbb`, `sleep 1000`) on `network`.
fn sleeper(p: &Podman, network: &str, name: &str) {
    p.ok(&[
        "run",
        "-d",
        "--network",
        network,
        "--name",
        name,
        "pxbb",
        "sleep",
        "1000",
    ]);
}

#[test]
#[cfg_attr(not(px_podman), ignore = "needs root, podman and the CNI plugins")]
fn podman_containers_talk_over_a_cni_bridge_and_leave_nothing() {
    let env = TestEnv::new();
    let ns = net::TestNs::new(&env.netns("P"));
    let t = Instant::now();
    let (dir, network, sandboxes) = {
        let p = Podman::new(&env, &ns.name, &[Path::new("/usr/lib/cni")]);
        p.import_busybox("pxbb");
        let imported = t.elapsed();
        let network = p.add_bridge_network("br", SUBNET);
        assert_eq!(network, format!("{}br", env.tag));

        let unknown = p.network_name("none");
        let stderr = p.fails(&["run", "--rm", "--network", &unknown, "pxbb", "true"]);
        assert!(stderr.contains(&unknown), "unknown network: {stderr}");

        let t_run = Instant::now();
        for name in ["a", "b"] {
            sleeper(&p, &network, name);
        }
        let started = t_run.elapsed();

        // Podman's view and the kernel's agree: b's eth0 in its own namespace
        // holds the address Podman reports, from the subnet of the conflist.
        let subnet: Ipv4Net = SUBNET.parse().unwrap();
        let b_ip = p.container_ip("b", &network);
        assert!(subnet.contains(&b_ip), "{b_ip} not in {subnet}");
        let b_ns = p.container_netns("b").expect("b has a network namespace");
        assert!(b_ns.starts_with("/run/netns"), "{}", b_ns.display());
        let addrs = net::addrs(&b_ns, "eth0");
        assert!(addrs.iter().any(|a| a.addr() == b_ip), "eth0 of b: {addrs:?}");
        let a_ns = p.container_netns("a").expect("a has a network namespace");
        assert_ne!(a_ns, b_ns);
        // The bridge is in the test's namespace, not ours.
        let bridge = format!("{network}0");
        assert_eq!(net::link(&ns.path(), &bridge).name, bridge);
        assert!(
            env.leftover_links().is_empty(),
            "links here: {:?}",
            env.leftover_links()
        );

        let ping = p.ping("a", b_ip, 2);
        assert_eq!((ping.transmitted, ping.received), (2, 2), "{ping:?}");

        let transfer = p.tcp_transfer("a", "b", b_ip, 5001, 16);
        assert_eq!(transfer.received, transfer.sent, "{transfer:?}");
        eprintln!(
            "podman harness: import {imported:?}, two containers started in {started:?}; \
             a -> b ping avg {:?}, TCP {} MiB in {:?} = {:.0} Mbit/s",
            ping.avg_rtt.unwrap(),
            transfer.received >> 20,
            transfer.elapsed,
            transfer.mbit_per_s()
        );
        assert!(
            !files_starting(CNI_IPAM_DIR, &network).is_empty(),
            "no IPAM state for {network}"
        );
        assert_eq!(files_starting(CNI_RESULTS_DIR, &format!("{network}-")).len(), 2);
        let sandboxes: Vec<PathBuf> = vec![a_ns, b_ns];
        (p.dir().to_owned(), network, sandboxes)
    };
    eprintln!("podman harness: whole test {:?}", t.elapsed());

    // Dropped: nothing of it is left.
    let procs = owned_processes(&dir, None);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let mounts = mounts_under(&dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(!dir.exists(), "{} left", dir.display());
    for key in &sandboxes {
        assert!(!key.exists(), "{} left", key.display());
    }
    assert!(
        files_starting(CNI_IPAM_DIR, &network).is_empty(),
        "IPAM state of {network} left"
    );
    let results = files_starting(CNI_RESULTS_DIR, &format!("{network}-"));
    assert!(results.is_empty(), "cached results left: {results:?}");
    assert!(
        env.leftover_links().is_empty(),
        "links here: {:?}",
        env.leftover_links()
    );
}

/// Drop leaves nothing even when podman cannot run any more (the test's
/// namespace went first, so `nsenter` fails): it finds the containers in its
/// storage, their namespaces by those of its processes, and kills those. The
/// plugins come from a private directory (links to Podman's), the only one
/// Podman is told of.
#[test]
#[cfg_attr(not(px_podman), ignore = "needs root, podman and the CNI plugins")]
fn drop_cleans_up_when_podman_cannot_run() {
    let env = TestEnv::new();
    let ns = net::TestNs::new(&env.netns("F"));
    let plugins = env.state_dir.join("cni-bin");
    std::fs::create_dir_all(&plugins).unwrap();
    for plugin in ["bridge", "host-local", "portmap"] {
        std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(plugin), plugins.join(plugin)).unwrap();
    }
    let p = Podman::new(&env, &ns.name, &[&plugins]);
    p.import_busybox("pxbb");
    let network = p.add_bridge_network("br", SUBNET);
    sleeper(&p, &network, "a");
    // Not container_netns, which would tell drop.
    let sandbox = PathBuf::from(p.inspect("a", "{{.NetworkSettings.SandboxKey}}"));
    assert!(sandbox.exists(), "{}", sandbox.display());
    let id = p.inspect("a", "{{.Id}}");
    let dir = p.dir().to_owned();
    assert!(!owned_processes(&dir, None).is_empty(), "no conmon");

    drop(ns);
    p.fails(&["ps"]);
    drop(p);

    let procs = owned_processes(&dir, None);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert!(!dir.exists(), "{} left", dir.display());
    assert!(!sandbox.exists(), "{} left", sandbox.display());
    assert!(!Path::new("/run/runc").join(&id).exists(), "runc state of {id} left");
    let cgroup = format!("libpod_parent/libpod-{id}");
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(&cgroup))
        .filter(|c| c.exists())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(
        files_starting(CNI_IPAM_DIR, &network).is_empty(),
        "IPAM state of {network} left"
    );
    assert!(
        files_starting(CNI_RESULTS_DIR, &format!("{network}-")).is_empty(),
        "results left"
    );
}
