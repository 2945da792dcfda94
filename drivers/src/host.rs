//! The `host` driver: the container uses the host's network stack. A sandbox
//! joined through it has no namespace of its own (its key is the daemon's network
//! namespace); the controller allows one host network. It makes no kernel
//! objects, so only `join` checks anything.

use crate::{Driver, DriverError, EndpointSpec, NetworkSpec, SandboxSpec};

/// Host networking.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostDriver;

impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }
    fn uses_ipam(&self) -> bool {
        false
    }
    fn host_mode(&self) -> bool {
        true
    }
    fn join(&self, _: &NetworkSpec, _: &EndpointSpec, sb: &SandboxSpec) -> Result<(), DriverError> {
        if sb.key.is_some() {
            return Err(DriverError::Unsupported {
                driver: "host",
                reason: "a host-network endpoint joins only a host-mode sandbox".into(),
            });
        }
        Ok(())
    }
}
