//! [`PolicyDocument`] → [`Policy`]: every rule of docs/policy.md, with the
//! messages of the established format where it has them and our stricter
//! where the established format is loose (unknown enum values and `version != 1` are
//! errors; `enforcement` defaults to `enforce`; `include_workdir` to `true`).
//!
//! All problems are collected, not just the first; warnings never stop a
//! policy from loading.

mod endpoint;
mod overlap;
mod rule;

use std::collections::{BTreeMap, BTreeSet};

use crate::document::{FilesystemDocument, MiddlewareDocument, PolicyDocument};
use crate::glob::{self, Glob, Syntax};
use crate::host::HostPattern;
use crate::policy::{
    Binary, BinaryPattern, Diagnostic, FilesystemPolicy, Identity, LandlockCompatibility,
    Middleware, NetworkPolicy, POLICY_VERSION, Policy, ProcessPolicy, TlsMode,
};
use crate::yaml::FieldPath;

/// Longest filesystem path accepted.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most filesystem paths (read-only plus read-write).
pub const MAX_FILESYSTEM_PATHS: usize = 256;
/// Most `network_middlewares` entries.
pub const MAX_MIDDLEWARES: usize = 10;
/// Most include plus exclude patterns in one middleware selector.
pub const MAX_MIDDLEWARE_PATTERNS: usize = 32;
/// Key prefix reserved for provider-composed rules.
pub const RESERVED_KEY_PREFIX: &str = "_provider_";
/// The built-in middlewares (`openshell/` is reserved for them).
pub const BUILTIN_MIDDLEWARES: [&str; 1] = ["openshell/regex"];

/// A policy that passed validation, and what validation warned about.
#[derive(Debug, Clone)]
pub struct Validated {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Collects findings while walking the document.
#[derive(Default)]
struct Findings {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Findings {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(path.clone(), message));
    }

    fn warn(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(path.clone(), message));
    }
}

/// Validates a document. On failure returns every error found.
pub fn validate(document: &PolicyDocument) -> Result<Validated, Vec<Diagnostic>> {
    let mut findings = Findings::default();
    let root = FieldPath::root();

    if document.version != POLICY_VERSION {
        findings.error(
            &root.key("version"),
            format!(
                "unsupported policy version {} (expected {POLICY_VERSION})",
                document.version
            ),
        );
    }
    let filesystem = validate_filesystem(
        document.filesystem_policy.as_ref(),
        &root.key("filesystem_policy"),
        &mut findings,
    );
    let landlock = match document
        .landlock
        .as_ref()
        .and_then(|l| l.compatibility.as_deref())
    {
        None | Some("") | Some("best_effort") => LandlockCompatibility::BestEffort,
        Some("hard_requirement") => LandlockCompatibility::HardRequirement,
        Some(other) => {
            findings.error(
                &root.key("landlock").key("compatibility"),
                format!(
                    "unknown landlock compatibility '{other}' (expected best_effort or hard_requirement)"
                ),
            );
            LandlockCompatibility::BestEffort
        }
    };
    let process_path = root.key("process");
    let process = ProcessPolicy {
        run_as_user: validate_identity(
            document
                .process
                .as_ref()
                .and_then(|p| p.run_as_user.as_deref()),
            "run_as_user",
            &process_path,
            &mut findings,
        ),
        run_as_group: validate_identity(
            document
                .process
                .as_ref()
                .and_then(|p| p.run_as_group.as_deref()),
            "run_as_group",
            &process_path,
            &mut findings,
        ),
    };

    let mut network = BTreeMap::new();
    for (key, entry) in &document.network_policies {
        let path = root.key("network_policies").key(key.as_str());
        if key.is_empty() {
            findings.error(&path, "network_policies keys must not be empty");
        }
        if key.starts_with(RESERVED_KEY_PREFIX) {
            findings.error(
                &path,
                format!(
                    "network_policies key '{key}' uses reserved '{RESERVED_KEY_PREFIX}' prefix; choose another key"
                ),
            );
        }
        let name = entry
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| key.clone());
        // Sparse entries load as the reference reads them: an entry with
        // no endpoints matches nothing, one with no binaries admits no
        // program (unless binary identity is relaxed). Both are warned
        // about, since neither is likely what the author meant.
        if entry.endpoints.is_empty() {
            findings.warn(
                &path.key("endpoints"),
                format!("network policy '{name}' lists no endpoints, so it matches nothing"),
            );
        }
        if entry.binaries.is_empty() {
            findings.warn(
                &path.key("binaries"),
                format!(
                    "network policy '{name}' lists no binaries, so no program may use it (unless binary identity is relaxed); add path: \"/**\" to allow any binary"
                ),
            );
        }
        let endpoints = entry
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                endpoint::validate_endpoint(
                    e,
                    &name,
                    &path.key("endpoints").index(i),
                    &mut findings,
                )
            })
            .collect();
        let binaries = entry
            .binaries
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                validate_binary(
                    &b.path,
                    &path.key("binaries").index(i).key("path"),
                    &mut findings,
                )
                .map(|pattern| Binary {
                    pattern,
                    match_ancestors: b.ancestors.unwrap_or(true),
                })
            })
            .collect();
        network.insert(
            key.clone(),
            NetworkPolicy {
                key: key.clone(),
                name,
                endpoints,
                binaries,
            },
        );
    }
    if findings.errors.is_empty() {
        overlap::check_overlaps(&network, &mut findings);
    }
    let middlewares = validate_middlewares(&document.network_middlewares, &network, &mut findings);

    if !findings.errors.is_empty() {
        return Err(findings.errors);
    }
    Ok(Validated {
        policy: Policy {
            filesystem,
            landlock,
            process,
            network,
            middlewares,
            document: document.clone(),
        },
        warnings: findings.warnings,
    })
}

/// Collapses repeated slashes and drops a trailing slash (symlinks are not resolved).
pub fn normalize_fs_path(path: &str) -> String {
    let mut normalized = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        normalized.push('/');
        normalized.push_str(part);
    }
    if normalized.is_empty() && path.starts_with('/') {
        normalized.push('/');
    }
    normalized
}

fn truncate_80(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn validate_filesystem(
    section: Option<&FilesystemDocument>,
    path: &FieldPath,
    findings: &mut Findings,
) -> FilesystemPolicy {
    let default = FilesystemDocument::default();
    let section = section.unwrap_or(&default);
    let total = section.read_only.len() + section.read_write.len();
    if total > MAX_FILESYSTEM_PATHS {
        findings.error(
            path,
            format!("too many filesystem paths ({total} > {MAX_FILESYSTEM_PATHS})"),
        );
    }
    let mut check_list = |list: &[String], field: &str, read_write: bool| -> Vec<String> {
        let mut out = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let at = path.key(field).index(i);
            if entry.len() > MAX_PATH_BYTES {
                findings.error(
                    &at,
                    format!(
                        "path exceeds maximum length ({} > {MAX_PATH_BYTES}): {}",
                        entry.len(),
                        truncate_80(entry)
                    ),
                );
                continue;
            }
            if !entry.starts_with('/') {
                findings.error(
                    &at,
                    format!("path must be absolute (start with '/'): {entry}"),
                );
                continue;
            }
            if entry.split('/').any(|c| c == "..") {
                findings.error(
                    &at,
                    format!("path contains '..' traversal component: {entry}"),
                );
                continue;
            }
            if entry.bytes().any(|b| b.is_ascii_control()) {
                findings.error(&at, format!("path contains a control character: {entry:?}"));
                continue;
            }
            let normalized = normalize_fs_path(entry);
            if read_write && normalized == "/" {
                findings.error(&at, format!("read-write path is overly broad: {entry}"));
                continue;
            }
            if !out.contains(&normalized) {
                out.push(normalized);
            }
        }
        out
    };
    let read_only = check_list(&section.read_only, "read_only", false);
    let read_write = check_list(&section.read_write, "read_write", true);
    FilesystemPolicy {
        include_workdir: section.include_workdir.unwrap_or(true),
        read_only,
        read_write,
    }
}

fn validate_identity(
    value: Option<&str>,
    field: &str,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<Identity> {
    let value = value.filter(|v| !v.is_empty())?;
    if value == "sandbox" {
        return Some(Identity::Sandbox);
    }
    match value.parse::<u32>() {
        Ok(id) if (1..=4_294_967_294).contains(&id) && id.to_string() == value => {
            Some(Identity::Id(id))
        }
        _ => {
            findings.error(
                &path.key(field),
                format!(
                    "{field} must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], got '{value}'"
                ),
            );
            None
        }
    }
}

fn validate_binary(
    path_text: &str,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<BinaryPattern> {
    if path_text.is_empty() {
        findings.error(at, "binary path must not be empty");
        return None;
    }
    if !path_text.starts_with('/') && !path_text.starts_with("**") {
        findings.error(
            at,
            format!("binary path must be absolute or start with '**', got '{path_text}'"),
        );
        return None;
    }
    if path_text.bytes().any(|b| b.is_ascii_control()) {
        findings.error(
            at,
            format!("binary path contains a control character: {path_text:?}"),
        );
        return None;
    }
    if !glob::has_wildcard(path_text) {
        return Some(BinaryPattern::Exact(path_text.to_owned()));
    }
    match Glob::new(path_text, Syntax::Path) {
        Ok(glob) => Some(BinaryPattern::Glob(glob)),
        Err(e) => {
            findings.error(at, e.to_string());
            None
        }
    }
}

fn validate_middlewares(
    documents: &BTreeMap<String, MiddlewareDocument>,
    network: &BTreeMap<String, NetworkPolicy>,
    findings: &mut Findings,
) -> BTreeMap<String, Middleware> {
    let root = FieldPath::root().key("network_middlewares");
    if documents.len() > MAX_MIDDLEWARES {
        findings.error(
            &root,
            format!(
                "too many middleware configs ({} > {MAX_MIDDLEWARES})",
                documents.len()
            ),
        );
    }
    let mut orders = BTreeSet::new();
    let mut out = BTreeMap::new();
    for (key, doc) in documents {
        let path = root.key(key.as_str());
        let name = doc
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| key.clone());
        if doc.middleware.is_empty() {
            findings.error(&path.key("middleware"), "middleware must not be empty");
        } else if doc.middleware.starts_with("openshell/")
            && !BUILTIN_MIDDLEWARES.contains(&doc.middleware.as_str())
        {
            findings.error(
                &path.key("middleware"),
                format!(
                    "unknown built-in middleware '{}' (the 'openshell/' prefix is reserved; known: {})",
                    doc.middleware,
                    BUILTIN_MIDDLEWARES.join(", ")
                ),
            );
        }
        let order = doc.order.unwrap_or(0);
        if !orders.insert(order) {
            findings.error(
                &path.key("order"),
                format!("middleware order {order} is used by more than one config"),
            );
        }
        if let Some(config) = &doc.config
            && !config.is_object()
        {
            findings.error(&path.key("config"), "middleware config must be a mapping");
        }
        let fail_open = match doc.on_error.as_str() {
            "" | "fail_closed" => false,
            "fail_open" => true,
            other => {
                findings.error(
                    &path.key("on_error"),
                    format!("unknown on_error '{other}' (expected fail_closed or fail_open)"),
                );
                false
            }
        };
        let selector = &doc.endpoints;
        if selector.include.is_empty() {
            findings.error(
                &path.key("endpoints").key("include"),
                "middleware endpoints.include must not be empty",
            );
        }
        let patterns = selector.include.len() + selector.exclude.len();
        if patterns > MAX_MIDDLEWARE_PATTERNS {
            findings.error(
                &path.key("endpoints"),
                format!(
                    "too many middleware selector patterns ({patterns} > {MAX_MIDDLEWARE_PATTERNS})"
                ),
            );
        }
        let mut parse_list = |list: &[String], field: &str| -> Vec<HostPattern> {
            list.iter()
                .enumerate()
                .filter_map(|(i, pattern)| match HostPattern::parse(pattern) {
                    Ok(HostPattern::Any) => {
                        findings.error(
                            &path.key("endpoints").key(field).index(i),
                            "middleware selector patterns must not be empty",
                        );
                        None
                    }
                    Ok(parsed) => Some(parsed),
                    Err(message) => {
                        findings.error(&path.key("endpoints").key(field).index(i), message);
                        None
                    }
                })
                .collect()
        };
        let include = parse_list(&selector.include, "include");
        let exclude = parse_list(&selector.exclude, "exclude");
        if !fail_open {
            for entry in network.values() {
                for endpoint in entry.endpoints.iter().filter(|e| e.tls == TlsMode::Skip) {
                    let selected = include.iter().any(|p| p.may_overlap(&endpoint.host))
                        && !exclude.iter().any(
                            |p| matches!(&endpoint.host, HostPattern::Exact(h) if p.matches(h)),
                        );
                    if selected {
                        findings.error(
                            &path.key("endpoints"),
                            format!(
                                "middleware config '{name}' selects network policy '{}' tls: skip endpoint '{}'",
                                entry.name,
                                endpoint.host.as_str()
                            ),
                        );
                    }
                }
            }
        }
        out.insert(
            key.clone(),
            Middleware {
                key: key.clone(),
                name,
                middleware: doc.middleware.clone(),
                order,
                config: doc.config.clone(),
                fail_open,
                include,
                exclude,
            },
        );
    }
    out
}

/// Compiles a glob, recording its error at `at`.
fn compile_glob(
    pattern: &str,
    syntax: Syntax,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Glob> {
    match Glob::new(pattern, syntax) {
        Ok(glob) => Some(glob),
        Err(e) => {
            findings.error(at, e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests;
