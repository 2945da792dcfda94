//! Coalescing, the switch's own GRO: within one burst, consecutive TCP
//! segments of one stream that leave through the same offload port become one
//! super-frame, described by its virtio-net header (`GSO_TCPV4`, partial
//! checksum), as the kernel's GRO would have made them.
//!
//! Why: a veth host end's AF_PACKET port gets super-frames from the kernel
//! (the port turns GRO on), but a TAP port reads, and an AF_XDP port receives,
//! one MTU-sized frame at a time, and the receiving host pays its stack per
//! frame — inside the switch's own `write`/`sendmmsg`. One super-frame of
//! twenty segments costs the receiver about what one segment did.
//!
//! The rules are Linux's (`tcp_gro_receive`), for IPv4 without options:
//! the same Ethernet header, addresses, ports, TOS, TTL, don't-fragment bit,
//! acknowledgement, window and TCP options (timestamps included); the next
//! segment starts where the frame so far ends; every segment but the last
//! carries the first one's payload size; only ACK (and PSH on the segment that
//! ends the frame); no fragments, no empty segments. A segment whose checksum
//! is neither verified by the kernel (`DATA_VALID`) nor left to offload
//! (`NEEDS_CSUM`) is checked here first: a frame with a wrong checksum is never
//! folded into one whose checksum the receiver's offload computes afresh.
//! Anything else is sent as it came.
//!
//! Sans-IO: [`coalesce`] works on frame buffers and indices, at memory speed.

// Casts here narrow lengths of frames already checked to be at most 65535
// bytes (an IPv4 packet's) to the header fields that hold them.
#![allow(clippy::cast_possible_truncation)]

use crate::frame::FrameBuf;
use crate::wire::ipv4::{self, Protocol};
use crate::wire::{Ipv4Packet, TcpFlags, TcpPacket, vnet};

/// Ethernet header (no VLAN tag).
const ETH: usize = 14;
/// IPv4 header without options.
const IP: usize = 20;
/// Where the TCP header starts.
const L4: usize = ETH + IP;
/// TCP's checksum field, from the TCP header's start.
const TCP_CSUM: usize = 16;
/// TCP flags (the low byte of the wire's): ACK, and PSH.
const ACK: u8 = TcpFlags::ACK.bits() as u8;
const PSH: u8 = TcpFlags::PSH.bits() as u8;

/// What [`coalesce`] needs of one frame, read once.
#[derive(Debug, Clone, Copy)]
struct Seg {
    /// TCP header length.
    tcp_len: usize,
    /// Payload bytes (all segments').
    payload: usize,
    seq: u32,
    flags: u8,
    /// Payload per segment: the header's `gso_size`, or the payload of a
    /// single segment.
    mss: usize,
    /// A super-frame already (the kernel's or ours).
    gso: bool,
}

impl Seg {
    /// Headers, Ethernet to TCP.
    fn hdr_len(&self) -> usize {
        L4 + self.tcp_len
    }
}

/// Reads `buf` as a coalescable IPv4 TCP segment or super-frame, through the
/// project's checked wire views.
fn parse(buf: &FrameBuf) -> Option<Seg> {
    let f = buf.frame();
    let h = vnet::Header::new_checked(buf.vnet_hdr()).ok()?;
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&f[ETH..]).ok()?;
    // No options, exactly the IP packet (no padding), don't-fragment and not
    // a fragment.
    if ip.version() != 4
        || usize::from(ip.header_len()) != IP
        || ip.protocol() != Protocol::Tcp
        || ETH + usize::from(ip.total_len()) != f.len()
        || !ip.dont_frag()
        || ip.is_fragment()
        || f[ETH + 6] & 0x80 != 0
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(&f[L4..]).ok()?;
    let tcp_len = usize::from(tcp.header_len());
    let payload = f.len() - L4 - tcp_len;
    let partial = h.flags() & vnet::F_NEEDS_CSUM != 0;
    if partial && (h.csum_start() != L4 as u16 || h.csum_offset() != TCP_CSUM as u16) {
        return None;
    }
    let (gso, mss) = match h.gso_type() {
        vnet::GSO_NONE => (false, payload),
        vnet::GSO_TCPV4 if partial && usize::from(h.gso_size()) > 0 => (true, usize::from(h.gso_size())),
        _ => return None,
    };
    if payload == 0 {
        return None;
    }
    Some(Seg {
        tcp_len,
        payload,
        seq: tcp.seq_number(),
        flags: f[L4 + 13],
        mss,
        gso,
    })
}

/// True if `buf`'s TCP checksum is one the receiver will accept as it is
/// or computes itself: verified by the kernel, left partial for offload, or
/// right.
fn checksum_ok(buf: &FrameBuf) -> bool {
    let Ok(h) = vnet::Header::new_checked(buf.vnet_hdr()) else {
        return false;
    };
    if h.flags() & (vnet::F_NEEDS_CSUM | vnet::F_DATA_VALID) != 0 {
        return true;
    }
    let f = buf.frame();
    let ip = Ipv4Packet::new_unchecked(&f[ETH..L4]);
    ipv4::transport_sum(ip.src_addr(), ip.dst_addr(), Protocol::Tcp, &f[L4..]) == 0xffff
}

/// True if `next` continues `head` so that one super-frame can carry both.
fn continues(head: &FrameBuf, h: &Seg, next: &FrameBuf, n: &Seg) -> bool {
    let (a, b) = (head.frame(), next.frame());
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    n.tcp_len == h.tcp_len
        && !n.gso
        && h.flags == ACK
        && (n.flags == ACK || n.flags == ACK | PSH)
        // Every segment so far full-sized, the next one no larger.
        && h.payload.is_multiple_of(h.mss)
        && n.payload <= h.mss
        && n.seq == h.seq.wrapping_add(h.payload as u32)
        && IP + h.tcp_len + h.payload + n.payload <= usize::from(u16::MAX)
        && a.len() + n.payload <= head.capacity()
        // Ethernet; TOS; TTL and protocol; addresses; ports; ack; window and
        // the rest of the TCP header (options) past the checksum's neighbours.
        && same(0..ETH)
        && same(ETH + 1..ETH + 2)
        && same(ETH + 8..ETH + 10)
        && same(ETH + 12..L4 + 4)
        && same(L4 + 8..L4 + 12)
        && same(L4 + 14..L4 + 16)
        && same(L4 + 18..L4 + h.tcp_len)
}

/// Appends `next`'s payload to `head` and rewrites `head` as a super-frame.
fn append(head: &mut FrameBuf, h: &mut Seg, next: &FrameBuf, n: &Seg) {
    let end = head.len();
    let add = &next.frame()[n.hdr_len()..];
    head.frame_area_mut()[end..end + add.len()].copy_from_slice(add);
    head.set_len(end + add.len());
    h.payload += n.payload;
    h.flags |= n.flags & PSH;
    h.gso = true;
    let tcp_total = h.tcp_len + h.payload;
    let f = head.frame_area_mut();
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH..L4]);
    ip.set_total_len((IP + tcp_total) as u16);
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut tcp = TcpPacket::new_unchecked(&mut f[L4..L4 + h.tcp_len]);
    tcp.set_flags(TcpFlags::from_bits_truncate(u16::from(h.flags)));
    // Partial: the pseudo-header's sum, which the receiver's offload completes
    // over the whole segment.
    tcp.set_checksum(ipv4::pseudo_header(src, dst, Protocol::Tcp, tcp_total));
    vnet::Repr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: h.hdr_len() as u16,
        gso_size: h.mss as u16,
        csum_start: L4 as u16,
        csum_offset: TCP_CSUM as u16,
    }
    .emit(head.vnet_hdr_mut());
}

/// Folds runs of consecutive segments among the frames `order` names (indices
/// into `bufs`, in burst order, all bound for one offload port) into their
/// first frame, and drops the folded indices from `order`. Frames whose bit is
/// set in `shared` also leave through other ports and are left alone. Returns
/// how many frames were folded into others.
pub fn coalesce(bufs: &mut [FrameBuf], order: &mut Vec<u8>, shared: u32) -> usize {
    /// The frame being grown: its index in `bufs`, what it holds so far, and
    /// whether its own checksum passed (checked once something could join).
    struct Head {
        i: usize,
        seg: Seg,
        valid: Option<bool>,
    }
    let mut kept = 0;
    let mut folded = 0;
    let mut head: Option<Head> = None;
    for k in 0..order.len() {
        let i = usize::from(order[k]);
        let own = i < 32 && shared & (1 << i) == 0 && i < bufs.len();
        let seg = if own { parse(&bufs[i]) } else { None };
        if let (Some(h), Some(n)) = (head.as_mut(), seg.as_ref())
            && h.i < i
            && continues(&bufs[h.i], &h.seg, &bufs[i], n)
            && checksum_ok(&bufs[i])
            && *h.valid.get_or_insert_with(|| checksum_ok(&bufs[h.i]))
        {
            let (left, right) = bufs.split_at_mut(i);
            append(&mut left[h.i], &mut h.seg, &right[0], n);
            folded += 1;
            continue;
        }
        order[kept] = order[k];
        kept += 1;
        head = seg.filter(|s| s.flags == ACK).map(|seg| Head { i, seg, valid: None });
    }
    order.truncate(kept);
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::ipv4::Packet as IpPacket;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    /// An Ethernet + IPv4 + TCP segment (timestamps option) with a right
    /// checksum, zero virtio-net header.
    fn segment(seq: u32, payload: &[u8], flags: u8) -> FrameBuf {
        segment_ts(seq, payload, flags, 1000)
    }

    /// [`segment`] with timestamp value `ts`.
    fn segment_ts(seq: u32, payload: &[u8], flags: u8, ts: u32) -> FrameBuf {
        let tcp_len = 32;
        let mut f = vec![0u8; L4 + tcp_len + payload.len()];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (IP + tcp_len + payload.len()) as u16;
        f[ETH] = 0x45;
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        f[ETH + 4..ETH + 6].copy_from_slice(&seq.to_be_bytes()[2..]);
        f[ETH + 6] = 0x40;
        f[ETH + 8] = 64;
        f[ETH + 9] = 6;
        f[ETH + 12..ETH + 16].copy_from_slice(&A);
        f[ETH + 16..ETH + 20].copy_from_slice(&B);
        let ip_sum = !checksum::sum(&f[ETH..L4]);
        f[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = L4;
        f[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&77u32.to_be_bytes());
        f[t + 12] = ((tcp_len / 4) as u8) << 4;
        f[t + 13] = flags;
        f[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
        // NOP NOP TIMESTAMP(10): val `ts`, ecr 2000.
        f[t + 20..t + 24].copy_from_slice(&[1, 1, 8, 10]);
        f[t + 24..t + 28].copy_from_slice(&ts.to_be_bytes());
        f[t + 28..t + 32].copy_from_slice(&2000u32.to_be_bytes());
        f[t + tcp_len..].copy_from_slice(payload);
        let sum = !ipv4::transport_sum(A.into(), B.into(), Protocol::Tcp, &f[t..]);
        f[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
        let mut b = FrameBuf::default();
        b.fill(&f);
        b
    }

    fn data(n: usize, from: usize) -> Vec<u8> {
        (from..from + n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// The payload the receiver gets from `buf` after its offload: checksum
    /// completed (and checked), then cut into `gso_size` segments.
    fn received(buf: &FrameBuf) -> Vec<u8> {
        let mut f = buf.frame().to_vec();
        let h = vnet::Header::new_checked(buf.vnet_hdr()).unwrap();
        if h.flags() & vnet::F_NEEDS_CSUM != 0 {
            assert!(ipv4::complete_partial_checksum(&mut f[ETH..]));
        }
        let ip = IpPacket::new_checked(&f[ETH..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            ipv4::transport_sum(A.into(), B.into(), Protocol::Tcp, &f[L4..]),
            0xffff,
            "TCP checksum"
        );
        f[L4 + 32..].to_vec()
    }

    #[test]
    fn consecutive_segments_become_one_super_frame() {
        let mss = 1448;
        let mut bufs: Vec<FrameBuf> = (0..4)
            .map(|i| {
                let flags = if i == 3 { ACK | PSH } else { ACK };
                let len = if i == 3 { 100 } else { mss };
                segment(1000 + (i * mss) as u32, &data(len, i * mss), flags)
            })
            .collect();
        let mut order = vec![0, 1, 2, 3];
        assert_eq!(coalesce(&mut bufs, &mut order, 0), 3);
        assert_eq!(order, [0]);
        let h = vnet::Header::new_checked(bufs[0].vnet_hdr()).unwrap();
        assert_eq!((h.gso_type(), h.gso_size(), h.hdr_len()), (vnet::GSO_TCPV4, 1448, 66));
        assert_eq!(h.flags(), vnet::F_NEEDS_CSUM);
        assert_eq!(received(&bufs[0]), data(3 * mss + 100, 0));
        // PSH of the last segment kept.
        assert_eq!(bufs[0].frame()[L4 + 13], ACK | PSH);
    }

    #[test]
    fn what_breaks_a_run_is_sent_as_it_came() {
        let mss = 1000;
        let seg = |i: u32, f: u8| segment(i * 1000, &data(mss, i as usize * 1000), f);
        // A gap in sequence, a PSH that ends a frame, a SYN, a flooded frame.
        let mut bufs = vec![
            seg(0, ACK),
            seg(1, ACK),
            seg(3, ACK),
            seg(4, ACK | PSH),
            seg(5, ACK),
            seg(6, ACK | 0x02),
            seg(7, ACK),
            seg(8, ACK),
        ];
        let mut order = (0..8).collect();
        let shared = 1 << 7;
        assert_eq!(coalesce(&mut bufs, &mut order, shared), 2);
        assert_eq!(order, [0, 2, 4, 5, 6, 7]);
        assert_eq!(received(&bufs[0]), data(2000, 0));
        assert_eq!(received(&bufs[2]), data(2000, 3000));
    }

    #[test]
    fn a_wrong_checksum_is_never_folded() {
        let mut bufs = vec![segment(0, &[1; 500], ACK), segment(500, &[2; 500], ACK)];
        let f = bufs[1].frame().to_vec();
        let mut bad = f.clone();
        bad[f.len() - 1] ^= 0xff;
        bufs[1].fill(&bad);
        let mut order = vec![0, 1];
        assert_eq!(coalesce(&mut bufs, &mut order, 0), 0);
        assert_eq!(order, [0, 1]);
        assert_eq!(bufs[1].frame(), &bad[..]);
        // Nor grown: a head with a wrong checksum.
        let mut bufs = vec![segment(500, &[2; 500], ACK), segment(1000, &[3; 500], ACK)];
        bufs[0].fill(&bad);
        let mut order = vec![0, 1];
        assert_eq!(coalesce(&mut bufs, &mut order, 0), 0);
    }

    #[test]
    fn different_options_or_sizes_do_not_mix() {
        let mut a = segment(0, &[1; 800], ACK);
        let b = segment(800, &[2; 900], ACK);
        let mut order = vec![0, 1];
        // Larger than the first: the first's size is the segment size.
        let mut bufs = vec![a, b];
        assert_eq!(coalesce(&mut bufs, &mut order, 0), 0);
        // Another timestamp; then the same one, which joins.
        for (ts, joins) in [(1001, 0), (1000, 1)] {
            a = segment(0, &[1; 800], ACK);
            let mut bufs = vec![a, segment_ts(800, &[2; 800], ACK, ts)];
            let mut order = vec![0, 1];
            assert_eq!(coalesce(&mut bufs, &mut order, 0), joins, "ts {ts}");
        }
    }

    proptest::proptest! {
        /// A stream cut into segments of one size (the last shorter), some
        /// with PSH, some flooded: what leaves, in order, after the
        /// receiver's offload, is the stream, every checksum right.
        #[test]
        fn a_stream_survives_whole_and_in_order(
            mss in 1usize..1460,
            len in 1usize..20_000,
            psh in proptest::prelude::any::<u32>(),
            shared in proptest::prelude::any::<u32>(),
        ) {
            let stream = data(len, 0);
            let mut bufs: Vec<FrameBuf> = stream
                .chunks(mss)
                .take(32)
                .enumerate()
                .map(|(i, c)| {
                    let flags = if psh & (1 << i) != 0 { ACK | PSH } else { ACK };
                    segment((i * mss) as u32, c, flags)
                })
                .collect();
            let sent: usize = stream.chunks(mss).take(32).map(<[u8]>::len).sum();
            let mut order: Vec<u8> = (0..bufs.len() as u8).collect();
            let folded = coalesce(&mut bufs, &mut order, shared);
            proptest::prop_assert_eq!(order.len() + folded, bufs.len());
            let mut got = Vec::new();
            for &i in &order {
                got.extend(received(&bufs[usize::from(i)]));
            }
            proptest::prop_assert_eq!(&got[..], &stream[..sent]);
        }

        #[test]
        fn never_panics_and_never_grows_what_it_cannot(
            frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..8),
            hdrs in proptest::collection::vec(proptest::prelude::any::<[u8; 10]>(), 8),
        ) {
            let mut bufs: Vec<FrameBuf> = frames.iter().map(|f| { let mut b = FrameBuf::default(); b.fill(f); b }).collect();
            for (b, h) in bufs.iter_mut().zip(&hdrs) {
                b.vnet_hdr_mut().copy_from_slice(h);
            }
            let before: Vec<usize> = bufs.iter().map(FrameBuf::len).collect();
            let mut order: Vec<u8> = (0..bufs.len() as u8).collect();
            let folded = coalesce(&mut bufs, &mut order, 0);
            proptest::prop_assert_eq!(order.len() + folded, bufs.len());
            let total: usize = before.iter().sum();
            let after: usize = order.iter().map(|&i| bufs[usize::from(i)].len()).sum();
            proptest::prop_assert!(after <= total);
        }
    }
}
