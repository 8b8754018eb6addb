//! `openshell forward start|stop|list`: local ports forwarded to ports on a
//! sandbox's loopback. Each accepted connection is one `Forward` stream
//! through the gateway to the sandbox's supervisor, which makes the
//! connection inside the sandbox. `start -d` runs the same forward in the
//! background and records it in `forwards/<sandbox>-<port>.pid`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use openshell_proto::v1 as pb;
use pb::forward_frame::Kind;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};
use crate::output;
use crate::pid::{self, alive};

/// How long `start -d` waits for the background forward to listen.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

/// `[BIND:]PORT`.
pub fn parse_spec(spec: &str) -> anyhow::Result<SocketAddr> {
    let (bind, port) = match spec.rsplit_once(':') {
        Some((bind, port)) => (
            bind.trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .with_context(|| format!("invalid bind address in '{spec}'"))?,
            port,
        ),
        None => (IpAddr::V4(Ipv4Addr::LOCALHOST), spec),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("invalid port in '{spec}': expected [BIND:]PORT"))?;
    Ok(SocketAddr::new(bind, port))
}

fn pid_file(sandbox: &str, port: u16) -> anyhow::Result<PathBuf> {
    Ok(
        openshell_core::paths::config_dir(&openshell_core::paths::ProcessEnv)?
            .join("forwards")
            .join(format!("{sandbox}-{port}.pid")),
    )
}

pub fn start(scope: &Scope, spec: &str, name: &str, detach: bool) -> anyhow::Result<Exit> {
    let local = parse_spec(spec)?;
    if local.port() == openshell_core::PROXY_PORT {
        bail!(
            "port {} is the sandbox's egress proxy; it cannot be forwarded",
            openshell_core::PROXY_PORT
        );
    }
    let runtime = client::runtime()?;
    let mut client = runtime.block_on(client::connect(scope.target()?))?;
    let sandbox = runtime
        .block_on(client.get_sandbox(scope.request(pb::GetSandboxRequest {
            name: name.to_owned(),
        })?))
        .map_err(status)?
        .into_inner();
    if sandbox.phase != "Ready" {
        bail!("sandbox '{name}' is not running (phase {})", sandbox.phase);
    }
    if detach {
        return start_background(spec, name, local);
    }
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(local))
        .with_context(|| format!("listening on {local}"))?;
    output::success(&format!(
        "Forwarding {local} -> sandbox {name}:{} (Ctrl-C to stop)",
        local.port()
    ));
    runtime.block_on(async {
        loop {
            let (socket, _) = listener.accept().await.context("accepting")?;
            let _ = socket.set_nodelay(true);
            let (client, scope, name) = (client.clone(), scope.clone(), name.to_owned());
            tokio::spawn(async move {
                let open = pb::ForwardOpen {
                    name,
                    port: u32::from(local.port()),
                    ..Default::default()
                };
                let (reader, writer) = socket.into_split();
                if let Err(error) = relay(client, &scope, open, reader, writer).await {
                    output::warning(&format!("forward of port {}: {error:#}", local.port()));
                }
            });
        }
    })
}

/// One `Forward` stream (`open` says to where), relayed until both sides
/// are done: what `reader` yields goes to the sandbox, what comes back is
/// written to `writer` (half-closed at the sandbox's end of data).
pub async fn relay(
    mut client: crate::client::Client,
    scope: &Scope,
    open: pb::ForwardOpen,
    mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut writer: impl tokio::io::AsyncWrite + Unpin,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let frame = |kind| pb::ForwardFrame {
        stream_id: String::new(),
        kind: Some(kind),
    };
    tx.send(frame(Kind::Open(open))).await?;
    let request = scope.request(tokio_stream::wrappers::ReceiverStream::new(rx))?;
    let mut replies = client.forward(request).await.map_err(status)?.into_inner();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let kind = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => Kind::Eof(true),
                Ok(n) => Kind::Data(buf[..n].to_vec()),
            };
            let last = matches!(kind, Kind::Eof(_));
            if tx.send(frame(kind)).await.is_err() || last {
                // Keep the request stream open until the replies end.
                std::future::pending::<()>().await;
            }
        }
    });
    let result = async {
        while let Some(reply) = replies.message().await.map_err(status)? {
            match reply.kind {
                Some(Kind::Data(data)) => {
                    writer.write_all(&data).await?;
                    writer.flush().await?;
                }
                Some(Kind::Eof(_)) => writer.shutdown().await?,
                Some(Kind::Closed(_)) => return Ok(()),
                Some(Kind::Error(error)) => bail!("{error}"),
                _ => {}
            }
        }
        bail!("the gateway ended the stream before the sandbox closed it")
    }
    .await;
    up.abort();
    result
}

fn start_background(spec: &str, name: &str, local: SocketAddr) -> anyhow::Result<Exit> {
    let path = pid_file(name, local.port())?;
    if let Some(pid) = pid::read(&path).filter(|p| alive(*p)) {
        bail!(
            "port {} of sandbox '{name}' is already forwarded (pid {pid}); stop it with: openshell forward stop {} {name}",
            local.port(),
            local.port()
        );
    }
    let me = std::env::current_exe().context("locating this binary")?;
    let mut command = std::process::Command::new(me);
    command
        .args(["forward", "start", spec, name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("starting the background forward")?;
    let deadline = Instant::now() + DETACH_TIMEOUT;
    let probe = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
    } else {
        local
    };
    while std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the background forward exited ({status}); run it without -d to see why");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the background forward did not listen on {local} within {}s",
                DETACH_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, format!("{}\n", child.id()))
        .with_context(|| format!("writing {}", path.display()))?;
    output::success(&format!(
        "Forwarding {local} -> sandbox {name}:{} in the background (pid {})",
        local.port(),
        child.id()
    ));
    Ok(Exit::Success)
}

pub fn stop(port: u16, name: &str) -> anyhow::Result<Exit> {
    let path = pid_file(name, port)?;
    match pid::read(&path) {
        Some(pid) if alive(pid) => {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .with_context(|| format!("stopping the forward (pid {pid})"))?;
            let _ = std::fs::remove_file(&path);
            output::success(&format!(
                "Stopped forward of port {port} for sandbox {name}"
            ));
        }
        _ => {
            let _ = std::fs::remove_file(&path);
            output::warning(&format!("No forward of port {port} for sandbox {name}"));
        }
    }
    Ok(Exit::Success)
}

pub fn list() -> anyhow::Result<Exit> {
    let dir =
        openshell_core::paths::config_dir(&openshell_core::paths::ProcessEnv)?.join("forwards");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".pid") else {
            continue;
        };
        let Some((sandbox, port)) = stem.rsplit_once('-') else {
            continue;
        };
        let pid = pid::read(&entry.path());
        let state = if pid.is_some_and(alive) {
            "running"
        } else {
            "dead"
        };
        rows.push(vec![
            sandbox.to_owned(),
            port.to_owned(),
            pid.map_or("-".to_owned(), |p| p.to_string()),
            state.to_owned(),
        ]);
    }
    if rows.is_empty() {
        output::line("No forwards.");
        return Ok(Exit::Success);
    }
    rows.sort();
    output::table(&["SANDBOX", "PORT", "PID", "STATUS"], &rows);
    Ok(Exit::Success)
}
