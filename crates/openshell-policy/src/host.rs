//! Endpoint host selectors (docs/policy.md, "Hosts") and request-host normalisation.
//!
//! Matching is case-insensitive: selectors are lower-cased when parsed and
//! request hosts by [`normalize_request_host`], into a stack buffer so the
//! hot path does not allocate.

use std::net::IpAddr;

use crate::glob::{self, Glob, Syntax};

/// Longest DNS name accepted.
pub const MAX_HOST_BYTES: usize = 253;
const MAX_LABEL_BYTES: usize = 63;

/// A validated `host:` selector.
#[derive(Debug, Clone, PartialEq)]
pub enum HostPattern {
    /// A lower-cased DNS name or a canonical IP literal.
    Exact(String),
    /// A wildcard pattern; matching is label-aware.
    Wildcard(Glob),
    /// No host: the endpoint matches any host on its ports (needs `allowed_ips`).
    Any,
}

impl HostPattern {
    /// Parses a selector. An empty string is [`HostPattern::Any`]; whether
    /// that is allowed depends on the endpoint and is checked by validation.
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        if host.is_empty() {
            return Ok(HostPattern::Any);
        }
        if host.len() > MAX_HOST_BYTES + 2 {
            return Err(format!(
                "host '{}' is longer than {MAX_HOST_BYTES} bytes",
                truncate(host)
            ));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            || host.contains("://")
            || host.contains('/')
            || (host.contains(':') && host.parse::<IpAddr>().is_err() && !is_bracketed_ip(host))
        {
            return Err(format!(
                "host '{host}' must be a bare hostname, wildcard or IP address, without scheme, port or path"
            ));
        }
        if let Some(ip) = parse_ip_literal(host) {
            return Ok(HostPattern::Exact(ip.to_string()));
        }
        let lower = host.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name == "*" || name == "**" {
            return Err(format!(
                "host wildcard '{host}' matches all hosts; use specific patterns like '*.example.com'"
            ));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for label in &labels {
            if label.is_empty() {
                return Err(format!("host '{host}' has an empty DNS label"));
            }
            if label.len() > MAX_LABEL_BYTES {
                return Err(format!(
                    "host '{host}' has a DNS label longer than {MAX_LABEL_BYTES} bytes"
                ));
            }
            if !label.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'?' | b'[' | b']')
            }) {
                return Err(format!(
                    "host '{host}' contains characters not allowed in a DNS name"
                ));
            }
        }
        if !glob::has_wildcard(name) {
            return Ok(HostPattern::Exact(name.to_owned()));
        }
        let first_is_wild = glob::has_wildcard(labels[0]);
        let last_is_wild = labels.len() > 1 && glob::has_wildcard(labels[labels.len() - 1]);
        if (first_is_wild && labels.len() <= 2) || last_is_wild {
            return Err(format!(
                "TLD wildcard '{host}' is not allowed; use subdomain wildcards like '*.example.com' instead"
            ));
        }
        let middle_ok = labels[1..]
            .iter()
            .all(|label| *label == "*" || !glob::has_wildcard(label));
        let first_ok = labels[0] == "**" || !labels[0].contains("**");
        if !middle_ok || !first_ok {
            return Err(format!(
                "invalid host wildcard '{host}': middle DNS label wildcards must be the entire label '*' and recursive '**' is only allowed as the entire first label"
            ));
        }
        Glob::new(name, Syntax::Host)
            .map(HostPattern::Wildcard)
            .map_err(|e| format!("invalid host wildcard '{host}': {e}"))
    }

    /// Matches a host already normalised by [`normalize_request_host`].
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Wildcard(glob) => glob.matches(host),
            HostPattern::Any => true,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard(_))
    }

    /// The selector as written in canonical form (`""` for [`HostPattern::Any`]).
    pub fn as_str(&self) -> &str {
        match self {
            HostPattern::Exact(exact) => exact,
            HostPattern::Wildcard(glob) => glob.as_str(),
            HostPattern::Any => "",
        }
    }

    /// Whether some host could match both selectors (conservative: may say
    /// yes for two wildcards that never meet, never no when they do).
    pub fn may_overlap(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Any, _) | (_, HostPattern::Any) => true,
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(exact), HostPattern::Wildcard(glob))
            | (HostPattern::Wildcard(glob), HostPattern::Exact(exact)) => glob.matches(exact),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                a == b || a.matches(&instantiate(b)) || b.matches(&instantiate(a))
            }
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            HostPattern::Exact(exact) => exact.parse().ok(),
            _ => None,
        }
    }
}

/// A concrete host a wildcard selector matches (each wildcard label → `x`).
fn instantiate(glob: &Glob) -> String {
    glob.as_str()
        .split('.')
        .map(|label| {
            if glob::has_wildcard(label) {
                "x"
            } else {
                label
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn is_bracketed_ip(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<IpAddr>().is_ok())
}

/// Parses `1.2.3.4`, `::1` or `[::1]`.
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A request host lower-cased into a fixed buffer (no allocation).
#[derive(Clone, Copy)]
pub struct NormalizedHost {
    bytes: [u8; MAX_HOST_BYTES + 2],
    len: usize,
}

impl std::fmt::Debug for NormalizedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl NormalizedHost {
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see normalize_request_host).
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Lower-cases a request host, strips one trailing dot and IPv6 brackets.
/// Returns `None` for hosts no selector could match (empty, too long,
/// non-ASCII or containing whitespace or control bytes).
pub fn normalize_request_host(host: &str) -> Option<NormalizedHost> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_BYTES + 2 {
        return None;
    }
    let mut normalized = NormalizedHost {
        bytes: [0; MAX_HOST_BYTES + 2],
        len: host.len(),
    };
    for (slot, byte) in normalized.bytes.iter_mut().zip(host.bytes()) {
        if !byte.is_ascii_graphic() {
            return None;
        }
        *slot = byte.to_ascii_lowercase();
    }
    Some(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, host: &str) -> bool {
        let pattern = HostPattern::parse(pattern).unwrap();
        let host = normalize_request_host(host).unwrap();
        pattern.matches(host.as_str())
    }

    /// A selector, the error it must raise (if any), hosts it matches, hosts it must not.
    type Row<'a> = (&'a str, Option<&'a str>, &'a [&'a str], &'a [&'a str]);

    /// Every case of docs/policy.md, "Hosts".
    #[test]
    fn wildcard_table_of_reference() {
        let cases: &[Row<'_>] = &[
            (
                "api.example.com",
                None,
                &["api.example.com", "API.Example.COM"],
                &["x.api.example.com"],
            ),
            (
                "*.example.com",
                None,
                &["api.example.com"],
                &["a.b.example.com", "example.com"],
            ),
            (
                "**.example.com",
                None,
                &["api.example.com", "a.b.example.com"],
                &["example.com"],
            ),
            (
                "*-aiplatform.googleapis.com",
                None,
                &["us-aiplatform.googleapis.com"],
                &["aiplatform.googleapis.com.evil"],
            ),
            (
                "*.s3.*.amazonaws.com",
                None,
                &["b.s3.eu-west-1.amazonaws.com"],
                &["b.s3.amazonaws.com"],
            ),
            ("*", Some("matches all hosts"), &[], &[]),
            ("**", Some("matches all hosts"), &[], &[]),
            (
                "*.com",
                Some("TLD wildcard '*.com' is not allowed"),
                &[],
                &[],
            ),
            (
                "**.com",
                Some("TLD wildcard '**.com' is not allowed"),
                &[],
                &[],
            ),
            ("example.*", Some("TLD wildcard"), &[], &[]),
            (
                "foo.us-*.example.com",
                Some("middle DNS label wildcards must be the entire label"),
                &[],
                &[],
            ),
            (
                "foo.**.example.com",
                Some("middle DNS label wildcards"),
                &[],
                &[],
            ),
            (
                "foo**.example.com",
                Some("recursive '**' is only allowed as the entire first label"),
                &[],
                &[],
            ),
        ];
        for (pattern, error, yes, no) in cases {
            match (HostPattern::parse(pattern), error) {
                (Err(message), Some(expected)) => {
                    assert!(message.contains(expected), "{pattern}: {message}")
                }
                (Ok(_), None) => {
                    for host in *yes {
                        assert!(matches(pattern, host), "{pattern} should match {host}");
                    }
                    for host in *no {
                        assert!(!matches(pattern, host), "{pattern} should not match {host}");
                    }
                }
                (result, _) => panic!("{pattern}: unexpected {result:?}"),
            }
        }
    }

    #[test]
    fn rejects_scheme_port_path_and_whitespace() {
        for host in [
            "https://api.github.com",
            "api.github.com:443",
            "a.com/x",
            " a.com",
            "a b.com",
        ] {
            assert!(HostPattern::parse(host).is_err(), "{host}");
        }
    }

    #[test]
    fn ip_literals_are_canonical() {
        assert_eq!(
            HostPattern::parse("[::1]").unwrap(),
            HostPattern::Exact("::1".into())
        );
        assert_eq!(
            HostPattern::parse("10.0.0.1").unwrap(),
            HostPattern::Exact("10.0.0.1".into())
        );
    }

    #[test]
    fn trailing_dot_is_normalised_on_both_sides() {
        assert!(matches("example.com.", "EXAMPLE.com."));
        assert!(matches("example.com", "example.com."));
    }

    #[test]
    fn normalization_rejects_unusable_hosts() {
        assert!(normalize_request_host("").is_none());
        assert!(normalize_request_host("a b").is_none());
        assert!(normalize_request_host("é.com").is_none());
        assert!(normalize_request_host(&"a".repeat(300)).is_none());
    }

    #[test]
    fn overlap_is_conservative() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.example.com").may_overlap(&p("api.example.com")));
        assert!(p("*.example.com").may_overlap(&p("**.example.com")));
        assert!(!p("*.example.com").may_overlap(&p("*.example.org")));
        assert!(!p("a.example.com").may_overlap(&p("b.example.com")));
        assert!(p("").may_overlap(&p("b.example.com")));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9][a-z0-9-]{0,8}"
        }

        fn host(p: &str) -> HostPattern {
            HostPattern::parse(p).unwrap()
        }

        proptest! {
            #[test]
            fn single_star_matches_exactly_one_extra_label(
                first in label(), second in label(), domain in prop::collection::vec(label(), 2..4)
            ) {
                let suffix = domain.join(".");
                let pattern = host(&format!("*.{suffix}"));
                let one = format!("{first}.{suffix}");
                let two = format!("{first}.{second}.{suffix}");
                prop_assert!(pattern.matches(&one));
                prop_assert!(!pattern.matches(&two));
                prop_assert!(!pattern.matches(&suffix));
            }

            #[test]
            fn double_star_matches_one_or_more_labels_never_the_apex(
                labels in prop::collection::vec(label(), 1..4), domain in prop::collection::vec(label(), 2..4)
            ) {
                let suffix = domain.join(".");
                let pattern = host(&format!("**.{suffix}"));
                let deeper = format!("{}.{suffix}", labels.join("."));
                prop_assert!(pattern.matches(&deeper));
                prop_assert!(!pattern.matches(&suffix));
            }

            #[test]
            fn exact_hosts_match_case_insensitively_and_only_themselves(
                labels in prop::collection::vec(label(), 2..5), other in label()
            ) {
                let name = labels.join(".");
                let pattern = host(&name.to_ascii_uppercase());
                let normalized = normalize_request_host(&name.to_ascii_uppercase()).unwrap();
                prop_assert!(pattern.matches(normalized.as_str()));
                let sub = format!("{other}.{name}");
                let longer = format!("{name}{other}");
                prop_assert!(!pattern.matches(&sub));
                prop_assert!(!pattern.matches(&longer));
            }

            #[test]
            fn arbitrary_selectors_never_panic(text in "\\PC{0,40}") {
                let _ = HostPattern::parse(&text);
            }
        }
    }
}
