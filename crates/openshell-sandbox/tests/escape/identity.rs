//! Caller identity at the proxy: an allowed binary counts only while it
//! runs its own code and holds its own connection. Upstreams live in a
//! network namespace the test creates.

use std::path::Path;
use std::process::Command;

use crate::netns::{ECHO_SERVER, TestNetwork};
use crate::support::{sandbox, shared_dir};

const PORT: u16 = 8080;

fn upstream() -> TestNetwork {
    let mut network = TestNetwork::new();
    network.serve(PORT, ECHO_SERVER);
    network
}

/// A policy letting only curl reach the test network's peer.
fn curl_only(network: &TestNetwork) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  upstream:\n    endpoints:\n      - host: \"{}\"\n        port: {PORT}\n    binaries:\n      - path: /usr/bin/curl\n",
        network.peer
    )
}

/// A shared library with a constructor, built into `dir`.
fn build_library(dir: &Path, name: &str) {
    let source = dir.join(format!("{name}.c"));
    std::fs::write(
        &source,
        "__attribute__((constructor)) static void injected(void) {}\n",
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join(format!("{name}.so")))
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is needed for the escape suite");
    assert!(status.success());
}

/// Escape: `LD_PRELOAD=/sandbox/evil.so /usr/bin/curl …` ran the agent's
/// code inside an allowed binary, which then made its own allowed CONNECT.
#[test]
fn code_preloaded_into_an_allowed_binary_is_refused() {
    let network = upstream();
    let dir = shared_dir();
    build_library(dir.path(), "evil");
    let url = format!("http://{}:{PORT}/hello", network.peer);
    let script = format!(
        "curl -sS -m 10 --noproxy '' {url}; \
         LD_PRELOAD=/sandbox/evil.so curl -sS -m 10 --noproxy '' {url}; echo; \
         LD_PRELOAD=/sandbox/evil.so curl -sS -m 10 --noproxy '' -p {url}; echo \" exit=$?\""
    );
    let outcome = sandbox()
        .policy(&curl_only(&network))
        .workdir(dir.path())
        .sh(&script);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines[0], "GET /hello 0",
        "curl alone is allowed: {outcome:#?}"
    );
    let body: serde_json::Value = serde_json::from_str(lines[1])
        .unwrap_or_else(|_| panic!("a forward request must be refused with a body: {outcome:#?}"));
    assert_eq!(body["error"], "policy_denied");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("code injection") && reason.contains("/sandbox/evil.so"),
        "the reason names the library: {reason}"
    );
    assert_eq!(lines[2], " exit=56", "CONNECT refused too: {outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("CONNECT tunnel failed, response 403")
    );
}

/// A loader path pointing into the workspace is refused even when nothing
/// from it was loaded yet (the variable itself is the agent's hand).
#[test]
fn a_library_path_into_the_workspace_is_refused() {
    let network = upstream();
    let dir = shared_dir();
    let url = format!("http://{}:{PORT}/hello", network.peer);
    let script = format!("LD_LIBRARY_PATH=/sandbox/lib curl -sS -m 10 --noproxy '' {url}");
    let outcome = sandbox()
        .policy(&curl_only(&network))
        .workdir(dir.path())
        .sh(&script);
    assert!(
        outcome.stdout.contains("LD_LIBRARY_PATH=/sandbox/lib"),
        "{outcome:#?}"
    );
    assert!(!outcome.stdout.contains("GET /hello"), "{outcome:#?}");
}
