// The text of berth's default AppArmor profile, equivalent in its rules to containerd's
// (contrib/apparmor), which itself follows Docker's docker-default: everything a normal
// process does is allowed except writes into the kernel's knobs under /proc and /sys,
// mount, and reading firmware, kcore and the security fs. Signals and ptrace are allowed
// among the container's own processes, and from the host, runc and the daemon.

export const DEFAULT_APPARMOR_PROFILE = "berth-default";

/** What the profile text depends on, found on the host by appArmorProfileData. */
export interface AppArmorProfileData {
  name: string;
  /** "abi/3.0" where the host's policy has it (/etc/apparmor.d/abi/3.0). */
  abi?: string;
  /** The tunables include, or a @{PROC} definition where the host has no tunables. */
  imports: string[];
  /** The base abstraction, where the host has it. */
  innerImports: string[];
  /** The daemon's own profile: it sends the container's stop signals. */
  daemonProfile: string;
}

export interface ProfileHostFiles {
  /** /etc/apparmor.d/<rel> exists. */
  macroExists(rel: string): boolean;
  /** The daemon's label, /proc/self/attr/current; "" when unreadable. */
  currentLabel(): string;
}

/** The daemon's profile name from its label "name (mode)", "unconfined" when none. */
export function profileNameOfLabel(label: string): string {
  const text = label.trim();
  const cut = text.indexOf(" (");
  const name = cut >= 0 ? text.slice(0, cut) : text;
  return name === "" ? "unconfined" : name;
}

export function appArmorProfileData(name: string, files: ProfileHostFiles): AppArmorProfileData {
  return {
    name,
    abi: files.macroExists("abi/3.0") ? "abi/3.0" : undefined,
    imports: files.macroExists("tunables/global") ? ["#include <tunables/global>"] : ["@{PROC}=/proc/"],
    innerImports: files.macroExists("abstractions/base") ? ["#include <abstractions/base>"] : [],
    daemonProfile: profileNameOfLabel(files.currentLabel()),
  };
}

// Names go into the policy language unquoted: refuse anything that could end a rule.
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

export function renderAppArmorProfile(p: AppArmorProfileData): string {
  for (const n of [p.name, p.daemonProfile]) {
    if (!SAFE_NAME.test(n))
      throw new Error(`apparmor profile name ${JSON.stringify(n)} cannot be written into a policy`);
  }
  const lines: string[] = [];
  if (p.abi) lines.push(`abi <${p.abi}>,`);
  lines.push(...p.imports, "");
  lines.push(`profile ${p.name} flags=(attach_disconnected,mediate_deleted) {`);
  for (const i of p.innerImports) lines.push(`  ${i}`);
  lines.push(
    "  network,",
    "  capability,",
    "  file,",
    "  umount,",
    // Who may signal the container: the host's unconfined processes, the OCI runtimes,
    // the daemon (which may itself be confined), and the container's own processes.
    "  signal (receive) peer=unconfined,",
    "  signal (receive) peer=runc,",
    "  signal (receive) peer=crun,",
    `  signal (receive) peer=${p.daemonProfile},`,
    `  signal (send,receive) peer=${p.name},`,
    "",
    // No writes to files directly in /proc, nor below /proc/<not a pid>/ except /proc/sys,
    // nor below /proc/sys except kernel/shm* (the IPC knobs a pod may own).
    "  deny @{PROC}/* w,",
    "  deny @{PROC}/{[^1-9/],[^1-9/][^0-9/],[^1-9s/][^0-9y/][^0-9s/],[^1-9/][^0-9/][^0-9/][^0-9/]*}/** w,",
    "  deny @{PROC}/sys/[^k]** w,",
    "  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
    "  deny @{PROC}/sysrq-trigger rwklx,",
    "  deny @{PROC}/kcore rwklx,",
    "",
    "  deny mount,",
    "",
    // /sys is read-only except the cgroup tree; firmware, powercap and securityfs unreadable.
    "  deny /sys/[^f]*/** wklx,",
    "  deny /sys/f[^s]*/** wklx,",
    "  deny /sys/fs/[^c]*/** wklx,",
    "  deny /sys/fs/c[^g]*/** wklx,",
    "  deny /sys/fs/cg[^r]*/** wklx,",
    "  deny /sys/firmware/** rwklx,",
    "  deny /sys/devices/virtual/powercap/** rwklx,",
    "  deny /sys/kernel/security/** rwklx,",
    "",
    // The container's processes may trace each other where yama and the rest allow it.
    `  ptrace (trace,tracedby,read,readby) peer=${p.name},`,
    "}",
    "",
  );
  return lines.join("\n");
}
