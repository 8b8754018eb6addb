//! `openshell gateway …` and `openshell status`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::cli::OutputFormat;
use crate::client;
use crate::commands::Exit;
use crate::output;
use crate::registry::{Metadata, Registry, Target, check_name};

/// How long `gateway start` waits for the gateway to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `gateway stop` waits for it to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `gateway start` options.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub name: String,
    pub port: u16,
    pub plaintext: bool,
    pub disable_gateway_auth: bool,
    pub recreate: bool,
}

/// `${XDG_STATE_HOME}/openshell/gateways/<name>`.
fn state_dir(name: &str) -> anyhow::Result<PathBuf> {
    Ok(
        openshell_core::paths::state_dir(&openshell_core::paths::ProcessEnv)?
            .join("gateways")
            .join(name),
    )
}

/// The gateway binary: `$OPENSHELL_GATEWAY_BIN`, else beside this binary,
/// else on `PATH`.
fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OPENSHELL_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
        && dir.join("openshell-gateway").is_file()
    {
        return dir.join("openshell-gateway");
    }
    PathBuf::from("openshell-gateway")
}

fn read_pid(state: &Path) -> Option<i32> {
    std::fs::read_to_string(state.join("gateway.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The gateway's health, or why it cannot be reached.
fn probe(target: &Target) -> anyhow::Result<String> {
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

fn progress(started: Instant, message: &str) {
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
    progress(
        started,
        &format!(
            "Starting gateway '{}' on port {}",
            options.name, options.port
        ),
    );
    let log_path = state.join("gateway.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let binary = gateway_binary();
    let mut command = Command::new(&binary);
    command
        .arg("--port")
        .arg(options.port.to_string())
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if options.plaintext {
        command.arg("--plaintext");
    }
    if options.disable_gateway_auth {
        command.arg("--disable-gateway-auth");
    }
    // Its own process group: a Ctrl-C in this terminal does not reach it,
    // and it outlives this command.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    std::fs::write(state.join("gateway.pid"), child.id().to_string())?;

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
    let registry = Registry::for_user()?;
    let name = name
        .map(str::to_owned)
        .or_else(|| registry.active())
        .unwrap_or_else(|| "openshell".to_owned());
    check_name(&name)?;
    if stop_process(&state_dir(&name)?)? {
        output::success(&format!("Gateway '{name}' stopped"));
    } else {
        output::warning(&format!("Gateway '{name}' is not running"));
    }
    Ok(Exit::Success)
}

pub fn list(format: OutputFormat) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let active = registry.active();
    let all = registry.list()?;
    if matches!(format, OutputFormat::Json) {
        let items: Vec<_> = all
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "endpoint": m.gateway_endpoint,
                    "type": if m.is_remote { "remote" } else { "local" },
                    "source": "user",
                    "auth": m.auth(),
                    "active": active.as_deref() == Some(m.name.as_str()),
                    "is_remote": m.is_remote,
                    "remote_host": m.remote_host,
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(items));
        return Ok(Exit::Success);
    }
    if all.is_empty() {
        output::line("No gateways found.");
        output::line("Register a gateway with: openshell gateway add <endpoint>");
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            let marker = if active.as_deref() == Some(m.name.as_str()) {
                "*"
            } else {
                " "
            };
            vec![
                format!("{marker} {}", m.name),
                m.gateway_endpoint.clone(),
                if m.is_remote { "remote" } else { "local" }.to_owned(),
                "user".to_owned(),
                m.auth().to_owned(),
            ]
        })
        .collect();
    output::table(&["  NAME", "ENDPOINT", "TYPE", "SOURCE", "AUTH"], &rows);
    Ok(Exit::Success)
}

pub fn select(name: Option<&str>) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let Some(name) = name else {
        list(OutputFormat::Table)?;
        output::line("Select a gateway with: openshell gateway select <name>");
        return Ok(Exit::Success);
    };
    if registry.load(name)?.is_none() {
        bail!(
            "Unknown gateway '{name}'.\nRegister it first: openshell gateway add <endpoint> --name {name}\nOr list available gateways: openshell gateway select"
        );
    }
    registry.set_active(name)?;
    output::success(&format!("Active gateway set to '{name}'"));
    if let Ok(env) = std::env::var("OPENSHELL_GATEWAY")
        && !env.is_empty()
        && env != name
    {
        output::warning(&format!(
            "OPENSHELL_GATEWAY={env} is set and still wins in this shell"
        ));
    }
    Ok(Exit::Success)
}

pub fn remove(name: Option<&str>) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let Some(name) = name.map(str::to_owned).or_else(|| registry.active()) else {
        bail!(
            "No active gateway.\nSet one with: openshell gateway select <name>\nOr register one with: openshell gateway add <endpoint>"
        );
    };
    if registry.remove(&name)? {
        output::success(&format!("Gateway registration '{name}' removed."));
    } else {
        output::warning(&format!("Gateway '{name}' is not registered"));
    }
    Ok(Exit::Success)
}

fn authentication(target: &Target) -> &'static str {
    match target.auth.as_str() {
        "plaintext" => "Not required (gateway)",
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
