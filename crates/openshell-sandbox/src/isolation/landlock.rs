//! Landlock from `filesystem_policy` (reference policy §1.3–§1.4).
//!
//! The ruleset handles every filesystem right of the highest ABI the kernel
//! offers; `read_only` paths get read, read-dir and execute, `read_write`
//! paths get every right, and non-directories get only the file subset of
//! either. From ABI 6 on, the domain is also *scoped*: the child cannot
//! signal processes outside it (the init and the supervisor) nor connect to
//! abstract UNIX sockets created outside it.
//!
//! `best_effort` vs `hard_requirement` follows the reference table exactly:
//! unavailable kernel, unopenable path, empty ruleset and failed
//! `restrict_self` are warnings in best effort and fatal in hard mode.

use std::os::fd::AsFd;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};

use openshell_policy::policy::FilesystemPolicy;

use crate::report::{LandlockReport, SkippedPath};
use crate::sys;

/// How much a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FsAccess {
    ReadOnly,
    ReadWrite,
}

/// One path and what the child may do beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRule {
    pub path: String,
    pub access: FsAccess,
}

impl FsRule {
    pub fn new(path: &str, access: FsAccess) -> FsRule {
        FsRule {
            path: path.to_owned(),
            access,
        }
    }
}

/// Lexical normalisation as the reference does it: duplicate slashes
/// collapsed, trailing slash removed, symlinks not resolved. (Validation has
/// already rejected relative paths and `..`.)
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The rules for a filesystem policy, with the workspace added read-write
/// when `include_workdir` asks for it. A path listed twice keeps its
/// strongest access, at its first position.
pub fn build_rules(filesystem: &FilesystemPolicy, workdir: &str) -> Vec<FsRule> {
    let mut rules: Vec<FsRule> = Vec::new();
    let listed = filesystem
        .read_only
        .iter()
        .map(|p| (p.as_str(), FsAccess::ReadOnly))
        .chain(
            filesystem
                .read_write
                .iter()
                .map(|p| (p.as_str(), FsAccess::ReadWrite)),
        );
    let workdir = filesystem
        .include_workdir
        .then_some((workdir, FsAccess::ReadWrite));
    for (path, access) in listed.chain(workdir) {
        let path = normalize(path);
        match rules.iter_mut().find(|r| r.path == path) {
            Some(rule) => rule.access = rule.access.max(access),
            None => rules.push(FsRule { path, access }),
        }
    }
    rules
}

/// Why Landlock could not be applied in `hard_requirement` mode (or, for
/// [`LandlockError::Ruleset`], at all).
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock unavailable in hard_requirement mode: {0}")]
    Unavailable(String),
    #[error("cannot open {path} for Landlock in hard_requirement mode: {reason}")]
    Path { path: String, reason: String },
    #[error("Landlock ruleset has zero valid paths in hard_requirement mode")]
    Empty,
    #[error("Landlock ruleset")]
    Ruleset(#[source] landlock::RulesetError),
    #[error("Landlock restrict_self failed in hard_requirement mode")]
    Restrict(#[source] landlock::RulesetError),
    #[error("Landlock is only partially enforced in hard_requirement mode")]
    Partial,
}

/// A ruleset built while still root (paths are opened before the privilege
/// drop, reference §1.4), waiting for [`Prepared::restrict`].
#[derive(Debug)]
pub struct Prepared {
    ruleset: Option<RulesetCreated>,
    hard: bool,
    report: LandlockReport,
}

/// Opens every rule's path and builds the ruleset. Best effort records
/// problems in the report; hard mode turns them into errors.
pub fn prepare(plan: &super::LandlockPlan) -> Result<Prepared, LandlockError> {
    let hard = plan.hard_requirement;
    let mut report = LandlockReport::default();
    let abi = match sys::landlock_abi() {
        Ok(abi) => abi,
        Err(errno) => {
            let why = format!("kernel reports {}", errno.desc());
            if hard {
                return Err(LandlockError::Unavailable(why));
            }
            report.unavailable = Some(why);
            return Ok(Prepared {
                ruleset: None,
                hard,
                report,
            });
        }
    };
    let abi_level = ABI::from(abi);
    report.abi = abi as u32;
    let all = AccessFs::from_all(abi_level);
    let read = AccessFs::from_read(abi_level);
    let file = AccessFs::from_file(abi_level);

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(LandlockError::Ruleset)?;
    if abi_level >= ABI::V6 {
        ruleset = ruleset
            .scope(Scope::from_all(abi_level))
            .map_err(LandlockError::Ruleset)?;
    }
    let mut created = ruleset.create().map_err(LandlockError::Ruleset)?;
    let mut added = 0usize;
    for rule in &plan.rules {
        let opened = PathFd::new(&rule.path)
            .map_err(|e| e.to_string())
            .and_then(|fd| {
                let is_dir = nix::sys::stat::fstat(fd.as_fd())
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .map_err(|e| e.to_string())?;
                Ok((fd, is_dir))
            });
        let (fd, is_dir) = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                if hard {
                    return Err(LandlockError::Path {
                        path: rule.path.clone(),
                        reason,
                    });
                }
                report.skipped.push(SkippedPath {
                    path: rule.path.clone(),
                    reason,
                });
                continue;
            }
        };
        let mut access = match rule.access {
            FsAccess::ReadOnly => read,
            FsAccess::ReadWrite => all,
        };
        if !is_dir {
            access &= file;
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(LandlockError::Ruleset)?;
        added += 1;
    }
    if added == 0 {
        if hard {
            return Err(LandlockError::Empty);
        }
        report.unavailable = Some("Landlock ruleset has zero valid paths".to_owned());
        return Ok(Prepared {
            ruleset: None,
            hard,
            report,
        });
    }
    report.rules = added as u32;
    Ok(Prepared {
        ruleset: Some(created),
        hard,
        report,
    })
}

impl Prepared {
    /// Restricts the calling process (after the privilege drop). Returns what
    /// was actually enforced.
    pub fn restrict(self) -> Result<LandlockReport, LandlockError> {
        let Prepared {
            ruleset,
            hard,
            mut report,
        } = self;
        let Some(ruleset) = ruleset else {
            return Ok(report);
        };
        match ruleset.restrict_self() {
            Ok(status) => {
                report.enforced = match status.ruleset {
                    RulesetStatus::FullyEnforced => true,
                    RulesetStatus::PartiallyEnforced | RulesetStatus::NotEnforced => {
                        if hard {
                            return Err(LandlockError::Partial);
                        }
                        false
                    }
                };
                Ok(report)
            }
            Err(error) if hard => Err(LandlockError::Restrict(error)),
            Err(error) => {
                report.unavailable = Some(format!("restrict_self failed: {error}"));
                Ok(report)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_the_reference() {
        assert_eq!(normalize("/usr//lib/"), "/usr/lib");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//"), "/");
        assert_eq!(normalize("/a/./b"), "/a/b");
    }

    #[test]
    fn workdir_is_added_read_write_and_duplicates_keep_the_strongest() {
        let fs = FilesystemPolicy {
            include_workdir: true,
            read_only: vec!["/usr/".into(), "/data".into(), "/sandbox".into()],
            read_write: vec!["/data".into(), "/tmp".into()],
        };
        assert_eq!(
            build_rules(&fs, "/sandbox"),
            [
                FsRule::new("/usr", FsAccess::ReadOnly),
                FsRule::new("/data", FsAccess::ReadWrite),
                FsRule::new("/sandbox", FsAccess::ReadWrite),
                FsRule::new("/tmp", FsAccess::ReadWrite),
            ]
        );
    }

    #[test]
    fn workdir_is_not_added_when_excluded() {
        let fs = FilesystemPolicy {
            include_workdir: false,
            read_only: vec!["/usr".into()],
            read_write: vec![],
        };
        assert_eq!(
            build_rules(&fs, "/sandbox"),
            [FsRule::new("/usr", FsAccess::ReadOnly)]
        );
    }
}
