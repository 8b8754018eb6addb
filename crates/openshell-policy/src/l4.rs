//! The L4 decision (docs/policy.md, "Decisions"): host, port and calling binary.
//!
//! Allowed only when one entry matches the endpoint **and** the binary (the
//! executable or any ancestor). The allowed path does not allocate.

use std::fmt::Write as _;

use smallvec::SmallVec;

use crate::compile::{CompiledPolicy, EndpointRef};
use crate::host::{HostPattern, normalize_request_host};
use crate::policy::{Endpoint, NetworkPolicy};
use crate::ssrf::DestinationMode;

/// The deny reason when the policy has no network entries at all.
pub const NO_POLICIES_REASON: &str = "network connections not allowed by policy";

const SYMLINK_HINT: &str = "SYMLINK HINT: binaries are identified by the resolved target of \
/proc/<pid>/exe, not by the path that was typed. If the policy lists a symlink (for example \
/usr/bin/python3), list the file it points to (for example /usr/bin/python3.11) as well";

/// Who is connecting where.
#[derive(Debug, Clone, Copy)]
pub struct L4Request<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The resolved executable of the calling process.
    pub binary: &'a str,
    /// Executables of its ancestors, nearest first.
    pub ancestors: &'a [&'a str],
    /// Absolute paths seen in argv: for diagnostics only, never to grant access.
    pub cmdline: &'a [&'a str],
    /// Relaxed identity (docs/policy.md, "Binaries"): match endpoints only, ignore binaries.
    pub ignore_binary: bool,
}

/// An endpoint that matched together with the binary.
#[derive(Debug, Clone, Copy)]
pub struct MatchedEndpoint<'p> {
    /// Map key of the entry.
    pub policy: &'p str,
    pub index: usize,
    pub endpoint: &'p Endpoint,
}

#[derive(Debug, Clone)]
pub struct L4Allow<'p> {
    /// The lexicographically smallest matching entry key.
    pub policy: &'p str,
    /// Every (entry, endpoint) pair that matched, in key order.
    pub matched: SmallVec<[MatchedEndpoint<'p>; 4]>,
}

impl<'p> L4Allow<'p> {
    /// Matched endpoints with extended config (protocol, allowed_ips or tls).
    pub fn endpoint_configs(&self) -> impl Iterator<Item = &MatchedEndpoint<'p>> {
        self.matched
            .iter()
            .filter(|m| m.endpoint.has_extended_config())
    }

    /// How the destination of `host` is checked (docs/policy.md, "Destinations";
    /// the trusted-gateway alias needs runtime facts and is chosen by the proxy).
    pub fn destination_mode(&self, host: &str) -> DestinationMode<'p> {
        if let Some(m) = self
            .endpoint_configs()
            .find(|m| !m.endpoint.allowed_ips.is_empty())
        {
            return DestinationMode::AllowedIps(&m.endpoint.allowed_ips);
        }
        // An always-blocked literal is no implicit allowance (docs/policy.md,
        // "Destinations"); it falls through to the declared-host check,
        // which refuses it.
        if let Some(ip) = self
            .matched
            .iter()
            .find_map(|m| m.endpoint.host.ip())
            .filter(|ip| !crate::ssrf::is_always_blocked(*ip))
        {
            return DestinationMode::IpLiteral(ip);
        }
        let declared = normalize_request_host(host).is_some_and(|h| {
            self.matched.iter().any(
                |m| matches!(&m.endpoint.host, HostPattern::Exact(exact) if exact == h.as_str()),
            )
        });
        if declared {
            DestinationMode::DeclaredHost
        } else {
            DestinationMode::PublicOnly
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Deny {
    /// The deny reason (docs/policy.md, "Decisions").
    pub reason: String,
}

#[derive(Debug, Clone)]
pub enum L4Decision<'p> {
    Allow(L4Allow<'p>),
    Deny(L4Deny),
}

impl L4Decision<'_> {
    pub fn is_allowed(&self) -> bool {
        matches!(self, L4Decision::Allow(_))
    }
}

fn binary_matches(entry: &NetworkPolicy, request: &L4Request<'_>) -> bool {
    request.ignore_binary
        || entry
            .binaries
            .iter()
            .any(|binary| binary.matches_caller(request.binary, request.ancestors))
}

impl CompiledPolicy {
    /// Decides whether `request` may open a connection.
    pub fn decide_l4<'p>(&'p self, request: &L4Request<'_>) -> L4Decision<'p> {
        let entries = self.entries();
        if entries.is_empty() {
            return L4Decision::Deny(L4Deny {
                reason: NO_POLICIES_REASON.to_owned(),
            });
        }
        let Some(host) = normalize_request_host(request.host) else {
            return deny_endpoint(request);
        };
        let candidates = self.candidates(host.as_str(), request.port);
        if candidates.is_empty() {
            return deny_endpoint(request);
        }
        let mut matched: SmallVec<[MatchedEndpoint<'p>; 4]> = SmallVec::new();
        let mut last_entry: Option<(u32, bool)> = None;
        for reference in &candidates {
            let entry_matches = match last_entry {
                Some((entry, result)) if entry == reference.entry => result,
                _ => {
                    let result = binary_matches(&entries[reference.entry as usize], request);
                    last_entry = Some((reference.entry, result));
                    result
                }
            };
            if entry_matches {
                matched.push(self.matched_endpoint(*reference));
            }
        }
        match matched.first() {
            Some(first) => L4Decision::Allow(L4Allow {
                policy: first.policy,
                matched,
            }),
            None => L4Decision::Deny(L4Deny {
                reason: binary_reason(entries, &candidates, request),
            }),
        }
    }

    fn matched_endpoint(&self, reference: EndpointRef) -> MatchedEndpoint<'_> {
        MatchedEndpoint {
            policy: &self.entries()[reference.entry as usize].key,
            index: reference.endpoint as usize,
            endpoint: self.endpoint(reference),
        }
    }
}

fn deny_endpoint<'p>(request: &L4Request<'_>) -> L4Decision<'p> {
    L4Decision::Deny(L4Deny {
        reason: format!(
            "endpoint {}:{} is not allowed by any policy",
            request.host.to_ascii_lowercase(),
            request.port
        ),
    })
}

fn binary_reason(
    entries: &[NetworkPolicy],
    candidates: &[EndpointRef],
    request: &L4Request<'_>,
) -> String {
    let mut reasons: Vec<String> = Vec::new();
    let mut seen: Option<u32> = None;
    for reference in candidates {
        if seen == Some(reference.entry) {
            continue;
        }
        seen = Some(reference.entry);
        let mut line = String::new();
        let _ = write!(
            line,
            "binary '{}' not allowed in policy '{}' (ancestors: [{}], cmdline: [{}]). {SYMLINK_HINT}",
            request.binary,
            entries[reference.entry as usize].key,
            request.ancestors.join(" -> "),
            request.cmdline.join(", "),
        );
        reasons.push(line);
    }
    reasons.join("; ")
}

#[cfg(test)]
mod tests;
