//! Moving bytes once a connection is allowed: the CONNECT tunnel, and the
//! single request of a forward-proxy connection with its body delimited
//! exactly (so nothing after it reaches the upstream unchecked).

use std::io::Cursor;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::generation::{Generation, replaced};
use super::request::{Framing, Head};

/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: u64 = 4096;
/// Headers dropped from a forwarded request (hop-by-hop or proxy-only).
const DROPPED_HEADERS: [&str; 5] = [
    "proxy-connection",
    "proxy-authorization",
    "connection",
    "keep-alive",
    "te",
];

/// Relays both directions until either side closes or the policy
/// generation the tunnel was allowed under is replaced.
pub async fn tunnel(
    client: TcpStream,
    upstream: TcpStream,
    mut generations: watch::Receiver<Arc<Generation>>,
    pinned: u64,
) {
    tokio::select! {
        _ = super::splice::relay(&client, &upstream) => {}
        _ = replaced(&mut generations, pinned) => {
            tracing::info!(generation = pinned, "closing a tunnel: the policy generation was replaced");
        }
    }
}

/// The origin-form request head sent upstream: same method and headers,
/// minus hop-by-hop ones, with `Connection: close`.
pub fn upstream_head(head: &Head, path: &str) -> Vec<u8> {
    let mut out = format!("{} {path} HTTP/1.1\r\n", head.method).into_bytes();
    for (name, value) in &head.headers {
        if DROPPED_HEADERS.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Forwards one request (head, then exactly its body) and relays the
/// response until the upstream closes.
pub async fn forward(
    client: TcpStream,
    mut upstream: TcpStream,
    head: Vec<u8>,
    framing: Framing,
    buffered: Vec<u8>,
    mut generations: watch::Receiver<Arc<Generation>>,
    pinned: u64,
) {
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    let (client_read, mut client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();
    let body = async move {
        let mut reader = BufReader::new(Cursor::new(buffered).chain(client_read));
        let _ = copy_body(&mut reader, &mut upstream_write, framing).await;
        upstream_write
    };
    let response = async move {
        let mut upstream_read = upstream_read;
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(body, response) } => {}
        _ = replaced(&mut generations, pinned) => {}
    }
}

/// Copies exactly one body as framed; a malformed chunked body ends the copy.
async fn copy_body<R, W>(reader: &mut R, writer: &mut W, framing: Framing) -> std::io::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None => Ok(()),
        Framing::Length(length) => {
            let copied = tokio::io::copy(&mut reader.take(length), writer).await?;
            if copied < length {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(())
        }
        Framing::Chunked => loop {
            let line = read_line(reader).await?;
            writer.write_all(&line).await?;
            let size_text = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.trim_end().split(';').next())
                .map(str::trim)
                .ok_or(std::io::ErrorKind::InvalidData)?;
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let trailer = read_line(reader).await?;
                    writer.write_all(&trailer).await?;
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(());
                    }
                }
            }
            let want = size + 2; // data and its CRLF
            let copied = tokio::io::copy(&mut reader.take(want), writer).await?;
            if copied < want {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        },
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_CHUNK_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 || !line.ends_with(b"\n") {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(input: &[u8], framing: Framing) -> (std::io::Result<()>, Vec<u8>) {
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        let result = copy_body(&mut reader, &mut out, framing).await;
        (result, out)
    }

    #[tokio::test]
    async fn copies_exactly_one_body_and_nothing_after_it() {
        let smuggled = b"hello GET /admin HTTP/1.1\r\n\r\n";
        let (result, out) = body(smuggled, Framing::Length(5)).await;
        assert!(result.is_ok());
        assert_eq!(out, b"hello");

        let chunked = b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /admin HTTP/1.1\r\n\r\n";
        let (result, out) = body(chunked, Framing::Chunked).await;
        assert!(result.is_ok());
        assert_eq!(out, b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");

        let (result, _) = body(b"zz\r\n", Framing::Chunked).await;
        assert!(result.is_err());
        let (result, _) = body(b"abc", Framing::Length(5)).await;
        assert!(result.is_err());
    }

    #[test]
    fn upstream_head_is_origin_form_without_hop_by_hop_headers() {
        let head = super::super::request::parse_head(
            b"GET http://h.test/x?y HTTP/1.1\r\nHost: h.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: secret\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(upstream_head(&head, "/x?y")).unwrap(),
            "GET /x?y HTTP/1.1\r\nHost: h.test\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }
}
