//! Reading and classifying what the agent sends the proxy: a bounded
//! request head, parsed with `httparse`, turned into an egress target.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest request head accepted (docs/policy.md, "Limits": 8 KiB).
pub const MAX_HEAD_BYTES: usize = 8192;
/// Most header lines in one head.
pub const MAX_HEADERS: usize = 100;
/// A client that has not finished its head by then is dropped.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadHeadError {
    #[error("request head exceeds {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("connection closed before a complete request head")]
    Closed,
    #[error("no complete request head within {HEAD_TIMEOUT:?}")]
    TimedOut,
    #[error("reading the request head")]
    Io(#[source] std::io::Error),
}

/// Reads until the blank line ending the head. Returns the head's length;
/// `buf` keeps any bytes that followed it (a body, or a TLS ClientHello
/// sent right after CONNECT).
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, ReadHeadError> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let searched_from = buf.len().saturating_sub(3);
            let n = stream.read(&mut chunk).await.map_err(ReadHeadError::Io)?;
            if n == 0 {
                return Err(ReadHeadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find_head_end(&buf[searched_from..]) {
                let head_len = searched_from + end;
                if head_len > MAX_HEAD_BYTES {
                    return Err(ReadHeadError::TooLarge);
                }
                return Ok(head_len);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(ReadHeadError::TooLarge);
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .unwrap_or(Err(ReadHeadError::TimedOut))
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Parses a complete head (as returned by [`read_head`]). `None` for
/// anything malformed, which the proxy answers with a bare 400.
pub fn parse_head(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    // HTTP/1.0 too: Python's http.client sends `CONNECT … HTTP/1.0`.
    if !matches!(request.version, Some(0 | 1)) {
        return None;
    }
    Some(Head {
        method: request.method?.to_owned(),
        target: request.path?.to_owned(),
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    })
}

/// How a request body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The body framing, or `None` when the length headers are ambiguous
/// (both `Content-Length` and `Transfer-Encoding`, differing lengths, a
/// coding other than a final `chunked`): the classic smuggling shapes.
pub fn framing(head: &Head) -> Option<Framing> {
    framing_of(
        head.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice())),
    )
}

/// [`framing`] from any list of headers (a response's too; there "no
/// framing headers" means the body runs until the connection closes).
pub fn framing_of<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Option<Framing> {
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut codings: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.push(value);
        }
    }
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Some(Framing::None),
        ([], [coding]) if coding.trim_ascii().eq_ignore_ascii_case(b"chunked") => {
            Some(Framing::Chunked)
        }
        ([], _) => None,
        (lengths, []) => {
            let first = lengths[0];
            if lengths.iter().any(|l| *l != first) {
                return None;
            }
            let text = std::str::from_utf8(first).ok()?.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse().ok().map(Framing::Length)
        }
        _ => None,
    }
}

/// Where the agent wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`.
    Connect { host: String, port: u16 },
    /// An absolute-form `http://` request.
    Forward {
        host: String,
        port: u16,
        /// Origin-form target: path and query.
        path: String,
    },
}

impl Target {
    pub fn host(&self) -> &str {
        match self {
            Target::Connect { host, .. } | Target::Forward { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Target::Connect { port, .. } | Target::Forward { port, .. } => *port,
        }
    }
}

/// Why a forward request's `Host` does not go with its absolute-form URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMismatch(pub String);

/// A forward request's `Host` headers against its URL's authority: none
/// (the proxy adds it) or one naming the same host and port.
pub fn check_host(head: &Head, host: &str, port: u16) -> Result<(), HostMismatch> {
    let hosts: Vec<&[u8]> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_slice())
        .collect();
    match hosts.as_slice() {
        [] => Ok(()),
        [one] => {
            let text = String::from_utf8_lossy(one);
            if authority_matches(text.trim(), host, port, 80) {
                Ok(())
            } else {
                Err(HostMismatch(text.into_owned()))
            }
        }
        _ => Err(HostMismatch("several Host headers".to_owned())),
    }
}

/// Why a request is not something the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// A forward request for another scheme (`https://`, `ftp://`…).
    UnsupportedScheme,
    Malformed,
}

/// Classifies the request line.
pub fn parse_target(method: &str, target: &str) -> Result<Target, TargetError> {
    if method == "CONNECT" {
        let (host, port) = split_authority(target, None).ok_or(TargetError::Malformed)?;
        return Ok(Target::Connect { host, port });
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(TargetError::Malformed);
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(TargetError::UnsupportedScheme);
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(TargetError::Malformed); // userinfo in a proxy URL
    }
    if path.contains('\\') {
        // Some servers read it as `/`; policy saw something else.
        return Err(TargetError::Malformed);
    }
    let (host, port) = split_authority(authority, Some(80)).ok_or(TargetError::Malformed)?;
    Ok(Target::Forward { host, port, path })
}

/// Whether the request's authority names the tunnel's endpoint; the port
/// may be omitted only when it is the scheme's default.
pub fn authority_matches(authority: &str, host: &str, port: u16, default_port: u16) -> bool {
    let parse_port = |p: &str| p.parse::<u16>().ok();
    let (name, given_port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((name, after)) = rest.split_once(']') else {
            return false;
        };
        match after.strip_prefix(':') {
            Some(p) => match parse_port(p) {
                Some(p) => (name, Some(p)),
                None => return false,
            },
            None if after.is_empty() => (name, None),
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((name, p)) => match parse_port(p) {
                Some(p) => (name, Some(p)),
                None => return false,
            },
            None => (authority, None),
        }
    };
    !name.is_empty()
        && name.eq_ignore_ascii_case(host)
        && given_port.unwrap_or(default_port) == port
}

/// `host:port`, `[v6]:port`, or (with a default) a bare host. The host is
/// returned without brackets.
fn split_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None, // an unbracketed IPv6 address
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => default_port?,
    };
    if port == 0 {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap()
    }

    #[test]
    fn classifies_connect_and_forward_targets() {
        assert_eq!(
            parse_target("CONNECT", "API.example.com:443"),
            Ok(Target::Connect {
                host: "api.example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_target("CONNECT", "[::1]:8443"),
            Ok(Target::Connect {
                host: "::1".into(),
                port: 8443
            })
        );
        assert_eq!(
            parse_target("GET", "http://h.test:8080/a/b?x=1"),
            Ok(Target::Forward {
                host: "h.test".into(),
                port: 8080,
                path: "/a/b?x=1".into()
            })
        );
        assert_eq!(
            parse_target("GET", "http://h.test?q"),
            Ok(Target::Forward {
                host: "h.test".into(),
                port: 80,
                path: "/?q".into()
            })
        );
        assert_eq!(
            parse_target("GET", "https://h.test/"),
            Err(TargetError::UnsupportedScheme)
        );
        for bad in [
            "h.test",
            "h.test:",
            "h.test:0",
            "h.test:99999",
            ":443",
            "::1:443",
            "a b:1",
        ] {
            assert_eq!(
                parse_target("CONNECT", bad),
                Err(TargetError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            parse_target("GET", "/origin-form"),
            Err(TargetError::Malformed)
        );
        assert_eq!(
            parse_target("GET", "http://user@h.test/"),
            Err(TargetError::Malformed)
        );
    }

    #[test]
    fn framing_rejects_smuggling_shapes() {
        let framed =
            |extra: &str| framing(&head(&format!("POST http://h/ HTTP/1.1\r\n{extra}\r\n")));
        assert_eq!(framed(""), Some(Framing::None));
        assert_eq!(framed("Content-Length: 5\r\n"), Some(Framing::Length(5)));
        assert_eq!(
            framed("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framed("Transfer-Encoding: chunked\r\n"),
            Some(Framing::Chunked)
        );
        assert_eq!(framed("Content-Length: 5\r\nContent-Length: 6\r\n"), None);
        assert_eq!(
            framed("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            None
        );
        assert_eq!(framed("Transfer-Encoding: gzip, chunked\r\n"), None);
        assert_eq!(framed("Content-Length: -1\r\n"), None);
        assert_eq!(framed("Content-Length: 1e3\r\n"), None);
    }

    #[test]
    fn authority_must_name_the_tunnel_endpoint() {
        assert!(authority_matches("api.test", "api.test", 443, 443));
        assert!(authority_matches("API.test:443", "api.test", 443, 443));
        assert!(!authority_matches("api.test", "api.test", 8443, 443));
        assert!(authority_matches("api.test:8443", "api.test", 8443, 443));
        assert!(!authority_matches("evil.test", "api.test", 443, 443));
        assert!(!authority_matches("api.test:x", "api.test", 443, 443));
        assert!(authority_matches("[::1]:8080", "::1", 8080, 80));
        assert!(authority_matches("10.0.0.1", "10.0.0.1", 80, 80));
        assert!(!authority_matches("", "api.test", 443, 443));
    }

    #[test]
    fn a_forward_requests_host_must_name_its_url_authority() {
        let with = |host: &str| head(&format!("GET http://a.test:8080/ HTTP/1.1\r\n{host}\r\n"));
        assert_eq!(check_host(&with(""), "a.test", 8080), Ok(()));
        assert_eq!(
            check_host(&with("Host: A.test:8080\r\n"), "a.test", 8080),
            Ok(())
        );
        assert!(check_host(&with("Host: a.test\r\n"), "a.test", 8080).is_err());
        assert_eq!(check_host(&with("Host: a.test\r\n"), "a.test", 80), Ok(()));
        assert!(check_host(&with("Host: evil.test:8080\r\n"), "a.test", 8080).is_err());
        assert!(
            check_host(
                &with("Host: a.test:8080\r\nHost: a.test:8080\r\n"),
                "a.test",
                8080
            )
            .is_err()
        );
        assert_eq!(
            parse_target("GET", "http://a.test/x\\..\\admin"),
            Err(TargetError::Malformed)
        );
    }

    #[test]
    fn parses_heads_and_rejects_garbage() {
        let h = head("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
        assert_eq!(h.method, "CONNECT");
        assert_eq!(h.header("host"), Some(&b"h:443"[..]));
        assert!(parse_head(b"\x16\x03\x01garbage\r\n\r\n").is_none());
        assert!(parse_head(b"CONNECT h:443 HTTP/1.0\r\n\r\n").is_some());
        assert!(parse_head(b"GET / HTTP/2\r\n\r\n").is_none());
        assert_eq!(find_head_end(b"a\r\n\r\nbody"), Some(5));
    }
}
