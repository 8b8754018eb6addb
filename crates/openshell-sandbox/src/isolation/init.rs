//! The sandbox's init: PID 1 of the child's PID namespace.
//!
//! The supervisor starts it by re-executing its own binary (`__init`) inside
//! the new network and PID namespaces, so this is a fresh, single-threaded
//! process where ordinary Rust is safe. It:
//! 1. reads the [`Plan`] from a pipe;
//! 2. makes its own mount, IPC and UTS namespaces, sets the hostname and
//!    assembles the child's root ([`mounts`]);
//! 3. forks the agent child ([`crate::isolation::agent`]);
//! 4. reaps every process of the namespace, forwards the supervisor's
//!    signals to the agent, and exits with the agent's status (128+signal
//!    when it was killed). Its exit kills whatever the agent left behind.
//!
//! Both it and the agent die with the supervisor (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::io::Read;
use std::os::fd::RawFd;

use anyhow::Context;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::EXIT_LAUNCH_FAILED;
use crate::isolation::report;
use crate::isolation::{Plan, mounts, seccomp};
use crate::isolation::{agent, sys};

/// Signals the supervisor forwards, and init forwards on to the agent.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs init; returns the exit code for the process.
pub fn run(plan_fd: RawFd, report_fd: RawFd, connects_fd: Option<RawFd>) -> i32 {
    let report = match sys::take_inherited_fd(report_fd) {
        Ok(fd) => report::Sender::new(File::from(fd)),
        Err(error) => {
            tracing::error!(%error, "init started without a report channel");
            return EXIT_LAUNCH_FAILED;
        }
    };
    let connects = match connects_fd.map(sys::take_inherited_fd).transpose() {
        Ok(connects) => connects,
        Err(error) => {
            report.fail(
                "init",
                &anyhow::Error::from(error).context("the connect filter channel"),
            );
            return EXIT_LAUNCH_FAILED;
        }
    };
    let prepared = prepare(plan_fd, &report);
    let (plan, filters) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            report.fail("init", &error);
            return EXIT_LAUNCH_FAILED;
        }
    };
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        signals.add(signal);
    }
    if let Err(error) = signals.thread_block() {
        report.fail(
            "init",
            &anyhow::Error::from(error).context("blocking signals"),
        );
        return EXIT_LAUNCH_FAILED;
    }
    let agent_pid = match sys::fork() {
        Ok(ForkResult::Child) => {
            // A main process on a pty (`sandbox create --tty`) owns it.
            if std::io::IsTerminal::is_terminal(&std::io::stdin())
                && let Err(error) = sys::own_session()
            {
                report.fail("taking the terminal", &anyhow::Error::from(error));
                std::process::exit(EXIT_LAUNCH_FAILED);
            }
            agent::run(&plan, &filters, report, connects)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(error) => {
            report.fail(
                "init",
                &anyhow::Error::from(error).context("forking the agent"),
            );
            return EXIT_LAUNCH_FAILED;
        }
    };
    drop(report);
    drop(connects);
    supervise(agent_pid, &signals)
}

fn prepare(plan_fd: RawFd, report: &report::Sender) -> anyhow::Result<(Plan, seccomp::Filters)> {
    nix::fcntl::fcntl(
        report.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .context("marking the report channel close-on-exec")?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    // `exe` (from /proc/self/exe) would tell an operator nothing in `ps`.
    let _ = nix::sys::prctl::set_name(c"openshell-init");
    let mut plan_json = Vec::new();
    File::from(sys::take_inherited_fd(plan_fd).context("adopting the plan channel")?)
        .read_to_end(&mut plan_json)
        .context("reading the plan")?;
    let plan: Plan = serde_json::from_slice(&plan_json).context("decoding the plan")?;
    // Our own session: the terminal's ^C reaches the supervisor only, which
    // forwards it once, and the sandbox has no controlling terminal.
    nix::unistd::setsid().context("setsid")?;
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS,
    )
    .context("creating the mount, IPC and UTS namespaces")?;
    nix::unistd::sethostname(&plan.hostname).context("setting the hostname")?;
    mounts::apply_mounts(&plan.mounts).context("building the root")?;
    let filters = seccomp::compile_filters()?;
    Ok((plan, filters))
}

/// Reaps children until the agent exits; forwards signals to it meanwhile.
fn supervise(agent: Pid, signals: &SigSet) -> i32 {
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(agent, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == agent => return code,
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == agent => {
                    return 128 + signal as i32;
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
