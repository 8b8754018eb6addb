//! Rule bodies per protocol and access preset expansion (docs/policy.md,
//! "Rules").

use std::collections::BTreeMap;

use crate::document::{EndpointDocument, MatcherDocument, RuleBodyDocument};
use crate::glob::{self, Glob, Syntax};
use crate::policy::{Access, McpSettings, MethodMatcher, Protocol, Rule, ValueMatcher};
use crate::yaml::FieldPath;

use super::{Findings, compile_glob};

/// Methods that draw no warning on REST rules.
const KNOWN_HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

pub(super) fn http_method(
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

pub(super) fn value_matcher(
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

pub(super) fn named_matchers(
    map: &BTreeMap<String, MatcherDocument>,
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

pub(super) fn ignored_fields(body: &RuleBodyDocument, allowed: &[&str]) -> Vec<&'static str> {
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

pub(super) fn validate_rule(
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

pub(super) fn graphql_fields(
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

pub(super) fn is_strict_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(super) fn mcp_rule(
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
pub(super) fn check_rule_combinations(
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

/// The presets of docs/policy.md, "Rules".
pub(super) fn expand_access(
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
