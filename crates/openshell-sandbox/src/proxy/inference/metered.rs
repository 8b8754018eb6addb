//! The routed response on its way back: [`Metered`] streams the
//! upstream's body frame by frame (capped in size and idle time), reads the
//! token [`Usage`] on the way, and emits the call's event when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use serde_json::{Value, json};

use openshell_policy::decision::Verdict;

use super::{Call, MAX_RESPONSE_BODY, RESPONSE_IDLE, Sender, USAGE_WINDOW};
use crate::events::InferenceDetails;
use crate::proxy::Shared;
use crate::proxy::credentials::BoxError;

/// Token counts as the response states them (OpenAI `usage.prompt_tokens`
/// and `completion_tokens` or `input_tokens`/`output_tokens`; Anthropic's
/// `message_start` and `message_delta` usage).
pub(super) struct Usage {
    /// A JSON response's bytes (up to [`USAGE_WINDOW`]), or an SSE
    /// stream's unfinished line.
    pub(super) window: Vec<u8>,
    /// Whether the body is readable (not content-encoded).
    pub(super) watch: bool,
    pub(super) sse: bool,
}

impl Usage {
    pub(super) fn take(&mut self, chunk: &[u8], details: &mut InferenceDetails) {
        if !self.watch {
            return;
        }
        if !self.sse {
            if self.window.len() + chunk.len() <= USAGE_WINDOW {
                self.window.extend_from_slice(chunk);
            } else {
                self.watch = false;
            }
            return;
        }
        self.window.extend_from_slice(chunk);
        while let Some(end) = self.window.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.window.drain(..=end).collect();
            if let Some(data) = line.strip_prefix(b"data:")
                && let Ok(value) = serde_json::from_slice::<Value>(data.trim_ascii())
            {
                read_usage(&value, details);
            }
        }
        if self.window.len() > USAGE_WINDOW {
            self.window.clear();
        }
    }

    pub(super) fn finish(&mut self, details: &mut InferenceDetails) {
        if self.watch
            && !self.sse
            && let Ok(value) = serde_json::from_slice::<Value>(&self.window)
        {
            read_usage(&value, details);
        }
    }
}

fn read_usage(value: &Value, details: &mut InferenceDetails) {
    let mut from = |usage: &Value| {
        let count = |keys: &[&str]| keys.iter().find_map(|k| usage.get(*k)?.as_u64());
        if let Some(n) = count(&["prompt_tokens", "input_tokens"]) {
            details.input_tokens = Some(details.input_tokens.unwrap_or(0).max(n));
        }
        if let Some(n) = count(&["completion_tokens", "output_tokens"]) {
            details.output_tokens = Some(details.output_tokens.unwrap_or(0).max(n));
        }
    };
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        from(usage);
    }
    if let Some(usage) = value
        .get("message")
        .and_then(|m| m.get("usage"))
        .filter(|u| u.is_object())
    {
        from(usage);
    }
    if let Some(usage) = value
        .get("response")
        .and_then(|m| m.get("usage"))
        .filter(|u| u.is_object())
    {
        from(usage);
    }
}

/// The upstream's body, frame by frame as it comes: capped at
/// [`MAX_RESPONSE_BODY`] and [`RESPONSE_IDLE`] between frames (an SSE
/// stream then ends with an error event), its usage read on the way, and
/// the call's event emitted when it ends.
pub(super) struct Metered {
    pub(super) inner: Incoming,
    pub(super) idle: Pin<Box<tokio::time::Sleep>>,
    pub(super) sent: u64,
    pub(super) sse: bool,
    pub(super) usage: Usage,
    pub(super) call: Option<Call>,
    pub(super) events: Arc<Shared>,
    pub(super) done: bool,
    /// The upstream connection, back to the pool when the body ends
    /// cleanly.
    pub(super) connection: Option<(String, Sender)>,
}

impl Metered {
    fn finish(&mut self, verdict: Verdict, reason: Option<String>) {
        if let Some(mut call) = self.call.take() {
            self.usage.finish(&mut call.details);
            self.events.events.emit(call.event(verdict, reason));
        }
    }

    /// Ends the stream early: an SSE error event when the client reads
    /// SSE, else nothing more.
    fn truncate(&mut self, why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.finish(Verdict::Deny, Some(why.to_owned()));
        if self.sse {
            let event = format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "error": {"type": "proxy_error", "message": why}})
            );
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))));
        }
        Poll::Ready(None)
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        // The client went away mid-stream.
        if self.call.is_some() {
            self.finish(
                Verdict::Allow,
                Some("the client closed the stream".to_owned()),
            );
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle
                    .as_mut()
                    .reset(tokio::time::Instant::now() + RESPONSE_IDLE);
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if this.sent > MAX_RESPONSE_BODY {
                        return this.truncate("the response exceeded 32 MiB");
                    }
                    if let Some(call) = this.call.as_mut() {
                        this.usage.take(data, &mut call.details);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.done = true;
                this.finish(Verdict::Deny, Some(format!("the upstream failed: {error}")));
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish(Verdict::Allow, None);
                if let Some((key, sender)) = this.connection.take() {
                    this.events.inference.pool.give(key, sender);
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => this.truncate("the upstream was silent for 120 s"),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
