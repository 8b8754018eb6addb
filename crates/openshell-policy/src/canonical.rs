//! Canonical request targets (docs/policy.md, "Requests").
//!
//! The canonical path is what policy sees *and* what the proxy forwards, so
//! the upstream can never interpret a path differently from the policy that
//! allowed it:
//! - only origin-form targets (`/path?query`);
//! - unreserved percent-escapes are decoded (`%41` → `A`, `%2E` → `.`), every
//!   other escape is kept as upper-case `%HH`;
//! - `%2F` inside a segment is refused unless the endpoint allows it;
//! - control bytes (raw or escaped), raw non-ASCII, fragments and paths over
//!   4 KiB are refused;
//! - `;params` are stripped from every segment, repeated slashes collapse,
//!   `.` and `..` are resolved, and a `..` that would climb above `/` is refused.
//!
//! The query is split off and decoded into name/value pairs for matchers.

use std::fmt;

/// Longest request target accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A request target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// Canonical path; starts with `/`, has no `//`, `.` or `..` segments.
    pub path: String,
    /// The raw query (after `?`), forwarded unchanged; `None` without `?`.
    pub raw_query: Option<String>,
    /// Decoded query pairs, in order; names may repeat.
    pub query: Vec<(String, String)>,
}

/// Why a request target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalizeError {
    NotOriginForm,
    TooLong(usize),
    ControlByte,
    NonAscii,
    Fragment,
    InvalidEscape,
    EncodedSlash,
    EscapesRoot,
}

impl fmt::Display for CanonicalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanonicalizeError::NotOriginForm => f.write_str("request target must start with '/'"),
            CanonicalizeError::TooLong(len) => {
                write!(f, "request path too long ({len} > {MAX_PATH_BYTES} bytes)")
            }
            CanonicalizeError::ControlByte => f.write_str("request path contains a control byte"),
            CanonicalizeError::NonAscii => f.write_str("request path contains raw non-ASCII bytes"),
            CanonicalizeError::Fragment => f.write_str("request path contains a fragment"),
            CanonicalizeError::InvalidEscape => {
                f.write_str("request path contains an invalid percent-escape")
            }
            CanonicalizeError::EncodedSlash => {
                f.write_str("request path contains an encoded slash (%2F) inside a segment")
            }
            CanonicalizeError::EscapesRoot => {
                f.write_str("request path uses '..' to escape the root")
            }
        }
    }
}

impl std::error::Error for CanonicalizeError {}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalises one raw segment: escapes, refusals, `;params` stripped.
fn normalize_segment(
    raw: &[u8],
    allow_encoded_slash: bool,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalizeError> {
    let raw = match raw.iter().position(|b| *b == b';') {
        Some(end) => &raw[..end],
        None => raw,
    };
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(CanonicalizeError::InvalidEscape);
            };
            let decoded = hi << 4 | lo;
            if decoded < 0x20 || decoded == 0x7f {
                return Err(CanonicalizeError::ControlByte);
            }
            if decoded == b'/' && !allow_encoded_slash {
                return Err(CanonicalizeError::EncodedSlash);
            }
            if is_unreserved(decoded) {
                out.push(decoded);
            } else {
                out.extend_from_slice(&[b'%', HEX_UPPER[hi as usize], HEX_UPPER[lo as usize]]);
            }
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    Ok(())
}

/// Canonicalises an origin-form request target.
pub fn canonicalize_target(
    target: &str,
    allow_encoded_slash: bool,
) -> Result<CanonicalTarget, CanonicalizeError> {
    let bytes = target.as_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err(CanonicalizeError::TooLong(bytes.len()));
    }
    if let Some(&bad) = bytes.iter().find(|b| !b.is_ascii_graphic()) {
        return Err(if bad.is_ascii() {
            CanonicalizeError::ControlByte
        } else {
            CanonicalizeError::NonAscii
        });
    }
    if bytes.contains(&b'#') {
        return Err(CanonicalizeError::Fragment);
    }
    if bytes.first() != Some(&b'/') {
        return Err(CanonicalizeError::NotOriginForm);
    }
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };

    let mut segments: Vec<Vec<u8>> = Vec::new();
    let raw_segments: Vec<&[u8]> = raw_path.as_bytes()[1..].split(|b| *b == b'/').collect();
    let mut trailing_slash = false;
    for (index, raw) in raw_segments.iter().enumerate() {
        let last = index + 1 == raw_segments.len();
        let mut segment = Vec::with_capacity(raw.len());
        normalize_segment(raw, allow_encoded_slash, &mut segment)?;
        match segment.as_slice() {
            b"" => {
                if last {
                    trailing_slash = !segments.is_empty();
                }
            }
            b"." => trailing_slash = last && !segments.is_empty(),
            b".." => {
                if segments.pop().is_none() {
                    return Err(CanonicalizeError::EscapesRoot);
                }
                trailing_slash = last && !segments.is_empty();
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }

    let mut path = Vec::with_capacity(raw_path.len());
    for segment in &segments {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push(b'/');
    }
    // Only ASCII was admitted above and decoding yields only unreserved ASCII.
    let path = String::from_utf8(path).map_err(|_| CanonicalizeError::NonAscii)?;
    Ok(CanonicalTarget {
        path,
        raw_query: raw_query.map(str::to_owned),
        query: raw_query.map(decode_query).unwrap_or_default(),
    })
}

/// Decodes `a=1&b=x+y` into pairs (`+` is a space, escapes decoded, lossy UTF-8).
pub fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
