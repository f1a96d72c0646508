// berth's runtime-default seccomp profile: the same filter, in effect, as the default
// profile containerd's CRI plugin (contrib/seccomp) and Docker (profiles/seccomp) apply.
// The default action refuses a system call with EPERM; a large allow list covers what
// ordinary programs use; a few calls are allowed only when the container holds the
// capability that makes them meaningful (mount/unshare/setns need CAP_SYS_ADMIN, ptrace
// helpers CAP_SYS_PTRACE, module loading CAP_SYS_MODULE, ...); without CAP_SYS_ADMIN,
// clone is allowed only without namespace flags and clone3 answers ENOSYS so libc falls
// back to clone, where the flags can be checked.
//
// System calls the installed libseccomp does not know are skipped by runc, so the list
// names calls of every supported architecture and kernel.

import { release } from "node:os";
import type { Seccomp, SeccompSyscall } from "./spec.js";

/** Allowed for everyone, without argument checks. */
const ALWAYS_ALLOWED = `
  accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
  clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
  clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
  dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
  epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
  fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
  fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
  fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
  futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
  geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid
  getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list
  getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32
  getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
  io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
  io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset
  landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek
  lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore
  mkdir mkdirat mknod mknodat mlock mlock2 mlockall map_shadow_stack mmap mmap2 mprotect
  mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
  mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
  name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
  pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
  pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
  pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
  remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
  rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
  rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
  sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
  sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
  sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
  sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
  setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
  setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
  set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
  sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
  statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
  timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
  timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
  times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
  utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`
  .trim()
  .split(/\s+/);

const EPERM = 1;
const ENOSYS = 38;
const AF_ALG = 38;
const AF_VSOCK = 40;
/** CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** personality(2) personas a container may switch to: Linux, and the 32-bit/uname26 variants, and a query. */
const ALLOWED_PERSONAS = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff];

/** Extra calls that come with a capability in the container's bounding set. */
const BY_CAPABILITY: Record<string, string[]> = {
  CAP_DAC_READ_SEARCH: ["open_by_handle_at"],
  CAP_SYS_ADMIN: [
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
  ],
  CAP_SYS_BOOT: ["reboot"],
  CAP_SYS_CHROOT: ["chroot"],
  CAP_SYS_MODULE: ["delete_module", "init_module", "finit_module"],
  CAP_SYS_PACCT: ["acct"],
  CAP_SYS_PTRACE: ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
  CAP_SYS_RAWIO: ["iopl", "ioperm"],
  CAP_SYS_TIME: ["settimeofday", "stime", "clock_settime", "clock_settime64"],
  CAP_SYS_TTY_CONFIG: ["vhangup"],
  CAP_SYS_NICE: ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
  CAP_SYSLOG: ["syslog"],
  CAP_BPF: ["bpf"],
  CAP_PERFMON: ["perf_event_open"],
};

/** Extra calls per Node.js `process.arch`. */
const BY_ARCH: Record<string, string[]> = {
  x64: ["arch_prctl", "modify_ldt"],
  ia32: ["modify_ldt"],
  arm: ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
  arm64: ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
  ppc64: ["sync_file_range2", "swapcontext"],
  s390x: ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
  riscv64: ["riscv_flush_icache"],
};

/** libseccomp architecture names the filter covers per Node.js `process.arch` (native plus compat ABIs). */
const ARCHITECTURES: Record<string, string[]> = {
  x64: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  ia32: ["SCMP_ARCH_X86"],
  arm64: ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
  arm: ["SCMP_ARCH_ARM"],
  s390x: ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
  riscv64: ["SCMP_ARCH_RISCV64"],
  ppc64: ["SCMP_ARCH_PPC64LE"],
};

/** The native ABI alone, per Node.js `process.arch`. */
const NATIVE_ARCHITECTURE: Record<string, string> = {
  x64: "SCMP_ARCH_X86_64",
  ia32: "SCMP_ARCH_X86",
  arm64: "SCMP_ARCH_AARCH64",
  arm: "SCMP_ARCH_ARM",
  s390x: "SCMP_ARCH_S390X",
  riscv64: "SCMP_ARCH_RISCV64",
  ppc64: "SCMP_ARCH_PPC64LE",
};

function nativeArchitectures(arch: string): string[] {
  const native = NATIVE_ARCHITECTURE[arch];
  return native ? [native] : [];
}

export interface DefaultProfileOptions {
  /** The container's bounding capabilities (with CAP_ prefix). */
  capabilities: readonly string[];
  /** Node.js-style architecture name; defaults to this machine's. */
  arch?: string;
  /** Kernel release (uname -r); ptrace and process_vm_* are allowed on 4.8 and later. */
  kernelRelease?: string;
  /**
   * Cover the native ABI only (e.g. x86_64 without i386 and x32): syscalls of the other ABIs
   * are then refused outright (libseccomp's bad-arch action kills). For a process known to be
   * native, such as the pod's pause; runc compiles one BPF section per ABI, so this also
   * makes the filter cheaper to build and to load.
   */
  nativeArchOnly?: boolean;
}

function kernelAtLeast(releaseText: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(releaseText);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

const allow = (names: string[]): SeccompSyscall => ({ names, action: "SCMP_ACT_ALLOW" });

/** The runtime-default profile for a container with the given capabilities. */
export function defaultSeccompProfile(opts: DefaultProfileOptions): Seccomp {
  const arch = opts.arch ?? process.arch;
  const syscalls: SeccompSyscall[] = [allow([...ALWAYS_ALLOWED])];

  // socket(2) for every address family except AF_ALG (kernel crypto API) and AF_VSOCK
  // (host/VM sockets). Three single-condition rules: runc turns several conditions on
  // the same argument into separate rules (an OR), so "!= ALG && != VSOCK" cannot be
  // written as one rule. socketcall(2) ABIs are covered by the unconditional allow.
  syscalls.push({
    names: ["socket"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: AF_ALG, op: "SCMP_CMP_LT" }],
  });
  syscalls.push({
    names: ["socket"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: AF_ALG + 1, op: "SCMP_CMP_EQ" }],
  });
  syscalls.push({
    names: ["socket"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: AF_VSOCK, op: "SCMP_CMP_GT" }],
  });

  for (const persona of ALLOWED_PERSONAS) {
    syscalls.push({
      names: ["personality"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: persona, op: "SCMP_CMP_EQ" }],
    });
  }

  if (kernelAtLeast(opts.kernelRelease ?? release(), 4, 8)) {
    // Before 4.8 seccomp could be bypassed with ptrace, so it is only allowed after.
    syscalls.push(allow(["process_vm_readv", "process_vm_writev", "ptrace"]));
  }

  const archCalls = BY_ARCH[arch];
  if (archCalls) syscalls.push(allow([...archCalls]));

  for (const cap of opts.capabilities) {
    const extra = BY_CAPABILITY[cap];
    if (extra) syscalls.push(allow([...extra]));
  }

  if (!opts.capabilities.includes("CAP_SYS_ADMIN")) {
    // clone without namespace flags; on s390 the flags are the second argument.
    const index = arch === "s390x" ? 1 : 0;
    syscalls.push({
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
    });
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc use clone.
    syscalls.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
  }

  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: EPERM,
    architectures: opts.nativeArchOnly ? nativeArchitectures(arch) : [...(ARCHITECTURES[arch] ?? [])],
    syscalls,
  };
}
