//! `openshell-sandbox run`: one sandboxed command, standalone or connected
//! to a gateway ([`crate::session`]).
//!
//! Loads the policy (or the default), resolves the child's identity and
//! workspace on the host, builds the plan, launches, forwards signals, and
//! returns the command's exit code. Its state directory (with a generated
//! workspace and the TLS trust files) is removed afterwards; a `--workdir`
//! is never touched beyond being mounted.
//!
//! Standalone, the policy file is watched (and SIGHUP reloads it);
//! connected, the gateway delivers policy revisions instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, kill};
use nix::unistd::{Gid, Pid, Uid};

use openshell_core::paths::{ProcessEnv, state_dir};
use openshell_policy::Policy;
use openshell_policy::defaults::{default_policy, enrich_filesystem};

use crate::EXIT_LAUNCH_FAILED;
use crate::events::Events;
use crate::exec::Spawner;
use crate::init::FORWARDED;
use crate::isolation::limits::{Cgroup, Limits};
use crate::isolation::{self, Inputs, SANDBOX_DIR, identity};
use crate::launch::{self, Running};
use crate::main_process::MainProcess;
use crate::proxy::generation::{self, Reloader, Updater};
use crate::proxy::{self, caller::Identifier};
use crate::report::{LandlockReport, Report};
use crate::session::{self, Connection};
use crate::tls::Authority;

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
            let (main, stdio) =
                MainProcess::start().context("creating the main process's pipes")?;
            (Some(main), Some(stdio))
        }
        _ => (None, None),
    };
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
        if let Some(path) = &options.oom_file
            && let Err(error) = std::fs::write(path, format!("{kills}\n"))
        {
            tracing::warn!(%error, path = %path.display(), "cannot record the out-of-memory kills");
        }
    }
    drop(cgroup);
    result
    // `workspace` is dropped here, after the child exited: a workspace we
    // created is removed.
}

/// What the egress proxy needs from the launch.
struct Egress {
    ready_file: Option<PathBuf>,
    policy: Policy,
    policy_path: Option<PathBuf>,
    events: Events,
    authority: Arc<Authority>,
    gateway: Option<Connected>,
    /// The paths the agent can write (for [`Identifier::with_writable`]).
    writable: Vec<String>,
}

/// What connected mode needs besides the proxy's parts.
struct Connected {
    connection: Connection,
    events: tokio::sync::mpsc::Receiver<String>,
    policy_version: i64,
    plan: isolation::Plan,
    scratch: PathBuf,
}

fn supervise(
    mut running: Running,
    signals: SigSet,
    egress: Egress,
    main: Option<Arc<MainProcess>>,
) -> anyhow::Result<i32> {
    if let Some(Report::Failed {
        stage,
        message,
        exit_code,
    }) = running.failure().cloned()
    {
        let _ = running.wait();
        return Err(LaunchFailed {
            code: exit_code,
            message: format!("{stage}: {message}"),
        }
        .into());
    }
    let enforced = running.reports.iter().find_map(|r| match r {
        Report::Enforced(enforced) => Some(enforced.clone()),
        Report::Failed { .. } => None,
    });
    let Some(enforced) = enforced else {
        let code = running.wait().unwrap_or(EXIT_LAUNCH_FAILED);
        return Err(LaunchFailed {
            code: EXIT_LAUNCH_FAILED,
            message: format!("the sandbox exited (status {code}) before reporting its isolation"),
        }
        .into());
    };
    log_landlock(&enforced.landlock);
    if let Some(path) = &egress.ready_file {
        std::fs::write(path, "ready\n")
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }
    tracing::info!(
        uid = enforced.uid,
        gid = enforced.gid,
        no_new_privs = enforced.no_new_privs,
        seccomp = enforced.seccomp,
        "agent child isolated"
    );

    // The proxy's threads inherit the blocked signal mask of this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("proxy")
        .enable_all()
        .build()
        .context("starting the proxy runtime")?;
    let (generations_tx, generations) = generation::channel(egress.policy);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let pid = running.pid;
    // Connected, policy comes from the gateway; SIGHUP goes to the agent.
    let watch_file = egress
        .gateway
        .is_none()
        .then_some(egress.policy_path.clone())
        .flatten();
    let reload_on_hup = watch_file.is_some().then_some(reload_tx);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || forward_signals(&signals, pid, reload_on_hup.as_ref()))
        .context("starting the signal forwarder")?;
    let launch::ProxyEnds { listener, sockets } = running
        .take_proxy()
        .context("the proxy listener was already taken")?;
    listener
        .set_nonblocking(true)
        .context("preparing the proxy listener")?;
    let shared = Arc::new(proxy::Shared {
        generations,
        identifier: Arc::new(
            Identifier::new(pid.as_raw() as u32, sockets).with_writable(egress.writable),
        ),
        events: egress.events,
        ignore_binary: relaxed_identity(),
        authority: egress.authority,
        resolver: proxy::Resolver::default(),
    });
    let identifier = shared.identifier.clone();
    // Who connects to the proxy is recorded at connect(2) (the agent sent
    // its filter's listener before exec); a connection without a record is
    // refused.
    let channel = running
        .connects
        .take()
        .context("the connect filter channel was already taken")?;
    let filter = proxy::connects::receive_listener(&channel, false)
        .context("receiving the connect filter")?
        .context("the sandbox started without its connect filter")?;
    let serving = identifier.clone();
    std::thread::Builder::new()
        .name("connect-filter".into())
        .spawn(move || proxy::connects::serve(filter, serving))
        .context("starting the connect filter thread")?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let _guard = runtime.enter();
    let listener =
        tokio::net::TcpListener::from_std(listener).context("registering the proxy listener")?;
    runtime.spawn(proxy::run(listener, shared, shutdown_rx.clone()));
    // The updater holds the generations' sender, which must outlive the
    // run: a dropped sender ends every tunnel.
    let updater = Updater::new(generations_tx, enrich);
    if let Some(path) = &watch_file {
        runtime.spawn(Reloader::new(path, updater.clone()).watch(reload_rx));
    }
    let session = if let Some(connected) = egress.gateway {
        let sandbox = session::Sandbox {
            updater: updater.clone(),
            policy_version: connected.policy_version,
            spawner: Spawner {
                plan: connected.plan,
                init_pid: pid.as_raw(),
                identifier,
                scratch: connected.scratch,
            },
            main: main.clone(),
        };
        Some(runtime.spawn(session::run(
            connected.connection,
            sandbox,
            connected.events,
            shutdown_rx.clone(),
        )))
    } else {
        None
    };
    let code = runtime
        .block_on(tokio::task::spawn_blocking(move || running.wait()))
        .context("waiting for the sandbox")?
        .context("waiting for the sandbox")?;
    if let Some(main) = &main {
        // The output's last bytes reach the log before the process ends.
        main.wait_output_end(std::time::Duration::from_secs(1));
        main.exited(code);
        // Attachments following the main process get its last output and
        // exit status through the session before it goes.
        if main.wait_detached(std::time::Duration::from_secs(1)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let _ = shutdown_tx.send(true);
    if let Some(session) = session {
        // The last decision events reach the gateway; a gateway that is
        // away (or still being dialed) is not waited for long.
        let _ = runtime.block_on(tokio::time::timeout(
            std::time::Duration::from_secs(3),
            session,
        ));
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(code)
}

/// `OPENSHELL_NETWORK_BINARY_IDENTITY=relaxed|disabled|endpoint-only|false|0`
/// turns binary matching off (docs/policy.md, "Binaries"); the default is required.
fn relaxed_identity() -> bool {
    std::env::var("OPENSHELL_NETWORK_BINARY_IDENTITY")
        .is_ok_and(|v| ["relaxed", "disabled", "endpoint-only", "false", "0"].contains(&v.trim()))
}

fn log_landlock(report: &LandlockReport) {
    for skipped in &report.skipped {
        tracing::warn!(path = %skipped.path, reason = %skipped.reason, "landlock: path skipped");
    }
    match &report.unavailable {
        Some(why) => tracing::error!(
            finding = "landlock-unavailable",
            reason = %why,
            "landlock is NOT enforced (best_effort): the child has no filesystem restrictions"
        ),
        None if !report.enforced => tracing::warn!(
            abi = report.abi,
            "landlock only partially enforced (best_effort)"
        ),
        None => tracing::info!(abi = report.abi, rules = report.rules, "landlock enforced"),
    }
}

fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set
}

fn forward_signals(
    signals: &SigSet,
    pid: Pid,
    reload: Option<&tokio::sync::mpsc::UnboundedSender<()>>,
) {
    while let Ok(signal) = signals.wait() {
        if signal == nix::sys::signal::Signal::SIGHUP
            && let Some(reload) = reload
        {
            tracing::info!("SIGHUP: reloading the policy");
            let _ = reload.send(());
            continue;
        }
        tracing::debug!(?signal, "forwarding signal to the sandbox");
        let _ = kill(pid, signal);
    }
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<(Policy, bool)> {
    let Some(path) = path else {
        return Ok((default_policy(), true));
    };
    let validated = openshell_policy::load_file(path).map_err(|error| match error {
        openshell_policy::LoadPolicyError::Read { .. } => anyhow::Error::from(error),
        _ => anyhow::anyhow!("invalid policy {}:{:#}", path.display(), error.problems()),
    })?;
    for warning in &validated.warnings {
        tracing::warn!(policy = %path.display(), "{warning}");
    }
    Ok((enrich(validated.policy), false))
}

/// Baseline enrichment (docs/policy.md, "Default policy") with the paths that exist here.
fn enrich(mut policy: Policy) -> Policy {
    let added = enrich_filesystem(&mut policy.filesystem, |p| Path::new(p).exists());
    if !added.is_empty() {
        tracing::debug!(?added, "baseline paths added to the filesystem policy");
    }
    policy
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
struct Workspace {
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
