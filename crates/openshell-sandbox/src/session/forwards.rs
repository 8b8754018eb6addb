//! The session's port-forward streams: each `open` dials the sandbox's
//! loopback ([`Dialer`]) and pumps bytes both ways until both sides are
//! done (`closed`), one fails (`error`) or the gateway cancels it.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use openshell_proto::v1 as pb;
use pb::forward_frame::Kind as ForwardKind;
use pb::supervisor_message::Kind as ToGateway;

use super::{CHUNK, cancellation, message};
use crate::forward::Dialer;

/// A forwarded connection: its way in, and a way to stop it.
#[derive(Debug)]
pub(super) struct Forward {
    /// Data for the socket; `None`: the client is done sending.
    to_socket: mpsc::Sender<Option<Vec<u8>>>,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl Forward {
    pub(super) fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
}

/// Keeps the session up until the process ends.
pub(super) async fn handle(
    dialer: Option<&Dialer>,
    forwards: &mut HashMap<String, Forward>,
    outbound: &mpsc::Sender<pb::SupervisorMessage>,
    frame: pb::ForwardFrame,
) {
    forwards.retain(|_, f| !f.cancel.is_closed());
    let id = frame.stream_id;
    match frame.kind {
        Some(ForwardKind::Open(open)) => {
            let Some(dialer) = dialer else {
                let _ = outbound
                    .send(forward_frame(
                        &id,
                        ForwardKind::Error("port forwarding is unavailable in this sandbox".into()),
                    ))
                    .await;
                return;
            };
            let (to_socket, from_client) = mpsc::channel(64);
            let (cancel, cancelled) = tokio::sync::watch::channel(false);
            forwards.insert(id.clone(), Forward { to_socket, cancel });
            let port = u16::try_from(open.port).unwrap_or(0);
            tokio::spawn(run_forward(
                dialer.clone(),
                port,
                id,
                from_client,
                cancelled,
                outbound.clone(),
            ));
        }
        Some(ForwardKind::Data(data)) => {
            if let Some(forward) = forwards.get(&id) {
                let _ = forward.to_socket.send(Some(data)).await;
            }
        }
        Some(ForwardKind::Eof(_)) => {
            if let Some(forward) = forwards.get(&id) {
                let _ = forward.to_socket.send(None).await;
            }
        }
        Some(ForwardKind::Error(_) | ForwardKind::Closed(_)) => {
            if let Some(forward) = forwards.remove(&id) {
                forward.cancel();
            }
        }
        Some(ForwardKind::Opened(_)) | None => {}
    }
}

fn forward_frame(id: &str, kind: ForwardKind) -> pb::SupervisorMessage {
    message(ToGateway::Forward(pb::ForwardFrame {
        stream_id: id.to_owned(),
        kind: Some(kind),
    }))
}

/// One forwarded connection: dial, then pump both ways until both are done
/// (`closed`), it fails (`error`) or it is cancelled.
async fn run_forward(
    dialer: Dialer,
    port: u16,
    id: String,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
    mut cancelled: tokio::sync::watch::Receiver<bool>,
    outbound: mpsc::Sender<pb::SupervisorMessage>,
) {
    let send = |kind| {
        let outbound = outbound.clone();
        let frame = forward_frame(&id, kind);
        async move {
            let _ = outbound.send(frame).await;
        }
    };
    let stream = tokio::select! {
        stream = dialer.connect(port) => stream,
        () = cancellation(&mut cancelled) => return,
    };
    let stream = match stream {
        Ok(stream) => stream,
        Err(error) => {
            send(ForwardKind::Error(format!("{error:#}"))).await;
            return;
        }
    };
    send(ForwardKind::Opened(true)).await;
    let (mut reader, mut writer) = stream.into_split();
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => {
                    send(ForwardKind::Eof(true)).await;
                    return Ok(());
                }
                Ok(n) => send(ForwardKind::Data(buf[..n].to_vec())).await,
                Err(error) => return Err(error),
            }
        }
    };
    let down = async {
        while let Some(item) = from_client.recv().await {
            match item {
                Some(data) => writer.write_all(&data).await?,
                None => return writer.shutdown().await,
            }
        }
        Ok(())
    };
    let done = tokio::select! {
        done = async { tokio::try_join!(up, down) } => done,
        () = cancellation(&mut cancelled) => return,
    };
    match done {
        Ok(_) => send(ForwardKind::Closed(true)).await,
        Err(error) => {
            send(ForwardKind::Error(format!(
                "the connection in the sandbox failed: {error}"
            )))
            .await
        }
    }
}
