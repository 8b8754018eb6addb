//! Providers (docs/providers.md): the built-in provider types, the
//! endpoints each type's credentials are bound to, and the placeholders a
//! sandbox's processes see instead of the secrets.
//!
//! The CLI reads the catalog for `--from-existing` discovery and
//! auto-providers; the gateway validates types and derives placeholders;
//! the supervisor matches bindings. All three must agree, so it lives here.

use sha2::{Digest, Sha256};

/// The shape of a well-known secret, so that a client validating it
/// accepts the placeholder: a fixed prefix, then characters from
/// `[A-Za-z0-9]` up to `len` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub prefix: &'static str,
    pub len: usize,
}

/// One credential key of a provider type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The environment variable the sandbox's processes see.
    pub key: &'static str,
    /// Where `--from-existing` looks for the value, in order (environment
    /// variables of the CLI user).
    pub discover: &'static [&'static str],
    pub shape: Option<Shape>,
}

/// A built-in provider type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderType {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub keys: &'static [KeySpec],
    /// Where the credentials may be sent (`host:port` with an optional path
    /// scope `host:port/prefix/**`); empty: the sandbox policy's endpoints
    /// that say `credential_binding.provider: <name>`.
    pub endpoints: &'static [&'static str],
    /// Command names (basenames) that need this type: `create -- claude`
    /// infers `claude-code`.
    pub commands: &'static [&'static str],
}

const ANTHROPIC_KEY: KeySpec = KeySpec {
    key: "ANTHROPIC_API_KEY",
    discover: &["ANTHROPIC_API_KEY"],
    shape: Some(Shape {
        prefix: "sk-ant-api03-",
        len: 108,
    }),
};

const OPENAI_KEY: KeySpec = KeySpec {
    key: "OPENAI_API_KEY",
    discover: &["OPENAI_API_KEY"],
    shape: Some(Shape {
        prefix: "sk-proj-",
        len: 164,
    }),
};

/// Every built-in type.
pub const TYPES: &[ProviderType] = &[
    ProviderType {
        name: "anthropic",
        aliases: &[],
        keys: &[ANTHROPIC_KEY],
        endpoints: &["api.anthropic.com:443"],
        commands: &[],
    },
    ProviderType {
        name: "claude-code",
        aliases: &["claude"],
        keys: &[ANTHROPIC_KEY],
        endpoints: &["api.anthropic.com:443", "statsig.anthropic.com:443"],
        commands: &["claude"],
    },
    ProviderType {
        name: "openai",
        aliases: &[],
        keys: &[OPENAI_KEY],
        endpoints: &["api.openai.com:443"],
        commands: &[],
    },
    ProviderType {
        name: "codex",
        aliases: &[],
        keys: &[OPENAI_KEY],
        endpoints: &["api.openai.com:443", "chatgpt.com:443/backend-api/**"],
        commands: &["codex"],
    },
    ProviderType {
        name: "github",
        aliases: &["gh"],
        keys: &[KeySpec {
            key: "GITHUB_TOKEN",
            discover: &["GITHUB_TOKEN", "GH_TOKEN"],
            shape: Some(Shape {
                prefix: "ghp_",
                len: 40,
            }),
        }],
        endpoints: &[
            "api.github.com:443",
            "github.com:443",
            "uploads.github.com:443",
        ],
        commands: &["gh"],
    },
    ProviderType {
        name: "gitlab",
        aliases: &["glab"],
        keys: &[KeySpec {
            key: "GITLAB_TOKEN",
            discover: &["GITLAB_TOKEN", "GITLAB_PRIVATE_TOKEN"],
            shape: Some(Shape {
                prefix: "glpat-",
                len: 26,
            }),
        }],
        endpoints: &["gitlab.com:443"],
        commands: &["glab"],
    },
    ProviderType {
        name: "nvidia",
        aliases: &[],
        keys: &[KeySpec {
            key: "NVIDIA_API_KEY",
            discover: &["NVIDIA_API_KEY"],
            shape: Some(Shape {
                prefix: "nvapi-",
                len: 70,
            }),
        }],
        endpoints: &[
            "integrate.api.nvidia.com:443",
            "api.nvcf.nvidia.com:443",
            "build.nvidia.com:443",
        ],
        commands: &[],
    },
    ProviderType {
        name: "generic",
        aliases: &[],
        keys: &[],
        endpoints: &[],
        commands: &[],
    },
];

/// The type named `name` (or one of its aliases).
pub fn find_type(name: &str) -> Option<&'static ProviderType> {
    TYPES
        .iter()
        .find(|t| t.name == name || t.aliases.contains(&name))
}

/// The type a command needs, from its first word's basename.
pub fn type_for_command(command: &[String]) -> Option<&'static ProviderType> {
    let first = command.first()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    TYPES.iter().find(|t| t.commands.contains(&base))
}

/// The names of every type, for messages.
pub fn type_names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

impl ProviderType {
    /// The spec of `key` when the type knows it.
    pub fn key(&self, key: &str) -> Option<&'static KeySpec> {
        self.keys.iter().find(|k| k.key == key)
    }
}

/// How a type's provider serves `inference.local` (docs/inference.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceApi {
    /// The config keys naming its base URL (`https://host/v1`), in order.
    pub base_url_keys: &'static [&'static str],
    /// The base URL when no config key gives one.
    pub default_base_url: Option<&'static str>,
    /// The credential carrying the key (none: the provider's first).
    pub key: Option<&'static str>,
    pub auth: InferenceAuth,
    /// Request headers of the caller's passed on.
    pub passthrough: &'static [&'static str],
    /// Headers sent unless the caller passes its own.
    pub default_headers: &'static [(&'static str, &'static str)],
}

/// How the provider's key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferenceAuth {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>`.
    ApiKey,
}

impl InferenceAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            InferenceAuth::Bearer => "bearer",
            InferenceAuth::ApiKey => "x-api-key",
        }
    }
}

const OPENAI_INFERENCE: InferenceApi = InferenceApi {
    base_url_keys: &["OPENAI_BASE_URL", "base_url"],
    default_base_url: Some("https://api.openai.com/v1"),
    key: Some("OPENAI_API_KEY"),
    auth: InferenceAuth::Bearer,
    passthrough: &["openai-organization", "x-model-id"],
    default_headers: &[],
};

const ANTHROPIC_INFERENCE: InferenceApi = InferenceApi {
    base_url_keys: &["ANTHROPIC_BASE_URL", "base_url"],
    default_base_url: Some("https://api.anthropic.com/v1"),
    key: Some("ANTHROPIC_API_KEY"),
    auth: InferenceAuth::ApiKey,
    passthrough: &["anthropic-version", "anthropic-beta"],
    default_headers: &[("anthropic-version", "2023-06-01")],
};

impl ProviderType {
    /// How this type serves `inference.local`, if it can.
    pub fn inference(&self) -> Option<InferenceApi> {
        match self.name {
            "openai" | "codex" => Some(OPENAI_INFERENCE),
            "anthropic" | "claude-code" => Some(ANTHROPIC_INFERENCE),
            "nvidia" => Some(InferenceApi {
                base_url_keys: &["NVIDIA_BASE_URL", "base_url"],
                default_base_url: Some("https://integrate.api.nvidia.com/v1"),
                key: Some("NVIDIA_API_KEY"),
                auth: InferenceAuth::Bearer,
                passthrough: &["x-model-id"],
                default_headers: &[],
            }),
            // An OpenAI-compatible server of one's own (vLLM, Ollama,
            // llama.cpp's server): `--config base_url=http://host:port/v1`.
            "generic" => Some(InferenceApi {
                base_url_keys: &["base_url", "OPENAI_BASE_URL"],
                default_base_url: None,
                key: None,
                auth: InferenceAuth::Bearer,
                passthrough: &["openai-organization", "x-model-id"],
                default_headers: &[],
            }),
            _ => None,
        }
    }
}

/// An inference base URL: `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing `/` (`/v1`, or empty).
    pub path: String,
}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let bad = || format!("invalid base URL '{text}': expected http[s]://host[:port][/path]");
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || port == 0
            || authority.contains('@')
            || path.contains(['?', '#'])
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        {
            return Err(bad());
        }
        Ok(BaseUrl {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// The config key that replaces a type's endpoints (comma-separated
/// `host:port[/path/**]`): a self-hosted GitLab, a corporate API gateway.
pub const ENDPOINTS_CONFIG: &str = "endpoints";

/// `[A-Za-z_][A-Za-z0-9_]*`, what an environment variable name may be.
pub fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.starts_with("OPENSHELL_")
}

/// Keys that look like placeholder scopes themselves (`v<digits>_…`,
/// `s<64 hex>_…`) are reserved: a placeholder for them would be ambiguous.
pub fn reserved_key(key: &str) -> bool {
    let scoped = |rest: &str, digit: fn(&u8) -> bool, len: Option<usize>| {
        rest.split_once('_').is_some_and(|(scope, _)| {
            !scope.is_empty()
                && scope.as_bytes().iter().all(digit)
                && len.is_none_or(|l| scope.len() == l)
        })
    };
    key.strip_prefix('v')
        .is_some_and(|rest| scoped(rest, u8::is_ascii_digit, None))
        || key
            .strip_prefix('s')
            .is_some_and(|rest| scoped(rest, u8::is_ascii_hexdigit, Some(64)))
}

/// The prefix of every textual placeholder.
pub const PLACEHOLDER_PREFIX: &str = "openshell:resolve:env:";
/// What every shaped placeholder carries after its prefix.
pub const SHAPED_MARKER: &str = "0penShe11";
/// The provider-shaped alias marker (recognized, never issued).
pub const ALIAS_MARKER: &str = "OPENSHELL-RESOLVE-ENV-";

/// Text whose presence means "a placeholder is here", issued or not: what
/// the proxy looks for where it substitutes nothing (bodies it does not
/// rewrite) and what makes an unknown placeholder an error rather than a
/// value passed on.
pub const MARKERS: [&str; 4] = [
    PLACEHOLDER_PREFIX,
    "openshell%3aresolve%3aenv%3a",
    SHAPED_MARKER,
    ALIAS_MARKER,
];

/// The placeholder a sandbox's processes see for `key` of a provider at
/// credential `revision`: `openshell:resolve:env:v<rev>_<KEY>`, or, for a
/// key with a known shape, a string of that shape (`ghp_0penShe11…`).
/// `seed` (the sandbox and provider ids) makes it differ per sandbox and
/// per provider identity, so a placeholder of a deleted and re-created
/// provider never resolves to the new one's secret.
pub fn placeholder(shape: Option<Shape>, key: &str, revision: u64, seed: &str) -> String {
    let Some(shape) = shape else {
        return format!("{PLACEHOLDER_PREFIX}v{revision}_{key}");
    };
    let mut out = format!("{}{SHAPED_MARKER}", shape.prefix);
    let mut counter = 0u32;
    while out.len() < shape.len {
        let digest = Sha256::new()
            .chain_update(b"openshell placeholder\0")
            .chain_update(seed.as_bytes())
            .chain_update([0])
            .chain_update(key.as_bytes())
            .chain_update([0])
            .chain_update(revision.to_le_bytes())
            .chain_update(counter.to_le_bytes())
            .finalize();
        for byte in digest {
            if out.len() == shape.len {
                break;
            }
            // 62 letters and digits; 256 % 62 skews little enough for a
            // placeholder, which is no secret.
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            out.push(ALPHABET[usize::from(byte) % ALPHABET.len()] as char);
        }
        counter += 1;
    }
    out
}

/// One endpoint credentials may be sent to: a host (exact, or `*.suffix`),
/// a port, and a path scope (`/` and below unless narrowed by
/// `/prefix/**` or an exact path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingEndpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl BindingEndpoint {
    /// `host:port`, `host:port/path`, `host:port/prefix/**`; a URL's
    /// `https://` is accepted and its default port assumed.
    pub fn parse(text: &str) -> Result<BindingEndpoint, String> {
        let bad = || {
            format!(
                "invalid endpoint '{text}': expected host:port, host:port/path or host:port/prefix/**"
            )
        };
        let (rest, default_port) = match text.split_once("://") {
            Some(("https", rest)) => (rest, Some(443)),
            Some(("http", rest)) => (rest, Some(80)),
            Some(_) => return Err(bad()),
            None => (text, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/**"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (authority, default_port.ok_or_else(bad)?),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || port == 0
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.*:".contains(&b))
            || path.contains(['?', '#'])
        {
            return Err(bad());
        }
        let path = match path {
            "/" | "" => "/**".to_owned(),
            p if p.ends_with('/') => format!("{p}**"),
            p => p.to_owned(),
        };
        Ok(BindingEndpoint {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Whether a request to `host:port` for `path` (canonical, no query)
    /// is inside this endpoint.
    pub fn matches(&self, host: &str, port: u16, path: &str) -> bool {
        if port != self.port {
            return false;
        }
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1 && {
                    let (head, tail) = host.split_at(host.len() - suffix.len());
                    tail.eq_ignore_ascii_case(suffix) && head.ends_with('.')
                }
            }
            None => host.eq_ignore_ascii_case(&self.host),
        };
        host_ok && self.path_matches(path)
    }

    fn path_matches(&self, path: &str) -> bool {
        match self.path.strip_suffix("/**") {
            Some("") => true,
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => path == self.path,
        }
    }
}

impl std::fmt::Display for BindingEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path == "/**" { "" } else { &self.path };
        write!(f, "{}:{}{path}", self.host, self.port)
    }
}

/// Whether `key=value` given as plain `--env` looks like a credential,
/// which the CLI warns about (use a provider instead).
pub fn looks_like_credential(key: &str, value: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    let named = ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word));
    let shaped = TYPES
        .iter()
        .flat_map(|t| t.keys)
        .filter_map(|k| k.shape)
        .any(|s| value.starts_with(s.prefix) && value.len() >= 20);
    (named && !value.is_empty()) || shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_placeholders_keep_their_shape_and_differ_by_seed_and_revision() {
        let shape = find_type("github").unwrap().keys[0].shape;
        let a = placeholder(shape, "GITHUB_TOKEN", 1, "sb1/p1");
        assert_eq!(a.len(), 40);
        assert!(a.starts_with("ghp_0penShe11"));
        assert!(a[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_eq!(a, placeholder(shape, "GITHUB_TOKEN", 1, "sb1/p1"));
        assert_ne!(a, placeholder(shape, "GITHUB_TOKEN", 2, "sb1/p1"));
        assert_ne!(a, placeholder(shape, "GITHUB_TOKEN", 1, "sb1/p2"));
        let anthropic = placeholder(
            find_type("anthropic").unwrap().keys[0].shape,
            "ANTHROPIC_API_KEY",
            3,
            "s",
        );
        assert_eq!(anthropic.len(), 108);
        assert!(anthropic.starts_with("sk-ant-api03-0penShe11"));
        assert_eq!(
            placeholder(None, "API_TOKEN", 2, "s"),
            "openshell:resolve:env:v2_API_TOKEN"
        );
    }

    #[test]
    fn types_resolve_by_name_alias_and_command() {
        assert_eq!(find_type("gh").unwrap().name, "github");
        assert!(find_type("nope").is_none());
        let command = |c: &str| vec![c.to_owned(), "-p".to_owned()];
        assert_eq!(
            type_for_command(&command("/usr/bin/claude")).unwrap().name,
            "claude-code"
        );
        assert_eq!(type_for_command(&command("codex")).unwrap().name, "codex");
        assert_eq!(type_for_command(&command("gh")).unwrap().name, "github");
        assert!(type_for_command(&command("python3")).is_none());
        for t in TYPES {
            for e in t.endpoints {
                BindingEndpoint::parse(e).unwrap();
            }
        }
    }

    #[test]
    fn keys_are_checked_and_scoped_looking_keys_reserved() {
        assert!(valid_key("API_TOKEN"));
        assert!(valid_key("_X1"));
        assert!(!valid_key("1X"));
        assert!(!valid_key("A-B"));
        assert!(!valid_key("OPENSHELL_X"));
        assert!(reserved_key("v2_TOKEN"));
        assert!(reserved_key(&format!("s{}_T", "a".repeat(64))));
        assert!(!reserved_key("s12_T"));
        assert!(!reserved_key("value_T"));
        assert!(!reserved_key("API_TOKEN"));
    }

    #[test]
    fn binding_endpoints_match_host_port_and_path_scope() {
        let e = BindingEndpoint::parse("api.test:443").unwrap();
        assert!(e.matches("API.test", 443, "/v1/messages"));
        assert!(!e.matches("api.test", 8443, "/"));
        assert!(!e.matches("evil.test", 443, "/"));
        let scoped = BindingEndpoint::parse("h.test:8443/v1/**").unwrap();
        assert!(scoped.matches("h.test", 8443, "/v1"));
        assert!(scoped.matches("h.test", 8443, "/v1/x/y"));
        assert!(!scoped.matches("h.test", 8443, "/v10"));
        assert!(!scoped.matches("h.test", 8443, "/admin"));
        let exact = BindingEndpoint::parse("h.test:80/token").unwrap();
        assert!(exact.matches("h.test", 80, "/token"));
        assert!(!exact.matches("h.test", 80, "/token/x"));
        let wild = BindingEndpoint::parse("*.corp.test:443").unwrap();
        assert!(wild.matches("git.corp.test", 443, "/"));
        assert!(!wild.matches("corp.test", 443, "/"));
        assert!(!wild.matches("evilcorp.test", 443, "/"));
        assert_eq!(
            BindingEndpoint::parse("https://gitlab.corp.test/api/").unwrap(),
            BindingEndpoint {
                host: "gitlab.corp.test".into(),
                port: 443,
                path: "/api/**".into()
            }
        );
        for bad in [
            "h.test",
            "h.test:0",
            "h.test:x",
            "ftp://h.test:1",
            "h.test:1/?q",
            ":1",
        ] {
            assert!(BindingEndpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_urls_parse_with_default_ports_and_no_userinfo() {
        let openai = BaseUrl::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!((openai.port, openai.path.as_str()), (443, "/v1"));
        assert_eq!(openai.to_string(), "https://api.openai.com/v1");
        let local = BaseUrl::parse("http://127.0.0.1:8000/v1").unwrap();
        assert_eq!(
            (local.tls, local.port, local.authority()),
            (false, 8000, "127.0.0.1:8000".into())
        );
        assert_eq!(BaseUrl::parse("http://[::1]:11434").unwrap().host, "::1");
        for bad in [
            "ftp://h",
            "https://",
            "https://u:p@h/v1",
            "https://h:0",
            "https://h/v1?x",
            "h/v1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            find_type("claude-code").unwrap().inference().unwrap().auth,
            InferenceAuth::ApiKey
        );
        assert!(find_type("github").unwrap().inference().is_none());
    }

    #[test]
    fn credential_looking_env_is_noticed() {
        assert!(looks_like_credential("OPENAI_API_KEY", "x"));
        assert!(looks_like_credential("X", "ghp_abcdefghijklmnopqrstuvwxyz"));
        assert!(!looks_like_credential("MODE", "fast"));
        assert!(!looks_like_credential("API_TOKEN", ""));
    }
}
