//! The pieces of an allowed CONNECT tunnel: what it was allowed as
//! ([`Tunnel`]), classifying its first bytes, terminating TLS with a minted
//! leaf and re-encrypting upstream (docs/policy.md, "TLS"), and replaying
//! bytes already read ([`Rewind`]). [`super::inspect`] serves terminated
//! tunnels with them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Shared;
use super::caller::Caller;
use super::generation::Generation;
use super::response;

/// How long a tunnel may stay silent before its first byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for enough bytes to classify (docs/policy.md, "TLS": 100 ms).
pub const CLASSIFY_WINDOW: Duration = Duration::from_millis(100);
/// What an allowed CONNECT tunnel was allowed as.
#[derive(Debug)]
pub struct Tunnel {
    pub shared: Arc<Shared>,
    pub host: String,
    pub port: u16,
    pub caller: Caller,
    pub generation: Arc<Generation>,
}

/// Accepts the client's TLS with a leaf for the tunnel's host and opens
/// TLS upstream; on an upstream failure the client gets a 502 and `None`.
pub async fn terminate(
    client: Rewind<TcpStream>,
    upstream: TcpStream,
    tunnel: &Tunnel,
) -> Option<(
    tokio_rustls::server::TlsStream<Rewind<TcpStream>>,
    tokio_rustls::client::TlsStream<TcpStream>,
)> {
    let config = match tunnel.shared.authority.server_config(&tunnel.host) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, host = %tunnel.host, "cannot mint a leaf certificate");
            return None;
        }
    };
    // Err: the client rejected our certificate or hung up.
    let mut client = tokio_rustls::TlsAcceptor::from(config)
        .accept(client)
        .await
        .ok()?;
    match upstream_tls(tunnel, upstream).await {
        Ok(upstream) => Some((client, upstream)),
        Err(reason) => {
            tracing::warn!(host = %tunnel.host, port = tunnel.port, %reason, "upstream TLS failed");
            let detail = format!("TLS to {}:{} failed: {reason}", tunnel.host, tunnel.port);
            let _ = client
                .write_all(&response::upstream_tls_failed(&detail).to_bytes())
                .await;
            let _ = client.shutdown().await;
            None
        }
    }
}

/// The tunnel's first bytes (up to the HTTP/2 preface's length when the
/// client sends them within the classification window), without consuming
/// them; `None` when nothing arrives within `wait`.
pub async fn first_bytes(client: &TcpStream, buffered: &[u8], wait: Duration) -> Option<Vec<u8>> {
    if buffered.len() >= 16 {
        return Some(buffered.to_vec());
    }
    if !buffered.is_empty() {
        // What came with the CONNECT head may be all there is for now.
        let mut peeked = [0u8; 24];
        let n = match tokio::time::timeout(CLASSIFY_WINDOW, client.peek(&mut peeked)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        let mut first = buffered.to_vec();
        first.extend_from_slice(&peeked[..n]);
        return Some(first);
    }
    let mut peeked = [0u8; 24];
    let n = tokio::time::timeout(wait, client.peek(&mut peeked))
        .await
        .ok()?
        .ok()?;
    let deadline = Instant::now() + CLASSIFY_WINDOW;
    let mut n = n;
    while buffered.len() + n < 16 && n > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        n = client.peek(&mut peeked).await.ok()?;
    }
    if buffered.is_empty() && n == 0 {
        return None;
    }
    let mut first = buffered.to_vec();
    first.extend_from_slice(&peeked[..n]);
    Some(first)
}

pub async fn upstream_tls(
    tunnel: &Tunnel,
    upstream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let config = tunnel.shared.authority.upstream()?;
    let name = crate::tls::server_name(&tunnel.host)
        .ok_or_else(|| format!("{} is not a valid TLS server name", tunnel.host))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, upstream)
        .await
        .map_err(|e| e.to_string())
}

/// A stream that first replays bytes already read from it.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            prefix,
            position: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.position < this.prefix.len() {
            let rest = &this.prefix[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
