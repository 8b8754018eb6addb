//! Supervisor sessions (ARCHITECTURE.md, "The supervisor session"): every
//! supervisor dials out and keeps one live `Supervisor.Session` stream,
//! over which the gateway delivers policy revisions and exec requests and
//! receives policy status, decision events and exec output.
//!
//! [`Sessions`] is the registry of live sessions, one per sandbox (a
//! reconnect replaces the previous one and fails its relayed streams:
//! execs and port forwards).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use openshell_proto::v1 as pb;
use pb::exec_output::Kind as OutputKind;
pub use pb::forward_frame::Kind as ForwardKind;
use pb::gateway_message::Kind as ToSupervisor;

use crate::store::{Phase, Sandbox};

/// Messages queued towards one relayed stream's client.
const STREAM_QUEUE: usize = 64;
/// How long a stream waits for the supervisor of a starting sandbox, or of
/// any sandbox in a gateway that just started, to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(15);
/// How long it waits for a running sandbox's supervisor that is away (a
/// reconnect under way): briefly, so that clients fail fast.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);

/// The live sessions, by sandbox id.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Live>>>,
    /// When this gateway started: supervisors that outlived a restart are
    /// still reconnecting for a while after it.
    started: tokio::time::Instant,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            inner: Arc::default(),
            started: tokio::time::Instant::now(),
        }
    }
}

#[derive(Debug)]
struct Live {
    /// Tells a replaced session's cleanup apart from the current one's.
    serial: u64,
    outbound: mpsc::Sender<pb::GatewayMessage>,
    /// Relayed streams (execs, forwards) by id, to their clients.
    streams: HashMap<String, (StreamKind, mpsc::Sender<Relayed>)>,
}

/// What the supervisor sends back on one relayed stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Relayed {
    Exec(pb::ExecOutput),
    Forward(pb::ForwardFrame),
}

impl Relayed {
    fn id(&self) -> &str {
        match self {
            Relayed::Exec(o) => &o.exec_id,
            Relayed::Forward(f) => &f.stream_id,
        }
    }

    /// Whether nothing follows it on its stream.
    fn is_last(&self) -> bool {
        match self {
            Relayed::Exec(o) => matches!(
                o.kind,
                Some(OutputKind::ExitCode(_) | OutputKind::Error(_)) | None
            ),
            Relayed::Forward(f) => matches!(
                f.kind,
                Some(ForwardKind::Error(_) | ForwardKind::Closed(_)) | None
            ),
        }
    }
}

/// What a relayed stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Forward,
}

impl StreamKind {
    /// This kind's last message: failed with `why`.
    fn failure(self, id: &str, why: &str) -> Relayed {
        match self {
            StreamKind::Exec => Relayed::Exec(pb::ExecOutput {
                exec_id: id.to_owned(),
                kind: Some(OutputKind::Error(why.to_owned())),
            }),
            StreamKind::Forward => Relayed::Forward(pb::ForwardFrame {
                stream_id: id.to_owned(),
                kind: Some(ForwardKind::Error(why.to_owned())),
            }),
        }
    }
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_serial() -> u64 {
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many supervisors are connected now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Whether the sandbox's supervisor is connected now.
    pub fn connected(&self, sandbox_id: &str) -> bool {
        self.lock().contains_key(sandbox_id)
    }

    pub(crate) fn register(
        &self,
        sandbox_id: &str,
        outbound: mpsc::Sender<pb::GatewayMessage>,
    ) -> u64 {
        let serial = next_serial();
        let previous = self.lock().insert(
            sandbox_id.to_owned(),
            Live {
                serial,
                outbound,
                streams: HashMap::new(),
            },
        );
        if let Some(previous) = previous {
            fail_streams(previous.streams, "the sandbox's supervisor reconnected");
        }
        serial
    }

    pub(crate) fn unregister(&self, sandbox_id: &str, serial: u64) {
        let mut sessions = self.lock();
        if sessions.get(sandbox_id).is_some_and(|l| l.serial == serial)
            && let Some(live) = sessions.remove(sandbox_id)
        {
            drop(sessions);
            fail_streams(live.streams, "the sandbox's supervisor disconnected");
        }
    }

    /// Forgets the sandbox's session whatever it is (its supervisor has
    /// ended: `sandbox stop`, or before `start` runs a new one), so that
    /// nothing is sent to a supervisor that is gone while its connection
    /// is still being torn down.
    pub(crate) fn end(&self, sandbox_id: &str, why: &str) {
        let ended = self.lock().remove(sandbox_id);
        if let Some(live) = ended {
            fail_streams(live.streams, why);
        }
    }

    /// Queues a message to the supervisor; false when it is not connected.
    pub fn send(&self, sandbox_id: &str, message: pb::GatewayMessage) -> bool {
        let outbound = self.lock().get(sandbox_id).map(|l| l.outbound.clone());
        outbound.is_some_and(|o| o.try_send(message).is_ok())
    }

    /// Queues a message that must not be lost to a momentarily full queue
    /// (credentials, routes): waits up to 5 s for room; false when the
    /// supervisor is not connected or did not make room (it then gets the
    /// current state when it reconnects).
    pub async fn deliver(&self, sandbox_id: &str, message: pb::GatewayMessage) -> bool {
        let outbound = self.lock().get(sandbox_id).map(|l| l.outbound.clone());
        let Some(outbound) = outbound else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(5), outbound.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Delivers a policy revision if the supervisor is connected (otherwise
    /// it gets it when it connects).
    pub fn send_policy(&self, sandbox_id: &str, version: i64, yaml: &str) -> bool {
        self.send(
            sandbox_id,
            pb::GatewayMessage {
                kind: Some(ToSupervisor::Policy(pb::PolicyUpdate {
                    version,
                    policy_yaml: yaml.to_owned(),
                })),
            },
        )
    }

    /// Opens a relayed stream on the sandbox's session, waiting a little for
    /// a starting sandbox to connect: `first(id)` is the opening message.
    /// Returns the stream's id and what the supervisor sends on it.
    pub async fn open_stream(
        &self,
        sandbox: &Sandbox,
        kind: StreamKind,
        first: impl FnOnce(&str) -> pb::GatewayMessage,
    ) -> Result<(String, mpsc::Receiver<Relayed>), Status> {
        let sandbox_id = sandbox.id.as_str();
        let restarting = self.started.elapsed() < CONNECT_WAIT;
        let wait = if sandbox.phase == Phase::Provisioning || restarting {
            CONNECT_WAIT
        } else {
            RECONNECT_WAIT
        };
        let deadline = tokio::time::Instant::now() + wait;
        while !self.connected(sandbox_id) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "the supervisor of sandbox '{}' is not connected to the gateway; it reconnects on its own, try again in a few seconds",
                    sandbox.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let id = format!("s{}", next_serial());
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let outbound = {
            let mut sessions = self.lock();
            let live = sessions
                .get_mut(sandbox_id)
                .ok_or_else(|| Status::unavailable("the sandbox's supervisor disconnected"))?;
            live.streams.insert(id.clone(), (kind, tx));
            live.outbound.clone()
        };
        if outbound.send(first(&id)).await.is_err() {
            return Err(Status::unavailable("the sandbox's supervisor disconnected"));
        }
        Ok((id, rx))
    }

    /// Sends a message of an open stream (stdin, data, end, cancel).
    pub async fn stream_input(&self, sandbox_id: &str, message: pb::GatewayMessage) {
        let outbound = self.lock().get(sandbox_id).map(|l| l.outbound.clone());
        if let Some(outbound) = outbound {
            let _ = outbound.send(message).await;
        }
    }

    /// The client of the stream `relayed` belongs to (forgotten after the
    /// stream's last message).
    pub(crate) fn client_of(
        &self,
        sandbox_id: &str,
        relayed: &Relayed,
    ) -> Option<mpsc::Sender<Relayed>> {
        let mut sessions = self.lock();
        let live = sessions.get_mut(sandbox_id)?;
        let entry = if relayed.is_last() {
            live.streams.remove(relayed.id())
        } else {
            live.streams.get(relayed.id()).cloned()
        };
        entry.map(|(_, client)| client)
    }
}

/// An exec message of the session.
pub fn exec_message(exec_id: &str, kind: pb::exec_input::Kind) -> pb::GatewayMessage {
    pb::GatewayMessage {
        kind: Some(ToSupervisor::Exec(pb::ExecInput {
            exec_id: exec_id.to_owned(),
            kind: Some(kind),
        })),
    }
}

/// A forward message of the session.
pub fn forward_message(stream_id: &str, kind: ForwardKind) -> pb::GatewayMessage {
    pb::GatewayMessage {
        kind: Some(ToSupervisor::Forward(pb::ForwardFrame {
            stream_id: stream_id.to_owned(),
            kind: Some(kind),
        })),
    }
}

/// Ends every stream of a session that went away, each with its kind's
/// error.
fn fail_streams(streams: HashMap<String, (StreamKind, mpsc::Sender<Relayed>)>, why: &str) {
    for (id, (kind, tx)) in streams {
        let _ = tx.try_send(kind.failure(&id, why));
    }
}
