//! Controller configuration.

use std::path::PathBuf;

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
    /// Outbound NAT's limits (in total and per endpoint) and idle timeouts.
    pub nat: plexus_switch::NatConfig,
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/plexus";

impl Default for Config {
    /// `/var/lib/plexus`, namespaces `plexus-NAME`, interfaces `px…`, MTU 1500.
    ///
    /// The environment can override the first three (`PLEXUS_STATE_DIR`,
    /// `PLEXUS_NETNS_PREFIX`, `PLEXUS_IFNAME_PREFIX`), so that an example or a test
    /// runs beside a daemon without touching its state.
    fn default() -> Self {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Config {
            state_dir: PathBuf::from(env("PLEXUS_STATE_DIR", DEFAULT_STATE_DIR)),
            netns_prefix: env("PLEXUS_NETNS_PREFIX", "plexus-"),
            ifname_prefix: env("PLEXUS_IFNAME_PREFIX", "px"),
            default_mtu: 1500,
            busy_poll: plexus_switch::DataplaneConfig::default().busy_poll,
            nat: plexus_switch::NatConfig::default(),
        }
    }
}

impl Config {
    /// The default configuration with another state directory.
    pub fn with_state_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: dir.into(),
            ..Config::default()
        }
    }
}
