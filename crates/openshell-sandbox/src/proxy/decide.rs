//! The egress decision: one function ([`decide`]) for every way a request
//! reaches the proxy: a `CONNECT`, an absolute-form forward request, and
//! each request inside an inspected (or TLS-terminated) tunnel. It runs the
//! layers in order, L4 (host, port, binary) → destination (resolved once,
//! every address checked, docs/policy.md "Destinations") → the request
//! (its authority inside a tunnel, its canonical path against the
//! endpoint's rules), and returns a [`Decision`]: what was decided, by which
//! layer, under which policy, where an allowed request goes, and for a
//! refusal what to answer. It neither writes to the client nor emits
//! events: callers emit `NetworkEvent::from(&decision)` and answer with
//! [`super::response::refusal`], so every front door reports alike.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use openshell_policy::canonical::canonicalize_target;
use openshell_policy::l4::{L4Allow, L4Decision, L4Request};
use openshell_policy::l7::RestRequest;
use openshell_policy::policy::TlsMode;
use openshell_policy::ssrf::{
    DeniedKind, DestinationDenied, check_destination, check_host_addresses,
};

pub use openshell_policy::decision::{Layer, Verdict};

use super::caller::{Caller, IdentifyError};
use super::generation::Generation;
use super::request::authority_matches;

/// How the agent asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    /// `CONNECT host:port`.
    #[serde(rename = "CONNECT")]
    Connect,
    /// An absolute-form `http://` request to the proxy.
    #[serde(rename = "FORWARD")]
    Forward,
    /// A request inside a tunnel the proxy terminated.
    #[serde(rename = "CONNECT_L7")]
    TunnelRequest,
}

/// One request as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    pub kind: Kind,
    pub host: &'a str,
    pub port: u16,
    /// For forward requests and requests inside tunnels.
    pub request: Option<Request<'a>>,
}

/// An HTTP request's line (and, inside a tunnel, its authority).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Origin-form target as sent (path and query).
    pub target: &'a str,
    /// Inside a tunnel: the request's authority (URI or `Host`) and the
    /// scheme's default port, checked against the tunnel's endpoint.
    pub authority: Option<(&'a str, u16)>,
    /// Inside a tunnel: whether the endpoint's L7 rules apply (an L4
    /// endpoint whose TLS was terminated checks the authority only).
    pub rules: bool,
}

impl Intent<'_> {
    /// The path without its query, for details and events.
    fn path(&self) -> Option<&str> {
        self.request
            .map(|r| r.target.split('?').next().unwrap_or(r.target))
    }
}

/// What the proxy needs from the outside world to decide: the names'
/// addresses and its host's own.
pub trait Resolve: Send + Sync {
    /// The host's addresses (the literal itself, or a DNS lookup; empty
    /// when resolution fails).
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Vec<IpAddr>> + Send + 'a>>;

    /// This host's own addresses; an error when they cannot be listed (the
    /// destination is then refused).
    fn own_addresses(&self) -> Result<Arc<Vec<IpAddr>>, String>;
}

/// The outcome for one intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `deny` exactly when the outcome is a refusal.
    pub verdict: Verdict,
    pub layer: Layer,
    /// The policy entry that allowed (or whose rules refused) the request.
    pub policy: Option<String>,
    /// Why (a refusal's reason, an audit's note).
    pub reason: Option<String>,
    pub outcome: Outcome,
    /// Who asked for what, as events report it.
    pub subject: Subject,
}

/// Where an allowed request goes, or what to answer a refused one.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Allowed(Endpoint),
    Refused(Refusal),
}

/// Who asked for what, under which generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub method: Option<String>,
    /// Canonical when the request was judged by path; never a query.
    pub path: Option<String>,
    pub binary: Option<String>,
    pub pid: Option<u32>,
    pub generation: u64,
}

/// Where and how an allowed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The validated addresses to dial (empty inside a tunnel: its
    /// upstream is connected).
    pub addresses: Vec<IpAddr>,
    pub route: Route,
}

/// What happens to an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send exactly this request, with this canonical origin-form target;
    /// `rewrite_body`: the endpoint substitutes credentials in bodies
    /// (`request_body_credential_rewrite`).
    Forward { target: String, rewrite_body: bool },
    /// A tunnel of bytes only (`tls: skip`); `uninspected_credentials`:
    /// the endpoint accepts that credentials bound to it go unsubstituted
    /// (`allow_uninspected_credentials`).
    Raw { uninspected_credentials: bool },
    /// An L4 tunnel: TLS terminated and re-encrypted, no request rules.
    Terminate,
    /// An L7 tunnel: every request judged.
    Inspect,
}

/// Why a request is refused, as the answer reports it
/// ([`super::response::refusal`] writes the bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 403 `policy_denied`: `detail` says what was asked; `reason` (may be
    /// empty) why not.
    Policy { detail: String, reason: String },
    /// 403 `ssrf_denied`.
    Destination { detail: String },
    /// 400 `invalid_request_target`: a path that cannot be canonicalised.
    InvalidTarget,
    /// 403 by an endpoint rule: what the L7 denial body reports (its
    /// policy also goes in the `X-OpenShell-Policy` header).
    Rule(Box<RuleDenial>),
    /// 403 `request_authority_mismatch`.
    AuthorityMismatch,
    /// 502 `upstream_unreachable`.
    Upstream { detail: String },
    /// The request's credentials cannot be sent (403/413/500 by kind);
    /// `forward`: on the forward-proxy path, whose bodies differ.
    Credential {
        error: super::credentials::CredentialError,
        forward: bool,
    },
}

/// What a denial by an endpoint rule reports about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDenial {
    /// The entry whose rules refused it.
    pub policy: String,
    pub method: String,
    /// Canonical, without the query.
    pub path: String,
    pub detail: String,
    pub host: String,
    pub port: u16,
    pub binary: Option<String>,
}

impl Decision {
    /// The refusal of a request whose caller could not be identified.
    pub fn unidentified(intent: &Intent<'_>, generation: u64, error: &IdentifyError) -> Decision {
        let mut draft = Draft::new(intent, None, generation);
        draft.layer = Layer::Identity;
        draft.refuse_by_policy(error.to_string())
    }

    /// An allowed request whose upstream could not be reached: refused at
    /// the `upstream` layer with a 502.
    pub fn unreachable(&self, error: &std::io::Error) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            layer: Layer::Upstream,
            reason: Some(error.to_string()),
            outcome: Outcome::Refused(Refusal::Upstream {
                detail: format!("{}: {error}", self.subject.describe(false)),
            }),
            ..self.clone()
        }
    }

    /// An allowed request whose credentials cannot be sent: refused at
    /// the `credentials` layer.
    pub fn credential_refused(&self, error: super::credentials::CredentialError) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            layer: Layer::Credentials,
            reason: Some(error.reason().to_owned()),
            outcome: Outcome::Refused(Refusal::Credential {
                error,
                forward: self.subject.kind == Kind::Forward,
            }),
            ..self.clone()
        }
    }

    /// Where the allowed request goes; `None` when it is refused.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match &self.outcome {
            Outcome::Allowed(endpoint) => Some(endpoint),
            Outcome::Refused(_) => None,
        }
    }

    /// What to answer the refused request; `None` when it is allowed.
    pub fn refusal(&self) -> Option<&Refusal> {
        match &self.outcome {
            Outcome::Refused(refusal) => Some(refusal),
            Outcome::Allowed(_) => None,
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allowed(_))
    }
}

impl Subject {
    /// `CONNECT h:p`, or `GET h:p` / `GET h:p/path` for requests, as
    /// details write them.
    fn describe(&self, with_path: bool) -> String {
        let (host, port) = (&self.host, self.port);
        match (&self.method, with_path) {
            (Some(method), true) => {
                format!(
                    "{method} {host}:{port}{}",
                    self.path.as_deref().unwrap_or("")
                )
            }
            (Some(method), false) => format!("{method} {host}:{port}"),
            (None, _) => format!("CONNECT {host}:{port}"),
        }
    }
}

/// A decision being made: everything but its outcome, which
/// [`Draft::allow`] or [`Draft::refuse`] adds.
struct Draft {
    layer: Layer,
    policy: Option<String>,
    reason: Option<String>,
    /// Not allowed by the rules, forwarded because the endpoint audits.
    audit: bool,
    subject: Subject,
}

impl Draft {
    fn new(intent: &Intent<'_>, caller: Option<&Caller>, generation: u64) -> Draft {
        Draft {
            layer: Layer::L4,
            policy: None,
            reason: None,
            audit: false,
            subject: Subject {
                kind: intent.kind,
                host: intent.host.to_owned(),
                port: intent.port,
                method: intent.request.map(|r| r.method.to_owned()),
                path: intent.path().map(str::to_owned),
                binary: caller.map(|c| c.binary.clone()),
                pid: caller.map(|c| c.pid),
                generation,
            },
        }
    }

    fn allow(self, endpoint: Endpoint) -> Decision {
        let verdict = if self.audit {
            Verdict::Audit
        } else {
            Verdict::Allow
        };
        self.finish(verdict, Outcome::Allowed(endpoint))
    }

    fn refuse(self, refusal: Refusal) -> Decision {
        self.finish(Verdict::Deny, Outcome::Refused(refusal))
    }

    fn finish(self, verdict: Verdict, outcome: Outcome) -> Decision {
        Decision {
            verdict,
            layer: self.layer,
            policy: self.policy,
            reason: self.reason,
            outcome,
            subject: self.subject,
        }
    }

    /// An L4-style refusal: inside a tunnel the reason is the detail (as
    /// the established proxy answers there), elsewhere the detail names the
    /// request and the reason follows.
    fn refuse_by_policy(mut self, reason: String) -> Decision {
        let refusal = match self.subject.kind {
            Kind::TunnelRequest => Refusal::Policy {
                detail: reason.clone(),
                reason: String::new(),
            },
            Kind::Connect | Kind::Forward => Refusal::Policy {
                detail: format!("{} not permitted by policy", self.subject.describe(true)),
                reason: reason.clone(),
            },
        };
        self.reason = Some(reason);
        self.refuse(refusal)
    }
}

/// Decides `intent` by `caller` under `generation`; `ignore_binary`: the
/// relaxed identity mode (endpoints only, binaries ignored).
pub async fn decide(
    generation: &Generation,
    intent: &Intent<'_>,
    caller: &Caller,
    resolve: &dyn Resolve,
    ignore_binary: bool,
) -> Decision {
    let mut draft = Draft::new(intent, Some(caller), generation.number);
    let (host, port) = (intent.host, intent.port);

    // Inside a tunnel the request must be for the tunnel's endpoint, or a
    // request for another virtual host on the same address passes unjudged.
    if let Some(Request {
        authority: Some((authority, default_port)),
        ..
    }) = intent.request
        && !authority_matches(authority, host, port, default_port)
    {
        draft.layer = Layer::L7;
        draft.reason = Some(format!(
            "request authority '{authority}' does not match the tunnel"
        ));
        return draft.refuse(Refusal::AuthorityMismatch);
    }

    // A terminated L4 tunnel's requests are judged by their authority only.
    if let Some(request) = intent.request
        && intent.kind == Kind::TunnelRequest
        && !request.rules
    {
        return draft.allow(Endpoint {
            addresses: Vec::new(),
            route: Route::Forward {
                target: request.target.to_owned(),
                rewrite_body: false,
            },
        });
    }

    // L4, again for each request inside an inspected tunnel: the policy
    // may have changed since the tunnel opened.
    let ancestors: Vec<&str> = caller.ancestors.iter().map(String::as_str).collect();
    let cmdline: Vec<&str> = caller.cmdline.iter().map(String::as_str).collect();
    let allow = match generation.policy.decide_l4(&L4Request {
        host,
        port,
        binary: &caller.binary,
        ancestors: &ancestors,
        cmdline: &cmdline,
        ignore_binary,
    }) {
        L4Decision::Allow(allow) => allow,
        L4Decision::Deny(deny) => return draft.refuse_by_policy(deny.reason),
    };
    draft.policy = Some(allow.policy.to_owned());

    // Destination: resolve once, check every address, dial only those.
    let addresses = match intent.kind {
        Kind::TunnelRequest => Vec::new(),
        Kind::Connect | Kind::Forward => {
            let addresses = resolve.resolve(host, port).await;
            if let Err(denied) = check_addresses(&allow, host, port, &addresses, resolve) {
                let detail = format!(
                    "{} blocked: {}",
                    draft.subject.describe(false),
                    denied.kind.as_str()
                );
                draft.layer = Layer::Ssrf;
                draft.reason = Some(denied.reason);
                return draft.refuse(Refusal::Destination { detail });
            }
            addresses
        }
    };

    // The request against the endpoint's rules.
    draft.layer = Layer::L7;
    let route = match intent.request {
        Some(request) => match judge_request(&allow, intent, request, caller, &mut draft) {
            Ok(target) => Route::Forward {
                target,
                rewrite_body: allow
                    .matched
                    .iter()
                    .any(|m| m.endpoint.request_body_credential_rewrite),
            },
            Err(refusal) => return draft.refuse(refusal),
        },
        None if allow.is_inspected() => Route::Inspect,
        None if allow
            .matched
            .iter()
            .any(|m| m.endpoint.tls == TlsMode::Skip) =>
        {
            Route::Raw {
                uninspected_credentials: allow
                    .matched
                    .iter()
                    .any(|m| m.endpoint.allow_uninspected_credentials),
            }
        }
        None => Route::Terminate,
    };
    if !allow.is_inspected() && intent.kind != Kind::TunnelRequest {
        draft.layer = Layer::L4;
    }
    draft.allow(Endpoint { addresses, route })
}

/// Every resolved address against the endpoint's destination mode and
/// this host's own addresses.
fn check_addresses(
    allow: &L4Allow<'_>,
    host: &str,
    port: u16,
    addresses: &[IpAddr],
    resolve: &dyn Resolve,
) -> Result<(), DestinationDenied> {
    let mode = allow.destination_mode(host);
    check_destination(mode, host, port, addresses)?;
    let own = resolve
        .own_addresses()
        .map_err(|reason| DestinationDenied {
            kind: DeniedKind::HostAddress,
            reason,
        })?;
    check_host_addresses(mode, host, addresses, &own)
}

/// Canonicalises the request's target and evaluates it against the
/// endpoint's rules: the canonical target to forward, or the refusal.
/// Sets the draft's path, policy, reason and audit mark.
fn judge_request(
    allow: &L4Allow<'_>,
    intent: &Intent<'_>,
    request: Request<'_>,
    caller: &Caller,
    draft: &mut Draft,
) -> Result<String, Refusal> {
    let allow_encoded_slash = allow.matched.iter().any(|m| m.endpoint.allow_encoded_slash);
    let canonical = match canonicalize_target(request.target, allow_encoded_slash) {
        Ok(canonical) => canonical,
        Err(error) => {
            draft.reason = Some(format!("invalid request target: {error:?}"));
            return Err(Refusal::InvalidTarget);
        }
    };
    let verdict = allow.evaluate_rest(&RestRequest {
        method: request.method,
        path: &canonical.path,
        query: &canonical.query,
    });
    draft.subject.path = Some(canonical.path.clone());
    draft.policy = Some(verdict.policy.to_owned());
    match verdict.verdict {
        Verdict::Deny => {
            let detail = verdict
                .reason
                .unwrap_or_else(|| "request denied by policy".to_owned());
            draft.reason = Some(detail.clone());
            return Err(Refusal::Rule(Box::new(RuleDenial {
                policy: verdict.policy.to_owned(),
                method: request.method.to_owned(),
                path: canonical.path,
                detail,
                host: intent.host.to_owned(),
                port: intent.port,
                binary: Some(caller.binary.clone()),
            })));
        }
        Verdict::Audit => {
            draft.audit = true;
            draft.reason = verdict.reason;
        }
        Verdict::Allow => {}
    }
    Ok(match &canonical.raw_query {
        Some(query) => format!("{}?{query}", canonical.path),
        None => canonical.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_policy::CompiledPolicy;

    /// Names resolve to fixed addresses; the host's own are fixed too (or
    /// cannot be listed). Nothing here touches the network: `decide` only
    /// classifies addresses (dialing is the proxy's, after it), so the
    /// public and metadata addresses below are data, never destinations.
    struct Fixed {
        addresses: Vec<IpAddr>,
        own: Option<Vec<IpAddr>>,
    }

    impl Resolve for Fixed {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = Vec<IpAddr>> + Send + 'a>> {
            Box::pin(std::future::ready(self.addresses.clone()))
        }

        fn own_addresses(&self) -> Result<Arc<Vec<IpAddr>>, String> {
            self.own
                .clone()
                .map(Arc::new)
                .ok_or_else(|| "cannot list this host's addresses".to_owned())
        }
    }

    fn public() -> Fixed {
        Fixed {
            addresses: vec!["93.184.215.14".parse().unwrap()],
            own: Some(vec!["10.0.0.5".parse().unwrap()]),
        }
    }

    fn generation() -> Generation {
        let yaml = r#"version: 1
network_policies:
  plain:
    name: plain
    endpoints:
      - host: plain.example.com
        port: 443
    binaries:
      - path: /usr/bin/curl
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 80
        protocol: rest
        enforcement: enforce
        access: read-only
    binaries:
      - path: /usr/bin/curl
"#;
        let validated = openshell_policy::load_str(yaml).unwrap();
        Generation {
            number: 7,
            policy: CompiledPolicy::new(validated.policy),
        }
    }

    fn curl() -> Caller {
        Caller {
            pid: 42,
            binary: "/usr/bin/curl".to_owned(),
            ancestors: vec!["/usr/bin/bash".to_owned()],
            cmdline: Vec::new(),
            sha256: "0".repeat(64),
        }
    }

    fn connect(host: &str, port: u16) -> Intent<'_> {
        Intent {
            kind: Kind::Connect,
            host,
            port,
            request: None,
        }
    }

    fn forward<'a>(method: &'a str, target: &'a str) -> Intent<'a> {
        Intent {
            kind: Kind::Forward,
            host: "api.example.com",
            port: 80,
            request: Some(Request {
                method,
                target,
                authority: None,
                rules: true,
            }),
        }
    }

    async fn decided(intent: &Intent<'_>, resolve: &Fixed) -> Decision {
        decide(&generation(), intent, &curl(), resolve, false).await
    }

    #[tokio::test]
    async fn an_allowed_connect_dials_the_checked_addresses_and_says_who_asked() {
        let decision = decided(&connect("plain.example.com", 443), &public()).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Allow, Layer::L4)
        );
        assert_eq!(decision.policy.as_deref(), Some("plain"));
        assert_eq!(
            decision.endpoint(),
            Some(&Endpoint {
                addresses: public().addresses,
                route: Route::Terminate,
            })
        );
        assert_eq!(decision.refusal(), None);
        let subject = &decision.subject;
        assert_eq!(subject.kind, Kind::Connect);
        assert_eq!(subject.binary.as_deref(), Some("/usr/bin/curl"));
        assert_eq!((subject.pid, subject.generation), (Some(42), 7));
        // An inspected endpoint's tunnel is inspected.
        let decision = decided(&connect("api.example.com", 80), &public()).await;
        assert_eq!(decision.endpoint().unwrap().route, Route::Inspect);
    }

    #[tokio::test]
    async fn a_host_no_policy_names_is_refused_at_l4() {
        let decision = decided(&connect("other.example.com", 443), &public()).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Deny, Layer::L4)
        );
        assert_eq!(decision.endpoint(), None);
        let Some(Refusal::Policy { detail, reason }) = decision.refusal() else {
            panic!("{decision:?}");
        };
        assert_eq!(
            detail,
            "CONNECT other.example.com:443 not permitted by policy"
        );
        assert_eq!(decision.reason.as_ref(), Some(reason));
        assert!(reason.contains("other.example.com:443"), "{reason}");
    }

    #[tokio::test]
    async fn private_or_own_addresses_are_refused_and_an_unlisted_host_fails_closed() {
        for addresses in [
            vec!["127.0.0.1"],
            vec!["93.184.215.14", "169.254.169.254"],
            vec!["10.0.0.5"],
        ] {
            let resolve = Fixed {
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                own: Some(vec!["10.0.0.5".parse().unwrap()]),
            };
            let decision = decided(&connect("plain.example.com", 443), &resolve).await;
            assert_eq!(
                (decision.verdict, decision.layer),
                (Verdict::Deny, Layer::Ssrf),
                "{addresses:?}"
            );
            let Some(Refusal::Destination { detail }) = decision.refusal() else {
                panic!("{decision:?}");
            };
            assert!(
                detail.starts_with("CONNECT plain.example.com:443 blocked: "),
                "{detail}"
            );
        }
        let unlisted = Fixed {
            own: None,
            ..public()
        };
        let decision = decided(&connect("plain.example.com", 443), &unlisted).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Deny, Layer::Ssrf)
        );
    }

    #[tokio::test]
    async fn forward_requests_are_judged_by_their_canonical_path() {
        let decision = decided(&forward("GET", "/a/../b?q=1"), &public()).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Allow, Layer::L7)
        );
        assert_eq!(decision.subject.path.as_deref(), Some("/b"));
        assert_eq!(
            decision.endpoint().unwrap().route,
            Route::Forward {
                target: "/b?q=1".to_owned(),
                rewrite_body: false,
            }
        );
        let decision = decided(&forward("POST", "/b"), &public()).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Deny, Layer::L7)
        );
        let Some(Refusal::Rule(denial)) = decision.refusal() else {
            panic!("{decision:?}");
        };
        assert_eq!(denial.policy, "api");
        assert_eq!(
            (denial.method.as_str(), denial.path.as_str()),
            ("POST", "/b")
        );
        let decision = decided(&forward("GET", "/%2e%2e/x%00"), &public()).await;
        assert_eq!(decision.refusal(), Some(&Refusal::InvalidTarget));
    }

    #[tokio::test]
    async fn a_request_inside_a_tunnel_must_name_the_tunnels_endpoint() {
        let inside = |authority| Intent {
            kind: Kind::TunnelRequest,
            host: "api.example.com",
            port: 80,
            request: Some(Request {
                method: "GET",
                target: "/x",
                authority: Some((authority, 80)),
                rules: true,
            }),
        };
        let decision = decided(&inside("evil.example.com"), &public()).await;
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Deny, Layer::L7)
        );
        assert_eq!(decision.refusal(), Some(&Refusal::AuthorityMismatch));
        let decision = decided(&inside("api.example.com"), &public()).await;
        assert_eq!(decision.verdict, Verdict::Allow);
        // No resolution inside a tunnel: its upstream is connected.
        assert_eq!(decision.endpoint().unwrap().addresses, Vec::<IpAddr>::new());
    }

    #[test]
    fn an_unidentified_caller_is_refused_at_the_identity_layer() {
        let intent = forward("GET", "/x?secret=1");
        let decision = Decision::unidentified(&intent, 3, &IdentifyError::NoConnectRecord);
        assert_eq!(
            (decision.verdict, decision.layer),
            (Verdict::Deny, Layer::Identity)
        );
        assert_eq!(decision.subject.binary, None);
        assert_eq!(decision.subject.path.as_deref(), Some("/x"));
        let Some(Refusal::Policy { detail, reason }) = decision.refusal() else {
            panic!("{decision:?}");
        };
        assert_eq!(detail, "GET api.example.com:80/x not permitted by policy");
        assert!(reason.starts_with("no connect() was recorded"));
        let failed = decision.unreachable(&std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(failed.layer, Layer::Upstream);
    }
}
