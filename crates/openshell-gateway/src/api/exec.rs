//! `Exec`: a command run in a sandbox through its supervisor's session.
//! The client's first message starts it; later ones carry stdin. Output
//! flows back as it comes; the last message is the exit code (or why the
//! command could not run). A client that goes away cancels the command.

use tonic::{Status, Streaming};

use openshell_proto::v1 as pb;
use pb::exec_input::Kind as Input;
use pb::exec_output::Kind as Output;

use super::relay::{Bridge, Bridged, bridge};
use super::{Api, validate_name};
use crate::session::{Relayed, StreamKind, exec_message};

impl Api {
    pub(super) async fn start_exec(
        &self,
        workspace: &str,
        mut inbound: Streaming<pb::ExecInput>,
    ) -> Result<Bridged<pb::ExecOutput>, Status> {
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
        super::running(&sandbox)?;
        let (exec_id, relayed) = self
            .sessions
            .open_stream(&sandbox, StreamKind::Exec, |id| {
                exec_message(
                    id,
                    Input::Start(pb::ExecStart {
                        name: String::new(),
                        ..start
                    }),
                )
            })
            .await?;
        tracing::info!(sandbox = %sandbox.name, exec = %exec_id, "exec started");
        Ok(bridge(
            Bridge {
                sessions: self.sessions.clone(),
                sandbox_id: sandbox.id,
                stream_id: exec_id,
            },
            inbound,
            relayed,
            // Only stdin, its end and cancel: a second start is ignored.
            |id, input: pb::ExecInput| match input.kind {
                Some(Input::Start(_)) | None => None,
                Some(kind) => Some(exec_message(id, kind)),
            },
            |id| exec_message(id, Input::Cancel(true)),
            |relayed| match relayed {
                Relayed::Exec(output) => {
                    let last = matches!(output.kind, Some(Output::ExitCode(_) | Output::Error(_)));
                    Some((output, last))
                }
                Relayed::Forward(_) => None,
            },
        ))
    }
}
