//! The agent child's seccomp filters (docs/isolation.md, "Seccomp"), as one table.
//!
//! Two filters are installed, in this order, after `no_new_privs`:
//! 1. the *prelude*, hand-written BPF: kill the process on any architecture
//!    other than the native one (closing the `int 0x80` i386 door), refuse
//!    x32-ABI syscall numbers, and answer `clone3` with `ENOSYS` so that libc
//!    falls back to `clone`, whose flags the main filter can inspect;
//! 2. the *main* filter, compiled by `seccompiler` from [`BLOCKED`]: every
//!    listed call returns `EPERM`, everything else is allowed.
//!
//! The main filter also blocks `seccomp(SECCOMP_SET_MODE_FILTER)`, so the
//! child cannot stack a filter of its own (a user-notify listener could
//! otherwise be used to confuse a supervisor).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
};

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>` (libc does not export it).
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
/// Syscall numbers with this bit set are the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `open_tree_attr(2)`, Linux 6.15; not yet in libc.
const SYS_OPEN_TREE_ATTR: i64 = 467;

const AF_NETLINK: u64 = libc::AF_NETLINK as u64;
const NETLINK_ROUTE: u64 = 0;
const SOCK_TYPE_MASK: u64 = 0xf;
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const PR_SET_SECCOMP: u64 = libc::PR_SET_SECCOMP as u64;
const SECCOMP_MODE_FILTER: u64 = 2;

/// A comparison on the low 32 bits of one syscall argument.
///
/// Always 32 bits: for `int` parameters the kernel ignores the upper half, so
/// a 64-bit comparison could be dodged by setting junk high bits. For the few
/// `unsigned long` parameters compared here (clone/unshare flags, prctl
/// arguments) a low-half match can only over-block, never let a call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `arg == value`
    Eq(u8, u64),
    /// `arg != value`
    Ne(u8, u64),
    /// `arg & mask == value`
    Masked(u8, u64, u64),
}

/// One row of the table: `syscall` is refused with `EPERM` when every
/// condition holds (an empty list means always). Several rows for the same
/// syscall are alternatives.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub syscall: &'static str,
    pub nr: i64,
    pub when: &'static [Cond],
    pub why: &'static str,
}

const fn always(syscall: &'static str, nr: i64, why: &'static str) -> Block {
    Block {
        syscall,
        nr,
        when: &[],
        why,
    }
}

/// Every syscall the agent child may not make, and why.
pub const BLOCKED: &[Block] = &[
    // Sockets that bypass the proxy or reach the kernel's network config.
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[Cond::Eq(0, libc::AF_PACKET as u64)],
        why: "packet sockets see and forge raw frames",
    },
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[Cond::Eq(0, libc::AF_BLUETOOTH as u64)],
        why: "bluetooth is a network the proxy cannot see",
    },
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[Cond::Eq(0, libc::AF_VSOCK as u64)],
        why: "vsock reaches the hypervisor host directly",
    },
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[Cond::Eq(0, AF_NETLINK), Cond::Ne(2, NETLINK_ROUTE)],
        why: "netlink other than NETLINK_ROUTE (which getifaddrs needs) talks to kernel subsystems",
    },
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[
            Cond::Eq(0, libc::AF_INET as u64),
            Cond::Masked(1, SOCK_TYPE_MASK, libc::SOCK_RAW as u64),
        ],
        why: "raw IPv4 sockets forge packets (CAP_NET_RAW is gone too)",
    },
    Block {
        syscall: "socket",
        nr: libc::SYS_socket,
        when: &[
            Cond::Eq(0, libc::AF_INET6 as u64),
            Cond::Masked(1, SOCK_TYPE_MASK, libc::SOCK_RAW as u64),
        ],
        why: "raw IPv6 sockets forge packets (CAP_NET_RAW is gone too)",
    },
    // Reading or steering other processes.
    always(
        "ptrace",
        libc::SYS_ptrace,
        "inspecting or controlling another process",
    ),
    always(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        "reading another process's memory",
    ),
    always(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        "writing another process's memory",
    ),
    always(
        "pidfd_open",
        libc::SYS_pidfd_open,
        "handles on other processes",
    ),
    always(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        "stealing another process's descriptors",
    ),
    always(
        "pidfd_send_signal",
        libc::SYS_pidfd_send_signal,
        "signals through pidfds",
    ),
    // Kernel attack surface with a history of escapes.
    always("bpf", libc::SYS_bpf, "loading BPF programs"),
    always(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        "io_uring performs syscalls seccomp cannot see",
    ),
    always(
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        "io_uring performs syscalls seccomp cannot see",
    ),
    always(
        "io_uring_register",
        libc::SYS_io_uring_register,
        "io_uring performs syscalls seccomp cannot see",
    ),
    always(
        "userfaultfd",
        libc::SYS_userfaultfd,
        "stalls kernel threads, a race-exploit primitive",
    ),
    always(
        "perf_event_open",
        libc::SYS_perf_event_open,
        "kernel profiling and side channels",
    ),
    always(
        "memfd_create",
        libc::SYS_memfd_create,
        "anonymous executables outside Landlock's execute rules",
    ),
    always(
        "memfd_secret",
        libc::SYS_memfd_secret,
        "memory hidden even from the kernel's own inspection, a hiding place for injected code",
    ),
    always(
        "fanotify_init",
        libc::SYS_fanotify_init,
        "filesystem-wide event watches that see past Landlock's view",
    ),
    always(
        "keyctl",
        libc::SYS_keyctl,
        "the kernel keyring is shared beyond the sandbox",
    ),
    always(
        "add_key",
        libc::SYS_add_key,
        "the kernel keyring is shared beyond the sandbox",
    ),
    always(
        "request_key",
        libc::SYS_request_key,
        "the kernel keyring is shared beyond the sandbox",
    ),
    // The filesystem layout and namespaces the supervisor built.
    always("mount", libc::SYS_mount, "changing the mount table"),
    always(
        "umount2",
        libc::SYS_umount2,
        "uncovering what a mount hides",
    ),
    always("pivot_root", libc::SYS_pivot_root, "changing the root"),
    always("fsopen", libc::SYS_fsopen, "new mount API"),
    always("fsconfig", libc::SYS_fsconfig, "new mount API"),
    always("fsmount", libc::SYS_fsmount, "new mount API"),
    always("fspick", libc::SYS_fspick, "new mount API"),
    always("move_mount", libc::SYS_move_mount, "new mount API"),
    always("open_tree", libc::SYS_open_tree, "new mount API"),
    always("open_tree_attr", SYS_OPEN_TREE_ATTR, "new mount API"),
    always("mount_setattr", libc::SYS_mount_setattr, "new mount API"),
    always("setns", libc::SYS_setns, "joining another namespace"),
    Block {
        syscall: "unshare",
        nr: libc::SYS_unshare,
        when: &[Cond::Masked(0, CLONE_NEWUSER, CLONE_NEWUSER)],
        why: "a user namespace hands back every capability",
    },
    Block {
        syscall: "clone",
        nr: libc::SYS_clone,
        when: &[Cond::Masked(0, CLONE_NEWUSER, CLONE_NEWUSER)],
        why: "a user namespace hands back every capability",
    },
    // Executing what Landlock never saw as a file.
    Block {
        syscall: "execveat",
        nr: libc::SYS_execveat,
        when: &[Cond::Masked(4, AT_EMPTY_PATH, AT_EMPTY_PATH)],
        why: "executing a descriptor rather than a path",
    },
    // Filters of the child's own.
    Block {
        syscall: "seccomp",
        nr: libc::SYS_seccomp,
        when: &[Cond::Eq(0, SECCOMP_SET_MODE_FILTER)],
        why: "stacking a filter of the child's own",
    },
    Block {
        syscall: "prctl",
        nr: libc::SYS_prctl,
        when: &[
            Cond::Eq(0, PR_SET_SECCOMP),
            Cond::Eq(1, SECCOMP_MODE_FILTER),
        ],
        why: "stacking a filter of the child's own",
    },
    // Typing into the terminal the sandbox was started from.
    Block {
        syscall: "ioctl",
        nr: libc::SYS_ioctl,
        when: &[Cond::Eq(1, libc::TIOCSTI)],
        why: "injecting keystrokes into the caller's terminal",
    },
    Block {
        syscall: "ioctl",
        nr: libc::SYS_ioctl,
        when: &[Cond::Eq(1, libc::TIOCLINUX)],
        why: "console control, including keystroke injection",
    },
    // The host kernel itself (CAP_SYS_MODULE/CAP_SYS_BOOT are gone too).
    always(
        "init_module",
        libc::SYS_init_module,
        "loading kernel modules",
    ),
    always(
        "finit_module",
        libc::SYS_finit_module,
        "loading kernel modules",
    ),
    always(
        "delete_module",
        libc::SYS_delete_module,
        "unloading kernel modules",
    ),
    always(
        "kexec_load",
        libc::SYS_kexec_load,
        "replacing the running kernel",
    ),
    always(
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        "replacing the running kernel",
    ),
];

/// Why the filters could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter")]
pub struct BuildSeccompError(#[source] seccompiler::BackendError);

/// Why a filter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the {which} seccomp filter")]
pub struct InstallSeccompError {
    which: &'static str,
    #[source]
    source: seccompiler::Error,
}

/// The two compiled programs, ready to install.
#[derive(Debug, Clone)]
pub struct Filters {
    pub prelude: BpfProgram,
    pub main: BpfProgram,
}

/// Compiles [`BLOCKED`] and the prelude. Pure.
pub fn compile_filters() -> Result<Filters, BuildSeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for block in BLOCKED {
        let conditions = block
            .when
            .iter()
            .map(|cond| {
                let (arg, op, value) = match *cond {
                    Cond::Eq(arg, value) => (arg, SeccompCmpOp::Eq, value),
                    Cond::Ne(arg, value) => (arg, SeccompCmpOp::Ne, value),
                    Cond::Masked(arg, mask, value) => (arg, SeccompCmpOp::MaskedEq(mask), value),
                };
                SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildSeccompError)?;
        let chain = rules.entry(block.nr).or_default();
        if !conditions.is_empty() {
            chain.push(SeccompRule::new(conditions).map_err(BuildSeccompError)?);
        }
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(BuildSeccompError)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(BuildSeccompError)?;
    let main: BpfProgram = filter.try_into().map_err(BuildSeccompError)?;
    Ok(Filters {
        prelude: prelude(),
        main,
    })
}

/// Installs the prelude, then the main filter. Sets `no_new_privs` first
/// (seccompiler does so), which the kernel requires of an unprivileged caller.
pub fn install_filters(filters: &Filters) -> Result<(), InstallSeccompError> {
    seccompiler::apply_filter(&filters.prelude).map_err(|source| InstallSeccompError {
        which: "prelude",
        source,
    })?;
    seccompiler::apply_filter(&filters.main).map_err(|source| InstallSeccompError {
        which: "main",
        source,
    })
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn prelude() -> BpfProgram {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
    };
    vec![
        // Foreign architecture (i386 via int 0x80): kill.
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_NR),
        // x32 numbers: EPERM.
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        // clone3: ENOSYS, so libc retries with clone.
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ]
}

/// The filter that hands every `connect(2)` to the supervisor (a
/// user-notification listener, [`crate::proxy::connects`]): it records who
/// connects to the proxy, which the kernel cannot let another process
/// fake by handing the socket on. Everything else is allowed here (the
/// other filters decide).
pub fn connect_notify_program() -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW};
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), // the prelude kills it
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_NR),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_connect as u32, 0, 1),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_USER_NOTIF),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_compiles_into_both_filters() {
        let filters = compile_filters().unwrap();
        assert_eq!(filters.prelude.len(), 9);
        assert!(filters.main.len() > BLOCKED.len());
    }

    #[test]
    fn table_covers_the_reference_list() {
        let names: Vec<&str> = BLOCKED.iter().map(|b| b.syscall).collect();
        for required in [
            "memfd_create",
            "memfd_secret",
            "fanotify_init",
            "ptrace",
            "bpf",
            "process_vm_readv",
            "process_vm_writev",
            "pidfd_open",
            "pidfd_getfd",
            "pidfd_send_signal",
            "io_uring_setup",
            "mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "setns",
            "umount2",
            "pivot_root",
            "userfaultfd",
            "perf_event_open",
            "execveat",
            "unshare",
            "clone",
            "seccomp",
            "keyctl",
            "kexec_load",
            "init_module",
        ] {
            assert!(names.contains(&required), "{required} missing from BLOCKED");
        }
    }

    #[test]
    fn every_row_names_its_syscall_number_consistently() {
        let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
        for block in BLOCKED {
            let nr = *by_name.entry(block.syscall).or_insert(block.nr);
            assert_eq!(nr, block.nr, "{} has two numbers", block.syscall);
            assert!(!block.why.is_empty());
        }
    }

    #[test]
    fn unconditional_and_conditional_rows_never_mix_for_one_syscall() {
        // seccompiler treats an empty rule chain as "always"; a conditional row
        // for the same syscall would silently narrow it.
        let mut kinds: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for block in BLOCKED {
            let entry = kinds.entry(block.syscall).or_default();
            if block.when.is_empty() {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
        for (name, (always, conditional)) in kinds {
            assert!(!(always && conditional), "{name} mixes row kinds");
        }
    }
}
