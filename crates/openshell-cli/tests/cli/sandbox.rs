//! `sandbox create` end to end on the process driver: the real CLI, gateway
//! and supervisor, as root (CI runs as root).

use crate::gateway::{Home, pids_of, start, text};

#[test]
fn create_runs_the_command_isolated_streams_its_output_and_exits_with_its_code() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "needs root, as CI has"
    );
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "one",
        "--",
        "sh",
        "-c",
        "echo hi; id -u; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "Created sandbox: one");
    assert_eq!(lines[1], "hi");
    assert_ne!(lines[2], "0", "the command ran as root");
    let out = home.openshell(&["sandbox", "get", "one", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(value["phase"], "Stopped");
    assert_eq!(value["exit_code"], 3);
}

#[test]
fn the_policy_file_reaches_the_sandbox() {
    let home = Home::new();
    start(&home);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "version: 1\nprocess:\n  run_as_user: \"4321\"\n").unwrap();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--policy",
        policy.to_str().unwrap(),
        "--",
        "id",
        "-u",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("\n4321\n"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(
        &policy,
        "version: 1\nfilesystem_policy:\n  read_write: [/]\n",
    )
    .unwrap();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--policy",
        policy.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("read-write path is overly broad: /"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_detached_sandbox_survives_a_gateway_restart_and_delete_leaves_nothing() {
    let home = Home::new();
    let port = start(&home);
    // A duration no other process on the host is likely to use.
    let seconds = (400 + std::process::id() % 9000).to_string();
    let marker = format!("sleep\u{0}{seconds}");
    let out = home.openshell(&[
        "sandbox", "create", "--name", "idle", "--detach", "--", "sleep", &seconds,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(pids_of(&marker).len(), 1, "the main process runs");

    assert_eq!(home.openshell(&["gateway", "stop"]).status.code(), Some(0));
    assert_eq!(
        pids_of(&marker).len(),
        1,
        "a gateway stop leaves sandboxes running"
    );
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&["sandbox", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(list[0]["name"], "idle");
    assert_eq!(list[0]["phase"], "Ready");

    let out = home.openshell(&["sandbox", "delete", "idle"]);
    assert_eq!(text(&out.stdout), "✓ Deleted sandbox idle\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pids_of(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox outlived its deletion"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sandboxes = home.openshell(&["sandbox", "list", "--names"]);
    assert_eq!(text(&sandboxes.stdout), "");
}

#[test]
fn fifty_sandboxes_created_in_parallel_all_reach_ready_and_are_deleted_cleanly() {
    let home = std::sync::Arc::new(Home::new());
    start(&home);
    let seconds = (10_000 + std::process::id() % 9000).to_string();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let home = home.clone();
            let seconds = seconds.clone();
            std::thread::spawn(move || {
                let name = format!("par-{i}");
                let out = home.openshell(&[
                    "sandbox", "create", "--name", &name, "--detach", "--", "sleep", &seconds,
                ]);
                (name, out)
            })
        })
        .collect();
    for thread in threads {
        let (name, out) = thread.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    }
    let out = home.openshell(&["sandbox", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 50);
    assert!(list.iter().all(|s| s["phase"] == "Ready"), "{list:?}");
    let marker = format!("sleep\u{0}{seconds}");
    assert_eq!(pids_of(&marker).len(), 50);

    let out = home.openshell(&["sandbox", "delete", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 50);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pids_of(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sandboxes outlived their deletion"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn stop_ends_the_main_process_and_start_runs_it_again() {
    let home = Home::new();
    start(&home);
    let seconds = (20_000 + std::process::id() % 9000).to_string();
    let marker = format!("sleep\u{0}{seconds}");
    let out = home.openshell(&[
        "sandbox", "create", "--name", "svc", "--detach", "--", "sleep", &seconds,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(pids_of(&marker).len(), 1);

    let out = home.openshell(&["sandbox", "stop", "svc"]);
    assert_eq!(text(&out.stdout), "✓ Stopped sandbox svc\n");
    assert!(
        pids_of(&marker).is_empty(),
        "stop left the main process running"
    );
    let get = home.openshell(&["sandbox", "get", "svc", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text(&get.stdout)).unwrap();
    assert_eq!(value["phase"], "Stopped");
    assert_eq!(
        home.openshell(&["sandbox", "stop", "svc"]).status.code(),
        Some(0),
        "idempotent"
    );

    let out = home.openshell(&["sandbox", "start", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "✓ Started sandbox svc\n");
    assert_eq!(pids_of(&marker).len(), 1);
    let get = home.openshell(&["sandbox", "get", "svc", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text(&get.stdout)).unwrap();
    assert_eq!(value["phase"], "Ready");
    assert_eq!(value["exit_code"], serde_json::Value::Null);
    assert_eq!(
        home.openshell(&["sandbox", "start", "svc"]).status.code(),
        Some(0),
        "idempotent"
    );
}

#[test]
fn logs_show_every_egress_decision() {
    let home = Home::new();
    start(&home);
    // The default policy denies all egress; the proxy answers before any
    // resolution, so nothing leaves the machine.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "probe",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "http://upstream.invalid/path?secret=1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&["logs", "probe", "--source", "sandbox"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(" deny  /usr/bin/curl -> upstream.invalid:80 GET /path (l4: network connections not allowed by policy)"),
        "{lines:?}"
    );
    assert!(
        !lines[0].contains("secret"),
        "a query string reached the log"
    );
    let out = home.openshell(&["logs", "probe", "--source", "sandbox", "-o", "json"]);
    let event: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["kind"], "FORWARD");

    // The gateway's side: the sandbox's lifecycle.
    let out = home.openshell(&["logs", "probe", "--source", "gateway"]);
    let gateway = text(&out.stdout);
    for expected in [
        "gateway: created",
        "gateway: phase Ready",
        "gateway: phase Stopped",
    ] {
        assert!(gateway.contains(expected), "{expected}: {gateway}");
    }
    // Both, by time; then only warnings (the deny).
    let out = home.openshell(&["logs", "probe"]);
    let both = text(&out.stdout);
    assert_eq!(both.lines().count(), gateway.lines().count() + 1, "{both}");
    let out = home.openshell(&["logs", "probe", "--level", "warn", "--since", "1h"]);
    let warnings = text(&out.stdout);
    assert_eq!(warnings.lines().count(), 1, "{warnings}");
    assert!(warnings.contains(" deny  /usr/bin/curl"), "{warnings}");
    let out = home.openshell(&["logs", "probe", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid duration 'soon'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_omitted_name_means_the_last_sandbox_created_and_says_so() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&["sandbox", "get"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no sandbox named"),
        "{}",
        text(&out.stderr)
    );
    for name in ["first", "second"] {
        let out = home.openshell(&["sandbox", "create", "--name", name, "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = home.openshell(&["sandbox", "get", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "→ Using sandbox 'second' (last used)\n");
    let value: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(value["name"], "second");
    // Another workspace has its own last sandbox (none here).
    let out = home.openshell(&["sandbox", "get", "--workspace", "other"]);
    assert_eq!(out.status.code(), Some(1));
}

/// The sandboxes' directories under a home's gateway state.
fn sandbox_dirs(home: &Home) -> Vec<std::path::PathBuf> {
    let root = home
        .dir
        .path()
        .join("state/openshell/gateways/openshell/sandboxes");
    std::fs::read_dir(&root)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The workspace lives as long as the sandbox, not its run; and the delete
/// of a tree the agent made 25,000 directories deep neither crashes the
/// gateway (it overflowed a worker's stack) nor leaves the tree behind.
#[test]
fn the_workspace_survives_stop_and_start_and_a_hostile_tree_is_deleted_safely() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox", "create", "--name", "ws", "--detach", "--", "sleep", "infinity",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let deep = "import os\nos.chdir('/sandbox')\nfor _ in range(25000):\n    os.mkdir('d')\n    os.chdir('d')\nopen('f', 'w').write('x')\nprint('deep')\n";
    let out = home.openshell(&["sandbox", "exec", "-n", "ws", "--", "python3", "-c", deep]);
    assert_eq!(text(&out.stdout), "deep\n", "{}", text(&out.stderr));
    let out = home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "ws",
        "--",
        "sh",
        "-c",
        "echo kept > /sandbox/f",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    for step in ["stop", "start"] {
        let out = home.openshell(&["sandbox", step, "ws"]);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", text(&out.stderr));
    }
    let out = home.openshell(&["sandbox", "exec", "-n", "ws", "--", "cat", "/sandbox/f"]);
    assert_eq!(text(&out.stdout), "kept\n", "{}", text(&out.stderr));

    let out = home.openshell(&["sandbox", "delete", "ws"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sandbox_dirs(&home).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted sandbox's files stayed: {:?}",
            sandbox_dirs(&home)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = home.openshell(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the gateway died: {}",
        text(&out.stderr)
    );
    let out = home.openshell(&["sandbox", "list", "--names"]);
    assert_eq!(text(&out.stdout), "", "{}", text(&out.stderr));
}

/// Files under `dir` (not following links), skipping `skip` directories.
fn files_under(dir: &std::path::Path, skip: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() && entry.file_name() != skip {
                pending.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// `-e API_KEY=…` reaches the sandbox but no process's arguments, and no
/// file on the host that anyone but root can read.
#[test]
fn secrets_stay_out_of_argv_and_state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    start(&home);
    let secret = format!("sekrit-{}-value", std::process::id());
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "env",
        "--detach",
        "-e",
        &format!("API_KEY={secret}"),
        "--",
        "sleep",
        "infinity",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "env",
        "--",
        "sh",
        "-c",
        "echo $API_KEY",
    ]);
    assert_eq!(
        text(&out.stdout),
        format!("{secret}\n"),
        "{}",
        text(&out.stderr)
    );
    for (pid, cmdline) in crate::gateway::cmdlines() {
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&secret),
            "process {pid} has the secret in its arguments"
        );
    }

    let state = home.dir.path().join("state/openshell/gateways/openshell");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "the gateway's state directory");
    let files = files_under(&state, "workspace");
    for name in ["gateway.db", "gateway.log", "output.log", "env", "token"] {
        assert!(
            files.iter().any(|f| f.file_name().unwrap() == name),
            "{name} not found in {files:?}"
        );
    }
    let mut holding = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let private = mode(file) & 0o077 == 0;
        if name.starts_with("gateway.")
            || ["output.log", "events.jsonl", "env", "token"].contains(&&*name)
        {
            assert!(private, "{} is mode {:o}", file.display(), mode(file));
        }
        if std::fs::read(file)
            .is_ok_and(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        {
            holding += 1;
            assert!(
                private,
                "{} holds the secret with mode {:o}",
                file.display(),
                mode(file)
            );
        }
    }
    assert!(
        holding > 0,
        "the secret is stored somewhere (the database, the env file)"
    );
}

/// `sandbox create --cpu --memory --pids`: the sandbox runs under them (a
/// memory hog is killed at its limit), `get` shows them, and bad values are
/// refused before anything is created.
#[test]
fn resource_limits_given_at_create_are_enforced_and_shown() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "small",
        "--cpu",
        "500m",
        "--memory",
        "64Mi",
        "--pids",
        "100",
        "--",
        "python3",
        "-c",
        "x = bytearray(512 * 1024 * 1024)",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let out = home.openshell(&["logs", "small", "--source", "gateway"]);
    assert!(
        text(&out.stdout).contains("a process of the sandbox was killed: out of memory"),
        "the OOM kill is a sandbox event: {}",
        text(&out.stdout)
    );
    let out = home.openshell(&["sandbox", "get", "small", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(
        value["resources"],
        serde_json::json!({"cpu": "500m", "memory": "64Mi", "pids": "100"})
    );
    let out = home.openshell(&["sandbox", "get", "small"]);
    assert!(
        text(&out.stdout).contains("  Resources: cpu 500m, memory 64Mi, processes 100\n"),
        "{}",
        text(&out.stdout)
    );
    let out = home.openshell(&[
        "sandbox", "create", "--name", "bad", "--memory", "4GB", "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid memory size '4GB'"),
        "{}",
        text(&out.stderr)
    );
    let listed = text(&home.openshell(&["sandbox", "list", "--names"]).stdout);
    assert!(!listed.contains("bad"), "{listed}");
}

/// The sandbox's output log is kept under its cap (64 MiB, one rotated
/// copy beside it) however much the main process writes.
#[test]
fn the_output_log_is_rotated_at_its_cap() {
    let home = Home::new();
    start(&home);
    // 8 MB at a time, paced, for as long as the sandbox runs.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "loud",
        "--detach",
        "--",
        "sh",
        "-c",
        "while :; do yes 0123456789abcdef | head -c 8000000; sleep 0.1; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = sandbox_dirs(&home).pop().unwrap();
    let (log, rotated) = (dir.join("output.log"), dir.join("output.log.1"));
    let cap = 64 << 20;
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while size(&rotated).is_none_or(|s| s <= cap) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rotation: log {:?} bytes; {:?}",
            size(&log),
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Rotated at the cap (checked every 100 ms: a little past it), and the
    // log goes on below it.
    assert!(
        size(&rotated).unwrap() < cap + (32 << 20),
        "{:?}",
        size(&rotated)
    );
    assert!(size(&log).is_some_and(|s| s < cap), "{:?}", size(&log));
    let out = home.openshell(&["sandbox", "delete", "loud"]);
    assert_eq!(out.status.code(), Some(0));
}
