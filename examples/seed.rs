//! The seed usage of libnetwork, in Rust: controller → bridge driver → network
//! "network1" → endpoint "Endpoint1" → join "container1" (hostname "test",
//! domainname "docker.io"). Prints the endpoint's address, MAC and gateway and
//! the sandbox key (a namespace `ip netns list` shows while this runs), then
//! removes everything it made, so it can run again.
//!
//! Run as root: `cargo run --release --example seed`. The state directory is
//! `/var/lib/plexus` unless `PLEXUS_STATE_DIR` says otherwise; if `plexus daemon`
//! holds it, this example says so and stops.

use plexus::{Config, Controller, DriverOptions, EndpointOptions, JoinOptions, NetworkOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let controller = Controller::new(Config::default())?;
    controller.configure_driver("bridge", DriverOptions::default())?;
    let network = controller.new_network("bridge", "network1", NetworkOptions::default())?;
    let ep = network.create_endpoint("Endpoint1", EndpointOptions::default())?;
    let sandbox_key = ep.join(
        "container1",
        JoinOptions::default().hostname("test").domainname("docker.io"),
    )?;

    let info = ep.info()?;
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("endpoint     {}", info.name);
    println!("address      {}", show(info.address.map(|a| a.to_string())));
    println!("mac          {}", show(info.mac.map(|m| m.to_string())));
    println!("gateway      {}", show(info.gateway.map(|g| g.to_string())));
    println!("interface    {} (in the sandbox)", show(info.ifname));
    println!("sandbox key  {}", sandbox_key.display());
    let listed = std::fs::read_dir("/run/netns")?
        .filter_map(|e| e.ok())
        .any(|e| sandbox_key.file_name() == Some(e.file_name().as_os_str()));
    println!("ip netns     {}", if listed { "listed" } else { "NOT listed" });

    // Tear down in libnetwork's order: leave, delete the endpoint, the sandbox,
    // the network.
    ep.leave()?;
    ep.delete(false)?;
    controller.sandbox("container1")?.delete()?;
    network.delete()?;
    Ok(())
}
