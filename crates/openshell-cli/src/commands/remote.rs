//! `gateway start --remote user@host` (docs/cli.md, "Remote gateways"): a
//! gateway on another machine, reached only through ssh.
//!
//! `start` copies this build's `openshell-gateway` and `openshell-sandbox`
//! to `~/.local/state/openshell/remote/<name>/` on the host, starts the
//! gateway there in a session of its own (it outlives the ssh connection)
//! listening on the host's loopback only, fetches the CLI's client bundle
//! from its PKI, and opens an ssh tunnel from a loopback port here to the
//! gateway's port there, which the registration names: mTLS end to end,
//! carried by ssh. The host's key is pinned on first use, per gateway
//! (`gateways/<name>/known_hosts`). `stop` and `destroy` act on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::commands::Exit;
use crate::commands::gateway::progress;
use crate::commands::ssh::quoted;
use crate::output;
use crate::registry::{Metadata, Registry, Source, Target, write_atomically};

/// Where the gateway lives on the host, relative to the user's home.
const REMOTE_ROOT: &str = ".local/state/openshell/remote";
/// How long the remote gateway has to make its PKI and answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `gateways/<name>/remote.json`: how to reach a remote gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    /// `user@host` (or `host`).
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// The gateway's port on the host's loopback.
    pub port: u16,
    /// The local end of the tunnel.
    pub tunnel_port: u16,
}

/// What `gateway start --remote` was given.
#[derive(Debug, Clone)]
pub struct StartRemote {
    pub name: String,
    pub host: String,
    pub ssh_key: Option<PathBuf>,
    pub ssh_port: Option<u16>,
    pub port: u16,
}

fn remote_file(registry: &Registry, name: &str) -> PathBuf {
    registry.gateway_dir(name).join("remote.json")
}

/// The remote side of a registration, if it is one.
pub fn load(registry: &Registry, name: &str) -> anyhow::Result<Option<Remote>> {
    match std::fs::read_to_string(remote_file(registry, name)) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).context("reading remote.json")?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading remote.json"),
    }
}

struct Ssh<'a> {
    registry: &'a Registry,
    name: &'a str,
    remote: &'a Remote,
}

impl Ssh<'_> {
    /// `ssh` to the host: batch mode (no prompts), the host key pinned on
    /// first use in this registration's own known_hosts.
    fn command(&self) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            self.registry
                .gateway_dir(self.name)
                .join("known_hosts")
                .display()
        ))
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]);
        if let Some(port) = self.remote.ssh_port {
            ssh.arg("-p").arg(port.to_string());
        }
        if let Some(key) = &self.remote.ssh_key {
            ssh.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
        }
        ssh
    }

    fn dir(&self) -> String {
        format!("{REMOTE_ROOT}/{}", self.name)
    }

    /// Runs `script` (sh) on the host with `input` on its stdin; its stdout.
    fn run(&self, script: &str, input: Option<&Path>) -> anyhow::Result<String> {
        let mut ssh = self.command();
        ssh.arg(&self.remote.host)
            .arg("--")
            .arg(format!("D={}; {script}", quoted(&self.dir())))
            .stdin(match input {
                Some(path) => Stdio::from(
                    std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                ),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = ssh
            .output()
            .context("running ssh\nhint: install the OpenSSH client (Debian: apt-get install openssh-client)")?;
        if !out.status.success() {
            bail!(
                "on {}: {}",
                self.remote.host,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `gateway start --remote`.
pub fn start(options: &StartRemote) -> anyhow::Result<Exit> {
    let registry = Registry::for_user()?;
    crate::registry::check_name(&options.name)?;
    let started = Instant::now();
    let previous = load(&registry, &options.name)?;
    let remote = Remote {
        host: options.host.clone(),
        ssh_port: options.ssh_port,
        ssh_key: options.ssh_key.clone(),
        port: options.port,
        tunnel_port: previous
            .as_ref()
            .map_or_else(free_port, |p| Ok(p.tunnel_port))?,
    };
    std::fs::create_dir_all(registry.gateway_dir(&options.name))?;
    let ssh = Ssh {
        registry: &registry,
        name: &options.name,
        remote: &remote,
    };
    progress(started, &format!("Connecting to {} over ssh", remote.host));
    let state = ssh.run(
        r#"set -e; uname -m; mkdir -p "$D/bin"; if [ -f "$D/gateway.pid" ] && kill -0 "$(cat "$D/gateway.pid")" 2>/dev/null; then echo running; else echo stopped; fi"#,
        None,
    )?;
    let mut lines = state.lines();
    let arch = lines.next().unwrap_or_default().trim().to_owned();
    if arch != std::env::consts::ARCH {
        bail!(
            "{} is {arch}, this build of openshell-gateway is {}",
            remote.host,
            std::env::consts::ARCH
        );
    }
    if lines.next() == Some("running") {
        progress(started, "Gateway already running there");
    } else {
        for binary in ["openshell-gateway", "openshell-sandbox"] {
            let local = crate::commands::gateway::companion_binary(
                &format!(
                    "OPENSHELL_{}_BIN",
                    binary["openshell-".len()..].to_uppercase()
                ),
                binary,
            );
            progress(started, &format!("Copying {binary}"));
            ssh.run(
                &format!(
                    r#"set -e; cat > "$D/bin/{binary}.tmp"; chmod 755 "$D/bin/{binary}.tmp"; mv -f "$D/bin/{binary}.tmp" "$D/bin/{binary}""#
                ),
                Some(&local),
            )?;
        }
        progress(started, "Starting the gateway");
        ssh.run(
            &format!(
                r#"set -e; cd "$D"; setsid nohup bin/openshell-gateway --state-dir "$PWD/state" --bind 127.0.0.1 --port {port} --driver process --name {name} --sandbox-bin "$PWD/bin/openshell-sandbox" > gateway.log 2>&1 < /dev/null & echo $! > gateway.pid"#,
                port = remote.port,
                name = quoted(&options.name),
            ),
            None,
        )?;
    }
    let wait = ssh.run(
        &format!(
            r#"i=0; while [ ! -f "$D/state/pki/client/tls.key" ]; do i=$((i+1)); [ $i -gt {} ] && {{ tail -n 5 "$D/gateway.log" >&2; exit 1; }}; sleep 0.2; done; echo ready"#,
            START_TIMEOUT.as_secs() * 5
        ),
        None,
    );
    wait.context("the remote gateway did not create its PKI")?;
    // The client bundle, through files here first (the key 0600).
    let scratch = tempfile_dir(&registry, &options.name)?;
    for (remote_path, local) in [
        ("state/pki/client/ca.crt", "ca.crt"),
        ("state/pki/client/tls.crt", "tls.crt"),
        ("state/pki/client/tls.key", "tls.key"),
    ] {
        let text = ssh.run(&format!(r#"cat "$D/{remote_path}""#), None)?;
        write_atomically(&scratch.join(local), text.as_bytes(), 0o600)?;
    }
    registry.store_bundle(
        &options.name,
        &scratch.join("ca.crt"),
        &scratch.join("tls.crt"),
        &scratch.join("tls.key"),
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    write_atomically(
        &remote_file(&registry, &options.name),
        serde_json::to_string_pretty(&remote)?.as_bytes(),
        0o600,
    )?;
    progress(started, "Opening the ssh tunnel");
    ensure_tunnel(&registry, &options.name, &remote)?;
    let endpoint = format!("https://127.0.0.1:{}", remote.tunnel_port);
    let metadata = Metadata {
        name: options.name.clone(),
        gateway_endpoint: endpoint.clone(),
        is_remote: true,
        gateway_port: remote.port,
        auth_mode: Some("mtls".to_owned()),
        remote_host: Some(remote.host.clone()),
        source: Source::User,
    };
    registry.save(&metadata)?;
    registry.set_active(&options.name)?;
    let target = Target {
        name: options.name.clone(),
        endpoint: endpoint.clone(),
        auth: "mtls".to_owned(),
        mtls_dir: registry.mtls_dir(&options.name),
        token: None,
        insecure: false,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while let Err(error) = crate::commands::gateway::probe(&target) {
        if Instant::now() > deadline {
            return Err(error.context("the remote gateway does not answer through the tunnel"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    progress(started, "Gateway ready");
    output::success(&format!(
        "Gateway '{}' started on {} and set as active",
        options.name, remote.host
    ));
    output::line(&format!(
        "  Endpoint: {endpoint} (ssh tunnel to {}:127.0.0.1:{})",
        remote.host, remote.port
    ));
    Ok(Exit::Success)
}

fn tempfile_dir(registry: &Registry, name: &str) -> anyhow::Result<PathBuf> {
    let dir = registry.gateway_dir(name).join(".bundle");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tunnel_pid_file(registry: &Registry, name: &str) -> PathBuf {
    registry.gateway_dir(name).join("tunnel.pid")
}

fn forward_spec(remote: &Remote) -> String {
    format!("127.0.0.1:{}:127.0.0.1:{}", remote.tunnel_port, remote.port)
}

/// The tunnel's ssh, while it runs (checked by its command line: the pid
/// may have been reused since).
fn tunnel_pid(registry: &Registry, name: &str, remote: &Remote) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(tunnel_pid_file(registry, name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(&forward_spec(remote))
        .then_some(pid)
}

/// Starts the tunnel unless it runs: `ssh -N -L 127.0.0.1:T:127.0.0.1:P`,
/// in a session of its own (it outlives this command).
pub fn ensure_tunnel(registry: &Registry, name: &str, remote: &Remote) -> anyhow::Result<()> {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], remote.tunnel_port));
    if tunnel_pid(registry, name, remote).is_some()
        && std::net::TcpStream::connect_timeout(&local, Duration::from_millis(500)).is_ok()
    {
        return Ok(());
    }
    let ssh = Ssh {
        registry,
        name,
        remote,
    };
    let mut command = ssh.command();
    command
        .args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=15",
        ])
        .arg("-L")
        .arg(forward_spec(remote))
        .arg(&remote.host)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().context("starting the ssh tunnel")?;
    write_atomically(
        &tunnel_pid_file(registry, name),
        format!("{}\n", child.id()).as_bytes(),
        0o644,
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("the ssh tunnel to {} did not open", remote.host);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Ends the tunnel, if it runs.
fn stop_tunnel(registry: &Registry, name: &str, remote: &Remote) {
    if let Some(pid) = tunnel_pid(registry, name, remote) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = std::fs::remove_file(tunnel_pid_file(registry, name));
}

/// `gateway stop|destroy|remove` of a registration that may be remote:
/// what to do there, or `None` for a local one.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Stop,
    Destroy,
    /// The registration goes; its tunnel with it, the gateway there stays.
    Remove,
}

/// Carries out `verb` when `name` is a remote gateway; `None` otherwise
/// (for `Remove`, after ending the tunnel, so the local removal proceeds).
pub fn act(verb: Verb, name: &str) -> anyhow::Result<Option<Exit>> {
    let registry = Registry::for_user()?;
    let Some(remote) = load(&registry, name)? else {
        return Ok(None);
    };
    match verb {
        Verb::Stop => {
            if stop(&registry, name, &remote)? {
                output::success(&format!("Gateway '{name}' stopped on {}", remote.host));
            } else {
                output::warning(&format!(
                    "Gateway '{name}' is not running on {}",
                    remote.host
                ));
            }
            Ok(Some(Exit::Success))
        }
        Verb::Destroy => {
            let ended = destroy(&registry, name, &remote)?;
            output::success(&format!(
                "Gateway '{name}' destroyed on {} ({ended} sandbox{} ended)",
                remote.host,
                if ended == 1 { "" } else { "es" }
            ));
            Ok(Some(Exit::Success))
        }
        Verb::Remove => {
            stop_tunnel(&registry, name, &remote);
            Ok(None)
        }
    }
}

/// `gateway stop` of a remote gateway: the gateway there, and the tunnel.
fn stop(registry: &Registry, name: &str, remote: &Remote) -> anyhow::Result<bool> {
    let ssh = Ssh {
        registry,
        name,
        remote,
    };
    let said = ssh.run(
        r#"if [ -f "$D/gateway.pid" ] && kill "$(cat "$D/gateway.pid")" 2>/dev/null; then rm -f "$D/gateway.pid"; echo stopped; else echo idle; fi"#,
        None,
    )?;
    stop_tunnel(registry, name, remote);
    Ok(said.trim() == "stopped")
}

/// `gateway destroy` of a remote gateway: its sandboxes (through the
/// gateway, while it answers), the gateway, its files there, the tunnel
/// and the registration.
fn destroy(registry: &Registry, name: &str, remote: &Remote) -> anyhow::Result<usize> {
    let mut ended = 0;
    if let Ok(Some(target)) = registry.resolve(Some(name), None) {
        ended = crate::commands::gateway::delete_every_sandbox(&target).unwrap_or(0);
    }
    stop(registry, name, remote)?;
    let ssh = Ssh {
        registry,
        name,
        remote,
    };
    ssh.run(r#"rm -rf -- "$D""#, None)?;
    registry.remove(name)?;
    Ok(ended)
}
