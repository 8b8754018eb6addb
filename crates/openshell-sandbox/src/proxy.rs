//! The egress proxy: the agent's only way out of its network namespace.
//!
//! Both front doors, `CONNECT host:port` and absolute-form `http://`
//! requests, and every request inside a terminated tunnel, are judged by
//! one function ([`decide::decide`]): L4 policy → destination (SSRF,
//! resolved once, the validated address dialed) → the request's rules. Who
//! is calling comes first ([`caller`]). Every decision is one event
//! (`NetworkEvent::from(&Decision)`, [`crate::events`]) and every refusal
//! one answer ([`response::refusal`]); a denial is an ordinary response,
//! never an error. Then the bytes move ([`relay`]).
//!
//! CONNECT tunnels to endpoints that ask for L7 inspection are terminated
//! and judged per request ([`inspect::inspect`]); other tunnels have TLS
//! terminated and re-encrypted without request rules
//! ([`inspect::terminate_or_splice`]) unless the endpoint says `tls: skip`,
//! and everything that is not TLS is relayed as bytes ([`splice`]).

pub mod caller;
pub mod connects;
pub mod credentials;
pub mod decide;
pub mod generation;
pub mod inference;
pub mod inspect;
pub mod relay;
pub mod request;
pub mod response;
pub mod splice;
pub mod tunnel;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::events::{Events, NetworkEvent};
use caller::Identifier;
use decide::{Decision, Endpoint, Intent, Kind, Outcome, Request, Resolve, Route};
use generation::Generation;
use request::{Framing, ReadHeadError, Target, TargetError};

/// Most connections served at once; further accepts wait.
pub const MAX_CONNECTIONS: usize = 1024;
/// Upstream connect timeout per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection handler shares.
#[derive(Debug)]
pub struct Shared {
    pub generations: watch::Receiver<Arc<Generation>>,
    pub identifier: Arc<Identifier>,
    pub events: Events,
    /// Relaxed identity (docs/policy.md, "Binaries"): endpoints only, binaries ignored.
    pub ignore_binary: bool,
    /// The sandbox CA, for terminating inspected tunnels.
    pub authority: Arc<crate::tls::Authority>,
    /// Names to addresses, and this host's own addresses.
    pub resolver: Resolver,
    /// Provider credentials substituted into inspected requests.
    pub credentials: credentials::Credentials,
    /// The routes behind `inference.local`.
    pub inference: inference::Routes,
}

/// The system's resolver, and this host's own addresses (refused like
/// loopback), read again when a second old: interfaces come and go, and a
/// fresh read per connection would cost a netlink dump each.
#[derive(Debug, Default)]
pub struct Resolver {
    own: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<IpAddr>>)>>,
}

impl Resolver {
    const OWN_FRESH_FOR: Duration = Duration::from_secs(1);
}

impl Resolve for Resolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Vec<IpAddr>> + Send + 'a>> {
        Box::pin(resolve(host, port))
    }

    /// On a failed read the last addresses read, and when none ever was,
    /// an error: the check fails closed, never to "no addresses".
    fn own_addresses(&self) -> Result<Arc<Vec<IpAddr>>, String> {
        let mut cached = self
            .own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((read_at, addresses)) = cached.as_ref()
            && read_at.elapsed() < Self::OWN_FRESH_FOR
        {
            return Ok(addresses.clone());
        }
        let read = nix::ifaddrs::getifaddrs().map(|all| {
            all.filter_map(|ifa| {
                let address = ifa.address?;
                address
                    .as_sockaddr_in()
                    .map(|a| IpAddr::V4(a.ip()))
                    .or_else(|| address.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
            })
            .collect::<Vec<IpAddr>>()
        });
        let addresses = match (read, cached.as_ref()) {
            (Ok(addresses), _) => Arc::new(addresses),
            (Err(error), Some((_, last))) => {
                tracing::warn!(%error, "cannot list this host's addresses; using the last ones read");
                last.clone()
            }
            (Err(error), None) => {
                return Err(format!("cannot list this host's addresses: {error}"));
            }
        };
        *cached = Some((std::time::Instant::now(), addresses.clone()));
        Ok(addresses)
    }
}

/// Serves `listener` until `shutdown` turns true. Accept errors are logged
/// and backed off, never fatal.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    handle(stream, peer, shared).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let Ok(local) = client.local_addr() else {
        return;
    };
    let mut buf = Vec::with_capacity(2048);
    let head_len = match request::read_head(&mut client, &mut buf).await {
        Ok(len) => len,
        Err(ReadHeadError::TooLarge) => {
            let _ = client.write_all(response::HEADERS_TOO_LARGE).await;
            return;
        }
        Err(_) => return, // closed, silent or broken: nothing to answer
    };
    let Some(head) = request::parse_head(&buf[..head_len]) else {
        let _ = client.write_all(response::BAD_REQUEST).await;
        return;
    };
    let target = match request::parse_target(&head.method, &head.target) {
        Ok(target) => target,
        Err(TargetError::UnsupportedScheme) => {
            let _ = client
                .write_all(&response::unsupported_scheme().to_bytes())
                .await;
            return;
        }
        Err(TargetError::Malformed) => {
            let _ = client.write_all(response::BAD_REQUEST).await;
            return;
        }
    };
    let framing = match target {
        Target::Connect { .. } => Framing::None,
        Target::Forward { .. } => match request::framing(&head) {
            Some(framing) => framing,
            None => {
                let _ = client.write_all(response::BAD_REQUEST).await;
                return;
            }
        },
    };
    if let Target::Forward { host, port, .. } = &target
        && let Err(request::HostMismatch(given)) = request::check_host(&head, host, *port)
    {
        tracing::warn!(
            host,
            port,
            given,
            "forward request refused: Host does not match the URL"
        );
        let _ = client
            .write_all(&response::authority_mismatch().to_bytes())
            .await;
        return;
    }
    let buffered = buf.split_off(head_len);
    // inference.local needs no network rule: answered before any policy
    // or destination check (docs/inference.md).
    if let Target::Connect { host, port } = &target
        && inference::is_router(host, *port)
    {
        if client.write_all(response::CONNECT_OK).await.is_err() {
            return;
        }
        // Who calls, for the events only (it decides nothing here).
        let caller = shared
            .identifier
            .identify(peer, local)
            .ok()
            .map(|c| c.binary.clone());
        inference::serve(client, buffered, shared, caller).await;
        return;
    }
    let intent = Intent {
        kind: match target {
            Target::Connect { .. } => Kind::Connect,
            Target::Forward { .. } => Kind::Forward,
        },
        host: target.host(),
        port: target.port(),
        request: match &target {
            Target::Connect { .. } => None,
            Target::Forward { path, .. } => Some(Request {
                method: &head.method,
                target: path,
                authority: None,
                rules: true,
            }),
        },
    };
    let generation = shared.generations.borrow().clone();
    let caller = match shared.identifier.identify(peer, local) {
        Ok(caller) => caller,
        Err(error) => {
            let refused = Decision::unidentified(&intent, generation.number, &error);
            shared.events.emit(NetworkEvent::from(&refused));
            refuse(&mut client, &refused).await;
            return;
        }
    };
    let decision = decide::decide(
        &generation,
        &intent,
        &caller,
        &shared.resolver,
        shared.ignore_binary,
    )
    .await;
    shared.events.emit(NetworkEvent::from(&decision));
    let Outcome::Allowed(Endpoint { addresses, route }) = &decision.outcome else {
        refuse(&mut client, &decision).await;
        return;
    };
    // A forward request's credentials, before anything is dialed.
    let mut head = head;
    let (mut framing, mut buffered) = (framing, buffered);
    let mut scan = None;
    let mut forward_path = None;
    if let Route::Forward {
        target: path,
        rewrite_body,
    } = route
        && shared.credentials.active()
    {
        let set = shared.credentials.current().await;
        let destination = credentials::Destination {
            host: target.host(),
            port: target.port(),
            path: path.split_once('?').map_or(path.as_str(), |(p, _)| p),
            policy: generation.policy.policy(),
        };
        let prepared = forward_credentials(
            &set,
            &mut head,
            path,
            &mut framing,
            &mut buffered,
            &mut client,
            &destination,
            *rewrite_body,
        )
        .await;
        match prepared {
            Ok((path, scan_body)) => {
                forward_path = path;
                scan = scan_body.then_some(set);
            }
            Err(error) => {
                let refused_here = decision.credential_refused(error);
                shared.events.emit(NetworkEvent::from(&refused_here));
                refuse(&mut client, &refused_here).await;
                return;
            }
        }
    }
    // A raw tunnel to where credentials are bound would carry their
    // placeholders past the substitution: refused unless the endpoint
    // says it is fine.
    if let Route::Raw {
        uninspected_credentials: false,
    } = route
        && shared.credentials.active()
        && shared
            .credentials
            .current()
            .await
            .binds(target.host(), target.port())
    {
        let refused_here = decision.credential_refused(credentials::CredentialError::Uninspected);
        shared.events.emit(NetworkEvent::from(&refused_here));
        refuse(&mut client, &refused_here).await;
        return;
    }
    let upstream = match dial(addresses, target.port()).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(host = target.host(), port = target.port(), %error, "upstream unreachable");
            let failed = decision.unreachable(&error);
            shared.events.emit(NetworkEvent::from(&failed));
            refuse(&mut client, &failed).await;
            return;
        }
    };
    let pinned = generation.number;
    let is_tunnel = !matches!(route, Route::Forward { .. });
    if is_tunnel && client.write_all(response::CONNECT_OK).await.is_err() {
        return;
    }
    let tunnel = |caller| tunnel::Tunnel {
        shared: shared.clone(),
        host: target.host().to_owned(),
        port: target.port(),
        caller,
        generation: generation.clone(),
    };
    let generations = shared.generations.clone();
    match route {
        Route::Forward { target: path, .. } => {
            let path = forward_path.as_deref().unwrap_or(path);
            let head_bytes = relay::upstream_head(&head, path, &target);
            relay::forward(
                client,
                upstream,
                relay::Request {
                    head: head_bytes,
                    framing,
                    buffered,
                    head_request: head.method.eq_ignore_ascii_case("HEAD"),
                    scan,
                },
                generations,
                pinned,
            )
            .await;
        }
        Route::Inspect => inspect::inspect(client, buffered, upstream, tunnel(caller)).await,
        Route::Terminate => {
            inspect::terminate_or_splice(client, buffered, upstream, tunnel(caller)).await;
        }
        Route::Raw { .. } => {
            let mut upstream = upstream;
            if !buffered.is_empty() && upstream.write_all(&buffered).await.is_err() {
                return;
            }
            relay::tunnel(client, upstream, generations, pinned).await;
        }
    }
}

/// Substitutes a forward request's credentials: headers and target, and
/// a body of known length up to the rewrite limit (read whole now, then
/// rewritten or checked). Returns the new target if it changed, and
/// whether the body must still be scanned as it is relayed (a chunked or
/// larger one).
#[allow(clippy::too_many_arguments)]
async fn forward_credentials(
    set: &credentials::Set,
    head: &mut request::Head,
    path: &str,
    framing: &mut Framing,
    buffered: &mut Vec<u8>,
    client: &mut TcpStream,
    destination: &credentials::Destination<'_>,
    rewrite_body: bool,
) -> Result<(Option<String>, bool), credentials::CredentialError> {
    use tokio::io::AsyncReadExt;
    let path = credentials::rewrite_head(set, &mut head.headers, path, destination)?;
    let length = match *framing {
        Framing::None => return Ok((path, false)),
        Framing::Length(length) if length <= credentials::MAX_REWRITE_BODY as u64 => {
            length as usize
        }
        Framing::Length(_) | Framing::Chunked => return Ok((path, true)),
    };
    if buffered.len() < length {
        let have = buffered.len();
        buffered.resize(length, 0);
        let read = tokio::time::timeout(
            request::HEAD_TIMEOUT,
            client.read_exact(&mut buffered[have..]),
        )
        .await;
        if !matches!(read, Ok(Ok(_))) {
            return Err(credentials::CredentialError::Unavailable);
        }
    }
    let body = &buffered[..length];
    let content_type = head
        .header("content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned);
    if let Some(new) = credentials::rewrite_whole_body(
        set,
        content_type.as_deref(),
        body,
        destination,
        rewrite_body,
    )? {
        for (name, value) in &mut head.headers {
            if name.eq_ignore_ascii_case("content-length") {
                *value = new.len().to_string().into_bytes();
            }
        }
        *framing = Framing::Length(new.len() as u64);
        buffered.splice(..length, new);
    }
    Ok((path, false))
}

/// Answers a refused request and closes.
async fn refuse(client: &mut TcpStream, decision: &Decision) {
    if let Outcome::Refused(refusal) = &decision.outcome {
        let _ = client
            .write_all(&response::refusal(refusal).to_bytes())
            .await;
    }
    let _ = client.shutdown().await;
}

/// The host's addresses: the literal itself, or a DNS lookup in the
/// supervisor's namespace (empty when resolution fails).
async fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    if let Some(ip) = openshell_policy::host::parse_ip_literal(host) {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            ips.dedup();
            ips
        }
        Err(_) => Vec::new(),
    }
}

/// Connects to the first validated address that answers.
async fn dial(addrs: &[IpAddr], port: u16) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no address to dial");
    for ip in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((*ip, port))).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => last = error,
            Err(_) => last = std::io::ErrorKind::TimedOut.into(),
        }
    }
    Err(last)
}
