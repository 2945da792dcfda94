//! Shared helpers of the end-to-end tests: root check, unique names, cleanup.
//!
//! Every test gets a [`TestEnv`]: a random tag that prefixes its namespaces
//! (`{tag}-NAME`) and interfaces (`{tag}h…`, `{tag}c…`), and a private state
//! directory. Dropping the env deletes whatever carries its tag, even after a
//! failed assertion, so tests run in parallel and leave nothing behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use plexus::Config;
use plexus_sandbox::{netlink::Netlink, netns};

/// Skips the calling test (with a note) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: this test needs root (it creates network namespaces)");
            return;
        }
    };
}

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

/// `ip -n NS ARGS...` output.
pub fn ip_in(ns: &str, args: &[&str]) -> String {
    run_ok(Command::new("ip").arg("-n").arg(ns).args(args))
}
