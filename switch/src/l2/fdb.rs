//! The MAC table (forwarding database) of one bridge domain. Sans-IO: every call
//! takes `now`; nothing here reads a clock.
//!
//! Bound and ageing: the table never holds more than `max_entries`. When it is
//! full a new source MAC is simply not learned (the caller counts it) — existing
//! entries are never evicted to make room, so a flood of random source MACs cannot
//! push the real hosts out; their frames to unknown destinations are flooded
//! instead, which is the safe fallback. Entries not refreshed for `ageing` are
//! ignored by lookups at once and removed by the periodic [`Fdb::expire`] sweep.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::MacAddr;
use crate::types::PortId;

/// Default ageing time (the kernel bridge's and libnetwork's 300 s).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// Default bound on entries per domain.
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    last_seen: Instant,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Refreshed an entry on the same port.
    Refreshed,
    /// A new entry.
    New,
    /// The address moved from another port.
    Moved {
        /// The port it was on.
        from: PortId,
    },
    /// The table is full; the address was not learned.
    TableFull,
}

/// One row of [`Fdb::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    /// The address.
    pub mac: MacAddr,
    /// Where it was last seen.
    pub port: PortId,
    /// Time since then.
    pub age: Duration,
}

/// A bounded, ageing MAC table.
#[derive(Debug, Clone)]
pub struct Fdb {
    map: HashMap<MacAddr, Entry, foldhash::fast::RandomState>,
    max_entries: usize,
    ageing: Duration,
}

impl Fdb {
    /// An empty table.
    pub fn new(max_entries: usize, ageing: Duration) -> Fdb {
        let cap = max_entries.min(1024);
        Fdb {
            map: HashMap::with_capacity_and_hasher(cap, foldhash::fast::RandomState::default()),
            max_entries,
            ageing,
        }
    }

    /// Changes the bound and the ageing time; entries beyond a lowered bound are
    /// kept until they age out.
    pub fn configure(&mut self, max_entries: usize, ageing: Duration) {
        self.max_entries = max_entries;
        self.ageing = ageing;
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) < self.ageing
    }

    /// Records that `mac` was seen on `port` at `now`.
    pub fn learn(&mut self, now: Instant, mac: MacAddr, port: PortId) -> Learned {
        if let Some(e) = self.map.get_mut(&mac) {
            e.last_seen = now;
            if e.port == port {
                return Learned::Refreshed;
            }
            let from = e.port;
            e.port = port;
            return Learned::Moved { from };
        }
        if self.map.len() >= self.max_entries {
            return Learned::TableFull;
        }
        self.map.insert(mac, Entry { port, last_seen: now });
        Learned::New
    }

    /// The port `mac` lives on, unless unknown or aged out.
    pub fn lookup(&self, now: Instant, mac: MacAddr) -> Option<PortId> {
        self.map.get(&mac).filter(|e| self.live(e, now)).map(|e| e.port)
    }

    /// Removes aged-out entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let ageing = self.ageing;
        self.map
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < ageing);
        before - self.map.len()
    }

    /// Forgets every address learned on `port`.
    pub fn remove_port(&mut self, port: PortId) {
        self.map.retain(|_, e| e.port != port);
    }

    /// Live entries (unordered).
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = FdbEntry> + '_ {
        self.map
            .iter()
            .filter(move |(_, e)| self.live(e, now))
            .map(move |(mac, e)| FdbEntry {
                mac: *mac,
                port: e.port,
                age: now.saturating_duration_since(e.last_seen),
            })
    }

    /// Number of entries, aged-out ones not yet swept included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn learn_lookup_move_age() {
        let t0 = Instant::now();
        let mut f = Fdb::new(16, Duration::from_secs(10));
        assert_eq!(f.learn(t0, mac(1), PortId(1)), Learned::New);
        assert_eq!(f.learn(t0, mac(1), PortId(1)), Learned::Refreshed);
        assert_eq!(f.lookup(t0, mac(1)), Some(PortId(1)));
        assert_eq!(f.learn(t0, mac(1), PortId(2)), Learned::Moved { from: PortId(1) });
        assert_eq!(f.lookup(t0 + Duration::from_secs(9), mac(1)), Some(PortId(2)));
        // Aged out: invisible at once, removed by the sweep.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(f.lookup(later, mac(1)), None);
        assert_eq!(f.entries(later).count(), 0);
        assert_eq!(f.expire(later), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn full_table_keeps_its_hosts() {
        let t0 = Instant::now();
        let mut f = Fdb::new(4, DEFAULT_AGEING);
        for i in 0..4 {
            assert_eq!(f.learn(t0, mac(i), PortId(i)), Learned::New);
        }
        for i in 100..10_000 {
            assert_eq!(f.learn(t0, mac(i), PortId(9)), Learned::TableFull);
        }
        assert_eq!(f.len(), 4);
        for i in 0..4 {
            assert_eq!(f.lookup(t0, mac(i)), Some(PortId(i)));
        }
        // A refresh of a known host still works when full.
        assert_eq!(f.learn(t0, mac(0), PortId(0)), Learned::Refreshed);
        f.remove_port(PortId(0));
        assert_eq!(f.lookup(t0, mac(0)), None);
        assert_eq!(f.learn(t0, mac(200), PortId(9)), Learned::New);
    }

    proptest! {
        /// Against a model: never above the bound, lookups agree with the model.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u32..40, 0u32..4, 0u64..30), 1..300)) {
            let t0 = Instant::now();
            let ageing = Duration::from_secs(10);
            let mut f = Fdb::new(16, ageing);
            let mut model: HashMap<MacAddr, (PortId, u64)> = HashMap::new();
            let mut clock = 0u64;
            for (m, p, dt) in ops {
                clock += dt;
                let now = t0 + Duration::from_secs(clock);
                if clock.is_multiple_of(7) {
                    f.expire(now);
                    model.retain(|_, (_, seen)| clock - *seen < 10);
                }
                let known = model.contains_key(&mac(m));
                let r = f.learn(now, mac(m), PortId(p));
                if known || model.len() < 16 {
                    model.insert(mac(m), (PortId(p), clock));
                } else {
                    prop_assert_eq!(r, Learned::TableFull);
                }
                prop_assert!(f.len() <= 16);
                for (k, (port, seen)) in &model {
                    let want = (clock - seen < 10).then_some(*port);
                    prop_assert_eq!(f.lookup(now, *k), want);
                }
            }
        }
    }
}
