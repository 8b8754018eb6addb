//! Talking to a gateway (docs/cli.md, "How the CLI authenticates"): a
//! tonic channel over
//! - mTLS: the gateway's CA and the client bundle in the registry;
//! - bearer: TLS verified against the system roots (and the registry's
//!   `ca.crt` when there is one), and the user token from `gateway login`
//!   on every call;
//! - plaintext HTTP/2;
//! - `--gateway-insecure`: TLS without verifying the server and without a
//!   client certificate (a bearer token is still sent).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use openshell_proto::v1::gateway_client::GatewayClient;

use crate::output;
use crate::registry::Target;

/// A gateway client: every call carries the target's credentials.
pub type Client = GatewayClient<InterceptedService<Channel, Credentials>>;

/// What every call carries: the user token of a bearer gateway.
#[derive(Clone)]
pub struct Credentials {
    bearer: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// Connects to the gateway `target` names.
pub async fn connect(target: &Target) -> anyhow::Result<Client> {
    let bearer = match &target.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .context("the stored gateway token is not valid ASCII")?,
        ),
        None if target.auth == "bearer" => anyhow::bail!(
            "not logged in to gateway '{}'\nhint: openshell gateway login {}",
            target.name,
            target.name
        ),
        None => None,
    };
    let https = target.endpoint.starts_with("https://");
    let connected = if https && target.insecure {
        output::warning(&format!(
            "--gateway-insecure: the certificate of {} is not verified",
            target.endpoint
        ));
        insecure(&target.endpoint).await
    } else {
        let endpoint = Endpoint::from_shared(target.endpoint.clone())
            .with_context(|| format!("invalid gateway endpoint {}", target.endpoint))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        let endpoint = if https {
            endpoint
                .tls_config(tls(target)?)
                .context("configuring TLS")?
        } else {
            endpoint
        };
        endpoint.connect().await.map_err(anyhow::Error::from)
    };
    let channel = connected.with_context(|| {
        format!(
            "cannot reach gateway '{}' at {}",
            target.name, target.endpoint
        )
    })?;
    Ok(GatewayClient::with_interceptor(
        channel,
        Credentials { bearer },
    ))
}

/// The TLS configuration of a verified `https://` gateway.
fn tls(target: &Target) -> anyhow::Result<ClientTlsConfig> {
    let read = |file: &str| {
        let path = target.mtls_dir.join(file);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "mTLS certificates for gateway '{}' were not found ({})",
                target.name,
                path.display()
            )
        })
    };
    if target.auth == "bearer" {
        // A reverse proxy's public certificate, or a private CA the
        // registration holds.
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Ok(ca) = read("ca.crt") {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        return Ok(tls);
    }
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")?))
        .identity(Identity::from_pem(read("tls.crt")?, read("tls.key")?)))
}

/// A channel over TLS that accepts any server certificate. tonic's own
/// TLS always verifies, so the connection is made here and handed to tonic
/// as a plain stream (the endpoint's scheme becomes `http`).
async fn insecure(url: &str) -> anyhow::Result<Channel> {
    let uri: tonic::codegen::http::Uri = url.parse().context("invalid gateway endpoint")?;
    let host = uri
        .host()
        .context("the gateway endpoint has no host")?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("configuring TLS")?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']))
        .context("the gateway endpoint's host is no valid TLS name")?
        .to_owned();
    let channel = Endpoint::from_shared(url.replacen("https://", "http://", 1))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp =
                    tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(channel)
}

/// Accepts every server certificate (`--gateway-insecure` only).
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A single-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
