//! Synchronous rtnetlink: links, addresses and routes, as netavark does it
//! (`netlink-packet-route` messages over a `netlink-sys` socket, no async runtime).
//!
//! A [`Netlink`] talks to the namespace it was opened in for its whole life.
//! [`Netlink::open_in`] opens it from a short-lived thread inside the target
//! namespace, so the daemon configures a container's interfaces without ever
//! moving one of its own threads.
//!
//! Protocol handling: every request carries a fresh sequence number; replies with
//! another sequence number (left over from an earlier, failed request) are skipped.
//! Requests that change state ask for an ACK (`NLM_F_ACK`) and finish at it; dumps
//! finish at `NLMSG_DONE` and are retried when the kernel flags them interrupted
//! (`NLM_F_DUMP_INTR`). A kernel error becomes [`SandboxError::Netlink`] carrying
//! the errno. Datagrams are read into one reusable buffer (32 KiB, the kernel's
//! largest dump chunk), peeked first so that a larger one grows it instead of being
//! truncated. `NETLINK_GET_STRICT_CHK` is set, so dumps are filtered by the kernel
//! (replies are filtered again here, for kernels without it).
//!
//! Rejected alternative: the `rtnetlink` crate is async (tokio) and its namespace
//! helper forks inside an async fn; the message types alone are what we need.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, LinkXdp,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::SandboxError;

/// Size of the receive buffer; the kernel's dump chunks are at most 32 KiB.
const RECV_BUF_LEN: usize = 32 * 1024;

/// How often an interrupted dump is retried before its result is taken as is.
const DUMP_RETRIES: usize = 3;

/// What `RTM_GETLINK` says of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// ifindex.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, if it has one of six bytes.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// IFF_UP is set.
    pub up: bool,
    /// The ifindex of its master (bridge, bond), if any.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND` (e.g. "veth", "tun", "bridge"), if any.
    pub kind: Option<String>,
    /// The id of the XDP program attached to it, if any (`IFLA_XDP_PROG_ID`).
    pub xdp_prog: Option<u32>,
}

/// A route of the main table (IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination; `0.0.0.0/0` for the default route.
    pub dst: Ipv4Net,
    /// The gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The output interface, if any.
    pub oif: Option<u32>,
}

/// A synchronous rtnetlink socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<Netlink, SandboxError> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(|e| SandboxError::Netlink {
            op: "socket",
            object: "NETLINK_ROUTE socket".to_owned(),
            source: e,
        })?;
        Netlink::setup(socket)
    }

    /// Takes a `NETLINK_ROUTE` socket opened elsewhere (in another namespace:
    /// it talks to the namespace it was created in).
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Netlink, SandboxError> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: `fd` is an owned, open NETLINK_ROUTE socket; ownership moves
        // to the `Socket`, which closes it once.
        let socket = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        Netlink::setup(socket)
    }

    fn setup(mut socket: Socket) -> Result<Netlink, SandboxError> {
        let err = |op, source| SandboxError::Netlink {
            op,
            object: "NETLINK_ROUTE socket".to_owned(),
            source,
        };
        socket.bind_auto().map_err(|e| err("bind", e))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(|e| err("connect", e))?;
        // Kernels before 4.20 do not know the option; they just do not filter dumps.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Netlink {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// Opens a socket in the namespace at `ns_path`, from a short-lived thread.
    pub fn open_in(ns_path: &Path) -> Result<Netlink, SandboxError> {
        crate::netns::run_in(ns_path, Netlink::open)?
    }

    /// All links.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, SandboxError> {
        let replies = self.dump(
            "RTM_GETLINK",
            "links",
            &RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_info(link)),
                _ => None,
            })
            .collect())
    }

    /// One link by name; [`SandboxError::NoSuchLink`] if absent.
    pub fn link(&mut self, name: &str) -> Result<LinkInfo, SandboxError> {
        check_link_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.request("RTM_GETLINK", name, RouteNetlinkMessage::GetLink(msg), 0) {
            Err(SandboxError::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                return Err(SandboxError::NoSuchLink(name.to_owned()));
            }
            r => r?,
        };
        replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_info(link)),
                _ => None,
            })
            .ok_or_else(|| SandboxError::NoSuchLink(name.to_owned()))
    }

    /// Creates a veth pair `name` <-> `peer`, both down, with `mtu` if given.
    pub fn create_veth(&mut self, name: &str, peer: &str, mtu: Option<u32>) -> Result<(), SandboxError> {
        check_link_name(name)?;
        check_link_name(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if let Some(mtu) = mtu {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.new_link(&format!("veth {name} peer {peer}"), msg)
    }

    /// Creates the link `msg` describes (`object` names it in errors).
    fn new_link(&mut self, object: &str, msg: LinkMessage) -> Result<(), SandboxError> {
        self.request(
            "RTM_NEWLINK",
            object,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Creates a kernel bridge `name` (down).
    pub fn create_bridge(&mut self, name: &str) -> Result<(), SandboxError> {
        check_link_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]));
        self.new_link(&format!("bridge {name}"), msg)
    }

    /// Enslaves a link to a bridge (`master`'s index).
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<(), SandboxError> {
        self.set_link(index, LinkAttribute::Controller(master))
    }

    /// Deletes a link (for a veth, both ends go).
    pub fn delete_link(&mut self, index: u32) -> Result<(), SandboxError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request("RTM_DELLINK", &ifindex(index), RouteNetlinkMessage::DelLink(msg), 0)
            .map(drop)
    }

    /// Moves a link into the namespace whose file is open as `ns`.
    pub fn set_netns(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), SandboxError> {
        self.set_link(index, LinkAttribute::NetNsFd(ns.as_raw_fd()))
    }

    /// Renames a link (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<(), SandboxError> {
        check_link_name(name)?;
        self.set_link(index, LinkAttribute::IfName(name.to_owned()))
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), SandboxError> {
        self.set_link(index, LinkAttribute::Address(mac.to_vec()))
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), SandboxError> {
        self.set_link(index, LinkAttribute::Mtu(mtu))
    }

    /// Sets IFF_UP or clears it.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), SandboxError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        msg.header.change_mask = LinkFlags::Up;
        self.request("RTM_SETLINK", &ifindex(index), RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    /// Adds an IPv4 address (`addr` with its prefix length) to a link.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Net) -> Result<(), SandboxError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(addr.addr())));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(addr.addr())));
        // As netavark does: a broadcast address where the subnet has one.
        if addr.prefix_len() <= 30 {
            msg.attributes.push(AddressAttribute::Broadcast(addr.broadcast()));
        }
        let object = format!("{addr} on {}", ifindex(index));
        self.request(
            "RTM_NEWADDR",
            &object,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 addresses of a link.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Ipv4Net>, SandboxError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        req.header.index = index;
        let replies = self.dump("RTM_GETADDR", &ifindex(index), &RouteNetlinkMessage::GetAddress(req))?;
        let mut out = Vec::new();
        for reply in &replies {
            let RouteNetlinkMessage::NewAddress(msg) = reply else {
                continue;
            };
            if msg.header.index != index || msg.header.family != AddressFamily::Inet {
                continue;
            }
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address)
                && let Ok(net) = Ipv4Net::new(ip, msg.header.prefix_len)
            {
                out.push(net);
            }
        }
        Ok(out)
    }

    /// Adds the default route via `gateway` (reachable through `index`).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> Result<(), SandboxError> {
        self.add_route(Ipv4Net::default(), Some(gateway), index)
    }

    /// Adds a route to `dst` through link `index`, via `gateway` if given
    /// (else on-link), to the main table; an existing one is `EEXIST`.
    pub fn add_route(&mut self, dst: Ipv4Net, gateway: Option<Ipv4Addr>, index: u32) -> Result<(), SandboxError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(dst.network())));
        }
        if let Some(gateway) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        let shown = if dst.prefix_len() == 0 {
            "default".to_owned()
        } else {
            dst.to_string()
        };
        let object = match gateway {
            Some(g) => format!("{shown} via {g} dev {}", ifindex(index)),
            None => format!("{shown} dev {}", ifindex(index)),
        };
        self.request(
            "RTM_NEWROUTE",
            &object,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, SandboxError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        req.header.table = RouteHeader::RT_TABLE_MAIN;
        let replies = match self.dump("RTM_GETROUTE", "main table", &RouteNetlinkMessage::GetRoute(req)) {
            // With strict checking, a namespace whose main table was never created
            // (no address, no route yet) answers ENOENT: no routes.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            r => r?,
        };
        let mut out = Vec::new();
        for reply in &replies {
            let RouteNetlinkMessage::NewRoute(msg) = reply else {
                continue;
            };
            if msg.header.address_family != AddressFamily::Inet {
                continue;
            }
            let table = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(msg.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            let mut oif = None;
            for attr in &msg.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Ok(dst) = Ipv4Net::new(dst, msg.header.destination_prefix_length) {
                out.push(RouteInfo { dst, gateway, oif });
            }
        }
        Ok(out)
    }

    /// An `RTM_SETLINK` on `index` carrying one attribute.
    fn set_link(&mut self, index: u32, attr: LinkAttribute) -> Result<(), SandboxError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attr);
        self.request("RTM_SETLINK", &ifindex(index), RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    /// A dump, retried while the kernel flags it interrupted.
    fn dump(
        &mut self,
        op: &'static str,
        object: &str,
        msg: &RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, SandboxError> {
        let mut attempt = 0;
        loop {
            let (replies, interrupted) = self.exchange(op, object, msg.clone(), NLM_F_DUMP)?;
            attempt += 1;
            if !interrupted || attempt > DUMP_RETRIES {
                return Ok(replies);
            }
        }
    }

    /// A request that changes or gets one object: `NLM_F_ACK` is added.
    fn request(
        &mut self,
        op: &'static str,
        object: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, SandboxError> {
        self.exchange(op, object, msg, flags | NLM_F_ACK)
            .map(|(replies, _)| replies)
    }

    /// Sends `msg` and collects the replies up to its ACK or `NLMSG_DONE`.
    /// Returns the replies and whether the kernel flagged the dump interrupted.
    fn exchange(
        &mut self,
        op: &'static str,
        object: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), SandboxError> {
        let err = |source: io::Error| SandboxError::Netlink {
            op,
            object: object.to_owned(),
            source,
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;

        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(err)?;

        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv_datagram().map_err(err)?;
            let mut offset = 0;
            while offset < self.buf.len() {
                let bytes = &self.buf[offset..];
                let len = NetlinkBuffer::new_checked(bytes)
                    .map(|b| b.length() as usize)
                    .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
                let Some(frame) = bytes.get(..len) else {
                    return Err(err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    )));
                };
                // Messages are padded to 4 bytes; `len` is at least a header (checked).
                offset += (len + 3) & !3;
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame)
                    .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
                if reply.header.sequence_number != seq {
                    continue; // left over from an earlier request
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok((replies, interrupted)),
                            Some(code) => Err(err(io::Error::from_raw_os_error(-code.get()))),
                        };
                    }
                    NetlinkPayload::Done(done) => {
                        return if done.code < 0 {
                            Err(err(io::Error::from_raw_os_error(-done.code)))
                        } else {
                            Ok((replies, interrupted))
                        };
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(err(io::Error::from_raw_os_error(libc::ENOBUFS)));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reads one datagram into `self.buf`, growing it if the datagram is larger.
    fn recv_datagram(&mut self) -> io::Result<()> {
        loop {
            self.buf.clear();
            let peeked = self.socket.recv(&mut self.buf, libc::MSG_PEEK | libc::MSG_TRUNC);
            let len = match peeked {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.buf.clear();
            if len > self.buf.capacity() {
                self.buf.reserve(len);
            }
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn ifindex(index: u32) -> String {
    format!("ifindex {index}")
}

fn check_link_name(name: &str) -> Result<(), SandboxError> {
    if valid_link_name(name) {
        Ok(())
    } else {
        Err(SandboxError::InvalidLinkName(name.to_owned()))
    }
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        kind: None,
        xdp_prog: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name.clone_from(name),
            LinkAttribute::Address(bytes) => info.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Controller(master) => info.master = Some(*master),
            LinkAttribute::LinkInfo(infos) => {
                info.kind = infos.iter().find_map(|i| match i {
                    NlLinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            LinkAttribute::Xdp(xdp) => {
                info.xdp_prog = xdp.iter().find_map(|x| match x {
                    LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    info
}

/// Checks a Linux interface name: 1..=15 bytes, no '/', ':' or whitespace.
pub fn valid_link_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names() {
        assert!(valid_link_name("eth0"));
        assert!(valid_link_name("veth0123456789a")); // 15 bytes
        assert!(!valid_link_name("veth0123456789ab")); // 16 bytes
        assert!(!valid_link_name(""));
        assert!(!valid_link_name("."));
        assert!(!valid_link_name(".."));
        assert!(!valid_link_name("a/b"));
        assert!(!valid_link_name("a:b"));
        assert!(!valid_link_name("a b"));
        assert!(!valid_link_name("a\tb"));
        assert!(!valid_link_name("a\0b"));
    }

    #[test]
    fn link_info_from_message() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        msg.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Controller(3),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Veth)]),
            LinkAttribute::Xdp(vec![LinkXdp::ProgId(42)]),
        ];
        let info = link_info(&msg);
        assert_eq!(
            info,
            LinkInfo {
                index: 7,
                name: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1400,
                up: true,
                master: Some(3),
                kind: Some("veth".into()),
                xdp_prog: Some(42),
            }
        );
        // A hardware address that is not six bytes is no MAC.
        msg.attributes = vec![LinkAttribute::Address(vec![0; 4])];
        assert_eq!(link_info(&msg).mac, None);
    }
}
