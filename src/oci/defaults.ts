// Defaults shared by sandbox and container specs.

/** The PATH a process gets when neither the image nor the CRI sets one (containerd's default). */
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** /proc and /sys entries hidden from non-privileged containers (containerd's and kubelet's defaults). */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
  "/proc/scsi",
];

/** /proc entries mounted read-only in non-privileged containers. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** The size of a pod's /dev/shm tmpfs (containerd's defaultShmSize). */
export const DEFAULT_SHM_SIZE_BYTES = 64 * 1024 * 1024;

/** containerd's defaultSandboxOOMAdj: the pause process is nearly the last to be OOM-killed. */
export const SANDBOX_OOM_SCORE_ADJ = -998;

/** containerd's DefaultSandboxCPUshares. */
export const SANDBOX_CPU_SHARES = 2;

/** The user of the pause image (65535:65535), kept for berth's built-in sandbox process. */
export const SANDBOX_DEFAULT_UID = 65535;
export const SANDBOX_DEFAULT_GID = 65535;
