//! Who the agent child runs as (docs/isolation.md, "Identity"): resolution on
//! the host, then the verified drop inside the child.
//!
//! The child never keeps root: unset fields fall back to the dedicated
//! `sandbox` account, which is created on the host (a system account with
//! no home and no login shell) when it does not exist yet.

use std::ffi::CString;
use std::process::Command;

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

use openshell_policy::policy::{Identity, ProcessPolicy};

/// The name of the dedicated account.
pub const SANDBOX_ACCOUNT: &str = "sandbox";

/// The resolved identity of the agent child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; never the supervisor's.
    pub groups: Vec<u32>,
    /// The account name when the uid has one.
    pub user: Option<String>,
}

/// Why the child's identity could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveIdentityError {
    #[error("Sandbox user not found: {0}")]
    UserNotFound(String),
    #[error("Sandbox group not found: {0}")]
    GroupNotFound(String),
    #[error("cannot create the '{SANDBOX_ACCOUNT}' account with useradd: {0}")]
    CreateAccount(String),
    #[error("looking up {what}")]
    Lookup {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("refusing to run the child as root ({what} resolves to 0)")]
    Root { what: String },
}

fn lookup_user(name: &str) -> Result<Option<User>, ResolveIdentityError> {
    User::from_name(name).map_err(|source| ResolveIdentityError::Lookup {
        what: format!("user {name}"),
        source,
    })
}

/// The uid (and gid) the agent gets in a container whose image has no
/// `sandbox` account and runs as root by default.
pub const CONTAINER_FALLBACK_ID: u32 = 10000;

/// Where the `sandbox` account comes from when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Accounts {
    /// On a host: created with `useradd`.
    #[default]
    Create,
    /// In a container, whose image is not ours to change: the image's
    /// configured user (`name`, `uid`, `name:group`, `uid:gid`) when it is
    /// not root, else [`CONTAINER_FALLBACK_ID`].
    Container { image_user: Option<String> },
}

/// The `sandbox` account as (uid, primary gid, name): existing, else as
/// `accounts` says.
fn sandbox_identity(
    accounts: &Accounts,
) -> Result<(u32, u32, Option<String>), ResolveIdentityError> {
    let image_user = match accounts {
        Accounts::Create => {
            let user = sandbox_account()?;
            return Ok((user.uid.as_raw(), user.gid.as_raw(), Some(user.name)));
        }
        Accounts::Container { image_user } => image_user,
    };
    if let Some(user) = lookup_user(SANDBOX_ACCOUNT)? {
        return Ok((user.uid.as_raw(), user.gid.as_raw(), Some(user.name)));
    }
    if let Some(spec) = image_user.as_deref().filter(|s| !s.is_empty())
        && let Some(found) = image_identity(spec)?
        && found.0 != 0
        && found.1 != 0
    {
        return Ok(found);
    }
    Ok((CONTAINER_FALLBACK_ID, CONTAINER_FALLBACK_ID, None))
}

/// An image's `User` setting as (uid, gid, name); `None` when it names an
/// account the image does not have.
fn image_identity(spec: &str) -> Result<Option<(u32, u32, Option<String>)>, ResolveIdentityError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let (uid, primary, name) = if let Ok(uid) = user.parse::<u32>() {
        match User::from_uid(Uid::from_raw(uid)).map_err(|source| ResolveIdentityError::Lookup {
            what: format!("uid {uid}"),
            source,
        })? {
            Some(entry) => (uid, entry.gid.as_raw(), Some(entry.name)),
            None => (uid, uid, None),
        }
    } else {
        match lookup_user(user)? {
            Some(entry) => (entry.uid.as_raw(), entry.gid.as_raw(), Some(entry.name)),
            None => return Ok(None),
        }
    };
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                match Group::from_name(group).map_err(|source| ResolveIdentityError::Lookup {
                    what: format!("group {group}"),
                    source,
                })? {
                    Some(entry) => entry.gid.as_raw(),
                    None => return Ok(None),
                }
            }
        },
    };
    Ok(Some((uid, gid, name)))
}

/// The `sandbox` account, created if missing. Safe against a concurrent
/// creation by another supervisor: a failed `useradd` is followed by a
/// second lookup.
fn sandbox_account() -> Result<User, ResolveIdentityError> {
    if let Some(user) = lookup_user(SANDBOX_ACCOUNT)? {
        return Ok(user);
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/sandbox",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "OpenShell sandbox",
            SANDBOX_ACCOUNT,
        ])
        .output();
    let failure = match output {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(error) => Some(error.to_string()),
    };
    match lookup_user(SANDBOX_ACCOUNT)? {
        Some(user) => {
            if failure.is_none() {
                tracing::info!(
                    uid = user.uid.as_raw(),
                    "created the '{SANDBOX_ACCOUNT}' account"
                );
            }
            Ok(user)
        }
        None => Err(ResolveIdentityError::CreateAccount(
            failure.unwrap_or_else(|| "the account is still missing".to_owned()),
        )),
    }
}

/// Resolves `run_as_user`/`run_as_group` on the host. Unset fields mean
/// `sandbox` (see [`Accounts`] for when it is missing); a numeric user with
/// no group gets its passwd primary group, or a group equal to its uid when
/// it has no passwd entry.
pub fn resolve(
    process: &ProcessPolicy,
    accounts: &Accounts,
) -> Result<Credentials, ResolveIdentityError> {
    let user_field = process.run_as_user.unwrap_or(Identity::Sandbox);
    let (uid, primary_gid, name) = match user_field {
        Identity::Sandbox => sandbox_identity(accounts)?,
        Identity::Id(uid) => {
            let entry = User::from_uid(Uid::from_raw(uid)).map_err(|source| {
                ResolveIdentityError::Lookup {
                    what: format!("uid {uid}"),
                    source,
                }
            })?;
            match entry {
                Some(user) => (uid, user.gid.as_raw(), Some(user.name)),
                None => (uid, uid, None),
            }
        }
    };
    let gid = match process.run_as_group {
        None => primary_gid,
        Some(Identity::Id(gid)) => gid,
        Some(Identity::Sandbox) => {
            // `useradd --user-group` creates the group with the account; a
            // container's stand-in account brings its own group.
            let (_, stand_in_gid, _) = sandbox_identity(accounts)?;
            match Group::from_name(SANDBOX_ACCOUNT).map_err(|source| {
                ResolveIdentityError::Lookup {
                    what: format!("group {SANDBOX_ACCOUNT}"),
                    source,
                }
            })? {
                Some(group) => group.gid.as_raw(),
                None if matches!(accounts, Accounts::Container { .. }) => stand_in_gid,
                None => return Err(ResolveIdentityError::GroupNotFound(SANDBOX_ACCOUNT.into())),
            }
        }
    };
    if uid == 0 {
        return Err(ResolveIdentityError::Root {
            what: format!("run_as_user {user_field}"),
        });
    }
    if gid == 0 {
        return Err(ResolveIdentityError::Root {
            what: "run_as_group".into(),
        });
    }
    // initgroups only for the named account (docs/isolation.md, "Order of application"); numeric ids
    // get exactly their one group. Root's groups never carry over.
    let groups = match (&name, user_field) {
        (Some(name), Identity::Sandbox) if name == SANDBOX_ACCOUNT => {
            let cname = CString::new(name.as_str())
                .map_err(|_| ResolveIdentityError::UserNotFound(name.clone()))?;
            let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, Gid::from_raw(gid))
                .map_err(|source| ResolveIdentityError::Lookup {
                    what: format!("groups of {name}"),
                    source,
                })?
                .into_iter()
                .map(Gid::as_raw)
                .filter(|g| *g != 0)
                .collect();
            groups.dedup();
            groups
        }
        _ => vec![gid],
    };
    Ok(Credentials {
        uid,
        gid,
        groups,
        user: name,
    })
}

/// The first id of the range sandboxes' own uids and gids come from.
pub const OWN_ID_BASE: u32 = 0x6000_0000;
/// How many ids the range holds.
pub const OWN_ID_COUNT: u32 = 1 << 16;

/// Whether `id` is one of the sandboxes' own.
pub fn is_own_id(id: u32) -> bool {
    (OWN_ID_BASE..OWN_ID_BASE + OWN_ID_COUNT).contains(&id)
}

/// The uid (and gid) a sandbox's agent runs as on a host, its own: per-user
/// kernel limits (inotify instances, processes, locked memory) are then not
/// shared between sandboxes. `previous` (the owner of a workspace kept
/// across stop/start) is kept when it is one; else derived from `seed`
/// (the sandbox's id), past the ids processes on the host run as now.
pub fn own_id(seed: &str, previous: Option<u32>) -> u32 {
    if let Some(id) = previous.filter(|id| is_own_id(*id)) {
        return id;
    }
    // FNV-1a: stable across runs and versions.
    let hash = seed.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let busy = ids_in_use();
    let start = hash % OWN_ID_COUNT;
    (0..OWN_ID_COUNT)
        .map(|i| OWN_ID_BASE + (start + i) % OWN_ID_COUNT)
        .find(|id| !busy.contains(id))
        .unwrap_or(OWN_ID_BASE + start)
}

/// The uids processes on this host run as.
fn ids_in_use() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
                .filter_map(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The host's `/etc/passwd` and `/etc/group` texts with the `sandbox`
/// account and group given `id` (added when missing), for the sandbox's
/// `/etc`: inside, `sandbox` names the sandbox's own id.
pub fn account_files(passwd: &str, group: &str, id: u32) -> (String, String) {
    let prefix = format!("{SANDBOX_ACCOUNT}:");
    let with_id = |text: &str, fields: &[usize], fallback: String| -> String {
        let mut found = false;
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| {
                if !line.starts_with(&prefix) || found {
                    return line.to_owned();
                }
                found = true;
                let mut parts: Vec<String> = line.split(':').map(str::to_owned).collect();
                for i in fields {
                    if let Some(part) = parts.get_mut(*i) {
                        *part = id.to_string();
                    }
                }
                parts.join(":")
            })
            .collect();
        if !found {
            lines.push(fallback);
        }
        lines.join("\n") + "\n"
    };
    (
        with_id(
            passwd,
            &[2, 3],
            format!("{SANDBOX_ACCOUNT}:x:{id}:{id}::/sandbox:/usr/sbin/nologin"),
        ),
        with_id(group, &[2], format!("{SANDBOX_ACCOUNT}:x:{id}:")),
    )
}

/// Why the privilege drop or hardening failed; the child aborts.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("{step}")]
    Syscall {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("clearing the capability bounding set")]
    Bounding(#[source] caps::errors::CapsError),
    #[error("Privilege drop verification failed: {0}")]
    Verify(String),
}

fn step(step: &'static str) -> impl FnOnce(nix::Error) -> DropError {
    move |source| DropError::Syscall { step, source }
}

/// Drops to `credentials`, in the order of docs/isolation.md ("Order of application"), verifying each step:
/// groups → gid (verified) → capability bounding set cleared (verified) →
/// uid (verified) → `setuid(0)` must fail → no capability left.
pub fn apply_drop(credentials: &Credentials) -> Result<(), DropError> {
    let gid = Gid::from_raw(credentials.gid);
    let uid = Uid::from_raw(credentials.uid);
    let groups: Vec<Gid> = credentials
        .groups
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(step("setgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(step("setresgid"))?;
    let saved = nix::unistd::getresgid().map_err(step("getresgid"))?;
    verify_ids(
        "GID",
        credentials.gid,
        [
            saved.real.as_raw(),
            saved.effective.as_raw(),
            saved.saved.as_raw(),
        ],
    )?;
    caps::clear(None, caps::CapSet::Bounding).map_err(DropError::Bounding)?;
    let left = caps::read(None, caps::CapSet::Bounding).map_err(DropError::Bounding)?;
    if !left.is_empty() {
        return Err(DropError::Verify(format!(
            "capability bounding set still holds {left:?}"
        )));
    }
    nix::unistd::setresuid(uid, uid, uid).map_err(step("setresuid"))?;
    let saved = nix::unistd::getresuid().map_err(step("getresuid"))?;
    verify_ids(
        "UID",
        credentials.uid,
        [
            saved.real.as_raw(),
            saved.effective.as_raw(),
            saved.saved.as_raw(),
        ],
    )?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(DropError::Verify(format!(
            "process can still re-acquire root (UID 0) after switching to UID {uid}"
        )));
    }
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        let held = caps::read(None, set).map_err(DropError::Bounding)?;
        if !held.is_empty() {
            return Err(DropError::Verify(format!(
                "{set:?} capabilities remain after the drop: {held:?}"
            )));
        }
    }
    Ok(())
}

/// Checks that real, effective and saved ids all equal `expected`.
fn verify_ids(
    kind: &str,
    expected: u32,
    [real, effective, saved]: [u32; 3],
) -> Result<(), DropError> {
    if [real, effective, saved] == [expected; 3] {
        return Ok(());
    }
    Err(DropError::Verify(format!(
        "expected effective {kind} {expected}, got {effective} (real {real}, saved {saved})"
    )))
}

/// Core dumps off (soft and hard), not dumpable, `no_new_privs`; each read
/// back. The kernel resets "dumpable" when an ordinary binary is exec'd, so
/// for the agent's program the lasting guarantees are the hard core limit
/// of 0 and seccomp's ban on ptrace and process_vm_*.
pub fn apply_hardening() -> Result<(), DropError> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(step("setrlimit(RLIMIT_CORE)"))?;
    if getrlimit(Resource::RLIMIT_CORE).map_err(step("getrlimit(RLIMIT_CORE)"))? != (0, 0) {
        return Err(DropError::Verify("RLIMIT_CORE is not 0".into()));
    }
    prctl::set_dumpable(false).map_err(step("prctl(PR_SET_DUMPABLE)"))?;
    if prctl::get_dumpable().map_err(step("prctl(PR_GET_DUMPABLE)"))? {
        return Err(DropError::Verify("the process is still dumpable".into()));
    }
    prctl::set_no_new_privs().map_err(step("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    if !prctl::get_no_new_privs().map_err(step("prctl(PR_GET_NO_NEW_PRIVS)"))? {
        return Err(DropError::Verify("no_new_privs is not set".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ids_are_in_their_range_stable_and_kept() {
        let id = own_id("a1b2c3", None);
        assert!(is_own_id(id));
        assert_eq!(own_id("a1b2c3", Some(OWN_ID_BASE + 7)), OWN_ID_BASE + 7);
        assert_ne!(own_id("a1b2c3", Some(1000)), 1000, "not one of ours");
        assert_ne!(own_id("a1b2c3", None), own_id("d4e5f6", None));
    }

    #[test]
    fn account_files_name_the_sandbox_by_its_own_id() {
        let (passwd, group) = account_files(
            "root:x:0:0:root:/root:/bin/bash\nsandbox:x:999:995::/nonexistent:/usr/sbin/nologin\n",
            "root:x:0:\nsandbox:x:995:\nstaff:x:50:sandbox\n",
            OWN_ID_BASE,
        );
        let id = OWN_ID_BASE;
        assert_eq!(
            passwd,
            format!(
                "root:x:0:0:root:/root:/bin/bash\nsandbox:x:{id}:{id}::/nonexistent:/usr/sbin/nologin\n"
            )
        );
        assert_eq!(
            group,
            format!("root:x:0:\nsandbox:x:{id}:\nstaff:x:50:sandbox\n")
        );
        // No sandbox account on the host: one is added.
        let (passwd, _) = account_files("root:x:0:0::/root:/bin/sh\n", "", id);
        assert!(passwd.ends_with(&format!(
            "sandbox:x:{id}:{id}::/sandbox:/usr/sbin/nologin\n"
        )));
    }
}
