//! The sandbox's main process as something to attach to (`sandbox
//! connect`): in connected mode the supervisor owns its standard streams.
//!
//! Its output (stdout and stderr on one pipe, in the order written) is
//! copied to the supervisor's own stdout (the driver's output log, which
//! `WatchSandbox` streams), retained in a bounded buffer (the last
//! [`RETAINED`] bytes) and broadcast to the attachments; an attachment first
//! receives the retained bytes, so a script waiting for a marker sees it
//! even when it was printed before the attachment. Its stdin is a pipe that
//! one attachment at a time owns ([`MainProcess::claim_stdin`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

/// How much of the output an attachment gets replayed.
pub const RETAINED: usize = 1024 * 1024;
/// Chunks an attachment may fall behind before it loses some.
const LIVE_QUEUE: usize = 1024;

/// The supervisor's side of the main process's streams.
#[derive(Debug)]
pub struct MainProcess {
    output: Mutex<Output>,
    live: broadcast::Sender<Bytes>,
    stdin: Mutex<Option<File>>,
    /// The attachment that owns stdin (0: none).
    owner: Mutex<u64>,
    next_attachment: std::sync::atomic::AtomicU64,
    /// Set when the pipe reaches end of file.
    ended: watch::Sender<bool>,
    /// The main process's exit code, once it exited.
    exit: watch::Sender<Option<i32>>,
    /// Attachments alive now.
    attached: std::sync::atomic::AtomicUsize,
    /// The pty master, when the main process runs on one (`--tty`): for
    /// window sizes.
    terminal: Option<OwnedFd>,
}

#[derive(Debug, Default)]
struct Output {
    retained: VecDeque<u8>,
    /// Bytes that fell out of the retained window.
    dropped: u64,
}

/// What an attachment starts from: the retained output, and the live
/// output after it (no byte lost or repeated in between).
#[derive(Debug)]
pub struct Attachment {
    pub id: u64,
    pub replay: Vec<u8>,
    /// Bytes before `replay` that are no longer retained.
    pub dropped: u64,
    pub live: broadcast::Receiver<Bytes>,
    pub ended: watch::Receiver<bool>,
    pub exit: watch::Receiver<Option<i32>>,
    main: Arc<MainProcess>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.main.release_stdin(self.id);
        self.main
            .attached
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl MainProcess {
    /// Pipes for the main process: returns the supervisor's side (with the
    /// pump thread started) and the child's stdin, stdout and stderr.
    pub fn start() -> std::io::Result<(Arc<MainProcess>, [OwnedFd; 3])> {
        let (stdin_read, stdin_write) = std::io::pipe()?;
        let (out_read, out_write) = std::io::pipe()?;
        let err_write = out_write.try_clone()?;
        let main = MainProcess::serve(OwnedFd::from(stdin_write), OwnedFd::from(out_read), None)?;
        Ok((
            main,
            [
                OwnedFd::from(stdin_read),
                OwnedFd::from(out_write),
                OwnedFd::from(err_write),
            ],
        ))
    }

    /// A pseudo-terminal for the main process (`sandbox create --tty`),
    /// 80x24 until an attachment on a terminal gives its size: the
    /// supervisor keeps the master, the child gets the slave as its three
    /// streams (and makes it its controlling terminal).
    pub fn start_tty() -> std::io::Result<(Arc<MainProcess>, [OwnedFd; 3])> {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).map_err(std::io::Error::from)?;
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(std::io::Error::from)?;
        }
        let main = MainProcess::serve(
            pty.master.try_clone()?,
            pty.master.try_clone()?,
            Some(pty.master),
        )?;
        Ok((
            main,
            [pty.slave.try_clone()?, pty.slave.try_clone()?, pty.slave],
        ))
    }

    /// The supervisor's side over `input` (written to) and `output` (read
    /// by the pump thread).
    fn serve(
        input: OwnedFd,
        output: OwnedFd,
        terminal: Option<OwnedFd>,
    ) -> std::io::Result<Arc<MainProcess>> {
        let main = Arc::new(MainProcess {
            output: Mutex::new(Output::default()),
            live: broadcast::channel(LIVE_QUEUE).0,
            stdin: Mutex::new(Some(File::from(input))),
            owner: Mutex::new(0),
            next_attachment: std::sync::atomic::AtomicU64::new(1),
            ended: watch::channel(false).0,
            exit: watch::channel(None).0,
            attached: std::sync::atomic::AtomicUsize::new(0),
            terminal,
        });
        let pump = main.clone();
        std::thread::Builder::new()
            .name("main-output".into())
            .spawn(move || pump.pump(File::from(output)))?;
        Ok(main)
    }

    /// Whether the main process runs on a pseudo-terminal.
    pub fn on_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// Sets the main process's window size (on a pseudo-terminal only).
    pub fn resize(&self, cols: u16, rows: u16) {
        if let Some(master) = &self.terminal {
            let _ = crate::isolation::sys::set_window_size(master.as_fd(), cols, rows);
        }
    }

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Copies the output until every writer closed the pipe.
    fn pump(&self, mut from: File) {
        let mut stdout = std::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buf[..n];
            // The driver's log; a full disk must not stop the sandbox.
            let _ = stdout.write_all(chunk).and_then(|()| stdout.flush());
            let mut output = Self::lock(&self.output);
            output.retained.extend(chunk);
            let excess = output.retained.len().saturating_sub(RETAINED);
            if excess > 0 {
                output.retained.drain(..excess);
                output.dropped += excess as u64;
            }
            // Under the lock: an attachment subscribing now either has
            // this chunk in its replay or receives it live, never both.
            let _ = self.live.send(Bytes::copy_from_slice(chunk));
        }
        self.ended.send_replace(true);
    }

    /// Records the main process's exit code.
    pub fn exited(&self, code: i32) {
        self.exit.send_replace(Some(code));
    }

    /// Waits (at most `timeout`: a background child may keep the pipe
    /// open) until every byte of output was copied to the driver's log.
    pub fn wait_output_end(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !*self.ended.borrow() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Waits (at most `timeout`) until no attachment is left, so that
    /// those following the main process see its end; true when some were.
    pub fn wait_detached(&self, timeout: std::time::Duration) -> bool {
        let attached = || self.attached.load(std::sync::atomic::Ordering::Acquire);
        if attached() == 0 {
            return false;
        }
        let deadline = std::time::Instant::now() + timeout;
        while attached() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    /// A new attachment: the retained output, then live output.
    pub fn attach(self: &Arc<Self>) -> Attachment {
        self.attached
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let output = Self::lock(&self.output);
        Attachment {
            main: self.clone(),
            id: self
                .next_attachment
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            replay: output.retained.iter().copied().collect(),
            dropped: output.dropped,
            live: self.live.subscribe(),
            ended: self.ended.subscribe(),
            exit: self.exit.subscribe(),
        }
    }

    /// Makes `attachment` the owner of stdin if nobody owns it; whether it
    /// owns it now.
    pub fn claim_stdin(&self, attachment: u64) -> bool {
        let mut owner = Self::lock(&self.owner);
        if *owner == 0 {
            *owner = attachment;
        }
        *owner == attachment
    }

    /// Whether `attachment` owns stdin now.
    pub fn owns_stdin(&self, attachment: u64) -> bool {
        *Self::lock(&self.owner) == attachment
    }

    /// Gives stdin up (a detach, or the attachment ended).
    pub fn release_stdin(&self, attachment: u64) {
        let mut owner = Self::lock(&self.owner);
        if *owner == attachment {
            *owner = 0;
        }
    }

    /// Writes input from the owner of stdin; false when the main process
    /// no longer reads it.
    pub fn write_stdin(&self, attachment: u64, data: &[u8]) -> bool {
        if *Self::lock(&self.owner) != attachment {
            return false;
        }
        let mut stdin = Self::lock(&self.stdin);
        match stdin.as_mut().map(|s| s.write_all(data)) {
            Some(Ok(())) => true,
            _ => {
                *stdin = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fd: &OwnedFd, data: &[u8]) {
        let mut file = File::from(fd.try_clone().unwrap());
        file.write_all(data).unwrap();
    }

    async fn wait_retained(main: &Arc<MainProcess>, len: usize) {
        loop {
            let attachment = main.attach();
            if attachment.replay.len() + attachment.dropped as usize >= len {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_attachment_replays_what_came_before_and_follows_what_comes_after() {
        let (main, [_stdin, stdout, _stderr]) = MainProcess::start().unwrap();
        write(&stdout, b"MARKER before\n");
        wait_retained(&main, 14).await;
        let mut attachment = main.attach();
        assert_eq!(attachment.replay, b"MARKER before\n");
        write(&stdout, b"after\n");
        assert_eq!(&attachment.live.recv().await.unwrap()[..], b"after\n");
        drop((stdout, _stderr));
        attachment.ended.wait_for(|e| *e).await.unwrap();
    }

    #[tokio::test]
    async fn only_the_last_mebibyte_is_replayed() {
        let (main, [_stdin, stdout, _stderr]) = MainProcess::start().unwrap();
        let total = RETAINED + 4096;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        write(&stdout, &data);
        wait_retained(&main, total).await;
        let attachment = main.attach();
        assert_eq!(attachment.replay.len(), RETAINED);
        assert_eq!(attachment.dropped, 4096);
        assert_eq!(attachment.replay[..], data[4096..]);
    }

    #[test]
    fn the_end_of_the_output_is_awaited_until_the_pipe_closes() {
        let (main, [_stdin, stdout, stderr]) = MainProcess::start().unwrap();
        write(&stdout, b"last words\n");
        drop((stdout, stderr));
        main.wait_output_end(std::time::Duration::from_secs(5));
        assert!(*main.ended.borrow());
        assert_eq!(main.attach().replay, b"last words\n");
    }

    #[test]
    fn the_end_waits_for_attachments_only_while_there_are_some() {
        let (main, _fds) = MainProcess::start().unwrap();
        assert!(!main.wait_detached(std::time::Duration::from_secs(5)));
        let attachment = main.attach();
        assert!(main.claim_stdin(attachment.id));
        let leaving = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(attachment);
        });
        assert!(main.wait_detached(std::time::Duration::from_secs(5)));
        leaving.join().unwrap();
        // A dropped attachment gave stdin up.
        assert!(main.claim_stdin(main.attach().id));
    }

    #[test]
    fn one_attachment_at_a_time_owns_stdin() {
        let (main, [stdin, stdout, stderr]) = MainProcess::start().unwrap();
        let (first, second) = (main.attach().id, main.attach().id);
        assert!(main.claim_stdin(first));
        assert!(!main.claim_stdin(second));
        assert!(!main.write_stdin(second, b"ignored\n"));
        assert!(main.write_stdin(first, b"typed\n"));
        main.release_stdin(first);
        assert!(main.claim_stdin(second));
        assert!(main.write_stdin(second, b"more\n"));
        // The pipe closes once the pump thread (which holds the other
        // reference) sees the output end.
        drop((main, stdout, stderr));
        let mut got = String::new();
        File::from(stdin).read_to_string(&mut got).unwrap();
        assert_eq!(got, "typed\nmore\n");
    }
}
