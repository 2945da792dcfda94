//! [`FaultPort`]: a port wrapper in smoltcp's style that misbehaves at seeded
//! rates: frames it receives are dropped, corrupted (one bit flipped after the
//! Ethernet header), reordered (swapped with the next) or delayed (held back a
//! burst); frames it sends are dropped or corrupted — each direction with its
//! own rates. For tests that need a lossy link and the same loss again: the
//! same seed gives the same faults.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::port::{Port, RecvResult, SendResult};
use crate::frame::{FrameBuf, VNET_HDR_LEN};
use crate::wire::ETHERNET_HEADER_LEN;

/// How often each fault strikes in one direction, in frames per thousand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Dropped.
    pub drop: u16,
    /// One bit flipped.
    pub corrupt: u16,
    /// Swapped with the frame after it (received frames only).
    pub reorder: u16,
    /// Held back until the next receive (received frames only).
    pub delay: u16,
}

/// What a [`FaultPort`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames dropped.
    pub dropped: u64,
    /// Frames corrupted.
    pub corrupted: u64,
    /// Frames reordered.
    pub reordered: u64,
    /// Frames delayed.
    pub delayed: u64,
}

/// A port that misbehaves at seeded rates.
#[derive(Debug)]
pub struct FaultPort<P> {
    inner: P,
    rx: Faults,
    tx: Faults,
    rng: u64,
    /// Delayed frames (bytes as the port reads them: header slot first).
    held: Vec<Vec<u8>>,
    scratch: Vec<Vec<u8>>,
    counts: FaultCounts,
    /// A copy of `counts` for whoever holds [`FaultPort::counter`].
    shared: Arc<Mutex<FaultCounts>>,
}

impl<P: Port> FaultPort<P> {
    /// Wraps `inner`: frames it receives meet `rx`, frames sent through it
    /// meet `tx`; seeded with `seed`.
    pub fn new(inner: P, rx: Faults, tx: Faults, seed: u64) -> FaultPort<P> {
        FaultPort {
            inner,
            rx,
            tx,
            rng: seed | 1,
            held: Vec::new(),
            scratch: Vec::new(),
            counts: FaultCounts::default(),
            shared: Arc::default(),
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// A handle that reads what it did, for when the port is handed away (to
    /// the worker).
    pub fn counter(&self) -> Arc<Mutex<FaultCounts>> {
        self.shared.clone()
    }

    fn publish(&self) {
        if let Ok(mut c) = self.shared.lock() {
            *c = self.counts;
        }
    }

    /// A number in 0..1000 (xorshift64*).
    fn roll(&mut self) -> u16 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        u16::try_from((r >> 32) % 1000).unwrap_or(0)
    }

    fn hits(&mut self, per_mille: u16) -> bool {
        per_mille > 0 && self.roll() < per_mille
    }

    /// Flips one bit of `frame` after its Ethernet header (if it has any).
    fn flip(&mut self, frame: &mut [u8]) {
        if frame.len() > ETHERNET_HEADER_LEN {
            let span = frame.len() - ETHERNET_HEADER_LEN;
            let at = ETHERNET_HEADER_LEN + usize::from(self.roll()) * span / 1000;
            let bit = self.roll() % 8;
            frame[at] ^= 1 << bit;
        }
    }
}

impl<P: Port> Port for FaultPort<P> {
    fn raw_fd(&self) -> Option<RawFd> {
        self.inner.raw_fd()
    }

    fn offload(&self) -> bool {
        self.inner.offload()
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        // Frames held back last time come first.
        let mut n = 0;
        for bytes in std::mem::take(&mut self.held) {
            if n < bufs.len() {
                let b = &mut bufs[n];
                let storage = b.storage_mut();
                let k = bytes.len().min(storage.len());
                storage[..k].copy_from_slice(&bytes[..k]);
                b.set_len(k.saturating_sub(VNET_HDR_LEN));
                n += 1;
            }
        }
        let mut r = self.inner.recv(&mut bufs[n..])?;
        let total = n + r.frames;
        let mut kept = 0;
        for i in 0..total {
            if self.hits(self.rx.drop) {
                self.counts.dropped += 1;
                continue;
            }
            if i >= n && self.hits(self.rx.delay) {
                let b = &bufs[i];
                self.held.push(b.bytes_with_hdr().to_vec());
                self.counts.delayed += 1;
                continue;
            }
            if self.hits(self.rx.corrupt) {
                let mut f = bufs[i].frame().to_vec();
                self.flip(&mut f);
                let len = f.len();
                bufs[i].storage_mut()[VNET_HDR_LEN..VNET_HDR_LEN + len].copy_from_slice(&f);
                self.counts.corrupted += 1;
            }
            bufs.swap(kept, i);
            kept += 1;
        }
        for i in 0..kept.saturating_sub(1) {
            if self.hits(self.rx.reorder) {
                bufs.swap(i, i + 1);
                self.counts.reordered += 1;
            }
        }
        r.frames = kept;
        r.more = r.more || !self.held.is_empty();
        self.publish();
        Ok(r)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        let skip = if self.inner.offload() { VNET_HDR_LEN } else { 0 };
        self.scratch.clear();
        let mut dropped = 0;
        for f in frames {
            if self.hits(self.tx.drop) {
                dropped += 1;
                continue;
            }
            let mut copy = f.to_vec();
            if self.hits(self.tx.corrupt) {
                if let Some(frame) = copy.get_mut(skip..) {
                    self.flip(frame);
                }
                self.counts.corrupted += 1;
            }
            self.scratch.push(copy);
        }
        self.counts.dropped += dropped;
        let out: Vec<&[u8]> = self.scratch.iter().map(Vec::as_slice).collect();
        let mut r = self.inner.send(&out);
        // A dropped frame went, as far as the switch can tell.
        r.sent += usize::try_from(dropped).unwrap_or(0);
        self.publish();
        r
    }

    fn take_rx_overruns(&mut self) -> u64 {
        self.inner.take_rx_overruns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemPort;

    fn frames(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i; 60]).collect()
    }

    /// Sends `n` frames through `faults` and returns what came out.
    fn through(faults: Faults, seed: u64, n: u8) -> (Vec<Vec<u8>>, FaultCounts) {
        let (mut a, b) = MemPort::pair(false);
        let mut f = FaultPort::new(b, faults, Faults::default(), seed);
        for fr in frames(n) {
            assert!(a.send_frame(&fr));
        }
        let mut bufs: Vec<FrameBuf> = (0..32).map(|_| FrameBuf::default()).collect();
        let mut got = Vec::new();
        for _ in 0..20 {
            let r = f.recv(&mut bufs).unwrap();
            got.extend(bufs[..r.frames].iter().map(|b| b.frame().to_vec()));
        }
        (got, f.counts())
    }

    #[test]
    fn faults_strike_at_their_rate_and_the_same_seed_repeats_them() {
        let clean = through(Faults::default(), 1, 200);
        assert_eq!(clean.0, frames(200));
        let lossy = Faults {
            drop: 100,
            corrupt: 100,
            reorder: 100,
            delay: 100,
        };
        let (got, counts) = through(lossy, 7, 200);
        assert_eq!(through(lossy, 7, 200), (got.clone(), counts), "seeded");
        assert_ne!(through(lossy, 8, 200).0, got);
        assert!((5..=40).contains(&counts.dropped), "{counts:?}");
        assert!((5..=40).contains(&counts.corrupted), "{counts:?}");
        assert!(counts.reordered > 0 && counts.delayed > 0, "{counts:?}");
        assert_eq!(got.len() as u64, 200 - counts.dropped);
        let damaged = got.iter().filter(|f| f.iter().any(|&x| x != f[0])).count() as u64;
        assert_eq!(damaged, counts.corrupted);
    }
}
