//! `Forward`: one TCP connection to a port on the sandbox's loopback,
//! relayed through its supervisor's session. The first frame names the
//! sandbox and port; then data flows both ways, `eof` half-closes, and the
//! supervisor's `closed` or `error` ends it.

use tonic::{Status, Streaming};

use openshell_proto::v1 as pb;

use super::relay::{Bridge, Bridged, bridge};
use super::{Api, validate_name};
use crate::session::{ForwardKind, Relayed, StreamKind, forward_message};

impl Api {
    pub(super) async fn start_forward(
        &self,
        workspace: &str,
        mut inbound: Streaming<pb::ForwardFrame>,
    ) -> Result<Bridged<pb::ForwardFrame>, Status> {
        let Some(ForwardKind::Open(open)) = inbound.message().await?.and_then(|m| m.kind) else {
            return Err(Status::invalid_argument(
                "a forward starts with an open frame",
            ));
        };
        if open.ssh {
            return Err(Status::invalid_argument(
                "an ssh stream needs an ssh_token from CreateSshSession",
            ));
        }
        let (sandbox, target) = if open.ssh_token.is_empty() {
            validate_name("sandbox", &open.name)?;
            let port = u16::try_from(open.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Status::invalid_argument(format!("invalid port {}", open.port)))?;
            let sandbox = self.existing(workspace, &open.name).await?;
            super::running(&sandbox)?;
            let target = pb::ForwardOpen {
                port: u32::from(port),
                ..Default::default()
            };
            (sandbox, target)
        } else {
            let sandbox = self.ssh_target(workspace, &open.ssh_token).await?;
            let target = pb::ForwardOpen {
                ssh: true,
                ..Default::default()
            };
            (sandbox, target)
        };
        let (stream_id, relayed) = self
            .sessions
            .open_stream(&sandbox, StreamKind::Forward, |id| {
                forward_message(id, ForwardKind::Open(target.clone()))
            })
            .await?;
        tracing::debug!(sandbox = %sandbox.name, port = target.port, ssh = target.ssh, stream = %stream_id, "relay stream opened");
        Ok(bridge(
            Bridge {
                sessions: self.sessions.clone(),
                sandbox_id: sandbox.id,
                stream_id,
            },
            inbound,
            relayed,
            |id, frame: pb::ForwardFrame| match frame.kind {
                Some(kind @ (ForwardKind::Data(_) | ForwardKind::Eof(_))) => {
                    Some(forward_message(id, kind))
                }
                _ => None,
            },
            |id| forward_message(id, ForwardKind::Error("the client went away".to_owned())),
            |relayed| match relayed {
                Relayed::Forward(frame) => {
                    let last = matches!(
                        frame.kind,
                        Some(ForwardKind::Error(_) | ForwardKind::Closed(_)) | None
                    );
                    Some((frame, last))
                }
                Relayed::Exec(_) => None,
            },
        ))
    }
}
