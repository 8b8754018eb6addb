//! What of the host the sandbox's root shows, read once for a policy: the
//! top-most listed paths (with `/` and `/run` shown child by child, the
//! runtime material never), the host's top-level links, the baseline
//! devices, and the shared directories to cover (docs/isolation.md, "The
//! sandbox's root"). [`super::mounts`] turns a [`RootLayout`] into mount
//! steps.

use serde::{Deserialize, Serialize};

/// Host top-level entries replaced by the sandbox's own.
const REPLACED: [&str; 3] = ["proc", "tmp", "sandbox"];
/// Paths the sandbox provides itself: a policy path at or under one of
/// them is never taken from the host.
const OWN: [&str; 3] = ["/sandbox", "/tmp", "/proc"];
/// Where other programs leave world-connectable sockets and shared memory:
/// under a listed ancestor (`/var`, `/`), still hidden by an empty tmpfs
/// unless the policy names them or a path inside them.
const SHARED_DIRS: [&str; 2] = ["/var/tmp", "/dev/shm"];
/// Device files every sandbox has when the policy does not list `/dev`
/// (Landlock still decides which of them the agent may open).
const DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];
/// The supervisor's runtime material in a container (the gateway token and
/// CA, its state): never shown to the agent, whatever the policy names.
pub const RUNTIME_DIR: &str = "/run/openshell";

/// What the host has at a path the sandbox shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostKind {
    Dir,
    /// Anything bound as a single file: a regular file, a device, a socket.
    File,
    /// Recreated as the same link (its target must be shown to be useful).
    Symlink(String),
}

/// One host path the sandbox's root shows, at the same place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    pub path: String,
    pub kind: HostKind,
}

impl Shown {
    pub fn new(path: &str, kind: HostKind) -> Shown {
        Shown {
            path: path.to_owned(),
            kind,
        }
    }
}

/// What the new root is made of, read from the host for a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLayout {
    /// The host's top-level links (`bin` → `usr/bin`).
    pub top_links: Vec<(String, String)>,
    /// Host paths bound in, parents before children.
    pub shown: Vec<Shown>,
    /// `SHARED_DIRS` (`/var/tmp`, `/dev/shm`) under a shown ancestor, covered by an empty tmpfs.
    pub hidden: Vec<String>,
}

impl RootLayout {
    pub(super) fn shows(&self, path: &str) -> bool {
        self.shown.iter().any(|s| s.path == path)
    }
}

/// Whether `path` is `ancestor` or lies beneath it.
pub(super) fn at_or_under(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The layout for `policy_paths` (normalized, absolute), reading the host
/// through `kind_of` (`None`: missing) and `children_of` (a directory's
/// entry names). Pure given those two; [`read_layout`] gives the real ones.
pub fn layout_with(
    policy_paths: &[String],
    kind_of: &dyn Fn(&str) -> Option<HostKind>,
    children_of: &dyn Fn(&str) -> Vec<String>,
) -> RootLayout {
    let mut layout = RootLayout::default();
    for name in children_of("/") {
        if REPLACED.contains(&name.as_str()) {
            continue;
        }
        if let Some(HostKind::Symlink(target)) = kind_of(&format!("/{name}")) {
            layout.top_links.push((name, target));
        }
    }
    // Only the top-most listed paths: a child is visible through its parent.
    let mut topmost: Vec<&String> = policy_paths
        .iter()
        .filter(|p| !policy_paths.iter().any(|q| q != *p && at_or_under(p, q)))
        .collect();
    topmost.sort();
    topmost.dedup();
    let mut pending: Vec<String> = topmost.into_iter().rev().cloned().collect();
    while let Some(path) = pending.pop() {
        if OWN.iter().any(|own| at_or_under(&path, own)) || at_or_under(&path, RUNTIME_DIR) {
            continue;
        }
        // The root and /run are shown by their children: the runtime
        // material under /run is never bound in.
        if path == "/" || path == "/run" {
            let mut children: Vec<String> = children_of(&path)
                .into_iter()
                .map(|c| format!("{}/{c}", path.trim_end_matches('/')))
                .collect();
            children.sort();
            pending.extend(children.into_iter().rev());
            continue;
        }
        let Some(kind) = kind_of(&path) else {
            continue; // missing on the host: nothing to show
        };
        let top_level = path.rfind('/') == Some(0);
        if top_level && matches!(kind, HostKind::Symlink(_)) {
            continue; // recreated with the other top-level links
        }
        layout.shown.push(Shown { path, kind });
    }
    if !layout.shown.iter().any(|s| s.path == "/dev") {
        for device in DEVICES {
            if let Some(kind @ HostKind::File) = kind_of(device)
                && !layout.shows(device)
            {
                layout.shown.push(Shown::new(device, kind));
            }
        }
        if kind_of("/dev/pts") == Some(HostKind::Dir) && !layout.shows("/dev/pts") {
            layout.shown.push(Shown::new("/dev/pts", HostKind::Dir));
        }
    }
    for dir in SHARED_DIRS {
        let covered = layout
            .shown
            .iter()
            .any(|s| s.path != dir && at_or_under(dir, &s.path));
        let named = policy_paths.iter().any(|p| at_or_under(p, dir));
        if covered && !named && kind_of(dir) == Some(HostKind::Dir) {
            layout.hidden.push(dir.to_owned());
        }
    }
    layout
}

/// [`layout_with`] on the real host (the only I/O in plan building).
pub fn read_layout(policy_paths: &[String]) -> RootLayout {
    let kind_of = |path: &str| -> Option<HostKind> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(if meta.is_symlink() {
            HostKind::Symlink(std::fs::read_link(path).ok()?.to_str()?.to_owned())
        } else if meta.is_dir() {
            HostKind::Dir
        } else {
            HostKind::File
        })
    };
    let children_of = |path: &str| -> Vec<String> {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    // A non-UTF-8 name cannot be in a policy either.
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    layout_with(policy_paths, &kind_of, &children_of)
}
