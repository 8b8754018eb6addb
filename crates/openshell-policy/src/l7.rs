//! The L7 REST decision (docs/policy.md, "Requests").
//!
//! Input: the L4 allow (which endpoints matched with this binary), and one
//! request with a canonical path (see [`crate::canonical`]). Deny rules win
//! across every matched entry; the most specific endpoint `path` selector
//! chooses the config (enforcement, policy key) that labels the outcome.

use crate::l4::{L4Allow, MatchedEndpoint};
use crate::policy::{Enforcement, Protocol, Rule, ValueMatcher};

/// Deny reason when no L7 endpoint's `path` selector covers the request.
pub const NO_PATH_MATCH_REASON: &str = "no L7 endpoint path matched request";

/// One HTTP request inside an inspected tunnel.
#[derive(Debug, Clone, Copy)]
pub struct RestRequest<'a> {
    pub method: &'a str,
    /// Canonical path, without the query.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    /// Not allowed, but the endpoint is in audit mode: logged and forwarded.
    Audit,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Audit => "audit",
            Verdict::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestDecision<'p> {
    pub verdict: Verdict,
    /// Map key of the entry whose endpoint config governs the request.
    pub policy: &'p str,
    /// That endpoint (None when no path selector matched).
    pub endpoint: Option<MatchedEndpoint<'p>>,
    /// Why it was not allowed (also set for audit).
    pub reason: Option<String>,
}

fn all_values_match(query: &[(String, String)], name: &str, matcher: &ValueMatcher) -> bool {
    let mut values = query.iter().filter(|(n, _)| n == name).peekable();
    values.peek().is_some() && values.all(|(_, v)| matcher.matches(v))
}

fn some_value_matches(query: &[(String, String)], name: &str, matcher: &ValueMatcher) -> bool {
    query.iter().any(|(n, v)| n == name && matcher.matches(v))
}

fn rule_matches(rule: &Rule, request: &RestRequest<'_>, deny_side: bool) -> bool {
    if !rule.method.matches(request.method) {
        return false;
    }
    if let Some(path) = &rule.path
        && !path.matches(request.path)
    {
        return false;
    }
    // Allow: every configured key present and all its values match.
    // Deny: every configured key present and at least one value matches.
    rule.query.iter().all(|(name, matcher)| {
        if deny_side {
            some_value_matches(request.query, name, matcher)
        } else {
            all_values_match(request.query, name, matcher)
        }
    })
}

fn is_rest_like(m: &MatchedEndpoint<'_>) -> bool {
    matches!(
        m.endpoint.protocol,
        Some(Protocol::Rest | Protocol::Websocket)
    )
}

fn selector_matches(m: &MatchedEndpoint<'_>, path: &str) -> bool {
    m.endpoint
        .path
        .as_ref()
        .is_none_or(|glob| glob.matches(path))
}

fn specificity(m: &MatchedEndpoint<'_>) -> usize {
    m.endpoint.path.as_ref().map_or(0, |g| g.specificity())
}

impl L4Allow<'_> {
    /// True when some matched endpoint asks for request inspection (any
    /// protocol but `tcp`).
    pub fn is_inspected(&self) -> bool {
        self.matched
            .iter()
            .any(|m| m.endpoint.protocol.is_some_and(Protocol::is_inspected))
    }

    /// Judges one REST request. Without inspected endpoints every request
    /// is allowed (the tunnel is L4 only). Inspected endpoints that are not
    /// REST-like (GraphQL, JSON-RPC, MCP, SQL) never admit a request here:
    /// with no REST endpoint covering it, the request is denied (fail closed).
    pub fn evaluate_rest(&self, request: &RestRequest<'_>) -> RestDecision<'_> {
        if !self.is_inspected() {
            return RestDecision {
                verdict: Verdict::Allow,
                policy: self.policy,
                endpoint: None,
                reason: None,
            };
        }
        let applicable = || {
            self.matched
                .iter()
                .filter(|m| is_rest_like(m) && selector_matches(m, request.path))
        };
        // Most specific selector wins; ties go to the smallest key (first in order).
        let mut chosen: Option<&MatchedEndpoint<'_>> = None;
        for candidate in applicable() {
            if chosen.is_none_or(|c| specificity(candidate) > specificity(c)) {
                chosen = Some(candidate);
            }
        }
        let Some(chosen) = chosen else {
            return RestDecision {
                verdict: Verdict::Deny,
                policy: self.policy,
                endpoint: None,
                reason: Some(NO_PATH_MATCH_REASON.to_owned()),
            };
        };
        let denied = applicable().any(|m| {
            m.endpoint
                .deny_rules
                .iter()
                .any(|rule| rule_matches(rule, request, true))
        });
        let allowed = !denied
            && applicable().any(|m| {
                m.endpoint
                    .rules
                    .iter()
                    .any(|rule| rule_matches(rule, request, false))
            });
        let reason = if denied {
            Some(format!(
                "{} {} blocked by deny rule",
                request.method, request.path
            ))
        } else if !allowed {
            Some(format!(
                "{} {} not permitted by policy",
                request.method, request.path
            ))
        } else {
            None
        };
        let verdict = match (allowed, chosen.endpoint.enforcement) {
            (true, _) => Verdict::Allow,
            (false, Enforcement::Audit) => Verdict::Audit,
            (false, Enforcement::Enforce) => Verdict::Deny,
        };
        RestDecision {
            verdict,
            policy: chosen.policy,
            endpoint: Some(*chosen),
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
