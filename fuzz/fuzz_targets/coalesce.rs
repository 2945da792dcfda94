//! The switch's own GRO on arbitrary frames: a burst of up to eight frames,
//! each with an arbitrary virtio-net header, folded for one offload port.
//! It never panics, every frame is either kept or folded, and nothing grows
//! beyond the bytes that came in. Input: per frame, 10 header bytes, a
//! 2-byte length, then the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_switch::coalesce::coalesce;
use plexus_switch::frame::FrameBuf;

fuzz_target!(|data: &[u8]| {
    let mut bufs = Vec::new();
    let mut rest = data;
    while bufs.len() < 8 && rest.len() >= 12 {
        let (hdr, tail) = rest.split_at(10);
        let len = usize::from(u16::from_le_bytes([tail[0], tail[1]])).min(tail.len() - 2);
        let mut b = FrameBuf::default();
        b.fill(&tail[2..2 + len]);
        b.vnet_hdr_mut().copy_from_slice(hdr);
        bufs.push(b);
        rest = &tail[2 + len..];
    }
    let before: usize = bufs.iter().map(FrameBuf::len).sum();
    let mut order: Vec<u8> = (0..bufs.len() as u8).collect();
    let shared = u32::from(rest.first().copied().unwrap_or(0));
    let folded = coalesce(&mut bufs, &mut order, shared);
    assert_eq!(order.len() + folded, bufs.len());
    let after: usize = order.iter().map(|&i| bufs[usize::from(i)].len()).sum();
    assert!(after <= before);
});
