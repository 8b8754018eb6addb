//! Who is calling (docs/policy.md, "Binaries"). Every connect(2) to the
//! proxy is made through the supervisor ([`super::connects`]), which
//! describes the process making it and records that with the socket's
//! local port, inode and descriptor number. When a connection's request
//! arrives, its socket is found by an exact kernel lookup of the
//! 4-tuple ([`SocketTable`]); the record for it names the caller, provided
//! it is of the same socket and the process that connected still holds it
//! (otherwise the socket was handed on). Any other process of the sandbox
//! holding the socket too must be the same program (else the ownership is
//! ambiguous): that pass reads each process's descriptor table, the one
//! cost here that grows with the sandbox.
//!
//! A caller's identity is its `/proc/<pid>/exe`, the executables of its
//! ancestors and its argv paths; every executable is pinned by SHA-256 on
//! first use. An allowed binary is only itself while it runs its own code:
//! a caller with code mapped executable from a file the agent can write
//! (an `LD_PRELOAD` library in the workspace, a `memfd`), or started with
//! a loader variable pointing there, is refused (`Identifier::injected`).
//!
//! Describing a connector is blocking file I/O (a few `/proc` reads;
//! hashing on a binary's first use) and runs on the connect filter's
//! thread; identifying a connection is a lookup, two syscalls and a
//! `readlink`, cheap enough for the proxy's async tasks.

mod sockets;

pub use sockets::SocketTable;

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Deepest ancestor walk (docs/policy.md, "Limits").
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
    /// Host pid of the sandbox's init, where ancestor walks stop.
    anchor: u32,
    /// Host pids of running exec helpers: ancestor walks stop there too.
    exec_roots: Mutex<BTreeSet<u32>>,
    /// The sockets of the sandbox's network namespace.
    sockets: SocketTable,
    hashes: Mutex<HashMap<String, Pinned>>,
    /// Paths (as the sandbox sees them) the agent can write: code mapped
    /// from beneath them is the agent's, whatever binary maps it.
    writable: Vec<String>,
    /// Who connected, by the connection's local port ([`super::connects`]).
    connects: Mutex<HashMap<u16, (std::time::Instant, Connect)>>,
}

/// A connect to the proxy, as the connect filter saw it.
#[derive(Debug)]
pub struct Connect {
    /// The connecting socket's inode.
    pub inode: u64,
    /// Its descriptor number in the connecting process.
    pub fd: i32,
    /// Who connected, or why that is refused.
    pub connector: Result<Caller, IdentifyError>,
}

/// Why a connection has no caller the policy can judge. The text is the
/// deny reason events and responses carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error("failed to resolve peer binary: looking up the connection's socket: {0}")]
    SocketLookup(String),
    #[error("failed to resolve peer binary: socket not found in the sandbox's connection table")]
    SocketNotFound,
    #[error(
        "no connect() was recorded for this connection: it was not made by a process of the sandbox"
    )]
    NoConnectRecord,
    #[error(
        "no connect() was recorded for this connection: the record for its port is of socket inode {recorded}, the connection's is {actual}"
    )]
    OtherSocket { recorded: u64, actual: u64 },
    #[error(
        "socket handed on: {binary} (pid {pid}) connected to the proxy and no longer holds the connection"
    )]
    HandedOn { binary: String, pid: u32 },
    #[error(
        "ambiguous shared socket ownership: inode {inode} is held by PIDs [{}] with different policy identities",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    )]
    Ambiguous { inode: u64, pids: Vec<u32> },
    #[error("failed to resolve peer binary: {0}")]
    Binary(String),
    #[error("binary integrity check failed: {0}")]
    Integrity(String),
    #[error("ancestor integrity check failed for {path}: {reason}")]
    AncestorIntegrity { path: String, reason: String },
    /// Code the agent can write runs in the caller (the reason says where).
    #[error("{0}")]
    Injected(String),
}

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
    pub fn new(anchor: u32, sockets: SocketTable) -> Identifier {
        Identifier {
            anchor,
            exec_roots: Mutex::new(BTreeSet::new()),
            sockets,
            hashes: Mutex::new(HashMap::new()),
            writable: Vec::new(),
            connects: Mutex::new(HashMap::new()),
        }
    }

    /// Records a connect from local `port` (before the connection exists,
    /// so the proxy always finds it).
    pub fn record_connect(&self, port: u16, connect: Connect) {
        let mut connects = self.connects_lock();
        if connects.len() >= CONNECT_RECORDS_SWEEP {
            connects.retain(|_, (at, _)| at.elapsed() < CONNECT_RECORD_TTL);
        }
        connects.insert(port, (std::time::Instant::now(), connect));
    }

    fn connects_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u16, (std::time::Instant, Connect)>> {
        self.connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// The caller behind the connection from `peer` to the proxy's `local`
    /// address: who connected its socket, if they still hold it.
    pub fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Result<Caller, IdentifyError> {
        let inode = match self.sockets.inode(peer, local) {
            Ok(Some(inode)) => inode,
            Ok(None) => return Err(IdentifyError::SocketNotFound),
            Err(error) => return Err(IdentifyError::SocketLookup(error.to_string())),
        };
        let (_, connect) = self
            .connects_lock()
            .remove(&peer.port())
            .ok_or(IdentifyError::NoConnectRecord)?;
        if connect.inode != inode {
            return Err(IdentifyError::OtherSocket {
                recorded: connect.inode,
                actual: inode,
            });
        }
        let connector = connect.connector?;
        if !holds(connector.pid, connect.fd, inode) {
            return Err(IdentifyError::HandedOn {
                binary: connector.binary,
                pid: connector.pid,
            });
        }
        self.check_sharers(&connector, connect.fd, inode)?;
        Ok(connector)
    }

    /// Every other process of the sandbox holding the socket (inherited
    /// over fork, received over `SCM_RIGHTS`) must be the same program as
    /// its connector; otherwise who writes on it is ambiguous.
    fn check_sharers(&self, connector: &Caller, fd: i32, inode: u64) -> Result<(), IdentifyError> {
        let mut sharers = Vec::new();
        for pid in self.roots().into_iter().flat_map(descendants) {
            if pid == connector.pid || !holds(pid, fd, inode) {
                continue;
            }
            let sharer = self.describe(pid, None)?;
            let same = sharer.binary == connector.binary
                && sharer.ancestors == connector.ancestors
                && sharer.cmdline == connector.cmdline
                && sharer.sha256 == connector.sha256;
            if !same {
                sharers.push(pid);
            }
        }
        if sharers.is_empty() {
            return Ok(());
        }
        sharers.push(connector.pid);
        sharers.sort_unstable();
        Err(IdentifyError::Ambiguous {
            inode,
            pids: sharers,
        })
    }

    /// The identity of `pid` (a process calling connect(2) now, or another
    /// holder of its socket); `parent`: its parent, when the caller already
    /// read it.
    pub fn describe(&self, pid: u32, parent: Option<u32>) -> Result<Caller, IdentifyError> {
        let binary = exe(pid).map_err(|e| IdentifyError::Binary(e.to_string()))?;
        let sha256 = self
            .verify(pid, &binary)
            .map_err(IdentifyError::Integrity)?;
        if let Some(reason) = self.injected(pid, &binary) {
            return Err(IdentifyError::Injected(reason));
        }
        let roots = self.roots();
        let mut ancestors = Vec::new();
        let mut argv_paths = argv_paths(pid);
        let mut current = pid;
        let mut next = parent;
        while ancestors.len() < MAX_ANCESTORS {
            let Some(parent) = next.take().or_else(|| self::parent(current)) else {
                break;
            };
            if roots.contains(&parent) || parent <= 1 {
                break;
            }
            let path = exe(parent).map_err(|e| IdentifyError::Binary(e.to_string()))?;
            self.verify(parent, &path)
                .map_err(|reason| IdentifyError::AncestorIntegrity {
                    path: path.clone(),
                    reason,
                })?;
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
    Ok(openshell_core::hex::encode(&hasher.finalize()))
}

fn exe(pid: u32) -> std::io::Result<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let text = target.to_string_lossy();
    Ok(text.strip_suffix(" (deleted)").unwrap_or(&text).to_owned())
}

/// The parent of `pid`, from `/proc/<pid>/stat` (its fourth field, after
/// the command name in parentheses, which may itself hold spaces and `)`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` holds the socket `inode`: at descriptor `fd` (where it
/// connected it), or, when it moved it, at any descriptor.
fn holds(pid: u32, fd: i32, inode: u64) -> bool {
    let needle = format!("socket:[{inode}]");
    let is_it = |path: &std::path::Path| {
        std::fs::read_link(path).is_ok_and(|target| target.as_os_str() == needle.as_str())
    };
    if is_it(std::path::Path::new(&format!("/proc/{pid}/fd/{fd}"))) {
        return true;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| fds.filter_map(Result::ok).any(|entry| is_it(&entry.path())))
        .unwrap_or(false)
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

/// Every descendant of `root` (through each thread's `children` list),
/// ascending.
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsRawFd;

    /// A loopback connection from this process, as the proxy would see
    /// it: (client, server, the client's address, the server's).
    fn connection() -> (
        std::net::TcpStream,
        std::net::TcpStream,
        SocketAddr,
        SocketAddr,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        (client, server, peer, local)
    }

    fn inode_of(stream: &std::net::TcpStream) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", stream.as_raw_fd()))
            .unwrap()
            .ino()
    }

    /// An identifier whose anchor is our parent: we are its "agent".
    fn identifier() -> Identifier {
        let anchor = parent(std::process::id()).unwrap();
        Identifier::new(anchor, SocketTable::open().unwrap())
    }

    fn record(identifier: &Identifier, client: &std::net::TcpStream, peer: SocketAddr) {
        let me = std::process::id();
        let connect = Connect {
            inode: inode_of(client),
            fd: client.as_raw_fd(),
            connector: identifier.describe(me, None),
        };
        identifier.record_connect(peer.port(), connect);
    }

    #[test]
    fn the_recorded_connector_holding_its_socket_is_the_caller_and_its_hash_is_pinned() {
        let identifier = identifier();
        let (client, _server, peer, local) = connection();
        record(&identifier, &client, peer);
        let caller = identifier.identify(peer, local).unwrap();
        assert_eq!(caller.pid, std::process::id());
        assert_eq!(
            caller.binary,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert_eq!(caller.sha256.len(), 64);
        // A record serves one connection: a second request without a new
        // connect has none.
        assert_eq!(
            identifier.identify(peer, local),
            Err(IdentifyError::NoConnectRecord)
        );
        // The next connect is served from the pinned hash.
        let (client, _server, peer, local) = connection();
        record(&identifier, &client, peer);
        assert_eq!(
            identifier.identify(peer, local).unwrap().sha256,
            caller.sha256
        );
    }

    #[test]
    fn a_connection_without_its_own_record_is_refused() {
        let identifier = identifier();
        let (first, _server, peer, local) = connection();
        // No record at all.
        assert_eq!(
            identifier.identify(peer, local),
            Err(IdentifyError::NoConnectRecord)
        );
        // A record for this port, but of another socket (a stale record
        // whose port came round again).
        let (other, _other_server, _, _) = connection();
        identifier.record_connect(
            peer.port(),
            Connect {
                inode: inode_of(&other),
                fd: other.as_raw_fd(),
                connector: identifier.describe(std::process::id(), None),
            },
        );
        assert!(matches!(
            identifier.identify(peer, local),
            Err(IdentifyError::OtherSocket { .. })
        ));
        drop(first);
    }

    #[test]
    fn a_socket_its_connector_no_longer_holds_was_handed_on() {
        let identifier = identifier();
        let (client, _server, peer, local) = connection();
        record(&identifier, &client, peer);
        // The connector moved the socket to another descriptor: still its.
        let moved = client.try_clone().unwrap();
        let inode = inode_of(&client);
        drop(client);
        assert!(holds(std::process::id(), -1, inode));
        assert!(identifier.identify(peer, local).is_ok());
        // Recorded as held by a process that does not hold it.
        let (client, _server, peer, local) = connection();
        identifier.record_connect(
            peer.port(),
            Connect {
                inode: inode_of(&client),
                fd: client.as_raw_fd(),
                connector: identifier
                    .describe(std::process::id(), None)
                    .map(|caller| Caller {
                        pid: parent(std::process::id()).unwrap(),
                        ..caller
                    }),
            },
        );
        let refused = identifier.identify(peer, local).unwrap_err();
        assert!(
            matches!(refused, IdentifyError::HandedOn { .. }),
            "{refused}"
        );
        assert!(refused.to_string().starts_with("socket handed on: "));
        drop(moved);
    }

    #[test]
    fn the_parent_is_read_past_a_command_name_with_parentheses_and_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a) 1 2 (b");
        std::fs::copy("/bin/sleep", &odd).unwrap();
        let mut child = std::process::Command::new(&odd).arg("5").spawn().unwrap();
        let read = parent(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(read, Some(std::process::id()));
    }
}
