//! The embedded store: one JSON file under the state directory, committed
//! atomically, guarded by an exclusive lock.
//!
//! - `state.json` is replaced by write-to-temp, fsync, rename, fsync-of-directory,
//!   so a crash at any point leaves either the old or the new file, never a torn
//!   one. A leftover temp file is ignored and overwritten by the next commit.
//! - `lock` is held with `flock(LOCK_EX|LOCK_NB)` for the store's life: a second
//!   controller on the same directory gets [`StoreError::Locked`] instead of two
//!   writers interleaving commits. The kernel drops the lock when the process dies,
//!   so a crashed daemon never leaves a stale lock; a daemon started while the
//!   killed one is still dying waits a bounded moment for it
//!   ([`Store::open_waiting`]).
//! - Every commit first keeps the state it replaces as `state.json.prev` (from
//!   memory, the last state loaded or committed: a file edited behind our back
//!   never becomes the kept one), so a state file that is refused at start
//!   ([`StoreError::Inconsistent`]) can be rolled back by hand.
//!
//! Only records are stored; IPAM bitmaps and the like are derived from them at
//! start.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another controller holds the state directory.
    #[error(
        "state directory {dir} is in use by another plexus controller (is `plexus daemon` running?){}",
        if waited.is_zero() { String::new() } else { format!(" (waited {} s for it)", waited.as_secs()) }
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// How long this open waited for the lock.
        waited: std::time::Duration,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The atomic commit of the state file failed (the previous state is intact).
    #[error("commit {path}: {source}")]
    Commit {
        /// The file.
        path: PathBuf,
        /// The failing step.
        source: plexus_sandbox::SandboxError,
    },
    /// The state file exists but cannot be decoded.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// The state file decodes but cannot be true (two records with one name or
    /// address, a reference to a record that is not there); it is left as it is.
    #[error("state file {path} is inconsistent: {record}: {problem}; {hint}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// The record concerned.
        record: String,
        /// What is wrong with it.
        problem: String,
        /// What to do: where the previous state is, if it is kept.
        hint: String,
    },
    /// The state file was written by a newer Plexus.
    #[error("state file {path} has version {found}; this plexus reads version {supported}")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

const STATE_FILE: &str = "state.json";
const PREV_FILE: &str = "state.json.prev";
const LOCK_FILE: &str = "lock";

/// The on-disk envelope.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    state: T,
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: Flock<File>,
    /// The bytes of the state last loaded or committed (kept as `.prev` by
    /// the next commit).
    last: Option<Vec<u8>>,
}

impl Store {
    /// The version of the state format this build writes.
    pub const VERSION: u32 = 1;

    /// Opens (creating if needed) and locks the state directory; refused at
    /// once if another controller holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_waiting(dir, std::time::Duration::ZERO)
    }

    /// [`Store::open`], waiting up to `wait` for a controller that holds the
    /// lock to let go (a killed daemon still exiting).
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Store, StoreError> {
        let start = std::time::Instant::now();
        loop {
            match Store::try_open(dir) {
                Err(StoreError::Locked { .. }) if start.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(StoreError::Locked { dir, .. }) => {
                    return Err(StoreError::Locked {
                        dir,
                        waited: if wait.is_zero() { wait } else { start.elapsed() },
                    });
                }
                r => return r,
            }
        }
    }

    fn try_open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create directory",
            path: dir.to_owned(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                op: "open",
                path: lock_path.clone(),
                source,
            })?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                StoreError::Locked {
                    dir: dir.to_owned(),
                    waited: std::time::Duration::ZERO,
                }
            } else {
                StoreError::Io {
                    op: "flock",
                    path: lock_path.clone(),
                    source: errno.into(),
                }
            }
        })?;
        Ok(Store {
            dir: dir.to_owned(),
            _lock: lock,
            last: None,
        })
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Where the state before the last commit is kept.
    pub fn prev_path(&self) -> PathBuf {
        self.dir.join(PREV_FILE)
    }

    /// The error for a state file that loaded but is not consistent, with
    /// what to do about it.
    pub fn inconsistent(&self, record: String, problem: String) -> StoreError {
        let (path, prev) = (self.state_path(), self.prev_path());
        let hint = if prev.exists() {
            format!(
                "the state before the last change is kept in {}: stop plexus, then `cp {} {}` to go back to it",
                prev.display(),
                prev.display(),
                path.display()
            )
        } else {
            "no earlier state is kept: correct or remove that record by hand".to_owned()
        };
        StoreError::Inconsistent {
            path,
            record,
            problem,
            hint,
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the committed state, or `None` if nothing was ever committed.
    pub fn load<T: DeserializeOwned>(&mut self) -> Result<Option<T>, StoreError> {
        let path = self.dir.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let state = decode(&path, &data)?;
        self.last = Some(data);
        Ok(Some(state))
    }

    /// Commits `state` atomically, keeping the one it replaces as
    /// `state.json.prev`.
    pub fn commit<T: Serialize>(&mut self, state: &T) -> Result<(), StoreError> {
        let path = self.dir.join(STATE_FILE);
        let data = serde_json::to_vec_pretty(&Envelope {
            version: Self::VERSION,
            state,
        })
        .map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        if let Some(last) = self.last.as_deref().filter(|l| *l != data.as_slice()) {
            let prev = self.prev_path();
            plexus_sandbox::files::write_atomic(&prev, last)
                .map_err(|source| StoreError::Commit { path: prev, source })?;
        }
        plexus_sandbox::files::write_atomic(&path, &data).map_err(|source| StoreError::Commit {
            path: path.clone(),
            source,
        })?;
        self.last = Some(data);
        Ok(())
    }
}

/// Decodes the bytes of the state file `path` (named in errors): its
/// version first, then the state. Any bytes give a value or a typed error.
pub fn decode<T: DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T, StoreError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(data).map_err(|source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    if v.version > Store::VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found: v.version,
            supported: Store::VERSION,
        });
    }
    let env: Envelope<T> = serde_json::from_slice(data).map_err(|source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    Ok(env.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("plexus-store-{}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct S {
        n: u32,
    }

    #[test]
    fn commit_then_load() {
        let d = tempdir();
        let mut s = Store::open(&d).unwrap();
        assert_eq!(s.load::<S>().unwrap(), None);
        s.commit(&S { n: 7 }).unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 7 }));
        assert!(!d.join(PREV_FILE).exists(), "nothing was replaced yet");
        s.commit(&S { n: 8 }).unwrap();
        drop(s);
        let mut s = Store::open(&d).unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 8 }));
        // The replaced state is kept beside it.
        let prev: Envelope<S> = serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
        assert_eq!(prev.state, S { n: 7 });
        // A file edited behind the store's back never becomes the kept one.
        fs::write(d.join(STATE_FILE), b"{\"version\":1,\"state\":{\"n\":666}}").unwrap();
        s.commit(&S { n: 9 }).unwrap();
        let prev: Envelope<S> = serde_json::from_slice(&fs::read(d.join(PREV_FILE)).unwrap()).unwrap();
        assert_eq!(prev.state, S { n: 8 });
        fs::remove_dir_all(d).unwrap();
    }

    use std::time::Duration;

    #[test]
    fn second_open_is_locked() {
        let d = tempdir();
        let _s = Store::open(&d).unwrap();
        match Store::open(&d) {
            Err(StoreError::Locked { dir, waited }) => assert_eq!((dir, waited), (d.clone(), Duration::ZERO)),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Waiting: refused after the wait, and the message says so.
        let t = std::time::Instant::now();
        let e = Store::open_waiting(&d, Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(e.to_string().contains("waited"), "{e}");
        // The holder lets go while we wait: we get it.
        drop(_s);
        let d2 = d.clone();
        let holder = std::thread::spawn(move || {
            let s = Store::open(&d2).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(s);
        });
        std::thread::sleep(Duration::from_millis(50));
        Store::open_waiting(&d, Duration::from_secs(5)).unwrap();
        holder.join().unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn interrupted_write_leaves_old_state() {
        let d = tempdir();
        let mut s = Store::open(&d).unwrap();
        s.commit(&S { n: 1 }).unwrap();
        // A writer that died half-way leaves a torn temp file beside the state.
        fs::write(d.join(".state.json.tmp"), b"{\"version\":1,\"sta").unwrap();
        fs::write(d.join("state.json.tmp"), b"{\"version\":1,\"sta").unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 1 }));
        s.commit(&S { n: 2 }).unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 2 }));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupt_and_future_files_are_typed_errors() {
        let d = tempdir();
        let mut s = Store::open(&d).unwrap();
        fs::write(d.join(STATE_FILE), b"not json").unwrap();
        assert!(matches!(s.load::<S>(), Err(StoreError::Corrupt { .. })));
        fs::write(d.join(STATE_FILE), b"{\"version\":99,\"state\":{\"n\":1}}").unwrap();
        assert!(matches!(s.load::<S>(), Err(StoreError::Version { found: 99, .. })));
        fs::remove_dir_all(d).unwrap();
    }
}
