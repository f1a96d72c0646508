// The start-up sweep's decision (src/cri/orphans.ts): which leftovers no record owns, over
// fake listings of the host. The removal itself is tested end to end (test/e2e/cri-orphans.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { findOrphans, mountOwnerId, type HostListing, type Orphan } from "../../../src/cri/orphans.js";
import { atomicTempWriter } from "../../../src/util/atomic-write.js";

const S = "/run/berth";
const id = (c: string) => c.repeat(64);
const P = id("a"); // a recorded pod
const C = id("b"); // a recorded container of P
const X = id("c"); // ids no record has
const Y = id("d");
const F = id("e"); // another berthd's (nothing of it in this state dir)

/** A host where pod P with container C runs and everything is owned. */
function host(extra: Partial<HostListing> = {}): HostListing {
  const base: HostListing = {
    pods: new Set([P]),
    containers: new Set([C]),
    stateDir: S,
    netns: [{ name: P, path: `${S}/netns/${P}`, mounted: true }],
    networkStates: [{ podId: P, phase: "ready" }],
    bundles: [P, C],
    ioDirs: [C],
    podDirs: [P],
    mounts: [`${S}/netns/${P}`, `${S}/pods/${P}/shm`, `${S}/bundles/${C}/rootfs`],
    allocations: [{ path: `/ipam/net/10.0.0.2`, network: "net", ip: "10.0.0.2", containerId: P }],
    cgroups: [{ path: `/berth/${P}` }, { path: `/berth/${P}/${P}` }, { path: `/berth/${P}/${C}` }],
    temps: [],
  };
  return {
    ...base,
    ...extra,
    netns: [...base.netns, ...(extra.netns ?? [])],
    networkStates: [...base.networkStates, ...(extra.networkStates ?? [])],
    bundles: [...base.bundles, ...(extra.bundles ?? [])],
    ioDirs: [...base.ioDirs, ...(extra.ioDirs ?? [])],
    podDirs: [...base.podDirs, ...(extra.podDirs ?? [])],
    mounts: [...base.mounts, ...(extra.mounts ?? [])],
    allocations: [...base.allocations, ...(extra.allocations ?? [])],
    cgroups: [...base.cgroups, ...(extra.cgroups ?? [])],
    temps: [...base.temps, ...(extra.temps ?? [])],
  };
}

/** kind:id[:path] of each orphan, in the decided order. */
const brief = (os: Orphan[]) =>
  os.map(
    (o) => `${o.kind}:${o.id.slice(0, 1)}${"path" in o ? `:${o.path.replaceAll(/([0-9a-f])\1{63}/g, "$1")}` : ""}`,
  );

test("a host where every thing has its record: nothing is an orphan", () => {
  assert.deepEqual(findOrphans(host()), []);
});

test("a recorded pod keeps its network whatever its phase, even an unmounted netns file", () => {
  // Phases are not in the listing at all: a record is a record (a create being retried, a
  // stopped pod); NetworkManager.recover decides about the networks of recorded pods.
  const l = host({ pods: new Set([P, X]), netns: [{ name: X, path: `${S}/netns/${X}`, mounted: false }] });
  l.networkStates.push({ podId: X, phase: "setting-up" });
  assert.deepEqual(findOrphans(l), []);
});

const cases: { name: string; extra: Partial<HostListing>; want: string[] }[] = [
  {
    name: "an empty netns file (a kill between creating it and mounting the namespace)",
    extra: { netns: [{ name: X, path: `${S}/netns/${X}`, mounted: false }] },
    want: ["network:c"],
  },
  {
    name: "a mounted netns with no record (its mount goes with the network, not as a mount)",
    extra: { netns: [{ name: X, path: `${S}/netns/${X}`, mounted: true }], mounts: [`${S}/netns/${X}`] },
    want: ["network:c"],
  },
  {
    name: "a network state record alone, and one with its netns: one teardown each",
    extra: {
      networkStates: [
        { podId: X, phase: "setting-up" },
        { podId: Y, phase: "ready" },
      ],
      netns: [{ name: Y, path: `${S}/netns/${Y}`, mounted: true }],
    },
    want: ["network:c", "network:d"],
  },
  {
    name: "a container's bundle, io dir and rootfs mount with no record (its pod still recorded)",
    extra: { bundles: [X], ioDirs: [X], mounts: [`${S}/bundles/${X}/rootfs`] },
    want: [`mount:c:${S}/bundles/c/rootfs`, `bundle:c:${S}/bundles/c`, `io:c:${S}/io/c`],
  },
  {
    name: "mounts are unmounted deepest first (an image volume inside a rootfs' bundle)",
    extra: {
      bundles: [X],
      mounts: [`${S}/bundles/${X}/rootfs`, `${S}/bundles/${X}/image-volumes/0`, `${S}/bundles/${X}/rootfs`],
    },
    want: [`mount:c:${S}/bundles/c/image-volumes/0`, `mount:c:${S}/bundles/c/rootfs`, `bundle:c:${S}/bundles/c`],
  },
  {
    name: "a pod dir with its /dev/shm still mounted",
    extra: { podDirs: [X], mounts: [`${S}/pods/${X}/shm`] },
    want: [`mount:c:${S}/pods/c/shm`, `pod-dir:c:${S}/pods/c`],
  },
  {
    name: "a pod dir named after a container is still an orphan: only pod records own pod dirs",
    extra: { podDirs: [C] },
    want: [`pod-dir:b:${S}/pods/b`],
  },
  {
    name: "mounts outside the per-id dirs are never berth's to judge",
    extra: {
      mounts: [`${S}/bundles`, `${S}/shim/x`, `${S}`, `/var/lib/berth/snapshots`, `${S}2/bundles/${X}/rootfs`],
    },
    want: [],
  },
  {
    name: "a record-less pod cgroup this state dir names is ours; its children go with it",
    extra: { podDirs: [X], cgroups: [{ path: `/berth/${X}` }, { path: `/berth/${X}/${X}` }] },
    want: [`cgroup:c:/berth/c`, `pod-dir:c:${S}/pods/c`],
  },
  {
    name: "a record-less pod cgroup nothing here names may be another berthd's: left",
    extra: { cgroups: [{ path: `/berth/${F}` }, { path: `/berth/${F}/${F}` }] },
    want: [],
  },
  {
    name: "below a recorded pod, a child cgroup no container record owns",
    extra: { cgroups: [{ path: `/berth/${P}/${X}` }] },
    want: [`cgroup:c:/berth/a/c`],
  },
  {
    name: "an IP allocation for a pod this state dir names (an empty netns file), with its netns",
    extra: {
      netns: [{ name: X, path: `${S}/netns/${X}`, mounted: false }],
      allocations: [{ path: `/ipam/net/10.0.0.3`, network: "net", ip: "10.0.0.3", containerId: X }],
    },
    want: ["network:c", "ip:c"],
  },
  {
    name: "an IP allocation for an id nothing here names (another runtime's, same network): left",
    extra: { allocations: [{ path: `/ipam/net/10.0.0.4`, network: "net", ip: "10.0.0.4", containerId: F }] },
    want: [],
  },
  {
    name: "interrupted atomic writes: a recorded pod's network record, a live bundle's spec",
    extra: {
      temps: [
        { id: P, path: `/var/lib/berth/network/pods/.${P}.json.77.a30a1da53c6c.tmp` },
        { id: C, path: `${S}/bundles/${C}/.config.json.77.a30a1da53c6c.tmp` },
      ],
    },
    want: [
      `temp:a:/var/lib/berth/network/pods/.a.json.77.a30a1da53c6c.tmp`,
      `temp:b:${S}/bundles/b/.config.json.77.a30a1da53c6c.tmp`,
    ],
  },
  {
    name: "an interrupted write inside a bundle that goes anyway goes with it",
    extra: { bundles: [X], temps: [{ id: X, path: `${S}/bundles/${X}/.config.json.77.a30a1da53c6c.tmp` }] },
    want: [`bundle:c:${S}/bundles/c`],
  },
];

for (const c of cases) {
  test(`orphan: ${c.name}`, () => {
    assert.deepEqual(brief(findOrphans(host(c.extra))), c.want);
  });
}

test("everything at once comes out in removal order: mounts, cgroups, networks, IPs, temporary files, dirs", () => {
  const l = host({
    netns: [{ name: X, path: `${S}/netns/${X}`, mounted: false }],
    bundles: [Y],
    ioDirs: [Y],
    podDirs: [X],
    mounts: [`${S}/bundles/${Y}/rootfs`, `${S}/pods/${X}/shm`],
    allocations: [{ path: `/ipam/net/10.0.0.3`, network: "net", ip: "10.0.0.3", containerId: X }],
    cgroups: [{ path: `/berth/${X}` }],
    temps: [{ id: P, path: `/var/lib/berth/network/pods/.${P}.json.77.a30a1da53c6c.tmp` }],
  });
  const kinds = findOrphans(l).map((o) => o.kind);
  assert.deepEqual(kinds, ["mount", "mount", "cgroup", "network", "ip", "temp", "bundle", "io", "pod-dir"]);
});

test("mountOwnerId: only <state>/<per-id dir>/<id>/..., whatever the trailing slash", () => {
  assert.deepEqual(mountOwnerId(S, `${S}/bundles/${X}/rootfs`), { dir: "bundles", id: X });
  assert.deepEqual(mountOwnerId(`${S}/`, `${S}/pods/${X}/shm`), { dir: "pods", id: X });
  assert.equal(mountOwnerId(S, `${S}/bundles`), undefined);
  assert.equal(mountOwnerId(S, `${S}2/bundles/${X}`), undefined);
  assert.equal(mountOwnerId(S, `${S}/runtime/${X}`), undefined);
});

test("atomicTempWriter: the writer's pid from an atomic write's temporary name, nothing else", () => {
  assert.equal(atomicTempWriter(`.${P}.json.25720.a30a1da53c6c.tmp`), 25720);
  assert.equal(atomicTempWriter(".config.json.7.000000000000.tmp"), 7);
  for (const n of [`${P}.json`, "config.json", ".config.json.tmp", "x.25720.a30a1da53c6c.tmp", ".a.b.c.tmp"])
    assert.equal(atomicTempWriter(n), undefined, n);
});
