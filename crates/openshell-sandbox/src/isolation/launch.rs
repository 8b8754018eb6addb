//! The supervisor side of a launch: the child's network namespace with the
//! proxy listener inside it, the PID namespace, the init process, its
//! reports, and its exit status.
//!
//! One dedicated *launch thread* owns the child from start to exit:
//! network and PID namespaces are per-thread state (`unshare` of
//! `CLONE_NEWNET` and `CLONE_NEWPID` affects only the calling thread and its
//! future children), so the supervisor's other threads stay in the host's
//! namespaces; and the thread lives until the child exits, because
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a process ends.
//!
//! The init process is this same binary re-executed (`__init`), so no code
//! runs between `fork` and `exec` but the standard library's own.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::isolation::report::{self, Report};
use crate::isolation::sys;
use crate::isolation::{PROXY_ADDR, Plan};
use crate::proxy::caller::SocketTable;

/// Why the sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("creating the network namespace")]
    NetworkNamespace(#[source] nix::Error),
    #[error("bringing up loopback in the sandbox's network namespace")]
    Loopback(#[source] std::io::Error),
    #[error("binding the proxy listener on {PROXY_ADDR} inside the sandbox")]
    Listener(#[source] std::io::Error),
    #[error("opening the socket table (sock_diag) of the sandbox's network namespace")]
    SocketTable(#[source] std::io::Error),
    #[error("creating the PID namespace")]
    PidNamespace(#[source] nix::Error),
    #[error("creating the plan and report pipes")]
    Pipe(#[source] nix::Error),
    #[error("starting the sandbox init ({0})")]
    Init(String, #[source] std::io::Error),
    #[error("sending the plan to the sandbox init")]
    SendPlan(#[source] std::io::Error),
    #[error("encoding the plan")]
    EncodePlan(#[source] serde_json::Error),
    #[error("the launch thread ended without reporting")]
    ThreadLost,
}

/// What the proxy serves the sandbox with, made in its network namespace.
#[derive(Debug)]
pub struct ProxyEnds {
    pub listener: TcpListener,
    /// Finds the agent's socket behind each accepted connection.
    pub sockets: SocketTable,
}

/// A started sandbox: the init's host pid, the proxy's ends (in the
/// child's network namespace), and what the child reported before exec.
#[derive(Debug)]
pub struct Running {
    pub pid: Pid,
    proxy: Option<ProxyEnds>,
    pub reports: Vec<Report>,
    /// The supervisor's end of the connect filter channel (the agent sends
    /// its listener over it before exec).
    pub connects: Option<OwnedFd>,
    exit: mpsc::Receiver<std::io::Result<ExitStatus>>,
}

impl Running {
    /// The proxy listener and socket table, made inside the child's
    /// network namespace (once: the proxy takes them).
    pub fn take_proxy(&mut self) -> Option<ProxyEnds> {
        self.proxy.take()
    }

    /// The first failure the child reported, if any.
    pub fn failure(&self) -> Option<&Report> {
        self.reports
            .iter()
            .find(|r| matches!(r, Report::Failed { .. }))
    }

    /// Waits for init to exit and returns the sandbox's exit code: the
    /// agent's code, or 128+signal.
    pub fn wait(self) -> std::io::Result<i32> {
        let status = self
            .exit
            .recv()
            .map_err(|_| std::io::Error::other("the launch thread ended without a status"))??;
        Ok(exit_code(status))
    }
}

/// The shell's convention: the exit code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(crate::EXIT_LAUNCH_FAILED)
}

/// Starts the sandbox described by `plan`; returns once the agent's
/// program has been exec'd (or the launch failed: see [`Running::failure`]).
/// `stdio`: the agent's stdin, stdout and stderr (default: ours).
/// `cgroup`: the `cgroup.procs` files the init is put into before it reads
/// its plan (so before it forks anything).
pub fn spawn(
    plan: &Plan,
    stdio: Option<[OwnedFd; 3]>,
    cgroup: Vec<std::path::PathBuf>,
) -> Result<Running, SpawnError> {
    let plan_json = serde_json::to_vec(plan).map_err(SpawnError::EncodePlan)?;
    let (started_tx, started_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("sandbox-launch".into())
        .spawn(move || match start(&plan_json, stdio, &cgroup) {
            Err(error) => {
                let _ = started_tx.send(Err(error));
            }
            Ok((mut child, proxy, reports, connects)) => {
                let pid = Pid::from_raw(child.id() as i32);
                let _ = started_tx.send(Ok((pid, proxy, reports, connects)));
                let _ = exit_tx.send(child.wait());
            }
        })
        .map_err(|e| SpawnError::Init("spawning the launch thread".into(), e))?;
    let (pid, proxy, reports, connects) =
        started_rx.recv().map_err(|_| SpawnError::ThreadLost)??;
    let reports = report::receive(File::from(reports));
    Ok(Running {
        pid,
        proxy: Some(proxy),
        reports,
        connects: Some(connects),
        exit: exit_rx,
    })
}

/// Runs on the launch thread: namespaces, the proxy's ends, init.
fn start(
    plan_json: &[u8],
    stdio: Option<[OwnedFd; 3]>,
    cgroup: &[std::path::PathBuf],
) -> Result<(std::process::Child, ProxyEnds, OwnedFd, OwnedFd), SpawnError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(SpawnError::NetworkNamespace)?;
    sys::set_loopback_up().map_err(SpawnError::Loopback)?;
    loopback_congestion_control();
    let proxy = ProxyEnds {
        listener: TcpListener::bind(PROXY_ADDR).map_err(SpawnError::Listener)?,
        sockets: SocketTable::open().map_err(SpawnError::SocketTable)?,
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(SpawnError::PidNamespace)?;

    // The init inherits the plan's read end and the report's write end; the
    // supervisor's ends are close-on-exec. They are created here, on the
    // launch thread, immediately before the one spawn that inherits them.
    let (plan_read, plan_write) = inheritable_pipe(End::Read)?;
    let (report_read, report_write) = inheritable_pipe(End::Write)?;
    let (connects, connects_child) = crate::proxy::connects::channel()
        .map_err(|e| SpawnError::Init("the connect filter channel".into(), e))?;
    nix::fcntl::fcntl(
        &connects_child,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(SpawnError::Pipe)?;
    let exe = std::env::current_exe()
        .map_err(|e| SpawnError::Init("locating our own binary".into(), e))?;
    let mut command = Command::new("/proc/self/exe");
    if let Some([stdin, stdout, stderr]) = stdio {
        command.stdin(stdin).stdout(stdout).stderr(stderr);
    }
    let child = command
        .arg0("openshell-sandbox-init")
        .args([
            "__init",
            "--plan-fd",
            &plan_read.as_raw_fd().to_string(),
            "--report-fd",
            &report_write.as_raw_fd().to_string(),
            "--connects-fd",
            &connects_child.as_raw_fd().to_string(),
        ])
        .spawn()
        .map_err(|e| SpawnError::Init(exe.display().to_string(), e))?;
    drop(plan_read);
    drop(report_write);
    drop(connects_child);
    // Into the sandbox's cgroup while it waits for its plan: everything it
    // forks counts against the limits.
    if let Err(error) = crate::isolation::limits::enter(cgroup, child.id()) {
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        return Err(SpawnError::Init(
            "entering the sandbox's cgroup".into(),
            error,
        ));
    }
    File::from(plan_write)
        .write_all(plan_json)
        .map_err(SpawnError::SendPlan)?;
    Ok((child, proxy, report_read, connects))
}

/// The congestion control of the sandbox's network namespace, where the
/// only link is loopback (the agent ⇄ the proxy): a pacing one such as BBR,
/// which a host may make its default and a new namespace inherits, paces
/// a link that has no queue to protect. Measured on a BBR host: a 1 GiB
/// download through the proxy ran at 49% of direct with BBR on that hop,
/// against 74% with CUBIC (BENCHMARKS.md). Best effort: the host's default
/// stays where CUBIC is not available. Runs on the launch thread, inside
/// the new namespace (`/proc/sys/net` is the opener's namespace's).
fn loopback_congestion_control() {
    const PATH: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
    if let Err(error) = std::fs::write(PATH, "cubic") {
        tracing::debug!(%error, "the sandbox's loopback keeps the host's congestion control");
    }
}

#[derive(Clone, Copy, PartialEq)]
enum End {
    Read,
    Write,
}

/// A pipe whose `inherited` end survives exec and whose other end does not.
fn inheritable_pipe(inherited: End) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let keep = if inherited == End::Read {
        &read
    } else {
        &write
    };
    nix::fcntl::fcntl(
        keep,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(SpawnError::Pipe)?;
    Ok((read, write))
}
