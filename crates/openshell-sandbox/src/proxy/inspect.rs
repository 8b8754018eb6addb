//! L7 inside a CONNECT tunnel to an inspected endpoint (policy reference
//! §4.8 "Peek", §4.9, §4.10): the first bytes decide between TLS
//! (terminated as [`super::tunnel`] does) and plain HTTP/1; anything else
//! is refused.
//! Each request is then parsed by hyper, its authority checked against the
//! tunnel, its path canonicalised and judged, and either answered with the
//! L7 denial or forwarded (canonical path) on one upstream connection.
//! An allowed `101 Switching Protocols` (WebSocket) relays raw afterwards.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use openshell_policy::l4::{L4Decision, L4Request};

use super::generation::replaced;
use super::l7::Judgement;
use super::response;
use super::tunnel::{FIRST_BYTE_TIMEOUT, Rewind, Tunnel, first_bytes, terminate};
use crate::events::{NetworkEvent, now_rfc3339};

/// Largest request head inside an inspected tunnel (reference §9: 16 KiB).
pub const MAX_L7_HEAD: usize = 16 * 1024;
/// Request headers never forwarded.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
];

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves an inspected tunnel until either side closes or the generation
/// it was allowed under is replaced.
pub async fn inspect(client: TcpStream, buffered: Vec<u8>, upstream: TcpStream, tunnel: Tunnel) {
    let mut generations = tunnel.shared.generations.clone();
    let pinned = tunnel.generation.number;
    tokio::select! {
        _ = classify_and_serve(client, buffered, upstream, tunnel) => {}
        _ = replaced(&mut generations, pinned) => {
            tracing::info!(generation = pinned, "closing an inspected tunnel: the policy generation was replaced");
        }
    }
}

async fn classify_and_serve(
    client: TcpStream,
    buffered: Vec<u8>,
    upstream: TcpStream,
    tunnel: Tunnel,
) {
    let Some(first) = first_bytes(&client, &buffered, FIRST_BYTE_TIMEOUT).await else {
        return;
    };
    let mut client = Rewind::new(buffered, client);
    let tunnel = Arc::new(tunnel);
    if first.starts_with(&[0x16, 0x03]) {
        if let Some((client, upstream)) = terminate(client, upstream, &tunnel).await {
            serve(client, upstream, tunnel, 443, Rules::L7).await;
        }
    } else if first.starts_with(b"PRI * HTTP/2") {
        let body = response::error(
            403,
            "unsupported_l7_protocol",
            "HTTP/2 prior-knowledge (h2c) is not supported for L7-inspected endpoints",
        );
        let _ = client.write_all(&body).await;
    } else if first[0].is_ascii_uppercase() {
        serve(client, upstream, tunnel, 80, Rules::L7).await;
    } else {
        let body = response::error(
            403,
            "unsupported_l7_protocol",
            "Unsupported tunnel protocol for L7-inspected endpoint",
        );
        let _ = client.write_all(&body).await;
    }
}

/// What each request of a served tunnel is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Its authority, then the endpoint's L7 rules (an inspected endpoint).
    L7,
    /// Its authority only: an L4 endpoint whose TLS the proxy terminated,
    /// where a request naming another host would reach it unjudged.
    AuthorityOnly,
}

/// One hyper server on the client side, one hyper client connection
/// upstream; requests are judged one by one.
pub async fn serve<C, U>(
    client: C,
    upstream: U,
    tunnel: Arc<Tunnel>,
    default_port: u16,
    rules: Rules,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok((sender, connection)) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Incoming>(TokioIo::new(upstream))
        .await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    // HTTP/1 serves one request at a time: the sender is taken for a
    // request and put back, never locked across an await.
    let sender = Arc::new(Mutex::new(Some(sender)));
    let service = hyper::service::service_fn(move |request| {
        let tunnel = tunnel.clone();
        let sender = sender.clone();
        async move { Ok::<_, Infallible>(judge(request, &tunnel, &sender, default_port, rules).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_L7_HEAD)
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades()
        .await;
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn json_response(
    status: StatusCode,
    body: &serde_json::Value,
    policy: Option<&str>,
) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if let Some(policy) = policy.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert("x-openshell-policy", policy);
    }
    response
}

async fn judge(
    mut request: Request<Incoming>,
    tunnel: &Tunnel,
    sender: &Mutex<Option<SendRequest<Incoming>>>,
    default_port: u16,
    rules: Rules,
) -> Response<Body> {
    let shared = &tunnel.shared;
    let method = request.method().as_str().to_owned();
    let mut event = NetworkEvent {
        time: now_rfc3339(),
        sandbox: shared.sandbox.clone(),
        kind: "CONNECT_L7",
        binary: Some(tunnel.caller.binary.clone()),
        pid: Some(tunnel.caller.pid),
        host: tunnel.host.clone(),
        port: tunnel.port,
        method: Some(method.clone()),
        path: None,
        decision: "deny",
        layer: "l7",
        policy: None,
        reason: None,
        generation: tunnel.generation.number,
    };
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if !super::request::authority_matches(&authority, &tunnel.host, tunnel.port, default_port) {
        event.reason = Some(format!(
            "request authority '{authority}' does not match the tunnel"
        ));
        shared.events.emit(&event);
        return json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"error": "request_authority_mismatch", "message": "HTTP request authority does not match the authorized tunnel endpoint"}),
            None,
        );
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let forwarded_target = match rules {
        Rules::AuthorityOnly => target,
        Rules::L7 => match judge_l7(tunnel, &method, &target, &mut event) {
            Ok(forwarded) => forwarded,
            Err(refusal) => return *refusal,
        },
    };

    let wants_upgrade = request.headers().contains_key(UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let Ok(uri) = forwarded_target.parse() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request_target", "detail": "the canonical path is not a valid URI"}),
            None,
        );
    };
    parts.uri = uri;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if wants_upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let Some(mut upstream) = sender.lock().ok().and_then(|mut s| s.take()) else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "upstream_busy", "detail": "the upstream connection is in use"}),
            None,
        );
    };
    let result = upstream
        .send_request(Request::from_parts(parts, body))
        .await;
    if let Ok(mut slot) = sender.lock() {
        *slot = Some(upstream);
    }
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let detail = format!("{}:{}: {error}", tunnel.host, tunnel.port);
            return json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({"error": "upstream_unreachable", "detail": detail}),
                None,
            );
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
    response.map(BodyExt::boxed)
}

/// The L4 decision again (the policy may have changed since the tunnel
/// opened) and the endpoint's L7 rules for one request: the target to
/// forward (canonical), or the refusal to answer.
fn judge_l7(
    tunnel: &Tunnel,
    method: &str,
    target: &str,
    event: &mut NetworkEvent,
) -> Result<String, Box<Response<Body>>> {
    let shared = &tunnel.shared;
    let ancestors: Vec<&str> = tunnel.caller.ancestors.iter().map(String::as_str).collect();
    let cmdline: Vec<&str> = tunnel.caller.cmdline.iter().map(String::as_str).collect();
    let allow = match tunnel.generation.policy.decide_l4(&L4Request {
        host: &tunnel.host,
        port: tunnel.port,
        binary: &tunnel.caller.binary,
        ancestors: &ancestors,
        cmdline: &cmdline,
        ignore_binary: shared.ignore_binary,
    }) {
        L4Decision::Allow(allow) => allow,
        L4Decision::Deny(deny) => {
            event.reason = Some(deny.reason.clone());
            shared.events.emit(event);
            return Err(Box::new(json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "policy_denied", "detail": deny.reason}),
                None,
            )));
        }
    };
    let incoming = super::l7::Incoming {
        method,
        target,
        host: &tunnel.host,
        port: tunnel.port,
        binary: &tunnel.caller.binary,
    };
    let judgement = super::l7::judge(&allow, &incoming, event);
    shared.events.emit(event);
    match judgement {
        Judgement::Refuse {
            status,
            body,
            policy,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            Err(Box::new(json_response(status, &body, policy.as_deref())))
        }
        Judgement::Forward { target } => Ok(target),
    }
}
