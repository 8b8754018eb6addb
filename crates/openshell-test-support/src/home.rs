//! A fresh user for the `openshell` CLI: its own XDG config and state
//! directories, the real binaries of this build, and cleanup on drop of
//! every gateway, sandbox and forward it started. Also the small process
//! helpers the CLI suites share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `openshell` binary of this build.
pub fn openshell_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        crate::built_binary("openshell")
            .to_string_lossy()
            .into_owned()
    })
}

/// Fresh XDG directories; stops any gateway started in them on drop.
#[derive(Debug)]
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn openshell(&self, args: &[&str]) -> Output {
        self.openshell_with_stdin(args, b"")
    }

    /// [`Home::openshell`] with `input` on its stdin.
    pub fn openshell_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut command = self.command(openshell_bin());
        command.args(args);
        run_with_stdin(command, input)
    }

    /// `program` with this home's environment (so that an `openshell` it
    /// runs, such as ssh's ProxyCommand, uses this home too) and piped
    /// standard streams.
    pub fn command(&self, program: &str) -> Command {
        let gateway = Path::new(openshell_bin())
            .parent()
            .unwrap()
            .join("openshell-gateway");
        assert!(
            gateway.is_file(),
            "{} is missing: build the workspace (cargo test --workspace builds it)",
            gateway.display()
        );
        let mut command = Command::new(program);
        command
            .env("NO_COLOR", "1")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("OPENSHELL_GATEWAY_BIN", gateway)
            // The process driver unless a test asks for a container engine
            // (CI runs dockerd, which auto-detection would pick).
            .env("OPENSHELL_DRIVER", "process")
            // The machine's /etc/openshell is no test's business, and no
            // test may open a browser.
            .env(
                "OPENSHELL_SYSTEM_GATEWAY_DIR",
                self.dir.path().join("system"),
            )
            .env("OPENSHELL_NO_BROWSER", "1")
            .env_remove("OPENSHELL_GATEWAY")
            .env_remove("OPENSHELL_GATEWAY_ENDPOINT")
            .env_remove("OPENSHELL_GATEWAY_INSECURE")
            .env_remove("OPENSHELL_WORKSPACE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    }

    /// The `openshell` config directory of this home.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config/openshell")
    }

    /// The read-only system registry this home sees
    /// (`OPENSHELL_SYSTEM_GATEWAY_DIR`).
    pub fn system(&self) -> PathBuf {
        self.dir.path().join("system")
    }

    /// The state directory of a gateway this home started.
    pub fn gateway_state(&self, name: &str) -> PathBuf {
        self.dir.path().join("state/openshell/gateways").join(name)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Sandboxes outlive a gateway stop by design; a test must not. Nor
        // may any gateway it started, whatever its registration became.
        let forwards = self.config().join("forwards");
        for entry in std::fs::read_dir(forwards).into_iter().flatten().flatten() {
            if let Some(pid) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let _ = self.openshell(&["sandbox", "delete", "--all"]);
        let started = self.dir.path().join("state/openshell/gateways");
        for entry in std::fs::read_dir(started).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A container gateway's containers outlive the test otherwise.
            let driver = std::fs::read_to_string(entry.path().join("driver")).unwrap_or_default();
            let how = if matches!(driver.trim(), "docker" | "podman") {
                "destroy"
            } else {
                "stop"
            };
            let _ = self.openshell(&["gateway", how, "--name", &name]);
        }
        // A test that failed while its gateway was down could not delete
        // its sandboxes: their supervisors name this home on their command
        // line. (SIGKILL of a supervisor takes its sandbox down.)
        let home = self.dir.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&home) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Runs `command` with `input` on its stdin; its whole output.
pub fn run_with_stdin(mut command: Command, input: &[u8]) -> Output {
    command
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let input = input.to_vec();
            // A writer thread: the command may not read all of it.
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
            let output = child.wait_with_output();
            let _ = writer.join();
            output
        })
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The stdout of a command that must have succeeded (both streams shown
/// when it did not).
pub fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Starts a gateway for `home` on a free port; returns the port.
pub fn start(home: &Home) -> String {
    let port = free_port().to_string();
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    port
}

/// Every process's pid and command line (arguments NUL-terminated).
pub fn cmdlines() -> impl Iterator<Item = (String, Vec<u8>)> {
    std::fs::read_dir("/proc").unwrap().filter_map(|e| {
        let pid = e.ok()?.file_name().to_string_lossy().into_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some((pid, cmdline))
    })
}

/// Pids whose whole command line is `cmdline` (arguments NUL-separated).
pub fn pids_of(cmdline: &str) -> Vec<String> {
    let wanted = format!("{cmdline}\u{0}");
    cmdlines()
        .filter(|(_, actual)| *actual == wanted.as_bytes())
        .map(|(pid, _)| pid)
        .collect()
}

/// Pids of processes whose first argument is `subcommand`.
pub fn pids_running(subcommand: &str) -> Vec<i32> {
    cmdlines()
        .filter(|(_, cmdline)| cmdline.split(|b| *b == 0).nth(1) == Some(subcommand.as_bytes()))
        .filter_map(|(pid, _)| pid.parse().ok())
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
