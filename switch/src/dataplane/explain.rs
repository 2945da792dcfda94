//! "What if": a made-up frame through the same decisions real frames take,
//! without sending it or changing anything (`plexus trace --from ... --to`),
//! in the style of Open vSwitch's `ofproto/trace`.
//!
//! Decision: honesty by construction — the frame goes through a copy of the
//! engine (so learning and counters stay untouched) with the very
//! `classify` and `gateway::handle` of the hot path, and the NAT table is
//! only looked up. What would happen next (a host socket opened, a flow
//! created) is said, not done.

use std::net::Ipv4Addr;
use std::time::Instant;

use crate::MacAddr;
use crate::gateway::{self, Action};
use crate::l2::{Engine, Verdict};
use crate::nat::{FlowId, FlowKey};
use crate::types::{DropReason, PortId};
use crate::wire::{
    EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags,
    TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// What the made-up packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP SYN to this port.
    Tcp(u16),
    /// A UDP datagram to this port.
    Udp(u16),
    /// An ICMP echo request.
    Icmp,
}

/// The frame `src_mac`/`src` sends to `dst` through `dst_mac` carrying `probe`.
pub fn probe_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, probe: Probe) -> Vec<u8> {
    let (protocol, len) = match probe {
        Probe::Tcp(_) => (IpProtocol::Tcp, 24),
        Probe::Udp(_) => (IpProtocol::Udp, 8 + 4),
        Probe::Icmp => (IpProtocol::Icmp, 8 + 8),
    };
    let eth = EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: len,
        ttl: 64,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + len];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p);
    let l4 = p.payload_mut();
    match probe {
        Probe::Tcp(port) => TcpRepr {
            src_port: 40000,
            dst_port: port,
            seq_number: 1,
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 64240,
            mss: Some(1460),
            payload: &[],
        }
        .emit(&mut TcpPacket::new_unchecked(l4), src, dst),
        Probe::Udp(port) => UdpRepr {
            src_port: 40000,
            dst_port: port,
            payload: b"what",
        }
        .emit(&mut UdpPacket::new_unchecked(l4), src, dst),
        Probe::Icmp => Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"whatif!!",
        }
        .emit(&mut Icmpv4Packet::new_unchecked(l4)),
    }
    buf
}

/// What the NAT knows of a routed packet's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FlowLookup {
    /// The flow that carries it, if there is one.
    pub(crate) id: Option<FlowId>,
    /// It belongs to a client's conversation with a published port.
    pub(crate) published: bool,
}

/// What the switch does with a frame, as the hot path decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Dropped(DropReason),
    Forwarded(PortId),
    Flooded(usize),
    GatewayArpReply,
    GatewayEchoReply,
    Dns,
    /// Routed out: what the NAT knows of it.
    Nat {
        key: FlowKey,
        flow: FlowLookup,
    },
}

/// The decision about `frame` from `ingress` that `verdict` (the engine's
/// classify) and, for the gateway, `gateway::handle` make; `flow` looks a
/// routed packet's flow up. Also the gateway it went to, if it did.
fn decide(
    engine: &Engine,
    flow: impl Fn(&FlowKey) -> FlowLookup,
    ingress: PortId,
    frame: &[u8],
    verdict: Verdict,
) -> (Option<Ipv4Addr>, Decision) {
    match verdict {
        Verdict::Drop(r) => (None, Decision::Dropped(r)),
        Verdict::Unicast(q) => (None, Decision::Forwarded(q)),
        Verdict::Flood(d) => (
            None,
            Decision::Flooded(engine.domain_ports(d).iter().filter(|&&q| q != ingress).count()),
        ),
        Verdict::Gateway(gw) => {
            let domain = engine.port_config(ingress).map(|c| c.domain);
            let isolated = |a| domain.is_some_and(|d| engine.is_other_network(d, a));
            let mut out = vec![0u8; frame.len().max(128)];
            let d = match gateway::handle(&gw, isolated, frame, &mut out) {
                Action::Reply(_) if is_arp(frame) => Decision::GatewayArpReply,
                Action::Reply(_) => Decision::GatewayEchoReply,
                Action::Dns(_) => Decision::Dns,
                Action::Drop(r) => Decision::Dropped(r),
                Action::Routed(r) => Decision::Nat {
                    key: r.key,
                    flow: flow(&r.key),
                },
            };
            (Some(gw.ip), d)
        }
    }
}

/// Every step `frame`, entering at `ingress`, would take, run through a copy
/// of `engine` (nothing learned or counted); `flow` looks up NAT flows.
pub(crate) fn explain(
    engine: &Engine,
    flow: impl Fn(&FlowKey) -> FlowLookup,
    now: Instant,
    ingress: PortId,
    frame: &[u8],
) -> Vec<String> {
    let verdict = engine.clone().classify(now, ingress, None, frame);
    let name = |p: PortId| engine_name(engine, p);
    let mut steps = vec![format!("enters the switch from {}", name(ingress))];
    let (gateway, decision) = decide(engine, flow, ingress, frame, verdict);
    if let Some(gw) = gateway {
        steps.push(format!("for the gateway {gw} (its MAC)"));
    }
    match decision {
        Decision::Dropped(r) => steps.push(format!("dropped: {}", r.name())),
        Decision::Forwarded(q) => steps.push(format!("forwarded to {} (MAC table hit)", name(q))),
        Decision::Flooded(n) => steps.push(format!("flooded to {n} ports (destination MAC not learned yet)")),
        Decision::GatewayArpReply => steps.push("the gateway answers it: an ARP reply with its MAC".into()),
        Decision::GatewayEchoReply => steps.push("the gateway answers it: an echo reply".into()),
        Decision::Dns => steps.push("a DNS query: the gateway's DNS answers or forwards it".into()),
        Decision::Nat { key, flow } => {
            steps.push(format!(
                "routed out of the network: {:?} {} -> {}",
                key.proto, key.inside, key.outside
            ));
            steps.push(match (flow.id, flow.published) {
                (Some(id), true) => format!(
                    "a published port's conversation: flow #{} carries it to the client",
                    id.0
                ),
                (None, true) => "a published port's conversation: its listener carries it to the client".into(),
                (Some(id), false) => format!("NAT flow #{} carries it", id.0),
                (None, false) if Some(*key.outside.ip()) == gateway => {
                    "to the gateway's own address: the host's loopback if the network allows it".into()
                }
                (None, false) => format!("NAT: a new flow, a host socket of the daemon to {}", key.outside),
            });
        }
    }
    steps
}

fn engine_name(engine: &Engine, p: PortId) -> String {
    engine
        .port_config(p)
        .map_or_else(|| format!("port {}", p.0), |c| c.name.clone())
}

/// One line of the live trace: the frame `ingress` received, summed up, and
/// what `verdict` (and, for the gateway, the gateway) does with it; whether
/// its source MAC was `learned` by it. Called only while someone traces the
/// port.
pub(crate) fn decision_line(
    engine: &Engine,
    flow: impl Fn(&FlowKey) -> FlowLookup,
    ingress: PortId,
    frame: &[u8],
    verdict: Verdict,
    learned: bool,
) -> String {
    let name = |p: PortId| engine_name(engine, p);
    let (src, dst) = macs(frame);
    let what = match decide(engine, flow, ingress, frame, verdict).1 {
        Decision::Dropped(r) => format!("dropped: {}", r.name()),
        Decision::Forwarded(q) => format!("forwarded to {} (MAC table hit)", name(q)),
        Decision::Flooded(n) => format!("flooded to {n} ports"),
        Decision::GatewayArpReply => "gateway ARP reply".to_owned(),
        Decision::GatewayEchoReply => "gateway echo reply".to_owned(),
        Decision::Dns => "DNS query to the gateway".to_owned(),
        Decision::Nat { flow, .. } if flow.published => match flow.id {
            Some(id) => format!("published port conversation, flow #{}", id.0),
            None => "published port conversation".to_owned(),
        },
        Decision::Nat { flow, key } => match flow.id {
            Some(id) => format!("NAT flow #{}", id.0),
            None => format!("NAT new flow -> host socket to {}", key.outside),
        },
    };
    let learned = if learned {
        format!("learned {src} on {}, ", name(ingress))
    } else {
        String::new()
    };
    format!("{} {src} > {dst} {}: {learned}{what}", name(ingress), summary(frame))
}

/// One line of the live trace for a frame the switch built and sent out of
/// `port` (the gateway's answers, what comes back through NAT or a
/// published port).
pub(crate) fn built_line(engine: &Engine, port: PortId, frame: &[u8]) -> String {
    let (src, dst) = macs(frame);
    let gateway = engine
        .port_config(port)
        .and_then(|c| engine.domain_gateway(c.domain))
        .map(|g| g.ip);
    let what = match l4_source(frame) {
        _ if is_arp(frame) => "gateway ARP reply",
        Some((ip, IpProtocol::Icmp, _)) if Some(ip) == gateway => "gateway echo reply",
        Some((ip, IpProtocol::Udp | IpProtocol::Tcp, 53)) if Some(ip) == gateway => "DNS answer",
        _ => "from outside, through NAT or a published port",
    };
    format!(
        "to {} {src} > {dst} {}: sent by the switch: {what}",
        engine_name(engine, port),
        summary(frame)
    )
}

/// A frame's source and destination MACs, as text.
fn macs(frame: &[u8]) -> (String, String) {
    crate::wire::EthernetFrame::new_checked(frame)
        .map(|e| (e.src().to_string(), e.dst().to_string()))
        .unwrap_or_else(|_| ("?".into(), "?".into()))
}

fn is_arp(frame: &[u8]) -> bool {
    EthernetFrame::new_checked(frame).is_ok_and(|e| EtherType::from(e.ethertype()) == EtherType::Arp)
}

/// An IPv4 frame's source address, protocol and source port (0 for ICMP).
fn l4_source(frame: &[u8]) -> Option<(Ipv4Addr, IpProtocol, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let port = match ip.protocol() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload()).ok()?.src_port(),
        IpProtocol::Udp => UdpPacket::new_checked(ip.payload()).ok()?.src_port(),
        _ => 0,
    };
    Some((ip.src_addr(), ip.protocol(), port))
}

/// A one-word-ish L3/L4 summary of a frame: `ARP`, `ICMP 10.0.0.2 > 10.0.0.1`,
/// `TCP 10.0.0.2:40000 > 10.0.0.3:80`, or the ethertype.
fn summary(frame: &[u8]) -> String {
    let Ok(eth) = crate::wire::EthernetFrame::new_checked(frame) else {
        return "runt".into();
    };
    match EtherType::from(eth.ethertype()) {
        EtherType::Arp => "ARP".into(),
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return "IPv4 (malformed)".into();
            };
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let l4 = ip.payload();
            match ip.protocol() {
                IpProtocol::Tcp => match TcpPacket::new_checked(l4) {
                    Ok(t) => format!("TCP {s}:{} > {d}:{}", t.src_port(), t.dst_port()),
                    Err(_) => format!("TCP {s} > {d}"),
                },
                IpProtocol::Udp => match UdpPacket::new_checked(l4) {
                    Ok(u) => format!("UDP {s}:{} > {d}:{}", u.src_port(), u.dst_port()),
                    Err(_) => format!("UDP {s} > {d}"),
                },
                IpProtocol::Icmp => format!("ICMP {s} > {d}"),
                p => format!("IPv4 {p:?} {s} > {d}"),
            }
        }
        other => format!("{other:?}"),
    }
}
