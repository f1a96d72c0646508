// crictl, the node operator's tool, against a real berthd: the whole workflow from `version`
// to `rmi`, with the outcomes an operator reads (output text, JSON fields, exit codes), through
// real runc, CNI and a real registry. crictl is built from sigs.k8s.io/cri-tools at each
// version below by scripts/go-tools.sh (test/go/crictl-VERSION); a version whose module the Go
// module proxy does not serve is skipped with the reason.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT } from "../helpers/daemon.js";
import { Crictl, type CrictlResult } from "../helpers/crictl.js";
import { startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { goTool } from "../helpers/go-tools.js";
import { daemonLeaks } from "../helpers/leaks.js";
import { runInPty } from "../helpers/pty.js";
import { freePort } from "../helpers/registry.js";

const VERSIONS = [
  { tool: "crictl-1.37", bridge: "berthcctl0", net: "10.234.71" },
  {
    tool: "crictl-1.26",
    bridge: "berthcctl1",
    net: "10.234.72",
    // Checked with `go mod download sigs.k8s.io/cri-tools@v1.26.1` on the machine's Go 1.26.
    missing:
      "sigs.k8s.io/cri-tools v1.26.1 is not served by the Go module proxy (403: 'This module version is not " +
      "available'); crictl 1.26's wire behaviour (the socket path as :authority) is covered by " +
      "test/e2e/go-cri-clients.test.ts (cri-client-126)",
  },
];

const json = <T = Record<string, unknown>>(r: CrictlResult): T => JSON.parse(r.stdout) as T;
const HEX64 = /^[0-9a-f]{64}$/;

function ok(r: CrictlResult, what: string): CrictlResult {
  assert.equal(r.code, 0, `crictl ${what} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host: "127.0.0.1", port, path, timeout: 30_000 }, (res) => {
      let body = "";
      res.on("data", (b: Buffer) => (body += b.toString()));
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("HTTP request timed out")));
    req.on("error", reject);
  });
}

for (const v of VERSIONS) {
  const built = existsSync(join(REPO_ROOT, "test/go", v.tool, "BUILD"));
  describe(v.tool, { skip: built ? false : v.missing }, () => {
    let env: CriEnv;
    let c: Crictl;
    let dir: string;
    let image: string;
    let imageId = "";
    let pod = "";
    let web = "";
    const ids = new Set<string>();

    const write = (name: string, value: unknown): string => {
      const p = join(dir, name);
      writeFileSync(p, JSON.stringify(value));
      return p;
    };
    let podConfig = "";
    const container = (name: string, extra: Record<string, unknown>): string =>
      write(`${name}.json`, { metadata: { name }, image: { image }, log_path: `${name}.log`, linux: {}, ...extra });
    /** crictl create + start; the container id. */
    const run = async (name: string, extra: Record<string, unknown>): Promise<string> => {
      const id = ok(await c.run(["create", pod, container(name, extra), podConfig]), "create").stdout.trim();
      assert.match(id, HEX64);
      ids.add(id);
      assert.equal(ok(await c.run(["start", id]), "start").stdout.trim(), id);
      return id;
    };
    const state = async (id: string) =>
      json<{ status: { state: string; exitCode: number } }>(ok(await c.run(["inspect", id]), "inspect")).status;

    before(async () => {
      const bin = goTool(v.tool, "crictl"); // built first: no daemon waits on the compiler
      env = await startCriEnv({ bridge: v.bridge, subnet: `${v.net}.0/24` });
      dir = mkdtempSync(join(tmpdir(), "berth-crictl-"));
      c = new Crictl(bin, env.d.socket, dir);
      image = env.images.busybox;
      podConfig = write("pod.json", {
        metadata: { name: "op-pod", namespace: "berth-crictl", uid: "op-pod-uid", attempt: 0 },
        hostname: "op-pod",
        log_directory: join(env.logDir, "op-pod"),
        linux: {},
      });
    });

    after(async () => {
      c?.killAll();
      await env?.stop();
      await (await testImages()).stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test("version and info, with endpoint flags and with a crictl.yaml", async () => {
      const sock = `unix://${env.d.socket}`;
      const flags = ok(
        await c.run(["--runtime-endpoint", sock, "--image-endpoint", sock, "version"], { withConfig: false }),
        "version",
      );
      for (const r of [flags, ok(await c.run(["version"]), "version")]) {
        assert.match(r.stdout, /^RuntimeName:\s+berth$/m);
        assert.match(r.stdout, /^RuntimeApiVersion:\s+v1$/m);
        assert.match(r.stdout, /^RuntimeVersion:\s+\d+\.\d+\.\d+/m);
      }
      const info = json<{
        status: { conditions: { type: string; status: boolean }[] };
        config: { cni: { conf_dir: string } };
      }>(ok(await c.run(["info"]), "info"));
      const cond = Object.fromEntries(info.status.conditions.map((x) => [x.type, x.status]));
      assert.deepEqual(cond, { RuntimeReady: true, NetworkReady: true });
      assert.equal(info.config.cni.conf_dir, join(env.d.dir, "net.d"));
      // A socket nobody serves is an error, not a hang or a success.
      const dead = await c.run(["--runtime-endpoint", `unix://${dir}/none.sock`, "--timeout", "2s", "version"], {
        withConfig: false,
      });
      assert.equal(dead.code, 1);
      assert.match(dead.stderr, /none\.sock/);
    });

    test("pull, images, inspecti", async () => {
      const pulled = ok(await c.run(["pull", image]), "pull").stdout;
      imageId = pulled.match(/^Image is up to date for (sha256:[0-9a-f]{64})$/m)?.[1] ?? "";
      assert.ok(imageId, pulled);
      const [repo, tag] = [image.slice(0, image.lastIndexOf(":")), image.slice(image.lastIndexOf(":") + 1)];
      const table = ok(await c.run(["images"]), "images").stdout;
      assert.match(table, new RegExp(`^${repo}\\s+${tag}\\s+${imageId.slice(7, 20)}\\s+\\S+`, "m"));
      assert.deepEqual(
        ok(await c.run(["images", "-q"]), "images -q")
          .stdout.trim()
          .split("\n"),
        [imageId],
      );
      const listed = json<{ images: { id: string; repoTags: string[]; repoDigests: string[] }[] }>(
        ok(await c.run(["images", "-o", "json"]), "images -o json"),
      );
      assert.equal(listed.images.length, 1);
      assert.equal(listed.images[0].id, imageId);
      assert.deepEqual(listed.images[0].repoTags, [image]);
      assert.match(listed.images[0].repoDigests[0], new RegExp(`^${repo}@sha256:[0-9a-f]{64}$`));
      const inspected = json<{
        status: { id: string; repoTags: string[] };
        info: { imageSpec: { config: { Cmd: string[] } } };
      }>(ok(await c.run(["inspecti", image]), "inspecti"));
      assert.equal(inspected.status.id, imageId);
      assert.deepEqual(inspected.status.repoTags, [image]);
      assert.deepEqual(inspected.info.imageSpec.config.Cmd, ["/bin/sh"]);
      const missing = await c.run(["pull", `${repo}:no-such-tag`]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /NotFound/);
    });

    test("runp, create, start, ps, pods, inspect, inspectp", async () => {
      pod = ok(await c.run(["runp", podConfig]), "runp").stdout.trim();
      assert.match(pod, HEX64);
      ids.add(pod);
      const pods = json<{ items: { id: string; state: string; metadata: { name: string } }[] }>(
        ok(await c.run(["pods", "-o", "json"]), "pods"),
      );
      assert.deepEqual(
        pods.items.map((p) => [p.id, p.state, p.metadata.name]),
        [[pod, "SANDBOX_READY", "op-pod"]],
      );
      const podStatus = json<{ status: { network: { ip: string } } }>(ok(await c.run(["inspectp", pod]), "inspectp"));
      assert.match(podStatus.status.network.ip, new RegExp(`^${v.net.replaceAll(".", "\\.")}\\.\\d+$`));

      web = await run("web", { command: ["httpd", "-f", "-p", "8080", "-h", "/www"] });
      const table = ok(await c.run(["ps"]), "ps").stdout;
      assert.match(
        table,
        new RegExp(`^${web.slice(0, 13)}\\s+${image}\\s+.*\\sRunning\\s+web\\s+0\\s+${pod.slice(0, 13)}`, "m"),
      );
      const listed = json<{
        containers: { id: string; state: string; podSandboxId: string; imageId: string; imageRef: string }[];
      }>(ok(await c.run(["ps", "-o", "json"]), "ps -o json"));
      // A listed image_ref is the image id, as containerd lists it (kubelets before 1.30 match
      // it against image ids to keep images in use from GC).
      assert.deepEqual(
        listed.containers.map((x) => [x.id, x.state, x.podSandboxId, x.imageId, x.imageRef]),
        [[web, "CONTAINER_RUNNING", pod, imageId, imageId]],
      );
      const inspected = json<{ status: { state: string; logPath: string; imageRef: string }; info: { pid: number } }>(
        ok(await c.run(["inspect", web]), "inspect"),
      );
      assert.equal(inspected.status.state, "CONTAINER_RUNNING");
      assert.match(
        inspected.status.imageRef,
        new RegExp(`^${image.slice(0, image.lastIndexOf(":"))}@sha256:[0-9a-f]{64}$`),
      );
      assert.equal(inspected.status.logPath, join(env.logDir, "op-pod", "web.log"));
      assert.ok(inspected.info.pid > 0 && existsSync(`/proc/${inspected.info.pid}`), `pid ${inspected.info.pid}`);
    });

    test("exec: output, exit codes, stdin, sync, both transports", async () => {
      const r = ok(await c.run(["exec", web, "sh", "-c", "echo out; echo err >&2"]), "exec");
      assert.equal(r.stdout, "out\n");
      assert.match(r.stderr, /^err$/m);
      const failed = await c.run(["exec", web, "sh", "-c", "exit 3"]);
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /command terminated with exit code 3/);
      assert.equal(ok(await c.run(["exec", "-i", web, "cat"], { input: "typed\n" }), "exec -i").stdout, "typed\n");
      assert.equal(ok(await c.run(["exec", "-r", "websocket", web, "echo", "ws"]), "exec ws").stdout, "ws\n");
      assert.match(ok(await c.run(["exec", "-s", web, "echo", "sync"]), "exec -s").stdout, /^sync\n/);
      const syncFailed = await c.run(["exec", "-s", web, "sh", "-c", "exit 4"]);
      assert.equal(syncFailed.code, 1);
      assert.match(syncFailed.stderr, /exited with 4/);
      const nosuch = await c.run(["exec", "0123456789ab", "true"]);
      assert.equal(nosuch.code, 1);
      assert.match(nosuch.stderr, /not found/i);
    });

    test("exec -it: a shell on a terminal, sized like crictl's", async () => {
      const t = runInPty(c.argv(["exec", "-it", web, "sh"]), { cols: 91, rows: 27 });
      // busybox sh asks the terminal for the cursor position (ESC[6n) and prompts anew.
      await t.waitFor(/\/ # /);
      t.write("tty; stty size; echo $((6 * 7))\r");
      await t.waitFor(/\/dev\/pts\/\d+\r?\n27 91\r?\n42\r?\n/);
      t.write("exit\r");
      assert.equal((await t.exited).code, 0, t.output());
    });

    test("logs, logs -t and --tail, and logs -f until the container stops", async () => {
      const talk = await run("talk", {
        command: ["sh", "-c", "echo first; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"],
      });
      await until(async () => /^tick 2$/m.test((await c.run(["logs", talk])).stdout), "two ticks", 60_000);
      const logs = ok(await c.run(["logs", talk]), "logs");
      assert.match(logs.stdout, /^first\ntick 1\ntick 2\n/);
      assert.match(logs.stderr, /^oops$/m);
      assert.match(ok(await c.run(["logs", "--tail", "1", talk]), "logs --tail").stdout, /^tick \d+\n$/);
      const errs = ok(await c.run(["logs", "--stream", "stderr", talk]), "logs --stream");
      assert.deepEqual([errs.stdout, errs.stderr], ["", "oops\n"]);
      assert.match(
        ok(await c.run(["logs", "-t", talk]), "logs -t").stdout,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z first$/m,
      );
      const follow = c.start(["logs", "-f", talk]);
      const seen = Number(logs.stdout.match(/tick (\d+)\n$/)![1]);
      // Lines written after `logs -f` started reach it.
      await follow.waitFor(new RegExp(`^tick ${seen + 2}$`, "m"));
      assert.equal(ok(await c.run(["stop", "-t", "1", talk]), "stop").stdout.trim(), talk);
      const done = await follow.exited;
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, /^first\n/);
    });

    test("attach: stdin to a running container's shell, and -it on its terminal", async () => {
      const att = await run("att", {
        command: ["sh", "-c", "while read l; do echo got $l; done; echo bye"],
        stdin: true,
        stdin_once: true,
      });
      const r = ok(await c.run(["attach", "-i", att], { input: "hello\nworld\n" }), "attach");
      assert.equal(r.stdout, "got hello\ngot world\nbye\n");
      // stdin_once: the end of the attach's stdin closed the container's, so it finished.
      await until(async () => (await state(att)).state === "CONTAINER_EXITED", "att to exit");
      assert.equal((await state(att)).exitCode, 0);

      const tty = await run("tty", { command: ["sh"], stdin: true, tty: true });
      const t = runInPty(c.argv(["attach", "-it", tty]));
      // The shell's prompt was printed before the attach: type, then see the answer.
      t.write("echo $((7 * 6)); tty\r");
      await t.waitFor(/42\r?\n\/dev\/pts\/\d+/);
      t.write("exit 0\r");
      assert.equal((await t.exited).code, 0, t.output());
      await until(async () => (await state(tty)).state === "CONTAINER_EXITED", "tty to exit");
    });

    test("port-forward reaches a web server in the pod (SPDY and WebSocket)", async () => {
      for (const transport of ["spdy", "websocket"]) {
        const port = await freePort();
        const pf = c.start(["port-forward", "-r", transport, pod, `${port}:8080`]);
        await pf.waitFor(new RegExp(`^Forwarding from 127\\.0\\.0\\.1:${port} -> 8080$`, "m"));
        assert.equal(await httpGet(port, "/index.html"), "hello from berth\n");
        assert.equal(await httpGet(port, "/index.html"), "hello from berth\n"); // a second connection
        await pf.stop();
        assert.match(pf.stdout(), new RegExp(`Handling connection for ${port}`));
      }
    });

    test("stats and statsp", async () => {
      type Stats = {
        attributes: { id: string; metadata: { name: string } };
        cpu?: { usageCoreNanoSeconds: { value: string } };
        memory?: { workingSetBytes: { value: string } };
        writableLayer: { usedBytes: { value: string } };
      };
      const s = json<{ stats: Stats[] }>(ok(await c.run(["stats", "-o", "json", "--id", web]), "stats"));
      assert.deepEqual(
        s.stats.map((x) => x.attributes.id),
        [web],
      );
      assert.ok(Number(s.stats[0].cpu!.usageCoreNanoSeconds.value) > 0, JSON.stringify(s.stats[0]));
      assert.ok(Number(s.stats[0].memory!.workingSetBytes.value) > 0);
      assert.match(
        ok(await c.run(["stats"]), "stats").stdout,
        new RegExp(`^${web.slice(0, 13)}\\s+web\\s+\\d+\\.\\d+\\s+\\S+B`, "m"),
      );
      const p = json<{
        stats: {
          attributes: { id: string; metadata: { name: string } };
          linux: { cpu: { usageCoreNanoSeconds: { value: string } }; containers: Stats[] };
        }[];
      }>(ok(await c.run(["statsp", "-o", "json"]), "statsp"));
      assert.deepEqual(
        p.stats.map((x) => [x.attributes.id, x.attributes.metadata.name]),
        [[pod, "op-pod"]],
      );
      assert.ok(Number(p.stats[0].linux.cpu.usageCoreNanoSeconds.value) > 0);
      assert.ok(p.stats[0].linux.containers.some((x) => x.attributes.id === web));
      assert.match(
        ok(await c.run(["statsp"]), "statsp").stdout,
        new RegExp(`^op-pod\\s+${pod.slice(0, 13)}\\s+\\d+\\.\\d+`, "m"),
      );
    });

    test("stop, rm, stopp, rmp", async () => {
      assert.equal(ok(await c.run(["stop", web]), "stop").stdout.trim(), web);
      assert.equal((await state(web)).state, "CONTAINER_EXITED");
      assert.equal(ok(await c.run(["rm", web]), "rm").stdout.trim(), web);
      const gone = await c.run(["inspect", web]);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /NotFound/);
      assert.equal(ok(await c.run(["stopp", pod]), "stopp").stdout.trim(), `Stopped sandbox ${pod}`);
      const pods = json<{ items: { state: string }[] }>(ok(await c.run(["pods", "-o", "json"]), "pods"));
      assert.deepEqual(
        pods.items.map((p) => p.state),
        ["SANDBOX_NOTREADY"],
      );
      assert.equal(ok(await c.run(["rmp", pod]), "rmp").stdout.trim(), `Removed sandbox ${pod}`);
      assert.equal(ok(await c.run(["pods", "-q"]), "pods -q").stdout, "");
      assert.equal(ok(await c.run(["ps", "-a", "-q"]), "ps -a -q").stdout, "");
    });

    test("imagefsinfo, rmi, and nothing left behind", async () => {
      type FsInfo = { status: { imageFilesystems: { fsId: { mountpoint: string }; usedBytes: { value: string } }[] } };
      const fs = json<FsInfo>(ok(await c.run(["imagefsinfo"]), "imagefsinfo")).status.imageFilesystems;
      assert.equal(fs.length, 1);
      assert.ok(fs[0].fsId.mountpoint.startsWith(env.d.root), fs[0].fsId.mountpoint);
      const used = Number(fs[0].usedBytes.value);
      assert.ok(used > 1_000_000, `image fs holds busybox: ${used} bytes`); // busybox itself is over 1 MB
      assert.equal(ok(await c.run(["rmi", image]), "rmi").stdout.trim(), `Deleted: ${image}`);
      assert.equal(ok(await c.run(["images", "-q"]), "images -q").stdout, "");
      const again = await c.run(["rmi", image]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /no such image/);
      const after = json<FsInfo>(ok(await c.run(["imagefsinfo"]), "imagefsinfo")).status.imageFilesystems;
      assert.ok(Number(after[0].usedBytes.value) < used, `${after[0].usedBytes.value} < ${used}`);
      assert.equal(c.running(), 0, "no crictl still running");
      assert.deepEqual(daemonLeaks(env.d, { bridge: v.bridge, ids }), []);
    });
  });
}
