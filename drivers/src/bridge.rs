//! The `bridge` driver: one bridge domain of the Plexus userspace switch per
//! network, never a kernel bridge.
//!
//! Endpoint life cycle:
//! - create: a veth pair in the daemon's namespace — the host end (`host_ifname`,
//!   up, no address, no master) is what the switch attaches as a port; the
//!   container end (`peer_ifname`) gets the endpoint's MAC and the network's MTU.
//! - join: the container end moves into the sandbox's namespace, is renamed to
//!   `ethN`, gets its address, comes up, and — for the sandbox's gateway endpoint of
//!   a non-internal network — carries the default route.
//! - leave: the container end goes back to the daemon's namespace under its
//!   `peer_ifname`, so a later join finds it again; the address stays reserved.
//! - delete: the veth pair is deleted (both ends go).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use plexus_sandbox::netlink::Netlink;
use plexus_sandbox::{SandboxError, TeardownErrors};

use crate::{Driver, DriverError, EndpointSpec, NetworkSpec, SandboxSpec};

/// The userspace-switch bridge driver.
#[derive(Debug, Default)]
pub struct BridgeDriver {}

/// The calling thread's network namespace: the daemon's. Worker threads never
/// `setns`, so this is the namespace the veth host ends live in.
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

fn open_ns(path: &Path) -> Result<File, SandboxError> {
    File::open(path).map_err(|source| SandboxError::Netns {
        op: "open",
        name: path.display().to_string(),
        source,
    })
}

impl BridgeDriver {
    fn sandbox_key(sb: &SandboxSpec) -> Result<&Path, DriverError> {
        sb.key.as_deref().ok_or_else(|| DriverError::Unsupported {
            driver: "bridge",
            reason: "a bridge endpoint cannot join a host-mode sandbox".into(),
        })
    }
}

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn create_network(&self, _net: &NetworkSpec) -> Result<(), DriverError> {
        Ok(())
    }

    fn delete_network(&self, _net: &NetworkSpec) -> Result<(), DriverError> {
        Ok(())
    }

    fn create_endpoint(&self, net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let mut nl = Netlink::open()?;
        nl.create_veth(&ep.host_ifname, &ep.peer_ifname, Some(net.mtu))?;
        let configure = |nl: &mut Netlink| -> Result<(), SandboxError> {
            let peer = nl.link(&ep.peer_ifname)?;
            if let Some(mac) = ep.mac {
                nl.set_mac(peer.index, mac.octets())?;
            }
            let host = nl.link(&ep.host_ifname)?;
            nl.set_up(host.index, true)
        };
        if let Err(e) = configure(&mut nl) {
            if let Ok(host) = nl.link(&ep.host_ifname) {
                let _ = nl.delete_link(host.index);
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn delete_endpoint(&self, _net: &NetworkSpec, ep: &EndpointSpec) -> Result<(), DriverError> {
        let mut nl = Netlink::open()?;
        let mut errs = TeardownErrors::default();
        // Either end's deletion removes the pair; try the host end, then the peer
        // (left in the host namespace by a leave), and count "already gone" as done.
        for name in [&ep.host_ifname, &ep.peer_ifname] {
            match nl.link(name) {
                Ok(link) => {
                    errs.push(nl.delete_link(link.index));
                }
                Err(SandboxError::NoSuchLink(_)) => {}
                Err(e) => errs.0.push(e),
            }
        }
        errs.into_result().map_err(Into::into)
    }

    fn join(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: &SandboxSpec,
    ) -> Result<(), DriverError> {
        let key = Self::sandbox_key(sb)?;
        let mut host_nl = Netlink::open()?;
        let peer = host_nl.link(&ep.peer_ifname)?;
        let ns = open_ns(key)?;
        host_nl.set_netns(peer.index, ns.as_fd())?;

        let configure = || -> Result<(), SandboxError> {
            let mut nl = Netlink::open_in(key)?;
            let link = nl.link(&ep.peer_ifname)?;
            nl.set_name(link.index, &sb.ifname)?;
            nl.set_mtu(link.index, net.mtu)?;
            if let Some(addr) = ep.addr {
                nl.add_address(link.index, addr)?;
            }
            nl.set_up(link.index, true)?;
            if let (Some(gw), true, false) = (net.gateway, sb.default_route, net.internal) {
                nl.add_default_route(gw, link.index)?;
            }
            Ok(())
        };
        if let Err(e) = configure() {
            // Put the interface back where create left it, so the endpoint stays usable.
            let _ = self.leave(net, ep, sb);
            return Err(e.into());
        }
        Ok(())
    }

    fn leave(
        &self,
        _net: &NetworkSpec,
        ep: &EndpointSpec,
        sb: &SandboxSpec,
    ) -> Result<(), DriverError> {
        let key = Self::sandbox_key(sb)?;
        let mut nl = Netlink::open_in(key)?;
        // The interface carries its ethN name after a join, or still its peer name
        // if the join failed half-way.
        let link = match nl.link(&sb.ifname) {
            Ok(l) => l,
            Err(SandboxError::NoSuchLink(_)) => nl.link(&ep.peer_ifname)?,
            Err(e) => return Err(e.into()),
        };
        nl.set_up(link.index, false)?;
        if link.name != ep.peer_ifname {
            nl.set_name(link.index, &ep.peer_ifname)?;
        }
        let own = open_ns(Path::new(OWN_NETNS))?;
        nl.set_netns(link.index, own.as_fd())?;
        Ok(())
    }
}
