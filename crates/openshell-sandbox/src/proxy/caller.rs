//! Who is calling (policy reference §4.3–§4.4): the accepted socket's
//! 4-tuple is looked up in the child namespace's `/proc/<init>/net/tcp{,6}`
//! to get the client socket's inode; the sandbox's processes (descendants
//! of init, or of an exec helper that joined its namespaces) holding `socket:[inode]` are its owners; each owner's
//! `/proc/<pid>/exe`, ancestors and argv paths form its identity, and
//! every executable is pinned by SHA-256 on first use.
//!
//! An allowed binary is only itself while it runs its own code: a caller
//! with code mapped executable from a file the agent can write (an
//! `LD_PRELOAD` library in the workspace, a `memfd`), or started with a
//! loader variable pointing there, is refused (`Identifier::injected`;
//! docs/policy.md, "Binaries").
//!
//! Blocking file I/O: call from `spawn_blocking`.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Deepest ancestor walk (reference §9).
const MAX_ANCESTORS: usize = 64;

/// The calling process, as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Lowest owning pid (host numbering).
    pub pid: u32,
    pub binary: String,
    /// Executables of the ancestors, nearest first, up to (not including) init.
    pub ancestors: Vec<String>,
    /// Absolute argv paths of the caller and its ancestors (diagnostics only).
    pub cmdline: Vec<String>,
    /// SHA-256 of the binary, hex.
    pub sha256: String,
}

/// Identifies callers of one sandbox; holds the trust-on-first-use cache.
#[derive(Debug)]
pub struct Identifier {
    /// Host pid of the sandbox's init, the `/proc` anchor.
    anchor: u32,
    /// Host pids of running exec helpers: their descendants are the
    /// sandbox's processes too (they joined its namespaces).
    exec_roots: Mutex<BTreeSet<u32>>,
    hashes: Mutex<HashMap<String, Pinned>>,
    /// Paths (as the sandbox sees them) the agent can write: code mapped
    /// from beneath them is the agent's, whatever binary maps it.
    writable: Vec<String>,
    /// Who connected, by the connection's local port ([`super::connects`]).
    connects: Mutex<HashMap<u16, ConnectRecord>>,
    /// Every connection must have a recorded connect (set once the
    /// sandbox's processes run under the connect filter).
    require_connects: std::sync::atomic::AtomicBool,
}

/// When a connect was recorded, and who made it (or why that is refused).
type ConnectRecord = (std::time::Instant, Result<Caller, String>);

/// Records older than this are dropped when the table grows (a connect
/// whose request never came).
const CONNECT_RECORD_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// The table size at which stale records are swept.
const CONNECT_RECORDS_SWEEP: usize = 4096;

/// The dynamic loader's variables that make a program run other code.
const LOADER_VARS: [&str; 3] = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

#[derive(Debug, Clone)]
struct Pinned {
    fingerprint: Fingerprint,
    sha256: String,
}

impl Identifier {
    pub fn new(anchor: u32) -> Identifier {
        Identifier {
            anchor,
            exec_roots: Mutex::new(BTreeSet::new()),
            hashes: Mutex::new(HashMap::new()),
            writable: Vec::new(),
            connects: Mutex::new(HashMap::new()),
            require_connects: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on a connection without a recorded connect is refused.
    pub fn require_recorded_connects(&self) {
        self.require_connects
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Records who connected from local `port` (before the connection
    /// exists, so the proxy always finds it).
    pub fn record_connect(&self, port: u16, caller: Result<Caller, String>) {
        let mut connects = self.connects_lock();
        if connects.len() >= CONNECT_RECORDS_SWEEP {
            connects.retain(|_, (at, _)| at.elapsed() < CONNECT_RECORD_TTL);
        }
        connects.insert(port, (std::time::Instant::now(), caller));
    }

    fn connects_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, ConnectRecord>> {
        self.connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity of `pid`, which is calling connect(2) now.
    pub fn describe_connector(&self, pid: u32) -> Result<Caller, String> {
        self.describe(pid)
    }

    /// Checks the holders' identity `held` against whoever connected from
    /// `port`: they must be the same program, or it was handed on.
    fn check_connector(&self, port: u16, held: Caller) -> Result<Caller, String> {
        if !self
            .require_connects
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(held);
        }
        let Some((_, connector)) = self.connects_lock().remove(&port) else {
            return Err(
                "no connect() was recorded for this connection: it was not made by a process of the sandbox"
                    .to_owned(),
            );
        };
        let connector = connector?;
        let same = connector.binary == held.binary
            && connector.ancestors == held.ancestors
            && connector.sha256 == held.sha256;
        if !same {
            return Err(format!(
                "socket handed on: {} (pid {}) connected to the proxy, {} (pid {}) holds the connection",
                connector.binary, connector.pid, held.binary, held.pid
            ));
        }
        Ok(held)
    }

    /// The paths the agent can write (its `read_write` Landlock rules).
    pub fn with_writable(mut self, paths: Vec<String>) -> Identifier {
        self.writable = paths;
        self
    }

    /// Whether the agent can write `path` (lexically beneath a writable
    /// root; `path` is as the kernel reports it, without `..`).
    fn agent_writes(&self, path: &str) -> bool {
        self.writable.iter().any(|root| {
            root == "/"
                || path
                    .strip_prefix(root.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Why `pid` (running `binary`) may not be running only its binary's
    /// code: an executable mapping of a file the agent can write or of a
    /// memfd, or a loader variable naming such a place.
    fn injected(&self, pid: u32, binary: &str) -> Option<String> {
        // Unreadable maps prove nothing: refused, not waved through.
        let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            Ok(maps) => maps,
            Err(error) => {
                return Some(format!(
                    "code injection check failed: cannot read the mappings of {binary} (pid {pid}): {error}"
                ));
            }
        };
        for line in maps.lines() {
            let mut fields = line.splitn(6, ' ');
            let (Some(_range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            let path = fields.nth(3).map(str::trim_start).unwrap_or("");
            if !perms.contains('x') || !path.starts_with('/') {
                continue; // anonymous (a JIT's) or a pseudo mapping ([vdso])
            }
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if path == binary {
                continue; // the binary itself: pinned by its hash
            }
            if path.starts_with("/memfd:") || self.agent_writes(path) {
                return Some(format!(
                    "code injection: {binary} has {path} mapped executable, and the agent can write it"
                ));
            }
        }
        let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(environ) => environ,
            Err(error) => {
                return Some(format!(
                    "code injection check failed: cannot read the environment of {binary} (pid {pid}): {error}"
                ));
            }
        };
        for item in environ.split(|b| *b == 0) {
            let item = String::from_utf8_lossy(item);
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            if !LOADER_VARS.contains(&name) {
                continue;
            }
            let tainted = value
                .split([':', ' ', ';'])
                .filter(|p| !p.is_empty())
                // A relative entry resolves against a directory the agent chose.
                .find(|p| !p.starts_with('/') || self.agent_writes(p));
            if let Some(entry) = tainted {
                return Some(format!(
                    "code injection: {binary} was started with {name}={value}, and the agent can write {entry}"
                ));
            }
        }
        None
    }

    /// Counts `pid`'s descendants as the sandbox's processes (an exec
    /// helper, until [`Identifier::remove_exec_root`]).
    pub fn add_exec_root(&self, pid: u32) {
        self.roots_lock().insert(pid);
    }

    pub fn remove_exec_root(&self, pid: u32) {
        self.roots_lock().remove(&pid);
    }

    fn roots_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.exec_roots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Init and the exec helpers: where the sandbox's process trees start.
    fn roots(&self) -> Vec<u32> {
        let mut roots = vec![self.anchor];
        roots.extend(self.roots_lock().iter().copied());
        roots
    }

    /// The identity behind the connection from `peer` to the proxy's
    /// `local` address, or the reference's deny reason.
    pub fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Result<Caller, String> {
        let inode = self.socket_inode(peer, local).ok_or_else(|| {
            "failed to resolve peer binary: socket not found in the sandbox's connection table"
                .to_owned()
        })?;
        let owners = self.owners(inode);
        if owners.is_empty() {
            return Err(format!(
                "failed to resolve peer binary: no process found owning socket inode {inode}"
            ));
        }
        let mut callers = Vec::with_capacity(owners.len());
        for pid in &owners {
            callers.push(self.describe(*pid)?);
        }
        let first = &callers[0];
        let agree = callers.iter().all(|c| {
            c.binary == first.binary
                && c.ancestors == first.ancestors
                && c.cmdline == first.cmdline
                && c.sha256 == first.sha256
        });
        if !agree {
            let pids: Vec<String> = owners.iter().map(u32::to_string).collect();
            return Err(format!(
                "ambiguous shared socket ownership: inode {inode} is held by PIDs [{}] with different policy identities",
                pids.join(",")
            ));
        }
        self.check_connector(peer.port(), callers.swap_remove(0))
    }

    fn socket_inode(&self, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
        ["tcp", "tcp6"].iter().find_map(|table| {
            let text =
                std::fs::read_to_string(format!("/proc/{}/net/{table}", self.anchor)).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (own, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
                let matches = parse_proc_addr(own).is_some_and(|a| same_endpoint(a, peer))
                    && parse_proc_addr(remote).is_some_and(|a| same_endpoint(a, local));
                matches.then(|| inode.parse().ok()).flatten()
            })
        })
    }

    /// Processes of the sandbox (init's descendants) holding the socket,
    /// ascending.
    fn owners(&self, inode: u64) -> Vec<u32> {
        let needle = format!("socket:[{inode}]");
        self.roots()
            .into_iter()
            .flat_map(descendants)
            .filter(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map(|fds| {
                        fds.filter_map(Result::ok).any(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|target| target.as_os_str() == needle.as_str())
                        })
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    fn describe(&self, pid: u32) -> Result<Caller, String> {
        let binary = exe(pid).map_err(|e| format!("failed to resolve peer binary: {e}"))?;
        let sha256 = self
            .verify(pid, &binary)
            .map_err(|e| format!("binary integrity check failed: {e}"))?;
        if let Some(reason) = self.injected(pid, &binary) {
            return Err(reason);
        }
        let roots = self.roots();
        let mut ancestors = Vec::new();
        let mut argv_paths = argv_paths(pid);
        let mut current = pid;
        while ancestors.len() < MAX_ANCESTORS {
            let Some(parent) = parent(current) else { break };
            if roots.contains(&parent) || parent <= 1 {
                break;
            }
            let path = exe(parent).map_err(|e| format!("failed to resolve peer binary: {e}"))?;
            self.verify(parent, &path)
                .map_err(|e| format!("ancestor integrity check failed for {path}: {e}"))?;
            argv_paths.extend(self::argv_paths(parent));
            ancestors.push(path);
            current = parent;
        }
        let mut seen = BTreeSet::new();
        let cmdline = argv_paths
            .into_iter()
            .filter(|p| *p != binary && !ancestors.contains(p) && seen.insert(p.clone()))
            .collect();
        Ok(Caller {
            pid,
            binary,
            ancestors,
            cmdline,
            sha256,
        })
    }

    /// Trust on first use: the first hash of `path` is pinned; a later
    /// different hash (with a changed fingerprint) is an integrity violation.
    fn verify(&self, pid: u32, path: &str) -> Result<String, String> {
        let live = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&live).map_err(|e| format!("{path}: {e}"))?;
        let fingerprint = Fingerprint {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let cached = self
            .hashes
            .lock()
            .map_err(|_| "hash cache poisoned".to_owned())?
            .get(path)
            .cloned();
        if let Some(pinned) = &cached
            && pinned.fingerprint == fingerprint
        {
            return Ok(pinned.sha256.clone());
        }
        // Hash the live binary through /proc, so swapping the file on disk
        // after exec cannot change what is measured.
        let sha256 = hash_file(&live).map_err(|e| format!("{path}: {e}"))?;
        if let Some(pinned) = cached
            && pinned.sha256 != sha256
        {
            return Err(format!(
                "Binary integrity violation: {path} hash changed (cached: {}, current: {sha256})",
                pinned.sha256
            ));
        }
        self.hashes
            .lock()
            .map_err(|_| "hash cache poisoned".to_owned())?
            .insert(
                path.to_owned(),
                Pinned {
                    fingerprint,
                    sha256: sha256.clone(),
                },
            );
        Ok(sha256)
    }
}

fn hash_file(path: &str) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn exe(pid: u32) -> std::io::Result<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let text = target.to_string_lossy();
    Ok(text.strip_suffix(" (deleted)").unwrap_or(&text).to_owned())
}

fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn argv_paths(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|arg| arg.starts_with(b"/"))
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every descendant of `root` (breadth first, through each thread's
/// `children` list), ascending.
fn descendants(root: u32) -> Vec<u32> {
    let mut found = BTreeSet::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if found.insert(child) {
                    queue.push(child);
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Parses `0100007F:0C38` (IPv4) or the 32-digit IPv6 form of
/// `/proc/net/tcp{,6}`: each 32-bit word in host (little-endian) order.
pub fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Equal addresses, treating IPv4-mapped IPv6 as its IPv4 address.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_addresses() {
        assert_eq!(
            parse_proc_addr("0100007F:0C38"),
            Some("127.0.0.1:3128".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("0000000000000000FFFF00000100007F:C350"),
            Some("[::ffff:127.0.0.1]:50000".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_proc_addr("zz:1"), None);
        assert!(same_endpoint(
            "[::ffff:127.0.0.1]:5".parse().unwrap(),
            "127.0.0.1:5".parse().unwrap()
        ));
    }

    #[test]
    fn identifies_a_process_of_our_own_and_pins_its_hash() {
        // The test process is the anchor's "descendant" here: use our parent
        // as the anchor, ourselves as the caller.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let me = std::process::id();
        let anchor = parent(me).unwrap();
        let identifier = Identifier::new(anchor);
        let caller = identifier
            .identify(peer, listener.local_addr().unwrap())
            .unwrap();
        assert_eq!(caller.pid, me);
        assert_eq!(
            caller.binary,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert_eq!(caller.sha256.len(), 64);
        // Second lookup: served from the pinned hash.
        let again = identifier
            .identify(peer, listener.local_addr().unwrap())
            .unwrap();
        assert_eq!(again.sha256, caller.sha256);
        drop(client);
    }
}
