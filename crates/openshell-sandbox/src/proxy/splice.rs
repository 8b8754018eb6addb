//! Zero-copy relay for uninspected tunnels: bytes move socket → pipe →
//! socket inside the kernel with `splice(2)`, never through the proxy's
//! memory. Readiness comes from tokio, so the relay stays async.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity per direction.
const PIPE_BYTES: i32 = 1 << 20;

/// Relays both directions until both have ended; an end of stream on one
/// side is passed on as a half-close on the other.
pub async fn relay(client: &TcpStream, upstream: &TcpStream) -> io::Result<()> {
    let (up, down) = tokio::join!(one_way(client, upstream), one_way(upstream, client));
    up.and(down)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // A larger pipe means fewer round trips; the default (64 KiB) still works.
    let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    Ok((read, write))
}

async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    if copy(from, to, None).await? {
        // End of stream: pass the half-close on.
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(to),
            nix::sys::socket::Shutdown::Write,
        );
    }
    Ok(())
}

/// Moves `limit` bytes (or, with `None`, everything until the end of the
/// stream) from `from` to `to` in the kernel. `Ok(true)` when `from`
/// ended; a stream ending before `limit` is `UnexpectedEof`.
pub async fn copy(from: &TcpStream, to: &TcpStream, limit: Option<u64>) -> io::Result<bool> {
    let (pipe_read, pipe_write) = pipe()?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut remaining = limit;
    loop {
        let want = match remaining {
            Some(0) => return Ok(false),
            Some(left) => left.min(PIPE_BYTES as u64) as usize,
            None => PIPE_BYTES as usize,
        };
        let moved = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pipe_write.as_fd(), None, want, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if moved == 0 {
            return match remaining {
                None => Ok(true),
                Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        if let Some(left) = remaining.as_mut() {
            *left -= moved as u64;
        }
        let mut left = moved;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_read.as_fd(), None, to.as_fd(), None, left, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relays_both_ways_and_passes_half_close_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = listener.local_addr().unwrap();
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let relay_task = tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            let upstream = TcpStream::connect(upstream_addr).await.unwrap();
            relay(&client, &upstream).await
        });
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(&got.iter().rev().copied().collect::<Vec<_>>())
                .await
                .unwrap();
            got.len()
        });
        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(server.await.unwrap(), payload.len());
        assert_eq!(back, payload.iter().rev().copied().collect::<Vec<_>>());
        relay_task.await.unwrap().unwrap();
    }
}
