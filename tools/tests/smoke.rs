//! The `plexus` binary without a daemon: help, usage errors and the
//! unreachable-daemon exit. Needs no root. (Building this test also makes cargo
//! build `target/*/plexus`, which the root crate's `tests/cli.rs` drives against
//! a real daemon.)

use std::process::{Command, Output};

fn plexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .env("PLEXUS_SOCKET", "/nonexistent/plexus-smoke.sock")
        .output()
        .expect("run plexus")
}

#[test]
fn every_command_has_help() {
    let top = plexus(&["--help"]);
    assert!(top.status.success());
    let commands = [
        vec!["daemon"],
        vec!["network", "create"],
        vec!["network", "ls"],
        vec!["sandbox", "create"],
        vec!["endpoint", "create"],
        vec!["run"],
        vec!["exec"],
        vec!["fdb"],
        vec!["stats"],
        vec!["info"],
    ];
    for cmd in commands {
        let mut args = cmd.clone();
        args.push("--help");
        let out = plexus(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage: plexus"), "{args:?}: {text}");
    }
    let run = String::from_utf8_lossy(&plexus(&["run", "--help"]).stdout).into_owned();
    assert!(run.contains("--type <TYPE>") && run.contains("TAP device in the sandbox whose fd the switch holds"));
    for cmd in [&["run"][..], &["endpoint", "create"]] {
        let help = String::from_utf8_lossy(&plexus(&[cmd, &["--help"]].concat()).stdout).into_owned();
        assert!(help.contains("-p, --publish <SPEC>"), "{cmd:?}: {help}");
    }
    let create = String::from_utf8_lossy(&plexus(&["network", "create", "--help"]).stdout).into_owned();
    for flag in ["--mac-ageing <SECS>", "--mac-table-size <N>", "--no-anti-spoofing"] {
        assert!(create.contains(flag), "{flag}: {create}");
    }
    let daemon = String::from_utf8_lossy(&plexus(&["daemon", "--help"]).stdout).into_owned();
    assert!(daemon.contains("--busy-poll-us <US>"), "{daemon}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["network", "create"][..],
        &["run", "--network", "n1", "--type", "macvlan", "c1"],
        &["network", "create", "--mac-ageing", "soon", "n"],
        &["fdb"],
        &["daemon", "--busy-poll-us", "-1"],
    ] {
        assert_eq!(plexus(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn no_daemon_exits_125_with_one_line() {
    for args in [
        &["network", "ls"][..],
        &["fdb", "n1"],
        &["stats", "--format", "json"],
        &["info"],
    ] {
        let out = plexus(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("plexus: cannot reach the daemon") && err.contains("/nonexistent/plexus-smoke.sock"),
            "{args:?}: {err}"
        );
    }
}
