// `npm run bench -- --compare containerd`: the side-by-side table and RESULTS.md section it
// generates (unit tests on fixed figures), and one --quick run end to end against containerd
// 2.4, containerd 1.6 and berthd, which must give every row for every runtime and leave
// nothing on the host. Figures are not judged: speed is for bench/, never for test asserts.
// The end-to-end run takes about 90 s; BERTH_SKIP_BENCH_TEST=1 skips it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/daemon.js";
import {
  BEGIN,
  END,
  RUNTIMES,
  berthRatio,
  sideRows,
  sideTable,
  replaceSection,
  writeSection,
  type RuntimeResult,
} from "../../bench/lib/compare-report.js";

const run = promisify(execFile);

const labels = { listContainers: 1000, warmReads: 1000, churn: 40, concurrent: [20, 100], smallMiB: 2, bigMiB: 200 };

function result(scale: number): RuntimeResult {
  const samples: Record<string, number[]> = {};
  for (const k of [
    "RunPodSandbox",
    "StopPodSandbox",
    "ContainerStatus",
    "ContainerStatus warm",
    "ListContainers",
    "PullImage big",
  ])
    samples[k] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((x) => x * scale);
  samples["20 pods started at once"] = [1000 * scale];
  const mem = { daemonPssKiB: 40 * 1024 * scale, daemonRssKiB: 60 * 1024 * scale };
  return {
    samples,
    listed: 1000,
    memory: {
      idle: mem,
      "after-churn": mem,
      "pods-20": { ...mem, shimPssKiB: 20 * 1024 * scale, shimProcs: 20 },
      "pods-100": { ...mem, shimPssKiB: 100 * 1024 * scale, shimProcs: 100 },
    },
  };
}

test("side-by-side rows: p50 / p90 per runtime, berth's ratio to containerd 2.4, the floor", () => {
  const floors = {
    runcRunMs: [30],
    runcExecMs: [20],
    runcDeleteMs: [25],
    cniAddMs: [12],
    cniDelMs: [8],
    gzipSmallMs: [15],
    gzipBigMs: [1500],
  };
  const rows = sideRows({ "containerd 2.4": result(2), "containerd 1.6": null, berth: result(1) }, floors, labels);
  const by = (name: string) => rows.find((r) => r.row === name)!;
  assert.deepEqual(by("RunPodSandbox").values.berth, [5, 9]);
  assert.deepEqual(by("RunPodSandbox").values["containerd 2.4"], [10, 18]);
  assert.equal(by("RunPodSandbox").values["containerd 1.6"], null, "a failed runtime has no figures");
  assert.equal(berthRatio(by("RunPodSandbox")), 0.5);
  assert.deepEqual(by("RunPodSandbox").floor, { value: 42, what: "runc run -d + CNI ADD" });
  assert.equal(by("StopContainer").values.berth, null, "a row with no samples is empty, not zero");
  assert.equal(berthRatio(by("StopContainer")), null);
  assert.deepEqual(by("total PSS with 100 pods (daemon + shims)").values.berth, [140]);
  assert.deepEqual(by("daemon PSS after a 40-pod churn").values["containerd 2.4"], [80]);
  // the reads' second timing has rows of its own, from the client's "<read> warm" samples
  assert.deepEqual(by("ContainerStatus, after 1000 more rounds").values.berth, [5, 9]);
  assert.equal(by("Version, after 1000 more rounds").values.berth, null);
  assert.equal(
    sideRows({ berth: result(1) }, floors, { ...labels, warmReads: 0 }).some((r) => r.row.includes("more rounds")),
    false,
    "no second timing, no rows for it",
  );
  for (const want of [
    "RemovePodSandbox",
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "ExecSync `true`",
    "PodSandboxStatus",
    "ListContainers, 1000 containers",
    "ImageStatus",
    "ListImages",
    "PullImage 2 MiB",
    "PullImage 200 MiB",
    "20 pods started at once, wall",
    "100 pods started at once, wall",
    "daemon PSS idle",
    "shims PSS with 20 pods",
    "total PSS with 20 pods (daemon + shims)",
  ])
    assert.ok(by(want), `row ${want}`);

  const table = sideTable(rows).split("\n");
  assert.match(
    table[0]!,
    /^\| row +\| containerd 2\.4 \| containerd 1\.6 \| +berth \| berth\/containerd 2\.4 \| floor/,
  );
  const run = table.find((l) => l.startsWith("| RunPodSandbox"))!;
  assert.deepEqual(
    run.split("|").map((c) => c.trim()).slice(1, -1),
    ["RunPodSandbox (ms, p50 / p90)", "10.0 / 18.0", "-", "5.00 / 9.00", "0.50x", "42.0 (runc run -d + CNI ADD)"],
  ); // prettier-ignore
  assert.ok(
    table.every((l) => l.length === table[0]!.length),
    "columns are aligned",
  );
});

test("the generated section replaces its old self in RESULTS.md and leaves the rest alone", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-section-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "RESULTS.md");
  writeFileSync(file, "# Benchmark results\n\nhand-written text\n");
  writeSection(file, "## Side by side\n\nfirst");
  writeSection(file, "## Side by side\n\nsecond");
  const text = readFileSync(file, "utf8");
  assert.equal(text, `# Benchmark results\n\nhand-written text\n\n${BEGIN}\n## Side by side\n\nsecond\n${END}\n`);
  writeFileSync(file, text + "\n## Later section\n");
  writeSection(file, "third");
  assert.equal(
    readFileSync(file, "utf8"),
    `# Benchmark results\n\nhand-written text\n\n${BEGIN}\nthird\n${END}\n\n## Later section\n`,
  );
});

test("the README's table is replaced only between its markers; without them the README is left alone", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-readme-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "README.md");
  writeFileSync(file, "# berth\n\nno table here\n");
  assert.equal(replaceSection(file, "table"), false);
  assert.equal(readFileSync(file, "utf8"), "# berth\n\nno table here\n");
  writeFileSync(file, `# berth\n\nbefore\n${BEGIN}\nold table\n${END}\nafter\n`);
  assert.equal(replaceSection(file, "new table\n"), true);
  assert.equal(readFileSync(file, "utf8"), `# berth\n\nbefore\n${BEGIN}\nnew table\n${END}\nafter\n`);
});

/** What a side-by-side run may leave on the host: its bridges, netns, cgroup parents, mounts, processes. */
function leftovers(): string[] {
  const out: string[] = [];
  for (const l of readdirSync("/sys/class/net")) if (l.startsWith("berthsbs")) out.push(`link ${l}`);
  for (const ctl of readdirSync("/sys/fs/cgroup"))
    for (const p of ["berth-bench-cd16", "berth-bench-cd24", "berth-bench-berth"])
      if (existsSync(join("/sys/fs/cgroup", ctl, p))) out.push(`cgroup ${ctl}/${p}`);
  for (const m of readFileSync("/proc/self/mountinfo", "utf8").split("\n"))
    if (/ \/tmp\/(bcd1|bcd2|berth-bench-)/.test(m)) out.push(`mount ${m.split(" ")[4]}`);
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
    } catch {
      continue;
    }
    if (/\/tmp\/(bcd16|bcd24)-/.test(cmd)) out.push(`process ${pid} ${cmd.slice(0, 120)}`);
  }
  for (const n of readdirSync("/tmp")) if (/^(berth-bench|bcd16|bcd24)-run-/.test(n)) out.push(`dir /tmp/${n}`);
  return out;
}

/** The runtimes' run dirs mounted now (compare-env.ts runDir): mount point -> file system type. */
function runDirMounts(): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = l.split(" ");
    const at = f[4] ?? "";
    if (/^\/tmp\/(berth-bench|bcd16|bcd24)-run-\w+$/.test(at)) out.set(at, f[f.indexOf("-") + 1] ?? "");
  }
  return out;
}

test(
  "bench --compare containerd --quick: every row for each runtime, nothing left behind",
  { skip: process.env.BERTH_SKIP_BENCH_TEST === "1", timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "berth-bench-cmp-test-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const json = join(dir, "out.json");
    const before = leftovers();
    const results = join(REPO_ROOT, "bench/RESULTS.md");
    const resultsBefore = readFileSync(results, "utf8");
    // Each runtime keeps its runtime state on a tmpfs of its own, as under /run on a node:
    // watched while the run goes on (the mounts go with it), with berthd's --state inside its own.
    const seen = new Map<string, string>();
    const states = new Set<string>();
    // and each one's runc kept its containers' state there (berth's runc root is <run>/runc,
    // containerd's runc shim adds the namespace: <run>/runc/k8s.io)
    const runcUsed = new Set<string>();
    const hasRuncState = (d: string, depth: number): boolean => {
      let names: string[] = [];
      try {
        names = readdirSync(d);
      } catch {
        return false;
      }
      if (names.includes("state.json")) return true;
      return depth > 0 && names.some((n) => hasRuncState(join(d, n), depth - 1));
    };
    const watch = setInterval(() => {
      for (const [at, type] of runDirMounts()) {
        seen.set(at, type);
        if (hasRuncState(join(at, "runc"), 2)) runcUsed.add(at);
      }
      for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
        let cmd: string[] = [];
        try {
          cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        } catch {
          continue;
        }
        const i = cmd.indexOf("--state");
        if (i > 0 && cmd.some((a) => a.endsWith("bin/berthd"))) states.add(cmd[i + 1] ?? "");
      }
    }, 250);
    let stdout: string;
    try {
      ({ stdout } = await run(
        process.execPath,
        [join(REPO_ROOT, "dist/bench/run.js"), "--compare", "containerd", "--quick", "--json", json],
        { timeout: 580_000, maxBuffer: 16 << 20 },
      ));
    } finally {
      clearInterval(watch);
    }
    const prefixes = [...seen.keys()].map((at) => /\/tmp\/(berth-bench|bcd16|bcd24)-run-/.exec(at)![1]).sort();
    assert.deepEqual(prefixes, ["bcd16", "bcd24", "berth-bench"], `one run dir per runtime: ${[...seen.keys()]}`);
    for (const [at, type] of seen) assert.equal(type, "tmpfs", `${at} is a tmpfs`);
    assert.deepEqual([...runcUsed].sort(), [...seen.keys()].sort(), "every runtime's runc root was in its run dir");
    const berthRun = [...seen.keys()].find((at) => at.includes("/berth-bench-run-"))!;
    assert.ok(
      [...states].some((st) => st === join(berthRun, "state")),
      `berthd's --state is in its run dir: ${[...states]}`,
    );
    const out = JSON.parse(readFileSync(json, "utf8")) as {
      errors: Record<string, string>;
      results: Record<string, RuntimeResult | null>;
      table: string;
      load: { before: string; after: string };
      schedule: { turn: number; runtime: string; from: string }[];
    };
    assert.deepEqual(out.errors, {});
    // The runtimes took turns: in every turn each of them ran one block, from the same hold, so
    // their samples of a row come from the same minutes; the first to run rotates.
    const turns = new Map<number, { runtime: string; from: string }[]>();
    for (const e of out.schedule) turns.set(e.turn, [...(turns.get(e.turn) ?? []), e]);
    for (const [n, blocks] of turns) {
      assert.deepEqual(blocks.map((b) => b.runtime).sort(), [...RUNTIMES].sort(), `turn ${n}: every runtime ran`);
      assert.equal(new Set(blocks.map((b) => b.from)).size, 1, `turn ${n}: all from one hold`);
    }
    assert.deepEqual(
      [...turns.values()].map((b) => b[0]!.from),
      [
        "quiet lifecycle", "turn", // 3 lifecycles in 2 blocks
        "quiet reads", "turn", // 20 rounds, then 50 untimed and 20 timed again, each in 2 blocks
        "turn",
        "quiet burst", "quiet burst", // one burst of 4 pods, one of 8
        "quiet list", // one block: created, timed, removed
        "quiet pull", "quiet pull", // one pull each: one block
      ],
    ); // prettier-ignore
    assert.notEqual(turns.get(0)![0]!.runtime, turns.get(1)![0]!.runtime, "the order rotates");
    for (const name of RUNTIMES) {
      const r = out.results[name];
      assert.ok(r, `${name} measured`);
      for (const row of [
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ExecSync",
        "ContainerStatus",
        "PodSandboxStatus",
        "ListContainers",
        "ImageStatus",
        "ListImages",
        "PullImage small",
        "PullImage big",
        "4 pods started at once",
        "8 pods started at once",
      ])
        assert.ok((r.samples[row]?.length ?? 0) > 0, `${name}: samples of ${row}`);
      assert.equal(r.listed, 50, `${name}: ListContainers returned the 50 created containers`);
      for (const point of ["idle", "after-churn", "pods-4", "pods-8"])
        assert.ok((r.memory[point]?.daemonPssKiB ?? 0) > 0, `${name}: daemon memory at ${point}`);
      // one shim per pod for containerd; berth's one shim plus a monitor per container
      assert.ok((r.memory["pods-8"]?.shimProcs ?? 0) >= 8, `${name}: shim processes with 8 pods`);
    }
    assert.match(
      stdout,
      /\| RunPodSandbox \(ms, p50 \/ p90\) +\| +[\d.]+ \/ [\d.]+ \| +[\d.]+ \/ [\d.]+ \| +[\d.]+ \/ [\d.]+ \| +[\d.]+x \|/,
    );
    assert.match(stdout, /loadavg before [\d.]+ [\d.]+ [\d.]+, after/);
    assert.equal(readFileSync(results, "utf8"), resultsBefore, "a --quick run leaves RESULTS.md alone");
    assert.deepEqual(
      leftovers().filter((l) => !before.includes(l)),
      [],
    );
  },
);
