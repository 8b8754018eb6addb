//! The only module allowed to use `unsafe`: thin wrappers over the few
//! syscalls no safe crate covers.
//!
//! | Wrapper | Why no safe crate |
//! |---|---|
//! | [`set_loopback_up`] | `SIOCSIFFLAGS` needs a hand-built `ifreq`; nix and rustix expose no safe interface-flags setter, and a netlink crate is far heavier than one ioctl |
//! | [`landlock_abi`] | the `landlock` crate keeps its ABI probe private; we log and check the ABI we enforce |
//! | [`fork`] | `nix::unistd::fork` is `unsafe`; the caller proves it is single-threaded |
//! | [`take_inherited_fd`] | adopting a descriptor number passed on the command line is `from_raw_fd` |
//! | [`cloexec_all_from`] | `close_range(2)` has no wrapper in nix 0.32 |
//! | [`async_fd`] | tokio's `AsyncFd::register` is `unsafe` (the descriptor must stay the same open file) |
//! | [`set_window_size`], [`set_controlling_terminal`] | `TIOCSWINSZ` and `TIOCSCTTY` are plain ioctls nix only offers through `unsafe` macros |
//! | [`install_listener_filter`], [`notif_recv`], [`notif_respond`], [`notif_id_valid`], [`notif_sync_wakeup`] | seccomp user notification: `seccomp(2)` with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and its ioctls have no wrapper in nix or seccompiler |
//! | [`pidfd_open`], [`pidfd_getfd`] | no wrapper in nix 0.32 |
//! | [`inherit_as`] | moving a descriptor to a fixed number in a child is a `pre_exec` hook |
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// Brings up the loopback interface of the calling thread's network namespace.
pub fn set_loopback_up() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| {
        // A fresh namespace has `lo` down, so binding 127.0.0.1 fails; any
        // AF_INET datagram socket serves for the ioctl.
        std::net::UdpSocket::bind("0.0.0.0:0")
    })?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `fd` is a live socket owned by `socket`; `request` is a valid,
    // NUL-terminated `ifreq` that outlives the call.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; the kernel only reads `request`.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest Landlock ABI the running kernel offers, or why it offers none
/// (`ENOSYS`: not built in, `EOPNOTSUPP`: disabled at boot).
pub fn landlock_abi() -> Result<i32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // kernel reads no memory and only returns the ABI number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        return Err(Errno::last());
    }
    i32::try_from(abi).map_err(|_| Errno::EINVAL)
}

/// `fork(2)` for a process that has exactly one thread, so that the child may
/// allocate and take locks freely.
pub fn fork() -> io::Result<ForkResult> {
    let threads = std::fs::read_dir("/proc/thread-self/..")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has one thread (checked just above, and nothing in
    // this module starts threads), so the child inherits no lock held by
    // another thread and may run arbitrary code before exec.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// Adopts a descriptor the parent passed by number, checking it is open.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a standard stream"
        )));
    }
    // SAFETY: F_GETFD only reads the descriptor table entry; any number is
    // a valid argument.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was created by
    // the supervisor for this process alone; nothing else here refers to it,
    // so the returned OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every descriptor from `first` up close-on-exec, so that nothing the
/// supervisor itself inherited (a jobserver pipe, a caller's socket) reaches
/// the agent's program.
pub fn cloexec_all_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors in the range; it touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts every standard signal back to its default action. An ignored
/// disposition survives `execve`, and the Rust runtime ignores `SIGPIPE`:
/// without this, `yes | head` in the sandbox would print broken-pipe errors
/// instead of ending quietly.
pub fn reset_signal_dispositions() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal};
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL registers no handler, so no code of
        // ours can run in signal context.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    Ok(())
}

/// Sets the size of the terminal `fd` refers to (a pty master or slave).
pub fn set_window_size(fd: std::os::fd::BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a live descriptor for the call's duration; the kernel
    // only reads `size`, which outlives the call.
    if unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::TIOCSWINSZ,
            &size,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the terminal `fd` refers to the controlling terminal of the
/// calling process, which must lead a session without one.
pub fn set_controlling_terminal(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor; TIOCSCTTY reads only its integer
    // argument (0: do not steal a terminal from another session).
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a session of our own and, when stdin is a terminal, makes it
/// that session's controlling terminal (a command on a pty: `exec --tty`,
/// `ssh -t`, a main process created with `--tty`), so that ^C and window
/// changes reach it.
pub fn own_session() -> io::Result<()> {
    let _ = nix::unistd::setsid();
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        set_controlling_terminal(std::os::fd::AsFd::as_fd(&std::io::stdin()))?;
    }
    Ok(())
}

/// Registers an owned descriptor (a pty master) with the tokio reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open and is the only owner of its descriptor
    // number, so the number keeps referring to the same open file until the
    // `AsyncFd` (which takes the `OwnedFd`) drops it.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Installs `program` as a seccomp filter of the calling thread with a
/// user-notification listener, and returns the listener. `no_new_privs`
/// must be set.
pub fn install_listener_filter(program: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::other("filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid instructions that outlive the call;
    // the kernel copies them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The next notification on `listener` (blocks).
pub fn notif_recv(listener: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::seccomp_notif> {
    // SAFETY: plain old data; the kernel requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    // SAFETY: `notif` is a valid, writable `seccomp_notif`.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(notif)
}

/// How a notified syscall ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifAnswer {
    /// The kernel runs the syscall as the caller asked.
    Continue,
    /// It returns this value.
    Return(i64),
    /// It fails with this errno.
    Fail(i32),
}

/// Answers notification `id`.
pub fn notif_respond(
    listener: std::os::fd::BorrowedFd<'_>,
    id: u64,
    answer: NotifAnswer,
) -> io::Result<()> {
    let (val, error, flags) = match answer {
        NotifAnswer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        NotifAnswer::Return(val) => (val, 0, 0),
        NotifAnswer::Fail(errno) => (0, -errno, 0),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    // SAFETY: `resp` is a valid `seccomp_notif_resp`.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to wake a notifying caller on the CPU that answered
/// it (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`, Linux 6.6+): the caller and
/// the supervisor hand the CPU to each other instead of waking across
/// CPUs. `EINVAL` on older kernels, where answers work as before.
pub fn notif_sync_wakeup(listener: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    // SAFETY: the ioctl takes its flags by value.
    if unsafe {
        libc::ioctl(
            fd,
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether notification `id` is still pending (its caller has not died or
/// been interrupted): checked after reading the caller's memory, so that
/// what was read belongs to that caller.
pub fn notif_id_valid(listener: std::os::fd::BorrowedFd<'_>, id: u64) -> bool {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut id = id;
    // SAFETY: `id` is a valid u64.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, fd, 0)`: a duplicate of another process's descriptor.
pub fn pidfd_getfd(pidfd: std::os::fd::BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    let pidfd = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
    // SAFETY: plain integer arguments.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
}

/// Makes `fd` descriptor number `target` in the child `command` starts
/// (inherited across its exec), without ever making it inheritable here:
/// other threads' children never see it.
pub fn inherit_as(command: &mut tokio::process::Command, fd: &OwnedFd, target: RawFd) {
    let source = std::os::fd::AsRawFd::as_raw_fd(fd);
    // SAFETY: the hook runs between fork and exec and calls only dup2 (or
    // fcntl when the numbers already match), both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if source == target {
                if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(source, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
