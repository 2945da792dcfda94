//! The embedded store: one JSON file under the state directory, committed
//! atomically, guarded by an exclusive lock.
//!
//! - `state.json` is replaced by write-to-temp, fsync, rename, fsync-of-directory,
//!   so a crash at any point leaves either the old or the new file, never a torn
//!   one. A leftover temp file is ignored and overwritten by the next commit.
//! - `lock` is held with `flock(LOCK_EX|LOCK_NB)` for the store's life: a second
//!   controller on the same directory gets [`StoreError::Locked`] instead of two
//!   writers interleaving commits. The kernel drops the lock when the process dies,
//!   so a crashed daemon never leaves a stale lock.
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
    #[error("state directory {dir} is in use by another plexus controller (is `plexus daemon` running?)")]
    Locked {
        /// The directory.
        dir: PathBuf,
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
}

impl Store {
    /// The version of the state format this build writes.
    pub const VERSION: u32 = 1;

    /// Opens (creating if needed) and locks the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
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
                StoreError::Locked { dir: dir.to_owned() }
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
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the committed state, or `None` if nothing was ever committed.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
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
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(&data).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        if v.version > Self::VERSION {
            return Err(StoreError::Version {
                path,
                found: v.version,
                supported: Self::VERSION,
            });
        }
        let env: Envelope<T> = serde_json::from_slice(&data).map_err(|source| StoreError::Corrupt { path, source })?;
        Ok(Some(env.state))
    }

    /// Commits `state` atomically.
    pub fn commit<T: Serialize>(&self, state: &T) -> Result<(), StoreError> {
        let path = self.dir.join(STATE_FILE);
        let data = serde_json::to_vec_pretty(&Envelope {
            version: Self::VERSION,
            state,
        })
        .map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        plexus_sandbox::files::write_atomic(&path, &data).map_err(|source| StoreError::Commit { path, source })
    }
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
        let s = Store::open(&d).unwrap();
        assert_eq!(s.load::<S>().unwrap(), None);
        s.commit(&S { n: 7 }).unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 7 }));
        drop(s);
        let s = Store::open(&d).unwrap();
        assert_eq!(s.load::<S>().unwrap(), Some(S { n: 7 }));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn second_open_is_locked() {
        let d = tempdir();
        let _s = Store::open(&d).unwrap();
        match Store::open(&d) {
            Err(StoreError::Locked { dir }) => assert_eq!(dir, d),
            other => panic!("expected Locked, got {other:?}"),
        }
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn interrupted_write_leaves_old_state() {
        let d = tempdir();
        let s = Store::open(&d).unwrap();
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
        let s = Store::open(&d).unwrap();
        fs::write(d.join(STATE_FILE), b"not json").unwrap();
        assert!(matches!(s.load::<S>(), Err(StoreError::Corrupt { .. })));
        fs::write(d.join(STATE_FILE), b"{\"version\":99,\"state\":{\"n\":1}}").unwrap();
        assert!(matches!(s.load::<S>(), Err(StoreError::Version { found: 99, .. })));
        fs::remove_dir_all(d).unwrap();
    }
}
