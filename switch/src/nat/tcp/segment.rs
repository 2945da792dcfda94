//! TCP segments as the relay reads and shapes them, on raw IPv4 packets:
//! a checked view, the destination of a SYN, raising a SYN's MSS, and turning
//! a big segment into a GSO frame with a partial checksum. Pure functions on
//! bytes; none can panic on any input (tested on random bytes).

use std::net::SocketAddrV4;

use crate::wire::{ETHERNET_HEADER_LEN, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket, checksum, ipv4, vnet};

/// A checked IPv4 packet and the TCP segment it carries.
pub(crate) type TcpView<'a> = (Ipv4Packet<&'a [u8]>, TcpPacket<&'a [u8]>);

/// The IPv4 header and TCP segment of `packet`, both checked.
pub(crate) fn tcp_view(packet: &[u8]) -> Option<TcpView<'_>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.into_payload()).ok()?;
    Some((ip, tcp))
}

/// The destination of a SYN (an IPv4 packet carrying TCP).
pub(crate) fn syn_destination(packet: &[u8]) -> Option<SocketAddrV4> {
    let (ip, tcp) = tcp_view(packet)?;
    Some(SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()))
}

/// Whether an IPv4 packet carries a TCP segment with SYN.
pub(crate) fn is_syn(packet: &[u8]) -> bool {
    tcp_view(packet).is_some_and(|(_, tcp)| tcp.flags().contains(TcpFlags::SYN))
}

/// Raises the MSS option of a SYN (an IPv4 packet) to at least `mss`; a SYN
/// without the option is left alone. The checksum is not updated: the relay's
/// stack does not verify it.
pub(crate) fn raise_mss(packet: &mut [u8], mss: u16) {
    let Some((ip, tcp)) = tcp_view(packet) else { return };
    if tcp.mss().is_none_or(|old| old >= mss) {
        return;
    }
    let segment = usize::from(ip.header_len())..usize::from(ip.total_len());
    if let Some(bytes) = packet.get_mut(segment) {
        TcpPacket::new_unchecked(bytes).set_mss(mss);
    }
}

/// Takes the SACK-permitted option out of a SYN (an IPv4 packet) before the
/// relay's stack reads it, so neither side uses SACK. smoltcp reports at most
/// one SACK block and never a duplicate (DSACK); a Linux sender that gets
/// such SACKs for segments that merely arrived out of order (a veth delivers
/// from two CPUs' backlogs) declares the hole lost at once and retransmits,
/// and without DSACK never learns that it was reordering. Without SACK it
/// waits for three duplicate ACKs, and learns reordering from timestamps.
/// Applies to the container's SYNs and SYN-ACKs and to the stack's own SYNs
/// (see `device`); true if the option was there. The checksum is not
/// updated (as [`raise_mss`]).
pub(crate) fn forbid_sack(packet: &mut [u8]) -> bool {
    let Some((ip, tcp)) = tcp_view(packet) else {
        return false;
    };
    if !tcp.flags().contains(TcpFlags::SYN) {
        return false;
    }
    let segment = usize::from(ip.header_len())..usize::from(ip.total_len());
    packet
        .get_mut(segment)
        .is_some_and(|bytes| TcpPacket::new_unchecked(bytes).clear_sack_permitted())
}

/// Recomputes the TCP checksum of an IPv4 packet (after [`forbid_sack`] on a
/// segment that leaves with a full checksum).
pub(crate) fn refill_checksum(packet: &mut [u8]) {
    let Some((ip, _)) = tcp_view(packet) else { return };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let segment = usize::from(ip.header_len())..usize::from(ip.total_len());
    if let Some(bytes) = packet.get_mut(segment) {
        TcpPacket::new_unchecked(bytes).fill_checksum(src, dst);
    }
}

/// Advertises one window unit less than the stack did in a segment it
/// emits (not in a SYN, whose window is never scaled, nor in a zero
/// window), the checksum adjusted; true if it did.
///
/// Why: smoltcp rounds the window it advertises down to its scale unit
/// (2^shift bytes) and trims arriving data to the last window it advertised.
/// Its true right edge (ACK number + free buffer) never moves back, but the
/// rounded one can: when the free space shrinks by a non-multiple of the unit
/// the edge recedes by up to a unit less one byte. A sender that had already
/// filled the earlier window then loses its last bytes: a hole, duplicate
/// ACKs, and a retransmit — after an RTO of 200 ms when the sender has learned
/// to expect reordering (seen with the container uploading through a 1 MiB
/// buffer: ten such stalls a second). Every rounded edge lies within a unit
/// below the true edge at its time, so an edge one unit shorter is never
/// beyond any later one, and no byte the container sends is trimmed.
pub(crate) fn shorten_window(packet: &mut [u8]) -> bool {
    let Some((ip, tcp)) = tcp_view(packet) else {
        return false;
    };
    let window = tcp.window_len();
    if window == 0 || tcp.flags().contains(TcpFlags::SYN) {
        return false;
    }
    let segment = usize::from(ip.header_len())..usize::from(ip.total_len());
    let Some(bytes) = packet.get_mut(segment) else {
        return false;
    };
    let mut tcp = TcpPacket::new_unchecked(bytes);
    // The window is at an even offset of the segment: no byte swap.
    let check = checksum::update_u16(tcp.checksum(), window, window - 1);
    tcp.set_window_len(window - 1);
    tcp.set_checksum(check);
    true
}

/// Describes a TCP frame the stack built (Ethernet + IPv4 + TCP, checksum
/// not yet filled) for a port with offloads: the checksum is left partial (the
/// pseudo-header sum, as the kernel's own TCP leaves it), and a segment larger
/// than one `mtu`-sized packet becomes a TCPv4 GSO frame. `None` for anything
/// but TCP.
pub(crate) fn offload_tcp(frame: &mut [u8], mtu: u16) -> Option<vnet::Repr> {
    let (ip, tcp) = tcp_view(frame.get(ETHERNET_HEADER_LEN..)?)?;
    let (ihl, total) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
    let (tcp_len, doff) = (total - ihl, usize::from(tcp.header_len()));
    let pseudo = ipv4::pseudo_header(ip.src_addr(), ip.dst_addr(), IpProtocol::Tcp, tcp_len);
    let start = ETHERNET_HEADER_LEN + ihl;
    TcpPacket::new_unchecked(frame.get_mut(start..start + tcp_len)?).set_checksum(pseudo);
    let mut hdr = vnet::Repr {
        flags: vnet::F_NEEDS_CSUM,
        csum_start: u16::try_from(start).ok()?,
        csum_offset: 16,
        ..vnet::Repr::default()
    };
    // Every segment repeats the headers, options (timestamps) included.
    let gso_size = usize::from(mtu).checked_sub(ihl + doff).filter(|&g| g > 0)?;
    if tcp_len.saturating_sub(doff) > gso_size {
        hdr.gso_type = vnet::GSO_TCPV4;
        hdr.gso_size = u16::try_from(gso_size).ok()?;
        hdr.hdr_len = u16::try_from(start + doff).ok()?;
    }
    Some(hdr)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn parsers_never_panic_on_any_bytes() {
        // Seeded, so a failure reproduces.
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..200 {
            for _ in 0..50 {
                let mut p: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x.to_le_bytes()[0]
                    })
                    .collect();
                let _ = is_syn(&p);
                let _ = syn_destination(&p);
                raise_mss(&mut p, 65000);
                forbid_sack(&mut p);
                refill_checksum(&mut p);
                shorten_window(&mut p);
                let _ = offload_tcp(&mut p, 1500);
            }
        }
    }

    fn syn_with_mss(mss: u16) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 24];
        p[0] = 0x45;
        p[9] = 6;
        p[3] = 44;
        p[20 + 12] = 6 << 4; // 24-byte TCP header
        p[20 + 13] = 0x02; // SYN
        // One option: MSS.
        p[20 + 20..20 + 24].copy_from_slice(&[2, 4, 0, 0]);
        p[20 + 22..20 + 24].copy_from_slice(&mss.to_be_bytes());
        p
    }

    #[test]
    fn the_mss_of_a_syn_is_raised_never_lowered() {
        let mut p = syn_with_mss(1460);
        assert!(is_syn(&p));
        raise_mss(&mut p, 65495);
        assert_eq!(u16::from_be_bytes([p[42], p[43]]), 65495);
        let mut big = syn_with_mss(65495);
        raise_mss(&mut big, 1000);
        assert_eq!(u16::from_be_bytes([big[42], big[43]]), 65495);
        // Truncated or odd options never panic.
        for n in 0..p.len() {
            let mut t = p[..n].to_vec();
            raise_mss(&mut t, 9000);
        }
    }

    #[test]
    fn the_advertised_window_is_one_unit_shorter_and_the_checksum_holds() {
        // An ACK with data and a window of 300 units, checksum filled.
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut p = vec![0u8; 40 + 33];
        p[0] = 0x45;
        p[9] = 6;
        p[2..4].copy_from_slice(&73u16.to_be_bytes());
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p[20 + 12] = 5 << 4;
        p[20 + 13] = 0x10;
        p[20 + 14..20 + 16].copy_from_slice(&300u16.to_be_bytes());
        p[40..].fill(0xa7);
        refill_checksum(&mut p);
        assert!(shorten_window(&mut p));
        let (_, tcp) = tcp_view(&p).unwrap();
        assert_eq!(tcp.window_len(), 299);
        assert!(tcp.verify_checksum(src, dst), "adjusted, not broken");
        // A zero window stays zero; a SYN's window (never scaled) is left alone.
        let mut zero = p.clone();
        zero[20 + 14..20 + 16].fill(0);
        assert!(!shorten_window(&mut zero));
        let mut syn = p.clone();
        syn[20 + 13] = 0x12;
        assert!(!shorten_window(&mut syn));
        assert_eq!(tcp_view(&syn).unwrap().1.window_len(), 299);
    }

    #[test]
    fn big_segments_become_gso_frames_with_a_partial_checksum() {
        let payload = 5000;
        let mut f = vec![0u8; 14 + 40 + payload];
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[9] = 6;
        ip[2..4].copy_from_slice(&u16::try_from(40 + payload).unwrap().to_be_bytes());
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[20 + 12] = 5 << 4;
        let h = offload_tcp(&mut f, 1500).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (vnet::GSO_TCPV4, 1460, 54));
        assert_eq!((h.flags, h.csum_start, h.csum_offset), (vnet::F_NEEDS_CSUM, 34, 16));
        let want = ipv4::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::Tcp,
            20 + payload,
        );
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), want);
        // A segment that fits one frame is not GSO; a non-TCP packet is left alone.
        let mut small = f[..14 + 40 + 100].to_vec();
        small[16..18].copy_from_slice(&140u16.to_be_bytes());
        assert_eq!(offload_tcp(&mut small, 1500).unwrap().gso_type, vnet::GSO_NONE);
        // With 12 bytes of options (timestamps) segments carry 12 bytes less.
        f[14 + 32] = 8 << 4;
        assert_eq!(offload_tcp(&mut f, 1500).unwrap().gso_size, 1448);
        small[14 + 9] = 17;
        assert!(offload_tcp(&mut small, 1500).is_none());
    }
}
