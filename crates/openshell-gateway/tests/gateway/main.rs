//! The gateway over real sockets: real PKI and mTLS, a temporary SQLite
//! database, gRPC and HTTP on the same port. Supervisor sessions (tokens,
//! policy revisions, the exec relay) are in `session.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

use openshell_gateway::api::{Api, WORKSPACE_HEADER};
use openshell_gateway::auth::Tokens;
use openshell_gateway::pki::{self, Pki};
use openshell_gateway::server;
use openshell_gateway::store::Store;
use openshell_proto::v1 as pb;
use openshell_proto::v1::gateway_client::GatewayClient;
use openshell_proto::v1::supervisor_client::SupervisorClient;

mod identity;
mod providers;
mod session;

/// A gateway serving on 127.0.0.1:0; stops on drop.
pub(crate) struct Gateway {
    addr: SocketAddr,
    pki: Pki,
    pub(crate) tokens: Tokens,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn start(state: &Path) -> Gateway {
    start_serving(state, true).await
}

/// [`start`], with or without the user API on its listener.
async fn start_serving(state: &Path, user_api: bool) -> Gateway {
    let store = Store::open(&state.join("gateway.db")).await.unwrap();
    let pki = Pki::load_or_create(&state.join("pki"), &pki::server_names(&[])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let tokens = Tokens::load_or_create(state).unwrap();
    let config = server::Config {
        tls: Some(pki.server_config().unwrap()),
        require_identity: true,
        tokens: tokens.clone(),
        user_api,
    };
    let keyring = openshell_gateway::secrets::Keyring::load_or_create(state).unwrap();
    let task = tokio::spawn(server::run(listener, config, Api::new(store, keyring), rx));
    Gateway {
        addr,
        pki,
        tokens,
        shutdown,
        task,
    }
}

/// What the gateway sends a test supervisor.
#[derive(Debug)]
pub(crate) struct Inbound {
    inner: tonic::Streaming<pb::GatewayMessage>,
    skip_credentials: bool,
}

impl Inbound {
    pub(crate) async fn message(&mut self) -> Result<Option<pb::GatewayMessage>, tonic::Status> {
        loop {
            let message = self.inner.message().await?;
            if self.skip_credentials
                && matches!(
                    message.as_ref().and_then(|m| m.kind.as_ref()),
                    Some(
                        pb::gateway_message::Kind::Credentials(_)
                            | pb::gateway_message::Kind::Inference(_)
                    )
                )
            {
                continue;
            }
            return Ok(message);
        }
    }
}

impl Gateway {
    pub(crate) async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap();
    }

    pub(crate) fn client_files(&self) -> (String, String) {
        let dir = self.pki.dir.join(pki::CLIENT_DIR);
        (
            std::fs::read_to_string(dir.join(pki::CLIENT_CERT)).unwrap(),
            std::fs::read_to_string(dir.join(pki::CLIENT_KEY)).unwrap(),
        )
    }

    pub(crate) async fn client(&self) -> GatewayClient<Channel> {
        GatewayClient::new(self.channel(true).await)
    }

    /// A channel that trusts the gateway's CA, with or without the CLI's
    /// client certificate.
    pub(crate) async fn channel(&self, with_client_cert: bool) -> Channel {
        let identity = with_client_cert.then(|| self.client_files());
        self.channel_as(identity).await
    }

    /// A channel that trusts the gateway's CA and presents `identity`
    /// (certificate and key PEM), if any.
    pub(crate) async fn channel_as(&self, identity: Option<(String, String)>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.pki.ca_cert))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", self.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A supervisor's session with `token` (no client certificate), after
    /// `hello`: the gateway's messages (credential and inference deliveries left out),
    /// and the sender for ours.
    pub(crate) async fn session(
        &self,
        token: &str,
        hello_id: &str,
        policy_version: i64,
    ) -> Result<(Inbound, tokio::sync::mpsc::Sender<pb::SupervisorMessage>), tonic::Status> {
        let (inner, tx) = self.session_raw(token, hello_id, policy_version).await?;
        Ok((
            Inbound {
                inner,
                skip_credentials: true,
            },
            tx,
        ))
    }

    /// [`Gateway::session`] with every message, credentials included.
    pub(crate) async fn session_raw(
        &self,
        token: &str,
        hello_id: &str,
        policy_version: i64,
    ) -> Result<
        (
            tonic::Streaming<pb::GatewayMessage>,
            tokio::sync::mpsc::Sender<pb::SupervisorMessage>,
        ),
        tonic::Status,
    > {
        let header: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        let mut client = SupervisorClient::with_interceptor(
            self.channel(false).await,
            move |mut request: Request<()>| {
                request
                    .metadata_mut()
                    .insert("authorization", header.clone());
                Ok(request)
            },
        );
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(supervisor(pb::supervisor_message::Kind::Hello(
            pb::SessionHello {
                sandbox_id: hello_id.to_owned(),
                policy_version,
            },
        )))
        .await
        .unwrap();
        let inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok((inbound, tx))
    }
}

pub(crate) fn supervisor(kind: pb::supervisor_message::Kind) -> pb::SupervisorMessage {
    pb::SupervisorMessage { kind: Some(kind) }
}

pub(crate) const POLICY_V1: &str = "version: 1\n";
pub(crate) const POLICY_V2: &str = "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: api.example.test\n        port: 443\n    binaries:\n      - path: /usr/bin/curl\n";
pub(crate) const POLICY_V3: &str = "version: 1\nfilesystem_policy:\n  read_only: [/opt]\n";

/// Creates workspace `name` (as the admin `client` is).
pub(crate) async fn new_workspace(client: &mut GatewayClient<Channel>, name: &str) {
    client
        .create_workspace(pb::CreateWorkspaceRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

pub(crate) fn create(
    name: &str,
    policy: &str,
    labels: &[(&str, &str)],
) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        name: name.to_owned(),
        spec: Some(pb::SandboxSpec {
            command: vec!["true".into()],
            policy_yaml: policy.to_owned(),
            env: Default::default(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn health_answers_over_mtls_on_the_grpc_port() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let health = gateway
        .client()
        .await
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "serving");
    assert_eq!(health.version, openshell_core::VERSION);
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&gateway.pki.ca_cert))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", gateway.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    // TLS lets it in (supervisors have no certificate); the user API does not.
    let refused = GatewayClient::new(channel.unwrap())
        .health(pb::HealthRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("client certificate"),
        "{refused:?}"
    );

    // A certificate from another CA fails the handshake itself.
    let other = Pki::load_or_create(&dir.path().join("other"), &pki::server_names(&[])).unwrap();
    let other_dir = other.dir.join(pki::CLIENT_DIR);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&gateway.pki.ca_cert))
        .identity(Identity::from_pem(
            std::fs::read_to_string(other_dir.join(pki::CLIENT_CERT)).unwrap(),
            std::fs::read_to_string(other_dir.join(pki::CLIENT_KEY)).unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", gateway.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    // TLS 1.3 may finish the handshake client-side and send the alert
    // after; either way no request succeeds.
    if let Ok(channel) = channel {
        let result = GatewayClient::new(channel)
            .health(pb::HealthRequest {})
            .await;
        assert!(result.is_err(), "a foreign certificate got an answer");
    }
    gateway.stop().await;
}

/// `GET path` as plain HTTP/1.1 over TLS on the gateway's port, with or
/// without the CLI's client certificate; the whole response.
async fn http_get(gateway: &Gateway, path: &str, with_client_cert: bool) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(gateway.pki.ca_cert.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if with_client_cert {
        let (cert, key) = gateway.client_files();
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response
}

/// The listener containers can reach (the docker driver's bridge address)
/// serves supervisors and health only: not the user API, not metrics, even
/// to a client with the CLI's certificate.
#[tokio::test]
async fn a_listener_without_the_user_api_serves_supervisors_only() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_serving(dir.path(), false).await;
    let refused = gateway
        .client()
        .await
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("serves sandbox supervisors only"),
        "{refused:?}"
    );
    let response = http_get(&gateway, "/metrics", true).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(!response.contains("openshell_sandboxes"), "{response}");
    let response = http_get(&gateway, "/healthz", false).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    // Nor the login page: no token is checked where containers reach.
    let response = http_get(
        &gateway,
        "/auth/connect?callback_port=1&code=ABCD-EFGH",
        false,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    // The supervisors' service is there: a session is judged (this token's
    // sandbox does not exist), not unknown.
    let judged = gateway
        .session(&gateway.tokens.mint("nothing"), "nothing", 0)
        .await
        .unwrap_err();
    assert_eq!(judged.code(), Code::NotFound, "{judged:?}");
    gateway.stop().await;
}

/// Plain HTTP on the same port: health and readiness for anyone, metrics
/// only with the client certificate.
#[tokio::test]
async fn health_readiness_and_metrics_are_plain_http_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let response = http_get(&gateway, "/healthz", false).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    let response = http_get(&gateway, "/readyz", false).await;
    assert!(response.ends_with("ready\n"), "{response}");

    gateway
        .client()
        .await
        .create_sandbox(create("counted", "", &[]))
        .await
        .unwrap();
    let response = http_get(&gateway, "/metrics", true).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for line in [
        "openshell_sandboxes{phase=\"Provisioning\"} 1\n",
        "openshell_sandboxes{phase=\"Ready\"} 0\n",
        "openshell_supervisor_sessions 0\n",
        "# TYPE openshell_sandboxes gauge\n",
    ] {
        assert!(response.contains(line), "{line}: {response}");
    }
    let refused = http_get(&gateway, "/metrics", false).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(!refused.contains("openshell_sandboxes"), "{refused}");
    gateway.stop().await;
}

#[tokio::test]
async fn sandboxes_are_created_listed_by_selector_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let created = client
        .create_sandbox(create("alpha", "version: 1\n", &[("team", "red")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "alpha");
    assert_eq!(created.phase, "Provisioning");
    assert_eq!(created.policy_version, 1);
    client
        .create_sandbox(create("beta", "", &[("team", "blue")]))
        .await
        .unwrap();
    let generated = client
        .create_sandbox(create("", "", &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(generated.name.starts_with("sandbox-"), "{}", generated.name);

    let red = client
        .list_sandboxes(pb::ListSandboxesRequest {
            selector: [("team".to_owned(), "red".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(
        red.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["alpha"]
    );

    let duplicate = client
        .create_sandbox(create("alpha", "", &[]))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(duplicate.message(), "sandbox 'alpha' already exists");

    let deleted = client
        .delete_sandbox(pb::DeleteSandboxRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    let missing = client
        .get_sandbox(pb::GetSandboxRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "sandbox 'alpha' not found");
    gateway.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let invalid = client
        .create_sandbox(create(
            "bad",
            "version: 1\nfilesystem_policy:\n  read_write: [/]\n",
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid
            .message()
            .contains("read-write path is overly broad: /"),
        "{}",
        invalid.message()
    );
    let bad_name = client
        .create_sandbox(create("Bad_Name", "", &[]))
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);
    let mut request = Request::new(pb::ListSandboxesRequest::default());
    request
        .metadata_mut()
        .insert(WORKSPACE_HEADER, "no/such".parse().unwrap());
    assert_eq!(
        client.list_sandboxes(request).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let huge = create("huge", &"#".repeat(5 * 1024 * 1024), &[]);
    let too_big = client.create_sandbox(huge).await.unwrap_err();
    // tonic's answer to a message over the limit.
    assert_eq!(too_big.code(), Code::OutOfRange, "{too_big:?}");
    assert!(
        too_big.message().contains("message length too large"),
        "{too_big:?}"
    );
    let all = client
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert!(all.is_empty(), "{all:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    gateway
        .client()
        .await
        .create_sandbox(create("kept", "", &[("k", "v")]))
        .await
        .unwrap();
    let ca_before = gateway.pki.ca_cert.clone();
    gateway.stop().await;

    let gateway = start(dir.path()).await;
    assert_eq!(
        gateway.pki.ca_cert, ca_before,
        "the PKI is reused, not recreated"
    );
    let kept = gateway
        .client()
        .await
        .get_sandbox(pb::GetSandboxRequest {
            name: "kept".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.spec.unwrap().labels["k"], "v");
    gateway.stop().await;
}

#[tokio::test]
async fn settings_are_checked_scoped_and_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    client.create_sandbox(create("box", "", &[])).await.unwrap();
    let set = |name: &str, key: &str, value: &str| pb::SetSettingRequest {
        name: name.into(),
        key: key.into(),
        value: value.into(),
    };
    client
        .set_setting(set("", "proposal_approval_mode", "AUTO"))
        .await
        .unwrap();
    client
        .set_setting(set("box", "ocsf_json_enabled", "yes"))
        .await
        .unwrap();
    let unknown = client
        .set_setting(set("box", "colour", "red"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let bad = client
        .set_setting(set("box", "ocsf_json_enabled", "maybe"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let seen = |settings: pb::Settings| -> Vec<(String, String, String)> {
        settings
            .settings
            .into_iter()
            .map(|s| (s.key, s.value, s.scope))
            .collect()
    };
    let view = client
        .get_settings(pb::GetSettingsRequest { name: "box".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen(view),
        [
            ("ocsf_json_enabled".into(), "true".into(), "sandbox".into()),
            (
                "proposal_approval_mode".into(),
                "auto".into(),
                "global".into()
            ),
        ]
    );
    let after = client
        .delete_setting(pb::DeleteSettingRequest {
            name: "box".into(),
            key: "ocsf_json_enabled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen(after),
        [(
            "proposal_approval_mode".into(),
            "auto".into(),
            "global".into()
        )]
    );
    gateway.stop().await;
}
