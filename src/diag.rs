//! Looking into a network from a sandbox with nothing but sockets: `ping`'s
//! echo requests, without `ping` installed.
//!
//! Role: the demo and the tests need to know whether one sandbox reaches
//! another, and how fast. A raw ICMP socket opened inside the sandbox
//! ([`plexus_sandbox::sock`]) is as real as iputils' `ping`: the kernel of the
//! sandbox sends the request and routes the reply back to it, through the
//! Plexus switch. [`ping`] sends the requests, matches the replies and prints
//! what `ping` would print ([`PingReply`] and [`PingSummary`] display as its
//! lines), so the demo still teaches.
//!
//! Decisions: a raw socket (`SOCK_RAW`, `IPPROTO_ICMP`), because a new network
//! namespace allows no unprivileged ping sockets (`ping_group_range` is
//! `1 0`) and the socket's creator is root of the sandbox in both modes. Raw
//! sockets see every ICMP message of the namespace: replies count only when
//! they come from the pinged address with our identifier and a sequence we
//! sent. Packets are built and parsed with the switch's wire views.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockProtocol, SockType, SockaddrIn, recvmsg, sendto, setsockopt,
    sockopt,
};
use plexus_sandbox::sock::{self, NsKey};
use plexus_switch::wire::{ChecksumMode, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr};

/// How to ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingOptions {
    /// Echo requests to send.
    pub count: u16,
    /// Time between requests.
    pub interval: Duration,
    /// How long to wait for replies after the last request.
    pub wait: Duration,
    /// Bytes of data in each request (`ping -s`; 56 gives 64-byte ICMP messages).
    pub payload: usize,
}

impl Default for PingOptions {
    /// Three requests 200 ms apart, up to 2 s for the last reply, 56 bytes.
    fn default() -> Self {
        PingOptions {
            count: 3,
            interval: Duration::from_millis(200),
            wait: Duration::from_secs(2),
            payload: 56,
        }
    }
}

/// One echo reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// Who answered.
    pub from: Ipv4Addr,
    /// The request's sequence number (from 1).
    pub seq: u16,
    /// The reply's TTL.
    pub ttl: u8,
    /// Bytes of the ICMP message.
    pub bytes: usize,
    /// Round-trip time.
    pub rtt: Duration,
}

impl fmt::Display for PingReply {
    /// `64 bytes from 10.0.0.3: icmp_seq=1 ttl=64 time=0.052 ms`, as `ping` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes from {}: icmp_seq={} ttl={} time={:.3} ms",
            self.bytes,
            self.from,
            self.seq,
            self.ttl,
            ms(self.rtt)
        )
    }
}

/// What a whole ping run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSummary {
    /// The pinged address.
    pub to: Ipv4Addr,
    /// Requests sent.
    pub transmitted: u16,
    /// Distinct requests answered.
    pub received: u16,
    /// Round-trip times of the replies, in arrival order.
    pub rtts: Vec<Duration>,
    /// From the first request to the last reply (or the last request).
    pub elapsed: Duration,
}

impl PingSummary {
    /// Lost requests, in percent.
    pub fn loss_percent(&self) -> u32 {
        if self.transmitted == 0 {
            return 0;
        }
        100 - u32::from(self.received) * 100 / u32::from(self.transmitted)
    }

    /// True if every request was answered.
    pub fn all_answered(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

impl fmt::Display for PingSummary {
    /// `ping`'s closing lines: the statistics heading, the counts and, when
    /// something came back, min/avg/max/mdev of the round-trip times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- {} ping statistics ---", self.to)?;
        write!(
            f,
            "{} packets transmitted, {} received, {}% packet loss, time {}ms",
            self.transmitted,
            self.received,
            self.loss_percent(),
            self.elapsed.as_millis()
        )?;
        if self.rtts.is_empty() {
            return Ok(());
        }
        let v: Vec<f64> = self.rtts.iter().map(|d| ms(*d)).collect();
        #[allow(clippy::cast_precision_loss)] // at most 65535 samples
        let n = v.len() as f64;
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        let avg = v.iter().sum::<f64>() / n;
        let mdev = (v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / n).sqrt();
        write!(f, "\nrtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A raw ICMP socket inside the namespace of `key` (root of the sandbox makes it).
pub fn icmp_socket(key: NsKey<'_>) -> Result<OwnedFd, plexus_sandbox::SandboxError> {
    sock::socket(key, AddressFamily::Inet, SockType::Raw, Some(SockProtocol::Icmp))
}

/// Pings `to` through `socket` (a raw ICMP socket, [`icmp_socket`]) and calls
/// `on_reply` for each answered request as it arrives. Errors are the
/// socket's (a send that fails, such as an unreachable network, ends the run).
pub fn ping(
    socket: &OwnedFd,
    to: Ipv4Addr,
    opts: PingOptions,
    mut on_reply: impl FnMut(&PingReply),
) -> io::Result<PingSummary> {
    let ident = ident();
    let data: Vec<u8> = (0..=u8::MAX).cycle().take(opts.payload).collect();
    let dst = SockaddrIn::from(SocketAddrV4::new(to, 0));
    let mut sent_at: Vec<Option<(Instant, SystemTime)>> = vec![None; usize::from(opts.count) + 1];
    // A reply's time is the kernel's receive timestamp where it gives one
    // (as ping(8)), so the RTT excludes this process's own wake-up.
    let _ = setsockopt(socket, sockopt::ReceiveTimestampns, &true);
    let mut summary = PingSummary {
        to,
        transmitted: 0,
        received: 0,
        rtts: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut request = vec![0u8; 8 + opts.payload];
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut last_reply = start;
    for seq in 1..=opts.count {
        let echo = Icmpv4Repr::EchoRequest {
            ident,
            seq_no: seq,
            data: &data,
        };
        echo.emit(&mut Icmpv4Packet::new_unchecked(&mut request[..]));
        sent_at[usize::from(seq)] = Some((Instant::now(), SystemTime::now()));
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            &request,
            &dst,
            MsgFlags::empty(),
        )?;
        summary.transmitted = seq;
        let until = if seq == opts.count {
            Instant::now() + opts.wait
        } else {
            Instant::now() + opts.interval
        };
        // Read replies until the next request is due (or, after the last, until
        // every request is answered or the wait is over).
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if seq == opts.count && summary.received == opts.count {
                break;
            }
            if !readable(socket, left)? {
                break;
            }
            let (n, received) = recv_stamped(socket, &mut buf)?;
            let Some((from, ttl, bytes, seq_no)) = echo_reply(&buf[..n], ident) else {
                continue;
            };
            let slot = sent_at.get_mut(usize::from(seq_no)).and_then(Option::take);
            let Some((sent, sent_wall)) = slot.filter(|_| from == to) else {
                continue; // not ours, or a duplicate
            };
            let now = Instant::now();
            let rtt = received
                .and_then(|r| r.duration_since(sent_wall).ok())
                .unwrap_or(now - sent);
            let reply = PingReply {
                from,
                seq: seq_no,
                ttl,
                bytes,
                rtt,
            };
            summary.received += 1;
            summary.rtts.push(reply.rtt);
            last_reply = now;
            on_reply(&reply);
        }
    }
    summary.elapsed = if summary.received == summary.transmitted {
        last_reply - start
    } else {
        start.elapsed().saturating_sub(opts.wait)
    };
    Ok(summary)
}

/// Reads one datagram without waiting: its length and the kernel's receive
/// time, if the socket gives it.
fn recv_stamped(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(socket),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => {
                let since = Duration::new(u64::try_from(ts.tv_sec()).ok()?, u32::try_from(ts.tv_nsec()).ok()?);
                SystemTime::UNIX_EPOCH.checked_add(since)
            }
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

/// Waits up to `left` for `socket` to become readable.
fn readable(socket: &OwnedFd, left: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// (source, TTL, ICMP bytes, sequence) of an echo reply with identifier
/// `ident` in a raw socket's datagram (IPv4 header first); `None` for
/// anything else.
fn echo_reply(datagram: &[u8], ident: u16) -> Option<(Ipv4Addr, u8, usize, u16)> {
    let ip = Ipv4Packet::new_checked(datagram).ok()?;
    let header = Ipv4Repr::parse(&ip).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.into_payload()).ok()?;
    match Icmpv4Repr::parse(&icmp, ChecksumMode::Verify).ok()? {
        Icmpv4Repr::EchoReply {
            ident: id,
            seq_no,
            data,
        } if id == ident => Some((header.src_addr, header.ttl, 8 + data.len(), seq_no)),
        _ => None,
    }
}

/// An identifier for this run's requests (the process id mixed with the
/// clock, so concurrent pingers in one namespace tell their replies apart).
fn ident() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let [a, b, c, d] = (nanos ^ std::process::id().rotate_left(16)).to_le_bytes();
    u16::from_le_bytes([a ^ c, b ^ d])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(ident: u16, seq_no: u16, src: Ipv4Addr) -> Vec<u8> {
        let data = [7u8; 56];
        let icmp = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data: &data,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: plexus_switch::wire::IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 61,
        };
        let mut buf = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut packet);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
        buf
    }

    #[test]
    fn replies_are_matched_by_identifier_and_parsed() {
        let from = Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(echo_reply(&reply(9, 2, from), 9), Some((from, 61, 64, 2)));
        assert_eq!(echo_reply(&reply(8, 2, from), 9), None, "another pinger's reply");
        let mut bad = reply(9, 2, from);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(echo_reply(&bad, 9), None, "a bad checksum");
        assert_eq!(echo_reply(&bad[..10], 9), None, "truncated");
    }

    #[test]
    fn lines_read_as_pings() {
        let r = PingReply {
            from: Ipv4Addr::new(10, 0, 0, 3),
            seq: 1,
            ttl: 64,
            bytes: 64,
            rtt: Duration::from_micros(52),
        };
        assert_eq!(r.to_string(), "64 bytes from 10.0.0.3: icmp_seq=1 ttl=64 time=0.052 ms");
        let s = PingSummary {
            to: Ipv4Addr::new(10, 0, 0, 3),
            transmitted: 4,
            received: 3,
            rtts: vec![
                Duration::from_micros(100),
                Duration::from_micros(200),
                Duration::from_micros(300),
            ],
            elapsed: Duration::from_millis(602),
        };
        assert_eq!(
            s.to_string(),
            "--- 10.0.0.3 ping statistics ---\n4 packets transmitted, 3 received, 25% packet loss, time 602ms\n\
             rtt min/avg/max/mdev = 0.100/0.200/0.300/0.082 ms"
        );
        assert!(!s.all_answered());
        let none = PingSummary {
            received: 0,
            rtts: vec![],
            ..s
        };
        assert!(none.to_string().ends_with("100% packet loss, time 602ms"), "{none}");
    }
}
