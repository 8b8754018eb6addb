//! One port, two protocols (ARCHITECTURE.md): gRPC (the API) and plain
//! HTTP (`/healthz`, `/readyz`, `/metrics`) told apart per request by the router, over
//! TLS (mTLS by default) or, with `--plaintext`, cleartext HTTP/1.1 and h2c.
//!
//! Shape: `run(listener, config, shutdown)`; connections are bounded, accept
//! errors are logged and backed off, never fatal.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use openshell_proto::v1::gateway_server::GatewayServer;
use openshell_proto::v1::supervisor_server::SupervisorServer;

use crate::api::Api;
use crate::api::supervisor::SupervisorApi;
use crate::auth::{self, Peer, Tokens};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Largest gRPC message accepted (larger ones get OUT_OF_RANGE from tonic).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener without the user API answers to it.
const NO_USER_API: &str =
    "this address serves sandbox supervisors only; use the gateway's endpoint";

/// How the server speaks.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The user API needs an identity: a client certificate (mTLS) or a
    /// user token. Off, callers without one are the admin `anonymous`.
    pub require_identity: bool,
    /// Checks supervisors' sandbox tokens.
    pub tokens: Tokens,
    /// Serve the user API and `/metrics`; off on a listener containers can
    /// reach (the docker driver's bridge address), which serves only the
    /// supervisors' service and health, whatever the auth mode.
    pub user_api: bool,
}

/// The router: the gRPC services plus the HTTP endpoints (see
/// [`Config::user_api`]).
pub fn router(api: Api, config: &Config) -> axum::Router {
    let require_identity = config.require_identity;
    let user_tokens = config.tokens.clone();
    let user = GatewayServer::new(api.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let user_api = config.user_api;
    let user = tonic::service::interceptor::InterceptedService::new(user, move |request| {
        if !user_api {
            return Err(tonic::Status::permission_denied(NO_USER_API));
        }
        user_tokens.check_user(request, require_identity)
    });
    let tokens = config.tokens.clone();
    let login_tokens = config.tokens.clone();
    let http = api.clone();
    let ready = api.clone();
    let supervisor = SupervisorServer::new(SupervisorApi(api))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let supervisor =
        tonic::service::interceptor::InterceptedService::new(supervisor, move |request| {
            tokens.check(request)
        });
    tonic::service::Routes::new(user)
        .add_service(supervisor)
        .into_axum_router()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/auth/connect",
            get(move |query| async move {
                if !user_api {
                    return no_user_api();
                }
                crate::login::page(query).await
            })
            .post(move |form| async move {
                // Not where containers reach the gateway: an agent has no
                // business checking tokens here.
                if !user_api {
                    return no_user_api();
                }
                crate::login::submit(login_tokens, form).await
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let api = ready.clone();
                async move {
                    match api.metrics().await {
                        Ok(_) => (axum::http::StatusCode::OK, "ready\n"),
                        Err(_) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the database does not answer\n",
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move |axum::Extension(peer): axum::Extension<Peer>| {
                let api = http.clone();
                async move {
                    if !user_api {
                        return (
                            axum::http::StatusCode::FORBIDDEN,
                            format!("{NO_USER_API}\n"),
                        );
                    }
                    metrics(&api, peer, require_identity).await
                }
            }),
        )
}

fn no_user_api() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::FORBIDDEN,
        format!("{NO_USER_API}\n"),
    )
        .into_response()
}

/// `/metrics` in the Prometheus text format; with mTLS on, only for
/// clients with a certificate (like the user API).
async fn metrics(
    api: &Api,
    peer: Peer,
    require_identity: bool,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    if require_identity && peer.certificate.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            "a client certificate from this gateway's CA is required (mTLS)\n".to_owned(),
        );
    }
    match api.metrics().await {
        Ok(text) => (StatusCode::OK, text),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer\n".to_owned(),
        ),
    }
}

/// Serves until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    config: Config,
    api: Api,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(api, &config);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let served = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let peer_info = Peer {
                                certificate: tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| chain.first())
                                    .and_then(|cert| auth::Caller::from_certificate(cert)),
                            };
                            builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(tls),
                                    with_peer(app, peer_info),
                                )
                                .await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let peer_info = Peer::default();
                    builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            with_peer(app, peer_info),
                        )
                        .await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// The router for one connection: every request carries the [`Peer`].
fn with_peer(
    app: axum::Router,
    peer: Peer,
) -> TowerToHyperService<
    tower::util::MapRequest<
        axum::Router,
        impl FnMut(Request<Incoming>) -> Request<Incoming> + Clone,
    >,
> {
    let app = tower::ServiceExt::map_request(app, move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        request
    });
    TowerToHyperService::new(app)
}
