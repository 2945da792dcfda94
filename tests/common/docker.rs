//! A private Docker engine per test: [`Dockerd`] runs a `dockerd` (with the
//! `containerd` it starts itself) inside a network namespace the test made,
//! with every state directory and socket in a directory of its own, and an
//! image built from the host's static `busybox` ([`Dockerd::import_busybox`]),
//! so no registry is needed. Tests that use it say
//! `#[cfg_attr(not(px_docker), ignore = "needs root, dockerd, docker and busybox-static")]`.
//!
//! How it runs. dockerd starts in the test's network namespace and in a mount
//! namespace of its own, where (as `ip netns exec` does) `/sys` is a sysfs of
//! that network namespace; the host's `/sys/fs/cgroup` tree, whatever its
//! layout (here a tmpfs with the v1 controllers, `name=systemd` and cgroup2 on
//! `unified`), is bound back under it, since dockerd refuses to start without
//! the devices cgroup. `/run/containerd` is a private tmpfs there: the shims'
//! sockets (`/run/containerd/s/…`, a fixed path) stay in it, and a host
//! containerd's socket cannot make dockerd use that containerd instead of its
//! own. Mounts do not leak to the host (the shared mounts are made slaves),
//! except under the engine's directory, which is a shared mount: the network
//! namespaces dockerd binds there (a container's `SandboxKey`,
//! `<exec-root>/netns/<id>`) can be opened from the test, as a network plugin
//! must.
//!
//! What dockerd writes outside its directory (checked on Docker 20.10):
//! - `/run/docker/plugins/` (the plugin sockets' directory, shared by every
//!   dockerd on the machine): a test's plugin sockets there are removed on drop
//!   if it named them with [`Dockerd::plugin_name`]; the directory stays.
//! - `/opt/containerd/{bin,lib}` (empty, containerd's "opt" plugin) and
//!   `/run/containerd/` (the mount point of the private tmpfs, made here):
//!   left, as a concurrent engine may be using them.
//! - cgroups `/sys/fs/cgroup/*/docker/<id>` in the host's hierarchies (not
//!   under the test's own cgroup): runc removes a container's; the `docker`
//!   parent stays (shared by every engine, like the host's own).
//! - Nothing in `/var/lib/docker` or `/var/run/docker*` (`--data-root`,
//!   `--exec-root` and `--pidfile` are in the engine's directory).
//! - `/etc/docker/key.json` (Docker < 23): sent to the engine's directory by its
//!   `daemon.json` (`deprecated-key-path`), which also keeps the host's
//!   `/etc/docker/daemon.json` out.
//!
//! Nothing is cached between tests: each starts its own engine and imports its
//! own image (0.3 s to 1 s each on two cores).
#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{TestEnv, ns_path, run_ok};

/// Where dockerd finds network and IPAM plugins' sockets (`NAME.sock`): a
/// fixed path that `--exec-root` does not move, shared by every dockerd here.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// The busybox applets an image from [`Dockerd::import_busybox`] always has.
pub const APPLETS: &[&str] = &[
    "sh",
    "ping",
    "nc",
    "wget",
    "httpd",
    "sleep",
    "cat",
    "sha256sum",
    "dd",
    "head",
    "udhcpc",
    "ip",
    "ifconfig",
    "route",
    "nslookup",
    "true",
];

/// How long `docker info` may take to answer after dockerd starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Docker's own networking in the engine's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    /// `--bridge=none --iptables=false`: no `docker0` and no iptables rules;
    /// containers get only the networks the test creates.
    None,
    /// Docker's default bridge `docker0` (172.17.0.0/16) with `--iptables=true`:
    /// a side-by-side peer. Its NAT and filter rules (and the FORWARD policy
    /// DROP Docker sets) live in the engine's namespace only.
    Default,
}

/// A private `dockerd` in a network namespace of the test; see the module
/// documentation. Drop removes every container, stops dockerd (SIGTERM, SIGKILL
/// after 15 s), kills whatever it left running (only processes of its own
/// mount namespace or naming its directory, and their descendants), unmounts
/// what is left under its directory and removes it — after a failed assertion
/// it prints dockerd's log first.
#[derive(Debug)]
pub struct Dockerd {
    child: Option<Child>,
    /// The bridge choice and extra arguments it was started with (for a restart).
    started_with: (Bridge, Vec<String>),
    /// Everything of this engine: `root/` (data root), `exec/` (exec root),
    /// `docker.sock`, `dockerd.log`, `dockerd.pid`, `daemon.json`.
    dir: PathBuf,
    /// Whether `dir` is bind-mounted on itself (shared), to be unmounted.
    bound: bool,
    socket: PathBuf,
    netns: String,
    tag: String,
    /// `mnt:[INODE]` of dockerd's mount namespace, once started.
    mount_ns: Option<String>,
    /// Plugin names handed out by [`Dockerd::plugin_name`].
    plugins: Mutex<Vec<String>>,
}

impl Dockerd {
    /// Starts a dockerd with [`Bridge::None`] in the named network namespace
    /// `netns` (`/run/netns/NAME`, which the test made) and waits until it
    /// answers `docker info`.
    pub fn start(env: &TestEnv, netns: &str) -> Dockerd {
        Dockerd::start_with(env, netns, Bridge::None, &[])
    }

    /// [`Dockerd::start`] with a choice of [`Bridge`] and `extra` dockerd
    /// arguments (they come last, so they can override ours).
    pub fn start_with(env: &TestEnv, netns: &str, bridge: Bridge, extra: &[&str]) -> Dockerd {
        let key = ns_path(netns);
        assert!(key.exists(), "no network namespace {}", key.display());
        let dir = std::env::temp_dir().join(format!("pxd-{}-{:08x}", env.tag, rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut d = Dockerd {
            started_with: (bridge, extra.iter().map(|a| (*a).to_owned()).collect()),
            child: None,
            socket: dir.join("docker.sock"),
            dir,
            bound: false,
            netns: netns.to_owned(),
            tag: env.tag.clone(),
            mount_ns: None,
            plugins: Mutex::new(Vec::new()),
        };
        // The longest socket dockerd makes in its directory.
        let longest = d.exec_root().join("containerd/containerd.sock.ttrpc");
        assert!(
            longest.as_os_str().len() < 108,
            "{} is too long for a unix socket: set TMPDIR to a shorter directory",
            longest.display()
        );
        d.spawn(bridge, extra);
        d
    }

    /// Restarts dockerd as a service manager does: SIGTERM (dockerd stops its
    /// containers), wait, start again on the same directories; containers
    /// with a restart policy come back.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        let (bridge, extra) = self.started_with.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.spawn(bridge, &extra);
    }

    fn spawn(&mut self, bridge: Bridge, extra: &[&str]) {
        let mut config = serde_json::Map::new();
        if dockerd_major() < 23 {
            // Docker 20.10 writes its trust key to /etc/docker/key.json unless told.
            let key = self.dir.join("key.json").display().to_string();
            config.insert("deprecated-key-path".into(), key.into());
        }
        let config_file = self.dir.join("daemon.json");
        std::fs::write(&config_file, serde_json::Value::Object(config).to_string()).expect("write daemon.json");
        std::fs::create_dir_all(self.dir.join("client")).expect("create client config dir");

        // The directory is a shared mount, so that what dockerd mounts under it
        // (its sandboxes' network namespaces) shows here too (once: a restart
        // finds it so).
        if !self.bound {
            let flags = MsFlags::MS_BIND;
            nix::mount::mount(Some(&self.dir), &self.dir, None::<&str>, flags, None::<&str>)
                .unwrap_or_else(|e| panic!("bind {}: {e}", self.dir.display()));
            self.bound = true;
            nix::mount::mount(None::<&str>, &self.dir, None::<&str>, MsFlags::MS_SHARED, None::<&str>)
                .unwrap_or_else(|e| panic!("make {} shared: {e}", self.dir.display()));
        }
        if !Path::new("/run/containerd").exists() {
            std::fs::create_dir_all("/run/containerd").expect("create /run/containerd");
            let _ = std::fs::set_permissions("/run/containerd", std::fs::Permissions::from_mode(0o711));
        }

        let log = std::fs::File::create(self.dir.join("dockerd.log")).expect("create dockerd.log");
        let mut cmd = Command::new(find_program("dockerd").expect("dockerd on PATH"));
        cmd.arg("--config-file")
            .arg(&config_file)
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--log-level=warn");
        match bridge {
            Bridge::None => cmd.args(["--bridge=none", "--iptables=false"]),
            Bridge::Default => cmd.arg("--iptables=true"),
        };
        cmd.args(extra)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        private_mounts(&mut cmd, &ns_path(&self.netns), &self.dir);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        // spawn returns once the hook has run and dockerd is exec'd.
        self.mount_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", child.id()))
            .ok()
            .map(|l| l.to_string_lossy().into_owned());
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().expect("spawned").try_wait() {
                panic!("dockerd exited ({status}) before answering:\n{}", self.log());
            }
            if self.socket.exists()
                && output_within(&mut self.cmd(&["info", "--format", "{{.ID}}"]), Duration::from_secs(10))
                    .is_some_and(|o| o.status.success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer `docker info` within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The engine's directory (data root, exec root, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `--data-root`.
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `--exec-root`: containers' network namespaces are `exec/netns/<id>`.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The API socket (`DOCKER_HOST=unix://…`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The name of the network namespace dockerd runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// dockerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("dockerd running").id()
    }

    /// `mnt:[INODE]`, dockerd's mount namespace (that of its containerd and
    /// shims too): see [`owned_processes`].
    pub fn mount_ns(&self) -> Option<&str> {
        self.mount_ns.as_deref()
    }

    /// dockerd's log (its and containerd's stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker ARGS` against this engine, not yet run: the Debian client
    /// (`/usr/bin/docker`) if there is one, speaking API 1.41 (Docker 20.10),
    /// with a client configuration of its own.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_client());
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_API_VERSION", "1.41")
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(Stdio::null());
        c
    }

    /// Runs `docker ARGS`, whatever its outcome.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        c.output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"))
    }

    /// Runs `docker ARGS` and returns its stdout; panics with its stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `docker ARGS`, expects it to fail and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Builds an image `name` (`docker import`, `CMD ["/bin/sh"]`): the host's
    /// busybox in `/bin` with a link for each of its applets (at least
    /// [`APPLETS`]), `/etc/passwd` and `/etc/group` for root and nobody, and
    /// each program of `extra_bins` (a path, or a name found on `PATH`) in `/usr/bin`, with the
    /// shared libraries and loader `ldd` lists at their own paths.
    pub fn import_busybox(&self, name: &str, extra_bins: &[&str]) {
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let work = self.dir.join(format!("img-{safe}"));
        let rootfs = work.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin", "var/tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
        }
        for d in ["tmp", "var/tmp"] {
            std::fs::set_permissions(rootfs.join(d), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
        }
        let busybox = busybox_path().expect("busybox (/bin/busybox or on PATH)");
        install(&rootfs, &busybox, Path::new("/bin/busybox"));
        let list = run_ok(Command::new(&busybox).arg("--list"));
        for applet in list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
            let link = rootfs.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", &link).expect("applet link");
            }
        }
        let truth = rootfs.join("bin/true");
        if !truth.exists() {
            // Older busybox builds have no `true` applet.
            std::fs::write(&truth, "#!/bin/sh\n").expect("write /bin/true");
            std::fs::set_permissions(&truth, std::fs::Permissions::from_mode(0o755)).expect("chmod /bin/true");
        }
        for applet in APPLETS {
            assert!(
                rootfs.join("bin").join(applet).exists(),
                "{} has no applet {applet}",
                busybox.display()
            );
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("write /etc/passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("write /etc/group");
        for bin in extra_bins {
            // A path is taken as it is, a bare name is looked up on PATH.
            let path = if bin.contains('/') {
                PathBuf::from(bin)
            } else {
                find_program(bin).unwrap_or_else(|| panic!("{bin} not found on PATH"))
            };
            let file = path.file_name().expect("a program's file name").to_owned();
            install(&rootfs, &path, &Path::new("/usr/bin").join(file));
        }
        let tarball = work.join("rootfs.tar");
        run_ok(
            Command::new("tar")
                .arg("--numeric-owner")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tarball)
                .arg("."),
        );
        let tar = tarball.to_str().expect("UTF-8 path");
        self.ok(&["import", "--change", r#"CMD ["/bin/sh"]"#, tar, name]);
        let _ = std::fs::remove_dir_all(&work);
    }

    /// A plugin name unique to this test, `px` + the env's tag + `suffix`, whose
    /// socket ([`plugin_socket`]) drop removes.
    pub fn plugin_name(&self, suffix: &str) -> String {
        let name = format!("px{}{suffix}", self.tag);
        let mut names = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(&name) {
            names.push(name.clone());
        }
        name
    }

    /// Removes every container, then stops dockerd: SIGTERM, SIGKILL after
    /// [`STOP_TIMEOUT`]. Returns its exit status, if it was running.
    fn shutdown(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if matches!(child.try_wait(), Ok(None)) {
            let listed = output_within(&mut self.cmd(&["ps", "-aq"]), Duration::from_secs(30));
            let ids: Vec<String> = listed
                .filter(|o| o.status.success())
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = output_within(&mut self.cmd(&args), Duration::from_secs(60));
            }
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let status = self.shutdown();
        if std::thread::panicking() {
            eprintln!("--- dockerd log ({status:?}) ---\n{}", self.log());
        }
        // containerd, shims and containers dockerd did not stop (it was killed).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = owned_processes(&self.dir, self.mount_ns.as_deref());
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("dockerd {}: processes survive SIGKILL: {left:?}", self.dir.display());
                break;
            }
            for (pid, _) in &left {
                if let Ok(pid) = i32::try_from(*pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for name in self.plugins.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            for ext in ["sock", "spec", "json"] {
                let _ = std::fs::remove_file(Path::new(PLUGIN_DIR).join(format!("{name}.{ext}")));
            }
        }
        if self.bound || !mounts_under(&self.dir).is_empty() {
            for _ in 0..5 {
                let mut mounts = mounts_under(&self.dir);
                if mounts.is_empty() {
                    break;
                }
                mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
                for m in mounts {
                    let _ = nix::mount::umount2(&m, MntFlags::MNT_DETACH);
                }
            }
        }
        let left = mounts_under(&self.dir);
        if left.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("dockerd {}: left in place, still mounted: {left:?}", self.dir.display());
        }
    }
}

/// The socket of the plugin `name` dockerd looks for: `/run/docker/plugins/NAME.sock`.
pub fn plugin_socket(name: &str) -> PathBuf {
    Path::new(PLUGIN_DIR).join(format!("{name}.sock"))
}

/// The docker client the harness runs: `/usr/bin/docker` (Debian's 20.10)
/// if present, else `docker` on `PATH` (told to speak API 1.41).
pub fn docker_client() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if is_executable(debian) {
        return debian.to_owned();
    }
    find_program("docker").unwrap_or_else(|| PathBuf::from("docker"))
}

/// The host's busybox: `/bin/busybox`, else the first on `PATH`.
pub fn busybox_path() -> Option<PathBuf> {
    let bin = Path::new("/bin/busybox");
    if is_executable(bin) {
        return Some(bin.to_owned());
    }
    find_program("busybox")
}

/// `program`'s path on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The major version `dockerd --version` reports (20 for "Docker version
/// 20.10.24+dfsg1"), 0 if unknown.
fn dockerd_major() -> u32 {
    static MAJOR: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = find_program("dockerd").and_then(|d| Command::new(d).arg("--version").output().ok());
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        text.split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// Copies `src` into `rootfs` at `at` (an absolute path), with the shared
/// libraries and the loader it needs at the paths `ldd` gives.
fn install(rootfs: &Path, src: &Path, at: &Path) {
    let mut files = vec![(src.to_owned(), at.to_owned())];
    files.extend(shared_libs(src).into_iter().map(|l| (l.clone(), l)));
    for (from, to) in files {
        let dst = rootfs.join(to.strip_prefix("/").unwrap_or(&to));
        if dst.exists() {
            continue;
        }
        std::fs::create_dir_all(dst.parent().expect("has a parent")).expect("create rootfs dir");
        std::fs::copy(&from, &dst).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), dst.display()));
    }
}

/// The shared libraries (and the dynamic loader) `ldd` lists for `bin`;
/// none for a static binary.
fn shared_libs(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .unwrap_or_else(|e| panic!("ldd: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Vec::new();
    }
    assert!(out.status.success(), "ldd {}: {text}", bin.display());
    text.lines()
        .filter_map(|line| {
            assert!(!line.contains("not found"), "ldd {}: {line}", bin.display());
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Runs `cmd` with its output captured; `None` if it cannot start or runs
/// longer than `limit` (then it is killed).
fn output_within(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Makes `cmd` start in the network namespace at `netns` and in a new mount
/// namespace where: every shared mount but `dir` and those under it is a
/// slave (nothing mounted there reaches the host; `dir`, a shared mount,
/// stays a peer of the host's); `/sys` is a sysfs of `netns` with the host's
/// `/sys/fs/cgroup` tree bound under it; `/run/containerd` is a private tmpfs.
fn private_mounts(cmd: &mut Command, netns: &Path, dir: &Path) {
    let net = OwnedFd::from(std::fs::File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display())));
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).expect("no NUL in a path");
    let mut slaves: Vec<CString> = vec![cstr(OsStr::new("/"))];
    for m in mountinfo() {
        if m.shared && !m.point.starts_with(dir) {
            slaves.push(cstr(m.point.as_os_str()));
        }
    }
    let sys = cstr(OsStr::new("/sys"));
    let cgroup = cstr(OsStr::new("/sys/fs/cgroup"));
    let sysfs = cstr(OsStr::new("sysfs"));
    let tmpfs = cstr(OsStr::new("tmpfs"));
    let run_containerd = cstr(OsStr::new("/run/containerd"));
    let tmpfs_opts = cstr(OsStr::new("mode=711"));
    let hook = move || -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain syscalls on an fd we own and on NUL-terminated strings
        // made before the fork; nothing here allocates or takes a lock, as
        // the child of a multithreaded process must not.
        unsafe {
            check(libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            for p in &slaves {
                // A mount that went away since the list was read is no matter.
                let _ = libc::mount(null, p.as_ptr(), null, libc::MS_SLAVE, std::ptr::null());
            }
            check(libc::mount(
                null,
                sys.as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            let old = libc::open(cgroup.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
            if old < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check(libc::mount(
                sysfs.as_ptr(),
                sys.as_ptr(),
                sysfs.as_ptr(),
                flags,
                std::ptr::null(),
            ))?;
            let mut buf = [0u8; 32];
            let from = fd_path(old, &mut buf);
            check(libc::mount(
                from,
                cgroup.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            libc::close(old);
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            let data = tmpfs_opts.as_ptr().cast::<libc::c_void>();
            check(libc::mount(
                tmpfs.as_ptr(),
                run_containerd.as_ptr(),
                tmpfs.as_ptr(),
                flags,
                data,
            ))?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec and makes only
    // async-signal-safe syscalls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Writes `/proc/self/fd/FD` and a NUL into `buf` (no allocation).
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> *const libc::c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
    buf.as_ptr().cast()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug)]
struct MountInfo {
    point: PathBuf,
    shared: bool,
}

fn mountinfo() -> Vec<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = PathBuf::from(OsStr::from_bytes(&unescape(f.get(4)?)));
            let optional = f.get(6..)?.iter().take_while(|x| **x != "-");
            let shared = optional.clone().any(|x| x.starts_with("shared:"));
            Some(MountInfo { point, shared })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Mount points at `dir` or under it in our mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Live (not zombie) processes of an engine, with their command lines: those
/// in its mount namespace `mount_ns` (dockerd, containerd, the shims) or
/// whose command line names `dir`, and all their descendants (the
/// containers' processes).
pub fn owned_processes(dir: &Path, mount_ns: Option<&str>) -> Vec<(u32, String)> {
    struct Proc {
        pid: u32,
        ppid: u32,
        cmdline: String,
        root: bool,
    }
    let dir = dir.to_string_lossy();
    let me = std::process::id();
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" || pid == me {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_owned())
            .unwrap_or_default();
        let mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .ok()
            .map(|l| l.to_string_lossy().into_owned());
        let root = cmdline.contains(&*dir) || (mount_ns.is_some() && mnt.as_deref() == mount_ns);
        procs.push(Proc {
            pid,
            ppid,
            cmdline,
            root,
        });
    }
    let mut owned: Vec<u32> = procs.iter().filter(|p| p.root).map(|p| p.pid).collect();
    loop {
        let before = owned.len();
        for p in &procs {
            if !owned.contains(&p.pid) && owned.contains(&p.ppid) {
                owned.push(p.pid);
            }
        }
        if owned.len() == before {
            break;
        }
    }
    procs
        .into_iter()
        .filter(|p| owned.contains(&p.pid))
        .map(|p| (p.pid, p.cmdline))
        .collect()
}
