//! The forwarding engine: sans-IO. It holds the bridge domains (one per network,
//! each with its MAC table and member ports) and the per-port configuration and
//! counters, and decides, for each received frame, where it goes at L2. It
//! makes no syscall and reads no clock: the caller passes `now` and the frame
//! and gets a [`Verdict`]; the worker ([`crate::dataplane`]) moves the bytes and
//! hands frames for the gateway to [`crate::gateway`].
//!
//! Rules, in order, for a frame received on port P of domain D:
//! 1. shorter than an Ethernet header → drop `runt`; a virtio-net header that
//!    does not parse → drop `bad_vnet_hdr`;
//! 2. longer than P's MTU allows (not a GSO super-frame) → drop `oversize`;
//! 3. source MAC multicast or zero → drop `bad_src`;
//! 4. anti-spoofing on in D and source MAC ≠ P's endpoint MAC → drop `spoofed`;
//!    then, if P has addresses: an ARP packet whose sender MAC is not P's or
//!    whose sender address is not one of P's (0.0.0.0, an ARP probe, passes)
//!    → drop `arp_spoofed`; an IPv4 packet whose source is not one of P's
//!    addresses → drop `ip_spoofed` (before the gateway, so before NAT);
//! 5. learn the source MAC on P (a full table counts `learn_table_full`);
//! 6. for D's gateway (its MAC, or a broadcast ARP for its address) →
//!    [`Verdict::Gateway`], with the domain's gateway;
//! 7. destination broadcast/multicast or unknown → flood to D's other ports;
//!    known on P itself → drop `same_port`; else unicast to its port.
//!
//! Nothing here allocates per frame; counters are plain integers owned by the
//! one thread that runs the engine.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::fdb::{self, Fdb, FdbEntry, Learned};
use crate::MacAddr;
use crate::types::{DomainId, DropReason, GatewayConfig, PortCounters, PortId};
use crate::wire::{ArpPacket, ETHERNET_HEADER_LEN, EtherType, EthernetFrame, Ipv4Packet, vnet};

/// A bridge domain's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainConfig {
    /// Bound on MAC table entries.
    pub max_entries: usize,
    /// MAC ageing time.
    pub ageing: Duration,
    /// Drop frames whose source MAC is not their port's endpoint MAC.
    pub anti_spoofing: bool,
    /// The network's gateway, answered by the switch; `None` for a plain L2
    /// domain (`plexus switch`).
    pub gateway: Option<GatewayConfig>,
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            max_entries: fdb::DEFAULT_MAX_ENTRIES,
            ageing: fdb::DEFAULT_AGEING,
            anti_spoofing: true,
            gateway: None,
        }
    }
}

/// A port's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The domain it belongs to.
    pub domain: DomainId,
    /// Name shown in statistics (the endpoint or interface).
    pub name: String,
    /// L3 MTU of the link; frames up to MTU + 14 (+4 with a VLAN tag) pass.
    pub mtu: u32,
    /// The endpoint's MAC, for anti-spoofing; `None` accepts any source.
    pub mac: Option<MacAddr>,
    /// The addresses the endpoint may send from (its own as a /32, and any it
    /// is allowed besides), for anti-spoofing at L3; empty: not checked.
    pub ips: Vec<Ipv4Net>,
    /// The port carries virtio-net headers (GSO frames and partial checksums
    /// may cross it).
    pub offload: bool,
}

#[derive(Debug, Clone)]
struct PortState {
    config: PortConfig,
    counters: PortCounters,
}

#[derive(Debug, Clone)]
struct Domain {
    config: DomainConfig,
    fdb: Fdb,
    ports: Vec<PortId>,
}

/// The engine's decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it (already counted on the ingress port).
    Drop(DropReason),
    /// Send it out of this port only.
    Unicast(PortId),
    /// Send it out of every other port of the domain.
    Flood(DomainId),
    /// It is for the domain's gateway (see [`crate::gateway::handle`]).
    Gateway(GatewayConfig),
}

/// Errors of engine configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No such domain.
    #[error("no bridge domain {0:?}")]
    NoSuchDomain(DomainId),
    /// No such port.
    #[error("no port {0:?}")]
    NoSuchPort(PortId),
    /// The domain still has ports.
    #[error("bridge domain {0:?} still has ports")]
    DomainInUse(DomainId),
}

/// The forwarding engine. Cloned, it is a copy to run a made-up frame
/// through ("what if") without touching the real one.
#[derive(Debug, Default, Clone)]
pub struct Engine {
    ports: Vec<Option<PortState>>,
    domains: Vec<Option<Domain>>,
}

fn free_slot<T>(v: &mut Vec<Option<T>>) -> usize {
    match v.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            v.push(None);
            v.len() - 1
        }
    }
}

fn idx(id: u32) -> usize {
    id as usize
}

impl Engine {
    /// An engine with no domains and no ports.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Adds a bridge domain.
    pub fn add_domain(&mut self, config: DomainConfig) -> DomainId {
        let i = free_slot(&mut self.domains);
        self.domains[i] = Some(Domain {
            config,
            fdb: Fdb::new(config.max_entries, config.ageing),
            ports: Vec::new(),
        });
        DomainId(u32::try_from(i).expect("fewer than 2^32 domains"))
    }

    /// Changes a domain's settings.
    pub fn configure_domain(&mut self, id: DomainId, config: DomainConfig) -> Result<(), EngineError> {
        let d = self.domain_mut(id)?;
        d.config = config;
        d.fdb.configure(config.max_entries, config.ageing);
        Ok(())
    }

    /// Removes an empty domain.
    pub fn remove_domain(&mut self, id: DomainId) -> Result<(), EngineError> {
        if !self.domain_mut(id)?.ports.is_empty() {
            return Err(EngineError::DomainInUse(id));
        }
        self.domains[idx(id.0)] = None;
        Ok(())
    }

    fn domain_mut(&mut self, id: DomainId) -> Result<&mut Domain, EngineError> {
        self.domains
            .get_mut(idx(id.0))
            .and_then(Option::as_mut)
            .ok_or(EngineError::NoSuchDomain(id))
    }

    fn domain(&self, id: DomainId) -> Result<&Domain, EngineError> {
        self.domains
            .get(idx(id.0))
            .and_then(Option::as_ref)
            .ok_or(EngineError::NoSuchDomain(id))
    }

    /// Adds a port to its domain.
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, EngineError> {
        self.domain(config.domain)?;
        let i = free_slot(&mut self.ports);
        let id = PortId(u32::try_from(i).expect("fewer than 2^32 ports"));
        self.domain_mut(config.domain)?.ports.push(id);
        self.ports[i] = Some(PortState {
            config,
            counters: PortCounters::default(),
        });
        Ok(id)
    }

    /// Removes a port, its MAC table entries and its counters.
    pub fn remove_port(&mut self, id: PortId) -> Result<PortConfig, EngineError> {
        let p = self
            .ports
            .get_mut(idx(id.0))
            .and_then(Option::take)
            .ok_or(EngineError::NoSuchPort(id))?;
        if let Ok(d) = self.domain_mut(p.config.domain) {
            d.ports.retain(|&q| q != id);
            d.fdb.remove_port(id);
        }
        Ok(p.config)
    }

    /// A port's settings.
    pub fn port_config(&self, id: PortId) -> Option<&PortConfig> {
        self.port(id).map(|p| &p.config)
    }

    fn port(&self, id: PortId) -> Option<&PortState> {
        self.ports.get(idx(id.0)).and_then(Option::as_ref)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut PortState> {
        self.ports.get_mut(idx(id.0)).and_then(Option::as_mut)
    }

    /// A domain's gateway, if it has one.
    pub fn domain_gateway(&self, id: DomainId) -> Option<GatewayConfig> {
        self.domain(id).ok().and_then(|d| d.config.gateway)
    }

    /// The ports of a domain (flood targets).
    pub fn domain_ports(&self, id: DomainId) -> &[PortId] {
        self.domain(id).map(|d| d.ports.as_slice()).unwrap_or(&[])
    }

    /// Decides where a frame received on `ingress` goes, learning its source.
    /// `vnet_hdr` is the frame's virtio-net header if the port carries one.
    pub fn classify(&mut self, now: Instant, ingress: PortId, vnet_hdr: Option<&[u8]>, frame: &[u8]) -> Verdict {
        let Some(port) = self.ports.get_mut(idx(ingress.0)).and_then(Option::as_mut) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let c = &mut port.counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        let drop = |c: &mut PortCounters, r: DropReason| {
            c.drops[r as usize] += 1;
            Verdict::Drop(r)
        };
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return drop(c, DropReason::Runt);
        };
        let (gso, gso_tcp) = match vnet_hdr.map(vnet::Header::new_checked) {
            None => (false, false),
            Some(Ok(h)) => (h.is_gso(), h.gso_type() & !vnet::GSO_ECN == vnet::GSO_TCPV4),
            Some(Err(_)) => return drop(c, DropReason::BadVnetHdr),
        };
        let vlan = if eth.ethertype() == 0x8100 { 4 } else { 0 };
        if !gso && frame.len() > port.config.mtu as usize + ETHERNET_HEADER_LEN + vlan {
            return drop(c, DropReason::Oversize);
        }
        let src = eth.src();
        if !src.is_unicast() {
            return drop(c, DropReason::BadSrc);
        }
        let domain_id = port.config.domain;
        let Some(domain) = self.domains.get_mut(idx(domain_id.0)).and_then(Option::as_mut) else {
            return drop(c, DropReason::Runt);
        };
        if domain.config.anti_spoofing {
            if port.config.mac.is_some_and(|m| m != src) {
                return drop(c, DropReason::Spoofed);
            }
            if let Some(r) = l3_spoofed(&eth, &port.config.ips) {
                return drop(c, r);
            }
        }
        if domain.fdb.learn(now, src, ingress) == Learned::TableFull {
            c.learn_table_full += 1;
        }
        if let Some(gw) = domain.config.gateway.filter(|g| g.wants(&eth)) {
            // The gateway's TCP stack reads TCP super-frames whole; any other
            // GSO frame would need segmenting first.
            return if gso && !gso_tcp {
                drop(c, DropReason::NoOffload)
            } else {
                Verdict::Gateway(gw)
            };
        }
        let dst = eth.dst();
        if dst.is_multicast() {
            return Verdict::Flood(domain_id);
        }
        match domain.fdb.lookup(now, dst) {
            None => Verdict::Flood(domain_id),
            Some(p) if p == ingress => drop(c, DropReason::SamePort),
            Some(p) => Verdict::Unicast(p),
        }
    }

    /// True if `addr` belongs to a network (domain with a gateway) other than
    /// `domain`: networks never reach each other (`isolated`).
    pub fn is_other_network(&self, domain: DomainId, addr: Ipv4Addr) -> bool {
        self.domains.iter().enumerate().any(|(i, d)| {
            i != idx(domain.0)
                && d.as_ref()
                    .and_then(|d| d.config.gateway)
                    .is_some_and(|g| g.subnet.contains(&addr))
        })
    }

    /// Counts a frame sent on `port`.
    pub fn count_tx(&mut self, port: PortId, bytes: usize) {
        if let Some(p) = self.port_mut(port) {
            p.counters.tx_frames += 1;
            p.counters.tx_bytes += bytes as u64;
        }
    }

    /// Counts `n` segments folded into other frames sent out of `port`.
    pub fn count_coalesced(&mut self, port: PortId, n: usize) {
        if n > 0
            && let Some(p) = self.port_mut(port)
        {
            p.counters.tx_coalesced += n as u64;
        }
    }

    /// Counts a drop on `port`.
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) {
        self.count_drops(port, reason, 1);
    }

    /// Counts `n` drops on `port`.
    pub fn count_drops(&mut self, port: PortId, reason: DropReason, n: u64) {
        if let Some(p) = self.port_mut(port) {
            p.counters.drops[reason as usize] += n;
        }
    }

    /// A port's counters.
    pub fn counters(&self, port: PortId) -> Option<PortCounters> {
        self.port(port).map(|p| p.counters)
    }

    /// Sweeps aged-out MAC entries of every domain.
    pub fn expire(&mut self, now: Instant) {
        for d in self.domains.iter_mut().flatten() {
            d.fdb.expire(now);
        }
    }

    /// A domain's live MAC table entries.
    pub fn fdb(&self, id: DomainId, now: Instant) -> Result<Vec<FdbEntry>, EngineError> {
        Ok(self.domain(id)?.fdb.entries(now).collect())
    }

    /// True if `port`'s network has learned `mac` on `port` (a trace's
    /// "learned": false before the frame, true after).
    pub fn knows(&self, now: Instant, port: PortId, mac: MacAddr) -> bool {
        self.port_config(port)
            .and_then(|c| self.domain(c.domain).ok())
            .is_some_and(|d| d.fdb.lookup(now, mac) == Some(port))
    }

    /// Number of entries in a domain's table (bounded by its `max_entries`).
    pub fn fdb_len(&self, id: DomainId) -> Result<usize, EngineError> {
        Ok(self.domain(id)?.fdb.len())
    }

    /// All ports with their settings and counters.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortConfig, PortCounters)> {
        self.ports.iter().enumerate().filter_map(|(i, p)| {
            let p = p.as_ref()?;
            Some((PortId(u32::try_from(i).ok()?), &p.config, p.counters))
        })
    }
}

/// The L3 anti-spoofing check of a frame whose source MAC is its port's own
/// (`src`): `None` if it may pass. `ips` empty: nothing to check. Reads fixed
/// fields after a length check; allocates nothing.
fn l3_spoofed(eth: &EthernetFrame<&[u8]>, ips: &[Ipv4Net]) -> Option<DropReason> {
    if ips.is_empty() {
        return None;
    }
    let allowed = |a: Ipv4Addr| ips.iter().any(|n| n.contains(&a));
    match EtherType::from(eth.ethertype()) {
        EtherType::Arp => {
            let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                return Some(DropReason::Malformed);
            };
            let sender = arp.sender_protocol_addr();
            let own = arp.sender_hardware_addr() == eth.src() && (sender.is_unspecified() || allowed(sender));
            (!own).then_some(DropReason::ArpSpoofed)
        }
        EtherType::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) if allowed(ip.src_addr()) => None,
            Ok(_) => Some(DropReason::IpSpoofed),
            Err(_) => Some(DropReason::Malformed),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

    fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn port(e: &mut Engine, d: DomainId, mac: MacAddr) -> PortId {
        e.add_port(PortConfig {
            domain: d,
            name: mac.to_string(),
            mtu: 1500,
            mac: Some(mac),
            ips: Vec::new(),
            offload: true,
        })
        .unwrap()
    }

    #[test]
    fn learns_floods_then_unicasts() {
        let now = Instant::now();
        let mut e = Engine::new();
        let d = e.add_domain(DomainConfig::default());
        let (pa, pb, pc) = (port(&mut e, d, A), port(&mut e, d, B), port(&mut e, d, C));
        // Unknown destination: flood (the I/O layer skips the ingress port).
        assert_eq!(e.classify(now, pa, None, &frame(B, A, 60)), Verdict::Flood(d));
        assert_eq!(e.domain_ports(d), &[pa, pb, pc]);
        // B answers: A is known now.
        assert_eq!(e.classify(now, pb, None, &frame(A, B, 60)), Verdict::Unicast(pa));
        assert_eq!(e.classify(now, pa, None, &frame(B, A, 60)), Verdict::Unicast(pb));
        assert_eq!(
            e.classify(now, pc, None, &frame(MacAddr::BROADCAST, C, 60)),
            Verdict::Flood(d)
        );
        let mut fdb = e.fdb(d, now).unwrap();
        fdb.sort_by_key(|x| x.port);
        assert_eq!(
            fdb.iter().map(|x| (x.mac, x.port)).collect::<Vec<_>>(),
            [(A, pa), (B, pb), (C, pc)]
        );
        assert_eq!(e.counters(pa).unwrap().rx_frames, 2);
        // Aged out after the domain's ageing time.
        let later = now + fdb::DEFAULT_AGEING;
        assert_eq!(e.classify(later, pc, None, &frame(A, C, 60)), Verdict::Flood(d));
        e.expire(later);
        assert_eq!(e.fdb(d, later).unwrap().len(), 1);
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let now = Instant::now();
        let mut e = Engine::new();
        let d = e.add_domain(DomainConfig::default());
        let (pa, pb) = (port(&mut e, d, A), port(&mut e, d, B));
        type Case<'a> = (Vec<u8>, Option<&'a [u8]>, DropReason);
        let cases: [Case<'_>; 5] = [
            (vec![0u8; 13], None, DropReason::Runt),
            (frame(B, A, 1515), None, DropReason::Oversize),
            (frame(B, MacAddr([1, 0, 0, 0, 0, 1]), 60), None, DropReason::BadSrc),
            (frame(B, C, 60), None, DropReason::Spoofed),
            (
                frame(B, A, 60),
                Some(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
                DropReason::BadVnetHdr,
            ),
        ];
        for (f, h, reason) in cases {
            assert_eq!(e.classify(now, pa, h, &f), Verdict::Drop(reason));
            assert_eq!(e.counters(pa).unwrap().dropped(reason), 1, "{reason:?}");
        }
        // A GSO super-frame may exceed the MTU.
        let gso = [0u8, vnet::GSO_TCPV4, 0, 0, 0xa8, 5, 0, 0, 0, 0];
        assert_eq!(e.classify(now, pa, Some(&gso), &frame(B, A, 30000)), Verdict::Flood(d));
        // A destination behind the ingress port is not sent back.
        e.classify(now, pb, None, &frame(A, B, 60));
        assert_eq!(
            e.classify(now, pa, None, &frame(A, A, 60)),
            Verdict::Drop(DropReason::SamePort)
        );
        assert_eq!(e.counters(pa).unwrap().dropped_total(), 6);
    }

    fn arp(sender_mac: MacAddr, sender_ip: [u8; 4]) -> Vec<u8> {
        let mut f = frame(MacAddr::BROADCAST, A, 42);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        f[22..28].copy_from_slice(&sender_mac.0);
        f[28..32].copy_from_slice(&sender_ip);
        f
    }

    fn ipv4(src: [u8; 4], dst: MacAddr) -> Vec<u8> {
        let mut f = frame(dst, A, 34);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&20u16.to_be_bytes());
        f[26..30].copy_from_slice(&src);
        f
    }

    #[test]
    fn anti_spoofing_checks_arp_and_ipv4_sources() {
        let now = Instant::now();
        let mut e = Engine::new();
        let d = e.add_domain(DomainConfig::default());
        let pa = e
            .add_port(PortConfig {
                domain: d,
                name: "a".into(),
                mtu: 1500,
                mac: Some(A),
                ips: vec!["10.0.0.2/32".parse().unwrap(), "192.168.7.0/24".parse().unwrap()],
                offload: false,
            })
            .unwrap();
        let _pb = port(&mut e, d, B);
        let cases = [
            (arp(A, [10, 0, 0, 2]), None),
            (arp(A, [0, 0, 0, 0]), None), // an ARP probe
            (arp(A, [192, 168, 7, 9]), None),
            (arp(A, [10, 0, 0, 1]), Some(DropReason::ArpSpoofed)), // claims the gateway
            (arp(C, [10, 0, 0, 2]), Some(DropReason::ArpSpoofed)),
            (ipv4([10, 0, 0, 2], B), None),
            (ipv4([192, 168, 7, 200], B), None),
            (ipv4([10, 0, 0, 3], B), Some(DropReason::IpSpoofed)),
            (ipv4([0, 0, 0, 0], B), Some(DropReason::IpSpoofed)),
        ];
        for (f, want) in cases {
            let v = e.classify(now, pa, None, &f);
            match want {
                Some(r) => assert_eq!(v, Verdict::Drop(r), "{f:02x?}"),
                None => assert!(!matches!(v, Verdict::Drop(_)), "{v:?}: {f:02x?}"),
            }
        }
        // A truncated ARP or IPv4 packet cannot be checked: malformed.
        let mut short = arp(A, [10, 0, 0, 2]);
        short.truncate(30);
        assert_eq!(e.classify(now, pa, None, &short), Verdict::Drop(DropReason::Malformed));
        let c = e.counters(pa).unwrap();
        assert_eq!(
            (c.dropped(DropReason::ArpSpoofed), c.dropped(DropReason::IpSpoofed)),
            (2, 2)
        );
        // Anti-spoofing off: nothing is checked.
        e.configure_domain(
            d,
            DomainConfig {
                anti_spoofing: false,
                ..DomainConfig::default()
            },
        )
        .unwrap();
        assert!(!matches!(
            e.classify(now, pa, None, &arp(C, [10, 0, 0, 1])),
            Verdict::Drop(_)
        ));
        assert!(!matches!(
            e.classify(now, pa, None, &ipv4([1, 2, 3, 4], B)),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn anti_spoofing_off_learns_any_source_within_the_bound() {
        let now = Instant::now();
        let mut e = Engine::new();
        let d = e.add_domain(DomainConfig {
            max_entries: 8,
            anti_spoofing: false,
            ..DomainConfig::default()
        });
        let (pa, pb) = (port(&mut e, d, A), port(&mut e, d, B));
        e.classify(now, pa, None, &frame(B, A, 60));
        e.classify(now, pb, None, &frame(A, B, 60));
        for i in 0..1000u32 {
            let b = i.to_be_bytes();
            let src = MacAddr([2, 9, b[0], b[1], b[2], b[3]]);
            let v = e.classify(now, pa, None, &frame(B, src, 60));
            assert_eq!(v, Verdict::Unicast(pb));
        }
        assert_eq!(e.fdb_len(d).unwrap(), 8);
        assert_eq!(e.classify(now, pb, None, &frame(A, B, 60)), Verdict::Unicast(pa));
        assert_eq!(e.counters(pa).unwrap().learn_table_full, 1000 - 6);
    }

    #[test]
    fn removing_a_port_forgets_its_macs() {
        let now = Instant::now();
        let mut e = Engine::new();
        let d = e.add_domain(DomainConfig::default());
        let (pa, pb) = (port(&mut e, d, A), port(&mut e, d, B));
        e.classify(now, pa, None, &frame(B, A, 60));
        assert_eq!(e.remove_domain(d), Err(EngineError::DomainInUse(d)));
        e.remove_port(pa).unwrap();
        assert_eq!(e.classify(now, pb, None, &frame(A, B, 60)), Verdict::Flood(d));
        assert_eq!(e.domain_ports(d), &[pb]);
        assert_eq!(e.remove_port(pa), Err(EngineError::NoSuchPort(pa)));
        e.remove_port(pb).unwrap();
        e.remove_domain(d).unwrap();
        assert!(
            e.add_port(PortConfig {
                domain: d,
                name: "x".into(),
                mtu: 1500,
                mac: None,
                ips: Vec::new(),
                offload: false
            })
            .is_err()
        );
    }
}
