//! End-to-end tests of the CNM library on real network namespaces: the model's
//! rules, its typed errors, IPAM through the controller, and state restore.
//! They need root (ignored otherwise).

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::{TestEnv, net, ns_path, run_ok, target_dir};
use plexus::ipam::{IpamError, parse_cidr};
use plexus::store::StoreError;
use plexus::{Controller, DriverOptions, EndpointOptions, Error, JoinOptions, NetworkOptions, SandboxOptions};

fn net_opts(cidr: &str) -> NetworkOptions {
    NetworkOptions::default().subnet(parse_cidr(cidr).unwrap())
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn join_configures_the_container_interface() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let net = c.new_network("bridge", "n1", net_opts("10.99.0.0/24")).unwrap();
    let ep = net.create_endpoint("ep1", EndpointOptions::default()).unwrap();
    let key = ep
        .join("c1", JoinOptions::default().hostname("test").domainname("docker.io"))
        .unwrap();
    assert_eq!(key, std::path::Path::new("/run/netns").join(env.netns("c1")));

    let info = ep.info().unwrap();
    assert_eq!(info.address.unwrap().to_string(), "10.99.0.2/24");
    assert_eq!(info.gateway, Some(Ipv4Addr::new(10, 99, 0, 1)));
    assert_eq!(info.mac.unwrap().to_string(), "02:42:0a:63:00:02");
    assert_eq!(info.sandbox.as_deref(), Some("c1"));
    assert_eq!(info.ifname.as_deref(), Some("eth0"));

    let ns = ns_path(&env.netns("c1"));
    let listed = plexus_sandbox::netns::list().unwrap();
    assert!(listed.contains(&env.netns("c1")), "{listed:?}");
    assert_eq!(net::addrs(&ns, "eth0"), ["10.99.0.2/24".parse().unwrap()]);
    let link = net::link(&ns, "eth0");
    assert_eq!(link.mac, Some([0x02, 0x42, 0x0a, 0x63, 0x00, 0x02]), "{link:?}");
    assert_eq!(link.mtu, 1500, "{link:?}");
    assert!(link.up, "{link:?}");
    assert!(net::link(&ns, "lo").up);
    assert_eq!(
        net::default_routes(&ns),
        [(Some(Ipv4Addr::new(10, 99, 0, 1)), "eth0".to_owned())]
    );
    // The host end stays in the daemon's namespace, up, unattached to any bridge.
    let host = net::link(std::path::Path::new("/proc/self/ns/net"), &info.host_ifname);
    assert_eq!(host.kind.as_deref(), Some("veth"), "{host:?}");
    assert_eq!(host.master, None, "{host:?}");
    assert!(host.up, "{host:?}");

    let sb = c.sandbox("c1").unwrap().info().unwrap();
    let hosts = std::fs::read_to_string(&sb.hosts_path).unwrap();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.99.0.2") && l.contains("test.docker.io") && l.contains("test"))
    );
    assert!(hosts.contains("localhost"));
    let resolv = std::fs::read_to_string(&sb.resolv_conf_path).unwrap();
    assert!(resolv.contains("search docker.io"), "{resolv}");

    // Leave keeps the address; a rejoin gets it back on a fresh eth0.
    ep.leave().unwrap();
    assert!(!net::links(&ns).iter().any(|l| l.name == "eth0"));
    assert_eq!(ep.info().unwrap().address.unwrap().to_string(), "10.99.0.2/24");
    ep.join("c1", JoinOptions::default()).unwrap();
    assert_eq!(net::addrs(&ns, "eth0"), ["10.99.0.2/24".parse().unwrap()]);

    // Teardown removes every kernel object.
    ep.delete(true).unwrap();
    assert!(env.leftover_links().is_empty(), "{:?}", env.leftover_links());
    c.sandbox("c1").unwrap().delete().unwrap();
    assert!(env.leftover_netns().is_empty());
    net.delete().unwrap();
    assert!(c.networks().is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn two_endpoints_in_one_sandbox_get_eth0_and_eth1() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let a = c.new_network("bridge", "a", net_opts("10.98.1.0/24")).unwrap();
    let b = c
        .new_network("bridge", "b", net_opts("10.98.2.0/24").internal(true).mtu(1400))
        .unwrap();
    let sb = c.new_sandbox("box", SandboxOptions::default()).unwrap();
    a.create_endpoint("e", EndpointOptions::default())
        .unwrap()
        .join_sandbox(&sb)
        .unwrap();
    b.create_endpoint("e", EndpointOptions::default())
        .unwrap()
        .join_sandbox(&sb)
        .unwrap();
    let ns = ns_path(&env.netns("box"));
    assert_eq!(net::addrs(&ns, "eth0"), ["10.98.1.2/24".parse().unwrap()]);
    assert_eq!(net::addrs(&ns, "eth1"), ["10.98.2.2/24".parse().unwrap()]);
    assert_eq!(net::link(&ns, "eth1").mtu, 1400);
    // The internal network's endpoint never carries the default route.
    assert_eq!(
        net::default_routes(&ns),
        [(Some(Ipv4Addr::new(10, 98, 1, 1)), "eth0".to_owned())]
    );
    // Endpoint names repeat across networks; the controller asks which one.
    assert!(matches!(c.endpoint("e"), Err(Error::InvalidOption(_))));
    // Deleting the sandbox leaves both endpoints, which keep their addresses.
    sb.delete().unwrap();
    assert!(env.leftover_netns().is_empty());
    for n in [&a, &b] {
        let ep = n.endpoint("e").unwrap().info().unwrap();
        assert!(ep.sandbox.is_none() && ep.address.is_some());
    }
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn model_rules_are_typed_errors() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();

    // Unknown driver.
    assert!(
        matches!(c.configure_driver("nope", DriverOptions::default()), Err(Error::UnknownDriver(d)) if d == "nope")
    );
    assert!(matches!(
        c.new_network("nope", "x", NetworkOptions::default()),
        Err(Error::UnknownDriver(_))
    ));
    // Duplicate network name.
    let net = c.new_network("bridge", "n1", net_opts("10.97.0.0/24")).unwrap();
    assert!(
        matches!(c.new_network("bridge", "n1", net_opts("10.97.1.0/24")), Err(Error::NetworkExists(n)) if n == "n1")
    );
    // Invalid names.
    assert!(matches!(
        c.new_network("bridge", "bad/name", NetworkOptions::default()),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        net.create_endpoint("", EndpointOptions::default()),
        Err(Error::InvalidName { .. })
    ));
    // Duplicate endpoint name in a network.
    let ep = net.create_endpoint("ep", EndpointOptions::default()).unwrap();
    assert!(matches!(
        net.create_endpoint("ep", EndpointOptions::default()),
        Err(Error::EndpointExists { network, endpoint }) if network == "n1" && endpoint == "ep"
    ));
    // Leave without a join.
    assert!(matches!(ep.leave(), Err(Error::NotJoined(e)) if e == "ep"));
    // Delete a network that still has endpoints.
    assert!(matches!(net.delete(), Err(Error::ActiveEndpoints { endpoints, .. }) if endpoints == ["ep"]));
    // Join twice.
    ep.join("c1", JoinOptions::default()).unwrap();
    assert!(
        matches!(ep.join("c2", JoinOptions::default()), Err(Error::AlreadyJoined { sandbox, .. }) if sandbox == "c1")
    );
    assert!(
        c.sandbox("c2").is_err(),
        "a failed join must not leave the sandbox it created"
    );
    assert!(!env.leftover_netns().contains(&env.netns("c2")));
    // Delete a joined endpoint without force.
    assert!(matches!(ep.delete(false), Err(Error::ActiveContainer { sandbox, .. }) if sandbox == "c1"));
    // Unknown network, endpoint, sandbox.
    assert!(matches!(c.network("ghost"), Err(Error::NoSuchNetwork(n)) if n == "ghost"));
    assert!(matches!(c.endpoint("ghost"), Err(Error::NoSuchEndpoint(_))));
    assert!(matches!(net.endpoint("ghost"), Err(Error::NoSuchEndpoint(_))));
    assert!(matches!(c.sandbox("ghost"), Err(Error::NoSuchSandbox(_))));
    // Duplicate sandbox.
    assert!(matches!(
        c.new_sandbox("c1", SandboxOptions::default()),
        Err(Error::SandboxExists(_))
    ));
    // Forced delete leaves first and releases the address.
    ep.delete(true).unwrap();
    assert!(matches!(ep.info(), Err(Error::NoSuchEndpoint(_))));
    let again = net.create_endpoint("ep2", EndpointOptions::default()).unwrap();
    assert_eq!(
        again.info().unwrap().address.unwrap().addr(),
        Ipv4Addr::new(10, 97, 0, 2)
    );
    again.delete(false).unwrap();
    net.delete().unwrap();
    // Handles of deleted objects say so.
    assert!(matches!(net.info(), Err(Error::NoSuchNetwork(_))));
    assert!(matches!(
        net.create_endpoint("x", EndpointOptions::default()),
        Err(Error::NoSuchNetwork(_))
    ));
    c.sandbox("c1").unwrap().delete().unwrap();
    assert!(env.leftover_netns().is_empty());
    assert!(env.leftover_links().is_empty());
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn ipam_rules_through_the_controller() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();

    // Bad CIDR.
    assert!(matches!(parse_cidr("10.1.2.0/33"), Err(IpamError::BadCidr(_))));
    assert!(matches!(parse_cidr("10.1.2.3/24"), Err(IpamError::BadCidr(_))));
    // Overlapping pool.
    let small = c.new_network("bridge", "small", net_opts("10.96.0.0/30")).unwrap();
    assert!(matches!(
        c.new_network("bridge", "over", net_opts("10.96.0.0/16")),
        Err(Error::Ipam(IpamError::OverlapPool { .. }))
    ));
    assert!(c.network("over").is_err(), "a refused network leaves nothing");
    // Exhausted pool: a /30 holds the gateway and one endpoint.
    let one = small.create_endpoint("one", EndpointOptions::default()).unwrap();
    assert_eq!(one.info().unwrap().address.unwrap().to_string(), "10.96.0.2/30");
    assert!(matches!(
        small.create_endpoint("two", EndpointOptions::default()),
        Err(Error::Ipam(IpamError::NoAvailableIps(_)))
    ));
    assert!(
        env.leftover_links().len() == 2,
        "only one veth pair: {:?}",
        env.leftover_links()
    );
    // Static address: out of range, already allocated, gateway, then a good one.
    let user = c
        .new_network(
            "bridge",
            "user",
            net_opts("10.95.0.0/24")
                .ip_range(parse_cidr("10.95.0.128/25").unwrap())
                .gateway(Ipv4Addr::new(10, 95, 0, 254)),
        )
        .unwrap();
    let ui = user.info().unwrap();
    assert_eq!(ui.gateway, Some(Ipv4Addr::new(10, 95, 0, 254)));
    assert!(matches!(
        user.create_endpoint("x", EndpointOptions::default().ip(Ipv4Addr::new(10, 94, 0, 5))),
        Err(Error::Ipam(IpamError::OutOfRange { .. }))
    ));
    assert!(matches!(
        user.create_endpoint("x", EndpointOptions::default().ip(Ipv4Addr::new(10, 95, 0, 254))),
        Err(Error::Ipam(IpamError::AlreadyAllocated(_)))
    ));
    let st = user
        .create_endpoint("static", EndpointOptions::default().ip(Ipv4Addr::new(10, 95, 0, 7)))
        .unwrap();
    assert_eq!(st.info().unwrap().address.unwrap().to_string(), "10.95.0.7/24");
    assert!(matches!(
        user.create_endpoint("dup", EndpointOptions::default().ip(Ipv4Addr::new(10, 95, 0, 7))),
        Err(Error::Ipam(IpamError::AlreadyAllocated(_)))
    ));
    // Dynamic addresses come from the ip-range, first fit.
    let dy = user.create_endpoint("dyn", EndpointOptions::default()).unwrap();
    assert_eq!(
        dy.info().unwrap().address.unwrap().addr(),
        Ipv4Addr::new(10, 95, 0, 128)
    );
    // Static --ip needs a user subnet.
    let def = c.new_network("bridge", "def", NetworkOptions::default()).unwrap();
    assert!(matches!(
        def.create_endpoint("x", EndpointOptions::default().ip(Ipv4Addr::new(172, 17, 0, 9))),
        Err(Error::Ipam(IpamError::StaticIpNeedsUserSubnet))
    ));
    let subnet = def.info().unwrap().subnet.unwrap();
    assert!(
        plexus::ipam::default_pools().contains(&subnet),
        "{subnet} is not a default pool"
    );
    // A second default network gets the next pool.
    let def2 = c.new_network("bridge", "def2", NetworkOptions::default()).unwrap();
    assert_ne!(def2.info().unwrap().subnet, Some(subnet));
    // A bad MTU and a multicast MAC are refused.
    assert!(matches!(
        c.new_network("bridge", "mtu", NetworkOptions::default().mtu(10)),
        Err(Error::InvalidOption(_))
    ));
    assert!(matches!(
        user.create_endpoint(
            "m",
            EndpointOptions::default().mac("01:00:5e:00:00:01".parse().unwrap())
        ),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn state_survives_a_new_controller_and_the_store_is_exclusive() {
    let env = TestEnv::new();
    let (ep_addr, ep_mac) = {
        let c = Controller::new(env.config()).unwrap();
        // A second controller on the same directory is refused, not interleaved.
        assert!(matches!(
            Controller::new(env.config()),
            Err(Error::Store(StoreError::Locked { .. }))
        ));
        let net = c.new_network("bridge", "n1", net_opts("10.93.0.0/24")).unwrap();
        let ep = net.create_endpoint("ep", EndpointOptions::default()).unwrap();
        ep.join("c1", JoinOptions::default().hostname("h1")).unwrap();
        net.create_endpoint("spare", EndpointOptions::default()).unwrap();
        let i = ep.info().unwrap();
        (i.address, i.mac)
    };
    let c = Controller::new(env.config()).unwrap();
    let net = c.network("n1").unwrap();
    let info = net.info().unwrap();
    assert_eq!(info.subnet.unwrap().to_string(), "10.93.0.0/24");
    assert_eq!(info.endpoints, ["ep", "spare"]);
    let ep = net.endpoint("ep").unwrap().info().unwrap();
    assert_eq!((ep.address, ep.mac), (ep_addr, ep_mac));
    assert_eq!(ep.sandbox.as_deref(), Some("c1"));
    let sb = c.sandbox("c1").unwrap().info().unwrap();
    assert_eq!(sb.hostname, "h1");
    assert_eq!(
        net::addrs(&ns_path(&env.netns("c1")), "eth0"),
        ["10.93.0.2/24".parse().unwrap()]
    );
    // Restored IPAM never hands out an address twice.
    let next = net.create_endpoint("next", EndpointOptions::default()).unwrap();
    assert_eq!(
        next.info().unwrap().address.unwrap().addr(),
        Ipv4Addr::new(10, 93, 0, 4)
    );
    assert!(matches!(
        c.new_network("bridge", "again", net_opts("10.93.0.0/25")),
        Err(Error::Ipam(IpamError::OverlapPool { .. }))
    ));
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn null_and_host_drivers() {
    let env = TestEnv::new();
    let c = Controller::new(env.config()).unwrap();
    let none = c.new_network("null", "none", NetworkOptions::default()).unwrap();
    let ep = none.create_endpoint("n", EndpointOptions::default()).unwrap();
    assert!(ep.info().unwrap().address.is_none());
    ep.join("lonely", JoinOptions::default()).unwrap();
    let links = net::links(&ns_path(&env.netns("lonely")));
    assert_eq!(links.len(), 1, "only lo: {links:?}");
    assert!(links[0].name == "lo" && links[0].up, "{links:?}");
    assert!(matches!(
        none.create_endpoint("x", EndpointOptions::default().ip(Ipv4Addr::new(10, 0, 0, 1))),
        Err(Error::InvalidOption(_))
    ));

    let host = c.new_network("host", "host", NetworkOptions::default()).unwrap();
    assert!(matches!(
        c.new_network("host", "host2", NetworkOptions::default()),
        Err(Error::HostNetworkExists(_))
    ));
    let hep = host.create_endpoint("h", EndpointOptions::default()).unwrap();
    // A host endpoint cannot join a sandbox with its own namespace.
    assert!(matches!(
        hep.join("lonely", JoinOptions::default()),
        Err(Error::SandboxMode { .. })
    ));
    let key = hep.join("hostbox", JoinOptions::default()).unwrap();
    assert!(key.starts_with("/proc/"), "{key:?}");
    assert!(c.sandbox("hostbox").unwrap().info().unwrap().key.is_none());
    assert!(!env.leftover_netns().contains(&env.netns("hostbox")));
}

/// The seed usage as an example program: prints an address of the first free
/// default pool and the sandbox key, and cleans up so that it runs twice.
#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn seed_example_runs_twice() {
    let env = TestEnv::new();
    let seed = target_dir().join("examples/seed");
    assert!(
        seed.exists(),
        "{} not built (cargo test builds examples)",
        seed.display()
    );
    for round in 0..2 {
        let out = run_ok(Command::new(&seed).envs(env.envs()));
        let addr = out
            .lines()
            .find_map(|l| l.strip_prefix("address"))
            .map(|a| a.trim().to_owned())
            .unwrap_or_else(|| panic!("round {round}: no address line in {out}"));
        let net = addr.parse::<plexus::Ipv4Net>().unwrap().trunc();
        assert!(
            plexus::ipam::default_pools().contains(&net),
            "round {round}: {addr} not in a default pool"
        );
        let key = format!("/run/netns/{}", env.netns("container1"));
        assert!(out.contains(&format!("sandbox key  {key}")), "{out}");
        assert!(out.contains("ip netns     listed"), "{out}");
        assert!(out.contains("02:42:"), "{out}");
        assert!(
            env.leftover_netns().is_empty(),
            "round {round} left {:?}",
            env.leftover_netns()
        );
        assert!(
            env.leftover_links().is_empty(),
            "round {round} left {:?}",
            env.leftover_links()
        );
    }
}
