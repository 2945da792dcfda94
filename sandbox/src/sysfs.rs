//! Receive packet steering (RPS) on an interface of the caller's network
//! namespace: a per-interface setting only sysfs holds, which the switch can
//! set on its veth host ends (`--rx-steering`; off by default).
//!
//! Role: a veth delivers each frame to its peer on the CPU that sent it. A
//! container's TCP sends both from its process's CPU and from the CPU where its
//! ACKs arrive (the switch's), so its segments reach the host end through two
//! CPUs' backlogs, and the switch reads them slightly out of order; and the
//! work of delivering them lands on whichever CPU sent. Steering a host end
//! sends every frame of a flow through one CPU's backlog — in order, and off
//! the switch's core when the daemon is pinned.
//!
//! Measured on the 2-vCPU VM (docs/bench.md): steering to the other CPU
//! raises TCP with 1500-byte frames through the switch from 1.96 to 2.59
//! Gbit/s, but adds an inter-processor wake-up to every reply, so ping RTT
//! goes from 27 to 35 µs; steering to the switch's own CPU halves 64-byte
//! frames/s. Hence off by default, a tuning knob. (The reordering itself
//! costs nothing once the relay's TCP no longer offers SACK: see
//! `plexus_switch::nat::tcp`.)
//!
//! Decisions:
//! - `auto`: the CPUs the daemon may *not* run on when it is pinned, else all
//!   of them (each flow still keeps to one CPU, chosen by its hash).
//! - The process's `/sys` may describe another namespace (a daemon started with
//!   `nsenter --net`), so the write happens on a short-lived thread in a
//!   private mount namespace with a fresh sysfs, which describes the thread's
//!   network namespace — what `ip netns exec` does. The thread ends, and its
//!   mount namespace with it.
//! - Callers treat a failure as a missed optimisation, not an error (rootless
//!   daemons cannot mount sysfs; their TAP devices need no steering).

use std::fs;
use std::io;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, CpuSet, sched_getaffinity, unshare};
use nix::unistd::Pid;

use crate::error::SandboxError;

/// A set of CPUs, as the kernel's cpumask files write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMask(Vec<usize>);

impl CpuMask {
    /// The CPUs, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// The mask in the kernel's format: 32-bit hex groups, most significant
    /// first, separated by commas ("3", "1,00000000").
    pub fn to_kernel(&self) -> String {
        let top = self.0.last().map_or(0, |c| c / 32);
        (0..=top)
            .rev()
            .enumerate()
            .map(|(i, group)| {
                let word = self
                    .0
                    .iter()
                    .filter(|c| **c / 32 == group)
                    .fold(0u32, |w, c| w | 1 << (c % 32));
                if i == 0 {
                    format!("{word:x}")
                } else {
                    format!("{word:08x}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Display for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The CPUs to steer received frames to, from the CPUs this process may run
/// on (`allowed`) and those online: the others if the process is pinned to a
/// strict subset, else all online ones.
pub fn steering_cpus_from(allowed: &[usize], online: &[usize]) -> CpuMask {
    let others: Vec<usize> = online.iter().copied().filter(|c| !allowed.contains(c)).collect();
    if others.is_empty() || others.len() == online.len() {
        CpuMask(online.to_vec())
    } else {
        CpuMask(others)
    }
}

/// [`steering_cpus_from`] for this process and this machine.
pub fn steering_cpus() -> Result<CpuMask, SandboxError> {
    let err = |op: &'static str, source: io::Error| SandboxError::Sysfs {
        ifname: String::new(),
        op,
        source,
    };
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| err("sched_getaffinity", e.into()))?;
    let allowed: Vec<usize> = (0..CpuSet::count())
        .filter(|c| set.is_set(*c).unwrap_or(false))
        .collect();
    let online = fs::read_to_string("/sys/devices/system/cpu/online").map_err(|e| err("read online CPUs", e))?;
    let online = parse_cpu_list(&online).ok_or_else(|| err("parse online CPUs", io::ErrorKind::InvalidData.into()))?;
    Ok(steering_cpus_from(&allowed, &online))
}

/// Whether and where veth host ends steer what they receive: the setting of
/// `plexus daemon --rx-steering` and `plexus switch --rx-steering`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RxSteering {
    /// No steering: the kernel's default (the sending CPU does the work).
    #[default]
    Off,
    /// [`steering_cpus`].
    Auto,
    /// These CPUs.
    Cpus(CpuMask),
}

impl std::str::FromStr for RxSteering {
    type Err = String;

    fn from_str(s: &str) -> Result<RxSteering, String> {
        match s {
            "off" => Ok(RxSteering::Off),
            "auto" => Ok(RxSteering::Auto),
            list => parse_cpu_list(list)
                .map(|c| RxSteering::Cpus(CpuMask(c)))
                .ok_or_else(|| format!("{list:?} is not off, auto or a CPU list such as 0-3,8")),
        }
    }
}

impl std::fmt::Display for RxSteering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RxSteering::Off => f.write_str("off"),
            RxSteering::Auto => f.write_str("auto"),
            RxSteering::Cpus(c) => write!(f, "{c}"),
        }
    }
}

impl RxSteering {
    /// The CPUs to steer to; `None` when off.
    pub fn resolve(&self) -> Result<Option<CpuMask>, SandboxError> {
        match self {
            RxSteering::Off => Ok(None),
            RxSteering::Auto => steering_cpus().map(Some),
            RxSteering::Cpus(c) => Ok(Some(c.clone())),
        }
    }
}

/// Parses a kernel CPU list ("0-3,8,10-11").
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Steers every receive queue of `ifname` (in the caller's network namespace)
/// to `cpus`; returns how many queues were set.
pub fn set_rps(ifname: &str, cpus: &CpuMask) -> Result<usize, SandboxError> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return Err(SandboxError::InvalidLinkName(ifname.to_owned()));
    }
    let err = |op: &'static str, source: io::Error| SandboxError::Sysfs {
        ifname: ifname.to_owned(),
        op,
        source,
    };
    let mask = cpus.to_kernel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // CLONE_NEWNS unshares this thread's filesystem context too: the
            // rest of the process keeps its mounts.
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| err("unshare mount namespace", e.into()))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| err("make / a slave mount", e.into()))?;
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(|e| err("mount sysfs", e.into()))?;
            write_queues(Path::new("/sys/class/net").join(ifname).join("queues"), &mask)
                .map_err(|e| err("write rps_cpus", e))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn write_queues(dir: std::path::PathBuf, mask: &str) -> io::Result<usize> {
    let mut set = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rx-")) {
            fs::write(path.join("rps_cpus"), mask)?;
            set += 1;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_in_the_kernels_format() {
        assert_eq!(CpuMask(vec![0]).to_kernel(), "1");
        assert_eq!(CpuMask(vec![0, 1]).to_kernel(), "3");
        assert_eq!(CpuMask(vec![1, 4, 31]).to_kernel(), "80000012");
        assert_eq!(CpuMask(vec![0, 32]).to_kernel(), "1,00000001");
        assert_eq!(CpuMask(vec![64]).to_kernel(), "1,00000000,00000000");
        assert_eq!(CpuMask(vec![0, 2]).to_string(), "0,2");
    }

    #[test]
    fn steering_avoids_the_daemons_cpus_when_pinned() {
        let online = [0, 1, 2, 3];
        assert_eq!(steering_cpus_from(&[1], &online).cpus(), &[0, 2, 3]);
        assert_eq!(steering_cpus_from(&[0, 1, 2, 3], &online).cpus(), &online);
        // Affinity naming no online CPU: all.
        assert_eq!(steering_cpus_from(&[7], &online).cpus(), &online);
    }

    #[test]
    fn steering_settings_parse_and_print() {
        assert_eq!("off".parse::<RxSteering>(), Ok(RxSteering::Off));
        assert_eq!("auto".parse::<RxSteering>(), Ok(RxSteering::Auto));
        assert_eq!(
            "0,2-3".parse::<RxSteering>(),
            Ok(RxSteering::Cpus(CpuMask(vec![0, 2, 3])))
        );
        assert!("fast".parse::<RxSteering>().unwrap_err().contains("CPU list"));
        assert_eq!(RxSteering::Cpus(CpuMask(vec![1])).to_string(), "1");
        assert_eq!(RxSteering::Off.resolve().unwrap(), None);
        assert_eq!(RxSteering::default(), RxSteering::Off);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8\n"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn bad_names_are_refused_before_any_mount() {
        let m = CpuMask(vec![0]);
        assert!(matches!(set_rps("../x", &m), Err(SandboxError::InvalidLinkName(_))));
        assert!(matches!(set_rps("", &m), Err(SandboxError::InvalidLinkName(_))));
    }
}
