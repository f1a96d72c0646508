// The fixture of the spec generation tests: host facts like the test machine's, a rootfs with
// /etc/passwd and /etc/group (set up before and removed after the importing file's tests),
// the pod's shared files, and build() for a container spec with defaults.

import assert from "node:assert/strict";
import { before, after } from "node:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContainerConfig, PodSandboxConfig } from "../../../../src/gen/cri/runtime/v1/api.js";
import { InvalidArgumentError } from "../../../../src/util/errors.js";
import type { HostFacts, Spec } from "../../../../src/oci/index.js";
import { buildContainerSpec, type ContainerSpecInput } from "../../../../src/cri/spec/index.js";
import { KNOWN_CAPABILITIES } from "../../../../src/oci/capabilities.js";
import type { ImageRuntimeConfig } from "../../../../src/images/mediatypes.js";

// The images layer's config type is accepted as the image config as it is.
const _imageConfigFits: ContainerSpecInput["image"]["config"] = {} as ImageRuntimeConfig;
void _imageConfigFits;

// The daemon here lacks CAP_SYS_RESOURCE, like the test machine.
export const HOST_CAPS = KNOWN_CAPABILITIES.filter((c) => c !== "CAP_SYS_RESOURCE");
export const host: HostFacts = {
  oomScoreAdj: 0,
  capabilities: HOST_CAPS,
  apparmorEnabled: false,
  cgroupV2: false,
  swapControllerAvailable: true,
  hugetlbAvailable: false,
  kernelRelease: "6.1.0",
  hostname: "node-1",
};

// Live bindings: set by the before() hook below, seen by the importing test files.
export let dir: string;
export let rootfs: string;
export let outside: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-oci-spec-"));
  rootfs = join(dir, "rootfs");
  outside = join(dir, "outside");
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  mkdirSync(outside);
  writeFileSync(
    join(rootfs, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n",
  );
  writeFileSync(
    join(rootfs, "etc/group"),
    "root:x:0:\nalice:x:1001:alice\nbob:x:1002:\ndevs:x:2000:alice,bob\naudio:x:2001:alice\nstaff:x:2002:bob\n",
  );
  for (const f of ["hosts", "hostname", "resolv.conf"]) writeFileSync(join(dir, f), "x\n");
  mkdirSync(join(dir, "shm"));
  writeFileSync(join(outside, "passwd"), "evil:x:4242:4242::/:/bin/sh\n");
});

after(() => rmSync(dir, { recursive: true, force: true }));

export const podPaths = () => ({
  netnsPath: "/var/run/netns/pod",
  ipcPath: "/proc/42/ns/ipc",
  utsPath: "/proc/42/ns/uts",
  pidNamespacePath: "/proc/42/ns/pid",
  resolvConf: join(dir, "resolv.conf"),
  hosts: join(dir, "hosts"),
  hostname: join(dir, "hostname"),
  shm: join(dir, "shm"),
});

export type CtrPartial = Parameters<typeof ContainerConfig.fromPartial>[0];
export type PodPartial = Parameters<typeof PodSandboxConfig.fromPartial>[0];

export function build(
  container: CtrPartial,
  opts: { pod?: PodPartial; image?: ContainerSpecInput["image"]["config"]; extra?: Partial<ContainerSpecInput> } = {},
): Spec {
  return buildContainerSpec({
    id: "c1",
    sandboxId: "s1",
    // The generated CRI types are passed as they are (structural compatibility).
    container: ContainerConfig.fromPartial({ metadata: { name: "app" }, image: { image: "busybox" }, ...container }),
    sandbox: PodSandboxConfig.fromPartial({
      metadata: { name: "pod", namespace: "default", uid: "u-1" },
      hostname: "pod-host",
      linux: { cgroupParent: "/kubepods/pod1" },
      ...opts.pod,
    }),
    image: { name: "docker.io/library/busybox:latest", config: opts.image ?? { Cmd: ["sh"] } },
    rootfsPath: rootfs,
    podPaths: podPaths(),
    host,
    ...(opts.extra as object),
  });
}

export function expectInvalid(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.match((err as Error).message, re);
    return true;
  });
}
