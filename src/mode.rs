//! Rootful or rootless: which one a process runs in, why, and what the host
//! allows an unprivileged user.
//!
//! Role: the daemon decides its mode once at start ([`Mode::detect`]) and says
//! why (`plexus info`); in rootless mode it also reports the host features a
//! user without privileges depends on ([`rootless_checks`]), each with what to
//! do when it is missing, instead of failing later with a bare `EPERM`.
//!
//! Decision: the mode follows the effective capabilities, not only the uid: a
//! process with `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` (a capable service account)
//! can create namespaces and links in the host's namespace and runs rootful; any
//! other runs rootless. The checks only read files under `/proc` and `/etc` and
//! open `/dev/net/tun`: they change nothing.

use std::path::{Path, PathBuf};

use plexus_sandbox::userns::subordinate_range;

/// How Plexus reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Root (or the capabilities): namespaces and links in the host's namespace.
    Rootful,
    /// An ordinary user: everything inside user namespaces the daemon owns.
    Rootless,
}

/// `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

impl Mode {
    /// The mode of this process, and why.
    pub fn detect() -> (Mode, String) {
        let uid = nix::unistd::geteuid();
        let caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| effective_caps(&s))
            .unwrap_or(0);
        decide(uid.as_raw(), caps)
    }

    /// `"rootful"` or `"rootless"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rootful => "rootful",
            Mode::Rootless => "rootless",
        }
    }
}

/// The mode for effective uid `uid` with effective capability set `caps`.
fn decide(uid: u32, caps: u64) -> (Mode, String) {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if uid == 0 {
        (Mode::Rootful, "running as root".to_owned())
    } else if has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN) {
        (Mode::Rootful, format!("uid {uid} with CAP_NET_ADMIN and CAP_SYS_ADMIN"))
    } else {
        (
            Mode::Rootless,
            format!("uid {uid} without CAP_NET_ADMIN and CAP_SYS_ADMIN: sandboxes live in user namespaces"),
        )
    }
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The state directory of a rootless daemon: `$XDG_DATA_HOME/plexus`, else
/// `$HOME/.local/share/plexus`; `None` if neither variable is set.
pub fn rootless_state_dir(xdg_data_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match (
        xdg_data_home.filter(|s| s.starts_with('/')),
        home.filter(|s| !s.is_empty()),
    ) {
        (Some(x), _) => Some(Path::new(x).join("plexus")),
        (None, Some(h)) => Some(Path::new(h).join(".local/share/plexus")),
        (None, None) => None,
    }
}

/// One host feature a rootless daemon depends on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// What is checked: `user_namespaces`, `tun`, `subordinate_ids`,
    /// `unprivileged_ports`, `ping`.
    pub name: String,
    /// Whether it is available.
    pub ok: bool,
    /// What was found, and what to do if it is missing.
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Checks the host for user `user` (name, uid, gid).
pub fn rootless_checks(user: &str, uid: u32, gid: u32) -> Vec<Check> {
    let mut out = Vec::new();

    let max = read_trim("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let clone = read_trim("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    out.push(if max == Some(0) {
        check(
            "user_namespaces",
            false,
            "disabled: user.max_user_namespaces is 0 (an administrator can run: sysctl -w user.max_user_namespaces=15000)"
                .to_owned(),
        )
    } else if clone.as_deref() == Some("0") {
        check(
            "user_namespaces",
            false,
            "disabled: kernel.unprivileged_userns_clone is 0 (an administrator can run: sysctl -w kernel.unprivileged_userns_clone=1)"
                .to_owned(),
        )
    } else if apparmor.as_deref() == Some("1") {
        check(
            "user_namespaces",
            false,
            "restricted by AppArmor: kernel.apparmor_restrict_unprivileged_userns is 1 (an administrator can allow \
             the plexus binary with an AppArmor profile, or set it to 0)"
                .to_owned(),
        )
    } else {
        check(
            "user_namespaces",
            true,
            format!("enabled (at most {} per user)", max.map_or("?".to_owned(), |m| m.to_string())),
        )
    });

    out.push(
        match std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
            Ok(_) => check("tun", true, "/dev/net/tun opens for reading and writing".to_owned()),
            Err(e) => check(
                "tun",
                false,
                format!(
                    "/dev/net/tun: {e} (endpoints are TAP devices: an administrator can run chmod 0666 /dev/net/tun, \
                 or load the tun module)"
                ),
            ),
        },
    );

    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let newuidmap = plexus_sandbox::userns::id_mapper("newuidmap").is_some();
    out.push(match (subordinate_range(&subuid, user, uid), newuidmap) {
        (Some((start, count)), true) => check(
            "subordinate_ids",
            true,
            format!("{count} ids from {start} (/etc/subuid), mapped with newuidmap"),
        ),
        (Some(_), false) => check(
            "subordinate_ids",
            false,
            "/etc/subuid has a range but newuidmap is missing (install the uidmap package): only your own uid \
             maps into sandboxes"
                .to_owned(),
        ),
        (None, _) => check(
            "subordinate_ids",
            false,
            format!(
                "no range for {user} in /etc/subuid: only your own uid maps into sandboxes (an administrator \
                 can run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})"
            ),
        ),
    });

    let start = read_trim("/proc/sys/net/ipv4/ip_unprivileged_port_start").and_then(|s| s.parse::<u32>().ok());
    out.push(match start {
        Some(0) => check("unprivileged_ports", true, "every port can be published".to_owned()),
        Some(p) => check(
            "unprivileged_ports",
            true,
            format!("host ports below {p} cannot be published (net.ipv4.ip_unprivileged_port_start)"),
        ),
        None => check(
            "unprivileged_ports",
            false,
            "unknown (no ip_unprivileged_port_start)".to_owned(),
        ),
    });

    let range = read_trim("/proc/sys/net/ipv4/ping_group_range").and_then(|s| parse_range(&s));
    out.push(match range {
        Some((lo, hi)) if lo <= gid && gid <= hi => check("ping", true, format!("gid {gid} may use ping sockets")),
        _ => check(
            "ping",
            false,
            format!(
                "gid {gid} is outside net.ipv4.ping_group_range: ping from containers fails (an administrator \
                 can run: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\")"
            ),
        ),
    });
    out
}

/// `"LO HI"` (as `ping_group_range`).
fn parse_range(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_uid_and_capabilities() {
        assert_eq!(decide(0, 0).0, Mode::Rootful);
        let both = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN);
        assert_eq!(decide(1000, both).0, Mode::Rootful);
        let (mode, why) = decide(1000, 1 << CAP_NET_ADMIN);
        assert_eq!(mode, Mode::Rootless);
        assert!(why.contains("uid 1000"), "{why}");
        assert_eq!(
            effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn rootless_state_dir_follows_xdg() {
        assert_eq!(
            rootless_state_dir(Some("/x/data"), Some("/home/u")),
            Some(PathBuf::from("/x/data/plexus"))
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        assert_eq!(
            rootless_state_dir(Some("rel"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.local/share/plexus"))
        );
        assert_eq!(rootless_state_dir(None, None), None);
    }

    #[test]
    fn subordinate_ranges_and_ping_ranges_parse() {
        let text = "alice:100000:65536\n1001:200000:65536\nbob:x:1\ncarol:300000:0\n";
        assert_eq!(subordinate_range(text, "alice", 1000), Some((100_000, 65_536)));
        assert_eq!(subordinate_range(text, "dave", 1001), Some((200_000, 65_536)));
        assert_eq!(subordinate_range(text, "bob", 1002), None);
        assert_eq!(subordinate_range(text, "carol", 1003), None);
        assert_eq!(parse_range("1\t0"), Some((1, 0)));
        assert_eq!(parse_range("0 2147483647"), Some((0, 2_147_483_647)));
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn checks_name_every_feature_and_say_what_to_do() {
        let checks = rootless_checks("nobody", 65534, 65534);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "user_namespaces",
                "tun",
                "subordinate_ids",
                "unprivileged_ports",
                "ping"
            ]
        );
        for c in &checks {
            assert!(!c.detail.is_empty(), "{c:?}");
        }
    }
}
