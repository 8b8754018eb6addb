//! ssh, scp, rsync and `sandbox connect` through the gateway's relay, with
//! the real OpenSSH client and the Host block `sandbox ssh-config` prints.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::{Home, free_port, pids_running, run_with_stdin, start, text};
use crate::live::{create_idle, exec, try_http_get};

/// Writes the sandbox's printed Host block to a file for `ssh -F`.
fn ssh_config(home: &Home, name: &str) -> PathBuf {
    let out = home.openshell(&["sandbox", "ssh-config", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    assert!(
        config.starts_with(&format!("Host openshell-{name}\n    User sandbox\n")),
        "{config}"
    );
    assert!(
        config.contains(&format!(
            "    ProxyCommand {} ssh-proxy --gateway-name openshell --name {name}\n",
            env!("CARGO_BIN_EXE_openshell")
        )),
        "{config}"
    );
    let path = home.dir.path().join(format!("ssh-{name}.config"));
    std::fs::write(&path, config).unwrap();
    path
}

/// `program -F CONFIG ARGS` (ssh, scp) with `input` on stdin.
fn with_config(home: &Home, program: &str, config: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut command = home.command(program);
    command.arg("-F").arg(config).args(args);
    run_with_stdin(command, input)
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn ssh_runs_commands_and_piped_scripts_under_the_agents_isolation() {
    let home = Home::new();
    start(&home);
    create_idle(&home, "box", None);
    let config = ssh_config(&home, "box");
    let out = with_config(
        &home,
        "ssh",
        &config,
        &[
            "openshell-box",
            "id -un; pwd; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
             touch /etc/openshell-probe 2>/dev/null || echo denied; exit 7",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "sandbox\n/sandbox\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\ndenied\n"
    );
    // The same network namespace as the agent (and as `sandbox exec`).
    let ns = "readlink /proc/self/ns/net";
    let over_ssh = with_config(&home, "ssh", &config, &["openshell-box", ns], b"");
    let over_exec = exec(&home, "box", &["sh", "-c", ns]);
    assert_eq!(text(&over_ssh.stdout), text(&over_exec.stdout));
    assert_ne!(
        text(&over_ssh.stdout).trim(),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_string_lossy()
    );
    // A script on stdin, with both streams and the exit code.
    let out = with_config(
        &home,
        "ssh",
        &config,
        &["-T", "openshell-box", "sh"],
        b"x=6\necho $((x * 7))\necho oops >&2\nexit 3\n",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    // A stopped sandbox: connect says so and how to start it.
    assert_eq!(
        home.openshell(&["sandbox", "stop", "box"]).status.code(),
        Some(0)
    );
    let out = home.openshell(&["sandbox", "connect", "box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("is not running (phase Stopped); start it with: openshell sandbox start box"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn scp_and_rsync_round_trip_200_mib_and_a_tree_with_symlinks() {
    let home = Home::new();
    start(&home);
    create_idle(&home, "files", None);
    let config = ssh_config(&home, "files");
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..(200 * 1024 * 1024 / 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        file.write_all(&state.to_le_bytes()).unwrap();
    }
    drop(file);
    let big_path = big.to_str().unwrap();
    let out = with_config(
        &home,
        "scp",
        &config,
        &["-q", big_path, "openshell-files:/sandbox/big.bin"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let back = local.path().join("back.bin");
    let out = with_config(
        &home,
        "scp",
        &config,
        &[
            "-q",
            "openshell-files:/sandbox/big.bin",
            back.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected = sha256(&big);
    assert_eq!(sha256(&back), expected);
    let inside = exec(&home, "files", &["sha256sum", "/sandbox/big.bin"]);
    assert!(
        text(&inside.stdout).starts_with(&expected),
        "{}",
        text(&inside.stdout)
    );

    // A tree with a relative and an absolute symlink, both ways with rsync.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/deeper/b.bin"), [0u8, 1, 2, 255]).unwrap();
    std::os::unix::fs::symlink("sub/deeper/b.bin", tree.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", tree.join("abs-link")).unwrap();
    let rsh = format!("ssh -F {}", config.display());
    let rsync = |from: &str, to: &str| {
        let mut command = home.command("rsync");
        command.args(["-a", "-e", &rsh, from, to]);
        let out = run_with_stdin(command, b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    rsync(
        &format!("{}/", tree.display()),
        "openshell-files:/sandbox/tree/",
    );
    let listed = exec(
        &home,
        "files",
        &[
            "sh",
            "-c",
            "cd /sandbox/tree && readlink rel-link abs-link && cat a.txt",
        ],
    );
    assert_eq!(
        text(&listed.stdout),
        "sub/deeper/b.bin\n/etc/hostname\nalpha\n"
    );
    let returned = local.path().join("returned");
    rsync(
        "openshell-files:/sandbox/tree/",
        &format!("{}/", returned.display()),
    );
    let diff = std::process::Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&tree)
        .arg(&returned)
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
    assert_eq!(
        std::fs::read_link(returned.join("abs-link")).unwrap(),
        Path::new("/etc/hostname")
    );
}

#[test]
fn ssh_local_forwarding_reaches_only_the_sandbox_loopback() {
    let home = Home::new();
    start(&home);
    let port = free_port().to_string();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "site",
        "--detach",
        "--",
        "python3",
        "-m",
        "http.server",
        &port,
        "--bind",
        "127.0.0.1",
        "--directory",
        "/sandbox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    exec(
        &home,
        "site",
        &["sh", "-c", "echo served-inside > /sandbox/page.txt"],
    );
    let config = ssh_config(&home, "site");
    let local = free_port();
    let mut tunnel = home.command("ssh");
    tunnel
        .arg("-F")
        .arg(&config)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{local}:127.0.0.1:{port}"))
        .arg("openshell-site")
        .stdin(Stdio::null());
    let mut tunnel = tunnel.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        // The tunnel accepts before the server inside listens: a reset
        // then means "not yet".
        let response = try_http_get(local, "/page.txt").unwrap_or_default();
        if response.starts_with(b"HTTP/1.0 200") {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel never served the page"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.ends_with(b"served-inside\n"));
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    // Only the sandbox's loopback names: any other host is refused by the
    // server before anything is dialed (127.0.0.2, though loopback, is not
    // one of them).
    let out = with_config(
        &home,
        "ssh",
        &config,
        &["-W", &format!("127.0.0.2:{port}"), "openshell-site"],
        b"",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("forwarding failed"),
        "{}",
        text(&out.stderr)
    );
}

/// A `sandbox connect` running in the background: its stdin, and its
/// stdout line by line.
struct Attached {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Attached {
    fn start(home: &Home, name: &str) -> Attached {
        let mut command = home.command(env!("CARGO_BIN_EXE_openshell"));
        command.args(["sandbox", "connect", name]);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Attached { child, lines }
    }

    fn expect(&self, wanted: &str) {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line; wanted {wanted:?}"));
        assert_eq!(line, wanted);
    }
}

#[test]
fn connect_replays_earlier_output_and_gives_stdin_to_one_attachment_at_a_time() {
    let home = Home::new();
    start(&home);
    let script = "echo MARKER-early; while read line; do [ \"$line\" = quit ] && break; \
                  echo \"got $line\"; done; echo bye; exit 4";
    let out = home.openshell(&[
        "sandbox", "create", "--name", "job", "--detach", "--", "sh", "-c", script,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The marker was printed before anyone attached: the replay has it.
    let mut owner = Attached::start(&home, "job");
    owner.expect("MARKER-early");
    let mut input = owner.child.stdin.take().unwrap();
    input.write_all(b"first\n").unwrap();
    owner.expect("got first");

    // A second attachment watches; its input goes nowhere.
    let mut watcher = Attached::start(&home, "job");
    watcher.expect("MARKER-early");
    watcher.expect("got first");
    let mut watcher_input = watcher.child.stdin.take().unwrap();
    watcher_input.write_all(b"ignored\n").unwrap();
    watcher_input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    input.write_all(b"second\nquit\n").unwrap();
    owner.expect("got second");
    owner.expect("bye");
    drop(watcher_input);
    watcher.expect("got second");
    watcher.expect("bye");
    // Both end with the main process's exit code.
    assert_eq!(owner.child.wait().unwrap().code(), Some(4));
    let watcher_out = watcher.child.wait_with_output().unwrap();
    assert_eq!(watcher_out.status.code(), Some(4));
    assert!(
        text(&watcher_out.stderr).contains("another attachment owns the main process's input"),
        "{}",
        text(&watcher_out.stderr)
    );
}

/// The gateway's pid, from its pid file.
fn gateway_pid(home: &Home) -> i32 {
    std::fs::read_to_string(
        home.dir
            .path()
            .join("state/openshell/gateways/openshell/gateway.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

fn kill_gateway(home: &Home) {
    let pid = nix::unistd::Pid::from_raw(gateway_pid(home));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    while nix::sys::signal::kill(pid, None).is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_gateway_mid_transfer_fails_clearly_and_reports_nothing_complete() {
    let home = Home::new();
    let port = start(&home);
    create_idle(&home, "xfer", None);
    let made = exec(
        &home,
        "xfer",
        &[
            "sh",
            "-c",
            "head -c 209715200 /dev/urandom > /sandbox/big.bin",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("big.bin");

    // `sandbox download`, with the gateway killed while it runs.
    let mut command = home.command(env!("CARGO_BIN_EXE_openshell"));
    command
        .args(["sandbox", "download", "xfer", "/sandbox/big.bin"])
        .arg(&dest);
    let download = command.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    kill_gateway(&home);
    let out = download.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("Download complete"), "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(!dest.exists(), "a partial download was left in place");

    // scp through the relay, the same way.
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = ssh_config(&home, "xfer");
    let mut command = home.command("scp");
    command
        .arg("-F")
        .arg(&config)
        .args(["-q", "openshell-xfer:/sandbox/big.bin"])
        .arg(&dest);
    let scp = command.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    kill_gateway(&home);
    let out = scp.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "scp reported success");
    assert!(
        text(&out.stderr).contains("ssh relay"),
        "{}",
        text(&out.stderr)
    );

    // Back again, the same transfer completes.
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(&dest);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = home.openshell(&[
            "sandbox",
            "download",
            "xfer",
            "/sandbox/big.bin",
            dest.to_str().unwrap(),
        ]);
        if out.status.code() == Some(0) {
            assert!(
                text(&out.stderr).contains("✓ Download complete"),
                "{}",
                text(&out.stderr)
            );
            break;
        }
        // The supervisor may still be reconnecting: a clear, retryable error.
        assert!(
            text(&out.stderr).contains("not connected"),
            "{}",
            text(&out.stderr)
        );
        assert!(Instant::now() < deadline, "the supervisor never came back");
        std::thread::sleep(Duration::from_millis(500));
    }
    let inside = exec(&home, "xfer", &["sha256sum", "/sandbox/big.bin"]);
    assert!(text(&inside.stdout).starts_with(&sha256(&dest)));
}

/// Reads the pty master until `wanted` appeared in what it printed (20 s
/// at most).
fn read_until(master: &mut std::fs::File, seen: &mut String, wanted: &str) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::io::Read;
    fcntl(&*master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(wanted) {
        assert!(
            Instant::now() < deadline,
            "never saw {wanted:?} in {seen:?}"
        );
        match master.read(&mut buf) {
            Ok(n @ 1..) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => panic!("the terminal closed before {wanted:?}: {seen:?}"),
        }
    }
}

#[test]
fn an_interactive_shell_gets_a_terminal_that_follows_the_window_size() {
    let home = Home::new();
    start(&home);
    create_idle(&home, "tty", None);
    let config = ssh_config(&home, "tty");
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave_path = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))
    .unwrap();
    let mut ssh = home.command("ssh");
    ssh.arg("-F")
        .arg(&config)
        .args(["-tt", "openshell-tty"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut ssh = ssh.spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();
    master
        .write_all(b"echo T-$(tty | cut -c1-9)-$(id -un); stty size\r")
        .unwrap();
    read_until(&mut master, &mut seen, "T-/dev/pts/-sandbox");
    read_until(&mut master, &mut seen, "40 120");
    // The local window changes: ssh sends it on, the shell's terminal follows.
    let resized = std::process::Command::new("stty")
        .arg("-F")
        .arg(&slave_path)
        .args(["rows", "50", "cols", "100"])
        .status()
        .unwrap();
    assert!(resized.success());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ssh.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    master.write_all(b"stty size; exit 5\r").unwrap();
    read_until(&mut master, &mut seen, "50 100");
    assert_eq!(ssh.wait().unwrap().code(), Some(5), "{seen}");
}

#[test]
fn connect_on_a_terminal_detaches_with_ctrl_p_ctrl_q_and_leaves_the_main_process_running() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "svc",
        "--detach",
        "--",
        "sh",
        "-c",
        "echo READY; while read line; do echo \"echo:$line\"; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let attach = || {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut connect = home.command(env!("CARGO_BIN_EXE_openshell"));
        connect
            .args(["sandbox", "connect", "svc"])
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave));
        (connect.spawn().unwrap(), std::fs::File::from(pty.master))
    };
    let (mut first, mut master) = attach();
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "READY");
    master.write_all(b"one\r").unwrap();
    read_until(&mut master, &mut seen, "echo:one");
    master.write_all(b"\x10\x11").unwrap();
    read_until(&mut master, &mut seen, "detached");
    assert_eq!(first.wait().unwrap().code(), Some(0), "{seen}");
    // Still running, and the next attachment may type.
    let (mut second, mut master) = attach();
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "echo:one");
    master.write_all(b"two\r").unwrap();
    read_until(&mut master, &mut seen, "echo:two");
    master.write_all(b"\x10\x11").unwrap();
    assert_eq!(second.wait().unwrap().code(), Some(0), "{seen}");
    let out = home.openshell(&["sandbox", "get", "svc", "-o", "json"]);
    assert!(
        text(&out.stdout).contains("\"phase\": \"Ready\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn create_without_a_command_on_a_terminal_opens_a_shell_in_the_new_sandbox() {
    let home = Home::new();
    start(&home);
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut create = home.command(env!("CARGO_BIN_EXE_openshell"));
    create
        .args(["sandbox", "create", "--name", "shell"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut create = create.spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();
    read_until(&mut master, &mut seen, "Created sandbox: shell");
    master
        .write_all(b"echo in-$(id -un)-$(pwd); exit 3\r")
        .unwrap();
    read_until(&mut master, &mut seen, "in-sandbox-/sandbox");
    assert_eq!(create.wait().unwrap().code(), Some(3), "{seen}");
    // The sandbox stays.
    let out = home.openshell(&["sandbox", "get", "shell", "-o", "json"]);
    assert!(
        text(&out.stdout).contains("\"phase\": \"Ready\""),
        "{}",
        text(&out.stdout)
    );
}

/// A killed `sandbox connect` (ssh, which it became) takes its ssh-proxy
/// with it, even while the gateway does not answer (the proxy then waits
/// on the gateway and never sees its input end); the session token is in
/// no process's arguments.
#[test]
fn a_killed_connect_leaves_no_proxy_behind_and_no_token_in_argv() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let home = Home::new();
    start(&home);
    let out = home.openshell(&[
        "sandbox", "create", "--name", "held", "--detach", "--", "sleep", "infinity",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let attached = Attached::start(&home, "held");
    let connect = attached.child.id() as i32;
    let marker = home.dir.path().to_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let proxy = loop {
        let proxies: Vec<i32> = pids_running("ssh-proxy")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&marker))
            })
            .collect();
        if let [proxy] = proxies[..] {
            break proxy;
        }
        assert!(std::time::Instant::now() < deadline, "no ssh-proxy started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let cmdline = std::fs::read_to_string(format!("/proc/{proxy}/cmdline")).unwrap();
    assert!(!cmdline.contains("--token"), "{cmdline:?}");
    // The gateway stops answering; connect is killed.
    let gateway = Pid::from_raw(gateway_pid(&home));
    kill(gateway, Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(connect), Signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let gone = loop {
        let state = std::fs::read_to_string(format!("/proc/{proxy}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its (dead) parent's reaper.
        if state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill(gateway, Signal::SIGCONT).unwrap();
    assert!(gone, "ssh-proxy {proxy} outlived its connect");
    drop(attached);
}
