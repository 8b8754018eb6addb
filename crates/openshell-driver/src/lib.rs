//! The compute drivers' contract (ARCHITECTURE.md, "Compute drivers"):
//! what a driver is given (a [`Sandbox`] with its [`Spec`], how its
//! supervisor reaches the gateway: [`Connect`]), what it must do
//! ([`Driver`]) and where it records what its workloads do
//! ([`Lifecycle`], the gateway's store). Each engine's driver lives in a
//! crate of its own, so the gateway carries only the engines it is built
//! with; the process driver stays in the gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a sandbox was created with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub command: Vec<String>,
    pub policy_yaml: String,
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// The container image; empty: the driver's default.
    #[serde(default)]
    pub image: String,
    /// GPUs to pass through.
    #[serde(default)]
    pub gpu: u32,
    /// Resource limits (0: the default).
    #[serde(default)]
    pub cpu_millis: u64,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub pids: u64,
    /// The main process runs on a pseudo-terminal.
    #[serde(default)]
    pub tty: bool,
}

/// Lifecycle phases, as the CLI prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Provisioning,
    Ready,
    Error,
    Deleting,
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Error => "Error",
            Phase::Deleting => "Deleting",
            Phase::Stopped => "Stopped",
        }
    }

    /// The phase a stored name means (an unknown one: Provisioning).
    pub fn parse(text: &str) -> Phase {
        match text {
            "Ready" => Phase::Ready,
            "Error" => Phase::Error,
            "Deleting" => Phase::Deleting,
            "Stopped" => Phase::Stopped,
            _ => Phase::Provisioning,
        }
    }
}

/// A stored sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub phase: Phase,
    pub spec: Spec,
    pub created_at_ms: i64,
    pub exit_code: Option<i32>,
    /// Latest policy revision (0: none).
    pub policy_version: i64,
    /// Bumped by every change of the record (provider attach/detach).
    pub resource_version: i64,
    /// The attached providers' names, sorted.
    pub providers: Vec<String>,
}

/// How supervisors reach this gateway.
#[derive(Debug, Clone)]
pub struct Connect {
    /// `https://127.0.0.1:PORT` or `http://…` when plaintext.
    pub endpoint: String,
    /// The CA that signed the gateway's certificate (TLS only).
    pub ca_cert: Option<PathBuf>,
    pub tokens: TokenMinter,
}

/// Mints the token a sandbox's supervisor presents to the gateway (the
/// secret it is made with stays in the gateway).
#[derive(Clone)]
pub struct TokenMinter(Arc<dyn Fn(&str) -> String + Send + Sync>);

impl TokenMinter {
    pub fn new(mint: impl Fn(&str) -> String + Send + Sync + 'static) -> TokenMinter {
        TokenMinter(Arc::new(mint))
    }

    /// The token of sandbox `id`.
    pub fn mint(&self, id: &str) -> String {
        (self.0)(id)
    }
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMinter(..)")
    }
}

/// An error of the gateway's record of sandboxes.
pub type LifecycleError = Box<dyn std::error::Error + Send + Sync>;

/// Where a driver records what its workloads do: the gateway's store.
#[async_trait::async_trait]
pub trait Lifecycle: Send + Sync + std::fmt::Debug {
    /// The sandbox as recorded now.
    async fn get_sandbox_by_id(&self, id: &str) -> Result<Option<Sandbox>, LifecycleError>;
    /// Provisioning → Ready, once; false when it was not provisioning.
    async fn mark_ready(&self, id: &str) -> Result<bool, LifecycleError>;
    /// A phase change (with the main process's exit code when it ended).
    async fn set_phase(
        &self,
        id: &str,
        phase: Phase,
        exit_code: Option<i32>,
    ) -> Result<(), LifecycleError>;
    /// An event users see in `logs`.
    async fn add_event(&self, id: &str, message: &str) -> Result<(), LifecycleError>;
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
#[async_trait::async_trait]
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
        source: Box<dyn std::error::Error + Send + Sync>,
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
pub fn env_file(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\0")).collect()
}

/// The `map_err` for a file operation on `path`.
pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_owned();
    move |source| DriverError::Io { op, path, source }
}

/// Writes a file only its owner (root) can read.
pub fn write_private(path: &Path, contents: &str) -> Result<(), DriverError> {
    openshell_core::fs::write_private(path, contents.as_bytes()).map_err(io("writing", path))
}

/// Removes a file (a previous run's marker) that may not exist.
pub fn remove_stale(path: &Path) -> Result<(), DriverError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Records, as a sandbox event, that the kernel killed `kills` of its
/// processes (`None`: some) at its memory limit.
pub async fn record_oom(store: &dyn Lifecycle, id: &str, kills: Option<u64>) {
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
pub fn remove_dir(dir: &Path) -> Result<(), DriverError> {
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
pub fn sweep_removed(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(REMOVING) {
            remove_in_background(entry.path());
        }
    }
}
