//! [`CompiledPolicy`]: the only form the proxy sees.
//!
//! Compilation indexes endpoints for the hot path: exact hosts in a hash map,
//! wildcard and hostless endpoints in a short list. Entries keep the key
//! order of the policy, so the first matching entry is the lexicographically
//! smallest key (reference §4.2 `matched_policy`).

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
    /// Wildcard and hostless endpoints, sorted by entry.
    patterns: Vec<EndpointRef>,
}

impl CompiledPolicy {
    pub fn new(policy: Policy) -> CompiledPolicy {
        let entries: Vec<NetworkPolicy> = policy.network.values().cloned().collect();
        let mut exact: HashMap<String, SmallVec<[EndpointRef; 2]>> = HashMap::new();
        let mut patterns = Vec::new();
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
                    HostPattern::Wildcard(_) | HostPattern::Any => patterns.push(reference),
                }
            }
        }
        CompiledPolicy {
            policy,
            entries,
            exact,
            patterns,
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
        let before = found.len();
        for reference in &self.patterns {
            let endpoint = self.endpoint(*reference);
            if endpoint.ports.binary_search(&port).is_err() {
                continue;
            }
            let host_matches = match &endpoint.host {
                // Hostless endpoints match any host, but only with allowed_ips (validated).
                HostPattern::Any => true,
                pattern => pattern.matches(host),
            };
            if host_matches {
                found.push(*reference);
            }
        }
        if before > 0 && found.len() > before {
            found.sort_unstable();
        }
        found
    }
}
