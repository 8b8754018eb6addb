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

/// The egress decisions a sandbox recorded: (decision, binary, reason).
fn decisions(events: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
            (text("decision"), text("binary"), text("reason"))
        })
        .collect()
}

/// Escape: python (not allowed) connects to the proxy, hands the socket to
/// `/usr/bin/curl` (allowed) and closes its own copy; curl then writes the
/// request. The proxy looked only at who held the socket when the request
/// came, saw curl, and allowed it. Who connected is now recorded at
/// connect(2), and the connector and the holders must agree.
#[test]
fn a_socket_handed_from_a_denied_binary_to_an_allowed_one_is_refused() {
    let network = upstream();
    let dir = shared_dir();
    let request = format!(
        "GET http://{p}:{PORT}/handoff HTTP/1.1\r\nHost: {p}:{PORT}\r\nConnection: close\r\n\r\n",
        p = network.peer
    );
    std::fs::write(dir.path().join("req"), &request).unwrap();
    // curl's stdout is the socket: it writes the request once python let
    // go, then holds the connection while it waits on a FIFO.
    let script = "import os, socket, subprocess, time\n\
        os.mkfifo('/sandbox/fifo')\n\
        s = socket.create_connection(('127.0.0.1', 3128))\n\
        p = subprocess.Popen(['/bin/sh', '-c', 'sleep 0.3; exec /usr/bin/curl -sN file:///sandbox/req file:///sandbox/fifo'], stdout=s.fileno())\n\
        s.close()\n\
        time.sleep(1.5)\n\
        open('/sandbox/fifo', 'w').close()\n\
        print('curl', p.wait())\n";
    let sandbox = sandbox()
        .policy(&curl_only(&network))
        .workdir(dir.path())
        .with_events();
    let outcome = sandbox.python(script);
    assert_eq!(outcome.stdout, "curl 0\n", "{outcome:#?}");
    let seen = decisions(&sandbox.events_file());
    assert!(
        !seen.iter().any(|(d, _, _)| d == "allow"),
        "allowed: {seen:#?}"
    );
    assert!(
        seen.iter().any(|(d, _, reason)| d == "deny"
            && reason.contains("socket handed on")
            && reason.contains("/usr/bin/python3")),
        "{seen:#?}"
    );
}

/// Escape: python (not allowed) connects, then becomes curl (allowed) by
/// exec, keeping the socket as curl's stdout, and curl writes the request.
/// The connector is described while its connect waits (python), so the
/// request is refused. (Describing it after answering, to save the
/// connect's latency, let this through unless the executable was pinned,
/// and measured slower.)
#[test]
fn a_connector_that_execs_an_allowed_binary_is_refused() {
    let network = upstream();
    let dir = shared_dir();
    let request = format!(
        "GET http://{p}:{PORT}/exec HTTP/1.1\r\nHost: {p}:{PORT}\r\nConnection: close\r\n\r\n",
        p = network.peer
    );
    std::fs::write(dir.path().join("req"), &request).unwrap();
    // curl then waits on a FIFO, holding the connection while the proxy
    // judges the request; a child lets it go after a while.
    let script = "import os, socket, time\n\
        os.mkfifo('/sandbox/fifo')\n\
        if os.fork() == 0:\n    time.sleep(1.5)\n    open('/sandbox/fifo', 'w').close()\n    os._exit(0)\n\
        s = socket.create_connection(('127.0.0.1', 3128))\n\
        os.dup2(s.fileno(), 1)\n\
        os.execv('/usr/bin/curl', ['curl', '-sN', 'file:///sandbox/req', 'file:///sandbox/fifo'])\n";
    let sandbox = sandbox()
        .policy(&curl_only(&network))
        .workdir(dir.path())
        .with_events();
    let _ = sandbox.python(script);
    let seen = decisions(&sandbox.events_file());
    assert!(
        !seen.iter().any(|(d, _, _)| d == "allow"),
        "allowed: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|(d, _, reason)| d == "deny" && reason.contains("/usr/bin/python3")),
        "{seen:#?}"
    );
}

/// The same program connecting and writing is unaffected, also when it
/// forks after connecting (both hold the socket and agree).
#[test]
fn a_connection_used_by_the_process_that_made_it_is_allowed() {
    let network = upstream();
    let url = format!("http://{}:{PORT}/own", network.peer);
    let outcome = sandbox()
        .policy(&curl_only(&network))
        .run(&["curl", "-sS", "-m", "10", "--noproxy", "", &url])
        .success();
    assert_eq!(outcome.stdout, "GET /own 0\n");
}

/// A connect from a thread other than the main one (Go programs, Java,
/// thread pools) goes through like any other: the filter's notification
/// names the thread, the record is the process's.
#[test]
fn a_connection_made_from_a_second_thread_is_allowed() {
    let network = upstream();
    let script = format!(
        "import threading, urllib.request\n\
         out = []\n\
         def fetch():\n    out.append(urllib.request.urlopen('http://{p}:{PORT}/thread', timeout=10).read().decode())\n\
         threads = [threading.Thread(target=fetch) for _ in range(4)]\n\
         [t.start() for t in threads]; [t.join() for t in threads]\n\
         print(''.join(out), end='')\n",
        p = network.peer
    );
    let policy = curl_only(&network).replace("/usr/bin/curl", "\"/usr/bin/python3*\"");
    let outcome = sandbox().policy(&policy).python(&script).success();
    assert_eq!(outcome.stdout, "GET /thread 0\n".repeat(4), "{outcome:#?}");
}
