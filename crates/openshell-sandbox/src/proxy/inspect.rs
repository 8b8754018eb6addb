//! Tunnels the proxy terminates and looks inside (docs/policy.md, "TLS"
//! and "Requests"):
//! - [`inspect`], an L7 tunnel: the first bytes decide between TLS
//!   (terminated) and plain HTTP/1; anything else is refused;
//! - [`terminate_or_splice`], an L4 tunnel whose endpoint does not say
//!   `tls: skip`: TLS is terminated and re-encrypted, other bytes relayed
//!   raw.
//!
//! Each HTTP/1 request is then parsed by hyper and judged by
//! [`super::decide::decide`] (its authority; for L7 tunnels also L4 under
//! the current generation and the endpoint's rules), and either answered
//! with the refusal or forwarded (canonical path) on one upstream
//! connection. An allowed `101 Switching Protocols` (WebSocket) relays raw
//! afterwards.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
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

use super::credentials::{
    CredentialError, Destination, UpstreamBody, binding_path, rewrite_request,
};
use super::decide::{
    Decision, Endpoint, Intent, Kind, Outcome, Refusal, Request as DecideRequest, Route, decide,
};
use super::generation::replaced;
use super::response;
use super::tunnel::{CLASSIFY_WINDOW, FIRST_BYTE_TIMEOUT, Rewind, Tunnel, first_bytes, terminate};
use crate::events::NetworkEvent;

/// Largest request head inside an inspected tunnel (docs/policy.md, "Limits": 16 KiB).
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
        let body = response::unsupported_l7_protocol(true).to_bytes();
        let _ = client.write_all(&body).await;
    } else if first[0].is_ascii_uppercase() {
        serve(client, upstream, tunnel, 80, Rules::L7).await;
    } else {
        let body = response::unsupported_l7_protocol(false).to_bytes();
        let _ = client.write_all(&body).await;
    }
}

/// An L4 tunnel (no L7 rules) whose endpoint does not say `tls: skip`: a
/// TLS client is terminated and re-encrypted upstream (verified against the
/// system roots), so that credentials can be
/// substituted; anything else is relayed raw. A client that says nothing
/// within the classification window (a server-speaks-first protocol) is
/// relayed raw too.
pub async fn terminate_or_splice(
    client: TcpStream,
    buffered: Vec<u8>,
    upstream: TcpStream,
    tunnel: Tunnel,
) {
    let mut generations = tunnel.shared.generations.clone();
    let pinned = tunnel.generation.number;
    let relay = async {
        let first = first_bytes(&client, &buffered, CLASSIFY_WINDOW).await;
        if !first
            .as_deref()
            .is_some_and(|f| f.starts_with(&[0x16, 0x03]))
        {
            let mut upstream = upstream;
            if !buffered.is_empty() && upstream.write_all(&buffered).await.is_err() {
                return;
            }
            let _ = super::splice::relay(&client, &upstream).await;
            return;
        }
        let Some((mut client, mut upstream)) =
            terminate(Rewind::new(buffered, client), upstream, &tunnel).await
        else {
            return;
        };
        // HTTP/1 inside: each request's authority must name this tunnel's
        // endpoint (as in inspected tunnels), or a request for another
        // virtual host on the same address would pass unjudged. Anything
        // else (a server-speaks-first protocol, another one) relays as is.
        let first = decrypted_start(&mut client).await;
        let mut client = Rewind::new(first.clone(), client);
        if looks_like_http1(&first) {
            serve(
                client,
                upstream,
                Arc::new(tunnel),
                443,
                Rules::AuthorityOnly,
            )
            .await;
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    };
    tokio::select! {
        _ = relay => {}
        _ = replaced(&mut generations, pinned) => {
            tracing::info!(generation = pinned, "closing a tunnel: the policy generation was replaced");
        }
    }
}

/// Up to 16 bytes of what the client sends first inside TLS, waiting at
/// most the classification window (nothing: the server speaks first).
async fn decrypted_start<S: AsyncRead + Unpin>(client: &mut S) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut first = Vec::with_capacity(16);
    let deadline = tokio::time::Instant::now() + CLASSIFY_WINDOW;
    while first.len() < 16 {
        let mut chunk = [0u8; 16];
        let want = 16 - first.len();
        match tokio::time::timeout_at(deadline, client.read(&mut chunk[..want])).await {
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    first
}

/// An HTTP/1 request line's start: an upper-case method and a space.
fn looks_like_http1(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && first.get(method) == Some(&b' ')
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
        .handshake::<_, UpstreamBody>(TokioIo::new(upstream))
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

/// The answer to a request not forwarded: its refusal's. `decide` routes
/// every allowed request inside a tunnel as a forward; anything else is
/// refused too, never waved through.
fn refused(decision: &Decision) -> Response<Body> {
    match &decision.outcome {
        Outcome::Refused(refusal) => answer(&response::refusal(refusal)),
        Outcome::Allowed(_) => answer(&response::refusal(&Refusal::Policy {
            detail: "the request has no route".to_owned(),
            reason: String::new(),
        })),
    }
}

/// The proxy's own answer ([`response::Answer`]) as a hyper response.
fn answer(answer: &response::Answer) -> Response<Body> {
    let mut response = Response::new(full(answer.body.to_string()));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if let Some(policy) = answer
        .policy
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        headers.insert("x-openshell-policy", policy);
    }
    response
}

async fn judge(
    mut request: Request<Incoming>,
    tunnel: &Tunnel,
    sender: &Mutex<Option<SendRequest<UpstreamBody>>>,
    default_port: u16,
    rules: Rules,
) -> Response<Body> {
    let shared = &tunnel.shared;
    let method = request.method().as_str().to_owned();
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
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let intent = Intent {
        kind: Kind::TunnelRequest,
        host: &tunnel.host,
        port: tunnel.port,
        request: Some(DecideRequest {
            method: &method,
            target: &target,
            authority: Some((&authority, default_port)),
            rules: rules == Rules::L7,
        }),
    };
    let decision = decide(
        &tunnel.generation,
        &intent,
        &tunnel.caller,
        &shared.resolver,
        shared.ignore_binary,
    )
    .await;
    // A terminated L4 tunnel reports only what it refuses.
    if rules == Rules::L7 || !decision.is_allowed() {
        shared.events.emit(NetworkEvent::from(&decision));
    }
    let (forwarded_target, rewrite_body) = match &decision.outcome {
        Outcome::Allowed(Endpoint {
            route:
                Route::Forward {
                    target,
                    rewrite_body,
                },
            ..
        }) => (target.clone(), *rewrite_body),
        _ => return refused(&decision),
    };

    let wants_upgrade = request.headers().contains_key(UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let Ok(uri) = forwarded_target.parse() else {
        return answer(&response::invalid_canonical_target());
    };
    parts.uri = uri;
    // Credentials: substituted after every policy check, on the request
    // as it will be sent.
    let tripped = Arc::new(AtomicBool::new(false));
    let body: UpstreamBody = if shared.credentials.active() {
        let set = shared.credentials.current().await;
        // Bindings are checked against the canonical path: an L7 target
        // already is; a terminated L4 tunnel forwards the raw one, whose
        // dot segments must not carry a placeholder past a path scope.
        let path = match binding_path(&forwarded_target) {
            Ok(path) => path,
            Err(error) => {
                let refused_here = decision.credential_refused(error);
                shared.events.emit(NetworkEvent::from(&refused_here));
                return refused(&refused_here);
            }
        };
        let destination = Destination {
            host: &tunnel.host,
            port: tunnel.port,
            path: &path,
            policy: tunnel.generation.policy.policy(),
        };
        match rewrite_request(
            set,
            &mut parts,
            body,
            &destination,
            rewrite_body,
            tripped.clone(),
        )
        .await
        {
            Ok(body) => body,
            Err(error) => {
                let refused_here = decision.credential_refused(error);
                shared.events.emit(NetworkEvent::from(&refused_here));
                return refused(&refused_here);
            }
        }
    } else {
        body.map_err(Into::into).boxed()
    };
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if wants_upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let Some(mut upstream) = sender.lock().ok().and_then(|mut s| s.take()) else {
        return answer(&response::upstream_busy());
    };
    let result = upstream
        .send_request(Request::from_parts(parts, body))
        .await;
    if let Ok(mut slot) = sender.lock() {
        *slot = Some(upstream);
    }
    let mut response = match result {
        Ok(response) => response,
        Err(_) if tripped.load(Ordering::SeqCst) => {
            let refused_here = decision.credential_refused(CredentialError::InBody);
            shared.events.emit(NetworkEvent::from(&refused_here));
            return refused(&refused_here);
        }
        Err(error) => {
            let failed = decision.unreachable(&std::io::Error::other(error));
            shared.events.emit(NetworkEvent::from(&failed));
            return refused(&failed);
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
