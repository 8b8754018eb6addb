//! Which of the sandbox's sockets is on the other end of a proxy
//! connection: one exact `sock_diag` query (`NETLINK_SOCK_DIAG`,
//! `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`) in the sandbox's network
//! namespace. The kernel answers it with the hash lookup it uses for an
//! arriving packet, so its cost does not grow with the number of sockets,
//! where reading `/proc/<pid>/net/tcp` walks every bucket of the host's
//! connection table (milliseconds per read on a large machine).
//!
//! The messages are built and read as bytes (`linux/inet_diag.h`); no
//! `unsafe` is needed.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, setsockopt, sockopt,
};
use nix::sys::time::TimeVal;

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `INET_DIAG_NOCOOKIE`: match whatever the socket's cookie.
const NO_COOKIE: u32 = u32::MAX;
/// `TCP_LISTEN` (linux/tcp_states.h): a lookup that falls through to a
/// listener found the wrong socket.
const TCP_LISTEN: u8 = 10;
/// The size of `struct nlmsghdr`.
const HEADER: usize = 16;
/// Offsets in the answer's `struct inet_diag_msg` (after the header).
const MSG_STATE: usize = 1;
const MSG_SPORT: usize = 4;
const MSG_DPORT: usize = 6;
const MSG_INODE: usize = 68;

/// A `NETLINK_SOCK_DIAG` socket bound to one network namespace (the one
/// its opener's thread was in).
#[derive(Debug)]
pub struct SocketTable {
    /// One query at a time: the answer is read right after the request.
    socket: Mutex<OwnedFd>,
}

impl SocketTable {
    /// Opens the table of the calling thread's network namespace.
    pub fn open() -> io::Result<SocketTable> {
        let socket = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        // The kernel answers an exact query before `send` returns; the
        // timeout only guards against an answer that never comes.
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::from(libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            }),
        )?;
        Ok(SocketTable {
            socket: Mutex::new(socket),
        })
    }

    /// The inode of the connected TCP socket whose own address is `own`
    /// and whose peer is `peer`; `None` when there is none.
    pub fn inode(&self, own: SocketAddr, peer: SocketAddr) -> io::Result<Option<u64>> {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let request = request(own, peer);
        nix::sys::socket::sendto(
            socket.as_raw_fd(),
            &request,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut answer = [0u8; 512];
        let n = nix::sys::socket::recv(socket.as_raw_fd(), &mut answer, MsgFlags::empty())
            .map_err(|errno| match errno {
                nix::errno::Errno::EAGAIN => io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not answer a socket lookup",
                ),
                errno => errno.into(),
            })?;
        parse(&answer[..n], own, peer)
    }
}

/// An exact `inet_diag_req_v2` for the socket `own` → `peer`.
fn request(own: SocketAddr, peer: SocketAddr) -> Vec<u8> {
    let (own_ip, peer_ip) = (canonical(own.ip()), canonical(peer.ip()));
    let family = match own_ip {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    let mut message = Vec::with_capacity(HEADER + 56);
    // struct nlmsghdr; the length is filled in below.
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    // struct inet_diag_req_v2
    message.push(family as u8);
    message.push(libc::IPPROTO_TCP as u8);
    message.push(0); // no extensions
    message.push(0);
    message.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
    // struct inet_diag_sockid: ports and addresses in network order.
    message.extend_from_slice(&own.port().to_be_bytes());
    message.extend_from_slice(&peer.port().to_be_bytes());
    message.extend_from_slice(&address_words(own_ip));
    message.extend_from_slice(&address_words(peer_ip));
    message.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    let length = message.len() as u32;
    message[..4].copy_from_slice(&length.to_ne_bytes());
    message
}

/// An address as the four 32-bit words of `idiag_src`/`idiag_dst`.
fn address_words(ip: IpAddr) -> [u8; 16] {
    let mut words = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => words[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => words.copy_from_slice(&v6.octets()),
    }
    words
}

/// IPv4-mapped IPv6 as its IPv4 address: the kernel finds a dual-stack
/// socket connected to an IPv4 peer by its IPv4 addresses.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The inode in an answer to [`request`]; `None` for "no such socket" or
/// an answer about another socket (a listener, a closed one).
fn parse(answer: &[u8], own: SocketAddr, peer: SocketAddr) -> io::Result<Option<u64>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag answer");
    let kind = u16::from_ne_bytes(
        answer
            .get(4..6)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let body = answer.get(HEADER..).ok_or_else(short)?;
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes(
            body.get(..4)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?,
        );
        return match -code {
            0 | libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected sock_diag answer type {kind}"),
        ));
    }
    let field = |at: usize| -> io::Result<[u8; 2]> {
        body.get(at..at + 2)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())
    };
    let state = *body.get(MSG_STATE).ok_or_else(short)?;
    let sport = u16::from_be_bytes(field(MSG_SPORT)?);
    let dport = u16::from_be_bytes(field(MSG_DPORT)?);
    let inode = u32::from_ne_bytes(
        body.get(MSG_INODE..MSG_INODE + 4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let same = state != TCP_LISTEN && sport == own.port() && dport == peer.port();
    Ok((same && inode != 0).then_some(u64::from(inode)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn inode_of(stream: &std::net::TcpStream) -> u64 {
        let fd = stream.as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    #[test]
    fn finds_the_client_socket_of_a_loopback_connection() {
        let table = SocketTable::open().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        // The client's socket: its own address is the server's peer.
        assert_eq!(table.inode(peer, local).unwrap(), Some(inode_of(&client)));
        // And the server's: the other way round.
        assert_eq!(table.inode(local, peer).unwrap(), Some(inode_of(&server)));
        // A 4-tuple nobody has.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(table.inode(nobody, local).unwrap(), None);
    }

    #[test]
    fn finds_a_dual_stack_socket_by_its_ipv4_addresses() {
        let table = SocketTable::open().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
        let client = std::net::TcpStream::connect(mapped).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(
            table.inode(peer, server.local_addr().unwrap()).unwrap(),
            Some(inode_of(&client))
        );
    }
}
