//! The agent child, between `fork` (in init) and `exec` of the agent's
//! program. Init is single-threaded, so this code may allocate.
//!
//! Order (docs/isolation.md, "Order of application", with Landlock
//! paths opened while still root): inherited descriptors marked close-on-exec → signal mask and
//! default actions restored → parent-death signal → Landlock ruleset built
//! (paths opened as root, links only where root controls them) → privilege
//! drop → working directory (as the agent) → hardening → Landlock
//! `restrict_self` → seccomp → report → exec. Any failure is reported and
//! the child exits without running the program.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::AccessFlags;

use crate::isolation::report::{self, Enforced, Report};
use crate::isolation::sys;
use crate::isolation::{Plan, identity, landlock, seccomp};
use crate::{EXIT_CANNOT_EXECUTE, EXIT_LAUNCH_FAILED, EXIT_NOT_FOUND};

/// Applies every layer and execs the program; never returns.
/// `connects`: where to send the connect filter's listener (the
/// supervisor records who connects to the proxy, [`crate::proxy::connects`]).
pub fn run(
    plan: &Plan,
    filters: &seccomp::Filters,
    report: report::Sender,
    connects: Option<OwnedFd>,
) -> ! {
    let enforced = match restrict(plan, filters, connects) {
        Ok(enforced) => enforced,
        Err(error) => {
            report.fail("isolation", &error);
            std::process::exit(EXIT_LAUNCH_FAILED);
        }
    };
    report.send(&Report::Enforced(enforced));
    let (code, message) = exec(plan);
    report.fail_with("exec", message, code);
    std::process::exit(code)
}

fn restrict(
    plan: &Plan,
    filters: &seccomp::Filters,
    connects: Option<OwnedFd>,
) -> anyhow::Result<Enforced> {
    sys::cloexec_all_from(3).context("closing inherited descriptors at exec")?;
    SigSet::empty()
        .thread_set_mask()
        .context("restoring the signal mask")?;
    sys::reset_signal_dispositions().context("restoring the default signal actions")?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    let ruleset = landlock::prepare(&plan.landlock)?;
    identity::apply_drop(&plan.credentials)?;
    // As the agent, not as root: a working directory in the agent's trees
    // (`exec --workdir`) may be a link the agent planted.
    nix::unistd::chdir(plan.cwd.as_str()).with_context(|| format!("chdir {}", plan.cwd))?;
    identity::apply_hardening()?;
    let landlock = ruleset.restrict()?;
    if let Some(channel) = connects {
        // Before the main filter, which refuses seccomp(2) itself.
        let listener = sys::install_listener_filter(&seccomp::connect_notify_program())
            .context("installing the connect filter")?;
        crate::proxy::connects::send_listener(&channel, &listener)
            .context("handing the connect filter to the supervisor")?;
    }
    seccomp::install_filters(filters)?;
    Ok(Enforced {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        no_new_privs: nix::sys::prctl::get_no_new_privs().unwrap_or(false),
        seccomp: true,
        landlock,
    })
}

/// Resolves `argv[0]` against the child's `PATH` (as the child, after every
/// restriction) and execs it. Returns only on failure, with the exit code a
/// shell would use (127 not found, 126 not executable) and a message.
fn exec(plan: &Plan) -> (i32, String) {
    let Some(program) = plan.argv.first() else {
        return (EXIT_LAUNCH_FAILED, "no command given".to_owned());
    };
    let path_var = plan
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some(path) = resolve_program(program, path_var) else {
        return (EXIT_NOT_FOUND, format!("{program}: command not found"));
    };
    let c_strings = |items: &mut dyn Iterator<Item = String>| {
        items.map(CString::new).collect::<Result<Vec<_>, _>>()
    };
    let argv = c_strings(&mut plan.argv.iter().cloned());
    let envp = c_strings(&mut plan.env.iter().map(|(k, v)| format!("{k}={v}")));
    let c_path = CString::new(path.as_os_str().as_bytes());
    let (Ok(argv), Ok(envp), Ok(c_path)) = (argv, envp, c_path) else {
        return (
            EXIT_LAUNCH_FAILED,
            "command or environment contains a NUL byte".to_owned(),
        );
    };
    let errno = match nix::unistd::execve(&c_path, &argv, &envp) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let code = if errno == Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    };
    (code, format!("{}: {}", path.display(), errno.desc()))
}

/// `argv[0]` with a slash is used as given; otherwise the first executable
/// regular file of that name along `path_var`.
pub fn resolve_program(program: &str, path_var: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            candidate.is_file() && nix::unistd::access(candidate, AccessFlags::X_OK).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_along_path_and_keeps_explicit_paths() {
        assert_eq!(
            resolve_program("sh", "/nonexistent:/usr/bin:/bin"),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(
            resolve_program("./x", "/usr/bin"),
            Some(PathBuf::from("./x"))
        );
        assert_eq!(resolve_program("no-such-program-xyz", "/usr/bin"), None);
        assert_eq!(resolve_program("", "/usr/bin"), None);
    }
}
