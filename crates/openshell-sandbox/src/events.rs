//! Security decisions as typed events, emitted through one function
//! ([`Events::emit`]) so the log and the JSON audit stream cannot drift.
//!
//! An event never carries a query string, a header or a body: paths are
//! canonical and query-free by construction of the callers.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::proxy::decide::{Decision, Kind, Layer, Verdict};

/// One egress decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkEvent {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Filled in by [`Events::emit`].
    pub sandbox: String,
    /// How the agent asked: `CONNECT`, `FORWARD` or `CONNECT_L7` (a
    /// request inside a tunnel).
    pub kind: Kind,
    pub binary: Option<String>,
    pub pid: Option<u32>,
    pub host: String,
    pub port: u16,
    pub method: Option<String>,
    /// Canonical path, no query.
    pub path: Option<String>,
    pub decision: Verdict,
    pub layer: Layer,
    pub policy: Option<String>,
    pub reason: Option<String>,
    /// Policy generation the decision was made under.
    pub generation: u64,
    /// A call to `inference.local`: what the router did.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceDetails>,
}

/// What an `inference.local` call's event adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InferenceDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The route's model (what the upstream was asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model the caller named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// The upstream's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

impl From<&Decision> for NetworkEvent {
    fn from(decision: &Decision) -> NetworkEvent {
        let subject = &decision.subject;
        NetworkEvent {
            time: now_rfc3339(),
            sandbox: String::new(),
            kind: subject.kind,
            binary: subject.binary.clone(),
            pid: subject.pid,
            host: subject.host.clone(),
            port: subject.port,
            method: subject.method.clone(),
            path: subject.path.clone(),
            decision: decision.verdict,
            layer: decision.layer,
            policy: decision.policy.clone(),
            reason: decision.reason.clone(),
            generation: subject.generation,
            inference: None,
        }
    }
}

/// Where events go: always `tracing`; also a JSON-lines sink and the
/// gateway session (a bounded queue) when set.
#[derive(Default)]
pub struct Events {
    /// The sandbox's name, written into every event.
    sandbox: String,
    file: Option<Mutex<Box<dyn Write + Send>>>,
    push: Option<tokio::sync::mpsc::Sender<String>>,
    /// Events the full push queue could not take.
    dropped: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("sink", &self.file.is_some())
            .finish()
    }
}

impl Events {
    /// Appends JSON lines to `path` (created if missing); `-` is stdout.
    pub fn to_file(path: &Path) -> std::io::Result<Events> {
        let sink: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        Ok(Events {
            file: Some(Mutex::new(sink)),
            ..Events::default()
        })
    }

    /// Names the sandbox in every event.
    pub fn for_sandbox(mut self, sandbox: String) -> Events {
        self.sandbox = sandbox;
        self
    }

    /// Also queues each event (as its JSON line) for the gateway session.
    /// While the gateway is away the queue buffers; when it is full, new
    /// events are dropped and counted rather than blocking the proxy.
    pub fn with_push(mut self, queue: tokio::sync::mpsc::Sender<String>) -> Events {
        self.push = Some(queue);
        self
    }

    /// Records one decision.
    pub fn emit(&self, mut event: NetworkEvent) {
        event.sandbox.clone_from(&self.sandbox);
        match event.decision {
            Verdict::Deny => tracing::warn!(
                host = %event.host, port = event.port, binary = event.binary.as_deref().unwrap_or("-"),
                layer = %event.layer, reason = event.reason.as_deref().unwrap_or(""),
                "egress denied"
            ),
            decision => tracing::info!(
                host = %event.host, port = event.port, binary = event.binary.as_deref().unwrap_or("-"),
                policy = event.policy.as_deref().unwrap_or(""), decision = %decision,
                "egress allowed"
            ),
        }
        if self.file.is_none() && self.push.is_none() {
            return;
        }
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        if let Some(push) = &self.push
            && push.try_send(json.clone()).is_err()
        {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if dropped.is_power_of_two() || dropped == 0 {
                tracing::warn!(
                    dropped = dropped + 1,
                    "event queue to the gateway is full; events dropped"
                );
            }
        }
        if let Some(file) = &self.file
            && let Ok(mut file) = file.lock()
        {
            // One write per line: appends from several writers stay whole.
            let _ = file.write_all(format!("{json}\n").as_bytes());
            let _ = file.flush();
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    openshell_core::time::Utc::from_unix(now.as_secs() as i64).rfc3339_millis(now.subsec_millis())
}
