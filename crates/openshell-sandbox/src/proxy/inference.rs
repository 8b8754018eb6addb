//! `inference.local` (docs/inference.md): model traffic the supervisor
//! routes to the backend the gateway configured, with the backend's key,
//! which never enters the sandbox.
//!
//! `CONNECT inference.local:443` is answered before any policy or SSRF
//! check (it needs no network rule); the tunnel's TLS is terminated with
//! the sandbox CA and each HTTP/1 request is parsed. A request of a known
//! model API shape ([`Protocol`]) is rewritten (the caller's credentials
//! and other headers dropped, the provider's injected, `model` set to the
//! route's) and sent to the route's base URL; the response streams back
//! frame by frame, never buffered. Anything else is refused and the
//! connection closed. Each routed call is one event at layer `inference`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;

use openshell_core::providers::BaseUrl;
use openshell_proto::v1 as pb;

mod metered;

use metered::{Metered, Usage};

use super::Shared;
use super::credentials::BoxError;
use super::decide::Kind;
use super::tunnel::Rewind;
use crate::events::{InferenceDetails, NetworkEvent};
use openshell_policy::decision::{Layer, Verdict};

/// The name sandboxes reach the router by.
pub const HOST: &str = "inference.local";
/// Largest request body (docs/inference.md, "Limits").
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;
/// Largest streamed response.
pub const MAX_RESPONSE_BODY: u64 = 32 * 1024 * 1024;
/// Longest silence between two frames of a response.
pub const RESPONSE_IDLE: Duration = Duration::from_secs(120);
/// Largest request head.
const MAX_HEAD: usize = 64 * 1024;
/// Request bodies held at once, from reading to sending; more wait
/// (bounds the memory a sandbox can make its supervisor hold).
const MAX_READING: usize = 16;
/// How much of a JSON response is kept to read its token usage.
const USAGE_WINDOW: usize = 1024 * 1024;

/// Whether a CONNECT is for the router.
pub fn is_router(host: &str, port: u16) -> bool {
    port == 443 && host.eq_ignore_ascii_case(HOST)
}

/// The routes delivered by the gateway (the newest replaces all), and
/// the upstream connections kept open between calls.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `None` until the gateway's first delivery.
    current: watch::Sender<Option<Arc<Vec<pb::ResolvedRoute>>>>,
    /// Whether a delivery is coming (connected mode).
    expecting: bool,
    pool: Pool,
    /// Request bodies being read at once (each up to 10 MiB).
    reading: Arc<tokio::sync::Semaphore>,
}

/// How long a call waits for the first delivery of routes.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

type Sender = hyper::client::conn::http1::SendRequest<BoxBody<Bytes, BoxError>>;

/// Most idle connections kept per base URL.
const POOL_PER_ENDPOINT: usize = 8;

/// Idle upstream connections by base URL: a fresh TCP (and TLS) handshake
/// to a model API would cost more than everything else the router does.
#[derive(Debug, Clone, Default)]
struct Pool {
    idle: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Sender>>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<Sender>>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection still open.
    fn take(&self, key: &str) -> Option<Sender> {
        let mut idle = self.lock();
        let senders = idle.get_mut(key)?;
        while let Some(sender) = senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended cleanly.
    fn give(&self, key: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let senders = idle.entry(key).or_default();
        if senders.len() < POOL_PER_ENDPOINT {
            senders.push(sender);
        }
    }
}

impl Routes {
    /// No routes yet; `expecting`: the gateway will deliver them (a call
    /// made before then waits for the first delivery, briefly).
    pub fn new(expecting: bool) -> Routes {
        Routes {
            current: watch::Sender::new(None),
            expecting,
            pool: Pool::default(),
            reading: Arc::new(tokio::sync::Semaphore::new(MAX_READING)),
        }
    }

    pub fn replace(&self, delivered: &pb::InferenceRoutes) {
        tracing::info!(routes = delivered.routes.len(), "inference routes updated");
        self.current
            .send_replace(Some(Arc::new(delivered.routes.clone())));
    }

    /// The route agents use (named ""); right after the start of a
    /// connected sandbox, once the gateway's first delivery is in.
    pub async fn agent(&self) -> Option<pb::ResolvedRoute> {
        if self.expecting && self.current.borrow().is_none() {
            let mut updates = self.current.subscribe();
            let _ = tokio::time::timeout(DELIVERY_WAIT, updates.wait_for(Option::is_some)).await;
        }
        self.current
            .borrow()
            .as_ref()?
            .iter()
            .find(|r| r.name.is_empty())
            .cloned()
    }
}

/// The model API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAiChatCompletions,
    OpenAiCompletions,
    OpenAiResponses,
    OpenAiEmbeddings,
    AnthropicMessages,
    ModelDiscovery,
    BedrockInvoke,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAiChatCompletions => "openai_chat_completions",
            Protocol::OpenAiCompletions => "openai_completions",
            Protocol::OpenAiResponses => "openai_responses",
            Protocol::OpenAiEmbeddings => "openai_embeddings",
            Protocol::AnthropicMessages => "anthropic_messages",
            Protocol::ModelDiscovery => "model_discovery",
            Protocol::BedrockInvoke => "aws_bedrock_invoke",
        }
    }

    /// Whether its JSON body names a model the route overrides.
    fn has_model(self) -> bool {
        !matches!(self, Protocol::ModelDiscovery | Protocol::BedrockInvoke)
    }

    /// Which request of which API `method path` (canonical, no query) is.
    pub fn detect(method: &str, path: &str) -> Option<Protocol> {
        let post = method == "POST";
        match path {
            "/v1/chat/completions" if post => Some(Protocol::OpenAiChatCompletions),
            "/v1/completions" if post => Some(Protocol::OpenAiCompletions),
            "/v1/responses" if post => Some(Protocol::OpenAiResponses),
            "/v1/embeddings" if post => Some(Protocol::OpenAiEmbeddings),
            "/v1/messages" if post => Some(Protocol::AnthropicMessages),
            "/v1/models" if method == "GET" => Some(Protocol::ModelDiscovery),
            _ if method == "GET"
                && path
                    .strip_prefix("/v1/models/")
                    .is_some_and(|rest| !rest.is_empty()) =>
            {
                Some(Protocol::ModelDiscovery)
            }
            _ if post => {
                let rest = path.strip_prefix("/model/")?;
                let (model, tail) = rest.split_once('/')?;
                (!model.is_empty() && tail == "invoke").then_some(Protocol::BedrockInvoke)
            }
            _ => None,
        }
    }

    /// The path below the route's base URL (which ends in `/v1` for the
    /// OpenAI and Anthropic shapes).
    fn upstream_path(self, path: &str) -> &str {
        match self {
            Protocol::BedrockInvoke => path,
            _ => path.strip_prefix("/v1").unwrap_or(path),
        }
    }
}

type Answer = Response<BoxBody<Bytes, BoxError>>;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error(status: StatusCode, body: Value) -> Answer {
    full(status, "application/json", body.to_string())
}

/// Serves a CONNECT to `inference.local` (already answered 200).
pub async fn serve(
    client: TcpStream,
    buffered: Vec<u8>,
    shared: Arc<Shared>,
    caller: Option<String>,
) {
    let config = match shared.authority.server_config(HOST) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "cannot mint the inference.local certificate");
            return;
        }
    };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config)
        .accept(Rewind::new(buffered, client))
        .await
    else {
        return;
    };
    let caller = Arc::new(caller);
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        let caller = caller.clone();
        async move { Ok::<_, std::convert::Infallible>(route(request, &shared, &caller).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

/// What an event says about one call.
struct Call {
    started: Instant,
    binary: Option<String>,
    method: String,
    path: String,
    details: InferenceDetails,
}

impl Call {
    fn event(&self, verdict: Verdict, reason: Option<String>) -> NetworkEvent {
        let mut details = self.details.clone();
        details.latency_ms = Some(self.started.elapsed().as_millis() as u64);
        NetworkEvent {
            time: crate::events::now_rfc3339(),
            sandbox: String::new(),
            kind: Kind::TunnelRequest,
            binary: self.binary.clone(),
            pid: None,
            host: HOST.to_owned(),
            port: 443,
            method: Some(self.method.clone()),
            path: Some(self.path.clone()),
            decision: verdict,
            layer: Layer::Inference,
            policy: None,
            reason,
            generation: 0,
            inference: Some(details),
        }
    }
}

async fn route(
    request: Request<Incoming>,
    shared: &Arc<Shared>,
    caller: &Option<String>,
) -> Answer {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let path = match openshell_policy::canonical::canonicalize_target(&target, false) {
        Ok(canonical) => canonical.path,
        Err(_) => return error(StatusCode::BAD_REQUEST, json!({"error": "bad request"})),
    };
    let mut call = Call {
        started: Instant::now(),
        binary: caller.clone(),
        method: method.clone(),
        path: path.clone(),
        details: InferenceDetails::default(),
    };
    let Some(protocol) = Protocol::detect(&method, &path) else {
        shared.events.emit(call.event(
            Verdict::Deny,
            Some("not an inference API request".to_owned()),
        ));
        // The connection may not be reused for anything else.
        let mut answer = error(
            StatusCode::FORBIDDEN,
            json!({"error": "connection not allowed by policy"}),
        );
        answer
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return answer;
    };
    call.details.protocol = Some(protocol.as_str().to_owned());
    let Some(route) = shared.inference.agent().await else {
        shared.events.emit(call.event(
            Verdict::Deny,
            Some("no inference route configured".to_owned()),
        ));
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "cluster inference is not configured", "hint": "run: openshell inference set --help"}),
        );
    };
    call.details.route = Some(if route.name.is_empty() {
        "default".to_owned()
    } else {
        route.name.clone()
    });
    call.details.provider = Some(route.provider.clone());
    call.details.model = Some(route.model.clone());
    match forward(request, &route, protocol, &target, &path, shared, call).await {
        Ok(answer) | Err(answer) => answer,
    }
}

/// Rewrites and sends one request; the upstream's response (streamed) or
/// the router's error.
async fn forward(
    request: Request<Incoming>,
    route: &pb::ResolvedRoute,
    protocol: Protocol,
    target: &str,
    path: &str,
    shared: &Arc<Shared>,
    mut call: Call,
) -> Result<Answer, Answer> {
    let refuse = |call: &Call, status: StatusCode, message: &str| {
        shared
            .events
            .emit(call.event(Verdict::Deny, Some(message.to_owned())));
        error(status, json!({"error": message}))
    };
    let base = BaseUrl::parse(&route.endpoint).map_err(|_| {
        refuse(
            &call,
            StatusCode::SERVICE_UNAVAILABLE,
            "inference service unavailable",
        )
    })?;
    let (parts, body) = request.into_parts();
    // Held until the request is sent (its body is then freed).
    let _reading = shared.inference.reading.clone().acquire_owned().await;
    let collected = Limited::new(body, MAX_REQUEST_BODY).collect().await;
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            shared
                .events
                .emit(call.event(Verdict::Deny, Some("request body over 10 MiB".to_owned())));
            return Err(full(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "Payload Too Large",
            ));
        }
        Err(_) => return Err(refuse(&call, StatusCode::BAD_REQUEST, "bad request")),
    };
    let body = if protocol.has_model() {
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
            return Err(refuse(
                &call,
                StatusCode::BAD_REQUEST,
                "the request body is not a JSON object",
            ));
        };
        call.details.requested_model = object
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned);
        object.insert("model".to_owned(), Value::from(route.model.clone()));
        Bytes::from(Value::Object(object).to_string())
    } else {
        body
    };

    // The headers that go: a few of the caller's, the provider's.
    let query = target.split_once('?').map(|(_, q)| q);
    let upstream_target = format!(
        "{}{}{}",
        base.path,
        protocol.upstream_path(path),
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(upstream_target)
        .header(hyper::header::HOST, base.authority());
    let passthrough = |name: &str| {
        ["content-type", "accept", "accept-encoding", "user-agent"].contains(&name)
            || route.passthrough_headers.iter().any(|p| p == name)
    };
    for (name, value) in &parts.headers {
        if passthrough(name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    for (name, value) in &route.default_headers {
        if !parts.headers.contains_key(name.as_str()) {
            upstream = upstream.header(name.as_str(), value.as_str());
        }
    }
    upstream = match route.auth.as_str() {
        "x-api-key" => upstream.header("x-api-key", route.api_key.as_str()),
        _ if route.api_key.is_empty() => upstream,
        _ => upstream.header("authorization", format!("Bearer {}", route.api_key)),
    };
    let head = upstream
        .body(())
        .map_err(|_| refuse(&call, StatusCode::BAD_GATEWAY, "inference service error"))?;
    let make = || {
        let mut request = Request::new(
            Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed(),
        );
        *request.method_mut() = head.method().clone();
        *request.uri_mut() = head.uri().clone();
        *request.headers_mut() = head.headers().clone();
        request
    };

    let timeout = Duration::from_secs(u64::from(route.timeout_seconds.max(1)));
    let response = tokio::time::timeout(timeout, send(&base, make, shared))
        .await
        .map_err(|_| {
            refuse(
                &call,
                StatusCode::SERVICE_UNAVAILABLE,
                "inference service unavailable",
            )
        })?
        .map_err(|why| {
            tracing::warn!(endpoint = %base, %why, "inference upstream failed");
            refuse(
                &call,
                StatusCode::SERVICE_UNAVAILABLE,
                "inference service unavailable",
            )
        })?;

    let (response, sender) = response;
    let (mut head, body) = response.into_parts();
    call.details.status = Some(head.status.as_u16());
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "content-length",
    ] {
        head.headers.remove(name);
    }
    let sse = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let plain = !head.headers.contains_key("content-encoding");
    let metered = Metered {
        inner: body,
        idle: Box::pin(tokio::time::sleep(RESPONSE_IDLE)),
        sent: 0,
        sse,
        usage: Usage {
            window: Vec::new(),
            watch: plain,
            sse,
        },
        call: Some(call),
        events: shared.clone(),
        done: false,
        connection: Some((base.to_string(), sender)),
    };
    Ok(Response::from_parts(head, metered.boxed()))
}

/// One exchange with the route's base URL: on an idle pooled connection
/// when there is one (a connection the upstream closed meanwhile is
/// replaced by a fresh one), else on a new one. Returns the response and
/// the connection, for the pool once the response has been read.
async fn send(
    base: &BaseUrl,
    make: impl Fn() -> Request<BoxBody<Bytes, BoxError>>,
    shared: &Shared,
) -> Result<(Response<Incoming>, Sender), String> {
    let key = base.to_string();
    if let Some(mut sender) = shared.inference.pool.take(&key)
        && sender.ready().await.is_ok()
    {
        match sender.send_request(make()).await {
            Ok(response) => return Ok((response, sender)),
            // Closed before the request went out: nothing was sent.
            Err(error) if error.is_canceled() || error.is_closed() => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    let tcp = TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut sender = if base.tls {
        let config = shared.authority.upstream()?;
        let name = crate::tls::server_name(&base.host)
            .ok_or_else(|| format!("{} is not a TLS server name", base.host))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        handshake(TokioIo::new(tls)).await?
    } else {
        handshake(TokioIo::new(tcp)).await?
    };
    let response = sender
        .send_request(make())
        .await
        .map_err(|e| e.to_string())?;
    Ok((response, sender))
}

async fn handshake<I>(io: I) -> Result<Sender, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_recognised_only_in_their_api_shapes() {
        let cases = [
            (
                "POST",
                "/v1/chat/completions",
                Some(Protocol::OpenAiChatCompletions),
            ),
            ("POST", "/v1/completions", Some(Protocol::OpenAiCompletions)),
            ("POST", "/v1/responses", Some(Protocol::OpenAiResponses)),
            ("POST", "/v1/embeddings", Some(Protocol::OpenAiEmbeddings)),
            ("POST", "/v1/messages", Some(Protocol::AnthropicMessages)),
            ("GET", "/v1/models", Some(Protocol::ModelDiscovery)),
            ("GET", "/v1/models/a/b", Some(Protocol::ModelDiscovery)),
            (
                "POST",
                "/model/claude-x/invoke",
                Some(Protocol::BedrockInvoke),
            ),
            ("GET", "/v1/chat/completions", None),
            ("POST", "/v1/models", None),
            ("GET", "/v1/models/", None),
            ("POST", "/model//invoke", None),
            ("POST", "/model/a/b/invoke", None),
            ("GET", "/admin", None),
            ("POST", "/v1/files", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Protocol::detect(method, path), expected, "{method} {path}");
        }
        assert_eq!(
            Protocol::AnthropicMessages.upstream_path("/v1/messages"),
            "/messages"
        );
        assert_eq!(
            Protocol::BedrockInvoke.upstream_path("/model/m/invoke"),
            "/model/m/invoke"
        );
    }

    #[test]
    fn usage_is_read_from_json_and_from_sse_streams() {
        let mut details = InferenceDetails::default();
        let mut usage = Usage {
            window: Vec::new(),
            watch: true,
            sse: false,
        };
        usage.take(br#"{"id":"c","usage":{"prompt_tokens":7,"#, &mut details);
        usage.take(br#""completion_tokens":3}}"#, &mut details);
        usage.finish(&mut details);
        assert_eq!(
            (details.input_tokens, details.output_tokens),
            (Some(7), Some(3))
        );

        let mut details = InferenceDetails::default();
        let mut usage = Usage {
            window: Vec::new(),
            watch: true,
            sse: true,
        };
        for chunk in [
            &b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n"[..],
            b"data: {\"type\":\"content_block_delta\"}\n\nevent: message_delta\ndata: {\"type\":\"message_de",
            b"lta\",\"usage\":{\"output_tokens\":42}}\n\n",
        ] {
            usage.take(chunk, &mut details);
        }
        assert_eq!(
            (details.input_tokens, details.output_tokens),
            (Some(11), Some(42))
        );
    }
}
