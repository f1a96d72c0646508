// Real Go CRI clients against berthd, holding the conversation kubelet holds with a runtime
// (test/go/cri-clients/scenario): Version, Status, pull, list and inspect the image, a pod,
// a container in it, ExecSync, GetContainerEvents, stop and remove everything, ImageFsInfo.
//   cri-client-126  grpc-go v1.49 dialing the socket path as kubelet 1.26 and crictl 1.26 did,
//                   so :authority is the socket path itself (issue 12's PROTOCOL_ERROR)
//   cri-client-new  k8s.io/cri-client, the client of kubelet 1.37
// Both are built with the machine's Go from the module proxy (scripts/go-tools.sh).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HpackDecoder } from "../../src/cri/transport/hpack.js";
import { startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";
import { goTool } from "../helpers/go-tools.js";
import { daemonLeaks } from "../helpers/leaks.js";

const BRIDGE = "berthgoc0";

/** The scenario's steps, in order: each prints "ok STEP: detail" once it passed. */
const STEPS = [
  "Version",
  "Status",
  "PullImage",
  "ListImages",
  "ImageStatus",
  "RunPodSandbox",
  "PodSandboxStatus",
  "ListPodSandbox",
  "GetContainerEvents",
  "CreateContainer",
  "StartContainer",
  "ContainerStatus",
  "ListContainers",
  "ExecSync",
  "StopContainer",
  "RemoveContainer",
  "ContainerEvents",
  "StopPodSandbox",
  "RemovePodSandbox",
  "RemoveImage",
  "ImageFsInfo",
];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(bin: string, args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    // A hung client must not hang the suite: every step has its own deadline well inside this.
    const timer = setTimeout(() => p.kill("SIGKILL"), 10 * 60_000);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The detail printed after "ok STEP: ". */
function detail(stdout: string, step: string): string {
  return stdout.match(new RegExp(`^ok ${step}: (.*)$`, "m"))?.[1] ?? "";
}

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const HEADERS = 0x1;
const SETTINGS_FRAME = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // an empty SETTINGS: the server preface

/**
 * The :authority of the first request `bin` sends, read by a socket that answers only the
 * HTTP/2 preface: what the client puts on the wire, whatever a runtime would make of it.
 */
async function wireAuthority(bin: string): Promise<{ authority: string; socket: string }> {
  const dir = mkdtempSync(join(tmpdir(), "berth-goauth-"));
  const socket = join(dir, "cri.sock");
  const server = createServer((conn) => {
    conn.on("error", () => {});
    conn.write(SETTINGS_FRAME);
    let buf = Buffer.alloc(0);
    conn.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let at = PREFACE_LENGTH; buf.length >= at + 9;) {
        const length = buf.readUIntBE(at, 3);
        const [type, flags] = [buf[at + 3]!, buf[at + 4]!];
        if (buf.length < at + 9 + length) return;
        if (type === HEADERS) {
          // A request's headers fit one frame; strip the optional pad length and priority.
          const payload = buf.subarray(at + 9, at + 9 + length);
          const pad = flags & 0x8 ? payload[0]! : 0;
          const start = (flags & 0x8 ? 1 : 0) + (flags & 0x20 ? 5 : 0);
          const { fields } = new HpackDecoder().decode(payload.subarray(start, payload.length - pad));
          found(fields.find((f) => f.name === ":authority")?.value ?? "(none)");
          conn.destroy();
          return;
        }
        at += 9 + length;
      }
    });
  });
  let found!: (authority: string) => void;
  const authority = new Promise<string>((resolve, reject) => {
    found = resolve;
    server.once("error", reject);
    server.listen(socket, () => {
      const client = spawn(bin, ["-socket", socket, "-image", "none", "-log-dir", dir, "-timeout", "30s"], {
        stdio: "ignore",
      });
      client.once("exit", (code) => reject(new Error(`${bin} exited (${code}) before sending a request`)));
      void authority.finally(() => client.kill("SIGKILL"));
    });
  });
  try {
    return { authority: await authority, socket };
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("Go CRI clients (kubelet 1.26's wire behaviour and k8s.io/cri-client)", () => {
  let env: CriEnv;
  const bins = new Map<string, string>();

  before(async () => {
    // Built first (minutes when the cache is cold), so no daemon waits on the compiler.
    for (const b of ["cri-client-126", "cri-client-new"]) bins.set(b, goTool("cri-clients", b));
    env = await startCriEnv({ bridge: BRIDGE, subnet: "10.234.60.0/24" });
  });

  after(async () => {
    await env?.stop();
    await (await testImages()).stop();
  });

  test("on the wire, the 1.26 client sends the socket path as :authority and cri-client sends localhost", async () => {
    // Without the first, this file would not cover issue 12 (nghttp2 refusing such authorities).
    const old = await wireAuthority(bins.get("cri-client-126")!);
    assert.equal(old.authority, old.socket);
    assert.equal((await wireAuthority(bins.get("cri-client-new")!)).authority, "localhost");
  });

  for (const client of ["cri-client-126", "cri-client-new"]) {
    test(`${client} runs a pod, a container, exec and events, and removes them again`, async (t) => {
      const r = await run(bins.get(client)!, [
        "-socket",
        env.d.socket,
        "-image",
        env.images.busybox,
        "-pod",
        client,
        "-log-dir",
        join(env.logDir, client),
      ]);
      const output = `${r.stdout}${r.stderr}`;
      assert.equal(r.code, 0, `${client} failed:\n${output}\n--- berthd:\n${env.d.logs().slice(-4000)}`);
      for (const line of r.stdout.trimEnd().split("\n")) t.diagnostic(line);
      const passed = [...r.stdout.matchAll(/^ok (\w+): /gm)].map((m) => m[1]);
      assert.deepEqual(passed, STEPS, output);
      assert.match(r.stdout, new RegExp(`^PASS ${client}$`, "m"));
      assert.match(detail(r.stdout, "Version"), /^berth \S+, CRI v1$/);
      assert.match(detail(r.stdout, "PodSandboxStatus"), /^SANDBOX_READY, IP 10\.234\.60\.\d+$/);
      assert.match(detail(r.stdout, "ExecSync"), /^stdout "out\\n" stderr "err\\n" exit 0; exit 7$/);
      assert.equal(
        detail(r.stdout, "ContainerEvents"),
        "CONTAINER_CREATED_EVENT CONTAINER_STARTED_EVENT CONTAINER_STOPPED_EVENT CONTAINER_DELETED_EVENT",
      );

      // What the client created is gone from berthd and from the machine.
      const ids = [detail(r.stdout, "RunPodSandbox"), detail(r.stdout, "CreateContainer")];
      assert.ok(
        ids.every((id) => /^[0-9a-f]{64}$/.test(id)),
        `ids ${ids.join(" ")}`,
      );
      assert.deepEqual((await env.d.rt.listPodSandbox({})).items, []);
      assert.deepEqual((await env.d.rt.listContainers({})).containers, []);
      assert.deepEqual((await env.d.img.listImages({})).images, []);
      assert.deepEqual(daemonLeaks(env.d, { bridge: BRIDGE, ids }), []);
    });
  }
});
