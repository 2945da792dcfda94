//! Unix sockets the daemon listens on (its API, the Docker plugin): a path
//! that a live server answers on is left alone, a stale one removed, and a
//! new one is bound with mode 0660.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{Context, bail};
use nix::sys::stat::{Mode, umask};

/// Refuses a path that a live daemon answers on or that is not a socket; removes
/// a stale socket.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking socket {}", path.display())),
    };
    if !md.file_type().is_socket() {
        bail!("{} exists and is not a socket; not replacing it", path.display());
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!("another plexus daemon is already listening on {}", path.display()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
            log::info!("removed stale socket {}", path.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("checking socket {}", path.display())),
    }
}

/// Creates the parent directory (0755) and binds the socket with mode 0660.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating socket directory {}", dir.display()))?;
    }
    // The process is still single-threaded apart from the controller's own
    // short-lived helpers, which create no files: the umask change is not
    // observed by anyone else.
    let old = umask(Mode::from_bits_truncate(0o117));
    let listener = UnixListener::bind(path);
    umask(old);
    listener.with_context(|| format!("listening on {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_path_that_is_not_a_socket() {
        let dir = std::env::temp_dir().join(format!("plexus-tools-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-socket");
        fs::write(&file, b"x").unwrap();
        assert!(check_path(&file).is_err());
        assert!(file.exists());
        // A stale socket (nobody listening) is removed; a live one is refused.
        let sock = dir.join("s.sock");
        drop(UnixListener::bind(&sock).unwrap());
        check_path(&sock).unwrap();
        assert!(!sock.exists());
        let live = UnixListener::bind(&sock).unwrap();
        assert!(check_path(&sock).is_err());
        drop(live);
        fs::remove_dir_all(&dir).unwrap();
    }
}
