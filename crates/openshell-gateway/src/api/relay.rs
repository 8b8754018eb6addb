//! Bridges a client's bidirectional stream (exec, forward) and a stream
//! relayed over the sandbox's supervisor session: client messages go to
//! the supervisor until the client's stream ends, and an error on it (the
//! client went away) cancels; the supervisor's messages go to the client
//! until the last one, and a client that stops listening cancels too.

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use openshell_proto::v1 as pb;

use crate::session::{Relayed, Sessions};

/// Which relayed stream a bridge serves.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub sessions: Sessions,
    pub sandbox_id: String,
    pub stream_id: String,
}

pub type Bridged<Out> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Out, Status>> + Send>>;

/// Starts both directions; returns the client's response stream.
/// `to_supervisor` turns a client message into a session message (or
/// drops it); `cancel` is the session message that stops the stream;
/// `to_client` picks this stream's kind out of what the supervisor sent and
/// says whether it is the last.
pub fn bridge<In, Out>(
    target: Bridge,
    mut inbound: Streaming<In>,
    mut relayed: mpsc::Receiver<Relayed>,
    to_supervisor: fn(&str, In) -> Option<pb::GatewayMessage>,
    cancel: fn(&str) -> pb::GatewayMessage,
    to_client: fn(Relayed) -> Option<(Out, bool)>,
) -> Bridged<Out>
where
    In: Send + 'static,
    Out: Send + 'static,
{
    let upstream = target.clone();
    let forward_input = tokio::spawn(async move {
        loop {
            let message = match inbound.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(_) => {
                    let stop = cancel(&upstream.stream_id);
                    upstream
                        .sessions
                        .stream_input(&upstream.sandbox_id, stop)
                        .await;
                    return;
                }
            };
            if let Some(message) = to_supervisor(&upstream.stream_id, message) {
                upstream
                    .sessions
                    .stream_input(&upstream.sandbox_id, message)
                    .await;
            }
        }
    });
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(message) = relayed.recv().await {
            let Some((message, last)) = to_client(message) else {
                continue;
            };
            if tx.send(Ok(message)).await.is_err() {
                let stop = cancel(&target.stream_id);
                target.sessions.stream_input(&target.sandbox_id, stop).await;
                break;
            }
            if last {
                break;
            }
        }
        forward_input.abort();
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
