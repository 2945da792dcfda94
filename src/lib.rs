//! Plexus: container networking on a userspace switch, in the model of libnetwork.
pub mod ipam;
