//! [`PacketPort`]: an AF_PACKET socket bound to an interface (the host end of a
//! veth pair). It receives through a TPACKET_V2 ring (no syscall per burst;
//! `recvmmsg` if the kernel refuses the ring) and sends with `sendmmsg` — one
//! syscall per burst, not per frame — with `PACKET_VNET_HDR` so GSO
//! super-frames and partial checksums cross whole, `PACKET_IGNORE_OUTGOING` so
//! the port never hears its own transmissions, and `PACKET_QDISC_BYPASS`.
//!
//! With the virtio-net header on, the port also turns on GRO on its interface
//! (ethtool's `ETHTOOL_SGRO`), so a container that sends MTU-sized TCP
//! segments reaches the switch as super-frames: the kernel coalesces them on
//! the sender's CPU (a veth with GRO polls through NAPI) and the switch moves
//! one frame where it moved forty. Measured on this project's 2-vCPU VM, TCP
//! with 1500-byte frames through the switch: 4.0 → 8.6–9.2 Gbit/s, and the
//! sender's retransmits 2k–8k → under 200 in 5 s. Without the header the
//! port could not carry a super-frame, so GRO is left alone. The port puts GRO
//! back off when it is dropped if it turned it on.
//!
//! The `unsafe` of this module is the thin sys layer (socket options, mmsghdr
//! arrays, the ring); every block says why it is sound.
#![allow(unsafe_code)]
// Casts here narrow struct sizes and burst counts (at most BATCH) to the C
// types of the syscalls; none can truncate.
#![allow(clippy::cast_possible_truncation)]

use std::fmt::Debug;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::mmap::Mapping;
use super::port::{Port, RecvResult, SendResult, is_full};
use crate::frame::{BATCH, FrameBuf, VNET_HDR_LEN};

pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Binds socket `fd` to `addr`, a socket address (`sockaddr_ll`,
/// `sockaddr_xdp`) whose type the kernel reads from its family field.
pub(crate) fn bind_addr<T>(fd: RawFd, addr: &T) -> io::Result<()> {
    let len =
        libc::socklen_t::try_from(mem::size_of::<T>()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `addr` is a live value of exactly `len` bytes; the kernel only
    // reads it, and checks the family and length itself.
    cvt(unsafe { libc::bind(fd, std::ptr::from_ref(addr).cast(), len) }).map(drop)
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` on the stack and its size is
    // passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(rc).map(drop)
}

/// Options the kernel may lack: probed per socket, the outcome kept in the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFeatures {
    /// `PACKET_VNET_HDR` accepted.
    pub vnet_hdr: bool,
    /// `PACKET_IGNORE_OUTGOING` accepted.
    pub ignore_outgoing: bool,
    /// `PACKET_QDISC_BYPASS` accepted.
    pub qdisc_bypass: bool,
    /// Frames arrive through a `PACKET_RX_RING` (TPACKET_V2) instead of
    /// `recvmmsg`.
    pub rx_ring: bool,
    /// GRO is on on the interface (it was, or the port turned it on), so
    /// received TCP segments arrive coalesced.
    pub gro: bool,
    /// Frames leave through a second socket that receives nothing and that
    /// no poller waits on (see [`PacketPort`]); without it they leave through
    /// the receiving socket.
    pub send_socket: bool,
    /// Frames that fit a slot leave through a `PACKET_TX_RING` (TPACKET_V2)
    /// on a socket of its own, a burst with one call that reads no message
    /// headers (see [`PacketPort`]). Only with the virtio-net header, which
    /// lets the kernel copy a whole frame into the skb at once.
    pub tx_ring: bool,
}

/// An AF_PACKET port on one interface.
///
/// Two sockets where the kernel allows: one receives (the ring, registered
/// with the worker's poller), one sends. Every frame sent is charged to the
/// sending socket until the receiver frees it, and each free calls the
/// socket's write-space callback, which wakes whatever waits on the socket:
/// on the receiving socket that is the worker's epoll entry, woken for
/// nothing once per frame. Measured on this project's 2-vCPU VM with 64-byte
/// frames: `sock_wfree` and the wake-up it makes were 13 % of the switch's
/// core. A socket nobody polls makes the same call find no sleeper and
/// return. The split needs `PACKET_IGNORE_OUTGOING` on the receiving socket:
/// a frame sent through the interface's queueing layer (no qdisc bypass) is
/// shown to its packet sockets as outgoing, and the receiving socket would
/// feed the sending one's frames back into the switch.
///
/// With the virtio-net header, a third socket, also unpolled, has a TX ring
/// where the kernel allows, and frames that fit a slot go through it:
/// `sendmmsg` reads and checks a message header and an iovec per frame
/// (6–7 % of the switch's core with 64-byte frames), a ring send reads
/// status words. Frames that do not fit (GSO super-frames), or that find the
/// next slot still held by a receiver, go out by `sendmmsg` through the
/// plain send socket (a socket with a TX ring sends only through it), in
/// burst order. A ring cannot save the copy of a large frame on a veth: the
/// kernel attaches the slot's pages by reference but marks the skb so that
/// a veth copies them (`skb_orphan_frags`).
pub struct PacketPort {
    fd: OwnedFd,
    /// The sending socket, bound to the interface with protocol 0 (it hears
    /// nothing); `None` sends through `fd`.
    tx: Option<OwnedFd>,
    /// The TX ring and its socket, if the port has one.
    tx_ring: Option<TxRing>,
    features: PacketFeatures,
    ifname: String,
    ring: Option<RxRing>,
    /// The port turned GRO on, and turns it back off on drop.
    gro_turned_on: bool,
    rx_hdrs: Box<[libc::mmsghdr; BATCH]>,
    rx_iovs: Box<[libc::iovec; BATCH]>,
    tx_hdrs: Box<[libc::mmsghdr; BATCH]>,
    tx_iovs: Box<[libc::iovec; BATCH]>,
}

impl Debug for PacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPort")
            .field("ifname", &self.ifname)
            .field("fd", &self.fd.as_raw_fd())
            .field("tx", &self.tx.as_ref().map(AsRawFd::as_raw_fd))
            .field("features", &self.features)
            .finish()
    }
}

// SAFETY: the raw pointers inside the mmsghdr/iovec arrays are scratch space,
// rewritten before every syscall and never dereferenced outside one; the ring
// mapping is owned by the port and only touched through `&mut self`.
unsafe impl Send for PacketPort {}

/// Resets `h` to one message of the single iovec `iov`, no address, no control.
fn point_at(h: &mut libc::mmsghdr, iov: *mut libc::iovec) {
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_name = std::ptr::null_mut();
    h.msg_hdr.msg_namelen = 0;
    h.msg_hdr.msg_control = std::ptr::null_mut();
    h.msg_hdr.msg_controllen = 0;
    h.msg_hdr.msg_flags = 0;
    h.msg_len = 0;
}

fn zeroed_array<T, const N: usize>() -> Box<[T; N]> {
    // SAFETY: only instantiated with `libc::mmsghdr` and `libc::iovec`, plain C
    // structs for which all-zero bytes (null pointers, zero lengths) are valid.
    Box::new(unsafe { mem::zeroed::<[T; N]>() })
}

impl PacketPort {
    /// Opens an AF_PACKET socket on interface `ifname` (which must exist and
    /// should be up). `want_offload` asks for `PACKET_VNET_HDR`; if the kernel
    /// refuses, the port works without it ([`PacketPort::features`] says so).
    pub fn open(ifname: &str, want_offload: bool) -> io::Result<PacketPort> {
        let cname = std::ffi::CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = packet_socket()?;
        let raw = fd.as_raw_fd();
        let opt = |name, v| setsockopt_int(raw, libc::SOL_PACKET, name, v).is_ok();
        let mut features = PacketFeatures {
            vnet_hdr: want_offload && opt(libc::PACKET_VNET_HDR, 1),
            ignore_outgoing: opt(libc::PACKET_IGNORE_OUTGOING, 1),
            qdisc_bypass: opt(libc::PACKET_QDISC_BYPASS, 1),
            rx_ring: false,
            gro: false,
            send_socket: false,
            tx_ring: false,
        };
        // The ring must exist before bind, or frames queue on the plain
        // receive path in between. Without it, recvmmsg serves.
        let ring = RxRing::setup(raw).ok();
        features.rx_ring = ring.is_some();
        set_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF);
        set_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF);
        bind(raw, ifindex, (libc::ETH_P_ALL as u16).to_be())?;
        // The sending socket takes the receiving one's options; anything it
        // refuses leaves the port on one socket.
        let tx = features
            .ignore_outgoing
            .then(|| send_socket(ifindex, features).ok())
            .flatten();
        features.send_socket = tx.is_some();
        let tx_ring = (tx.is_some() && features.vnet_hdr)
            .then(|| send_socket(ifindex, features).and_then(TxRing::setup).ok())
            .flatten();
        features.tx_ring = tx_ring.is_some();
        // GRO only where a super-frame can cross (the header carries its
        // segment size); refused (no ethtool support, not permitted) is not
        // an error: frames then arrive as they were sent.
        let mut gro_turned_on = false;
        if features.vnet_hdr {
            features.gro = match ethtool_value(raw, &cname, ETHTOOL_GGRO, 0) {
                Ok(1) => true,
                Ok(_) => {
                    gro_turned_on = ethtool_value(raw, &cname, ETHTOOL_SGRO, 1).is_ok()
                        && ethtool_value(raw, &cname, ETHTOOL_GGRO, 0).is_ok_and(|v| v == 1);
                    gro_turned_on
                }
                Err(_) => false,
            };
        }
        Ok(PacketPort {
            fd,
            tx,
            tx_ring,
            features,
            ifname: ifname.to_owned(),
            ring,
            gro_turned_on,
            rx_hdrs: zeroed_array(),
            rx_iovs: zeroed_array(),
            tx_hdrs: zeroed_array(),
            tx_iovs: zeroed_array(),
        })
    }

    /// What the kernel accepted.
    pub fn features(&self) -> PacketFeatures {
        self.features
    }
}

impl Drop for PacketPort {
    fn drop(&mut self) {
        if self.gro_turned_on
            && let Ok(name) = std::ffi::CString::new(self.ifname.as_str())
        {
            // The interface may be gone already (a removed endpoint's veth).
            let _ = ethtool_value(self.fd.as_raw_fd(), &name, ETHTOOL_SGRO, 0);
        }
    }
}

/// A new AF_PACKET socket, raw and non-blocking, of protocol 0: it hears
/// nothing until bind names a protocol and an interface. Opened for ETH_P_ALL
/// it would hear every interface of the namespace until then (a neighbour's
/// frames, the host's) and hand them to the switch as this port's.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets socket buffer `force` (beyond the system's limit, which needs
/// CAP_NET_ADMIN) or else `plain` to 4 MiB; refused is not an error.
fn set_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int) {
    let size = 4 << 20;
    if setsockopt_int(fd, libc::SOL_SOCKET, force, size).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, plain, size);
    }
}

/// Binds `fd` to interface `ifindex` for `proto` (network order); protocol 0
/// binds the interface for sending and receives nothing.
fn bind(fd: RawFd, ifindex: i32, proto: u16) -> io::Result<()> {
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    bind_addr(fd, &sll)
}

/// The port's sending socket: the receiving socket's send options
/// (`features`), bound to `ifindex` with protocol 0.
fn send_socket(ifindex: i32, features: PacketFeatures) -> io::Result<OwnedFd> {
    let fd = packet_socket()?;
    let raw = fd.as_raw_fd();
    if features.vnet_hdr {
        setsockopt_int(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    }
    if features.qdisc_bypass {
        setsockopt_int(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
    }
    set_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF);
    bind(raw, ifindex, 0)?;
    Ok(fd)
}

/// ethtool's commands to read and set an interface's GRO (`linux/ethtool.h`).
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`: a command and its one value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Runs ethtool command `cmd` with value `data` on interface `ifname` through
/// socket `fd` (`SIOCETHTOOL`; the interface is looked up in the socket's
/// namespace) and returns the value the kernel leaves.
fn ethtool_value(fd: RawFd, ifname: &std::ffi::CStr, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: all-zero is a valid ifreq (a name of NULs, a null data pointer).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let name = ifname.to_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, &c) in req.ifr_name.iter_mut().zip(name) {
        *d = libc::c_char::from_ne_bytes([c]);
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: `req` names the interface (NUL-terminated, it was zeroed) and
    // points at `value`, a live ethtool_value the kernel reads and, for a get,
    // writes; both outlive the call.
    cvt(unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &raw mut req) })?;
    Ok(value.data)
}

impl Port for PacketPort {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn take_rx_overruns(&mut self) -> u64 {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: PACKET_STATISTICS writes at most `len` bytes into `st`, a live
        // tpacket_stats (the same layout for TPACKET_V2); reading resets the
        // kernel's counters.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if rc < 0 { 0 } else { u64::from(st.tp_drops) }
    }

    fn offload(&self) -> bool {
        self.features.vnet_hdr
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        let offload = self.offload();
        if let Some(ring) = self.ring.as_mut() {
            return Ok(ring.recv(self.fd.as_raw_fd(), bufs, offload));
        }
        let n = bufs.len().min(BATCH);
        let skip = if offload { 0 } else { VNET_HDR_LEN };
        for (i, buf) in bufs.iter_mut().take(n).enumerate() {
            let area = &mut buf.storage_mut()[skip..];
            self.rx_iovs[i] = libc::iovec {
                iov_base: area.as_mut_ptr().cast(),
                iov_len: area.len(),
            };
            point_at(&mut self.rx_hdrs[i], &raw mut self.rx_iovs[i]);
        }
        // SAFETY: the first `n` headers point at iovecs that point into `bufs`,
        // which stay borrowed mutably for the call; the kernel writes at most
        // `iov_len` bytes into each.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.rx_hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(RecvResult::default()),
                _ => Err(e),
            };
        }
        let got = usize::try_from(rc).unwrap_or(0);
        let mut out = RecvResult {
            frames: 0,
            truncated: 0,
            more: got == n,
        };
        // Compact: frames land in order; truncated ones are skipped.
        for i in 0..got {
            let h = &self.rx_hdrs[i];
            let len = h.msg_len as usize;
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let hdr_len = VNET_HDR_LEN - skip;
            if truncated || len < hdr_len {
                out.truncated += 1;
                continue;
            }
            if out.frames != i {
                bufs.swap(out.frames, i);
            }
            let b = &mut bufs[out.frames];
            if skip != 0 {
                b.storage_mut()[..VNET_HDR_LEN].fill(0);
            }
            b.set_len(len - hdr_len);
            out.frames += 1;
        }
        Ok(out)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        let frames = &frames[..frames.len().min(BATCH)];
        let tx = self.tx.as_ref().unwrap_or(&self.fd).as_raw_fd();
        // Taken out for the call, so `send_mmsg` may borrow the port.
        let Some(mut ring) = self.tx_ring.take() else {
            return self.send_mmsg(tx, frames);
        };
        // Runs in burst order: what the ring takes, one send; what it does
        // not, one sendmmsg through the plain send socket.
        let mut out = SendResult::default();
        let mut rest = frames;
        while !rest.is_empty() {
            let (consumed, r) = ring.send(rest);
            out.sent += r.sent;
            out.failed += r.failed;
            rest = &rest[consumed..];
            let other = rest.iter().take_while(|f| !ring.takes(f)).count();
            if other > 0 {
                let r = self.send_mmsg(tx, &rest[..other]);
                out.sent += r.sent;
                out.failed += r.failed;
                if r.sent + r.failed < other {
                    // The socket's queue is full: the rest is not sent, as
                    // without a ring.
                    break;
                }
                rest = &rest[other..];
            }
        }
        self.tx_ring = Some(ring);
        out
    }
}

impl PacketPort {
    /// Sends `frames` (at most [`BATCH`]) with `sendmmsg` on socket `fd`.
    fn send_mmsg(&mut self, fd: RawFd, frames: &[&[u8]]) -> SendResult {
        let n = frames.len().min(BATCH);
        for (i, f) in frames.iter().take(n).enumerate() {
            self.tx_iovs[i] = libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            };
            point_at(&mut self.tx_hdrs[i], &raw mut self.tx_iovs[i]);
        }
        let mut out = SendResult::default();
        let mut next = 0;
        while next < n {
            // SAFETY: headers `next..n` point at iovecs over the caller's slices,
            // which outlive the call; the kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.tx_hdrs[next..].as_mut_ptr(),
                    (n - next) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(rc) {
                Ok(k) if k > 0 => {
                    out.sent += k;
                    next += k;
                }
                _ if is_full(&io::Error::last_os_error()) => break,
                // The frame at `next` was refused (e.g. larger than the device
                // takes): skip it and go on with the rest.
                _ => {
                    out.failed += 1;
                    next += 1;
                }
            }
        }
        out
    }
}

/// Makes the socket's ring `which` (`PACKET_RX_RING` or `PACKET_TX_RING`,
/// TPACKET_V2) of `slots` slots of [`RING_SLOT`] bytes in blocks of
/// [`RING_BLOCK`], and maps it.
fn ring(fd: RawFd, which: libc::c_int, slots: usize) -> io::Result<Mapping> {
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, 1 /* TPACKET_V2 */)?;
    let blocks = slots / (RING_BLOCK / RING_SLOT);
    let req = libc::tpacket_req {
        tp_block_size: RING_BLOCK as libc::c_uint,
        tp_block_nr: blocks as libc::c_uint,
        tp_frame_size: RING_SLOT as libc::c_uint,
        tp_frame_nr: slots as libc::c_uint,
    };
    // SAFETY: `req` is a live tpacket_req and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            which,
            (&raw const req).cast(),
            mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
        )
    })?;
    Mapping::shared(fd, blocks * RING_BLOCK, 0)
}

/// Byte offset of slot `i` of a ring: slots never straddle blocks.
const fn slot_offset(i: usize) -> usize {
    const PER_BLOCK: usize = RING_BLOCK / RING_SLOT;
    (i / PER_BLOCK) * RING_BLOCK + (i % PER_BLOCK) * RING_SLOT
}

/// The status word of slot `i` of ring `map`, shared with the kernel; `i`
/// must be below the ring's slot count.
fn status_word(map: &Mapping, i: usize) -> &std::sync::atomic::AtomicU32 {
    // SAFETY: slot `i` starts inside the mapping (the callers keep `i` below
    // their ring's slot count), 16-byte aligned, with the u32 `tp_status`;
    // the kernel writes it concurrently, which is what the atomic is for.
    unsafe { &*map.ptr().add(slot_offset(i)).cast::<std::sync::atomic::AtomicU32>() }
}

/// A `PACKET_TX_RING` (TPACKET_V2) of [`TX_SLOTS`] slots: we write a frame
/// into the next slot and flip its status to "send"; one `send` of nothing
/// makes the kernel send every such slot in order from its own head, which
/// moves with ours. A slot stays the kernel's until the skb made from it is
/// freed, so one whose frame a receiver still queues is not free: such
/// frames take the other way (see [`PacketPort`]).
struct TxRing {
    // Field order is drop order: the mapping, then its socket.
    map: Mapping,
    /// A send socket of its own (a socket with a TX ring sends only through
    /// it).
    fd: OwnedFd,
    /// The next slot to write; the kernel's head is here too between calls.
    head: usize,
}

/// Slots of the TX ring: 256 × 2 KiB, 512 KiB (a burst is at most 32 frames).
const TX_SLOTS: usize = 256;
/// Where a frame starts in a TX slot: right after the `tpacket2_hdr` (the
/// kernel's default without `PACKET_TX_HAS_OFF`).
const TX_DATA: usize = libc::TPACKET2_HDRLEN - mem::size_of::<libc::sockaddr_ll>();
/// Byte offset of `tp_len` in a `tpacket2_hdr` (after the u32 `tp_status`).
const TP_LEN_AT: usize = 4;
/// Byte offsets of `gso_type` and `hdr_len` in a virtio-net header.
const VNET_GSO_TYPE_AT: usize = 1;
const VNET_HDR_LEN_AT: usize = 2;

impl TxRing {
    /// A ring on `fd`, a send socket with the virtio-net header on.
    fn setup(fd: OwnedFd) -> io::Result<TxRing> {
        let raw = fd.as_raw_fd();
        Ok(TxRing {
            map: ring(raw, libc::PACKET_TX_RING, TX_SLOTS)?,
            fd,
            head: 0,
        })
    }

    /// The status word of slot `i < TX_SLOTS`.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        status_word(&self.map, i)
    }

    /// Whether the ring takes `frame` (virtio-net header first) now: it fits
    /// a slot, it is no GSO super-frame, and the next slot is free.
    fn takes(&self, frame: &[u8]) -> bool {
        use std::sync::atomic::Ordering;
        frame.len() > VNET_HDR_LEN
            && frame.len() <= RING_SLOT - TX_DATA
            && frame[VNET_GSO_TYPE_AT] == 0
            && self.status(self.head).load(Ordering::Acquire) == libc::TP_STATUS_AVAILABLE
    }

    /// Sends the leading frames of `frames` that the ring takes, each in the
    /// next slot, with one call; returns how many it consumed and what came
    /// of them (the frames the kernel did not take are taken back and
    /// counted failed). Consumes none, and makes no call, if the first
    /// frame is not for the ring.
    fn send(&mut self, frames: &[&[u8]]) -> (usize, SendResult) {
        use std::sync::atomic::Ordering;
        let first = self.head;
        let mut queued = 0;
        for f in frames {
            if !self.takes(f) {
                break;
            }
            let slot = slot_offset(self.head);
            // The whole frame in the skb's linear part: `hdr_len` is what the
            // kernel copies; the rest it would attach by page reference,
            // and a veth copies such pages again.
            let hdr_len = u16::try_from(f.len() - VNET_HDR_LEN).unwrap_or(u16::MAX);
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            // SAFETY: the slot is ours (status AVAILABLE, checked in `takes`)
            // until the status store below; the frame fits after its header
            // (checked in `takes`); the header's `tp_len` is a u32 at
            // TP_LEN_AT, written as bytes.
            unsafe {
                let base = self.map.ptr().add(slot);
                std::ptr::copy_nonoverlapping(f.as_ptr(), base.add(TX_DATA), f.len());
                std::ptr::copy_nonoverlapping(hdr_len.to_ne_bytes().as_ptr(), base.add(TX_DATA + VNET_HDR_LEN_AT), 2);
                std::ptr::copy_nonoverlapping(len.to_ne_bytes().as_ptr(), base.add(TP_LEN_AT), 4);
            }
            // Release: the frame's bytes are in place before the kernel sees
            // the slot marked.
            self.status(self.head)
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.head = (self.head + 1) % TX_SLOTS;
            queued += 1;
        }
        if queued == 0 {
            return (0, SendResult::default());
        }
        // SAFETY: a zero-length send with no buffer: tpacket_snd sends the
        // marked slots. Its result says little (a partial run returns the
        // bytes sent); the slots' statuses below say what went.
        unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        // The kernel stops at a frame it cannot send (a full receiver, a
        // frame it refuses) and leaves it and every later one marked; it
        // sends nothing past it. Take them back: the kernel's head is the
        // first of them, and so is ours.
        let mut failed = 0;
        for k in 0..queued {
            let i = (first + k) % TX_SLOTS;
            let st = self.status(i).load(Ordering::Acquire);
            if st == libc::TP_STATUS_SEND_REQUEST || st & libc::TP_STATUS_WRONG_FORMAT != 0 {
                if failed == 0 {
                    self.head = i;
                }
                self.status(i).store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
                failed += 1;
            }
        }
        (
            queued,
            SendResult {
                sent: queued - failed,
                failed,
            },
        )
    }
}

/// A `PACKET_RX_RING` (TPACKET_V2): the kernel copies each frame into a slot of
/// memory shared with us and flips the slot's status word, so a burst costs no
/// syscall and no per-frame socket-queue work. V2 rather than V3: a V3 block is
/// handed over only when full or when its timer fires, which would add up to a
/// millisecond to every sparse frame; V2 hands over each slot at once.
///
/// Slots are sized for MTU frames ([`RING_SLOT`]), and there are many of them, so
/// a burst of TCP segments does not overflow the ring. A larger frame (a 64 KiB
/// GSO super-frame) does not fit: with `PACKET_COPY_THRESH` set, the kernel puts
/// its truncated head in the slot flagged `TP_STATUS_COPY` and queues the whole
/// frame on the socket, where `recv` fetches it — in order, since the slot and
/// the queue entry are made together.
struct RxRing {
    map: Mapping,
    head: usize,
}

/// One slot: a 1500-byte-MTU frame with VLAN tag, virtio-net header and the
/// ring's own header fits; bigger frames take the copy path.
const RING_SLOT: usize = 2048;
/// Slots per block (one 64 KiB block, an order-4 allocation).
const RING_BLOCK: usize = 1 << 16;
/// Blocks of the ring: 32 × 32 = 1024 slots, 2 MiB.
const RING_BLOCKS: usize = 32;
const RING_SLOTS: usize = RING_BLOCKS * (RING_BLOCK / RING_SLOT);

impl RxRing {
    fn setup(fd: RawFd) -> io::Result<RxRing> {
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
        Ok(RxRing {
            map: ring(fd, libc::PACKET_RX_RING, RING_SLOTS)?,
            head: 0,
        })
    }

    /// The status word of slot `i < RING_SLOTS`.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        status_word(&self.map, i)
    }

    fn recv(&mut self, fd: RawFd, bufs: &mut [FrameBuf], offload: bool) -> RecvResult {
        use std::sync::atomic::Ordering;
        let mut out = RecvResult::default();
        let want = bufs.len().min(BATCH);
        let hdr_len = if offload { VNET_HDR_LEN } else { 0 };
        let start = VNET_HDR_LEN - hdr_len;
        while out.frames < want {
            let i = self.head;
            // Acquire: the slot's bytes are visible once the status says so.
            let status = self.status(i).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return out;
            }
            let slot = slot_offset(i);
            // SAFETY: the kernel handed slot `i` to us (TP_STATUS_USER) and does
            // not touch it until we give it back below; it starts with a
            // tpacket2_hdr.
            let hdr = unsafe { std::ptr::read(self.map.ptr().add(slot).cast::<libc::tpacket2_hdr>()) };
            let b = &mut bufs[out.frames];
            let got = if status & libc::TP_STATUS_COPY != 0 {
                // Too big for a slot: the whole frame waits on the socket queue.
                read_one(fd, &mut b.storage_mut()[start..])
                    .filter(|n| *n >= hdr_len)
                    .map(|n| n - hdr_len)
            } else {
                let mac = usize::from(hdr.tp_mac);
                let snap = hdr.tp_snaplen as usize;
                let fits = hdr.tp_snaplen == hdr.tp_len && mac >= hdr_len && mac + snap <= RING_SLOT;
                fits.then(|| {
                    // SAFETY: `mac - hdr_len .. mac + snap` lies inside slot `i`
                    // (checked above), which we own until the release below.
                    let src =
                        unsafe { std::slice::from_raw_parts(self.map.ptr().add(slot + mac - hdr_len), snap + hdr_len) };
                    b.storage_mut()[start..start + src.len()].copy_from_slice(src);
                    snap
                })
            };
            match got {
                Some(len) => {
                    if !offload {
                        b.storage_mut()[..VNET_HDR_LEN].fill(0);
                    }
                    b.set_len(len);
                    out.frames += 1;
                }
                None => out.truncated += 1,
            }
            // Release: our reads of the slot happen before the kernel reuses it.
            self.status(i).store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.head = (i + 1) % RING_SLOTS;
        }
        out.more = true;
        out
    }
}

/// One `recv` (MSG_DONTWAIT) into `buf`; `None` if nothing was queued.
fn read_one(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: receives at most `buf.len()` bytes into a live, exclusively
    // borrowed buffer.
    let rc = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    usize::try_from(rc).ok().filter(|n| *n <= buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_missing_interface_is_an_error() {
        let e = PacketPort::open("plexus-nope0", true).unwrap_err();
        // ENODEV from if_nametoindex; EPERM when not root comes later.
        assert!(e.raw_os_error().is_some());
    }
}
