//! Short-connection rate: connects to `ADDR:PORT` over and over for `SECS`
//! seconds from `THREADS` threads (default 1), each connection read until
//! EOF and then closed, and prints the rate. The server is expected to speak
//! first and close (as `addr_echo` does), so the client never holds
//! TIME_WAIT. `bench/docker.sh` runs it against published ports.
//!
//! Usage: `conn_rate ADDR:PORT SECS [THREADS]`
//!
//! Prints one line: `CONNS/s conns=N errors=E timeouts=T bytes_min=B`, where
//! an error is a failed connect or a read error (reset), a timeout a connect
//! or read that took more than 2 s, and `bytes_min` the fewest bytes any
//! successful connection read (0 means a connection closed without the
//! server's line). Exits 1 if no connection succeeded.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Tally {
    conns: u64,
    errors: u64,
    timeouts: u64,
    bytes_min: Option<usize>,
    first_error: Option<String>,
}

fn one(addr: &SocketAddr, t: &mut Tally) {
    let timed_out = |e: &std::io::Error| matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock);
    let mut conn = match TcpStream::connect_timeout(addr, TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            if timed_out(&e) {
                t.timeouts += 1;
            } else {
                t.errors += 1;
            }
            t.first_error.get_or_insert_with(|| format!("connect: {e}"));
            return;
        }
    };
    let _ = conn.set_read_timeout(Some(TIMEOUT));
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                if timed_out(&e) {
                    t.timeouts += 1;
                } else {
                    t.errors += 1;
                }
                t.first_error.get_or_insert_with(|| format!("read: {e}"));
                return;
            }
        }
    }
    t.conns += 1;
    t.bytes_min = Some(t.bytes_min.map_or(got, |m| m.min(got)));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: conn_rate ADDR:PORT SECS [THREADS]");
        std::process::exit(2);
    };
    let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage());
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
    let threads: usize = match args.get(3) {
        Some(n) => n.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| usage()),
        None => 1,
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut t = Tally::default();
                    while Instant::now() < end {
                        one(&addr, &mut t);
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.conns += t.conns;
        all.errors += t.errors;
        all.timeouts += t.timeouts;
        if let Some(b) = t.bytes_min {
            all.bytes_min = Some(all.bytes_min.map_or(b, |m| m.min(b)));
        }
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = all.conns as f64 / elapsed;
    println!(
        "{rate:.0}/s conns={} errors={} timeouts={} bytes_min={}",
        all.conns,
        all.errors,
        all.timeouts,
        all.bytes_min.unwrap_or(0)
    );
    if let Some(e) = all.first_error {
        eprintln!("conn_rate: first failure: {e}");
    }
    if all.conns == 0 {
        std::process::exit(1);
    }
}
