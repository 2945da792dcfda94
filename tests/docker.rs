//! The Docker harness itself (`tests/common/docker.rs`): a private dockerd in
//! a test's namespace runs a busybox container, two run side by side, and
//! nothing of theirs is left afterwards — no process, no mount, no directory,
//! no link in our namespace. They need root, dockerd, a docker client and
//! busybox-static (ignored otherwise).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::docker::{Bridge, Dockerd, mounts_under, owned_processes};
use common::{TestEnv, net};
use plexus_sandbox::netlink::Netlink;

/// Links of our own network namespace that Docker could have made.
fn docker_links_here() -> Vec<String> {
    let mut nl = Netlink::open().expect("netlink");
    nl.links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.starts_with("docker") || n.starts_with("br-") || n.starts_with("veth"))
        .collect()
}

/// Starts container `pxsleep` (image `pxbb`, `sleep 600`) on `network`.
fn sleeper(d: &Dockerd, network: &str) {
    d.ok(&[
        "run",
        "-d",
        "--name",
        "pxsleep",
        "--network",
        network,
        "pxbb",
        "sleep",
        "600",
    ]);
}

/// What identifies an engine after it is dropped.
struct Trace {
    dir: PathBuf,
    mount_ns: Option<String>,
}

impl Trace {
    fn of(d: &Dockerd) -> Trace {
        assert!(d.mount_ns().is_some(), "dockerd's mount namespace");
        Trace {
            dir: d.dir().to_owned(),
            mount_ns: d.mount_ns().map(str::to_owned),
        }
    }

    /// Nothing of the engine is left.
    fn assert_gone(&self) {
        let procs = owned_processes(&self.dir, self.mount_ns.as_deref());
        assert!(procs.is_empty(), "processes left: {procs:?}");
        let mounts = mounts_under(&self.dir);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert!(!self.dir.exists(), "{} left", self.dir.display());
    }
}

#[test]
#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]
fn a_private_dockerd_runs_a_busybox_container() {
    let env = TestEnv::new();
    let ns = net::TestNs::new(&env.netns("D"));
    let links_before = docker_links_here();

    let t = Instant::now();
    let d = Dockerd::start(&env, &ns.name);
    let started = t.elapsed();
    let t = Instant::now();
    let extra: &[&str] = if cfg!(px_iperf3) { &["iperf3"] } else { &[] };
    d.import_busybox("pxbb", extra);
    let imported = t.elapsed();
    let t = Instant::now();
    let out = d.ok(&["run", "--rm", "--network", "none", "pxbb", "sh", "-c", "echo hello"]);
    let ran = t.elapsed();
    assert_eq!(out, "hello\n");
    eprintln!("dockerd answered in {started:?}, busybox imported in {imported:?}, `docker run --rm` took {ran:?}");

    let err = d.fails(&["inspect", "pxnothing"]);
    assert!(err.contains("No such object"), "{err}");
    if cfg!(px_iperf3) {
        // A dynamic binary with its libraries and loader.
        let out = d.ok(&["run", "--rm", "--network", "none", "pxbb", "iperf3", "--version"]);
        assert!(out.starts_with("iperf "), "{out}");
    }

    // A container on a network of its own: its SandboxKey, which dockerd
    // mounted in its own mount namespace, opens from here, as a network
    // plugin's must. Left running for the drop to remove.
    d.ok(&["network", "create", "pxnet"]);
    sleeper(&d, "pxnet");
    let key = d.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "pxsleep"]);
    let key = PathBuf::from(key.trim());
    assert!(key.starts_with(d.exec_root()), "{}", key.display());
    let names: Vec<String> = net::links(&key).into_iter().map(|l| l.name).collect();
    assert!(names.contains(&"eth0".to_owned()), "{}: {names:?}", key.display());
    let bridges: Vec<String> = net::links(&ns.path()).into_iter().map(|l| l.name).collect();
    assert!(bridges.iter().any(|n| n.starts_with("br-")), "{bridges:?}");

    let trace = Trace::of(&d);
    let t = Instant::now();
    drop(d);
    eprintln!("drop (a running container) took {:?}", t.elapsed());
    trace.assert_gone();
    let links_after = docker_links_here();
    let new: Vec<&String> = links_after.iter().filter(|l| !links_before.contains(l)).collect();
    assert!(new.is_empty(), "new links in our namespace: {new:?}");
}

/// Waits until `count` has reached `n` (every thread arrived), for at most a
/// minute: unlike a Barrier, a thread that panicked fails the others instead
/// of hanging them.
fn rendezvous(count: &AtomicUsize, n: usize) {
    count.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the other engine's thread did not arrive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]
fn two_private_dockerds_run_side_by_side() {
    let env = TestEnv::new();
    let links_before = docker_links_here();
    let (up, busy) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let start = Instant::now();
    let results: Vec<(String, Trace)> = std::thread::scope(|s| {
        let threads: Vec<_> = [Bridge::None, Bridge::Default]
            .into_iter()
            .enumerate()
            .map(|(i, bridge)| {
                let (env, up, busy) = (&env, &up, &busy);
                s.spawn(move || {
                    let t = Instant::now();
                    let ns = net::TestNs::new(&env.netns(&format!("D{i}")));
                    let d = Dockerd::start_with(env, &ns.name, bridge, &[]);
                    d.import_busybox("pxbb", &[]);
                    eprintln!("{bridge:?}: up with its image in {:?}", t.elapsed());
                    rendezvous(up, 2);
                    let id = d.ok(&["info", "--format", "{{.ID}}"]).trim().to_owned();
                    sleeper(&d, "none");
                    if bridge == Bridge::Default {
                        // docker0 lives in the engine's namespace, and a
                        // container on it reaches its gateway.
                        let names: Vec<String> = net::links(&ns.path()).into_iter().map(|l| l.name).collect();
                        assert!(names.contains(&"docker0".to_owned()), "{names:?}");
                        let out = d.ok(&["run", "--rm", "pxbb", "ping", "-c", "1", "-W", "5", "172.17.0.1"]);
                        assert!(out.contains("1 packets received"), "{out}");
                    }
                    rendezvous(busy, 2);
                    // Each engine sees its own container only.
                    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 1);
                    let trace = Trace::of(&d);
                    let t = Instant::now();
                    drop(d);
                    eprintln!("{bridge:?}: dropped in {:?}", t.elapsed());
                    (id, trace)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("engine thread")).collect()
    });
    eprintln!("two engines side by side: {:?}", start.elapsed());
    assert_ne!(results[0].0, results[1].0, "two engines, two IDs");
    for (_, trace) in &results {
        trace.assert_gone();
    }
    let links_after = docker_links_here();
    let new: Vec<&String> = links_after.iter().filter(|l| !links_before.contains(l)).collect();
    assert!(new.is_empty(), "new links in our namespace: {new:?}");
}
