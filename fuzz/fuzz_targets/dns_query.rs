//! The gateways' DNS on arbitrary bytes: the wire view's parsers (question,
//! names with compression, the records walk) never panic, and the sans-IO
//! resolver answers or drops any query — and any "upstream answer" — without
//! panicking, writing no more than its buffer and never an answer longer
//! than the client allows.
//!
//! Input: byte 0 picks what the rest is (bit 0: also feed it as an upstream
//! answer to a pending query); the rest is the DNS message.

#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plexus_switch::MacAddr;
use plexus_switch::dns::{Client, DnsConfig, DnsNames, NameTable, Resolver, Verdict};
use plexus_switch::types::{DomainId, PortId};
use plexus_switch::wire::dns;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, msg)) = data.split_first() else {
        return;
    };
    let _ = dns::Question::parse(msg);
    let _ = dns::records(msg);
    let _ = dns::read_name(msg, dns::HEADER_LEN.min(msg.len()));

    let mut r = Resolver::new(DnsConfig {
        upstreams: vec![SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 53), 53)],
        ..DnsConfig::default()
    });
    let table = NameTable::new([("web", Ipv4Addr::new(10, 0, 0, 2)), ("web.n1", Ipv4Addr::new(10, 0, 0, 2))]);
    r.set_names(DnsNames {
        tables: HashMap::from([(DomainId(0), Arc::new(table))]),
        scopes: HashMap::new(),
    });
    let client = Client {
        port: PortId(0),
        mac: MacAddr([2, 0x42, 10, 0, 0, 3]),
        addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 40000),
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        gateway_mac: MacAddr([2, 0x42, 10, 0, 0, 1]),
        tcp: None,
    };
    let now = Instant::now();
    let mut out = vec![0u8; 4096];
    match r.query(now, DomainId(0), mode & 2 != 0, client, msg, &mut out) {
        Verdict::Reply(n) => {
            assert!(n <= out.len());
            if let Ok(q) = dns::Question::parse(msg) {
                assert!(n <= q.udp_size, "{n} > {}", q.udp_size);
            }
        }
        Verdict::Forward { len, .. } => assert_eq!(len, msg.len()),
        Verdict::Drop(_) => {}
    }
    if mode & 1 != 0 {
        let _ = r.upstream_reply(now, 0, msg, &mut out);
    }
    r.expire(now + Duration::from_secs(10), &mut out, |_, _| {}, |_, a| assert!(a.len() <= 4096));
});
