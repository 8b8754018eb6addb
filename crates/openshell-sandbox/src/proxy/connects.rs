//! Who connected to the proxy, recorded at `connect(2)` itself.
//!
//! Every process of the sandbox runs under a seccomp filter that hands its
//! `connect` calls to the supervisor (a user-notification listener per
//! launch or exec, [`crate::isolation::seccomp::connect_notify_program`]).
//! For a connect to the proxy, the supervisor takes a duplicate of the
//! caller's socket (`pidfd_getfd`), binds it if the caller did not, records
//! the local port with the caller's identity, and makes the connection
//! itself to the address it read: the kernel never re-reads the caller's
//! memory, so a thread rewriting the address after the check gains
//! nothing. Any other connect continues as the caller asked.
//!
//! The proxy then takes the caller from the record of the connection's
//! socket, provided the process that connected still holds it
//! ([`crate::proxy::caller::Identifier::identify`]): a socket opened by
//! python and handed to curl over `SCM_RIGHTS` is python's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::isolation::PROXY_ADDR;
use crate::isolation::sys::{self, NotifAnswer};
use crate::proxy::caller::{Connect, Identifier};

/// The agent's side: sends the filter's `listener` to the supervisor over
/// `channel` (a socket inherited for that alone).
pub fn send_listener(channel: &OwnedFd, listener: &OwnedFd) -> std::io::Result<()> {
    let fds = [listener.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let byte = [std::io::IoSlice::new(b"L")];
    nix::sys::socket::sendmsg::<()>(
        channel.as_raw_fd(),
        &byte,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// The supervisor's side: the listener sent over `channel`, or `None` when
/// the other side closed without sending one (a launch that failed first).
/// `wait`: block until then; else return at once when nothing is there.
pub fn receive_listener(channel: &OwnedFd, wait: bool) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let flags = if wait {
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC
    } else {
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC | nix::sys::socket::MsgFlags::MSG_DONTWAIT
    };
    let message = match nix::sys::socket::recvmsg::<()>(
        channel.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        flags,
    ) {
        Ok(message) => message,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(errno) => return Err(errno.into()),
    };
    for cmsg in message.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            return sys::take_inherited_fd(*fd).map(Some);
        }
    }
    Ok(None)
}

/// A connected pair for [`send_listener`]/[`receive_listener`]: both ends
/// close-on-exec (the child's is moved into place for its exec).
pub fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Serves the listener sent over `channel` on a thread of its own (once it
/// arrives; nothing when the other side closes first).
pub fn serve_from(channel: OwnedFd, identifier: Arc<Identifier>) {
    let spawned = std::thread::Builder::new()
        .name("connect-filter".into())
        .spawn(move || match receive_listener(&channel, true) {
            Ok(Some(listener)) => {
                drop(channel);
                serve(listener, identifier);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "receiving a connect filter listener"),
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start a connect filter thread");
    }
}

/// Answers `listener`'s notifications until no process uses its filter.
/// Blocking: run it on a thread of its own.
pub fn serve(listener: OwnedFd, identifier: Arc<Identifier>) {
    if let Err(error) = sys::notif_sync_wakeup(listener.as_fd()) {
        tracing::debug!(%error, "the kernel cannot wake connect callers on the answering CPU");
    }
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        let events = fds[0].revents().unwrap_or(PollFlags::empty());
        if !events.contains(PollFlags::POLLIN) {
            return; // POLLHUP: every process under this filter has ended
        }
        let notif = match sys::notif_recv(listener.as_fd()) {
            Ok(notif) => notif,
            // The caller died or was interrupted before we read it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => continue,
            Err(_) => return,
        };
        let answer = answer(&notif, &listener, &identifier);
        // ENOENT: the caller went away meanwhile; nothing to answer.
        let _ = sys::notif_respond(listener.as_fd(), notif.id, answer);
    }
}

fn answer(notif: &libc::seccomp_notif, listener: &OwnedFd, identifier: &Identifier) -> NotifAnswer {
    if i64::from(notif.data.nr) != libc::SYS_connect {
        return NotifAnswer::Continue;
    }
    // The notification names the calling thread; pidfds and the identity
    // are the process's (its thread-group leader).
    let Some(Process { pid, parent }) = process_of(notif.pid) else {
        return NotifAnswer::Continue;
    };
    let [fd, address, length, ..] = notif.data.args;
    let Some(target) = read_sockaddr(pid, address, length as usize) else {
        // Not an address we can read: the kernel does what it would. A
        // connection to the proxy made that way has no record and is refused.
        return NotifAnswer::Continue;
    };
    // What we read belongs to this caller only while its call is pending.
    if !sys::notif_id_valid(listener.as_fd(), notif.id) {
        return NotifAnswer::Continue;
    }
    if !is_proxy(target) {
        return NotifAnswer::Continue;
    }
    match connect_for(Process { pid, parent }, fd as i32, target, identifier) {
        Ok(()) => NotifAnswer::Return(0),
        Err(errno) => NotifAnswer::Fail(errno as i32),
    }
}

/// A process making a connect: its pid and its parent's.
#[derive(Debug, Clone, Copy)]
struct Process {
    pid: i32,
    parent: u32,
}

/// The process (thread group) the thread `tid` belongs to, and its parent,
/// from one read of the thread's status.
fn process_of(tid: u32) -> Option<Process> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(Process {
        pid: field("Tgid:")? as i32,
        parent: field("PPid:")?,
    })
}

/// The socket address `pid` passed to connect, for IPv4 and IPv6: one
/// `process_vm_readv`, or where a container's seccomp profile refuses that
/// call (the docker driver's does), a read of `/proc/<pid>/mem`.
fn read_sockaddr(pid: i32, address: u64, length: usize) -> Option<SocketAddr> {
    let mut buf = [0u8; 28];
    let wanted = length.min(buf.len());
    let read = nix::sys::uio::process_vm_readv(
        nix::unistd::Pid::from_raw(pid),
        &mut [std::io::IoSliceMut::new(&mut buf[..wanted])],
        &[nix::sys::uio::RemoteIoVec {
            base: usize::try_from(address).ok()?,
            len: wanted,
        }],
    )
    .or_else(|_| {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
        mem.read_at(&mut buf[..wanted], address)
    })
    .ok()?;
    let buf = &buf[..read];
    let family = i32::from(u16::from_ne_bytes(buf.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = buf.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = buf.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Whether `target` is the proxy's listener (IPv4, or IPv4-mapped IPv6).
fn is_proxy(target: SocketAddr) -> bool {
    let ip = match target.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    ip == IpAddr::V4(*PROXY_ADDR.ip()) && target.port() == PROXY_ADDR.port()
}

/// Connects `caller`'s socket `fd` to `target` on its behalf, recording
/// the connection's local port with the socket and the caller's identity
/// first.
fn connect_for(
    caller: Process,
    fd: i32,
    target: SocketAddr,
    identifier: &Identifier,
) -> Result<(), Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF));
    let pidfd = sys::pidfd_open(caller.pid).map_err(errno)?;
    let socket = sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(errno)?;
    let raw = socket.as_raw_fd();
    let mut local: SockaddrStorage = nix::sys::socket::getsockname(raw)?;
    if port_of(&local) == Some(0) {
        // Bound now, so that the record exists before the proxy can accept.
        let any: SockaddrStorage = match local.family() {
            Some(nix::sys::socket::AddressFamily::Inet6) => {
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into()
            }
            _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into(),
        };
        nix::sys::socket::bind(raw, &any)?;
        local = nix::sys::socket::getsockname(raw)?;
    }
    let port = port_of(&local).ok_or(Errno::EAFNOSUPPORT)?;
    let connect = Connect {
        inode: nix::sys::stat::fstat(&socket)?.st_ino,
        fd,
        connector: identifier.describe(caller.pid as u32, Some(caller.parent)),
    };
    identifier.record_connect(port, connect);
    nix::sys::socket::connect(raw, &SockaddrStorage::from(target))
}

fn port_of(address: &SockaddrStorage) -> Option<u16> {
    address
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| address.as_sockaddr_in6().map(|a| a.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proxy_listener_is_the_proxy() {
        assert!(is_proxy("127.0.0.1:3128".parse().unwrap()));
        assert!(is_proxy("[::ffff:127.0.0.1]:3128".parse().unwrap()));
        assert!(!is_proxy("127.0.0.1:3129".parse().unwrap()));
        assert!(!is_proxy("127.0.0.2:3128".parse().unwrap()));
        assert!(!is_proxy("[::1]:3128".parse().unwrap()));
    }

    #[test]
    fn socket_addresses_are_read_from_a_process() {
        let v4: libc::sockaddr_in = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 3128u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let address = std::ptr::addr_of!(v4) as u64;
        let read = read_sockaddr(std::process::id() as i32, address, 16);
        assert_eq!(read, Some("127.0.0.1:3128".parse().unwrap()));
        // Too short for its family: nothing.
        assert_eq!(read_sockaddr(std::process::id() as i32, address, 6), None);
    }
}
