//! Hot reload: a valid new policy becomes the next generation without
//! restarting the sandbox, tunnels opened under the old one are closed, and
//! an invalid candidate leaves the running generation in place.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::{Sandbox, sandbox, shared_dir, wait_with_deadline};
use crate::{PORT, policy, upstream};

/// A running sandbox whose stderr we can wait on.
struct Live {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    stderr_lines: std::sync::mpsc::Receiver<String>,
}

fn start(sandbox: &Sandbox, script: &str) -> Live {
    let mut child = sandbox
        .command(&["/bin/sh", "-c", script])
        .env("OPENSHELL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Live {
        child,
        stdout,
        stderr_lines: rx,
    }
}

impl Live {
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    fn hup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }

    fn wait_for_log(&self, needle: &str) {
        loop {
            match self.stderr_lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => continue,
                Err(_) => panic!("the supervisor never logged {needle:?}"),
            }
        }
    }

    fn finish(mut self) -> String {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        self.child.stdout = None;
        let outcome = wait_with_deadline(self.child);
        assert_eq!(outcome.code, 0, "{outcome:#?}");
        rest
    }
}

/// Waits for /sandbox/go, then curls until the status is `want` (or gives
/// up after ~5 s) and prints the last status.
fn script(url: &str, want: &str) -> String {
    format!(
        "curl -sS -m 10 --noproxy '' {url}; \
         while [ ! -e /sandbox/go ]; do sleep 0.02; done; \
         for i in $(seq 1 100); do code=$(curl -s -m 10 --noproxy '' -o /dev/null -w '%{{http_code}}' {url}); [ \"$code\" = {want} ] && break; sleep 0.05; done; \
         echo \"after=$code\""
    )
}

#[test]
fn a_new_generation_denies_what_the_old_one_allowed_without_a_restart() {
    let network = upstream();
    let host = network.peer.to_string();
    let dir = shared_dir();
    let sandbox = sandbox()
        .policy(&policy(&host, &[PORT], &["/usr/bin/curl"], ""))
        .workdir(dir.path());
    let url = format!("http://{host}:{PORT}/r");
    let mut live = start(&sandbox, &script(&url, "403"));
    assert_eq!(live.line(), "GET /r 0\n");
    let policy_file = sandbox.state_dir().join("policy.yaml");
    std::fs::write(
        &policy_file,
        policy(&host, &[PORT + 1], &["/usr/bin/curl"], ""),
    )
    .unwrap();
    live.hup();
    live.wait_for_log("policy reloaded");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(live.finish(), "after=403\n");
}

#[test]
fn an_invalid_candidate_keeps_the_running_generation() {
    let network = upstream();
    let host = network.peer.to_string();
    let dir = shared_dir();
    let sandbox = sandbox()
        .policy(&policy(&host, &[PORT], &["/usr/bin/curl"], ""))
        .workdir(dir.path());
    let url = format!("http://{host}:{PORT}/r");
    let mut live = start(&sandbox, &script(&url, "200"));
    assert_eq!(live.line(), "GET /r 0\n");
    let policy_file = sandbox.state_dir().join("policy.yaml");
    std::fs::write(&policy_file, "version: 1\nnetwork_policies: [\n").unwrap();
    // No SIGHUP here: the supervisor notices the file change by itself.
    live.wait_for_log("policy reload rejected");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(live.finish(), "after=200\n");
}

#[test]
fn a_changed_static_section_is_rejected_on_reload() {
    let network = upstream();
    let host = network.peer.to_string();
    let sandbox = sandbox().policy(&policy(&host, &[PORT], &["/usr/bin/curl"], ""));
    let mut live = start(&sandbox, "echo ready; sleep 30");
    assert_eq!(live.line(), "ready\n");
    let mut changed = policy(&host, &[PORT], &["/usr/bin/curl"], "");
    changed.push_str("filesystem_policy:\n  read_write: [/tmp, /var]\n");
    std::fs::write(sandbox.state_dir().join("policy.yaml"), changed).unwrap();
    live.hup();
    live.wait_for_log("policy reload rejected");
    let mut child = live.child;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn tunnels_opened_under_the_old_generation_are_closed() {
    let network = upstream();
    let host = network.peer.to_string();
    let dir = shared_dir();
    let sandbox = sandbox()
        .policy(&policy(&host, &[PORT], &["/usr/bin/python3*"], ""))
        .workdir(dir.path());
    let script = format!(
        "/usr/bin/python3 -c \"\nimport os, socket, time\ns = socket.create_connection(('127.0.0.1', 3128), timeout=10)\ns.sendall(b'CONNECT {host}:{PORT} HTTP/1.1\\r\\n\\r\\n')\nprint(s.recv(100).split(b'\\r\\n')[0].decode(), flush=True)\nwhile not os.path.exists('/sandbox/go'):\n    time.sleep(0.02)\ntry:\n    print('closed' if s.recv(10) == b'' else 'data')\nexcept socket.timeout:\n    print('still open')\n\""
    );
    let mut live = start(&sandbox, &script);
    assert_eq!(live.line(), "HTTP/1.1 200 Connection Established\n");
    // A valid new generation (one more port) replaces the one the tunnel
    // was allowed under.
    let policy_file = sandbox.state_dir().join("policy.yaml");
    std::fs::write(
        &policy_file,
        policy(&host, &[PORT, PORT + 1], &["/usr/bin/python3*"], ""),
    )
    .unwrap();
    live.hup();
    live.wait_for_log("policy reloaded");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(live.finish(), "closed\n");
}
