//! The `run` contract: exit status, streams, environment, signals, bad
//! input, and the Landlock compatibility modes.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{sandbox, shared_dir, wait_with_deadline};

#[test]
fn exit_code_passes_through_and_signals_become_128_plus_n() {
    assert_eq!(sandbox().sh("exit 42").code, 42);
    assert_eq!(sandbox().sh("kill -KILL $$").code, 128 + 9);
    assert_eq!(sandbox().sh("kill -TERM $$").code, 128 + 15);
}

#[test]
fn stdin_and_stdout_pass_through() {
    let outcome = sandbox()
        .stdin(b"hello\nworld\n")
        .run(&["sort", "-r"])
        .success();
    assert_eq!(outcome.stdout, "world\nhello\n");
}

#[test]
fn env_flags_set_and_copy_variables() {
    let outcome = sandbox()
        .env("GREETING=hi there")
        .env("PATH")
        .env("HOME=/tmp")
        .run(&["/bin/sh", "-c", "echo \"$GREETING|$HOME\""])
        .success();
    assert_eq!(outcome.stdout, "hi there|/tmp\n");
}

#[test]
fn missing_and_unexecutable_commands_exit_127_and_126() {
    let outcome = sandbox().run(&["no-such-command-xyz"]);
    assert_eq!(outcome.code, 127, "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("no-such-command-xyz: command not found")
    );

    let dir = shared_dir();
    std::fs::write(dir.path().join("script"), "#!/bin/sh\necho hi\n").unwrap();
    let outcome = sandbox().workdir(dir.path()).run(&["/sandbox/script"]);
    assert_eq!(outcome.code, 126, "{outcome:#?}");
    assert!(outcome.stderr.contains("Permission denied"), "{outcome:#?}");
}

#[test]
fn sigterm_to_the_supervisor_reaches_the_child() {
    let sandbox = sandbox();
    let mut command = sandbox.command(&[
        "/bin/sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.stdout = Some(stdout);
    let outcome = wait_with_deadline(child);
    assert_eq!(outcome.code, 42, "{outcome:#?}");
    assert_eq!(outcome.stdout, "got-term\n");
}

#[test]
fn children_left_behind_are_killed_when_the_command_exits() {
    let dir = shared_dir();
    let outcome = sandbox()
        .workdir(dir.path())
        .sh("(sleep 0.5; echo late > /sandbox/late) & echo started")
        .success();
    assert_eq!(outcome.stdout, "started\n");
    std::thread::sleep(Duration::from_millis(900));
    assert!(
        !dir.path().join("late").exists(),
        "a background child survived"
    );
}

#[test]
fn an_invalid_policy_is_refused_before_anything_starts() {
    let sandbox = sandbox().policy("version: 1\nfilesystem_policy:\n  read_write: [/]\n");
    let outcome = sandbox.run(&["/bin/true"]);
    assert_eq!(outcome.code, 125, "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("read-write path is overly broad: /"),
        "{outcome:#?}"
    );
    assert!(!sandbox.state_dir().join("openshell").exists());
}

#[test]
fn hard_requirement_fails_on_a_missing_path_and_best_effort_skips_it() {
    let policy = |mode: &str| {
        format!(
            "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /lib, /lib64, /bin, /etc, /nonexistent-openshell-path]\n  read_write: [/tmp]\nlandlock:\n  compatibility: {mode}\n"
        )
    };
    let outcome = sandbox()
        .policy(&policy("hard_requirement"))
        .run(&["/bin/true"]);
    assert_eq!(outcome.code, 125, "{outcome:#?}");
    assert!(
        outcome.stderr.contains(
            "cannot open /nonexistent-openshell-path for Landlock in hard_requirement mode"
        ),
        "{outcome:#?}"
    );

    let outcome = sandbox().policy(&policy("best_effort")).run(&["/bin/true"]);
    assert_eq!(outcome.code, 0, "{outcome:#?}");
    assert!(
        outcome.stderr.contains("landlock: path skipped")
            && outcome.stderr.contains("/nonexistent-openshell-path"),
        "{outcome:#?}"
    );
}

#[test]
fn the_generated_workspace_is_removed_and_a_given_one_is_kept() {
    let generated = sandbox();
    generated
        .sh("echo x > /sandbox/file && test -s /sandbox/file")
        .success();
    let sandboxes = generated.state_dir().join("openshell/sandboxes");
    let left: Vec<_> = std::fs::read_dir(&sandboxes).unwrap().collect();
    assert!(left.is_empty(), "workspace left behind: {left:?}");

    let dir = shared_dir();
    sandbox()
        .workdir(dir.path())
        .sh("echo kept > /sandbox/file")
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("file")).unwrap(),
        "kept\n"
    );
}

#[test]
fn usage_errors_exit_2_with_help() {
    let outcome = wait_with_deadline(
        std::process::Command::new(crate::support::supervisor())
            .args(["run"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(outcome.code, 2);
    assert!(
        outcome.stderr.contains("Usage: openshell-sandbox run"),
        "{outcome:#?}"
    );
}

#[test]
fn a_non_root_caller_is_told_to_use_root() {
    crate::support::require_root();
    // A copy nobody can reach, wherever the checkout lives.
    let dir = shared_dir();
    let binary = dir.path().join("openshell-sandbox");
    std::fs::copy(crate::support::supervisor(), &binary).unwrap();
    let outcome = wait_with_deadline(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&binary)
            .args(["run", "--", "/bin/true"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(outcome.code, 125, "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .starts_with("openshell-sandbox: error: openshell-sandbox must start as root"),
        "{outcome:#?}"
    );
    assert!(outcome.stderr.contains("hint: "), "{outcome:#?}");
}

#[test]
fn run_help_teaches_usage_examples_and_exit_codes() {
    let outcome = wait_with_deadline(
        std::process::Command::new(crate::support::supervisor())
            .args(["run", "--help"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(outcome.code, 0);
    for expected in [
        "Usage: openshell-sandbox run [OPTIONS] -- <CMD>...",
        "--policy <FILE>",
        "--workdir <DIR>",
        "--env <KEY=VALUE>",
        "sudo openshell-sandbox run -- sh -c 'id; touch /sandbox/ok'",
        "128+N when killed by signal N; 125 when the",
    ] {
        assert!(
            outcome.stdout.contains(expected),
            "{expected:?} missing:\n{}",
            outcome.stdout
        );
    }
}
