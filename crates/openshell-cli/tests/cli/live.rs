//! A live sandbox through the gateway: `sandbox exec` and `policy set
//! --wait` on the real binaries (as root), with the upstream in a test
//! network namespace.

use crate::gateway::{Home, free_port, pids_of, start, text};
use crate::netns::{ECHO_SERVER, TestNetwork};

pub(crate) const UPSTREAM_PORT: u16 = 8080;

/// A network-only policy letting `binary` reach the test network's peer.
pub(crate) fn allowing(network: &TestNetwork, binary: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  upstream:\n    endpoints:\n      - host: \"{}\"\n        port: {UPSTREAM_PORT}\n    binaries:\n      - path: {binary}\n",
        network.peer
    )
}

/// `sandbox exec -n NAME -- ARGS`.
pub(crate) fn exec(home: &Home, name: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["sandbox", "exec", "-n", name, "--"];
    all.extend_from_slice(args);
    home.openshell(&all)
}

/// `policy set NAME --policy FILE [--wait]`.
pub(crate) fn set_policy(
    home: &Home,
    name: &str,
    file: &std::path::Path,
    wait: bool,
) -> std::process::Output {
    let file = file.to_str().unwrap();
    let mut args = vec!["policy", "set", name, "--policy", file];
    if wait {
        args.push("--wait");
    }
    home.openshell(&args)
}

/// `sandbox exec` into `name` keeps stdin, stdout, stderr and the exit code
/// apart and intact.
pub(crate) fn assert_exec_streams(home: &Home, name: &str) {
    let out = home.openshell_with_stdin(
        &[
            "sandbox",
            "exec",
            "-n",
            name,
            "--",
            "sh",
            "-c",
            "cat; echo oops >&2; exit 7",
        ],
        b"from stdin\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from stdin\n");
    assert_eq!(text(&out.stderr), "oops\n");
}

/// A detached sandbox whose main process sleeps; returns that process's pid.
pub(crate) fn create_idle(home: &Home, name: &str, policy: Option<&std::path::Path>) -> String {
    // A duration no other sandbox (of this or another test) uses.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seconds = (30_000 + (std::process::id() % 900) * 10 + n % 10).to_string();
    let mut args = vec!["sandbox", "create", "--name", name, "--detach"];
    if let Some(policy) = policy {
        args.extend(["--policy", policy.to_str().unwrap()]);
    }
    args.extend(["--", "sleep", &seconds]);
    let out = home.openshell(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    pids_of(&format!("sleep\u{0}{seconds}"))
        .pop()
        .expect("the main process runs")
}

#[test]
fn exec_runs_inside_the_sandbox_with_separate_streams_stdin_and_the_exit_code() {
    let home = Home::new();
    start(&home);
    let main_pid = create_idle(&home, "box", None);
    assert_exec_streams(&home, "box");

    // The agent's namespaces and identity, not the host's.
    let out = exec(
        &home,
        "box",
        &[
            "sh",
            "-c",
            "id -u; readlink /proc/self/ns/net /proc/self/ns/mnt; hostname",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_ne!(lines[0], "0", "exec ran as root");
    let ns = |kind: &str| {
        std::fs::read_link(format!("/proc/{main_pid}/ns/{kind}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(lines[1], ns("net"), "not the sandbox's network namespace");
    assert_eq!(lines[2], ns("mnt"), "not the sandbox's mount namespace");
    assert_eq!(lines[3], "sandbox");
    // The agent's hardening and network: no_new_privs, seccomp filter mode,
    // no capability, loopback only.
    let out = exec(
        &home,
        "box",
        &[
            "sh",
            "-c",
            "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status; grep ':' /proc/net/dev",
        ],
    );
    let status = text(&out.stdout);
    assert!(status.contains("NoNewPrivs:\t1\n"), "{status}");
    assert!(status.contains("Seccomp:\t2\n"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000\n"), "{status}");
    let interfaces: Vec<&str> = status
        .lines()
        .filter(|l| l.contains(": ") && !l.contains("Inter-"))
        .filter_map(|l| l.trim().split(':').next())
        .filter(|name| !["NoNewPrivs", "Seccomp", "CapEff"].contains(name))
        .collect();
    assert_eq!(interfaces, ["lo"], "{status}");
    // Landlock and the sandbox user hold for exec as for the agent.
    let out = exec(&home, "box", &["cat", "/etc/shadow"]);
    assert_ne!(out.status.code(), Some(0));
    let out = exec(&home, "box", &["sh", "-c", "echo x > /usr/evil"]);
    assert_ne!(out.status.code(), Some(0), "wrote outside the policy");
    assert!(!std::path::Path::new("/usr/evil").exists());

    let out = exec(&home, "box", &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("no-such-command: command not found"));

    let started = std::time::Instant::now();
    let out = home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "box",
        "--timeout",
        "1",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    let out = exec(&home, "nope", &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("sandbox 'nope' not found"),
        "{}",
        text(&out.stderr)
    );
    home.openshell(&["sandbox", "stop", "box"]);
    let out = exec(&home, "box", &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policy_set_wait_changes_what_curl_may_reach_and_a_rejected_revision_changes_nothing() {
    let home = Home::new();
    start(&home);
    let mut network = TestNetwork::new();
    network.serve(UPSTREAM_PORT, ECHO_SERVER);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    };
    // Only python may reach the upstream at first; then curl may.
    let python_only = write("v1.yaml", &allowing(&network, "/usr/bin/python3"));
    let curl_too = write("v2.yaml", &allowing(&network, "/usr/bin/curl"));
    let static_change = write(
        "v3.yaml",
        &format!(
            "{}filesystem_policy:\n  read_only: [/usr, /lib, /etc, /opt]\n",
            allowing(&network, "/usr/bin/curl")
        ),
    );
    let invalid = write(
        "bad.yaml",
        "version: 1\nfilesystem_policy:\n  read_write: [/]\n",
    );
    create_idle(&home, "live", Some(&python_only));
    let url = format!("http://{}:{UPSTREAM_PORT}/probe", network.peer);
    let curl = [
        "curl",
        "-sS",
        "-f",
        "-m",
        "10",
        "--noproxy",
        "",
        url.as_str(),
    ];

    let out = exec(&home, "live", &curl);
    assert_eq!(
        out.status.code(),
        Some(22),
        "curl got through: {}",
        text(&out.stdout)
    );

    let out = set_policy(&home, "live", &curl_too, true);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with("✓ Policy version 2 submitted (hash: "),
        "{stderr}"
    );
    assert!(stderr.contains("✓ Policy version 2 loaded"), "{stderr}");
    let out = exec(&home, "live", &curl);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "GET /probe 0\n");
    // `sandbox get` shows the revision in force, not the one it started with.
    let out = home.openshell(&["sandbox", "get", "live", "-o", "json"]);
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(got["revision"], 2);
    assert!(
        got["policy"].as_str().unwrap().contains("/usr/bin/curl"),
        "{got}"
    );

    // A revision that changes a static section: stored, rejected by the
    // supervisor, exit 1; the loaded revision stays in force.
    let out = set_policy(&home, "live", &static_change, true);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("✗ Policy version 3 failed to load: "),
        "{stderr}"
    );
    let out = exec(&home, "live", &curl);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the failed revision changed the policy"
    );

    // An invalid file: refused by the gateway with the validation message.
    let out = set_policy(&home, "live", &invalid, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("overly broad"),
        "{}",
        text(&out.stderr)
    );

    let out = home.openshell(&["policy", "list", "live"]);
    let stdout = text(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["VERSION", "HASH", "STATUS", "CREATED", "ERROR"]);
    let statuses: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0], r[2])).collect();
    assert_eq!(
        statuses,
        [("3", "Failed"), ("2", "Loaded"), ("1", "Superseded")]
    );
    let out = home.openshell(&["policy", "get", "live", "-o", "json"]);
    let effective: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(effective["version"], 2);
    assert_eq!(effective["active_version"], 2);

    // The supervisor pushed its decisions: the deny, then the allows.
    let out = home.openshell(&["logs", "live", "--source", "sandbox", "-o", "json"]);
    let decisions: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["decision"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(decisions, ["deny", "allow", "allow"]);

    // An incremental update: the upstream for python only again.
    let upstream = format!("{}:{UPSTREAM_PORT}", network.peer);
    let out = home.openshell(&[
        "policy",
        "update",
        "live",
        "--remove-endpoint",
        &upstream,
        "--add-endpoint",
        &upstream,
        "--binary",
        "/usr/bin/python3",
        "--wait",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("✓ Policy version 4 loaded"), "{stderr}");
    let out = exec(&home, "live", &curl);
    assert_eq!(
        out.status.code(),
        Some(22),
        "the update did not take effect"
    );
    let out = home.openshell(&["policy", "get", "live", "--full"]);
    assert!(
        text(&out.stdout).contains("      - path: /usr/bin/python3\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn after_a_gateway_restart_the_supervisor_reconnects_and_exec_works() {
    let home = Home::new();
    let port = start(&home);
    create_idle(&home, "kept", None);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(home.openshell(&["gateway", "stop"]).status.code(), Some(0));
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exec(&home, "kept", &["echo", "still here"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "still here\n");
    let out = home.openshell(&["sandbox", "delete", "kept"]);
    assert_eq!(out.status.code(), Some(0));
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(mounts_before, mounts_after, "a sandbox left a mount behind");
}

#[test]
fn decisions_made_while_the_gateway_is_away_reach_it_when_it_is_back() {
    let home = Home::new();
    let port = start(&home);
    // A main process that is denied egress five times a second; the proxy
    // answers before any resolution, so nothing leaves the machine.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "chatty",
        "--detach",
        "--",
        "sh",
        "-c",
        "while true; do curl -s -o /dev/null http://upstream.invalid/; sleep 0.2; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let count = |home: &Home| {
        let out = home.openshell(&[
            "logs", "chatty", "--source", "sandbox", "-n", "0", "-o", "json",
        ]);
        text(&out.stdout).lines().count()
    };
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(count(&home) > 0, "no decisions reached the gateway");

    assert_eq!(home.openshell(&["gateway", "stop"]).status.code(), Some(0));
    let away_from = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let away_until = std::time::SystemTime::now();
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Within the reconnect backoff, the queued decisions arrive.
    let in_window = |home: &Home| {
        let out = home.openshell(&[
            "logs", "chatty", "--source", "sandbox", "-n", "0", "-o", "json",
        ]);
        let stamp = |t: std::time::SystemTime| {
            let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            openshell_core::time::Utc::from_unix(ms / 1000).rfc3339_millis((ms % 1000) as u32)
        };
        let (from, until) = (stamp(away_from), stamp(away_until));
        text(&out.stdout)
            .lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let t = v["time"].as_str().unwrap();
                t >= from.as_str() && t <= until.as_str()
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let n = in_window(&home);
        if n >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} decisions from while the gateway was away arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn upload_and_download_round_trip_trees_and_refuse_to_leave_the_workspace() {
    use std::os::unix::fs::symlink;
    let home = Home::new();
    start(&home);
    create_idle(&home, "files", None);
    // A git work tree: an ignored file, a symlink, a binary blob.
    let local = tempfile::tempdir().unwrap();
    let proj = local.path().join("proj");
    std::fs::create_dir_all(proj.join("sub")).unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&proj)
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::write(proj.join("a.txt"), "hello\n").unwrap();
    std::fs::write(proj.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(proj.join("debug.log"), "not for the sandbox\n").unwrap();
    let blob: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(proj.join("sub/blob.bin"), &blob).unwrap();
    symlink("a.txt", proj.join("link")).unwrap();

    let out = home.openshell(&[
        "sandbox",
        "upload",
        "files",
        proj.to_str().unwrap(),
        "/sandbox/in",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).ends_with("✓ Upload complete\n"),
        "{}",
        text(&out.stderr)
    );
    let out = exec(
        &home,
        "files",
        &[
            "sh",
            "-c",
            "cd /sandbox/in/proj && find . | sort && readlink link && id -un < /dev/null && stat -c %U a.txt",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        ".\n./.gitignore\n./a.txt\n./link\n./sub\n./sub/blob.bin\na.txt\nsandbox\nsandbox\n",
        "the ignored file went, or the tree changed"
    );

    let back = tempfile::tempdir().unwrap();
    let out = home.openshell(&[
        "sandbox",
        "download",
        "files",
        "in/proj",
        back.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(back.path().join("sub/blob.bin")).unwrap(),
        blob
    );
    assert_eq!(
        std::fs::read_link(back.path().join("link")).unwrap(),
        std::path::Path::new("a.txt")
    );
    // A single file, renamed on the way in and placed like cp on the way out.
    let out = home.openshell(&[
        "sandbox",
        "upload",
        "files",
        proj.join("a.txt").to_str().unwrap(),
        "/sandbox/renamed.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&[
        "sandbox",
        "download",
        "files",
        "/sandbox/renamed.txt",
        &format!("{}/", back.path().display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(back.path().join("renamed.txt")).unwrap(),
        "hello\n"
    );

    // A file to an existing directory, no trailing slash: into it.
    for dir in ["/sandbox", "/sandbox/in"] {
        let out = home.openshell(&[
            "sandbox",
            "upload",
            "files",
            proj.join("a.txt").to_str().unwrap(),
            dir,
        ]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        let out = exec(&home, "files", &["cat", &format!("{dir}/a.txt")]);
        assert_eq!(text(&out.stdout), "hello\n", "{dir}");
    }

    // Links from the sandbox that lead outside the destination are not
    // created on the host; the rest of the tree is.
    exec(
        &home,
        "files",
        &[
            "sh",
            "-c",
            "mkdir -p /sandbox/dl/a/b && echo data > /sandbox/dl/f && ln -s /root/.ssh/authorized_keys /sandbox/dl/evil && ln -s ../../f /sandbox/dl/a/b/ok && ln -s ../../../.. /sandbox/dl/a/b/up",
        ],
    );
    let landing = tempfile::tempdir().unwrap();
    let out = home.openshell(&[
        "sandbox",
        "download",
        "files",
        "dl",
        landing.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("evil -> /root/.ssh/authorized_keys")
            && stderr.contains("a/b/up -> ../../../..")
            && stderr.contains("points outside"),
        "{stderr}"
    );
    assert!(landing.path().join("evil").symlink_metadata().is_err());
    assert!(landing.path().join("a/b/up").symlink_metadata().is_err());
    assert_eq!(
        std::fs::read_to_string(landing.path().join("a/b/ok")).unwrap(),
        "data\n"
    );

    // At create: uploaded once Ready; a missing source creates nothing.
    let seed = format!("{}:/sandbox/src", proj.display());
    let out = home.openshell(&["sandbox", "create", "--name", "seeded", "--upload", &seed]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("✓ Files uploaded"),
        "{}",
        text(&out.stderr)
    );
    let out = exec(&home, "seeded", &["cat", "/sandbox/src/proj/a.txt"]);
    assert_eq!(text(&out.stdout), "hello\n");
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "never",
        "--upload",
        "/no/such/dir",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--upload /no/such/dir: no such file or directory"));
    let listed = text(&home.openshell(&["sandbox", "list", "--names"]).stdout);
    assert!(!listed.contains("never"), "{listed}");

    // Outside the workspace, by path or by symlink; missing: refused.
    exec(&home, "files", &["ln", "-s", "/etc", "/sandbox/etc-link"]);
    for (src, message) in [
        (
            "../etc/passwd",
            "is outside the sandbox workspace (/sandbox)",
        ),
        (
            "etc-link/passwd",
            "etc-link/passwd resolves to /etc/passwd, which is outside the sandbox workspace (/sandbox)",
        ),
        ("nope.txt", "does not exist"),
    ] {
        let out = home.openshell(&[
            "sandbox",
            "download",
            "files",
            src,
            back.path().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{src}");
        assert!(
            text(&out.stderr).contains(message),
            "{src}: {}",
            text(&out.stderr)
        );
    }
    // A transfer that fails midway leaves nothing that looks complete.
    exec(
        &home,
        "files",
        &[
            "sh",
            "-c",
            "echo x > /sandbox/locked && chmod 000 /sandbox/locked",
        ],
    );
    let target = back.path().join("locked.txt");
    let out = home.openshell(&[
        "sandbox",
        "download",
        "files",
        "locked",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(back.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".openshell-download")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:port; the whole response.
pub(crate) fn http_get(port: u16, path: &str) -> Vec<u8> {
    try_http_get(port, path).unwrap()
}

/// [`http_get`], or why it failed (for polling a server still starting).
pub(crate) fn try_http_get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

#[test]
fn forward_reaches_a_server_on_the_sandbox_loopback_and_only_that_sandbox() {
    let home = Home::new();
    start(&home);
    let port = free_port();
    let port_text = port.to_string();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "web",
        "--detach",
        "--",
        "python3",
        "-m",
        "http.server",
        &port_text,
        "--bind",
        "127.0.0.1",
        "--directory",
        "/sandbox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    create_idle(&home, "other", None);
    let blob: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("blob.bin"), &blob).unwrap();
    let out = home.openshell(&[
        "sandbox",
        "upload",
        "web",
        local.path().join("blob.bin").to_str().unwrap(),
        "/sandbox/blob.bin",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The server comes up inside the sandbox.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while exec(
        &home,
        "web",
        &[
            "python3",
            "-c",
            &format!("import socket; socket.create_connection(('127.0.0.1', {port}))"),
        ],
    )
    .status
    .code()
        != Some(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let out = home.openshell(&["forward", "start", &port_text, "web", "-d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("in the background (pid "),
        "{}",
        text(&out.stdout)
    );
    let listed = text(&home.openshell(&["forward", "list"]).stdout);
    assert!(
        listed.contains(&format!("web      {port}")) && listed.contains("running"),
        "{listed}"
    );
    let response = http_get(port, "/blob.bin");
    assert!(
        response.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&response[..64.min(response.len())])
    );
    assert!(response.ends_with(&blob), "the forwarded body differs");
    let out = home.openshell(&["forward", "stop", &port_text, "web"]);
    assert_eq!(
        text(&out.stdout),
        format!("✓ Stopped forward of port {port} for sandbox web\n")
    );
    let out = home.openshell(&["forward", "stop", &port_text, "web"]);
    assert!(text(&out.stderr).contains(&format!("No forward of port {port} for sandbox web")));

    // The same port of another sandbox is that sandbox's own loopback: nothing there.
    let out = home.openshell(&["forward", "start", &port_text, "other", "-d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        http_get(port, "/blob.bin").is_empty(),
        "reached another sandbox's server"
    );
    home.openshell(&["forward", "stop", &port_text, "other"]);
    // The egress proxy is never a target.
    let out = home.openshell(&["forward", "start", "3128", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("egress proxy"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fifty_concurrent_execs_share_one_session_without_mixing_their_streams() {
    let home = std::sync::Arc::new(Home::new());
    start(&home);
    create_idle(&home, "busy", None);
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let home = home.clone();
            std::thread::spawn(move || {
                let script = format!(
                    "yes x | tr -d '\\n' | head -c 200000; echo; echo err-{i} >&2; exit {}",
                    i % 7
                );
                let out = exec(&home, "busy", &["sh", "-c", &script]);
                (i, out)
            })
        })
        .collect();
    for thread in threads {
        let (i, out) = thread.join().unwrap();
        assert_eq!(
            out.status.code(),
            Some(i % 7),
            "exec {i}: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert_eq!(stdout.len(), 200_001, "exec {i}");
        assert!(stdout.bytes().take(200_000).all(|b| b == b'x'), "exec {i}");
        assert_eq!(text(&out.stderr), format!("err-{i}\n"), "exec {i}");
    }
}

#[test]
fn a_gateway_going_away_mid_exec_is_a_clear_error_and_exec_works_after() {
    let home = Home::new();
    let port = start(&home);
    create_idle(&home, "steady", None);
    let exec_home = std::sync::Arc::new(home);
    let running = {
        let home = exec_home.clone();
        std::thread::spawn(move || exec(&home, "steady", &["sleep", "30"]))
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        exec_home.openshell(&["gateway", "stop"]).status.code(),
        Some(0)
    );
    let out = running.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).is_empty(), "no message");
    let out = exec_home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exec(&exec_home, "steady", &["echo", "back"]);
    assert_eq!(text(&out.stdout), "back\n", "{}", text(&out.stderr));
}

/// A sandbox on the built-in default policy: a `policy set` that cannot
/// load (it drops the default's filesystem section) fails, and a later
/// `policy update` builds on what runs (the default), not on that failed
/// revision, so it loads and takes effect.
#[test]
fn policy_update_after_a_failed_set_builds_on_what_the_sandbox_runs() {
    let home = Home::new();
    start(&home);
    let mut network = TestNetwork::new();
    network.serve(UPSTREAM_PORT, ECHO_SERVER);
    create_idle(&home, "dflt", None);
    let url = format!("http://{}:{UPSTREAM_PORT}/x", network.peer);
    let curl = [
        "curl",
        "-sS",
        "-f",
        "-m",
        "10",
        "--noproxy",
        "",
        url.as_str(),
    ];
    assert_eq!(
        exec(&home, "dflt", &curl).status.code(),
        Some(22),
        "denied at first"
    );

    let dir = tempfile::tempdir().unwrap();
    let network_only = dir.path().join("p.yaml");
    std::fs::write(&network_only, allowing(&network, "/usr/bin/curl")).unwrap();
    let out = set_policy(&home, "dflt", &network_only, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let upstream = format!("{}:{UPSTREAM_PORT}", network.peer);
    let out = home.openshell(&[
        "policy",
        "update",
        "dflt",
        "--add-endpoint",
        &upstream,
        "--binary",
        "/usr/bin/curl",
        "--wait",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("✓ Policy version 2 loaded"), "{stderr}");
    let out = exec(&home, "dflt", &curl);
    assert_eq!(text(&out.stdout), "GET /x 0\n", "{}", text(&out.stderr));
    // And the next update builds on that one.
    let out = home.openshell(&[
        "policy",
        "update",
        "dflt",
        "--remove-endpoint",
        &upstream,
        "--wait",
    ]);
    assert!(
        text(&out.stderr).contains("✓ Policy version 3 loaded"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(exec(&home, "dflt", &curl).status.code(), Some(22));
}
