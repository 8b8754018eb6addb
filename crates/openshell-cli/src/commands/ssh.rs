//! SSH into sandboxes through the gateway's relay (docs/cli.md, "Sandboxes"):
//! `sandbox connect`, `sandbox ssh-config` and the hidden `ssh-proxy`
//! that OpenSSH runs as its ProxyCommand.
//!
//! `ssh-proxy` asks the gateway for a short-lived ssh session token
//! (`CreateSshSession`) unless given one, opens a `Forward` stream with it
//! and pipes its stdin and stdout over that stream to the sandbox's SSH
//! server. `connect` gets the token itself and replaces this process with
//! the system `ssh`, so that terminals, resizing and escapes behave as ssh's
//! always do.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

use openshell_proto::v1 as pb;

use crate::client;
use crate::commands::Exit;
use crate::commands::forward::relay;
use crate::commands::scope::{Scope, status};

/// The ssh options every relayed connection uses: the sandbox's host key
/// is new with each sandbox and the relay has authenticated it already.
const SSH_OPTIONS: [(&str, &str); 6] = [
    ("StrictHostKeyChecking", "no"),
    ("UserKnownHostsFile", "/dev/null"),
    ("GlobalKnownHostsFile", "/dev/null"),
    ("LogLevel", "ERROR"),
    ("ServerAliveInterval", "15"),
    ("ServerAliveCountMax", "3"),
];

/// The path of this `openshell` binary, for ProxyCommand lines.
fn own_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the openshell binary")
}

/// Quotes `word` for a POSIX shell (ssh's ProxyCommand, a remote `sh -c`).
pub(crate) fn quoted(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The ProxyCommand line: `openshell ssh-proxy` for this gateway and
/// workspace, then `select` (`--name N`, or nothing when the token comes
/// in the environment).
fn proxy_command(scope: &Scope, select: &[&str]) -> anyhow::Result<String> {
    let mut words = vec![
        own_binary()?.display().to_string(),
        "ssh-proxy".to_owned(),
        "--gateway-name".to_owned(),
        scope.target()?.name.clone(),
    ];
    words.extend(select.iter().map(|w| (*w).to_owned()));
    if scope.workspace != crate::cli::DEFAULT_WORKSPACE {
        words.extend(["--workspace".to_owned(), scope.workspace.clone()]);
    }
    Ok(words
        .iter()
        .map(|w| quoted(w))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The ssh host alias of a sandbox: `openshell-<name>`, and
/// `.<workspace>` outside the default workspace.
pub fn host_alias(scope: &Scope, name: &str) -> String {
    if scope.workspace == crate::cli::DEFAULT_WORKSPACE {
        format!("openshell-{name}")
    } else {
        format!("openshell-{name}.{}", scope.workspace)
    }
}

/// A sandbox's `Host` block for an ssh config.
pub fn host_block(scope: &Scope, name: &str) -> anyhow::Result<String> {
    let proxy = proxy_command(scope, &["--name", name])?;
    let mut block = format!("Host {}\n    User sandbox\n", host_alias(scope, name));
    for (key, value) in SSH_OPTIONS {
        block.push_str(&format!("    {key} {value}\n"));
    }
    block.push_str(&format!("    ProxyCommand {proxy}\n"));
    Ok(block)
}

/// `sandbox ssh-config NAME`: a Host block for `~/.ssh/config`.
pub fn ssh_config(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    crate::output::raw(host_block(scope, name)?.as_bytes())?;
    Ok(Exit::Success)
}

/// `ssh-proxy`: pipes stdin and stdout to the sandbox's SSH server.
pub fn proxy(scope: &Scope, name: Option<&str>, token: Option<&str>) -> anyhow::Result<Exit> {
    // ssh is the parent: when it goes, so does the proxy, whatever it is
    // waiting for (a gateway that stopped answering never ends the relay).
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .context("tying the proxy to its ssh")?;
    if nix::unistd::getppid() != parent {
        return Ok(Exit::Success); // ssh ended before the tie was made
    }
    let runtime = client::runtime()?;
    let relayed = runtime.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let token = match token {
            Some(token) => token.to_owned(),
            None => {
                let name = name.context("ssh-proxy needs --name or --token")?;
                session(&mut client, scope, name).await?.token
            }
        };
        let open = pb::ForwardOpen {
            ssh_token: token,
            ..Default::default()
        };
        relay(client, scope, open, tokio::io::stdin(), tokio::io::stdout())
            .await
            .context("the ssh relay through the gateway failed")
    });
    // A read of stdin may still be pending in a blocking thread: do not
    // wait for it.
    runtime.shutdown_background();
    relayed?;
    Ok(Exit::Success)
}

async fn session(
    client: &mut crate::client::Client,
    scope: &Scope,
    name: &str,
) -> anyhow::Result<pb::SshSession> {
    Ok(client
        .create_ssh_session(scope.request(pb::CreateSshSessionRequest {
            name: name.to_owned(),
        })?)
        .await
        .map_err(status)?
        .into_inner())
}

/// The system ssh through the relay for `session`: its token in ssh's
/// environment (argv is world-readable), the relay as ProxyCommand, `-tt`
/// on a terminal (`-T` otherwise).
fn through_relay(scope: &Scope, session: &pb::SshSession) -> anyhow::Result<std::process::Command> {
    let proxy = proxy_command(scope, &[])?;
    let mut ssh = std::process::Command::new("ssh");
    ssh.env("OPENSHELL_SSH_TOKEN", &session.token);
    ssh.arg("-o").arg(format!("ProxyCommand={proxy}"));
    for (key, value) in SSH_OPTIONS {
        let value = match (key, std::env::var("OPENSHELL_SSH_LOG_LEVEL")) {
            ("LogLevel", Ok(level)) => level,
            _ => value.to_owned(),
        };
        ssh.arg("-o").arg(format!("{key}={value}"));
    }
    if std::io::stdin().is_terminal() {
        ssh.arg("-tt");
    } else {
        ssh.arg("-T");
    }
    ssh.args(["-l", "sandbox"]);
    Ok(ssh)
}

const NO_SSH: &str =
    "cannot run ssh\nhint: install the OpenSSH client (Debian: apt-get install openssh-client)";

/// ssh attached to the main process (`openshell-main` subsystem), once
/// the gateway gives a session; `Err` with the gateway's words when it
/// gives none because the sandbox does not run (e.g. its main process has
/// ended).
fn main_attachment(
    scope: &Scope,
    name: &str,
) -> anyhow::Result<Result<std::process::Command, String>> {
    let session = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::CreateSshSessionRequest {
            name: name.to_owned(),
        })?;
        match client.create_ssh_session(request).await {
            Ok(session) => anyhow::Ok(Ok(session.into_inner())),
            // Not running (any more).
            Err(error) if error.code() == tonic::Code::FailedPrecondition => {
                Ok(Err(error.message().to_owned()))
            }
            Err(error) => Err(status(error)),
        }
    })?;
    let session = match session {
        Ok(session) => session,
        Err(not_running) => return Ok(Err(not_running)),
    };
    let mut ssh = through_relay(scope, &session)?;
    ssh.args(["-s", "sandbox", "openshell-main"]);
    Ok(Ok(ssh))
}

/// `sandbox connect NAME`: attach to the main process (or a login shell in
/// an idle sandbox) with the system ssh through the relay. Returns only on
/// failure: ssh replaces this process.
pub fn connect(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    let mut ssh = main_attachment(scope, name)?.map_err(anyhow::Error::msg)?;
    let error = ssh.exec();
    Err(anyhow::Error::from(error).context(NO_SSH))
}

/// Whether the OpenSSH client is on PATH.
fn ssh_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("ssh").is_file()))
}

/// Attaches to the main process and waits until it ends (its exit code)
/// or the user detaches (0): `sandbox create --tty -- CMD`. `None` when
/// there was nothing to attach to any more, or no ssh to attach with (the
/// caller then streams the output, without input).
pub fn attach_and_wait(scope: &Scope, name: &str) -> anyhow::Result<Option<i32>> {
    if !ssh_installed() {
        crate::output::warning(
            "no ssh on PATH: showing the output without a terminal (Debian: apt-get install openssh-client)",
        );
        return Ok(None);
    }
    let Ok(mut ssh) = main_attachment(scope, name)? else {
        return Ok(None);
    };
    let status = ssh.status().context(NO_SSH)?;
    Ok(Some(status.code().unwrap_or(255)))
}

/// What `sandbox exec --tty` runs.
#[derive(Debug)]
pub struct TtyExec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub workdir: Option<&'a str>,
    /// Seconds (0: none); the command is ended and 124 returned after it.
    pub timeout: u32,
}

/// `sandbox exec --tty` on a terminal: the command on a pseudo-terminal
/// of the sandbox's SSH server, through the relay; ssh puts the local
/// terminal in raw mode, passes every key live and forwards window
/// changes. The command's exit status is ours.
pub fn exec_tty(scope: &Scope, name: &str, exec: &TtyExec<'_>) -> anyhow::Result<Exit> {
    let session = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        session(&mut client, scope, name).await
    })?;
    let mut line = String::new();
    for (key, value) in exec.env {
        let name_like = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        anyhow::ensure!(
            name_like,
            "invalid --env name '{key}': letters, digits and _ only"
        );
        line.push_str(&format!("export {key}={}; ", quoted(value)));
    }
    line.push_str(&format!(
        "cd {} && exec",
        quoted(exec.workdir.unwrap_or("/sandbox"))
    ));
    for word in exec.argv {
        line.push(' ');
        line.push_str(&quoted(word));
    }
    let mut ssh = through_relay(scope, &session)?;
    ssh.args(["sandbox", "--", &line]);
    let mut child = ssh.spawn().context(NO_SSH)?;
    let deadline = (exec.timeout > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_secs(exec.timeout.into()));
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(match status.code() {
                Some(0) => Exit::Success,
                Some(code) => Exit::Code(code),
                None => Exit::Code(255),
            });
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            // Closing the terminal hangs the command up.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Exit::Code(124));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
