//! Serving an allowed CONNECT tunnel that is not inspected request by
//! request: what the tunnel was allowed as ([`Tunnel`]), classifying its
//! first bytes, terminating TLS with a minted leaf and re-encrypting
//! upstream, and the L4 tunnel that does both (docs/policy.md, "TLS").
//! [`super::inspect`] builds on the same pieces for L7 tunnels.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Shared;
use super::caller::Caller;
use super::generation::{Generation, replaced};
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
            super::inspect::serve(
                client,
                upstream,
                Arc::new(tunnel),
                443,
                super::inspect::Rules::AuthorityOnly,
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
