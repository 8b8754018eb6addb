//! `openshell-sandbox run`: one sandboxed command, standalone or connected
//! to a gateway ([`crate::session`]), in three steps:
//! [`prepare`](prepare::prepare) (the policy or the default, the child's
//! identity and workspace on the host, limits, the plan, the event sinks) →
//! the launch ([`crate::isolation::launch`]) → [`supervise`]
//! (the proxy, the session or the policy file's watcher, signals), and the
//! command's exit code. Its state directory (with a generated
//! workspace and the TLS trust files) is removed afterwards; a `--workdir`
//! is never touched beyond being mounted.
//!
//! Standalone, the policy file is watched (and SIGHUP reloads it);
//! connected, the gateway delivers policy revisions instead.

mod prepare;
mod supervise;

use prepare::Prepared;
use supervise::supervise;

use std::path::PathBuf;

use anyhow::Context;

use crate::isolation::identity;
use crate::isolation::launch::{self};
use crate::isolation::limits::Cgroup;
use crate::session::Connection;

/// Decision events queued for the gateway while it is away.
const EVENT_QUEUE: usize = 4096;

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// `KEY=VALUE`, or `KEY` to copy the supervisor's value.
    pub env: Vec<String>,
    /// Append one JSON line per egress decision here.
    pub events: Option<PathBuf>,
    /// Written (`ready`) once every isolation layer is verified in place.
    pub ready_file: Option<PathBuf>,
    /// Connected mode: the gateway to keep a session with.
    pub gateway: Option<Connection>,
    /// The gateway's revision number of `policy` (connected mode).
    pub policy_version: i64,
    /// The command only keeps the sandbox alive: `connect` opens a shell
    /// rather than attaching to it (connected mode).
    pub idle: bool,
    /// The `--workdir` is created when missing and handed to the agent when
    /// root owns it (a container's; the process driver's persistent one).
    pub create_workdir: bool,
    /// `--cpu` (thousandths), `--memory` (bytes), `--pids`, as given.
    pub limits: (Option<u64>, Option<u64>, Option<u64>),
    /// Where to write how many processes were killed at the memory limit.
    pub oom_file: Option<PathBuf>,
    /// Where the `sandbox` account comes from when missing.
    pub accounts: identity::Accounts,
    pub argv: Vec<String>,
}

/// The launch was refused or aborted before the command ran.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LaunchFailed {
    pub code: i32,
    pub message: String,
}

/// Runs the command in a sandbox; returns its exit code.
pub fn run(options: RunOptions) -> anyhow::Result<i32> {
    let Prepared {
        plan,
        workspace,
        cgroup,
        limits,
        signals,
        egress,
        main,
        stdio,
        oom_file,
    } = prepare::prepare(options)?;
    // Without a cgroup of its own (in a container), the kills counted are
    // the container's, from now on.
    let oom_baseline = cgroup
        .is_none()
        .then(crate::isolation::limits::own_oom_kills);
    let procs = cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default();
    let running = launch::spawn(&plan, stdio, procs).context("starting the sandbox")?;
    let result = supervise(running, signals, egress, main);
    let kills = match (&cgroup, oom_baseline) {
        (Some(cgroup), _) => cgroup.oom_kills(),
        (None, Some(baseline)) => {
            crate::isolation::limits::own_oom_kills().saturating_sub(baseline)
        }
        (None, None) => 0,
    };
    if kills > 0 {
        tracing::warn!(
            finding = "oom-kill",
            kills,
            limit = %openshell_core::resources::format_memory(limits.memory_bytes),
            "processes of the sandbox were killed: out of memory"
        );
        if let Some(path) = &oom_file
            && let Err(error) = std::fs::write(path, format!("{kills}\n"))
        {
            tracing::warn!(%error, path = %path.display(), "cannot record the out-of-memory kills");
        }
    }
    drop(cgroup);
    // Only now, after the child exited: a workspace we created is removed.
    drop(workspace);
    result
}
