//! The session's exec streams: each `start` launches the `__exec` helper
//! ([`crate::exec`]) with piped stdio, pumps its output as it comes, and
//! ends with the exit code (124 after `timeout_seconds`); stdin, its end
//! and cancel arrive as later messages.

use std::collections::HashMap;
use std::time::Duration;

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use openshell_proto::v1 as pb;
use pb::exec_input::Kind as Input;
use pb::exec_output::Kind as Output;
use pb::supervisor_message::Kind as ToGateway;

use super::{CHUNK, Sandbox, cancellation, message};

/// Exit code of an exec killed by its timeout (as `timeout(1)`).
const EXIT_TIMEOUT: i32 = 124;

/// A running exec: its stdin and a way to stop it.
#[derive(Debug)]
pub(super) struct Exec {
    stdin: mpsc::Sender<Option<Vec<u8>>>,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl Exec {
    pub(super) fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
}

pub(super) async fn handle(
    sandbox: &Sandbox,
    execs: &mut HashMap<String, Exec>,
    outbound: &mpsc::Sender<pb::SupervisorMessage>,
    input: pb::ExecInput,
) {
    // Forget the execs that ended (their task dropped its receiver).
    execs.retain(|_, exec| !exec.cancel.is_closed());
    let id = input.exec_id;
    match input.kind {
        Some(Input::Start(start)) => match start_exec(sandbox, &id, start, outbound.clone()) {
            Ok(exec) => {
                execs.insert(id, exec);
            }
            Err(error) => {
                let _ = outbound
                    .send(exec_output(&id, Output::Error(format!("{error:#}"))))
                    .await;
            }
        },
        Some(Input::Stdin(data)) => {
            if let Some(exec) = execs.get(&id) {
                let _ = exec.stdin.send(Some(data)).await;
            }
        }
        Some(Input::CloseStdin(_)) => {
            if let Some(exec) = execs.get(&id) {
                let _ = exec.stdin.send(None).await;
            }
        }
        Some(Input::Cancel(_)) => {
            if let Some(exec) = execs.remove(&id) {
                exec.cancel();
            }
        }
        None => {}
    }
}

fn exec_output(id: &str, kind: Output) -> pb::SupervisorMessage {
    message(ToGateway::Exec(pb::ExecOutput {
        exec_id: id.to_owned(),
        kind: Some(kind),
    }))
}

/// Starts the helper and the tasks that pump its stdio.
fn start_exec(
    sandbox: &Sandbox,
    id: &str,
    start: pb::ExecStart,
    outbound: mpsc::Sender<pb::SupervisorMessage>,
) -> anyhow::Result<Exec> {
    let mut env: Vec<(String, String)> = start.env.into_iter().collect();
    env.sort();
    let spawner = &sandbox.spawner;
    let plan = spawner.plan(start.command, &env, &start.workdir)?;
    let mut helper = spawner.spawn(&plan, [Stdio::piped(), Stdio::piped(), Stdio::piped()])?;
    tracing::info!(exec = id, pid = helper.child.id(), "exec started");

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    if let Some(mut stdin) = helper.child.stdin.take() {
        tokio::spawn(async move {
            while let Some(Some(data)) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
            // `None` or the exec ended: the command sees end of input.
        });
    }
    let pumps =
        [
            helper.child.stdout.take().map(|out| {
                tokio::spawn(pump(out, id.to_owned(), outbound.clone(), Output::Stdout))
            }),
            helper.child.stderr.take().map(|err| {
                tokio::spawn(pump(err, id.to_owned(), outbound.clone(), Output::Stderr))
            }),
        ];
    let (cancel, mut cancelled) = tokio::sync::watch::channel(false);
    let timeout = match start.timeout_seconds {
        0 => None,
        s => Some(Duration::from_secs(u64::from(s))),
    };
    let id = id.to_owned();
    tokio::spawn(async move {
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        let status = tokio::select! {
            status = helper.child.wait() => status,
            _ = deadline => {
                timed_out = true;
                helper.stop().await
            }
            () = cancellation(&mut cancelled) => helper.stop().await,
        };
        for pump in pumps.into_iter().flatten() {
            let _ = pump.await;
        }
        drop(helper);
        let code = if timed_out {
            EXIT_TIMEOUT
        } else {
            status
                .map(crate::isolation::launch::exit_code)
                .unwrap_or(crate::EXIT_LAUNCH_FAILED)
        };
        tracing::info!(exec = %id, code, "exec ended");
        let _ = outbound
            .send(exec_output(&id, Output::ExitCode(code)))
            .await;
    });
    Ok(Exec {
        stdin: stdin_tx,
        cancel,
    })
}

/// Sends one stream's output in chunks until it ends.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    id: String,
    outbound: mpsc::Sender<pb::SupervisorMessage>,
    kind: fn(Vec<u8>) -> Output,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if outbound
                    .send(exec_output(&id, kind(buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
