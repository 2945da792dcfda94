//! IPAM: IPv4 address pools and first-fit address allocation (libnetwork's
//! built-in allocator, local scope).
//!
//! Pure logic: no syscalls. The host's routes are an input ([`Ipam::new`]) so the
//! "skip a default pool that overlaps a host route" rule is tested without a
//! kernel. State is derived: the controller rebuilds an `Ipam` at start from the
//! networks and endpoints it restores, so nothing here is persisted on its own:
//! [`Ipam::restore_pool`] re-creates a pool exactly as handed out and
//! [`Ipam::reserve_address`] re-reserves an endpoint's address (dynamic or static).
//!
//! Allocation is first fit, both for default pools (the first free one in
//! [`default_pools`] order, so a released pool is reused at once, where libnetwork
//! rotates) and for addresses (the lowest free one, from a per-pool bitmap).
//! The network and broadcast addresses of a subnet are never handed out; the
//! gateway is reserved with its pool and released only with it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// IPAM errors (libnetwork's `ipamapi` set, plus a few of our own:
/// `PoolTooLarge`, `NeedsSubnet`, `NotAllocated`, `IsGateway`).
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
    #[error(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )]
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
    /// No pool has this id (the Docker IPAM plugin's pool ids).
    #[error("pool {0} not found")]
    NoSuchPoolId(String),
    /// A subnet shorter than a /8: its bitmap would be too large (a /8 already
    /// takes 2 MiB).
    #[error("subnet {0} is too large (at most a /8)")]
    PoolTooLarge(Ipv4Net),
    /// `ip_range` or `gateway` given without `subnet` (Docker's rule: an
    /// ip-range or gateway must come with its subnet).
    #[error("every ip-range or gateway must have a corresponding subnet")]
    NeedsSubnet,
    /// [`Ipam::release_address`] of an address that is not allocated.
    #[error("address {0} is not allocated")]
    NotAllocated(Ipv4Addr),
    /// [`Ipam::release_address`] of the pool's gateway: the gateway is held by the
    /// pool and freed only with it ([`Ipam::release_pool`]).
    #[error("address {0} is the gateway of its pool and cannot be released on its own")]
    IsGateway(Ipv4Addr),
}

/// Parses an IPv4 CIDR such as `10.99.0.0/24`; host bits must be zero.
///
/// Strict: exactly `a.b.c.d/len`, dotted-quad octets without leading zeros, a
/// decimal prefix length `0..=32` without sign or leading zeros, no whitespace.
/// Anything else is [`IpamError::BadCidr`] carrying the input text.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, IpamError> {
    let bad = || IpamError::BadCidr(s.to_owned());
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    // `u8::from_str` accepts a leading '+': insist on plain digits.
    let digits_ok = !len.is_empty()
        && len.len() <= 2
        && len.bytes().all(|b| b.is_ascii_digit())
        && !(len.len() > 1 && len.starts_with('0'));
    if !digits_ok {
        return Err(bad());
    }
    let len: u8 = len.parse().map_err(|_| bad())?;
    // `Ipv4Addr::from_str` is strict: four decimal octets, no leading zeros,
    // no whitespace.
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let net = Ipv4Net::new(addr, len).map_err(|_| bad())?;
    if net.trunc() != net {
        return Err(bad());
    }
    Ok(net)
}

/// libnetwork's local default pools, in order: 172.17.0.0/16 … 172.31.0.0/16,
/// then 192.168.0.0/16 split into /20s.
pub fn default_pools() -> Vec<Ipv4Net> {
    // libnetwork lists 172.17/16, 172.18/16, 172.19/16, 172.20/14, 172.24/14 and
    // 172.28/14, each split into /16s: together 172.17.0.0/16 ..= 172.31.0.0/16.
    let mut pools: Vec<Ipv4Net> = (17u8..=31)
        .map(|b| Ipv4Net::new_assert(Ipv4Addr::new(172, b, 0, 0), 16))
        .collect();
    pools.extend((0u8..16).map(|i| Ipv4Net::new_assert(Ipv4Addr::new(192, 168, i << 4, 0), 20)));
    pools
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

/// Smallest accepted prefix length: a /8 bitmap is 2^24 bits = 2 MiB.
const MIN_PREFIX_LEN: u8 = 8;
/// Largest accepted prefix length: a /30 holds a gateway and one endpoint.
const MAX_PREFIX_LEN: u8 = 30;

/// One bit per address of a subnet (bit `i` = network address + `i`).
#[derive(Clone)]
struct Bitmap {
    words: Vec<u64>,
    /// Number of set bits.
    count: u32,
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words themselves can be 2 MiB: show the count only.
        f.debug_struct("Bitmap")
            .field("bits", &(self.words.len() * 64))
            .field("allocated", &self.count)
            .finish()
    }
}

impl Bitmap {
    /// A zeroed bitmap of `size` bits (`size` <= 2^24).
    fn new(size: u32) -> Bitmap {
        let words = size.div_ceil(64).max(1) as usize;
        Bitmap {
            words: vec![0; words],
            count: 0,
        }
    }

    fn get(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Sets bit `i`; false if it was already set (or out of bounds).
    fn set(&mut self, i: u32) -> bool {
        let Some(w) = self.words.get_mut((i / 64) as usize) else {
            return false;
        };
        let mask = 1u64 << (i % 64);
        if *w & mask != 0 {
            return false;
        }
        *w |= mask;
        self.count += 1;
        true
    }

    /// Clears bit `i`; false if it was not set (or out of bounds).
    fn clear(&mut self, i: u32) -> bool {
        let Some(w) = self.words.get_mut((i / 64) as usize) else {
            return false;
        };
        let mask = 1u64 << (i % 64);
        if *w & mask == 0 {
            return false;
        }
        *w &= !mask;
        self.count -= 1;
        true
    }

    /// The lowest clear bit in `lo..=hi`, skipping full words.
    fn first_free(&self, lo: u32, hi: u32) -> Option<u32> {
        if lo > hi {
            return None;
        }
        let (wlo, whi) = (lo / 64, hi / 64);
        for w in wlo..=whi {
            let mut word = *self.words.get(w as usize)?;
            if w == wlo {
                // Treat bits below `lo` as taken.
                word |= (1u64 << (lo % 64)) - 1;
            }
            if w == whi && hi % 64 < 63 {
                // Treat bits above `hi` as taken.
                word |= u64::MAX << (hi % 64 + 1);
            }
            if word != u64::MAX {
                return Some(w * 64 + (!word).trailing_zeros());
            }
        }
        None
    }

    /// The set bits, in increasing order.
    fn iter_set(&self) -> impl Iterator<Item = u32> {
        self.words.iter().zip(0u32..).flat_map(|(&word, w)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// A pool in use: its info and its allocated addresses (the gateway included).
#[derive(Debug, Clone)]
struct Pool {
    info: PoolInfo,
    bits: Bitmap,
}

impl Pool {
    /// Offset of `addr` in the subnet if it is a host address (not network, not
    /// broadcast).
    fn host_offset(&self, addr: Ipv4Addr) -> Result<u32, IpamError> {
        let subnet = self.info.subnet;
        if !subnet.contains(&addr) || addr == subnet.network() || addr == subnet.broadcast() {
            return Err(IpamError::OutOfRange { addr, pool: subnet });
        }
        Ok(u32::from(addr).wrapping_sub(u32::from(subnet.network())))
    }

    fn addr_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.info.subnet.network()).wrapping_add(offset))
    }
}

/// True if two CIDRs share an address (for prefixes, one contains the other).
fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// The allocator: pools and their allocated addresses.
///
/// Each pool keeps a bitmap over its whole subnet (one bit per address), so
/// dynamic allocation is a first-fit scan that skips full 64-bit words, and a
/// static address outside the ip-range is tracked like any other. Subnets from
/// /8 (2 MiB of bitmap) to /30 are accepted.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// Pools in use, by subnet.
    pools: std::collections::BTreeMap<Ipv4Net, Pool>,
    /// Host routes to avoid (default routes removed, host bits cleared).
    host_routes: Vec<Ipv4Net>,
}

impl Ipam {
    /// An allocator that avoids `host_routes` when choosing default pools (routes
    /// of prefix length 0, the default route, are ignored).
    pub fn new(host_routes: Vec<Ipv4Net>) -> Ipam {
        let mut ipam = Ipam {
            pools: std::collections::BTreeMap::new(),
            host_routes: Vec::new(),
        };
        ipam.set_host_routes(host_routes);
        ipam
    }

    /// Replaces the host routes (same filtering as [`Ipam::new`]); pools already
    /// in use are not re-checked.
    pub fn set_host_routes(&mut self, host_routes: Vec<Ipv4Net>) {
        self.host_routes = host_routes
            .into_iter()
            .filter(|r| r.prefix_len() != 0)
            .map(|r| r.trunc())
            .collect();
    }

    /// The host routes in effect (default routes removed, host bits cleared).
    pub fn host_routes(&self) -> &[Ipv4Net] {
        &self.host_routes
    }

    /// Reserves a pool for a network and its gateway address.
    /// Errors: `OverlapPool` (with a pool in use, or — for a user subnet — a host
    /// route), `NoAvailablePool`, `BadIpRange`, `OutOfRange` (gateway),
    /// `PoolTooSmall`.
    ///
    /// Also: `BadCidr` (a subnet or ip-range with host bits set), `PoolTooLarge`
    /// (shorter than /8), `NeedsSubnet` (ip-range or gateway without subnet).
    /// Without a subnet the first default pool ([`default_pools`] order) that
    /// overlaps neither a pool in use nor a host route is taken, so a released
    /// default pool is reused first (libnetwork rotates instead).
    pub fn request_pool(&mut self, req: &PoolRequest) -> Result<PoolInfo, IpamError> {
        let Some(subnet) = req.subnet else {
            if req.ip_range.is_some() || req.gateway.is_some() {
                return Err(IpamError::NeedsSubnet);
            }
            let subnet = default_pools()
                .into_iter()
                .find(|p| {
                    !self.pools.keys().any(|q| overlaps(p, q)) && !self.host_routes.iter().any(|r| overlaps(p, r))
                })
                .ok_or(IpamError::NoAvailablePool)?;
            return self.insert_pool(subnet, None, None, false, false);
        };
        self.insert_pool(subnet, req.ip_range, req.gateway, true, true)
    }

    /// Re-creates a pool exactly as it was handed out (controller restore): the
    /// subnet, ip-range, gateway and `user_subnet` flag of `info` are kept.
    /// Host routes are not checked (the network's own bridge route is one); the
    /// other rules of [`Ipam::request_pool`] for a user subnet apply.
    pub fn restore_pool(&mut self, info: &PoolInfo) -> Result<PoolInfo, IpamError> {
        self.insert_pool(
            info.subnet,
            Some(info.ip_range),
            Some(info.gateway),
            info.user_subnet,
            false,
        )
    }

    /// Validates and inserts a pool, reserving its gateway.
    fn insert_pool(
        &mut self,
        subnet: Ipv4Net,
        ip_range: Option<Ipv4Net>,
        gateway: Option<Ipv4Addr>,
        user_subnet: bool,
        check_routes: bool,
    ) -> Result<PoolInfo, IpamError> {
        if subnet.trunc() != subnet {
            return Err(IpamError::BadCidr(subnet.to_string()));
        }
        if subnet.prefix_len() < MIN_PREFIX_LEN {
            return Err(IpamError::PoolTooLarge(subnet));
        }
        if subnet.prefix_len() > MAX_PREFIX_LEN {
            return Err(IpamError::PoolTooSmall(subnet));
        }
        let ip_range = match ip_range {
            None => subnet,
            Some(range) if range.trunc() != range => {
                return Err(IpamError::BadCidr(range.to_string()));
            }
            Some(range) if !subnet.contains(&range) => {
                return Err(IpamError::BadIpRange { range, subnet });
            }
            Some(range) => range,
        };
        let gateway = gateway.unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1)));
        if let Some(existing) = self.pools.keys().find(|q| overlaps(&subnet, q)) {
            return Err(IpamError::OverlapPool {
                requested: subnet,
                existing: *existing,
            });
        }
        if check_routes && let Some(existing) = self.host_routes.iter().find(|r| overlaps(&subnet, r)) {
            return Err(IpamError::OverlapPool {
                requested: subnet,
                existing: *existing,
            });
        }
        // /8..=/30: the size is 4..=2^24.
        let size = 1u32 << (32 - u32::from(subnet.prefix_len()));
        let mut pool = Pool {
            info: PoolInfo {
                subnet,
                ip_range,
                gateway,
                user_subnet,
            },
            bits: Bitmap::new(size),
        };
        let offset = pool.host_offset(gateway)?;
        pool.bits.set(offset);
        let info = pool.info;
        self.pools.insert(subnet, pool);
        Ok(info)
    }

    /// Releases a pool and every address in it.
    pub fn release_pool(&mut self, subnet: Ipv4Net) -> Result<(), IpamError> {
        self.pools
            .remove(&subnet)
            .map(|_| ())
            .ok_or(IpamError::NoSuchPool(subnet))
    }

    /// Allocates an address in the pool: `preferred` if given (must be inside the
    /// subnet, not network/broadcast, free; only for a user subnet), else the
    /// lowest free address of the ip-range (first fit).
    ///
    /// `subnet` is the pool's subnet as in its [`PoolInfo`]. The ip-range's own
    /// first and last addresses are handed out unless they are the subnet's
    /// network or broadcast address; a preferred address may lie outside the
    /// ip-range. Errors: `NoSuchPool`, `StaticIpNeedsUserSubnet`, `OutOfRange`,
    /// `AlreadyAllocated` (the gateway included), `NoAvailableIps`.
    pub fn request_address(&mut self, subnet: Ipv4Net, preferred: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let pool = self.pools.get_mut(&subnet).ok_or(IpamError::NoSuchPool(subnet))?;
        if let Some(addr) = preferred {
            if !pool.info.user_subnet {
                return Err(IpamError::StaticIpNeedsUserSubnet);
            }
            return Self::reserve_in(pool, addr).map(|()| addr);
        }
        let net = u32::from(subnet.network());
        let range = pool.info.ip_range;
        // Offsets of the usable part of the ip-range: never the subnet's network
        // (offset 0) or broadcast (offset size - 1) address.
        let last_host = u32::from(subnet.broadcast()).wrapping_sub(net).wrapping_sub(1);
        let lo = u32::from(range.network()).wrapping_sub(net).max(1);
        let hi = u32::from(range.broadcast()).wrapping_sub(net).min(last_host);
        let offset = pool.bits.first_free(lo, hi).ok_or(IpamError::NoAvailableIps(subnet))?;
        pool.bits.set(offset);
        Ok(pool.addr_at(offset))
    }

    /// Reserves a specific address regardless of the pool's `user_subnet` flag
    /// (controller restore of an endpoint's address, dynamic or static).
    /// Errors: `NoSuchPool`, `OutOfRange`, `AlreadyAllocated`.
    pub fn reserve_address(&mut self, subnet: Ipv4Net, addr: Ipv4Addr) -> Result<(), IpamError> {
        let pool = self.pools.get_mut(&subnet).ok_or(IpamError::NoSuchPool(subnet))?;
        Self::reserve_in(pool, addr)
    }

    fn reserve_in(pool: &mut Pool, addr: Ipv4Addr) -> Result<(), IpamError> {
        let offset = pool.host_offset(addr)?;
        if pool.bits.set(offset) {
            Ok(())
        } else {
            Err(IpamError::AlreadyAllocated(addr))
        }
    }

    /// Releases an address; it becomes allocatable again.
    ///
    /// Errors: `NoSuchPool`, `OutOfRange` (outside the subnet, or its network or
    /// broadcast address), `IsGateway` (the gateway goes with the pool),
    /// `NotAllocated`.
    pub fn release_address(&mut self, subnet: Ipv4Net, addr: Ipv4Addr) -> Result<(), IpamError> {
        let pool = self.pools.get_mut(&subnet).ok_or(IpamError::NoSuchPool(subnet))?;
        let offset = pool.host_offset(addr)?;
        if addr == pool.info.gateway {
            return Err(IpamError::IsGateway(addr));
        }
        if pool.bits.clear(offset) {
            Ok(())
        } else {
            Err(IpamError::NotAllocated(addr))
        }
    }

    /// True if `addr` is allocated in the pool (the gateway counts).
    pub fn is_allocated(&self, subnet: Ipv4Net, addr: Ipv4Addr) -> bool {
        self.pools
            .get(&subnet)
            .and_then(|pool| pool.host_offset(addr).ok().map(|offset| pool.bits.get(offset)))
            .unwrap_or(false)
    }

    /// The pools in use, ordered by subnet.
    pub fn pools(&self) -> impl Iterator<Item = PoolInfo> {
        self.pools.values().map(|p| p.info)
    }

    /// The pool with this subnet, if in use.
    pub fn pool(&self, subnet: Ipv4Net) -> Option<PoolInfo> {
        self.pools.get(&subnet).map(|p| p.info)
    }

    /// The allocated addresses of a pool in increasing order, the gateway
    /// included (empty for an unknown pool).
    pub fn allocated(&self, subnet: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
        self.pools
            .get(&subnet)
            .into_iter()
            .flat_map(|pool| pool.bits.iter_set().map(|offset| pool.addr_at(offset)))
    }

    /// How many addresses of a pool are allocated, the gateway included (0 for
    /// an unknown pool).
    pub fn allocated_count(&self, subnet: Ipv4Net) -> usize {
        self.pools.get(&subnet).map_or(0, |p| p.bits.count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn net(s: &str) -> Ipv4Net {
        parse_cidr(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn user(subnet: &str) -> PoolRequest {
        PoolRequest {
            subnet: Some(net(subnet)),
            ..PoolRequest::default()
        }
    }

    // ---- parse_cidr ----

    #[test]
    fn parse_cidr_accepts_valid() {
        assert_eq!(net("10.99.0.0/24").to_string(), "10.99.0.0/24");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(net("192.168.16.0/20").prefix_len(), 20);
    }

    #[test]
    fn parse_cidr_rejects_bad() {
        for s in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0.0/008",
            "10.0.0.1/24",
            " 10.0.0.0/24",
            "10.0.0.0/24 ",
            "10.0.0.0 /24",
            "10.0.0.0/ 24",
            "10.0.0.0/24\n",
            "10.0.0/24",
            "10.0.0.0.0/24",
            "010.0.0.0/24",
            "256.0.0.0/8",
            "10.0.0.0/24/24",
            "::/0",
            "a.b.c.d/8",
            "10.0.0.0/٣",
        ] {
            assert_eq!(parse_cidr(s), Err(IpamError::BadCidr(s.to_owned())), "{s:?}");
        }
    }

    // ---- default pools ----

    #[test]
    fn default_pool_order_and_count() {
        let pools = default_pools();
        assert_eq!(pools.len(), 31);
        for (i, p) in pools.iter().take(15).enumerate() {
            assert_eq!(p.to_string(), format!("172.{}.0.0/16", 17 + i));
        }
        for (i, p) in pools.iter().skip(15).enumerate() {
            assert_eq!(p.to_string(), format!("192.168.{}.0/20", 16 * i));
        }
        // Pairwise disjoint.
        for (i, a) in pools.iter().enumerate() {
            for b in &pools[i + 1..] {
                assert!(!overlaps(a, b), "{a} {b}");
            }
        }
    }

    #[test]
    fn default_pools_first_fit_and_reuse() {
        let mut ipam = Ipam::new(vec![]);
        let a = ipam.request_pool(&PoolRequest::default()).unwrap();
        let b = ipam.request_pool(&PoolRequest::default()).unwrap();
        let c = ipam.request_pool(&PoolRequest::default()).unwrap();
        assert_eq!(a.subnet, net("172.17.0.0/16"));
        assert_eq!(b.subnet, net("172.18.0.0/16"));
        assert_eq!(c.subnet, net("172.19.0.0/16"));
        assert_eq!(a.gateway, ip("172.17.0.1"));
        assert_eq!(a.ip_range, a.subnet);
        assert!(!a.user_subnet);
        ipam.release_pool(b.subnet).unwrap();
        assert_eq!(ipam.request_pool(&PoolRequest::default()).unwrap().subnet, b.subnet);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.20.0.0/16")
        );
    }

    #[test]
    fn default_pools_skip_pools_in_use() {
        let mut ipam = Ipam::new(vec![]);
        // A user subnet inside 172.17/16 makes the first default 172.18/16.
        ipam.request_pool(&user("172.17.5.0/24")).unwrap();
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.18.0.0/16")
        );
    }

    #[test]
    fn default_pools_skip_host_routes() {
        let mut ipam = Ipam::new(vec![net("172.17.0.0/16")]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.18.0.0/16")
        );

        let mut ipam = Ipam::new(vec![net("172.16.0.0/12"), net("0.0.0.0/0")]);
        assert_eq!(ipam.host_routes(), &[net("172.16.0.0/12")]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("192.168.0.0/20")
        );

        // The default route is ignored.
        let mut ipam = Ipam::new(vec![net("0.0.0.0/0")]);
        assert!(ipam.host_routes().is_empty());
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.17.0.0/16")
        );

        // A small route inside a pool also disqualifies it.
        let mut ipam = Ipam::new(vec![net("192.168.1.0/24"), net("172.16.0.0/12")]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("192.168.16.0/20")
        );

        // Routes given with host bits set are truncated.
        let mut ipam = Ipam::new(vec![Ipv4Net::new(ip("172.17.3.4"), 16).unwrap()]);
        assert_eq!(ipam.host_routes(), &[net("172.17.0.0/16")]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.18.0.0/16")
        );

        // set_host_routes replaces them.
        ipam.set_host_routes(vec![]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()).unwrap().subnet,
            net("172.17.0.0/16")
        );
    }

    #[test]
    fn err_no_available_pool() {
        let mut ipam = Ipam::new(vec![]);
        for _ in 0..31 {
            ipam.request_pool(&PoolRequest::default()).unwrap();
        }
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()),
            Err(IpamError::NoAvailablePool)
        );
        // All covered by routes.
        let mut ipam = Ipam::new(vec![net("172.16.0.0/12"), net("192.168.0.0/16")]);
        assert_eq!(
            ipam.request_pool(&PoolRequest::default()),
            Err(IpamError::NoAvailablePool)
        );
    }

    // ---- request_pool errors ----

    #[test]
    fn err_overlap_pool_with_pool_in_use() {
        let mut ipam = Ipam::new(vec![]);
        ipam.request_pool(&user("10.1.0.0/16")).unwrap();
        for s in ["10.1.0.0/16", "10.1.2.0/24", "10.0.0.0/8"] {
            assert_eq!(
                ipam.request_pool(&user(s)),
                Err(IpamError::OverlapPool {
                    requested: net(s),
                    existing: net("10.1.0.0/16"),
                })
            );
        }
        assert!(ipam.request_pool(&user("10.2.0.0/16")).is_ok());
    }

    #[test]
    fn err_overlap_pool_with_host_route() {
        let mut ipam = Ipam::new(vec![net("10.0.0.0/8"), net("0.0.0.0/0")]);
        assert_eq!(
            ipam.request_pool(&user("10.99.0.0/24")),
            Err(IpamError::OverlapPool {
                requested: net("10.99.0.0/24"),
                existing: net("10.0.0.0/8"),
            })
        );
        // The default route does not count.
        assert!(ipam.request_pool(&user("11.0.0.0/24")).is_ok());
    }

    #[test]
    fn err_pool_too_small_and_too_large() {
        let mut ipam = Ipam::new(vec![]);
        for s in ["10.0.0.0/31", "10.0.0.0/32"] {
            assert_eq!(ipam.request_pool(&user(s)), Err(IpamError::PoolTooSmall(net(s))));
        }
        for s in ["10.0.0.0/7", "0.0.0.0/0"] {
            assert_eq!(ipam.request_pool(&user(s)), Err(IpamError::PoolTooLarge(net(s))));
        }
        let p = ipam.request_pool(&user("10.0.0.0/30")).unwrap();
        assert_eq!(p.gateway, ip("10.0.0.1"));
        // A /8 works.
        let p = ipam.request_pool(&user("11.0.0.0/8")).unwrap();
        assert_eq!(ipam.request_address(p.subnet, None), Ok(ip("11.0.0.2")));
        assert_eq!(
            ipam.request_address(p.subnet, Some(ip("11.255.255.254"))),
            Ok(ip("11.255.255.254"))
        );
    }

    #[test]
    fn err_bad_cidr_host_bits_in_request() {
        let mut ipam = Ipam::new(vec![]);
        let odd = Ipv4Net::new(ip("10.0.0.5"), 24).unwrap();
        let req = PoolRequest {
            subnet: Some(odd),
            ..PoolRequest::default()
        };
        assert_eq!(ipam.request_pool(&req), Err(IpamError::BadCidr("10.0.0.5/24".into())));
        let req = PoolRequest {
            subnet: Some(net("10.0.0.0/24")),
            ip_range: Some(Ipv4Net::new(ip("10.0.0.130"), 25).unwrap()),
            gateway: None,
        };
        assert_eq!(ipam.request_pool(&req), Err(IpamError::BadCidr("10.0.0.130/25".into())));
    }

    #[test]
    fn err_bad_ip_range() {
        let mut ipam = Ipam::new(vec![]);
        for r in ["10.0.1.0/24", "10.0.0.0/23", "10.0.0.0/16"] {
            let req = PoolRequest {
                subnet: Some(net("10.0.0.0/24")),
                ip_range: Some(net(r)),
                gateway: None,
            };
            assert_eq!(
                ipam.request_pool(&req),
                Err(IpamError::BadIpRange {
                    range: net(r),
                    subnet: net("10.0.0.0/24"),
                })
            );
        }
        assert!(ipam.pools().next().is_none());
    }

    #[test]
    fn err_needs_subnet() {
        let mut ipam = Ipam::new(vec![]);
        let req = PoolRequest {
            ip_range: Some(net("172.17.0.0/24")),
            ..PoolRequest::default()
        };
        assert_eq!(ipam.request_pool(&req), Err(IpamError::NeedsSubnet));
        let req = PoolRequest {
            gateway: Some(ip("172.17.0.1")),
            ..PoolRequest::default()
        };
        assert_eq!(ipam.request_pool(&req), Err(IpamError::NeedsSubnet));
    }

    #[test]
    fn gateway_handling() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/24");
        for gw in ["10.0.0.0", "10.0.0.255", "10.0.1.1", "9.9.9.9"] {
            let req = PoolRequest {
                subnet: Some(s),
                ip_range: None,
                gateway: Some(ip(gw)),
            };
            assert_eq!(
                ipam.request_pool(&req),
                Err(IpamError::OutOfRange { addr: ip(gw), pool: s })
            );
        }
        // A gateway outside the ip-range is fine; it is reserved.
        let req = PoolRequest {
            subnet: Some(s),
            ip_range: Some(net("10.0.0.128/25")),
            gateway: Some(ip("10.0.0.254")),
        };
        let p = ipam.request_pool(&req).unwrap();
        assert_eq!(p.gateway, ip("10.0.0.254"));
        assert!(p.user_subnet);
        assert!(ipam.is_allocated(s, ip("10.0.0.254")));
        assert_eq!(ipam.allocated(s).collect::<Vec<_>>(), vec![ip("10.0.0.254")]);
        assert_eq!(
            ipam.request_address(s, Some(ip("10.0.0.254"))),
            Err(IpamError::AlreadyAllocated(ip("10.0.0.254")))
        );
        assert_eq!(
            ipam.release_address(s, ip("10.0.0.254")),
            Err(IpamError::IsGateway(ip("10.0.0.254")))
        );
        assert!(ipam.is_allocated(s, ip("10.0.0.254")));
        // Default gateway is the first host even with an ip-range elsewhere.
        let s2 = net("10.1.0.0/24");
        let req = PoolRequest {
            subnet: Some(s2),
            ip_range: Some(net("10.1.0.128/25")),
            gateway: None,
        };
        assert_eq!(ipam.request_pool(&req).unwrap().gateway, ip("10.1.0.1"));
        // Gateway inside the ip-range is skipped by dynamic allocation.
        let s3 = net("10.2.0.0/24");
        let req = PoolRequest {
            subnet: Some(s3),
            ip_range: Some(net("10.2.0.0/29")),
            gateway: Some(ip("10.2.0.2")),
        };
        ipam.request_pool(&req).unwrap();
        assert_eq!(ipam.request_address(s3, None), Ok(ip("10.2.0.1")));
        assert_eq!(ipam.request_address(s3, None), Ok(ip("10.2.0.3")));
    }

    // ---- addresses ----

    #[test]
    fn exhaustion_of_a_slash_30() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/30");
        let p = ipam.request_pool(&PoolRequest {
            subnet: Some(s),
            ..PoolRequest::default()
        });
        assert_eq!(p.unwrap().gateway, ip("10.0.0.1"));
        assert_eq!(ipam.request_address(s, None), Ok(ip("10.0.0.2")));
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
        ipam.release_address(s, ip("10.0.0.2")).unwrap();
        assert_eq!(ipam.request_address(s, None), Ok(ip("10.0.0.2")));
        assert_eq!(ipam.allocated_count(s), 2);
    }

    #[test]
    fn first_fit_and_reuse_after_release() {
        let mut ipam = Ipam::new(vec![]);
        let s = ipam.request_pool(&PoolRequest::default()).unwrap().subnet;
        let a: Vec<_> = (0..5).map(|_| ipam.request_address(s, None).unwrap()).collect();
        assert_eq!(
            a,
            ["172.17.0.2", "172.17.0.3", "172.17.0.4", "172.17.0.5", "172.17.0.6"].map(ip)
        );
        ipam.release_address(s, ip("172.17.0.4")).unwrap();
        ipam.release_address(s, ip("172.17.0.3")).unwrap();
        assert!(!ipam.is_allocated(s, ip("172.17.0.3")));
        assert_eq!(ipam.request_address(s, None), Ok(ip("172.17.0.3")));
        assert_eq!(ipam.request_address(s, None), Ok(ip("172.17.0.4")));
        assert_eq!(ipam.request_address(s, None), Ok(ip("172.17.0.7")));
    }

    #[test]
    fn fill_a_slash_16_across_words() {
        let mut ipam = Ipam::new(vec![]);
        let s = ipam.request_pool(&PoolRequest::default()).unwrap().subnet;
        for _ in 0..65533 {
            ipam.request_address(s, None).unwrap();
        }
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
        assert_eq!(ipam.allocated_count(s), 65534);
        assert!(!ipam.is_allocated(s, ip("172.17.0.0")));
        assert!(!ipam.is_allocated(s, ip("172.17.255.255")));
        ipam.release_address(s, ip("172.17.200.77")).unwrap();
        assert_eq!(ipam.request_address(s, None), Ok(ip("172.17.200.77")));
    }

    #[test]
    fn ip_range_limits() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/24");
        ipam.request_pool(&PoolRequest {
            subnet: Some(s),
            ip_range: Some(net("10.0.0.64/30")),
            gateway: None,
        })
        .unwrap();
        // The range's own network/broadcast addresses are handed out.
        let got: Vec<_> = (0..4).map(|_| ipam.request_address(s, None).unwrap()).collect();
        assert_eq!(got, ["10.0.0.64", "10.0.0.65", "10.0.0.66", "10.0.0.67"].map(ip));
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
        // Preferred may be outside the range but inside the subnet.
        assert_eq!(ipam.request_address(s, Some(ip("10.0.0.200"))), Ok(ip("10.0.0.200")));

        // A range at the top of the subnet never yields the broadcast address,
        // one at the bottom never the network address.
        let s = net("10.0.1.0/24");
        ipam.request_pool(&PoolRequest {
            subnet: Some(s),
            ip_range: Some(net("10.0.1.252/30")),
            gateway: None,
        })
        .unwrap();
        let got: Vec<_> = (0..3).map(|_| ipam.request_address(s, None).unwrap()).collect();
        assert_eq!(got, ["10.0.1.252", "10.0.1.253", "10.0.1.254"].map(ip));
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
        let s = net("10.0.2.0/24");
        ipam.request_pool(&PoolRequest {
            subnet: Some(s),
            ip_range: Some(net("10.0.2.0/30")),
            gateway: Some(ip("10.0.2.100")),
        })
        .unwrap();
        let got: Vec<_> = (0..3).map(|_| ipam.request_address(s, None).unwrap()).collect();
        assert_eq!(got, ["10.0.2.1", "10.0.2.2", "10.0.2.3"].map(ip));
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
        // A /32 range on the network address has nothing to give.
        let s = net("10.0.3.0/24");
        ipam.request_pool(&PoolRequest {
            subnet: Some(s),
            ip_range: Some(net("10.0.3.0/32")),
            gateway: None,
        })
        .unwrap();
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoAvailableIps(s)));
    }

    #[test]
    fn err_static_ip_needs_user_subnet() {
        let mut ipam = Ipam::new(vec![]);
        let s = ipam.request_pool(&PoolRequest::default()).unwrap().subnet;
        assert_eq!(
            ipam.request_address(s, Some(ip("172.17.0.9"))),
            Err(IpamError::StaticIpNeedsUserSubnet)
        );
        // Restore path bypasses the check.
        assert_eq!(ipam.reserve_address(s, ip("172.17.0.9")), Ok(()));
        assert_eq!(
            ipam.reserve_address(s, ip("172.17.0.9")),
            Err(IpamError::AlreadyAllocated(ip("172.17.0.9")))
        );
        assert!(ipam.is_allocated(s, ip("172.17.0.9")));
    }

    #[test]
    fn err_out_of_range_and_already_allocated() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/24");
        ipam.request_pool(&user("10.0.0.0/24")).unwrap();
        for a in ["10.0.0.0", "10.0.0.255", "10.0.1.5"] {
            assert_eq!(
                ipam.request_address(s, Some(ip(a))),
                Err(IpamError::OutOfRange { addr: ip(a), pool: s })
            );
            assert_eq!(
                ipam.release_address(s, ip(a)),
                Err(IpamError::OutOfRange { addr: ip(a), pool: s })
            );
            assert!(!ipam.is_allocated(s, ip(a)));
        }
        assert_eq!(ipam.request_address(s, Some(ip("10.0.0.7"))), Ok(ip("10.0.0.7")));
        assert_eq!(
            ipam.request_address(s, Some(ip("10.0.0.7"))),
            Err(IpamError::AlreadyAllocated(ip("10.0.0.7")))
        );
        assert_eq!(
            ipam.request_address(s, Some(ip("10.0.0.1"))),
            Err(IpamError::AlreadyAllocated(ip("10.0.0.1")))
        );
        // Dynamic allocation skips the static address.
        for _ in 0..5 {
            assert_ne!(ipam.request_address(s, None), Ok(ip("10.0.0.7")));
        }
    }

    #[test]
    fn err_no_such_pool_and_not_allocated() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/24");
        assert_eq!(ipam.request_address(s, None), Err(IpamError::NoSuchPool(s)));
        assert_eq!(
            ipam.request_address(s, Some(ip("10.0.0.5"))),
            Err(IpamError::NoSuchPool(s))
        );
        assert_eq!(ipam.reserve_address(s, ip("10.0.0.5")), Err(IpamError::NoSuchPool(s)));
        assert_eq!(ipam.release_address(s, ip("10.0.0.5")), Err(IpamError::NoSuchPool(s)));
        assert_eq!(ipam.release_pool(s), Err(IpamError::NoSuchPool(s)));
        assert!(!ipam.is_allocated(s, ip("10.0.0.1")));
        assert_eq!(ipam.allocated(s).count(), 0);
        assert_eq!(ipam.pool(s), None);

        ipam.request_pool(&user("10.0.0.0/24")).unwrap();
        assert_eq!(
            ipam.release_address(s, ip("10.0.0.5")),
            Err(IpamError::NotAllocated(ip("10.0.0.5")))
        );
        let a = ipam.request_address(s, None).unwrap();
        ipam.release_address(s, a).unwrap();
        assert_eq!(ipam.release_address(s, a), Err(IpamError::NotAllocated(a)));
    }

    #[test]
    fn release_pool_frees_everything() {
        let mut ipam = Ipam::new(vec![]);
        let s = net("10.0.0.0/24");
        ipam.request_pool(&user("10.0.0.0/24")).unwrap();
        ipam.request_address(s, None).unwrap();
        ipam.request_address(s, Some(ip("10.0.0.50"))).unwrap();
        assert_eq!(
            ipam.allocated(s).collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.50"].map(ip)
        );
        ipam.release_pool(s).unwrap();
        assert!(!ipam.is_allocated(s, ip("10.0.0.50")));
        assert_eq!(ipam.pools().count(), 0);
        let p = ipam.request_pool(&user("10.0.0.0/24")).unwrap();
        assert_eq!(ipam.allocated(s).collect::<Vec<_>>(), vec![p.gateway]);
        assert_eq!(ipam.request_address(s, None), Ok(ip("10.0.0.2")));
    }

    #[test]
    fn restore_pool_keeps_info_and_ignores_host_routes() {
        let mut ipam = Ipam::new(vec![net("172.17.0.0/16")]);
        let info = PoolInfo {
            subnet: net("172.17.0.0/16"),
            ip_range: net("172.17.1.0/24"),
            gateway: ip("172.17.0.1"),
            user_subnet: false,
        };
        assert_eq!(ipam.restore_pool(&info), Ok(info));
        assert_eq!(ipam.pool(info.subnet), Some(info));
        assert_eq!(ipam.pools().collect::<Vec<_>>(), vec![info]);
        assert_eq!(ipam.reserve_address(info.subnet, ip("172.17.1.0")), Ok(()));
        assert_eq!(ipam.request_address(info.subnet, None), Ok(ip("172.17.1.1")));
        assert_eq!(
            ipam.restore_pool(&info),
            Err(IpamError::OverlapPool {
                requested: info.subnet,
                existing: info.subnet,
            })
        );
        let bad = PoolInfo {
            subnet: net("10.0.0.0/24"),
            ip_range: net("10.0.0.0/24"),
            gateway: ip("10.0.0.255"),
            user_subnet: true,
        };
        assert_eq!(
            ipam.restore_pool(&bad),
            Err(IpamError::OutOfRange {
                addr: ip("10.0.0.255"),
                pool: bad.subnet,
            })
        );
    }

    #[test]
    fn debug_is_small() {
        let mut ipam = Ipam::new(vec![]);
        ipam.request_pool(&user("10.0.0.0/8")).unwrap();
        assert!(format!("{ipam:?}").len() < 1000);
    }

    #[test]
    fn bitmap_first_free_edges() {
        let mut b = Bitmap::new(256);
        assert_eq!(b.first_free(0, 255), Some(0));
        assert_eq!(b.first_free(63, 64), Some(63));
        assert_eq!(b.first_free(5, 4), None);
        for i in 0..256 {
            assert!(b.set(i));
        }
        assert!(!b.set(3));
        assert!(!b.set(256));
        assert!(!b.clear(256));
        assert_eq!(b.first_free(0, 255), None);
        assert_eq!(b.first_free(0, 1000), None);
        assert!(b.clear(130));
        assert_eq!(b.first_free(0, 255), Some(130));
        assert_eq!(b.first_free(131, 255), None);
        assert_eq!(b.first_free(128, 129), None);
        assert_eq!(b.iter_set().count(), 255);
    }

    // ---- property tests ----

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        Prefer(u32),
        Release(u32),
        ReleaseAllocated(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Alloc),
            1 => any::<u32>().prop_map(Op::Prefer),
            1 => any::<u32>().prop_map(Op::Release),
            3 => any::<usize>().prop_map(Op::ReleaseAllocated),
        ]
    }

    /// A user or default-style pool with an optional ip-range and gateway.
    fn pool_setup() -> impl Strategy<Value = (PoolRequest, bool)> {
        (
            any::<u32>(),
            22u8..=30,
            any::<u32>(),
            0u8..=32,
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(base, len, roff, rlen, goff, use_range, use_gw)| {
                let subnet = Ipv4Net::new(Ipv4Addr::from(base), len).unwrap().trunc();
                let size = 1u32 << (32 - len);
                let net = u32::from(subnet.network());
                let ip_range = use_range.then(|| {
                    let rlen = rlen.max(len);
                    Ipv4Net::new(Ipv4Addr::from(net + roff % size), rlen).unwrap().trunc()
                });
                let gateway = use_gw.then(|| Ipv4Addr::from(net + 1 + goff % (size - 2)));
                let req = PoolRequest {
                    subnet: Some(subnet),
                    ip_range,
                    gateway,
                };
                (req, use_range)
            })
    }

    proptest! {
        #[test]
        fn prop_alloc_release_matches_model((req, _) in pool_setup(), ops in proptest::collection::vec(op(), 0..300)) {
            let mut ipam = Ipam::new(vec![]);
            let info = ipam.request_pool(&req).unwrap();
            let s = info.subnet;
            let size = 1u32 << (32 - s.prefix_len());
            let net = u32::from(s.network());
            let (network, broadcast) = (s.network(), s.broadcast());
            let candidates: Vec<Ipv4Addr> = (u32::from(info.ip_range.network())..=u32::from(info.ip_range.broadcast()))
                .map(Ipv4Addr::from)
                .filter(|a| *a != network && *a != broadcast)
                .collect();
            let mut model: BTreeSet<Ipv4Addr> = BTreeSet::from([info.gateway]);
            for op in ops {
                match op {
                    Op::Alloc => {
                        let expect = candidates.iter().copied().find(|a| !model.contains(a));
                        match ipam.request_address(s, None) {
                            Ok(a) => {
                                prop_assert_eq!(Some(a), expect);
                                prop_assert!(info.ip_range.contains(&a));
                                prop_assert!(a != info.gateway && a != network && a != broadcast);
                                prop_assert!(model.insert(a), "handed out twice: {}", a);
                            }
                            Err(e) => {
                                prop_assert_eq!(e, IpamError::NoAvailableIps(s));
                                prop_assert_eq!(expect, None);
                            }
                        }
                    }
                    Op::Prefer(off) => {
                        let a = Ipv4Addr::from(net.wrapping_add(off % (size + 8)));
                        let r = ipam.request_address(s, Some(a));
                        if !s.contains(&a) || a == network || a == broadcast {
                            prop_assert_eq!(r, Err(IpamError::OutOfRange { addr: a, pool: s }));
                        } else if model.contains(&a) {
                            prop_assert_eq!(r, Err(IpamError::AlreadyAllocated(a)));
                        } else {
                            prop_assert_eq!(r, Ok(a));
                            model.insert(a);
                        }
                    }
                    Op::Release(off) => {
                        let a = Ipv4Addr::from(net.wrapping_add(off % (size + 8)));
                        let r = ipam.release_address(s, a);
                        if !s.contains(&a) || a == network || a == broadcast {
                            prop_assert_eq!(r, Err(IpamError::OutOfRange { addr: a, pool: s }));
                        } else if a == info.gateway {
                            prop_assert_eq!(r, Err(IpamError::IsGateway(a)));
                        } else if model.remove(&a) {
                            prop_assert_eq!(r, Ok(()));
                        } else {
                            prop_assert_eq!(r, Err(IpamError::NotAllocated(a)));
                        }
                    }
                    Op::ReleaseAllocated(i) => {
                        let allocated: Vec<_> = model.iter().copied().filter(|a| *a != info.gateway).collect();
                        if !allocated.is_empty() {
                            let a = allocated[i % allocated.len()];
                            prop_assert_eq!(ipam.release_address(s, a), Ok(()));
                            model.remove(&a);
                        }
                    }
                }
                prop_assert_eq!(ipam.allocated_count(s), model.len());
            }
            prop_assert_eq!(ipam.allocated(s).collect::<BTreeSet<_>>(), model.clone());
            for a in [network, broadcast] {
                prop_assert!(!ipam.is_allocated(s, a));
            }
            prop_assert!(ipam.is_allocated(s, info.gateway));
        }

        #[test]
        fn prop_default_pools_first_fit(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..6),
            ops in proptest::collection::vec(any::<Option<usize>>(), 0..80),
        ) {
            // Bias routes into the default ranges so they matter.
            let routes: Vec<Ipv4Net> = routes
                .into_iter()
                .map(|(a, len)| {
                    let a = if a % 2 == 0 { 0xAC10_0000 | (a & 0x000F_FFFF) } else { 0xC0A8_0000 | (a & 0xFFFF) };
                    Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc()
                })
                .collect();
            let mut ipam = Ipam::new(routes.clone());
            let mut in_use: Vec<Ipv4Net> = Vec::new();
            for op in ops {
                match op {
                    None => {
                        let expect = default_pools().into_iter().find(|p| {
                            !in_use.iter().any(|q| overlaps(p, q))
                                && !routes.iter().any(|r| r.prefix_len() != 0 && overlaps(p, r))
                        });
                        match ipam.request_pool(&PoolRequest::default()) {
                            Ok(info) => {
                                prop_assert_eq!(Some(info.subnet), expect);
                                in_use.push(info.subnet);
                            }
                            Err(e) => {
                                prop_assert_eq!(e, IpamError::NoAvailablePool);
                                prop_assert_eq!(expect, None);
                            }
                        }
                    }
                    Some(i) if !in_use.is_empty() => {
                        let p = in_use.remove(i % in_use.len());
                        prop_assert_eq!(ipam.release_pool(p), Ok(()));
                    }
                    Some(_) => {}
                }
            }
        }

        #[test]
        fn prop_parse_cidr_roundtrip(a in any::<u32>(), len in 0u8..=32) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
            prop_assert_eq!(parse_cidr(&n.to_string()), Ok(n));
            let host = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap();
            if host != n {
                prop_assert_eq!(parse_cidr(&host.to_string()), Err(IpamError::BadCidr(host.to_string())));
            }
        }

        #[test]
        fn prop_parse_cidr_never_panics(s in "\\PC{0,24}") {
            let _ = parse_cidr(&s);
        }

        #[test]
        fn prop_request_pool_never_panics(
            base in any::<u32>(), len in 0u8..=32,
            rbase in any::<u32>(), rlen in 0u8..=32,
            gw in any::<u32>(), use_range in any::<bool>(), use_gw in any::<bool>(),
        ) {
            let mut ipam = Ipam::new(vec![]);
            let req = PoolRequest {
                subnet: Some(Ipv4Net::new(Ipv4Addr::from(base), len.max(8)).unwrap()),
                ip_range: use_range.then(|| Ipv4Net::new(Ipv4Addr::from(rbase), rlen).unwrap()),
                gateway: use_gw.then(|| Ipv4Addr::from(gw)),
            };
            if let Ok(info) = ipam.request_pool(&req) {
                prop_assert!(info.subnet.contains(&info.ip_range));
                prop_assert!(info.subnet.contains(&info.gateway));
                let _ = ipam.request_address(info.subnet, None);
                let _ = ipam.request_address(info.subnet, Some(Ipv4Addr::from(gw)));
                let _ = ipam.release_address(info.subnet, Ipv4Addr::from(rbase));
            }
        }
    }
}
