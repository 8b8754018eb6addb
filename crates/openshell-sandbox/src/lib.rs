//! `openshell-sandbox`, the supervisor: the trusted process that starts as
//! root inside every sandbox workload and launches the agent as a
//! restricted child.
//!
//! Owns: the isolation of the agent child ([`isolation`]: namespaces,
//! mounts, identity drop, Landlock, seccomp, and the launch chain that
//! applies them: [`isolation::launch`], [`isolation::init`],
//! [`isolation::agent`], [`isolation::report`]), the `run` command ([`run`]),
//! its gateway session in connected mode ([`session`]) and commands run in
//! a live sandbox ([`exec`]) and port forwards into it ([`forward`]). The egress proxy plugs into the listener
//! [`isolation::launch`] creates inside the child's network namespace.
//!
//! Does not own: policy parsing and decisions (`openshell-policy`).
//!
//! Invariants:
//! - fail closed: a layer that cannot be applied aborts the launch, except
//!   where the policy's `landlock.compatibility: best_effort` allows it, and
//!   then the report says so;
//! - the agent child never runs as root, never with a capability, and never
//!   without `no_new_privs` and the seccomp filter;
//! - the isolation is a [`isolation::Plan`] built purely and applied by
//!   short loops; the only `unsafe` is in [`isolation::sys`];
//! - nothing is mounted in the supervisor's own mount namespace, so nothing
//!   outlives the child, even after a crash.

pub mod check;
pub mod events;
pub mod exec;
pub mod forward;
pub mod isolation;
pub mod main_process;
pub mod output_log;
pub mod proxy;
pub mod pty;
pub mod run;
pub mod session;
pub mod ssh;
pub mod tls;

/// The launch itself failed (docker's convention).
pub const EXIT_LAUNCH_FAILED: i32 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
