//! One endpoint: host, ports, protocol matrix (reference §1.7, §1.8), rule
//! bodies per protocol (§1.10) and access preset expansion (§1.11).

use crate::document::{EndpointDocument, MatcherDocument, RuleBodyDocument};
use crate::glob::{self, Glob, Syntax};
use crate::host::HostPattern;
use crate::policy::{
    Access, Endpoint, Enforcement, McpSettings, MethodMatcher, Protocol, Rule, TlsMode,
    ValueMatcher,
};
use crate::ssrf;
use crate::yaml::FieldPath;

use super::Findings;

/// Methods that draw no warning on REST rules.
const KNOWN_HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
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
        let mut rule = Rule::any_path(MethodMatcher::Any);
        rule.command = None;
        rules.push(rule);
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
        Some(binding) => Some(binding.provider.clone()),
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

fn compile_glob(
    pattern: &str,
    syntax: Syntax,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Glob> {
    match Glob::new(pattern, syntax) {
        Ok(glob) => Some(glob),
        Err(e) => {
            findings.error(at, e.to_string());
            None
        }
    }
}

/// The table of reference §1.8; returns the MCP settings when they apply.
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

fn http_method(
    method: &str,
    websocket: bool,
    at: &FieldPath,
    findings: &mut Findings,
) -> MethodMatcher {
    if method.is_empty() || method == "*" {
        return MethodMatcher::Any;
    }
    let is_token = method
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b));
    if !is_token {
        findings.error(at, format!("invalid HTTP method '{method}'"));
        return MethodMatcher::Any;
    }
    let upper = method.to_ascii_uppercase();
    if websocket {
        if upper != "GET" && upper != "WEBSOCKET_TEXT" {
            findings.warn(
                at,
                format!("websocket method '{method}' is not one of GET, WEBSOCKET_TEXT, *"),
            );
        }
    } else if !KNOWN_HTTP_METHODS.contains(&upper.as_str()) {
        findings.warn(
            at,
            format!(
                "HTTP method '{method}' is not one of GET HEAD POST PUT DELETE PATCH OPTIONS *"
            ),
        );
    }
    MethodMatcher::Exact(upper)
}

fn value_matcher(
    matcher: &MatcherDocument,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<ValueMatcher> {
    if matcher.globs().is_empty() {
        findings.error(at, "`any` must list at least one value");
        return None;
    }
    let globs: Vec<Glob> = matcher
        .globs()
        .iter()
        .filter_map(|g| compile_glob(g, Syntax::Text, at, findings))
        .collect();
    (globs.len() == matcher.globs().len()).then_some(ValueMatcher(globs))
}

fn named_matchers(
    map: &std::collections::BTreeMap<String, MatcherDocument>,
    at: &FieldPath,
    findings: &mut Findings,
) -> Vec<(String, ValueMatcher)> {
    map.iter()
        .filter_map(|(name, matcher)| {
            if name.is_empty() {
                findings.error(at, "matcher names must not be empty");
                return None;
            }
            value_matcher(matcher, &at.key(name.as_str()), findings).map(|m| (name.clone(), m))
        })
        .collect()
}

fn ignored_fields(body: &RuleBodyDocument, allowed: &[&str]) -> Vec<&'static str> {
    let present = [
        ("method", !body.method.is_empty()),
        ("path", !body.path.is_empty()),
        ("query", !body.query.is_empty()),
        ("command", !body.command.is_empty()),
        ("operation_type", !body.operation_type.is_empty()),
        ("operation_name", !body.operation_name.is_empty()),
        ("fields", body.fields.is_some()),
        ("tool", body.tool.is_some()),
        ("params", !body.params.is_empty()),
    ];
    present
        .into_iter()
        .filter(|(name, set)| *set && !allowed.contains(name))
        .map(|(name, _)| name)
        .collect()
}

fn validate_rule(
    body: &RuleBodyDocument,
    protocol: Option<Protocol>,
    mcp: Option<McpSettings>,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Rule> {
    let errors_before = findings.errors.len();
    let allowed: &[&str] = match protocol {
        None | Some(Protocol::Rest) => &["method", "path", "query"],
        Some(Protocol::Websocket) => &[
            "method",
            "path",
            "query",
            "operation_type",
            "operation_name",
            "fields",
        ],
        Some(Protocol::Graphql) => &["operation_type", "operation_name", "fields"],
        Some(Protocol::Sql) => &["command"],
        Some(Protocol::JsonRpc) => &["method", "params"],
        Some(Protocol::Mcp) => &["method", "tool", "params"],
        Some(Protocol::Tcp) => &[],
    };
    let ignored = ignored_fields(body, allowed);
    if !ignored.is_empty() {
        let protocol_name = protocol.map_or("rest", Protocol::as_str);
        findings.warn(
            at,
            format!(
                "field(s) {} are ignored for protocol {protocol_name}",
                ignored.join(", ")
            ),
        );
    }
    let mut rule = Rule::any_path(MethodMatcher::Any);
    match protocol {
        None | Some(Protocol::Rest) | Some(Protocol::Websocket) => {
            let websocket = protocol == Some(Protocol::Websocket);
            if websocket && body.has_http_fields() && body.has_graphql_fields() {
                findings.error(
                    at,
                    "websocket rule cannot mix method/path/query with operation_type/operation_name/fields",
                );
            }
            rule.method = http_method(&body.method, websocket, &at.key("method"), findings);
            rule.path = match body.path.as_str() {
                "" | "**" => None,
                value if !value.starts_with('/') => {
                    findings.error(
                        &at.key("path"),
                        format!("path must start with '/' or be '**', got '{value}'"),
                    );
                    None
                }
                value => compile_glob(value, Syntax::Path, &at.key("path"), findings),
            };
            rule.query = named_matchers(&body.query, &at.key("query"), findings);
            if websocket {
                graphql_fields(body, &mut rule, at, findings);
            }
        }
        Some(Protocol::Graphql) => graphql_fields(body, &mut rule, at, findings),
        Some(Protocol::Sql) => {
            rule.command = Some(body.command.clone()).filter(|c| !c.is_empty() && c != "*");
        }
        Some(Protocol::JsonRpc) => {
            if body.method.is_empty() {
                findings.error(&at.key("method"), "json-rpc rules require method");
            } else if body.method != "*" && glob::has_wildcard(&body.method) {
                findings.error(
                    &at.key("method"),
                    format!(
                        "json-rpc method must be an exact name or '*', got '{}'",
                        body.method
                    ),
                );
            } else if body.method != "*" {
                rule.method = MethodMatcher::Exact(body.method.clone());
            }
            if !body.params.is_empty() {
                findings.error(
                    &at.key("params"),
                    "json-rpc rules do not support params matchers",
                );
            }
        }
        Some(Protocol::Mcp) => mcp_rule(body, mcp, &mut rule, at, findings),
        Some(Protocol::Tcp) => {}
    }
    (findings.errors.len() == errors_before).then_some(rule)
}

fn graphql_fields(
    body: &RuleBodyDocument,
    rule: &mut Rule,
    at: &FieldPath,
    findings: &mut Findings,
) {
    match body.operation_type.as_str() {
        "" => {}
        "*" => rule.operation_type = None,
        t @ ("query" | "mutation" | "subscription") => rule.operation_type = Some(t.to_owned()),
        other => findings.error(
            &at.key("operation_type"),
            format!("operation_type must be query, mutation, subscription, or *, got '{other}'"),
        ),
    }
    if !body.operation_name.is_empty() {
        rule.operation_name = compile_glob(
            &body.operation_name,
            Syntax::Text,
            &at.key("operation_name"),
            findings,
        );
    }
    if let Some(fields) = &body.fields {
        if fields.is_empty() {
            findings.error(&at.key("fields"), "fields list cannot be empty");
        }
        rule.fields = Some(
            fields
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    compile_glob(f, Syntax::Text, &at.key("fields").index(i), findings)
                })
                .collect(),
        );
    }
}

fn is_strict_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn mcp_rule(
    body: &RuleBodyDocument,
    mcp: Option<McpSettings>,
    rule: &mut Rule,
    at: &FieldPath,
    findings: &mut Findings,
) {
    let settings = mcp.unwrap_or(McpSettings {
        strict_tool_names: true,
        allow_all_known_mcp_methods: false,
    });
    let method = body.method.as_str();
    if method == "*" {
        findings.error(
            &at.key("method"),
            "mcp method '*' is not allowed; set mcp.allow_all_known_mcp_methods instead",
        );
    } else if glob::has_wildcard(method) && !method.starts_with("tools/") {
        findings.error(
            &at.key("method"),
            format!("mcp method globs are only allowed in the tools/ family, got '{method}'"),
        );
    }
    if !method.is_empty() && method != "*" {
        rule.method = MethodMatcher::Exact(method.to_owned());
    }
    let tool = body.tool.as_ref().or_else(|| body.params.get("name"));
    if body.tool.is_some() && body.params.contains_key("name") {
        findings.error(at, "tool and params.name are equivalent; set only one");
    }
    if let Some(tool) = tool {
        if method != "tools/call" && !settings.allow_all_known_mcp_methods {
            findings.error(at, "mcp tool matchers require method: tools/call");
        }
        for name in tool.globs() {
            if glob::has_wildcard(name) && !settings.strict_tool_names {
                findings.error(
                    &at.key("tool"),
                    "wildcard tool matchers require mcp.strict_tool_names: true",
                );
            } else if !glob::has_wildcard(name)
                && settings.strict_tool_names
                && !is_strict_tool_name(name)
            {
                findings.error(
                    &at.key("tool"),
                    format!("MCP tool name must match ^[A-Za-z0-9_.-]{{1,128}}$ when strict_tool_names is enabled, got '{name}'"),
                );
            }
        }
        rule.tool = value_matcher(tool, &at.key("tool"), findings);
    }
    rule.params = named_matchers(&body.params, &at.key("params"), findings)
        .into_iter()
        .filter(|(name, _)| name != "name")
        .collect();
}

/// Checks that need all rules of the endpoint at once.
fn check_rule_combinations(
    doc: &EndpointDocument,
    protocol: Option<Protocol>,
    rules: &[Rule],
    path: &FieldPath,
    findings: &mut Findings,
) {
    let bodies: Vec<&RuleBodyDocument> = doc
        .rules
        .iter()
        .flatten()
        .map(|r| &r.allow)
        .chain(doc.deny_rules.iter().flatten())
        .collect();
    match protocol {
        Some(Protocol::Websocket) => {
            let graphql = bodies.iter().any(|b| b.has_graphql_fields());
            let text = rules
                .iter()
                .any(|r| matches!(&r.method, MethodMatcher::Exact(m) if m == "WEBSOCKET_TEXT"));
            if graphql && text {
                findings.error(
                    &path.key("rules"),
                    "websocket endpoint cannot combine GraphQL operation rules with a WEBSOCKET_TEXT allow",
                );
            }
        }
        Some(Protocol::Mcp) => {
            let broad = bodies.iter().any(|b| {
                b.method == "tools/call" && b.tool.is_none() && !b.params.contains_key("name")
            });
            let specific = doc
                .rules
                .iter()
                .flatten()
                .any(|r| r.allow.tool.is_some() || r.allow.params.contains_key("name"));
            if broad && specific {
                findings.error(
                    &path.key("rules"),
                    "method matcher allows every tool call and conflicts with MCP tool allow rules; name the tools instead",
                );
            }
        }
        _ => {}
    }
}

/// Reference §1.11.
fn expand_access(
    access: Access,
    protocol: Option<Protocol>,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Vec<Rule>> {
    let methods = |names: &[&str]| -> Vec<Rule> {
        names
            .iter()
            .map(|m| Rule::any_path(MethodMatcher::Exact((*m).to_owned())))
            .collect()
    };
    let operations = |types: &[&str]| -> Vec<Rule> {
        types
            .iter()
            .map(|t| {
                let mut rule = Rule::any_path(MethodMatcher::Any);
                rule.operation_type = Some((*t).to_owned());
                rule
            })
            .collect()
    };
    Some(match (protocol, access) {
        (None | Some(Protocol::Rest), Access::ReadOnly) => methods(&["GET", "HEAD", "OPTIONS"]),
        (None | Some(Protocol::Rest), Access::ReadWrite) => {
            methods(&["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"])
        }
        (Some(Protocol::Websocket), Access::ReadOnly) => methods(&["GET"]),
        (Some(Protocol::Websocket), Access::ReadWrite) => methods(&["GET", "WEBSOCKET_TEXT"]),
        (Some(Protocol::Graphql), Access::ReadOnly) => operations(&["query"]),
        (Some(Protocol::Graphql), Access::ReadWrite) => operations(&["query", "mutation"]),
        (Some(Protocol::Sql), Access::ReadOnly | Access::ReadWrite) => {
            findings.error(
                at,
                "protocol sql supports only access: full; use rules with command",
            );
            return None;
        }
        (_, Access::Full) => vec![Rule::any_path(MethodMatcher::Any)],
        (Some(Protocol::Tcp | Protocol::JsonRpc | Protocol::Mcp), _) => return None,
    })
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
