//! The probe that verifies an inference route before it is stored: one
//! `GET <base URL>/models` with the route's credentials, over TLS verified
//! against the system roots (`$SSL_CERT_FILE` honoured), as the
//! supervisors will reach it.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use openshell_core::providers::BaseUrl;

/// How long the probe may take in all.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// GETs `<base>/models` with `headers`; the URL probed and the status,
/// or why no response came.
pub async fn models(base: &BaseUrl, headers: &[(String, String)]) -> Result<(String, u16), String> {
    let url = format!("{base}/models");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", base.host, base.port))?;
        let _ = tcp.set_nodelay(true);
        let request = {
            let mut builder = hyper::Request::get(format!("{}/models", base.path))
                .header(hyper::header::HOST, base.authority())
                .header(hyper::header::USER_AGENT, "openshell-gateway probe");
            for (name, value) in headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?
        };
        let status = if base.tls {
            let name = rustls::pki_types::ServerName::try_from(base.host.clone())
                .map_err(|e| format!("{}: {e}", base.host))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config()?)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {}: {e}", base.host))?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        Ok::<u16, String>(status)
    };
    let status = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))??;
    Ok((url, status))
}

async fn send<I>(io: I, request: hyper::Request<Empty<Bytes>>) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}
