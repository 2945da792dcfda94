//! The gateways' DNS in the worker: queries the gateway routed here
//! ([`crate::gateway::Action::Dns`]) go through the sans-IO
//! [`Resolver`]; answers leave as UDP frames from `GATEWAY:53` to the
//! client, forwarded queries leave through one connected host socket per
//! upstream (opened on first use, under tokens from [`DNS_TOKENS`]), and
//! what the upstreams answer comes back on those sockets' readiness. The
//! timer walk expires forwarded queries (next upstream, then SERVFAIL).

use std::net::SocketAddrV4;
use std::time::Instant;

use mio::Token;

use super::ports::PortSink;
use crate::dns::{Client, DnsConfig, Resolver, Verdict};
use crate::frame::{FrameBuf, MAX_FRAME_LEN};
use crate::io::{Datagram, Host};
use crate::nat::NatProto;
use crate::types::{DropReason, PortId};
use crate::wire::{EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

/// Tokens from here up to the published listeners' are the upstream sockets.
pub(crate) const DNS_TOKENS: usize = 1 << 29;
/// Answers read from one upstream socket per wake-up.
const DNS_BURST: usize = 32;
/// Largest DNS message handled (EDNS answers up to 4096 bytes).
const MAX_MESSAGE: usize = 4096;

/// DNS state of the worker.
pub(crate) struct GatewayDns {
    pub(crate) resolver: Resolver,
    /// One socket per upstream, opened on first use.
    socks: Vec<Option<Box<dyn Datagram>>>,
    /// Upstream sockets that became readable.
    ready: Vec<usize>,
    msg: Box<[u8]>,
    rx: Box<[u8]>,
    out: FrameBuf,
}

impl GatewayDns {
    pub(crate) fn new(config: DnsConfig) -> GatewayDns {
        let n = config.upstreams.len();
        GatewayDns {
            resolver: Resolver::new(config),
            socks: (0..n).map(|_| None).collect(),
            ready: Vec::new(),
            msg: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            rx: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            out: FrameBuf::with_capacity(MAX_FRAME_LEN),
        }
    }

    /// Readiness of token `t` (an upstream socket).
    pub(crate) fn on_event(&mut self, t: usize) {
        self.ready.push(t - DNS_TOKENS);
    }

    /// A query from `client`, the container behind its port, to its gateway
    /// (on an `internal` network: nothing is forwarded).
    pub(crate) fn query(
        &mut self,
        now: Instant,
        host: &mut dyn Host,
        client: Client,
        query: &[u8],
        internal: bool,
        sink: &mut PortSink<'_>,
    ) {
        let Some(domain) = sink.engine.port_config(client.port).map(|c| c.domain) else {
            return;
        };
        match self.resolver.query(now, domain, internal, client, query, &mut self.msg) {
            Verdict::Reply(n) => {
                let (msg, out) = (&self.msg[..n], &mut self.out);
                send_answer(out, client, msg, sink);
            }
            Verdict::Forward { upstream, len } => {
                if self.send_upstream(host, upstream, len).is_err() {
                    // The query stays pending: the timer walk tries the next
                    // upstream or answers SERVFAIL.
                    sink.engine.count_drop(client.port, DropReason::NatError);
                }
            }
            Verdict::Drop(reason) => sink.engine.count_drop(client.port, reason),
        }
    }

    /// Sends the first `len` bytes of the message buffer to `upstream`.
    fn send_upstream(&mut self, host: &mut dyn Host, upstream: usize, len: usize) -> std::io::Result<()> {
        let to = self.upstream(upstream)?;
        let slot = self
            .socks
            .get_mut(upstream)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        if slot.is_none() {
            *slot = Some(host.datagram(NatProto::Udp, to, 0, Token(DNS_TOKENS + upstream))?);
        }
        match slot.as_mut() {
            Some(sock) => sock.send(&self.msg[..len]).map(drop),
            None => Ok(()),
        }
    }

    fn upstream(&self, i: usize) -> std::io::Result<SocketAddrV4> {
        self.resolver
            .config()
            .upstreams
            .get(i)
            .copied()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    /// Reads what ready upstreams answered and delivers it; returns the
    /// answers delivered.
    pub(crate) fn serve(&mut self, now: Instant, sink: &mut PortSink<'_>) -> usize {
        let mut delivered = 0;
        let ready = std::mem::take(&mut self.ready);
        for i in ready {
            for _ in 0..DNS_BURST {
                let Some(Some(sock)) = self.socks.get_mut(i) else { break };
                let n = match sock.recv(&mut self.rx) {
                    Ok(n) => n,
                    // Would block, or an ICMP error (the upstream is down):
                    // the timer walk takes the query on.
                    Err(_) => break,
                };
                if let Some((client, len)) = self.resolver.upstream_reply(now, i, &self.rx[..n], &mut self.msg) {
                    send_answer(&mut self.out, client, &self.msg[..len], sink);
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// Forwarded queries that timed out: on to the next upstream, or SERVFAIL.
    pub(crate) fn expire(&mut self, now: Instant, host: &mut dyn Host, sink: &mut PortSink<'_>) {
        let mut resend: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut answers: Vec<(Client, Vec<u8>)> = Vec::new();
        self.resolver.expire(
            now,
            &mut self.msg,
            |u, q| resend.push((u, q.to_vec())),
            |c, a| answers.push((c, a.to_vec())),
        );
        for (u, q) in resend {
            let len = q.len().min(self.msg.len());
            self.msg[..len].copy_from_slice(&q[..len]);
            let _ = self.send_upstream(host, u, len);
        }
        for (c, a) in answers {
            send_answer(&mut self.out, c, &a, sink);
        }
    }

    /// Port `port` is going: its queries in flight are forgotten.
    pub(crate) fn remove_port(&mut self, port: PortId) {
        self.resolver.remove_port(port);
    }
}

/// Sends DNS message `msg` to `client` as a UDP datagram from its gateway's
/// port 53.
fn send_answer(out: &mut FrameBuf, client: Client, msg: &[u8], sink: &mut PortSink<'_>) {
    let built = answer_frame(client, msg, out.frame_area_mut());
    let Some(len) = built else {
        sink.engine.count_drop(client.port, DropReason::DnsMalformed);
        return;
    };
    out.set_built(len);
    sink.send_counted(client.port, std::slice::from_ref(out));
}

/// Writes the frame carrying `msg` from `client.gateway:53` to the client.
fn answer_frame(client: Client, msg: &[u8], out: &mut [u8]) -> Option<usize> {
    let udp = UdpRepr {
        src_port: 53,
        dst_port: client.addr.port(),
        payload: msg,
    };
    let l3 = Ipv4Repr {
        src_addr: client.gateway,
        dst_addr: *client.addr.ip(),
        protocol: IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ttl: 64,
    };
    let l2 = EthernetRepr {
        src: client.gateway_mac,
        dst: client.mac,
        ethertype: EtherType::Ipv4,
    };
    let len = l2.buffer_len() + l3.buffer_len() + udp.buffer_len();
    let buf = out.get_mut(..len)?;
    let mut frame = EthernetFrame::new_unchecked(buf);
    l2.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    l3.emit(&mut packet);
    udp.emit(
        &mut UdpPacket::new_unchecked(packet.payload_mut()),
        client.gateway,
        *client.addr.ip(),
    );
    Some(len)
}
