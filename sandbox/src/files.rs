//! A sandbox's `hosts` and `resolv.conf`, written atomically (temp file, fsync,
//! rename) under the controller's state directory.
//!
//! The contents are built by pure functions ([`hosts_content`],
//! [`resolv_conf_content`]) so they are tested without touching the disk; the
//! `write_*` functions add the atomic write. The files are bind-mounted over
//! `/etc/hosts` and `/etc/resolv.conf` by [`crate::exec`], so a rename never leaves
//! a reader with a half-written file. They are written mode 0644: processes of
//! any user in the container read them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::SandboxError;

/// The lines every hosts file starts with (Docker's and Debian's defaults).
pub const LOCALHOST_LINES: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// One `/etc/hosts` line: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its names, most specific first (e.g. `c1.example.org c1`).
    pub names: Vec<String>,
}

/// A host name fits on a hosts line: non-empty, no whitespace, no control
/// characters, no `#` (which would start a comment).
fn valid_host_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

/// The text of a hosts file: [`LOCALHOST_LINES`], then `ADDR\tname1 name2` per
/// entry. Entries without names are left out. A name with whitespace, a control
/// character or `#` is an `InvalidInput` error naming it.
pub fn hosts_content(entries: &[HostsEntry]) -> io::Result<String> {
    let mut out = String::from(LOCALHOST_LINES);
    for entry in entries {
        if let Some(bad) = entry.names.iter().find(|n| !valid_host_name(n)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid host name {bad:?}"),
            ));
        }
        if entry.names.is_empty() {
            continue;
        }
        out.push_str(&format!("{}\t{}\n", entry.addr, entry.names.join(" ")));
    }
    Ok(out)
}

/// Writes a hosts file: the localhost lines, then one line per entry.
pub fn write_hosts(path: &Path, entries: &[HostsEntry]) -> Result<(), SandboxError> {
    let content = hosts_content(entries).map_err(|source| SandboxError::File {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(path, content.as_bytes())
}

/// True if a `nameserver` value is a loopback address (127.0.0.0/8 or ::1), which
/// does not reach the host's resolver from another namespace.
fn is_loopback_nameserver(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The text of a sandbox's resolv.conf, from the host's: its `nameserver` lines
/// minus loopback ones; `search DOMAINNAME` if `domainname` is given, else the
/// host's last `search` or `domain` line; and the host's `options` lines.
/// Comments and other lines are dropped. With no nameserver left the file has
/// none (the resolver then tries 127.0.0.1); the caller may append its own, e.g.
/// the network's gateway. On a systemd-resolved host, pass
/// `/run/systemd/resolve/resolv.conf` rather than the stub file.
pub fn resolv_conf_content(host_resolv_conf: &str, domainname: Option<&str>) -> String {
    let mut nameservers = Vec::new();
    let mut search = None;
    let mut options = Vec::new();
    for line in host_resolv_conf.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(value) = words.next()
                    && !is_loopback_nameserver(value)
                {
                    nameservers.push(value);
                }
            }
            Some("search" | "domain") => search = Some(line),
            Some("options") => options.push(line),
            _ => {}
        }
    }
    let mut out = String::new();
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    match domainname {
        Some(domain) if !domain.trim().is_empty() => out.push_str(&format!("search {}\n", domain.trim())),
        _ => {
            if let Some(line) = search {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for line in options {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What a sandbox's resolv.conf says instead of the host's (`--dns`,
/// `--dns-search`, `--dns-option`, or the network's gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvOverrides {
    /// Nameservers instead of the host's (the gateway, or `--dns`).
    pub nameservers: Vec<std::net::Ipv4Addr>,
    /// Search domains instead of the host's or the domain name.
    pub search: Vec<String>,
    /// Options besides the host's.
    pub options: Vec<String>,
}

/// [`resolv_conf_content`] with `over` applied: its nameservers replace the
/// host's, its search list the search line, its options are added.
pub fn resolv_conf_with(host_resolv_conf: &str, domainname: Option<&str>, over: &ResolvOverrides) -> String {
    let base = resolv_conf_content(host_resolv_conf, domainname);
    let mut out = String::new();
    for ns in &over.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    for line in base.lines() {
        let first = line.split_whitespace().next();
        let replaced = match first {
            Some("nameserver") => !over.nameservers.is_empty(),
            Some("search" | "domain") => !over.search.is_empty(),
            _ => false,
        };
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !over.search.is_empty() {
        out.push_str(&format!("search {}\n", over.search.join(" ")));
    }
    if !over.options.is_empty() {
        out.push_str(&format!("options {}\n", over.options.join(" ")));
    }
    out
}

/// Writes resolv.conf from the host's: its nameservers minus loopback ones
/// (they do not work from another namespace), `search` set to `domainname` if
/// given (else the host's search line), and the host's options.
pub fn write_resolv_conf(path: &Path, host_resolv_conf: &str, domainname: Option<&str>) -> Result<(), SandboxError> {
    write_atomic(path, resolv_conf_content(host_resolv_conf, domainname).as_bytes())
}

/// Writes resolv.conf as [`resolv_conf_with`] makes it.
pub fn write_resolv_conf_with(
    path: &Path,
    host_resolv_conf: &str,
    domainname: Option<&str>,
    over: &ResolvOverrides,
) -> Result<(), SandboxError> {
    write_atomic(path, resolv_conf_with(host_resolv_conf, domainname, over).as_bytes())
}

/// Distinguishes temp files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory.
///
/// Missing parent directories are created. The file is mode 0644. On failure the
/// temp file is removed and `path` is unchanged.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SandboxError> {
    let err = |source| SandboxError::File {
        path: path.to_owned(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err)?;

    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        // Whatever the umask: the file is bind-mounted for every user in the sandbox.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(err(e));
    }
    File::open(&dir).and_then(|d| d.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_lines_then_entries() {
        let entries = [
            HostsEntry {
                addr: Ipv4Addr::new(172, 20, 0, 2),
                names: vec!["c1.example.org".into(), "c1".into()],
            },
            HostsEntry {
                addr: Ipv4Addr::new(172, 20, 0, 3),
                names: vec!["c2".into()],
            },
            HostsEntry {
                addr: Ipv4Addr::new(172, 20, 0, 4),
                names: vec![],
            },
        ];
        let text = hosts_content(&entries).unwrap();
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             172.20.0.2\tc1.example.org c1\n\
             172.20.0.3\tc2\n"
        );
        assert_eq!(hosts_content(&[]).unwrap(), LOCALHOST_LINES);
    }

    #[test]
    fn hosts_rejects_names_that_break_lines() {
        for bad in ["a b", "a\nb", "", "x#y", "tab\there"] {
            let entries = [HostsEntry {
                addr: Ipv4Addr::LOCALHOST,
                names: vec![bad.into()],
            }];
            let e = hosts_content(&entries).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn resolv_conf_overrides_replace_servers_and_search_and_add_options() {
        let host = "nameserver 9.9.9.9\nsearch corp.example\noptions edns0\n";
        let over = ResolvOverrides {
            nameservers: vec!["10.88.0.1".parse().unwrap()],
            search: vec![],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf_with(host, None, &over),
            "nameserver 10.88.0.1\nsearch corp.example\noptions edns0\noptions ndots:2\n"
        );
        let over = ResolvOverrides {
            nameservers: vec![],
            search: vec!["a.test".into(), "b.test".into()],
            options: vec![],
        };
        assert_eq!(
            resolv_conf_with(host, Some("d.example"), &over),
            "nameserver 9.9.9.9\noptions edns0\nsearch a.test b.test\n"
        );
        assert_eq!(
            resolv_conf_with(host, None, &ResolvOverrides::default()),
            resolv_conf_content(host, None)
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_and_keeps_options() {
        let host = "# generated\n\
                    nameserver 127.0.0.53\n\
                    nameserver 10.0.0.1\n\
                    nameserver ::1\n\
                    nameserver 127.1.2.3\n\
                    nameserver 2001:db8::1\n\
                    search corp.example lab.example\n\
                    options edns0 trust-ad\n\
                    options ndots:2\n\
                    sortlist 130.155.160.0\n";
        assert_eq!(
            resolv_conf_content(host, None),
            "nameserver 10.0.0.1\n\
             nameserver 2001:db8::1\n\
             search corp.example lab.example\n\
             options edns0 trust-ad\n\
             options ndots:2\n"
        );
        assert_eq!(
            resolv_conf_content(host, Some("docker.io")),
            "nameserver 10.0.0.1\n\
             nameserver 2001:db8::1\n\
             search docker.io\n\
             options edns0 trust-ad\n\
             options ndots:2\n"
        );
    }

    #[test]
    fn resolv_conf_last_search_or_domain_wins_and_empty_host() {
        let host = "domain a.example\nsearch b.example\n  nameserver   8.8.8.8  \n";
        assert_eq!(
            resolv_conf_content(host, None),
            "nameserver 8.8.8.8\nsearch b.example\n"
        );
        assert_eq!(resolv_conf_content("nameserver 127.0.0.1\n", None), "");
        assert_eq!(resolv_conf_content("", Some("x.example")), "search x.example\n");
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("plexus-sandbox-{tag}-{}-{n}", std::process::id()))
    }

    #[test]
    fn write_atomic_creates_dirs_replaces_and_leaves_no_temp() {
        let dir = scratch_dir("atomic");
        let path = dir.join("a/b/hosts");
        write_atomic(&path, b"one\n").unwrap();
        write_atomic(&path, b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = fs::read_dir(dir.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("hosts")]);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_files() {
        let dir = scratch_dir("files");
        let hosts = dir.join("hosts");
        let entry = HostsEntry {
            addr: Ipv4Addr::new(10, 1, 2, 3),
            names: vec!["c1".into()],
        };
        write_hosts(&hosts, std::slice::from_ref(&entry)).unwrap();
        assert!(fs::read_to_string(&hosts).unwrap().ends_with("10.1.2.3\tc1\n"));
        let resolv = dir.join("resolv.conf");
        write_resolv_conf(&resolv, "nameserver 127.0.0.1\nnameserver 9.9.9.9\n", Some("d.example")).unwrap();
        assert_eq!(
            fs::read_to_string(&resolv).unwrap(),
            "nameserver 9.9.9.9\nsearch d.example\n"
        );
        let bad = HostsEntry {
            addr: Ipv4Addr::LOCALHOST,
            names: vec!["a b".into()],
        };
        assert!(matches!(write_hosts(&hosts, &[bad]), Err(SandboxError::File { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
