//! [`CompiledPolicy`]: the only form the proxy sees.
//!
//! Compilation indexes endpoints for the hot path: exact hosts in a hash map,
//! wildcard and hostless endpoints in a short list. Entries keep the key
//! order of the policy, so the first matching entry is the lexicographically
//! smallest key (docs/policy.md, "Decisions": the first matching entry by key).

use std::collections::HashMap;

use smallvec::SmallVec;

use crate::host::HostPattern;
use crate::policy::{Endpoint, NetworkPolicy, Policy};

/// Where an endpoint sits: entry index (key order) and endpoint index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EndpointRef {
    pub entry: u32,
    pub endpoint: u32,
}

/// A policy ready for decisions.
#[derive(Debug)]
pub struct CompiledPolicy {
    policy: Policy,
    entries: Vec<NetworkPolicy>,
    /// Lower-cased exact host → endpoints naming it, sorted by entry.
    exact: HashMap<String, SmallVec<[EndpointRef; 2]>>,
    /// Wildcard endpoints by the literal labels that end their pattern
    /// (`*.svc.example.org` → `svc.example.org`), sorted by entry.
    wildcards: HashMap<String, SmallVec<[EndpointRef; 2]>>,
    /// Hostless (`allowed_ips`-only) endpoints, sorted by entry.
    hostless: Vec<EndpointRef>,
}

/// The labels after the last label holding a wildcard (never empty for a
/// validated pattern: a wildcard in the last label is rejected).
fn literal_tail(pattern: &str) -> &str {
    let labels: Vec<&str> = pattern.split('.').collect();
    let first_literal = labels
        .iter()
        .rposition(|label| crate::glob::has_wildcard(label))
        .map_or(0, |i| i + 1);
    let skip: usize = labels[..first_literal].iter().map(|l| l.len() + 1).sum();
    &pattern[skip.min(pattern.len())..]
}

impl CompiledPolicy {
    pub fn new(policy: Policy) -> CompiledPolicy {
        let entries: Vec<NetworkPolicy> = policy.network.values().cloned().collect();
        let mut exact: HashMap<String, SmallVec<[EndpointRef; 2]>> = HashMap::new();
        let mut wildcards: HashMap<String, SmallVec<[EndpointRef; 2]>> = HashMap::new();
        let mut hostless = Vec::new();
        for (entry_index, entry) in entries.iter().enumerate() {
            for (endpoint_index, endpoint) in entry.endpoints.iter().enumerate() {
                let reference = EndpointRef {
                    entry: entry_index as u32,
                    endpoint: endpoint_index as u32,
                };
                match &endpoint.host {
                    HostPattern::Exact(host) => {
                        exact.entry(host.clone()).or_default().push(reference)
                    }
                    HostPattern::Wildcard(glob) => wildcards
                        .entry(literal_tail(glob.as_str()).to_owned())
                        .or_default()
                        .push(reference),
                    HostPattern::Any => hostless.push(reference),
                }
            }
        }
        CompiledPolicy {
            policy,
            entries,
            exact,
            wildcards,
            hostless,
        }
    }

    /// The validated policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(crate) fn entries(&self) -> &[NetworkPolicy] {
        &self.entries
    }

    pub(crate) fn endpoint(&self, reference: EndpointRef) -> &Endpoint {
        &self.entries[reference.entry as usize].endpoints[reference.endpoint as usize]
    }

    /// Endpoints whose host and port match, in entry order.
    pub(crate) fn candidates(&self, host: &str, port: u16) -> SmallVec<[EndpointRef; 8]> {
        let mut found: SmallVec<[EndpointRef; 8]> = SmallVec::new();
        if let Some(refs) = self.exact.get(host) {
            found.extend(
                refs.iter()
                    .copied()
                    .filter(|r| self.endpoint(*r).ports.binary_search(&port).is_ok()),
            );
        }
        let mut sources = usize::from(!found.is_empty());
        let port_matches = |r: &EndpointRef| self.endpoint(*r).ports.binary_search(&port).is_ok();
        // Every label-boundary suffix of the host can key a wildcard bucket.
        let mut rest = host;
        while let Some((_, tail)) = rest.split_once('.') {
            rest = tail;
            if let Some(refs) = self.wildcards.get(tail) {
                let before = found.len();
                found.extend(
                    refs.iter()
                        .copied()
                        .filter(|r| port_matches(r) && self.endpoint(*r).host.matches(host)),
                );
                sources += usize::from(found.len() > before);
            }
        }
        // Hostless endpoints match any host, but only with allowed_ips (validated).
        let before = found.len();
        found.extend(self.hostless.iter().copied().filter(port_matches));
        sources += usize::from(found.len() > before);
        if sources > 1 {
            found.sort_unstable();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_tail_is_the_suffix_after_the_last_wildcard_label() {
        assert_eq!(literal_tail("*.svc.example.org"), "svc.example.org");
        assert_eq!(literal_tail("**.example.com"), "example.com");
        assert_eq!(
            literal_tail("*-aiplatform.googleapis.com"),
            "googleapis.com"
        );
        assert_eq!(literal_tail("*.s3.*.amazonaws.com"), "amazonaws.com");
        assert_eq!(literal_tail("api.*.com"), "com");
    }
}
