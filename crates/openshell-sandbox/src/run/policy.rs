//! The policy a run starts with (a file, or the built-in default) and the
//! baseline enrichment every loaded policy gets, at start and on reload
//! (docs/policy.md, "Default policy").

use std::path::Path;

use openshell_policy::Policy;
use openshell_policy::defaults::{default_policy, enrich_filesystem};

pub(super) fn load_policy(path: Option<&Path>) -> anyhow::Result<(Policy, bool)> {
    let Some(path) = path else {
        return Ok((default_policy(), true));
    };
    let validated = openshell_policy::load_file(path).map_err(|error| match error {
        openshell_policy::LoadPolicyError::Read { .. } => anyhow::Error::from(error),
        _ => anyhow::anyhow!("invalid policy {}:{:#}", path.display(), error.problems()),
    })?;
    for warning in &validated.warnings {
        tracing::warn!(policy = %path.display(), "{warning}");
    }
    Ok((enrich(validated.policy), false))
}

/// Baseline enrichment (docs/policy.md, "Default policy") with the paths that exist here.
pub(super) fn enrich(mut policy: Policy) -> Policy {
    let added = enrich_filesystem(&mut policy.filesystem, |p| Path::new(p).exists());
    if !added.is_empty() {
        tracing::debug!(?added, "baseline paths added to the filesystem policy");
    }
    policy
}
