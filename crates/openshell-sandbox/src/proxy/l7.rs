//! One REST request judged against the policy (reference §4.10), for both
//! front doors: forward `http://` requests and requests inside inspected
//! tunnels. The caller turns the [`Judgement`] into bytes its way.

use serde_json::{Value, json};

use openshell_policy::canonical::canonicalize_target;
use openshell_policy::l4::L4Allow;
use openshell_policy::l7::{RestRequest, Verdict};

use super::response::{self, L7Denial};
use crate::events::NetworkEvent;

/// What to do with the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Answer with this status and JSON body; `policy` names the entry for
    /// the `X-OpenShell-Policy` header.
    Refuse {
        status: u16,
        body: Value,
        policy: Option<String>,
    },
    /// Forward with this canonical origin-form target (path and raw query).
    Forward { target: String },
}

/// The request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Origin-form target, as sent.
    pub target: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub binary: &'a str,
}

/// Canonicalises the target and evaluates it. Fills `event` (path, policy,
/// decision `deny`/`audit`/`allow`, reason); the caller emits it.
pub fn judge(allow: &L4Allow<'_>, request: &Incoming<'_>, event: &mut NetworkEvent) -> Judgement {
    let allow_encoded_slash = allow.matched.iter().any(|m| m.endpoint.allow_encoded_slash);
    let canonical = match canonicalize_target(request.target, allow_encoded_slash) {
        Ok(canonical) => canonical,
        Err(error) => {
            event.decision = "deny";
            event.reason = Some(format!("invalid request target: {error:?}"));
            return Judgement::Refuse {
                status: 400,
                body: json!({"error": "invalid_request_target", "detail": "the request path cannot be canonicalised safely"}),
                policy: None,
            };
        }
    };
    let verdict = allow.evaluate_rest(&RestRequest {
        method: request.method,
        path: &canonical.path,
        query: &canonical.query,
    });
    event.path = Some(canonical.path.clone());
    event.policy = Some(verdict.policy.to_owned());
    match verdict.verdict {
        Verdict::Deny => {
            let detail = verdict
                .reason
                .unwrap_or_else(|| "request denied by policy".to_owned());
            let body = response::l7_denied_body(&L7Denial {
                policy: verdict.policy,
                method: request.method,
                path: &canonical.path,
                detail: &detail,
                host: request.host,
                port: request.port,
                binary: Some(request.binary),
            });
            event.decision = "deny";
            event.reason = Some(detail);
            return Judgement::Refuse {
                status: 403,
                body,
                policy: Some(verdict.policy.to_owned()),
            };
        }
        Verdict::Audit => {
            event.decision = "audit";
            event.reason = verdict.reason;
        }
        Verdict::Allow => event.decision = "allow",
    }
    Judgement::Forward {
        target: match &canonical.raw_query {
            Some(query) => format!("{}?{query}", canonical.path),
            None => canonical.path,
        },
    }
}
