//! The session's relayed byte streams: each `open` dials the sandbox's
//! loopback ([`Dialer`]) or, for an ssh stream, hands the stream to the
//! sandbox's SSH server ([`ssh::Server`]); bytes are pumped both ways until
//! both sides are done (`closed`), one fails (`error`) or the gateway
//! cancels it.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use openshell_proto::v1 as pb;
use pb::forward_frame::Kind as ForwardKind;
use pb::supervisor_message::Kind as ToGateway;

use super::{CHUNK, cancellation, message};
use crate::forward::Dialer;
use crate::ssh;

/// Bytes to the SSH server buffered in its in-memory pipe.
const SSH_PIPE: usize = 256 * 1024;

/// Where relayed streams end.
#[derive(Debug, Clone)]
pub(super) struct Targets {
    pub(super) dialer: Option<Dialer>,
    pub(super) ssh: Option<std::sync::Arc<ssh::Server>>,
}

/// Either end of a relayed stream inside the supervisor.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

impl Targets {
    /// Connects `open` to its target.
    async fn connect(&self, open: &pb::ForwardOpen) -> anyhow::Result<Box<dyn Stream>> {
        if open.ssh {
            let server = self
                .ssh
                .clone()
                .ok_or_else(|| anyhow::anyhow!("ssh is unavailable in this sandbox"))?;
            let (ours, theirs) = tokio::io::duplex(SSH_PIPE);
            tokio::spawn(server.serve(theirs));
            return Ok(Box::new(ours));
        }
        let dialer = self
            .dialer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("port forwarding is unavailable in this sandbox"))?;
        let port = u16::try_from(open.port).unwrap_or(0);
        Ok(Box::new(dialer.connect(port).await?))
    }
}

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

pub(super) async fn handle(
    targets: &Targets,
    forwards: &mut HashMap<String, Forward>,
    outbound: &mpsc::Sender<pb::SupervisorMessage>,
    frame: pb::ForwardFrame,
) {
    forwards.retain(|_, f| !f.cancel.is_closed());
    let id = frame.stream_id;
    match frame.kind {
        Some(ForwardKind::Open(open)) => {
            let (to_socket, from_client) = mpsc::channel(64);
            let (cancel, mut cancelled) = tokio::sync::watch::channel(false);
            forwards.insert(id.clone(), Forward { to_socket, cancel });
            let (targets, outbound) = (targets.clone(), outbound.clone());
            tokio::spawn(async move {
                let stream = tokio::select! {
                    stream = targets.connect(&open) => stream,
                    () = cancellation(&mut cancelled) => return,
                };
                run_forward(stream, id, from_client, cancelled, outbound).await;
            });
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

/// One relayed stream: pump both ways until both are done (`closed`), it
/// fails (`error`) or it is cancelled.
async fn run_forward(
    stream: anyhow::Result<Box<dyn Stream>>,
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
    let stream = match stream {
        Ok(stream) => stream,
        Err(error) => {
            send(ForwardKind::Error(format!("{error:#}"))).await;
            return;
        }
    };
    send(ForwardKind::Opened(true)).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
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
