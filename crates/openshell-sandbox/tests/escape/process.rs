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

#[test]
fn no_supervisor_descriptor_leaks_into_the_child() {
    // A descriptor without close-on-exec, as a careless caller would pass:
    // the supervisor inherits it; the agent's program must not.
    let (read, write) = nix::unistd::pipe().unwrap();
    // ls opens the directory itself as the one extra descriptor.
    let outcome = sandbox().run(&["ls", "/proc/self/fd"]).success();
    drop((read, write));
    assert_eq!(outcome.stdout, "0\n1\n2\n3\n", "{outcome:#?}");
}

#[test]
fn a_numeric_user_without_a_passwd_entry_runs_with_that_uid_and_gid() {
    let policy = "version: 1\nprocess:\n  run_as_user: \"54321\"\n";
    let outcome = sandbox().policy(policy).run(&["id"]).success();
    assert_eq!(
        outcome.stdout, "uid=54321 gid=54321 groups=54321\n",
        "{outcome:#?}"
    );
}

#[test]
fn killing_the_supervisor_takes_the_whole_sandbox_down() {
    let marker = format!("31.{}", std::process::id());
    let sandbox = sandbox();
    let mut child = sandbox
        .command(&["sleep", &marker])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let find = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let pid = e.ok()?.file_name().to_string_lossy().into_owned();
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                (cmdline == format!("sleep\0{marker}\0").as_bytes()).then_some(pid)
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while find().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandboxed sleep never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup code of the supervisor runs
    child.wait().unwrap();
    while !find().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox outlived its supervisor: {:?}",
            find()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
