//! Incremental changes to a policy's network section (`openshell policy
//! update`, docs/cli.md "Policy and settings"), applied to the document as written, and
//! the document written back as YAML.
//!
//! Operations are parsed from their command-line forms ([`NewEndpoint::parse`],
//! [`Operation::parse_rule`], [`Operation::parse_removal`])
//! and applied in order ([`apply`]); the result is a document the caller
//! validates like any other. [`to_yaml`] writes block YAML (strings plain
//! when unambiguous, double-quoted otherwise), which this crate's parser
//! reads back to the same document.

use crate::document::{
    AllowRuleDocument, BinaryDocument, EndpointDocument, NetworkPolicyDocument, PolicyDocument,
    RuleBodyDocument,
};

/// One incremental change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Adds an endpoint (to the rule `rule`, created if missing) and its binaries.
    AddEndpoint {
        rule: String,
        endpoint: NewEndpoint,
        binaries: Vec<String>,
    },
    /// Removes every endpoint on `host:port`, and rules left empty.
    RemoveEndpoint { host: String, port: u16 },
    /// Adds an L7 allow (or deny) rule to every endpoint on `host:port`.
    AddRule {
        host: String,
        port: u16,
        method: String,
        path: String,
        deny: bool,
    },
    /// Removes a whole network rule.
    RemoveRule { name: String },
}

/// The endpoint an `--add-endpoint` describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewEndpoint {
    pub host: String,
    pub port: u16,
    pub access: String,
    pub protocol: String,
    pub enforcement: String,
    pub allowed_ips: Vec<String>,
    pub allow_uninspected_credentials: bool,
    pub websocket_credential_rewrite: bool,
    pub request_body_credential_rewrite: bool,
}

/// `text` split at `:` into at most `n` fields, the first a host that may
/// be a bracketed IPv6 address (`[::1]:443`, returned without brackets).
fn fields<'a>(text: &'a str, n: usize, flag: &str) -> Result<Vec<&'a str>, String> {
    let Some(bracketed) = text.strip_prefix('[') else {
        return Ok(text.splitn(n, ':').collect());
    };
    let Some((host, rest)) = bracketed.split_once(']') else {
        return Err(format!("{flag} {text}: '[' without its ']'"));
    };
    let mut out = vec![host];
    if !rest.is_empty() {
        let Some(rest) = rest.strip_prefix(':') else {
            return Err(format!("{flag} {text}: expected ':' after ']'"));
        };
        out.extend(rest.splitn(n.saturating_sub(1).max(1), ':'));
    }
    Ok(out)
}

fn host_port(host: &str, port: &str, flag: &str, text: &str) -> Result<(String, u16), String> {
    if host.is_empty() {
        return Err(format!("{flag} {text}: the host is empty"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{flag} {text}: '{port}' is not a port (1-65535)"))?;
    Ok((host.to_owned(), port))
}

impl NewEndpoint {
    /// `host:port[:access[:protocol[:enforcement[:options]]]]`, options a
    /// comma list of `allow-uninspected-credentials`,
    /// `websocket-credential-rewrite`, `request-body-credential-rewrite`,
    /// `allowed-ip=<CIDR|IP>`.
    pub fn parse(text: &str) -> Result<NewEndpoint, String> {
        let flag = "--add-endpoint";
        let parts = fields(text, 6, flag)?;
        if parts.len() < 2 {
            return Err(format!(
                "{flag} {text}: expected host:port[:access[:protocol[:enforcement[:options]]]]"
            ));
        }
        let (host, port) = host_port(parts[0], parts[1], flag, text)?;
        let field = |i: usize| parts.get(i).map_or("", |s| *s).to_owned();
        let mut endpoint = NewEndpoint {
            host,
            port,
            access: field(2),
            protocol: field(3),
            enforcement: field(4),
            ..NewEndpoint::default()
        };
        if !endpoint.access.is_empty()
            && !["read-only", "read-write", "full"].contains(&endpoint.access.as_str())
        {
            return Err(format!(
                "{flag} {text}: access must be read-only, read-write or full"
            ));
        }
        if !endpoint.enforcement.is_empty() && endpoint.protocol.is_empty() {
            return Err(format!("{flag} {text}: enforcement needs a protocol"));
        }
        for option in field(5).split(',').filter(|o| !o.is_empty()) {
            match option {
                "allow-uninspected-credentials" => endpoint.allow_uninspected_credentials = true,
                "websocket-credential-rewrite" => endpoint.websocket_credential_rewrite = true,
                "request-body-credential-rewrite" => {
                    endpoint.request_body_credential_rewrite = true;
                }
                other => match other.strip_prefix("allowed-ip=") {
                    Some(ip) if !ip.is_empty() => endpoint.allowed_ips.push(ip.to_owned()),
                    _ => return Err(format!("{flag} {text}: unknown option '{other}'")),
                },
            }
        }
        Ok(endpoint)
    }

    fn to_document(&self) -> EndpointDocument {
        EndpointDocument {
            host: self.host.clone(),
            port: Some(self.port),
            access: self.access.clone(),
            protocol: self.protocol.clone(),
            enforcement: self.enforcement.clone(),
            allowed_ips: self.allowed_ips.clone(),
            allow_uninspected_credentials: self.allow_uninspected_credentials,
            websocket_credential_rewrite: self.websocket_credential_rewrite,
            request_body_credential_rewrite: self.request_body_credential_rewrite,
            ..EndpointDocument::default()
        }
    }
}

/// The rule name `--add-endpoint` uses by default: `allow_<host>_<port>`
/// with every character outside `[a-z0-9]` as `_`.
pub fn default_rule_name(host: &str, port: u16) -> String {
    let host: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("allow_{host}_{port}")
}

impl Operation {
    /// `--add-allow` / `--add-deny`: `host:port:METHOD:path_glob`, the glob
    /// starting with `/` or being `**`.
    pub fn parse_rule(text: &str, deny: bool) -> Result<Operation, String> {
        let flag = if deny { "--add-deny" } else { "--add-allow" };
        let parts = fields(text, 4, flag)?;
        let [host, port, method, path] = parts[..] else {
            return Err(format!(
                "{flag} {text}: expected host:port:METHOD:path_glob"
            ));
        };
        let (host, port) = host_port(host, port, flag, text)?;
        if method.is_empty() {
            return Err(format!("{flag} {text}: the method is empty"));
        }
        if !(path.starts_with('/') || path == "**") {
            return Err(format!(
                "{flag} {text}: the path must start with / or be **"
            ));
        }
        Ok(Operation::AddRule {
            host,
            port,
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            deny,
        })
    }

    /// `--remove-endpoint host:port`.
    pub fn parse_removal(text: &str) -> Result<Operation, String> {
        let flag = "--remove-endpoint";
        let [host, port] = fields(text, 2, flag)?[..] else {
            return Err(format!("{flag} {text}: expected host:port"));
        };
        let (host, port) = host_port(host, port, flag, text)?;
        Ok(Operation::RemoveEndpoint { host, port })
    }
}

fn on(endpoint: &EndpointDocument, host: &str, port: u16) -> bool {
    endpoint.host.eq_ignore_ascii_case(host)
        && (endpoint.port == Some(port) || endpoint.ports.contains(&port))
}

/// Applies `operations` in order; an operation that finds nothing to act on
/// is an error (and the document is then left as it was).
pub fn apply(
    document: &PolicyDocument,
    operations: &[Operation],
) -> Result<PolicyDocument, String> {
    let mut doc = document.clone();
    for operation in operations {
        match operation {
            Operation::AddEndpoint {
                rule,
                endpoint,
                binaries,
            } => {
                let entry = doc.network_policies.entry(rule.clone()).or_insert_with(|| {
                    NetworkPolicyDocument {
                        name: Some(rule.clone()),
                        ..NetworkPolicyDocument::default()
                    }
                });
                if !entry
                    .endpoints
                    .iter()
                    .any(|e| on(e, &endpoint.host, endpoint.port))
                {
                    entry.endpoints.push(endpoint.to_document());
                }
                let binaries = if binaries.is_empty() && entry.binaries.is_empty() {
                    // No binary named: any program (endpoint-only matching).
                    vec!["/**".to_owned()]
                } else {
                    binaries.clone()
                };
                for path in binaries {
                    if !entry.binaries.iter().any(|b| b.path == path) {
                        entry.binaries.push(BinaryDocument {
                            path,
                            ancestors: None,
                            harness: None,
                        });
                    }
                }
            }
            Operation::RemoveEndpoint { host, port } => {
                let mut found = false;
                for entry in doc.network_policies.values_mut() {
                    let before = entry.endpoints.len();
                    entry.endpoints.retain(|e| !on(e, host, *port));
                    found |= entry.endpoints.len() != before;
                }
                if !found {
                    return Err(format!("no endpoint {host}:{port} in the policy"));
                }
                doc.network_policies.retain(|_, e| !e.endpoints.is_empty());
            }
            Operation::AddRule {
                host,
                port,
                method,
                path,
                deny,
            } => {
                let body = RuleBodyDocument {
                    method: method.clone(),
                    path: path.clone(),
                    ..RuleBodyDocument::default()
                };
                let mut found = false;
                for endpoint in doc
                    .network_policies
                    .values_mut()
                    .flat_map(|e| e.endpoints.iter_mut())
                    .filter(|e| on(e, host, *port))
                {
                    found = true;
                    if *deny {
                        endpoint
                            .deny_rules
                            .get_or_insert_with(Vec::new)
                            .push(body.clone());
                    } else {
                        endpoint
                            .rules
                            .get_or_insert_with(Vec::new)
                            .push(AllowRuleDocument {
                                allow: body.clone(),
                            });
                    }
                }
                if !found {
                    return Err(format!(
                        "no endpoint {host}:{port} in the policy (add it first with --add-endpoint)"
                    ));
                }
            }
            Operation::RemoveRule { name } => {
                if doc.network_policies.remove(name).is_none() {
                    return Err(format!("no network rule '{name}' in the policy"));
                }
            }
        }
    }
    Ok(doc)
}

/// The document as block YAML (unset values left out).
pub fn to_yaml(document: &PolicyDocument) -> String {
    let value = serde_json::to_value(document).unwrap_or(serde_json::Value::Null);
    let mut out = String::new();
    if let serde_json::Value::Object(map) = &value {
        write_map(&mut out, map, 0);
    }
    out
}

/// A string as YAML: plain when nothing in it could be read as anything
/// else, double-quoted (JSON escapes, which YAML shares) otherwise.
fn string(text: &str) -> String {
    let plain = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./*-".contains(c))
        && text.parse::<f64>().is_err()
        && !["true", "false", "null", "yes", "no", "on", "off", "y", "n"]
            .contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(string(s)),
        Value::Array(a) if a.is_empty() => Some("[]".to_owned()),
        Value::Object(o) if o.is_empty() => Some("{}".to_owned()),
        _ => None,
    }
}

fn write_map(out: &mut String, map: &serde_json::Map<String, serde_json::Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first key of a sequence item follows its `- ` on the same line.
        if !(i == 0 && out.ends_with("- ")) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&string(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_value(out: &mut String, value: &serde_json::Value, indent: usize) {
    if let Some(text) = scalar(value) {
        out.push(' ');
        out.push_str(&text);
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        serde_json::Value::Object(map) => write_map(out, map, indent + 2),
        serde_json::Value::Array(items) => {
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                match scalar(item) {
                    Some(text) => {
                        out.push_str("- ");
                        out.push_str(&text);
                        out.push('\n');
                    }
                    None => match item {
                        serde_json::Value::Object(map) => {
                            out.push_str("- ");
                            write_map(out, map, indent + 4);
                        }
                        _ => {
                            out.push('-');
                            write_value(out, item, indent + 2);
                        }
                    },
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_document;

    const BASE: &str = "version: 1
filesystem_policy:
  read_only: [/usr, /etc]
network_policies:
  github:
    name: github
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        access: read-only
    binaries:
      - path: /usr/bin/curl
";

    fn base() -> PolicyDocument {
        parse_document(BASE).unwrap().0
    }

    #[test]
    fn yaml_round_trips_through_the_parser() {
        let doc = base();
        let yaml = to_yaml(&doc);
        assert_eq!(parse_document(&yaml).unwrap().0, doc, "{yaml}");
        assert!(crate::load_str(&yaml).is_ok(), "{yaml}");
        assert!(yaml.contains("\n      - host: api.github.com\n"), "{yaml}");
        // Hostile and ambiguous strings stay strings.
        let mut odd = doc;
        odd.network_policies.get_mut("github").unwrap().binaries[0].path =
            "/opt/x: y # \"z\"\n- w".to_owned();
        odd.network_policies.get_mut("github").unwrap().name = Some("true".to_owned());
        odd.network_policies.get_mut("github").unwrap().endpoints[0].host = "1e3".to_owned();
        let yaml = to_yaml(&odd);
        assert_eq!(parse_document(&yaml).unwrap().0, odd, "{yaml}");
    }

    #[test]
    fn add_endpoint_creates_or_extends_a_rule() {
        let endpoint = NewEndpoint::parse("pypi.org:443:read-only:rest:audit").unwrap();
        assert_eq!(
            (
                endpoint.access.as_str(),
                endpoint.protocol.as_str(),
                endpoint.enforcement.as_str()
            ),
            ("read-only", "rest", "audit")
        );
        let rule = default_rule_name("pypi.org", 443);
        assert_eq!(rule, "allow_pypi_org_443");
        let doc = apply(
            &base(),
            &[Operation::AddEndpoint {
                rule: rule.clone(),
                endpoint,
                binaries: vec!["/usr/bin/pip".into()],
            }],
        )
        .unwrap();
        let added = &doc.network_policies[&rule];
        assert_eq!(added.endpoints[0].host, "pypi.org");
        assert_eq!(added.binaries[0].path, "/usr/bin/pip");
        crate::load_str(&to_yaml(&doc)).unwrap();

        // Into an existing rule: the endpoint joins it, binaries are merged.
        let doc = apply(
            &base(),
            &[Operation::AddEndpoint {
                rule: "github".into(),
                endpoint: NewEndpoint::parse("uploads.github.com:443").unwrap(),
                binaries: vec!["/usr/bin/curl".into(), "/usr/bin/git".into()],
            }],
        )
        .unwrap();
        let github = &doc.network_policies["github"];
        assert_eq!(github.endpoints.len(), 2);
        let paths: Vec<&str> = github.binaries.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(paths, ["/usr/bin/curl", "/usr/bin/git"]);
        // No binary named on a new rule: any program.
        let doc = apply(
            &base(),
            &[Operation::AddEndpoint {
                rule: "x".into(),
                endpoint: NewEndpoint::parse("x.example.com:80").unwrap(),
                binaries: vec![],
            }],
        )
        .unwrap();
        assert_eq!(doc.network_policies["x"].binaries[0].path, "/**");
    }

    #[test]
    fn bracketed_ipv6_hosts_parse_in_every_flag() {
        let endpoint = NewEndpoint::parse("[fd00::7]:8443:read-only").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("fd00::7", 8443));
        assert_eq!(endpoint.access, "read-only");
        let endpoint = NewEndpoint::parse("[::1]:9000").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 9000));
        assert_eq!(
            Operation::parse_removal("[fd00::7]:8443").unwrap(),
            Operation::RemoveEndpoint {
                host: "fd00::7".into(),
                port: 8443
            }
        );
        let Operation::AddRule { host, port, .. } =
            Operation::parse_rule("[fd00::7]:80:get:/x", false).unwrap()
        else {
            panic!()
        };
        assert_eq!((host.as_str(), port), ("fd00::7", 80));
        // Host names and IPv4 as before; malformed brackets say why.
        assert_eq!(NewEndpoint::parse("a.com:1").unwrap().host, "a.com");
        assert!(
            NewEndpoint::parse("[::1:80")
                .unwrap_err()
                .contains("without its ']'")
        );
        assert!(
            NewEndpoint::parse("[::1]80")
                .unwrap_err()
                .contains("expected ':'")
        );
        assert!(
            NewEndpoint::parse("[::1]")
                .unwrap_err()
                .contains("expected host:port")
        );
        // The result is a policy that loads.
        let doc = apply(
            &base(),
            &[Operation::AddEndpoint {
                rule: "v6".into(),
                endpoint: NewEndpoint::parse("[fd00::7]:8443").unwrap(),
                binaries: vec![],
            }],
        )
        .unwrap();
        crate::load_str(&to_yaml(&doc)).unwrap();
    }

    #[test]
    fn rules_and_removals_find_their_endpoint_or_fail() {
        let deny = Operation::parse_rule("api.github.com:443:post:/repos/**", true).unwrap();
        let doc = apply(&base(), &[deny]).unwrap();
        let rules = doc.network_policies["github"].endpoints[0]
            .deny_rules
            .as_ref()
            .unwrap();
        assert_eq!(
            (rules[0].method.as_str(), rules[0].path.as_str()),
            ("POST", "/repos/**")
        );
        crate::load_str(&to_yaml(&doc)).unwrap();

        let missing = Operation::parse_rule("nope.example:443:GET:/x", false).unwrap();
        assert!(
            apply(&base(), &[missing])
                .unwrap_err()
                .contains("no endpoint nope.example:443")
        );
        let removed = apply(
            &base(),
            &[Operation::parse_removal("api.github.com:443").unwrap()],
        )
        .unwrap();
        assert!(
            removed.network_policies.is_empty(),
            "an empty rule is dropped"
        );
        assert!(apply(&base(), &[Operation::RemoveRule { name: "zzz".into() }]).is_err());

        for bad in [
            "nohost",
            ":443",
            "h:0",
            "h:99999",
            "h:443:sometimes",
            "h:443::rest:audit:bogus",
        ] {
            assert!(NewEndpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(
            NewEndpoint::parse("h:443:full::audit").is_err(),
            "enforcement needs a protocol"
        );
        assert!(Operation::parse_rule("h:443:GET:relative", false).is_err());
        assert!(Operation::parse_removal("h").is_err());
    }
}
