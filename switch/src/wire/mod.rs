//! Wire formats: zero-copy views and validated representations of the headers
//! the switch reads and writes — Ethernet II, ARP, IPv4, ICMPv4, UDP, TCP — plus
//! the virtio-net header that travels in front of frames on offload-capable ports,
//! and the Internet checksum (with the RFC 1624 update of one rewritten field).
//!
//! Every protocol follows smoltcp's Packet/Repr split:
//!
//! - a **packet view** (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`, …) wraps any
//!   `T: AsRef<[u8]>` without copying. `new_checked` is for untrusted bytes: it
//!   runs `check_len`, and once that has passed **no accessor can panic** — every
//!   fixed field lies inside the checked length and every variable-length slice
//!   (payload, options) is cut to the bytes that are there. Setters exist when
//!   `T: AsMut<[u8]>`; `new_unchecked` is for building into a buffer the caller
//!   sized with `Repr::buffer_len`, never for received bytes;
//! - a **repr** (`EthernetRepr`, `Ipv4Repr`, …) is a small value that `parse`
//!   validates (version, lengths, checksums, supported kinds) and `emit` writes
//!   back, checksums included. `emit` then `parse` gives the same repr.
//!
//! Fields are read at fixed offsets from a private `mod field` of ranges, never by
//! casting to `#[repr(C)]` structs, so alignment and endianness never matter and
//! no `unsafe` is needed. Protocol numbers are enums whose unknown values survive
//! as `Unknown(n)`, so a packet with a protocol we don't name still parses and
//! re-emits unchanged.
//!
//! Why views and not only parsed structs: the hot path reads a few fields of
//! every frame (addresses for anti-spoofing and routing, ports, flags) and
//! rewrites a couple in place (a SYN's MSS for the relay, a raw ICMP socket's
//! echo identifier); parsing into structs and re-serialising would copy every
//! frame.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use plexus_switch::wire::{ChecksumMode, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};
//!
//! // Build an echo reply: the IPv4 header, then the ICMP message in its payload.
//! let icmp = Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data: b"ping" };
//! let ip = Ipv4Repr {
//!     src_addr: Ipv4Addr::new(172, 17, 0, 1),
//!     dst_addr: Ipv4Addr::new(172, 17, 0, 2),
//!     protocol: IpProtocol::Icmp,
//!     payload_len: icmp.buffer_len(),
//!     ttl: 64,
//! };
//! let mut buf = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
//! let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
//! ip.emit(&mut packet);
//! icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
//!
//! // Parse it back as received bytes.
//! let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
//! assert_eq!(Ipv4Repr::parse(&packet), Ok(ip));
//! let message = Icmpv4Packet::new_checked(packet.into_payload()).unwrap();
//! assert_eq!(Icmpv4Repr::parse(&message, ChecksumMode::Verify), Ok(icmp));
//! ```

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::MacAddr;

pub mod arp;
pub mod checksum;
pub mod dns;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vnet;

#[cfg(test)]
mod testutil;

pub use arp::{Operation as ArpOperation, Packet as ArpPacket, Repr as ArpRepr};
pub use checksum::ChecksumMode;
pub use ethernet::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, Repr as EthernetRepr};
pub use icmpv4::{Message as Icmpv4Message, Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use ipv4::{Packet as Ipv4Packet, Protocol as IpProtocol, Repr as Ipv4Repr};
pub use tcp::{Flags as TcpFlags, Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// Why bytes are not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header needs.
    #[error("truncated header")]
    Truncated,
    /// A field holds a value the header does not allow.
    #[error("malformed header")]
    Malformed,
    /// The checksum does not match the bytes.
    #[error("bad checksum")]
    Checksum,
    /// A valid header of a kind the repr does not represent (an IPv4 fragment, an
    /// ARP packet for another link or network protocol, an ICMP type we don't handle).
    #[error("unsupported header")]
    Unsupported,
}

/// A fixed-size field type read from and written to a slice of exactly its size.
/// The slice comes from a `mod field` range, so its length is right by construction.
trait Field: Sized {
    fn read(s: &[u8]) -> Self;
    fn write(self, s: &mut [u8]);
}

impl Field for u8 {
    fn read(s: &[u8]) -> Self {
        s[0]
    }
    fn write(self, s: &mut [u8]) {
        s[0] = self;
    }
}

impl Field for u16 {
    fn read(s: &[u8]) -> Self {
        u16::from_be_bytes([s[0], s[1]])
    }
    fn write(self, s: &mut [u8]) {
        s.copy_from_slice(&self.to_be_bytes());
    }
}

impl Field for u32 {
    fn read(s: &[u8]) -> Self {
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    }
    fn write(self, s: &mut [u8]) {
        s.copy_from_slice(&self.to_be_bytes());
    }
}

impl Field for Ipv4Addr {
    fn read(s: &[u8]) -> Self {
        Ipv4Addr::from(u32::read(s))
    }
    fn write(self, s: &mut [u8]) {
        s.copy_from_slice(&self.octets());
    }
}

impl Field for MacAddr {
    fn read(s: &[u8]) -> Self {
        MacAddr([s[0], s[1], s[2], s[3], s[4], s[5]])
    }
    fn write(self, s: &mut [u8]) {
        s.copy_from_slice(&self.0);
    }
}

/// `check_len` of a header of `fixed` bytes.
fn check_fixed(buffer: &[u8], fixed: usize) -> Result<(), WireError> {
    if buffer.len() < fixed {
        return Err(WireError::Truncated);
    }
    Ok(())
}

/// `check_len` of a header a field of which declares a length (IPv4 IHL, TCP
/// data offset, UDP length): the `fixed` part is there before `declared` reads
/// the field, and the declared length covers the fixed part and fits the buffer.
/// Returns the declared length.
fn check_declared(buffer: &[u8], fixed: usize, declared: impl FnOnce() -> usize) -> Result<usize, WireError> {
    check_fixed(buffer, fixed)?;
    let declared = declared();
    if declared < fixed {
        return Err(WireError::Malformed);
    }
    if declared > buffer.len() {
        return Err(WireError::Truncated);
    }
    Ok(declared)
}

/// `b[range]` cut to the bytes that exist: never panics, empty when out of range.
/// Variable-length parts (payloads, options) use it so that a setter that changed
/// a length field cannot turn a later accessor into a panic.
fn clamped(b: &[u8], range: Range<usize>) -> &[u8] {
    let end = range.end.min(b.len());
    &b[range.start.min(end)..end]
}

/// Mutable [`clamped`].
fn clamped_mut(b: &mut [u8], range: Range<usize>) -> &mut [u8] {
    let end = range.end.min(b.len());
    &mut b[range.start.min(end)..end]
}

/// An enum over a protocol number whose unnamed values are kept as `Unknown(n)`,
/// with lossless `From` conversions both ways and a [`Field`] impl.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value without a name here, kept as it was on the wire.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(value: $repr) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $crate::wire::Field for $name {
            fn read(s: &[u8]) -> Self {
                Self::from(<$repr as $crate::wire::Field>::read(s))
            }
            fn write(self, s: &mut [u8]) {
                <$repr as $crate::wire::Field>::write(<$repr>::from(self), s)
            }
        }
    };
}
use enum_with_unknown;

/// A zero-copy packet view over `T: AsRef<[u8]>` with the constructors every
/// view shares; the module supplies `check_len`. With `payload`, the module also
/// supplies `payload_range` and gets the payload accessors.
macro_rules! packet_view {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` without any check, to build a packet into a buffer
            /// of the repr's `buffer_len`. Accessors may panic on a short buffer:
            /// use [`Self::new_checked`] for received bytes.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wraps untrusted bytes after [`Self::check_len`]; no accessor can
            /// panic afterwards.
            pub fn new_checked(buffer: T) -> Result<Self, $crate::wire::WireError> {
                let packet = Self::new_unchecked(buffer);
                packet.check_len()?;
                Ok(packet)
            }

            /// The wrapped buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// All the wrapped bytes, header included.
            pub fn as_bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, payload) => {
        $crate::wire::packet_view!($(#[$meta])* $name);

        impl<T: AsRef<[u8]>> $name<T> {
            /// The bytes after the header, cut to the bytes present.
            pub fn payload(&self) -> &[u8] {
                $crate::wire::clamped(self.buffer.as_ref(), self.payload_range())
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// The bytes after the header, writable.
            pub fn payload_mut(&mut self) -> &mut [u8] {
                let range = self.payload_range();
                $crate::wire::clamped_mut(self.buffer.as_mut(), range)
            }
        }

        impl<'a> $name<&'a [u8]> {
            /// The payload, borrowed for the buffer's lifetime rather than the view's.
            pub fn into_payload(self) -> &'a [u8] {
                let range = self.payload_range();
                $crate::wire::clamped(self.buffer, range)
            }
        }
    };
}
use packet_view;

/// Getters (and setters when `T: AsMut<[u8]>`) for fixed-size fields at
/// `mod field` ranges: `getter / setter: Type = field::RANGE;`.
macro_rules! fields {
    ($name:ident { $( $(#[$doc:meta])* $get:ident / $set:ident : $ty:ty = $range:expr; )+ }) => {
        impl<T: AsRef<[u8]>> $name<T> {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $get(&self) -> $ty {
                    <$ty as $crate::wire::Field>::read(&self.buffer.as_ref()[$range])
                }
            )+
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            $(
                #[doc = concat!("Sets the field [`", stringify!($get), "`](Self::", stringify!($get), ") reads.")]
                #[inline]
                pub fn $set(&mut self, value: $ty) {
                    <$ty as $crate::wire::Field>::write(value, &mut self.buffer.as_mut()[$range])
                }
            )+
        }
    };
}
use fields;

#[cfg(test)]
mod tests {
    //! Whole-frame tests: the parsing chain a gateway runs, fed valid frames,
    //! every truncation of them, and random bytes.

    use super::*;
    use proptest::prelude::*;

    /// Everything a gateway would parse from one frame.
    #[derive(Debug, PartialEq, Eq)]
    enum Parsed<'a> {
        Arp(ArpRepr),
        Icmp(Ipv4Repr, Icmpv4Repr<'a>),
        Udp(Ipv4Repr, UdpRepr<'a>),
        Tcp(Ipv4Repr, TcpRepr<'a>),
        OtherIp(Ipv4Repr),
        Other(EthernetRepr),
    }

    fn parse_chain(frame: &[u8]) -> Result<(EthernetRepr, Parsed<'_>), WireError> {
        let eth = EthernetFrame::new_checked(frame)?;
        let eth_repr = EthernetRepr::parse(&eth)?;
        let payload = eth.into_payload();
        let parsed = match eth_repr.ethertype {
            EtherType::Arp => Parsed::Arp(ArpRepr::parse(&ArpPacket::new_checked(payload)?)?),
            EtherType::Ipv4 => {
                let ip = Ipv4Packet::new_checked(payload)?;
                let ip_repr = Ipv4Repr::parse(&ip)?;
                let l4 = ip.into_payload();
                let (src, dst, mode) = (ip_repr.src_addr, ip_repr.dst_addr, ChecksumMode::Verify);
                match ip_repr.protocol {
                    IpProtocol::Icmp => {
                        Parsed::Icmp(ip_repr, Icmpv4Repr::parse(&Icmpv4Packet::new_checked(l4)?, mode)?)
                    }
                    IpProtocol::Udp => {
                        Parsed::Udp(ip_repr, UdpRepr::parse(&UdpPacket::new_checked(l4)?, src, dst, mode)?)
                    }
                    IpProtocol::Tcp => {
                        Parsed::Tcp(ip_repr, TcpRepr::parse(&TcpPacket::new_checked(l4)?, src, dst, mode)?)
                    }
                    IpProtocol::Unknown(_) => Parsed::OtherIp(ip_repr),
                }
            }
            _ => Parsed::Other(eth_repr),
        };
        Ok((eth_repr, parsed))
    }

    #[test]
    fn every_truncation_of_a_valid_frame_fails() {
        for frame in testutil::golden_frames() {
            parse_chain(&frame).unwrap_or_else(|e| panic!("{e}: {frame:02x?}"));
            for len in 0..frame.len() {
                assert!(
                    parse_chain(&frame[..len]).is_err(),
                    "prefix {len} of {frame:02x?} parsed"
                );
            }
        }
    }

    #[test]
    fn golden_frames_parse_to_known_values() {
        let frames = testutil::golden_frames();
        let (eth, arp) = parse_chain(&frames[0]).unwrap();
        assert_eq!(eth.ethertype, EtherType::Arp);
        let Parsed::Arp(arp) = arp else { panic!("{arp:?}") };
        assert_eq!(arp.operation, ArpOperation::Request);
        assert_eq!(arp.target_protocol_addr, Ipv4Addr::new(172, 17, 0, 1));
        let (_, icmp) = parse_chain(&frames[1]).unwrap();
        let Parsed::Icmp(ip, Icmpv4Repr::EchoRequest { ident, seq_no, data }) = icmp else {
            panic!("{icmp:?}")
        };
        assert_eq!(
            (ip.src_addr, ip.ttl, ident, seq_no, data),
            (Ipv4Addr::new(172, 17, 0, 2), 64, 0x1234, 1, &b"plexus!!"[..])
        );
        let (_, udp) = parse_chain(&frames[2]).unwrap();
        let Parsed::Udp(_, udp) = udp else { panic!("{udp:?}") };
        assert_eq!((udp.src_port, udp.dst_port, udp.payload), (40000, 53, &b"query"[..]));
        let (_, tcp) = parse_chain(&frames[3]).unwrap();
        let Parsed::Tcp(_, tcp) = tcp else { panic!("{tcp:?}") };
        assert_eq!((tcp.dst_port, tcp.flags, tcp.mss), (80, TcpFlags::SYN, Some(1460)));
    }

    #[test]
    fn existing_api_is_kept() {
        // `engine` and `dataplane` use these names; the module split must not move them.
        let f = [0u8; ETHERNET_HEADER_LEN];
        let e: EthernetFrame<&[u8]> = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.ethertype(), 0);
        assert_eq!(vnet::HDR_LEN, 10);
        assert!(matches!(vnet::Header::new_checked(&f[..]), Ok(h) if !h.needs_offload()));
        assert_eq!(WireError::Truncated.to_string(), "truncated header");
    }

    proptest! {
        #[test]
        fn chain_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_chain(&bytes);
        }

        #[test]
        fn chain_never_panics_on_mutated_frames(
            which in 0usize..4,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut frame = testutil::golden_frames().swap_remove(which);
            for (at, byte) in edits {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            let len = cut.index(frame.len() + 1);
            let _ = parse_chain(&frame[..len]);
        }
    }
}
