//! The smoltcp device of an endpoint's stack: it reads the one packet the
//! relay hands it and queues what the stack emits — as Ethernet frames from
//! the gateway's MAC to the container's, GSO-described on offload ports — for
//! the [`FrameSink`], in bursts.

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};

use super::segment::{forbid_sack, offload_tcp, refill_checksum, shorten_window};
use crate::frame::{FrameBuf, MAX_FRAME_LEN};
use crate::types::PortId;
use crate::wire::ETHERNET_HEADER_LEN;

/// The longest IPv4 packet that carries one of the stack's SYNs: headers
/// with options at their longest, no data.
const MAX_SYN_LEN: usize = 60 + 60;
/// Frames the relay queues before handing them to the sink in one batch.
const TX_BURST: usize = 32;

/// Where the relay's frames go: the worker sends them out of `port`.
pub trait FrameSink {
    /// Sends `frames` out of `port`.
    fn send(&mut self, port: PortId, frames: &[FrameBuf]);
}

/// Frames emitted by the stacks, waiting for the sink.
pub(crate) struct TxQueue {
    bufs: Vec<FrameBuf>,
    len: usize,
}

impl TxQueue {
    /// An empty queue.
    pub(crate) fn new() -> TxQueue {
        TxQueue {
            bufs: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn flush(&mut self, port: PortId, sink: &mut dyn FrameSink) {
        if self.len > 0 {
            sink.send(port, &self.bufs[..self.len]);
            self.len = 0;
        }
    }
}

/// The device of one poll of a stack.
pub(crate) struct Dev<'a> {
    pub(crate) rx: Option<&'a [u8]>,
    pub(crate) tx: &'a mut TxQueue,
    pub(crate) sink: &'a mut dyn FrameSink,
    pub(crate) port: PortId,
    pub(crate) l2: [u8; ETHERNET_HEADER_LEN],
    pub(crate) mtu: usize,
    pub(crate) gso: Option<u16>,
}

pub(crate) struct RxTok<'a>(&'a [u8]);

pub(crate) struct TxTok<'a> {
    tx: &'a mut TxQueue,
    sink: &'a mut dyn FrameSink,
    port: PortId,
    l2: [u8; ETHERNET_HEADER_LEN],
    gso: Option<u16>,
}

impl phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.tx.len >= TX_BURST {
            self.tx.flush(self.port, self.sink);
        }
        if self.tx.bufs.len() <= self.tx.len {
            self.tx.bufs.push(FrameBuf::with_capacity(MAX_FRAME_LEN));
        }
        let buf = &mut self.tx.bufs[self.tx.len];
        let area = buf.frame_area_mut();
        let total = (ETHERNET_HEADER_LEN + len).min(area.len());
        area[..ETHERNET_HEADER_LEN].copy_from_slice(&self.l2);
        let r = f(&mut area[ETHERNET_HEADER_LEN..total]);
        // The stack's own SYN offers SACK, which it does poorly: the
        // container must not use it (see `forbid_sack`). Its SYNs carry no
        // data, so segments with data are not even parsed for it.
        let packet = &mut area[ETHERNET_HEADER_LEN..total];
        if len <= MAX_SYN_LEN && forbid_sack(packet) && self.gso.is_none() {
            refill_checksum(packet);
        }
        // Its window's right edge must never recede (see `shorten_window`).
        shorten_window(packet);
        let offload = self.gso.and_then(|gso| offload_tcp(&mut area[..total], gso));
        buf.set_built(total);
        if let Some(hdr) = offload {
            hdr.emit(buf.vnet_hdr_mut());
        }
        self.tx.len += 1;
        r
    }
}

impl phy::Device for Dev<'_> {
    type RxToken<'b>
        = RxTok<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxTok<'_>, TxTok<'_>)> {
        let p = self.rx.take()?;
        Some((
            RxTok(p),
            TxTok {
                tx: self.tx,
                sink: self.sink,
                port: self.port,
                l2: self.l2,
                gso: self.gso,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxTok<'_>> {
        Some(TxTok {
            tx: self.tx,
            sink: self.sink,
            port: self.port,
            l2: self.l2,
            gso: self.gso,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities(self.mtu, self.gso.is_some())
    }
}

fn capabilities(mtu: usize, offload: bool) -> DeviceCapabilities {
    let mut checksum = ChecksumCapabilities::default();
    checksum.ipv4 = Checksum::Tx;
    // With offloads the TCP checksum is left partial (see `offload_tcp`).
    checksum.tcp = if offload { Checksum::None } else { Checksum::Tx };
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.max_transmission_unit = mtu;
    caps.checksum = checksum;
    caps
}

/// A sink for frames that go nowhere (the device an interface is built with).
pub(crate) struct NoSink;

impl FrameSink for NoSink {
    fn send(&mut self, _: PortId, _: &[FrameBuf]) {}
}
