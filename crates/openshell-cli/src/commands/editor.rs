//! `--editor vscode|cursor` (`sandbox create`, `sandbox connect`): opens
//! a sandbox in an editor's Remote-SSH. The sandbox's Host block goes into
//! a file this CLI manages, `~/.config/openshell/ssh_config` (one block
//! per sandbox, replaced in place), which `~/.ssh/config` includes — the
//! `Include` line is added once, before the first `Host` or `Match`, so
//! that it applies. The editor then opens `/sandbox` on that host.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::Editor;
use crate::commands::Exit;
use crate::commands::scope::Scope;
use crate::commands::ssh::{host_alias, host_block};
use crate::output;
use crate::registry::write_atomically;

/// The managed file's name in the openshell config directory.
const MANAGED: &str = "ssh_config";

impl Editor {
    fn program(self) -> &'static str {
        match self {
            Editor::Vscode => "code",
            Editor::Cursor => "cursor",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Editor::Vscode => "VS Code",
            Editor::Cursor => "Cursor",
        }
    }
}

/// `text` with the block for `alias` replaced by `block` (or added).
fn upsert(text: &str, alias: &str, block: &str) -> String {
    let header = format!("Host {alias}");
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in text.lines() {
        let starts_block = line.starts_with("Host ") || line.starts_with("Match ");
        if starts_block {
            skipping = line.trim_end() == header;
            if skipping && !replaced {
                out.push_str(block);
                out.push('\n');
                replaced = true;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(block);
    }
    out
}

/// `config` with an `Include` of `managed` before its first `Host` or
/// `Match` line (unchanged when it has one already).
fn with_include(config: &str, managed: &Path) -> String {
    let include = format!("Include \"{}\"", managed.display());
    if config.lines().any(|line| line.trim() == include) {
        return config.to_owned();
    }
    let mut out = String::new();
    let mut added = false;
    for line in config.lines() {
        let trimmed = line.trim_start();
        if !added && (trimmed.starts_with("Host ") || trimmed.starts_with("Match ")) {
            out.push_str(&include);
            out.push_str("\n\n");
            added = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !added {
        out.insert_str(0, &format!("{include}\n"));
    }
    out
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .context("HOME is not set to an absolute path")
}

/// Writes the sandbox's block into the managed file and makes sure
/// `~/.ssh/config` includes it; the host alias.
pub fn install(scope: &Scope, name: &str) -> anyhow::Result<String> {
    let alias = host_alias(scope, name);
    let config_dir = openshell_core::paths::config_dir(&openshell_core::paths::ProcessEnv)?;
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    let managed = config_dir.join(MANAGED);
    let current = std::fs::read_to_string(&managed).unwrap_or_default();
    let block = host_block(scope, name)?;
    write_atomically(&managed, upsert(&current, &alias, &block).as_bytes(), 0o600)?;

    let ssh_dir = home()?.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).with_context(|| format!("creating {}", ssh_dir.display()))?;
    let user_config = ssh_dir.join("config");
    let text = match std::fs::read_to_string(&user_config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", user_config.display())),
    };
    let updated = with_include(&text, &managed);
    if updated != text {
        let mode = std::fs::metadata(&user_config).map_or(0o600, |m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
        });
        write_atomically(&user_config, updated.as_bytes(), mode)?;
    }
    Ok(alias)
}

/// Opens the sandbox in `editor` (its `/sandbox`, over ssh).
pub fn open(scope: &Scope, name: &str, editor: Editor) -> anyhow::Result<Exit> {
    let alias = install(scope, name)?;
    let status = std::process::Command::new(editor.program())
        .arg("--remote")
        .arg(format!("ssh-remote+{alias}"))
        .arg("/sandbox")
        .status()
        .with_context(|| {
            format!(
                "cannot run `{}`\nhint: install {} and its Remote-SSH extension, or connect with: ssh {alias}",
                editor.program(),
                editor.title()
            )
        })?;
    anyhow::ensure!(
        status.success(),
        "{} exited with {status}",
        editor.program()
    );
    output::success(&format!("Opened {} for sandbox {name}", editor.title()));
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_in_place_and_others_kept() {
        let a1 = "Host openshell-a\n    User sandbox\n";
        let b = "Host openshell-b\n    User sandbox\n";
        let once = upsert("", "openshell-a", a1);
        let twice = upsert(&once, "openshell-b", b);
        let a2 = "Host openshell-a\n    User other\n";
        let replaced = upsert(&twice, "openshell-a", a2);
        assert_eq!(replaced, format!("{a2}\n{b}"));
        assert_eq!(upsert(&replaced, "openshell-b", b), format!("{a2}\n{b}\n"));
        assert_eq!(upsert(&replaced, "openshell-a", a2), replaced);
    }

    #[test]
    fn the_include_goes_before_the_first_host_once() {
        let managed = Path::new("/home/u/.config/openshell/ssh_config");
        let config = "# mine\nServerAliveInterval 5\n\nHost example\n    User me\n";
        let included = with_include(config, managed);
        assert_eq!(
            included,
            "# mine\nServerAliveInterval 5\n\nInclude \"/home/u/.config/openshell/ssh_config\"\n\nHost example\n    User me\n"
        );
        assert_eq!(with_include(&included, managed), included);
        assert_eq!(
            with_include("", managed),
            "Include \"/home/u/.config/openshell/ssh_config\"\n"
        );
    }
}
