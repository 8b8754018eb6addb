//! Destinations: loopback, link-local/metadata and their IPv6 and
//! IPv4-mapped spellings are refused even when a policy names them exactly
//! (docs/policy.md, "Destinations": an exact host).
//!
//! Nothing here may leave the machine even if the proxy regressed: the
//! supervisor runs in a namespace of its own with only loopback, where a
//! dial to any of these addresses fails locally; and each test checks the
//! event log says the SSRF layer decided, i.e. before any dial.

use crate::CURL;
use crate::netns::Isolated;
use crate::support::{Outcome, Sandbox, sandbox};

/// A sandbox whose supervisor is confined to an isolated namespace.
fn confined(policy: &str) -> (Sandbox, Isolated) {
    let netns = Isolated::new();
    let sandbox = sandbox()
        .policy(policy)
        .with_events()
        .supervisor_netns(&netns.name);
    (sandbox, netns)
}

/// Every decision the sandbox logged was an SSRF denial.
fn decided_before_dialing(sandbox: &Sandbox, outcome: &Outcome) {
    let events = std::fs::read_to_string(sandbox.events_file()).unwrap();
    assert!(!events.is_empty(), "no decision logged: {outcome:#?}");
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["decision"], "deny", "{line}");
        assert_eq!(event["layer"], "ssrf", "{line}");
    }
}

fn refused(policy_host: &str, url: &str, expected_detail: &str) {
    let policy = crate::policy(policy_host, &[80, 8080], &["/usr/bin/curl"], "");
    let (sandbox, _netns) = confined(&policy);
    let outcome = sandbox.run(&[&CURL[..], &[url]].concat()).success();
    let body: serde_json::Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|_| panic!("not a JSON denial: {outcome:#?}"));
    assert_eq!(body["error"], "ssrf_denied", "{url}: {body}");
    assert_eq!(body["detail"], expected_detail, "{url}");
    decided_before_dialing(&sandbox, &outcome);
}

#[test]
fn loopback_is_refused_even_when_named_exactly() {
    refused(
        "127.0.0.1",
        "http://127.0.0.1:8080/",
        "GET 127.0.0.1:8080 blocked: declared endpoint check failed",
    );
}

#[test]
fn cloud_metadata_is_refused() {
    refused(
        "169.254.169.254",
        "http://169.254.169.254/latest/meta-data/",
        "GET 169.254.169.254:80 blocked: declared endpoint check failed",
    );
}

#[test]
fn ipv6_loopback_and_ipv4_mapped_loopback_are_refused() {
    refused(
        "::1",
        "http://[::1]:8080/",
        "GET ::1:8080 blocked: declared endpoint check failed",
    );
    refused(
        "::ffff:127.0.0.1",
        "http://[::ffff:127.0.0.1]:8080/",
        "GET ::ffff:127.0.0.1:8080 blocked: declared endpoint check failed",
    );
}

#[test]
fn a_hostname_resolving_to_loopback_is_refused() {
    refused(
        "localhost",
        "http://localhost:8080/",
        "GET localhost:8080 blocked: declared endpoint check failed",
    );
}

#[test]
fn connect_to_metadata_is_refused_with_the_connect_detail() {
    let policy = crate::policy("169.254.169.254", &[80], &["/usr/bin/python3*"], "");
    let script = "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=10)\ns.sendall(b'CONNECT 169.254.169.254:80 HTTP/1.1\\r\\n\\r\\n')\nprint(s.recv(4096).decode().split('\\r\\n\\r\\n', 1)[1])\n";
    let (sandbox, _netns) = confined(&policy);
    let outcome = sandbox.python(script).success();
    decided_before_dialing(&sandbox, &outcome);
    assert_eq!(
        outcome.stdout.trim(),
        r#"{"error":"ssrf_denied","detail":"CONNECT 169.254.169.254:80 blocked: declared endpoint check failed"}"#
    );
}
