// The shim's cgroup priming (src/shim/cgroup-prime.ts): which cgroup.procs file is its own, on
// the layouts a host can have, and the write discipline (one at a time, off for good after a
// failure, the file looked up at each write). The writes here go to a fake.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { OwnCgroupPrimer, ownCgroupProcsFile } from "../../../src/shim/cgroup-prime.js";

const mount = (id: number, root: string, point: string, fstype: string, opts: string) =>
  `${id} 20 0:${id} ${root} ${point} rw,nosuid,nodev,noexec,relatime shared:${id} - ${fstype} cgroup ${opts}`;

// This host's layout: v1 controllers plus an empty unified hierarchy (hybrid).
const HYBRID_MOUNTS = [
  "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw",
  mount(30, "/", "/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"),
  mount(31, "/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
  mount(32, "/", "/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
  mount(33, "/", "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"),
].join("\n");
const HYBRID_SELF = "4:memory:/process_api/abc\n2:name=systemd:/\n1:cpu:/\n0::/berth\n";

describe("ownCgroupProcsFile", () => {
  test("prefers the unified hierarchy on a hybrid host", () => {
    assert.equal(ownCgroupProcsFile(HYBRID_SELF, HYBRID_MOUNTS), "/sys/fs/cgroup/unified/berth/cgroup.procs");
  });

  test("pure cgroup v2: the process's own cgroup under /sys/fs/cgroup", () => {
    const mounts = mount(40, "/", "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot");
    assert.equal(
      ownCgroupProcsFile("0::/system.slice/berthd.service\n", mounts),
      "/sys/fs/cgroup/system.slice/berthd.service/cgroup.procs",
    );
    assert.equal(ownCgroupProcsFile("0::/\n", mounts), "/sys/fs/cgroup/cgroup.procs", "the root cgroup");
  });

  test("v1 only: the first hierarchy of /proc/self/cgroup that is mounted, by its controllers", () => {
    const mounts = [
      mount(30, "/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
      mount(31, "/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
    ].join("\n");
    // rdma is listed first but not mounted; cpu,cpuacct is a co-mounted pair.
    const self = "9:rdma:/\n3:cpu,cpuacct:/pods/p1\n2:memory:/pods/p1\n";
    assert.equal(ownCgroupProcsFile(self, mounts), "/sys/fs/cgroup/cpu,cpuacct/pods/p1/cgroup.procs");
  });

  test("a hierarchy mounted from a subtree (a cgroup namespace) gives paths below its root", () => {
    const mounts = mount(40, "/kubepods/pod1", "/sys/fs/cgroup", "cgroup2", "rw");
    assert.equal(ownCgroupProcsFile("0::/kubepods/pod1/shim\n", mounts), "/sys/fs/cgroup/shim/cgroup.procs");
    assert.equal(ownCgroupProcsFile("0::/kubepods/pod1\n", mounts), "/sys/fs/cgroup/cgroup.procs");
    // a cgroup outside the mounted subtree has no file here
    assert.equal(ownCgroupProcsFile("0::/kubepods/pod10/shim\n", mounts), undefined);
  });

  test("no cgroup filesystem mounted: none", () => {
    assert.equal(ownCgroupProcsFile(HYBRID_SELF, "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw"), undefined);
  });

  test("mount points with escaped characters are decoded", () => {
    const mounts = mount(40, "/", "/sys/fs/cgroup\\040x", "cgroup2", "rw");
    assert.equal(ownCgroupProcsFile("0::/a\n", mounts), "/sys/fs/cgroup x/a/cgroup.procs");
  });
});

/** A write that stays pending until released, recording what was written where. */
function gatedWriter() {
  const writes: { file: string; data: string; release: (err?: Error) => void }[] = [];
  const write = (file: string, data: string) =>
    new Promise<void>((resolve, reject) => {
      writes.push({ file, data, release: (err) => (err ? reject(err) : resolve()) });
    });
  return { writes, write };
}

describe("OwnCgroupPrimer", () => {
  test("writes its own pid; a prime while a write is under way starts none", async () => {
    const w = gatedWriter();
    const p = new OwnCgroupPrimer(() => "/cg/a/cgroup.procs", undefined, w.write);
    const first = p.prime();
    await p.prime();
    await p.prime();
    assert.equal(w.writes.length, 1);
    assert.deepEqual(
      { file: w.writes[0]!.file, data: w.writes[0]!.data },
      { file: "/cg/a/cgroup.procs", data: String(process.pid) },
    );
    w.writes[0]!.release();
    await first;
    const second = p.prime();
    assert.equal(w.writes.length, 2, "the next prime after the write is done writes again");
    w.writes[1]!.release();
    await second;
  });

  test("looks the file up at each write: a process moved elsewhere is not moved back", async () => {
    const w = gatedWriter();
    let where = "/cg/a/cgroup.procs";
    const p = new OwnCgroupPrimer(() => where, undefined, w.write);
    const one = p.prime();
    w.writes[0]!.release();
    await one;
    where = "/cg/b/cgroup.procs";
    const two = p.prime();
    w.writes[1]!.release();
    await two;
    assert.deepEqual(
      w.writes.map((x) => x.file),
      ["/cg/a/cgroup.procs", "/cg/b/cgroup.procs"],
    );
  });

  test("a failed write turns priming off for good and is reported once", async () => {
    const w = gatedWriter();
    const reasons: string[] = [];
    const p = new OwnCgroupPrimer(
      () => "/cg/a/cgroup.procs",
      (why) => reasons.push(why),
      w.write,
    );
    const one = p.prime();
    w.writes[0]!.release(Object.assign(new Error("EBUSY: resource busy"), { code: "EBUSY" }));
    await one; // never rejects
    await p.prime();
    await p.prime();
    assert.equal(w.writes.length, 1, "no write after the failure");
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /writing \/cg\/a\/cgroup\.procs: EBUSY/);
  });

  test("no cgroup file, or a lookup that throws: off, reported once, nothing written", async () => {
    for (const locate of [
      () => undefined,
      () => {
        throw new Error("ENOENT: /proc/self/cgroup");
      },
    ]) {
      // prettier-ignore
      const w = gatedWriter();
      const reasons: string[] = [];
      const p = new OwnCgroupPrimer(locate, (why) => reasons.push(why), w.write);
      await p.prime();
      await p.prime();
      assert.equal(w.writes.length, 0);
      assert.equal(reasons.length, 1, reasons.join("; "));
    }
  });
});
