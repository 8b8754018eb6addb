//! `openshell policy set|get|list`: a sandbox's policy revisions at the
//! gateway. `set --wait` follows the revision until the supervisor loads
//! it (exit 0), rejects it (exit 1) or the timeout passes (exit 124).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use openshell_proto::v1 as pb;

use crate::cli::OutputFormat;
use crate::client;
use crate::commands::Exit;
use crate::commands::sandbox::{Scope, status};
use crate::output;

/// `policy set|update --wait` timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// The first 12 hex digits, as revisions are shown.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub fn set(
    scope: &Scope,
    name: &str,
    file: &std::path::Path,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<Exit> {
    let yaml = std::fs::read_to_string(file)
        .with_context(|| format!("reading the policy {}", file.display()))?;
    let request = scope.request(pb::SetPolicyRequest {
        name: name.to_owned(),
        policy_yaml: yaml,
    })?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let revision = client
            .set_policy(request)
            .await
            .map_err(status)?
            .into_inner();
        if revision.unchanged {
            output::note(&format!(
                "Policy unchanged (version {}, hash: {})",
                revision.version,
                short(&revision.hash)
            ));
        } else {
            output::success_stderr(&format!(
                "Policy version {} submitted (hash: {})",
                revision.version,
                short(&revision.hash)
            ));
        }
        if !wait {
            return Ok(Exit::Success);
        }
        let version = revision.version;
        let deadline = Instant::now() + timeout;
        let mut current = revision;
        loop {
            match current.status.as_str() {
                "loaded" => {
                    output::success_stderr(&format!(
                        "Policy version {version} loaded (active version: {})",
                        current.active_version
                    ));
                    return Ok(Exit::Success);
                }
                "failed" => {
                    output::failure(&format!(
                        "Policy version {version} failed to load: {}",
                        current.error
                    ));
                    return Ok(Exit::Failure);
                }
                "superseded" => {
                    output::warning(&format!(
                        "Policy version {version} was superseded (active version: {})",
                        current.active_version
                    ));
                    return Ok(Exit::Success);
                }
                _ if Instant::now() >= deadline => {
                    output::failure(&format!(
                        "Timeout waiting for policy version {version} to load"
                    ));
                    return Ok(Exit::Code(EXIT_TIMEOUT));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            let request = scope.request(pb::GetPolicyRequest {
                name: name.to_owned(),
                version,
            })?;
            current = client
                .get_policy(request)
                .await
                .map_err(status)?
                .into_inner();
        }
    })
}

fn capitalized(status: &str) -> String {
    let mut chars = status.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

pub fn get(
    scope: &Scope,
    name: &str,
    version: i64,
    full: bool,
    format: OutputFormat,
) -> anyhow::Result<Exit> {
    let request = scope.request(pb::GetPolicyRequest {
        name: name.to_owned(),
        version,
    })?;
    let revision = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .get_policy(request)
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    if matches!(format, OutputFormat::Json) {
        let mut value = json!({
            "scope": "sandbox",
            "sandbox": revision.sandbox,
            "version": revision.version,
            "active_version": revision.active_version,
            "hash": revision.hash,
            "status": if version == 0 { "effective".to_owned() } else { revision.status.clone() },
            "revision_status": revision.status,
            "error": (!revision.error.is_empty()).then_some(&revision.error),
            "created_at_ms": revision.created_at_ms,
            "loaded_at_ms": (revision.loaded_at_ms > 0).then_some(revision.loaded_at_ms),
            "policy_source": "sandbox",
        });
        if full || version != 0 {
            value["policy"] = json!(revision.policy_yaml);
        }
        output::json(&value);
        return Ok(Exit::Success);
    }
    output::line(&format!("Version:      {}", revision.version));
    output::line(&format!("Hash:         {}", revision.hash));
    if version == 0 {
        output::line("Status:       Effective");
        output::line(&format!("Revision:     {}", capitalized(&revision.status)));
    } else {
        output::line(&format!("Status:       {}", capitalized(&revision.status)));
    }
    output::line(&format!("Active:       {}", revision.active_version));
    output::line("Source:       sandbox");
    output::line(&format!("Created:      {} ms", revision.created_at_ms));
    if revision.loaded_at_ms > 0 {
        output::line(&format!("Loaded:       {} ms", revision.loaded_at_ms));
    }
    if !revision.error.is_empty() {
        output::line(&format!("Error:        {}", revision.error));
    }
    if full {
        output::line("---");
        output::line(revision.policy_yaml.trim_end());
    }
    Ok(Exit::Success)
}

pub fn list(scope: &Scope, name: &str, limit: u32, format: OutputFormat) -> anyhow::Result<Exit> {
    let request = scope.request(pb::ListPoliciesRequest {
        name: name.to_owned(),
        limit,
    })?;
    let revisions = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .list_policies(request)
                .await
                .map_err(status)?
                .into_inner()
                .revisions,
        )
    })?;
    if matches!(format, OutputFormat::Json) {
        let items = revisions
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "hash": r.hash,
                    "status": r.status,
                    "created_at_ms": r.created_at_ms,
                    "error": (!r.error.is_empty()).then_some(&r.error),
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(items));
        return Ok(Exit::Success);
    }
    if revisions.is_empty() {
        output::line("No policy revisions (the sandbox runs the built-in default policy).");
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            vec![
                r.version.to_string(),
                short(&r.hash).to_owned(),
                capitalized(&r.status),
                r.created_at_ms.to_string(),
                r.error.clone(),
            ]
        })
        .collect();
    output::table(&["VERSION", "HASH", "STATUS", "CREATED", "ERROR"], &rows);
    Ok(Exit::Success)
}
