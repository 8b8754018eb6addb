//! L7 on plain-HTTP forward requests: method and path rules, deny-wins,
//! the 403 body and header of docs/policy.md, canonical paths forwarded.

use crate::support::sandbox;
use crate::{CURL, PORT, allow, policy, upstream};

const READ_ONLY: &str =
    "        protocol: rest\n        enforcement: enforce\n        access: read-only\n";

#[test]
fn get_is_allowed_and_post_is_denied_with_the_l7_body() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/repos/o/r/issues", network.peer);
    let policy = allow(&network, &["/usr/bin/curl"], READ_ONLY);
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
    let policy = allow(&network, &["/usr/bin/curl"], READ_ONLY);
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
    let policy = allow(&network, &["/usr/bin/curl"], READ_ONLY);
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
fn plain_http_inside_a_connect_tunnel_is_inspected_too() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/t", network.peer);
    let policy = allow(&network, &["/usr/bin/curl"], READ_ONLY);
    let outcome = sandbox()
        .policy(&policy)
        .run(
            &[
                &CURL[..],
                &["-p", &url, "--next"],
                &CURL[1..],
                &["-p", "-X", "DELETE", "-w", " %{http_code}", &url],
            ]
            .concat(),
        )
        .success();
    let (get, delete) = outcome.stdout.split_once('\n').unwrap();
    assert_eq!(get, "GET /t 0");
    assert!(delete.ends_with(" 403"), "{delete}");
    assert!(delete.contains(r#""rule":"DELETE /t""#), "{delete}");
}

#[test]
fn a_request_for_another_host_inside_the_tunnel_is_refused() {
    let network = upstream();
    let host = network.peer.to_string();
    let policy = policy(&host, &[PORT], &["/usr/bin/python3*"], READ_ONLY);
    let script = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n\
         s.sendall(b'CONNECT {host}:{PORT} HTTP/1.1\\r\\n\\r\\n')\n\
         s.recv(100)\n\
         s.sendall(b'GET / HTTP/1.1\\r\\nHost: other.test:{PORT}\\r\\n\\r\\n')\n\
         print(s.recv(4096).decode().split('\\r\\n\\r\\n', 1)[1])\n"
    );
    let outcome = sandbox().policy(&policy).python(&script).success();
    assert_eq!(
        outcome.stdout.trim(),
        r#"{"error":"request_authority_mismatch","message":"HTTP request authority does not match the authorized tunnel endpoint"}"#
    );
}

/// Answers an upgrade request with 101, then echoes raw bytes.
const UPGRADE_SERVER: &str = r#"
import os, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ['ADDR'], int(os.environ['PORT'])))
s.listen()
def serve(c):
    head = b''
    while b'\r\n\r\n' not in head:
        head += c.recv(4096)
    c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    while True:
        data = c.recv(4096)
        if not data:
            break
        c.sendall(data.upper())
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn an_allowed_upgrade_relays_raw_bytes_after_101() {
    let mut network = crate::netns::TestNetwork::new();
    network.serve(PORT, UPGRADE_SERVER);
    let host = network.peer.to_string();
    let policy = policy(
        &host,
        &[PORT],
        &["/usr/bin/python3*"],
        "        protocol: rest\n        enforcement: enforce\n        access: read-only\n",
    );
    let script = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n\
         s.sendall(b'CONNECT {host}:{PORT} HTTP/1.1\\r\\n\\r\\n')\n\
         s.recv(100)\n\
         s.sendall(b'GET /ws HTTP/1.1\\r\\nHost: {host}:{PORT}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n')\n\
         head = b''\n\
         while b'\\r\\n\\r\\n' not in head:\n    head += s.recv(4096)\n\
         print(head.split(b'\\r\\n')[0].decode())\n\
         s.sendall(b'raw frames')\n\
         print(s.recv(100).decode())\n"
    );
    let outcome = sandbox().policy(&policy).python(&script).success();
    assert_eq!(
        outcome.stdout,
        "HTTP/1.1 101 Switching Protocols\nRAW FRAMES\n"
    );
}
