//! Credential substitution (docs/providers.md): the agent's requests carry
//! placeholders; on inspected HTTP the proxy replaces each with its secret,
//! but only towards the endpoints the secret is bound to.
//!
//! - [`Credentials`] holds the set the gateway delivered over the session
//!   (the newest replaces all before it). Until the first delivery a
//!   sandbox whose environment holds placeholders waits for it briefly
//!   rather than failing its first request.
//! - [`Set`] substitutes: header values (`Authorization: Basic` decoded
//!   and re-encoded), path segments and query values (percent-decoded
//!   first, so an encoded placeholder is still found), and JSON, form and
//!   `text/*` bodies where the endpoint says
//!   `request_body_credential_rewrite`.
//! - [`Scanner`] watches bodies that are not rewritten: a placeholder in
//!   one stops the body before it reaches the upstream, also when split
//!   across reads or percent-encoded.
//! - `transfer` applies all this to the requests the proxy relays.
//!
//! Fail-closed everywhere: a placeholder outside its binding is
//! [`CredentialError::EndpointMismatch`], anything that looks like a
//! placeholder but is none of the current set's is
//! [`CredentialError::Unavailable`]. No secret, placeholder or key name is
//! ever logged.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use tokio::sync::watch;

use openshell_core::providers::{BindingEndpoint, MARKERS};
use openshell_policy::Policy;
use openshell_proto::v1 as pb;

mod transfer;
pub use transfer::{
    BoxError, ScanningWriter, UpstreamBody, rewrite_head, rewrite_request, rewrite_whole_body,
};

/// Largest body buffered to rewrite credentials in (docs/providers.md).
pub const MAX_REWRITE_BODY: usize = 256 * 1024;
/// How long a request waits for the first delivery of credentials.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// Why a request cannot carry its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("a credential is not authorized for this request endpoint")]
    EndpointMismatch,
    #[error("a credential placeholder could not be resolved")]
    Unavailable,
    #[error("a credential placeholder is in a request body this endpoint does not rewrite")]
    InBody,
    #[error("the request body is too large to rewrite credentials in")]
    BodyTooLarge,
    #[error("credentials are bound to this endpoint, but its traffic is not inspected")]
    Uninspected,
}

impl CredentialError {
    /// The reason recorded in the decision event.
    pub fn reason(self) -> &'static str {
        match self {
            CredentialError::EndpointMismatch => "credential_endpoint_mismatch",
            CredentialError::Unavailable => "credential_unavailable",
            CredentialError::InBody => "credential_in_body",
            CredentialError::BodyTooLarge => "credential_body_too_large",
            CredentialError::Uninspected => "uninspected_credentials",
        }
    }
}

/// One secret and where it may go.
#[derive(Debug)]
struct Entry {
    provider: String,
    /// The environment variable, and its current placeholder.
    key: String,
    current: String,
    value: String,
    /// Empty: the policy's endpoints with `credential_binding.provider`
    /// naming the provider.
    endpoints: Vec<BindingEndpoint>,
}

/// The credentials in force.
#[derive(Debug, Default)]
pub struct Set {
    /// Whether the gateway has delivered (false only before the first).
    delivered: bool,
    entries: Vec<Entry>,
    /// Every placeholder; its pattern index → `owner` → entry.
    placeholders: Option<AhoCorasick>,
    owner: Vec<usize>,
    /// What any placeholder looks like ([`MARKERS`]), issued or not.
    markers: Option<AhoCorasick>,
    /// The longest text the scanner must see whole.
    longest: usize,
}

/// The path a request's bindings are checked against: its target's
/// canonical path (dot segments resolved, escapes normalised), without the
/// query. A target that has none cannot carry a credential anywhere.
pub fn binding_path(target: &str) -> Result<String, CredentialError> {
    openshell_policy::canonical::canonicalize_target(target, true)
        .map(|canonical| canonical.path)
        .map_err(|_| CredentialError::EndpointMismatch)
}

/// Where a request goes, as bindings are checked against it.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The canonical path, without the query.
    pub path: &'a str,
    /// The policy in force, for endpointless providers' bindings.
    pub policy: &'a Policy,
}

impl Destination<'_> {
    fn permits(&self, entry: &Entry) -> bool {
        if !entry.endpoints.is_empty() {
            return entry
                .endpoints
                .iter()
                .any(|e| e.matches(self.host, self.port, self.path));
        }
        // A policy binding is host:port scope (its provenance is the
        // policy, which the gateway checked names this provider).
        self.policy.network.values().any(|rule| {
            rule.endpoints.iter().any(|endpoint| {
                endpoint.credential_provider.as_deref() == Some(entry.provider.as_str())
                    && endpoint.host.matches(self.host)
                    && endpoint.ports.contains(&self.port)
            })
        })
    }
}

impl Set {
    fn build(delivered: &pb::SandboxCredentials) -> Set {
        let mut entries = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        let mut owner = Vec::new();
        for credential in &delivered.credentials {
            let endpoints = credential
                .endpoints
                .iter()
                .filter_map(|e| match BindingEndpoint::parse(e) {
                    Ok(endpoint) => Some(endpoint),
                    Err(error) => {
                        tracing::error!(provider = %credential.provider, %error, "ignoring an unreadable credential endpoint");
                        None
                    }
                })
                .collect::<Vec<_>>();
            if !credential.endpoints.is_empty() && endpoints.is_empty() {
                continue; // bound to nothing readable: never substituted
            }
            let index = entries.len();
            entries.push(Entry {
                provider: credential.provider.clone(),
                key: credential.key.clone(),
                current: credential.placeholders.first().cloned().unwrap_or_default(),
                value: credential.value.clone(),
                endpoints,
            });
            for placeholder in &credential.placeholders {
                if !placeholder.is_empty() {
                    patterns.push(placeholder);
                    owner.push(index);
                }
            }
        }
        let longest = patterns
            .iter()
            .map(|p| p.len())
            .chain(MARKERS.iter().map(|m| m.len()))
            .max()
            .unwrap_or(0);
        let placeholders = (!patterns.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        let markers = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(MARKERS)
            .ok();
        Set {
            delivered: true,
            entries,
            placeholders,
            owner,
            markers,
            longest,
        }
    }

    /// Whether a credential is bound to `host:port` by its own endpoints
    /// (any path): a raw tunnel there would carry its placeholders
    /// unsubstituted. (Policy bindings are refused on such endpoints when
    /// the policy is validated.)
    pub fn binds(&self, host: &str, port: u16) -> bool {
        self.entries.iter().any(|entry| {
            entry.endpoints.iter().any(|e| {
                BindingEndpoint {
                    path: "/**".to_owned(),
                    ..e.clone()
                }
                .matches(host, port, "/")
            })
        })
    }

    /// Whether there is nothing to substitute (no provider attached).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn has_marker(&self, text: &[u8]) -> bool {
        self.markers.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// Replaces every placeholder in `text` with its value (through
    /// `escape`, for the context it lands in). `None`: nothing in it.
    fn replace(
        &self,
        text: &[u8],
        destination: &Destination<'_>,
        escape: fn(&str) -> Cow<'_, str>,
    ) -> Result<Option<Vec<u8>>, CredentialError> {
        let Some(finder) = &self.placeholders else {
            return if self.has_marker(text) {
                Err(CredentialError::Unavailable)
            } else {
                Ok(None)
            };
        };
        let mut out = Vec::new();
        let mut last = 0;
        for found in finder.find_iter(text) {
            let gap = &text[last..found.start()];
            if self.has_marker(gap) {
                return Err(CredentialError::Unavailable);
            }
            let entry = &self.entries[self.owner[found.pattern().as_usize()]];
            if !destination.permits(entry) {
                return Err(CredentialError::EndpointMismatch);
            }
            if entry.value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(CredentialError::Unavailable);
            }
            out.extend_from_slice(gap);
            out.extend_from_slice(escape(&entry.value).as_bytes());
            last = found.end();
        }
        if last == 0 {
            return if self.has_marker(text) {
                Err(CredentialError::Unavailable)
            } else {
                Ok(None)
            };
        }
        let rest = &text[last..];
        if self.has_marker(rest) {
            return Err(CredentialError::Unavailable);
        }
        out.extend_from_slice(rest);
        Ok(Some(out))
    }

    /// A header's value with its placeholders replaced (`None`: none in
    /// it). `Authorization: Basic` is decoded, its `user:password`
    /// substituted and re-encoded. Cookies are never rewritten.
    pub fn header(
        &self,
        name: &str,
        value: &[u8],
        destination: &Destination<'_>,
    ) -> Result<Option<Vec<u8>>, CredentialError> {
        if name.eq_ignore_ascii_case("cookie") {
            return Ok(None);
        }
        if name.eq_ignore_ascii_case("authorization")
            && let Some(encoded) = strip_prefix_ignore_case(value, b"basic ")
        {
            let engine = base64::engine::general_purpose::STANDARD;
            if let Ok(decoded) = engine.decode(encoded.trim_ascii()) {
                return Ok(self
                    .replace(&decoded, destination, verbatim)?
                    .map(|pair| format!("Basic {}", engine.encode(pair)).into_bytes()));
            }
        }
        self.replace(value, destination, verbatim)
    }

    /// An origin-form target (path and query) with placeholders replaced
    /// in its path segments and query values, each percent-decoded first
    /// and re-encoded when changed.
    pub fn target(
        &self,
        target: &str,
        destination: &Destination<'_>,
    ) -> Result<Option<String>, CredentialError> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let mut changed = false;
        let mut segments = Vec::new();
        for segment in path.split('/') {
            match self.replace(&percent_decode(segment), destination, verbatim)? {
                Some(replaced) => {
                    changed = true;
                    segments.push(percent_encode(&replaced));
                }
                None => segments.push(segment.to_owned()),
            }
        }
        let mut out = segments.join("/");
        if let Some(query) = query {
            let mut pairs = Vec::new();
            for pair in query.split('&') {
                let (name, value) = match pair.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (pair, None),
                };
                if self.has_marker(&percent_decode(name)) {
                    return Err(CredentialError::Unavailable);
                }
                let replaced = match value {
                    Some(value) => self.replace(&percent_decode(value), destination, verbatim)?,
                    None => None,
                };
                match replaced {
                    Some(replaced) => {
                        changed = true;
                        pairs.push(format!("{name}={}", percent_encode(&replaced)));
                    }
                    None => pairs.push(pair.to_owned()),
                }
            }
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        Ok(changed.then_some(out))
    }

    /// A whole body with its placeholders replaced, for an endpoint that
    /// rewrites bodies: JSON (values JSON-escaped), forms (each value
    /// decoded and re-encoded) and `text/*`. Another content type may not
    /// carry a placeholder at all.
    pub fn body(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        destination: &Destination<'_>,
    ) -> Result<Option<Vec<u8>>, CredentialError> {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if essence == "application/json" || essence.ends_with("+json") {
            self.replace(body, destination, json_escape)
        } else if essence == "application/x-www-form-urlencoded" {
            let text = String::from_utf8_lossy(body);
            self.target(&format!("?{text}"), destination)
                .map(|r| r.map(|t| t.as_bytes()[1..].to_vec()))
        } else if essence.starts_with("text/") {
            self.replace(body, destination, verbatim)
        } else if Scanner::default().push(self, body).is_err() {
            Err(CredentialError::InBody)
        } else {
            Ok(None)
        }
    }
}

/// Watches a relayed body for anything that looks like a placeholder. It
/// holds back the last few bytes of what it was given (three times the
/// longest placeholder) so that a placeholder split across reads is
/// seen whole before any of it is released; percent-encoded text is
/// decoded and looked at too.
#[derive(Debug, Default)]
pub struct Scanner {
    tail: Vec<u8>,
}

impl Scanner {
    fn found(set: &Set, window: &[u8]) -> bool {
        let placeholder = |text: &[u8]| {
            set.placeholders.as_ref().is_some_and(|p| p.is_match(text)) || set.has_marker(text)
        };
        placeholder(window)
            || (window.contains(&b'%')
                && placeholder(percent_decode(&String::from_utf8_lossy(window)).as_slice()))
    }

    /// Takes `chunk`; returns what may be released now, or
    /// [`CredentialError::InBody`].
    pub fn push(&mut self, set: &Set, chunk: &[u8]) -> Result<Vec<u8>, CredentialError> {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        if Self::found(set, &window) {
            return Err(CredentialError::InBody);
        }
        let keep = (3 * set.longest.max(1)).min(window.len());
        self.tail = window.split_off(window.len() - keep);
        Ok(window)
    }

    /// The held-back end, once the body is complete.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }
}

fn verbatim(value: &str) -> Cow<'_, str> {
    Cow::Borrowed(value)
}

/// The value as the inside of a JSON string.
fn json_escape(value: &str) -> Cow<'_, str> {
    let quoted = serde_json::Value::from(value).to_string();
    Cow::Owned(quoted[1..quoted.len() - 1].to_owned())
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &value[prefix.len()..])
}

/// `%XX` sequences decoded (anything malformed kept as it is).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Every byte but the unreserved ones (RFC 3986) as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The sandbox's credentials, replaced whole by each delivery.
#[derive(Debug, Clone)]
pub struct Credentials {
    current: watch::Sender<Arc<Set>>,
    /// Whether the agent's environment holds placeholders, i.e. a
    /// delivery is coming.
    expecting: bool,
}

impl Credentials {
    /// No delivery yet; `expecting`: requests wait for the first one.
    pub fn new(expecting: bool) -> Credentials {
        Credentials {
            current: watch::Sender::new(Arc::new(Set::default())),
            expecting,
        }
    }

    /// Takes a delivery from the gateway.
    pub fn replace(&self, delivered: &pb::SandboxCredentials) {
        let set = Set::build(delivered);
        tracing::info!(
            credentials = set.entries.len(),
            "provider credentials updated"
        );
        self.current.send_replace(Arc::new(set));
    }

    /// The set in force; before the first delivery of a sandbox that
    /// expects one, waits for it a little (an empty set after that: its
    /// placeholders then fail closed).
    pub async fn current(&self) -> Arc<Set> {
        let now = self.current.borrow().clone();
        if now.delivered || !self.expecting {
            return now;
        }
        let mut updates = self.current.subscribe();
        let delivered =
            tokio::time::timeout(DELIVERY_WAIT, updates.wait_for(|s| s.delivered)).await;
        match delivered {
            Ok(Ok(set)) => set.clone(),
            _ => {
                tracing::warn!(
                    "no provider credentials from the gateway yet; placeholders stay unresolved"
                );
                self.current.borrow().clone()
            }
        }
    }

    /// Each credential's variable and current placeholder: what a command
    /// started now gets in its environment.
    pub fn placeholder_env(&self) -> Vec<(String, String)> {
        self.current
            .borrow()
            .entries
            .iter()
            .filter(|e| !e.current.is_empty())
            .map(|e| (e.key.clone(), e.current.clone()))
            .collect()
    }

    /// Whether requests need looking at: credentials are (or will be) here.
    pub fn active(&self) -> bool {
        self.expecting || !self.current.borrow().is_empty()
    }
}

/// Whether an environment holds placeholders (the gateway put them there).
pub fn expects_credentials<'a>(env: impl IntoIterator<Item = &'a (String, String)>) -> bool {
    env.into_iter().any(|(_, value)| {
        MARKERS
            .iter()
            .any(|m| value.to_ascii_lowercase().contains(&m.to_ascii_lowercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GH: &str = "ghp_0penShe11aaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const GH_OLD: &str = "ghp_0penShe11bbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const TOK: &str = "openshell:resolve:env:v1_API_TOKEN";

    fn set() -> Set {
        Set::build(&pb::SandboxCredentials {
            credentials: vec![
                pb::BoundCredential {
                    provider: "gh".into(),
                    key: "GITHUB_TOKEN".into(),
                    value: "real-\"gh\"-secret".into(),
                    placeholders: vec![GH.into(), GH_OLD.into()],
                    endpoints: vec!["api.test:443/v1/**".into()],
                },
                pb::BoundCredential {
                    provider: "tok".into(),
                    key: "API_TOKEN".into(),
                    value: "s3cr3t tok".into(),
                    placeholders: vec![TOK.into()],
                    endpoints: vec![],
                },
            ],
        })
    }

    fn policy() -> Policy {
        openshell_policy::load_str(
            "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: bound.test\n        port: 8443\n        protocol: rest\n        access: full\n        credential_binding:\n          provider: tok\n    binaries:\n      - path: /usr/bin/curl\n",
        )
        .unwrap()
        .policy
    }

    fn to<'a>(host: &'a str, port: u16, path: &'a str, policy: &'a Policy) -> Destination<'a> {
        Destination {
            host,
            port,
            path,
            policy,
        }
    }

    #[test]
    fn headers_are_substituted_only_inside_the_binding() {
        let (set, policy) = (set(), policy());
        let api = to("api.test", 443, "/v1/user", &policy);
        let bearer = format!("Bearer {GH}");
        assert_eq!(
            set.header("Authorization", bearer.as_bytes(), &api)
                .unwrap(),
            Some(b"Bearer real-\"gh\"-secret".to_vec())
        );
        // An older revision's placeholder resolves to the current value.
        assert_eq!(
            set.header("X-Token", GH_OLD.as_bytes(), &api).unwrap(),
            Some(b"real-\"gh\"-secret".to_vec())
        );
        for elsewhere in [
            to("evil.test", 443, "/v1/user", &policy),
            to("api.test", 8443, "/v1/user", &policy),
            to("api.test", 443, "/admin", &policy),
        ] {
            assert_eq!(
                set.header("Authorization", bearer.as_bytes(), &elsewhere),
                Err(CredentialError::EndpointMismatch)
            );
        }
        // The policy binds the endpointless provider to bound.test:8443.
        let bound = to("bound.test", 8443, "/anything", &policy);
        assert_eq!(
            set.header("X-Api-Key", TOK.as_bytes(), &bound).unwrap(),
            Some(b"s3cr3t tok".to_vec())
        );
        assert_eq!(
            set.header("X-Api-Key", TOK.as_bytes(), &api),
            Err(CredentialError::EndpointMismatch)
        );
        assert_eq!(set.header("X-Other", b"plain", &api).unwrap(), None);
        assert_eq!(set.header("Cookie", bearer.as_bytes(), &api).unwrap(), None);
    }

    #[test]
    fn bindings_see_the_canonical_path_so_dot_segments_cannot_leave_a_scope() {
        let (set, policy) = (set(), policy());
        let bearer = format!("Bearer {GH}");
        for raw in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1/./../admin?x=1"] {
            let path = binding_path(raw).unwrap();
            assert_eq!(path, "/admin", "{raw}");
            assert_eq!(
                set.header(
                    "authorization",
                    bearer.as_bytes(),
                    &to("api.test", 443, &path, &policy)
                ),
                Err(CredentialError::EndpointMismatch),
                "{raw}"
            );
        }
        assert_eq!(binding_path("/v1/x?q=1").unwrap(), "/v1/x");
        assert_eq!(
            binding_path("/../.."),
            Err(CredentialError::EndpointMismatch)
        );
    }

    #[test]
    fn raw_tunnels_to_bound_endpoints_are_noticed_whatever_the_path_scope() {
        let set = set();
        assert!(set.binds("api.test", 443));
        assert!(set.binds("API.TEST", 443));
        assert!(!set.binds("api.test", 8443));
        assert!(
            !set.binds("bound.test", 8443),
            "policy bindings are checked at validation"
        );
    }

    #[test]
    fn unknown_placeholders_fail_closed() {
        let (set, policy) = (set(), policy());
        let api = to("api.test", 443, "/v1", &policy);
        for unknown in [
            "openshell:resolve:env:v9_NOPE",
            "openshell:resolve:env:API_TOKEN",
            "ghp_0penShe11zzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "x-OPENSHELL-RESOLVE-ENV-API_TOKEN",
        ] {
            assert_eq!(
                set.header("Authorization", unknown.as_bytes(), &api),
                Err(CredentialError::Unavailable),
                "{unknown}"
            );
        }
        // Known and unknown together: still refused.
        let both = format!("{GH} openshell:resolve:env:v9_NOPE");
        assert_eq!(
            set.header("X", both.as_bytes(), &api),
            Err(CredentialError::Unavailable)
        );
        // No credentials at all: a placeholder is still no value.
        let empty = Set::build(&pb::SandboxCredentials::default());
        assert_eq!(
            empty.header("X", TOK.as_bytes(), &api),
            Err(CredentialError::Unavailable)
        );
    }

    #[test]
    fn basic_auth_path_and_query_are_decoded_substituted_and_reencoded() {
        let (set, policy) = (set(), policy());
        let api = to("api.test", 443, "/v1/x", &policy);
        let engine = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", engine.encode(format!("x-access-token:{GH}")));
        let replaced = set
            .header("authorization", basic.as_bytes(), &api)
            .unwrap()
            .unwrap();
        let decoded = engine.decode(&replaced[b"Basic ".len()..]).unwrap();
        assert_eq!(decoded, b"x-access-token:real-\"gh\"-secret");

        assert_eq!(
            set.target(&format!("/v1/bot{GH}/send?a=1&key={GH}&b"), &api)
                .unwrap()
                .unwrap(),
            "/v1/botreal-%22gh%22-secret/send?a=1&key=real-%22gh%22-secret&b"
        );
        // Percent-encoded placeholders are found too.
        let encoded = "/v1/x?t=openshell%3Aresolve%3Aenv%3Av1_API_TOKEN";
        let bound = to("bound.test", 8443, "/v1/x", &policy);
        assert_eq!(
            set.target(encoded, &bound).unwrap().unwrap(),
            "/v1/x?t=s3cr3t%20tok"
        );
        assert_eq!(set.target("/v1/x?q=1", &api).unwrap(), None);
    }

    #[test]
    fn bodies_are_rewritten_by_content_type_and_scanned_otherwise() {
        let (set, policy) = (set(), policy());
        let api = to("api.test", 443, "/v1/x", &policy);
        let json = format!(r#"{{"token":"{GH}"}}"#);
        assert_eq!(
            set.body(
                Some("application/json; charset=utf-8"),
                json.as_bytes(),
                &api
            )
            .unwrap()
            .unwrap(),
            br#"{"token":"real-\"gh\"-secret"}"#.to_vec()
        );
        let form = format!("a=1&token={GH}");
        assert_eq!(
            set.body(
                Some("application/x-www-form-urlencoded"),
                form.as_bytes(),
                &api
            )
            .unwrap()
            .unwrap(),
            b"a=1&token=real-%22gh%22-secret".to_vec()
        );
        assert_eq!(
            set.body(Some("application/octet-stream"), GH.as_bytes(), &api),
            Err(CredentialError::InBody)
        );
        assert_eq!(
            set.body(
                Some("text/plain"),
                GH.as_bytes(),
                &to("evil.test", 443, "/", &policy)
            ),
            Err(CredentialError::EndpointMismatch)
        );
    }

    #[tokio::test]
    async fn a_scanning_writer_stops_before_the_placeholder_and_releases_clean_bodies_whole() {
        use tokio::io::AsyncWriteExt;
        let set = Arc::new(set());
        let mut sent = Vec::new();
        let mut writer = ScanningWriter::new(&mut sent, set.clone());
        writer.write_all(&[b'a'; 10_000]).await.unwrap();
        writer.write_all(b"token=ghp_0pen").await.unwrap();
        let error = writer.write_all(b"She11").await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        drop(writer);
        assert!(sent.len() < 10_000, "the held-back end was written");
        assert!(!String::from_utf8_lossy(&sent).contains("ghp_"));

        let mut clean = Vec::new();
        let mut writer = ScanningWriter::new(&mut clean, set);
        for _ in 0..100 {
            writer.write_all(b"0123456789").await.unwrap();
        }
        writer.finish().await.unwrap();
        assert_eq!(clean, b"0123456789".repeat(100));
    }

    #[test]
    fn the_scanner_catches_split_and_encoded_placeholders_before_releasing_them() {
        let set = set();
        // Split across three reads: nothing of it is released first.
        let mut scanner = Scanner::default();
        let body = format!("{}{GH}{}", "x".repeat(5000), "y".repeat(10));
        let (a, rest) = body.split_at(5010);
        let released = scanner.push(&set, a.as_bytes()).unwrap();
        assert!(!released.is_empty());
        assert!(!String::from_utf8_lossy(&released).contains("ghp_"));
        assert_eq!(
            scanner.push(&set, &rest.as_bytes()[..17]),
            Err(CredentialError::InBody)
        );
        let mut encoded = Scanner::default();
        assert_eq!(
            encoded.push(&set, b"data=openshell%3Aresolve%3Aenv%3Av1_API_TOKEN"),
            Err(CredentialError::InBody)
        );
        let mut split = Scanner::default();
        split.push(&set, b"data=openshell%3Aresol").unwrap();
        assert_eq!(
            split.push(&set, b"ve%3Aenv%3Av7_X"),
            Err(CredentialError::InBody)
        );
        // A clean body comes out whole.
        let mut clean = Scanner::default();
        let mut out = clean.push(&set, b"hello ").unwrap();
        out.extend(clean.push(&set, b"world").unwrap());
        out.extend(clean.finish());
        assert_eq!(out, b"hello world");
    }
}
