//! The forwarding engine on arbitrary frames: one bridge domain, four ports
//! (with and without endpoint MACs and offloads), a small MAC table and a
//! virtual clock. `classify` must never panic and its verdicts must stay
//! consistent: unicast never goes back to the ingress port and only to a
//! member of the domain; the table never exceeds its bound.
//!
//! Input: records of `[port, flags, len]` then, if `flags & 1`, a 10-byte
//! virtio-net header, then `len` frame bytes (cut short at the end of the
//! input). `flags >> 1` advances the clock in 100 ms steps; `flags & 0x80` also
//! sweeps aged entries.

#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plexus_switch::wire::vnet;
use plexus_switch::{DomainConfig, Engine, GatewayConfig, MacAddr, PortConfig, Verdict};

const MAX_ENTRIES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new();
    let anti_spoofing = data.first().is_some_and(|b| b & 1 != 0);
    let gateway = GatewayConfig::new(Ipv4Addr::new(10, 0, 0, 1), "10.0.0.0/24".parse().unwrap(), false);
    let domain = engine.add_domain(DomainConfig {
        max_entries: MAX_ENTRIES,
        ageing: Duration::from_secs(5),
        anti_spoofing,
        gateway: Some(gateway),
    });
    let ports: Vec<_> = [
        (Some(MacAddr([2, 0, 0, 0, 0, 1])), true, 1500),
        (Some(MacAddr([2, 0, 0, 0, 0, 2])), false, 1500),
        (None, true, 9000),
        (None, false, 68),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (mac, offload, mtu))| {
        engine
            .add_port(PortConfig {
                domain,
                name: format!("p{i}"),
                mtu,
                mac,
                // The first port has an address (checked at L3 with anti-spoofing).
                ips: if i == 0 { vec!["10.0.0.2/32".parse().unwrap()] } else { vec![] },
                offload,
            })
            .expect("the domain exists")
    })
    .collect();

    let start = Instant::now();
    let mut now = start;
    let mut rest = data.get(1..).unwrap_or(&[]);
    while let [port, flags, len, tail @ ..] = rest {
        let ingress = ports[usize::from(*port) % ports.len()];
        now += Duration::from_millis(100 * u64::from((flags >> 1) & 0x3f));
        let mut tail = tail;
        let hdr = if flags & 1 != 0 {
            let (h, t) = tail.split_at(tail.len().min(vnet::HDR_LEN));
            tail = t;
            Some(h)
        } else {
            None
        };
        let (frame, t) = tail.split_at(tail.len().min(usize::from(*len)));
        rest = t;
        let before = engine.counters(ingress).expect("port exists").rx_frames;
        match engine.classify(now, ingress, hdr, frame) {
            Verdict::Unicast(p) => {
                assert_ne!(p, ingress, "unicast back to the ingress port");
                assert!(engine.domain_ports(domain).contains(&p), "unicast outside the domain");
                engine.count_tx(p, frame.len());
            }
            Verdict::Flood(d) => assert_eq!(d, domain),
            Verdict::Gateway(gw) => assert_eq!(gw, gateway),
            Verdict::Drop(_) => {}
        }
        assert_eq!(engine.counters(ingress).unwrap().rx_frames, before + 1);
        if flags & 0x80 != 0 {
            engine.expire(now);
        }
        assert!(engine.fdb_len(domain).unwrap() <= MAX_ENTRIES);
    }
    let _ = engine.fdb(domain, now);
});
