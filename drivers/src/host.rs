//! The `host` driver: the container uses the host's network stack. A sandbox
//! joined through it has no namespace of its own (its key is the daemon's network
//! namespace); the controller allows one host network.

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
    fn create_network(&self, _: &NetworkSpec) -> Result<(), DriverError> {
        Ok(())
    }
    fn delete_network(&self, _: &NetworkSpec) -> Result<(), DriverError> {
        Ok(())
    }
    fn create_endpoint(&self, _: &NetworkSpec, _: &EndpointSpec) -> Result<(), DriverError> {
        Ok(())
    }
    fn delete_endpoint(&self, _: &NetworkSpec, _: &EndpointSpec) -> Result<(), DriverError> {
        Ok(())
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
    fn leave(&self, _: &NetworkSpec, _: &EndpointSpec, _: &SandboxSpec) -> Result<(), DriverError> {
        Ok(())
    }
}
