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

/// Quotes `word` for the shell ssh runs ProxyCommand with.
fn quoted(word: &str) -> String {
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

/// `sandbox ssh-config NAME`: a Host block for `~/.ssh/config`.
pub fn ssh_config(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    let proxy = proxy_command(scope, &["--name", name])?;
    let mut block = format!("Host openshell-{name}\n    User sandbox\n");
    for (key, value) in SSH_OPTIONS {
        block.push_str(&format!("    {key} {value}\n"));
    }
    block.push_str(&format!("    ProxyCommand {proxy}\n"));
    crate::output::raw(block.as_bytes())?;
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

/// `sandbox connect NAME`: attach to the main process (or a login shell in
/// an idle sandbox) with the system ssh through the relay. Returns only on
/// failure: ssh replaces this process.
pub fn connect(scope: &Scope, name: &str) -> anyhow::Result<Exit> {
    // The gateway refuses a session for a sandbox that does not run.
    let session = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        session(&mut client, scope, name).await
    })?;
    let proxy = proxy_command(scope, &[])?;
    let mut ssh = std::process::Command::new("ssh");
    // ssh hands its environment to the ProxyCommand; argv is world-readable.
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
    ssh.args(["-l", "sandbox", "-s", "sandbox", "openshell-main"]);
    let error = ssh.exec();
    Err(anyhow::Error::from(error).context(
        "cannot run ssh\nhint: install the OpenSSH client (Debian: apt-get install openssh-client)",
    ))
}
