//! One module per command group; each returns an [`Exit`] status.

pub mod doctor;
pub mod editor;
pub mod exec;
pub mod files;
pub mod forward;
pub mod gateway;
pub mod image;
pub mod inference;
pub mod login;
pub mod policy;
pub mod provider;
pub mod registration;
pub mod remote;
pub mod revisions;
pub mod sandbox;
pub mod scope;
pub mod settings;
pub mod ssh;
pub mod term;
pub mod workspace;

/// How a command ended, beyond success or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The command ran and reported a negative outcome (e.g. invalid policy).
    Failure,
    /// A remote command's own exit status, passed through.
    Code(i32),
}

/// `KEY=VALUE` items (`--env`, `--label`, `--config`) as a map; `kind`
/// names the flag in the error.
pub fn pairs(
    kind: &str,
    items: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => anyhow::bail!("invalid {kind} '{item}': expected KEY=VALUE"),
        })
        .collect()
}
