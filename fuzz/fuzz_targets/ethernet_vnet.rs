//! Ethernet and virtio-net header views on arbitrary bytes: `new_checked` either
//! fails or yields a view whose every accessor works, and the Ethernet repr
//! round-trips.
//!
//! Input: byte 0 bit 0 set → bytes 1..11 are a virtio-net header, the rest the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_switch::wire::{ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr, vnet};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (hdr, frame) = if flags & 1 != 0 && rest.len() >= vnet::HDR_LEN {
        let (h, f) = rest.split_at(vnet::HDR_LEN);
        (Some(h), f)
    } else {
        (None, rest)
    };
    for bytes in [hdr.unwrap_or(frame), frame] {
        if let Ok(v) = vnet::Header::new_checked(bytes) {
            let _ = (v.flags(), v.gso_type(), v.is_gso(), v.gso_size(), v.needs_offload());
        }
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        assert!(frame.len() < ETHERNET_HEADER_LEN);
        return;
    };
    let _ = (eth.dst(), eth.src(), eth.ethertype(), eth.as_bytes().len());
    assert_eq!(eth.payload().len(), frame.len() - ETHERNET_HEADER_LEN);
    let repr = EthernetRepr::parse(&eth).expect("a checked frame always parses");
    let mut out = frame.to_vec();
    let mut view = EthernetFrame::new_unchecked(&mut out[..]);
    repr.emit(&mut view);
    view.payload_mut().fill(0);
    assert_eq!(
        EthernetRepr::parse(&EthernetFrame::new_checked(&out[..]).unwrap()),
        Ok(repr)
    );
    assert_eq!(out[..ETHERNET_HEADER_LEN], frame[..ETHERNET_HEADER_LEN]);
});
