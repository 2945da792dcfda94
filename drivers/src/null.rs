//! The `null` driver: a sandbox with loopback only. Endpoints have no interface
//! and no address; joining one changes nothing in the namespace (the controller
//! brings `lo` up when it makes any sandbox), so every life-cycle call keeps the
//! trait's do-nothing default.

use crate::Driver;

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
}
