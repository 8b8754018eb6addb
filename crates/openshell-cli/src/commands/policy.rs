//! `openshell policy validate|explain`: offline, on the same engine the proxy uses.

use std::path::Path;

use anyhow::Context;
use openshell_policy::canonical::canonicalize_target;
use openshell_policy::decision::{Layer, Verdict};
use openshell_policy::l4::{L4Decision, L4Request, MatchedEndpoint};
use openshell_policy::l7::RestRequest;
use openshell_policy::ssrf::{self, DestinationMode};
use openshell_policy::{CompiledPolicy, Diagnostic, LoadPolicyError, Validated, load_file};
use serde_json::{Value, json};

use super::Exit;
use crate::cli::OutputFormat;
use crate::output;

fn located(file: &Path, diagnostic: &Diagnostic) -> String {
    match diagnostic.location {
        Some(at) => format!("{}:{}:{}: {diagnostic}", file.display(), at.line, at.column),
        None => format!("{}: {diagnostic}", file.display()),
    }
}

fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    json!({
        "line": diagnostic.location.map(|l| l.line),
        "column": diagnostic.location.map(|l| l.column),
        "path": diagnostic.path.to_string(),
        "message": diagnostic.message,
    })
}

/// Reads a policy file to send to the gateway, printing its warnings
/// (the gateway validates it again and reports errors).
pub fn read_to_send(file: &Path) -> anyhow::Result<String> {
    let yaml = std::fs::read_to_string(file)
        .with_context(|| format!("reading the policy {}", file.display()))?;
    if let Ok(validated) = openshell_policy::load_str(&yaml) {
        for warning in &validated.warnings {
            output::warning(&located(file, warning));
        }
    }
    Ok(yaml)
}

/// Loads a policy, or reports why not (in the chosen format) and returns `None`.
fn load_or_report(file: &Path, format: OutputFormat) -> anyhow::Result<Option<Validated>> {
    match load_file(file) {
        Ok(validated) => Ok(Some(validated)),
        Err(LoadPolicyError::Read { path, source }) => {
            Err(source).with_context(|| format!("failed to read policy file {}", path.display()))
        }
        Err(error) => {
            let diagnostics = error.diagnostics();
            match format {
                OutputFormat::Json => output::json(&json!({
                    "valid": false,
                    "errors": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
                    "warnings": [],
                })),
                OutputFormat::Table => {
                    if matches!(error, LoadPolicyError::Parse(_)) {
                        output::failure("failed to parse sandbox policy YAML");
                    }
                    for diagnostic in &diagnostics {
                        output::failure(&located(file, diagnostic));
                    }
                    output::failure(&format!(
                        "Policy is invalid ({} error{})",
                        diagnostics.len(),
                        if diagnostics.len() == 1 { "" } else { "s" }
                    ));
                }
            }
            Ok(None)
        }
    }
}

pub fn validate(file: &Path, format: OutputFormat) -> anyhow::Result<Exit> {
    let Some(validated) = load_or_report(file, format)? else {
        return Ok(Exit::Failure);
    };
    match format {
        OutputFormat::Json => output::json(&json!({
            "valid": true,
            "errors": [],
            "warnings": validated.warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            for warning in &validated.warnings {
                output::warning(&located(file, warning));
            }
            output::success("Policy is valid");
        }
    }
    Ok(Exit::Success)
}

/// What `explain` asks about.
#[derive(Debug)]
pub struct ExplainQuery<'a> {
    pub host: &'a str,
    pub port: u16,
    pub binary: Option<&'a str>,
    pub ancestors: &'a [String],
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
}

/// The outcome, as printed.
struct Explanation {
    decision: Verdict,
    layer: Layer,
    policy: Option<String>,
    endpoint: Option<Value>,
    reason: Option<String>,
    note: Option<String>,
    request: Option<(String, String)>,
}

fn endpoint_json(matched: &MatchedEndpoint<'_>) -> Value {
    let endpoint = matched.endpoint;
    json!({
        "policy": matched.policy,
        "index": matched.index,
        "host": endpoint.host.as_str(),
        "ports": endpoint.ports,
        "path": endpoint.path.as_ref().map(|p| p.as_str()),
        "protocol": endpoint.protocol.map(|p| p.as_str()),
        "enforcement": endpoint.protocol.map(|_| endpoint.enforcement.as_str()),
    })
}

fn endpoint_text(endpoint: &Value) -> String {
    let mut text = format!(
        "{}[{}] {}:{}",
        endpoint["policy"].as_str().unwrap_or_default(),
        endpoint["index"],
        endpoint["host"].as_str().unwrap_or_default(),
        endpoint["ports"]
            .as_array()
            .map(|ports| ports
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default()
    );
    if let Some(path) = endpoint["path"].as_str() {
        text.push_str(path);
    }
    match (
        endpoint["protocol"].as_str(),
        endpoint["enforcement"].as_str(),
    ) {
        (Some(protocol), Some(enforcement)) => {
            text.push_str(&format!(" ({protocol}, {enforcement})"))
        }
        _ => text.push_str(" (L4)"),
    }
    text
}

fn decide(compiled: &CompiledPolicy, query: &ExplainQuery<'_>) -> anyhow::Result<Explanation> {
    let ancestors: Vec<&str> = query.ancestors.iter().map(String::as_str).collect();
    let request = L4Request {
        host: query.host,
        port: query.port,
        binary: query.binary.unwrap_or(""),
        ancestors: &ancestors,
        cmdline: &[],
        ignore_binary: query.binary.is_none() && ancestors.is_empty(),
    };
    let allow = match compiled.decide_l4(&request) {
        L4Decision::Deny(deny) => {
            return Ok(Explanation {
                decision: Verdict::Deny,
                layer: Layer::L4,
                policy: None,
                endpoint: None,
                reason: Some(deny.reason),
                note: None,
                request: None,
            });
        }
        L4Decision::Allow(allow) => allow,
    };
    let governing = allow
        .endpoint_configs()
        .next()
        .or(allow.matched.first())
        .copied();
    let mut explanation = Explanation {
        decision: Verdict::Allow,
        layer: Layer::L4,
        policy: Some(allow.policy.to_owned()),
        endpoint: governing.as_ref().map(endpoint_json),
        reason: None,
        note: None,
        request: None,
    };
    if let Some(ip) = openshell_policy::host::parse_ip_literal(query.host) {
        let mode = allow.destination_mode(query.host);
        if let Err(denied) = ssrf::check_destination(mode, query.host, query.port, &[ip]) {
            explanation.decision = Verdict::Deny;
            explanation.layer = Layer::Ssrf;
            explanation.reason = Some(format!("{} ({})", denied.reason, denied.kind.as_str()));
            return Ok(explanation);
        }
    } else {
        explanation.note = Some(match allow.destination_mode(query.host) {
            DestinationMode::AllowedIps(_) => {
                "resolved addresses must fall within allowed_ips".to_owned()
            }
            DestinationMode::DeclaredHost => {
                "exact host: private addresses allowed, loopback/link-local/metadata never"
                    .to_owned()
            }
            _ => "resolved addresses must be public (checked at connect time)".to_owned(),
        });
    }
    if query.method.is_none() && query.target.is_none() {
        return Ok(explanation);
    }
    let method = query.method.unwrap_or("GET").to_ascii_uppercase();
    let allow_encoded_slash = allow.matched.iter().any(|m| m.endpoint.allow_encoded_slash);
    let target = canonicalize_target(query.target.unwrap_or("/"), allow_encoded_slash)
        .map_err(|e| anyhow::anyhow!("invalid --path: {e}"))?;
    explanation.request = Some((method.clone(), target.path.clone()));
    if !allow.is_inspected() {
        explanation.note = Some("L4 endpoint: requests are not inspected".to_owned());
        return Ok(explanation);
    }
    let decision = allow.evaluate_rest(&RestRequest {
        method: &method,
        path: &target.path,
        query: &target.query,
    });
    explanation.layer = Layer::L7;
    explanation.decision = decision.verdict;
    explanation.policy = Some(decision.policy.to_owned());
    explanation.endpoint = decision.endpoint.as_ref().map(endpoint_json);
    explanation.reason = decision.reason;
    if decision.verdict == Verdict::Audit {
        explanation.note = Some("audit mode: the request is logged and forwarded".to_owned());
    }
    Ok(explanation)
}

pub fn explain(
    file: &Path,
    query: &ExplainQuery<'_>,
    format: OutputFormat,
) -> anyhow::Result<Exit> {
    let Some(validated) = load_or_report(file, format)? else {
        return Ok(Exit::Failure);
    };
    let compiled = CompiledPolicy::new(validated.policy);
    let explanation = decide(&compiled, query)?;
    match format {
        OutputFormat::Json => output::json(&json!({
            "decision": explanation.decision,
            "layer": explanation.layer,
            "policy": explanation.policy,
            "endpoint": explanation.endpoint,
            "host": query.host,
            "port": query.port,
            "binary": query.binary,
            "method": explanation.request.as_ref().map(|r| &r.0),
            "path": explanation.request.as_ref().map(|r| &r.1),
            "reason": explanation.reason,
            "note": explanation.note,
        })),
        OutputFormat::Table => {
            output::line(&format!("Decision:  {}", explanation.decision));
            output::line(&format!("Layer:     {}", explanation.layer));
            output::line(&format!(
                "Policy:    {}",
                explanation.policy.as_deref().unwrap_or("-")
            ));
            if let Some(endpoint) = &explanation.endpoint {
                output::line(&format!("Endpoint:  {}", endpoint_text(endpoint)));
            }
            if let Some((method, path)) = &explanation.request {
                output::line(&format!("Request:   {method} {path}"));
            }
            if let Some(reason) = &explanation.reason {
                output::line(&format!("Reason:    {reason}"));
            }
            if let Some(note) = &explanation.note {
                output::line(&format!("Note:      {note}"));
            }
        }
    }
    Ok(Exit::Success)
}
