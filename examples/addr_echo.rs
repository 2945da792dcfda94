//! A server that answers every client with the address it came from: one
//! line `ADDRESS:PORT` to each TCP connection (then it closes) and to each
//! UDP datagram. The end-to-end tests run it inside containers (copied into
//! the image with its libraries) to see whether a published port kept the
//! client's address.
//!
//! Usage: `addr_echo PORT` — TCP and UDP on `0.0.0.0:PORT`.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: addr_echo PORT");
        std::process::exit(2);
    });
    let udp = UdpSocket::bind(("0.0.0.0", port))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(format!("{from}\n").as_bytes(), from);
        }
    });
    let tcp = TcpListener::bind(("0.0.0.0", port))?;
    for conn in tcp.incoming() {
        let Ok(mut conn) = conn else { continue };
        if let Ok(from) = conn.peer_addr() {
            let _ = conn.write_all(format!("{from}\n").as_bytes());
        }
    }
    Ok(())
}
