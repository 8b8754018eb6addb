//! The seccomp table (docs/isolation.md, "Seccomp"), probed with raw syscalls from
//! `hostile.c`. Each probe prints `NAME: errno=N` when the call was refused.

use crate::support::probe;

const EPERM: &str = "errno=1";
const ENOSYS: &str = "errno=38";

fn assert_refused(name: &str, errno: &str) {
    assert_eq!(probe(name), format!("{name}: {errno}"));
}

#[test]
fn packet_sockets_are_refused() {
    assert_refused("packet", EPERM);
}

#[test]
fn packet_socket_with_junk_in_the_high_half_of_the_argument_is_refused() {
    assert_refused("packet_high_bits", EPERM);
}

#[test]
fn raw_ip_sockets_are_refused() {
    assert_refused("raw_inet", EPERM);
    assert_refused("raw_inet6", EPERM);
}

#[test]
fn netlink_other_than_route_is_refused() {
    assert_refused("netlink_audit", EPERM);
    assert_refused("netlink_uevent", EPERM);
}

#[test]
fn vsock_is_refused() {
    assert_refused("vsock", EPERM);
}

#[test]
fn user_namespaces_are_refused_through_unshare_and_clone() {
    assert_refused("unshare_user", EPERM);
    assert_refused("unshare_user_high_bits", EPERM);
    assert_refused("clone_user", EPERM);
}

#[test]
fn clone3_answers_enosys_so_libc_falls_back_to_filtered_clone() {
    assert_refused("clone3", ENOSYS);
}

#[test]
fn namespaces_cannot_be_joined_or_created() {
    assert_refused("setns", EPERM);
    assert_refused("unshare_net", EPERM);
}

#[test]
fn mounting_in_any_form_is_refused() {
    for name in [
        "mount_tmpfs",
        "umount_sandbox",
        "fsopen",
        "open_tree",
        "chroot",
    ] {
        assert_refused(name, EPERM);
    }
}

#[test]
fn bpf_programs_cannot_be_loaded() {
    assert_refused("bpf", EPERM);
}

#[test]
fn io_uring_is_refused() {
    assert_refused("io_uring", EPERM);
}

#[test]
fn anonymous_and_descriptor_execution_are_refused() {
    assert_refused("memfd", EPERM);
    assert_refused("execveat_fd", EPERM);
}

#[test]
fn kernel_keyring_modules_and_kexec_are_refused() {
    for name in ["keyctl", "finit_module", "kexec_load"] {
        assert_refused(name, EPERM);
    }
}

#[test]
fn exploit_primitives_are_refused() {
    assert_refused("userfaultfd", EPERM);
    assert_refused("perf_event_open", EPERM);
    assert_refused("memfd_secret", EPERM);
    assert_refused("fanotify_init", EPERM);
}

#[test]
fn the_child_cannot_stack_a_seccomp_filter_of_its_own() {
    assert_refused("seccomp_filter", EPERM);
}

#[test]
fn terminal_keystroke_injection_is_refused() {
    assert_refused("tiocsti", EPERM);
}

#[test]
fn x32_syscall_numbers_are_refused() {
    assert_refused("x32_getpid", EPERM);
}

#[test]
fn the_i386_entry_point_kills_the_process() {
    let outcome = crate::support::sandbox()
        .workdir(crate::support::hostile_dir())
        .run(&["/sandbox/hostile", "i386_int80"]);
    assert_eq!(outcome.code, 128 + libc::SIGSYS, "{outcome:#?}");
    assert_eq!(outcome.stdout, "", "the probe must not get to report");
}
