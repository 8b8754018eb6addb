//! Landlock from `filesystem_policy` (docs/policy.md, "Filesystem, Landlock and process"; docs/isolation.md, "Rule paths").
//!
//! The ruleset handles every filesystem right of the highest ABI the kernel
//! offers; `read_only` paths get read, read-dir and execute, `read_write`
//! paths get every right, and non-directories get only the file subset of
//! either. From ABI 6 on, the domain is also *scoped*: the child cannot
//! signal processes outside it (the init and the supervisor) nor connect to
//! abstract UNIX sockets created outside it.
//!
//! `best_effort` vs `hard_requirement` follows docs/policy.md ("Filesystem, Landlock and process"):
//! unavailable kernel, unopenable path, empty ruleset and failed
//! `restrict_self` are warnings in best effort and fatal in hard mode.
//!
//! Rule paths are opened as root, so they are resolved by [`open_rule_path`]:
//! a symbolic link is followed only when nobody but root can have put it
//! there. A policy path inside a tree the agent can write (`/sandbox/data`
//! after `ln -s / /sandbox/data`) is refused, never widened to the link's
//! target (docs/isolation.md, "Rule paths").

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};

use openshell_policy::policy::FilesystemPolicy;

use crate::isolation::report::{LandlockReport, SkippedPath};
use crate::isolation::sys;

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

/// Lexical normalisation as the established implementation does it: duplicate slashes
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

/// Why a rule path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenRuleError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is a symbolic link that a user other than root can replace; \
         refused (a policy path is never widened to a link's target)"
    )]
    UntrustedLink { path: String },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
}

/// At most this many links are followed for one rule path (as the kernel).
const MAX_LINKS: usize = 40;

/// True when no user but root can add, remove or rename entries in the
/// directory `st` describes: owned by root and not writable by group or
/// others, or sticky (where others cannot replace root's entries).
fn root_controlled(st: &libc::stat) -> bool {
    st.st_uid == 0 && (st.st_mode & 0o022 == 0 || st.st_mode & libc::S_ISVTX != 0)
}

fn fstat_fd(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    Ok(nix::sys::stat::fstat(fd.as_fd())?)
}

/// `openat(dir, name, O_PATH | O_NOFOLLOW)`: the entry itself, a link
/// included, never what a link points to.
fn open_entry(dir: Option<&OwnedFd>, name: &str) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = dir.map_or(nix::fcntl::AT_FDCWD, |d| d.as_fd());
    Ok(nix::fcntl::openat(dir, name, flags, Mode::empty())?)
}

/// The target of the link opened (O_PATH | O_NOFOLLOW) as `fd`.
fn read_link(fd: &OwnedFd) -> std::io::Result<String> {
    let target = nix::fcntl::readlinkat(fd.as_fd(), "")?;
    target
        .into_string()
        .map_err(|_| std::io::Error::other("a link target that is not UTF-8"))
}

/// Opens `path` (absolute) as an `O_PATH` descriptor, one component at a
/// time without following links, so that what the descriptor names is
/// decided by root alone. A link is followed only when it is owned by root
/// and lies in a directory only root controls (`root_controlled`): the
/// host's `/lib -> usr/lib` is followed, a link the agent made (or moved)
/// into a tree it can write is refused with [`OpenRuleError::UntrustedLink`].
pub fn open_rule_path(path: &str) -> Result<OwnedFd, OpenRuleError> {
    let io = |source| OpenRuleError::Io {
        path: path.to_owned(),
        source,
    };
    let mut pending: VecDeque<String> = split(path);
    let mut walked: Vec<String> = Vec::new();
    let mut dir = open_entry(None, "/").map_err(io)?;
    let mut trusted = root_controlled(&fstat_fd(&dir).map_err(io)?);
    let mut links = 0usize;
    while let Some(name) = pending.pop_front() {
        let entry = open_entry(Some(&dir), &name).map_err(io)?;
        let st = fstat_fd(&entry).map_err(io)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let here = format!(
                "/{}",
                walked
                    .iter()
                    .chain([&name])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/")
            );
            if !(trusted && st.st_uid == 0) {
                return Err(OpenRuleError::UntrustedLink { path: here });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(OpenRuleError::Loop {
                    path: path.to_owned(),
                });
            }
            let target = read_link(&entry).map_err(io)?;
            if target.starts_with('/') {
                dir = open_entry(None, "/").map_err(io)?;
                trusted = root_controlled(&fstat_fd(&dir).map_err(io)?);
                walked.clear();
            }
            for part in split(&target).into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if name == ".." {
            walked.pop();
        } else {
            walked.push(name);
        }
        trusted = root_controlled(&st);
        dir = entry;
    }
    Ok(dir)
}

/// The components of a path, without empty ones and `.`.
fn split(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_owned)
        .collect()
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
/// drop, docs/isolation.md "Order of application"), waiting for [`Prepared::restrict`].
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
        let opened = open_rule_path(&rule.path)
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

    /// A directory tree made as root (the tests run as root, like the
    /// supervisor), handed to `owner` where asked.
    fn lchown(path: &std::path::Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    }

    fn same_file(fd: &OwnedFd, path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let st = fstat_fd(fd).unwrap();
        let meta = std::fs::metadata(path).unwrap();
        st.st_ino == meta.ino() && st.st_dev == meta.dev()
    }

    #[test]
    fn links_only_root_controls_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../lib/..", root.join("usr/up")).unwrap();
        let path = |p: &str| root.join(p).to_str().unwrap().to_owned();

        let lib = open_rule_path(&path("lib")).unwrap();
        assert!(same_file(&lib, &root.join("usr/lib")));
        let up = open_rule_path(&path("usr/up")).unwrap();
        assert!(same_file(&up, &root.join("usr")));
    }

    #[test]
    fn a_link_in_a_tree_another_user_writes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("sandbox");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(workspace.join("real")).unwrap();
        lchown(&workspace, 4321);
        // Made by the agent: owned by it.
        let planted = workspace.join("data");
        std::os::unix::fs::symlink("/", &planted).unwrap();
        lchown(&planted, 4321);
        // Owned by root but in the agent's directory (moved in, say).
        let moved = workspace.join("moved");
        std::os::unix::fs::symlink("/", &moved).unwrap();

        for link in [&planted, &moved] {
            let error = open_rule_path(link.to_str().unwrap()).unwrap_err();
            assert!(
                matches!(error, OpenRuleError::UntrustedLink { ref path } if path == link.to_str().unwrap()),
                "{error}"
            );
        }
        // Through the link to something beneath it: refused all the same.
        let beneath = format!("{}/etc", planted.display());
        assert!(matches!(
            open_rule_path(&beneath),
            Err(OpenRuleError::UntrustedLink { .. })
        ));
        // A real directory the agent made is fine: it grants only itself.
        let real = open_rule_path(workspace.join("real").to_str().unwrap()).unwrap();
        assert!(same_file(&real, &workspace.join("real")));
    }

    #[test]
    fn link_loops_and_missing_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
        assert!(matches!(
            open_rule_path(a.to_str().unwrap()),
            Err(OpenRuleError::Loop { .. })
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            open_rule_path(missing.to_str().unwrap()),
            Err(OpenRuleError::Io { .. })
        ));
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
