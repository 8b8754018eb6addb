//! Running the real `openshell-sandbox` binary, as root, with a deadline.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::PYTHON;

/// The `openshell-sandbox` binary of this build.
pub fn supervisor() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::built_binary("openshell-sandbox"))
}
/// No launch may take longer; a hang fails the test instead of the suite.
const DEADLINE: Duration = Duration::from_secs(60);

/// The suite needs root (CI runs as root); it never skips silently.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the escape suite must run as root (CI does): the supervisor creates namespaces"
    );
}

/// What a sandboxed command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics with the whole outcome unless the command exited 0.
    pub fn success(self) -> Outcome {
        assert_eq!(self.code, 0, "sandboxed command failed: {self:#?}");
        self
    }
}

/// A sandbox launch being configured.
#[derive(Debug)]
pub struct Sandbox {
    policy: Option<PathBuf>,
    workdir: Option<PathBuf>,
    env: Vec<String>,
    stdin: Option<Vec<u8>>,
    events: bool,
    supervisor_env: Vec<(String, String)>,
    netns: Option<String>,
    run_args: Vec<String>,
    state: tempfile::TempDir,
}

pub fn sandbox() -> Sandbox {
    require_root();
    Sandbox {
        policy: None,
        workdir: None,
        env: Vec::new(),
        stdin: None,
        events: false,
        supervisor_env: Vec::new(),
        netns: None,
        run_args: Vec::new(),
        state: tempfile::tempdir().unwrap(),
    }
}

impl Sandbox {
    /// Uses this policy text (written to a file outside the sandbox).
    pub fn policy(mut self, yaml: &str) -> Sandbox {
        let path = self.state.path().join("policy.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.policy = Some(path);
        self
    }

    pub fn workdir(mut self, dir: &Path) -> Sandbox {
        self.workdir = Some(dir.to_owned());
        self
    }

    /// Passes `args` to `openshell-sandbox run` (before `--`).
    pub fn run_args(mut self, args: &[&str]) -> Sandbox {
        self.run_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    pub fn env(mut self, item: &str) -> Sandbox {
        self.env.push(item.to_owned());
        self
    }

    pub fn stdin(mut self, data: &[u8]) -> Sandbox {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Sets a variable in the supervisor's own environment (not the child's).
    pub fn supervisor_env(mut self, key: &str, value: &str) -> Sandbox {
        self.supervisor_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the supervisor itself (and so the proxy's upstream dials) inside
    /// the named network namespace instead of the host's.
    pub fn supervisor_netns(mut self, name: &str) -> Sandbox {
        self.netns = Some(name.to_owned());
        self
    }

    /// Records egress events in [`Sandbox::events_file`].
    pub fn with_events(mut self) -> Sandbox {
        self.events = true;
        self
    }

    pub fn events_file(&self) -> PathBuf {
        self.state.path().join("events.jsonl")
    }

    /// The supervisor's state directory (where generated workspaces live).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn command(&self, argv: &[&str]) -> Command {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(supervisor());
                command
            }
            None => Command::new(supervisor()),
        };
        command
            .env("XDG_STATE_HOME", self.state.path())
            .env_remove("OPENSHELL_LOG")
            .envs(self.supervisor_env.iter().map(|(k, v)| (k, v)))
            .arg("run");
        if let Some(policy) = &self.policy {
            command.arg("--policy").arg(policy);
        }
        if let Some(workdir) = &self.workdir {
            command.arg("--workdir").arg(workdir);
        }
        for item in &self.env {
            command.args(["--env", item]);
        }
        if self.events {
            command.arg("--events").arg(self.events_file());
        }
        command.args(&self.run_args);
        command.arg("--").args(argv);
        command
    }

    pub fn run(&self, argv: &[&str]) -> Outcome {
        let mut command = self.command(argv);
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(data) = &self.stdin {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(data).unwrap();
        }
        wait_with_deadline(child)
    }

    /// `sh -c script`.
    pub fn sh(&self, script: &str) -> Outcome {
        self.run(&["/bin/sh", "-c", script])
    }

    /// `python3 -c code`.
    pub fn python(&self, code: &str) -> Outcome {
        self.run(&[PYTHON, "-c", code])
    }
}

/// Waits for the child, killing it and failing the test past the deadline (60 s).
pub fn wait_with_deadline(mut child: std::process::Child) -> Outcome {
    let start = Instant::now();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdout = read_in_background(stdout);
    let stderr = read_in_background(stderr);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            child.wait().ok();
            panic!("sandbox launch hung for more than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_in_background(
    pipe: Option<impl std::io::Read + Send + 'static>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_string(&mut text).ok();
        }
        text
    })
}

/// A directory the sandbox user can read and write, for `--workdir`.
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}
