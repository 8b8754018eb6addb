//! `openshell doctor check|logs|exec`: what the host offers, the gateway's
//! log, and a command in the gateway's environment (its host, for the
//! process driver).

use std::io::{Read, Seek};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::commands::Exit;
use crate::{commands::gateway, output};

/// `  name ....... text`, aligned.
fn aligned(name: &str, text: &str) {
    let dots = ".".repeat(18usize.saturating_sub(name.chars().count()));
    output::line(&format!("  {name} {dots} {text}"));
}

fn row(name: &str, ok: bool, detail: &str) {
    let verdict = if ok { "ok" } else { "FAILED" };
    aligned(name, &format!("{verdict} ({detail})"));
}

pub fn check(port: u16) -> anyhow::Result<Exit> {
    output::line("Checking system prerequisites...");
    let binary = gateway::companion_binary("OPENSHELL_SANDBOX_BIN", "openshell-sandbox");
    let mut failed = false;
    match Command::new(&binary).arg("check").output() {
        Ok(out) => {
            let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("reading `{} check`", binary.display()))?;
            for check in checks {
                let ok = check["ok"].as_bool().unwrap_or(false);
                let required = check["required"].as_bool().unwrap_or(true);
                row(
                    check["name"].as_str().unwrap_or("?"),
                    ok,
                    check["detail"].as_str().unwrap_or(""),
                );
                failed |= required && !ok;
            }
        }
        Err(error) => {
            row(
                "supervisor",
                false,
                &format!("{}: {error}", binary.display()),
            );
            failed = true;
        }
    }
    // A container engine is optional: without one the process driver runs sandboxes.
    let env = openshell_core::paths::ProcessEnv;
    let sockets = [
        openshell_core::paths::docker_socket(&env),
        openshell_core::paths::podman_socket(&env, nix::unistd::Uid::effective().as_raw()),
    ];
    let engine = sockets
        .into_iter()
        .find(|path| std::os::unix::net::UnixStream::connect(path).is_ok());
    match engine {
        Some(socket) => aligned("container engine", &format!("ok ({})", socket.display())),
        None => aligned(
            "container engine",
            "none (sandboxes use the process driver)",
        ),
    }
    aligned(
        "DOCKER_HOST",
        &std::env::var("DOCKER_HOST").unwrap_or_else(|_| "(not set, using default socket)".into()),
    );
    let port_name = format!("port {port}");
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => aligned(&port_name, "free"),
        Err(_) => aligned(
            &port_name,
            "in use (a running gateway, or pass --port to gateway start)",
        ),
    }
    if failed {
        output::failure("Some required checks failed.");
        return Ok(Exit::Failure);
    }
    output::line("All checks passed.");
    Ok(Exit::Success)
}

/// Prints the last `lines` of the gateway's log; `follow` keeps reading.
pub fn logs(name: &str, lines: usize, follow: bool) -> anyhow::Result<Exit> {
    let path = gateway::local_state(name)?.join("gateway.log");
    let mut file = std::fs::File::open(&path).with_context(|| {
        format!(
            "no log for gateway '{name}' at {} (was it started with `openshell gateway start`?)",
            path.display()
        )
    })?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        output::line(line);
    }
    if !follow {
        return Ok(Exit::Success);
    }
    let mut offset = file.stream_position()?;
    let mut buf = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(&path)?.len();
        if len < offset {
            offset = 0; // rotated or truncated
        }
        file.seek(std::io::SeekFrom::Start(offset))?;
        buf.clear();
        offset += file.read_to_end(&mut buf)? as u64;
        output::raw(&buf)?;
    }
}

/// Runs `command` in the gateway's environment: on this host, in the
/// gateway's state directory (the process driver's sandboxes live there).
pub fn exec(name: &str, command: &[String]) -> anyhow::Result<Exit> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let state = gateway::local_state(name)?;
    let status = Command::new(program)
        .args(args)
        .current_dir(&state)
        .status()
        .with_context(|| format!("running {program} in {}", state.display()))?;
    Ok(match status.code() {
        Some(0) => Exit::Success,
        Some(code) => Exit::Code(code),
        None => Exit::Failure,
    })
}
