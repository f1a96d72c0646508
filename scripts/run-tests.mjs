#!/usr/bin/env node
// The project's test command: builds, then runs node's test runner over dist/test.
// `npm test -- test/ttrpc` runs only test files whose path contains one of the given words.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
// tsc emits even when a file has type errors; the tests still run so one engineer's broken file
// does not hide everyone's results, but the run then fails.
const build = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
const typeErrors = build.status !== 0;
if (typeErrors)
  console.error("run-tests: tsc reported type errors (see above); running the tests anyway, the run will fail");

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".test.js") ? [p] : [];
  });
}
const filters = process.argv.slice(2).map((f) => f.replace(/\.ts$/, "").replace(/^test\//, ""));
const files = walk(join(root, "dist/test"))
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort();
if (files.length === 0) {
  console.error("run-tests: no test files matched");
  process.exit(1);
}
const concurrency = process.env.BERTH_TEST_CONCURRENCY ?? "1";
const run = spawnSync(
  process.execPath,
  ["--test", `--test-concurrency=${concurrency}`, "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit" },
);
process.exit(typeErrors ? 1 : (run.status ?? 1));
