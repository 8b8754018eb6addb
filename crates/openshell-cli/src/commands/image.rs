//! `sandbox create --from`: what the source names, and building a
//! Dockerfile with the local engine (`docker build` / `podman build`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::output;

/// The registry bare names resolve against (docs/cli.md, "Sandboxes").
const COMMUNITY_REGISTRY: &str = "ghcr.io/nvidia/openshell-community/sandboxes";

/// What `--from` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image reference, used as given.
    Image(String),
    /// A Dockerfile to build, with its context directory.
    Build {
        dockerfile: PathBuf,
        context: PathBuf,
    },
}

/// Resolves `--from` (docs/cli.md, "Sandboxes"): an existing file whose
/// name contains `dockerfile` is built; an existing directory with a
/// `Dockerfile` is built; a local-looking path that does not exist is an
/// error; a name with `/`, `:` or `.` is an image reference; anything else
/// is a community name, `<registry>/<name>:latest`.
pub fn resolve(source: &str, community_registry: Option<&str>) -> anyhow::Result<Source> {
    let path = Path::new(source);
    let dockerfile_name = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("dockerfile"))
    };
    if path.is_file() && dockerfile_name(path) {
        let context = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        return Ok(Source::Build {
            dockerfile: path.to_owned(),
            context,
        });
    }
    if path.is_dir() {
        let dockerfile = path.join("Dockerfile");
        if !dockerfile.is_file() {
            bail!(
                "--from {source}: the directory has no Dockerfile\nhint: pass the Dockerfile itself, or an image reference"
            );
        }
        return Ok(Source::Build {
            dockerfile,
            context: path.to_owned(),
        });
    }
    let local_looking = ["/", "./", "../", "~/"]
        .iter()
        .any(|prefix| source.starts_with(prefix))
        || [".", ".."].contains(&source)
        || (dockerfile_name(path) && !source.contains(':'));
    if local_looking {
        bail!("--from {source}: no such file or directory");
    }
    if source.is_empty() {
        bail!("--from needs an image, a directory or a Dockerfile");
    }
    if source.contains(['/', ':', '.']) {
        return Ok(Source::Image(source.to_owned()));
    }
    let registry = community_registry
        .filter(|r| !r.is_empty())
        .unwrap_or(COMMUNITY_REGISTRY)
        .trim_end_matches('/');
    Ok(Source::Image(format!("{registry}/{source}:latest")))
}

/// Builds `dockerfile` in `context` with `engine` (`docker` or `podman`),
/// its progress on stderr; returns the tag.
pub fn build(engine: &str, dockerfile: &Path, context: &Path) -> anyhow::Result<String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag = format!("openshell/sandbox-from:{secs}");
    output::step(&format!(
        "Building {} with {engine} as {tag}",
        dockerfile.display()
    ));
    let mut command = Command::new(engine);
    command
        .arg("build")
        .arg("--tag")
        .arg(&tag)
        .arg("--file")
        .arg(dockerfile)
        .arg(context)
        .stdin(Stdio::null())
        // The engine's own progress goes to our stderr; stdout stays ours.
        .stdout(std::io::stderr())
        .stderr(std::io::stderr());
    let status = command.status().with_context(|| {
        format!("running `{engine} build` (is the {engine} command installed?)")
    })?;
    if !status.success() {
        bail!(
            "`{engine} build` failed ({status}); its output is above\nhint: fix the Dockerfile, or pass an existing image with --from"
        );
    }
    output::success_stderr(&format!("Built image {tag}"));
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_names_resolve_as_the_reference_says() {
        assert_eq!(
            resolve("openshell/sandbox:latest", None).unwrap(),
            Source::Image("openshell/sandbox:latest".into())
        );
        assert_eq!(
            resolve("127.0.0.1:5000/x", None).unwrap(),
            Source::Image("127.0.0.1:5000/x".into())
        );
        assert_eq!(
            resolve("base", None).unwrap(),
            Source::Image(format!("{COMMUNITY_REGISTRY}/base:latest"))
        );
        assert_eq!(
            resolve("base", Some("registry.local/sb/")).unwrap(),
            Source::Image("registry.local/sb/base:latest".into())
        );
    }

    #[test]
    fn directories_and_dockerfiles_are_built_and_missing_paths_refused() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        std::fs::create_dir(&context).unwrap();
        let error = resolve(context.to_str().unwrap(), None).unwrap_err();
        assert!(error.to_string().contains("has no Dockerfile"), "{error}");
        std::fs::write(context.join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(
            resolve(context.to_str().unwrap(), None).unwrap(),
            Source::Build {
                dockerfile: context.join("Dockerfile"),
                context: context.clone()
            }
        );
        let other = context.join("dev.Dockerfile");
        std::fs::write(&other, "FROM scratch\n").unwrap();
        assert_eq!(
            resolve(other.to_str().unwrap(), None).unwrap(),
            Source::Build {
                dockerfile: other.clone(),
                context: context.clone()
            }
        );
        for missing in ["./nothing-here", "/no/such/dir", "Dockerfile.missing"] {
            let error = resolve(missing, None).unwrap_err();
            assert!(
                error.to_string().contains("no such file or directory"),
                "{missing}: {error}"
            );
        }
    }
}
