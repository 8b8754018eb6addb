//! Applying a [`Set`] to what the proxy relays: a parsed request in a
//! terminated tunnel ([`rewrite_request`], with [`ScannedBody`] for bodies
//! it does not read whole), and the forward path's raw head and body
//! ([`rewrite_head`], [`rewrite_whole_body`], [`ScanningWriter`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use tokio::io::AsyncWrite;

use super::{CredentialError, Destination, MAX_REWRITE_BODY, Scanner, Set};

/// An error of a body relayed upstream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body as sent upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// Whether the endpoint's body rewriting applies to this content type.
fn rewritable(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/x-www-form-urlencoded"
        || essence.starts_with("text/")
}

/// Substitutes a parsed request's credentials (headers, target, and the
/// body when the endpoint rewrites bodies); a body that is not rewritten
/// is relayed through a [`Scanner`], and `tripped` says afterwards whether
/// it stopped on a placeholder.
pub async fn rewrite_request<B>(
    set: Arc<Set>,
    parts: &mut hyper::http::request::Parts,
    body: B,
    destination: &Destination<'_>,
    rewrite_body: bool,
    tripped: Arc<AtomicBool>,
) -> Result<UpstreamBody, CredentialError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut replaced = Vec::new();
    for (name, value) in &parts.headers {
        if let Some(new) = set.header(name.as_str(), value.as_bytes(), destination)? {
            replaced.push((name.clone(), new));
        }
    }
    for (name, value) in replaced {
        let value = HeaderValue::from_bytes(&value).map_err(|_| CredentialError::Unavailable)?;
        parts.headers.insert(name, value);
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(target) = set.target(target, destination)? {
        parts.uri = target.parse().map_err(|_| CredentialError::Unavailable)?;
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rewrite = rewrite_body && rewritable(content_type.as_deref());
    // A body of known, small size is read whole and judged before anything
    // is sent; one to rewrite must be (up to the limit).
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_REWRITE_BODY as u64);
    if rewrite || small {
        let collected = Limited::new(body, MAX_REWRITE_BODY)
            .collect()
            .await
            .map_err(|_| CredentialError::BodyTooLarge)?
            .to_bytes();
        let replaced = rewrite_whole_body(
            &set,
            content_type.as_deref(),
            &collected,
            destination,
            rewrite_body,
        )?;
        let body = match replaced {
            Some(body) => {
                parts.headers.remove(TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                Bytes::from(body)
            }
            None => collected,
        };
        return Ok(Full::new(body).map_err(|never| match never {}).boxed());
    }
    Ok(ScannedBody {
        inner: body,
        set,
        scanner: Scanner::default(),
        trailers: None,
        tripped,
        done: false,
    }
    .boxed())
}

/// A body relayed through a [`Scanner`]: it ends with an error, before the
/// placeholder's bytes, when one appears.
struct ScannedBody<B> {
    inner: B,
    set: Arc<Set>,
    scanner: Scanner,
    /// Trailers held until the scanner's tail is out.
    trailers: Option<hyper::HeaderMap>,
    tripped: Arc<AtomicBool>,
    done: bool,
}

impl<B> Body for ScannedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    let tail = this.scanner.finish();
                    if tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => match this.scanner.push(&this.set, &data) {
                    Ok(released) if released.is_empty() => {}
                    Ok(released) => {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(released)))));
                    }
                    Err(error) => {
                        this.tripped.store(true, Ordering::SeqCst);
                        this.done = true;
                        return Poll::Ready(Some(Err(Box::new(error))));
                    }
                },
                Err(frame) => {
                    // Trailers: the held-back tail goes first.
                    this.trailers = frame.into_trailers().ok();
                    let tail = this.scanner.finish();
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))));
                    }
                }
            }
        }
    }
}

/// The forward path's request head: its headers substituted in place,
/// and its target's replacement when that changed.
pub fn rewrite_head(
    set: &Set,
    headers: &mut [(String, Vec<u8>)],
    target: &str,
    destination: &Destination<'_>,
) -> Result<Option<String>, CredentialError> {
    for (name, value) in headers.iter_mut() {
        if let Some(new) = set.header(name, value, destination)? {
            *value = new;
        }
    }
    set.target(target, destination)
}

/// A whole (already read) body of the forward path: rewritten when the
/// endpoint rewrites bodies of its type, else only checked.
pub fn rewrite_whole_body(
    set: &Set,
    content_type: Option<&str>,
    body: &[u8],
    destination: &Destination<'_>,
    rewrite_body: bool,
) -> Result<Option<Vec<u8>>, CredentialError> {
    if rewrite_body && rewritable(content_type) {
        return set.body(content_type, body, destination);
    }
    Scanner::default().push(set, body)?;
    Ok(None)
}

/// A writer that relays a body through a [`Scanner`]: a placeholder makes
/// the write fail before any of its bytes go out. [`finish`] releases the
/// held-back end.
///
/// [`finish`]: ScanningWriter::finish
#[derive(Debug)]
pub struct ScanningWriter<W> {
    inner: W,
    set: Arc<Set>,
    scanner: Scanner,
    /// Released bytes not yet written.
    out: Vec<u8>,
    written: usize,
}

impl<W: AsyncWrite + Unpin> ScanningWriter<W> {
    pub fn new(inner: W, set: Arc<Set>) -> ScanningWriter<W> {
        ScanningWriter {
            inner,
            set,
            scanner: Scanner::default(),
            out: Vec::new(),
            written: 0,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.out.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes the held-back end (the body is complete).
    pub async fn finish(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        std::future::poll_fn(|cx| self.poll_drain(cx)).await?;
        let tail = self.scanner.finish();
        self.inner.write_all(&tail).await
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ScanningWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        let released = this
            .scanner
            .push(&this.set, buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
        this.out = released;
        // Accepted; what cannot be written now goes first next time.
        if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}
