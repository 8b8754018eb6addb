//! `openshell gateway add|list|select|remove`: registrations in the user's
//! registry (and the read-only system one), made or read without starting
//! anything (docs/cli.md, "Files", "How the CLI authenticates").

use std::path::PathBuf;

use anyhow::bail;
use serde_json::json;

use crate::cli::OutputFormat;
use crate::commands::Exit;
use crate::commands::gateway::{host_and_port, probe, state_dir};
use crate::output;
use crate::registry::{Metadata, Registry, Source, Target, check_name};

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
                    "source": m.source.as_str(),
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
    // A REMOTE column when any gateway was started on another host.
    let remote = all.iter().any(|m| m.remote_host.is_some());
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            let marker = if active.as_deref() == Some(m.name.as_str()) {
                "*"
            } else {
                " "
            };
            let mut row = vec![
                format!("{marker} {}", m.name),
                m.gateway_endpoint.clone(),
                if m.is_remote { "remote" } else { "local" }.to_owned(),
                m.source.as_str().to_owned(),
                m.auth().to_owned(),
            ];
            if remote {
                row.push(m.remote_host.clone().unwrap_or_else(|| "-".to_owned()));
            }
            row
        })
        .collect();
    let mut headers = vec!["  NAME", "ENDPOINT", "TYPE", "SOURCE", "AUTH"];
    if remote {
        headers.push("REMOTE");
    }
    output::table(&headers, &rows);
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

/// Whether a URL's host is this machine.
fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "::1" | "[::1]" | "localhost")
}

/// `gateway add` options.
#[derive(Debug, Clone)]
pub struct AddOptions {
    pub endpoint: String,
    pub name: Option<String>,
    pub local: bool,
    pub remote: bool,
    /// `--gateway-insecure`, for the login of a bearer gateway.
    pub insecure: bool,
}

/// `gateway add`. The mode, in this order: `http://` is plaintext;
/// `https://` with `--local`/`--remote`, or with a client bundle at hand,
/// is mTLS; any other `https://` gateway (behind a reverse proxy) is
/// bearer, logged in to with the browser flow at once — a failed login
/// removes the registration again and restores the active gateway.
pub fn add(options: &AddOptions) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    let endpoint = if options.endpoint.contains("://") {
        options.endpoint.trim_end_matches('/').to_owned()
    } else {
        format!("https://{}", options.endpoint.trim_end_matches('/'))
    };
    let (host, port) = host_and_port(&endpoint)?;
    let name = options.name.clone().unwrap_or_else(|| {
        if is_loopback_host(&host) {
            "openshell".to_owned()
        } else {
            host.trim_matches(['[', ']']).to_owned()
        }
    });
    check_name(&name)?;
    if registry
        .load(&name)?
        .is_some_and(|m| m.source == Source::User)
    {
        bail!(
            "Gateway '{name}' already exists.\nRemove it first with: openshell gateway remove {name}"
        );
    }
    let is_remote = if options.local || options.remote {
        options.remote
    } else {
        !is_loopback_host(&host)
    };
    let plaintext = endpoint.starts_with("http://");
    let auth = if plaintext {
        if registry.mtls_dir(&name).join("tls.crt").exists() {
            output::warning(&format!(
                "mTLS certificates found for gateway '{name}'. Did you mean to use https?"
            ));
        }
        "plaintext"
    } else if options.local || options.remote {
        mtls_bundle(&registry, &name)?;
        output::success("TLS certificates present");
        "mtls"
    } else if mtls_bundle(&registry, &name).is_ok() {
        output::success("TLS certificates present");
        "mtls"
    } else {
        "bearer"
    };
    let metadata = Metadata {
        name: name.clone(),
        gateway_endpoint: endpoint.clone(),
        is_remote,
        gateway_port: port,
        auth_mode: Some(auth.to_owned()),
        remote_host: None,
        source: Source::User,
    };
    let previous = registry.active();
    registry.save(&metadata)?;
    registry.set_active(&name)?;
    if auth == "bearer" {
        if let Err(error) = super::login::log_in(&registry, &metadata, options.insecure) {
            registry.remove(&name)?;
            if let Some(previous) = previous {
                registry.set_active(&previous)?;
            }
            output::warning(&format!(
                "Registration for '{name}' removed. Fix the issue and retry gateway add."
            ));
            return Err(error.context(format!("logging in to gateway '{name}'")));
        }
    } else {
        let target = Target {
            name: name.clone(),
            endpoint: endpoint.clone(),
            auth: metadata.auth().to_owned(),
            mtls_dir: registry.mtls_dir(&name),
            token: None,
            insecure: options.insecure,
        };
        if probe(&target).is_err() {
            output::warning(&format!("Gateway is not reachable at {endpoint}"));
        }
    }
    output::success(&format!("Gateway '{name}' added and set as active"));
    output::line(&format!("  Endpoint: {endpoint}"));
    output::line(&format!(
        "  Type: {}",
        if is_remote { "remote" } else { "local" }
    ));
    output::line(&format!("  Auth: {}", metadata.auth()));
    Ok(Exit::Success)
}

/// Makes sure `gateways/<name>/mtls/` holds a client bundle: already there,
/// or copied from `$OPENSHELL_LOCAL_TLS_DIR` or from the PKI of a local
/// gateway of that name started by this CLI (`ca.crt`, `client/tls.crt`,
/// `client/tls.key`).
fn mtls_bundle(registry: &Registry, name: &str) -> anyhow::Result<()> {
    let dir = registry.mtls_dir(name);
    if ["ca.crt", "tls.crt", "tls.key"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(());
    }
    let mut sources = Vec::new();
    if let Some(tls) = std::env::var_os("OPENSHELL_LOCAL_TLS_DIR") {
        sources.push(PathBuf::from(tls));
    }
    sources.push(state_dir(name)?.join("pki"));
    for source in &sources {
        let (ca, cert, key) = (
            source.join("ca.crt"),
            source.join("client/tls.crt"),
            source.join("client/tls.key"),
        );
        if ca.is_file() && cert.is_file() && key.is_file() {
            return registry.store_bundle(name, &ca, &cert, &key);
        }
    }
    bail!(
        "mTLS certificates for gateway '{name}' were not found.\nPut the client bundle (ca.crt, tls.crt, tls.key) in {}, or set OPENSHELL_LOCAL_TLS_DIR",
        dir.display()
    )
}
