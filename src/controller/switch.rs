//! The switch's tables as the controller shows them: MAC tables, port
//! counters, NAT flows, the descriptor budget and the worker's health, with
//! ids turned into names; and the rebuild of the drivers' runtime state at
//! start.

use std::sync::Arc;

use plexus_drivers::{Driver, SwitchView};

use super::records::{endpoint_spec, network_spec};
use super::{Controller, Core};
use crate::error::{Error, Result};
use crate::model::{FdbInfo, NatInfo, PortInfo};

impl Controller {
    /// Rebuilds the drivers' runtime state (bridge domains, switch ports) from
    /// the records; an endpoint whose interface had to be made again is
    /// recorded as not joined (to a Plexus or an engine's sandbox).
    pub(super) fn restore_dataplane(&self) -> Result<()> {
        let mut core = self.lock();
        for n in core.state.networks.clone() {
            self.driver(&n.driver)?.create_network(&network_spec(&n))?;
        }
        let mut changed = false;
        for e in core.state.endpoints.clone() {
            let net = core.network_by_id(&e.network)?.clone();
            let drv = self.driver(&net.driver)?;
            let sb = e
                .sandbox
                .as_deref()
                .and_then(|s| core.sandbox_by_id(s).ok())
                .map(|sb| self.sandbox_spec(sb, &e));
            if !drv.restore_endpoint(&network_spec(&net), &endpoint_spec(&e), sb.as_ref())? {
                let rec = core.endpoint_mut(&e.id)?;
                changed |= rec.sandbox.take().is_some();
                // An engine's sandbox lost the interface with it (the
                // container's namespace went while the daemon was down): the
                // engine joins again or deletes it.
                changed |= rec.external_sandbox.take().is_some();
                rec.ifname = None;
                rec.default_route = false;
            }
        }
        if changed {
            core.commit()?;
        }
        Ok(())
    }

    pub(super) fn switch_of<'a>(&self, drv: &'a Arc<dyn Driver>, network: &str) -> Result<&'a dyn SwitchView> {
        drv.switch().ok_or_else(|| {
            Error::InvalidOption(format!(
                "network {network} is not switched by Plexus (driver {})",
                drv.name()
            ))
        })
    }

    /// The MAC table of a network: address, endpoint, age.
    pub fn fdb(&self, network: &str) -> Result<Vec<FdbInfo>> {
        let core = self.lock();
        let net = core.network(network)?.clone();
        let drv = self.driver(&net.driver)?;
        let mut rows = self.switch_of(&drv, &net.name)?.fdb(&net.id)?;
        for r in &mut rows {
            name_endpoint(&core, &mut r.endpoint);
        }
        Ok(rows)
    }

    /// Number of entries in a network's MAC table (bounded by its size option).
    pub fn fdb_len(&self, network: &str) -> Result<usize> {
        let core = self.lock();
        let net = core.network(network)?.clone();
        let drv = self.driver(&net.driver)?;
        Ok(self.switch_of(&drv, &net.name)?.fdb_len(&net.id)?)
    }

    /// Where the switch's file descriptor budget stands: ports, published
    /// listeners and NAT flows, and one endpoint's share of flows.
    pub fn fd_use(&self) -> Result<plexus_switch::FdUse> {
        Ok(self.switch()?.fd_use()?)
    }

    /// "What if" endpoint `from` sent `probe` to `to` (from its own address,
    /// or `src_ip`): every step the switch would take, by the same code as
    /// real frames, without sending or changing anything.
    pub fn trace(
        &self,
        from: &str,
        to: std::net::Ipv4Addr,
        probe: plexus_switch::dataplane::explain::Probe,
        src_ip: Option<std::net::Ipv4Addr>,
    ) -> Result<Vec<String>> {
        let core = self.lock();
        let ep = core.endpoint_any(from)?.clone();
        let net = core.network_by_id(&ep.network)?.clone();
        let (Some(mac), Some(addr), Some(subnet)) = (ep.mac, ep.addr, net.subnet) else {
            return Err(Error::InvalidOption(format!(
                "endpoint {from} has no address to send from"
            )));
        };
        let gw = net.gateway.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let mut steps = Vec::new();
        // The next hop's MAC, as the container's ARP would find it.
        let dst_mac = if subnet.contains(&to) && to != gw {
            match core
                .state
                .endpoints
                .iter()
                .find(|e| e.network == net.id && e.addr.map(|a| a.addr()) == Some(to))
            {
                Some(e) => e.mac.unwrap_or(plexus_switch::MacAddr::BROADCAST),
                None => {
                    steps.push(format!(
                        "{to} is in {} but no endpoint has it: ARP would go unanswered",
                        net.name
                    ));
                    return Ok(steps);
                }
            }
        } else {
            plexus_switch::MacAddr::from_ipv4(gw)
        };
        let src = src_ip.unwrap_or(addr.addr());
        steps.push(format!(
            "{} sends {probe:?} {src} -> {to} (source MAC {mac}, destination MAC {dst_mac})",
            ep.name
        ));
        let frame = plexus_switch::dataplane::explain::probe_frame(mac, dst_mac, src, to, probe);
        let drv = self.driver(&net.driver)?;
        steps.extend(self.switch_of(&drv, &net.name)?.explain(&ep.id, frame)?);
        Ok(steps)
    }

    /// Starts capturing the ports of every endpoint of `network`, or of
    /// `endpoint` alone: up to `queue` frames wait for the reader, each cut
    /// to `snaplen` bytes (`decisions`: a line per received frame saying
    /// what the switch did with it, instead of the frames). Returns the
    /// capture and the endpoints' names.
    pub fn capture(
        &self,
        network: Option<&str>,
        endpoint: Option<&str>,
        queue: usize,
        snaplen: u32,
        decisions: bool,
    ) -> Result<(plexus_switch::dataplane::capture::Capture, Vec<String>)> {
        // The endpoints, found as every other command finds them.
        let handles = match (network, endpoint) {
            (Some(n), Some(e)) => vec![self.network(n)?.endpoint(e)?],
            (None, Some(e)) => vec![self.endpoint(e)?],
            (Some(n), None) => self.network(n)?.endpoints()?,
            (None, None) => return Err(Error::InvalidOption("capture needs a network or an endpoint".into())),
        };
        let core = self.lock();
        let eps = handles
            .iter()
            .map(|h| core.endpoint_by_id(h.id()).cloned())
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = eps.first() else {
            return Err(Error::InvalidOption("that network has no endpoints to capture".into()));
        };
        let net = core.network_by_id(&first.network)?.clone();
        let drv = self.driver(&net.driver)?;
        let sw = self.switch_of(&drv, &net.name)?;
        let ids: Vec<String> = eps.iter().map(|e| e.id.clone()).collect();
        let cap = sw.capture(&ids, queue, snaplen, decisions)?;
        Ok((cap, eps.into_iter().map(|e| e.name).collect()))
    }

    /// The gateways' DNS counters, and the upstreams it forwards to.
    pub fn dns_stats(&self) -> Result<(plexus_switch::dns::DnsStats, Vec<std::net::SocketAddrV4>)> {
        Ok((self.switch()?.dns_stats()?, self.inner.dns_upstreams.clone()))
    }

    /// Whether the switch's worker runs, and why it died if it does not.
    pub fn health(&self) -> Result<plexus_switch::Health> {
        Ok(self.switch()?.health())
    }

    /// The outbound NAT flows, by endpoint.
    pub fn nat(&self) -> Result<Vec<NatInfo>> {
        let core = self.lock();
        let mut out = self.switch()?.nat()?;
        for r in &mut out {
            name_endpoint(&core, &mut r.endpoint);
        }
        out.sort_by(|a, b| {
            (&a.endpoint, a.proto, a.inside, a.outside).cmp(&(&b.endpoint, b.proto, b.inside, b.outside))
        });
        Ok(out)
    }

    /// Every switch port's counters, by endpoint.
    pub fn stats(&self) -> Result<Vec<PortInfo>> {
        let core = self.lock();
        let mut out = self.switch()?.ports()?;
        for r in &mut out {
            name_endpoint(&core, &mut r.endpoint);
            if let Ok(n) = core.network_by_id(&r.network) {
                r.network.clone_from(&n.name);
            }
        }
        out.sort_by(|a, b| (&a.network, &a.endpoint).cmp(&(&b.network, &b.endpoint)));
        Ok(out)
    }

    /// The Plexus switch (the bridge driver's; the one driver that has one).
    fn switch(&self) -> Result<&dyn SwitchView> {
        self.inner
            .drivers
            .values()
            .find_map(|d| d.switch())
            .ok_or_else(|| Error::InvalidOption("no driver runs the Plexus switch".into()))
    }
}

/// Replaces an endpoint id (as a driver names it) with the endpoint's name.
fn name_endpoint(core: &Core, id: &mut String) {
    if let Ok(e) = core.endpoint_by_id(id) {
        id.clone_from(&e.name);
    }
}
