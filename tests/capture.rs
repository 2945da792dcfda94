//! `plexus capture`: the frames crossing a network's ports, both
//! directions, as a pcap stream that tcpdump and tshark read as it is.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use common::net::TestNs;
use common::{Daemon, TestEnv, ns_path, peers};

/// A daemon with n1 = {c1, c2}, and a capture of 48 frames of twenty pings
/// between them written to a file; the env, the daemon and the file.
fn capture_pings() -> (TestEnv, TestNs, Daemon, std::path::PathBuf) {
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &[]);
    d.ok(&["network", "create", "--subnet", "10.66.0.0/24", "n1"]);
    d.ok(&["run", "--network", "n1", "c1"]);
    d.ok(&["run", "--network", "n1", "c2"]);
    let file = env.state_dir.join("n1.pcap");
    let mut cap = d
        .cmd(&[
            "capture",
            "--network",
            "n1",
            "-w",
            file.to_str().unwrap(),
            "--count",
            "48",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(cap.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("capturing c1, c2"), "{first}");
    // Twenty pings: each is a request and a reply, each seen leaving one port
    // and entering the other (plus ARP): 80 frames, more than 48 even with
    // the sandboxes' own IPv6 listener reports landing among the first ones.
    assert!(peers::ping(&ns_path(&env.netns("c1")), Ipv4Addr::new(10, 66, 0, 3), 20));
    let status = cap.wait().unwrap();
    let mut rest = String::new();
    for line in err.lines() {
        rest.push_str(&line.unwrap());
    }
    assert!(status.success(), "{rest}");
    assert!(rest.contains("48 frames captured, 0 dropped"), "{rest}");

    (env, host, d, file)
}

#[test]
#[cfg_attr(not(all(px_root, px_tcpdump)), ignore = "needs root, /dev/net/tun and tcpdump")]
fn a_capture_of_a_ping_reads_back_in_tcpdump() {
    let (_env, _host, d, file) = capture_pings();
    let out = Command::new("tcpdump").args(["-nr"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 48, "{text}");
    let requests = text
        .lines()
        .filter(|l| l.contains("10.66.0.2 > 10.66.0.3: ICMP echo request"))
        .count();
    let replies = text
        .lines()
        .filter(|l| l.contains("10.66.0.3 > 10.66.0.2: ICMP echo reply"))
        .count();
    // Each crossing is written twice: as it enters the switch and as it leaves.
    assert!(requests >= 4 && replies >= 4, "{text}");
    // An endpoint that does not exist is a clear error.
    let e = d.fails(1, &["capture", "--endpoint", "ghost", "--count", "1"]);
    assert!(e.contains("ghost"), "{e}");
}

#[test]
#[cfg_attr(not(all(px_root, px_tshark)), ignore = "needs root, /dev/net/tun and tshark")]
fn a_capture_of_a_ping_reads_back_in_tshark() {
    let (_env, _host, _d, file) = capture_pings();
    // Wireshark's reader agrees.
    let out = Command::new("tshark").args(["-n", "-r"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 48, "{text}");
    assert!(
        text.contains("Echo (ping) request") && text.contains("Echo (ping) reply"),
        "{text}"
    );
}

#[test]
#[cfg_attr(not(px_root), ignore = "needs root and /dev/net/tun")]
fn a_reader_that_never_reads_costs_drops_not_the_transfer() {
    use std::io::Write;
    let env = TestEnv::new();
    let host = TestNs::new(&env.netns("H"));
    let d = Daemon::start_in(&env, Some(&host.name), &[]);
    d.ok(&["network", "create", "--subnet", "10.67.0.0/24", "n1"]);
    d.ok(&["run", "--network", "n1", "c1"]);
    d.ok(&["run", "--network", "n1", "c2"]);
    // A capture client that reads the answer line and nothing after it.
    let mut stuck = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    stuck.write_all(b"{\"op\":\"capture\",\"network\":\"n1\"}\n").unwrap();
    let mut first = String::new();
    BufReader::new(stuck.try_clone().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    // 30 MB through the switch while the capture cannot keep up.
    let c2 = ns_path(&env.netns("c2"));
    let server = peers::tcp_server(&c2, Ipv4Addr::UNSPECIFIED, &[9000]);
    let put = peers::tcp_client(
        &ns_path(&env.netns("c1")),
        std::net::SocketAddrV4::new(Ipv4Addr::new(10, 67, 0, 3), 9000),
        peers::Cmd::Put(30_000_000),
        None,
    );
    drop(server);
    assert!(put.intact, "the transfer under a stuck capture: {put:?}");
    // The switch kept forwarding: the stuck reader cost dropped copies,
    // which the daemon reports when the capture ends.
    drop(stuck);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        if let Some(l) = d
            .log()
            .lines()
            .find(|l| l.contains("capture ended:"))
            .map(str::to_owned)
        {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no end of capture in the log:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let dropped: u64 = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(dropped > 0, "{line}");
}
