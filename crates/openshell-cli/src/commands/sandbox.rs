//! `openshell sandbox list|get|delete`.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use openshell_core::time::Utc;
use openshell_proto::v1 as pb;

use crate::cli::{CreateArgs, OutputFormat};
use crate::client;
use crate::commands::scope::{Scope, status};
use crate::commands::{Exit, image, pairs, provider};
use crate::output;

fn created(sandbox: &pb::Sandbox) -> String {
    Utc::from_unix(sandbox.created_at_ms.div_euclid(1000)).date_time()
}

fn to_json(sandbox: &pb::Sandbox, workspace: &str) -> Value {
    let spec = sandbox.spec.clone().unwrap_or_default();
    // The gateway says where the sandbox lives (older gateways do not).
    let workspace = if sandbox.workspace.is_empty() {
        workspace
    } else {
        &sandbox.workspace
    };
    json!({
        "id": sandbox.id,
        "name": sandbox.name,
        "workspace": workspace,
        "labels": spec.labels,
        "created_at": created(sandbox),
        "phase": sandbox.phase,
        "current_policy_version": sandbox.policy_version,
        "exit_code": sandbox.exit_code,
        "providers": spec.providers,
        "resource_version": sandbox.resource_version,
    })
}

/// How `sandbox list` prints.
#[derive(Debug, Clone, Copy)]
pub enum ListStyle {
    Table,
    Json,
    Names,
    Ids,
}

/// `sandbox list`; with `all_workspaces`, every workspace the caller may
/// see, with a WORKSPACE column and `<workspace>/<name>` for `--names`.
pub fn list(
    scope: &Scope,
    selector: &[String],
    all_workspaces: bool,
    style: ListStyle,
) -> anyhow::Result<Exit> {
    let mut labels = std::collections::HashMap::new();
    for item in selector.iter().flat_map(|s| s.split(',')) {
        let Some((k, v)) = item.split_once('=') else {
            bail!("invalid selector '{item}': expected key=value");
        };
        labels.insert(k.to_owned(), v.to_owned());
    }
    let request = scope.request(pb::ListSandboxesRequest {
        selector: labels,
        all_workspaces,
    })?;
    let sandboxes = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .list_sandboxes(request)
                .await
                .map_err(status)?
                .into_inner()
                .sandboxes,
        )
    })?;
    match style {
        ListStyle::Json => {
            let items = sandboxes
                .iter()
                .map(|s| to_json(s, &scope.workspace))
                .collect();
            output::json(&Value::Array(items));
        }
        ListStyle::Names if all_workspaces => sandboxes
            .iter()
            .for_each(|s| output::line(&format!("{}/{}", s.workspace, s.name))),
        ListStyle::Names => sandboxes.iter().for_each(|s| output::line(&s.name)),
        ListStyle::Ids => sandboxes.iter().for_each(|s| output::line(&s.id)),
        ListStyle::Table if sandboxes.is_empty() => output::line("No sandboxes found."),
        ListStyle::Table => {
            let rows: Vec<Vec<String>> = sandboxes
                .iter()
                .map(|s| {
                    let row = vec![s.name.clone(), created(s), s.phase.clone()];
                    output::with_workspace(all_workspaces, s.workspace.clone(), row)
                })
                .collect();
            output::table(
                &output::with_workspace(
                    all_workspaces,
                    "WORKSPACE",
                    vec!["NAME", "CREATED", "PHASE"],
                ),
                &rows,
            );
        }
    }
    Ok(Exit::Success)
}

pub fn get(scope: &Scope, name: &str, format: OutputFormat) -> anyhow::Result<Exit> {
    let request = scope.request(pb::GetSandboxRequest {
        name: name.to_owned(),
    })?;
    let (sandbox, effective) = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let sandbox = client
            .get_sandbox(request)
            .await
            .map_err(status)?
            .into_inner();
        // The revision in force (none: the built-in default policy).
        let effective = crate::commands::revisions::effective(&mut client, scope, name).await?;
        anyhow::Ok((sandbox, effective))
    })?;
    let (policy, revision, source) = match &effective {
        Some(revision) => (revision.policy_yaml.clone(), revision.version, "sandbox"),
        None => ("# the built-in default policy\n".to_owned(), 0, "default"),
    };
    let spec = sandbox.spec.clone().unwrap_or_default();
    let (cpu, memory, pids) = limits_shown(&spec);
    if matches!(format, OutputFormat::Json) {
        let mut value = to_json(&sandbox, &scope.workspace);
        value["resources"] = json!({"cpu": cpu, "memory": memory, "pids": pids});
        value["policy_source"] = json!(source);
        value["revision"] = json!(revision);
        value["policy"] = json!(policy);
        output::json(&value);
        return Ok(Exit::Success);
    }
    output::line("Sandbox:");
    output::line(&format!("  Id: {}", sandbox.id));
    output::line(&format!("  Name: {}", sandbox.name));
    output::line(&format!("  Phase: {}", sandbox.phase));
    output::line(&format!(
        "  Resources: cpu {cpu}, memory {memory}, processes {pids}"
    ));
    if !spec.labels.is_empty() {
        output::line("  Labels:");
        let mut labels: Vec<_> = spec.labels.iter().collect();
        labels.sort();
        for (k, v) in labels {
            output::line(&format!("    {k}: {v}"));
        }
    }
    if !spec.providers.is_empty() {
        output::line(&format!("  Providers: {}", spec.providers.join(", ")));
    }
    output::line(&format!("  Policy source: {source}"));
    output::line(&format!("  Revision: {revision}"));
    output::line("Policy:");
    for line in policy.lines() {
        output::line(&format!("  {line}"));
    }
    Ok(Exit::Success)
}

/// The spec's limits as `get` shows them (`default` where none was given).
fn limits_shown(spec: &pb::SandboxSpec) -> (String, String, String) {
    use openshell_core::resources::{format_cpu, format_memory};
    let or_default = |value: u64, show: &dyn Fn(u64) -> String| {
        if value == 0 {
            "default".to_owned()
        } else {
            show(value)
        }
    };
    (
        or_default(spec.cpu_millis, &format_cpu),
        or_default(spec.memory_bytes, &format_memory),
        or_default(spec.pids, &|n| n.to_string()),
    )
}

pub fn delete(scope: &Scope, names: &[String], all: bool) -> anyhow::Result<Exit> {
    let runtime = client::runtime()?;
    runtime.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let names = if all {
            let request = scope.request(pb::ListSandboxesRequest::default())?;
            let found: Vec<String> = client
                .list_sandboxes(request)
                .await
                .map_err(status)?
                .into_inner()
                .sandboxes
                .into_iter()
                .map(|s| s.name)
                .collect();
            if found.is_empty() {
                output::line("No sandboxes to delete.");
            }
            found
        } else {
            names.to_vec()
        };
        for name in names {
            let request = scope.request(pb::DeleteSandboxRequest { name: name.clone() })?;
            if client
                .delete_sandbox(request)
                .await
                .map_err(status)?
                .into_inner()
                .deleted
            {
                output::success(&format!("Deleted sandbox {name}"));
            } else {
                output::warning(&format!("Sandbox {name} not found"));
            }
        }
        anyhow::Ok(())
    })?;
    Ok(Exit::Success)
}

pub fn stop(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    let request = scope.request(pb::StopSandboxRequest {
        name: name.to_owned(),
    })?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        client.stop_sandbox(request).await.map_err(status)?;
        anyhow::Ok(())
    })?;
    output::success(&format!("Stopped sandbox {name}"));
    Ok(Exit::Success)
}

pub fn start(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    let request = scope.request(pb::StartSandboxRequest {
        name: name.to_owned(),
    })?;
    let started = std::time::Instant::now();
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        client.start_sandbox(request).await.map_err(status)?;
        wait_ready(&mut client, scope, name, started).await
    })?;
    output::success(&format!("Started sandbox {name}"));
    Ok(Exit::Success)
}

/// One egress event as a log line:
/// `TIME DECISION BINARY -> HOST:PORT [METHOD PATH] (LAYER: REASON | policy P)`.
fn log_line(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or("-").to_owned();
    let mut line = format!(
        "{} {:<5} {} -> {}:{}",
        text("time"),
        text("decision"),
        text("binary"),
        text("host"),
        event["port"].as_u64().unwrap_or(0)
    );
    if let (Some(method), Some(path)) = (event["method"].as_str(), event["path"].as_str()) {
        line.push_str(&format!(" {method} {path}"));
    }
    match (event["reason"].as_str(), event["policy"].as_str()) {
        (Some(reason), _) => line.push_str(&format!(" ({}: {reason})", text("layer"))),
        (None, Some(policy)) => line.push_str(&format!(" (policy {policy})")),
        (None, None) => {}
    }
    // An inference.local call: where it went and what it cost.
    for (key, label) in [
        ("route", "route"),
        ("model", "model"),
        ("status", "status"),
        ("input_tokens", "in"),
        ("output_tokens", "out"),
        ("latency_ms", "ms"),
    ] {
        match &event[key] {
            Value::String(v) => line.push_str(&format!(" {label}={v}")),
            Value::Number(n) => line.push_str(&format!(" {label}={n}")),
            _ => {}
        }
    }
    line
}

/// What `openshell logs` shows.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    pub name: String,
    pub lines: u32,
    pub follow: bool,
    pub since: Option<std::time::Duration>,
    pub sources: Vec<String>,
    pub level: Option<String>,
}

/// `30s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("invalid duration '{text}': use e.g. 30s, 5m, 2h or 1d"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("invalid duration '{text}': use e.g. 30s, 5m, 2h or 1d"))?;
    Ok(std::time::Duration::from_secs(n.saturating_mul(seconds)))
}

pub fn logs(scope: &Scope, options: &LogsOptions, format: OutputFormat) -> anyhow::Result<Exit> {
    let since_ms = options.since.map_or(0, |ago| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(ago).as_millis() as i64
    });
    let request = scope.request(pb::SandboxLogsRequest {
        name: options.name.clone(),
        lines: options.lines,
        follow: options.follow,
        since_ms,
        sources: options.sources.clone(),
        min_level: options.level.clone().unwrap_or_default(),
    })?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let mut stream = client
            .sandbox_logs(request)
            .await
            .map_err(status)?
            .into_inner();
        while let Some(message) = stream.message().await.map_err(status)? {
            if matches!(format, OutputFormat::Json) {
                output::line(&message.json);
                continue;
            }
            match serde_json::from_str::<Value>(&message.json) {
                Ok(event) if message.source == "gateway" => output::line(&format!(
                    "{} {:<5} gateway: {}",
                    event["time"].as_str().unwrap_or("-"),
                    message.level,
                    event["message"].as_str().unwrap_or("")
                )),
                Ok(event) => output::line(&log_line(&event)),
                Err(_) => output::line(&message.json),
            }
        }
        anyhow::Ok(())
    })?;
    Ok(Exit::Success)
}

/// How long to wait for Ready (`OPENSHELL_PROVISION_TIMEOUT`, seconds).
fn provision_timeout() -> std::time::Duration {
    let secs = std::env::var("OPENSHELL_PROVISION_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// Creates a sandbox; with a command (and no `--detach`) streams its output
/// and returns its exit code.
/// The engine that builds `--from DIR` images: the gateway's own, which
/// must run on this machine.
fn build_engine(scope: &Scope) -> anyhow::Result<String> {
    let target = scope.target()?;
    let registry = crate::registry::Registry::for_user()?;
    if registry.load(&target.name)?.is_some_and(|m| m.is_remote) {
        bail!(
            "--from DIR builds with the local container engine, but gateway '{}' is remote\nhint: build and push the image, then pass its reference to --from",
            target.name
        );
    }
    let info = client::runtime()?.block_on(async {
        let mut client = client::connect(target).await?;
        client
            .get_gateway_info(scope.request(pb::GatewayInfoRequest {})?)
            .await
            .map_err(status)
    })?;
    let driver = info
        .into_inner()
        .compute_drivers
        .into_iter()
        .map(|d| d.name)
        .find(|name| name == "docker" || name == "podman");
    driver.with_context(|| {
        format!(
            "--from DIR needs a gateway that runs containers, and gateway '{}' runs sandboxes as processes\nhint: openshell gateway start --name NAME --driver docker (or podman)",
            target.name
        )
    })
}

pub fn create(scope: &Scope, options: &CreateArgs) -> anyhow::Result<Exit> {
    let policy_path = options
        .policy
        .clone()
        .or_else(|| std::env::var_os("OPENSHELL_SANDBOX_POLICY").map(Into::into));
    let policy_yaml = match &policy_path {
        Some(path) => super::policy::read_to_send(path)?,
        None => String::new(),
    };
    let env = pairs("--env", &options.env)?;
    if !options.no_credential_warnings {
        let mut keys: Vec<&String> = env
            .iter()
            .filter(|(k, v)| openshell_core::providers::looks_like_credential(k, v))
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        for key in keys {
            output::warning(&format!(
                "--env {key} looks like a credential passed as a plain environment variable: the agent can read it and send it anywhere its policy allows.\nhint: use a provider instead (openshell provider create --name NAME --type generic --credential {key}), or pass --no-credential-warnings"
            ));
        }
    }
    let labels = pairs("--label", &options.labels)?;
    let image = match &options.from {
        None => String::new(),
        Some(source) => {
            let registry = std::env::var("OPENSHELL_COMMUNITY_REGISTRY").ok();
            match image::resolve(source, registry.as_deref())? {
                image::Source::Image(reference) => reference,
                image::Source::Build {
                    dockerfile,
                    context,
                } => image::build(&build_engine(scope)?, &dockerfile, &context)?,
            }
        }
    };
    let auto = match (options.auto_providers, options.no_auto_providers) {
        (true, _) => provider::Auto::Create,
        (_, true) => provider::Auto::Skip,
        _ => provider::Auto::Ask,
    };
    // The main process's terminal: asked for, or this one is a terminal.
    let tty = !options.command.is_empty()
        && (options.tty
            || (!options.no_tty
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
                && std::io::IsTerminal::is_terminal(&std::io::stdout())));
    // A port to forward must be free before anything is created.
    if let Some(spec) = &options.forward {
        let local = crate::commands::forward::parse_spec(spec)?;
        std::net::TcpListener::bind(local)
            .with_context(|| format!("--forward {spec}: port {} is not free here", local.port()))?;
    }
    let runtime = client::runtime()?;
    let providers = runtime.block_on(async {
        let needs_lookup = !options.providers.is_empty()
            || (auto != provider::Auto::Skip
                && openshell_core::providers::type_for_command(&options.command).is_some());
        if !needs_lookup {
            return anyhow::Ok(Vec::new());
        }
        let mut client = client::connect(scope.target()?).await?;
        provider::for_create(
            &mut client,
            scope,
            &options.providers,
            &options.command,
            auto,
        )
        .await
    })?;
    let request = scope.request(pb::CreateSandboxRequest {
        name: options.name.clone().unwrap_or_default(),
        spec: Some(pb::SandboxSpec {
            command: options.command.clone(),
            policy_yaml,
            env,
            labels,
            image,
            gpu: options.gpu.unwrap_or(0),
            cpu_millis: options.cpu.unwrap_or(0),
            memory_bytes: options.memory.unwrap_or(0),
            pids: options.pids.unwrap_or(0),
            providers,
            tty,
        }),
    })?;
    let started = std::time::Instant::now();
    // Split on the first `:`; checked before anything is created.
    let uploads: Vec<(std::path::PathBuf, Option<String>)> = options
        .uploads
        .iter()
        .map(|item| match item.split_once(':') {
            Some((local, dest)) => (local.into(), Some(dest.to_owned())),
            None => (item.into(), None),
        })
        .collect();
    for (local, _) in &uploads {
        if local.symlink_metadata().is_err() {
            bail!("--upload {}: no such file or directory", local.display());
        }
    }
    let name = runtime.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let sandbox = client
            .create_sandbox(request)
            .await
            .map_err(status)?
            .into_inner();
        let name = sandbox.name.clone();
        scope.remember(&name);
        if matches!(options.output, Some(OutputFormat::Json)) {
            output::json(&to_json(&sandbox, &scope.workspace));
        } else {
            output::line(&format!("Created sandbox: {name}"));
        }
        wait_ready(&mut client, scope, &name, started).await?;
        anyhow::Ok(name)
    })?;
    if let Some(spec) = &options.forward {
        crate::commands::forward::start(scope, spec, &name, true)?;
    }
    // With CMD and not detached: its output and exit code. On a terminal,
    // attached to it (keys live, its window size ours) until it ends or
    // Ctrl-P Ctrl-Q; otherwise, or when it has already ended, its output
    // streamed from the start.
    let code = if options.command.is_empty() || options.detach {
        0
    } else {
        let attached = if tty {
            crate::commands::ssh::attach_and_wait(scope, &name)?
        } else {
            None
        };
        match attached {
            Some(code) => code,
            None => runtime.block_on(async {
                let mut client = client::connect(scope.target()?).await?;
                stream_output(&mut client, scope, &name).await
            })?,
        }
    };
    if options.no_keep {
        runtime.block_on(async {
            let mut client = client::connect(scope.target()?).await?;
            let request = scope.request(pb::DeleteSandboxRequest { name: name.clone() })?;
            client.delete_sandbox(request).await.map_err(status)?;
            anyhow::Ok(())
        })?;
    }
    let exit = if code == 0 {
        Exit::Success
    } else {
        Exit::Code(code)
    };
    for (local, dest) in &uploads {
        output::step(&format!(
            "• Uploading files to {}...",
            dest.as_deref().unwrap_or("/sandbox")
        ));
        crate::commands::files::upload(
            scope,
            &name,
            local,
            dest.as_deref(),
            !options.no_git_ignore,
        )?;
    }
    if !uploads.is_empty() {
        output::step("✓ Files uploaded");
    }
    if let Some(editor) = options.editor {
        return crate::commands::editor::open(scope, &name, editor);
    }
    // No command, not detached, on a terminal: a shell in the new sandbox
    // (docs/cli.md, "Sandboxes"). ssh replaces this process.
    let interactive = options.command.is_empty()
        && !options.detach
        && !options.no_keep
        && options.output.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        return crate::commands::ssh::connect(scope, &name);
    }
    Ok(exit)
}

async fn stream_output(
    client: &mut crate::client::Client,
    scope: &Scope,
    name: &str,
) -> anyhow::Result<i32> {
    use std::io::Write;
    let request = scope.request(pb::WatchSandboxRequest {
        name: name.to_owned(),
    })?;
    let mut stream = client
        .watch_sandbox(request)
        .await
        .map_err(status)?
        .into_inner();
    let mut stdout = std::io::stdout();
    while let Some(message) = stream.message().await.map_err(status)? {
        if !message.data.is_empty() {
            stdout.write_all(&message.data)?;
            stdout.flush()?;
        }
        if !message.phase.is_empty() {
            return match (message.phase.as_str(), message.exit_code) {
                ("Stopped", Some(code)) => Ok(code),
                (phase, code) => bail!(
                    "sandbox {name} did not run its command (phase {phase}{})",
                    code.map(|c| format!(", exit status {c}"))
                        .unwrap_or_default()
                ),
            };
        }
    }
    bail!("the gateway closed the output of sandbox {name} before it ended")
}

async fn wait_ready(
    client: &mut crate::client::Client,
    scope: &Scope,
    name: &str,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let deadline = started + provision_timeout();
    loop {
        let request = scope.request(pb::GetSandboxRequest {
            name: name.to_owned(),
        })?;
        let sandbox = client
            .get_sandbox(request)
            .await
            .map_err(status)?
            .into_inner();
        match sandbox.phase.as_str() {
            "Ready" | "Stopped" => {
                output::step(&format!(
                    "[{:.1}s] Sandbox {}",
                    started.elapsed().as_secs_f64(),
                    sandbox.phase.to_lowercase()
                ));
                return Ok(());
            }
            "Error" => bail!("sandbox {name} failed to start; see `openshell sandbox get {name}`"),
            _ if std::time::Instant::now() > deadline => {
                bail!(
                    "sandbox {name} is not ready after {}s",
                    provision_timeout().as_secs()
                )
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
