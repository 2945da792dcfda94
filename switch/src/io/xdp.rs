//! [`XdpPort`]: an AF_XDP socket on a veth host end, the other way in and out
//! of the switch beside [`super::packet::PacketPort`].
//!
//! A six-instruction XDP program on the interface redirects every received
//! frame into our socket (`bpf_redirect_map` over a one-entry XSKMAP, falling
//! back to the kernel's stack if the socket is not in the map yet), so a frame
//! a container sends skips the host's receive path and `packet_rcv`: veth runs
//! the program in its own NAPI poll and copies the frame straight into memory
//! we share with the kernel (the UMEM). Four rings carry the descriptors: fill
//! (empty buffers we lend for receiving), rx (received frames), tx (frames to
//! send) and completion (sent buffers given back). Transmit in copy mode runs
//! in our `sendto` kick, up to 32 frames per call — one kick per burst — on a
//! second, send-only socket of queue 0 that shares its UMEM and that no poller
//! waits on (each sent frame's release otherwise wakes the worker's epoll:
//! 64-byte frames/s +5–7 % without it).
//!
//! The program is attached through a BPF link, so it leaves the interface when
//! the port (its link fd) is dropped, or the process dies.
//!
//! **Decision: opt-in, probed, with TPACKET as the fallback.** Needs root
//! (CAP_BPF, CAP_NET_ADMIN) and a kernel with BPF links for XDP (5.9+); veth
//! runs it natively (driver mode), other devices in generic mode. What it
//! costs: AF_XDP carries no virtio-net header, and veth takes the GSO features
//! of the peer away while a program is attached, so TCP runs at MTU-sized
//! frames (the kernel's own AF_XDP limit, which Open vSwitch's AF_XDP ports
//! share). Checksums a sender leaves to offload arrive unfilled, with nothing
//! to say so: the port fills them as it copies the frame out
//! ([`crate::wire::ipv4::complete_partial_checksum`], exact, not a guess).
//!
//! The `unsafe` here is the thin sys layer: the `bpf(2)` calls, the UMEM and
//! ring mappings, and the ring indices shared with the kernel; every block
//! says why it is sound.
#![allow(unsafe_code)]
// Sizes and counts here are small constants (ring sizes, frame sizes, at most
// BATCH frames) narrowed to the C types of the calls; none can truncate.
#![allow(clippy::cast_possible_truncation)]

use std::fmt::Debug;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::Mapping;
use super::packet::{bind_addr, cvt};
use super::port::{Port, RecvResult, SendResult};
use crate::frame::{BATCH, FrameBuf, MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::wire::{ETHERNET_HEADER_LEN, ipv4};

/// Why an AF_XDP port could not be opened (each carrying the failing call's
/// error); the caller falls back to an AF_PACKET port.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// No such interface.
    #[error("no interface {ifname}: {source}")]
    NoInterface {
        /// The interface asked for.
        ifname: String,
        /// From `if_nametoindex`.
        source: io::Error,
    },
    /// A `bpf(2)` command failed (EPERM without CAP_BPF / CAP_NET_ADMIN).
    #[error("bpf({cmd}): {source}")]
    Bpf {
        /// The command.
        cmd: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// The verifier refused the redirect program.
    #[error("loading the XDP program: {source}{}", if log.is_empty() { String::new() } else { format!(" ({log})") })]
    Verifier {
        /// The kernel's error.
        source: io::Error,
        /// The verifier's log, trimmed.
        log: String,
    },
    /// The interface's MTU is above what a UMEM frame takes.
    #[error("MTU {mtu} is above AF_XDP's {max} here (2 KiB frames)")]
    Mtu {
        /// The MTU asked for.
        mtu: u32,
        /// [`MAX_MTU`].
        max: u32,
    },
    /// The socket, its UMEM or its rings could not be set up.
    #[error("AF_XDP socket ({step}): {source}")]
    Socket {
        /// The step that failed.
        step: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
}

/// How the program runs on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (veth: in its NAPI poll, before an skb exists).
    Native,
    /// In the generic hook, after the skb is built (any device).
    Generic,
}

impl XdpMode {
    /// The name `plexus info` shows.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// Bytes per UMEM frame (the smallest chunk aligned mode takes): a 1500-byte
/// MTU frame and the kernel's 256-byte XDP headroom fit.
const FRAME_SIZE: usize = 2048;
/// The largest MTU a port takes: a received frame goes after the kernel's
/// 256-byte XDP headroom in its 2 KiB frame, Ethernet header included.
pub const MAX_MTU: u32 = (FRAME_SIZE - 256 - 14) as u32;
/// Frames lent to the kernel for receiving (and the size of fill and rx).
const RX_FRAMES: usize = 2048;
/// Frames for sending (and the size of tx and completion) on queue 0, which
/// sends every frame of the port.
const TX_FRAMES: usize = 512;
/// The same on the other queues, which only receive (their tx ring is never
/// used, but a socket's UMEM needs a completion ring).
const TX_FRAMES_IDLE: usize = 16;

// bpf(2) commands, map and program types, attach type and flags (uapi/linux/bpf.h,
// if_link.h).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The redirect program for the XSKMAP `map_fd`:
///
/// ```text
/// r2 = ctx->rx_queue_index          ; the key: the queue the frame came in on
/// r1 = map_fd (ld_imm64, pseudo map fd)
/// r3 = XDP_PASS                     ; what happens if the key has no socket
/// r0 = bpf_redirect_map(r1, r2, r3)
/// exit
/// ```
fn program(map_fd: RawFd) -> [Insn; 6] {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const PSEUDO_MAP_FD: u8 = 1;
    const RX_QUEUE_INDEX: i16 = 16; // offsetof(struct xdp_md, rx_queue_index)
    const XDP_PASS: i32 = 2;
    const REDIRECT_MAP: i32 = 51; // BPF_FUNC_redirect_map
    [
        insn(LDX_W, 2, 1, RX_QUEUE_INDEX, 0),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_K, 3, 0, 0, XDP_PASS),
        insn(CALL, 0, 0, 0, REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf(cmd, attr)`; a new fd for the commands that make one.
///
/// # Safety
/// `A` must be the kernel's attribute layout for `cmd`, and every pointer
/// inside `attr` must be valid for what `cmd` does with it during the call.
unsafe fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<libc::c_int> {
    // SAFETY: the caller vouches for the layout and the pointers; the size
    // passed is the attribute's own, and the kernel zero-extends it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            mem::size_of::<A>(),
        )
    };
    cvt(libc::c_int::try_from(rc).unwrap_or(-1))
}

/// Wraps a file descriptor a successful call just returned.
fn own(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` is a fresh descriptor from the kernel that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// One of the four rings shared with the kernel. We own one index (producer
/// for fill and tx, consumer for rx and completion) and read the other.
struct Ring<T> {
    /// Kept for its lifetime: the pointers below point into it.
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    size: u32,
}

impl<T> Ring<T> {
    /// Maps the ring at page offset `pgoff` of the socket, of `size` entries
    /// laid out as `off` says.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let len = usize::try_from(off.desc)
            .unwrap_or(usize::MAX)
            .saturating_add(size as usize * mem::size_of::<T>());
        let mapping = Mapping::shared(fd, len, pgoff)?;
        let map = mapping.ptr();
        let at = |o: u64| usize::try_from(o).unwrap_or(0);
        // SAFETY: the kernel's offsets lie inside the mapping; the indices and
        // flags are 4-byte aligned u32s, the descriptors aligned for `T`.
        unsafe {
            Ok(Ring {
                producer: map.add(at(off.producer)).cast(),
                consumer: map.add(at(off.consumer)).cast(),
                flags: map.add(at(off.flags)).cast(),
                desc: map.add(at(off.desc)).cast(),
                size,
                _map: mapping,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`); the kernel updates
        // it concurrently, hence the atomic.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { &*self.consumer }
    }

    /// True if the kernel asks for a syscall to go on (`XDP_RING_NEED_WAKEUP`).
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as `producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Entries filled by the other side and not yet consumed (consumer rings).
    fn ready(&self) -> u32 {
        let prod = self.producer().load(Ordering::Acquire);
        prod.wrapping_sub(self.consumer().load(Ordering::Relaxed))
    }

    /// Entries free to produce into (producer rings).
    fn free(&self) -> u32 {
        let cons = self.consumer().load(Ordering::Acquire);
        self.size - self.producer().load(Ordering::Relaxed).wrapping_sub(cons)
    }

    /// The entry at free-running index `i`.
    fn slot(&self, i: u32) -> *mut T {
        // SAFETY: `i & (size - 1)` is within the `size` descriptors mapped.
        unsafe { self.desc.add((i & (self.size - 1)) as usize) }
    }
}

/// The UMEM: anonymous memory the kernel copies frames into and out of,
/// `len` bytes of [`FRAME_SIZE`] frames.
struct Umem {
    map: Mapping,
}

impl Umem {
    fn new(frames: usize) -> io::Result<Umem> {
        Ok(Umem {
            map: Mapping::anonymous(frames * FRAME_SIZE)?,
        })
    }

    /// Its length in bytes.
    fn len(&self) -> usize {
        self.map.len()
    }

    /// `len` bytes at UMEM address `addr`, if they lie inside one frame.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok().filter(|s| *s < self.len())?;
        let chunk_end = (start / FRAME_SIZE + 1) * FRAME_SIZE;
        if start + len > chunk_end {
            return None;
        }
        // SAFETY: the range lies inside the mapping (checked above); the kernel
        // handed this frame to us through the rx ring and leaves it alone until
        // we give it back on the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.map.ptr().add(start), len) })
    }

    /// The TX frame at `addr` (a frame's start), to write a frame into.
    fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let start = usize::try_from(addr).unwrap_or(0).min(self.len() - FRAME_SIZE) / FRAME_SIZE * FRAME_SIZE;
        // SAFETY: one whole frame inside the mapping (clamped above); TX frames
        // are ours between their completion and their next send.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr().add(start), FRAME_SIZE) }
    }
}

fn setsockopt_val<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` and its size is passed; the kernel only
    // reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A kernel struct made only of integers (all-zero bytes are a valid value),
/// read with `getsockopt`.
trait Plain: Copy {}
impl Plain for libc::xdp_mmap_offsets {}
impl Plain for libc::xdp_statistics {}

fn getsockopt_val<T: Plain>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    // SAFETY: `T` is a `Plain` C struct of integers, for which zero is valid.
    let mut value: T = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, a live `T`.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, (&raw mut value).cast(), &raw mut len) })?;
    Ok(value)
}

/// Queue 0's second socket, which only sends: bound to the same queue with
/// `XDP_SHARED_UMEM`, it writes from queue 0's UMEM and its sent frames come
/// back on queue 0's completion ring. No poller waits on it, so the kernel's
/// per-frame write-space callback (on each sent frame's free) finds no
/// sleeper; on the receiving socket it woke the worker's epoll for nothing
/// (see [`super::packet::PacketPort`], where the same split is measured).
struct Sender {
    // Field order is drop order: the socket, then its ring.
    fd: OwnedFd,
    tx: Ring<libc::xdp_desc>,
}

impl Sender {
    /// A send-only socket on `queue` of `ifindex` sharing the UMEM of `first`,
    /// which is bound there already.
    fn bind(ifindex: u32, queue: u32, first: RawFd, size: usize) -> io::Result<Sender> {
        let fd = xdp_socket()?;
        let raw = fd.as_raw_fd();
        setsockopt_val(
            raw,
            libc::XDP_TX_RING,
            &libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX),
        )?;
        let off: libc::xdp_mmap_offsets = getsockopt_val(raw, libc::XDP_MMAP_OFFSETS)?;
        let tx = Ring::map(
            raw,
            &off.tx,
            size as u32,
            u64::try_from(libc::XDP_PGOFF_TX_RING).unwrap_or(0),
        )?;
        // A socket that shares a UMEM takes no other bind flags.
        bind_queue(raw, ifindex, queue, libc::XDP_SHARED_UMEM, Some(first))?;
        Ok(Sender { fd, tx })
    }
}

/// A new AF_XDP socket.
fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) }).map(own)
}

/// Binds AF_XDP socket `fd` to receive queue `queue` of `ifindex` with bind
/// `flags`, sharing the UMEM of socket `shared` if given.
fn bind_queue(fd: RawFd, ifindex: u32, queue: u32, flags: u16, shared: Option<RawFd>) -> io::Result<()> {
    let sxdp = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: shared.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)),
    };
    bind_addr(fd, &sxdp)
}

/// One AF_XDP socket, bound to one receive queue of the interface, with its
/// own UMEM and four rings.
struct Xsk {
    // Field order is drop order: the sockets, their rings, the UMEM last.
    /// Queue 0's send-only socket, where the kernel took it; `None` sends
    /// through `fd` and `tx`.
    sender: Option<Sender>,
    fd: OwnedFd,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    umem: Umem,
    /// TX frames not in flight (a stack of UMEM addresses).
    tx_free: Vec<u64>,
    /// TX frames in all.
    tx_frames: usize,
    zero_copy: bool,
    /// The kernel's drop counters at the last look.
    seen_drops: u64,
}

/// What binding a socket to a queue came to.
enum Bound {
    Yes(Box<Xsk>),
    /// The interface has no such queue.
    NoQueue,
}

impl Xsk {
    /// Makes a socket with its UMEM and rings, lends the RX frames to the
    /// kernel, and binds it to queue `queue` (zero-copy if the driver offers
    /// it, else copy mode).
    fn bind(ifindex: u32, queue: u32) -> Result<Bound, XdpError> {
        let tx_frames = if queue == 0 { TX_FRAMES } else { TX_FRAMES_IDLE };
        let sock = |step| move |source| XdpError::Socket { step, source };
        let fd = xdp_socket().map_err(sock("socket"))?;
        let raw = fd.as_raw_fd();
        let umem = Umem::new(RX_FRAMES + tx_frames).map_err(sock("UMEM"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.map.ptr() as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt_val(raw, libc::XDP_UMEM_REG, &reg).map_err(sock("XDP_UMEM_REG"))?;
        for (name, size) in [
            (libc::XDP_UMEM_FILL_RING, RX_FRAMES),
            (libc::XDP_UMEM_COMPLETION_RING, tx_frames),
            (libc::XDP_RX_RING, RX_FRAMES),
            (libc::XDP_TX_RING, tx_frames),
        ] {
            let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            setsockopt_val(raw, name, &size).map_err(sock("ring size"))?;
        }
        let off: libc::xdp_mmap_offsets =
            getsockopt_val(raw, libc::XDP_MMAP_OFFSETS).map_err(sock("XDP_MMAP_OFFSETS"))?;
        let pg = |o: libc::off_t| u64::try_from(o).unwrap_or(0);
        let mut xsk = Xsk {
            sender: None,
            rx: Ring::map(raw, &off.rx, RX_FRAMES as u32, pg(libc::XDP_PGOFF_RX_RING)).map_err(sock("rx ring"))?,
            tx: Ring::map(raw, &off.tx, tx_frames as u32, pg(libc::XDP_PGOFF_TX_RING)).map_err(sock("tx ring"))?,
            fill: Ring::map(raw, &off.fr, RX_FRAMES as u32, libc::XDP_UMEM_PGOFF_FILL_RING)
                .map_err(sock("fill ring"))?,
            comp: Ring::map(raw, &off.cr, tx_frames as u32, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
                .map_err(sock("completion ring"))?,
            fd,
            umem,
            tx_free: (0..tx_frames).map(|i| ((RX_FRAMES + i) * FRAME_SIZE) as u64).collect(),
            tx_frames,
            zero_copy: false,
            seen_drops: 0,
        };
        // Lend every RX frame to the kernel before frames can arrive.
        let start = xsk.fill.producer().load(Ordering::Relaxed);
        for i in 0..RX_FRAMES as u32 {
            // SAFETY: the fill ring is empty and has RX_FRAMES entries; each is
            // written once before they are published below.
            unsafe {
                xsk.fill
                    .slot(start.wrapping_add(i))
                    .write(u64::from(i) * FRAME_SIZE as u64)
            };
        }
        xsk.fill
            .producer()
            .store(start.wrapping_add(RX_FRAMES as u32), Ordering::Release);
        let mut err = None;
        for flags in [libc::XDP_ZEROCOPY, libc::XDP_COPY] {
            if let Err(e) = bind_queue(raw, ifindex, queue, flags | libc::XDP_USE_NEED_WAKEUP, None) {
                err = Some(e);
                continue;
            }
            xsk.zero_copy = flags == libc::XDP_ZEROCOPY;
            // Only the sending queue gets a sender; refused, it sends
            // through its own socket.
            if queue == 0 {
                xsk.sender = Sender::bind(ifindex, queue, raw, tx_frames).ok();
            }
            return Ok(Bound::Yes(Box::new(xsk)));
        }
        match err {
            // A queue past the interface's last: EINVAL.
            Some(e) if queue > 0 && e.raw_os_error() == Some(libc::EINVAL) => Ok(Bound::NoQueue),
            e => Err(XdpError::Socket {
                step: "bind",
                source: e.unwrap_or_else(|| io::ErrorKind::Unsupported.into()),
            }),
        }
    }

    /// Moves up to `bufs.len()` received frames into `bufs` and lends their
    /// UMEM frames back; returns (frames, truncated).
    fn recv(&mut self, bufs: &mut [FrameBuf]) -> (usize, usize) {
        let n = self.rx.ready().min(bufs.len() as u32);
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let fill_at = self.fill.producer().load(Ordering::Relaxed);
        let (mut frames, mut truncated) = (0, 0);
        for i in 0..n {
            // SAFETY: entries `cons .. cons + n` were published by the kernel
            // (Acquire in `ready`).
            let d = unsafe { self.rx.slot(cons.wrapping_add(i)).read() };
            let b = &mut bufs[frames];
            match self.umem.bytes(d.addr, d.len as usize) {
                Some(src) if src.len() <= MAX_FRAME_LEN => {
                    let st = b.storage_mut();
                    st[..VNET_HDR_LEN].fill(0);
                    let frame = &mut st[VNET_HDR_LEN..VNET_HDR_LEN + src.len()];
                    frame.copy_from_slice(src);
                    complete_checksum(frame);
                    b.set_len(src.len());
                    frames += 1;
                }
                _ => truncated += 1,
            }
            // Lend the frame back (its chunk's start). The fill ring has room:
            // only RX_FRAMES frames exist and this one just left the rx ring.
            // SAFETY: entry `fill_at + i` is ours to write until published below.
            unsafe {
                self.fill
                    .slot(fill_at.wrapping_add(i))
                    .write(d.addr / FRAME_SIZE as u64 * FRAME_SIZE as u64)
            };
        }
        // Release: our reads of the frames happen before the kernel reuses them.
        self.rx.consumer().store(cons.wrapping_add(n), Ordering::Release);
        self.fill.producer().store(fill_at.wrapping_add(n), Ordering::Release);
        if n > 0 && self.fill.needs_wakeup() {
            // SAFETY: a zero-length non-blocking recvfrom: the AF_XDP wakeup for
            // a driver waiting on the fill ring.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        (frames, truncated)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        self.reclaim();
        let mut out = SendResult::default();
        // The socket and ring frames leave through.
        let (fd, tx) = match &self.sender {
            Some(s) => (s.fd.as_raw_fd(), &s.tx),
            None => (self.fd.as_raw_fd(), &self.tx),
        };
        let room = tx.free() as usize;
        let prod = tx.producer().load(Ordering::Relaxed);
        let mut k = 0u32;
        for f in frames.iter().take(BATCH.min(room)) {
            if f.len() > FRAME_SIZE {
                out.failed += 1;
                continue;
            }
            let Some(addr) = self.tx_free.pop() else { break };
            self.umem.frame_mut(addr)[..f.len()].copy_from_slice(f);
            let d = libc::xdp_desc {
                addr,
                len: f.len() as u32,
                options: 0,
            };
            // SAFETY: entry `prod + k` is free (fewer than `room` written).
            unsafe { tx.slot(prod.wrapping_add(k)).write(d) };
            k += 1;
        }
        if k > 0 {
            tx.producer().store(prod.wrapping_add(k), Ordering::Release);
            kick_tx(fd, tx, self.zero_copy);
        }
        out.sent = k as usize;
        out
    }

    /// Takes back the TX frames the kernel has finished with.
    fn reclaim(&mut self) {
        let n = self.comp.ready();
        let cons = self.comp.consumer().load(Ordering::Relaxed);
        for i in 0..n {
            // SAFETY: entries `cons .. cons + n` were published by the kernel
            // (Acquire in `ready`).
            let addr = unsafe { self.comp.slot(cons.wrapping_add(i)).read() };
            // Only our own TX frames, each once: the stack never grows.
            let ours = (RX_FRAMES * FRAME_SIZE) as u64 <= addr && addr < self.umem.len() as u64;
            if ours && self.tx_free.len() < self.tx_frames {
                self.tx_free.push(addr);
            }
        }
        self.comp.consumer().store(cons.wrapping_add(n), Ordering::Release);
    }

    /// Frames the kernel dropped since the last call: no fill buffer, a full
    /// rx ring, too long for a frame.
    fn take_drops(&mut self) -> u64 {
        let Ok(st) = getsockopt_val::<libc::xdp_statistics>(self.fd.as_raw_fd(), libc::XDP_STATISTICS) else {
            return 0;
        };
        let total = st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs;
        let new = total.saturating_sub(self.seen_drops);
        self.seen_drops = total;
        new
    }
}

/// Kicks the kernel to send what ring `tx` of socket `fd` holds (copy mode
/// sends in this call, up to 32 frames per kick; a few kicks drain a full
/// burst).
fn kick_tx(fd: RawFd, tx: &Ring<libc::xdp_desc>, zero_copy: bool) {
    for _ in 0..4 {
        if zero_copy && !tx.needs_wakeup() {
            return;
        }
        // SAFETY: a zero-length sendto with no buffer and no address: the
        // AF_XDP wakeup call.
        let rc = unsafe { libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        let busy = rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        if !busy || tx.free() == tx.size {
            return;
        }
    }
}

/// Fills the checksum a sender left to offload: AF_XDP carries no metadata
/// to say so, and a veth hands such a frame over as it is.
fn complete_checksum(frame: &mut [u8]) {
    if frame.get(12..14) == Some(&[0x08, 0x00])
        && let Some(ip) = frame.get_mut(ETHERNET_HEADER_LEN..)
    {
        ipv4::complete_partial_checksum(ip);
    }
}

/// An AF_XDP port on one interface: a socket per receive queue (a veth has
/// one per CPU, and the peer spreads flows over them), one epoll fd over them
/// for the worker to watch.
pub struct XdpPort {
    // Field order is drop order: the link first (the program leaves the
    // interface), then the sockets (their UMEMs with them).
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    queues: Vec<Xsk>,
    epoll: OwnedFd,
    /// The queue the next `recv` starts with (round robin, so no queue starves).
    next: usize,
    ifname: String,
    mode: XdpMode,
}

impl Debug for XdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPort")
            .field("ifname", &self.ifname)
            .field("queues", &self.queues.len())
            .field("mode", &self.mode)
            .field("zero_copy", &self.zero_copy())
            .finish()
    }
}

// SAFETY: the raw pointers are into mappings the port owns; they are touched
// only through `&mut self` (and by the kernel, through the atomics).
unsafe impl Send for XdpPort {}

/// Most receive queues a port binds (a veth has one per possible CPU; frames
/// on a queue past this one would go to the host's stack, as without XDP).
const MAX_QUEUES: u32 = 64;

impl XdpPort {
    /// Attaches the redirect program to `ifname` (native mode, else generic)
    /// and binds a socket to each of its receive queues. `mtu`: the
    /// interface's, at most [`MAX_MTU`].
    pub fn open(ifname: &str, mtu: u32) -> Result<XdpPort, XdpError> {
        if mtu > MAX_MTU {
            return Err(XdpError::Mtu { mtu, max: MAX_MTU });
        }
        let no_if = |source| XdpError::NoInterface {
            ifname: ifname.to_owned(),
            source,
        };
        let cname = std::ffi::CString::new(ifname).map_err(|_| no_if(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(no_if(io::Error::last_os_error()));
        }
        let bpf_err = |cmd| move |source| XdpError::Bpf { cmd, source };
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: MAX_QUEUES,
        };
        // SAFETY: the BPF_MAP_CREATE layout, no pointers.
        let map = own(unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(bpf_err("BPF_MAP_CREATE"))?);
        let prog = load_program(map.as_raw_fd())?;
        // Until a queue's socket is in the map, its frames go to the kernel's
        // stack, as without the program.
        let (link, mode) = attach(prog.as_raw_fd(), ifindex)?;
        // SAFETY: plain epoll_create1(2); the result is checked before use.
        let epoll = own(cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|source| XdpError::Socket { step: "epoll", source })?);
        let mut queues = Vec::new();
        for q in 0..MAX_QUEUES {
            let xsk = match Xsk::bind(ifindex, q)? {
                Bound::Yes(xsk) => *xsk,
                Bound::NoQueue => break,
            };
            let raw = xsk.fd.as_raw_fd();
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: u64::from(q),
            };
            // SAFETY: adds a live fd to our epoll set; `ev` is read during the call.
            cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &raw mut ev) })
                .map_err(|source| XdpError::Socket { step: "epoll", source })?;
            let (key, value) = (q, u32::try_from(raw).unwrap_or(u32::MAX));
            let mut attr = MapUpdateAttr {
                map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
                key: (&raw const key) as u64,
                value: (&raw const value) as u64,
                ..MapUpdateAttr::default()
            };
            // SAFETY: the BPF_MAP_UPDATE_ELEM layout; key and value point at
            // live u32s for the call.
            unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map_err(bpf_err("BPF_MAP_UPDATE_ELEM"))?;
            queues.push(xsk);
        }
        Ok(XdpPort {
            _link: link,
            _prog: prog,
            _map: map,
            queues,
            epoll,
            next: 0,
            ifname: ifname.to_owned(),
            mode,
        })
    }

    /// Where the program runs.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// True if the driver shares the UMEM with the device (no copy).
    pub fn zero_copy(&self) -> bool {
        self.queues.first().is_some_and(|q| q.zero_copy)
    }

    /// Receive queues bound.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// True if frames leave through a send-only socket (`XDP_SHARED_UMEM`
    /// on queue 0); false if through queue 0's own.
    pub fn send_socket(&self) -> bool {
        self.queues.first().is_some_and(|q| q.sender.is_some())
    }

    /// How it runs, for logs and `plexus stats`: `native, copy, 2 queues,
    /// send socket`.
    pub fn summary(&self) -> String {
        format!(
            "{}, {}, {} queues{}",
            self.mode.name(),
            if self.zero_copy() { "zero-copy" } else { "copy" },
            self.queues(),
            if self.send_socket() { ", send socket" } else { "" }
        )
    }
}

/// Loads the redirect program for map `map_fd`.
fn load_program(map_fd: RawFd) -> Result<OwnedFd, XdpError> {
    let insns = program(map_fd);
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..11].copy_from_slice(b"plexus_xsk\0");
    // SAFETY: the BPF_PROG_LOAD layout; instructions, license and log buffer
    // are live for the call and their lengths are passed.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(own(fd)),
        Err(source) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).trim().replace('\n', "; ");
            Err(XdpError::Verifier { source, log })
        }
    }
}

/// Attaches `prog` to `ifindex` through a BPF link, natively if the driver
/// has XDP, else generically.
fn attach(prog: RawFd, ifindex: u32) -> Result<(OwnedFd, XdpMode), XdpError> {
    let mut last = None;
    for (flags, mode) in [
        (XDP_FLAGS_DRV_MODE, XdpMode::Native),
        (XDP_FLAGS_SKB_MODE, XdpMode::Generic),
    ] {
        let mut attr = LinkCreateAttr {
            prog_fd: u32::try_from(prog).unwrap_or(u32::MAX),
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        // SAFETY: the BPF_LINK_CREATE layout, no pointers.
        match unsafe { bpf(BPF_LINK_CREATE, &mut attr) } {
            Ok(fd) => return Ok((own(fd), mode)),
            Err(e) => last = Some(e),
        }
    }
    Err(XdpError::Bpf {
        cmd: "BPF_LINK_CREATE",
        source: last.unwrap_or_else(|| io::ErrorKind::Unsupported.into()),
    })
}

impl Port for XdpPort {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn offload(&self) -> bool {
        false
    }

    fn take_rx_overruns(&mut self) -> u64 {
        self.queues.iter_mut().map(Xsk::take_drops).sum()
    }

    fn recv(&mut self, bufs: &mut [FrameBuf]) -> io::Result<RecvResult> {
        let want = bufs.len().min(BATCH);
        let mut out = RecvResult::default();
        let n = self.queues.len();
        for k in 0..n {
            let q = (self.next + k) % n;
            let (frames, truncated) = self.queues[q].recv(&mut bufs[out.frames..want]);
            out.frames += frames;
            out.truncated += truncated;
            if out.frames == want {
                // Full: the next burst starts after the queue that filled it.
                self.next = (q + 1) % n;
                out.more = true;
                break;
            }
        }
        Ok(out)
    }

    fn send(&mut self, frames: &[&[u8]]) -> SendResult {
        // Queue 0 sends: one tx ring keeps the frames of a burst in order.
        match self.queues.first_mut() {
            Some(q) => q.send(frames),
            None => SendResult::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_reads_the_queue_and_redirects_through_the_map() {
        let p = program(7);
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!((p[3].regs, p[3].imm), (3, 2));
        assert_eq!((p[4].code, p[4].imm), (0x85, 51));
        assert_eq!(p[5].code, 0x95);
        assert_eq!(mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn umem_ranges_stay_inside_one_frame() {
        let umem = Umem::new(4).unwrap();
        let fs = FRAME_SIZE as u64;
        assert_eq!(umem.bytes(0, FRAME_SIZE).map(<[u8]>::len), Some(FRAME_SIZE));
        assert_eq!(umem.bytes(fs + 256, 1514).map(<[u8]>::len), Some(1514));
        // Across a frame's end, past the UMEM's end, an overflowing address.
        assert!(umem.bytes(fs + 256, FRAME_SIZE).is_none());
        assert!(umem.bytes(4 * fs, 1).is_none());
        assert!(umem.bytes(u64::MAX - 4, 64).is_none());
    }

    #[test]
    fn open_missing_interface_is_a_typed_error() {
        let e = XdpPort::open("plexus-nope0", 1500).unwrap_err();
        assert!(matches!(e, XdpError::NoInterface { .. }), "{e}");
        let e = XdpPort::open("lo", 9000).unwrap_err();
        assert!(matches!(e, XdpError::Mtu { mtu: 9000, max: 1778 }), "{e}");
    }
}
