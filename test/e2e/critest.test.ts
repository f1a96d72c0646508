// critest, the CRI conformance suite of sigs.k8s.io/cri-tools v1.37.0 (all of it but the
// benchmarks), against a berthd this test starts: real runc, CNI on a private bridge, and every
// image critest pulls served offline by stand-ins (test/images) from a loopback registry that
// berthd reaches through a hosts.toml mirror config.
//
// Every spec must pass, except those named in test/critest-skip.txt, each with the reason this
// host or berth cannot do it; the list is printed. A spec that skips itself (critest does when
// it finds a feature missing) and is not on the list fails the test too: the list is the one
// place that says what does not run.
//
//   npm test -- critest                           (the critest binary is built on first use)
//   BERTH_CRITEST_KEEP=/tmp/critest npm test -- critest   keeps critest's output, its JSON
//                                                 report and berthd's log there
//   BERTH_CRITEST_FOCUS=regex npm test -- critest  runs only the matching specs (for debugging)
//
// The "Security Context UserNamespaces" specs run in a second pass with the runc-1.5 handler
// (critest --runtime-handler; runc v1.5 built by scripts/go-tools.sh): the default handler,
// Debian's runc 1.1.5, makes no idmapped mounts, so critest would skip them there.
//
// berthd runs with NRI enabled and critest gets its socket (--nri-socket): critest's NRI specs
// connect the Go stub containerd's NRI plugins use and check the hook contracts. The plugin
// request timeout is raised from the default 2 s because those specs hold hooks and
// Synchronize open on purpose (2 s and more on this shared machine).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";
import { startCritestImages, type CritestImages } from "../helpers/critest-images.js";
import { listedIn, readReport, readSkipList } from "../helpers/critest-report.js";
import { REPO_ROOT } from "../helpers/daemon.js";
import { goTool } from "../helpers/go-tools.js";

const SKIP_FILE = join(REPO_ROOT, "test/critest-skip.txt");
/** The specs of the second pass, run with the runc-1.5 handler. */
const USERNS_SPECS = "Security Context UserNamespaces";
const USERNS_HANDLER = "runc-1.5";
const SANDBOX_IMAGE = "registry.k8s.io/pause:3.10";

/**
 * The host's unattached 1 MiB System V shared memory segments: critest's HostIpc specs make
 * them with `ipcmk -M 1048576` in the host's IPC namespace and never remove them.
 */
function critestShmSegments(): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync("/proc/sysvipc/shm", "utf8").split("\n").slice(1)) {
    // key shmid perms size cpid lpid nattch ...
    const f = line.trim().split(/\s+/);
    if (f.length > 6 && f[3] === "1048576" && f[6] === "0") out.add(f[1]);
  }
  return out;
}

test(
  "critest v1.37.0: the CRI conformance suite passes but for the committed skip list",
  { timeout: 120 * 60_000 },
  async () => {
    const skips = readSkipList(SKIP_FILE);
    console.log(`critest skip list (${SKIP_FILE.slice(REPO_ROOT.length)}): ${skips.length} entries`);
    for (const s of skips) console.log(`  SKIP ${s.pattern}\n       why: ${s.reason}`);

    const critest = goTool("critest-1.37", "critest");
    const work = mkdtempSync(join(tmpdir(), "berth-critest-"));
    let env: CriEnv | undefined;
    let images: CritestImages | undefined;
    const shmBefore = critestShmSegments();
    try {
      env = await startCriEnv({
        bridge: "berthcrit0",
        subnet: "10.234.60.0/24",
        // berth runs its built-in pause whatever this says; set so that it is the image kubelet
        // would pin, served like the rest
        config:
          `\n[image]\nsandbox_image = "${SANDBOX_IMAGE}"\n[runtime.handlers."${USERNS_HANDLER}"]\nbinary_name = "${goTool("runc-1.5", "runc")}"\nroot = "{{dir}}/runc-1.5"\n` +
          `[nri]\nenable = true\nsocket_path = "{{dir}}/nri/nri.sock"\nplugin_request_timeout = "60s"\n`,
      });
      images = await startCritestImages(join(env.d.dir, "certs.d"));

      const focus = process.env.BERTH_CRITEST_FOCUS;
      const common = [
        `--runtime-endpoint=unix://${env.d.socket}`,
        `--image-endpoint=unix://${env.d.socket}`,
        "--ginkgo.no-color",
        `--nri-socket=${join(env.d.dir, "nri", "nri.sock")}`,
        ...skips.map((s) => `--ginkgo.skip=${s.pattern}`),
        ...(focus ? [`--ginkgo.focus=${focus}`] : []),
      ];
      const started = Date.now();
      const main = await runCritest(critest, work, "main", [...common, `--ginkgo.skip=${USERNS_SPECS}`]);
      const userns = await runCritest(critest, work, "userns", [
        ...common,
        `--ginkgo.focus=${USERNS_SPECS}`,
        `--runtime-handler=${USERNS_HANDLER}`,
      ]);
      const wall = (Date.now() - started) / 1000;
      const code = `${main.code}, ${userns.code}`;
      const keep = process.env.BERTH_CRITEST_KEEP;
      if (keep) {
        mkdirSync(keep, { recursive: true });
        for (const name of ["main", "userns"]) {
          for (const f of [`critest-${name}.log`, `report-${name}.json`])
            if (existsSync(join(work, f))) copyFileSync(join(work, f), join(keep, f));
        }
        await writeFile(join(keep, "berthd.log"), env.d.logs());
      }
      for (const r of [main, userns]) {
        if (!existsSync(r.report)) {
          assert.fail(`critest wrote no report (exit ${r.code}):\n${readFileSync(r.log, "utf8").slice(-4000)}`);
        }
      }

      // Each spec from the pass that ran it: the UserNamespaces specs from the second.
      const inUserns = (name: string) => name.includes(USERNS_SPECS);
      const mainReport = readReport(main.report);
      const usernsReport = readReport(userns.report);
      const specs = [
        ...mainReport.specs.filter((s) => !inUserns(s.name)),
        ...usernsReport.specs.filter((s) => inUserns(s.name)),
      ];
      const suiteProblems = [...mainReport.suiteProblems, ...usernsReport.suiteProblems];
      const passed = specs.filter((s) => s.state === "passed");
      const listed = specs.filter((s) => s.state === "skipped" && listedIn(skips, s.name));
      // critest itself filters out its benchmarks unless run with -benchmark: skipped, no message
      const benchmarks = specs.filter(
        (s) => s.state === "skipped" && !s.message && !listedIn(skips, s.name) && /benchmark/.test(s.name),
      );
      const selfSkipped = specs.filter(
        (s) => s.state === "skipped" && !listedIn(skips, s.name) && !benchmarks.includes(s),
      );
      const failed = specs.filter((s) => s.state !== "passed" && s.state !== "skipped");
      // a listed spec that ran (passed, failed or skipped itself) was not matched by critest
      const notApplied = specs.filter((s) => listedIn(skips, s.name) && !(s.state === "skipped" && !s.message));
      const focused = focus !== undefined;
      console.log(`critest ran ${specs.length} specs in ${wall.toFixed(0)} s (exit ${code})`);
      for (const s of failed)
        console.log(`FAIL [${s.state}] ${s.name}\n     at ${s.location}: ${s.message.slice(0, 600)}`);
      for (const s of selfSkipped.filter((x) => !focused || x.message))
        console.log(`SKIPPED ITSELF (not on the list) ${s.name}\n     ${s.message.slice(0, 300)}`);
      for (const p of suiteProblems) console.log(`SUITE ${p.name} ${p.state}: ${p.message.slice(0, 600)}`);
      const unused = skips.filter((e) => !specs.some((s) => new RegExp(e.pattern).test(s.name)));
      for (const e of unused) console.log(`skip list entry matches no spec: ${e.pattern}`);
      for (const s of notApplied) console.log(`listed but run by critest (${s.state}): ${s.name}`);
      console.log(
        `critest: ${listed.length} specs skipped by the list, ${benchmarks.length} benchmarks not selected (critest runs them only with -benchmark)`,
      );
      console.log(
        `critest: ${passed.length} passed, ${failed.length} failed, ${listed.length + selfSkipped.length + benchmarks.length} skipped`,
      );

      assert.deepEqual(
        failed.map((s) => s.name),
        [],
        "critest specs failed (see above)",
      );
      assert.deepEqual(suiteProblems, [], "critest's suite setup failed");
      if (!focused) {
        assert.deepEqual(
          selfSkipped.map((s) => `${s.name}: ${s.message}`),
          [],
          "specs skipped themselves: make them pass, or list them in test/critest-skip.txt with the reason",
        );
        assert.deepEqual(unused, [], "skip list entries that match no spec of this critest");
        assert.deepEqual(
          notApplied.map((s) => s.name),
          [],
          "critest ran specs of the skip list: their patterns do not match as ginkgo matches",
        );
        assert.ok(passed.length > 0, "no critest spec passed");
      }
    } finally {
      for (const id of critestShmSegments()) if (!shmBefore.has(id)) execFileSync("ipcrm", ["-m", id]);
      rmSync(work, { recursive: true, force: true });
      try {
        await env?.stop(); // throws if berth left anything behind
      } finally {
        await images?.stop();
        await (await testImages()).stop();
      }
    }
  },
);

/** Runs critest once with `args`, its output in WORK/critest-NAME.log and its report in WORK/report-NAME.json. */
async function runCritest(
  critest: string,
  work: string,
  name: string,
  args: string[],
): Promise<{ code: number | null; report: string; log: string }> {
  const report = join(work, `report-${name}.json`);
  const logPath = join(work, `critest-${name}.log`);
  const code = await new Promise<number | null>((resolve, reject) => {
    const log = createWriteStream(logPath);
    const child = spawn(critest, [...args, `--ginkgo.json-report=${report}`], {
      cwd: work,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on("error", reject);
    child.on("close", (c) => log.end(() => resolve(c)));
  });
  return { code, report, log: logPath };
}
