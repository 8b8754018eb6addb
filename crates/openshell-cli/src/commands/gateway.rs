//! `openshell gateway start|stop|destroy|info` (gateways this CLI runs, or
//! reaches) and `openshell status`; registrations (`gateway
//! add|list|select|remove`) are [`super::registration`]'s.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::cli::OutputFormat;
use crate::client;
use crate::commands::Exit;
use crate::output;
use crate::pid::{self, alive};
use crate::registry::{Metadata, Registry, Source, Target, check_name};

/// How long `gateway start` waits for the gateway to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `gateway stop` waits for it to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `gateway start` options.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub name: String,
    pub port: u16,
    /// `None`: as before, else docker when its socket answers, else process.
    pub driver: Option<String>,
    pub plaintext: bool,
    pub disable_gateway_auth: bool,
    pub recreate: bool,
}

/// `${XDG_STATE_HOME}/openshell/gateways/<name>`.
pub(crate) fn state_dir(name: &str) -> anyhow::Result<PathBuf> {
    Ok(
        openshell_core::paths::state_dir(&openshell_core::paths::ProcessEnv)?
            .join("gateways")
            .join(name),
    )
}

/// A companion binary: `$<env>`, else `name` beside this binary, else
/// `name` on `PATH`.
pub fn companion_binary(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(
        || openshell_core::paths::companion_binary(name),
        PathBuf::from,
    )
}

/// The gateway a lifecycle command means: `given`, else the active one,
/// else the default `openshell`.
pub fn local_name(given: Option<&str>) -> anyhow::Result<String> {
    let name = match given {
        Some(name) => name.to_owned(),
        None => Registry::for_user()?
            .active()
            .unwrap_or_else(|| "openshell".to_owned()),
    };
    check_name(&name)?;
    Ok(name)
}

fn read_pid(state: &Path) -> Option<i32> {
    pid::read(&state.join("gateway.pid"))
}

/// The gateway's health, or why it cannot be reached.
pub(crate) fn probe(target: &Target) -> anyhow::Result<String> {
    client::runtime()?.block_on(async {
        let mut client = client::connect(target).await?;
        let health = client
            .health(openshell_proto::v1::HealthRequest {})
            .await
            .context("health check")?
            .into_inner();
        Ok(health.version)
    })
}

/// A timestamped step line of a long wait (`  [1.2s] Gateway ready`).
pub(crate) fn progress(started: Instant, message: &str) {
    output::step(&format!(
        "[{:.1}s] {message}",
        started.elapsed().as_secs_f64()
    ));
}

pub fn start(options: &StartOptions) -> anyhow::Result<Exit> {
    check_name(&options.name)?;
    let registry = Registry::for_user()?;
    let state = state_dir(&options.name)?;
    let scheme = if options.plaintext { "http" } else { "https" };
    let endpoint = format!("{scheme}://127.0.0.1:{}", options.port);
    if options.recreate {
        stop_process(&state)?;
        if state.exists() {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("removing {}", state.display()))?;
        }
    }
    let started = Instant::now();
    if let Some(pid) = read_pid(&state).filter(|pid| alive(*pid)) {
        if let (Some(wanted), Some(running)) = (&options.driver, recorded_driver(&state))
            && *wanted != running
        {
            bail!(
                "gateway '{}' is already running with the {running} driver\nhint: stop it first (openshell gateway stop --name {}), then start it with --driver {wanted}",
                options.name,
                options.name
            );
        }
        let metadata = registry.load(&options.name)?;
        if let Some(metadata) = metadata {
            registry.set_active(&options.name)?;
            output::success(&format!(
                "Gateway '{}' is already running (pid {pid})",
                options.name
            ));
            output::line(&format!("  Endpoint: {}", metadata.gateway_endpoint));
            return Ok(Exit::Success);
        }
    }
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing {}", state.display()))?;
    }
    let driver = match &options.driver {
        Some(driver) => driver.clone(),
        None => recorded_driver(&state).unwrap_or_else(default_driver),
    };
    openshell_core::fs::write_private(&state.join(DRIVER_FILE), format!("{driver}\n").as_bytes())
        .with_context(|| format!("writing {}", state.join(DRIVER_FILE).display()))?;
    progress(
        started,
        &format!(
            "Starting gateway '{}' on port {} ({driver} driver)",
            options.name, options.port
        ),
    );
    let log_path = state.join("gateway.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let binary = companion_binary("OPENSHELL_GATEWAY_BIN", "openshell-gateway");
    let mut command = Command::new(&binary);
    command
        .arg("--port")
        .arg(options.port.to_string())
        .arg("--state-dir")
        .arg(&state)
        .arg("--name")
        .arg(&options.name)
        .arg("--driver")
        .arg(&driver)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if options.plaintext {
        command.arg("--plaintext");
    }
    if options.disable_gateway_auth {
        command.arg("--disable-gateway-auth");
    }
    // A daemon's working directory is /: the one this command runs in may
    // be removed while the gateway (and what it starts) lives on.
    command.current_dir("/");
    // Its own process group: a Ctrl-C in this terminal does not reach it,
    // and it outlives this command.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    openshell_core::fs::write_private(
        &state.join("gateway.pid"),
        child.id().to_string().as_bytes(),
    )?;

    let metadata = Metadata {
        name: options.name.clone(),
        gateway_endpoint: endpoint.clone(),
        is_remote: false,
        gateway_port: options.port,
        auth_mode: Some(
            if options.plaintext {
                "plaintext"
            } else {
                "mtls"
            }
            .to_owned(),
        ),
        remote_host: None,
        source: Source::User,
    };
    let pki = state.join("pki");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the gateway exited during start ({status}):\n{}",
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if options.plaintext || pki.join("ca.crt").exists() {
            if !options.plaintext {
                registry.store_bundle(
                    &options.name,
                    &pki.join("client/ca.crt"),
                    &pki.join("client/tls.crt"),
                    &pki.join("client/tls.key"),
                )?;
            }
            let target = Target {
                name: options.name.clone(),
                endpoint: endpoint.clone(),
                auth: metadata.auth().to_owned(),
                mtls_dir: registry.mtls_dir(&options.name),
                token: None,
                insecure: false,
            };
            if probe(&target).is_ok() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway did not answer within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    registry.save(&metadata)?;
    registry.set_active(&options.name)?;
    progress(started, "Gateway ready");
    output::success(&format!("Gateway '{}' started", options.name));
    output::line(&format!("  Endpoint: {endpoint}"));
    Ok(Exit::Success)
}

/// Where a gateway's driver is recorded, so that a restart keeps it.
const DRIVER_FILE: &str = "driver";

/// The driver a gateway ran with before.
fn recorded_driver(state: &Path) -> Option<String> {
    let driver = std::fs::read_to_string(state.join(DRIVER_FILE)).ok()?;
    let driver = driver.trim();
    (!driver.is_empty()).then(|| driver.to_owned())
}

/// docs/cli.md ("Which gateway"): `docker` when a Docker socket answers, else `process`.
fn default_driver() -> String {
    if docker_answers() {
        "docker"
    } else {
        "process"
    }
    .to_owned()
}

/// Whether the Docker socket (`DOCKER_HOST` when it names a unix socket)
/// answers `GET /_ping` within a second.
fn docker_answers() -> bool {
    use std::io::{Read, Write};
    let path = openshell_core::paths::docker_socket(&openshell_core::paths::ProcessEnv);
    let Ok(mut socket) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    let _ = socket.set_read_timeout(timeout);
    let _ = socket.set_write_timeout(timeout);
    if socket
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Sends SIGTERM and waits; true when a process was stopped.
fn stop_process(state: &Path) -> anyhow::Result<bool> {
    let Some(pid) = read_pid(state).filter(|pid| alive(*pid)) else {
        let _ = std::fs::remove_file(state.join("gateway.pid"));
        return Ok(false);
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("signalling the gateway (pid {pid})"))?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "the gateway (pid {pid}) did not stop within {}s",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(state.join("gateway.pid"));
    Ok(true)
}

pub fn stop(name: Option<&str>) -> anyhow::Result<Exit> {
    let name = local_name(name)?;
    if stop_process(&state_dir(&name)?)? {
        output::success(&format!("Gateway '{name}' stopped"));
    } else {
        output::warning(&format!("Gateway '{name}' is not running"));
    }
    Ok(Exit::Success)
}

fn authentication(target: &Target) -> &'static str {
    match target.auth.as_str() {
        "plaintext" => "Not required (gateway)",
        "bearer" => "Authenticated (bearer token)",
        _ => "Authenticated (mTLS transport)",
    }
}

pub fn status(target: Option<Target>, format: OutputFormat) -> anyhow::Result<Exit> {
    let json_out = matches!(format, OutputFormat::Json);
    let Some(target) = target else {
        if json_out {
            output::json(&json!({"status": "not_configured"}));
        } else {
            output::line("Gateway Status");
            output::line("  Status: No gateway configured.");
            output::line("Register a gateway with: openshell gateway add <endpoint>");
        }
        return Ok(Exit::Success);
    };
    let health = probe(&target);
    if json_out {
        let mut value = json!({
            "gateway": target.name,
            "server": target.endpoint,
            "status": if health.is_ok() { "connected" } else { "disconnected" },
        });
        match &health {
            Ok(version) => {
                value["version"] = json!(version);
                value["authentication"] = json!({"status": if target.auth == "plaintext" { "not_required" } else { "authenticated" }, "mode": target.auth});
            }
            Err(error) => value["error"] = json!(format!("{error:#}")),
        }
        output::json(&value);
    } else {
        output::line("Server Status");
        output::line(&format!("  Gateway: {}", target.name));
        output::line(&format!("  Server: {}", target.endpoint));
        match &health {
            Ok(version) => {
                output::line("  Status: Connected");
                output::line(&format!("  Authentication: {}", authentication(&target)));
                output::line(&format!("  Version: {version}"));
            }
            Err(error) => {
                output::line("  Status: Disconnected");
                output::line(&format!("  Error: {error:#}"));
            }
        }
    }
    Ok(if health.is_ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `https://host:port/…` → (host, port).
pub(crate) fn host_and_port(endpoint: &str) -> anyhow::Result<(String, u16)> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .context("the endpoint needs a scheme")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let default = if scheme == "http" { 80 } else { 443 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (
            host.to_owned(),
            port.parse()
                .with_context(|| format!("invalid port in {endpoint}"))?,
        ),
        _ => (authority.to_owned(), default),
    };
    if host.is_empty() || !matches!(scheme, "http" | "https") {
        bail!("invalid gateway endpoint {endpoint}: expected http(s)://host[:port]");
    }
    Ok((host, port))
}

/// Stops a gateway started here, ends its sandboxes, and deletes its state
/// and registration.
pub fn destroy(name: Option<&str>) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let name = local_name(name)?;
    let state = state_dir(&name)?;
    if !state.exists() && registry.load(&name)?.is_none() {
        output::warning(&format!("Gateway '{name}' not found"));
        return Ok(Exit::Success);
    }
    stop_process(&state)?;
    let mut ended = end_sandboxes(&state.join("sandboxes"));
    if let Some(driver) = recorded_driver(&state).filter(|d| d == "docker" || d == "podman") {
        ended += remove_containers(&name, &state, &driver)?;
    }
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("removing {}", state.display()))?;
    }
    registry.remove(&name)?;
    output::success(&format!(
        "Gateway '{name}' destroyed ({ended} sandbox{} ended)",
        if ended == 1 { "" } else { "es" }
    ));
    Ok(Exit::Success)
}

/// Deletes every sandbox the gateway serves (in every workspace, as its
/// admin); how many there were.
pub(crate) fn delete_every_sandbox(target: &Target) -> anyhow::Result<usize> {
    use openshell_proto::v1 as pb;
    crate::client::runtime()?.block_on(async {
        let mut client = crate::client::connect(target).await?;
        let sandboxes = client
            .list_sandboxes(pb::ListSandboxesRequest {
                all_workspaces: true,
                ..Default::default()
            })
            .await?
            .into_inner()
            .sandboxes;
        for sandbox in &sandboxes {
            let scope = crate::commands::scope::Scope {
                target: Some(target.clone()),
                workspace: sandbox.workspace.clone(),
            };
            let request = scope.request(pb::DeleteSandboxRequest {
                name: sandbox.name.clone(),
            })?;
            client.delete_sandbox(request).await?;
        }
        anyhow::Ok(sandboxes.len())
    })
}

/// Removes the containers and the network a docker/podman gateway made
/// (the gateway binary knows how); returns how many containers there were.
fn remove_containers(name: &str, state: &Path, driver: &str) -> anyhow::Result<usize> {
    let binary = companion_binary("OPENSHELL_GATEWAY_BIN", "openshell-gateway");
    let output = Command::new(&binary)
        .args([
            "--destroy",
            "--driver",
            driver,
            "--name",
            name,
            "--state-dir",
        ])
        .arg(state)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "removing the gateway's {driver} containers failed; its state is kept so that you can retry:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // It prints how many containers it removed.
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// Ends every supervisor recorded under `sandboxes/<id>/pid` (SIGTERM to its
/// process group, SIGKILL after the grace period); returns how many ran.
fn end_sandboxes(root: &Path) -> usize {
    let pids: Vec<i32> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| pid::read(&e.path().join("pid")))
                .filter(|pid| alive(*pid))
                .collect()
        })
        .unwrap_or_default();
    let group = |pid: i32, signal| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), signal);
    };
    for pid in &pids {
        group(*pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        group(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    pids.len()
}

pub fn info(target: Option<Target>, format: OutputFormat) -> anyhow::Result<Exit> {
    let Some(target) = target else {
        bail!("No gateway configured.\nRegister one with: openshell gateway add <endpoint>");
    };
    let info = client::runtime()?.block_on(async {
        let mut client = client::connect(&target).await?;
        match client
            .get_gateway_info(openshell_proto::v1::GatewayInfoRequest {})
            .await
        {
            Ok(info) => anyhow::Ok(info.into_inner()),
            Err(error) if error.code() == tonic::Code::PermissionDenied => {
                bail!(
                    "gateway info requires admin privileges: {}",
                    error.message()
                )
            }
            Err(error) => Err(anyhow::Error::from(error).context("gateway info")),
        }
    })?;
    let port = host_and_port(&target.endpoint).map_or(0, |(_, port)| port);
    // A gateway started with --remote: the host it runs on, reached by ssh.
    let remote_host = Registry::for_user()?
        .load(&target.name)
        .ok()
        .flatten()
        .and_then(|m| m.remote_host);
    if matches!(format, OutputFormat::Json) {
        let drivers: Vec<_> = info
            .compute_drivers
            .iter()
            .map(|d| json!({"name": d.name, "capabilities": {"driver_name": d.name, "driver_version": d.version}}))
            .collect();
        output::json(&json!({
            "gateway": target.name,
            "server": target.endpoint,
            "auth": target.auth,
            "port": port,
            "status": info.status,
            "version": info.version,
            "compute_drivers": drivers,
            "sandboxes": info.sandboxes,
            "connected_supervisors": info.connected_supervisors,
            "remote_host": remote_host,
        }));
        return Ok(Exit::Success);
    }
    output::line("Gateway Info");
    output::line(&format!("  Gateway: {}", target.name));
    output::line(&format!("  Server: {}", target.endpoint));
    if let Some(host) = &remote_host {
        output::line(&format!("  Remote: {host} (over ssh)"));
    }
    output::line(&format!("  Auth: {}", target.auth));
    output::line(&format!("  Port: {port}"));
    output::line(&format!("  Status: {}", info.status));
    output::line(&format!("  Version: {}", info.version));
    output::line("  Compute drivers:");
    for driver in &info.compute_drivers {
        output::line(&format!("    {} ({})", driver.name, driver.version));
    }
    output::line(&format!(
        "  Sandboxes: {} ({} connected)",
        info.sandboxes, info.connected_supervisors
    ));
    Ok(Exit::Success)
}

/// The state directory of the gateway `name` (for `doctor`).
pub fn local_state(name: &str) -> anyhow::Result<PathBuf> {
    state_dir(name)
}
