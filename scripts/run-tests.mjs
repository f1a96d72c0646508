#!/usr/bin/env node
// The project's test command: builds, then runs node's test runner over dist/test, one file
// at a time (the end-to-end files share the machine: bridges, cgroups, runc state).
// `npm test -- test/ttrpc` runs only test files whose path contains one of the given words;
// `npm run test:unit` runs test/unit/ alone (no root, no daemons).
//
// A file that fails fails the run: nothing is run again, so a race fails the run that hit it
// (a race is a bug to fix, not a test to retry). `--rerun-failed` runs each failing file once
// more, to tell a timing-dependent failure from a steady one while investigating; a file that
// then passes is still reported (FLAKY) and still fails the run.
//
// A full run (no words given) also audits the machine before and after (leak-audit.mjs): any
// berth process, mount, netns, test bridge or veth, iptables rule for a test subnet, cgroup or
// temporary directory that the run added and left fails it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { audit } from "./leak-audit.mjs";

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
    if (statSync(p).isDirectory()) return walk(p);
    // Only tests whose source still exists: tsc leaves the output of a moved or deleted file behind.
    const source = join(root, relative(join(root, "dist"), p)).replace(/\.js$/, ".ts");
    return p.endsWith(".test.js") && existsSync(source) ? [p] : [];
  });
}
const args = process.argv.slice(2);
const rerunFailed = args.includes("--rerun-failed");
const filters = args.filter((a) => a !== "--rerun-failed").map((f) => f.replace(/\.ts$/, "").replace(/^test\//, ""));
const files = walk(join(root, "dist/test"))
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort();
if (files.length === 0) {
  console.error("run-tests: no test files matched");
  process.exit(1);
}

// A file gets this long (BERTH_TEST_FILE_TIMEOUT_S to change it); the slowest, kubelet and critest,
// take 1.5 to 5 minutes here. A file past it is killed and fails, so one hang cannot eat the CI budget.
const fileTimeoutS = Number(process.env.BERTH_TEST_FILE_TIMEOUT_S ?? 1200);

/**
 * The pids in process group `pgid` (from /proc/PID/stat, past the command name), with their
 * command lines; with `detail`, also each one's state and kernel wait channel.
 */
function groupMembers(pgid, detail = false) {
  const out = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) !== pgid || fields[0] === "Z") continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      let wchan = "";
      if (detail) {
        try {
          wchan = ` [${fields[0]} ${readFileSync(`/proc/${pid}/wchan`, "utf8") || "-"}]`;
        } catch {
          // gone
        }
      }
      out.push(`${pid}${wchan} ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

function killGroup(pgid) {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // already empty
  }
}

/**
 * Runs one file, echoing its output (at once, or all at the end with `buffered`, when files run
 * side by side); resolves with its counts. The file runs in a process group of its own, with
 * --test-force-exit (exit once every test of the file has finished), so that a helper left running by a failed hook (a registry, a daemon) can
 * neither keep the file from ending nor outlive it: anything of its group still running a moment
 * after it ends is reported, killed, and fails the file.
 */
function runFile(file, buffered = false) {
  const started = Date.now();
  return new Promise((resolve) => {
    // The file runs as a plain node program (its tests in that process), not under `node --test`.
    // A `--test` parent with --test-force-exit counts as known only the tests the file has
    // reported so far: when the file's stream paused between two tests, the parent took the
    // run for finished and exited, passing a file whose later tests never ran (seen in CI: 107
    // of process-state's 119 tests, reported green).
    const child = spawn(process.execPath, ["--test-force-exit", "--test-reporter=spec", file], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    let err = "";
    const note = (line) => {
      out += `${line}\n`;
      if (!buffered) process.stdout.write(`${line}\n`);
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      note(`run-tests: ${relative(root, file)} still running after ${fileTimeoutS} s: killed`);
      // What it was waiting on: a file blocked in a synchronous call never flushes its test
      // events, so this list (state and kernel wait channel of each process) is the only trace.
      for (const p of groupMembers(child.pid, true)) note(`run-tests:   was running: ${p}`);
      killGroup(child.pid);
    }, fileTimeoutS * 1000);
    child.stdout.on("data", (d) => {
      out += d;
      if (!buffered) process.stdout.write(d);
    });
    child.stderr.on("data", (d) => (buffered ? (err += d) : process.stderr.write(d)));
    child.on("close", async (code) => {
      clearTimeout(timer);
      let stray = groupMembers(child.pid);
      for (let i = 0; i < 20 && stray.length > 0; i++) {
        await sleep(500);
        stray = groupMembers(child.pid);
      }
      for (const p of stray) note(`run-tests: ${relative(root, file)} left a process running (killed): ${p}`);
      if (stray.length > 0) killGroup(child.pid);
      if (buffered) {
        process.stdout.write(out);
        process.stderr.write(err);
      }
      const count = (k) => Number(out.match(new RegExp(`^ℹ ${k} (\\d+)$`, "m"))?.[1] ?? 0);
      const failedHere = timedOut || stray.length > 0;
      resolve({
        file,
        seconds: (Date.now() - started) / 1000,
        code: failedHere ? code || 1 : code,
        pass: count("pass"),
        fail: count("fail"),
        skipped: count("skipped"),
      });
    });
  });
}

/**
 * Shims and monitors run detached (their own session), so a file's process-group check cannot
 * see one it left behind, and the end-of-run audit cannot say which file started it. Each
 * file's new ones are noted as it ends, and the audit names the file.
 */
const shimBornIn = new Map();
function noteNewShims(file) {
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    if (shimBornIn.has(pid)) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue; // gone
    }
    if (/shim\/main\.js|berth-monitor|containerd-shim/.test(cmd)) shimBornIn.set(pid, relative(root, file));
  }
}

/** Unit tests (test/unit/) share nothing on the machine: they run side by side, four at a time. */
const isUnit = (f) => f.includes(`${join("dist", "test", "unit")}/`);
async function runAll(list) {
  const results = [];
  const units = list.filter(isUnit);
  for (let i = 0; i < units.length; i += 4)
    results.push(...(await Promise.all(units.slice(i, i + 4).map((f) => runFile(f, true)))));
  for (const f of list.filter((x) => !isUnit(x))) {
    results.push(await runFile(f));
    noteNewShims(f);
  }
  return results;
}

// A full run must leave the machine as it found it (see leak-audit.mjs).
const fullRun = filters.length === 0;
const before = new Set(fullRun ? audit() : []);

let pass = 0;
let fail = 0;
let skipped = 0;
const failed = [];
const flaky = [];
const allResults = await runAll(files);
for (let r of allResults) {
  const file = r.file;
  if (r.code !== 0) {
    r = { ...r, fail: Math.max(r.fail, 1) };
    if (rerunFailed) {
      console.log(`\nrun-tests: ${file} failed (${r.fail} failing); running it once more (--rerun-failed)`);
      const again = await runFile(file);
      if (again.code === 0) flaky.push(file);
    }
    failed.push(file);
  }
  pass += r.pass;
  fail += r.fail;
  skipped += r.skipped;
}
console.log("");
let leftBehind = [];
if (fullRun) {
  // Shims and monitors exit a moment after their last task is deleted.
  for (let i = 0; i < 20; i++) {
    leftBehind = audit().filter((l) => !before.has(l));
    if (leftBehind.length === 0) break;
    await sleep(500);
  }
  for (const l of before) console.log(`present before the run (not counted): ${l}`);
  for (const l of leftBehind) {
    const from = shimBornIn.get(/^process (\d+):/.exec(l)?.[1] ?? "");
    console.log(`LEFT BEHIND by the suite: ${l}${from ? ` (first seen as ${from} ended)` : ""}`);
  }
}
for (const f of failed)
  console.log(flaky.includes(f) ? `FAILED (then passed when run again: FLAKY): ${f}` : `FAILED: ${f}`);
// Where the time goes, for keeping CI inside its budget.
const slowest = [...allResults].sort((a, b) => b.seconds - a.seconds).slice(0, 8);
console.log(`slowest files: ${slowest.map((r) => `${relative(root, r.file)} ${r.seconds.toFixed(0)} s`).join(", ")}`);
console.log(`${pass} passed, ${fail} failed, ${skipped} skipped`);
if (leftBehind.length > 0) console.log(`run-tests: the suite left ${leftBehind.length} thing(s) behind`);
process.exit(typeErrors || failed.length > 0 || leftBehind.length > 0 ? 1 : 0);
