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

/// One egress decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkEvent {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub sandbox: String,
    /// `CONNECT` or `FORWARD` (how the agent asked).
    pub kind: &'static str,
    pub binary: Option<String>,
    pub pid: Option<u32>,
    pub host: String,
    pub port: u16,
    pub method: Option<String>,
    /// Canonical path, no query.
    pub path: Option<String>,
    /// `allow`, `audit` or `deny`.
    pub decision: &'static str,
    /// Which layer decided: `l4`, `ssrf`, `l7`, `identity`, `upstream`.
    pub layer: &'static str,
    pub policy: Option<String>,
    pub reason: Option<String>,
    /// Policy generation the decision was made under.
    pub generation: u64,
}

/// Where events go: always `tracing`; also a JSON-lines sink when set.
#[derive(Default)]
pub struct Events {
    file: Option<Mutex<Box<dyn Write + Send>>>,
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
        })
    }

    /// Records one decision.
    pub fn emit(&self, event: &NetworkEvent) {
        match event.decision {
            "deny" => tracing::warn!(
                host = %event.host, port = event.port, binary = event.binary.as_deref().unwrap_or("-"),
                layer = event.layer, reason = event.reason.as_deref().unwrap_or(""),
                "egress denied"
            ),
            decision => tracing::info!(
                host = %event.host, port = event.port, binary = event.binary.as_deref().unwrap_or("-"),
                policy = event.policy.as_deref().unwrap_or(""), decision,
                "egress allowed"
            ),
        }
        if let Some(file) = &self.file
            && let Ok(mut line) = serde_json::to_vec(event)
        {
            line.push(b'\n');
            if let Ok(mut file) = file.lock() {
                let _ = file.write_all(&line);
                let _ = file.flush();
            }
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
