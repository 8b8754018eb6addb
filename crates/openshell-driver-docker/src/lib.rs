//! The `docker` driver: one container per sandbox through the Docker Engine
//! API (bollard). Podman's Docker-compatible socket serves it too
//! ([`Engine::Podman`]).
//!
//! Each container:
//! - runs the host's supervisor binary, bind-mounted read-only, as its
//!   entrypoint, as root with only ten capabilities and a seccomp profile
//!   that refuses what the supervisor never needs (`container.rs`);
//! - sits on the gateway's own bridge network
//!   (`openshell-<gateway>-<instance>`),
//!   where the gateway also listens, on the bridge's address, which the
//!   container knows as [`HOST_ALIAS`];
//! - gets its runtime material from `<state>/sandboxes/<id>/` on the host:
//!   `gateway/` (token, CA, policy; read-only at `/run/openshell/gateway`) and
//!   `status/` (the supervisor's `ready` marker; at `/run/openshell/status`). The
//!   supervisor hides `/run/openshell` from the agent whatever the policy.
//! - is labelled with the gateway's name, its instance id (random, kept in
//!   its state directory: two gateways of the same name on one engine stay
//!   apart) and the sandbox's id, so a restarted gateway finds its
//!   containers and removes orphans.
//!
//! Phases follow the engine's container events (`start`, `die`), not a
//! polling loop: Ready comes with the supervisor's session (see
//! `session.rs`), the end with `die`: Stopped with the exit code when the
//! supervisor had reported ready, else Error (with the last output lines in
//! the sandbox's events). The container's output (the main process's) is
//! followed into `output.log` for `WatchSandbox`.
//!
//! This file holds the driver's lifecycle (runs, output, events, ends);
//! `engine.rs` the connection, labels, network and `gateway destroy`;
//! `container.rs` a container's runtime material and definition;
//! `image.rs` the checks on an image before it is used.

mod container;
mod engine;
mod image;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, StopContainerOptionsBuilder,
};
use tokio_stream::StreamExt;

pub use engine::{Engine, destroy, instance_id};

use container::seccomp_profile;
use engine::{
    SANDBOX_LABEL, connect_engine, engine_error, engine_message, ensure_network, instance_filter,
    network_name, not_found, remove_container,
};
use openshell_driver::{
    Connect, Driver, DriverError, Lifecycle, Phase, PolicyRevision, Sandbox, Spec, io, remove_dir,
};

/// The name containers know the gateway's host by.
pub const HOST_ALIAS: &str = "host.openshell.internal";
/// The image used when a sandbox names none.
pub const DEFAULT_IMAGE: &str = "openshell/sandbox:latest";
/// How long `stop` lets the supervisor end the main process.
const STOP_GRACE_SECS: i32 = 10;
/// How long a `die` waits for the run's output copy to end before asking
/// the engine whether the container still runs.
const FOLLOWER_GRACE: Duration = Duration::from_millis(500);
/// Output lines recorded with a sandbox that failed before it was ready.
const ERROR_TAIL_LINES: usize = 5;

/// How to reach an engine and what to run on it.
#[derive(Debug, Clone)]
pub struct Options {
    pub engine: Engine,
    /// `unix://…`; `None`: [`Engine::default_socket`].
    pub socket: Option<String>,
    /// The gateway's name (labels, the network's name).
    pub gateway: String,
    /// The gateway's instance id ([`instance_id`]).
    pub instance: String,
    /// The image for sandboxes that name none.
    pub image: String,
    /// The host's `openshell-sandbox` binary.
    pub supervisor: PathBuf,
    /// Where each sandbox's directory lives.
    pub root: PathBuf,
    /// The gateway's port and scheme, as the host sees them.
    pub connect: Connect,
    pub port: u16,
}

/// A running container's run.
#[derive(Debug)]
struct Live {
    /// When this gateway started it (ns since the epoch; 0: found running):
    /// a `die` event from before belongs to an earlier run.
    since_nanos: i64,
    /// The task that copies its output into `output.log`.
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Live {
    fn starting(since_nanos: i64) -> Live {
        Live {
            since_nanos,
            follower: None,
        }
    }
}

/// A container's output stream (attached, or its logs).
type Output = std::pin::Pin<
    Box<
        dyn tokio_stream::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;

/// The docker driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    docker: Docker,
    options: Options,
    store: std::sync::Arc<dyn Lifecycle>,
    network: String,
    /// The gateway's address on the network, where containers reach it.
    gateway_ip: IpAddr,
    /// Sandboxes whose container runs.
    live: Mutex<HashMap<String, Live>>,
    /// Held while a container starts and while an end is settled, so that
    /// settling never sees a container halfway through its next start.
    transitions: tokio::sync::Mutex<()>,
    /// The containers' `seccomp=` security option, made once: the profile
    /// itself for Docker, the path of its file for Podman.
    seccomp_option: String,
}

impl DockerDriver {
    /// Connects, makes sure the gateway's network exists, and starts
    /// following container events.
    pub async fn connect(
        options: Options,
        store: std::sync::Arc<dyn Lifecycle>,
    ) -> Result<DockerDriver, DriverError> {
        let engine = options.engine;
        let docker = connect_engine(engine, options.socket.as_deref()).await?;
        let gateway_ip =
            ensure_network(&docker, engine, &options.gateway, &options.instance).await?;
        std::fs::create_dir_all(&options.root).map_err(io("creating", &options.root))?;
        let profile = seccomp_profile().to_string();
        let seccomp_option = match engine {
            Engine::Docker => format!("seccomp={profile}"),
            Engine::Podman => {
                let path = options.root.join("seccomp.json");
                std::fs::write(&path, &profile).map_err(io("writing", &path))?;
                format!("seccomp={}", path.display())
            }
        };
        let driver = DockerDriver {
            inner: Arc::new(Inner {
                docker,
                network: network_name(&options.gateway, &options.instance),
                options,
                store,
                gateway_ip,
                live: Mutex::new(HashMap::new()),
                transitions: tokio::sync::Mutex::new(()),
                seccomp_option,
            }),
        };
        let events = driver.clone();
        tokio::spawn(async move { events.follow_events().await });
        Ok(driver)
    }

    /// Where containers reach the gateway (the bridge's address on the
    /// host): the gateway must listen there too.
    pub fn gateway_ip(&self) -> IpAddr {
        self.inner.gateway_ip
    }

    /// The live map (a panic while holding it leaves it usable).
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn engine(&self) -> Engine {
        self.inner.options.engine
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.inner.options.root.join(id)
    }

    fn container_name(&self, id: &str) -> String {
        format!("openshell-{}-{}", self.inner.options.gateway, id)
    }

    fn image_of(&self, spec: &Spec) -> String {
        if spec.image.is_empty() {
            self.inner.options.image.clone()
        } else {
            spec.image.clone()
        }
    }

    /// The container's output since `since` (s since the epoch), followed
    /// until it stops: for containers this gateway did not start.
    fn logs_since(&self, id: &str, since: i32) -> Output {
        Box::pin(
            self.inner.docker.logs(
                &self.container_name(id),
                Some(
                    LogsOptionsBuilder::new()
                        .follow(true)
                        .stdout(true)
                        .stderr(true)
                        .since(since)
                        .build(),
                ),
            ),
        )
    }

    /// Copies `output` into `output.log` (rewritten) until it ends. An
    /// attachment made before the start ends exactly when the container's
    /// process does, so the log is complete when the `die` is handled.
    fn copy_output(
        &self,
        id: &str,
        mut output: Output,
        attachment: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    ) -> tokio::task::JoinHandle<()> {
        let path = self.output_log(id);
        let id = id.to_owned();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Held open until the output ends.
            let _attachment = attachment;
            let mut file = match tokio::fs::File::create(&path).await {
                Ok(file) => file,
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "creating the output log");
                    return;
                }
            };
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(output) => {
                        let bytes = output.into_bytes();
                        let full = openshell_core::fs::rotate_if_full(
                            &path,
                            bytes.len() as u64,
                            openshell_core::fs::MAX_LOG_BYTES,
                        );
                        if matches!(full, Ok(true)) {
                            file = match tokio::fs::File::create(&path).await {
                                Ok(file) => file,
                                Err(error) => {
                                    tracing::error!(%error, path = %path.display(), "creating the output log");
                                    return;
                                }
                            };
                        }
                        if let Err(error) = file.write_all(&bytes).await {
                            tracing::error!(%error, path = %path.display(), "writing the output log");
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %engine_message(&error), sandbox = %id, "following the output");
                        break;
                    }
                }
            }
            let _ = file.flush().await;
        })
    }

    /// Starts (or restarts) the sandbox's container.
    async fn run(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError> {
        let engine = self.engine();
        let docker = &self.inner.docker;
        let name = self.container_name(&sandbox.id);
        self.write_material(sandbox, policy)?;
        let exists = match docker.inspect_container(&name, None).await {
            Ok(_) => true,
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(engine_error(engine, format!("inspecting {name}"))(e)),
        };
        if !exists {
            let image = self.image_of(&sandbox.spec);
            let image_user = self
                .ensure_image(&image, sandbox.spec.image.is_empty())
                .await?;
            docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                    self.container_body(sandbox, &image, image_user),
                )
                .await
                .map_err(|e| match e {
                    bollard::errors::Error::DockerResponseServerError { message, .. } => {
                        DriverError::Refused(format!(
                            "the {} engine refused the container: {message}",
                            engine.name()
                        ))
                    }
                    other => engine_error(engine, format!("creating {name}"))(other),
                })?;
            if let Err(refusal) = self.check_loader(&name, &image).await {
                remove_container(docker, engine, &name).await?;
                return Err(refusal);
            }
        }
        let _transition = self.inner.transitions.lock().await;
        // Attached before the start: all of this run's output, none of an
        // earlier run's.
        let attached = docker
            .attach_container(
                &name,
                Some(
                    AttachContainerOptionsBuilder::new()
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .build(),
                ),
            )
            .await
            .map_err(engine_error(engine, format!("attaching to {name}")))?;
        self.live()
            .insert(sandbox.id.clone(), Live::starting(now_nanos()));
        if let Err(e) = docker.start_container(&name, None).await {
            self.live().remove(&sandbox.id);
            return Err(match e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    DriverError::Refused(format!(
                        "the {} engine could not start the container: {message}",
                        engine.name()
                    ))
                }
                other => engine_error(engine, format!("starting {name}"))(other),
            });
        }
        let follower = self.copy_output(&sandbox.id, attached.output, Some(attached.input));
        if let Some(live) = self.live().get_mut(&sandbox.id) {
            live.follower = Some(follower);
        }
        Ok(())
    }

    /// Follows the engine's events for this gateway's containers; after an
    /// interruption (the engine restarted), settles what ended meanwhile.
    async fn follow_events(&self) {
        let mut filters = instance_filter(&self.inner.options.instance);
        filters.insert("type".into(), vec!["container".into()]);
        // No `event` filter: Podman 4 matches its own name ("died") there,
        // while both report the action as "die".
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut events = self
                .inner
                .docker
                .events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        backoff = Duration::from_millis(200);
                        if event.action.as_deref() != Some("die") {
                            continue;
                        }
                        let at = event.time_nano.unwrap_or(i64::MAX);
                        let mut attributes =
                            event.actor.and_then(|a| a.attributes).unwrap_or_default();
                        let code = attributes
                            .get("exitCode")
                            .and_then(|c| c.parse::<i32>().ok());
                        if let Some(id) = attributes.remove(SANDBOX_LABEL) {
                            let driver = self.clone();
                            tokio::spawn(async move { driver.ended(&id, Some((at, code))).await });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %engine_message(&error), engine = self.engine().name(), "container events interrupted");
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let live: Vec<String> = self.live().keys().cloned().collect();
            for id in live {
                self.ended(&id, None).await;
            }
        }
    }

    /// Records the end of the sandbox's current run, unless it still runs.
    /// `event` is the `die` event's time (ns since the epoch) and exit
    /// code, when one triggered this. An event from an earlier run, which
    /// Podman may deliver after the next start, changes nothing, and neither
    /// does one for a run already settled.
    ///
    /// The run's output copy is the first witness: it ends exactly when the
    /// container's process does (and the log is then complete). Only when it
    /// does not end promptly, or there is none, is the engine asked (an
    /// inspect right after a death can take tens of milliseconds).
    async fn ended(&self, id: &str, event: Option<(i64, Option<i32>)>) {
        let _transition = self.inner.transitions.lock().await;
        let Some((since, follower)) = self
            .live()
            .get_mut(id)
            .map(|live| (live.since_nanos, live.follower.take()))
        else {
            return;
        };
        if event.is_some_and(|(at, _)| at < since) {
            self.restore_follower(id, since, follower);
            return;
        }
        let mut witnessed = false;
        let mut follower = follower;
        if let Some(handle) = follower.as_mut() {
            witnessed = tokio::time::timeout(FOLLOWER_GRACE, handle).await.is_ok();
        }
        if witnessed {
            follower = None; // done (a JoinHandle must not be awaited twice)
        }
        let code = match event {
            Some((_, Some(code))) if witnessed => Some(code),
            _ => {
                let (running, code) = self.container_state(id).await;
                if running != Some(false) {
                    // Still running (a late event of an earlier run), or the
                    // engine could not say.
                    self.restore_follower(id, since, follower.filter(|f| !f.is_finished()));
                    return;
                }
                if let Some(handle) = follower.take() {
                    // The process ended: its output's end reaches the log
                    // before the phase says so.
                    let _ = tokio::time::timeout(Duration::from_secs(2), handle).await;
                }
                code
            }
        };
        // Only this run's entry: a new run may have replaced it meanwhile.
        {
            let mut live = self.live();
            match live.get(id) {
                Some(current) if current.since_nanos == since => {
                    live.remove(id);
                }
                _ => return,
            }
        }
        self.finish(id, code).await;
    }

    /// Puts a run's output copy back after an end that was not its own.
    fn restore_follower(
        &self,
        id: &str,
        since: i64,
        follower: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(live) = self.live().get_mut(id)
            && live.since_nanos == since
            && live.follower.is_none()
        {
            live.follower = follower;
        }
    }

    /// Whether the container runs (`None`: the engine did not answer; a
    /// missing container does not run) and its last exit code.
    async fn container_state(&self, id: &str) -> (Option<bool>, Option<i32>) {
        match self
            .inner
            .docker
            .inspect_container(&self.container_name(id), None)
            .await
        {
            Ok(inspect) => {
                let state = inspect.state;
                let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
                let code = state
                    .and_then(|s| s.exit_code)
                    .and_then(|c| i32::try_from(c).ok());
                (Some(running), code)
            }
            Err(e) if not_found(&e) => (Some(false), None),
            Err(error) => {
                tracing::warn!(error = %engine_message(&error), sandbox = id, "inspecting a container");
                (None, None)
            }
        }
    }

    /// Stopped with the exit code when the supervisor had reported ready,
    /// else Error with the last output lines recorded.
    async fn finish(&self, id: &str, code: Option<i32>) {
        let store = &self.inner.store;
        let current = match store.get_sandbox_by_id(id).await {
            Ok(Some(sandbox)) => sandbox,
            Ok(None) => return, // deleted
            Err(error) => {
                tracing::error!(%error, sandbox = id, "reading a sandbox");
                return;
            }
        };
        if matches!(
            current.phase,
            Phase::Stopped | Phase::Error | Phase::Deleting
        ) {
            return;
        }
        let status = self.dir(id).join("status");
        if let Some(kills) = std::fs::read_to_string(status.join("oom_kills"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            let _ = std::fs::remove_file(status.join("oom_kills"));
            openshell_driver::record_oom(store.as_ref(), id, Some(kills)).await;
        }
        let ready = status.join("ready").exists();
        if ready && let Err(error) = store.mark_ready(id).await {
            tracing::error!(%error, sandbox = id, "recording phase Ready");
        }
        let phase = if ready { Phase::Stopped } else { Phase::Error };
        if !ready {
            let tail = last_lines(&self.output_log(id), ERROR_TAIL_LINES);
            tracing::warn!(sandbox = %current.name, ?code, output = %tail, "sandbox container ended before it was ready");
            if let Err(error) = store
                .add_event(
                    id,
                    &format!(
                        "container exited ({}) before ready: {tail}",
                        code.map_or("?".into(), |c| c.to_string())
                    ),
                )
                .await
            {
                tracing::error!(%error, sandbox = id, "recording an event");
            }
        }
        if let Err(error) = store.set_phase(id, phase, code).await {
            tracing::error!(%error, sandbox = id, "recording the end of a sandbox");
        }
        tracing::info!(sandbox = %current.name, phase = phase.as_str(), ?code, "sandbox container ended");
    }
}

/// The last `n` lines of a file, joined with " | ".
fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        self.engine().name()
    }

    async fn validate(&self, spec: &Spec) -> Result<(), DriverError> {
        if spec.gpu > 0 && !self.gpu_support().await? {
            return Err(DriverError::Refused(format!(
                "--gpu: the {} engine on the gateway's host cannot pass NVIDIA GPUs through \
                 (no 'nvidia' runtime and no CDI device nvidia.com/gpu)\n\
                 hint: install the NVIDIA Container Toolkit there, or create the sandbox without --gpu",
                self.engine().name()
            )));
        }
        self.ensure_image(&self.image_of(spec), spec.image.is_empty())
            .await
            .map(|_| ())
    }

    async fn create(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError> {
        self.run(sandbox, policy).await
    }

    async fn stop(&self, id: &str) {
        let name = self.container_name(id);
        if let Err(error) = self
            .inner
            .docker
            .stop_container(
                &name,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(STOP_GRACE_SECS)
                        .build(),
                ),
            )
            .await
            && !not_found(&error)
        {
            tracing::warn!(error = %engine_message(&error), sandbox = id, "stopping the container");
        }
        // Settled now, not when the engine's event arrives (Podman's come
        // late, and its state may say running for a moment after the stop
        // returned): a start right after must find it stopped.
        for _ in 0..50 {
            if self.container_state(id).await.0 != Some(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ended(id, None).await;
    }

    async fn delete(&self, id: &str) -> Result<(), DriverError> {
        let follower = self.live().remove(id).and_then(|live| live.follower);
        remove_container(&self.inner.docker, self.engine(), &self.container_name(id)).await?;
        if let Some(follower) = follower {
            follower.abort();
        }
        remove_dir(&self.dir(id))
    }

    fn running(&self, id: &str) -> bool {
        self.live().contains_key(id)
    }

    fn output_log(&self, id: &str) -> PathBuf {
        self.dir(id).join("output.log")
    }

    fn events_log(&self, id: &str) -> PathBuf {
        self.dir(id).join("events.jsonl")
    }

    async fn reconcile(&self, sandboxes: Vec<Sandbox>) {
        openshell_driver::sweep_removed(&self.inner.options.root);
        let containers = match self
            .inner
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&instance_filter(&self.inner.options.instance))
                    .build(),
            ))
            .await
        {
            Ok(containers) => containers,
            Err(error) => {
                tracing::error!(error = %engine_message(&error), "listing this gateway's containers");
                return;
            }
        };
        let known: HashMap<&str, &Sandbox> = sandboxes.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut found = std::collections::HashSet::new();
        for container in &containers {
            let Some(id) = container.labels.as_ref().and_then(|l| l.get(SANDBOX_LABEL)) else {
                continue;
            };
            let Some(sandbox) = known.get(id.as_str()) else {
                // An orphan: its sandbox was deleted while the gateway was away.
                tracing::info!(sandbox = %id, "removing an orphaned container");
                if let Some(container_id) = &container.id
                    && let Err(error) =
                        remove_container(&self.inner.docker, self.engine(), container_id).await
                {
                    tracing::warn!(error = %error, "removing an orphaned container");
                }
                continue;
            };
            found.insert(id.clone());
            if !matches!(sandbox.phase, Phase::Provisioning | Phase::Ready) {
                continue;
            }
            let running = container
                .state
                .as_ref()
                .is_some_and(|s| matches!(s, bollard::models::ContainerSummaryStateEnum::RUNNING));
            if running {
                tracing::info!(sandbox = %sandbox.name, "reattached to a running container");
                let started = match self
                    .inner
                    .docker
                    .inspect_container(&self.container_name(id), None)
                    .await
                {
                    Ok(inspect) => inspect
                        .state
                        .and_then(|s| s.started_at)
                        .and_then(|t| openshell_core::time::Utc::parse_rfc3339(&t))
                        .and_then(|t| i32::try_from(t.to_unix()).ok())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                self.live().insert(id.clone(), Live::starting(0));
                let follower = self.copy_output(id, self.logs_since(id, started), None);
                if let Some(live) = self.live().get_mut(id.as_str()) {
                    live.follower = Some(follower);
                }
            } else {
                let (_, code) = self.container_state(id).await;
                self.finish(id, code).await;
            }
        }
        for sandbox in sandboxes {
            if matches!(sandbox.phase, Phase::Provisioning | Phase::Ready)
                && !found.contains(&sandbox.id)
            {
                tracing::warn!(sandbox = %sandbox.name, "its container is gone");
                self.finish(&sandbox.id, None).await;
            }
        }
    }
}
