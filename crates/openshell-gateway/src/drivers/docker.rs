//! The `docker` driver: one container per sandbox through the Docker Engine
//! API (bollard). Podman's Docker-compatible socket serves it too
//! ([`Engine::Podman`]).
//!
//! Each container:
//! - runs the host's supervisor binary, bind-mounted read-only, as its
//!   entrypoint, as root with only [`CAPABILITIES`] and a seccomp profile
//!   that refuses what the supervisor never needs ([`seccomp_profile`]);
//! - sits on the gateway's own bridge network (`openshell-<gateway>`),
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

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, HostConfig, HostConfigLogConfig,
    NetworkCreateRequest, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use tokio_stream::StreamExt;

use super::{Connect, Driver, DriverError};
use crate::store::{Phase, Sandbox, Spec, Store};

/// The name containers know the gateway's host by.
pub const HOST_ALIAS: &str = "host.openshell.internal";
/// The image used when a sandbox names none.
pub const DEFAULT_IMAGE: &str = "openshell/sandbox:latest";
/// Where the supervisor binary is mounted.
const SUPERVISOR: &str = "/opt/openshell/bin/openshell-sandbox";
/// The dynamic loader the host's supervisor binary asks for: an image
/// without it (musl, busybox) cannot run it.
#[cfg(target_arch = "x86_64")]
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
#[cfg(target_arch = "aarch64")]
const LOADER: &str = "/lib/ld-linux-aarch64.so.1";
/// Token, CA and policy, read-only.
const GATEWAY_DIR: &str = "/run/openshell/gateway";
/// The supervisor's `ready` marker.
const STATUS_DIR: &str = "/run/openshell/status";
/// The supervisor's own state (TLS trust files, scratch).
const STATE_DIR: &str = "/run/openshell/state";
/// The agent's working directory.
const WORKDIR: &str = "/sandbox";
/// Label: the gateway that made the container (its name, for people).
pub const GATEWAY_LABEL: &str = "openshell.gateway";
/// Label: the gateway instance that made the container (what filters use).
pub const INSTANCE_LABEL: &str = "openshell.gateway-instance";
/// Label: the sandbox's id.
const SANDBOX_LABEL: &str = "openshell.sandbox-id";
/// Label: the sandbox's name (for people reading `docker ps`).
const NAME_LABEL: &str = "openshell.sandbox";
/// What the supervisor needs: namespaces and mounts (SYS_ADMIN; with
/// SYS_CHROOT to join the sandbox's mount namespace for exec), the
/// sandbox's network (NET_ADMIN), the drop to the agent's user (SETUID,
/// SETGID, SETPCAP for the bounding set), naming the binary behind each
/// connection from `/proc` (SYS_PTRACE, DAC_READ_SEARCH), handing the
/// workdir to the agent (CHOWN) and signalling it (KILL). The agent child
/// keeps none of them.
pub const CAPABILITIES: [&str; 10] = [
    "SYS_ADMIN",
    "SYS_CHROOT",
    "NET_ADMIN",
    "SETUID",
    "SETGID",
    "SETPCAP",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "CHOWN",
    "KILL",
];
/// How long `stop` lets the supervisor end the main process.
const STOP_GRACE_SECS: i32 = 10;
/// How long a `die` waits for the run's output copy to end before asking
/// the engine whether the container still runs.
const FOLLOWER_GRACE: Duration = Duration::from_millis(500);
/// Output lines recorded with a sandbox that failed before it was ready.
const ERROR_TAIL_LINES: usize = 5;

/// Which engine answers on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The engine's socket: `DOCKER_HOST` (docker) or `CONTAINER_HOST`
    /// (podman) when they name a unix socket, else the engine's usual one.
    pub fn default_socket(self) -> String {
        let from_env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| v.starts_with("unix://"))
        };
        match self {
            Engine::Docker => {
                from_env("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
            }
            Engine::Podman => from_env("CONTAINER_HOST").unwrap_or_else(|| {
                if nix::unistd::Uid::effective().is_root() {
                    "unix:///run/podman/podman.sock".to_owned()
                } else {
                    let runtime = std::env::var("XDG_RUNTIME_DIR")
                        .unwrap_or_else(|_| format!("/run/user/{}", nix::unistd::Uid::effective()));
                    format!("unix://{runtime}/podman/podman.sock")
                }
            }),
        }
    }

    /// How to start the engine, for error hints.
    fn start_hint(self) -> &'static str {
        match self {
            Engine::Docker => "start it (`dockerd`, or `systemctl start docker`)",
            Engine::Podman => {
                "start its API service (`podman system service --time=0`, or `systemctl start podman.socket`)"
            }
        }
    }
}

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
    store: Store,
    network: String,
    /// The gateway's address on the network, where containers reach it.
    gateway_ip: IpAddr,
    /// Sandboxes whose container runs.
    live: Mutex<HashMap<String, Live>>,
    /// Held while a container starts and while an end is settled, so that
    /// settling never sees a container halfway through its next start.
    transitions: tokio::sync::Mutex<()>,
    /// Podman takes a seccomp profile by path, written here.
    seccomp_path: PathBuf,
}

fn engine_error(
    engine: Engine,
    what: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Engine {
        engine: engine.name(),
        what,
        source,
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_owned();
    move |source| DriverError::Io { op, path, source }
}

/// True when the engine answered 404.
fn not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The message an engine error carries, for users.
fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Connects to the engine named by `engine`/`socket` (API version
/// negotiated), or says how to start it.
pub async fn connect_engine(engine: Engine, socket: Option<&str>) -> Result<Docker, DriverError> {
    let socket = socket
        .map(str::to_owned)
        .unwrap_or_else(|| engine.default_socket());
    let refused = |detail: String| {
        DriverError::Refused(format!(
            "cannot reach the {} engine at {socket}: {detail}\nhint: {}, or start the gateway with --driver process",
            engine.name(),
            engine.start_hint()
        ))
    };
    let docker = Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| refused(engine_message(&e)))?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| refused("no answer within 10s".to_owned()))?
        .map_err(|e| refused(engine_message(&e)))?;
    Ok(docker)
}

/// The gateway instance's id, made on first use and kept in `state`.
pub fn instance_id(state: &Path) -> std::io::Result<String> {
    let path = state.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| std::io::Error::other("no randomness for the instance id"))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

/// What selects the containers of one gateway instance.
fn instance_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{INSTANCE_LABEL}={instance}")],
    )])
}

/// The gateway's network name.
fn network_name(gateway: &str, instance: &str) -> String {
    format!("openshell-{gateway}-{instance}")
}

/// Removes every container a gateway instance made, and its network
/// (`gateway destroy`); returns how many containers there were.
pub async fn destroy(
    engine: Engine,
    socket: Option<&str>,
    gateway: &str,
    instance: &str,
) -> Result<usize, DriverError> {
    let docker = connect_engine(engine, socket).await?;
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&instance_filter(instance))
                .build(),
        ))
        .await
        .map_err(engine_error(engine, "listing containers"))?;
    for container in &containers {
        if let Some(id) = &container.id {
            remove_container(&docker, engine, id).await?;
        }
    }
    match docker
        .remove_network(&network_name(gateway, instance))
        .await
    {
        Ok(()) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine_error(engine, "removing the network")(e)),
    }
    Ok(containers.len())
}

async fn remove_container(docker: &Docker, engine: Engine, id: &str) -> Result<(), DriverError> {
    match docker
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        // Already being removed (a concurrent delete).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(engine_error(engine, format!("removing container {id}"))(e)),
    }
}

/// A seccomp profile for the container (the supervisor's layer; the agent
/// child installs its own, stricter one): everything is allowed but
/// kernel-wide or escape-prone calls the supervisor never makes. Docker's
/// default profile cannot be used: it refuses `pivot_root`, which builds
/// the agent's root, and Landlock's calls on older engines.
pub fn seccomp_profile() -> serde_json::Value {
    const REFUSED: [&str; 50] = [
        "acct",
        "add_key",
        "adjtimex",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "personality",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "quotactl_fd",
        "reboot",
        "request_key",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "_sysctl",
        "sysfs",
        "syslog",
        "userfaultfd",
        "uselib",
        "vhangup",
        "vm86",
        "vm86old",
    ];
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": REFUSED.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}

/// The gateway's address on its network: the bridge's gateway address.
async fn ensure_network(
    docker: &Docker,
    engine: Engine,
    gateway: &str,
    instance: &str,
) -> Result<IpAddr, DriverError> {
    let name = network_name(gateway, instance);
    let inspect = match docker.inspect_network(&name, None).await {
        Ok(network) => network,
        Err(e) if not_found(&e) => {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    labels: Some(HashMap::from([
                        (GATEWAY_LABEL.to_owned(), gateway.to_owned()),
                        (INSTANCE_LABEL.to_owned(), instance.to_owned()),
                    ])),
                    ..Default::default()
                })
                .await
                .map_err(engine_error(engine, format!("creating the network {name}")))?;
            docker
                .inspect_network(&name, None)
                .await
                .map_err(engine_error(
                    engine,
                    format!("inspecting the network {name}"),
                ))?
        }
        Err(e) => {
            return Err(engine_error(
                engine,
                format!("inspecting the network {name}"),
            )(e));
        }
    };
    inspect
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|config| config.gateway)
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            DriverError::Refused(format!(
                "the network {name} has no IPv4 gateway address; remove it (`{} network rm {name}`) and restart the gateway",
                engine.name()
            ))
        })
}

impl DockerDriver {
    /// Connects, makes sure the gateway's network exists, and starts
    /// following container events.
    pub async fn connect(options: Options, store: Store) -> Result<DockerDriver, DriverError> {
        let engine = options.engine;
        let docker = connect_engine(engine, options.socket.as_deref()).await?;
        let gateway_ip =
            ensure_network(&docker, engine, &options.gateway, &options.instance).await?;
        std::fs::create_dir_all(&options.root).map_err(io("creating", &options.root))?;
        let seccomp_path = options.root.join("seccomp.json");
        std::fs::write(&seccomp_path, seccomp_profile().to_string())
            .map_err(io("writing", &seccomp_path))?;
        let driver = DockerDriver {
            inner: Arc::new(Inner {
                docker,
                network: network_name(&options.gateway, &options.instance),
                options,
                store,
                gateway_ip,
                live: Mutex::new(HashMap::new()),
                transitions: tokio::sync::Mutex::new(()),
                seccomp_path,
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

    /// The image's configured user, when it exists locally (pulled if the
    /// engine can).
    async fn ensure_image(
        &self,
        image: &str,
        default: bool,
    ) -> Result<Option<String>, DriverError> {
        let engine = self.engine();
        let docker = &self.inner.docker;
        match docker.inspect_image(image).await {
            Ok(found) => return Ok(found.config.and_then(|c| c.user)),
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(engine_error(
                    engine,
                    format!("inspecting the image {image}"),
                )(e));
            }
        }
        if default {
            return Err(DriverError::Refused(format!(
                "the default sandbox image '{image}' is not in the {} engine\n\
                 hint: build it offline with `images/sandbox/build --engine {}` from the OpenShell sources, \
                 or pass --from IMAGE",
                engine.name(),
                engine.name()
            )));
        }
        tracing::info!(image, "pulling");
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
        while let Some(progress) = pull.next().await {
            if let Err(e) = progress {
                return Err(DriverError::Refused(format!(
                    "the image '{image}' is not in the {} engine and pulling it failed: {}\n\
                     hint: build or load it locally first (`{} build`, `{} load`), or check the name",
                    engine.name(),
                    engine_message(&e),
                    engine.name(),
                    engine.name()
                )));
            }
        }
        match docker.inspect_image(image).await {
            Ok(found) => Ok(found.config.and_then(|c| c.user)),
            Err(e) => Err(engine_error(
                engine,
                format!("inspecting the image {image}"),
            )(e)),
        }
    }

    /// Refuses an image that cannot run the host's supervisor binary: one
    /// without glibc's dynamic loader (the engine would start it and the
    /// entrypoint would fail with a bare "no such file or directory").
    async fn check_loader(&self, container: &str, image: &str) -> Result<(), DriverError> {
        match self
            .inner
            .docker
            .get_container_archive_info(
                container,
                Some(bollard::query_parameters::ContainerArchiveInfoOptions {
                    path: LOADER.to_owned(),
                }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(DriverError::Refused(format!(
                "the image '{image}' cannot host the sandbox supervisor: it has no glibc ({LOADER} is missing)\n\
                 hint: the supervisor is the gateway host's binary and needs glibc 2.34 or newer in the image \
                 (Debian 12, Ubuntu 22.04 or newer); musl images such as Alpine, and busybox, cannot run it"
            ))),
            // The engine could not say: the start will tell.
            Err(error) => {
                tracing::debug!(error = %engine_message(&error), "checking the image's loader");
                Ok(())
            }
        }
    }

    /// Whether NVIDIA GPUs can be passed through: docker's `nvidia`
    /// runtime, or a CDI spec naming `nvidia.com/gpu`.
    async fn gpu_support(&self) -> Result<bool, DriverError> {
        let info = self
            .inner
            .docker
            .info()
            .await
            .map_err(engine_error(self.engine(), "reading the engine's info"))?;
        if info.runtimes.is_some_and(|r| r.contains_key("nvidia")) {
            return Ok(true);
        }
        let dirs = info
            .cdi_spec_dirs
            .unwrap_or_else(|| vec!["/etc/cdi".to_owned(), "/var/run/cdi".to_owned()]);
        Ok(dirs.iter().any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    std::fs::read_to_string(entry.path())
                        .is_ok_and(|text| text.contains("nvidia.com/gpu"))
                })
            })
        }))
    }

    /// Writes the runtime material the container mounts.
    fn write_material(
        &self,
        sandbox: &Sandbox,
        policy: Option<(i64, &str)>,
    ) -> Result<(), DriverError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir(&sandbox.id);
        let gateway = dir.join("gateway");
        let status = dir.join("status");
        for sub in [&gateway, &status] {
            std::fs::create_dir_all(sub).map_err(io("creating", sub))?;
            std::fs::set_permissions(sub, std::fs::Permissions::from_mode(0o700))
                .map_err(io("securing", sub))?;
        }
        let ready = status.join("ready");
        if let Err(e) = std::fs::remove_file(&ready)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io("removing", &ready)(e));
        }
        let connect = &self.inner.options.connect;
        super::process::write_private(&gateway.join("token"), &connect.tokens.mint(&sandbox.id))?;
        if let Some(ca) = &connect.ca_cert {
            let target = gateway.join("ca.crt");
            std::fs::copy(ca, &target).map_err(io("copying the CA to", &target))?;
        }
        let (version, yaml) = policy.unwrap_or((0, ""));
        // Revision 0 (an empty file): the supervisor takes its built-in default.
        super::process::write_private(&gateway.join("policy.yaml"), yaml)?;
        super::process::write_private(&gateway.join("policy-version"), &version.to_string())?;
        Ok(())
    }

    /// The container's definition.
    fn container_body(
        &self,
        sandbox: &Sandbox,
        image: &str,
        image_user: Option<String>,
    ) -> ContainerCreateBody {
        let options = &self.inner.options;
        let connect = &options.connect;
        let scheme = if connect.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let mut cmd: Vec<String> = vec![
            "run".into(),
            "--in-container".into(),
            "--workdir".into(),
            WORKDIR.into(),
            "--gateway".into(),
            format!("{scheme}://{HOST_ALIAS}:{}", options.port),
            "--sandbox-id".into(),
            sandbox.id.clone(),
            "--token-file".into(),
            format!("{GATEWAY_DIR}/token"),
            "--policy-version-file".into(),
            format!("{GATEWAY_DIR}/policy-version"),
            "--ready-file".into(),
            format!("{STATUS_DIR}/ready"),
        ];
        if connect.ca_cert.is_some() {
            cmd.extend(["--gateway-ca".into(), format!("{GATEWAY_DIR}/ca.crt")]);
        }
        // Always named: a revision set while the container is stopped
        // applies on its next start (policy-version 0: the default).
        cmd.extend(["--policy".into(), format!("{GATEWAY_DIR}/policy.yaml")]);
        if let Some(user) = image_user.filter(|u| !u.is_empty()) {
            cmd.extend(["--image-user".into(), user]);
        }
        for (key, value) in &sandbox.spec.env {
            cmd.extend(["--env".into(), format!("{key}={value}")]);
        }
        if sandbox.spec.command.is_empty() {
            cmd.extend([
                "--idle".into(),
                "--".into(),
                "sleep".into(),
                "infinity".into(),
            ]);
        } else {
            cmd.push("--".into());
            cmd.extend(sandbox.spec.command.iter().cloned());
        }
        let dir = self.dir(&sandbox.id);
        let engine = options.engine;
        let seccomp = match engine {
            Engine::Docker => format!("seccomp={}", seccomp_profile()),
            Engine::Podman => format!("seccomp={}", self.inner.seccomp_path.display()),
        };
        let ulimits = match engine {
            Engine::Docker => None,
            // Podman raises nofile and nproc far beyond the host's limits by
            // default, which fails where root lacks CAP_SYS_RESOURCE.
            Engine::Podman => Some(podman_ulimits()),
        };
        let gpu = i64::from(sandbox.spec.gpu);
        let (device_requests, devices) = match (gpu, engine) {
            (0, _) => (None, None),
            (n, Engine::Docker) => (
                Some(vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(n),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]),
                None,
            ),
            (_, Engine::Podman) => (
                None,
                Some(vec![DeviceMapping {
                    path_on_host: Some("nvidia.com/gpu=all".into()),
                    path_in_container: Some("nvidia.com/gpu=all".into()),
                    cgroup_permissions: Some("rwm".into()),
                }]),
            ),
        };
        ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec![SUPERVISOR.to_owned()]),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            working_dir: Some(WORKDIR.into()),
            env: Some(vec![format!("XDG_STATE_HOME={STATE_DIR}")]),
            labels: Some(HashMap::from([
                (GATEWAY_LABEL.to_owned(), options.gateway.clone()),
                (INSTANCE_LABEL.to_owned(), options.instance.clone()),
                (SANDBOX_LABEL.to_owned(), sandbox.id.clone()),
                (NAME_LABEL.to_owned(), sandbox.name.clone()),
            ])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:{SUPERVISOR}:ro", options.supervisor.display()),
                    format!("{}:{GATEWAY_DIR}:ro", dir.join("gateway").display()),
                    format!("{}:{STATUS_DIR}:rw", dir.join("status").display()),
                ]),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
                security_opt: Some(vec![seccomp]),
                network_mode: Some(self.inner.network.clone()),
                extra_hosts: Some(vec![format!("{HOST_ALIAS}:{}", self.inner.gateway_ip)]),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(
                        match engine {
                            Engine::Docker => "json-file",
                            Engine::Podman => "k8s-file",
                        }
                        .into(),
                    ),
                    config: None,
                }),
                ulimits,
                device_requests,
                devices,
                ..Default::default()
            }),
            ..Default::default()
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
                        if let Err(error) = file.write_all(&output.into_bytes()).await {
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
    async fn run(&self, sandbox: &Sandbox, policy: Option<(i64, &str)>) -> Result<(), DriverError> {
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
        let ready = self.dir(id).join("status").join("ready").exists();
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

/// This process's own limits for open files and processes (at most 32768
/// processes), so that the engine never has to raise them.
fn podman_ulimits() -> Vec<ResourcesUlimits> {
    use nix::sys::resource::{Resource, getrlimit};
    let limit = |name: &str, resource, cap: u64| {
        let (_, hard) = getrlimit(resource).unwrap_or((1024, 1024));
        let value = i64::try_from(hard.min(cap)).unwrap_or(i64::MAX);
        ResourcesUlimits {
            name: Some(name.to_owned()),
            soft: Some(value),
            hard: Some(value),
        }
    };
    vec![
        limit("nofile", Resource::RLIMIT_NOFILE, 1 << 20),
        limit("nproc", Resource::RLIMIT_NPROC, 32768),
    ]
}

#[tonic::async_trait]
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
        policy: Option<(i64, &str)>,
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
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &dir)(e)),
        }
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
                        .and_then(|t| chrono_secs(&t))
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

/// Seconds since the epoch of an RFC 3339 time as the engine writes it
/// (`2026-11-30T06:10:00.123456789Z`).
fn chrono_secs(text: &str) -> Option<i32> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: i64 = t.next()?.get(..2)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm); the engine writes UTC.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    i32::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times_become_epoch_seconds() {
        assert_eq!(chrono_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            chrono_secs("2026-11-30T06:10:05.123456789Z"),
            Some(1_796_019_005)
        );
        assert_eq!(chrono_secs("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(chrono_secs("garbage"), None);
    }

    #[test]
    fn the_seccomp_profile_refuses_what_the_supervisor_never_needs() {
        let profile = seccomp_profile();
        let refused = profile["syscalls"][0]["names"].as_array().unwrap();
        for name in [
            "kexec_load",
            "init_module",
            "bpf",
            "ptrace",
            "keyctl",
            "open_by_handle_at",
        ] {
            assert!(refused.iter().any(|n| n == name), "{name}");
        }
        for needed in [
            "pivot_root",
            "mount",
            "unshare",
            "setns",
            "landlock_create_ruleset",
        ] {
            assert!(!refused.iter().any(|n| n == needed), "{needed}");
        }
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
