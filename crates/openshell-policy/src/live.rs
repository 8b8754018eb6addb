//! Which changes a running sandbox can take (docs/policy.md, "Static and dynamic sections").
//!
//! Filesystem, Landlock and process sections are applied once before the
//! agent starts; the network sections reload live. A candidate that changes
//! a static section is refused with a message saying why.

use crate::policy::Policy;

/// Checks `candidate` against the policy a sandbox is running. Returns every
/// reason it cannot be applied live; empty means it can.
pub fn check_live_update(running: &Policy, candidate: &Policy) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if running.landlock != candidate.landlock {
        problems.push(
            "landlock policy cannot be changed on a live sandbox (applied at startup)".to_owned(),
        );
    }
    if running.process != candidate.process {
        problems.push(
            "process policy cannot be changed on a live sandbox (applied at startup)".to_owned(),
        );
    }
    let had_section = running.document.filesystem_policy.is_some();
    if had_section && candidate.document.filesystem_policy.is_none() {
        problems.push("filesystem policy cannot be removed on a live sandbox".to_owned());
    } else {
        let (old, new) = (&running.filesystem, &candidate.filesystem);
        if old.include_workdir != new.include_workdir {
            problems
                .push("filesystem include_workdir cannot be changed on a live sandbox".to_owned());
        }
        for path in old.read_only.iter().filter(|p| !new.read_only.contains(p)) {
            problems.push(format!(
                "filesystem read_only path '{path}' cannot be removed on a live sandbox"
            ));
        }
        for path in old
            .read_write
            .iter()
            .filter(|p| !new.read_write.contains(p))
        {
            problems.push(format!(
                "filesystem read_write path '{path}' cannot be removed on a live sandbox"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Filesystem paths `candidate` adds to the running policy. The gateway
/// accepts additions (baseline enrichment needs them), but a running
/// supervisor cannot widen Landlock after exec, so it refuses them with
/// these messages rather than accept a change that would not take effect.
pub fn added_filesystem_paths(running: &Policy, candidate: &Policy) -> Vec<String> {
    let (old, new) = (&running.filesystem, &candidate.filesystem);
    let added = |kind: &str, old: &[String], new: &[String]| -> Vec<String> {
        new.iter()
            .filter(|p| !old.contains(p))
            .map(|p| {
                format!(
                    "filesystem {kind} path '{p}' cannot be added on a live sandbox (Landlock is applied at startup; create a new sandbox)"
                )
            })
            .collect()
    };
    let mut problems = added("read_only", &old.read_only, &new.read_only);
    problems.extend(added("read_write", &old.read_write, &new.read_write));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_str;

    const BASE: &str = "version: 1\nfilesystem_policy: {read_only: [/usr, /etc], read_write: [/tmp]}\nlandlock: {compatibility: best_effort}\nprocess: {run_as_user: sandbox}\n";

    fn policy(yaml: &str) -> Policy {
        load_str(yaml).unwrap().policy
    }

    #[test]
    fn network_changes_and_added_paths_are_live() {
        let running = policy(BASE);
        let candidate = policy(&format!(
            "{}network_policies:\n  p:\n    endpoints: [{{host: a.com, port: 443}}]\n    binaries: [{{path: /x}}]\n",
            BASE.replace("[/usr, /etc]", "[/usr, /etc, /opt]")
        ));
        assert_eq!(check_live_update(&running, &candidate), Ok(()));
        assert_eq!(
            added_filesystem_paths(&running, &candidate),
            [
                "filesystem read_only path '/opt' cannot be added on a live sandbox (Landlock is applied at startup; create a new sandbox)"
            ]
        );
        assert!(added_filesystem_paths(&running, &running).is_empty());
    }

    #[test]
    fn static_changes_are_refused_with_reference_messages() {
        let running = policy(BASE);
        let cases = [
            (BASE.replace("best_effort", "hard_requirement"), "landlock policy cannot be changed on a live sandbox (applied at startup)"),
            (BASE.replace("run_as_user: sandbox", "run_as_user: 1000"), "process policy cannot be changed on a live sandbox (applied at startup)"),
            (BASE.replace("[/usr, /etc]", "[/usr]"), "filesystem read_only path '/etc' cannot be removed on a live sandbox"),
            (BASE.replace("read_write: [/tmp]", "read_write: []"), "filesystem read_write path '/tmp' cannot be removed on a live sandbox"),
            (BASE.replace("{read_only", "{include_workdir: false, read_only"), "filesystem include_workdir cannot be changed on a live sandbox"),
            ("version: 1\nlandlock: {compatibility: best_effort}\nprocess: {run_as_user: sandbox}\n".to_owned(), "filesystem policy cannot be removed on a live sandbox"),
        ];
        for (yaml, message) in cases {
            let problems = check_live_update(&running, &policy(&yaml)).unwrap_err();
            assert!(
                problems.iter().any(|p| p == message),
                "{message}: {problems:?}"
            );
        }
    }
}
