//! The `null` driver: a sandbox with loopback only. Endpoints have no interface
//! and no address; joining one changes nothing in the namespace (the controller
//! brings `lo` up when it makes any sandbox).

use crate::{Driver, DriverError, EndpointSpec, NetworkSpec, SandboxSpec};

/// Loopback-only networking.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullDriver;

impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "null"
    }
    fn uses_ipam(&self) -> bool {
        false
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
    fn join(&self, _: &NetworkSpec, _: &EndpointSpec, _: &SandboxSpec) -> Result<(), DriverError> {
        Ok(())
    }
    fn leave(&self, _: &NetworkSpec, _: &EndpointSpec, _: &SandboxSpec) -> Result<(), DriverError> {
        Ok(())
    }
}
