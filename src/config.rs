//! Controller configuration.

pub use plexus_drivers::VethIo;
use std::path::PathBuf;

use crate::mode::Mode;

/// How a [`crate::Controller`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the store and the sandboxes' files live.
    pub state_dir: PathBuf,
    /// Prefix of the named network namespaces made for sandboxes
    /// (`ip netns list` shows `{netns_prefix}{sandbox}`).
    pub netns_prefix: String,
    /// Prefix of host-side interface names (at most 8 bytes: names are
    /// `{prefix}h{6 hex}` and `{prefix}c{6 hex}`, within Linux's 15).
    pub ifname_prefix: String,
    /// MTU of endpoints whose network sets none.
    pub default_mtu: u32,
    /// How long the switch keeps polling after traffic before it sleeps.
    pub busy_poll: std::time::Duration,
    /// Where veth host ends steer received frames (RPS); off by default.
    pub rx_steering: plexus_sandbox::sysfs::RxSteering,
    /// How the switch reads and writes veth host ends; AF_PACKET by default.
    pub veth_io: VethIo,
    /// Outbound NAT's limits (in total and per endpoint) and idle timeouts.
    pub nat: plexus_switch::NatConfig,
    /// Rootful or rootless ([`Mode::detect`] by default).
    pub mode: Mode,
    /// Why this mode.
    pub mode_reason: String,
    /// How long to wait for another controller to release the state
    /// directory before giving up (a daemon restarted while the killed one
    /// is still exiting); zero refuses at once.
    pub lock_wait: std::time::Duration,
    /// Where the gateways' DNS forwards names that are not local; `None`:
    /// the IPv4 nameservers of this process's `/etc/resolv.conf` when the
    /// controller starts (a loopback one such as 127.0.0.53 works: queries
    /// leave as the daemon's own sockets).
    pub dns_upstreams: Option<Vec<std::net::SocketAddrV4>>,
}

/// The IPv4 nameservers of a resolv.conf text, port 53.
pub fn resolv_conf_upstreams(text: &str) -> Vec<std::net::SocketAddrV4> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| std::net::SocketAddrV4::new(ip, 53))
        .collect()
}

/// The default state directory (rootful).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/plexus";

/// The default state directory of a process in `mode`: [`DEFAULT_STATE_DIR`],
/// or for a rootless one `$XDG_DATA_HOME/plexus` (else
/// `~/.local/share/plexus`, else `/tmp/plexus-UID/state`).
pub fn default_state_dir(mode: Mode) -> PathBuf {
    match mode {
        Mode::Rootful => PathBuf::from(DEFAULT_STATE_DIR),
        Mode::Rootless => {
            let var = |k: &str| std::env::var(k).ok();
            crate::mode::rootless_state_dir(var("XDG_DATA_HOME").as_deref(), var("HOME").as_deref())
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/plexus-{}/state", nix::unistd::geteuid())))
        }
    }
}

impl Default for Config {
    /// The mode of this process ([`Mode::detect`]), its default state
    /// directory ([`default_state_dir`]), namespaces `plexus-NAME`, interfaces
    /// `px…`, MTU 1500.
    ///
    /// The environment can override the first three (`PLEXUS_STATE_DIR`,
    /// `PLEXUS_NETNS_PREFIX`, `PLEXUS_IFNAME_PREFIX`), so that an example or a test
    /// runs beside a daemon without touching its state.
    fn default() -> Self {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let (mode, mode_reason) = Mode::detect();
        Config {
            state_dir: std::env::var_os("PLEXUS_STATE_DIR").map_or_else(|| default_state_dir(mode), PathBuf::from),
            netns_prefix: env("PLEXUS_NETNS_PREFIX", "plexus-"),
            ifname_prefix: env("PLEXUS_IFNAME_PREFIX", "px"),
            default_mtu: 1500,
            busy_poll: plexus_switch::DataplaneConfig::default().busy_poll,
            rx_steering: plexus_sandbox::sysfs::RxSteering::Off,
            veth_io: VethIo::AfPacket,
            nat: plexus_switch::NatConfig::default(),
            mode,
            mode_reason,
            lock_wait: std::time::Duration::ZERO,
            dns_upstreams: None,
        }
    }
}

impl Config {
    /// The upstreams the gateways' DNS forwards to ([`Config::dns_upstreams`]).
    pub fn upstreams(&self) -> Vec<std::net::SocketAddrV4> {
        self.dns_upstreams
            .clone()
            .unwrap_or_else(|| resolv_conf_upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()))
    }

    /// The default configuration with another state directory.
    pub fn with_state_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: dir.into(),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_the_ipv4_nameservers() {
        let text =
            "# c\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\nnameserver 9.9.9.9 # q\nnameserverx 1.1.1.1\n";
        let got: Vec<String> = resolv_conf_upstreams(text).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["127.0.0.53:53", "9.9.9.9:53"]);
    }
}
