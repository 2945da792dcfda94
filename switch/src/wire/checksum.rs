//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A checksum field holds the one's complement of the one's-complement sum of
//! the 16-bit words it covers; a receiver sums everything, field included, and
//! gets `0xffff`. [`sum`] and [`combine`] return *sums* (not complemented) so
//! pieces — pseudo-header, header, payload — can be added before the final `!`.
//!
//! A field rewritten in place (the MSS option the relay raises, the echo
//! identifier a raw ICMP socket puts in) must not make the whole message be
//! summed again: [`update_u16`] applies RFC 1624 equation 3,
//! `HC' = ~(~HC + ~m + m')`, which gives exactly what a full recomputation
//! gives (property-tested). The IPv4 pseudo-header lives with IPv4
//! ([`super::ipv4::pseudo_header`]), as smoltcp keeps protocol and pseudo-header
//! together: this module is a leaf.
//!
//! Pure arithmetic: nothing here can panic.

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
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let [.., hi, lo] = acc.to_be_bytes();
    u16::from_be_bytes([hi, lo])
}

/// Adds the big-endian 16-bit words of `data` to `acc`, an odd last byte padded
/// with zero.
///
/// Four bytes at a time, in the machine's byte order, into a wide sum: the
/// one's-complement sum does not depend on byte order once folded (RFC 1071
/// §2(B): swap the folded result), `2^16 ≡ 1 (mod 0xffff)` makes a 32-bit word
/// add what its halves add, and 2^32 × 2^14 words cannot overflow the
/// accumulator for any packet. The loop vectorizes: a 1500-byte frame sums in
/// 49 ns instead of 226 word by word (`cargo bench --bench core`,
/// `checksum_sum`), which the switch's coalescing pays per segment it folds.
pub(crate) fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut quads = data.chunks_exact(4);
    let wide: u64 = (&mut quads)
        .map(|q| u64::from(u32::from_ne_bytes([q[0], q[1], q[2], q[3]])))
        .sum();
    acc += u64::from(u16::from_be(fold(wide)));
    let mut words = quads.remainder().chunks_exact(2);
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
        fn wide_accumulation_agrees_with_word_by_word(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            start in any::<u32>(),
        ) {
            let mut acc = u64::from(start);
            let mut words = data.chunks_exact(2);
            for w in &mut words {
                acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
            }
            if let [last] = words.remainder() {
                acc += u64::from(u16::from_be_bytes([*last, 0]));
            }
            prop_assert_eq!(fold(accumulate(u64::from(start), &data)), fold(acc));
        }

        #[test]
        fn sum_agrees_with_etherparse(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            // etherparse sums native-endian words; its result's bytes are the wire bytes.
            let theirs = etherparse::checksum::Sum16BitWords::new().add_slice(&data).ones_complement();
            prop_assert_eq!(!sum(&data), u16::from_be_bytes(theirs.to_ne_bytes()));
        }
    }
}
