//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A checksum field holds the one's complement of the one's-complement sum of
//! the 16-bit words it covers; a receiver sums everything, field included, and
//! gets `0xffff`. [`sum`] and [`combine`] return *sums* (not complemented) so
//! pieces — pseudo-header, header, payload — can be added before the final `!`.
//!
//! NAT rewrites one address or port and must not re-read the whole segment:
//! [`update_u16`] and [`update_u32`] apply RFC 1624 equation 3,
//! `HC' = ~(~HC + ~m + m')`, which gives exactly what a full recomputation gives
//! (both produce `0xffff`, never `0x0000`, for a zero sum over non-zero data;
//! property-tested). Two cases need care at the call site:
//!
//! - a UDP checksum of `0` means "no checksum": leave it alone, and write
//!   `0xffff` if an update produces `0`;
//! - a frame whose virtio-net header has `F_NEEDS_CSUM` carries a *partial*
//!   checksum: the field holds the pseudo-header sum, uncomplemented, and the
//!   device completes it. Only pseudo-header fields (addresses) change it, with
//!   [`update_partial_u32`]; ports and options are summed later by the device.
//!
//! Pure arithmetic: nothing here can panic.

use std::net::Ipv4Addr;

use super::ipv4::Protocol;

/// Whether a repr's `parse` checks the checksum it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Reject a packet whose checksum does not match.
    #[default]
    Verify,
    /// Accept it: the checksum is partial or already verified (virtio-net
    /// `F_NEEDS_CSUM` / `F_DATA_VALID`).
    Skip,
}

/// Folds a wide one's-complement accumulator to 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let [.., hi, lo] = acc.to_be_bytes();
    u16::from_be_bytes([hi, lo])
}

/// Adds the big-endian 16-bit words of `data` to `acc`, an odd last byte padded
/// with zero.
fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// The one's-complement sum of `data` (not complemented).
pub fn sum(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// The one's-complement sum of several sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header TCP and UDP checksums cover: addresses,
/// protocol and the transport length (header and payload).
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, length: usize) -> u16 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc += u64::from(u8::from(protocol));
    // A real IPv4 length fits 16 bits; a longer one still sums without loss.
    acc += length as u64;
    fold(acc)
}

/// The sum of a TCP or UDP segment with its pseudo-header, checksum field
/// included: `0xffff` when the checksum is right.
pub fn transport_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, segment: &[u8]) -> u16 {
    combine(&[pseudo_header(src, dst, protocol, segment.len()), sum(segment)])
}

/// The checksum field for a segment whose parts sum to `sums`.
pub fn finish(sums: &[u16]) -> u16 {
    !combine(sums)
}

/// A complete checksum after a 16-bit word it covers changed from `old` to `new`
/// (RFC 1624 eq. 3). For a field at an odd offset from the start of the
/// checksummed bytes, pass both values byte-swapped.
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// A complete checksum after a 32-bit field it covers (an IPv4 address, a
/// sequence number) changed from `old` to `new`.
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let [o0, o1, o2, o3] = old.to_be_bytes();
    let [n0, n1, n2, n3] = new.to_be_bytes();
    let acc = u64::from(!check)
        + u64::from(!u16::from_be_bytes([o0, o1]))
        + u64::from(!u16::from_be_bytes([o2, o3]))
        + u64::from(u16::from_be_bytes([n0, n1]))
        + u64::from(u16::from_be_bytes([n2, n3]));
    !fold(acc)
}

/// A *partial* checksum field (an uncomplemented pseudo-header sum, virtio-net
/// `F_NEEDS_CSUM`) after a pseudo-header address changed from `old` to `new`.
pub fn update_partial_u32(partial: u16, old: u32, new: u32) -> u16 {
    !update_u32(!partial, old, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
        assert_eq!(finish(&[0xddf2]), 0x220d);
    }

    #[test]
    fn ipv4_header_example() {
        // A well-known IPv4 header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(finish(&[sum(&h)]), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(sum(&h), 0xffff);
    }

    #[test]
    fn pseudo_header_sums_its_words() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let bytes = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 20];
        assert_eq!(pseudo_header(s, d, Protocol::Udp, 20), sum(&bytes));
    }

    /// The checksum of `data` with its field at `at..at + 2` filled in.
    fn filled(mut data: Vec<u8>, at: usize) -> Vec<u8> {
        data[at..at + 2].fill(0);
        let c = finish(&[sum(&data)]);
        data[at..at + 2].copy_from_slice(&c.to_be_bytes());
        data
    }

    fn field(data: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    proptest! {
        #[test]
        fn incremental_u16_equals_recomputation(
            data in proptest::collection::vec(any::<u8>(), 4..64),
            pos in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // Checksum at 0..2, the changed word anywhere after it, odd offsets included.
            let mut data = filled(data, 0);
            let at = 2 + pos.index(data.len() - 3);
            let old = field(&data, at);
            let check = field(&data, 0);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let (old, new) = if at % 2 == 0 { (old, new) } else { (old.swap_bytes(), new.swap_bytes()) };
            let incremental = update_u16(check, old, new);
            let full = filled(data, 0);
            prop_assert_eq!(incremental, field(&full, 0));
            prop_assert_eq!(sum(&full), 0xffff);
        }

        #[test]
        fn incremental_u32_equals_recomputation(
            data in proptest::collection::vec(any::<u8>(), 8..64),
            word in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            let mut data = filled(data, 0);
            let at = 2 + 2 * word.index((data.len() - 6) / 2 + 1);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            let check = field(&data, 0);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update_u32(check, old, new), field(&filled(data, 0), 0));
        }

        #[test]
        fn partial_update_equals_recomputed_pseudo_sum(
            src in any::<u32>(), dst in any::<u32>(), new in any::<u32>(), len in 8usize..1500,
        ) {
            let p = pseudo_header(Ipv4Addr::from(src), Ipv4Addr::from(dst), Protocol::Tcp, len);
            let q = pseudo_header(Ipv4Addr::from(new), Ipv4Addr::from(dst), Protocol::Tcp, len);
            // Equal as one's-complement values: 0x0000 and 0xffff are both zero.
            let got = update_partial_u32(p, src, new);
            let zero = |v: u16| v == 0 || v == 0xffff;
            prop_assert!(got == q || (zero(got) && zero(q)), "{got:#x} vs {q:#x}");
        }

        #[test]
        fn sum_agrees_with_etherparse(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            // etherparse sums native-endian words; its result's bytes are the wire bytes.
            let theirs = etherparse::checksum::Sum16BitWords::new().add_slice(&data).ones_complement();
            prop_assert_eq!(!sum(&data), u16::from_be_bytes(theirs.to_ne_bytes()));
        }
    }
}
