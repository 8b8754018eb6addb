//! Pid files of the processes this CLI starts in the background (a local
//! gateway, port forwards), and whether such a process still runs.

use std::path::Path;

/// The pid a pid file holds, if it holds one.
pub fn read(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}
