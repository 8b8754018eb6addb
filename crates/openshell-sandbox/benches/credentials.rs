//! The proxy's credential pass on one typical API request (12 headers, a
//! bearer placeholder, a query, a 1 KiB JSON body), in one run against its
//! baseline: the same request turned into the upstream's body type with no
//! providers attached (what the proxy does then).
//!
//! Cases: no providers (baseline); a provider attached, nothing in the
//! request to substitute; the bearer placeholder substituted; the bearer
//! and a JSON body placeholder substituted (an endpoint that rewrites
//! bodies).
//!
//! Run: `cargo bench -p openshell-sandbox --bench credentials`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::Request;

use openshell_proto::v1 as pb;
use openshell_sandbox::proxy::credentials::{Credentials, Destination, Set, rewrite_request};

const PLACEHOLDER: &str = "openshell:resolve:env:v3_API_TOKEN";

fn request(bearer: &str, body_token: &str) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"m","token":"{body_token}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(1000)
    );
    let mut builder = Request::post("/v1/messages?beta=true&limit=10")
        .header("host", "api.test")
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", "bench/1.0");
    for i in 0..7 {
        builder = builder.header(format!("x-extra-{i}"), format!("value-{i}-abcdefghij"));
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}

fn set(runtime: &tokio::runtime::Runtime) -> Arc<Set> {
    let credentials = Credentials::new(false);
    credentials.replace(&pb::SandboxCredentials {
        credentials: vec![
            pb::BoundCredential {
                provider: "tok".into(),
                key: "API_TOKEN".into(),
                value: "sk-bench-SECRET-000000000000000000000001".into(),
                placeholders: (1..=3)
                    .rev()
                    .map(|r| format!("openshell:resolve:env:v{r}_API_TOKEN"))
                    .collect(),
                endpoints: vec!["api.test:443/v1/**".into()],
            },
            pb::BoundCredential {
                provider: "gh".into(),
                key: "GITHUB_TOKEN".into(),
                value: "ghp-bench-SECRET".into(),
                placeholders: vec!["ghp_0penShe11aaaaaaaaaaaaaaaaaaaaaaaaaaa".into()],
                endpoints: vec!["api.github.com:443".into()],
            },
        ],
    });
    runtime.block_on(credentials.current())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let set = set(&runtime);
    let policy = openshell_policy::load_str("version: 1\n").unwrap().policy;
    let destination = Destination {
        host: "api.test",
        port: 443,
        path: "/v1/messages",
        policy: &policy,
    };
    let literal = "x".repeat(PLACEHOLDER.len());
    let mut group = c.benchmark_group("credentials");
    group.bench_function("baseline: no providers", |b| {
        b.iter(|| {
            let (parts, body) = request(&literal, &literal).into_parts();
            let body = body.map_err(|never| match never {}).boxed();
            black_box((parts, body))
        });
    });
    for (name, bearer, in_body, rewrite_body) in [
        (
            "provider attached, nothing to substitute",
            literal.as_str(),
            literal.as_str(),
            false,
        ),
        ("bearer substituted", PLACEHOLDER, literal.as_str(), false),
        (
            "bearer and JSON body substituted",
            PLACEHOLDER,
            PLACEHOLDER,
            true,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let (mut parts, body) = request(bearer, in_body).into_parts();
                let body = runtime
                    .block_on(rewrite_request(
                        set.clone(),
                        &mut parts,
                        body,
                        &destination,
                        rewrite_body,
                        Arc::new(AtomicBool::new(false)),
                    ))
                    .unwrap();
                black_box((parts, body))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
