// `npm run bench -- --quick --json FILE` produces well-formed results with every row of the
// table present (figures are not judged here: speed is for bench/, never for test asserts).
// Takes about 40 s (a private berthd, registry, pods, a small pull). BERTH_SKIP_BENCH_TEST=1 skips it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/daemon.js";

const run = promisify(execFile);

test(
  "bench --quick --json writes every row with a figure, its floor and a ratio",
  { skip: process.env.BERTH_SKIP_BENCH_TEST === "1", timeout: 180_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "berth-bench-test-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const json = join(dir, "out.json");
    const svgFile = join(dir, "out.svg");
    const { stdout } = await run(
      process.execPath,
      [
        join(REPO_ROOT, "dist/bench/run.js"),
        "--quick",
        "--json",
        json,
        "--svg",
        svgFile,
        "--bridge",
        "berthbencht0",
        "--subnet",
        "10.234.33.0/24",
      ],
      {
        timeout: 170_000,
        maxBuffer: 16 << 20,
      },
    );
    const out = JSON.parse(readFileSync(json, "utf8")) as {
      mode: string;
      machine: { cpus: number; kernel: string };
      rows: { metric: string; unit: string; berth: number | null; floor: number | null; floorWhat: string }[];
    };
    assert.equal(out.mode, "quick");
    assert.ok(out.machine.cpus > 0 && out.machine.kernel);
    const expected = [
      /^RunPodSandbox p50$/,
      /^RunPodSandbox p90$/,
      /^CreateContainer\+StartContainer p50$/,
      /^ExecSync/,
      /^pod churn/,
      /^ListContainers, 100 containers/,
      /^pull\+unpack/,
      /^berthd RSS idle$/,
      /^berthd PSS idle$/,
      /^berthd RSS with/,
      /^berthd PSS with/,
      /^shim PSS per pod/,
    ];
    assert.equal(out.rows.length, expected.length);
    for (const [i, re] of expected.entries()) {
      const row = out.rows[i]!;
      assert.match(row.metric, re);
      assert.ok(typeof row.berth === "number" && row.berth > 0, `${row.metric}: berth figure ${row.berth}`);
      if (i < 7) assert.ok(typeof row.floor === "number" && row.floor > 0, `${row.metric}: floor ${row.floor}`);
      assert.ok(stdout.includes(row.metric), `table prints ${row.metric}`);
    }
    assert.match(readFileSync(svgFile, "utf8"), /^<svg [^>]*>[\s\S]*<\/svg>\n$/);
  },
);
