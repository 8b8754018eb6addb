//! `openshell-sandbox check`: what this host offers the supervisor, as one
//! JSON object (`openshell doctor check` reads it). Each entry is a fact
//! the isolation depends on; nothing is changed.

use serde::Serialize;

/// One fact about the host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// A failure here stops sandboxes from starting (others degrade them).
    pub required: bool,
}

/// Every check, in the order they are shown.
pub fn run() -> Vec<Check> {
    let mut checks = Vec::new();
    let root = nix::unistd::Uid::effective().is_root();
    checks.push(Check {
        name: "root",
        ok: root,
        detail: if root {
            "running as root".to_owned()
        } else {
            "the supervisor must start as root (it creates namespaces and drops privileges for the child)".to_owned()
        },
        required: true,
    });
    checks.push(match crate::isolation::sys::landlock_abi() {
        Ok(abi) => Check {
            name: "landlock",
            ok: true,
            detail: format!("ABI {abi}"),
            required: false,
        },
        Err(errno) => Check {
            name: "landlock",
            ok: false,
            detail: format!(
                "unavailable ({}): policies with landlock.compatibility: hard_requirement cannot start; best_effort runs without filesystem restrictions",
                errno.desc()
            ),
            required: false,
        },
    });
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .is_some_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    checks.push(Check {
        name: "seccomp",
        ok: seccomp,
        detail: if seccomp {
            "filter mode available".to_owned()
        } else {
            "the kernel has no seccomp".to_owned()
        },
        required: true,
    });
    let missing: Vec<&str> = ["mnt", "pid", "net", "ipc", "uts"]
        .into_iter()
        .filter(|ns| !std::path::Path::new(&format!("/proc/self/ns/{ns}")).exists())
        .collect();
    checks.push(Check {
        name: "namespaces",
        ok: missing.is_empty(),
        detail: if missing.is_empty() {
            "mount, PID, network, IPC and UTS".to_owned()
        } else {
            format!("missing: {}", missing.join(", "))
        },
        required: true,
    });
    let limits = crate::isolation::limits::availability();
    checks.push(Check {
        name: "limits",
        ok: limits.is_ok(),
        detail: match limits {
            Ok(what) => what,
            Err(why) => format!(
                "{why}: sandboxes run without process, memory and CPU limits (--pids/--memory/--cpu are refused)"
            ),
        },
        required: false,
    });
    checks
}
