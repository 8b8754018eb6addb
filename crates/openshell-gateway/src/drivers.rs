//! Compute drivers (ARCHITECTURE.md, "Compute drivers"): turn "create
//! sandbox S with spec X" into a running workload and report its lifecycle
//! into the store. One trait ([`Driver`]), two implementations: `process`
//! (supervisors on this host) and `docker` (containers through the Docker
//! Engine API, which also drives Podman).

pub mod docker;
pub mod process;

use std::path::PathBuf;

pub use docker::{DockerDriver, Engine};
pub use process::ProcessDriver;

use std::path::Path;

use crate::auth::Tokens;
use crate::store::{Sandbox, Spec};

/// How supervisors reach this gateway.
#[derive(Debug, Clone)]
pub struct Connect {
    /// `https://127.0.0.1:PORT` or `http://…` when plaintext.
    pub endpoint: String,
    /// The CA that signed the gateway's certificate (TLS only).
    pub ca_cert: Option<PathBuf>,
    pub tokens: Tokens,
}

/// A sandbox's policy revision, as its supervisor starts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRevision<'a> {
    pub version: i64,
    pub yaml: &'a str,
}

/// What the API needs from a compute driver. A driver watches its
/// workloads itself and records their phases (Ready, Stopped with the exit
/// code, Error) in the store it was given.
#[tonic::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The name users see (`gateway info`).
    fn name(&self) -> &'static str;

    /// Refuses, before anything is recorded, a spec this driver cannot run
    /// ([`DriverError::Refused`]: an image it cannot get, GPUs it cannot
    /// pass through).
    async fn validate(&self, spec: &Spec) -> Result<(), DriverError>;

    /// Starts the sandbox's workload, whose supervisor starts with `policy`
    /// (the latest revision; `None`: the built-in default) and dials the
    /// gateway back.
    async fn create(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError>;

    /// Stops the main process; the sandbox and its files stay. Idempotent.
    async fn stop(&self, id: &str);

    /// Stops the workload and removes everything it left.
    async fn delete(&self, id: &str) -> Result<(), DriverError>;

    /// Whether the workload runs now.
    fn running(&self, id: &str) -> bool;

    /// Where the main process's output accumulates.
    fn output_log(&self, id: &str) -> PathBuf;

    /// Where the decision events the supervisor pushes are kept.
    fn events_log(&self, id: &str) -> PathBuf;

    /// At gateway start: picks up the workloads that outlived the previous
    /// gateway and settles those that ended meanwhile.
    async fn reconcile(&self, sandboxes: Vec<Sandbox>);
}

/// Why a driver could not act.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The request cannot be served as asked; the message says why and
    /// what to do, for the user.
    #[error("{0}")]
    Refused(String),
    #[error("the {engine} engine: {what}")]
    Engine {
        engine: &'static str,
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the supervisor {binary}")]
    Spawn {
        binary: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `-e` variables as the supervisor's `--env-file` reads them:
/// `KEY=VALUE` entries, each ended by a NUL (values may hold newlines).
fn env_file(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\0")).collect()
}

/// The `map_err` for a file operation on `path`.
fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_owned();
    move |source| DriverError::Io { op, path, source }
}

/// Writes a file only its owner (root) can read.
fn write_private(path: &Path, contents: &str) -> Result<(), DriverError> {
    openshell_core::fs::write_private(path, contents.as_bytes()).map_err(io("writing", path))
}

/// Removes a file (a previous run's marker) that may not exist.
fn remove_stale(path: &Path) -> Result<(), DriverError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Records, as a sandbox event, that the kernel killed `kills` of its
/// processes (`None`: some) at its memory limit.
async fn record_oom(store: &crate::store::Store, id: &str, kills: Option<u64>) {
    let message = match kills {
        Some(1) => "a process of the sandbox was killed: out of memory (raise --memory)".to_owned(),
        Some(n) => {
            format!("{n} processes of the sandbox were killed: out of memory (raise --memory)")
        }
        None => "a process of the sandbox was killed: out of memory (raise --memory)".to_owned(),
    };
    if let Err(error) = store.add_event(id, &message).await {
        tracing::error!(%error, sandbox = id, "recording an out-of-memory kill");
    }
}

/// What a sandbox directory being removed is renamed to end with.
const REMOVING: &str = ".removing";

/// Removes a sandbox's directory, which may be gone already. The directory
/// is renamed aside at once (`<id>.removing`), then removed off the async
/// workers by [`openshell_core::fs::remove_tree`]: the agent wrote the tree
/// and may have made it 25,000 directories deep. A removal that fails is
/// logged and tried again by [`sweep_removed`] at the next gateway start;
/// it never fails the delete nor takes the gateway down.
fn remove_dir(dir: &Path) -> Result<(), DriverError> {
    let mut aside = dir.as_os_str().to_owned();
    aside.push(REMOVING);
    let aside = PathBuf::from(aside);
    match std::fs::rename(dir, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("moving aside", dir)(e)),
    }
    remove_in_background(aside);
    Ok(())
}

fn remove_in_background(path: PathBuf) {
    tokio::task::spawn_blocking(move || {
        if let Err(error) = openshell_core::fs::remove_tree(&path) {
            tracing::error!(
                %error,
                path = %path.display(),
                "cannot remove a deleted sandbox's files; tried again at the next gateway start"
            );
        }
    });
}

/// At gateway start: removes what earlier deletes left under `root` (a
/// removal that failed, or a gateway stopped while removing).
fn sweep_removed(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(REMOVING) {
            remove_in_background(entry.path());
        }
    }
}
