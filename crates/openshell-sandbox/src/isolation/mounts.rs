//! The child's filesystem view: a new root on a small tmpfs holding only
//! what the policy lists (each top-most listed path bound from the host),
//! the host's top-level symbolic links (`/bin -> usr/bin`), a minimal
//! `/dev`, the workspace at `/sandbox`, a private `/tmp` and a `/proc` of
//! the child's own PID namespace. The root itself is then remounted
//! read-only.
//!
//! A path the policy does not list does not exist inside (docs/isolation.md,
//! "The sandbox's root"): Landlock denied it anyway, but a mirror of the
//! host's `/` still let the agent `connect(2)` to a host UNIX socket
//! (Landlock before ABI 9 does not govern that), watch host paths with
//! inotify and read the sizes and times of files it could not open.
//!
//! All of it happens in the child's private mount namespace (propagation set
//! to private first), so nothing ever appears on the host and everything
//! disappears with the namespace, even when the child crashes. No directory
//! is created on the host: the host's root does not need a `/sandbox`.
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

use super::layout::at_or_under;
pub use super::layout::{HostKind, RUNTIME_DIR, RootLayout, Shown};

/// Where the new root is assembled (in the private mount namespace only).
pub const STAGING: &str = "/tmp";
/// The links of a constructed `/dev`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

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
    /// Bind the file `name` of the directory opened into `slot`.
    BindOpenedFile {
        slot: usize,
        name: String,
        target: String,
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
    /// The size cap of the private `/tmp`, in bytes (`None`: the kernel's
    /// default, half of the host's memory).
    pub tmp_size: Option<u64>,
    /// A directory with the `passwd` and `group` bound over the sandbox's
    /// `/etc/passwd` and `/etc/group` (where it shows them): the sandbox's
    /// own id for the `sandbox` account.
    pub accounts: Option<&'a Path>,
}

/// The mount sequence for `layout`. Pure.
pub fn build_mounts(layout: &RootLayout, binds: Binds<'_>) -> Vec<MountStep> {
    let mut steps = vec![
        MountStep::MakeRootPrivate,
        MountStep::Open {
            slot: 0,
            path: binds.workdir.to_owned(),
        },
    ];
    if let Some(tls) = binds.tls {
        steps.push(MountStep::Open {
            slot: 1,
            path: tls.to_owned(),
        });
    }
    if let Some(accounts) = binds.accounts {
        steps.push(MountStep::Open {
            slot: 2,
            path: accounts.to_owned(),
        });
    }
    steps.push(MountStep::Tmpfs {
        target: STAGING.into(),
        options: "mode=0755,size=1m".into(),
    });
    for (name, target) in &layout.top_links {
        steps.push(MountStep::Symlink {
            target: target.clone(),
            path: staged(name),
        });
    }
    for shown in &layout.shown {
        let target = format!("{STAGING}{}", shown.path);
        if let Some(parent) = Path::new(&target).parent() {
            steps.push(MountStep::MkdirAll {
                path: parent.to_string_lossy().into_owned(),
            });
        }
        match &shown.kind {
            HostKind::Dir => {
                steps.push(MountStep::MkdirAll {
                    path: target.clone(),
                });
                steps.push(MountStep::BindTree {
                    source: shown.path.clone(),
                    target,
                });
            }
            HostKind::File => {
                steps.push(MountStep::CreateFile {
                    path: target.clone(),
                });
                steps.push(MountStep::BindFile {
                    source: shown.path.clone(),
                    target,
                });
            }
            HostKind::Symlink(link) => steps.push(MountStep::Symlink {
                target: link.clone(),
                path: target,
            }),
        }
    }
    if !layout.shows("/dev") {
        // A constructed /dev: the devices above, the usual links, and a
        // private /dev/shm.
        steps.push(MountStep::MkdirAll {
            path: staged("dev/shm"),
        });
        steps.push(MountStep::Tmpfs {
            target: staged("dev/shm"),
            options: "mode=1777".into(),
        });
        for (path, target) in DEV_LINKS {
            steps.push(MountStep::Symlink {
                target: target.into(),
                path: format!("{STAGING}{path}"),
            });
        }
    }
    if binds.accounts.is_some() {
        for name in ["passwd", "group"] {
            let path = format!("/etc/{name}");
            if layout.shown.iter().any(|s| at_or_under(&path, &s.path)) {
                steps.push(MountStep::BindOpenedFile {
                    slot: 2,
                    name: name.to_owned(),
                    target: format!("{STAGING}{path}"),
                });
            }
        }
    }
    for dir in &layout.hidden {
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
            options: match binds.tmp_size {
                Some(bytes) => format!("mode=1777,size={bytes}"),
                None => "mode=1777".into(),
            },
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
        MountStep::BindOpenedFile { slot, name, target } => {
            let fd = opened
                .get(*slot)
                .and_then(Option::as_ref)
                .ok_or_else(|| std::io::Error::other("the bind source was not opened"))?;
            let source = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
            mount(Some(&source), target.as_str(), NONE, MsFlags::MS_BIND, NONE)?;
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
    use crate::isolation::layout::layout_with;

    /// A host: `/bin -> usr/bin`, `/lib64 -> usr/lib64`, directories `usr`,
    /// `etc`, `var` (with `log`, `lib`, `tmp`), `run` (with `dbus`,
    /// `openshell`), `dev` (devices, `pts`, `shm`), `work`, `proc`, `tmp`,
    /// and `/var/lib/data.sock`.
    fn host(paths: &[String]) -> RootLayout {
        let dirs = [
            "/",
            "/usr",
            "/usr/lib64",
            "/etc",
            "/var",
            "/var/log",
            "/var/lib",
            "/var/tmp",
            "/run",
            "/run/dbus",
            "/run/openshell",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/work",
            "/proc",
            "/tmp",
        ];
        let files = [
            "/var/lib/data.sock",
            "/dev/null",
            "/dev/urandom",
            "/dev/tty",
            "/dev/ptmx",
        ];
        let links = [("/bin", "usr/bin"), ("/lib64", "usr/lib64")];
        let kind_of = |p: &str| {
            if dirs.contains(&p) {
                Some(HostKind::Dir)
            } else if files.contains(&p) {
                Some(HostKind::File)
            } else {
                links
                    .iter()
                    .find(|(l, _)| *l == p)
                    .map(|(_, t)| HostKind::Symlink((*t).to_owned()))
            }
        };
        let children_of = |p: &str| {
            let all: Vec<&str> = dirs
                .iter()
                .chain(files.iter())
                .copied()
                .chain(links.iter().map(|(l, _)| *l))
                .collect();
            all.into_iter()
                .filter(|c| *c != "/" && Path::new(c).parent() == Some(Path::new(p)))
                .map(|c| {
                    Path::new(c)
                        .file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        layout_with(paths, &kind_of, &children_of)
    }

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    fn shown_paths(layout: &RootLayout) -> Vec<&str> {
        layout.shown.iter().map(|s| s.path.as_str()).collect()
    }

    #[test]
    fn only_listed_paths_are_shown_with_baseline_devices_and_top_level_links() {
        let layout = host(&paths(&[
            "/usr",
            "/usr/lib",
            "/etc",
            "/lib64",
            "/sandbox",
            "/tmp",
            "/proc",
            "/dev/urandom",
            "/missing",
        ]));
        assert_eq!(
            layout.top_links,
            [
                ("bin".to_owned(), "usr/bin".to_owned()),
                ("lib64".to_owned(), "usr/lib64".to_owned())
            ]
        );
        // /usr/lib through /usr; nothing of /var, /run, /work, /dev/shm.
        assert_eq!(
            shown_paths(&layout),
            [
                "/dev/urandom",
                "/etc",
                "/usr",
                "/dev/null",
                "/dev/tty",
                "/dev/ptmx",
                "/dev/pts"
            ]
        );
        assert!(layout.hidden.is_empty());
        let steps = build_mounts(&layout, binds());
        assert!(steps.contains(&MountStep::BindTree {
            source: "/usr".into(),
            target: "/tmp/usr".into()
        }));
        assert!(steps.contains(&MountStep::Tmpfs {
            target: "/tmp/dev/shm".into(),
            options: "mode=1777".into()
        }));
        assert!(steps.contains(&MountStep::Symlink {
            target: "/proc/self/fd".into(),
            path: "/tmp/dev/fd".into()
        }));
        assert!(!steps.iter().any(|s| matches!(s,
            MountStep::BindTree { source, .. } | MountStep::BindFile { source, .. }
                if source.starts_with("/var") || source.starts_with("/run") || source == "/work")));
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
    fn the_whole_root_is_shown_by_its_children_without_the_runtime_material_or_shared_dirs() {
        let layout = host(&paths(&["/"]));
        let shown = shown_paths(&layout);
        for expected in ["/dev", "/etc", "/usr", "/var", "/work", "/run/dbus"] {
            assert!(shown.contains(&expected), "{expected} in {shown:?}");
        }
        for never in ["/", "/run", "/run/openshell", "/proc", "/tmp", "/bin"] {
            assert!(!shown.contains(&never), "{never} in {shown:?}");
        }
        assert_eq!(layout.hidden, ["/var/tmp", "/dev/shm"]);
        // Named explicitly: shown.
        let layout = host(&paths(&["/var", "/var/tmp"]));
        assert!(layout.hidden.is_empty());
    }

    #[test]
    fn a_listed_socket_is_shown_and_an_unlisted_one_does_not_exist() {
        let layout = host(&paths(&["/usr"]));
        assert!(!shown_paths(&layout).iter().any(|p| p.starts_with("/var")));
        let layout = host(&paths(&["/var/lib/data.sock"]));
        assert!(
            layout
                .shown
                .contains(&Shown::new("/var/lib/data.sock", HostKind::File))
        );
        let steps = build_mounts(&layout, binds());
        assert!(steps.contains(&MountStep::MkdirAll {
            path: "/tmp/var/lib".into()
        }));
        // The runtime material, whatever is listed.
        let layout = host(&paths(&["/run/openshell", "/run"]));
        assert_eq!(
            shown_paths(&layout),
            [
                "/run/dbus",
                "/dev/null",
                "/dev/urandom",
                "/dev/tty",
                "/dev/ptmx",
                "/dev/pts"
            ]
        );
    }

    fn binds() -> Binds<'static> {
        Binds {
            workdir: Path::new("/w"),
            tls: Some(Path::new("/state/tls")),
            tmp_size: Some(1 << 30),
            accounts: Some(Path::new("/state/accounts")),
        }
    }

    #[test]
    fn bind_sources_are_opened_before_the_staging_tmpfs_hides_tmp() {
        let steps = build_mounts(&RootLayout::default(), binds());
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
        assert!(steps.contains(&MountStep::Tmpfs {
            target: "/tmp/tmp".into(),
            options: format!("mode=1777,size={}", 1u64 << 30)
        }));
        // /etc not shown: no accounts bound over it.
        assert!(
            !steps
                .iter()
                .any(|s| matches!(s, MountStep::BindOpenedFile { .. }))
        );
        let layout = host(&paths(&["/etc"]));
        let steps = build_mounts(&layout, binds());
        let bound = steps
            .iter()
            .position(|s| {
                *s == MountStep::BindOpenedFile {
                    slot: 2,
                    name: "passwd".into(),
                    target: "/tmp/etc/passwd".into(),
                }
            })
            .expect("passwd bound");
        let etc = steps
            .iter()
            .position(|s| matches!(s, MountStep::BindTree { source, .. } if source == "/etc"))
            .unwrap();
        assert!(etc < bound, "over the host's /etc, not under it");
    }
}
