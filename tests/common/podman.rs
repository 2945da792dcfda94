//! A private Podman per test: [`Podman`] runs `podman` (4.x, CNI backend)
//! inside a network namespace the test made, with its storage, configuration,
//! CNI network directory, locks and events in a directory of its own, and an
//! image built from the host's static `busybox` ([`Podman::import_busybox`]),
//! so no registry is needed. The CNI plugins are those of the directories the
//! test names (Podman's own in `/usr/lib/cni`, or a plugin under test), and the
//! networks those of the `.conflist` files it writes to
//! [`Podman::config_dir`]. Tests that use it say
//! `#[cfg_attr(not(px_podman), ignore = "needs root, podman and the CNI plugins")]`.
//!
//! How it runs. Podman has no daemon: every command is `nsenter
//! --net=/run/netns/NS podman --root DIR/root --runroot DIR/run
//! --storage-driver vfs ARGS` with `CONTAINERS_CONF=DIR/containers.conf`.
//! That file selects the CNI backend, the test's plugin directories (and no
//! other), the networks of `DIR/cni.d`, cgroupfs, events and locks in files
//! under `DIR` and `default_ulimits` no higher than the hard limits (this VM
//! has no `CAP_SYS_RESOURCE` in the bounding set, and runc fails with `error
//! setting rlimit type 7` when asked to raise them), and no port
//! reservation (`enable_port_reservation = false`: Podman would hold each
//! published host port itself, where `plexus-cni`'s published port must
//! listen; the kernel `portmap` plugin needs no reservation either), and runc
//! as the runtime (`runtime = "runc"`: where crun is installed too, Podman
//! prefers it, and crun refuses a host whose cgroups are mounted in hybrid
//! mode, v1 controllers beside a v2 `unified`, as on this VM: `cgroups in
//! hybrid mode not supported`). A container's `conmon`
//! outlives the command that started it and inherits its network namespace and
//! environment, so its exit command (`podman container cleanup`, which runs
//! the CNI `DEL` when a container stops by itself) reads the same
//! configuration. `nsenter --net`, not `ip netns exec`: the latter's private
//! mount namespace makes later commands fail with `unknown FS magic on
//! "/run/netns/netns-…"`.
//!
//! Each container gets a network namespace of Podman's making,
//! `/run/netns/netns-<uuid>` ([`Podman::container_netns`]): the `CNI_NETNS` a
//! plugin sees. The host ends of the CNI bridge plugin's veths, its bridge and
//! any iptables rules a plugin adds land in the test's namespace.
//!
//! What Podman writes outside its directory (checked on 4.3.1), and what drop
//! does about it:
//! - `/run/netns/netns-<uuid>`: `podman rm` removes them; drop unmounts and
//!   removes those of its containers that are left.
//! - `/var/lib/cni/networks/<network>` (host-local IPAM's leases, lock and
//!   `last_reserved_ip.0`, which stay after the last container) and
//!   `/var/lib/cni/results/<network>-<id>-<ifname>` (libcni's cache of `ADD`
//!   results): drop removes them for the networks in its `cni.d` whose name
//!   starts with the env's tag (name networks with [`Podman::network_name`]),
//!   and the cached results of its containers.
//! - `/run/runc/<id>` (`/run/crun/<id>` with crun): the runtime removes a
//!   container's state; drop removes what is left of its containers'.
//! - `/var/lib/containers/cache/blob-info-cache-v1.boltdb`, which `podman
//!   import` writes and no option moves, and the parent directories of all of
//!   the above: shared by every Podman on the machine. When the last harness
//!   of the test process is dropped, those that did not exist when the first
//!   one started are removed (directories only if empty).
//! - cgroups `/sys/fs/cgroup/*/libpod_parent/{conmon,libpod-<id>}` in the
//!   host's hierarchies: runc removes a container's, and drop those of its
//!   containers runc did not (it was killed); `libpod_parent/conmon` stays
//!   (shared, like Docker's parent).
//! - Nothing in `/dev/shm` (`lock_type = "file"`: the locks are in
//!   `DIR/tmp/locks`, not in the shared `/dev/shm/libpod_lock`),
//!   `/var/lib/containers/storage`, `/run/containers`, `/var/tmp` or
//!   `/etc/cni/net.d`.
//!
//! Nothing is cached between tests: each harness imports its own image
//! (about 0.3 s) and a container starts in under a second on two cores.
#![allow(dead_code)]

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_sandbox::netns::NETNS_DIR;

use super::docker::{APPLETS, busybox_path, find_program, mounts_under, owned_processes};
use super::{TestEnv, ns_path, run_ok};

/// How long one podman command may run before it is killed (a plugin that
/// hangs fails the test instead of stalling it).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Where host-local IPAM keeps its leases unless a conflist says `dataDir`.
pub const CNI_IPAM_DIR: &str = "/var/lib/cni/networks";

/// Where libcni caches the result of each `ADD` (`<network>-<id>-<ifname>`).
pub const CNI_RESULTS_DIR: &str = "/var/lib/cni/results";

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Paths Podman, runc and the CNI plugins create on first use outside a
/// harness's directory, shared by every Podman on the machine: each file
/// before its directory, each directory before its parent (the order they are
/// removed in).
const SHARED_PATHS: &[&str] = &[
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    CNI_IPAM_DIR,
    CNI_RESULTS_DIR,
    "/var/lib/cni",
    "/run/runc",
    "/run/crun",
];

/// The harnesses alive in this process, and which of [`SHARED_PATHS`] were
/// absent when the first of them started.
static SHARED: Mutex<(usize, Vec<&'static str>)> = Mutex::new((0, Vec::new()));

/// A private Podman in a network namespace of the test; see the module
/// documentation. Drop it before that namespace (declare it after the
/// `TestNs`): drop removes every container (`podman rm -af -t 0`, which runs
/// the plugins' `DEL`), kills whatever of its own is left running (processes
/// naming its directory, such as `conmon`, and their descendants), removes
/// what its containers and networks left in `/run/netns`, `/var/lib/cni`, the
/// runtime's state and the cgroups, unmounts what is left under its directory
/// and removes it. After a failed assertion it first prints `podman ps -a`.
#[derive(Debug)]
pub struct Podman {
    /// Everything of this Podman: `containers.conf`, `storage.conf`, `root/`,
    /// `run/`, `tmp/` (locks, exits, conmon's sockets), `cni.d/`, `events.log`.
    dir: PathBuf,
    /// The network namespace it runs in (a name under `/run/netns`).
    netns: String,
    /// The env's tag: the prefix of its networks' names.
    tag: String,
    /// Network namespaces of its containers seen so far (`SandboxKey`).
    sandboxes: Mutex<Vec<PathBuf>>,
}

impl Podman {
    /// A Podman that runs in the named network namespace `netns`
    /// (`/run/netns/NAME`, which the test made) and looks for CNI plugins in
    /// `plugin_dirs` only. Nothing runs until the first command.
    pub fn new(env: &TestEnv, netns: &str, plugin_dirs: &[&Path]) -> Podman {
        let key = ns_path(netns);
        assert!(key.exists(), "no network namespace {}", key.display());
        {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if shared.0 == 0 {
                shared.1 = SHARED_PATHS
                    .iter()
                    .copied()
                    .filter(|p| !Path::new(p).exists())
                    .collect();
            }
            shared.0 += 1;
        }
        let p = Podman {
            dir: std::env::temp_dir().join(format!("pxp-{}-{:08x}", env.tag, rand::random::<u32>())),
            netns: netns.to_owned(),
            tag: env.tag.clone(),
            sandboxes: Mutex::new(Vec::new()),
        };
        for sub in ["root", "run", "tmp", "cni.d"] {
            let d = p.dir.join(sub);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        // TOML's basic strings and arrays of them read JSON's.
        let toml = |s: &Path| serde_json::Value::from(s.to_str().expect("UTF-8 path")).to_string();
        let dirs: Vec<&str> = plugin_dirs
            .iter()
            .map(|d| d.to_str().expect("UTF-8 plugin dir"))
            .collect();
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\n\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = {plugins}\n\
             network_config_dir = {netdir}\n\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = {events}\n\
             tmp_dir = {tmp}\n\
             image_copy_tmp_dir = {tmp}\n\
             lock_type = \"file\"\n\
             enable_port_reservation = false\n",
            plugins = serde_json::Value::from(dirs),
            netdir = toml(&p.config_dir()),
            events = toml(&p.dir.join("events.log")),
            tmp = toml(&p.dir.join("tmp")),
        );
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
            toml(&p.dir.join("root")),
            toml(&p.dir.join("run"))
        );
        for (file, text) in [("containers.conf", conf), ("storage.conf", storage)] {
            std::fs::write(p.dir.join(file), text).unwrap_or_else(|e| panic!("write {file}: {e}"));
        }
        p
    }

    /// The harness's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the network namespace Podman runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Podman's `network_config_dir`: a test writes its networks here, one
    /// `NAME.conflist` each (or with [`Podman::add_network`]).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("cni.d")
    }

    /// A network name unique to this test: the env's tag + `suffix`. Drop
    /// removes the IPAM state of networks named so.
    pub fn network_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tag)
    }

    /// Writes `conflist` (a CNI network configuration list) to
    /// `config_dir()/NAME.conflist` and returns its name, which must start
    /// with the env's tag ([`Podman::network_name`]).
    pub fn add_network(&self, conflist: &serde_json::Value) -> String {
        let name = conflist["name"].as_str().expect("a conflist has a name").to_owned();
        assert!(
            name.starts_with(&self.tag),
            "network {name:?} does not start with the test's tag {}",
            self.tag
        );
        let file = self.config_dir().join(format!("{name}.conflist"));
        std::fs::write(&file, serde_json::to_string_pretty(conflist).expect("JSON"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        name
    }

    /// Adds a network [`Podman::network_name`]`(suffix)` of Podman's usual
    /// kind: the CNI `bridge` plugin (bridge `<name>0`, a gateway, no
    /// masquerade, hairpin), host-local IPAM on `subnet` (`10.123.0.0/24`:
    /// the gateway is its first address, containers get the next ones) with a
    /// default route, and `portmap` for `-p`. The plugins must be in one of
    /// the harness's plugin directories (`/usr/lib/cni`). Returns the name.
    pub fn add_bridge_network(&self, suffix: &str, subnet: &str) -> String {
        let name = self.network_name(suffix);
        let bridge = format!("{name}0");
        assert!(
            bridge.len() <= 15,
            "bridge name {bridge:?} is too long for an interface"
        );
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": subnet }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                    },
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        });
        self.add_network(&conflist)
    }

    /// `podman ARGS` in the harness's namespace and configuration, not yet
    /// run (stdin is `/dev/null` unless the caller sets it).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(find_program("nsenter").unwrap_or_else(|| PathBuf::from("nsenter")));
        c.arg(format!("--net={}", ns_path(&self.netns).display()))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION")
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman ARGS`, whatever its outcome; panics if it runs longer
    /// than [`COMMAND_TIMEOUT`].
    pub fn podman(&self, args: &[&str]) -> Output {
        output_within(&mut self.cmd(args), COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
    }

    /// Runs `podman ARGS` and returns its stdout; panics with its output if
    /// it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.expect(args, true).stdout).into_owned()
    }

    /// Runs `podman ARGS`, expects it to fail and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.expect(args, false).stderr).into_owned()
    }

    /// Runs `podman ARGS`; panics with its output unless it succeeds (or
    /// fails) as `success` says.
    fn expect(&self, args: &[&str], success: bool) -> Output {
        let out = self.podman(args);
        if out.status.success() != success {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let outcome = if success { "failed" } else { "succeeded" };
            panic!("podman {args:?} {outcome} ({}):\n{stdout}{stderr}", out.status);
        }
        out
    }

    /// Runs `ARGS` in the running container `container` (`podman exec`),
    /// whatever its outcome.
    pub fn exec(&self, container: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", container];
        all.extend_from_slice(args);
        self.podman(&all)
    }

    /// Builds an image `name` (`podman import`, `CMD ["/bin/sh"]`): the
    /// host's static busybox with a link in `/bin` for each of its applets
    /// (`busybox --install -s`, at least [`APPLETS`]), `/tmp`, and
    /// `/etc/passwd` and `/etc/group` for root.
    pub fn import_busybox(&self, name: &str) {
        let work = self.dir.join(format!("img-{:08x}", rand::random::<u32>()));
        let rootfs = work.join("rootfs");
        for sub in ["bin", "dev", "etc", "proc", "root", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("create rootfs dir");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod /tmp");
        let busybox = busybox_path().expect("busybox (/bin/busybox or on PATH)");
        run_ok(
            Command::new(&busybox)
                .arg("--install")
                .arg("-s")
                .arg(rootfs.join("bin")),
        );
        // The links name the path busybox runs from (`/usr/bin/busybox` when
        // `/bin` links to `usr/bin`): it goes there.
        let target = std::fs::read_link(rootfs.join("bin/sh")).expect("busybox --install made /bin/sh");
        let at = rootfs.join(target.strip_prefix("/").expect("an absolute link"));
        std::fs::create_dir_all(at.parent().expect("a directory")).expect("create busybox's directory");
        std::fs::copy(&busybox, &at).unwrap_or_else(|e| panic!("copy {} into the image: {e}", busybox.display()));
        let missing: Vec<&&str> = APPLETS
            .iter()
            .filter(|a| !rootfs.join("bin").join(a).exists())
            .collect();
        assert!(
            missing.is_empty(),
            "{} lacks the applets {missing:?}",
            busybox.display()
        );
        for (file, line) in [("passwd", "root:x:0:0:root:/root:/bin/sh"), ("group", "root:x:0:")] {
            std::fs::write(rootfs.join("etc").join(file), format!("{line}\n")).expect("write /etc");
        }
        let tarball = work.join("rootfs.tar");
        run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "-cf"])
                .arg(&tarball)
                .arg("-C")
                .arg(&rootfs)
                .arg("."),
        );
        let tar = tarball.to_str().expect("UTF-8 path");
        self.ok(&["import", "--quiet", "--change", r#"CMD ["/bin/sh"]"#, tar, name]);
        let _ = std::fs::remove_dir_all(&work);
    }

    /// `podman inspect --format FORMAT CONTAINER`, trimmed.
    pub fn inspect(&self, container: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, container]).trim().to_owned()
    }

    /// The network namespace of container `name` (its `SandboxKey`,
    /// `/run/netns/netns-<uuid>`), if it has one (a running container on a
    /// network). Drop removes it if `podman rm` does not.
    pub fn container_netns(&self, name: &str) -> Option<PathBuf> {
        let key = self.inspect(name, "{{.NetworkSettings.SandboxKey}}");
        if key.is_empty() {
            return None;
        }
        let key = PathBuf::from(key);
        let mut seen = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&key) {
            seen.push(key.clone());
        }
        Some(key)
    }

    /// The pid (in our pid namespace) of container `name`'s first process;
    /// panics if it is not running.
    pub fn container_pid(&self, name: &str) -> u32 {
        let pid = self.inspect(name, "{{.State.Pid}}");
        let pid: u32 = pid.parse().unwrap_or_else(|e| panic!("pid of {name}: {pid:?}: {e}"));
        assert_ne!(pid, 0, "container {name} is not running");
        pid
    }

    /// Container `name`'s address on `network`, as Podman reports it.
    pub fn container_ip(&self, name: &str, network: &str) -> Ipv4Addr {
        let ip = self.inspect(
            name,
            &format!("{{{{(index .NetworkSettings.Networks {network:?}).IPAddress}}}}"),
        );
        ip.parse()
            .unwrap_or_else(|e| panic!("address of {name} on {network}: {ip:?}: {e}"))
    }

    /// Pings `to` `count` times from container `from` (busybox `ping`, one
    /// a second, waiting at most 5 s for the last reply).
    pub fn ping(&self, from: &str, to: Ipv4Addr, count: u32) -> Ping {
        let (count, to) = (count.to_string(), to.to_string());
        let out = self.exec(from, &["ping", "-c", &count, "-W", "5", &to]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ping::parse(&text).unwrap_or_else(|| {
            panic!(
                "ping from {from}: no summary ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Sends `mib` MiB of zeros over one TCP connection from container
    /// `from` to port `port` of `to_ip`, where container `to` listens (busybox
    /// `nc`, which it starts and which exits when the transfer ends). The
    /// time is the sender's, from connect to close, as busybox `time`
    /// measures it (10 ms steps; no `podman exec` overhead).
    pub fn tcp_transfer(&self, from: &str, to: &str, to_ip: Ipv4Addr, port: u16, mib: u32) -> Transfer {
        let result = format!("/tmp/px-rx-{port}");
        // `nc -l` ends the connection when its stdin ends: `sleep` holds it open.
        let listen = format!("rm -f {result}; sleep 3600 | nc -l -p {port} | wc -c > {result}");
        self.ok(&["exec", "-d", to, "sh", "-c", &listen]);
        self.wait_listening(to, port);
        let send = format!("dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | nc {to_ip} {port}");
        let out = self.exec(from, &["time", "-f", "%e", "sh", "-c", &send]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "send from {from} ({}): {stderr}", out.status);
        let secs: f64 = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("send from {from}: no time on stderr: {stderr:?}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let received = loop {
            let text = String::from_utf8_lossy(&self.exec(to, &["cat", &result]).stdout).into_owned();
            if let Ok(n) = text.trim().parse::<u64>() {
                break n;
            }
            assert!(Instant::now() < deadline, "{to} did not finish receiving: {text:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        Transfer {
            sent: u64::from(mib) << 20,
            received,
            elapsed: Duration::from_secs_f64(secs),
        }
    }

    /// Waits (10 s at most) until a TCP socket listens on `port` in container
    /// `name`'s network namespace (its `/proc/PID/net/tcp{,6}`, read from here).
    pub fn wait_listening(&self, name: &str, port: u16) {
        let pid = self.container_pid(name);
        let local = format!(":{port:04X}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // busybox `nc -l` listens on `::` where IPv6 is on, else on 0.0.0.0.
            let text: String = ["tcp", "tcp6"]
                .iter()
                .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
                .collect();
            // sl local_address rem_address st …; st 0A is LISTEN.
            let listening = text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
            });
            if listening {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on port {port} in {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ids of every container, running or not: those podman lists and,
    /// should it not answer, those in its storage.
    fn container_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if let Ok(o) = output_within(&mut self.cmd(&["ps", "-aq", "--no-trunc"]), Duration::from_secs(30))
            && o.status.success()
        {
            ids.extend(String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned));
        }
        let stored = std::fs::read_dir(self.dir.join("root/vfs-containers"));
        for e in stored.into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && !ids.contains(&name) {
                ids.push(name);
            }
        }
        ids
    }

    /// Notes the network namespaces of the containers `ids` for
    /// [`Podman::remove_traces`]: their `SandboxKey`s, and (should podman not
    /// answer) the `/run/netns/netns-*` holding the namespace of one of the
    /// harness's processes.
    fn note_sandboxes(&self, ids: &[String]) {
        let mut seen = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.is_empty() {
            let mut args = vec!["inspect", "--format", "{{.NetworkSettings.SandboxKey}}"];
            args.extend(ids.iter().map(String::as_str));
            if let Ok(out) = output_within(&mut self.cmd(&args), Duration::from_secs(30)) {
                seen.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(PathBuf::from),
                );
            }
        }
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let spaces: Vec<(u64, u64)> = owned_processes(&self.dir, None)
            .iter()
            .filter_map(|(pid, _)| id(Path::new(&format!("/proc/{pid}/ns/net"))))
            .collect();
        for e in std::fs::read_dir(NETNS_DIR).into_iter().flatten().flatten() {
            let key = e.path();
            if e.file_name().to_string_lossy().starts_with("netns-") && id(&key).is_some_and(|i| spaces.contains(&i)) {
                seen.push(key);
            }
        }
    }

    /// The names of the networks in `cni.d` that start with the env's tag.
    fn tagged_networks(&self) -> Vec<String> {
        let files = std::fs::read_dir(self.config_dir()).into_iter().flatten().flatten();
        files
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let conf: serde_json::Value = serde_json::from_str(&text).ok()?;
                Some(conf["name"].as_str()?.to_owned())
            })
            .filter(|n| n.starts_with(&self.tag) && !n.contains('/') && !n.contains(".."))
            .collect()
    }

    /// Removes the containers and stops what of theirs still runs.
    fn remove_containers(&self, ids: &[String]) {
        if !ids.is_empty() {
            match output_within(&mut self.cmd(&["rm", "-af", "-t", "0"]), Duration::from_secs(60)) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!("podman rm -af: {}", String::from_utf8_lossy(&out.stderr)),
                Err(e) => eprintln!("podman rm -af: {e}"),
            }
        }
        // conmon, the containers' processes and any podman still running.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = owned_processes(&self.dir, None);
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("podman {}: processes survive SIGKILL: {left:?}", self.dir.display());
                break;
            }
            for pid in left.iter().filter_map(|(pid, _)| i32::try_from(*pid).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes what the containers `ids` and the test's networks left
    /// outside the directory.
    fn remove_traces(&self, ids: &[String]) {
        let sandboxes = std::mem::take(&mut *self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()));
        for key in sandboxes.iter().filter(|k| k.starts_with(NETNS_DIR) && k.exists()) {
            let _ = nix::mount::umount2(key, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(key);
        }
        for state in ["/run/runc", "/run/crun"] {
            for id in ids {
                let _ = std::fs::remove_dir_all(Path::new(state).join(id));
            }
        }
        // A container's cgroups (`libpod_parent/libpod-<id>` in every
        // hierarchy, or in the one of cgroup v2), left if the runtime never
        // deleted it; empty now that its processes are gone.
        let hierarchies = std::fs::read_dir(CGROUP_ROOT).into_iter().flatten().flatten();
        let roots: Vec<PathBuf> = hierarchies
            .map(|e| e.path())
            .chain([PathBuf::from(CGROUP_ROOT)])
            .collect();
        for id in ids {
            for root in &roots {
                let _ = std::fs::remove_dir(root.join("libpod_parent").join(format!("libpod-{id}")));
            }
        }
        let networks = self.tagged_networks();
        for net in &networks {
            let _ = std::fs::remove_dir_all(Path::new(CNI_IPAM_DIR).join(net));
        }
        // <network>-<id>-<ifname>
        let ours = |file: &str| {
            networks.iter().any(|n| file.starts_with(&format!("{n}-")))
                || ids.iter().any(|id| file.contains(&format!("-{id}-")))
        };
        for e in std::fs::read_dir(CNI_RESULTS_DIR).into_iter().flatten().flatten() {
            if ours(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Unmounts what is left under the directory (deepest first) and removes it.
    fn remove_dir(&self) {
        for _ in 0..5 {
            let mut mounts = mounts_under(&self.dir);
            if mounts.is_empty() {
                break;
            }
            mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
            for m in &mounts {
                let _ = nix::mount::umount2(m, MntFlags::MNT_DETACH);
            }
        }
        match mounts_under(&self.dir) {
            left if left.is_empty() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            left => eprintln!("podman {}: left in place, still mounted: {left:?}", self.dir.display()),
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let ids = self.container_ids();
        if std::thread::panicking() && !ids.is_empty() {
            let listed = output_within(&mut self.cmd(&["ps", "-a"]), Duration::from_secs(30));
            let text = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            eprintln!(
                "--- podman ps -a ({}) ---\n{}",
                self.dir.display(),
                text.unwrap_or_default()
            );
        }
        self.note_sandboxes(&ids);
        self.remove_containers(&ids);
        self.remove_traces(&ids);
        self.remove_dir();
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.0 = shared.0.saturating_sub(1);
        if shared.0 == 0 {
            for p in std::mem::take(&mut shared.1) {
                // A directory goes only if empty: another Podman may be using it.
                let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
            }
        }
    }
}

/// What busybox `ping` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ping {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// The average round trip, if any reply came.
    pub avg_rtt: Option<Duration>,
}

impl Ping {
    /// Reads `N packets transmitted, M packets received` and `round-trip
    /// min/avg/max = A/B/C ms` from busybox (or iputils) `ping`'s summary.
    pub fn parse(text: &str) -> Option<Ping> {
        let counts = text.lines().find(|l| l.contains("packets transmitted"))?;
        let mut numbers = counts
            .split(',')
            .filter_map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
        let (transmitted, received) = (numbers.next()?, numbers.next()?);
        let avg_rtt = text
            .lines()
            .find_map(|l| l.split_once(" = ").filter(|(k, _)| k.contains("min/avg/max")))
            .and_then(|(_, v)| v.split('/').nth(1)?.trim().parse::<f64>().ok())
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        Some(Ping {
            transmitted,
            received,
            avg_rtt,
        })
    }
}

/// One TCP transfer ([`Podman::tcp_transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes the sender wrote.
    pub sent: u64,
    /// Bytes the receiver read.
    pub received: u64,
    /// The sender's time from start to close.
    pub elapsed: Duration,
}

impl Transfer {
    /// Received bits per second, in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(0.01);
        self.received as f64 * 8.0 / secs / 1e6
    }
}

/// Runs `cmd` with its output captured (stdin `/dev/null` unless set);
/// kills it after `limit`. A process it leaves behind with its stdout (a
/// daemon that did not let go of it) delays the return by 5 s at most.
fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let readers: [(usize, Option<Box<dyn Read + Send>>); 2] = [
        (0, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        (1, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
    ];
    for (which, pipe) in readers {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            let _ = tx.send((which, buf));
        });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {limit:?}, killed"));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let mut bufs = [Vec::new(), Vec::new()];
    let drained = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        match rx.recv_timeout(drained.saturating_duration_since(Instant::now())) {
            Ok((which, buf)) => bufs[which] = buf,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = bufs;
    Ok(Output { status, stdout, stderr })
}
