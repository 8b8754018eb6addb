//! Connected mode: the supervisor's one live session with its gateway
//! (ARCHITECTURE.md, "The supervisor session").
//!
//! The supervisor dials out with its sandbox token, says hello with the
//! policy revision it enforces, and then, on one bidirectional stream:
//! - applies policy revisions the gateway sends (the same validation and
//!   static-section check as a file reload) and reports loaded or failed;
//!   a rejected revision leaves the last good one in force;
//! - pushes its decision events (queued while the gateway is away);
//! - runs exec requests ([`crate::exec`]) and streams their output
//!   (`execs`);
//! - makes the connections of port forwards ([`crate::forward`]) and pumps
//!   them (`forwards`);
//! - takes its providers' credentials (sent on connect and after every
//!   change) for the proxy to substitute.
//!
//! This file owns the session protocol; each relayed stream kind lives in
//! its submodule.
//!
//! When the gateway goes away the sandbox keeps running on its
//! last-known-good policy; the session is re-established with exponential
//! backoff (100 ms doubling to 5 s), and running execs are cancelled (their
//! client is gone with the session).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use openshell_proto::v1 as pb;
use pb::gateway_message::Kind as FromGateway;
use pb::supervisor_message::Kind as ToGateway;

use crate::forward::Dialer;

mod execs;
mod forwards;
use crate::exec::Spawner;
use crate::main_process::MainProcess;
use crate::proxy::generation::Updater;
use crate::ssh;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Messages queued towards the gateway.
const OUTBOUND_QUEUE: usize = 256;
/// Largest output chunk per message.
pub(super) const CHUNK: usize = 32 * 1024;

/// Where and who: from the driver's command line.
#[derive(Debug, Clone)]
pub struct Connection {
    pub endpoint: String,
    /// PEM of the CA that signed the gateway's certificate (https).
    pub ca_pem: Option<String>,
    pub sandbox_id: String,
    pub token: String,
}

/// What the session acts on.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub updater: Updater,
    /// The revision in force (0: none from the gateway).
    pub policy_version: i64,
    /// Starts execs, ssh commands and shells in the sandbox.
    pub spawner: Spawner,
    /// The main process to attach to (none: an idle sandbox).
    pub main: Option<Arc<MainProcess>>,
    /// Where delivered provider credentials go (the proxy reads them).
    pub credentials: crate::proxy::credentials::Credentials,
    /// Where delivered inference routes go (the router reads them).
    pub inference: crate::proxy::inference::Routes,
}

/// How long an exiting supervisor waits for the gateway to take its last
/// messages.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// Keeps the session up until `shutdown` (the sandbox exits): then the
/// queued events are sent and the gateway's acknowledgement awaited.
pub async fn run(
    connection: Connection,
    mut sandbox: Sandbox,
    mut events: mpsc::Receiver<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let dialer = match Dialer::start(sandbox.spawner.init_pid) {
        Ok(dialer) => Some(dialer),
        // A short command can end the sandbox before the session starts
        // (an exited process has no namespaces left): nothing to forward
        // to, and nothing to report (the supervisor's stderr is part of
        // the sandbox's output).
        Err(error)
            if error
                .root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
        {
            None
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "port forwarding is unavailable");
            None
        }
    };
    let ssh = match ssh::Server::new(
        sandbox.spawner.clone(),
        dialer.clone(),
        sandbox.main.clone(),
    ) {
        Ok(server) => Some(Arc::new(server)),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "ssh is unavailable");
            None
        }
    };
    let targets = forwards::Targets { dialer, ssh };
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        let result = session(
            &connection,
            &mut sandbox,
            &targets,
            &mut events,
            &mut shutdown,
        )
        .await;
        if *shutdown.borrow() {
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!("gateway session ended; reconnecting");
                backoff = FIRST_BACKOFF;
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                // The first failure and then every tenth, not every retry.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %format!("{error:#}"), failures, "gateway unreachable; keeping the last-known-good policy and retrying");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancellation(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn channel(connection: &Connection) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(connection.endpoint.clone())
        .with_context(|| format!("invalid gateway endpoint {}", connection.endpoint))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    if let Some(ca) = &connection.ca_pem {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .context("configuring TLS")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", connection.endpoint))
}

/// One session, until the stream breaks.
async fn session(
    connection: &Connection,
    sandbox: &mut Sandbox,
    targets: &forwards::Targets,
    events: &mut mpsc::Receiver<String>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let channel = channel(connection).await?;
    let token: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", connection.token)
            .parse()
            .context("the token is not a valid header value")?;
    let mut client = pb::supervisor_client::SupervisorClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
            Ok(request)
        },
    );
    let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
    outbound
        .send(message(ToGateway::Hello(pb::SessionHello {
            sandbox_id: connection.sandbox_id.clone(),
            policy_version: sandbox.policy_version,
        })))
        .await
        .context("queueing hello")?;
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("opening the session")?
        .into_inner();
    tracing::info!(endpoint = %connection.endpoint, "connected to the gateway");
    let mut execs: HashMap<String, execs::Exec> = HashMap::new();
    let mut forwards: HashMap<String, forwards::Forward> = HashMap::new();
    let result = loop {
        tokio::select! {
            received = inbound.message() => {
                let message = match received {
                    Ok(Some(message)) => message,
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(anyhow::anyhow!("session: {status}")),
                };
                match message.kind {
                    Some(FromGateway::Policy(update)) => {
                        let report = apply(sandbox, update);
                        if outbound.send(message_of(report)).await.is_err() {
                            break Ok(());
                        }
                    }
                    Some(FromGateway::Exec(input)) => {
                        execs::handle(sandbox, &mut execs, &outbound, input).await;
                    }
                    Some(FromGateway::Forward(frame)) => {
                        forwards::handle(targets, &mut forwards, &outbound, frame).await;
                    }
                    Some(FromGateway::Credentials(delivered)) => {
                        sandbox.credentials.replace(&delivered);
                    }
                    Some(FromGateway::Inference(routes)) => {
                        sandbox.inference.replace(&routes);
                    }
                    None => {}
                }
            }
            Some(event) = events.recv() => {
                if outbound.send(message(ToGateway::Event(event))).await.is_err() {
                    break Ok(());
                }
            }
            () = cancellation(shutdown) => {
                let _ = tokio::time::timeout(GOODBYE_WAIT, goodbye(events, &outbound, &mut inbound)).await;
                break Ok(());
            }
        }
    };
    for (_, exec) in execs.drain() {
        exec.cancel();
    }
    for (_, forward) in forwards.drain() {
        forward.cancel();
    }
    result
}

/// Sends the events still queued and a goodbye, then waits until the
/// gateway, having handled them, ends the session.
async fn goodbye(
    events: &mut mpsc::Receiver<String>,
    outbound: &mpsc::Sender<pb::SupervisorMessage>,
    inbound: &mut tonic::Streaming<pb::GatewayMessage>,
) {
    while let Ok(event) = events.try_recv() {
        if outbound
            .send(message(ToGateway::Event(event)))
            .await
            .is_err()
        {
            return;
        }
    }
    if outbound
        .send(message(ToGateway::Goodbye(true)))
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(_)) = inbound.message().await {}
}

pub(super) fn message(kind: ToGateway) -> pb::SupervisorMessage {
    pb::SupervisorMessage { kind: Some(kind) }
}

fn message_of(report: pb::PolicyStatus) -> pb::SupervisorMessage {
    message(ToGateway::PolicyStatus(report))
}

/// Applies a revision; the report says whether it is now in force.
fn apply(sandbox: &mut Sandbox, update: pb::PolicyUpdate) -> pb::PolicyStatus {
    if update.version <= sandbox.policy_version {
        // Already in force (a resend after reconnecting).
        return pb::PolicyStatus {
            version: update.version,
            loaded: update.version == sandbox.policy_version,
            error: String::new(),
        };
    }
    match sandbox.updater.apply_yaml(&update.policy_yaml) {
        Ok(generation) => {
            tracing::info!(
                version = update.version,
                generation,
                "policy revision loaded"
            );
            sandbox.policy_version = update.version;
            pb::PolicyStatus {
                version: update.version,
                loaded: true,
                error: String::new(),
            }
        }
        Err(error) => {
            tracing::error!(version = update.version, %error, "policy revision rejected; the previous one stays in force");
            pb::PolicyStatus {
                version: update.version,
                loaded: false,
                error: error.to_string(),
            }
        }
    }
}

/// Resolves when the stream is cancelled; never when its handle is merely
/// dropped (a finished stream's handle is forgotten while it still runs).
pub(super) async fn cancellation(cancelled: &mut tokio::sync::watch::Receiver<bool>) {
    if cancelled.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}
