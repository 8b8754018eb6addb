//! The `process` driver: one `openshell-sandbox run` per sandbox on this
//! host, in its own process group (so it outlives a gateway restart), with
//! its files in `<state>/sandboxes/<id>/`:
//!
//! | file | written by | meaning |
//! |---|---|---|
//! | `policy.yaml` | driver | the policy it starts with (absent: the default) |
//! | `token` | driver | the supervisor's sandbox token (0600) |
//! | `env` | driver | the `-e` variables, NUL-separated (0600; never argv) |
//! | `output.log` | supervisor's stdout/stderr | the main process's output |
//! | `events.jsonl` | gateway | egress decisions the supervisor pushed |
//! | `ready` | supervisor | every isolation layer is in place |
//! | `exit_code` | supervisor | how it ended (also after a gateway restart) |
//! | `pid` | driver | the supervisor's pid |
//! | `oom_kills` | supervisor | processes killed at the memory limit (a sandbox event) |
//! | `workspace/` | supervisor (created, handed to the agent) | `/sandbox`, kept across stop/start |
//!
//! Each supervisor runs in connected mode: it dials the gateway back with
//! its token ([`Connect`]) for policy updates, event push and exec.
//!
//! Phases: Provisioning → Ready (on `ready`) → Stopped with the exit code,
//! or Error when the supervisor failed before `ready` (exit 125).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openshell_driver::{Lifecycle, Phase, Sandbox, Spec};

use openshell_core::launch::SupervisorLaunch;

use super::{
    Connect, Driver, DriverError, PolicyRevision, io, remove_dir, remove_stale, write_private,
};

/// How often a sandbox the gateway did not start itself is checked.
const POLL: Duration = Duration::from_millis(100);
/// How long `delete` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The process driver.
#[derive(Debug, Clone)]
pub struct ProcessDriver {
    root: PathBuf,
    supervisor: PathBuf,
    store: std::sync::Arc<dyn Lifecycle>,
    connect: Connect,
}

/// The number a marker file (`pid`, `exit_code`) holds.
fn read_number(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

impl ProcessDriver {
    /// Sandboxes live under `root`; `supervisor` is the `openshell-sandbox` binary.
    pub fn new(
        root: &Path,
        supervisor: &Path,
        store: std::sync::Arc<dyn Lifecycle>,
        connect: Connect,
    ) -> ProcessDriver {
        ProcessDriver {
            root: root.to_owned(),
            supervisor: supervisor.to_owned(),
            store,
            connect,
        }
    }

    /// The sandbox's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Starts the supervisor and a task that records the phase changes.
    fn spawn(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError> {
        let dir = self.dir(&sandbox.id);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        // A restart: the previous run's markers must not speak for this one.
        for stale in ["ready", "exit_code", "pid", "oom_kills"] {
            remove_stale(&dir.join(stale))?;
        }
        let log_path = self.output_log(&sandbox.id);
        // Appended to (by the supervisor's stdout and stderr alike), so that
        // the supervisor can truncate it when it rotates it.
        remove_stale(&log_path)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("creating", &log_path))?;
        let log_err = log.try_clone().map_err(io("duplicating", &log_path))?;
        let mut launch = SupervisorLaunch {
            gateway: Some(self.connect.endpoint.clone()),
            sandbox_id: Some(sandbox.id.clone()),
            token_file: Some(dir.join("token")),
            gateway_ca: self.connect.ca_cert.clone(),
            // The workspace is the sandbox's, not the run's: it survives
            // stop/start and goes with delete (the whole directory).
            workdir: Some(dir.join("workspace")),
            create_workdir: true,
            ready_file: Some(dir.join("ready")),
            exit_code_file: Some(dir.join("exit_code")),
            // By file, never argv: `-e API_KEY=…` must not show in `ps`.
            env_file: Some(dir.join("env")),
            oom_file: Some(dir.join("oom_kills")),
            rotate_output: Some(openshell_core::fs::MAX_LOG_BYTES),
            cpu: (sandbox.spec.cpu_millis > 0).then_some(sandbox.spec.cpu_millis),
            memory: (sandbox.spec.memory_bytes > 0).then_some(sandbox.spec.memory_bytes),
            pids: (sandbox.spec.pids > 0).then_some(sandbox.spec.pids),
            ..SupervisorLaunch::default()
        };
        if let Some(PolicyRevision { version, yaml }) = policy {
            let path = dir.join("policy.yaml");
            std::fs::write(&path, yaml).map_err(io("writing", &path))?;
            launch.policy = Some(path);
            launch.policy_version = Some(version);
        }
        write_private(&dir.join("token"), &self.connect.tokens.mint(&sandbox.id))?;
        write_private(&dir.join("env"), &super::env_file(&sandbox.spec.env))?;
        launch.command = if sandbox.spec.command.is_empty() {
            // An idle sandbox: a main process that waits to be stopped.
            launch.idle = true;
            vec!["sleep".to_owned(), "infinity".to_owned()]
        } else {
            launch.tty = sandbox.spec.tty;
            sandbox.spec.command.clone()
        };
        let mut command = tokio::process::Command::new(&self.supervisor);
        command
            .arg("run")
            .args(launch.to_args())
            // The supervisor's own state (workspace, TLS trust files) stays
            // inside the sandbox's directory.
            .env("XDG_STATE_HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|source| DriverError::Spawn {
            binary: self.supervisor.clone(),
            source,
        })?;
        if let Some(pid) = child.id() {
            let pid_path = dir.join("pid");
            std::fs::write(&pid_path, pid.to_string()).map_err(io("writing", &pid_path))?;
        }
        let driver = self.clone();
        let id = sandbox.id.clone();
        tokio::spawn(async move { driver.watch_child(id, child).await });
        Ok(())
    }

    async fn mark_ready_when_ready(&self, id: &str, ready: &mut bool) {
        if !*ready && self.dir(id).join("ready").exists() {
            *ready = true;
            if let Err(error) = self.store.mark_ready(id).await {
                tracing::error!(%error, sandbox = id, "recording phase Ready");
            }
        }
    }

    /// Follows a supervisor this gateway started until it exits.
    async fn watch_child(&self, id: String, mut child: tokio::process::Child) {
        let run = child.id().map(|pid| pid as i32);
        let mut ready = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = tokio::time::sleep(POLL) => self.mark_ready_when_ready(&id, &mut ready).await,
            }
        };
        self.mark_ready_when_ready(&id, &mut ready).await;
        let code = status
            .ok()
            .and_then(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().or_else(|| s.signal().map(|n| 128 + n))
            })
            .or_else(|| self.exit_code(&id));
        // A restart may already have replaced this run: then it speaks no more.
        if run.is_some() && self.pid(&id) == run {
            self.finish(&id, ready, code).await;
        }
    }

    /// Follows a supervisor found running at gateway start (not our child).
    async fn watch_pid(&self, id: String, pid: i32) {
        let mut ready = self.dir(&id).join("ready").exists();
        while alive(pid) {
            self.mark_ready_when_ready(&id, &mut ready).await;
            tokio::time::sleep(POLL).await;
        }
        let code = self.exit_code(&id);
        if self.pid(&id) == Some(pid) {
            self.finish(&id, ready, code).await;
        }
    }

    fn exit_code(&self, id: &str) -> Option<i32> {
        read_number(&self.dir(id).join("exit_code"))
    }

    async fn finish(&self, id: &str, ready: bool, code: Option<i32>) {
        if let Some(kills) = read_number(&self.dir(id).join("oom_kills")) {
            super::record_oom(self.store.as_ref(), id, u64::try_from(kills).ok()).await;
        }
        let phase = if ready { Phase::Stopped } else { Phase::Error };
        if let Err(error) = self.store.set_phase(id, phase, code).await {
            tracing::error!(%error, sandbox = id, "recording the end of a sandbox");
        }
        tracing::info!(
            sandbox = id,
            phase = phase.as_str(),
            ?code,
            "sandbox main process ended"
        );
    }

    fn pid(&self, id: &str) -> Option<i32> {
        read_number(&self.dir(id).join("pid"))
    }

    /// True while the sandbox's supervisor runs.
    fn is_running(&self, id: &str) -> bool {
        self.pid(id).is_some_and(alive)
    }

    /// Stops the supervisor (SIGTERM to its process group, which it
    /// forwards to the main process; SIGKILL after a grace period).
    async fn stop_supervisor(&self, id: &str) {
        let Some(pid) = self.pid(id).filter(|pid| alive(*pid)) else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(-pid);
        for signal in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGKILL,
        ] {
            let _ = nix::sys::signal::kill(group, signal);
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !alive(pid) {
                return;
            }
        }
    }

    /// Stops the supervisor and removes the sandbox's files.
    async fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.stop_supervisor(id).await;
        remove_dir(&self.dir(id))
    }

    /// At gateway start: picks up sandboxes whose supervisors outlived the
    /// previous gateway, and settles those that ended meanwhile.
    async fn reattach(&self, sandboxes: Vec<Sandbox>) {
        super::sweep_removed(&self.root);
        for sandbox in sandboxes {
            if !matches!(sandbox.phase, Phase::Provisioning | Phase::Ready) {
                continue;
            }
            let driver = self.clone();
            match self.pid(&sandbox.id).filter(|pid| alive(*pid)) {
                Some(pid) => {
                    tracing::info!(sandbox = %sandbox.name, pid, "reattached to a running sandbox");
                    tokio::spawn(async move { driver.watch_pid(sandbox.id, pid).await });
                }
                None => {
                    let ready = self.dir(&sandbox.id).join("ready").exists();
                    let code = self.exit_code(&sandbox.id);
                    self.finish(&sandbox.id, ready, code).await;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn validate(&self, spec: &Spec) -> Result<(), DriverError> {
        if !spec.image.is_empty() {
            return Err(DriverError::Refused(format!(
                "the process driver runs sandboxes on the gateway's host and cannot use the image '{}'\n\
                 hint: start a gateway with a container engine: openshell gateway start --driver docker (or podman)",
                spec.image
            )));
        }
        if spec.gpu > 0 {
            return Err(DriverError::Refused(
                "the process driver cannot pass GPUs through\n\
                 hint: start a gateway with a container engine: openshell gateway start --driver docker (or podman)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn create(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError> {
        self.spawn(sandbox, policy)
    }

    async fn stop(&self, id: &str) {
        self.stop_supervisor(id).await;
    }

    async fn delete(&self, id: &str) -> Result<(), DriverError> {
        self.remove(id).await
    }

    fn running(&self, id: &str) -> bool {
        self.is_running(id)
    }

    fn output_log(&self, id: &str) -> PathBuf {
        self.dir(id).join("output.log")
    }

    fn events_log(&self, id: &str) -> PathBuf {
        self.dir(id).join("events.jsonl")
    }

    async fn reconcile(&self, sandboxes: Vec<Sandbox>) {
        self.reattach(sandboxes).await;
    }
}
