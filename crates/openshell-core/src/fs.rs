//! Removing a directory tree that an agent wrote, as root, without letting
//! its shape hurt the remover.
//!
//! The tree is hostile: 25,000 nested directories overflowed the stack of a
//! recursive removal (std's `remove_dir_all` recurses and holds a
//! descriptor per level, so it first fails with EMFILE and, on a tokio
//! worker's stack, crashes the process). [`remove_tree`] is iterative and
//! uses three descriptors whatever the depth: every subdirectory met is
//! first renamed up into the tree's top directory, which flattens the tree
//! one level at a time. Nothing is resolved through a link: entries are
//! opened relative to their directory's descriptor with `O_NOFOLLOW`, and a
//! link is unlinked, never followed.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// Writes `contents` to a new file at `path` that only its owner can read
/// (0600), replacing whatever was there: an earlier file's mode is not
/// inherited.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents)
}

/// The largest a sandbox's log (`output.log`, `events.jsonl`) grows before
/// it is rotated: the current file becomes `<name>.1` (replacing the
/// previous one) and a new one starts, so each log takes at most twice this.
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// `<path>.1`, where a rotated log goes.
pub fn rotated(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    std::path::PathBuf::from(name)
}

/// Rotates the log at `path` when writing `adding` more bytes would take it
/// past `max`: renamed to [`rotated`]. Returns whether it was rotated (the
/// writer must then open a new file).
pub fn rotate_if_full(path: &Path, adding: u64, max: u64) -> io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size == 0 || size.saturating_add(adding) <= max {
        return Ok(false);
    }
    std::fs::rename(path, rotated(path))?;
    Ok(true)
}

/// The prefix of the names directories are moved up under.
const MOVED: &str = ".openshell-removing-";

/// Removes `path` and everything beneath it; a missing `path` is not an
/// error. A link at `path` itself is removed, not followed. Blocking: call
/// it off async workers.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        // A file or a link where the tree was: remove just that.
        Err(Errno::ENOTDIR | Errno::ELOOP) => return std::fs::remove_file(path),
        Err(errno) => return Err(errno.into()),
    };
    let mut moved = 0u64;
    let mut pending: Vec<OsString> = Vec::new();
    empty_dir(&top, &top, &mut moved, &mut pending)?;
    while let Some(name) = pending.pop() {
        let dir = nix::fcntl::openat(top.as_fd(), name.as_os_str(), flags, Mode::empty())?;
        empty_dir(&top, &dir, &mut moved, &mut pending)?;
        drop(dir);
        nix::unistd::unlinkat(top.as_fd(), name.as_os_str(), UnlinkatFlags::RemoveDir)?;
    }
    drop(top);
    std::fs::remove_dir(path)
}

/// Unlinks every non-directory in `dir`; records its subdirectories in
/// `pending`: those of `top` by name, the others moved up into `top` under
/// a fresh name. Entries are read in full before the directory changes, and
/// a directory below `top` is read again until it is empty.
fn empty_dir(
    top: &OwnedFd,
    dir: &OwnedFd,
    moved: &mut u64,
    pending: &mut Vec<OsString>,
) -> io::Result<()> {
    let is_top = std::ptr::eq(top, dir);
    loop {
        let names = entries(dir)?;
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            let st = nix::sys::stat::fstatat(
                dir.as_fd(),
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            if !is_dir {
                nix::unistd::unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
            } else if is_top {
                pending.push(name);
            } else {
                pending.push(move_up(top, dir, &name, moved)?);
            }
        }
        if is_top {
            // Its directories stay until they are emptied, one by one.
            return Ok(());
        }
    }
}

/// Renames `dir/name` to a name of its own in `top` (never replacing one).
fn move_up(top: &OwnedFd, dir: &OwnedFd, name: &OsStr, moved: &mut u64) -> io::Result<OsString> {
    loop {
        *moved += 1;
        let to = OsString::from(format!("{MOVED}{moved}"));
        match nix::fcntl::renameat2(
            dir.as_fd(),
            name,
            top.as_fd(),
            to.as_os_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(to),
            Err(Errno::EEXIST) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// The names in `dir`, without `.` and `..`.
fn entries(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut stream = Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in stream.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from(OsStr::from_bytes(&name)));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` nested directories under `root`, made through
    /// descriptors (the path would exceed PATH_MAX), with a file at the end.
    fn deep_chain(root: &Path, depth: usize) {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::fcntl::open(root, flags, Mode::empty()).unwrap();
        for _ in 0..depth {
            nix::sys::stat::mkdirat(dir.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
            dir = nix::fcntl::openat(dir.as_fd(), "d", flags, Mode::empty()).unwrap();
        }
        let file = nix::fcntl::openat(
            dir.as_fd(),
            "f",
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        drop(file);
    }

    #[test]
    fn a_tree_deeper_than_descriptors_and_stack_allow_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("workspace");
        std::fs::create_dir(&tree).unwrap();
        deep_chain(&tree, 30_000);
        // A small stack, like a worker thread's: the removal must not recurse.
        let target = tree.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&target))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert!(!tree.exists());
    }

    #[test]
    fn links_are_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("toplink")).unwrap();
        // A name that looks like one of the remover's own.
        std::fs::create_dir(tree.join(format!("{MOVED}1"))).unwrap();
        std::fs::write(tree.join(format!("{MOVED}1/g")), "x").unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());

        // The path itself a link: the link goes, its target stays.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(outside.join("keep").exists());
        // Missing: nothing to do.
        remove_tree(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn a_full_log_is_rotated_once_it_would_pass_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        assert!(
            !rotate_if_full(&log, 10, 100).unwrap(),
            "missing: nothing to do"
        );
        std::fs::write(&log, vec![b'x'; 95]).unwrap();
        assert!(!rotate_if_full(&log, 5, 100).unwrap());
        assert!(rotate_if_full(&log, 6, 100).unwrap());
        assert!(!log.exists());
        assert_eq!(std::fs::read(rotated(&log)).unwrap().len(), 95);
        // A line larger than the cap still goes somewhere: into a new file.
        assert!(!rotate_if_full(&log, 1000, 100).unwrap());
    }

    #[test]
    fn wide_directories_are_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        for i in 0..50 {
            std::fs::create_dir_all(tree.join(format!("d{i}/e"))).unwrap();
            std::fs::write(tree.join(format!("d{i}/e/f")), "x").unwrap();
            std::fs::write(tree.join(format!("f{i}")), "x").unwrap();
        }
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
    }
}
