//! Capture taps: copies of the frames crossing chosen ports, both
//! directions, handed to a reader through a bounded queue.
//!
//! Decisions:
//! - A port carries its taps in its slot; a port without taps costs one
//!   empty-list check per batch, nothing per frame — capturing costs nothing
//!   when nobody captures.
//! - A tap never blocks the worker: a full queue (a slow reader) drops the
//!   copy and counts it; the reader reports the count at the end.
//! - Frames are copied as the container sent or receives them (no
//!   virtio-net header; an offload super-frame whole, up to the snap length,
//!   with its original length), with the wall-clock time of the copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use crossbeam_channel::RecvTimeoutError;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{Command, Dataplane};
use crate::types::PortId;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When it was copied (since the Unix epoch).
    pub ts: Duration,
    /// Its length on the wire (before the snap length cut it).
    pub orig_len: u32,
    /// Its first bytes, up to the snap length.
    pub bytes: Vec<u8>,
}

/// The worker's side of a capture.
#[derive(Debug)]
pub struct Tap {
    /// Decisions (one text line per frame received) instead of frames.
    pub(crate) decisions: bool,
    tx: Sender<Captured>,
    snaplen: usize,
    /// Bytes waiting for the reader, and the most that may wait.
    queued: AtomicUsize,
    max_queued: usize,
    captured: AtomicU64,
    dropped: AtomicU64,
}

/// Bytes a capture keeps waiting for its reader at most (besides the bound
/// on frames): a slow reader of offload super-frames costs no more memory.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;

impl Tap {
    /// A tap of up to `queue` frames (or lines, for `decisions`) of at most
    /// `snaplen` bytes, and the receiver of what it copies.
    pub(crate) fn detached(queue: usize, snaplen: u32, decisions: bool) -> (Arc<Tap>, Receiver<Captured>) {
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let tap = Arc::new(Tap {
            decisions,
            tx,
            snaplen: usize::try_from(snaplen).unwrap_or(usize::MAX).max(1),
            queued: AtomicUsize::new(0),
            max_queued: MAX_QUEUED_BYTES,
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        (tap, rx)
    }

    /// Hands a decision line to the reader (a decision tap), or counts it
    /// dropped.
    pub(crate) fn line(&self, line: String) {
        let n = line.len();
        let c = Captured {
            ts: crate::io::pcap::wall_clock(),
            orig_len: u32::try_from(n).unwrap_or(u32::MAX),
            bytes: line.into_bytes(),
        };
        match self.tx.try_send(c) {
            Ok(()) => {
                self.queued.fetch_add(n, Ordering::Relaxed);
                self.captured.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Copies `frame` to the reader's queue, or counts it dropped.
    pub(crate) fn frame(&self, frame: &[u8]) {
        if self.decisions {
            return;
        }
        let n = frame.len().min(self.snaplen);
        if self.queued.load(Ordering::Relaxed) + n > self.max_queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let c = Captured {
            ts: crate::io::pcap::wall_clock(),
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            bytes: frame[..n].to_vec(),
        };
        match self.tx.try_send(c) {
            Ok(()) => {
                self.queued.fetch_add(n, Ordering::Relaxed);
                self.captured.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A capture in progress: its frames come out of [`Capture::recv`]; it
/// stops when dropped.
#[derive(Debug)]
pub struct Capture {
    rx: Receiver<Captured>,
    tap: Arc<Tap>,
    dataplane: Dataplane,
}

impl Capture {
    pub(crate) fn new(dataplane: Dataplane, queue: usize, snaplen: u32, decisions: bool) -> (Capture, Arc<Tap>) {
        let (tap, rx) = Tap::detached(queue, snaplen, decisions);
        (
            Capture {
                rx,
                tap: Arc::clone(&tap),
                dataplane,
            },
            tap,
        )
    }

    /// The next captured frame, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Captured, RecvTimeoutError> {
        let c = self.rx.recv_timeout(timeout)?;
        self.tap.queued.fetch_sub(c.bytes.len(), Ordering::Relaxed);
        Ok(c)
    }

    /// The next captured frame if one waits.
    pub fn try_next(&self) -> Option<Captured> {
        let c = self.rx.try_recv().ok()?;
        self.tap.queued.fetch_sub(c.bytes.len(), Ordering::Relaxed);
        Some(c)
    }

    /// Frames dropped so far because the queue was full (a slow reader).
    pub fn dropped(&self) -> u64 {
        self.tap.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.dataplane.send_command(Command::Untap(Arc::clone(&self.tap)));
    }
}

/// Ports and their taps, as the worker keeps them.
pub(crate) fn untap(taps: &mut Vec<Arc<Tap>>, tap: &Arc<Tap>) {
    taps.retain(|t| !Arc::ptr_eq(t, tap));
}

/// The ports a capture taps.
pub(crate) type TapPorts = Vec<PortId>;
