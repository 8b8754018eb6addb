//! Moving bytes once a connection is allowed: the CONNECT tunnel, and the
//! single request of a forward-proxy connection with its body delimited
//! exactly (so nothing after it reaches the upstream unchecked).

use std::io::Cursor;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::generation::{Generation, replaced};
use super::request::{Framing, Head, Target};

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
/// minus hop-by-hop ones, with `Connection: close`, and a `Host` naming the
/// URL's authority when the request had none.
pub fn upstream_head(head: &Head, path: &str, target: &Target) -> Vec<u8> {
    let mut out = format!("{} {path} HTTP/1.1\r\n", head.method).into_bytes();
    if head.header("host").is_none() {
        let host = target.host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let host = match target.port() {
            80 => host,
            port => format!("{host}:{port}"),
        };
        out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
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

/// The one request of a forward-proxy connection, as it goes upstream.
#[derive(Debug)]
pub struct Request {
    /// The origin-form head ([`upstream_head`]).
    pub head: Vec<u8>,
    pub framing: Framing,
    /// What of the body was read with the head.
    pub buffered: Vec<u8>,
    /// The request was `HEAD` (its response has no body).
    pub head_request: bool,
    /// Relay the body through a credential scanner (the sandbox has
    /// credentials and the body was not checked whole).
    pub scan: Option<Arc<super::credentials::Set>>,
}

/// Forwards one request (head, then exactly its body) and relays exactly
/// one response: its head rewritten, its body moved in the kernel when its
/// length is known or runs to the upstream's close. The connection ends
/// with the response, also when the upstream would keep it open. A body
/// scanned for credentials that stops on a placeholder cuts the
/// connection.
pub async fn forward(
    client: TcpStream,
    mut upstream: TcpStream,
    request: Request,
    mut generations: watch::Receiver<Arc<Generation>>,
    pinned: u64,
) {
    let Request {
        head,
        framing,
        buffered,
        head_request,
        scan,
    } = request;
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    let (client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let body = async move {
        let mut reader = BufReader::new(Cursor::new(buffered).chain(client_read));
        match scan {
            None => {
                let _ = copy_body(&mut reader, &mut upstream_write, framing).await;
            }
            Some(set) => {
                let mut scanned = super::credentials::ScanningWriter::new(&mut upstream_write, set);
                let copied = copy_body(&mut reader, &mut scanned, framing).await;
                if copied.is_err() || scanned.finish().await.is_err() {
                    tracing::warn!(
                        "forward request cut: its body carried a credential placeholder or broke off"
                    );
                    return;
                }
            }
        }
        // Never done: the upstream's write half stays open (a half-close
        // could end the exchange early on some upstreams) until the
        // response ends the select below, which drops it.
        std::future::pending::<()>().await;
    };
    let response = async move {
        if let Ok((body, rest)) =
            relay_response_head(&mut upstream_read, &mut client_write, head_request).await
        {
            let _ = relay_response_body(&mut upstream_read, &mut client_write, body, rest).await;
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = response => {}
        _ = body => {}
        _ = replaced(&mut generations, pinned) => {}
    }
}

/// Largest response head rewritten; a larger one is relayed as it is.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most response headers parsed for the body's framing.
const MAX_RESPONSE_HEADERS: usize = 128;
/// Response headers replaced by `Connection: close`.
const RESPONSE_CONNECTION_HEADERS: [&str; 3] = ["connection", "keep-alive", "proxy-connection"];

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseBody {
    /// No body: a `HEAD` request's, a 204's or a 304's.
    None,
    Length(u64),
    Chunked,
    /// No length given (or an unparsable head): until the upstream closes.
    UntilClose,
}

/// The body that follows the final response `head`.
fn response_body(head: &[u8], head_request: bool) -> ResponseBody {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(head), Ok(httparse::Status::Complete(_))) {
        return ResponseBody::UntilClose;
    }
    if head_request || matches!(response.code, Some(204 | 304)) {
        return ResponseBody::None;
    }
    let framing = super::request::framing_of(response.headers.iter().map(|h| (h.name, h.value)));
    match framing {
        Some(Framing::Length(length)) => ResponseBody::Length(length),
        Some(Framing::Chunked) => ResponseBody::Chunked,
        Some(Framing::None) | None => ResponseBody::UntilClose,
    }
}

/// Relays the upstream's response head with `Connection: close` in its
/// final head: the proxy serves one request per connection and then
/// closes it, and a client told nothing would send its next request into
/// the closed connection. Interim (1xx) heads pass as they are. Returns
/// how the body ends and the bytes of it already read.
async fn relay_response_head<R, W>(
    upstream: &mut R,
    client: &mut W,
    head_request: bool,
) -> std::io::Result<(ResponseBody, Vec<u8>)>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_len = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(end + 4);
            }
            if buf.len() > MAX_RESPONSE_HEAD {
                break None;
            }
            let mut chunk = [0u8; 8192];
            let n = upstream.read(&mut chunk).await?;
            if n == 0 {
                // Closed before a whole head: what came is all there is.
                return Ok((ResponseBody::UntilClose, buf));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(head_len) = head_len else {
            return Ok((ResponseBody::UntilClose, buf));
        };
        let status = buf.get(9..12).unwrap_or_default();
        if status.starts_with(b"1") && status != b"101" {
            client.write_all(&buf[..head_len]).await?;
            buf.drain(..head_len);
            continue;
        }
        let body = match status {
            b"101" => ResponseBody::UntilClose,
            _ => response_body(&buf[..head_len], head_request),
        };
        client.write_all(&closing_head(&buf[..head_len])).await?;
        return Ok((body, buf.split_off(head_len)));
    }
}

/// Relays the response body after its head, `rest` being what was read of
/// it already; a body of known length or one that runs to the close moves
/// in the kernel ([`super::splice::copy`]), a chunked one is checked as
/// requests are.
async fn relay_response_body(
    upstream: &mut tokio::net::tcp::OwnedReadHalf,
    client: &mut tokio::net::tcp::OwnedWriteHalf,
    body: ResponseBody,
    mut rest: Vec<u8>,
) -> std::io::Result<()> {
    match body {
        ResponseBody::None => Ok(()),
        ResponseBody::Length(length) => {
            rest.truncate(usize::try_from(length).unwrap_or(usize::MAX));
            client.write_all(&rest).await?;
            let left = length - rest.len() as u64;
            super::splice::copy(upstream.as_ref(), client.as_ref(), Some(left)).await?;
            Ok(())
        }
        ResponseBody::UntilClose => {
            client.write_all(&rest).await?;
            super::splice::copy(upstream.as_ref(), client.as_ref(), None).await?;
            Ok(())
        }
        ResponseBody::Chunked => {
            let mut reader = BufReader::new(Cursor::new(rest).chain(upstream));
            copy_body(&mut reader, client, Framing::Chunked).await
        }
    }
}

/// `head` (ending with the blank line) with its connection headers
/// replaced by `Connection: close`.
fn closing_head(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 19);
    let lines = head
        .strip_suffix(b"\r\n\r\n")
        .unwrap_or(head)
        .split(|b| *b == b'\n');
    for (i, line) in lines.enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        if i > 0
            && RESPONSE_CONNECTION_HEADERS
                .iter()
                .any(|h| name.trim().eq_ignore_ascii_case(h))
        {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
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
        // Strictly (RFC 9112 §7.1): every line ends with CRLF, the size is
        // hex digits only (no `+`, no spaces), the data is followed by CRLF.
        // Each part is checked before it is forwarded, so a shape the
        // upstream could read otherwise never reaches it.
        Framing::Chunked => loop {
            let line = read_line(reader).await?;
            let size = chunk_size(&line).ok_or(std::io::ErrorKind::InvalidData)?;
            writer.write_all(&line).await?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let trailer = read_line(reader).await?;
                    writer.write_all(&trailer).await?;
                    if trailer == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            let copied = tokio::io::copy(&mut reader.take(size), writer).await?;
            if copied < size {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut end = [0u8; 2];
            reader.read_exact(&mut end).await?;
            if &end != b"\r\n" {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            writer.write_all(&end).await?;
        },
    }
}

/// The size of a chunk-size line (`1a;ext=x\r\n`): hex digits only, at
/// most 15 of them, optionally followed by extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.split(|b| *b == b';').next()?;
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A line ending with CRLF (a bare LF is refused), at most
/// [`MAX_CHUNK_LINE`] long.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_CHUNK_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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

        for bad in [
            &b"zz\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"fffffffffffffffff\r\n",
        ] {
            let (result, out) = body(bad, Framing::Chunked).await;
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(
                !out.ends_with(b"\r\n\r\n"),
                "a malformed body was forwarded whole: {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (result, out) = body(b"+5\r\nhello\r\n", Framing::Chunked).await;
        assert!(result.is_err());
        assert!(out.is_empty(), "the bad size line itself was forwarded");
        let (result, _) = body(b"abc", Framing::Length(5)).await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn the_response_says_the_connection_closes() {
        let upstream = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok";
        let mut reader = &upstream[..];
        let mut out = Vec::new();
        let (body, rest) = relay_response_head(&mut reader, &mut out, false)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            (body, rest.as_slice()),
            (ResponseBody::Length(2), &b"ok"[..])
        );
        // No head at all (the upstream closed): relayed as it came.
        let mut reader = &b"HTTP/1.1 2"[..];
        let mut out = Vec::new();
        let (body, rest) = relay_response_head(&mut reader, &mut out, false)
            .await
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(
            (body, rest.as_slice()),
            (ResponseBody::UntilClose, &b"HTTP/1.1 2"[..])
        );
    }

    #[test]
    fn a_response_body_ends_as_its_head_says() {
        let body = |head: &str, head_request| response_body(head.as_bytes(), head_request);
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", false),
            ResponseBody::Length(7)
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true),
            ResponseBody::None
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            ResponseBody::Chunked
        );
        for no_body in ["204 No Content", "304 Not Modified"] {
            assert_eq!(
                body(
                    &format!("HTTP/1.1 {no_body}\r\nContent-Length: 7\r\n\r\n"),
                    false
                ),
                ResponseBody::None
            );
        }
        // No length, or lengths that disagree: until the upstream closes.
        assert_eq!(
            body("HTTP/1.1 200 OK\r\n\r\n", false),
            ResponseBody::UntilClose
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            ResponseBody::UntilClose
        );
    }

    /// An upstream that keeps connections alive whatever the request says
    /// answers `responses` in turn, each after reading one request head;
    /// returns its address.
    async fn keep_alive_upstream(response: &'static [u8]) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_err() {
                    return;
                }
                head.push(byte[0]);
            }
            stream.write_all(response).await.unwrap();
            // Never closes: only the proxy ending the exchange does.
            std::future::pending::<()>().await;
        });
        address
    }

    /// The proxy's side of one forwarded exchange against `response`;
    /// returns what the client received, which must end (the connection
    /// closes once the response is whole).
    async fn exchange(response: &'static [u8], head_request: bool) -> Vec<u8> {
        let upstream_address = keep_alive_upstream(response).await;
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_address = proxy.local_addr().unwrap();
        let (_tx, generations) =
            super::super::generation::channel(openshell_policy::defaults::default_policy());
        tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            let upstream = TcpStream::connect(upstream_address).await.unwrap();
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
            let request = Request {
                head,
                framing: Framing::None,
                buffered: Vec::new(),
                head_request,
                scan: None,
            };
            forward(client, upstream, request, generations, 1).await;
        });
        let mut client = TcpStream::connect(proxy_address).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut got),
        )
        .await
        .expect("the proxy kept the connection open after the response")
        .unwrap();
        got
    }

    #[tokio::test]
    async fn one_response_is_relayed_whole_and_then_the_connection_closes() {
        // A long body (several pipe loads through splice) with a length.
        let long: &'static [u8] = Box::leak(
            [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n"[..],
                &vec![b'x'; 3_000_000],
                b"EXTRA",
            ]
            .concat()
            .into_boxed_slice(),
        );
        let got = exchange(long, false).await;
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n";
        assert!(got.starts_with(head));
        assert_eq!(
            got.len(),
            head.len() + 3_000_000,
            "bytes after the body were relayed"
        );

        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nEXTRA";
        let got = exchange(chunked, false).await;
        assert!(
            got.ends_with(b"5\r\nhello\r\n0\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );

        let head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        let got = exchange(head_only, true).await;
        assert!(got.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn upstream_head_is_origin_form_without_hop_by_hop_headers() {
        let head = super::super::request::parse_head(
            b"GET http://h.test/x?y HTTP/1.1\r\nHost: h.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: secret\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(upstream_head(
                &head,
                "/x?y",
                &Target::Forward {
                    host: "h.test".into(),
                    port: 80,
                    path: "/x?y".into()
                }
            ))
            .unwrap(),
            "GET /x?y HTTP/1.1\r\nHost: h.test\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        // Without a Host header the URL's authority is sent.
        let bare =
            super::super::request::parse_head(b"GET http://h.test:8080/ HTTP/1.1\r\n\r\n").unwrap();
        let target = Target::Forward {
            host: "h.test".into(),
            port: 8080,
            path: "/".into(),
        };
        assert!(
            String::from_utf8(upstream_head(&bare, "/", &target))
                .unwrap()
                .starts_with("GET / HTTP/1.1\r\nHost: h.test:8080\r\n")
        );
    }
}
