// How berth's shim reads crun (no crun needed): crun takes runc's command line, but words its
// errors its own way and has a few gaps (Debian 12's crun 1.8.1: no `checkpoint`, a crash on
// `ps` of a stopped container). A stand-in `crun` script answers as crun 1.8.1 does, messages
// copied from the real one, so the typed errors a caller acts on are checked here.
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { OciRuntime, namesMissingState, runtimeError, type RuntimeConfig } from "../../src/shim/runtime.js";
import { FailedPreconditionError, NotFoundError } from "../../src/util/errors.js";

let dir: string;
let root: string;
let calls: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-crun-unit-"));
  root = join(dir, "state");
  calls = join(dir, "calls");
  // Containers: "run" is running (pids 101 102), "stopped" has exited, "gone" does not exist.
  writeFileSync(
    join(dir, "crun"),
    String.raw`#!/bin/sh
log=/dev/null
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --log-format) shift 2 ;;
    --systemd-cgroup) shift ;;
    *) break ;;
  esac
done
echo "$*" >>${calls}
fail() { printf '{"msg":"%s","level":"error","time":"2026-01-01T00:00:00.000000Z"}\n' "$1" >>"$log"; exit 1; }
cmd=$1; shift
for id; do :; done
case "$cmd" in
  state)
    [ "$id" = gone ] && fail "error opening file \`$root/$id/status\`: No such file or directory"
    st=running; [ "$id" = stopped ] && st=stopped
    printf '{\n    "ociVersion": "1.0.0",\n    "id": "%s",\n    "pid": 101,\n    "status": "%s",\n    "systemd-scope": "",\n    "owner": "root"\n}\n' "$id" "$st" ;;
  delete)
    [ "$id" = gone ] && fail "cannot open directory '$root/$id': No such file or directory" ;;
  ps)
    [ "$id" = gone ] && fail "error opening file \`$root/$id/status\`: No such file or directory"
    [ "$id" = stopped ] && kill -SEGV $$
    printf '[\n  101,\n  102\n]\n' ;;
  kill)
    [ "$1" = stopped ] || [ "$2" = stopped ] && fail "kill container: No such process" ;;
  start)
    fail "cannot open \`$root/$id/exec.fifo\`: No such file or directory" ;;
  update)
    [ -f "$2" ] && echo "resources $(cat "$2")" >>${calls} ;;
  checkpoint|restore)
    printf 'unknown command %s' "$cmd" >&2; exit 1 ;;
esac
exit 0
`,
  );
  chmodSync(join(dir, "crun"), 0o755);
});
after(() => rmSync(dir, { recursive: true, force: true }));

function crun(extra = ""): OciRuntime {
  const cfg: RuntimeConfig = {
    binary: `${join(dir, "crun")}${extra ? ` ${extra}` : ""}`,
    root,
    systemdCgroup: false,
    noPivotRoot: false,
    noNewKeyring: false,
    criuPath: "",
  };
  return new OciRuntime(cfg, join(dir, "log", "runtime-log.json"));
}

const lastCall = () => readFileSync(calls, "utf8").trim().split("\n").at(-1);

describe("crun as the shim's OCI runtime", () => {
  test("its command line is runc's: global flags crun 1.8 accepts, then the command", () => {
    const rt = crun("--cgroup-manager=cgroupfs");
    assert.equal(rt.kind, "crun");
    assert.deepEqual(rt.createArgv("c1", "/b", "/s/pid", "/s/console.sock", "/s/log.json"), [
      join(dir, "crun"),
      "--root",
      root,
      "--log",
      "/s/log.json",
      "--log-format",
      "json",
      "--cgroup-manager=cgroupfs",
      "create",
      "--bundle",
      "/b",
      "--pid-file",
      "/s/pid",
      "--console-socket",
      "/s/console.sock",
      "c1",
    ]);
    // no runsc-only flag (--internal-pid-file) unless asked for
    assert.deepEqual(rt.execArgv("c1", "/s/process.json", "/s/pid", undefined, "/s/log.json").slice(8), [
      "exec",
      "--detach",
      "--process",
      "/s/process.json",
      "--pid-file",
      "/s/pid",
      "c1",
    ]);
  });

  test("`crun state` output gives status and pid", async () => {
    assert.deepEqual(
      await crun()
        .state("run")
        .then((s) => [s.status, s.pid]),
      ["running", 101],
    );
  });

  test("a container crun does not know is NotFound (crun names its missing state dir), and deleting it succeeds", async () => {
    await assert.rejects(crun().state("gone"), (e) => {
      assert.ok(e instanceof NotFoundError, String(e));
      assert.match(e.message, /^crun state: container does not exist \(error opening file `.*\/gone\/status`/);
      return true;
    });
    await crun().delete("gone", true);
    assert.equal(lastCall(), "delete --force gone");
  });

  test("ps lists a running container's pids; a stopped one has none (crun 1.8 crashes there)", async () => {
    assert.deepEqual(await crun().ps("run"), [101, 102]);
    assert.equal(lastCall(), "ps --format json run");
    assert.deepEqual(await crun().ps("stopped"), []);
    await assert.rejects(crun().ps("gone"), NotFoundError);
  });

  test("kill --all reaches crun; a kill of a stopped container is a failed precondition", async () => {
    await crun().kill("run", 15, true);
    assert.equal(lastCall(), "kill --all run 15");
    await assert.rejects(crun().kill("stopped", 9, false), FailedPreconditionError);
  });

  test("a start crun cannot do is not mistaken for a missing container", async () => {
    await assert.rejects(crun().start("run"), (e) => !(e instanceof NotFoundError) && /exec\.fifo/.test(String(e)));
  });

  test("update hands crun the resources in a file (crun cannot read `-` from a socket stdin) and removes it", async () => {
    await crun().update("run", Buffer.from('{"pids":{"limit":64}}'));
    const [call, resources] = readFileSync(calls, "utf8").trim().split("\n").slice(-2);
    const m = /^update --resources (\S+) run$/.exec(call ?? "");
    assert.ok(m, call);
    assert.equal(resources, 'resources {"pids":{"limit":64}}');
    assert.equal(existsSync(m[1]!), false, "the resources file is removed");
  });

  test("checkpoint on a crun built without CRIU says so", async () => {
    const args = {
      imagePath: "/i",
      workPath: "/w",
      exit: false,
      openTcp: false,
      externalUnixSockets: false,
      terminal: false,
      fileLocks: false,
      emptyNamespaces: [],
      cgroupsMode: "",
      parentPath: "",
    };
    await assert.rejects(crun().checkpoint("run", args), (e) => {
      assert.ok(e instanceof FailedPreconditionError, String(e));
      assert.equal(e.message, "crun checkpoint: unknown command checkpoint (this crun was built without CRIU support)");
      return true;
    });
  });

  test("crun's refusal of a hybrid cgroup layout keeps crun's words and says what to change", () => {
    const err = runtimeError("crun create", "cgroups in hybrid mode not supported, drop all controllers from cgroupv2");
    assert.ok(err instanceof FailedPreconditionError);
    assert.match(
      err.message,
      /^crun create: cgroups in hybrid mode not supported, drop all controllers from cgroupv2 \(/,
    );
    assert.match(err.message, /README/);
  });

  test("a missing state dir is recognised only under the runtime's own root", () => {
    const msg = (p: string) => `cannot open directory '${p}': No such file or directory`;
    assert.equal(namesMissingState(msg("/run/berth/crun/k8s.io/c1"), "/run/berth/crun/k8s.io"), true);
    assert.equal(namesMissingState(msg("/run/berth/crun/k8s.io/c1"), "/run/berth/crun/k8s.io/"), true);
    assert.equal(namesMissingState(msg("/bundles/c1"), "/run/berth/crun/k8s.io"), false);
    assert.equal(namesMissingState(msg("/run/berth/crun/k8s.io/c1/rootfs"), "/run/berth/crun/k8s.io"), false);
    assert.equal(namesMissingState("cannot open `/r/c1/exec.fifo`: No such file or directory", "/r"), false);
    assert.equal(namesMissingState(msg("/r.x/c1"), "/r.x"), true);
    assert.equal(namesMissingState(msg("/rax/c1"), "/r.x"), false);
  });
});
