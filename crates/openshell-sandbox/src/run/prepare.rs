//! Everything before the launch (see [`super`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::signal::SigSet;
use nix::unistd::{Gid, Uid};

use openshell_core::paths::{ProcessEnv, state_dir};

use crate::events::Events;
use crate::isolation::limits::{Cgroup, Limits};
use crate::isolation::{self, Inputs, SANDBOX_DIR, identity};
use crate::main_process::MainProcess;
use crate::session::Connection;
use crate::tls::Authority;

use super::policy::load_policy;
use super::supervise::{Connected, Egress, forwarded_signals};

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
    /// The main process runs on a pseudo-terminal.
    pub tty: bool,
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

/// Everything before the launch: the policy, the child's identity and
/// workspace, limits, the plan, the event sinks, what the proxy needs.
pub(super) fn prepare(options: RunOptions) -> anyhow::Result<Prepared> {
    if !Uid::effective().is_root() {
        bail!(
            "openshell-sandbox must start as root: it creates namespaces and drops privileges for the child\n\
             hint: run it with sudo; the child itself never runs as root"
        );
    }
    let (policy, is_default) = load_policy(options.policy.as_deref())?;
    let mut credentials = identity::resolve(&policy.process, &options.accounts)
        .context("resolving the child's user")?;
    let env_overrides = parse_env(&options.env)?;
    let sandbox_id = sandbox_id();
    // On a host, the default `sandbox` account gets the sandbox's own id
    // (a container is isolated by its engine and keeps its image's).
    let in_container = matches!(options.accounts, identity::Accounts::Container { .. });
    let own_id = (!in_container
        && credentials.user.as_deref() == Some(identity::SANDBOX_ACCOUNT)
        && matches!(
            policy.process.run_as_user,
            None | Some(openshell_policy::policy::Identity::Sandbox)
        )
        && matches!(
            policy.process.run_as_group,
            None | Some(openshell_policy::policy::Identity::Sandbox)
        ))
    .then(|| {
        use std::os::unix::fs::MetadataExt;
        let previous = options
            .workdir
            .as_deref()
            .and_then(|dir| std::fs::metadata(dir).ok())
            .map(|meta| meta.uid());
        let seed = options
            .gateway
            .as_ref()
            .map_or(sandbox_id.as_str(), |c| c.sandbox_id.as_str());
        identity::own_id(seed, previous)
    });
    if let Some(id) = own_id {
        credentials = isolation::Credentials {
            uid: id,
            gid: id,
            groups: vec![id],
            user: Some(identity::SANDBOX_ACCOUNT.to_owned()),
        };
    }
    if options.create_workdir
        && let Some(dir) = &options.workdir
    {
        prepare_created_workdir(dir, &credentials)?;
    }
    let workspace = Workspace::prepare(options.workdir.as_deref(), &credentials, &sandbox_id)?;
    let (cpu, memory, pids) = options.limits;
    let limits = Limits::with_defaults(cpu, memory, pids);
    let accounts_dir = match own_id {
        Some(id) => Some(write_accounts(&workspace.root, id)?),
        None => None,
    };
    let cgroup = match Cgroup::create(&sandbox_id, &limits) {
        Ok(cgroup) => Some(cgroup),
        Err(error) if in_container => {
            tracing::info!(%error, "no cgroup of the sandbox's own in the container: the container's limits apply");
            None
        }
        Err(error) if cpu.is_some() || memory.is_some() || pids.is_some() => {
            return Err(error).context("setting the sandbox's resource limits");
        }
        Err(error) => {
            tracing::error!(
                finding = "limits-unavailable",
                %error,
                "resource limits are NOT enforced: the sandbox can use every process, byte and CPU of the host"
            );
            None
        }
    };
    let policy_paths: Vec<String> = policy
        .filesystem
        .read_only
        .iter()
        .chain(&policy.filesystem.read_write)
        .map(|p| isolation::landlock::normalize(p))
        .collect();
    let layout = isolation::layout::read_layout(&policy_paths);
    let authority = Arc::new(Authority::generate(&sandbox_id).context("setting up TLS")?);
    authority
        .write_trust_files(&workspace.tls_dir())
        .context("setting up TLS")?;
    let mut plan = isolation::build_plan(Inputs {
        policy: &policy,
        workdir: workspace.path.clone(),
        tls_dir: Some(workspace.tls_dir()),
        credentials,
        layout,
        tmp_size: Some(limits.memory_bytes / 2),
        accounts_dir,
        argv: options.argv,
        env_overrides,
        host_env: std::env::vars().collect(),
    });
    if is_default {
        // The default policy's paths are optional: the missing ones are
        // left out of Landlock quietly (a user's are reported instead). The
        // policy itself stays the default, so that a revision built on it
        // (`policy update`) changes nothing static.
        plan.landlock
            .rules
            .retain(|rule| exists_in_sandbox(&rule.path, &workspace.path));
    }

    let signals = forwarded_signals();
    signals
        .thread_block()
        .context("blocking signals for forwarding")?;
    let events = match &options.events {
        Some(path) => Events::to_file(path)
            .with_context(|| format!("opening the events file {}", path.display()))?,
        None => Events::default(),
    };
    let (events, gateway) = match options.gateway {
        Some(connection) => {
            let (queue, queued) = tokio::sync::mpsc::channel(EVENT_QUEUE);
            let connected = Connected {
                connection,
                events: queued,
                policy_version: options.policy_version,
                plan: plan.clone(),
                scratch: workspace.root.clone(),
            };
            (events.with_push(queue), Some(connected))
        }
        None => (events, None),
    };
    let egress = Egress {
        ready_file: options.ready_file.clone(),
        policy,
        policy_path: options.policy.clone(),
        events: events.for_sandbox(sandbox_id),
        authority,
        gateway,
        writable: plan
            .landlock
            .rules
            .iter()
            .filter(|rule| rule.access == isolation::FsAccess::ReadWrite)
            .map(|rule| rule.path.clone())
            .collect(),
    };
    // Connected, the main process's streams are the supervisor's, so that
    // `connect` can attach to it.
    let (main, stdio) = match &egress.gateway {
        Some(_) if !options.idle => {
            let (main, stdio) = if options.tty {
                MainProcess::start_tty().context("creating the main process's terminal")?
            } else {
                MainProcess::start().context("creating the main process's pipes")?
            };
            (Some(main), Some(stdio))
        }
        _ => (None, None),
    };
    Ok(Prepared {
        plan,
        workspace,
        cgroup,
        limits,
        signals,
        egress,
        main,
        stdio,
        oom_file: options.oom_file,
    })
}

/// What [`prepare`] made, for the launch and the supervision.
pub(super) struct Prepared {
    pub plan: isolation::Plan,
    /// Lives until the sandbox has ended (a workspace we created is
    /// removed when it is dropped).
    pub workspace: Workspace,
    pub cgroup: Option<Cgroup>,
    pub limits: Limits,
    pub signals: SigSet,
    pub egress: Egress,
    pub main: Option<Arc<MainProcess>>,
    pub stdio: Option<[std::os::fd::OwnedFd; 3]>,
    pub oom_file: Option<PathBuf>,
}

/// A name for this sandbox, unique on the host: events carry it, and a
/// generated workspace lives under it.
/// Writes the sandbox's `passwd` and `group` (the host's, with `sandbox`
/// as `id`) into `<root>/accounts`, bound over its `/etc` files.
fn write_accounts(root: &Path, id: u32) -> anyhow::Result<PathBuf> {
    let dir = root.join("accounts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let (passwd, group) = identity::account_files(&read("/etc/passwd"), &read("/etc/group"), id);
    for (name, text) in [("passwd", passwd), ("group", group)] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

fn sandbox_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("run-{}-{nanos:x}", std::process::id())
}

/// Whether `path` will exist inside the sandbox: `/sandbox`, `/tmp` and
/// `/proc` are the sandbox's own; the rest is the host's.
fn exists_in_sandbox(path: &str, workdir: &Path) -> bool {
    if let Some(rest) = path.strip_prefix(SANDBOX_DIR) {
        return rest.is_empty() || workdir.join(rest.trim_start_matches('/')).exists();
    }
    if path == "/tmp" || path == "/proc" || path == crate::tls::SANDBOX_TLS_DIR {
        return true; // made in the sandbox's own root
    }
    Path::new(path).exists()
}

fn parse_env(values: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|item| {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                None => (item.clone(), std::env::var(item).unwrap_or_default()),
            };
            if key.is_empty() || key.contains('\0') || value.contains('\0') {
                bail!("invalid --env {item:?}: expected KEY=VALUE or KEY");
            }
            Ok((key, value))
        })
        .collect()
}

/// A workdir the supervisor owns the lifecycle of (a container's, the
/// image's; the process driver's, under the sandbox's directory, kept
/// across stop/start): created when missing, and handed to the agent when
/// root owns it (an image that made it for another user keeps its choice).
fn prepare_created_workdir(dir: &Path, credentials: &isolation::Credentials) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the workdir {}", dir.display()))?;
    // Not followed: an image whose workdir links elsewhere (say to /etc)
    // must not make the agent the owner of that.
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("--workdir {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the workdir {} is not a directory (a symlink?); the image must have a real {} or none",
            dir.display(),
            dir.display()
        );
    }
    if meta.uid() == 0 {
        nix::unistd::chown(
            dir,
            Some(Uid::from_raw(credentials.uid)),
            Some(Gid::from_raw(credentials.gid)),
        )
        .with_context(|| format!("handing {} to the sandbox user", dir.display()))?;
    }
    Ok(())
}

/// The sandbox's state directory (`<state>/sandboxes/<id>`, removed on
/// exit) and the host directory mounted at `/sandbox`: `--workdir`, or
/// `workspace/` inside the state directory.
pub(super) struct Workspace {
    path: PathBuf,
    root: PathBuf,
}

impl Workspace {
    fn prepare(
        workdir: Option<&Path>,
        credentials: &isolation::Credentials,
        id: &str,
    ) -> anyhow::Result<Workspace> {
        let given = match workdir {
            Some(dir) => {
                let path = dir
                    .canonicalize()
                    .with_context(|| format!("--workdir {}", dir.display()))?;
                if !path.is_dir() {
                    bail!("--workdir {} is not a directory", dir.display());
                }
                Some(path)
            }
            None => None,
        };
        let root = state_dir(&ProcessEnv)?.join("sandboxes").join(id);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the sandbox state directory {}", root.display()))?;
        let workspace = Workspace {
            path: given.clone().unwrap_or_else(|| root.join("workspace")),
            root,
        };
        if given.is_none() {
            std::fs::create_dir(&workspace.path)
                .with_context(|| format!("creating the workspace {}", workspace.path.display()))?;
            nix::unistd::chown(
                &workspace.path,
                Some(Uid::from_raw(credentials.uid)),
                Some(Gid::from_raw(credentials.gid)),
            )
            .with_context(|| format!("handing {} to the sandbox user", workspace.path.display()))?;
        }
        Ok(workspace)
    }

    /// Where the TLS trust files are written (bound read-only into the sandbox).
    fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // The agent wrote the workspace: no recursion, few descriptors.
        if let Err(error) = openshell_core::fs::remove_tree(&self.root) {
            tracing::warn!(%error, path = %self.root.display(), "cannot remove the sandbox state directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn agent() -> isolation::Credentials {
        isolation::Credentials {
            uid: 4321,
            gid: 4321,
            groups: vec![4321],
            user: None,
        }
    }

    // As root, like the supervisor (CI runs the tests as root).
    #[test]
    fn a_container_workdir_is_created_and_handed_over_but_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("sandbox");
        prepare_created_workdir(&made, &agent()).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().uid(), 4321);

        let elsewhere = dir.path().join("etc");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = dir.path().join("linked");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let error = prepare_created_workdir(&link, &agent()).unwrap_err();
        assert!(error.to_string().contains("is not a directory"), "{error}");
        assert_eq!(
            std::fs::metadata(&elsewhere).unwrap().uid(),
            0,
            "followed the link"
        );
    }
}
