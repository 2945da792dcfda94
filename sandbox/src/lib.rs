//! Plexus sandboxes: the kernel side of a container's network stack.
//!
//! Role: create and delete named network namespaces (visible to `ip netns list`),
//! create veth pairs and TAP devices, move interfaces between namespaces and
//! configure them (name, MAC, MTU, addresses, routes, up/down) through netlink,
//! write a sandbox's `hosts` and `resolv.conf`, run commands inside a sandbox, and
//! open sockets inside one from outside ([`sock`]).
//!
//! Decisions (netavark's habits):
//! - Never `setns` on a long-lived thread. Entering a namespace happens on a
//!   short-lived thread ([`netns::run_in`]) or in a forked child right before `exec`.
//! - One netlink socket per namespace, opened by such a thread and then used from
//!   anywhere ([`netlink::Netlink::open_in`]).
//! - Teardown keeps going and collects errors ([`TeardownErrors`]).
//! - `unsafe` lives only in the thin sys layers (`tap` ioctls, the `exec` pre-exec
//!   hook), each block with a `// SAFETY:` comment; `netns` and `netlink` use the
//!   safe wrappers of `nix` and `netlink-sys`.
//!
//! This crate never imports the switch or the CNM crate; MAC addresses cross its
//! API as `[u8; 6]`.

pub mod error;
pub mod exec;
pub mod files;
pub mod netlink;
pub mod netns;
pub mod sock;
pub mod sysfs;
pub mod tap;
pub mod userns;

pub use error::{SandboxError, TeardownErrors};
