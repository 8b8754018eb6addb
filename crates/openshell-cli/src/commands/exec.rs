//! `openshell sandbox exec`: runs a command in a live sandbox under the
//! agent's restrictions; stdout and stderr stay separate, stdin is
//! forwarded, and the exit code is the command's. [`run`] is the same
//! round trip with any input and outputs (file transfer uses it).

use std::io::{Read, Write};

use anyhow::bail;

use openshell_proto::v1 as pb;
use pb::exec_input::Kind as Input;
use pb::exec_output::Kind as Output;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub name: String,
    pub command: Vec<String>,
    pub env: std::collections::HashMap<String, String>,
    pub workdir: Option<String>,
    pub timeout_seconds: u32,
}

pub fn exec(scope: &Scope, options: ExecOptions) -> anyhow::Result<Exit> {
    let code = run(
        scope,
        options,
        std::io::stdin(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )?;
    Ok(if code == 0 {
        Exit::Success
    } else {
        Exit::Code(code)
    })
}

/// Runs the command with `stdin` as its input (read on a thread of its
/// own, until it ends) and its output written to `stdout` and `stderr`;
/// returns its exit code.
pub fn run(
    scope: &Scope,
    options: ExecOptions,
    stdin: impl Read + Send + 'static,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<i32> {
    let (input, inputs) = tokio::sync::mpsc::channel::<pb::ExecInput>(16);
    let start = pb::ExecInput {
        exec_id: String::new(),
        kind: Some(Input::Start(pb::ExecStart {
            name: options.name.clone(),
            command: options.command,
            env: options.env,
            workdir: options.workdir.unwrap_or_default(),
            timeout_seconds: options.timeout_seconds,
        })),
    };
    input.try_send(start)?;
    // The process may exit without waiting for this thread (a terminal's
    // stdin never ends).
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || forward(stdin, &input))?;
    let request = scope.request(tokio_stream::wrappers::ReceiverStream::new(inputs))?;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let mut outputs = client.exec(request).await.map_err(status)?.into_inner();
        while let Some(message) = outputs.message().await.map_err(status)? {
            match message.kind {
                Some(Output::Stdout(data)) => {
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
                Some(Output::Stderr(data)) => {
                    stderr.write_all(&data)?;
                    stderr.flush()?;
                }
                Some(Output::ExitCode(code)) => return Ok(code),
                Some(Output::Error(error)) => bail!("{error}"),
                None => {}
            }
        }
        bail!("the gateway ended the exec before the command finished")
    })
}

fn forward(mut stdin: impl Read, input: &tokio::sync::mpsc::Sender<pb::ExecInput>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let kind = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => Input::CloseStdin(true),
            Ok(n) => Input::Stdin(buf[..n].to_vec()),
        };
        let last = matches!(kind, Input::CloseStdin(_));
        let message = pb::ExecInput {
            exec_id: String::new(),
            kind: Some(kind),
        };
        if input.blocking_send(message).is_err() || last {
            return;
        }
    }
}
