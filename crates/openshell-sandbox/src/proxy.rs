//! The egress proxy: the agent's only way out of its network namespace.
//!
//! Both front doors — `CONNECT host:port` and absolute-form `http://`
//! requests — become one `Intent` and go through one pipeline
//! (`decide`): who is calling ([`caller`]) → L4 policy → destination
//! (SSRF, resolved once, the validated address dialed) → L7 for inspected
//! endpoints → relay ([`relay`]). Every decision is one event
//! ([`crate::events`]). A denial is an ordinary response, never an error.
//!
//! CONNECT tunnels to endpoints that ask for L7 inspection are terminated
//! and judged per request ([`inspect::inspect`]); other tunnels have TLS
//! terminated and re-encrypted without request rules
//! ([`tunnel::terminate_or_splice`]) unless the endpoint says `tls: skip`, and
//! everything that is not TLS is relayed as bytes ([`splice`]).

pub mod caller;
pub mod connects;
pub mod generation;
pub mod inspect;
pub mod l7;
pub mod relay;
pub mod request;
pub mod response;
pub mod splice;
pub mod tunnel;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use openshell_policy::l4::{L4Decision, L4Request};
use openshell_policy::policy::TlsMode;
use openshell_policy::ssrf::{
    DeniedKind, DestinationDenied, check_destination, check_host_addresses,
};

use crate::events::{Events, NetworkEvent, now_rfc3339};
use caller::{Caller, Identifier};
use generation::Generation;
use l7::Judgement;
use request::{Framing, ReadHeadError, Target, TargetError};

/// Most connections served at once; further accepts wait.
pub const MAX_CONNECTIONS: usize = 1024;
/// Upstream connect timeout per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection handler shares.
#[derive(Debug)]
pub struct Shared {
    /// The sandbox's name, for events.
    pub sandbox: String,
    pub generations: watch::Receiver<Arc<Generation>>,
    pub identifier: Arc<Identifier>,
    pub events: Events,
    /// Relaxed identity (reference §4.3): endpoints only, binaries ignored.
    pub ignore_binary: bool,
    /// The sandbox CA, for terminating inspected tunnels.
    pub authority: Arc<crate::tls::Authority>,
    /// This host's own addresses, refused like loopback.
    pub host_addresses: HostAddresses,
}

/// The addresses of this host's interfaces (as the proxy's network
/// namespace has them), read again when a second old: interfaces come and
/// go, and a fresh read per connection would cost a netlink dump each.
#[derive(Debug, Default)]
pub struct HostAddresses {
    cached: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<IpAddr>>)>>,
}

impl HostAddresses {
    const FRESH_FOR: Duration = Duration::from_secs(1);

    /// The addresses; on a failed read the last ones read, and when none
    /// ever was, an error: the check fails closed, never to "no addresses".
    pub fn current(&self) -> Result<Arc<Vec<IpAddr>>, String> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((read_at, addresses)) = cached.as_ref()
            && read_at.elapsed() < Self::FRESH_FOR
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

/// One request as the pipeline sees it.
#[derive(Debug)]
struct Intent<'a> {
    target: &'a Target,
    method: &'a str,
}

impl Intent<'_> {
    fn kind(&self) -> &'static str {
        match self.target {
            Target::Connect { .. } => "CONNECT",
            Target::Forward { .. } => "FORWARD",
        }
    }

    /// The path without its query, for details and events.
    fn path(&self) -> Option<&str> {
        match self.target {
            Target::Forward { path, .. } => Some(path.split('?').next().unwrap_or(path)),
            Target::Connect { .. } => None,
        }
    }

    /// `CONNECT h:p` or `GET h:p/path` as the reference's details write it.
    fn describe(&self, with_path: bool) -> String {
        let (host, port) = (self.target.host(), self.target.port());
        match (self.target, with_path) {
            (Target::Forward { .. }, true) => {
                format!("{} {host}:{port}{}", self.method, self.path().unwrap_or(""))
            }
            _ => format!("{} {host}:{port}", self.method),
        }
    }
}

/// What happens to an allowed request.
#[derive(Debug)]
enum Route {
    /// A forward request: send exactly it, with this canonical origin-form
    /// target, and relay the response.
    Forward { target: String },
    /// A tunnel of bytes only (`tls: skip`).
    Raw,
    /// An L4 tunnel: TLS terminated and re-encrypted, no request rules.
    Terminate(Caller),
    /// An L7 tunnel: every request judged.
    Inspect(Caller),
}

/// The outcome of the pipeline for one intent.
#[derive(Debug)]
enum Decision {
    /// Answer with these bytes and close.
    Refuse(Vec<u8>),
    /// Dial these validated addresses, then take `route`.
    Dial {
        addrs: Vec<IpAddr>,
        generation: Arc<Generation>,
        route: Route,
    },
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
            let body = response::error(
                400,
                "unsupported_proxy_scheme",
                "Forward proxy requests must use http",
            );
            let _ = client.write_all(&body).await;
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
        let body = response::error(
            403,
            "request_authority_mismatch",
            "HTTP request authority does not match the authorized tunnel endpoint",
        );
        let _ = client.write_all(&body).await;
        return;
    }
    let buffered = buf.split_off(head_len);
    // Two syscalls and a readlink: no worth moving off the runtime.
    let caller = shared
        .identifier
        .identify(peer, local)
        .map_err(|error| error.to_string());
    let intent = Intent {
        target: &target,
        method: &head.method,
    };
    let (addrs, generation, route) = match decide(&shared, &intent, caller).await {
        Decision::Refuse(bytes) => {
            let _ = client.write_all(&bytes).await;
            let _ = client.shutdown().await;
            return;
        }
        Decision::Dial {
            addrs,
            generation,
            route,
        } => (addrs, generation, route),
    };
    let upstream = match dial(&addrs, target.port()).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(host = target.host(), port = target.port(), %error, "upstream unreachable");
            let detail = format!("{}: {error}", intent.describe(false));
            let _ = client
                .write_all(&response::error(502, "upstream_unreachable", &detail))
                .await;
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
        Route::Forward { target } => {
            let head_bytes = relay::upstream_head(&head, &target, intent.target);
            relay::forward(
                client,
                upstream,
                head_bytes,
                framing,
                buffered,
                head.method.eq_ignore_ascii_case("HEAD"),
                generations,
                pinned,
            )
            .await;
        }
        Route::Inspect(caller) => {
            inspect::inspect(client, buffered, upstream, tunnel(caller)).await
        }
        Route::Terminate(caller) => {
            tunnel::terminate_or_splice(client, buffered, upstream, tunnel(caller)).await;
        }
        Route::Raw => {
            let mut upstream = upstream;
            if !buffered.is_empty() && upstream.write_all(&buffered).await.is_err() {
                return;
            }
            relay::tunnel(client, upstream, generations, pinned).await;
        }
    }
}

/// The pipeline: identity → L4 → destination → L7 (forward requests).
async fn decide(shared: &Shared, intent: &Intent<'_>, caller: Result<Caller, String>) -> Decision {
    let generation = shared.generations.borrow().clone();
    let (host, port) = (intent.target.host(), intent.target.port());
    let mut event = NetworkEvent {
        time: now_rfc3339(),
        sandbox: shared.sandbox.clone(),
        kind: intent.kind(),
        binary: None,
        pid: None,
        host: host.to_owned(),
        port,
        method: matches!(intent.target, Target::Forward { .. }).then(|| intent.method.to_owned()),
        path: intent.path().map(str::to_owned),
        decision: "deny",
        layer: "identity",
        policy: None,
        reason: None,
        generation: generation.number,
    };
    let policy_denied = |event: &mut NetworkEvent, reason: String| {
        let detail = format!("{} not permitted by policy", intent.describe(true));
        let bytes = response::policy_denied(&detail, &reason);
        event.reason = Some(reason);
        shared.events.emit(event);
        Decision::Refuse(bytes)
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(reason) => return policy_denied(&mut event, reason),
    };
    event.binary = Some(caller.binary.clone());
    event.pid = Some(caller.pid);
    event.layer = "l4";
    let ancestors: Vec<&str> = caller.ancestors.iter().map(String::as_str).collect();
    let cmdline: Vec<&str> = caller.cmdline.iter().map(String::as_str).collect();
    let allow = match generation.policy.decide_l4(&L4Request {
        host,
        port,
        binary: &caller.binary,
        ancestors: &ancestors,
        cmdline: &cmdline,
        ignore_binary: shared.ignore_binary,
    }) {
        L4Decision::Allow(allow) => allow,
        L4Decision::Deny(deny) => return policy_denied(&mut event, deny.reason),
    };
    event.policy = Some(allow.policy.to_owned());

    // Destination: resolve once, check every address, dial only those.
    event.layer = "ssrf";
    let addrs = resolve(host, port).await;
    let mode = allow.destination_mode(host);
    let checked = check_destination(mode, host, port, &addrs).and_then(|()| {
        let own = shared
            .host_addresses
            .current()
            .map_err(|reason| DestinationDenied {
                kind: DeniedKind::HostAddress,
                reason,
            })?;
        check_host_addresses(mode, host, &addrs, &own)
    });
    if let Err(denied) = checked {
        let detail = format!(
            "{} blocked: {}",
            intent.describe(false),
            denied.kind.as_str()
        );
        event.reason = Some(denied.reason);
        shared.events.emit(&event);
        return Decision::Refuse(response::error(403, "ssrf_denied", &detail));
    }

    event.layer = "l7";
    let forward_target = match intent.target {
        Target::Connect { .. } => None,
        Target::Forward { path, .. } => {
            let incoming = l7::Incoming {
                method: intent.method,
                target: path,
                host,
                port,
                binary: &caller.binary,
            };
            match l7::judge(&allow, &incoming, &mut event) {
                Judgement::Refuse {
                    status,
                    body,
                    policy,
                } => {
                    shared.events.emit(&event);
                    let headers: Vec<(&str, &str)> = policy
                        .as_deref()
                        .map(|p| ("X-OpenShell-Policy", p))
                        .into_iter()
                        .collect();
                    return Decision::Refuse(response::json(status, &body, &headers));
                }
                Judgement::Forward { target } => Some(target),
            }
        }
    };
    if event.decision != "audit" {
        event.decision = "allow";
    }
    if !allow.is_inspected() {
        event.layer = "l4";
    }
    shared.events.emit(&event);
    let skip_tls = allow
        .matched
        .iter()
        .any(|m| m.endpoint.tls == TlsMode::Skip);
    let route = match forward_target {
        Some(target) => Route::Forward { target },
        None if allow.is_inspected() => Route::Inspect(caller),
        None if skip_tls => Route::Raw,
        None => Route::Terminate(caller),
    };
    Decision::Dial {
        addrs,
        generation: generation.clone(),
        route,
    }
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
