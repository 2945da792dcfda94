//! [`PcapPort`]: a port wrapper in smoltcp's style that writes every frame
//! crossing the port, both directions, to a pcap stream (tcpdump's and
//! Wireshark's format, link type Ethernet) — the frames as the container sent
//! or receives them. A virtio-net header is not written; an offload
//! super-frame is written whole (up to the snap length), its original length
//! saying how long it was. The base of a capture command.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::time::Duration;

use super::port::{Port, RecvResult, SendResult};
use crate::frame::{FrameBuf, VNET_HDR_LEN};

/// The pcap magic for microsecond timestamps (written in native order).
const MAGIC_US: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes a pcap stream's global header for `snaplen`.
pub fn write_header(w: &mut impl Write, snaplen: u32) -> io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&MAGIC_US.to_ne_bytes());
    h.extend_from_slice(&2u16.to_ne_bytes());
    h.extend_from_slice(&4u16.to_ne_bytes());
    h.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    h.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    h.extend_from_slice(&snaplen.to_ne_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    w.write_all(&h)
}

/// Writes one record: `frame` at `ts` (since the Unix epoch), cut to `snaplen`.
pub fn write_record(w: &mut impl Write, ts: Duration, frame: &[u8], snaplen: u32) -> io::Result<()> {
    let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    write_cut_record(w, ts, frame, orig, snaplen)
}

/// Writes one record of a frame `orig` bytes long of which `kept` are at
/// hand (already cut by a capture), cut to `snaplen`.
pub fn write_cut_record(w: &mut impl Write, ts: Duration, kept: &[u8], orig: u32, snaplen: u32) -> io::Result<()> {
    let incl = u32::try_from(kept.len()).unwrap_or(u32::MAX).min(snaplen);
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&u32::try_from(ts.as_secs()).unwrap_or(u32::MAX).to_ne_bytes());
    h[4..8].copy_from_slice(&ts.subsec_micros().to_ne_bytes());
    h[8..12].copy_from_slice(&incl.to_ne_bytes());
    h[12..].copy_from_slice(&orig.to_ne_bytes());
    w.write_all(&h)?;
    w.write_all(&kept[..incl as usize])
}

/// The wall clock since the Unix epoch.
pub fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A port whose frames are also written to a pcap stream.
#[derive(Debug)]
pub struct PcapPort<P, W> {
    inner: P,
    out: W,
    snaplen: u32,
    clock: fn() -> Duration,
    /// Records that could not be written (the stream is given up after one).
    pub write_errors: u64,
    failed: bool,
}

impl<P: Port, W: Write + Send + std::fmt::Debug> PcapPort<P, W> {
    /// Wraps `inner`, writing the global header to `out` at once; timestamps
    /// come from `clock` (the wall clock, or a virtual one in tests).
    pub fn new(inner: P, mut out: W, snaplen: u32, clock: fn() -> Duration) -> io::Result<PcapPort<P, W>> {
        write_header(&mut out, snaplen)?;
        Ok(PcapPort {
            inner,
            out,
            snaplen,
            clock,
            write_errors: 0,
            failed: false,
        })
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Unwraps the port and the stream.
    pub fn into_parts(self) -> (P, W) {
        (self.inner, self.out)
    }

    fn record(&mut self, frame: &[u8]) {
        if self.failed {
            return;
        }
        if write_record(&mut self.out, (self.clock)(), frame, self.snaplen).is_err() {
            self.write_errors += 1;
            self.failed = true;
        }
    }
}

impl<P: Port, W: Write + Send + std::fmt::Debug> Port for PcapPort<P, W> {
    fn raw_fd(&self) -> Option<RawFd> {
        self.inner.raw_fd()
    }

    fn offload(&self) -> bool {
        self.inner.offload()
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        let r = self.inner.recv(bufs)?;
        for b in &bufs[..r.frames] {
            self.record(b.frame());
        }
        Ok(r)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        let r = self.inner.send(frames);
        let skip = if self.inner.offload() { VNET_HDR_LEN } else { 0 };
        for f in &frames[..r.sent.min(frames.len())] {
            self.record(f.get(skip..).unwrap_or_default());
        }
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

    fn epoch() -> Duration {
        Duration::from_micros(1_700_000_000_123_456)
    }

    #[test]
    fn both_directions_are_written_as_pcap_records() {
        let (a, mut b) = MemPort::pair(true);
        let mut p = PcapPort::new(a, Vec::new(), 64, epoch).unwrap();
        // Out through the port (with a virtio-net header, which is not written).
        let mut out = vec![0u8; VNET_HDR_LEN];
        out.extend_from_slice(&[0xaa; 100]);
        assert_eq!(p.send(&[&out]).sent, 1);
        // In from the other end.
        assert!(b.send_frame(&[0xbb; 20]));
        let mut bufs = vec![FrameBuf::default()];
        assert_eq!(p.recv(&mut bufs).unwrap().frames, 1);
        let (_, bytes) = p.into_parts();
        assert_eq!(u32::from_ne_bytes(bytes[..4].try_into().unwrap()), MAGIC_US);
        assert_eq!(u32::from_ne_bytes(bytes[16..20].try_into().unwrap()), 64, "snaplen");
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), LINKTYPE_ETHERNET);
        let rec = &bytes[24..];
        let field = |at: usize| u32::from_ne_bytes(rec[at..at + 4].try_into().unwrap());
        assert_eq!((field(0), field(4)), (1_700_000_000, 123_456));
        assert_eq!(
            (field(8), field(12)),
            (64, 100),
            "cut to the snap length, the length kept"
        );
        assert!(rec[16..80].iter().all(|&x| x == 0xaa));
        let rec2 = &rec[80..];
        assert_eq!(u32::from_ne_bytes(rec2[8..12].try_into().unwrap()), 20);
        assert_eq!(&rec2[16..], &[0xbb; 20]);
    }
}
