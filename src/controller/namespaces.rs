//! Where sandboxes' network namespaces live: the namespace backend, chosen
//! once when the controller starts (from [`Mode`](crate::mode::Mode)).
//!
//! - [`NamedNetns`] (rootful): a named namespace under `/run/netns`, as
//!   `ip netns add` makes it, so `ip netns exec` works on it.
//! - [`HolderNetns`] (rootless): a namespace made inside the user namespace a
//!   holder process keeps (started at the first sandbox, its pid in the state
//!   directory), bound to a file of the state directory inside the holder's
//!   mount namespace. The holder outlives the daemon, so the sandboxes do too.
//!
//! The backend also says what an endpoint of such a sandbox can be and which
//! host ports the daemon may bind, the two other places where the modes differ.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use plexus_drivers::EndpointKind;
use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::userns::Holder;
use plexus_sandbox::{SandboxError, netns};

use crate::error::Result;

/// A namespace backend.
pub(super) trait Namespaces: Send + Sync + std::fmt::Debug {
    /// Makes the network namespace `ns`, with `lo` up.
    fn create(&self, ns: &str) -> Result<()>;
    /// Removes the network namespace `ns` ([`SandboxError::NoSuchNetns`] if
    /// it was gone).
    fn remove(&self, ns: &str) -> std::result::Result<(), SandboxError>;
    /// Whether the network namespace `ns` exists.
    fn exists(&self, ns: &str) -> bool;
    /// The sandbox key of `ns` (its path as the daemon sees it) and the user
    /// namespace to enter before it, if any.
    fn key(&self, ns: &str) -> (PathBuf, Option<PathBuf>);
    /// Ends what keeps the namespaces alive, and with it every sandbox.
    fn stop(&self) -> Result<()>;
    /// The interface an endpoint asking for `requested` gets.
    fn endpoint_kind(&self, requested: EndpointKind) -> EndpointKind;
    /// The lowest host port the daemon may bind.
    fn first_bindable_port(&self) -> u16;
}

/// The backend for `mode`'s daemon with its state in `state_dir`.
pub(super) fn for_mode(mode: crate::mode::Mode, state_dir: &Path) -> Box<dyn Namespaces> {
    match mode {
        crate::mode::Mode::Rootful => Box::new(NamedNetns),
        crate::mode::Mode::Rootless => Box::new(HolderNetns {
            state_dir: state_dir.to_owned(),
            holder: Mutex::new(None),
        }),
    }
}

/// Rootful: named namespaces (`ip netns list` shows them).
#[derive(Debug)]
pub(super) struct NamedNetns;

impl Namespaces for NamedNetns {
    fn create(&self, ns: &str) -> Result<()> {
        let handle = netns::create(ns)?;
        let lo_up = Netlink::open_in(handle.path()).and_then(|mut nl| {
            let lo = nl.link("lo")?;
            nl.set_up(lo.index, true)
        });
        if let Err(e) = lo_up {
            let _ = netns::delete(ns);
            return Err(e.into());
        }
        Ok(())
    }

    fn remove(&self, ns: &str) -> std::result::Result<(), SandboxError> {
        netns::delete(ns)
    }

    fn exists(&self, ns: &str) -> bool {
        netns::exists(ns)
    }

    fn key(&self, ns: &str) -> (PathBuf, Option<PathBuf>) {
        (Path::new(netns::NETNS_DIR).join(ns), None)
    }

    fn stop(&self) -> Result<()> {
        Ok(())
    }

    fn endpoint_kind(&self, requested: EndpointKind) -> EndpointKind {
        requested
    }

    fn first_bindable_port(&self) -> u16 {
        1
    }
}

/// Rootless: namespaces inside the holder's user namespace.
#[derive(Debug)]
pub(super) struct HolderNetns {
    state_dir: PathBuf,
    /// The holder this controller last saw running.
    holder: Mutex<Option<Holder>>,
}

impl HolderNetns {
    fn pid_file(&self) -> PathBuf {
        self.state_dir.join("userns.pid")
    }

    fn file(&self, ns: &str) -> PathBuf {
        self.state_dir.join("netns").join(ns)
    }

    fn seen(&self) -> MutexGuard<'_, Option<Holder>> {
        self.holder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running holder, started if there is none.
    fn holder(&self) -> Result<Holder> {
        let file = self.pid_file();
        let mut seen = self.seen();
        if let Some(h) = seen.filter(|h| Holder::read(&file) == Some(*h)) {
            return Ok(h);
        }
        let h = Holder::start(&file)?;
        *seen = Some(h);
        Ok(h)
    }
}

impl Namespaces for HolderNetns {
    fn create(&self, ns: &str) -> Result<()> {
        Ok(self.holder()?.create_netns(&self.file(ns))?)
    }

    fn remove(&self, ns: &str) -> std::result::Result<(), SandboxError> {
        let Some(holder) = Holder::read(&self.pid_file()) else {
            // No holder: its namespaces died with it; only the file is left.
            let _ = std::fs::remove_file(self.file(ns));
            return Err(SandboxError::NoSuchNetns(ns.to_owned()));
        };
        *self.seen() = Some(holder);
        holder.delete_netns(&self.file(ns))
    }

    fn exists(&self, ns: &str) -> bool {
        Holder::read(&self.pid_file()).is_some_and(|h| h.netns_exists(&self.file(ns)))
    }

    fn key(&self, ns: &str) -> (PathBuf, Option<PathBuf>) {
        let file = self.file(ns);
        match Holder::read(&self.pid_file()) {
            Some(h) => (
                h.visible(&file),
                Some(PathBuf::from(format!("/proc/{}/ns/user", h.pid()))),
            ),
            None => (file, None),
        }
    }

    fn stop(&self) -> Result<()> {
        *self.seen() = None;
        if let Some(h) = Holder::read(&self.pid_file()) {
            h.stop()?;
            let _ = std::fs::remove_file(self.pid_file());
        }
        Ok(())
    }

    /// A sandbox in a user namespace takes only TAP devices made inside it.
    fn endpoint_kind(&self, _: EndpointKind) -> EndpointKind {
        EndpointKind::Tap
    }

    fn first_bindable_port(&self) -> u16 {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(1024)
    }
}
