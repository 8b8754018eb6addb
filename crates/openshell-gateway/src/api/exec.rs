//! `Exec`: a command run in a sandbox through its supervisor's session.
//! The client's first message starts it; later ones carry stdin. Output
//! flows back as it comes; the last message is the exit code (or why the
//! command could not run). A client that goes away cancels the command.

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use openshell_proto::v1 as pb;
use pb::exec_input::Kind as Input;
use pb::exec_output::Kind as Output;

use super::{Api, validate_name};
use crate::store::Phase;

pub type ExecStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ExecOutput, Status>> + Send>>;

impl Api {
    pub(super) async fn start_exec(
        &self,
        workspace: &str,
        mut inbound: Streaming<pb::ExecInput>,
    ) -> Result<ExecStream, Status> {
        let Some(Input::Start(start)) = inbound.message().await?.and_then(|m| m.kind) else {
            return Err(Status::invalid_argument(
                "an exec starts with a start message",
            ));
        };
        validate_name("sandbox", &start.name)?;
        if start.command.is_empty() {
            return Err(Status::invalid_argument("no command given"));
        }
        let sandbox = self.existing(workspace, &start.name).await?;
        if !matches!(sandbox.phase, Phase::Ready | Phase::Provisioning) {
            return Err(Status::failed_precondition(format!(
                "sandbox '{}' is not running (phase {}); start it with: openshell sandbox start {}",
                sandbox.name,
                sandbox.phase.as_str(),
                sandbox.name
            )));
        }
        let sessions = self.sessions.clone();
        let id = sandbox.id.clone();
        let (exec_id, mut output) = sessions
            .start_exec(
                &id,
                pb::ExecStart {
                    name: String::new(),
                    ..start
                },
            )
            .await?;
        tracing::info!(sandbox = %sandbox.name, exec = %exec_id, "exec started");
        // Client → supervisor: stdin until it ends; an error (the client
        // went away) cancels.
        let (input_sessions, input_id, input_exec) =
            (sessions.clone(), id.clone(), exec_id.clone());
        let forward_input = tokio::spawn(async move {
            loop {
                let kind = match inbound.message().await {
                    Ok(Some(pb::ExecInput {
                        kind: Some(kind), ..
                    })) => kind,
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => Input::Cancel(true),
                };
                let last = matches!(kind, Input::Cancel(_));
                input_sessions
                    .exec_input(&input_id, &input_exec, kind)
                    .await;
                if last {
                    return;
                }
            }
        });
        // Supervisor → client, cancelling when the client stops listening.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(message) = output.recv().await {
                let last = matches!(message.kind, Some(Output::ExitCode(_) | Output::Error(_)));
                if tx.send(Ok(message)).await.is_err() {
                    sessions
                        .exec_input(&id, &exec_id, Input::Cancel(true))
                        .await;
                    break;
                }
                if last {
                    break;
                }
            }
            forward_input.abort();
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
