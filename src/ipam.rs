//! IPAM: IPv4 address pools and first-fit address allocation (libnetwork's
//! built-in allocator, local scope).
//!
//! Pure logic: no syscalls. The host's routes are an input ([`Ipam::new`]) so the
//! "skip a default pool that overlaps a host route" rule is tested without a
//! kernel. State is derived: the controller rebuilds an `Ipam` at start from the
//! networks and endpoints it restores, so nothing here is persisted on its own.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// IPAM errors (libnetwork's `ipamapi` set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Text that is not an IPv4 CIDR.
    #[error("invalid CIDR {0:?}")]
    BadCidr(String),
    /// A requested pool overlaps one already in use (or a host route).
    #[error("pool {requested} overlaps with {existing}")]
    OverlapPool {
        /// The requested subnet.
        requested: Ipv4Net,
        /// What it overlaps: a pool in use or a host route.
        existing: Ipv4Net,
    },
    /// Every default pool is taken or overlaps a host route.
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoAvailablePool,
    /// No free address left in the pool (or its ip-range).
    #[error("no available addresses on pool {0}")]
    NoAvailableIps(Ipv4Net),
    /// The address is outside the pool, or is its network or broadcast address.
    #[error("address {addr} is out of range of pool {pool}")]
    OutOfRange {
        /// The address.
        addr: Ipv4Addr,
        /// The pool.
        pool: Ipv4Net,
    },
    /// The address is already allocated.
    #[error("address {0} is already allocated")]
    AlreadyAllocated(Ipv4Addr),
    /// An ip-range that is not inside its subnet.
    #[error("ip-range {range} is not inside subnet {subnet}")]
    BadIpRange {
        /// The range.
        range: Ipv4Net,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// A static address on a network without a user-configured subnet.
    #[error("user specified IP address is supported only when connecting to networks with user configured subnets")]
    StaticIpNeedsUserSubnet,
    /// A pool too small to hold a gateway and one endpoint (/31, /32).
    #[error("subnet {0} is too small (needs at least a /30)")]
    PoolTooSmall(Ipv4Net),
    /// No pool with this subnet.
    #[error("no pool {0}")]
    NoSuchPool(Ipv4Net),
}

/// Parses an IPv4 CIDR such as `10.99.0.0/24`; host bits must be zero.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, IpamError> {
    todo!("{s}")
}

/// libnetwork's local default pools, in order: 172.17.0.0/16 … 172.31.0.0/16,
/// then 192.168.0.0/16 split into /20s.
pub fn default_pools() -> Vec<Ipv4Net> {
    todo!()
}

/// What a network asks of IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    /// `--subnet`: a user pool. `None` takes the first free default pool.
    pub subnet: Option<Ipv4Net>,
    /// `--ip-range`: allocate endpoint addresses only from here (inside `subnet`).
    pub ip_range: Option<Ipv4Net>,
    /// `--gateway`: inside `subnet`; `None` takes the first address.
    pub gateway: Option<Ipv4Addr>,
}

/// A pool handed to a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolInfo {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// Where dynamic addresses come from (the subnet if no ip-range).
    pub ip_range: Ipv4Net,
    /// The gateway address (reserved in the pool).
    pub gateway: Ipv4Addr,
    /// The subnet was given by the user (static `--ip` allowed).
    pub user_subnet: bool,
}

/// The allocator: pools and their allocated addresses.
#[derive(Debug, Clone)]
pub struct Ipam {
    _private: (),
}

impl Ipam {
    /// An allocator that avoids `host_routes` when choosing default pools (routes
    /// of prefix length 0, the default route, are ignored).
    pub fn new(host_routes: Vec<Ipv4Net>) -> Ipam {
        todo!("{host_routes:?}")
    }

    /// Reserves a pool for a network and its gateway address.
    /// Errors: `OverlapPool` (with a pool in use, or — for a user subnet — a host
    /// route), `NoAvailablePool`, `BadIpRange`, `OutOfRange` (gateway),
    /// `PoolTooSmall`.
    pub fn request_pool(&mut self, req: &PoolRequest) -> Result<PoolInfo, IpamError> {
        todo!("{req:?}")
    }

    /// Releases a pool and every address in it.
    pub fn release_pool(&mut self, subnet: Ipv4Net) -> Result<(), IpamError> {
        todo!("{subnet}")
    }

    /// Allocates an address in the pool: `preferred` if given (must be inside the
    /// subnet, not network/broadcast, free; only for a user subnet), else the
    /// lowest free address of the ip-range (first fit).
    pub fn request_address(&mut self, subnet: Ipv4Net, preferred: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        todo!("{subnet}{preferred:?}")
    }

    /// Releases an address; it becomes allocatable again.
    pub fn release_address(&mut self, subnet: Ipv4Net, addr: Ipv4Addr) -> Result<(), IpamError> {
        todo!("{subnet}{addr}")
    }

    /// True if `addr` is allocated in the pool (the gateway counts).
    pub fn is_allocated(&self, subnet: Ipv4Net, addr: Ipv4Addr) -> bool {
        todo!("{subnet}{addr}")
    }
}
