//! What an agent needs keeps working inside the sandbox, and the kernel
//! confirms every layer from the child's own point of view.

use crate::support::{sandbox, shared_dir};

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"))
}

#[test]
fn the_kernel_confirms_no_new_privs_seccomp_no_capabilities_and_non_root() {
    let outcome = sandbox().run(&["cat", "/proc/self/status"]).success();
    let status = outcome.stdout;
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    assert_eq!(status_field(&status, "Seccomp:"), "2");
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(status_field(&status, caps), "0000000000000000", "{caps}");
    }
    let uids: Vec<&str> = status_field(&status, "Uid:").split_whitespace().collect();
    assert_eq!(uids.len(), 4);
    assert!(uids.iter().all(|u| *u == uids[0] && *u != "0"), "{uids:?}");
    let gids: Vec<&str> = status_field(&status, "Gid:").split_whitespace().collect();
    assert!(gids.iter().all(|g| *g != "0"), "{gids:?}");
    let groups = status_field(&status, "Groups:");
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
}

#[test]
fn core_dumps_are_off_and_cannot_be_turned_back_on() {
    // PR_SET_DUMPABLE=0 is set and verified before exec, but the kernel
    // resets it at exec for an ordinary binary (fs/exec.c), so what holds
    // for the program is the hard RLIMIT_CORE of 0 (and seccomp's ptrace ban).
    let outcome = sandbox()
        .python("import resource\nprint(resource.getrlimit(resource.RLIMIT_CORE))\ntry:\n    resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))\n    print('raised')\nexcept ValueError as e:\n    print('refused')")
        .success();
    assert_eq!(outcome.stdout, "(0, 0)\nrefused\n");
}

#[test]
fn usr_is_readable_and_sandbox_and_tmp_are_writable() {
    let dir = shared_dir();
    let outcome = sandbox()
        .workdir(dir.path())
        .sh("test -r /usr/bin/env && echo usr; echo a > /sandbox/out && echo sandbox; echo b > /tmp/t && cat /tmp/t; pwd")
        .success();
    assert_eq!(outcome.stdout, "usr\nsandbox\nb\n/sandbox\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "a\n"
    );
}

#[test]
fn python_and_sh_run() {
    let outcome = sandbox()
        .python("import json, ssl, sqlite3, subprocess\nprint(json.dumps(subprocess.run(['sh', '-c', 'echo from-sh'], capture_output=True, text=True).stdout))")
        .success();
    assert_eq!(outcome.stdout, "\"from-sh\\n\"\n");
}

#[test]
fn threads_and_child_processes_work_under_the_clone3_fallback() {
    let outcome = sandbox()
        .python("import threading, os\nt = threading.Thread(target=lambda: print('thread'))\nt.start(); t.join()\npid = os.fork()\nif pid == 0:\n    os._exit(7)\nprint(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))")
        .success();
    assert_eq!(outcome.stdout, "thread\n7\n");
}

#[test]
fn the_child_sees_its_own_hostname_and_proxy_environment() {
    let outcome = sandbox().run(&["/usr/bin/env"]).success();
    let env: Vec<&str> = outcome.stdout.lines().collect();
    for expected in [
        "HTTP_PROXY=http://127.0.0.1:3128",
        "HTTPS_PROXY=http://127.0.0.1:3128",
        "ALL_PROXY=http://127.0.0.1:3128",
        "http_proxy=http://127.0.0.1:3128",
        "https_proxy=http://127.0.0.1:3128",
        "grpc_proxy=http://127.0.0.1:3128",
        "NO_PROXY=127.0.0.1,localhost,::1",
        "no_proxy=127.0.0.1,localhost,::1",
        "HOME=/sandbox",
    ] {
        assert!(env.contains(&expected), "{expected} missing: {env:?}");
    }
    assert!(
        !env.iter().any(|l| l.starts_with("XDG_STATE_HOME=")),
        "the supervisor's environment leaked: {env:?}"
    );
    let outcome = sandbox().run(&["/bin/hostname"]).success();
    assert_eq!(outcome.stdout, "sandbox\n");
}

#[test]
fn the_command_starts_with_default_signal_actions() {
    // The supervisor's runtime ignores SIGPIPE; that must not leak into the
    // sandbox, where `yes | head` ends quietly as everywhere else.
    let outcome = sandbox()
        .sh("yes | head -c 3; echo; cat /proc/self/status")
        .success();
    assert!(outcome.stdout.starts_with("y\ny\n"), "{}", outcome.stdout);
    assert_eq!(outcome.stderr.trim(), "", "a broken pipe was reported");
    let ignored = u64::from_str_radix(status_field(&outcome.stdout, "SigIgn:"), 16).unwrap();
    assert_eq!(
        ignored & 0x7fff_ffff,
        0,
        "standard signals ignored: {ignored:#x}"
    );
}
