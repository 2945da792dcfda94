//! DNS messages (RFC 1035): the header, one question, and the answers the
//! gateway writes; a walk over a whole message's records for the TTLs a cache
//! needs.
//!
//! [`Packet`] is a zero-copy view; `new_checked` checks the 12-byte header is
//! there. [`Question::parse`] reads the question section's first entry: its
//! name is decoded into a [`Name`] (a fixed 255-byte buffer, lowercase, dotted,
//! no allocation), following compression pointers only backwards and at most
//! [`MAX_POINTERS`] times, so a pointer loop or a forward jump is
//! [`WireError::Malformed`], never a hang. Labels over 63 bytes, names over
//! 255 and truncated sections are errors too.
//!
//! Writing: [`write_answer`] builds a reply to a query in a caller's buffer —
//! the header with the query's id and RD bit, the question copied, then A or
//! PTR records whose owner is a pointer to the question's name — and sets TC
//! when the records do not fit the size the client allows (512 bytes, or its
//! EDNS size). [`records`] walks a received message's answer, authority and
//! additional sections (the cache's smallest TTL; [`age_ttls`] lowers them in
//! place when a cached answer is served later).

use std::net::Ipv4Addr;

use super::{WireError, fields, packet_view};

mod field {
    use std::ops::Range;
    pub const ID: Range<usize> = 0..2;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
}

/// Length of the DNS header.
pub const HEADER_LEN: usize = field::ARCOUNT.end;
/// Longest name on the wire (RFC 1035 §2.3.4), and so longest [`Name`].
pub const MAX_NAME: usize = 255;
/// Most compression pointers followed in one name.
pub const MAX_POINTERS: usize = 16;
/// What a client without EDNS accepts over UDP.
pub const CLASSIC_UDP: usize = 512;

/// Header flag: a response.
pub const FLAG_QR: u16 = 0x8000;
/// Header flag: authoritative answer.
pub const FLAG_AA: u16 = 0x0400;
/// Header flag: truncated.
pub const FLAG_TC: u16 = 0x0200;
/// Header flag: recursion desired.
pub const FLAG_RD: u16 = 0x0100;
/// Header flag: recursion available.
pub const FLAG_RA: u16 = 0x0080;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS).
pub const TYPE_OPT: u16 = 41;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    /// No answer could be had (the upstreams failed or timed out).
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// Not a query the gateway serves (an opcode other than QUERY).
    NotImp = 4,
    /// The gateway will not answer this (forwarding is off).
    Refused = 5,
}

packet_view! {
    /// A view of a DNS message.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header is whole.
    pub fn check_len(&self) -> Result<(), WireError> {
        super::check_fixed(self.buffer.as_ref(), HEADER_LEN)
    }

    /// True for a response (QR set).
    pub fn is_response(&self) -> bool {
        self.flags() & FLAG_QR != 0
    }

    /// The opcode (0: QUERY).
    pub fn opcode(&self) -> u8 {
        u8::try_from((self.flags() >> 11) & 0xf).unwrap_or(0)
    }

    /// The response code.
    pub fn rcode(&self) -> u8 {
        u8::try_from(self.flags() & 0xf).unwrap_or(0)
    }
}

fields! {
    Packet {
        /// Message id.
        id / set_id: u16 = field::ID;
        /// Flags (QR, opcode, AA, TC, RD, RA, rcode).
        flags / set_flags: u16 = field::FLAGS;
        /// Questions.
        qdcount / set_qdcount: u16 = field::QDCOUNT;
        /// Answer records.
        ancount / set_ancount: u16 = field::ANCOUNT;
        /// Authority records.
        nscount / set_nscount: u16 = field::NSCOUNT;
        /// Additional records.
        arcount / set_arcount: u16 = field::ARCOUNT;
    }
}

/// A domain name, lowercase, labels joined by dots, without the root's dot
/// (`web.net1`; the root is the empty name). Fixed size: no allocation.
#[derive(Clone, Copy)]
pub struct Name {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl Name {
    /// The empty name (the root).
    pub const fn root() -> Name {
        Name {
            bytes: [0; MAX_NAME],
            len: 0,
        }
    }

    /// The name as text (ASCII; other bytes were refused).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    fn push(&mut self, label: &[u8]) -> Result<(), WireError> {
        let dot = usize::from(self.len > 0);
        let start = usize::from(self.len) + dot;
        let end = start + label.len();
        if end > MAX_NAME - 1 {
            return Err(WireError::Malformed);
        }
        if dot == 1 {
            self.bytes[start - 1] = b'.';
        }
        for (d, &b) in self.bytes[start..end].iter_mut().zip(label) {
            // Letters, digits, '-', '_' and the like; no dots or controls
            // inside a label (they would change what the text means).
            if !b.is_ascii_graphic() || b == b'.' {
                return Err(WireError::Malformed);
            }
            *d = b.to_ascii_lowercase();
        }
        self.len = u8::try_from(end).map_err(|_| WireError::Malformed)?;
        Ok(())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

/// Reads the name at `at` in `msg`; returns it and the offset just after it
/// in the original position (after the first pointer, if any).
pub fn read_name(msg: &[u8], mut at: usize) -> Result<(Name, usize), WireError> {
    let mut name = Name::root();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let &len = msg.get(at).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + usize::from(len)).ok_or(WireError::Truncated)?;
                name.push(label)?;
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let &low = msg.get(at + 1).ok_or(WireError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                // Only backwards, and a bounded number of times: no loops.
                jumps += 1;
                if target >= at || jumps > MAX_POINTERS {
                    return Err(WireError::Malformed);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(WireError::Malformed),
        }
    }
}

/// Skips the name at `at`; returns the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, WireError> {
    loop {
        let &len = msg.get(at).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => {
                return if at + 2 <= msg.len() {
                    Ok(at + 2)
                } else {
                    Err(WireError::Truncated)
                };
            }
            _ => return Err(WireError::Malformed),
        }
    }
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, WireError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::Truncated)
}

/// The first question of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// The name asked for.
    pub name: Name,
    /// Its type (A, PTR, ...).
    pub qtype: u16,
    /// Its class (IN).
    pub qclass: u16,
    /// Where the question section ends (the first question's end).
    pub end: usize,
    /// The UDP size the client accepts: its EDNS size, else 512.
    pub udp_size: usize,
}

impl Question {
    /// Reads the first question of `msg` (which must hold exactly one) and
    /// the client's EDNS UDP size from an OPT record, if there is one.
    pub fn parse(msg: &[u8]) -> Result<Question, WireError> {
        let p = Packet::new_checked(msg)?;
        if p.qdcount() != 1 {
            return Err(WireError::Malformed);
        }
        let (name, at) = read_name(msg, HEADER_LEN)?;
        let qtype = u16_at(msg, at)?;
        let qclass = u16_at(msg, at + 2)?;
        let end = at + 4;
        let mut udp_size = CLASSIC_UDP;
        // EDNS: an OPT record among the additional ones; its class is the size.
        let mut rest = end;
        for section in [p.ancount(), p.nscount(), p.arcount()] {
            for _ in 0..section {
                let r = Record::parse(msg, rest)?;
                if r.rtype == TYPE_OPT {
                    udp_size = usize::from(r.class).clamp(CLASSIC_UDP, 4096);
                }
                rest = r.end;
            }
        }
        Ok(Question {
            name,
            qtype,
            qclass,
            end,
            udp_size,
        })
    }
}

/// One resource record's fixed fields, located in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Type.
    pub rtype: u16,
    /// Class (for OPT: the UDP size).
    pub class: u16,
    /// TTL (seconds).
    pub ttl: u32,
    /// Where the TTL field is (to rewrite it).
    pub ttl_at: usize,
    /// Where the record ends.
    pub end: usize,
}

impl Record {
    /// Reads the record at `at`.
    pub fn parse(msg: &[u8], at: usize) -> Result<Record, WireError> {
        let at = skip_name(msg, at)?;
        let rtype = u16_at(msg, at)?;
        let class = u16_at(msg, at + 2)?;
        let ttl = u32::from(u16_at(msg, at + 4)?) << 16 | u32::from(u16_at(msg, at + 6)?);
        let rdlen = usize::from(u16_at(msg, at + 8)?);
        let end = at + 10 + rdlen;
        if end > msg.len() {
            return Err(WireError::Truncated);
        }
        Ok(Record {
            rtype,
            class,
            ttl,
            ttl_at: at + 4,
            end,
        })
    }
}

/// The records of a whole message after its questions (answers, authority,
/// additional), OPT excluded; the message must parse to its end.
pub fn records(msg: &[u8]) -> Result<Vec<Record>, WireError> {
    let p = Packet::new_checked(msg)?;
    let mut at = HEADER_LEN;
    for _ in 0..p.qdcount() {
        at = skip_name(msg, at)? + 4;
        if at > msg.len() {
            return Err(WireError::Truncated);
        }
    }
    let total = usize::from(p.ancount()) + usize::from(p.nscount()) + usize::from(p.arcount());
    let mut out = Vec::with_capacity(total.min(64));
    for _ in 0..total {
        let r = Record::parse(msg, at)?;
        at = r.end;
        if r.rtype != TYPE_OPT {
            out.push(r);
        }
    }
    Ok(out)
}

/// Lowers every record's TTL by `secs` (not below 0), in place.
pub fn age_ttls(msg: &mut [u8], records: &[Record], secs: u32) {
    for r in records {
        if let Some(field) = msg.get_mut(r.ttl_at..r.ttl_at + 4) {
            field.copy_from_slice(&r.ttl.saturating_sub(secs).to_be_bytes());
        }
    }
}

/// One record of a local answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// An address.
    A(Ipv4Addr),
    /// A name (for a PTR question), as dotted text.
    Ptr(&'a str),
}

/// How a reply is flagged, and the TTL of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Its response code.
    pub rcode: Rcode,
    /// The TTL of every record.
    pub ttl: u32,
    /// AA: the names are the gateway's own.
    pub authoritative: bool,
    /// RA: the gateway forwards other names.
    pub recursion: bool,
}

/// Writes into `out` the reply to query `msg` (whose question is `q`) with
/// `answers`, flagged as `reply` says. Records that do not fit the client's
/// size (or `out`) are left out and TC is set. Returns the reply's length,
/// or `None` if not even the header and question fit.
pub fn write_answer(msg: &[u8], q: &Question, reply: &Reply, answers: &[Answer<'_>], out: &mut [u8]) -> Option<usize> {
    let Reply {
        rcode,
        ttl,
        authoritative,
        recursion,
    } = *reply;
    let question = msg.get(HEADER_LEN..q.end)?;
    let limit = out.len().min(q.udp_size);
    let mut len = HEADER_LEN + question.len();
    if len > limit {
        return None;
    }
    let query = Packet::new_checked(msg).ok()?;
    out[HEADER_LEN..len].copy_from_slice(question);
    let mut count: u16 = 0;
    let mut truncated = false;
    for a in answers {
        let rdata_len = match a {
            Answer::A(_) => 4,
            Answer::Ptr(name) => name_wire_len(name)?,
        };
        let end = len + 12 + rdata_len;
        if end > limit {
            truncated = true;
            break;
        }
        let rec = &mut out[len..end];
        // Owner: a pointer to the question's name.
        rec[0..2].copy_from_slice(&0xc00cu16.to_be_bytes());
        let rtype = if matches!(a, Answer::A(_)) { TYPE_A } else { TYPE_PTR };
        rec[2..4].copy_from_slice(&rtype.to_be_bytes());
        rec[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
        rec[6..10].copy_from_slice(&ttl.to_be_bytes());
        rec[10..12].copy_from_slice(&u16::try_from(rdata_len).ok()?.to_be_bytes());
        match a {
            Answer::A(ip) => rec[12..16].copy_from_slice(&ip.octets()),
            Answer::Ptr(name) => write_name(name, &mut rec[12..])?,
        }
        len = end;
        count += 1;
    }
    let mut flags = FLAG_QR | (query.flags() & (FLAG_RD | 0x7800)) | rcode as u16;
    if authoritative {
        flags |= FLAG_AA;
    }
    if recursion {
        flags |= FLAG_RA;
    }
    if truncated {
        flags |= FLAG_TC;
    }
    let mut header = Packet::new_unchecked(&mut out[..len]);
    header.set_id(query.id());
    header.set_flags(flags);
    header.set_qdcount(1);
    header.set_ancount(count);
    header.set_nscount(0);
    header.set_arcount(0);
    Some(len)
}

/// Writes into `out` a reply to `msg` with `rcode` and no records, for a
/// query whose question could not be read (FORMERR): the header only.
pub fn write_error(msg: &[u8], rcode: Rcode, out: &mut [u8]) -> Option<usize> {
    let query = Packet::new_checked(msg).ok()?;
    let buf = out.get_mut(..HEADER_LEN)?;
    let mut reply = Packet::new_unchecked(buf);
    reply.set_id(query.id());
    reply.set_flags(FLAG_QR | (query.flags() & (FLAG_RD | 0x7800)) | rcode as u16);
    reply.set_qdcount(0);
    reply.set_ancount(0);
    reply.set_nscount(0);
    reply.set_arcount(0);
    Some(HEADER_LEN)
}

/// Bytes `name` (dotted text) takes on the wire, uncompressed.
fn name_wire_len(name: &str) -> Option<usize> {
    let mut len = 1;
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        len += 1 + label.len();
    }
    (len <= MAX_NAME).then_some(len)
}

fn write_name(name: &str, out: &mut [u8]) -> Option<()> {
    let mut at = 0;
    for label in name.split('.').filter(|l| !l.is_empty()) {
        *out.get_mut(at)? = u8::try_from(label.len()).ok()?;
        out.get_mut(at + 1..at + 1 + label.len())?
            .copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    *out.get_mut(at)? = 0;
    Some(())
}

/// The reverse name of `ip`: `4.3.2.1.in-addr.arpa` for 1.2.3.4.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The address a reverse name asks for, if it is one (`4.3.2.1.in-addr.arpa`).
pub fn parse_reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for o in octets.iter_mut().rev() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn r(rcode: Rcode, ttl: u32, authoritative: bool, recursion: bool) -> Reply {
        Reply {
            rcode,
            ttl,
            authoritative,
            recursion,
        }
    }

    /// A query for `name` of `qtype`, id 0x1234, RD set, optionally with an
    /// EDNS OPT record advertising `edns`.
    pub(crate) fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
        let mut n = vec![0u8; name_wire_len(name).unwrap()];
        write_name(name, &mut n).unwrap();
        m.extend(n);
        m.extend(qtype.to_be_bytes());
        m.extend(CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            m.extend([0, 0, 41]);
            m.extend(size.to_be_bytes());
            m.extend([0, 0, 0, 0, 0, 0]);
        }
        m
    }

    #[test]
    fn questions_parse_lowercase_with_their_size() {
        let q = Question::parse(&query("Web.NET1", TYPE_A, None)).unwrap();
        assert_eq!(
            (q.name.as_str(), q.qtype, q.qclass, q.udp_size),
            ("web.net1", TYPE_A, CLASS_IN, 512)
        );
        let q = Question::parse(&query("web", TYPE_A, Some(1232))).unwrap();
        assert_eq!(q.udp_size, 1232);
        let root = Question::parse(&query("", TYPE_A, None)).unwrap();
        assert_eq!(root.name.as_str(), "");
    }

    #[test]
    fn bad_names_are_refused_not_followed() {
        // A pointer to itself, a forward pointer, a reserved label type.
        for name in [&[0xc0, 12][..], &[0xc0, 40], &[0x80, 1]] {
            let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend(name);
            m.extend([0, 1, 0, 1]);
            assert_eq!(Question::parse(&m), Err(WireError::Malformed), "{name:?}");
        }
        // Two pointers pointing at each other, past the first one.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend([1, b'a', 0xc0, 12]);
        assert_eq!(read_name(&m, 12), Err(WireError::Malformed));
        // A name over 255 bytes.
        let long = ["a".repeat(63).as_str(); 4].join(".");
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in long.split('.') {
            m.push(63);
            m.extend(l.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1]);
        assert_eq!(Question::parse(&m), Err(WireError::Malformed));
        // Dots or controls inside a label.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'.', b'b', 0, 0, 1, 0, 1];
        assert_eq!(Question::parse(&m), Err(WireError::Malformed));
        m[14] = 0;
        assert_eq!(Question::parse(&m), Err(WireError::Malformed));
        // Every truncation of a good query fails cleanly.
        let good = query("web.net1", TYPE_A, Some(1400));
        for n in 0..good.len() {
            assert!(Question::parse(&good[..n]).is_err(), "{n}");
        }
        // Two questions: not served.
        let mut two = query("a", TYPE_A, None);
        two[5] = 2;
        assert_eq!(Question::parse(&two), Err(WireError::Malformed));
    }

    #[test]
    fn answers_point_at_the_question_and_truncate_at_the_clients_size() {
        let m = query("web", TYPE_A, None);
        let q = Question::parse(&m).unwrap();
        let mut out = [0u8; 1500];
        let ips: Vec<Answer<'_>> = (1..=3).map(|i| Answer::A(Ipv4Addr::new(10, 0, 0, i))).collect();
        let n = write_answer(&m, &q, &r(Rcode::NoError, 600, true, true), &ips, &mut out).unwrap();
        let reply = Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(reply.id(), 0x1234);
        assert!(reply.is_response());
        assert_eq!(
            reply.flags() & (FLAG_AA | FLAG_RD | FLAG_RA | FLAG_TC),
            FLAG_AA | FLAG_RD | FLAG_RA
        );
        assert_eq!(reply.ancount(), 3);
        let recs = records(&out[..n]).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|r| r.rtype == TYPE_A && r.ttl == 600));
        assert_eq!(&out[n - 4..n], &[10, 0, 0, 3]);
        // 40 addresses do not fit 512 bytes: TC, and what fits.
        let many: Vec<Answer<'_>> = (1..=40).map(|i| Answer::A(Ipv4Addr::new(10, 0, 1, i))).collect();
        let n = write_answer(&m, &q, &r(Rcode::NoError, 600, true, true), &many, &mut out).unwrap();
        let reply = Packet::new_checked(&out[..n]).unwrap();
        assert!(n <= 512 && reply.flags() & FLAG_TC != 0 && reply.ancount() < 40);
        // PTR.
        let m = query("2.0.0.10.in-addr.arpa", TYPE_PTR, None);
        let q = Question::parse(&m).unwrap();
        let n = write_answer(
            &m,
            &q,
            &r(Rcode::NoError, 60, true, true),
            &[Answer::Ptr("web.net1")],
            &mut out,
        )
        .unwrap();
        let (name, _) = read_name(&out[..n], n - 10).unwrap();
        assert_eq!(name.as_str(), "web.net1");
        // NXDOMAIN, no records.
        let n = write_answer(&m, &q, &r(Rcode::NxDomain, 0, true, false), &[], &mut out).unwrap();
        assert_eq!(Packet::new_checked(&out[..n]).unwrap().rcode(), 3);
    }

    #[test]
    fn ttls_age_in_place() {
        let m = query("web", TYPE_A, None);
        let q = Question::parse(&m).unwrap();
        let mut out = [0u8; 512];
        let n = write_answer(
            &m,
            &q,
            &r(Rcode::NoError, 30, false, true),
            &[Answer::A(Ipv4Addr::LOCALHOST)],
            &mut out,
        )
        .unwrap();
        let recs = records(&out[..n]).unwrap();
        age_ttls(&mut out[..n], &recs, 10);
        assert_eq!(records(&out[..n]).unwrap()[0].ttl, 20);
        age_ttls(&mut out[..n], &recs, 100);
        assert_eq!(records(&out[..n]).unwrap()[0].ttl, 0);
    }

    #[test]
    fn reverse_names_round_trip() {
        let ip = Ipv4Addr::new(10, 88, 0, 3);
        assert_eq!(reverse_name(ip), "3.0.88.10.in-addr.arpa");
        assert_eq!(parse_reverse(&reverse_name(ip)), Some(ip));
        for bad in [
            "1.2.3.in-addr.arpa",
            "1.2.3.4.5.in-addr.arpa",
            "01.2.3.4.in-addr.arpa",
            "a.2.3.4.in-addr.arpa",
            "300.2.3.4.in-addr.arpa",
            "web",
        ] {
            assert_eq!(parse_reverse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Question::parse(&bytes);
            let _ = records(&bytes);
            let _ = read_name(&bytes, HEADER_LEN);
        }
    }
}
