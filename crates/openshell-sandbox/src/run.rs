//! `openshell-sandbox run`: one sandboxed command, standalone or connected
//! to a gateway ([`crate::session`]), in three steps:
//! `prepare` (the policy or the default, the child's identity and
//! workspace on the host, limits, the plan, the event sinks) → the launch
//! ([`crate::isolation::launch`]) → `supervise` (the proxy, the session or
//! the policy file's watcher, signals), and the
//! command's exit code. Its state directory (with a generated
//! workspace and the TLS trust files) is removed afterwards; a `--workdir`
//! is never touched beyond being mounted.
//!
//! Standalone, the policy file is watched (and SIGHUP reloads it);
//! connected, the gateway delivers policy revisions instead.

mod policy;
mod prepare;
mod supervise;

pub use prepare::RunOptions;
pub use supervise::LaunchFailed;

use prepare::Prepared;
use supervise::supervise;

use anyhow::Context;

use crate::isolation::launch::{self};
use crate::isolation::limits::Cgroup;

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
