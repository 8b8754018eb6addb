//! `openshell sandbox upload|download`: tar streams through `sandbox exec`,
//! so files move over the supervisor's session and are written or read
//! inside the sandbox as its user, under its Landlock rules.
//!
//! Placement (docs/cli.md, "Sandboxes"): an uploaded directory lands as
//! `<dest>/<basename>/…` (merged, nothing deleted); a file goes to DEST
//! exactly unless DEST ends with `/`; inside a git work tree only files git
//! does not ignore are sent (unless `--no-git-ignore`); symlinks are sent as
//! symlinks. A download source must resolve inside the sandbox's workspace;
//! a file is placed like `cp` (into DEST when it is a directory or ends with
//! `/`), a directory's contents are extracted into DEST. The archive from
//! the sandbox is untrusted: nothing in it may land outside DEST.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::commands::Exit;
use crate::commands::exec::{self, ExecOptions};
use crate::commands::scope::Scope;
use crate::output;

/// The sandbox's home and workspace.
const WORKSPACE: &str = "/sandbox";

fn exec_options(name: &str, command: &[&str]) -> ExecOptions {
    ExecOptions {
        name: name.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: std::collections::HashMap::new(),
        workdir: None,
        timeout_seconds: 0,
    }
}

/// The paths under `dir` git would send: tracked and untracked, not
/// ignored. `None` outside a git work tree (or without git).
fn git_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let inside = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .ok()?;
    if !inside.status.success() || inside.stdout.trim_ascii() != b"true" {
        return None;
    }
    let listed = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            ".",
        ])
        .output()
        .ok()?;
    if !listed.status.success() {
        return None;
    }
    Some(
        listed
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| dir.join(p).symlink_metadata().is_ok())
            .collect(),
    )
}

/// Writes the tar of `local` (under the name `name`) to `out`.
fn archive(
    local: &Path,
    name: &Path,
    filter: Option<&[PathBuf]>,
    out: impl Write,
) -> anyhow::Result<()> {
    let mut builder = tar::Builder::new(BufWriter::new(out));
    builder.follow_symlinks(false);
    let is_dir = local.symlink_metadata()?.is_dir();
    match filter {
        Some(files) if is_dir => {
            builder.append_dir(name, local)?;
            for file in files {
                builder.append_path_with_name(local.join(file), name.join(file))?;
            }
        }
        _ if is_dir => builder.append_dir_all(name, local)?,
        _ => builder.append_path_with_name(local, name)?,
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

/// Runs `command` in the sandbox with `input` on its stdin; its stderr
/// becomes the error when it fails.
fn remote(
    scope: &Scope,
    name: &str,
    command: &[&str],
    input: impl std::io::Read + Send + 'static,
    stdout: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut stderr = Vec::new();
    let code = exec::run(
        scope,
        exec_options(name, command),
        input,
        stdout,
        &mut stderr,
    )?;
    if code != 0 {
        bail!(
            "{} (exit status {code} in the sandbox)",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(())
}

pub fn upload(
    scope: &Scope,
    name: &str,
    local: &Path,
    dest: Option<&str>,
    git_ignore: bool,
) -> anyhow::Result<Exit> {
    let meta = local
        .symlink_metadata()
        .with_context(|| format!("cannot read {}", local.display()))?;
    output::stderr_line(&format!(
        "Uploading {} -> sandbox:{}",
        local.display(),
        dest.unwrap_or("~")
    ));
    let absolute = std::path::absolute(local)?;
    let base = PathBuf::from(
        absolute
            .components()
            .next_back()
            .map(|c| c.as_os_str().to_owned())
            .context("the upload source has no name")?,
    );
    // A directory lands in DEST; so does a file when DEST ends with `/`
    // or is a directory in the sandbox (which only the sandbox can tell);
    // otherwise the file becomes DEST.
    let (script, remote_dest) = match dest {
        None => (INTO_DIR, WORKSPACE.to_owned()),
        Some(d) if meta.is_dir() || d.ends_with('/') => (INTO_DIR, d.to_owned()),
        Some(d) => {
            Path::new(d).file_name().context("DEST has no file name")?;
            (INTO_DIR_OR_AS, d.to_owned())
        }
    };
    let entry = base;
    let entry_name = entry.to_string_lossy().into_owned();
    let filter = match (meta.is_dir() && git_ignore)
        .then(|| git_files(local))
        .flatten()
    {
        Some(files) if files.is_empty() => {
            output::warning(&format!(
                ".gitignore filtering excluded all files in {}; uploading unfiltered",
                local.display()
            ));
            None
        }
        other => other,
    };
    let (reader, writer) = std::io::pipe()?;
    let source = local.to_owned();
    let builder = std::thread::spawn(move || archive(&source, &entry, filter.as_deref(), writer));
    let sent = remote(
        scope,
        name,
        &["sh", "-c", script, "sh", &remote_dest, &entry_name],
        reader,
        &mut std::io::sink(),
    );
    let built = builder
        .join()
        .map_err(|_| anyhow::anyhow!("the archive thread panicked"))?;
    sent.context("the upload failed")?;
    built.context("reading the files to upload")?;
    output::success_stderr("Upload complete");
    Ok(Exit::Success)
}

/// Unpacks the upload into the directory `$1` (made when missing).
const INTO_DIR: &str = r#"mkdir -p -- "$1" && tar xf - -C "$1""#;

/// Unpacks the upload (one file named `$2`) into `$1` when that is a
/// directory, else as the file `$1`: unpacked beside it, then renamed.
const INTO_DIR_OR_AS: &str = r#"set -e
if [ -d "$1" ]; then exec tar xf - -C "$1"; fi
parent=$(dirname -- "$1")
mkdir -p -- "$parent"
staging=$(mktemp -d -- "$parent/.openshell-upload.XXXXXX")
trap 'rm -rf -- "$staging"' EXIT
tar xf - -C "$staging"
mv -f -- "$staging/$2" "$1""#;

/// Resolves SRC inside the sandbox: prints `missing`; or `outside <root>`,
/// the real path and the path as written (links not followed); or
/// `dir|file` and the real path.
const PROBE: &str = r#"root=$(pwd -P) || exit 3
p=$(realpath -e -- "$1" 2>/dev/null) || { echo missing; exit 0; }
case "$p" in "$root"|"$root"/*) ;;
*) echo "outside $root"; printf '%s\n' "$p"; realpath -m -s -- "$1" 2>/dev/null || printf '%s\n' "$1"; exit 0;;
esac
if [ -d "$p" ]; then echo dir; else echo file; fi
printf '%s\n' "$p""#;

pub fn download(scope: &Scope, name: &str, src: &str, dest: &Path) -> anyhow::Result<Exit> {
    output::stderr_line(&format!("Downloading sandbox:{src} -> {}", dest.display()));
    let mut probe = Vec::new();
    remote(
        scope,
        name,
        &["sh", "-c", PROBE, "sh", src],
        std::io::empty(),
        &mut probe,
    )?;
    let probe = String::from_utf8_lossy(&probe).into_owned();
    let mut lines = probe.lines();
    let (kind, path) = match (lines.next(), lines.next()) {
        (Some("missing"), _) => bail!("sandbox:{src} does not exist"),
        (Some(outside), real) if outside.starts_with("outside ") => {
            let root = &outside["outside ".len()..];
            match (real, lines.next()) {
                // Through a link: say where it leads.
                (Some(real), Some(written)) if real != written => bail!(
                    "{src} resolves to {real}, which is outside the sandbox workspace ({root})"
                ),
                _ => bail!("{src} is outside the sandbox workspace ({root})"),
            }
        }
        (Some(kind @ ("dir" | "file")), Some(path)) => (kind, path.to_owned()),
        _ => bail!("unexpected answer from the sandbox: {probe}"),
    };
    let remote_path = Path::new(&path);
    let parent = remote_path
        .parent()
        .map_or("/".into(), |p| p.to_string_lossy().into_owned());
    let base = remote_path
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let command: Vec<&str> = if kind == "dir" {
        vec!["tar", "cf", "-", "-C", &path, "."]
    } else {
        vec!["tar", "cf", "-", "-C", &parent, "--", &base]
    };
    // Extract into a staging directory beside the destination, then move
    // into place: a failed transfer never leaves a file that looks complete.
    let dest_is_dir = dest.is_dir() || dest.to_string_lossy().ends_with('/');
    let staging_parent = if kind == "file" && !dest_is_dir {
        dest.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    } else {
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        dest.to_owned()
    };
    let staging = staging_parent.join(format!(".openshell-download-{}", std::process::id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = (|| {
        let (reader, writer) = std::io::pipe()?;
        let into = staging.clone();
        let extractor = std::thread::spawn(move || unpack_all(reader, &into));
        let mut writer = writer;
        let fetched = remote(scope, name, &command, std::io::empty(), &mut writer);
        // End of the archive for the extractor, whatever happened.
        drop(writer);
        let extracted = extractor
            .join()
            .map_err(|_| anyhow::anyhow!("the extraction thread panicked"))?;
        // An archive that cannot be unpacked stops the extractor, and the
        // transfer then fails with a broken pipe: the extractor's error is
        // the cause.
        let broken_pipe = |e: &anyhow::Error| {
            e.root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        };
        let extracted = extracted.map(|skipped| {
            for link in skipped {
                output::warning(&format!(
                    "not created: the link {link} points outside {}",
                    dest.display()
                ));
            }
        });
        match (fetched, extracted) {
            (Err(error), Ok(())) => return Err(error.context("the download failed")),
            (Err(error), Err(_)) if !broken_pipe(&error) => {
                return Err(error.context("the download failed"));
            }
            (_, Err(error)) => {
                return Err(anyhow::Error::from(error).context("unpacking the download"));
            }
            (Ok(()), Ok(())) => {}
        }
        place(&staging, kind, &base, dest, dest_is_dir)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    output::success_stderr("Download complete");
    Ok(Exit::Success)
}

/// Unpacks the archive `from` into `into`, then reads `from` to its end:
/// tar pads an archive past its end marker, where unpacking stops, and a
/// writer still sending the padding must not meet a closed pipe.
///
/// Links that lead outside `into` are not left behind, like tar's safe
/// mode: the archive is the sandbox's, and a link to
/// `/root/.ssh/authorized_keys` is a trap for the next write. A hard link
/// is refused when its target resolves outside; symbolic links are checked
/// once everything is unpacked, through the links then in the tree
/// (`a/b/c/d -> ../../..` followed by `a/b/c/d/x -> ../../..` escapes
/// though each looks harmless), and removed when they lead outside. Each
/// one is returned as `path -> target`. Directories are made last, so that
/// a read-only one cannot stop its own contents.
fn unpack_all(from: impl std::io::Read, into: &Path) -> std::io::Result<Vec<String>> {
    let mut archive = tar::Archive::new(from);
    archive.set_preserve_permissions(true);
    let mut skipped = Vec::new();
    let mut directories = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            directories.push(entry);
            continue;
        }
        if kind.is_hard_link() {
            let path = entry.path()?.into_owned();
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            if !resolves_inside(into, Path::new(""), &target) {
                skipped.push(format!("{} -> {}", path.display(), target.display()));
                continue;
            }
        }
        entry.unpack_in(into)?;
    }
    for mut directory in directories.into_iter().rev() {
        directory.unpack_in(into)?;
    }
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
    // Removing one link can make another lead elsewhere: until stable.
    loop {
        let escaping = escaping_links(into)?;
        if escaping.is_empty() {
            break;
        }
        for (link, target) in escaping {
            std::fs::remove_file(into.join(&link))?;
            skipped.push(format!("{} -> {}", link.display(), target.display()));
        }
    }
    Ok(skipped)
}

/// The symbolic links under `root` (relative paths, with their targets)
/// that lead outside it.
fn escaping_links(root: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&dir))? {
            let entry = entry?;
            let path = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(root.join(&path))?;
                if !resolves_inside(root, &dir, &target) {
                    found.push((path, target));
                }
            }
        }
    }
    Ok(found)
}

/// Whether `target`, read from the directory `dir` (relative to `root`),
/// stays beneath `root` when resolved through the links now under `root`.
/// A name that does not exist is taken as it is (it cannot be a link).
fn resolves_inside(root: &Path, dir: &Path, target: &Path) -> bool {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    const MAX_LINKS: usize = 40;
    /// One step of a path: up, or into a name. `None`: absolute.
    fn steps(path: &Path) -> Option<Vec<Option<OsString>>> {
        let mut out = Vec::new();
        for component in path.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => out.push(None),
                Component::Normal(name) => out.push(Some(name.to_owned())),
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(out)
    }
    let (Some(dir), Some(target)) = (steps(dir), steps(target)) else {
        return false;
    };
    let mut pending: VecDeque<Option<OsString>> = dir.into_iter().chain(target).collect();
    let mut at = PathBuf::new();
    let mut links = 0usize;
    while let Some(step) = pending.pop_front() {
        let Some(name) = step else {
            if !at.pop() {
                return false;
            }
            continue;
        };
        let next = at.join(&name);
        match std::fs::read_link(root.join(&next)) {
            Ok(link) => {
                links += 1;
                let Some(link) = steps(&link).filter(|_| links <= MAX_LINKS) else {
                    return false;
                };
                for step in link.into_iter().rev() {
                    pending.push_front(step);
                }
            }
            Err(_) => at = next,
        }
    }
    true
}

/// Moves what was extracted into `staging` to its place.
fn place(
    staging: &Path,
    kind: &str,
    base: &str,
    dest: &Path,
    dest_is_dir: bool,
) -> anyhow::Result<()> {
    if kind == "file" {
        let target = if dest_is_dir {
            dest.join(base)
        } else {
            dest.to_owned()
        };
        std::fs::rename(staging.join(base), &target)
            .with_context(|| format!("writing {}", target.display()))?;
        return Ok(());
    }
    merge(staging, dest)
}

/// Moves every entry of `from` into `to`, merging directories.
fn merge(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() && target.is_dir() {
            merge(&entry.path(), &target)?;
        } else {
            if target.symlink_metadata().is_ok() && !target.is_dir() {
                std::fs::remove_file(&target)?;
            }
            std::fs::rename(entry.path(), &target)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_leaving_the_destination_are_not_created() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = |path: &str, target: &str, kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o777);
            builder.append_link(&mut header, path, target).unwrap();
        };
        link(
            "evil",
            "/root/.ssh/authorized_keys",
            tar::EntryType::Symlink,
        );
        link("sub/up", "../../etc/passwd", tar::EntryType::Symlink);
        link("sub/rel", "../a.txt", tar::EntryType::Symlink);
        link("ok", "sub/rel", tar::EntryType::Symlink);
        link("hard", "../outside", tar::EntryType::Link);
        // Each harmless alone; together, out by four levels.
        link("a/b/c/d", "../../..", tar::EntryType::Symlink);
        link("a/b/c/d/x", "../../..", tar::EntryType::Symlink);
        let archive = builder.into_inner().unwrap();
        let into = tempfile::tempdir().unwrap();
        let mut skipped = unpack_all(&archive[..], into.path()).unwrap();
        skipped.sort();
        // tar-rs wrote a/b/c/d/x through d (the root), as x.
        assert_eq!(
            skipped,
            [
                "evil -> /root/.ssh/authorized_keys",
                "hard -> ../outside",
                "sub/up -> ../../etc/passwd",
                "x -> ../../..",
            ]
        );
        assert!(into.path().join("a/b/c/d").symlink_metadata().is_ok());
        for gone in ["evil", "sub/up", "hard", "x"] {
            assert!(into.path().join(gone).symlink_metadata().is_err(), "{gone}");
        }
        assert_eq!(
            std::fs::read_link(into.path().join("sub/rel")).unwrap(),
            Path::new("../a.txt")
        );
        assert!(into.path().join("ok").symlink_metadata().is_ok());
    }

    #[test]
    fn the_padding_after_the_end_of_an_archive_is_read_not_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "hello.txt", &b"hello"[..])
            .unwrap();
        let archive = builder.into_inner().unwrap();
        let into = tempfile::tempdir().unwrap();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let target = into.path().to_owned();
        let extractor = std::thread::spawn(move || unpack_all(reader, &target));
        writer.write_all(&archive).unwrap();
        // GNU tar's padding to its 10 KiB record, sent after the extractor
        // has seen the end marker.
        std::thread::sleep(std::time::Duration::from_millis(100));
        writer.write_all(&[0u8; 8704]).unwrap();
        drop(writer);
        assert!(extractor.join().unwrap().unwrap().is_empty());
        assert_eq!(
            std::fs::read(into.path().join("hello.txt")).unwrap(),
            b"hello"
        );
    }
}
