//! One endpoint: host, ports, the protocol matrix (docs/policy.md, "Endpoints");
//! rule bodies and presets are in [`super::rule`].

use crate::document::EndpointDocument;
use crate::glob::Syntax;
use crate::host::HostPattern;
use crate::policy::{
    Access, Endpoint, Enforcement, McpSettings, MethodMatcher, Protocol, Rule, TlsMode,
};
use crate::ssrf;
use crate::yaml::FieldPath;

use super::rule::{check_rule_combinations, expand_access, validate_rule};
use super::{Findings, compile_glob};

/// Default body limit of GraphQL, JSON-RPC and MCP inspection.
pub const DEFAULT_BODY_LIMIT: u32 = 65536;

pub(super) fn validate_endpoint(
    doc: &EndpointDocument,
    policy: &str,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<Endpoint> {
    let errors_before = findings.errors.len();
    let mut protocol_known = true;
    let protocol = match doc.protocol.as_str() {
        "" => None,
        value => match Protocol::parse(value) {
            Some(protocol) => Some(protocol),
            None => {
                findings.error(
                    &path.key("protocol"),
                    format!(
                        "unknown protocol '{value}' (expected tcp, rest, websocket, graphql, sql, json-rpc, or mcp)"
                    ),
                );
                // Keep checking what does not depend on the protocol.
                protocol_known = false;
                None
            }
        },
    };
    let is_tcp = protocol == Some(Protocol::Tcp);

    let host = match HostPattern::parse(&doc.host) {
        Ok(host) => host,
        Err(message) => {
            findings.error(&path.key("host"), message);
            HostPattern::Any
        }
    };
    if doc.host.is_empty() {
        if is_tcp {
            findings.error(
                &path.key("host"),
                format!(
                    "network policy '{policy}': protocol tcp requires a DNS hostname; hostless allowed_ips endpoints are supported only by the forward proxy"
                ),
            );
        } else if doc.allowed_ips.is_empty() {
            findings.error(path, "host is required unless allowed_ips is set");
        }
    } else if is_tcp {
        if host.ip().is_some() {
            findings.error(
                &path.key("host"),
                format!(
                    "network policy '{policy}': protocol tcp endpoint '{}' must use a DNS hostname, not an IP literal; direct IP connections bypass policy DNS and are blocked",
                    doc.host
                ),
            );
        } else if doc.host.ends_with('.') {
            findings.error(
                &path.key("host"),
                format!(
                    "network policy '{policy}': protocol tcp endpoint has invalid DNS host selector '{}': trailing dot",
                    doc.host
                ),
            );
        }
    }
    if protocol == Some(Protocol::Mcp) && !matches!(host, HostPattern::Exact(_)) {
        findings.error(
            &path.key("host"),
            "protocol mcp endpoints must have a concrete host (no wildcard)",
        );
    }

    let ports = validate_ports(doc, path, findings);

    let selector = match doc.path.as_str() {
        "" | "**" | "/**" => None,
        value if !value.starts_with('/') => {
            findings.error(
                &path.key("path"),
                format!("endpoint path must start with '/' or be '**', got '{value}'"),
            );
            None
        }
        value => compile_glob(value, Syntax::Path, &path.key("path"), findings),
    };

    let tls = match doc.tls.as_str() {
        "" => TlsMode::Auto,
        "skip" => TlsMode::Skip,
        deprecated @ ("terminate" | "passthrough") => {
            findings.warn(
                &path.key("tls"),
                format!("tls: {deprecated} is deprecated and has no effect; TLS is detected automatically"),
            );
            TlsMode::Auto
        }
        other => {
            findings.error(
                &path.key("tls"),
                format!(
                    "unknown tls mode '{other}' (expected skip; omit it for automatic detection)"
                ),
            );
            TlsMode::Auto
        }
    };

    let enforcement = match doc.enforcement.as_str() {
        // SQL cannot be enforced; an unset value means audit there.
        "" if protocol == Some(Protocol::Sql) => Enforcement::Audit,
        "" | "enforce" => Enforcement::Enforce,
        "audit" => Enforcement::Audit,
        other => {
            findings.error(
                &path.key("enforcement"),
                format!("unknown enforcement '{other}' (expected enforce or audit)"),
            );
            Enforcement::Enforce
        }
    };

    let access = match doc.access.as_str() {
        "" => None,
        value => {
            match Access::parse(value) {
                Some(access) => Some(access),
                None => {
                    findings.error(
                    &path.key("access"),
                    format!("unknown access preset '{value}' (expected read-only, read-write, or full)"),
                );
                    None
                }
            }
        }
    };

    let mut allowed_ips = Vec::new();
    for (i, entry) in doc.allowed_ips.iter().enumerate() {
        let at = path.key("allowed_ips").index(i);
        match ssrf::parse_allowed_ip(entry) {
            Ok(net) => {
                if ssrf::is_broad(&net) {
                    findings.warn(
                        &at,
                        format!("allowed_ips entry {entry} is broader than /16"),
                    );
                }
                allowed_ips.push(net);
            }
            Err(e) => findings.error(&at, e.to_string()),
        }
    }

    if !protocol_known {
        return None;
    }
    let mcp_settings = check_protocol_matrix(doc, protocol, enforcement, access, path, findings);

    let mut rules = Vec::new();
    if let Some(items) = &doc.rules {
        for (i, item) in items.iter().enumerate() {
            let at = path.key("rules").index(i).key("allow");
            if let Some(rule) = validate_rule(&item.allow, protocol, mcp_settings, &at, findings) {
                rules.push(rule);
            }
        }
    }
    let mut deny_rules = Vec::new();
    if let Some(items) = &doc.deny_rules {
        for (i, body) in items.iter().enumerate() {
            let at = path.key("deny_rules").index(i);
            if let Some(rule) = validate_rule(body, protocol, mcp_settings, &at, findings) {
                deny_rules.push(rule);
            }
        }
    }
    check_rule_combinations(doc, protocol, &rules, path, findings);
    if let Some(access) = access
        && let Some(expanded) = expand_access(access, protocol, &path.key("access"), findings)
    {
        rules = expanded;
    }
    if protocol == Some(Protocol::Mcp)
        && rules.is_empty()
        && mcp_settings.is_some_and(|m| m.allow_all_known_mcp_methods)
    {
        rules.push(Rule::any_path(MethodMatcher::Any));
    }

    if tls == TlsMode::Skip && protocol.is_some_and(Protocol::is_inspected) && ports.contains(&443)
    {
        findings.warn(
            &path.key("tls"),
            "tls: skip on port 443 prevents L7 inspection; requests on this endpoint will not be parsed",
        );
    }

    let credential_signing = check_signing(doc, path, findings);
    let credential_provider = match &doc.credential_binding {
        Some(binding) if binding.provider.is_empty() => {
            findings.error(
                &path.key("credential_binding").key("provider"),
                "credential_binding.provider must not be empty",
            );
            None
        }
        Some(binding) => {
            // Credentials are substituted only where the proxy reads the
            // requests (docs/providers.md, "Bindings").
            let inspected = tls != TlsMode::Skip && protocol.is_some_and(Protocol::is_inspected);
            if !inspected && !doc.allow_uninspected_credentials {
                findings.error(
                    &path.key("credential_binding"),
                    "credential_binding needs an inspected endpoint (protocol rest, websocket or graphql, without tls: skip); set allow_uninspected_credentials: true to bind it anyway, knowing no credential is ever substituted there",
                );
            }
            Some(binding.provider.clone())
        }
        None => None,
    };
    let body_limit = check_body_limits(doc, protocol, path, findings);
    let persisted_queries_allow_registered = check_persisted_queries(doc, protocol, path, findings);

    if findings.errors.len() > errors_before {
        return None;
    }
    Some(Endpoint {
        host,
        ports,
        path: selector,
        protocol,
        tls,
        enforcement,
        rules,
        deny_rules,
        allowed_ips,
        allow_encoded_slash: doc.allow_encoded_slash,
        websocket_credential_rewrite: doc.websocket_credential_rewrite,
        request_body_credential_rewrite: doc.request_body_credential_rewrite,
        allow_uninspected_credentials: doc.allow_uninspected_credentials,
        credential_signing,
        signing_service: Some(doc.signing_service.clone()).filter(|s| !s.is_empty()),
        signing_region: Some(doc.signing_region.clone()).filter(|s| !s.is_empty()),
        credential_provider,
        body_limit,
        mcp: mcp_settings,
        persisted_queries_allow_registered,
    })
}

fn validate_ports(doc: &EndpointDocument, path: &FieldPath, findings: &mut Findings) -> Vec<u16> {
    if doc.port.is_some() && !doc.ports.is_empty() {
        findings.error(
            path,
            "port and ports are mutually exclusive; use ports for multiple ports",
        );
        return Vec::new();
    }
    let mut ports: Vec<u16> = match doc.port {
        Some(port) => vec![port],
        None => doc.ports.clone(),
    };
    if ports.is_empty() {
        findings.error(path, "at least one port is required (port or ports)");
    }
    if ports.contains(&0) {
        let at = if doc.port.is_some() {
            path.key("port")
        } else {
            path.key("ports")
        };
        findings.error(&at, "port must be in 1..=65535");
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The per-protocol rules of docs/policy.md, "Endpoints"; returns the MCP settings when they apply.
fn check_protocol_matrix(
    doc: &EndpointDocument,
    protocol: Option<Protocol>,
    enforcement: Enforcement,
    access: Option<Access>,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<McpSettings> {
    let has_rules = doc.rules.as_ref().is_some_and(|r| !r.is_empty());
    let has_base = has_rules || access.is_some();
    if protocol == Some(Protocol::Tcp) {
        if !doc.access.is_empty() || doc.rules.is_some() || doc.deny_rules.is_some() {
            findings.error(
                path,
                "protocol tcp does not support access, rules, or deny_rules; remove those L7 fields",
            );
        }
        let l7_only = doc.l7_only_fields();
        if !l7_only.is_empty() {
            findings.error(
                path,
                format!(
                    "protocol tcp does not support L7-only fields: {}; remove those fields",
                    l7_only.join(", ")
                ),
            );
        }
        return None;
    }
    if !doc.access.is_empty() && doc.rules.is_some() {
        findings.error(path, "rules and access are mutually exclusive");
    }
    if doc.rules.as_ref().is_some_and(Vec::is_empty) {
        findings.error(
            &path.key("rules"),
            "rules list cannot be empty (would deny all traffic). Use `access: full` or remove rules.",
        );
    }
    if doc.deny_rules.as_ref().is_some_and(Vec::is_empty) {
        findings.error(
            &path.key("deny_rules"),
            "deny_rules list cannot be empty (would have no effect). Remove it if no denials are needed.",
        );
    }
    if has_rules
        && doc
            .rules
            .as_ref()
            .is_some_and(|rules| rules.iter().all(|r| r.allow.is_empty()))
    {
        findings.error(
            &path.key("rules"),
            "rules would deny all traffic (no allow clause found). Use `access: full` or add allow clauses to rules.",
        );
    }
    let has_deny = doc.deny_rules.as_ref().is_some_and(|d| !d.is_empty());
    let mcp = doc.mcp.as_ref().map(|m| McpSettings {
        strict_tool_names: m.strict_tool_names.unwrap_or(true),
        allow_all_known_mcp_methods: m.allow_all_known_mcp_methods.unwrap_or(false),
    });
    match protocol {
        None => {
            if has_deny {
                findings.error(
                    &path.key("deny_rules"),
                    "deny_rules require protocol (L7 inspection must be enabled)",
                );
            }
            if has_base {
                findings.warn(
                    path,
                    "access and rules have no effect without protocol; add protocol: rest to inspect requests",
                );
            }
        }
        Some(Protocol::Rest | Protocol::Websocket | Protocol::Graphql | Protocol::Sql) => {
            if !has_base {
                findings.error(
                    path,
                    "protocol requires rules or access to define allowed traffic",
                );
            }
            if protocol == Some(Protocol::Sql) && enforcement == Enforcement::Enforce {
                findings.error(
                    &path.key("enforcement"),
                    "SQL enforcement requires full SQL parsing; use enforcement: audit",
                );
            }
        }
        Some(p @ (Protocol::JsonRpc | Protocol::Mcp)) => {
            if access.is_some() {
                findings.error(
                    &path.key("access"),
                    format!(
                        "protocol {} does not support access presets; use explicit rules",
                        p.as_str()
                    ),
                );
            }
            let allow_all = mcp.is_some_and(|m| m.allow_all_known_mcp_methods);
            if p == Protocol::JsonRpc && !has_rules {
                findings.error(
                    path,
                    "protocol json-rpc requires explicit rules with allow.method",
                );
            }
            if p == Protocol::Mcp && !has_rules && !allow_all {
                findings.error(
                    path,
                    "protocol mcp requires rules when mcp.allow_all_known_mcp_methods is false",
                );
            }
        }
        Some(Protocol::Tcp) => {}
    }
    if has_deny && !has_base && protocol.is_some() && protocol != Some(Protocol::Mcp) {
        findings.error(
            &path.key("deny_rules"),
            "deny_rules require rules or access to define the base allow set",
        );
    }
    if doc.mcp.is_some() && protocol != Some(Protocol::Mcp) {
        findings.error(
            &path.key("mcp"),
            "mcp settings are only valid with protocol: mcp",
        );
    }
    if doc.websocket_credential_rewrite
        && !matches!(protocol, Some(Protocol::Rest | Protocol::Websocket))
    {
        findings.warn(
            &path.key("websocket_credential_rewrite"),
            "websocket_credential_rewrite only applies to protocol rest or websocket; ignored",
        );
    }
    if doc.request_body_credential_rewrite && protocol != Some(Protocol::Rest) {
        findings.warn(
            &path.key("request_body_credential_rewrite"),
            "request_body_credential_rewrite only applies to protocol rest; ignored",
        );
    }
    if protocol == Some(Protocol::Mcp) {
        mcp.or(Some(McpSettings {
            strict_tool_names: true,
            allow_all_known_mcp_methods: false,
        }))
    } else {
        None
    }
}

fn check_signing(
    doc: &EndpointDocument,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<String> {
    if doc.credential_signing.is_empty() {
        return None;
    }
    let at = path.key("credential_signing");
    if !matches!(
        doc.credential_signing.as_str(),
        "sigv4" | "sigv4:body" | "sigv4:no_body"
    ) {
        findings.error(
            &at,
            format!(
                "endpoint has unrecognized credential_signing value '{}' (expected sigv4, sigv4:body, or sigv4:no_body)",
                doc.credential_signing
            ),
        );
        return None;
    }
    if doc.signing_service.is_empty() {
        findings.error(
            &at,
            "endpoint has credential_signing set but signing_service is empty",
        );
    }
    if doc.request_body_credential_rewrite {
        findings.error(
            &at,
            "credential_signing and request_body_credential_rewrite: these options are mutually exclusive",
        );
    }
    Some(doc.credential_signing.clone())
}

fn check_body_limits(
    doc: &EndpointDocument,
    protocol: Option<Protocol>,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<u32> {
    let mut positive = |value: Option<u32>, at: FieldPath, name: &str| {
        if value == Some(0) {
            findings.error(&at, format!("{name} must be positive"));
        }
        value
    };
    let graphql = positive(
        doc.graphql_max_body_bytes,
        path.key("graphql_max_body_bytes"),
        "graphql_max_body_bytes",
    );
    let json_rpc = positive(
        doc.json_rpc.as_ref().and_then(|j| j.max_body_bytes),
        path.key("json_rpc").key("max_body_bytes"),
        "json_rpc.max_body_bytes",
    );
    let mcp = positive(
        doc.mcp.as_ref().and_then(|m| m.max_body_bytes),
        path.key("mcp").key("max_body_bytes"),
        "mcp.max_body_bytes",
    );
    match protocol {
        Some(Protocol::Graphql) | Some(Protocol::Websocket) => {
            Some(graphql.unwrap_or(DEFAULT_BODY_LIMIT))
        }
        Some(Protocol::JsonRpc) => Some(json_rpc.unwrap_or(DEFAULT_BODY_LIMIT)),
        Some(Protocol::Mcp) => Some(mcp.unwrap_or(DEFAULT_BODY_LIMIT)),
        _ => None,
    }
}

fn check_persisted_queries(
    doc: &EndpointDocument,
    protocol: Option<Protocol>,
    path: &FieldPath,
    findings: &mut Findings,
) -> bool {
    let allow_registered = match doc.persisted_queries.as_str() {
        "" | "deny" => false,
        "allow_registered" => true,
        other => {
            findings.error(
                &path.key("persisted_queries"),
                format!("unknown persisted_queries '{other}' (expected deny or allow_registered)"),
            );
            false
        }
    };
    for (id, entry) in &doc.graphql_persisted_queries {
        let at = path.key("graphql_persisted_queries").key(id.as_str());
        if !matches!(
            entry.operation_type.as_str(),
            "query" | "mutation" | "subscription"
        ) {
            findings.error(
                &at.key("operation_type"),
                "operation_type must be query, mutation, or subscription",
            );
        }
        if entry.fields.as_ref().is_some_and(Vec::is_empty) {
            findings.error(&at.key("fields"), "fields list cannot be empty");
        }
    }
    if (allow_registered || !doc.graphql_persisted_queries.is_empty())
        && !matches!(protocol, Some(Protocol::Graphql | Protocol::Websocket))
    {
        findings.warn(
            &path.key("persisted_queries"),
            "persisted query settings only apply to protocol graphql or websocket; ignored",
        );
    }
    allow_registered
}
