//! `openshell sandbox upload|download`: tar streams through `sandbox exec`,
//! so files move over the supervisor's session and are written or read
//! inside the sandbox as its user, under its Landlock rules.
//!
//! Placement (cli-reference §3.5): an uploaded directory lands as
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
use crate::commands::sandbox::Scope;
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
    let (remote_dir, entry) = if meta.is_dir() {
        (dest.unwrap_or(WORKSPACE).to_owned(), base)
    } else {
        match dest {
            None => (WORKSPACE.to_owned(), base),
            Some(d) if d.ends_with('/') => (d.to_owned(), base),
            Some(d) => {
                let path = Path::new(d);
                let dir = path.parent().map_or(".".into(), |p| {
                    if p.as_os_str().is_empty() {
                        ".".into()
                    } else {
                        p.to_string_lossy().into_owned()
                    }
                });
                let file = path.file_name().context("DEST has no file name")?;
                (dir, PathBuf::from(file))
            }
        }
    };
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
        &[
            "sh",
            "-c",
            "mkdir -p -- \"$1\" && tar xf - -C \"$1\"",
            "sh",
            &remote_dir,
        ],
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

/// Resolves SRC inside the sandbox: prints `missing`, `outside <root>`, or
/// `dir|file` and the real path.
const PROBE: &str = r#"root=$(pwd -P) || exit 3
p=$(realpath -e -- "$1" 2>/dev/null) || { echo missing; exit 0; }
case "$p" in "$root"|"$root"/*) ;; *) echo "outside $root"; exit 0;; esac
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
        (Some(outside), _) if outside.starts_with("outside ") => bail!(
            "{src} is outside the sandbox workspace ({})",
            &outside["outside ".len()..]
        ),
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
fn unpack_all(from: impl std::io::Read, into: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(from);
    archive.set_preserve_permissions(true);
    archive.unpack(into)?;
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
    Ok(())
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
        extractor.join().unwrap().unwrap();
        assert_eq!(
            std::fs::read(into.path().join("hello.txt")).unwrap(),
            b"hello"
        );
    }
}
