//! Open vSwitch as a peer of `plexus bench`, as `../shared/bench/peers.sh`
//! runs it: a private `ovsdb-server` and `ovs-vswitchd` in the topology's
//! switch namespace, their database, sockets and logs in a scratch
//! directory; one bridge on the userspace datapath (`datapath_type=netdev`)
//! with NORMAL flows (MAC learning), the veth host ends as its ports:
//! - `ovs`: system ports (AF_PACKET, as Plexus's own);
//! - `ovs-afxdp`: AF_XDP ports (native XDP on the veths) served by a PMD
//!   thread on CPU 1 — the fastest peer of peers.sh, at the cost of a core
//!   that polls even when idle.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plexus_sandbox::netns;

use super::pin_me;

/// The OVS topologies.
pub const TOPOLOGIES: [&str; 2] = ["ovs", "ovs-afxdp"];

/// Whether Open vSwitch is installed.
pub fn installed() -> bool {
    Command::new("ovs-vswitchd").arg("--version").output().is_ok()
}

/// A command of OVS's with its directories in `dir`.
fn ovs(program: &str, dir: &Path) -> Command {
    let mut c = Command::new(program);
    for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
        c.env(var, dir);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` in `ns` to its end; an error with its output if it failed.
fn run(ns: &Path, mut cmd: Command) -> anyhow::Result<String> {
    let out = netns::run_in(ns, || cmd.output())?.with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn wait_for(path: &Path, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{what} did not start in 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts OVS in `ns` on the ports `hA` and `hB` (up, in `ns`), its state in
/// `dir`: (ovs-vswitchd, ovsdb-server), both to be stopped by the caller.
pub fn start(ns: &Path, dir: &Path, afxdp: bool) -> anyhow::Result<(Child, Child)> {
    let db = dir.join("conf.db");
    let mut create = ovs("ovsdb-tool", dir);
    create
        .arg("create")
        .arg(&db)
        .arg("/usr/share/openvswitch/vswitch.ovsschema");
    run(ns, create)?;
    let sock = dir.join("db.sock");
    let mut server = ovs("ovsdb-server", dir);
    server
        .arg(&db)
        .arg(format!("--remote=punix:{}", sock.display()))
        .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
        .arg(format!("--log-file={}", dir.join("ovsdb.log").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let dbserver = netns::run_in(ns, || server.spawn())?.context("starting ovsdb-server")?;
    let vsctl = |args: &[&str]| {
        let mut c = ovs("ovs-vsctl", dir);
        c.arg(format!("--db=unix:{}", sock.display()))
            .arg("--timeout=20")
            .args(args);
        c
    };
    let started = (|| -> anyhow::Result<Child> {
        wait_for(&sock, "ovsdb-server")?;
        run(ns, vsctl(&["--no-wait", "init"]))?;
        if afxdp {
            run(
                ns,
                vsctl(&["--no-wait", "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2"]),
            )?;
        }
        let ctl = dir.join("vswitchd.ctl");
        let mut vswitchd = ovs("ovs-vswitchd", dir);
        vswitchd
            .arg(format!("unix:{}", sock.display()))
            .arg(format!("--unixctl={}", ctl.display()))
            .arg(format!("--log-file={}", dir.join("vswitchd.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = netns::run_in(ns, || {
            pin_me(1);
            vswitchd.spawn()
        })?
        .context("starting ovs-vswitchd")?;
        wait_for(&ctl, "ovs-vswitchd")?;
        Ok(child)
    })();
    let mut dbserver = dbserver;
    let mut vswitchd = match started {
        Ok(c) => c,
        Err(e) => {
            let _ = dbserver.kill();
            let _ = dbserver.wait();
            return Err(e);
        }
    };
    let ports = (|| -> anyhow::Result<()> {
        run(
            ns,
            vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"]),
        )?;
        for port in ["hA", "hB"] {
            let mut args = vec!["add-port", "br0", port];
            if afxdp {
                let iface = ["--", "set", "interface", port, "type=afxdp", "options:xdp-mode=native"];
                args.extend(iface);
            }
            run(ns, vsctl(&args))?;
            let err = run(ns, vsctl(&["get", "interface", port, "error"]))?;
            if !err.is_empty() && err != "[]" {
                bail!("OVS port {port}: {err}");
            }
        }
        Ok(())
    })();
    if let Err(e) = ports {
        for c in [&mut vswitchd, &mut dbserver] {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(e.context(format!("OVS (log: {})", dir.join("vswitchd.log").display())));
    }
    Ok((vswitchd, dbserver))
}
