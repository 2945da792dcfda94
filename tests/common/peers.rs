//! Clients and servers inside namespaces, in this process: ping through a raw
//! ICMP socket, UDP and TCP peers through sockets opened in the namespace
//! ([`plexus_sandbox::sock`]). A socket made in a namespace is as real as a
//! program run there (`ping`, `python3`, `iperf3`): the kernel of that
//! namespace sends and receives, through the Plexus switch.
//!
//! Servers run on threads and stop (and are joined) when dropped, also after
//! a failed assertion.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use plexus::diag::{self, PingOptions, PingSummary};
use plexus_sandbox::sock::{self, NsKey};

/// Pings `to` from namespace `ns` (`count` requests 200 ms apart, 2 s for
/// the last reply). A send that fails (an unreachable network) counts as no
/// answer.
pub fn ping_summary(ns: &Path, to: Ipv4Addr, count: u16) -> PingSummary {
    let socket = diag::icmp_socket(NsKey::netns(ns)).unwrap_or_else(|e| panic!("ICMP socket in {}: {e}", ns.display()));
    let opts = PingOptions {
        count,
        ..PingOptions::default()
    };
    match diag::ping(&socket, to, opts, |_| {}) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ping {to} from {}: {e}", ns.display());
            PingSummary {
                to,
                transmitted: count,
                received: 0,
                rtts: vec![],
                elapsed: Duration::ZERO,
            }
        }
    }
}

/// True if every one of `count` pings from `ns` to `to` was answered.
pub fn ping(ns: &Path, to: Ipv4Addr, count: u16) -> bool {
    ping_summary(ns, to, count).all_answered()
}

/// A server thread, stopped and joined on drop.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn spawn(stop: Arc<AtomicBool>, threads: Vec<JoinHandle<()>>) -> Server {
        Server { stop, threads }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const POLL: Duration = Duration::from_millis(50);

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("IPv6 peer {a}"),
    }
}

/// A UDP server in namespace `ns` on each of `ports` (bound to `ip`) that
/// answers every datagram with `reply(its port, the client, the data)`.
pub fn udp_server(ns: &Path, ip: Ipv4Addr, ports: &[u16], reply: fn(u16, SocketAddrV4, &[u8]) -> Vec<u8>) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = ports
        .iter()
        .map(|&port| {
            let s = sock::udp_socket(NsKey::netns(ns), SocketAddrV4::new(ip, port))
                .unwrap_or_else(|e| panic!("UDP {ip}:{port} in {}: {e}", ns.display()));
            s.set_read_timeout(Some(POLL)).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&reply(port, v4(from), &buf[..n]), from);
                    }
                }
            })
        })
        .collect();
    Server::spawn(stop, threads)
}

/// A UDP echo server: answers `IP:PORT ` of the client, then the data.
pub fn udp_echo(ns: &Path, ip: Ipv4Addr, port: u16) -> Server {
    udp_server(ns, ip, &[port], |_, from, data| {
        let mut out = format!("{from} ").into_bytes();
        out.extend_from_slice(data);
        out
    })
}

/// A UDP server answering `port=P from=IP:PORT` on each of `ports`.
pub fn udp_tagged(ns: &Path, ports: &[u16]) -> Server {
    udp_server(ns, Ipv4Addr::UNSPECIFIED, ports, |port, from, _| {
        format!("port={port} from={from}").into_bytes()
    })
}

/// Sends `msg` from namespace `ns` (local port `from_port`, 0 for any) to
/// `to` and returns the answer, or "" after 2 s.
pub fn udp_ask(ns: &Path, to: SocketAddrV4, from_port: u16, msg: &str) -> String {
    let s = sock::udp_socket(NsKey::netns(ns), SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, from_port))
        .unwrap_or_else(|e| panic!("UDP socket in {}: {e}", ns.display()));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.send_to(msg.as_bytes(), to).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 65536];
    match s.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// A connected UDP exchange from `ns` to `to`: `"answered"`, `"refused"`
/// (an ICMP port unreachable came back) or `"timeout"`.
pub fn udp_connected(ns: &Path, to: SocketAddrV4) -> &'static str {
    let s: UdpSocket = sock::udp_socket(NsKey::netns(ns), SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.connect(to).unwrap();
    let _ = s.send(b"x");
    let mut buf = [0u8; 100];
    match s.recv(&mut buf) {
        Ok(_) => "answered",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(_) => "timeout",
    }
}

/// The bytes a TCP peer sends and expects: byte `i` is a hash of `i`, so
/// corruption, loss, duplication and reordering all show.
#[derive(Debug)]
pub struct Pattern;

impl Pattern {
    fn byte(i: u64) -> u8 {
        (i ^ (i >> 7)).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()[0]
    }

    fn fill(buf: &mut [u8], from: u64) {
        for (b, i) in buf.iter_mut().zip(from..) {
            *b = Pattern::byte(i);
        }
    }

    /// Writes the first `n` bytes of the pattern to `w`.
    pub fn send(w: &mut impl Write, n: usize) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        while sent < n {
            let k = (n - sent).min(buf.len());
            Pattern::fill(&mut buf[..k], sent as u64);
            w.write_all(&buf[..k])?;
            sent += k;
        }
        Ok(())
    }

    /// Reads `r` up to `limit` bytes (or to its end) and returns (whether
    /// every byte was the pattern's, how many were read).
    pub fn check(r: &mut impl Read, limit: Option<usize>) -> (bool, usize) {
        let (mut got, mut want) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
        let mut total = 0usize;
        let mut same = true;
        loop {
            let room = limit.map_or(got.len(), |n| (n - total).min(got.len()));
            if room == 0 {
                break;
            }
            let k = match r.read(&mut got[..room]) {
                Ok(0) | Err(_) => break,
                Ok(k) => k,
            };
            Pattern::fill(&mut want[..k], total as u64);
            same &= got[..k] == want[..k];
            total += k;
        }
        (same, total)
    }
}

/// A TCP test server in namespace `ns`, listening on `ip` at each of
/// `ports`. Each connection gets `from=IP:PORT port=P` (the client as the
/// server sees it, and the port it came in on) and then serves one command:
/// `GET N` (sends N bytes of [`Pattern`] and closes) or `PUT N` (reads N
/// bytes and answers `ok` if they were the pattern's, else `bad`).
pub fn tcp_server(ns: &Path, ip: Ipv4Addr, ports: &[u16]) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = ports
        .iter()
        .map(|&port| {
            let l: TcpListener = sock::tcp_listener(NsKey::netns(ns), SocketAddrV4::new(ip, port))
                .unwrap_or_else(|e| panic!("listen {ip}:{port} in {}: {e}", ns.display()));
            l.set_nonblocking(true).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, from)) => {
                            std::thread::spawn(move || serve(c, v4(from), port));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    Server::spawn(stop, threads)
}

fn serve(c: TcpStream, from: SocketAddrV4, port: u16) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = c.try_clone().unwrap();
    if writeln!(w, "from={from} port={port}").is_err() {
        return;
    }
    let mut r = BufReader::new(c);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let (cmd, n) = (words.next(), words.next().and_then(|n| n.parse::<usize>().ok()));
    match (cmd, n) {
        (Some("GET"), Some(n)) => {
            let _ = Pattern::send(&mut w, n);
            let _ = w.shutdown(Shutdown::Write);
            let _ = r.read(&mut [0u8; 1]);
        }
        (Some("PUT"), Some(n)) => {
            let (same, got) = Pattern::check(&mut r, Some(n));
            let _ = writeln!(w, "{}", if same && got == n { "ok" } else { "bad" });
        }
        _ => {}
    }
}

/// What a TCP client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The server's first line (`from=… port=…`), or `refused`, `error ERRNO`
    /// (the connect's), `timeout`, or `closed` (the server hung up first).
    pub first: String,
    /// The transfer went through whole and unchanged.
    pub intact: bool,
}

/// A command for [`tcp_client`].
#[derive(Debug, Clone, Copy)]
pub enum Cmd {
    /// Download this many bytes.
    Get(usize),
    /// Upload this many bytes.
    Put(usize),
}

/// Connects from namespace `ns` to `to` (from local port `from_port` if
/// given), runs `cmd` against a [`tcp_server`] and says what happened.
pub fn tcp_client(ns: &Path, to: SocketAddrV4, cmd: Cmd, from_port: Option<u16>) -> Exchange {
    tcp_client_key(NsKey::netns(ns), to, cmd, from_port)
}

/// [`tcp_client`] for any namespace key (a rootless sandbox's too).
pub fn tcp_client_key(key: NsKey<'_>, to: SocketAddrV4, cmd: Cmd, from_port: Option<u16>) -> Exchange {
    let from = from_port.map(|p| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p));
    let c = match sock::tcp_connect(key, to, from, Duration::from_secs(20)) {
        Ok(c) => c,
        Err(e) => {
            let first = match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => "refused".to_owned(),
                Some(n) => format!("error {n}"),
                None if e.to_string().contains("timed out") => "timeout".to_owned(),
                None => format!("error {e}"),
            };
            return Exchange { first, intact: false };
        }
    };
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    let mut first = String::new();
    match r.read_line(&mut first) {
        Ok(0) => {
            return Exchange {
                first: "closed".into(),
                intact: false,
            };
        }
        Ok(_) => {}
        Err(e) => {
            return Exchange {
                first: format!("error {e}"),
                intact: false,
            };
        }
    }
    let first = first.trim().to_owned();
    let intact = match cmd {
        Cmd::Get(n) => {
            // The whole stream, not a prefix of it.
            writeln!(w, "GET {n}").is_ok() && Pattern::check(&mut r, None) == (true, n)
        }
        Cmd::Put(n) => {
            let sent = writeln!(w, "PUT {n}").is_ok() && Pattern::send(&mut w, n).is_ok();
            let mut answer = String::new();
            sent && r.read_line(&mut answer).is_ok() && answer.trim() == "ok"
        }
    };
    Exchange { first, intact }
}
