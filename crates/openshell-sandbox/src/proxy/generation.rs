//! Policy generations: the compiled policy every new connection is decided
//! by, swapped atomically on reload. Connections remember the generation
//! they were allowed under and close when it is replaced (docs/policy.md,
//! "Static and dynamic sections").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use openshell_policy::{CompiledPolicy, Policy};

/// How often the policy file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One compiled policy and its number.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub policy: CompiledPolicy,
}

/// Creates the channel holding the current generation (number 1).
pub fn channel(
    policy: Policy,
) -> (
    watch::Sender<Arc<Generation>>,
    watch::Receiver<Arc<Generation>>,
) {
    watch::channel(Arc::new(Generation {
        number: 1,
        policy: CompiledPolicy::new(policy),
    }))
}

/// Resolves when the current generation is no longer `pinned` (or the
/// sender is gone, which also ends the pinned connection).
pub async fn replaced(generations: &mut watch::Receiver<Arc<Generation>>, pinned: u64) {
    loop {
        if generations.borrow_and_update().number != pinned {
            return;
        }
        if generations.changed().await.is_err() {
            return;
        }
    }
}

/// Why a policy was not applied; the running generation stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyPolicyError {
    /// It does not load: the validator's problems.
    #[error("{0}")]
    Invalid(String),
    /// It changes what cannot change while the sandbox runs.
    #[error("{}", .0.join("; "))]
    Static(Vec<String>),
}

/// Swaps validated policies in as new generations, refusing changes to
/// the static sections (docs/policy.md, "Static and dynamic sections").
#[derive(Debug, Clone)]
pub struct Updater {
    sender: watch::Sender<Arc<Generation>>,
    /// Turns a freshly validated policy into the enforced one (baseline
    /// enrichment), exactly as at start.
    prepare: fn(Policy) -> Policy,
}

impl Updater {
    pub fn new(sender: watch::Sender<Arc<Generation>>, prepare: fn(Policy) -> Policy) -> Updater {
        Updater { sender, prepare }
    }

    /// Validates `yaml` completely, checks that only dynamic sections
    /// changed, and swaps it in. On any error the current generation stays.
    pub fn apply_yaml(&self, yaml: &str) -> Result<u64, ApplyPolicyError> {
        self.apply(openshell_policy::load_str(yaml))
    }

    /// [`Updater::apply_yaml`] for a file.
    pub fn apply_file(&self, path: &Path) -> Result<u64, ApplyPolicyError> {
        self.apply(openshell_policy::load_file(path))
    }

    fn apply(
        &self,
        loaded: Result<openshell_policy::Validated, openshell_policy::LoadPolicyError>,
    ) -> Result<u64, ApplyPolicyError> {
        let validated = loaded.map_err(|e| ApplyPolicyError::Invalid(e.problems().to_string()))?;
        let candidate = (self.prepare)(validated.policy);
        let current = self.sender.borrow().clone();
        let running = current.policy.policy();
        let mut problems = openshell_policy::live::check_live_update(running, &candidate)
            .err()
            .unwrap_or_default();
        problems.extend(openshell_policy::live::added_filesystem_paths(
            running, &candidate,
        ));
        if !problems.is_empty() {
            return Err(ApplyPolicyError::Static(problems));
        }
        let number = current.number + 1;
        self.sender.send_replace(Arc::new(Generation {
            number,
            policy: CompiledPolicy::new(candidate),
        }));
        Ok(number)
    }
}

/// Reloads a policy file into new generations.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    modified: Option<SystemTime>,
    updater: Updater,
}

impl Reloader {
    pub fn new(path: &Path, updater: Updater) -> Reloader {
        Reloader {
            modified: modified(path),
            path: path.to_owned(),
            updater,
        }
    }

    /// Applies the file as it is now ([`Updater::apply_yaml`]).
    pub fn reload(&mut self) -> Result<u64, ApplyPolicyError> {
        self.modified = modified(&self.path);
        self.updater.apply_file(&self.path)
    }

    /// Reloads when the file's mtime changes or a request arrives (SIGHUP),
    /// until the request channel closes.
    pub async fn watch(mut self, mut requests: mpsc::UnboundedReceiver<()>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                request = requests.recv() => {
                    if request.is_none() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if modified(&self.path) == self.modified {
                        continue;
                    }
                }
            }
            let current = self.updater.sender.borrow().number;
            match self.reload() {
                Ok(number) => {
                    tracing::info!(generation = number, policy = %self.path.display(), "policy reloaded")
                }
                Err(reason) => tracing::error!(
                    generation = current,
                    policy = %self.path.display(),
                    %reason,
                    "policy reload rejected; the previous generation stays active"
                ),
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
