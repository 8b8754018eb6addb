//! L7 on plain-HTTP forward requests: method and path rules, deny-wins,
//! the reference's 403 body and header, canonical paths forwarded.

use crate::support::sandbox;
use crate::{CURL, PORT, policy, upstream};

const READ_ONLY: &str =
    "        protocol: rest\n        enforcement: enforce\n        access: read-only\n";

#[test]
fn get_is_allowed_and_post_is_denied_with_the_l7_body() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/repos/o/r/issues", network.peer);
    let policy = policy(
        &network.peer.to_string(),
        &[PORT],
        &["/usr/bin/curl"],
        READ_ONLY,
    );
    let outcome = sandbox()
        .policy(&policy)
        .run(
            &[
                &CURL[..],
                &[&url, "--next"],
                &CURL[..][1..],
                &["-D", "-", "-X", "POST", "-d", "x=1", &url],
            ]
            .concat(),
        )
        .success();
    let (get, post) = outcome.stdout.split_once("HTTP/1.1 403").unwrap();
    assert!(
        get.ends_with("GET /repos/o/r/issues 0\n"),
        "{}",
        outcome.stdout
    );
    assert!(
        post.contains("\r\nX-OpenShell-Policy: upstream\r\n"),
        "{post}"
    );
    let body: serde_json::Value =
        serde_json::from_str(post.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "policy_denied");
    assert_eq!(body["layer"], "l7");
    assert_eq!(body["rule"], "POST /repos/o/r/issues");
    assert_eq!(
        body["detail"],
        "POST /repos/o/r/issues not permitted by policy"
    );
    assert_eq!(body["binary"], "/usr/bin/curl");
}

#[test]
fn the_canonical_path_is_what_is_judged_and_forwarded() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/a/./b/../c//d", network.peer);
    let policy = policy(
        &network.peer.to_string(),
        &[PORT],
        &["/usr/bin/curl"],
        READ_ONLY,
    );
    let outcome = sandbox()
        .policy(&policy)
        .run(&[&CURL[..], &["--path-as-is", &url]].concat())
        .success();
    assert_eq!(outcome.stdout, "GET /a/c/d 0\n");
}

#[test]
fn a_dot_dot_escape_is_rejected() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/../etc/passwd", network.peer);
    let policy = policy(
        &network.peer.to_string(),
        &[PORT],
        &["/usr/bin/curl"],
        READ_ONLY,
    );
    let outcome = sandbox()
        .policy(&policy)
        .run(
            &[
                &CURL[..],
                &[
                    "--path-as-is",
                    "-w",
                    "%{http_code}",
                    "-o",
                    "/dev/null",
                    &url,
                ],
            ]
            .concat(),
        )
        .success();
    assert_eq!(outcome.stdout, "400");
}

#[test]
fn an_l7_endpoint_is_not_tunnelled_uninspected() {
    // TLS termination is not built yet: CONNECT to an endpoint with L7
    // rules is refused rather than relayed without inspection.
    let network = upstream();
    let url = format!("http://{}:{PORT}/", network.peer);
    let policy = policy(
        &network.peer.to_string(),
        &[PORT],
        &["/usr/bin/curl"],
        READ_ONLY,
    );
    let outcome = sandbox()
        .policy(&policy)
        .run(&[&CURL[..], &["-p", &url]].concat());
    assert_eq!(outcome.code, 56, "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("CONNECT tunnel failed, response 403"),
        "{outcome:#?}"
    );
}
