//! Other processes and privileges: the supervisor and init are out of
//! reach, root cannot be regained, nothing dumps core.

use std::os::unix::fs::PermissionsExt;

use crate::support::{compile_hostile, probe, sandbox, shared_dir};

#[test]
fn ptrace_of_init_of_a_child_or_of_itself_is_refused() {
    for name in ["ptrace_init", "ptrace_child", "ptrace_traceme"] {
        assert_eq!(probe(name), format!("{name}: errno=1"));
    }
}

#[test]
fn another_process_memory_cannot_be_read() {
    assert_eq!(probe("vm_read_child"), "vm_read_child: errno=1");
    // /proc/1/mem of the root-owned init: EACCES.
    assert_eq!(probe("proc_mem_init"), "proc_mem_init: errno=13");
}

#[test]
fn init_cannot_be_signalled_or_opened_by_pidfd() {
    assert_eq!(probe("kill_init"), "kill_init: errno=1");
    assert_eq!(probe("pidfd_open_init"), "pidfd_open_init: errno=1");
}

#[test]
fn the_supervisor_and_host_processes_are_invisible() {
    let supervisor_marker = std::process::id();
    let outcome = sandbox()
        .sh("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
        .success();
    let pids: Vec<u32> = outcome
        .stdout
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // init (1), the shell (2) and its pipeline: a handful of small numbers.
    assert_eq!(pids.first(), Some(&1), "{pids:?}");
    assert!(pids.len() < 10, "host processes leak into /proc: {pids:?}");
    assert!(!pids.contains(&supervisor_marker) || supervisor_marker < 10);
}

#[test]
fn setuid_root_fails_after_the_drop() {
    assert_eq!(probe("setuid_root"), "setuid_root: errno=1");
}

#[test]
fn a_setuid_root_binary_does_not_regain_root() {
    let dir = shared_dir();
    let binary = dir.path().join("suid");
    compile_hostile(&binary);
    // root-owned, mode 4755: a classic setuid-root binary in the workspace.
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let outcome = sandbox()
        .workdir(dir.path())
        .run(&["/sandbox/suid", "ids"])
        .success();
    let line = outcome.stdout.trim();
    assert!(line.starts_with("ids: uid="), "{line}");
    assert!(
        !line.contains("euid=0"),
        "setuid bit honoured inside the sandbox: {line}"
    );
}

#[test]
fn no_core_dump_is_written_even_when_the_child_asks_for_one() {
    let dir = shared_dir();
    compile_hostile(&dir.path().join("hostile"));
    let outcome = sandbox()
        .workdir(dir.path())
        .sh("cd /sandbox && ulimit -c; ./hostile core");
    assert_eq!(outcome.code, 128 + libc::SIGSEGV, "{outcome:#?}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines, ["0", "raise_core_limit: errno=1"]);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["hostile"], "a core file appeared");
}
