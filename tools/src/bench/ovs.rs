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
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::{Made, run_ok_in, spawn_in, wait_until};

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

/// A daemon of OVS's: its output goes to its log file only.
fn quiet(mut c: Command) -> Command {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Starts OVS in `ns` on the ports `hA` and `hB` (up, in `ns`), its state in
/// `dir`; its processes go to `made`. Returns ovs-vswitchd's pid.
pub fn start(ns: &Path, dir: &Path, afxdp: bool, made: &mut Made) -> anyhow::Result<u32> {
    let db = dir.join("conf.db");
    run_ok_in(
        ns,
        ovs("ovsdb-tool", dir)
            .arg("create")
            .arg(&db)
            .arg("/usr/share/openvswitch/vswitch.ovsschema"),
    )?;
    let sock = dir.join("db.sock");
    made.process(spawn_in(
        ns,
        0,
        quiet(ovs("ovsdb-server", dir))
            .arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
            .arg(format!("--log-file={}", dir.join("ovsdb.log").display())),
    )?);
    wait_until("ovsdb-server", || sock.exists())?;
    let vsctl = |args: &[&str]| {
        let mut c = ovs("ovs-vsctl", dir);
        c.arg(format!("--db=unix:{}", sock.display()))
            .arg("--timeout=20")
            .args(args);
        run_ok_in(ns, &mut c)
    };
    vsctl(&["--no-wait", "init"])?;
    if afxdp {
        vsctl(&["--no-wait", "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2"])?;
    }
    let ctl = dir.join("vswitchd.ctl");
    let vswitchd = made.process(spawn_in(
        ns,
        1,
        quiet(ovs("ovs-vswitchd", dir))
            .arg(format!("unix:{}", sock.display()))
            .arg(format!("--unixctl={}", ctl.display()))
            .arg(format!("--log-file={}", dir.join("vswitchd.log").display())),
    )?);
    wait_until("ovs-vswitchd", || ctl.exists())?;
    let log = || format!("OVS (log: {})", dir.join("vswitchd.log").display());
    vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"]).with_context(log)?;
    for port in ["hA", "hB"] {
        let mut args = vec!["add-port", "br0", port];
        if afxdp {
            args.extend(["--", "set", "interface", port, "type=afxdp", "options:xdp-mode=native"]);
        }
        vsctl(&args).with_context(log)?;
        let err = vsctl(&["get", "interface", port, "error"])?;
        if !err.is_empty() && err != "[]" {
            bail!("OVS port {port}: {err}");
        }
    }
    Ok(vswitchd)
}
