//! The built-in default policy and baseline enrichment (docs/policy.md,
//! "Default policy").

use crate::document::{FilesystemDocument, LandlockDocument, PolicyDocument, ProcessDocument};
use crate::policy::{FilesystemPolicy, Policy};
use crate::validate::validate;

/// Read-only paths of the default policy (missing ones are skipped at enforcement).
/// (`/var/log` is not among them: the host's logs are not the agent's.)
pub const DEFAULT_READ_ONLY: [&str; 9] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/proc",
    "/dev/urandom",
    "/app",
];
/// Read-write paths of the default policy.
pub const DEFAULT_READ_WRITE: [&str; 3] = ["/sandbox", "/tmp", "/dev/null"];
/// Read-only paths every loaded policy is enriched with, when they exist.
pub const BASELINE_READ_ONLY: [&str; 6] = ["/usr", "/lib", "/etc", "/app", "/proc", "/dev/urandom"];
/// Read-write paths every loaded policy is enriched with, when they exist.
/// `/dev/null` is our addition to the established list: every shell
/// redirection and `curl -o /dev/null` needs it, and writing it is harmless.
pub const BASELINE_READ_WRITE: [&str; 2] = ["/tmp", "/dev/null"];

/// The default policy document: the paths above, best-effort Landlock,
/// user and group `sandbox`, and no network egress.
pub fn default_document() -> PolicyDocument {
    let strings = |paths: &[&str]| paths.iter().map(|p| (*p).to_owned()).collect();
    PolicyDocument {
        version: 1,
        filesystem_policy: Some(FilesystemDocument {
            include_workdir: Some(true),
            read_only: strings(&DEFAULT_READ_ONLY),
            read_write: strings(&DEFAULT_READ_WRITE),
        }),
        landlock: Some(LandlockDocument {
            compatibility: Some("best_effort".to_owned()),
        }),
        process: Some(ProcessDocument {
            run_as_user: Some("sandbox".to_owned()),
            run_as_group: Some("sandbox".to_owned()),
        }),
        network_policies: Default::default(),
        network_middlewares: Default::default(),
    }
}

/// The default policy, validated.
pub fn default_policy() -> Policy {
    match validate(&default_document()) {
        Ok(validated) => validated.policy,
        // The default document is a constant; a test proves it validates.
        Err(errors) => unreachable!("the default policy is invalid: {errors:?}"),
    }
}

/// Adds the baseline paths that exist (per `exists`) and are not listed yet.
/// User paths are never removed, and an explicit read-only `/tmp` is not
/// promoted to read-write. Returns the paths that were added.
pub fn enrich_filesystem(
    filesystem: &mut FilesystemPolicy,
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut added = Vec::new();
    let listed = |fs: &FilesystemPolicy, path: &str| {
        fs.read_only.iter().chain(&fs.read_write).any(|p| p == path)
    };
    for path in BASELINE_READ_ONLY {
        if !listed(filesystem, path) && exists(path) {
            filesystem.read_only.push(path.to_owned());
            added.push(path.to_owned());
        }
    }
    for path in BASELINE_READ_WRITE {
        if !listed(filesystem, path) && exists(path) {
            filesystem.read_write.push(path.to_owned());
            added.push(path.to_owned());
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompiledPolicy;
    use crate::l4::{L4Decision, L4Request, NO_POLICIES_REASON};
    use crate::policy::{Identity, LandlockCompatibility};

    #[test]
    fn default_policy_matches_the_spec() {
        let policy = default_policy();
        assert_eq!(policy.filesystem.read_only, DEFAULT_READ_ONLY);
        assert_eq!(policy.filesystem.read_write, DEFAULT_READ_WRITE);
        assert!(policy.filesystem.include_workdir);
        assert_eq!(policy.landlock, LandlockCompatibility::BestEffort);
        assert_eq!(policy.process.run_as_user, Some(Identity::Sandbox));
        assert!(policy.network.is_empty());
    }

    #[test]
    fn default_policy_denies_all_egress() {
        let compiled = CompiledPolicy::new(default_policy());
        let L4Decision::Deny(deny) = compiled.decide_l4(&L4Request {
            host: "example.com",
            port: 443,
            binary: "/usr/bin/curl",
            ancestors: &[],
            cmdline: &[],
            ignore_binary: false,
        }) else {
            panic!("default policy allowed egress")
        };
        assert_eq!(deny.reason, NO_POLICIES_REASON);
    }

    #[test]
    fn enrichment_adds_only_missing_existing_paths() {
        let mut fs = FilesystemPolicy {
            include_workdir: true,
            read_only: vec!["/usr".into(), "/tmp".into()],
            read_write: vec!["/data".into()],
        };
        let added = enrich_filesystem(&mut fs, |p| p != "/app");
        assert_eq!(
            added,
            ["/lib", "/etc", "/proc", "/dev/urandom", "/dev/null"]
        );
        assert_eq!(
            fs.read_write,
            ["/data", "/dev/null"],
            "read-only /tmp is not promoted"
        );
        assert!(
            !fs.read_only.contains(&"/app".to_owned()),
            "missing paths are skipped"
        );
    }
}
