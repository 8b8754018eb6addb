/* Hostile probes for the escape suite. `hostile NAME` makes one attempt and
 * prints `NAME: ok` when the call succeeded or `NAME: errno=N` when it
 * failed. The test decides which outcome is an escape. Raw syscall()s are
 * used on purpose: libc wrappers may refuse early or take another path. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <unistd.h>

static int report(const char *name, long rc) {
    if (rc < 0) {
        printf("%s: errno=%d\n", name, errno);
    } else {
        printf("%s: ok\n", name);
    }
    return 0;
}

static pid_t sleeper(void) {
    pid_t pid = fork();
    if (pid == 0) {
        pause();
        _exit(0);
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: hostile NAME\n");
        return 2;
    }
    const char *n = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);

    if (!strcmp(n, "packet"))
        return report(n, syscall(SYS_socket, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    if (!strcmp(n, "packet_high_bits"))
        /* The kernel reads an int; junk in the upper half must not dodge the filter. */
        return report(n, syscall(SYS_socket, (1L << 32) | AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    if (!strcmp(n, "raw_inet"))
        return report(n, syscall(SYS_socket, AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(n, "raw_inet6"))
        return report(n, syscall(SYS_socket, AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
    if (!strcmp(n, "netlink_audit"))
        return report(n, syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_AUDIT));
    if (!strcmp(n, "netlink_uevent"))
        return report(n, syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT));
    if (!strcmp(n, "netlink_route"))
        return report(n, syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
    if (!strcmp(n, "vsock"))
        return report(n, syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0));
    if (!strcmp(n, "ptrace_init"))
        return report(n, syscall(SYS_ptrace, PTRACE_ATTACH, 1, 0, 0));
    if (!strcmp(n, "ptrace_child")) {
        pid_t child = sleeper();
        long rc = syscall(SYS_ptrace, PTRACE_ATTACH, child, 0, 0);
        kill(child, SIGKILL);
        return report(n, rc);
    }
    if (!strcmp(n, "ptrace_traceme"))
        return report(n, syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0));
    if (!strcmp(n, "vm_read_child")) {
        static char secret[16] = "child-secret";
        char buf[16];
        pid_t child = sleeper();
        struct iovec local = {buf, sizeof buf}, remote = {secret, sizeof secret};
        long rc = syscall(SYS_process_vm_readv, child, &local, 1, &remote, 1, 0);
        kill(child, SIGKILL);
        return report(n, rc);
    }
    if (!strcmp(n, "proc_mem_init")) {
        int fd = open("/proc/1/mem", O_RDONLY);
        return report(n, fd);
    }
    if (!strcmp(n, "unshare_user"))
        return report(n, syscall(SYS_unshare, CLONE_NEWUSER));
    if (!strcmp(n, "unshare_user_high_bits"))
        return report(n, syscall(SYS_unshare, (1L << 40) | CLONE_NEWUSER));
    if (!strcmp(n, "unshare_net"))
        return report(n, syscall(SYS_unshare, CLONE_NEWNET));
    if (!strcmp(n, "clone_user")) {
        long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (rc == 0) _exit(0);
        if (rc > 0) waitpid(rc, NULL, 0);
        return report(n, rc);
    }
    if (!strcmp(n, "clone3")) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_NEWUSER;
        args.exit_signal = SIGCHLD;
        long rc = syscall(SYS_clone3, &args, sizeof args);
        if (rc == 0) _exit(0);
        if (rc > 0) waitpid(rc, NULL, 0);
        return report(n, rc);
    }
    if (!strcmp(n, "setns"))
        return report(n, syscall(SYS_setns, 0, 0));
    if (!strcmp(n, "mount_tmpfs"))
        return report(n, syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0));
    if (!strcmp(n, "umount_sandbox"))
        return report(n, syscall(SYS_umount2, "/sandbox", MNT_DETACH));
    if (!strcmp(n, "fsopen"))
        return report(n, syscall(SYS_fsopen, "tmpfs", 0));
    if (!strcmp(n, "open_tree"))
        return report(n, syscall(SYS_open_tree, AT_FDCWD, "/usr", 1 /* OPEN_TREE_CLONE */));
    if (!strcmp(n, "chroot"))
        return report(n, syscall(SYS_chroot, "/tmp"));
    if (!strcmp(n, "bpf")) {
        struct bpf_insn prog[] = {
            {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
            {.code = BPF_JMP | BPF_EXIT},
        };
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
        attr.insns = (uintptr_t)prog;
        attr.insn_cnt = 2;
        attr.license = (uintptr_t) "GPL";
        return report(n, syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
    }
    if (!strcmp(n, "io_uring")) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        return report(n, syscall(SYS_io_uring_setup, 4, &params));
    }
    if (!strcmp(n, "memfd"))
        return report(n, syscall(SYS_memfd_create, "payload", 0));
    if (!strcmp(n, "execveat_fd")) {
        int fd = open("/usr/bin/true", O_PATH);
        char *args[] = {"true", NULL};
        char *env[] = {NULL};
        return report(n, syscall(SYS_execveat, fd, "", args, env, AT_EMPTY_PATH));
    }
    if (!strcmp(n, "keyctl"))
        return report(n, syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0));
    if (!strcmp(n, "finit_module"))
        return report(n, syscall(SYS_finit_module, -1, "", 0));
    if (!strcmp(n, "kexec_load"))
        return report(n, syscall(SYS_kexec_load, 0, 0, 0, 0));
    if (!strcmp(n, "memfd_secret"))
        return report(n, syscall(447 /* SYS_memfd_secret */, 0));
    if (!strcmp(n, "fanotify_init"))
        /* FAN_REPORT_FID: allowed to unprivileged users since Linux 5.13 */
        return report(n, syscall(SYS_fanotify_init, 0x200, 0));
    if (!strcmp(n, "userfaultfd"))
        return report(n, syscall(SYS_userfaultfd, 0));
    if (!strcmp(n, "perf_event_open"))
        return report(n, syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    if (!strcmp(n, "pidfd_open_init"))
        return report(n, syscall(SYS_pidfd_open, 1, 0));
    if (!strcmp(n, "seccomp_filter")) {
        struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        struct sock_fprog prog = {1, allow};
        return report(n, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
    }
    if (!strcmp(n, "tiocsti")) {
        char c = 'x';
        return report(n, syscall(SYS_ioctl, 0, TIOCSTI, &c));
    }
    if (!strcmp(n, "x32_getpid"))
        return report(n, syscall(0x40000000 | SYS_getpid));
    if (!strcmp(n, "i386_int80")) {
        /* getpid through the 32-bit entry point: the filter kills the process. */
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
        return report(n, ret < 0 ? (errno = -ret, -1) : ret);
    }
    if (!strcmp(n, "kill_init"))
        return report(n, syscall(SYS_kill, 1, SIGKILL));
    if (!strcmp(n, "setuid_root"))
        return report(n, syscall(SYS_setuid, 0));
    if (!strcmp(n, "ids")) {
        printf("ids: uid=%d euid=%d\n", getuid(), geteuid());
        return 0;
    }
    if (!strcmp(n, "core")) {
        /* Crash after asking for unlimited core files; none may appear. */
        struct rlimit { unsigned long cur, max; } lim = {~0UL, ~0UL};
        long rc = syscall(SYS_setrlimit, 4 /* RLIMIT_CORE */, &lim);
        report("raise_core_limit", rc);
        raise(SIGSEGV);
        return 0;
    }
    fprintf(stderr, "unknown probe %s\n", n);
    return 2;
}
