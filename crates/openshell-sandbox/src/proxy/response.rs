//! Every answer the proxy writes itself, and only here, byte for byte as
//! docs/policy.md ("The proxy's answers") states them: raw HTTP/1.1 with
//! `Connection: close`; JSON bodies have `Content-Type: application/json`
//! and a `Content-Length`. Refusals come from a decision's
//! [`Refusal`] ([`refusal`]); the others are protocol errors.

use serde_json::{Map, Value, json};

use super::credentials::{CredentialError, MAX_REWRITE_BODY};
use super::decide::{Refusal, RuleDenial};

/// `HTTP/1.1 200 Connection Established`, the CONNECT success line.
pub const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";
/// Head larger than the limit: no body.
pub const HEADERS_TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Malformed head or body framing: no body.
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A JSON error response; `extra_headers` are `Name: value` lines.
fn json(status: u16, body: &Value, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// An answer the proxy writes itself: status, JSON body, and the policy
/// named in `X-OpenShell-Policy` (L7 denials). Raw connections take its
/// [`Answer::to_bytes`], inspected tunnels hand it to hyper.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub policy: Option<String>,
}

impl Answer {
    fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            policy: None,
        }
    }

    /// The whole response, `Connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self
            .policy
            .as_deref()
            .map(|p| ("X-OpenShell-Policy", p))
            .into_iter()
            .collect();
        json(self.status, &self.body, &headers)
    }
}

/// The answer to a refused request.
pub fn refusal(refusal: &Refusal) -> Answer {
    match refusal {
        Refusal::Policy { detail, reason } => {
            let mut body = Map::new();
            body.insert("error".into(), "policy_denied".into());
            body.insert("detail".into(), detail.as_str().into());
            if !reason.is_empty() {
                body.insert("reason".into(), reason.as_str().into());
            }
            Answer::new(403, Value::Object(body))
        }
        Refusal::Destination { detail } => {
            Answer::new(403, json!({"error": "ssrf_denied", "detail": detail}))
        }
        Refusal::InvalidTarget => Answer::new(
            400,
            json!({"error": "invalid_request_target", "detail": "the request path cannot be canonicalised safely"}),
        ),
        Refusal::Rule(denial) => Answer {
            status: 403,
            body: l7_denied_body(denial),
            policy: Some(denial.policy.clone()),
        },
        Refusal::AuthorityMismatch => authority_mismatch(),
        Refusal::Upstream { detail } => upstream_unreachable(detail),
        Refusal::Credential { error, forward } => credential(*error, *forward),
    }
}

/// A request whose credentials cannot be sent (docs/providers.md, "When
/// a credential cannot be used"); the forward-proxy path answers with a
/// `detail`, inspected tunnels with a `message`, as the established proxy
/// does.
pub fn credential(error: CredentialError, forward: bool) -> Answer {
    let (status, body) = match (error, forward) {
        (CredentialError::EndpointMismatch, false) => (
            403,
            json!({"error": "credential_endpoint_mismatch", "message": "Credential is not authorized for this request endpoint"}),
        ),
        (CredentialError::EndpointMismatch, true) => (
            403,
            json!({"error": "credential_endpoint_mismatch", "detail": "credential is not authorized for this request endpoint"}),
        ),
        (CredentialError::Unavailable, false) => (
            500,
            json!({"error": "credential_unavailable", "message": "Credential placeholder could not be resolved"}),
        ),
        (CredentialError::Unavailable, true) => (
            500,
            json!({"error": "credential_injection_failed", "detail": "unresolved credential placeholder in request"}),
        ),
        (CredentialError::InBody, _) => (
            403,
            json!({"error": "credential_in_body", "message": "Credential placeholder in a request body that this endpoint does not rewrite (request_body_credential_rewrite is off, or the content type is not JSON, form or text)"}),
        ),
        (CredentialError::Uninspected, _) => (
            403,
            json!({"error": "uninspected_credentials", "message": "Credentials are bound to this endpoint, but its traffic is not inspected (tls: skip); set allow_uninspected_credentials on the endpoint to tunnel it anyway"}),
        ),
        (CredentialError::BodyTooLarge, _) => (
            413,
            json!({"error": "credential_body_too_large", "message": format!("Request body too large to rewrite credentials in (limit {MAX_REWRITE_BODY} bytes)")}),
        ),
    };
    Answer::new(status, body)
}

/// 403: a request's authority names another host than its tunnel (or its
/// `Host` another than its URL).
pub fn authority_mismatch() -> Answer {
    Answer::new(
        403,
        json!({"error": "request_authority_mismatch", "message": "HTTP request authority does not match the authorized tunnel endpoint"}),
    )
}

/// 502: the allowed upstream could not be reached.
pub fn upstream_unreachable(detail: &str) -> Answer {
    Answer::new(
        502,
        json!({"error": "upstream_unreachable", "detail": detail}),
    )
}

/// 502: TLS to the upstream failed.
pub fn upstream_tls_failed(detail: &str) -> Answer {
    Answer::new(
        502,
        json!({"error": "upstream_tls_failed", "detail": detail}),
    )
}

/// 400: a forward request for another scheme than `http`.
pub fn unsupported_scheme() -> Answer {
    Answer::new(
        400,
        json!({"error": "unsupported_proxy_scheme", "detail": "Forward proxy requests must use http"}),
    )
}

/// 403: an inspected tunnel speaking something the proxy cannot judge.
pub fn unsupported_l7_protocol(h2c: bool) -> Answer {
    let detail = if h2c {
        "HTTP/2 prior-knowledge (h2c) is not supported for L7-inspected endpoints"
    } else {
        "Unsupported tunnel protocol for L7-inspected endpoint"
    };
    Answer::new(
        403,
        json!({"error": "unsupported_l7_protocol", "detail": detail}),
    )
}

/// 400: the canonical path is not a URI hyper accepts.
pub fn invalid_canonical_target() -> Answer {
    Answer::new(
        400,
        json!({"error": "invalid_request_target", "detail": "the canonical path is not a valid URI"}),
    )
}

/// 503: the tunnel's upstream connection is serving another request.
pub fn upstream_busy() -> Answer {
    Answer::new(
        503,
        json!({"error": "upstream_busy", "detail": "the upstream connection is in use"}),
    )
}

/// The JSON body of an L7 denial (docs/policy.md, "The proxy's answers"). The policy advisor is not built,
/// so `next_steps` is empty and there is no `agent_guidance`.
fn l7_denied_body(denial: &RuleDenial) -> Value {
    let rule = format!("{} {}", denial.method, denial.path);
    let mut missing = Map::new();
    missing.insert("type".into(), "rest_allow".into());
    missing.insert("layer".into(), "l7".into());
    missing.insert("method".into(), denial.method.as_str().into());
    missing.insert("path".into(), denial.path.as_str().into());
    missing.insert("host".into(), denial.host.as_str().into());
    missing.insert("port".into(), denial.port.into());
    if let Some(binary) = &denial.binary {
        missing.insert("binary".into(), binary.as_str().into());
    }
    let mut body = Map::new();
    body.insert("error".into(), "policy_denied".into());
    body.insert("policy".into(), denial.policy.as_str().into());
    body.insert("rule".into(), rule.into());
    body.insert("detail".into(), denial.detail.as_str().into());
    body.insert("layer".into(), "l7".into());
    body.insert("protocol".into(), "rest".into());
    body.insert("method".into(), denial.method.as_str().into());
    body.insert("path".into(), denial.path.as_str().into());
    body.insert("host".into(), denial.host.as_str().into());
    body.insert("port".into(), denial.port.into());
    if let Some(binary) = &denial.binary {
        body.insert("binary".into(), binary.as_str().into());
    }
    body.insert("rule_missing".into(), Value::Object(missing));
    body.insert("next_steps".into(), Value::Array(Vec::new()));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn policy_denied_matches_the_reference_bytes() {
        let body = r#"{"error":"policy_denied","detail":"CONNECT h.test:443 not permitted by policy","reason":"endpoint h.test:443 is not allowed by any policy"}"#;
        assert_eq!(
            text(
                refusal(&Refusal::Policy {
                    detail: "CONNECT h.test:443 not permitted by policy".into(),
                    reason: "endpoint h.test:443 is not allowed by any policy".into()
                })
                .to_bytes()
            ),
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
        let without_reason = refusal(&Refusal::Policy {
            detail: "d".into(),
            reason: String::new(),
        });
        assert!(!text(without_reason.to_bytes()).contains("reason"));
    }

    #[test]
    fn l7_denial_keeps_the_reference_key_order_and_header() {
        let answer = refusal(&Refusal::Rule(Box::new(RuleDenial {
            policy: "github".into(),
            method: "POST".into(),
            path: "/repos/o/r/issues".into(),
            detail: "POST /repos/o/r/issues not permitted by policy".into(),
            host: "api.github.com".into(),
            port: 443,
            binary: Some("/usr/bin/curl".into()),
        })));
        let response = text(answer.to_bytes());
        assert!(response.contains("\r\nX-OpenShell-Policy: github\r\n"));
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let value: Value = serde_json::from_str(body).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "error",
                "policy",
                "rule",
                "detail",
                "layer",
                "protocol",
                "method",
                "path",
                "host",
                "port",
                "binary",
                "rule_missing",
                "next_steps"
            ]
        );
        assert_eq!(value["rule"], "POST /repos/o/r/issues");
        assert_eq!(value["rule_missing"]["type"], "rest_allow");
    }
}
