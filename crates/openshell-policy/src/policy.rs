//! [`Policy`]: a document that passed validation, with typed values.
//!
//! Built only by [`crate::validate::validate`]. Access presets are already
//! expanded into rules, so the compiler and the matchers see one form.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

use crate::document::PolicyDocument;
use crate::glob::Glob;
use crate::host::HostPattern;
use crate::yaml::{FieldPath, Location};

/// The supported policy `version`.
pub const POLICY_VERSION: u32 = 1;

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub filesystem: FilesystemPolicy,
    pub landlock: LandlockCompatibility,
    pub process: ProcessPolicy,
    /// Entries by map key; iteration order is the key order, which decides `matched_policy`.
    pub network: BTreeMap<String, NetworkPolicy>,
    pub middlewares: BTreeMap<String, Middleware>,
    /// The document this policy was validated from (for output and hashing).
    pub document: PolicyDocument,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemPolicy {
    pub include_workdir: bool,
    /// Lexically normalised absolute paths.
    pub read_only: Vec<String>,
    pub read_write: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LandlockCompatibility {
    #[default]
    BestEffort,
    HardRequirement,
}

impl LandlockCompatibility {
    pub fn as_str(self) -> &'static str {
        match self {
            LandlockCompatibility::BestEffort => "best_effort",
            LandlockCompatibility::HardRequirement => "hard_requirement",
        }
    }
}

/// A user or group the child runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The dedicated `sandbox` account.
    Sandbox,
    /// A numeric id in `1..=4294967294`.
    Id(u32),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Sandbox => f.write_str("sandbox"),
            Identity::Id(id) => write!(f, "{id}"),
        }
    }
}

/// `None` means "unset": the driver chooses, and a root supervisor falls back to `sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessPolicy {
    pub run_as_user: Option<Identity>,
    pub run_as_group: Option<Identity>,
}

/// One `network_policies` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicy {
    pub key: String,
    /// Display name; defaults to the key.
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub binaries: Vec<Binary>,
}

/// One `binaries` entry: which executables it names and whether an
/// ancestor of the caller may be the one that matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    pub pattern: BinaryPattern,
    /// The caller matches when one of its ancestors does (a `git` alias
    /// running `python` is `git`'s). `ancestors: false` turns that off.
    pub match_ancestors: bool,
}

impl Binary {
    /// Whether a caller running `binary`, started by `ancestors`, is named.
    pub fn matches_caller(&self, binary: &str, ancestors: &[&str]) -> bool {
        self.pattern.matches(binary)
            || (self.match_ancestors && ancestors.iter().any(|a| self.pattern.matches(a)))
    }
}

/// A binary selector: an exact path, or a `/`-delimited glob.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryPattern {
    Exact(String),
    Glob(Glob),
}

impl BinaryPattern {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            BinaryPattern::Exact(exact) => exact == path,
            BinaryPattern::Glob(glob) => glob.matches(path),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            BinaryPattern::Exact(exact) => exact,
            BinaryPattern::Glob(glob) => glob.as_str(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Rest,
    Websocket,
    Graphql,
    Sql,
    JsonRpc,
    Mcp,
}

impl Protocol {
    pub const ALL: [Protocol; 7] = [
        Protocol::Tcp,
        Protocol::Rest,
        Protocol::Websocket,
        Protocol::Graphql,
        Protocol::Sql,
        Protocol::JsonRpc,
        Protocol::Mcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Rest => "rest",
            Protocol::Websocket => "websocket",
            Protocol::Graphql => "graphql",
            Protocol::Sql => "sql",
            Protocol::JsonRpc => "json-rpc",
            Protocol::Mcp => "mcp",
        }
    }

    pub fn parse(value: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// True for protocols whose requests the proxy parses and judges.
    pub fn is_inspected(self) -> bool {
        self != Protocol::Tcp
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Detect a ClientHello and terminate it.
    #[default]
    Auto,
    /// Never terminate: a raw tunnel.
    Skip,
}

/// Spec decision 5: `enforce` unless `audit` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    Full,
}

impl Access {
    pub fn parse(value: &str) -> Option<Access> {
        match value {
            "read-only" => Some(Access::ReadOnly),
            "read-write" => Some(Access::ReadWrite),
            "full" => Some(Access::Full),
            _ => None,
        }
    }
}

/// One endpoint, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: HostPattern,
    /// Sorted, unique, each in `1..=65535`.
    pub ports: Vec<u16>,
    /// Endpoint-level HTTP path selector; `None` means every path.
    pub path: Option<Glob>,
    /// `None` is plain L4 (explicit-proxy passthrough).
    pub protocol: Option<Protocol>,
    pub tls: TlsMode,
    pub enforcement: Enforcement,
    /// Allow rules with presets expanded.
    pub rules: Vec<Rule>,
    pub deny_rules: Vec<Rule>,
    pub allowed_ips: Vec<IpNet>,
    pub allow_encoded_slash: bool,
    pub websocket_credential_rewrite: bool,
    pub request_body_credential_rewrite: bool,
    pub allow_uninspected_credentials: bool,
    pub credential_signing: Option<String>,
    pub signing_service: Option<String>,
    pub signing_region: Option<String>,
    pub credential_provider: Option<String>,
    pub body_limit: Option<u32>,
    pub mcp: Option<McpSettings>,
    pub persisted_queries_allow_registered: bool,
}

impl Endpoint {
    /// True when the endpoint carries config beyond host/port/binary (docs/policy.md, "Decisions").
    pub fn has_extended_config(&self) -> bool {
        matches!(self.protocol, Some(p) if p != Protocol::Tcp)
            || !self.allowed_ips.is_empty()
            || self.tls != TlsMode::Auto
    }

    /// A short selector for messages: `host:port[,port]` plus the path when set.
    pub fn selector(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let mut text = format!("{}:{}", self.host.as_str(), ports.join(","));
        if let Some(path) = &self.path {
            text.push_str(path.as_str());
        }
        text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpSettings {
    pub strict_tool_names: bool,
    pub allow_all_known_mcp_methods: bool,
}

/// An HTTP method matcher: any, or one upper-case method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodMatcher {
    Any,
    Exact(String),
}

impl MethodMatcher {
    /// Case-insensitive; an allowed or denied `GET` also covers `HEAD`.
    pub fn matches(&self, method: &str) -> bool {
        match self {
            MethodMatcher::Any => true,
            MethodMatcher::Exact(exact) => {
                exact.eq_ignore_ascii_case(method)
                    || (exact == "GET" && method.eq_ignore_ascii_case("HEAD"))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MethodMatcher::Any => "*",
            MethodMatcher::Exact(exact) => exact,
        }
    }
}

/// A value matcher: any of these text globs.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMatcher(pub Vec<Glob>);

impl ValueMatcher {
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|glob| glob.matches(value))
    }
}

/// A validated rule body (allow or deny); unset fields match anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub method: MethodMatcher,
    /// `None` matches every path.
    pub path: Option<Glob>,
    pub query: Vec<(String, ValueMatcher)>,
    pub command: Option<String>,
    pub operation_type: Option<String>,
    pub operation_name: Option<Glob>,
    pub fields: Option<Vec<Glob>>,
    pub tool: Option<ValueMatcher>,
    pub params: Vec<(String, ValueMatcher)>,
}

impl Rule {
    /// A rule allowing `method` on every path.
    pub fn any_path(method: MethodMatcher) -> Rule {
        Rule {
            method,
            path: None,
            query: Vec::new(),
            command: None,
            operation_type: None,
            operation_name: None,
            fields: None,
            tool: None,
            params: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Middleware {
    pub key: String,
    pub name: String,
    pub middleware: String,
    pub order: i64,
    pub config: Option<serde_json::Value>,
    pub fail_open: bool,
    pub include: Vec<HostPattern>,
    pub exclude: Vec<HostPattern>,
}

/// A validation finding: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: FieldPath,
    pub message: String,
    pub location: Option<Location>,
}

impl Diagnostic {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Diagnostic {
            path,
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
