//! A real DNS upstream for the tests of the gateways' DNS: dnsmasq in a
//! namespace the test made (`dnsmasq-base`: the binary, no service),
//! authoritative for `zone.test`, forwarding nothing.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::net::{self, HostOutside};
use super::{Proc, TestEnv};

/// The TXT record of `big.zone.test`: three 200-byte strings, too large
/// for a 512-byte UDP answer.
pub fn big_txt() -> Vec<String> {
    (0..3).map(|i| format!("{i}{}", "x".repeat(199))).collect()
}

/// dnsmasq in "outside" on port 53, authoritative for `zone.test` (`www`
/// and a large TXT `big`, the rest NXDOMAIN), forwarding nothing.
pub fn upstream(env: &TestEnv, ho: &HostOutside) -> Proc {
    dnsmasq(env, &ho.outside_path(), &ho.outside_ip, 53)
}

/// [`upstream`]'s dnsmasq in namespace `ns`, listening on `ip:port`;
/// returns once it answers.
pub fn dnsmasq(env: &TestEnv, ns: &Path, ip: &str, port: u16) -> Proc {
    let mut cmd = Command::new("dnsmasq");
    cmd.arg(format!("--txt-record=big.zone.test,{}", big_txt().join(",")));
    cmd.args([
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--local=/zone.test/",
        "--host-record=www.zone.test,203.0.113.80",
        "--user=root",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--listen-address={ip}"))
    .arg(format!(
        "--pid-file={}",
        env.state_dir.join(format!("dnsmasq-{port}.pid")).display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    net::in_netns(&mut cmd, ns);
    let p = Proc(cmd.spawn().expect("start dnsmasq"));
    let port = port.to_string();
    for _ in 0..100 {
        if dig_in(
            ns,
            &format!("@{ip}"),
            &["-p", &port, "+short", "+time=1", "www.zone.test"],
        )
        .contains("203.0.113.80")
        {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("dnsmasq did not answer on {ip}:{port}");
}

/// `dig ARGS` in namespace `ns`, with a nameserver argument.
pub fn dig_in(ns: &Path, server: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("dig");
    cmd.arg(server).args(args);
    net::in_netns(&mut cmd, ns);
    String::from_utf8_lossy(&cmd.output().expect("run dig").stdout).into_owned()
}
