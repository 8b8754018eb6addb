//! What the whole-process benchmarks share: timing a command, medians, a
//! free loopback port.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `command` takes; it must succeed (its stderr is shown if not).
pub fn time(command: &mut Command) -> Duration {
    let start = Instant::now();
    let out = command.stdin(Stdio::null()).output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
