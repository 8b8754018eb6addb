//! Pseudo-terminals for interactive sessions (`ssh -t`, `connect` on a
//! TTY): the supervisor keeps the master and hands the slave to the
//! command as its standard streams; the command makes it its controlling
//! terminal ([`crate::exec`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::unix::AsyncFd;

use crate::isolation::sys;

/// The master side of a pty, usable from several tasks at once (one reads
/// while another writes).
#[derive(Debug)]
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

/// A new pty of `cols` x `rows`: its master and its slave.
pub fn open(cols: u16, rows: u16) -> io::Result<(Master, OwnedFd)> {
    let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    let flags = fcntl(&pty.master, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(
        &pty.master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(io::Error::from)?;
    // Neither end may leak into a helper another task starts meanwhile: a
    // stray slave would keep the terminal open after its program ended.
    for end in [&pty.master, &pty.slave] {
        fcntl(end, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    }
    let master = Master {
        fd: sys::async_fd(pty.master)?,
    };
    master.resize(cols, rows)?;
    Ok((master, pty.slave))
}

impl Master {
    /// Tells the terminal (and so the program on it, by SIGWINCH) its new size.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        sys::set_window_size(self.fd.get_ref().as_fd(), cols.max(1), rows.max(1))
    }

    /// Reads what the program wrote; 0 once every slave descriptor is
    /// closed (the kernel says EIO then).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Err(error)) if error.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` as the program's keyboard input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}
