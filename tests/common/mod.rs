//! Shared helpers of the end-to-end tests: unique names, cleanup, the daemon,
//! and ([`net`], [`peers`]) namespaces and the clients and servers that talk
//! through them — in-process, so no `ping`, `python3` or `ip` is needed — and
//! ([`docker`]) a private Docker engine in a test's namespace.
//!
//! Every test gets a [`TestEnv`]: a random tag that prefixes its namespaces
//! (`{tag}-NAME`) and interfaces (`{tag}h…`, `{tag}c…`), and a private state
//! directory. Dropping the env deletes whatever carries its tag, even after a
//! failed assertion, so tests run in parallel and leave nothing behind.
//!
//! Tests that need root say so with
//! `#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]`: the
//! build script (`build.rs`) probes the machine, so a test that cannot run
//! here is counted as ignored, never as passed.
#![allow(dead_code)]

pub mod chromium;
pub mod dns;
pub mod docker;
pub mod frames;
pub mod net;
pub mod peers;
pub mod podman;

use std::path::{Path, PathBuf};
use std::process::Command;

use plexus::Config;
use plexus_sandbox::{netlink::Netlink, netns};

/// One test's names and state directory.
#[derive(Debug)]
pub struct TestEnv {
    /// Random tag, 5 characters, starting with 't'.
    pub tag: String,
    /// Private state directory.
    pub state_dir: PathBuf,
}

impl TestEnv {
    /// A fresh tag and an empty state directory.
    pub fn new() -> TestEnv {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root, and the build that probed the machine ran as root: run the tests as root, \
             or `touch build.rs` to probe again"
        );
        let tag = format!("t{:04x}", rand::random::<u16>());
        let state_dir = std::env::temp_dir().join(format!("plexus-test-{tag}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        TestEnv { tag, state_dir }
    }

    /// A controller configuration confined to this env.
    pub fn config(&self) -> Config {
        Config {
            state_dir: self.state_dir.clone(),
            netns_prefix: format!("{}-", self.tag),
            ifname_prefix: self.tag.clone(),
            ..Config::default()
        }
    }

    /// The environment variables that confine the `plexus` binary or an example.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PLEXUS_STATE_DIR", self.state_dir.display().to_string()),
            ("PLEXUS_NETNS_PREFIX", format!("{}-", self.tag)),
            ("PLEXUS_IFNAME_PREFIX", self.tag.clone()),
        ]
    }

    /// The namespace name of sandbox `name`.
    pub fn netns(&self, name: &str) -> String {
        format!("{}-{}", self.tag, name)
    }

    /// Names of this env's namespaces that exist now.
    pub fn leftover_netns(&self) -> Vec<String> {
        let prefix = format!("{}-", self.tag);
        std::fs::read_dir(netns::NETNS_DIR)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names of this env's interfaces in the current namespace.
    pub fn leftover_links(&self) -> Vec<String> {
        Netlink::open()
            .and_then(|mut nl| nl.links())
            .map(|ls| {
                ls.into_iter()
                    .map(|l| l.name)
                    .filter(|n| n.starts_with(&self.tag))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for ns in self.leftover_netns() {
            let _ = netns::delete(&ns);
        }
        if let Ok(mut nl) = Netlink::open()
            && let Ok(links) = nl.links()
        {
            for l in links.into_iter().filter(|l| l.name.starts_with(&self.tag)) {
                let _ = nl.delete_link(l.index);
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A process a test started (a server in a namespace), killed on drop.
#[derive(Debug)]
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/debug` (or `release`): where cargo put this test's binaries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/cnm-HASH → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/*/deps")
        .to_owned()
}

/// Runs `cmd` and returns stdout; panics with stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The path of the named network namespace `name`.
pub fn ns_path(name: &str) -> PathBuf {
    Path::new(netns::NETNS_DIR).join(name)
}

// ---------------------------------------------------------------------------
// Raw frames into a sandbox's port (tests/switch.rs, tests/cli.rs).

use plexus_switch::io::{PacketPort, Port};

/// Opens a raw sender on `eth0` of a sandbox (the socket stays bound to that
/// namespace after the thread that made it returns).
pub fn injector(env: &TestEnv, sandbox: &str) -> PacketPort {
    let key = Path::new(netns::NETNS_DIR).join(env.netns(sandbox));
    netns::run_in(&key, || PacketPort::open("eth0", false))
        .unwrap()
        .unwrap()
}

/// Sends `frames` in bursts of 32; returns how many the socket took (frames
/// the kernel refuses outright are skipped). Paced a little (a pause every 256
/// frames), so that a switch sharing two cores with parallel tests can keep up
/// instead of losing most of a burst to a full receive ring.
pub fn send_all(port: &mut PacketPort, frames: &[Vec<u8>]) -> usize {
    let mut sent = 0;
    for (i, chunk) in frames.chunks(32).enumerate() {
        if i % 8 == 7 {
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        // The socket may push back for a moment; retry what it did not take.
        let mut off = 0;
        let start = std::time::Instant::now();
        while off < slices.len() && start.elapsed() < std::time::Duration::from_secs(2) {
            let r = port.send(&slices[off..]);
            off += r.sent + r.failed;
            sent += r.sent;
        }
    }
    sent
}

/// `len` random bytes addressed to `dst`.
pub fn random_frame(rng: &mut impl rand::Rng, dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    rng.fill(&mut f[..]);
    f[..6].copy_from_slice(&dst);
    f
}

// ---------------------------------------------------------------------------
// The `plexus` binary and its daemon (tests/cli.rs).

/// `target/debug/plexus` (or `$PLEXUS_BIN`). It belongs to the `plexus-tools`
/// package, which `cargo test -p plexus` does not build (`cargo test
/// --workspace` does): panics with the command to run if it is missing or, when
/// first asked for, older than the sources.
pub fn plexus_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_plexus_bin).clone()
}

fn find_plexus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PLEXUS_BIN") {
        return PathBuf::from(p);
    }
    let bin = target_dir().join("plexus");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} not built: run `cargo build -p plexus-tools` first", bin.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = ["src", "tools/src", "drivers/src", "switch/src", "sandbox/src"]
        .iter()
        .flat_map(|d| rs_files(&root.join(d)))
        .filter_map(|f| Some((std::fs::metadata(&f).ok()?.modified().ok()?, f)))
        .max();
    if let Some((t, f)) = newest {
        assert!(
            t <= built,
            "{} is older than {}: run `cargo build -p plexus-tools` first",
            bin.display(),
            f.display()
        );
    }
    bin
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rs_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// A `plexus daemon` on the env's state directory and a private socket. Drop
/// sends SIGTERM to its pid and waits (SIGKILL after 10 s); after a failed
/// assertion it prints the daemon's log.
#[derive(Debug)]
pub struct Daemon {
    child: Option<std::process::Child>,
    state_dir: PathBuf,
    envs: Vec<(&'static str, String)>,
    /// Holds the socket and the log.
    run_dir: PathBuf,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The network namespace the daemon runs in (the "host" of a hermetic
    /// test), and extra daemon arguments.
    netns: Option<String>,
    extra: Vec<String>,
    /// The open-file limit (soft, hard) it starts with, if set.
    nofile: Option<(u64, u64)>,
}

impl Daemon {
    /// Starts a daemon for `env` and waits until it answers `plexus info`.
    pub fn start(env: &TestEnv) -> Daemon {
        Daemon::start_in(env, None, &[])
    }

    /// Starts a daemon inside the named network namespace `netns` (only the
    /// network namespace: it shares our mount namespace, so its sandboxes stay
    /// visible), with `extra` daemon arguments.
    pub fn start_in(env: &TestEnv, netns: Option<&str>, extra: &[&str]) -> Daemon {
        Daemon::start_limited(env, netns, extra, None)
    }

    /// [`Daemon::start_in`] with the open-file limit (soft, hard) the
    /// daemon starts with (a stock host's 1024/4096, say).
    pub fn start_limited(env: &TestEnv, netns: Option<&str>, extra: &[&str], nofile: Option<(u64, u64)>) -> Daemon {
        let run_dir = std::env::temp_dir().join(format!("plexus-run-{}-{}", env.tag, rand::random::<u32>()));
        std::fs::create_dir_all(&run_dir).expect("create run dir");
        let mut d = Daemon {
            child: None,
            state_dir: env.state_dir.clone(),
            envs: env.envs(),
            socket: run_dir.join("s.sock"),
            run_dir,
            netns: netns.map(str::to_owned),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            nofile,
        };
        d.spawn();
        d
    }

    /// Kills the daemon with SIGKILL (no cleanup of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same state, socket and arguments.
    pub fn respawn(&mut self) {
        self.spawn();
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("daemon.log"))
            .expect("daemon log");
        let mut cmd = Command::new(plexus_bin());
        if let Some(ns) = &self.netns {
            net::in_netns(&mut cmd, &ns_path(ns));
        }
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook only calls setrlimit on plain values.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd
            .arg("daemon")
            .args(&self.extra)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--socket")
            .arg(&self.socket)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("PLEXUS_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plexus daemon");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if self.plexus(&["info"]).status.success() {
                return;
            }
            if let Ok(Some(status)) = self.child.as_mut().expect("spawned").try_wait() {
                self.child = None;
                panic!("plexus daemon exited ({status}) before answering:\n{}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "plexus daemon did not answer within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops the daemon (SIGTERM to its pid) and waits for it; panics if it does
    /// not exit cleanly.
    pub fn stop(&mut self) {
        if let Some(status) = self.terminate() {
            assert!(status.success(), "plexus daemon exited with {status}:\n{}", self.log());
        }
    }

    /// Stops the daemon and starts it again on the same state directory and socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    /// `plexus ARGS` against this daemon.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(plexus_bin());
        c.args(args).env("PLEXUS_SOCKET", &self.socket);
        c
    }

    /// Runs `plexus ARGS`, whatever its outcome.
    pub fn plexus(&self, args: &[&str]) -> std::process::Output {
        let mut c = self.cmd(args);
        c.output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"))
    }

    /// Runs `plexus ARGS` and returns its stdout; panics with its stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.cmd(args))
    }

    /// Runs `plexus ARGS --format json` and parses its stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("plexus {all:?}: not JSON ({e}): {out}"))
    }

    /// An endpoint's address without its prefix (`endpoint inspect`).
    pub fn endpoint_ip(&self, endpoint: &str) -> String {
        let e = self.json(&["endpoint", "inspect", endpoint]);
        let addr = e["address"]
            .as_str()
            .unwrap_or_else(|| panic!("{endpoint} has no address: {e}"));
        addr.split('/').next().unwrap_or_default().to_owned()
    }

    /// Runs `plexus ARGS`, expects it to fail with `code` and one line
    /// `plexus: …` on stderr and nothing on stdout; returns that line.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        expect_failure(self.plexus(args), code, args)
    }
}

/// Checks a failed `plexus` run: exit `code`, nothing on stdout, one line
/// `plexus: …` on stderr; returns that line.
pub fn expect_failure(out: std::process::Output, code: i32, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "plexus {args:?}: {stdout}{stderr}");
    assert!(stdout.is_empty(), "plexus {args:?} printed on failure: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "plexus {args:?}: not one line: {stderr:?}");
    assert!(stderr.starts_with("plexus: "), "plexus {args:?}: {stderr:?}");
    stderr.trim_end().to_owned()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let status = self.terminate();
        if std::thread::panicking() {
            eprintln!("--- plexus daemon log ({status:?}) ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
