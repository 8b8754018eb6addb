//! The `openshell.v1.Supervisor` service: the gateway's side of each
//! supervisor's session (ARCHITECTURE.md, "The supervisor session"). It
//! registers the session in [`Sessions`](crate::session::Sessions), sends
//! the policy revision in force, and records what the supervisor reports:
//! policy status, decision events, relayed stream output.

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use openshell_proto::v1 as pb;
use pb::gateway_message::Kind as ToSupervisor;
use pb::supervisor_message::Kind as FromSupervisor;

use crate::api::{Api, status};
use crate::auth::SandboxIdentity;
use crate::session::Relayed;
use crate::store::RevisionStatus;

/// Messages queued towards one supervisor.
const OUTBOUND_QUEUE: usize = 256;
/// Longest decision event accepted from a supervisor.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The `openshell.v1.Supervisor` service.
#[derive(Debug, Clone)]
pub struct SupervisorApi(pub Api);

type SessionStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::GatewayMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::supervisor_server::Supervisor for SupervisorApi {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::SupervisorMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let Some(SandboxIdentity(token_id)) =
            request.extensions().get::<SandboxIdentity>().cloned()
        else {
            return Err(Status::unauthenticated("a sandbox token is required"));
        };
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.kind) {
            Some(FromSupervisor::Hello(hello)) => hello,
            _ => return Err(Status::invalid_argument("a session starts with hello")),
        };
        if hello.sandbox_id != token_id {
            return Err(Status::permission_denied(
                "the token belongs to another sandbox",
            ));
        }
        let api = &self.0;
        let Some(sandbox) = api
            .store
            .get_sandbox_by_id(&token_id)
            .await
            .map_err(status)?
        else {
            return Err(Status::not_found("no such sandbox"));
        };
        // A supervisor opens its session only once every isolation layer
        // is in place: its hello is the sandbox's readiness, whatever the
        // driver.
        api.store.mark_ready(&sandbox.id).await.map_err(status)?;
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        if hello.policy_version > 0 {
            api.store
                .set_revision_status(&sandbox.id, hello.policy_version, true, None)
                .await
                .map_err(status)?;
        }
        // A newer revision it has not seen yet (one it already rejected is
        // not resent on every reconnect).
        if let Some(latest) = api.store.revision(&sandbox.id, 0).await.map_err(status)?
            && latest.version > hello.policy_version
            && latest.status == RevisionStatus::Pending
        {
            let _ = outbound.try_send(pb::GatewayMessage {
                kind: Some(ToSupervisor::Policy(pb::PolicyUpdate {
                    version: latest.version,
                    policy_yaml: latest.yaml,
                })),
            });
        }
        // Registered before its credentials and routes are read: a change
        // committed meanwhile is then delivered on this session after
        // them, never lost between the read and the registration.
        let serial = api.sessions.register(&sandbox.id, outbound.clone());
        // Its providers' credentials and its workspace's routes, always
        // (empty sets too: the supervisor then knows it has everything),
        // each sent right after it is read (nothing awaited in between).
        let sent = async {
            let credentials = api.credentials_of(&sandbox.id).await?;
            let _ = outbound.try_send(pb::GatewayMessage {
                kind: Some(ToSupervisor::Credentials(credentials)),
            });
            let routes = api.inference_of(&sandbox.workspace).await?;
            let _ = outbound.try_send(pb::GatewayMessage {
                kind: Some(ToSupervisor::Inference(routes)),
            });
            Ok::<_, Status>(())
        }
        .await;
        if let Err(error) = sent {
            api.sessions.unregister(&sandbox.id, serial);
            return Err(error);
        }
        drop(outbound);
        tracing::info!(sandbox = %sandbox.name, id = %sandbox.id, policy_version = hello.policy_version, "supervisor connected");
        let api = api.clone();
        tokio::spawn(async move {
            receive(&api, &sandbox.id, &mut inbound).await;
            api.sessions.unregister(&sandbox.id, serial);
            tracing::info!(sandbox = %sandbox.name, "supervisor disconnected");
        });
        let stream =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Handles what one supervisor sends until its stream ends.
async fn receive(api: &Api, sandbox_id: &str, inbound: &mut Streaming<pb::SupervisorMessage>) {
    let mut events: Option<tokio::fs::File> = None;
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(sandbox = sandbox_id, %error, "session stream ended");
                return;
            }
        };
        match message.kind {
            Some(FromSupervisor::PolicyStatus(report)) => {
                let error = (!report.loaded).then_some(report.error.as_str());
                if let Err(e) = api
                    .store
                    .set_revision_status(sandbox_id, report.version, report.loaded, error)
                    .await
                {
                    status(e);
                }
                if report.loaded {
                    tracing::info!(
                        sandbox = sandbox_id,
                        version = report.version,
                        "policy loaded"
                    );
                } else {
                    tracing::warn!(sandbox = sandbox_id, version = report.version, error = %report.error, "policy failed to load");
                }
            }
            Some(FromSupervisor::Event(event)) => {
                if event.len() > MAX_EVENT_BYTES {
                    continue;
                }
                append_event(api, sandbox_id, &mut events, &event).await;
            }
            Some(FromSupervisor::Exec(output)) => {
                relay(api, sandbox_id, Relayed::Exec(output)).await;
            }
            Some(FromSupervisor::Forward(frame)) => {
                relay(api, sandbox_id, Relayed::Forward(frame)).await;
            }
            Some(FromSupervisor::Goodbye(_)) => return,
            Some(FromSupervisor::Hello(_)) | None => {}
        }
    }
}

/// Hands a relayed message to its stream's client. A slow client slows
/// this session down (HTTP/2 flow control reaches the supervisor) rather
/// than losing data.
async fn relay(api: &Api, sandbox_id: &str, relayed: Relayed) {
    if let Some(client) = api.sessions.client_of(sandbox_id, &relayed) {
        let _ = client.send(relayed).await;
    }
}

/// Appends one decision event (one line, whatever it contains) to the
/// sandbox's event log.
async fn append_event(
    api: &Api,
    sandbox_id: &str,
    file: &mut Option<tokio::fs::File>,
    event: &str,
) {
    let Some(path) = api.events_log(sandbox_id) else {
        return;
    };
    let mut line = event.replace(['\n', '\r'], " ");
    line.push('\n');
    match openshell_core::fs::rotate_if_full(
        &path,
        line.len() as u64,
        openshell_core::fs::MAX_LOG_BYTES,
    ) {
        Ok(true) => *file = None, // a new file from here
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, path = %path.display(), "cannot rotate the event log"),
    }
    if file.is_none() {
        match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
        {
            Ok(opened) => *file = Some(opened),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot open the event log");
                return;
            }
        }
    }
    if let Some(f) = file
        && let Err(error) = f.write_all(line.as_bytes()).await
    {
        tracing::warn!(%error, path = %path.display(), "cannot append to the event log");
        *file = None;
    }
}
