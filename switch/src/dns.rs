//! The DNS server at every network's gateway, sans-IO: [`Resolver::query`]
//! takes a query a container sent to its gateway's port 53 and says what to
//! do — answer it now (a local name, a cached answer, an error) or forward it
//! to an upstream — and [`Resolver::upstream_reply`] and
//! [`Resolver::expire`] finish forwarded ones. No syscalls, no clock: `now`
//! comes in, frames go out through the caller.
//!
//! Decisions:
//! - **Local names** live in one [`NameTable`] per bridge domain, pushed by
//!   the control plane whole on every change (a name that leaves stops
//!   resolving at the next query). A port may see more domains than its own
//!   (its container is on several networks): the control plane says which
//!   ([`Resolver::set_names`]); nothing else is visible, so isolation holds.
//!   Several addresses for one name (an alias shared by endpoints) are
//!   answered all, rotated per query, as Docker does. AAAA for a local name is
//!   an empty NOERROR (so a resolver does not wait for IPv6); PTR answers the
//!   first name of an address.
//! - **Everything else is forwarded** unchanged except its id (a fresh one per
//!   forwarded query, so a client cannot guess or collide with another's), to
//!   the first upstream; no answer within [`DnsConfig::timeout`] tries the
//!   next one, and after the last the client gets SERVFAIL. An answer is
//!   accepted only from the upstream asked, with the pending id and the same
//!   question. Internal networks forward nothing (REFUSED).
//! - **Cache**: answers (NOERROR, NXDOMAIN) are kept for their smallest TTL
//!   (at most [`DnsConfig::max_ttl`]), served with the TTLs aged and the
//!   client's id and question bytes; bounded ([`DnsConfig::cache_entries`]),
//!   the entry closest to expiry goes first.
//! - **Bounds**: forwarded queries in flight are bounded in total and per port
//!   (`dns_full` when over: a flooding container cannot starve the others);
//!   a query that does not parse gets FORMERR if its header is whole, else is
//!   dropped (`dns_malformed`). Nothing here panics on any input: the wire
//!   view checks every length ([`crate::wire::dns`]).

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::MacAddr;
use crate::types::{DomainId, DropReason, PortId};
use crate::wire::dns::{self, Answer, Packet, Question, Rcode};

/// Settings of the gateways' DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where names that are not local go, in order.
    pub upstreams: Vec<SocketAddrV4>,
    /// How long one upstream has to answer.
    pub timeout: Duration,
    /// Forwarded queries in flight, in total.
    pub max_pending: usize,
    /// Forwarded queries in flight from one port.
    pub max_pending_per_port: usize,
    /// Answers kept.
    pub cache_entries: usize,
    /// Longest an answer is kept, whatever its TTL.
    pub max_ttl: Duration,
    /// The TTL of local answers.
    pub local_ttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            max_pending: 1024,
            max_pending_per_port: 128,
            cache_entries: 4096,
            max_ttl: Duration::from_secs(3600),
            local_ttl: 600,
        }
    }
}

/// The names of one network: name → addresses, address → names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTable {
    names: HashMap<String, Vec<Ipv4Addr>>,
    reverse: HashMap<Ipv4Addr, Vec<String>>,
}

impl NameTable {
    /// A table of `(name, address)` records; names are lowercased, and a
    /// trailing dot is dropped.
    pub fn new<'a>(records: impl IntoIterator<Item = (&'a str, Ipv4Addr)>) -> NameTable {
        let mut t = NameTable::default();
        for (name, ip) in records {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let ips = t.names.entry(name.clone()).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
            let names = t.reverse.entry(ip).or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        t
    }

    /// The addresses of `name` (lowercase, no trailing dot).
    pub fn lookup(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.names.get(name).map(Vec::as_slice)
    }

    /// The names of `ip`, first given first.
    pub fn reverse(&self, ip: Ipv4Addr) -> Option<&[String]> {
        self.reverse.get(&ip).map(Vec::as_slice)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// No names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The names every gateway answers: one table per bridge domain, and the
/// other domains whose names each port sees (its container is on them too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsNames {
    /// Names of each domain.
    pub tables: HashMap<DomainId, Arc<NameTable>>,
    /// Domains besides its own a port sees.
    pub scopes: HashMap<PortId, Vec<DomainId>>,
}

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `n` bytes of the output buffer back to the client.
    Reply(usize),
    /// Send the first `len` bytes of the output buffer to upstream number
    /// `upstream` ([`DnsConfig::upstreams`]).
    Forward {
        /// Which upstream.
        upstream: usize,
        /// The query's length.
        len: usize,
    },
    /// Drop it, counted with this reason.
    Drop(DropReason),
}

/// Where an answer goes: the client that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Its switch port.
    pub port: PortId,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its address and port.
    pub addr: SocketAddrV4,
    /// The gateway it asked (the answer's source) and the gateway's MAC.
    pub gateway: Ipv4Addr,
    /// The gateway's MAC.
    pub gateway_mac: MacAddr,
    /// Over TCP: the relayed connection (flow) the answer goes back on and
    /// that session's serial (a flow id is reused once its flow ends);
    /// `None` over UDP.
    pub tcp: Option<(crate::nat::FlowId, u64)>,
}

/// What an upstream's answer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The answer (first `n` bytes of the output buffer) goes to this client.
    Answer(Client, usize),
    /// Truncated over UDP for a TCP client: send the query (first `len`
    /// bytes of the output buffer) to upstream `upstream` over TCP.
    RetryTcp {
        /// Which upstream.
        upstream: usize,
        /// The query's length.
        len: usize,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    /// Asked again over TCP after a truncated answer.
    over_tcp: bool,
    client: Client,
    client_id: u16,
    upstream: usize,
    deadline: Instant,
    key: CacheKey,
    /// The query as the client sent it (to try the next upstream, or to
    /// answer SERVFAIL).
    query: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
}

#[derive(Debug, Clone)]
struct Cached {
    answer: Vec<u8>,
    records: Vec<dns::Record>,
    stored: Instant,
    expires: Instant,
    question_end: usize,
}

/// Counters of the gateways' DNS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsStats {
    /// Queries answered from local names.
    pub local: u64,
    /// Queries answered from the cache.
    pub cached: u64,
    /// Queries forwarded upstream.
    pub forwarded: u64,
    /// Upstream answers relayed.
    pub relayed: u64,
    /// SERVFAIL answers after every upstream failed or timed out.
    pub servfail: u64,
    /// Queries refused (internal network, no upstream).
    pub refused: u64,
    /// Answers from upstreams that matched no pending query.
    pub stray: u64,
    /// Truncated answers asked again over TCP.
    pub tcp_retries: u64,
}

/// The gateways' DNS server.
#[derive(Debug)]
pub struct Resolver {
    config: DnsConfig,
    tables: HashMap<DomainId, Arc<NameTable>>,
    /// Domains besides its own whose names a port sees.
    scopes: HashMap<PortId, Vec<DomainId>>,
    /// Forwarded queries by the id they went out with.
    pending: HashMap<u16, Pending>,
    per_port: HashMap<PortId, usize>,
    cache: HashMap<CacheKey, Cached>,
    /// Cache keys in the order they were stored: the oldest goes first when
    /// the cache is full (keys of entries gone since are skipped).
    cache_order: VecDeque<CacheKey>,
    /// Forwarded queries by deadline, oldest first (ids whose query is gone
    /// or was renewed are skipped): the next timer without a walk.
    deadlines: VecDeque<(Instant, u16)>,
    /// Keys the upstream ids come from (SipHash with random keys over a
    /// counter): not guessable by whoever sees some of them.
    ids: std::collections::hash_map::RandomState,
    id_counter: u64,
    rotate: usize,
    stats: DnsStats,
}

impl Resolver {
    /// A resolver with `config` and no names yet.
    pub fn new(config: DnsConfig) -> Resolver {
        Resolver {
            config,
            tables: HashMap::new(),
            scopes: HashMap::new(),
            pending: HashMap::new(),
            per_port: HashMap::new(),
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
            deadlines: VecDeque::new(),
            ids: std::collections::hash_map::RandomState::new(),
            id_counter: 0,
            rotate: 0,
            stats: DnsStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> DnsStats {
        self.stats
    }

    /// Replaces every name table and which other domains each port sees.
    pub fn set_names(&mut self, names: DnsNames) {
        self.tables = names.tables;
        self.scopes = names.scopes;
    }

    /// Forgets a port's queries in flight (it is gone).
    pub fn remove_port(&mut self, port: PortId) {
        self.pending.retain(|_, p| p.client.port != port);
        self.per_port.remove(&port);
        self.scopes.remove(&port);
    }

    /// The domains `port` (of `domain`) sees, its own first.
    fn visible(&self, port: PortId, domain: DomainId) -> impl Iterator<Item = &NameTable> {
        std::iter::once(domain)
            .chain(self.scopes.get(&port).into_iter().flatten().copied())
            .filter_map(|d| self.tables.get(&d).map(|t| &**t))
    }

    /// A query `msg` from `client` (on `domain`; `internal` networks forward
    /// nothing). The reply or the query to forward is written into `out`.
    pub fn query(
        &mut self,
        now: Instant,
        domain: DomainId,
        internal: bool,
        client: Client,
        msg: &[u8],
        out: &mut [u8],
    ) -> Verdict {
        let Ok(packet) = Packet::new_checked(msg) else {
            return Verdict::Drop(DropReason::DnsMalformed);
        };
        if packet.is_response() {
            return Verdict::Drop(DropReason::DnsMalformed);
        }
        if packet.opcode() != 0 {
            return error(msg, Rcode::NotImp, out);
        }
        let Ok(mut q) = Question::parse(msg) else {
            return match dns::write_error(msg, Rcode::FormErr, out) {
                Some(n) => Verdict::Reply(n),
                None => Verdict::Drop(DropReason::DnsMalformed),
            };
        };
        if client.tcp.is_some() {
            // Over TCP the answer is as large as it needs (up to the buffer).
            q.udp_size = out.len();
        }
        if let Some(v) = self.local(client.port, domain, msg, &q, out) {
            self.stats.local += 1;
            return v;
        }
        let key = CacheKey {
            name: q.name.as_str().to_owned(),
            qtype: q.qtype,
            qclass: q.qclass,
        };
        if internal || self.config.upstreams.is_empty() {
            self.stats.refused += 1;
            return answer(msg, &q, Rcode::Refused, &[], 0, false, out);
        }
        if let Some(n) = self.cached_answer(now, &key, msg, &q, out) {
            self.stats.cached += 1;
            return Verdict::Reply(n);
        }
        let mine = self.per_port.get(&client.port).copied().unwrap_or(0);
        if self.pending.len() >= self.config.max_pending || mine >= self.config.max_pending_per_port {
            return Verdict::Drop(DropReason::DnsFull);
        }
        let Some(buf) = out.get_mut(..msg.len()) else {
            return Verdict::Drop(DropReason::DnsMalformed);
        };
        let id = self.fresh_id();
        buf.copy_from_slice(msg);
        Packet::new_unchecked(&mut *buf).set_id(id);
        self.deadlines.push_back((now + self.config.timeout, id));
        self.pending.insert(
            id,
            Pending {
                over_tcp: false,
                client,
                client_id: packet.id(),
                upstream: 0,
                deadline: now + self.config.timeout,
                key,
                query: msg.to_vec(),
            },
        );
        *self.per_port.entry(client.port).or_default() += 1;
        self.stats.forwarded += 1;
        Verdict::Forward {
            upstream: 0,
            len: msg.len(),
        }
    }

    fn fresh_id(&mut self) -> u16 {
        use std::hash::BuildHasher;
        loop {
            // Random-looking, so an off-path sender cannot guess which id
            // an upstream answer must carry.
            self.id_counter += 1;
            let id = u16::try_from(self.ids.hash_one(self.id_counter) & 0xffff).unwrap_or(0);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The answer from local names, if the question is about one.
    fn local(&mut self, port: PortId, domain: DomainId, msg: &[u8], q: &Question, out: &mut [u8]) -> Option<Verdict> {
        if q.qclass != dns::CLASS_IN {
            return None;
        }
        let name = q.name.as_str();
        let ttl = self.config.local_ttl;
        if let Some(ip) = dns::parse_reverse(name) {
            let found = self
                .visible(port, domain)
                .find_map(|t| t.reverse(ip)?.first().cloned())?;
            return Some(answer(msg, q, Rcode::NoError, &[Answer::Ptr(&found)], ttl, true, out));
        }
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for t in self.visible(port, domain) {
            for ip in t.lookup(name).unwrap_or(&[]) {
                if !ips.contains(ip) {
                    ips.push(*ip);
                }
            }
        }
        if ips.is_empty() {
            return None;
        }
        let records: Vec<Answer<'_>> = match q.qtype {
            dns::TYPE_A | 255 => {
                // Round robin over a shared name's addresses.
                self.rotate = self.rotate.wrapping_add(1);
                let k = self.rotate % ips.len();
                ips.rotate_left(k);
                ips.iter().map(|&ip| Answer::A(ip)).collect()
            }
            // The name exists, without records of this type.
            _ => Vec::new(),
        };
        Some(answer(msg, q, Rcode::NoError, &records, ttl, true, out))
    }

    fn cached_answer(
        &mut self,
        now: Instant,
        key: &CacheKey,
        msg: &[u8],
        q: &Question,
        out: &mut [u8],
    ) -> Option<usize> {
        let c = self.cache.get(key)?;
        if now >= c.expires {
            self.cache.remove(key);
            return None;
        }
        if c.question_end != q.end || c.answer.len() > q.udp_size {
            return None;
        }
        let buf = out.get_mut(..c.answer.len())?;
        buf.copy_from_slice(&c.answer);
        // The client's id and question bytes (its letter case), the TTLs aged.
        buf[dns::HEADER_LEN..q.end].copy_from_slice(msg.get(dns::HEADER_LEN..q.end)?);
        let aged = u32::try_from(now.saturating_duration_since(c.stored).as_secs()).unwrap_or(u32::MAX);
        dns::age_ttls(buf, &c.records, aged);
        Packet::new_unchecked(&mut *buf).set_id(Packet::new_checked(msg).ok()?.id());
        Some(c.answer.len())
    }

    /// An answer `msg` from upstream number `upstream`: if it answers a
    /// pending query, it is written into `out` for that query's client
    /// (cached too) — or, truncated over UDP for a client that asked over
    /// TCP, the query is written into `out` to ask again over TCP (the
    /// query stays pending, with its deadline renewed).
    pub fn upstream_reply(&mut self, now: Instant, upstream: usize, msg: &[u8], out: &mut [u8]) -> Option<Relayed> {
        let Some(id) = Packet::new_checked(msg)
            .ok()
            .filter(|p| p.is_response())
            .map(|p| p.id())
        else {
            self.stats.stray += 1;
            return None;
        };
        let matches = self.pending.get(&id).is_some_and(|p| {
            p.upstream == upstream
                && Question::parse(msg)
                    .ok()
                    .zip(Question::parse(&p.query).ok())
                    .is_some_and(|(a, b)| a.name == b.name && a.qtype == b.qtype && a.qclass == b.qclass)
        });
        if !matches {
            self.stats.stray += 1;
            return None;
        }
        let truncated = Packet::new_checked(msg).is_ok_and(|p| p.flags() & dns::FLAG_TC != 0);
        if let Some(p) = self.pending.get_mut(&id)
            && truncated
            && p.client.tcp.is_some()
            && !p.over_tcp
        {
            p.over_tcp = true;
            p.deadline = now + self.config.timeout;
            self.deadlines.push_back((p.deadline, id));
            let buf = out.get_mut(..p.query.len())?;
            buf.copy_from_slice(&p.query);
            Packet::new_unchecked(&mut *buf).set_id(id);
            self.stats.tcp_retries += 1;
            return Some(Relayed::RetryTcp {
                upstream,
                len: p.query.len(),
            });
        }
        let p = self.take(id)?;
        let buf = out.get_mut(..msg.len())?;
        buf.copy_from_slice(msg);
        Packet::new_unchecked(&mut *buf).set_id(p.client_id);
        self.store(now, p.key, msg);
        self.stats.relayed += 1;
        Some(Relayed::Answer(p.client, msg.len()))
    }

    fn take(&mut self, id: u16) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_port.get_mut(&p.client.port) {
            *n = n.saturating_sub(1);
        }
        // Deadlines of queries answered meanwhile leave the front at once,
        // so the next timer is found without a walk.
        while let Some(&(at, front)) = self.deadlines.front() {
            if self.pending.get(&front).is_some_and(|q| q.deadline == at) {
                break;
            }
            self.deadlines.pop_front();
        }
        Some(p)
    }

    /// Keeps an upstream answer (NOERROR or NXDOMAIN, not truncated) for its
    /// smallest TTL.
    fn store(&mut self, now: Instant, key: CacheKey, msg: &[u8]) {
        let Ok(p) = Packet::new_checked(msg) else { return };
        if !matches!(p.rcode(), 0 | 3) || p.flags() & dns::FLAG_TC != 0 || self.config.cache_entries == 0 {
            return;
        }
        let (Ok(records), Ok(q)) = (dns::records(msg), Question::parse(msg)) else {
            return;
        };
        let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
        let keep = Duration::from_secs(u64::from(ttl)).min(self.config.max_ttl);
        if keep.is_zero() {
            return;
        }
        while self.cache.len() >= self.config.cache_entries && !self.cache.contains_key(&key) {
            // Room: the oldest entry goes (no walk of the cache).
            match self.cache_order.pop_front() {
                Some(old) => {
                    self.cache.remove(&old);
                }
                None => break,
            }
        }
        if self.cache_order.len() > 2 * self.config.cache_entries {
            // Keys of entries that expired meanwhile: drop them from the order.
            let cache = &self.cache;
            self.cache_order.retain(|k| cache.contains_key(k));
        }
        if !self.cache.contains_key(&key) {
            self.cache_order.push_back(key.clone());
        }
        self.cache.insert(
            key,
            Cached {
                answer: msg.to_vec(),
                records,
                stored: now,
                expires: now + keep,
                question_end: q.end,
            },
        );
    }

    /// When the next forwarded query times out.
    pub fn next_timer(&self, now: Instant) -> Option<Duration> {
        self.deadlines
            .iter()
            .find(|(at, id)| self.pending.get(id).is_some_and(|p| p.deadline == *at))
            .map(|(at, _)| at.saturating_duration_since(now))
    }

    /// Queries whose upstream did not answer in time: each goes to the next
    /// upstream (`forward(upstream, query)`) or, after the last, its client
    /// gets SERVFAIL (`reply(client, answer)`).
    pub fn expire(
        &mut self,
        now: Instant,
        out: &mut [u8],
        mut forward: impl FnMut(usize, &[u8]),
        mut reply: impl FnMut(Client, &[u8]),
    ) {
        let mut late: Vec<u16> = Vec::new();
        while let Some(&(at, id)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if self.pending.get(&id).is_some_and(|p| p.deadline == at) {
                late.push(id);
            }
        }
        for id in late {
            let Some(mut p) = self.take(id) else { continue };
            let next = p.upstream + 1;
            if next < self.config.upstreams.len() {
                let new_id = self.fresh_id();
                let mut q = p.query.clone();
                if q.len() >= dns::HEADER_LEN {
                    Packet::new_unchecked(&mut q[..]).set_id(new_id);
                }
                forward(next, &q);
                p.upstream = next;
                p.deadline = now + self.config.timeout;
                self.deadlines.push_back((p.deadline, new_id));
                *self.per_port.entry(p.client.port).or_default() += 1;
                self.pending.insert(new_id, p);
                continue;
            }
            self.stats.servfail += 1;
            if let Ok(q) = Question::parse(&p.query)
                && let Verdict::Reply(n) = answer(&p.query, &q, Rcode::ServFail, &[], 0, false, out)
            {
                reply(p.client, &out[..n]);
            }
        }
    }
}

/// A reply with `rcode` and `records` (recursion is offered).
fn answer(
    msg: &[u8],
    q: &Question,
    rcode: Rcode,
    records: &[Answer<'_>],
    ttl: u32,
    aa: bool,
    out: &mut [u8],
) -> Verdict {
    let reply = dns::Reply {
        rcode,
        ttl,
        authoritative: aa,
        recursion: true,
    };
    match dns::write_answer(msg, q, &reply, records, out) {
        Some(n) => Verdict::Reply(n),
        None => Verdict::Drop(DropReason::DnsMalformed),
    }
}

fn error(msg: &[u8], rcode: Rcode, out: &mut [u8]) -> Verdict {
    match dns::write_error(msg, rcode, out) {
        Some(n) => Verdict::Reply(n),
        None => Verdict::Drop(DropReason::DnsMalformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::tests::query;
    use crate::wire::dns::{TYPE_A, TYPE_AAAA, TYPE_PTR};

    const D1: DomainId = DomainId(1);
    const D2: DomainId = DomainId(2);
    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);
    const UP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 53), 53);

    fn client(port: PortId) -> Client {
        Client {
            port,
            mac: MacAddr([2, 0x42, 10, 0, 0, 2]),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            gateway_mac: MacAddr([2, 0x42, 10, 0, 0, 1]),
            tcp: None,
        }
    }

    fn resolver(upstreams: Vec<SocketAddrV4>) -> Resolver {
        let mut r = Resolver::new(DnsConfig {
            upstreams,
            ..DnsConfig::default()
        });
        let n1 = NameTable::new([
            ("web", Ipv4Addr::new(10, 0, 0, 3)),
            ("web.net1", Ipv4Addr::new(10, 0, 0, 3)),
            ("pool", Ipv4Addr::new(10, 0, 0, 4)),
            ("pool", Ipv4Addr::new(10, 0, 0, 5)),
        ]);
        let n2 = NameTable::new([("db", Ipv4Addr::new(10, 1, 0, 3))]);
        // P1 (on net1) also sits on net2; P2 (on net1) does not.
        r.set_names(DnsNames {
            tables: HashMap::from([(D1, Arc::new(n1)), (D2, Arc::new(n2))]),
            scopes: HashMap::from([(P1, vec![D2])]),
        });
        r
    }

    fn ask(r: &mut Resolver, port: PortId, name: &str, qtype: u16) -> (Verdict, Vec<u8>) {
        let mut out = vec![0u8; 1500];
        let v = r.query(
            Instant::now(),
            D1,
            false,
            client(port),
            &query(name, qtype, None),
            &mut out,
        );
        (v, out)
    }

    fn addrs(reply: &[u8]) -> Vec<Ipv4Addr> {
        dns::records(reply)
            .unwrap()
            .iter()
            .filter(|r| r.rtype == TYPE_A)
            .map(|r| {
                let d = &reply[r.end - 4..r.end];
                Ipv4Addr::new(d[0], d[1], d[2], d[3])
            })
            .collect()
    }

    #[test]
    fn local_names_answer_only_where_the_querier_is() {
        let mut r = resolver(vec![]);
        let (v, out) = ask(&mut r, P1, "WEB.net1", TYPE_A);
        let Verdict::Reply(n) = v else { panic!("{v:?}") };
        assert_eq!(addrs(&out[..n]), [Ipv4Addr::new(10, 0, 0, 3)]);
        assert_eq!(
            Packet::new_checked(&out[..n]).unwrap().flags() & dns::FLAG_AA,
            dns::FLAG_AA
        );
        // P1 is on net2 too, P2 is not: net2's names stay there.
        let (Verdict::Reply(n), out) = ask(&mut r, P1, "db", TYPE_A) else {
            panic!()
        };
        assert_eq!(addrs(&out[..n]), [Ipv4Addr::new(10, 1, 0, 3)]);
        let (Verdict::Reply(n), out) = ask(&mut r, P2, "db", TYPE_A) else {
            panic!()
        };
        assert_eq!(
            Packet::new_checked(&out[..n]).unwrap().rcode(),
            Rcode::Refused as u8,
            "no upstream"
        );
        // AAAA of a local name: the name exists, no records.
        let (Verdict::Reply(n), out) = ask(&mut r, P2, "web", TYPE_AAAA) else {
            panic!()
        };
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert_eq!((p.rcode(), p.ancount()), (0, 0));
        // PTR.
        let (Verdict::Reply(n), out) = ask(&mut r, P2, "3.0.0.10.in-addr.arpa", TYPE_PTR) else {
            panic!()
        };
        let rec = dns::records(&out[..n]).unwrap()[0];
        let (name, _) = dns::read_name(&out[..n], rec.ttl_at + 6).unwrap();
        assert_eq!(name.as_str(), "web");
        assert_eq!(r.stats().local, 4);
    }

    #[test]
    fn a_shared_name_answers_every_address_in_turn() {
        let mut r = resolver(vec![]);
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let (Verdict::Reply(n), out) = ask(&mut r, P2, "pool", TYPE_A) else {
                panic!()
            };
            let got = addrs(&out[..n]);
            assert_eq!(got.len(), 2);
            firsts.push(got[0]);
        }
        assert!(firsts.contains(&Ipv4Addr::new(10, 0, 0, 4)) && firsts.contains(&Ipv4Addr::new(10, 0, 0, 5)));
    }

    #[test]
    fn other_names_are_forwarded_relayed_cached_and_time_out() {
        let backup = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 54), 53);
        let mut r = resolver(vec![UP, backup]);
        let t0 = Instant::now();
        let mut out = vec![0u8; 1500];
        let q = query("example.test", TYPE_A, None);
        let v = r.query(t0, D1, false, client(P1), &q, &mut out);
        let Verdict::Forward { upstream: 0, len } = v else {
            panic!("{v:?}")
        };
        let sent = out[..len].to_vec();
        let up_id = Packet::new_checked(&sent[..]).unwrap().id();
        assert_ne!(up_id, 0x1234, "a fresh id upstream");
        // The upstream answers (TTL 30): relayed with the client's id.
        let parsed = Question::parse(&sent).unwrap();
        let mut answer_buf = vec![0u8; 512];
        let reply = dns::Reply {
            rcode: Rcode::NoError,
            ttl: 30,
            authoritative: false,
            recursion: true,
        };
        let n = dns::write_answer(
            &sent,
            &parsed,
            &reply,
            &[Answer::A(Ipv4Addr::new(203, 0, 113, 7))],
            &mut answer_buf,
        )
        .unwrap();
        // From the wrong upstream: not accepted.
        assert_eq!(r.upstream_reply(t0, 1, &answer_buf[..n], &mut out), None);
        let Some(Relayed::Answer(c, m)) = r.upstream_reply(t0, 0, &answer_buf[..n], &mut out) else {
            panic!("no answer")
        };
        assert_eq!(c, client(P1));
        assert_eq!(Packet::new_checked(&out[..m]).unwrap().id(), 0x1234);
        assert_eq!(addrs(&out[..m]), [Ipv4Addr::new(203, 0, 113, 7)]);
        // Again: a duplicate answer is stray.
        assert_eq!(r.upstream_reply(t0, 0, &answer_buf[..n], &mut out), None);
        // From the cache, aged, 10 s later; gone after its TTL.
        let v = r.query(t0 + Duration::from_secs(10), D1, false, client(P2), &q, &mut out);
        let Verdict::Reply(m) = v else { panic!("{v:?}") };
        assert_eq!(dns::records(&out[..m]).unwrap()[0].ttl, 20);
        let v = r.query(t0 + Duration::from_secs(31), D1, false, client(P2), &q, &mut out);
        assert!(matches!(v, Verdict::Forward { upstream: 0, .. }), "{v:?}");
        // No answer: the next upstream, then SERVFAIL.
        let t1 = t0 + Duration::from_secs(31);
        let mut forwarded = Vec::new();
        let mut replied = Vec::new();
        r.expire(
            t1 + Duration::from_secs(3),
            &mut out,
            |u, q| forwarded.push((u, q.len())),
            |c, a| replied.push((c, a.to_vec())),
        );
        assert_eq!(forwarded.len(), 1);
        assert_eq!(forwarded[0].0, 1);
        assert!(replied.is_empty());
        r.expire(
            t1 + Duration::from_secs(6),
            &mut out,
            |u, q| forwarded.push((u, q.len())),
            |c, a| replied.push((c, a.to_vec())),
        );
        assert_eq!(replied.len(), 1);
        let p = Packet::new_checked(&replied[0].1[..]).unwrap();
        assert_eq!((p.id(), p.rcode()), (0x1234, Rcode::ServFail as u8));
        assert_eq!(r.next_timer(t1), None);
        let s = r.stats();
        assert_eq!((s.forwarded, s.relayed, s.cached, s.servfail, s.stray), (2, 1, 1, 1, 2));
    }

    /// Forwards `name` from P1 and answers it from the upstream with `ttl`.
    fn forward_and_answer(r: &mut Resolver, now: Instant, name: &str, ttl: u32) {
        let mut out = vec![0u8; 1500];
        let v = r.query(now, D1, false, client(P1), &query(name, TYPE_A, None), &mut out);
        let Verdict::Forward { len, .. } = v else {
            panic!("{name}: {v:?}")
        };
        let sent = out[..len].to_vec();
        let q = Question::parse(&sent).unwrap();
        let reply = dns::Reply {
            rcode: Rcode::NoError,
            ttl,
            authoritative: false,
            recursion: true,
        };
        let mut a = vec![0u8; 512];
        let n = dns::write_answer(&sent, &q, &reply, &[Answer::A(Ipv4Addr::new(203, 0, 113, 1))], &mut a).unwrap();
        assert!(matches!(
            r.upstream_reply(now, 0, &a[..n], &mut out),
            Some(Relayed::Answer(..))
        ));
    }

    #[test]
    fn a_full_cache_drops_its_oldest_and_answered_queries_leave_no_timer() {
        let mut r = Resolver::new(DnsConfig {
            upstreams: vec![UP],
            cache_entries: 2,
            ..DnsConfig::default()
        });
        let now = Instant::now();
        for name in ["a.test", "b.test", "c.test"] {
            forward_and_answer(&mut r, now, name, 300);
        }
        assert_eq!(r.cache.len(), 2);
        let mut out = vec![0u8; 1500];
        let asked = |r: &mut Resolver, name: &str, out: &mut [u8]| {
            r.query(now, D1, false, client(P2), &query(name, TYPE_A, None), out)
        };
        assert!(
            matches!(asked(&mut r, "a.test", &mut out), Verdict::Forward { .. }),
            "the oldest went"
        );
        assert!(matches!(asked(&mut r, "c.test", &mut out), Verdict::Reply(_)));
        // Everything answered but the query just forwarded: one timer, no walk.
        assert_eq!(r.deadlines.len(), 1);
        assert!(r.next_timer(now).is_some());
    }

    #[test]
    fn internal_networks_forward_nothing_and_floods_are_bounded() {
        let mut r = resolver(vec![UP]);
        let mut out = vec![0u8; 1500];
        let q = query("example.test", TYPE_A, None);
        let v = r.query(Instant::now(), D1, true, client(P1), &q, &mut out);
        let Verdict::Reply(n) = v else { panic!("{v:?}") };
        assert_eq!(Packet::new_checked(&out[..n]).unwrap().rcode(), Rcode::Refused as u8);
        // Local names still answer on an internal network.
        let v = r.query(
            Instant::now(),
            D1,
            true,
            client(P1),
            &query("web", TYPE_A, None),
            &mut out,
        );
        assert!(matches!(v, Verdict::Reply(_)));
        let per = r.config().max_pending_per_port;
        let mut full = 0;
        for i in 0..per + 10 {
            let q = query(&format!("n{i}.example.test"), TYPE_A, None);
            if r.query(Instant::now(), D1, false, client(P1), &q, &mut out) == Verdict::Drop(DropReason::DnsFull) {
                full += 1;
            }
        }
        assert_eq!(full, 10);
        // Another port still gets through.
        let q = query("other.example.test", TYPE_A, None);
        assert!(matches!(
            r.query(Instant::now(), D1, false, client(P2), &q, &mut out),
            Verdict::Forward { .. }
        ));
        r.remove_port(P1);
        assert_eq!(r.pending.len(), 1);
    }

    #[test]
    fn bad_queries_get_formerr_or_are_dropped() {
        let mut r = resolver(vec![UP]);
        let mut out = vec![0u8; 1500];
        let now = Instant::now();
        assert_eq!(
            r.query(now, D1, false, client(P1), &[1, 2, 3], &mut out),
            Verdict::Drop(DropReason::DnsMalformed)
        );
        let mut m = query("web", TYPE_A, None);
        m.truncate(15);
        let v = r.query(now, D1, false, client(P1), &m, &mut out);
        let Verdict::Reply(n) = v else { panic!("{v:?}") };
        assert_eq!(Packet::new_checked(&out[..n]).unwrap().rcode(), Rcode::FormErr as u8);
        // A response sent as a query.
        let mut m = query("web", TYPE_A, None);
        m[2] |= 0x80;
        assert_eq!(
            r.query(now, D1, false, client(P1), &m, &mut out),
            Verdict::Drop(DropReason::DnsMalformed)
        );
        // Larger than the buffer it would be forwarded from: dropped, counted.
        let mut m = query("huge.example.test", TYPE_A, None);
        m.resize(5000, 0);
        assert_eq!(
            r.query(now, D1, false, client(P1), &m, &mut out),
            Verdict::Drop(DropReason::DnsMalformed)
        );
        assert!(r.pending.is_empty());
    }
}
