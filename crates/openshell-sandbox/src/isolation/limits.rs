//! Per-sandbox resource limits through a cgroup of its own: processes,
//! memory (swap included where the kernel accounts it) and CPU time, so a
//! fork bomb or a memory hog in one sandbox leaves the host and the other
//! sandboxes healthy.
//!
//! cgroup v2 where it is the host's hierarchy (`/sys/fs/cgroup` with
//! `cgroup.controllers`), else v1 with one directory per controller
//! (`/sys/fs/cgroup/{pids,memory,cpu}`). The sandbox's cgroup is
//! `openshell/<sandbox id>` in each; the init enters it before it forks
//! anything, exec helpers join it before forking their command
//! ([`join_cgroups_of`]), and it is removed when the sandbox ends.

use std::path::{Path, PathBuf};

pub use openshell_core::resources::{DEFAULT_PIDS, host_memory};
/// The parent cgroup of every sandbox's.
const PARENT: &str = "openshell";
const ROOT: &str = "/sys/fs/cgroup";
/// CFS period for CPU limits, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// What a sandbox may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Thousandths of a CPU; `None`: no CPU limit.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: u64,
    pub pids: u64,
}

impl Limits {
    /// The given limits, the defaults for the others: [`DEFAULT_PIDS`]
    /// processes, half of the host's memory, no CPU limit.
    pub fn with_defaults(
        cpu_millis: Option<u64>,
        memory: Option<u64>,
        pids: Option<u64>,
    ) -> Limits {
        Limits {
            cpu_millis,
            memory_bytes: memory.unwrap_or_else(openshell_core::resources::default_memory),
            pids: pids.unwrap_or(DEFAULT_PIDS),
        }
    }
}

/// Why the cgroup could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}", path.display())]
pub struct CgroupError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A sandbox's cgroup: one directory (v2) or one per controller (v1).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(CgroupError {
            what: "creating",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

impl Cgroup {
    /// Creates `openshell/<id>` with `limits`.
    pub fn create(id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            Self::create_v2(root, id, limits)
        } else {
            Self::create_v1(root, id, limits)
        }
    }

    fn create_v2(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let parent = root.join(PARENT);
        mkdir(&parent)?;
        let wanted = if limits.cpu_millis.is_some() {
            "+pids +memory +cpu"
        } else {
            "+pids +memory"
        };
        for dir in [root, parent.as_path()] {
            write(&dir.join("cgroup.subtree_control"), wanted)?;
        }
        let dir = parent.join(id);
        mkdir(&dir)?;
        let cgroup = Cgroup {
            dirs: vec![dir.clone()],
            v2: true,
        };
        write(&dir.join("pids.max"), &limits.pids.to_string())?;
        write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write(&dir.join("memory.swap.max"), "0")?;
        }
        if let Some(millis) = limits.cpu_millis {
            let quota = millis * CPU_PERIOD_US / 1000;
            write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        Ok(cgroup)
    }

    fn create_v1(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut controllers = vec!["pids", "memory"];
        if limits.cpu_millis.is_some() {
            controllers.push("cpu");
        }
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            v2: false,
        };
        for controller in controllers {
            let parent = root.join(controller).join(PARENT);
            mkdir(&parent)?;
            let dir = parent.join(id);
            mkdir(&dir)?;
            cgroup.dirs.push(dir.clone());
            match controller {
                "pids" => write(&dir.join("pids.max"), &limits.pids.to_string())?,
                "memory" => {
                    let bytes = limits.memory_bytes.to_string();
                    write(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    // Memory and swap together, where swap is accounted.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes)?;
                    }
                }
                _ => {
                    let quota = limits.cpu_millis.unwrap_or(0) * CPU_PERIOD_US / 1000;
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        Ok(cgroup)
    }

    /// The `cgroup.procs` files a process is put into the cgroup through.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// How many of the sandbox's processes the kernel killed for memory.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        oom_kills_in(self.dirs.iter().map(|d| d.join(file)))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once the sandbox's processes are gone; the last ones may
        // still be exiting.
        for dir in &self.dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
    }
}

/// Processes killed at the memory limit of the cgroup the calling process
/// is in (a container's own, seen through its cgroup namespace), v1 or v2.
pub fn own_oom_kills() -> u64 {
    oom_kills_in(
        ["memory/memory.oom_control", "memory.events"]
            .iter()
            .map(|file| Path::new(ROOT).join(file)),
    )
}

/// The `oom_kill N` counts of the cgroup files `files` (v1's
/// `memory.oom_control`, v2's `memory.events`), added up.
fn oom_kills_in(files: impl Iterator<Item = PathBuf>) -> u64 {
    files
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Whether sandboxes get resource limits on this host: the hierarchy and
/// controllers [`Cgroup::create`] uses, present and writable. `Ok` says
/// which; `Err` why not.
pub fn availability() -> Result<String, String> {
    let root = Path::new(ROOT);
    let writable = |dir: &Path| nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok();
    if root.join("cgroup.controllers").exists() {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|e| format!("reading {ROOT}/cgroup.controllers: {e}"))?;
        let missing: Vec<&str> = ["pids", "memory"]
            .into_iter()
            .filter(|c| !controllers.split_whitespace().any(|have| have == *c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "cgroup v2 without the {} controller",
                missing.join(" and ")
            ));
        }
        if !writable(root) {
            return Err(format!("{ROOT} is not writable"));
        }
        return Ok("cgroup v2: pids, memory, cpu".to_owned());
    }
    for controller in ["pids", "memory"] {
        let dir = root.join(controller);
        if !dir.is_dir() {
            return Err(format!(
                "no cgroup v1 {controller} hierarchy at {}",
                dir.display()
            ));
        }
        if !writable(&dir) {
            return Err(format!("{} is not writable", dir.display()));
        }
    }
    Ok("cgroup v1: pids, memory, cpu".to_owned())
}

/// Puts `pid` into every cgroup file in `procs`.
pub fn enter(procs: &[PathBuf], pid: u32) -> std::io::Result<()> {
    for file in procs {
        std::fs::write(file, pid.to_string())?;
    }
    Ok(())
}

/// Moves the calling process into the sandbox cgroups of `pid` (its
/// `openshell/…` ones), so that what it forks counts against the same
/// limits. Nothing to do for a sandbox without one.
pub fn join_cgroups_of(pid: i32) -> std::io::Result<()> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let me = std::process::id();
    let unified = if Path::new(ROOT).join("cgroup.controllers").exists() {
        PathBuf::from(ROOT)
    } else {
        Path::new(ROOT).join("unified")
    };
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.starts_with(&format!("/{PARENT}/")) {
            continue;
        }
        let mount = if controllers.is_empty() {
            unified.clone()
        } else {
            Path::new(ROOT).join(controllers)
        };
        std::fs::write(
            mount
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs"),
            me.to_string(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_not_given() {
        let limits = Limits::with_defaults(None, None, None);
        assert_eq!(limits.pids, DEFAULT_PIDS);
        assert_eq!(limits.memory_bytes, host_memory() / 2);
        assert_eq!(limits.cpu_millis, None);
        let limits = Limits::with_defaults(Some(500), Some(1 << 30), Some(64));
        assert_eq!(
            limits,
            Limits {
                cpu_millis: Some(500),
                memory_bytes: 1 << 30,
                pids: 64
            }
        );
        assert!(host_memory() > 64 << 20);
    }
}
