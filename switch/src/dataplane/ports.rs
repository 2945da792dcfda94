//! The worker's ports: a slot per port (the port, whether it may have frames,
//! the frames gathered for it in the current burst), the burst's receive
//! buffers, and the two ways frames leave — a gather flushed with one batched
//! send, or frames the switch built (gateway replies, NAT deliveries, the TCP
//! relay's segments) through a `PortSink`. Before a gather leaves an offload
//! port, consecutive segments of one TCP stream in it are folded into one
//! super-frame ([`coalesce`]). Buffers, gather lists and send
//! arrays exist before the first frame: nothing here allocates per frame.

use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::coalesce;
use crate::frame::{BATCH, FrameBuf, MAX_FRAME_LEN, RxBatch, VNET_HDR_LEN};
use crate::io::{Port, SendResult};
use crate::l2::Engine;
use crate::nat::tcp::FrameSink;
use crate::types::{DropReason, PortId};
use crate::wire::vnet;

/// Gateway replies one burst can carry; more in one burst are dropped (`tx_full`).
pub(crate) const REPLY_SLOTS: usize = 8;

/// One port of the worker.
pub(crate) struct Slot {
    pub(crate) port: Box<dyn Port>,
    /// May have frames to read (edge-triggered readiness, or a burst that
    /// filled up). Ports without an fd are read every turn.
    pub(crate) ready: bool,
    /// Indices into the current rx batch, to send out of this port.
    gather: Vec<u8>,
    /// Captures of this port's frames (empty: nobody captures).
    pub(crate) taps: Vec<Arc<super::capture::Tap>>,
}

/// Every port, the burst being forwarded and the gateway's replies to it.
pub(crate) struct Ports {
    pub(crate) slots: Vec<Option<Slot>>,
    pub(crate) batch: RxBatch,
    /// Replies the gateway built during the current burst.
    pub(crate) replies: Vec<FrameBuf>,
    /// Egress ports with a non-empty gather in the current burst.
    touched: Vec<PortId>,
    /// Frames of the current burst (bit = index) gathered for more than one
    /// port (flooded): never rewritten by coalescing.
    shared: u32,
    registry: Arc<Registry>,
}

pub(crate) fn slot_index(id: PortId) -> usize {
    id.0 as usize
}

impl Ports {
    pub(crate) fn new(registry: Arc<Registry>) -> Ports {
        Ports {
            slots: Vec::new(),
            batch: RxBatch::default(),
            replies: (0..REPLY_SLOTS)
                .map(|_| FrameBuf::with_capacity(MAX_FRAME_LEN))
                .collect(),
            touched: Vec::new(),
            shared: 0,
            registry,
        }
    }

    /// Takes `port` as port `id`, watched under token `id` if it has an fd.
    pub(crate) fn insert(&mut self, id: PortId, port: Box<dyn Port>) -> std::io::Result<()> {
        let i = slot_index(id);
        if let Some(fd) = port.raw_fd() {
            self.registry
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        }
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        // Ready at once: frames may have queued before registration.
        self.slots[i] = Some(Slot {
            port,
            ready: true,
            gather: Vec::with_capacity(BATCH),
            taps: Vec::new(),
        });
        if self.touched.capacity() < self.slots.len() {
            self.touched.reserve(self.slots.len() - self.touched.len());
        }
        Ok(())
    }

    /// Closes port `id` (its fd leaves the poll as it closes).
    pub(crate) fn remove(&mut self, id: PortId) {
        if let Some(slot) = self.slots.get_mut(slot_index(id)).and_then(Option::take)
            && let Some(fd) = slot.port.raw_fd()
        {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
    }

    /// Ports holding a descriptor (for the fd budget).
    pub(crate) fn count(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Marks port `i` readable (its fd's readiness, or a port read every turn).
    pub(crate) fn mark_ready(&mut self, i: usize) {
        if let Some(Some(s)) = self.slots.get_mut(i) {
            s.ready = true;
        }
    }

    /// Ports that may have frames.
    pub(crate) fn any_ready(&self) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| s.ready && s.port.raw_fd().is_some())
    }

    /// Adds frame `idx` of the current burst to port `q`'s gather.
    pub(crate) fn gather(&mut self, q: PortId, idx: u8) {
        if let Some(Some(s)) = self.slots.get_mut(slot_index(q)) {
            if s.gather.is_empty() {
                self.touched.push(q);
            }
            s.gather.push(idx);
        }
    }

    /// Marks frame `idx` of the current burst as gathered for several ports.
    pub(crate) fn mark_shared(&mut self, idx: u8) {
        if let Some(bit) = 1u32.checked_shl(u32::from(idx)) {
            self.shared |= bit;
        }
    }

    /// Sends every gather of the burst, each with one batched call.
    pub(crate) fn flush_all(&mut self, engine: &mut Engine, in_offload: bool) {
        for t in 0..self.touched.len() {
            let q = self.touched[t];
            self.flush(engine, q, in_offload);
        }
        self.touched.clear();
        self.shared = 0;
    }

    /// Sends the gathered frames out of port `q` in one batched call.
    fn flush(&mut self, engine: &mut Engine, q: PortId, in_offload: bool) {
        let Some(slot) = self.slots.get_mut(slot_index(q)).and_then(Option::as_mut) else {
            return;
        };
        let out_offload = slot.port.offload();
        if out_offload && slot.gather.len() > 1 {
            // Consecutive segments of one TCP stream leave as one super-frame.
            let n = coalesce::coalesce(&mut self.batch.bufs, &mut slot.gather, self.shared);
            engine.count_coalesced(q, n);
        }
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        let mut n = 0;
        for &k in &slot.gather {
            let buf = &self.batch.bufs[usize::from(k)];
            if out_offload {
                frames[n] = buf.bytes_with_hdr();
            } else {
                // A super-frame or partial checksum cannot leave through a port
                // without offloads as it is.
                let needs = in_offload && vnet::Header::new_checked(buf.vnet_hdr()).map_or(true, |h| h.needs_offload());
                if needs {
                    engine.count_drop(q, DropReason::NoOffload);
                    continue;
                }
                frames[n] = buf.frame();
            }
            n += 1;
        }
        let r = slot.port.send(&frames[..n]);
        let hdr = if out_offload { VNET_HDR_LEN } else { 0 };
        // Bytes are those of the first `sent` frames: exact unless a frame failed.
        for f in &frames[..r.sent.min(n)] {
            engine.count_tx(q, f.len() - hdr);
        }
        for tap in &slot.taps {
            for f in &frames[..r.sent.min(n)] {
                tap.frame(f.get(hdr..).unwrap_or(&[]));
            }
        }
        slot.gather.clear();
        count_send_drops(engine, q, n, r);
    }

    /// Sends the first `n` gateway replies of the burst out of `ingress`.
    pub(crate) fn send_replies(&mut self, engine: &mut Engine, ingress: PortId, n: usize) {
        let mut sink = PortSink {
            slots: &mut self.slots,
            engine,
        };
        sink.send(ingress, &self.replies[..n]);
    }

    /// Moves the kernel's per-port drop counts into the engine's counters.
    pub(crate) fn collect_overruns(&mut self, engine: &mut Engine) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let n = slot.port.take_rx_overruns();
            if n > 0 {
                let id = PortId(u32::try_from(i).unwrap_or(u32::MAX));
                engine.count_drops(id, DropReason::RxOverrun, n);
            }
        }
    }
}

/// Sends frames the switch built out of a port, counting them.
pub(crate) struct PortSink<'a> {
    pub(crate) slots: &'a mut Vec<Option<Slot>>,
    pub(crate) engine: &'a mut Engine,
}

impl PortSink<'_> {
    /// Sends up to [`BATCH`] frames out of `port` in one call; `None` if the
    /// port is gone, else how many left.
    pub(crate) fn send_counted(&mut self, port: PortId, bufs: &[FrameBuf]) -> Option<usize> {
        let slot = self.slots.get_mut(slot_index(port)).and_then(Option::as_mut)?;
        let offload = slot.port.offload();
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        let n = bufs.len().min(BATCH);
        for (f, b) in frames.iter_mut().zip(&bufs[..n]) {
            *f = if offload { b.bytes_with_hdr() } else { b.frame() };
        }
        let r = slot.port.send(&frames[..n]);
        for b in &bufs[..r.sent.min(n)] {
            self.engine.count_tx(port, b.len());
        }
        for tap in &slot.taps {
            for b in &bufs[..r.sent.min(n)] {
                if tap.decisions {
                    tap.line(super::explain::built_line(self.engine, port, b.frame()));
                } else {
                    tap.frame(b.frame());
                }
            }
        }
        count_send_drops(self.engine, port, n, r);
        Some(r.sent)
    }
}

impl FrameSink for PortSink<'_> {
    fn send(&mut self, port: PortId, frames: &[FrameBuf]) {
        for chunk in frames.chunks(BATCH) {
            self.send_counted(port, chunk);
        }
    }
}

/// Counts the frames of a send of `n` that did not go: refused ones as
/// `tx_error`, the rest (a full queue) as `tx_full`.
fn count_send_drops(engine: &mut Engine, port: PortId, n: usize, r: SendResult) {
    let full = n.saturating_sub(r.sent + r.failed);
    engine.count_drops(port, DropReason::TxError, r.failed as u64);
    engine.count_drops(port, DropReason::TxFull, full as u64);
}
