//! Keeping the sandbox's output log under a size cap when the driver made
//! the supervisor's stdout that log (`--rotate-output`, the process
//! driver): checked every 100 ms, the file is copied to `<file>.1` and
//! truncated once past the cap. The driver opens it for appending, so every
//! writer (the supervisor's stdout and stderr, the main process through
//! them) continues at the new end. Lines written between the copy and the
//! truncation can be lost, as with logrotate's `copytruncate`.

use std::os::fd::AsFd;
use std::time::Duration;

/// How often the log's size is checked.
const EVERY: Duration = Duration::from_millis(100);

/// Starts the watcher when stdout is a regular file.
pub fn rotate_stdout(max: u64) {
    let stdout = std::io::stdout();
    let Ok(stat) = nix::sys::stat::fstat(stdout.as_fd()) else {
        return;
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return;
    }
    let Ok(path) = std::fs::read_link("/proc/self/fd/1") else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("output-log".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EVERY);
                if let Err(error) = rotate_if_full(&path, max) {
                    tracing::warn!(%error, path = %path.display(), "cannot rotate the output log");
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the output log rotation");
    }
}

/// Copies the log to `<path>.1` and truncates it (through our stdout, the
/// very file) when it is past `max`.
fn rotate_if_full(path: &std::path::Path, max: u64) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let size = nix::sys::stat::fstat(stdout.as_fd())?.st_size;
    if u64::try_from(size).unwrap_or(0) <= max {
        return Ok(());
    }
    std::fs::copy(path, openshell_core::fs::rotated(path))?;
    nix::unistd::ftruncate(stdout.as_fd(), 0)?;
    Ok(())
}
