// The suite-wide leak audit (scripts/leak-audit.mjs, run by `npm test` before and after a full
// run) must see each kind of leftover it promises to report, and stop seeing it once removed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const auditUrl = new URL("../../../scripts/leak-audit.mjs", import.meta.url).href;
const { audit } = (await import(auditUrl)) as { audit: () => string[] };

const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: "ignore" });

test("the audit reports a test's leftover mount, bridge, iptables rule, cgroup and temp dir, and forgets them once removed", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-audit-"));
  const mnt = join(dir, "m");
  mkdirSync(mnt);
  const link = `berthaud${process.pid % 10000}`;
  const chain = `BERTH-AUDIT-${process.pid}`;
  const cg = `/sys/fs/cgroup/pids/berth-audit-${process.pid}`;
  const cleanup = () => {
    for (const c of [
      () => run("umount", mnt),
      () => run("ip", "link", "del", link),
      () => run("iptables", "-F", chain),
      () => run("iptables", "-X", chain),
      () => rmdirSync(join(cg, "leaf")),
      () => rmdirSync(cg),
    ])
      try {
        c();
      } catch {
        // already gone
      }
    rmSync(dir, { recursive: true, force: true });
  };
  t.after(cleanup);

  run("mount", "-t", "tmpfs", "tmpfs", mnt);
  run("ip", "link", "add", link, "type", "bridge");
  run("iptables", "-N", chain);
  run("iptables", "-A", chain, "-s", "10.237.99.0/24", "-j", "RETURN");
  mkdirSync(join(cg, "leaf"), { recursive: true });

  const found = audit();
  const expected = [
    `mount ${mnt}`,
    `link ${link}`,
    `iptables -A ${chain} -s 10.237.99.0/24 -j RETURN`,
    `cgroup ${cg}/leaf`,
    `temp ${dir}`,
  ];
  for (const e of expected) assert.ok(found.includes(e), `audit misses "${e}"; it found:\n${found.join("\n")}`);

  cleanup();
  const after = audit();
  for (const e of expected) assert.ok(!after.includes(e), `audit still reports "${e}" after cleanup`);
});
