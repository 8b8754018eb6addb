//! `sandbox exec`: a command run inside a running sandbox under exactly the
//! agent's restrictions.
//!
//! The supervisor starts a fresh helper process (this binary, `__exec`)
//! with the command's stdio as pipes. The helper joins the sandbox's IPC,
//! UTS, network and PID namespaces through `/proc/<init>/ns/*` and forks
//! the command, which joins the mount namespace (entering it moves root
//! and cwd to the sandbox's root) and then goes through the same code as
//! the agent ([`crate::agent`]: working directory, Landlock,
//! privilege drop, hardening, seccomp, exec) in its own session. The
//! helper waits for it and exits with its status; SIGTERM to the helper
//! kills the command's whole process group. The helper and the command
//! die with the supervisor (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::isolation::{Plan, SANDBOX_DIR, seccomp};
use crate::proxy::caller::Identifier;
use crate::proxy::connects;
use crate::report::{self, Report};
use crate::{EXIT_LAUNCH_FAILED, agent, sys};

/// The namespaces the helper joins before forking the command. The mount
/// namespace is joined by the command itself, after the fork: the helper
/// keeps the host's `/proc` (which its fork needs) and never holds the
/// sandbox's root.
const NAMESPACES: [(&str, CloneFlags); 4] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// The agent's plan, turned into one for `argv`: the agent's environment
/// plus `env`, in `workdir` (default `/sandbox`); no mounts (the sandbox's
/// root already exists).
pub fn plan_for(
    agent: &Plan,
    argv: Vec<String>,
    env: &[(String, String)],
    workdir: &str,
) -> Result<Plan, String> {
    if argv.is_empty() {
        return Err("no command given".to_owned());
    }
    let cwd = if workdir.is_empty() {
        SANDBOX_DIR.to_owned()
    } else if workdir.starts_with('/') {
        workdir.to_owned()
    } else {
        return Err(format!("workdir must be an absolute path: {workdir}"));
    };
    let mut plan = agent.clone();
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(format!("invalid environment variable {key:?}"));
        }
        plan.env.retain(|(k, _)| k != key);
        plan.env.push((key.clone(), value.clone()));
    }
    plan.argv = argv;
    plan.cwd = cwd;
    plan.mounts = Vec::new();
    Ok(plan)
}

/// Starts `__exec` helpers for one live sandbox: the supervisor's side of
/// every exec, ssh command and shell.
#[derive(Debug, Clone)]
pub struct Spawner {
    /// The agent's plan, the template of every command's.
    pub plan: Plan,
    /// Host pid of the sandbox's init (whose namespaces helpers join).
    pub init_pid: i32,
    /// Learns of each helper, so that the proxy counts its descendants as
    /// the sandbox's processes.
    pub identifier: Arc<Identifier>,
    /// A root-only directory for plan files.
    pub scratch: PathBuf,
}

/// A running helper; dropping it forgets it as a sandbox process root (and
/// kills it if it still runs).
#[derive(Debug)]
pub struct Helper {
    pub child: tokio::process::Child,
    pid: u32,
    identifier: Arc<Identifier>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.identifier.remove_exec_root(self.pid);
    }
}

impl Helper {
    /// Asks the helper to kill the command's process group, then waits
    /// (killing the helper itself after 5 s).
    pub async fn stop(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                let _ = self.child.kill().await;
                self.child.wait().await
            }
        }
    }
}

static PLAN_SERIAL: AtomicU64 = AtomicU64::new(1);

/// The descriptor number the helper finds its connect filter channel at.
const CONNECTS_FD: i32 = 3;

impl Spawner {
    /// The plan for `argv` ([`plan_for`]).
    pub fn plan(
        &self,
        argv: Vec<String>,
        env: &[(String, String)],
        workdir: &str,
    ) -> anyhow::Result<Plan> {
        plan_for(&self.plan, argv, env, workdir).map_err(anyhow::Error::msg)
    }

    /// Starts the helper for `plan` with the given standard streams.
    pub fn spawn(&self, plan: &Plan, stdio: [Stdio; 3]) -> anyhow::Result<Helper> {
        let serial = PLAN_SERIAL.fetch_add(1, Ordering::Relaxed);
        let plan_file = self.scratch.join(format!("exec-{serial}.json"));
        openshell_core::fs::write_private(&plan_file, &serde_json::to_vec(plan)?)
            .with_context(|| format!("writing {}", plan_file.display()))?;
        let [stdin, stdout, stderr] = stdio;
        let (ours, theirs) = connects::channel().context("creating the connect filter channel")?;
        let mut command = tokio::process::Command::new("/proc/self/exe");
        command
            .arg0("openshell-exec")
            .arg("__exec")
            .arg("--target")
            .arg(self.init_pid.to_string())
            .arg("--plan-file")
            .arg(&plan_file)
            .arg("--connects-fd")
            .arg(CONNECTS_FD.to_string())
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        sys::inherit_as(&mut command, &theirs, CONNECTS_FD);
        let spawned = command.spawn();
        drop(theirs);
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_file(&plan_file);
                return Err(anyhow::Error::from(error).context("starting the exec helper"));
            }
        };
        let pid = child.id().unwrap_or(0);
        self.identifier.add_exec_root(pid);
        connects::serve_from(ours, self.identifier.clone());
        Ok(Helper {
            child,
            pid,
            identifier: self.identifier.clone(),
        })
    }
}

/// The `__exec` helper; returns its exit code (the command's).
pub fn run(target: i32, plan_file: &Path, connects_fd: Option<i32>) -> i32 {
    let connects = match connects_fd.map(sys::take_inherited_fd).transpose() {
        Ok(connects) => connects,
        Err(error) => {
            say(&format!(
                "cannot enter the sandbox: the connect filter channel: {error}"
            ));
            return EXIT_LAUNCH_FAILED;
        }
    };
    match prepare(target, plan_file) {
        Ok((plan, mount_ns, filters, signals)) => {
            supervise(&plan, &mount_ns, &filters, &signals, connects)
        }
        Err(error) => {
            say(&format!("cannot enter the sandbox: {error:#}"));
            EXIT_LAUNCH_FAILED
        }
    }
}

/// A message to the command's stderr (the exec client sees it).
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "openshell: {message}");
}

fn prepare(
    target: i32,
    plan_file: &Path,
) -> anyhow::Result<(Plan, File, seccomp::Filters, SigSet)> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    let _ = nix::sys::prctl::set_name(c"openshell-exec");
    let json = std::fs::read(plan_file).context("reading the exec plan")?;
    let _ = std::fs::remove_file(plan_file);
    let plan: Plan = serde_json::from_slice(&json).context("decoding the exec plan")?;
    // Before anything is forked: the command counts against the sandbox's
    // resource limits.
    crate::isolation::limits::join_cgroups_of(target).context("joining the sandbox's cgroup")?;
    let mount_path = format!("/proc/{target}/ns/mnt");
    let mount_ns = File::open(&mount_path).with_context(|| format!("opening {mount_path}"))?;
    let namespaces = NAMESPACES
        .iter()
        .map(|(name, flag)| {
            let path = format!("/proc/{target}/ns/{name}");
            File::open(&path)
                .with_context(|| format!("opening {path}"))
                .map(|file| (file, *flag, *name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (file, flag, name) in &namespaces {
        nix::sched::setns(file.as_fd(), *flag)
            .with_context(|| format!("joining the sandbox's {name} namespace"))?;
    }
    let filters = seccomp::compile_filters()?;
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        signals.add(signal);
    }
    signals.thread_block().context("blocking signals")?;
    Ok((plan, mount_ns, filters, signals))
}

/// Forks the command and waits for it.
fn supervise(
    plan: &Plan,
    mount_ns: &File,
    filters: &seccomp::Filters,
    signals: &SigSet,
    connects: Option<std::os::fd::OwnedFd>,
) -> i32 {
    let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(error) => {
            say(&format!("creating the report pipe: {error}"));
            return EXIT_LAUNCH_FAILED;
        }
    };
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(read);
            let report = report::Sender::new(File::from(write));
            if let Err(error) = nix::sched::setns(mount_ns.as_fd(), CloneFlags::CLONE_NEWNS) {
                report.fail(
                    "joining the sandbox's mount namespace",
                    &anyhow::Error::from(error),
                );
                std::process::exit(EXIT_LAUNCH_FAILED);
            }
            // Its own session and process group, so that a cancel reaches
            // everything it started; on a pty, that terminal controls it.
            let _ = nix::unistd::setsid();
            if std::io::IsTerminal::is_terminal(&std::io::stdin())
                && let Err(error) = sys::set_controlling_terminal(std::io::stdin().as_fd())
            {
                say(&format!("cannot take the terminal: {error}"));
            }
            agent::run(plan, filters, report, connects)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(connects);
            child
        }
        Err(error) => {
            say(&format!("starting the command: {error}"));
            return EXIT_LAUNCH_FAILED;
        }
    };
    drop(write);
    for report in report::receive(File::from(read)) {
        if let Report::Failed { message, stage, .. } = report {
            say(&if stage == "exec" {
                message
            } else {
                format!("{stage}: {message}")
            });
        }
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
                _ => continue,
            },
            Ok(_) => {
                let _ = kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
                let _ = kill(child, Signal::SIGKILL);
            }
            Err(_) => continue,
        }
    }
}
