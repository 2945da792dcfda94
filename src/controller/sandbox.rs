//! Sandboxes: create (a namespace from the backend, its hosts and
//! resolv.conf), look up, re-create what the kernel lost, delete.

use std::path::PathBuf;

use plexus_drivers::SandboxSpec;
use plexus_sandbox::SandboxError;
use plexus_sandbox::files::{self, HostsEntry};

use super::{Controller, Core, Endpoint, Sandbox, new_id, validate_name};
use crate::error::{Error, Result};
use crate::model::{EndpointRecord, SandboxInfo, SandboxRecord};
use crate::options::SandboxOptions;

impl Controller {
    /// Creates a sandbox: a named network namespace (`ip netns list` shows it) with
    /// `lo` up, and its hosts and resolv.conf files.
    pub fn new_sandbox(&self, name: &str, opts: SandboxOptions) -> Result<Sandbox> {
        validate_name("sandbox", name)?;
        let mut core = self.lock();
        let id = self.create_sandbox(&mut core, name, &opts)?;
        Ok(Sandbox { ctrl: self.clone(), id })
    }

    pub(super) fn create_sandbox(&self, core: &mut Core, name: &str, opts: &SandboxOptions) -> Result<String> {
        if core.state.sandboxes.iter().any(|s| s.name == name) {
            return Err(Error::SandboxExists(name.to_owned()));
        }
        let rec = SandboxRecord {
            id: new_id(),
            name: name.to_owned(),
            netns: (!opts.host_mode).then(|| format!("{}{}", self.inner.config.netns_prefix, name)),
            hostname: opts.hostname.clone().unwrap_or_else(|| name.to_owned()),
            domainname: opts.domainname.clone(),
            dns: opts.dns.clone(),
        };
        if let Some(ns) = &rec.netns {
            self.inner.namespaces.create(ns)?;
        }
        core.state.sandboxes.push(rec.clone());
        let done = self.write_sandbox_files(core, &rec.id).and_then(|()| core.commit());
        if let Err(e) = done {
            core.state.sandboxes.pop();
            let _ = std::fs::remove_dir_all(self.sandbox_dir(&rec.id));
            if let Some(ns) = &rec.netns {
                let _ = self.inner.namespaces.remove(ns);
            }
            return Err(e);
        }
        Ok(rec.id)
    }

    /// Rootless: ends the process that keeps this controller's user namespace,
    /// and with it every sandbox still there. For a controller that must leave
    /// nothing behind (`plexus demo`); a daemon keeps it, so its sandboxes
    /// survive a restart. Nothing to do rootful or without a holder.
    pub fn stop_rootless_holder(&self) -> Result<()> {
        let _core = self.lock();
        self.inner.namespaces.stop()
    }

    /// A sandbox by name (container id) or id.
    pub fn sandbox(&self, name_or_id: &str) -> Result<Sandbox> {
        let core = self.lock();
        let rec = core.sandbox(name_or_id)?;
        Ok(Sandbox {
            ctrl: self.clone(),
            id: rec.id.clone(),
        })
    }

    /// All sandboxes, in creation order.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        let core = self.lock();
        core.state
            .sandboxes
            .iter()
            .map(|s| Sandbox {
                ctrl: self.clone(),
                id: s.id.clone(),
            })
            .collect()
    }

    pub(super) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.inner.config.state_dir.join("sandboxes").join(id)
    }

    pub(super) fn write_sandbox_files(&self, core: &Core, sandbox_id: &str) -> Result<()> {
        let sb = core.sandbox_by_id(sandbox_id)?;
        let dir = self.sandbox_dir(sandbox_id);
        let names = match &sb.domainname {
            Some(d) => vec![format!("{}.{}", sb.hostname, d), sb.hostname.clone()],
            None => vec![sb.hostname.clone()],
        };
        let entries: Vec<HostsEntry> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .filter_map(|e| e.addr)
            .map(|a| HostsEntry {
                addr: a.addr(),
                names: names.clone(),
            })
            .collect();
        files::write_hosts(&dir.join("hosts"), &entries)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        // The gateway's DNS of the first network joined that has a gateway
        // (it answers the names of every network the sandbox is on), unless
        // --dns says otherwise.
        let gateway = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .filter_map(|e| core.network_by_id(&e.network).ok())
            .find_map(|n| n.gateway.filter(|_| n.driver == "bridge"));
        let over = files::ResolvOverrides {
            nameservers: if sb.dns.servers.is_empty() {
                gateway.into_iter().collect()
            } else {
                sb.dns.servers.clone()
            },
            search: sb.dns.search.clone(),
            options: sb.dns.options.clone(),
        };
        files::write_resolv_conf_with(&dir.join("resolv.conf"), &host_resolv, sb.domainname.as_deref(), &over)?;
        Ok(())
    }

    /// Re-creates what the kernel lost while the records survived (after a host
    /// reboot, or an `ip netns del` behind our back): a missing sandbox namespace
    /// is made again with its files. Endpoint interfaces inside it cannot be
    /// recovered; those endpoints are marked left, keeping their addresses.
    pub(super) fn reconcile(&self) {
        let mut core = self.lock();
        let missing: Vec<SandboxRecord> = core
            .state
            .sandboxes
            .iter()
            .filter(|s| s.netns.as_deref().is_some_and(|ns| !self.inner.namespaces.exists(ns)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        for sb in missing {
            let Some(ns) = &sb.netns else { continue };
            if self.inner.namespaces.create(ns).is_err() {
                continue;
            }
            for ep in core
                .state
                .endpoints
                .iter_mut()
                .filter(|e| e.sandbox.as_deref() == Some(&sb.id))
            {
                ep.sandbox = None;
                ep.ifname = None;
                ep.default_route = false;
            }
            let _ = self.write_sandbox_files(&core, &sb.id);
        }
        let _ = core.commit();
    }

    /// What a driver needs of the sandbox `ep` joins.
    pub(super) fn sandbox_spec(&self, sb: &SandboxRecord, ep: &EndpointRecord) -> SandboxSpec {
        let (key, userns) = match &sb.netns {
            Some(ns) => {
                let (key, userns) = self.inner.namespaces.key(ns);
                (Some(key), userns)
            }
            None => (None, None),
        };
        SandboxSpec {
            key,
            userns,
            ifname: ep.ifname.clone().unwrap_or_default(),
            default_route: ep.default_route,
        }
    }

    /// A sandbox's key (its namespace's path; the daemon's own for host mode)
    /// and, rootless, the user namespace to join before it.
    pub(super) fn sandbox_key(&self, sb: &SandboxRecord) -> (PathBuf, Option<PathBuf>) {
        match &sb.netns {
            Some(ns) => self.inner.namespaces.key(ns),
            None => (PathBuf::from(format!("/proc/{}/ns/net", std::process::id())), None),
        }
    }

    pub(super) fn delete_sandbox(&self, core: &mut Core, sandbox_id: &str) -> Result<()> {
        let sb = core.sandbox_by_id(sandbox_id)?.clone();
        let joined: Vec<EndpointRecord> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox_id))
            .cloned()
            .collect();
        let mut first_err: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        for ep in &joined {
            if ep.remove_with_sandbox {
                note(self.delete_endpoint(core, &ep.id, true));
            } else {
                note(self.leave_locked(core, &ep.id));
            }
        }
        // Endpoints `run` made for this sandbox go with it even when they are
        // not joined (a join that failed, or a leave), with their ports.
        let owned: Vec<String> = core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.is_none() && e.owner.as_deref() == Some(sb.name.as_str()))
            .map(|e| e.id.clone())
            .collect();
        for id in owned {
            note(self.delete_endpoint(core, &id, false));
        }
        if let Some(ns) = &sb.netns {
            match self.inner.namespaces.remove(ns) {
                Ok(()) | Err(SandboxError::NoSuchNetns(_)) => {}
                Err(e) => note(Err(e.into())),
            }
        }
        let _ = std::fs::remove_dir_all(self.sandbox_dir(&sb.id));
        core.state.sandboxes.retain(|s| s.id != sb.id);
        note(core.commit());
        first_err.map_or(Ok(()), Err)
    }
}

impl Sandbox {
    /// The sandbox's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sandbox as it is now.
    pub fn info(&self) -> Result<SandboxInfo> {
        let core = self.ctrl.lock();
        let sb = core.sandbox_by_id(&self.id)?;
        let dir = self.ctrl.sandbox_dir(&sb.id);
        let (key, userns) = self.ctrl.sandbox_key(sb);
        Ok(SandboxInfo {
            id: sb.id.clone(),
            name: sb.name.clone(),
            key: sb.netns.as_ref().map(|_| key),
            userns,
            hostname: sb.hostname.clone(),
            domainname: sb.domainname.clone(),
            hosts_path: dir.join("hosts"),
            resolv_conf_path: dir.join("resolv.conf"),
            endpoints: core
                .state
                .endpoints
                .iter()
                .filter(|e| e.sandbox.as_deref() == Some(sb.id.as_str()))
                .map(|e| e.name.clone())
                .collect(),
        })
    }

    /// The sandbox key: the path of its network namespace.
    pub fn key(&self) -> Result<PathBuf> {
        let core = self.ctrl.lock();
        Ok(self.ctrl.sandbox_key(core.sandbox_by_id(&self.id)?).0)
    }

    /// The endpoints joined to it.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let core = self.ctrl.lock();
        core.sandbox_by_id(&self.id)?;
        Ok(core
            .state
            .endpoints
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(self.id.as_str()))
            .map(|e| Endpoint {
                ctrl: self.ctrl.clone(),
                id: e.id.clone(),
            })
            .collect())
    }

    /// Deletes the sandbox: every endpoint leaves (endpoints made with
    /// `remove_with_sandbox` are deleted), then the namespace and files go. Keeps
    /// going after a failed step and returns the first error.
    pub fn delete(&self) -> Result<()> {
        let mut core = self.ctrl.lock();
        self.ctrl.delete_sandbox(&mut core, &self.id)
    }
}
