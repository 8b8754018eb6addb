//! `openshell policy set|update|get|list`: a sandbox's policy revisions at
//! the gateway. `--wait` follows the revision until the supervisor loads
//! it (exit 0), rejects it (exit 1) or the timeout passes (exit 124).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use openshell_policy::merge::{self, NewEndpoint, Operation, default_rule_name};
use openshell_proto::v1 as pb;

use crate::cli::{OutputFormat, UpdateArgs};
use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};
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
    let yaml = super::policy::read_to_send(file)?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let revision = submit(&mut client, scope, name, yaml, None)
            .await
            .map_err(readable)?;
        if !wait {
            return Ok(Exit::Success);
        }
        wait_for(&mut client, scope, name, revision, timeout).await
    })
}

/// A gRPC error inside `error` as the user should read it.
fn readable(error: anyhow::Error) -> anyhow::Error {
    match error.downcast::<tonic::Status>() {
        Ok(s) => status(s),
        Err(other) => other,
    }
}

type Client = crate::client::Client;

/// Stores a revision and says so (`✓ Policy version N submitted …`).
async fn submit(
    client: &mut Client,
    scope: &Scope,
    name: &str,
    yaml: String,
    expected_version: Option<i64>,
) -> anyhow::Result<pb::PolicyRevision> {
    let request = scope.request(pb::SetPolicyRequest {
        name: name.to_owned(),
        policy_yaml: yaml,
        expected_version,
    })?;
    let revision = client.set_policy(request).await?.into_inner();
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
    Ok(revision)
}

/// Follows a revision until the supervisor loads it (exit 0), rejects it
/// (exit 1) or `timeout` passes (exit 124).
async fn wait_for(
    client: &mut Client,
    scope: &Scope,
    name: &str,
    revision: pb::PolicyRevision,
    timeout: Duration,
) -> anyhow::Result<Exit> {
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
}

fn operations(options: &UpdateArgs) -> anyhow::Result<Vec<Operation>> {
    if options.rule_name.is_some() && options.add_endpoints.len() != 1 {
        bail!("--rule-name needs exactly one --add-endpoint");
    }
    if !options.binaries.is_empty() && options.add_endpoints.is_empty() {
        bail!("--binary applies to --add-endpoint");
    }
    // Removals first, then additions, then L7 rules on what is there.
    let mut ops: Vec<Operation> = options
        .remove_rules
        .iter()
        .map(|name| Operation::RemoveRule { name: name.clone() })
        .collect();
    for text in &options.remove_endpoints {
        ops.push(Operation::parse_removal(text).map_err(anyhow::Error::msg)?);
    }
    for text in &options.add_endpoints {
        let endpoint = NewEndpoint::parse(text).map_err(anyhow::Error::msg)?;
        ops.push(Operation::AddEndpoint {
            rule: options
                .rule_name
                .clone()
                .unwrap_or_else(|| default_rule_name(&endpoint.host, endpoint.port)),
            endpoint,
            binaries: options.binaries.clone(),
        });
    }
    for (texts, deny) in [(&options.add_allow, false), (&options.add_deny, true)] {
        for text in texts {
            ops.push(Operation::parse_rule(text, deny).map_err(anyhow::Error::msg)?);
        }
    }
    if ops.is_empty() {
        bail!(
            "nothing to change: give --add-endpoint, --remove-endpoint, --add-allow, --add-deny or --remove-rule"
        );
    }
    Ok(ops)
}

/// How often an update is retried when another change lands in between.
const UPDATE_ATTEMPTS: usize = 3;

/// The revision in force in a sandbox; `None` while it runs the built-in
/// default policy (it has no revision).
pub async fn effective(
    client: &mut Client,
    scope: &Scope,
    name: &str,
) -> anyhow::Result<Option<pb::PolicyRevision>> {
    let request = scope.request(pb::GetPolicyRequest {
        name: name.to_owned(),
        version: 0,
    })?;
    match client.get_policy(request).await {
        Ok(revision) => Ok(Some(revision.into_inner())),
        Err(e) if e.code() == tonic::Code::NotFound && e.message().contains("default policy") => {
            Ok(None)
        }
        Err(e) => Err(status(e)),
    }
}

/// A policy update computed against what a sandbox runs.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The policy it starts from (YAML).
    pub base: String,
    /// The policy after the operations (YAML, validated).
    pub yaml: String,
    /// The latest stored revision: the new one is stored only if that is
    /// still the latest.
    pub latest: i64,
}

/// Applies `ops` to what the sandbox runs: its loaded revision; while none
/// is loaded, the latest if still pending, else the built-in default (a
/// failed revision never loaded, and building on it would fail every later
/// update the same way).
pub async fn propose(
    client: &mut Client,
    scope: &Scope,
    name: &str,
    ops: &[Operation],
) -> anyhow::Result<Proposal> {
    let effective = effective(client, scope, name).await?;
    let latest = client
        .list_policies(scope.request(pb::ListPoliciesRequest {
            name: name.to_owned(),
            limit: 1,
        })?)
        .await
        .map_err(status)?
        .into_inner()
        .revisions
        .first()
        .map_or(0, |r| r.version);
    let runs = effective.filter(|r| r.active_version != 0 || r.status == "pending");
    let document = match &runs {
        Some(revision) => {
            openshell_policy::load::parse_document(&revision.policy_yaml)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the sandbox's policy version {} cannot be read: {e}",
                        revision.version
                    )
                })?
                .0
        }
        None => openshell_policy::defaults::default_document(),
    };
    let merged = merge::apply(&document, ops).map_err(anyhow::Error::msg)?;
    let yaml = merge::to_yaml(&merged);
    if let Err(error) = openshell_policy::load_str(&yaml) {
        bail!("the updated policy is invalid: {}", error.problems());
    }
    Ok(Proposal {
        base: merge::to_yaml(&document),
        yaml,
        latest,
    })
}

/// Stores a proposal as the next revision, refused (ABORTED) when another
/// revision landed since it was computed.
pub async fn submit_proposal(
    client: &mut Client,
    scope: &Scope,
    name: &str,
    proposal: &Proposal,
) -> anyhow::Result<pb::PolicyRevision> {
    submit(
        client,
        scope,
        name,
        proposal.yaml.clone(),
        Some(proposal.latest),
    )
    .await
}

/// Applies incremental changes to the sandbox's effective policy and
/// submits the result as the next revision, atomically: it is refused (and
/// redone here) if another revision was stored in between.
pub fn update(scope: &Scope, name: &str, options: &UpdateArgs) -> anyhow::Result<Exit> {
    let ops = operations(options)?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let proposal = propose(&mut client, scope, name, &ops).await?;
            if options.dry_run {
                output::success_stderr(&format!(
                    "Dry run preview for {} incremental policy operation(s)",
                    ops.len()
                ));
                output::line(proposal.yaml.trim_end());
                return Ok(Exit::Success);
            }
            match submit_proposal(&mut client, scope, name, &proposal).await {
                Ok(revision) if options.wait => {
                    return wait_for(
                        &mut client,
                        scope,
                        name,
                        revision,
                        Duration::from_secs(options.timeout),
                    )
                    .await;
                }
                Ok(_) => return Ok(Exit::Success),
                Err(error)
                    if error
                        .downcast_ref::<tonic::Status>()
                        .is_some_and(|s| s.code() == tonic::Code::Aborted) => {}
                Err(error) => return Err(readable(error)),
            }
        }
        bail!("the policy kept changing while updating it; try again")
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
