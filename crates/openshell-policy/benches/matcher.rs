//! Decisions per second on generated policies of 10 and 1,000 entries.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]
//!
//! Baseline measured in the same run: one `HashMap<String, _>` lookup of the
//! host, i.e. the floor any exact-host matcher pays.
//!
//! Run: `cargo bench -p openshell-policy --bench matcher`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use openshell_policy::l4::{L4Decision, L4Request};
use openshell_policy::l7::RestRequest;
use openshell_policy::{CompiledPolicy, load_str};

/// `entries` entries; every tenth one uses a wildcard host and an L7 rule set.
fn policy_yaml(entries: usize) -> String {
    let mut yaml = String::from("version: 1\nnetwork_policies:\n");
    for i in 0..entries {
        let _ = write!(yaml, "  entry_{i:04}:\n    endpoints:\n");
        if i % 10 == 0 {
            let _ = write!(
                yaml,
                "      - host: \"*.svc{i}.example.org\"\n        port: 443\n        protocol: rest\n        rules:\n          - allow: {{method: GET, path: \"/repos/*/issues\"}}\n          - allow: {{method: POST, path: \"/upload/**\"}}\n        deny_rules:\n          - {{method: \"*\", path: \"/admin/**\"}}\n"
            );
        }
        let _ = write!(
            yaml,
            "      - host: host{i}.example.com\n        ports: [80, 443]\n    binaries:\n      - path: /usr/bin/tool{i}\n      - path: \"/opt/app{i}/**\"\n"
        );
    }
    yaml
}

fn compile(entries: usize) -> CompiledPolicy {
    CompiledPolicy::new(load_str(&policy_yaml(entries)).unwrap().policy)
}

fn request<'a>(host: &'a str, binary: &'a str, ancestors: &'a [&'a str]) -> L4Request<'a> {
    L4Request {
        host,
        port: 443,
        binary,
        ancestors,
        cmdline: &[],
        ignore_binary: false,
    }
}

fn bench(c: &mut Criterion) {
    for entries in [10usize, 1000] {
        let policy = compile(entries);
        let last = entries - 1;
        let exact_host = format!("host{last}.example.com");
        let exact_binary = format!("/usr/bin/tool{last}");
        let glob_binary = format!("/opt/app{last}/bin/node");
        let wildcard_entry = (entries - 1) / 10 * 10;
        let wildcard_host = format!("api.svc{wildcard_entry}.example.org");
        let wildcard_binary = format!("/usr/bin/tool{wildcard_entry}");
        let mut group = c.benchmark_group(format!("entries_{entries}"));
        group.measurement_time(Duration::from_secs(2));
        group.warm_up_time(Duration::from_millis(500));

        let baseline: HashMap<String, usize> = (0..entries)
            .map(|i| (format!("host{i}.example.com"), i))
            .collect();
        group.bench_function("baseline_hashmap_lookup", |b| {
            b.iter(|| black_box(baseline.get(black_box(exact_host.as_str()))))
        });
        group.bench_function("l4_allow_exact_host", |b| {
            b.iter(|| {
                let decision =
                    policy.decide_l4(black_box(&request(&exact_host, &exact_binary, &[])));
                assert!(decision.is_allowed());
            })
        });
        group.bench_function("l4_allow_binary_glob_via_ancestor", |b| {
            let ancestors = [glob_binary.as_str()];
            b.iter(|| {
                let decision =
                    policy.decide_l4(black_box(&request(&exact_host, "/bin/sh", &ancestors)));
                assert!(decision.is_allowed());
            })
        });
        group.bench_function("l4_allow_wildcard_host", |b| {
            b.iter(|| {
                let decision =
                    policy.decide_l4(black_box(&request(&wildcard_host, &wildcard_binary, &[])));
                assert!(decision.is_allowed());
            })
        });
        group.bench_function("l4_deny_unknown_host", |b| {
            b.iter(|| {
                let decision = policy.decide_l4(black_box(&request(
                    "nowhere.example.net",
                    &exact_binary,
                    &[],
                )));
                assert!(!decision.is_allowed());
            })
        });
        let L4Decision::Allow(allow) =
            policy.decide_l4(&request(&wildcard_host, &wildcard_binary, &[]))
        else {
            panic!("setup: wildcard host must be allowed")
        };
        let query: Vec<(String, String)> = vec![("state".into(), "open".into())];
        group.bench_function("l7_rest_allow", |b| {
            b.iter(|| {
                let decision = allow.evaluate_rest(black_box(&RestRequest {
                    method: "GET",
                    path: "/repos/openshell/issues",
                    query: &query,
                }));
                black_box(decision.verdict)
            })
        });
        group.bench_function("l7_rest_deny_rule", |b| {
            b.iter(|| {
                let decision = allow.evaluate_rest(black_box(&RestRequest {
                    method: "GET",
                    path: "/admin/users/1",
                    query: &query,
                }));
                black_box(decision.verdict)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
