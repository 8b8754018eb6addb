//! Terminals and editors: `sandbox create --tty/--no-tty`, `sandbox exec
//! --tty` driven on a real pseudo-terminal (tests/cli/drive_pty.py plays the
//! person at the keyboard), `--editor` with a stand-in editor that records
//! how it was started, and `create --forward`.

use std::path::Path;
use std::process::Output;

use openshell_test_support::home::{Home, free_port, ok, openshell_bin, start, text};

/// `openshell ARGS` on a ROWSxCOLS pseudo-terminal, driven by `steps`.
fn on_pty(home: &Home, rows: u16, cols: u16, steps: &str, args: &[&str]) -> Output {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/drive_pty.py");
    let mut command = home.command("/usr/bin/python3");
    command
        .arg(driver)
        .arg(rows.to_string())
        .arg(cols.to_string())
        .arg(steps)
        .arg("--")
        .arg(openshell_bin())
        .args(args);
    command.output().unwrap()
}

#[test]
fn tty_and_no_tty_decide_what_the_main_process_gets() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--tty",
        "--",
        "sh",
        "-c",
        "tty; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    let out = home.openshell(&["sandbox", "create", "--no-tty", "--", "sh", "-c", "tty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("not a tty"),
        "{}",
        text(&out.stdout)
    );
    // Not on a terminal and not asked: pipes.
    let out = home.openshell(&["sandbox", "create", "--", "sh", "-c", "tty"]);
    assert_eq!(out.status.code(), Some(1));
    let refused = home.openshell(&["sandbox", "create", "--tty", "--no-tty", "--", "true"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn a_tty_main_process_is_attached_with_live_keys_and_the_window_size() {
    let home = Home::new();
    start(&home);
    ok(&home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "t",
        "--tty",
        "--detach",
        "--",
        "sh",
        "-c",
        "read a; stty size; read b; stty size; read c; echo got:$c; exit 5",
    ]));
    // Attached on a 33x101 terminal: the main process takes that size; a
    // resize reaches it; keys arrive as typed; its exit code is ours.
    let steps = r#"[["send","go\r"],["expect","33 101"],["resize",20,70],["send","\r"],["expect","20 70"],["send","hello\r"],["expect","got:hello"]]"#;
    let out = on_pty(&home, 33, 101, steps, &["sandbox", "connect", "t"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
}

#[test]
fn exec_tty_is_interactive_on_a_terminal() {
    let home = Home::new();
    start(&home);
    ok(&home.openshell(&["sandbox", "create", "--name", "e", "--detach"]));
    let steps = r#"[["expect","30 90"],["resize",40,120],["send","\r"],["expect","40 120"],["send","abc\r"],["expect","got:abc"]]"#;
    let out = on_pty(
        &home,
        30,
        90,
        steps,
        &[
            "sandbox",
            "exec",
            "-n",
            "e",
            "--tty",
            "--env",
            "GREETING=hi there",
            "--",
            "sh",
            "-c",
            "tty; stty size; read a; stty size; read b; echo got:$b $GREETING $(pwd); exit 7",
        ],
    );
    let seen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{seen}");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(seen.contains("got:abc hi there /sandbox"), "{seen}");
    // Without a terminal, --tty falls back to pipes: stdin read to its end.
    let out = home.openshell_with_stdin(
        &[
            "sandbox", "exec", "-n", "e", "--tty", "--", "sh", "-c", "cat; tty",
        ],
        b"piped\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("piped\nnot a tty"),
        "{}",
        text(&out.stdout)
    );
    // --timeout ends an interactive command too.
    let out = on_pty(
        &home,
        24,
        80,
        "[]",
        &[
            "sandbox",
            "exec",
            "-n",
            "e",
            "--tty",
            "--timeout",
            "1",
            "--",
            "sleep",
            "30",
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stdout));
}

#[test]
fn editor_opens_the_sandbox_over_a_managed_ssh_config() {
    let home = Home::new();
    start(&home);
    // Stand-in editors that record their arguments.
    let bin = home.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = home.dir.path().join("editor-args");
    for editor in ["code", "cursor"] {
        let script = bin.join(editor);
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho {editor} \"$@\" >> {}\n", record.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let user_home = home.dir.path().join("home");
    std::fs::create_dir_all(user_home.join(".ssh")).unwrap();
    std::fs::write(
        user_home.join(".ssh/config"),
        "# mine\nHost example\n    User me\n",
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str]| {
        let mut command = home.command(openshell_bin());
        command
            .env("HOME", &user_home)
            .env("PATH", &path)
            .args(args);
        command.output().unwrap()
    };
    let out = run(&["sandbox", "create", "--name", "ed", "--editor", "vscode"]);
    assert!(
        ok(&out).contains("✓ Opened VS Code for sandbox ed"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["sandbox", "connect", "ed", "--editor", "cursor"]);
    assert!(ok(&out).contains("✓ Opened Cursor for sandbox ed"));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "code --remote ssh-remote+openshell-ed /sandbox\ncursor --remote ssh-remote+openshell-ed /sandbox\n"
    );
    // ~/.ssh/config includes the managed file once, before its first Host.
    let managed = home.config().join("ssh_config");
    let user_config = std::fs::read_to_string(user_home.join(".ssh/config")).unwrap();
    assert_eq!(
        user_config,
        format!(
            "# mine\nInclude \"{}\"\n\nHost example\n    User me\n",
            managed.display()
        )
    );
    let blocks = std::fs::read_to_string(&managed).unwrap();
    assert_eq!(blocks.matches("Host openshell-ed\n").count(), 1, "{blocks}");
    // And plain ssh reaches the sandbox through it.
    let mut ssh = home.command("ssh");
    ssh.args(["-F"]).arg(user_home.join(".ssh/config")).args([
        "openshell-ed",
        "echo",
        "via-include",
    ]);
    assert_eq!(ok(&ssh.output().unwrap()), "via-include\n");
    // A command and --editor do not go together.
    let out = run(&["sandbox", "create", "--editor", "vscode", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn create_forward_serves_the_port_at_once_and_a_busy_port_creates_nothing() {
    let home = Home::new();
    start(&home);
    let port = free_port().to_string();
    ok(&home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "web",
        "--forward",
        &port,
        "--detach",
        "--",
        "python3",
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        &port,
    ]));
    let url = format!("http://127.0.0.1:{port}/");
    let mut served = false;
    for _ in 0..100 {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .unwrap();
        if text(&out.stdout) == "200" {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served, "nothing served on {url}");
    let listed = ok(&home.openshell(&["forward", "list"]));
    assert!(listed.contains("web"), "{listed}");
    // The port is busy now: a second sandbox with it is refused up front.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "web2",
        "--forward",
        &port,
        "--detach",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not free here"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ok(&home.openshell(&["sandbox", "list", "--names"])),
        "web\n"
    );
}
