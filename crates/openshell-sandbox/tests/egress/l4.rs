//! L4: allowed host:port and binary get through, by CONNECT and by forward
//! request; anything else gets the 403 of docs/policy.md, "The proxy's answers".

use crate::support::sandbox;
use crate::{CURL, PORT, allow, policy, upstream};

#[test]
fn curl_reaches_an_allowed_upstream_by_forward_request_and_by_connect() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/hello", network.peer);
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/curl"], ""))
        .run(&[&CURL[..], &[&url], &["-p", &url]].concat())
        .success();
    assert_eq!(outcome.stdout, "GET /hello 0\nGET /hello 0\n");
}

#[test]
fn a_port_outside_the_policy_gets_403_policy_denied() {
    let network = upstream();
    let url = format!("http://{}:8081/x", network.peer);
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/curl"], ""))
        .run(&[&CURL[..], &["-i", &url]].concat())
        .success();
    let body = format!(
        r#"{{"error":"policy_denied","detail":"GET {p}:8081/x not permitted by policy","reason":"endpoint {p}:8081 is not allowed by any policy"}}"#,
        p = network.peer
    );
    assert_eq!(
        outcome.stdout,
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
}

#[test]
fn connect_to_a_port_outside_the_policy_is_refused() {
    let network = upstream();
    let url = format!("http://{}:8081/x", network.peer);
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/curl"], ""))
        .run(&[&CURL[..], &["-p", &url]].concat());
    assert_eq!(outcome.code, 56, "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("CONNECT tunnel failed, response 403"),
        "{outcome:#?}"
    );
}

#[test]
fn a_binary_outside_the_policy_is_denied_the_same_host() {
    let network = upstream();
    let script = format!(
        "import urllib.request, urllib.error\ntry:\n    urllib.request.urlopen('http://{}:{PORT}/', timeout=10)\n    print('allowed')\nexcept urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n",
        network.peer
    );
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/curl"], ""))
        .python(&script)
        .success();
    let (code, body) = outcome.stdout.split_once(' ').unwrap();
    assert_eq!(code, "403");
    let body: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(body["error"], "policy_denied");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("binary '/usr/bin/python3")
            && reason.contains("not allowed in policy 'upstream'"),
        "{reason}"
    );
}

#[test]
fn an_ancestor_listed_in_the_policy_admits_its_children() {
    // The policy names the shell, curl runs under it (docs/policy.md, "Decisions").
    let network = upstream();
    let url = format!("http://{}:{PORT}/via-parent", network.peer);
    let outcome = sandbox()
        .policy(&allow(&network, &["/usr/bin/dash"], ""))
        .sh(&format!("curl -sS -m 10 --noproxy '' {url}"))
        .success();
    assert_eq!(outcome.stdout, "GET /via-parent 0\n");
}

#[test]
fn every_decision_is_one_event_without_query_strings() {
    let network = upstream();
    let sandbox = sandbox()
        .policy(&allow(&network, &["/usr/bin/curl"], ""))
        .with_events();
    let allowed = format!("http://{}:{PORT}/ok?token=s3cr3t", network.peer);
    let denied = format!("http://{}:8081/no?token=s3cr3t", network.peer);
    let outcome = sandbox.run(&[&CURL[..], &[&allowed, &denied]].concat());
    assert_eq!(outcome.code, 0, "{outcome:#?}");
    let events = sandbox.events_file();
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(
        !text.contains("s3cr3t"),
        "a query string reached the events: {text}"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["path"], "/ok");
    assert_eq!(lines[0]["policy"], "upstream");
    assert_eq!(lines[0]["binary"], "/usr/bin/curl");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["port"], 8081);
    assert_eq!(
        lines[1]["reason"],
        format!(
            "endpoint {}:8081 is not allowed by any policy",
            network.peer
        )
    );
    for line in &lines {
        assert!(line["pid"].as_u64().is_some());
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn a_binary_changed_after_first_use_is_denied_as_an_integrity_violation() {
    let network = upstream();
    let dir = crate::support::shared_dir();
    let url = format!("http://{}:{PORT}/i", network.peer);
    // The same path, first with curl's bytes, then with one byte appended:
    // still a working curl, but no longer the binary that was trusted.
    let script = format!(
        "cp /usr/bin/curl /sandbox/c && /sandbox/c -sS -m 10 --noproxy '' {url}; \
         cp /usr/bin/curl /sandbox/c2 && echo >> /sandbox/c2 && mv /sandbox/c2 /sandbox/c && \
         /sandbox/c -sS -m 10 --noproxy '' {url}"
    );
    let outcome = sandbox()
        .workdir(dir.path())
        .policy(&allow(&network, &["/sandbox/c"], ""))
        .sh(&script)
        .success();
    let (first, second) = outcome.stdout.split_once('\n').unwrap();
    assert_eq!(first, "GET /i 0");
    let body: serde_json::Value = serde_json::from_str(second).unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("binary integrity check failed: Binary integrity violation: /sandbox/c hash changed (cached: "),
        "{reason}"
    );
}

#[test]
fn a_socket_shared_with_a_different_binary_is_denied_as_ambiguous() {
    let network = upstream();
    let host = network.peer.to_string();
    // python opens the connection, then a forked child execs `sleep` while
    // keeping the socket: two owners with different identities.
    let script = format!(
        "import os, socket, time\n\
         s = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n\
         os.set_inheritable(s.fileno(), True)\n\
         if os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', '3'])\n\
         time.sleep(0.5)\n\
         s.sendall(b'CONNECT {host}:{PORT} HTTP/1.1\\r\\n\\r\\n')\n\
         print(s.recv(4096).decode().split('\\r\\n\\r\\n', 1)[1])\n"
    );
    let outcome = sandbox()
        .policy(&policy(&host, &[PORT], &["/usr/bin/python3*"], ""))
        .python(&script)
        .success();
    let body: serde_json::Value = serde_json::from_str(outcome.stdout.trim()).unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("ambiguous shared socket ownership: inode ")
            && reason.ends_with(" with different policy identities"),
        "{reason}"
    );
}

#[test]
fn control_plane_ports_are_refused_even_when_the_policy_names_them() {
    let network = upstream();
    let url = format!("http://{}:6443/", network.peer);
    let outcome = sandbox()
        .policy(&policy(
            &network.peer.to_string(),
            &[6443],
            &["/usr/bin/curl"],
            "",
        ))
        .run(&[&CURL[..], &[&url]].concat())
        .success();
    let body: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(body["error"], "ssrf_denied", "{body}");
    assert_eq!(
        body["detail"],
        format!(
            "GET {}:6443 blocked: declared endpoint check failed",
            network.peer
        )
    );
}
