//! `sandbox exec`, the session's side: a command run inside a running
//! sandbox under exactly the agent's restrictions. [`plan_for`] turns the
//! agent's plan into the command's; a [`Spawner`] starts the `__exec`
//! helper (this binary) with the command's stdio as pipes and learns of it
//! as a root of the sandbox's processes. The helper itself, which joins the
//! sandbox's namespaces and runs the command through the agent's code, is
//! [`crate::isolation::join`].

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::isolation::{Plan, SANDBOX_DIR, sys};
use crate::proxy::caller::Identifier;
use crate::proxy::connects;

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
    /// The providers' current placeholders join each command's
    /// environment (a provider attached after the start included).
    pub credentials: crate::proxy::credentials::Credentials,
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
        // The launch's placeholders give way to the current ones: a
        // detached provider's go, a rotated one's move on.
        let mut template = self.plan.clone();
        if self.credentials.active() {
            template.env.retain(|entry| {
                !crate::proxy::credentials::expects_credentials(std::iter::once(entry))
            });
            template.env.extend(self.credentials.placeholder_env());
        }
        plan_for(&template, argv, env, workdir).map_err(anyhow::Error::msg)
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
