//! The `__exec` helper: the half of `sandbox exec` that enters a running
//! sandbox. It joins the sandbox's IPC, UTS, network and PID namespaces
//! through `/proc/<init>/ns/*` and forks the command, which joins the mount
//! namespace (entering it moves root and cwd to the sandbox's root) and
//! then goes through the same code as the agent ([`super::agent`]) in its
//! own session. The helper waits for it and exits with its status; SIGTERM
//! to the helper kills the command's whole process group. The helper and
//! the command die with the supervisor (`PR_SET_PDEATHSIG`). The session's
//! side (planning and starting helpers) is [`crate::exec`].

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::EXIT_LAUNCH_FAILED;
use crate::isolation::report::{self, Report};
use crate::isolation::{Plan, agent, seccomp, sys};

/// The namespaces the helper joins before forking the command. The mount
/// namespace is joined by the command itself, after the fork: the helper
/// keeps the host's `/proc` (which its fork needs) and never holds the
/// sandbox's root.
const NAMESPACES: [(&str, CloneFlags); 4] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// The `__exec` helper; returns its exit code (the command's).
pub fn run(target: i32, plan_file: &Path, connects_fd: Option<i32>) -> i32 {
    let connects = match connects_fd.map(sys::take_inherited_fd).transpose() {
        Ok(connects) => connects,
        Err(error) => {
            say(&format!(
                "cannot enter the sandbox: the connect filter channel: {error}"
            ));
            return EXIT_LAUNCH_FAILED;
        }
    };
    match prepare(target, plan_file) {
        Ok((plan, mount_ns, filters, signals)) => {
            supervise(&plan, &mount_ns, &filters, &signals, connects)
        }
        Err(error) => {
            say(&format!("cannot enter the sandbox: {error:#}"));
            EXIT_LAUNCH_FAILED
        }
    }
}

/// A message to the command's stderr (the exec client sees it).
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "openshell: {message}");
}

fn prepare(
    target: i32,
    plan_file: &Path,
) -> anyhow::Result<(Plan, File, seccomp::Filters, SigSet)> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    let _ = nix::sys::prctl::set_name(c"openshell-exec");
    let json = std::fs::read(plan_file).context("reading the exec plan")?;
    let _ = std::fs::remove_file(plan_file);
    let plan: Plan = serde_json::from_slice(&json).context("decoding the exec plan")?;
    // Before anything is forked: the command counts against the sandbox's
    // resource limits.
    crate::isolation::limits::join_cgroups_of(target).context("joining the sandbox's cgroup")?;
    let mount_path = format!("/proc/{target}/ns/mnt");
    let mount_ns = File::open(&mount_path).with_context(|| format!("opening {mount_path}"))?;
    let namespaces = NAMESPACES
        .iter()
        .map(|(name, flag)| {
            let path = format!("/proc/{target}/ns/{name}");
            File::open(&path)
                .with_context(|| format!("opening {path}"))
                .map(|file| (file, *flag, *name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (file, flag, name) in &namespaces {
        nix::sched::setns(file.as_fd(), *flag)
            .with_context(|| format!("joining the sandbox's {name} namespace"))?;
    }
    let filters = seccomp::compile_filters()?;
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        signals.add(signal);
    }
    signals.thread_block().context("blocking signals")?;
    Ok((plan, mount_ns, filters, signals))
}

/// Forks the command and waits for it.
fn supervise(
    plan: &Plan,
    mount_ns: &File,
    filters: &seccomp::Filters,
    signals: &SigSet,
    connects: Option<std::os::fd::OwnedFd>,
) -> i32 {
    let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(error) => {
            say(&format!("creating the report pipe: {error}"));
            return EXIT_LAUNCH_FAILED;
        }
    };
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(read);
            let report = report::Sender::new(File::from(write));
            if let Err(error) = nix::sched::setns(mount_ns.as_fd(), CloneFlags::CLONE_NEWNS) {
                report.fail(
                    "joining the sandbox's mount namespace",
                    &anyhow::Error::from(error),
                );
                std::process::exit(EXIT_LAUNCH_FAILED);
            }
            // Its own session and process group, so that a cancel reaches
            // everything it started; on a pty, that terminal controls it.
            if let Err(error) = sys::own_session() {
                say(&format!("cannot take the terminal: {error}"));
            }
            agent::run(plan, filters, report, connects)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(connects);
            child
        }
        Err(error) => {
            say(&format!("starting the command: {error}"));
            return EXIT_LAUNCH_FAILED;
        }
    };
    drop(write);
    for report in report::receive(File::from(read)) {
        if let Report::Failed { message, stage, .. } = report {
            say(&if stage == "exec" {
                message
            } else {
                format!("{stage}: {message}")
            });
        }
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
                _ => continue,
            },
            Ok(_) => {
                let _ = kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
                let _ = kill(child, Signal::SIGKILL);
            }
            Err(_) => continue,
        }
    }
}
