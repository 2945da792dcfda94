//! The names each network's gateway answers (its DNS, in the switch), from
//! the records: for every endpoint joined to a sandbox (Plexus's or an
//! engine's) with an address, its endpoint name, its sandbox's name and its
//! aliases, each also as `NAME.NETWORK`. A container sees the names of
//! every network its sandbox is on, and only those.
//!
//! Decision: the names are derived, never stored. Every commit marks them
//! stale and the lock's release pushes them whole to the drivers
//! ([`super::CoreGuard`]), so no operation can forget to, and a restarted
//! daemon answers the same names as soon as its state is restored.

use std::collections::BTreeMap;

use plexus_drivers::NetworkNames;

use super::{Controller, Core};
use crate::error::Result;
use crate::model::{DnsRecord, NetworkRecord};

impl Core {
    /// The names network `net` answers, sorted by name.
    pub(super) fn dns_records(&self, net: &NetworkRecord) -> Vec<DnsRecord> {
        let mut out = Vec::new();
        let net_name = net.name.to_ascii_lowercase();
        for e in self.state.endpoints.iter().filter(|e| e.network == net.id) {
            let (Some(addr), true) = (e.addr, e.sandbox.is_some() || e.external_sandbox.is_some()) else {
                continue;
            };
            let sandbox = e.sandbox.as_deref().and_then(|s| self.sandbox_by_id(s).ok());
            let mut names: Vec<String> = std::iter::once(e.name.clone())
                .chain(sandbox.map(|s| s.name.clone()))
                .chain(e.aliases.iter().cloned())
                .map(|n| n.to_ascii_lowercase())
                .collect();
            names.dedup();
            for n in names {
                for name in [n.clone(), format!("{n}.{net_name}")] {
                    if !out
                        .iter()
                        .any(|r: &DnsRecord| r.name == name && r.address == addr.addr())
                    {
                        out.push(DnsRecord {
                            name,
                            address: addr.addr(),
                            endpoint: e.name.clone(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
        out
    }

    /// Per endpoint joined to a Plexus sandbox: the other networks of that
    /// sandbox.
    fn dns_scopes(&self) -> Vec<(String, Vec<String>)> {
        let mut by_sandbox: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &self.state.endpoints {
            if let Some(s) = &e.sandbox {
                by_sandbox.entry(s).or_default().push(&e.network);
            }
        }
        self.state
            .endpoints
            .iter()
            .filter_map(|e| {
                let nets = by_sandbox.get(e.sandbox.as_deref()?)?;
                let others: Vec<String> = nets
                    .iter()
                    .filter(|n| **n != e.network)
                    .map(|n| (*n).to_owned())
                    .collect();
                (!others.is_empty()).then(|| (e.id.clone(), others))
            })
            .collect()
    }
}

impl Controller {
    /// The names network `network` answers (`plexus dns NET`).
    pub fn dns(&self, network: &str) -> Result<Vec<DnsRecord>> {
        let core = self.lock();
        let net = core.network(network)?.clone();
        Ok(core.dns_records(&net))
    }

    /// Pushes every network's names to its driver. A driver that fails
    /// keeps its old names; the next change tries again.
    pub(super) fn push_names(&self, core: &Core) {
        let scopes = core.dns_scopes();
        for (name, drv) in &self.inner.drivers {
            let names: Vec<NetworkNames> = core
                .state
                .networks
                .iter()
                .filter(|n| n.driver == *name)
                .map(|n| NetworkNames {
                    network_id: n.id.clone(),
                    records: core.dns_records(n).into_iter().map(|r| (r.name, r.address)).collect(),
                })
                .collect();
            let _ = drv.set_names(&names, &scopes);
        }
    }
}
