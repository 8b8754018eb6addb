//! What the whole-process benchmarks share: the CLI with its own home,
//! timing a command, medians, a free loopback port.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `openshell ARGS` with its config and state under `home` (the gateway
/// and supervisor binaries are found beside it).
pub fn openshell(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openshell"));
    command
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"));
    command
}

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

pub use openshell_test_support::home::free_port;
