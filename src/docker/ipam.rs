//! The Docker IPAM plugin's allocator: pools (`RequestPool`) and the
//! addresses handed out of them (`RequestAddress`), kept as
//! [`DockerPool`] records in the controller's state.
//!
//! Pure logic over the records, tested without a kernel. libnetwork's rules
//! for its default IPAM, which a Docker user expects from any IPAM driver:
//! - a pool given is used as given (strict CIDR, host bits zero) unless it
//!   overlaps a pool already handed out or a Plexus network; a sub-pool must
//!   lie inside its pool; no pool given takes the first default pool (the
//!   same list as Plexus's own, [`default_pools`]) that overlaps nothing,
//!   host routes included;
//! - an address asked for is handed out if it lies in the pool, is neither
//!   the network nor the broadcast address, and is free; none asked for takes
//!   the lowest free one of the sub-pool (or the pool) — the gateway request
//!   looks in the whole pool, so the gateway is the pool's first address;
//! - the pool id is `ADDRESS_SPACE/POOL[/SUB_POOL]`, as libnetwork writes it.
//!
//! Decision: the records live in the controller's one state file and are
//! committed with it, so a pool and a network made from it can never be
//! half-written. Addresses are few per pool (one per container), so a sorted
//! list is enough; no bitmap.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::ipam::{IpamError, default_pools, parse_cidr};
use crate::model::DockerPool;

/// What `IpamDriver.RequestPool` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolAsk<'a> {
    /// The address space (one of ours, from `GetDefaultAddressSpaces`).
    pub address_space: &'a str,
    /// `--subnet`, or empty.
    pub pool: &'a str,
    /// `--ip-range`, or empty.
    pub sub_pool: &'a str,
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Hands out a pool; `taken` are Plexus networks' subnets, `host_routes`
/// the daemon's routes (avoided by default pools only). Returns the pool id
/// and the pool.
pub fn request_pool(
    pools: &mut Vec<DockerPool>,
    taken: &[Ipv4Net],
    host_routes: &[Ipv4Net],
    ask: &PoolAsk<'_>,
) -> Result<(String, Ipv4Net), IpamError> {
    let in_use = |net: Ipv4Net| {
        pools
            .iter()
            .map(|p| p.subnet)
            .chain(taken.iter().copied())
            .find(|&t| overlaps(t, net))
    };
    let subnet = if ask.pool.is_empty() {
        if !ask.sub_pool.is_empty() {
            return Err(IpamError::NeedsSubnet);
        }
        default_pools()
            .into_iter()
            .find(|&p| in_use(p).is_none() && !host_routes.iter().any(|&r| r.prefix_len() > 0 && overlaps(r, p)))
            .ok_or(IpamError::NoAvailablePool)?
    } else {
        let subnet = parse_cidr(ask.pool)?;
        if let Some(existing) = in_use(subnet) {
            return Err(IpamError::OverlapPool {
                requested: subnet,
                existing,
            });
        }
        subnet
    };
    if subnet.prefix_len() > 30 {
        return Err(IpamError::PoolTooSmall(subnet));
    }
    if subnet.prefix_len() < 8 {
        return Err(IpamError::PoolTooLarge(subnet));
    }
    let sub_pool = if ask.sub_pool.is_empty() {
        None
    } else {
        let range = parse_cidr(ask.sub_pool)?;
        if !subnet.contains(&range) {
            return Err(IpamError::BadIpRange { range, subnet });
        }
        Some(range)
    };
    let id = match sub_pool {
        Some(r) => format!("{}/{subnet}/{r}", ask.address_space),
        None => format!("{}/{subnet}", ask.address_space),
    };
    pools.push(DockerPool {
        id: id.clone(),
        subnet,
        sub_pool,
        addresses: Vec::new(),
    });
    Ok((id, subnet))
}

/// Gives a pool back (with whatever addresses it still holds).
pub fn release_pool(pools: &mut Vec<DockerPool>, id: &str) -> Result<(), IpamError> {
    let before = pools.len();
    pools.retain(|p| p.id != id);
    if pools.len() == before {
        return Err(IpamError::NoSuchPoolId(id.to_owned()));
    }
    Ok(())
}

fn pool_mut<'a>(pools: &'a mut [DockerPool], id: &str) -> Result<&'a mut DockerPool, IpamError> {
    pools
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| IpamError::NoSuchPoolId(id.to_owned()))
}

/// Hands out `wanted`, or the lowest free address (of the whole pool for the
/// `gateway`, else of the sub-pool); with the pool's prefix length.
pub fn request_address(
    pools: &mut [DockerPool],
    id: &str,
    wanted: Option<Ipv4Addr>,
    gateway: bool,
) -> Result<Ipv4Net, IpamError> {
    let pool = pool_mut(pools, id)?;
    let subnet = pool.subnet;
    let usable = |a: Ipv4Addr| subnet.contains(&a) && a != subnet.network() && a != subnet.broadcast();
    let addr = match wanted {
        Some(a) if !usable(a) => return Err(IpamError::OutOfRange { addr: a, pool: subnet }),
        Some(a) if pool.addresses.contains(&a) => return Err(IpamError::AlreadyAllocated(a)),
        Some(a) => a,
        None => {
            let range = if gateway {
                subnet
            } else {
                pool.sub_pool.unwrap_or(subnet)
            };
            let (first, last) = (u32::from(range.network()), u32::from(range.broadcast()));
            (first..=last)
                .map(Ipv4Addr::from)
                .find(|&a| usable(a) && !pool.addresses.contains(&a))
                .ok_or(IpamError::NoAvailableIps(range))?
        }
    };
    pool.addresses.push(addr);
    pool.addresses.sort_unstable();
    Ok(Ipv4Net::new(addr, subnet.prefix_len()).expect("a pool's prefix length is valid"))
}

/// Takes an address back; one not handed out is no error (Docker may
/// release twice).
pub fn release_address(pools: &mut [DockerPool], id: &str, addr: Ipv4Addr) -> Result<(), IpamError> {
    let pool = pool_mut(pools, id)?;
    pool.addresses.retain(|&a| a != addr);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(pool: &'a str, sub_pool: &'a str) -> PoolAsk<'a> {
        PoolAsk {
            address_space: "PlexusLocal",
            pool,
            sub_pool,
        }
    }

    #[test]
    fn default_pools_skip_what_is_taken_and_host_routes() {
        let mut pools = Vec::new();
        let taken = ["172.17.0.0/16".parse().unwrap()];
        let routes = ["172.18.5.0/24".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
        let (id, p) = request_pool(&mut pools, &taken, &routes, &ask("", "")).unwrap();
        assert_eq!(p.to_string(), "172.19.0.0/16");
        assert_eq!(id, "PlexusLocal/172.19.0.0/16");
        let (_, p2) = request_pool(&mut pools, &taken, &routes, &ask("", "")).unwrap();
        assert_eq!(p2.to_string(), "172.20.0.0/16");
    }

    #[test]
    fn a_given_pool_must_not_overlap_and_a_sub_pool_must_fit() {
        let mut pools = Vec::new();
        request_pool(&mut pools, &[], &[], &ask("10.5.0.0/16", "")).unwrap();
        assert!(matches!(
            request_pool(&mut pools, &[], &[], &ask("10.5.3.0/24", "")),
            Err(IpamError::OverlapPool { .. })
        ));
        assert!(matches!(
            request_pool(
                &mut pools,
                &["10.6.0.0/24".parse().unwrap()],
                &[],
                &ask("10.6.0.0/16", "")
            ),
            Err(IpamError::OverlapPool { .. })
        ));
        assert!(matches!(
            request_pool(&mut pools, &[], &[], &ask("10.7.0.0/24", "10.8.0.0/25")),
            Err(IpamError::BadIpRange { .. })
        ));
        assert!(matches!(
            request_pool(&mut pools, &[], &[], &ask("10.7.0.1/24", "")),
            Err(IpamError::BadCidr(_))
        ));
        assert!(matches!(
            request_pool(&mut pools, &[], &[], &ask("", "10.7.0.0/25")),
            Err(IpamError::NeedsSubnet)
        ));
        let (id, _) = request_pool(&mut pools, &[], &[], &ask("10.7.0.0/24", "10.7.0.128/25")).unwrap();
        assert_eq!(id, "PlexusLocal/10.7.0.0/24/10.7.0.128/25");
        // Nothing failed half-way: two pools held.
        assert_eq!(pools.len(), 2);
    }

    #[test]
    fn addresses_first_free_gateway_from_the_pool_and_release() {
        let mut pools = Vec::new();
        let (id, _) = request_pool(&mut pools, &[], &[], &ask("10.9.0.0/24", "10.9.0.64/26")).unwrap();
        let gw = request_address(&mut pools, &id, None, true).unwrap();
        assert_eq!(gw.to_string(), "10.9.0.1/24");
        let a = request_address(&mut pools, &id, None, false).unwrap();
        // As libnetwork: a sub-pool's own network address is a host of the pool.
        assert_eq!(a.to_string(), "10.9.0.64/24");
        let fixed = request_address(&mut pools, &id, Some("10.9.0.7".parse().unwrap()), false).unwrap();
        assert_eq!(fixed.addr(), Ipv4Addr::new(10, 9, 0, 7));
        assert_eq!(
            request_address(&mut pools, &id, Some("10.9.0.7".parse().unwrap()), false),
            Err(IpamError::AlreadyAllocated("10.9.0.7".parse().unwrap()))
        );
        for bad in ["10.9.0.0", "10.9.0.255", "10.9.1.1"] {
            assert!(matches!(
                request_address(&mut pools, &id, Some(bad.parse().unwrap()), false),
                Err(IpamError::OutOfRange { .. })
            ));
        }
        release_address(&mut pools, &id, a.addr()).unwrap();
        release_address(&mut pools, &id, a.addr()).unwrap();
        assert_eq!(request_address(&mut pools, &id, None, false).unwrap(), a);
        assert!(matches!(
            request_address(&mut pools, "PlexusLocal/1.2.3.0/24", None, false),
            Err(IpamError::NoSuchPoolId(_))
        ));
        release_pool(&mut pools, &id).unwrap();
        assert!(release_pool(&mut pools, &id).is_err());
    }

    #[test]
    fn a_full_sub_pool_says_so() {
        let mut pools = Vec::new();
        let (id, _) = request_pool(&mut pools, &[], &[], &ask("10.10.0.0/24", "10.10.0.252/30")).unwrap();
        // .252 is the sub-pool's first but not the pool's network address: usable.
        for want in ["10.10.0.252", "10.10.0.253", "10.10.0.254"] {
            assert_eq!(
                request_address(&mut pools, &id, None, false)
                    .unwrap()
                    .addr()
                    .to_string(),
                want
            );
        }
        assert!(matches!(
            request_address(&mut pools, &id, None, false),
            Err(IpamError::NoAvailableIps(_))
        ));
    }
}
