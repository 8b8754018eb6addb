//! Endpoint overlap ("ambiguity") validation (docs/policy.md, "Middlewares and overlap").
//!
//! Two endpoints that can see the same connection must agree on how it is
//! handled, or the outcome would depend on which entry happened to match.

use std::collections::BTreeMap;

use crate::policy::{Endpoint, NetworkPolicy, Protocol};

use super::Findings;

fn paths_overlap(a: &Endpoint, b: &Endpoint) -> bool {
    match (&a.path, &b.path) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => x == y || x.matches(y.as_str()) || y.matches(x.as_str()),
    }
}

fn specificity(endpoint: &Endpoint) -> usize {
    endpoint.path.as_ref().map_or(0, |p| p.specificity())
}

fn connection_conflicts(a: &Endpoint, b: &Endpoint) -> Vec<String> {
    let mut conflicts = Vec::new();
    let tcp = |e: &Endpoint| e.protocol == Some(Protocol::Tcp);
    if tcp(a) != tcp(b) {
        conflicts.push("protocol tcp".to_owned());
    }
    if a.tls != b.tls {
        conflicts.push(format!("tls ({:?} vs {:?})", a.tls, b.tls).to_lowercase());
    }
    let mut ips_a = a.allowed_ips.clone();
    let mut ips_b = b.allowed_ips.clone();
    ips_a.sort();
    ips_b.sort();
    if ips_a != ips_b {
        conflicts.push("allowed_ips".to_owned());
    }
    let mcp = |e: &Endpoint| e.protocol == Some(Protocol::Mcp);
    let inspected = |e: &Endpoint| e.protocol.is_some_and(Protocol::is_inspected);
    if (mcp(a) && inspected(b) && !mcp(b)) || (mcp(b) && inspected(a) && !mcp(a)) {
        conflicts.push("mcp shares host:port with a differently inspected endpoint".to_owned());
    }
    if mcp(a) && mcp(b) && (a.mcp != b.mcp || a.body_limit != b.body_limit) {
        conflicts.push("mcp settings".to_owned());
    }
    conflicts
}

fn request_conflicts(a: &Endpoint, b: &Endpoint) -> Vec<String> {
    let inspected = |e: &Endpoint| e.protocol.is_some_and(Protocol::is_inspected);
    if !inspected(a) || !inspected(b) || !paths_overlap(a, b) || specificity(a) != specificity(b) {
        return Vec::new();
    }
    let mut conflicts = Vec::new();
    let mut differ = |same: bool, name: &str| {
        if !same {
            conflicts.push(name.to_owned());
        }
    };
    differ(a.protocol == b.protocol, "protocol");
    differ(a.enforcement == b.enforcement, "enforcement");
    differ(
        a.websocket_credential_rewrite == b.websocket_credential_rewrite,
        "websocket_credential_rewrite",
    );
    differ(
        a.request_body_credential_rewrite == b.request_body_credential_rewrite,
        "request_body_credential_rewrite",
    );
    differ(
        a.allow_encoded_slash == b.allow_encoded_slash,
        "allow_encoded_slash",
    );
    differ(
        a.credential_signing == b.credential_signing
            && a.signing_service == b.signing_service
            && a.signing_region == b.signing_region,
        "credential_signing",
    );
    differ(
        a.credential_provider == b.credential_provider,
        "credential_binding.provider",
    );
    if a.protocol == b.protocol {
        differ(a.body_limit == b.body_limit, "body limit");
    }
    conflicts
}

pub(super) fn check_overlaps(network: &BTreeMap<String, NetworkPolicy>, findings: &mut Findings) {
    let all: Vec<(&NetworkPolicy, usize, &Endpoint)> = network
        .values()
        .flat_map(|entry| {
            entry
                .endpoints
                .iter()
                .enumerate()
                .map(move |(i, e)| (entry, i, e))
        })
        .collect();
    for (n, (entry_a, i, a)) in all.iter().enumerate() {
        for (entry_b, j, b) in &all[n + 1..] {
            let shared: Vec<String> = a
                .ports
                .iter()
                .filter(|p| b.ports.contains(p))
                .map(u16::to_string)
                .collect();
            if shared.is_empty() || !a.host.may_overlap(&b.host) {
                continue;
            }
            let mut conflicts = connection_conflicts(a, b);
            conflicts.extend(request_conflicts(a, b));
            if conflicts.is_empty() {
                continue;
            }
            let path = crate::yaml::FieldPath::root()
                .key("network_policies")
                .key(entry_b.key.as_str())
                .key("endpoints")
                .index(*j);
            findings.error(
                &path,
                format!(
                    "network policies '{}' endpoint[{i}] ({}) and '{}' endpoint[{j}] ({}) overlap on port(s) {} with conflicting metadata: {}",
                    entry_a.name,
                    a.selector(),
                    entry_b.name,
                    b.selector(),
                    shared.join(","),
                    conflicts.join(", ")
                ),
            );
        }
    }
}
