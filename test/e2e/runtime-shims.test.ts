// The runtime manager (src/runtime) against real shims: containerd's own
// containerd-shim-runc-v2 of both generations (Debian's containerd 1.6, and containerd 2.4's,
// built from the module proxy: bootstrap protocol on start, task API v3) and berth's shim,
// with real runc and a busybox bundle. Every test cleans up its shims, containers, mounts and
// files.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { EVENTS_SOCKET_NAME, SANDBOX_ID_ANNOTATION } from "../../src/runtime/index.js";
import { InvalidArgumentError, NotFoundError } from "../../src/util/errors.js";
import {
  NS,
  type ShimKind,
  runtimeTypeOf,
  until,
  alive,
  Env,
  assertNothingLeft,
  bindRootfs,
  execSpec,
} from "../helpers/runtime-env.js";

/** The tests every shim must pass, plus the ones where the two shims differ by design. */
function shimSuite(kind: ShimKind): void {
  test(
    "create/start/wait gives the container's output and exit code; delete leaves nothing behind",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        const m = env.manager;
        const image = join(env.root, "image-c1");
        const bundle = env.bundle("c1", ["/bin/sh", "-c", "echo hello from busybox; echo oops >&2; exit 3"], {
          rootfsDir: image,
        });
        // stdout and stderr through fifos, as the CRI layer passes them.
        const stdout = env.fifoReader("c1-stdout");
        const stderr = env.fifoReader("c1-stderr");
        const created = await env.create({
          namespace: NS,
          id: "c1",
          bundle,
          rootfs: bindRootfs(image),
          stdout: stdout.path,
          stderr: stderr.path,
          handler: kind,
        });
        assert.ok(created.pid > 0);
        assert.match(created.address, /^unix:\/\//);
        assert.equal((await m.state(NS, "c1")).status, "created");
        assert.equal(statSync(join(env.stateDir, EVENTS_SOCKET_NAME)).mode & 0o777, 0o600, "events socket is 0600");
        const rec = await env.records.get(NS, "c1");
        assert.equal(rec?.address, created.address);
        assert.equal(rec?.bundle, bundle);
        const { shimPid } = await m.connect(NS, "c1");
        assert.ok(alive(shimPid));

        assert.equal(await m.start(NS, "c1"), created.pid);
        const exit = await m.wait(NS, "c1");
        assert.equal(exit.exitStatus, 3);
        assert.equal(await stdout.text, "hello from busybox\n");
        assert.equal(await stderr.text, "oops\n");
        const st = await m.state(NS, "c1");
        assert.equal(st.status, "stopped");
        assert.equal(st.exitStatus, 3);
        assert.equal(st.bundle, bundle);

        const del = await m.delete(NS, "c1");
        assert.equal(del.exitStatus, 3);
        await until(() => !alive(shimPid), "the shim to exit after Shutdown");
        await assertNothingLeft(env);
        await assert.rejects(m.state(NS, "c1"), NotFoundError);

        const topics = await until(() => {
          const t = env.events.filter((e) => e.type !== "unknown" && e.containerId === "c1").map((e) => e.type);
          return t.includes("delete") ? t : undefined;
        }, "the delete event");
        assert.deepEqual(topics, ["create", "start", "exit", "delete"]);
        assert.equal(env.exits("c1")[0]?.exitStatus, 3);
      } finally {
        await env.cleanup();
      }
    },
  );

  test("exec, pids, pause/resume, update, stats and SIGKILL on a running container", { timeout: 90_000 }, async () => {
    const env = await Env.create(kind);
    try {
      const m = env.manager;
      const bundle = env.bundle("c2", ["sleep", "1000"]);
      const { pid } = await env.create({ namespace: NS, id: "c2", bundle });
      await m.start(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "running");

      const execOut = env.out("e1.out");
      // file:// with no stderr: the runc shim would panic; the manager passes stdout's URI for both.
      await m.exec(NS, "c2", "e1", {
        spec: execSpec(["/bin/sh", "-c", "echo from exec; exit 7"]),
        stdout: `file://${execOut}`,
      });
      const execPid = await m.start(NS, "c2", "e1");
      assert.ok(execPid > 0 && execPid !== pid);
      const execExit = await m.wait(NS, "c2", "e1");
      assert.equal(execExit.exitStatus, 7);
      assert.equal(readFileSync(execOut, "utf8"), "from exec\n");
      assert.equal((await m.state(NS, "c2", "e1")).status, "stopped");
      assert.equal((await m.deleteProcess(NS, "c2", "e1")).exitStatus, 7);
      await assert.rejects(m.state(NS, "c2", "e1"), NotFoundError);

      const pids = (await m.pids(NS, "c2")).map((p) => p.pid);
      assert.ok(pids.includes(pid), `pids ${pids} include the init pid ${pid}`);

      await m.pause(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "paused");
      await m.resume(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "running");

      await m.update(NS, "c2", { pids: { limit: 77 } });
      const cg = `/sys/fs/cgroup/pids/berth-rt-test/c2-${process.pid}/pids.max`;
      assert.equal(readFileSync(cg, "utf8").trim(), "77");

      const stats = await m.stats(NS, "c2");
      assert.match(stats.typeUrl, /io\.containerd\.cgroups\.v1\.Metrics$/);
      assert.ok(stats.v1?.pids && stats.v1.pids.current >= 1n, "the pids metric counts the sleeping process");
      assert.ok(
        stats.v1?.memory && stats.v1.memory.usage && stats.v1.memory.usage.usage > 0n,
        "memory usage is reported",
      );

      await m.kill(NS, "c2", 9);
      const exit = await m.wait(NS, "c2");
      assert.equal(exit.exitStatus, 137);
      await m.delete(NS, "c2");
      assert.ok(!alive(pid));
      await assertNothingLeft(env);
    } finally {
      await env.cleanup();
    }
  });

  test(
    "two containers with one sandbox id share one shim, which exits after the last delete",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        const m = env.manager;
        const annotations = { [SANDBOX_ID_ANNOTATION]: "pod-a" };
        const a = await env.create({
          namespace: NS,
          id: "pa",
          bundle: env.bundle("pa", ["sleep", "1000"], { annotations }),
          sandboxId: "pod-a",
        });
        const b = await env.create({
          namespace: NS,
          id: "pb",
          bundle: env.bundle("pb", ["sleep", "1000"], { annotations }),
          sandboxId: "pod-a",
        });
        assert.equal(a.address, b.address);
        const sa = await m.connect(NS, "pa");
        const sb = await m.connect(NS, "pb");
        assert.equal(sa.shimPid, sb.shimPid);
        assert.deepEqual(env.shimPids(), [sa.shimPid]);
        assert.equal((await env.records.get(NS, "pb"))?.sandboxId, "pod-a");
        await m.start(NS, "pa");
        await m.start(NS, "pb");

        await m.kill(NS, "pa", 9);
        await m.wait(NS, "pa");
        await m.delete(NS, "pa");
        assert.ok(alive(sa.shimPid), "the shim stays for its other task");
        assert.equal((await m.state(NS, "pb")).status, "running");

        await m.kill(NS, "pb", 9);
        assert.equal((await m.wait(NS, "pb")).exitStatus, 137);
        await m.delete(NS, "pb");
        await assertNothingLeft(env);
      } finally {
        await env.cleanup();
      }
    },
  );

  test(
    "a manager killed with SIGKILL leaves containers running; a new one recovers states and exit codes",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        // The first manager lives in a child process that we kill -9.
        await env.manager.close();
        const bundles = {
          r1: env.bundle("r1", ["sleep", "1000"]),
          r2: env.bundle("r2", ["sleep", "1000"]),
          x1: env.bundle("x1", ["/bin/sh", "-c", "sleep 2; exit 5"]),
        };
        const runtimeIndex = new URL("../../src/runtime/index.js", import.meta.url).href;
        const child = spawn(
          process.execPath,
          [
            "--input-type=module",
            "-e",
            `
          import { ShimManager, FileShimRecordStore, RuntimeClasses } from ${JSON.stringify(runtimeIndex)};
          const cfg = JSON.parse(process.argv[1]);
          const m = await ShimManager.create({
            stateDir: cfg.stateDir, address: cfg.address,
            records: new FileShimRecordStore(cfg.recordsDir),
            handlers: new RuntimeClasses({ [cfg.kind]: { runtimeType: cfg.runtimeType, root: cfg.runcRoot } }, cfg.kind),
            shimEnv: cfg.shimEnv,
          });
          const pids = {};
          for (const [id, bundle] of Object.entries(cfg.bundles)) {
            pids[id] = (await m.createTask({ namespace: cfg.ns, id, bundle })).pid;
            await m.start(cfg.ns, id);
          }
          console.log("READY " + JSON.stringify(pids));
          setInterval(() => {}, 1000);
          `,
            JSON.stringify({
              stateDir: env.stateDir,
              address: env.address,
              recordsDir: env.recordsDir,
              runcRoot: env.runcRoot,
              ns: NS,
              bundles,
              kind,
              runtimeType: runtimeTypeOf(kind),
              shimEnv: { BERTH_SHIM_SOCKET_DIR: env.shimSocketDir },
            }),
          ],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        let text = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (text += d));
        const pids = await until(
          () => {
            if (child.exitCode !== null) throw new Error(`the child manager exited with ${child.exitCode}`);
            return /READY (.*)\n/.exec(text)?.[1];
          },
          "the child manager to start its containers",
          60_000,
        ).then((j) => JSON.parse(j) as Record<string, number>);
        child.kill("SIGKILL");
        await new Promise((r) => child.once("exit", r));
        // The runc shim: one per container without a sandbox id; berth's: one for all.
        assert.equal(env.shimPids().length, kind === "berth" ? 1 : 3);
        for (const id of ["r1", "r2"]) assert.ok(alive(pids[id]!), `${id} survives its manager`);
        await until(() => !alive(pids.x1!), "x1 to exit on its own");

        env.manager = await env.newManager();
        const recovered = await env.manager.recover();
        for (const r of recovered) env.addresses.add(r.address);
        // x1's process is gone, but its shim may not have taken in the exit yet (it reaps, then
        // records): recovery reports what the shim knows at that moment, so x1 is either still
        // running or already stopped; Wait is what blocks until the shim has the exit.
        const states = new Map(recovered.map((r) => [r.id, [r.outcome, r.status]]));
        assert.deepEqual([...states.keys()].sort(), ["r1", "r2", "x1"]);
        assert.deepEqual(states.get("r1"), ["live", "running"]);
        assert.deepEqual(states.get("r2"), ["live", "running"]);
        assert.equal(states.get("x1")?.[0], "live");
        assert.ok(
          ["running", "stopped"].includes(String(states.get("x1")?.[1])),
          `x1 recovered as ${states.get("x1")}`,
        );
        const m = env.manager;
        assert.equal((await m.state(NS, "r1")).pid, pids.r1);
        assert.equal((await m.state(NS, "r2")).status, "running");
        assert.equal((await m.wait(NS, "x1")).exitStatus, 5);
        const x1 = await m.state(NS, "x1");
        assert.equal(x1.status, "stopped");
        assert.equal(x1.exitStatus, 5, "the real exit code, kept by the shim while no manager listened");

        for (const id of ["r1", "r2"]) {
          await m.kill(NS, id, 9);
          assert.equal((await m.wait(NS, id)).exitStatus, 137);
        }
        for (const id of ["r1", "r2", "x1"]) await m.delete(NS, id);
        await assertNothingLeft(env);
      } finally {
        await env.cleanup();
      }
    },
  );

  if (kind !== "berth")
    test(
      "a shim killed with SIGKILL: its task is reported exited with the reason, and delete cleans up",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const { pid } = await env.create({ namespace: NS, id: "d1", bundle: env.bundle("d1", ["sleep", "1000"]) });
          await m.start(NS, "d1");
          const { shimPid, address } = await m.connect(NS, "d1");
          const waiting = m.wait(NS, "d1");

          process.kill(shimPid, "SIGKILL");
          const ev = await until(() => env.exits("d1")[0], "the exit event for the dead shim's task");
          assert.equal(ev.exitStatus, 255);
          assert.equal(ev.reason, `shim exited: ${address} unreachable`);
          const w = await waiting;
          assert.equal(w.exitStatus, 255, "a pending Wait resolves instead of hanging");
          assert.equal(w.reason, ev.reason);
          const st = await m.state(NS, "d1");
          assert.equal(st.status, "stopped");
          assert.equal(st.exitStatus, 255);
          assert.equal(st.reason, ev.reason);
          await assert.rejects(m.kill(NS, "d1", 9), NotFoundError);

          const del = await m.delete(NS, "d1");
          assert.equal(del.exitStatus, 255);
          // The runc shim's delete command force-deletes the orphaned container.
          await until(() => !alive(pid), "the orphaned container to be killed");
          await assertNothingLeft(env);
          assert.equal(env.exits("d1").length, 1, "reported once");
        } finally {
          await env.cleanup();
        }
      },
    );

  if (kind !== "berth")
    test(
      "bad input fails with typed errors and leaves no shim, record or mount behind",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const good = env.bundle("b1", ["true"]);
          await assert.rejects(
            m.createTask({ namespace: NS, id: "b1", bundle: good, handler: "kata" }),
            (err: Error) => {
              assert.ok(err instanceof NotFoundError);
              assert.match(err.message, /no runtime handler named "kata"/);
              return true;
            },
          );
          await assert.rejects(
            m.createTask({ namespace: NS, id: "nob", bundle: join(env.root, "bundles", "nob") }),
            (err: Error) => {
              assert.ok(err instanceof InvalidArgumentError);
              assert.match(err.message, /does not exist/);
              return true;
            },
          );
          const noConfig = join(env.root, "bundles", "nocfg");
          mkdirSync(noConfig, { recursive: true });
          await assert.rejects(m.createTask({ namespace: NS, id: "nocfg", bundle: noConfig }), (err: Error) => {
            assert.ok(err instanceof InvalidArgumentError);
            assert.match(err.message, /has no config\.json/);
            return true;
          });
          await assert.rejects(m.createTask({ namespace: NS, id: "other", bundle: good }), InvalidArgumentError);
          await assert.rejects(m.createTask({ namespace: NS, id: "bad/id", bundle: good }), InvalidArgumentError);

          // runc refuses the bundle at create time: the shim it started must be gone afterwards.
          const image = join(env.root, "image-b2");
          const broken = env.bundle("b2", ["/no/such/binary"], { rootfsDir: image });
          await assert.rejects(
            m.createTask({ namespace: NS, id: "b2", bundle: broken, rootfs: bindRootfs(image) }),
            (err: Error) => {
              assert.match(err.message, /no such file or directory/);
              return true;
            },
          );
          assert.deepEqual(m.list(), []);
          await assertNothingLeft(env);

          // A broken config.json: the runc shim's start fails to read it.
          const garbled = env.bundle("b3", ["true"]);
          writeFileSync(join(garbled, "config.json"), "{ not json");
          await assert.rejects(m.createTask({ namespace: NS, id: "b3", bundle: garbled }), /shim start for task b3/);
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );

  if (kind === "berth") {
    test(
      "berth's shim killed with SIGKILL is started again and re-adopts its running containers",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const { pid } = await env.create({ namespace: NS, id: "k1", bundle: env.bundle("k1", ["sleep", "1000"]) });
          await m.start(NS, "k1");
          const before = await m.connect(NS, "k1");
          const waiting = m.wait(NS, "k1");

          process.kill(before.shimPid, "SIGKILL");
          const after = await until(async () => {
            const info = await m.connect(NS, "k1").catch(() => undefined);
            return info && info.shimPid !== before.shimPid ? info : undefined;
          }, "a new shim to serve k1");
          assert.equal(after.taskPid, pid);
          assert.ok(alive(pid), "the container lived through its shim's death");
          const st = await m.state(NS, "k1");
          assert.equal(st.status, "running");
          assert.equal(st.reason, undefined);
          assert.deepEqual(env.exits("k1"), [], "no exit reported for a re-adopted container");

          await m.kill(NS, "k1", 9);
          assert.equal((await waiting).exitStatus, 137, "a Wait pending across the restart gets the real exit");
          await m.delete(NS, "k1");
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );

    test(
      "recover() starts berth's shim again when it died while no manager was running",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const { pid } = await env.create({ namespace: NS, id: "k2", bundle: env.bundle("k2", ["sleep", "1000"]) });
          await env.manager.start(NS, "k2");
          const { shimPid } = await env.manager.connect(NS, "k2");
          await env.manager.close();
          process.kill(shimPid, "SIGKILL");
          await until(() => !alive(shimPid), "the shim to die");

          env.manager = await env.newManager();
          const m = env.manager;
          const recovered = await m.recover();
          assert.deepEqual(
            recovered.map((r) => [r.id, r.outcome, r.status]),
            [["k2", "restarted", "running"]],
          );
          assert.equal((await m.state(NS, "k2")).pid, pid);
          await m.kill(NS, "k2", 9);
          assert.equal((await m.wait(NS, "k2")).exitStatus, 137);
          await m.delete(NS, "k2");
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );
  }
}

describe("with containerd-shim-runc-v2", () => shimSuite("runc"));
describe("with containerd 2.4's containerd-shim-runc-v2", () => shimSuite("runc-2.4"));
describe("with containerd-shim-berth-v2", () => shimSuite("berth"));
