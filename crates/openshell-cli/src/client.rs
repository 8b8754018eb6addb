//! Talking to a gateway: a tonic channel over mTLS (the client bundle in
//! the registry) or plaintext HTTP/2.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use openshell_proto::v1::gateway_client::GatewayClient;

use crate::registry::Target;

/// Connects to the gateway `target` names.
pub async fn connect(target: &Target) -> anyhow::Result<GatewayClient<Channel>> {
    let mut endpoint = Channel::from_shared(target.endpoint.clone())
        .with_context(|| format!("invalid gateway endpoint {}", target.endpoint))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    if target.endpoint.starts_with("https://") {
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
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")?))
            .identity(Identity::from_pem(read("tls.crt")?, read("tls.key")?));
        endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
    }
    let channel = endpoint.connect().await.with_context(|| {
        format!(
            "cannot reach gateway '{}' at {}",
            target.name, target.endpoint
        )
    })?;
    Ok(GatewayClient::new(channel))
}

/// A single-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
