//! The child's filesystem view: a new root on a small tmpfs that mirrors the
//! host's top-level entries (recursive binds and symlinks), plus the
//! workspace at `/sandbox`, a private `/tmp` and a `/proc` of the child's own
//! PID namespace. The root itself is then remounted read-only.
//!
//! All of it happens in the child's private mount namespace (propagation set
//! to private first), so nothing ever appears on the host and everything
//! disappears with the namespace, even when the child crashes. No directory
//! is created on the host: the host's root does not need a `/sandbox`.
//!
//! Host directories where other programs leave world-connectable UNIX
//! sockets and shared memory ([`PRIVATE_DIRS`]: `/run`, `/var/tmp`,
//! `/dev/shm`) are replaced by empty tmpfs, unless the policy names a path
//! inside them. Landlock before ABI 9 does not govern `connect(2)` to a
//! pathname socket, so hiding them is what keeps the agent off, say, the
//! host's D-Bus system bus.
//!
//! The staging tmpfs is mounted over `/tmp` of the private namespace; the
//! host directories bound into the sandbox (the workspace, the TLS trust
//! directory) are opened before that, so they stay reachable even when
//! they live under the host's `/tmp`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Where the new root is assembled (in the private mount namespace only).
pub const STAGING: &str = "/tmp";
/// Host top-level entries replaced by the sandbox's own.
const REPLACED: [&str; 3] = ["proc", "tmp", "sandbox"];
/// Host directories replaced by an empty tmpfs unless the policy names a
/// path inside them.
pub const PRIVATE_DIRS: [&str; 3] = ["/run", "/var/tmp", "/dev/shm"];

/// The supervisor's runtime material in a container (the gateway token and
/// CA, its state): hidden from the agent whatever the policy names.
pub const RUNTIME_DIR: &str = "/run/openshell";

/// The [`PRIVATE_DIRS`] to hide: those that exist (per `is_dir`) and that no
/// policy path equals or lies under; plus [`RUNTIME_DIR`] when it exists and
/// its parent is not hidden already.
pub fn private_dirs(policy_paths: &[String], is_dir: impl Fn(&str) -> bool) -> Vec<String> {
    let mut hidden: Vec<String> = PRIVATE_DIRS
        .iter()
        .filter(|dir| is_dir(dir))
        .filter(|dir| {
            !policy_paths.iter().any(|p| {
                p.strip_prefix(**dir)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        })
        .map(|dir| (*dir).to_owned())
        .collect();
    if is_dir(RUNTIME_DIR) && !hidden.iter().any(|d| d == "/run") {
        hidden.push(RUNTIME_DIR.to_owned());
    }
    hidden
}

/// One top-level entry of the host's `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootEntry {
    Dir(String),
    File(String),
    Symlink { name: String, target: String },
}

impl RootEntry {
    pub fn dir(name: &str) -> RootEntry {
        RootEntry::Dir(name.to_owned())
    }
}

/// Lists the host's `/` (the only I/O in plan building).
pub fn read_root_entries() -> std::io::Result<Vec<RootEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir("/")? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // a non-UTF-8 top-level name cannot be in a policy either
        };
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            if let Some(target) = target.to_str() {
                entries.push(RootEntry::Symlink {
                    name,
                    target: target.to_owned(),
                });
            }
        } else if kind.is_dir() {
            entries.push(RootEntry::Dir(name));
        } else if kind.is_file() {
            entries.push(RootEntry::File(name));
        }
    }
    entries.sort_by(|a, b| entry_name(a).cmp(entry_name(b)));
    Ok(entries)
}

fn entry_name(entry: &RootEntry) -> &str {
    match entry {
        RootEntry::Dir(name) | RootEntry::File(name) => name,
        RootEntry::Symlink { name, .. } => name,
    }
}

/// One step of the mount sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountStep {
    /// Stop propagation both ways between the host and this namespace.
    MakeRootPrivate,
    /// Open a host directory (by path, before anything hides it) into `slot`.
    Open {
        slot: usize,
        path: PathBuf,
    },
    Tmpfs {
        target: String,
        options: String,
    },
    Mkdir {
        path: String,
    },
    CreateFile {
        path: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    /// A recursive bind of a host directory.
    BindTree {
        source: String,
        target: String,
    },
    /// A bind of a host file.
    BindFile {
        source: String,
        target: String,
    },
    /// `mkdir -p`.
    MkdirAll {
        path: String,
    },
    /// Bind the directory opened into `slot` by [`MountStep::Open`].
    BindOpened {
        slot: usize,
        target: String,
        read_only: bool,
    },
    Proc {
        target: String,
    },
    PivotRoot {
        new_root: String,
    },
    RemountRootReadOnly,
}

fn staged(name: &str) -> String {
    format!("{STAGING}/{name}")
}

/// Host directories bound into the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct Binds<'a> {
    /// Bound read-write at `/sandbox`.
    pub workdir: &'a Path,
    /// Bound read-only at [`crate::tls::SANDBOX_TLS_DIR`].
    pub tls: Option<&'a Path>,
}

/// The mount sequence for a host root with `entries`, hiding `private`
/// (absolute paths, see [`private_dirs`]). Pure.
pub fn build_mounts(entries: &[RootEntry], private: &[String], binds: Binds<'_>) -> Vec<MountStep> {
    let mut steps = vec![
        MountStep::MakeRootPrivate,
        MountStep::Open {
            slot: 0,
            path: binds.workdir.to_owned(),
        },
        MountStep::Tmpfs {
            target: STAGING.into(),
            options: "mode=0755,size=1m".into(),
        },
    ];
    for entry in entries {
        if REPLACED.contains(&entry_name(entry)) {
            continue;
        }
        match entry {
            RootEntry::Dir(name) => {
                steps.push(MountStep::Mkdir { path: staged(name) });
                steps.push(MountStep::BindTree {
                    source: format!("/{name}"),
                    target: staged(name),
                });
            }
            RootEntry::File(name) => {
                steps.push(MountStep::CreateFile { path: staged(name) });
                steps.push(MountStep::BindFile {
                    source: format!("/{name}"),
                    target: staged(name),
                });
            }
            RootEntry::Symlink { name, target } => steps.push(MountStep::Symlink {
                target: target.clone(),
                path: staged(name),
            }),
        }
    }
    if let Some(tls) = binds.tls {
        steps.insert(
            2,
            MountStep::Open {
                slot: 1,
                path: tls.to_owned(),
            },
        );
    }
    for dir in private {
        steps.push(MountStep::Tmpfs {
            target: format!("{STAGING}{dir}"),
            options: "mode=1777".into(),
        });
    }
    if binds.tls.is_some() {
        let target = format!("{STAGING}{}", crate::tls::SANDBOX_TLS_DIR);
        steps.push(MountStep::MkdirAll {
            path: target.clone(),
        });
        steps.push(MountStep::BindOpened {
            slot: 1,
            target,
            read_only: true,
        });
    }
    steps.extend([
        MountStep::Mkdir {
            path: staged("sandbox"),
        },
        MountStep::BindOpened {
            slot: 0,
            target: staged("sandbox"),
            read_only: false,
        },
        MountStep::Mkdir {
            path: staged("tmp"),
        },
        MountStep::Tmpfs {
            target: staged("tmp"),
            options: "mode=1777".into(),
        },
        MountStep::Mkdir {
            path: staged("proc"),
        },
        MountStep::Proc {
            target: staged("proc"),
        },
        MountStep::PivotRoot {
            new_root: STAGING.into(),
        },
        MountStep::RemountRootReadOnly,
    ]);
    steps
}

/// Why a mount step failed.
#[derive(Debug, thiserror::Error)]
#[error("mount step {step:?}")]
pub struct ApplyMountError {
    step: MountStep,
    #[source]
    source: std::io::Error,
}

/// Applies `steps` in the calling process's (already private) mount
/// namespace. Runs as root in the init process.
pub fn apply_mounts(steps: &[MountStep]) -> Result<(), ApplyMountError> {
    let mut opened: Vec<Option<OwnedFd>> = Vec::new();
    for step in steps {
        apply_step(step, &mut opened).map_err(|source| ApplyMountError {
            step: step.clone(),
            source,
        })?;
    }
    Ok(())
}

const NONE: Option<&str> = None;

fn apply_step(step: &MountStep, opened: &mut Vec<Option<OwnedFd>>) -> std::io::Result<()> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match step {
        MountStep::MakeRootPrivate => {
            mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)?;
        }
        MountStep::Open { slot, path } => {
            let fd = open(
                path.as_path(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            if opened.len() <= *slot {
                opened.resize_with(slot + 1, || None);
            }
            opened[*slot] = Some(fd);
        }
        MountStep::MkdirAll { path } => std::fs::create_dir_all(path)?,
        MountStep::BindOpened {
            slot,
            target,
            read_only,
        } => {
            let fd = opened
                .get_mut(*slot)
                .and_then(Option::take)
                .ok_or_else(|| std::io::Error::other("the bind source was not opened"))?;
            let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            mount(Some(&source), target.as_str(), NONE, MsFlags::MS_BIND, NONE)?;
            if *read_only {
                let flags = MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | nosuid_nodev
                    | MsFlags::MS_NOEXEC;
                mount(NONE, target.as_str(), NONE, flags, NONE)?;
            }
        }
        MountStep::Tmpfs { target, options } => {
            mount(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                nosuid_nodev,
                Some(options.as_str()),
            )?;
        }
        MountStep::Mkdir { path } => std::fs::create_dir(path)?,
        MountStep::CreateFile { path } => {
            std::fs::File::create(path)?;
        }
        MountStep::Symlink { target, path } => std::os::unix::fs::symlink(target, path)?,
        MountStep::BindTree { source, target } => {
            mount(
                Some(source.as_str()),
                target.as_str(),
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )?;
        }
        MountStep::BindFile { source, target } => {
            mount(
                Some(source.as_str()),
                target.as_str(),
                NONE,
                MsFlags::MS_BIND,
                NONE,
            )?;
        }
        MountStep::Proc { target } => {
            mount(
                Some("proc"),
                target.as_str(),
                Some("proc"),
                nosuid_nodev | MsFlags::MS_NOEXEC,
                NONE,
            )?;
        }
        MountStep::PivotRoot { new_root } => {
            nix::unistd::chdir(new_root.as_str())?;
            nix::unistd::pivot_root(".", ".")?;
            // The old root is now stacked under the new one; detach it.
            umount2(".", MntFlags::MNT_DETACH)?;
            nix::unistd::chdir("/")?;
        }
        MountStep::RemountRootReadOnly => {
            mount(
                NONE,
                "/",
                NONE,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | nosuid_nodev,
                NONE,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_host_entries_and_replaces_proc_tmp_and_sandbox() {
        let entries = vec![
            RootEntry::Symlink {
                name: "bin".into(),
                target: "usr/bin".into(),
            },
            RootEntry::dir("etc"),
            RootEntry::dir("proc"),
            RootEntry::dir("sandbox"),
            RootEntry::dir("tmp"),
            RootEntry::File("swapfile".into()),
        ];
        let steps = build_mounts(&entries, &[], binds());
        assert_eq!(steps[0], MountStep::MakeRootPrivate);
        assert!(steps.contains(&MountStep::Symlink {
            target: "usr/bin".into(),
            path: "/tmp/bin".into()
        }));
        assert!(steps.contains(&MountStep::BindTree {
            source: "/etc".into(),
            target: "/tmp/etc".into()
        }));
        assert!(steps.contains(&MountStep::BindFile {
            source: "/swapfile".into(),
            target: "/tmp/swapfile".into()
        }));
        for replaced in ["/proc", "/tmp", "/sandbox"] {
            assert!(
                !steps
                    .iter()
                    .any(|s| matches!(s, MountStep::BindTree { source, .. } if source == replaced)),
                "{replaced} must not come from the host"
            );
        }
        assert_eq!(
            steps[steps.len() - 2..],
            [
                MountStep::PivotRoot {
                    new_root: "/tmp".into()
                },
                MountStep::RemountRootReadOnly
            ]
        );
    }

    #[test]
    fn private_dirs_are_hidden_unless_the_policy_reaches_into_them() {
        let all = |_: &str| true;
        assert_eq!(private_dirs(&[], all), ["/run", "/var/tmp", "/dev/shm"]);
        let policy = vec!["/run/secrets".to_owned(), "/dev/shmx".to_owned()];
        assert_eq!(
            private_dirs(&policy, all),
            ["/var/tmp", "/dev/shm", RUNTIME_DIR]
        );
        assert_eq!(private_dirs(&[], |d| d != "/var/tmp"), ["/run", "/dev/shm"]);
        let steps = build_mounts(&[RootEntry::dir("run")], &["/run".to_owned()], binds());
        let hidden = MountStep::Tmpfs {
            target: "/tmp/run".into(),
            options: "mode=1777".into(),
        };
        let bound = steps
            .iter()
            .position(|s| matches!(s, MountStep::BindTree { target, .. } if target == "/tmp/run"));
        let covered = steps.iter().position(|s| *s == hidden);
        assert!(
            bound.unwrap() < covered.unwrap(),
            "the tmpfs must cover the bind"
        );
    }

    #[test]
    fn the_runtime_dir_stays_hidden_when_the_policy_opens_run() {
        let all = |_: &str| true;
        let policy = vec!["/run".to_owned(), "/run/openshell/token".to_owned()];
        assert_eq!(
            private_dirs(&policy, all),
            ["/var/tmp", "/dev/shm", "/run/openshell"]
        );
        // Hidden with /run by default; absent, nothing to hide.
        assert!(!private_dirs(&[], all).contains(&RUNTIME_DIR.to_owned()));
        let no_runtime = |d: &str| d != RUNTIME_DIR;
        assert_eq!(private_dirs(&policy, no_runtime), ["/var/tmp", "/dev/shm"]);
    }

    fn binds() -> Binds<'static> {
        Binds {
            workdir: Path::new("/w"),
            tls: Some(Path::new("/state/tls")),
        }
    }

    #[test]
    fn bind_sources_are_opened_before_the_staging_tmpfs_hides_tmp() {
        let steps = build_mounts(&[], &[], binds());
        let open = steps
            .iter()
            .rposition(|s| matches!(s, MountStep::Open { .. }));
        let staging = steps
            .iter()
            .position(|s| matches!(s, MountStep::Tmpfs { target, .. } if target == STAGING));
        assert!(open.unwrap() < staging.unwrap());
        assert!(steps.contains(&MountStep::BindOpened {
            slot: 1,
            target: "/tmp/run/openshell/tls".into(),
            read_only: true
        }));
    }
}
