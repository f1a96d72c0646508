// What berthd and a shim tell each other on the shim's `start`, across containerd's shim
// generations (containerd core/runtime/v2 command.go and shim.go):
//   containerd 1.6/1.7 shims take the runtime options Any on stdin and print their address, as
//     text (`unix:///...`) or, from 1.7 on, as JSON {"version":2,"address":...,"protocol":...};
//   containerd 2.0-2.2 runc shims print that JSON with version 3: they serve the task API as
//     containerd.task.v3.Task only (same messages, another service name);
//   containerd 2.3+ shims refuse a `start` without a BootstrapParams protobuf on stdin (the
//     options travel inside it as an extension) and answer with a BootstrapResult protobuf.
// The version a shim announced decides the task API berthd calls; it is kept beside the task
// in the bundle's bootstrap.json (the name and JSON form containerd 2.x uses), so a restarted
// berthd calls the same API.
import { execFile } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { BootstrapParams, BootstrapResult, LogLevel } from "../gen/containerd/runtime/bootstrap/v1/bootstrap.js";
import { TaskDefinition } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { InvalidArgumentError } from "../util/errors.js";

/** The task API a shim serves: 2 = containerd.task.v2.Task, 3 = containerd.task.v3.Task. */
export type TaskApiVersion = 2 | 3;

/** Where a started shim serves, and which task API. */
export interface ShimEndpoint {
  /** unix:///path, as the shim printed it. */
  address: string;
  taskApi: TaskApiVersion;
}

/** The task service of either version: v3 is v2's methods and messages under another name. */
export type TaskServiceDefinition = Omit<typeof TaskDefinition, "fullName"> & { fullName: string };

const TaskV3Definition: TaskServiceDefinition = { ...TaskDefinition, fullName: "containerd.task.v3.Task" };

export function taskDefinition(version: TaskApiVersion): TaskServiceDefinition {
  return version === 3 ? TaskV3Definition : TaskDefinition;
}

function taskApiOf(version: number, answer: string): TaskApiVersion {
  // containerd 1.7 shims announce version 2; older ones nothing at all.
  if (version === 0 || version === 2) return 2;
  if (version === 3) return 3;
  throw new InvalidArgumentError(`shim start announced task API version ${version} (berth speaks 2 and 3): ${answer}`);
}

function checkedEndpoint(address: unknown, protocol: unknown, version: number, answer: string): ShimEndpoint {
  if (typeof address !== "string" || !address) {
    throw new InvalidArgumentError(`shim start answered without an address: ${answer}`);
  }
  if (protocol !== undefined && protocol !== "" && protocol !== "ttrpc") {
    throw new InvalidArgumentError(`shim start offers protocol ${JSON.stringify(protocol)}; berth speaks ttrpc only`);
  }
  return { address, taskApi: taskApiOf(version, answer) };
}

/**
 * What `start` printed: a BootstrapResult protobuf, JSON, or the plain address. A protobuf
 * BootstrapResult starts with a field tag (0x08 version, 0x12 address...), never with a
 * printable character, so the first byte tells the forms apart.
 */
export function parseStartOutput(output: Buffer | string): ShimEndpoint {
  const bytes = typeof output === "string" ? Buffer.from(output) : output;
  if (bytes.length > 0 && bytes[0]! < 0x20 && bytes[0] !== 0x0a && bytes[0] !== 0x09 && bytes[0] !== 0x0d) {
    let r: BootstrapResult;
    try {
      r = BootstrapResult.decode(bytes);
    } catch (err) {
      throw new InvalidArgumentError(`shim start printed an undecodable BootstrapResult: ${(err as Error).message}`);
    }
    return checkedEndpoint(r.address, r.protocol, r.version, JSON.stringify({ ...r, extensions: undefined }));
  }
  const text = bytes.toString("utf8").trim();
  if (text.startsWith("{")) {
    let parsed: { address?: unknown; protocol?: unknown; version?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new InvalidArgumentError(`shim start printed malformed JSON: ${text}`);
    }
    return checkedEndpoint(parsed.address, parsed.protocol, Number(parsed.version ?? 0), text);
  }
  if (!text) throw new InvalidArgumentError("shim start printed no address");
  if (/\s/.test(text)) throw new InvalidArgumentError(`shim start printed something other than an address: ${text}`);
  return { address: text, taskApi: 2 };
}

export interface BootstrapCaller {
  id: string;
  namespace: string;
  /** The daemon's own address (-address). */
  address: string;
  /** Where shims publish events (TTRPC_ADDRESS). */
  ttrpcAddress: string;
  /** -publish-binary. */
  publishBinary: string;
  debug?: boolean;
}

/** The BootstrapParams a 2.3+ shim wants on stdin; the runtime options ride as an extension. */
export function encodeBootstrapParams(c: BootstrapCaller, options: Any | undefined): Buffer {
  const params = BootstrapParams.fromPartial({
    instanceId: c.id,
    namespace: c.namespace,
    logLevel: c.debug ? LogLevel.LOG_LEVEL_DEBUG : LogLevel.LOG_LEVEL_INFO,
    containerdTtrpcAddress: c.ttrpcAddress,
    containerdGrpcAddress: c.address,
    containerdBinary: c.publishBinary,
    extensions: options ? [{ value: options }] : [],
    // socket_dir unset: the shim's default (/run/containerd/s), where 1.x shims put theirs.
  });
  return Buffer.from(BootstrapParams.encode(params).finish());
}

/** `shim -v` of containerd's shim library prints "Version:  2.4.2+unknown" (1.6: "1.6.20~ds1"). */
export function bootstrapFromVersionOutput(text: string): boolean {
  const m = /^\s*Version:\s+v?(\d+)\.(\d+)/m.exec(text);
  if (!m) return false;
  const major = Number(m[1]);
  return major > 2 || (major === 2 && Number(m[2]) >= 3);
}

const probed = new Map<string, Promise<boolean>>();

/**
 * Whether the shim binary is built on containerd 2.3+'s shim library and so needs
 * BootstrapParams: asked once per binary file (`-v`), again only when the file changes. A
 * shim whose `-v` says nothing recognisable gets the older protocol.
 */
export async function speaksBootstrap(binary: string): Promise<boolean> {
  const st = await stat(binary);
  const k = `${binary}\0${st.ino}\0${st.size}\0${st.mtimeMs}`;
  let p = probed.get(k);
  if (!p) {
    p = new Promise((resolve) => {
      execFile(binary, ["-v"], { timeout: 10_000, encoding: "utf8" }, (err, stdout) =>
        resolve(!err && bootstrapFromVersionOutput(stdout)),
      );
    });
    probed.set(k, p);
  }
  return p;
}

export const ENDPOINT_FILE = "bootstrap.json";

/** Records what the task's shim announced in its bundle (containerd 2.x's bootstrap.json form). */
export async function writeShimEndpoint(bundle: string, ep: ShimEndpoint): Promise<void> {
  const json = JSON.stringify({ version: ep.taskApi, address: ep.address, protocol: "ttrpc" });
  await writeFile(join(bundle, ENDPOINT_FILE), json, { mode: 0o600 });
}

/** The task's shim endpoint: the recorded address, with the task API its bundle records (none: 2). */
export async function readShimEndpoint(bundle: string, address: string): Promise<ShimEndpoint> {
  let text: string;
  try {
    text = await readFile(join(bundle, ENDPOINT_FILE), "utf8");
  } catch {
    return { address, taskApi: 2 }; // a task started before berth recorded it, or its bundle is gone
  }
  try {
    const parsed = JSON.parse(text) as { version?: unknown };
    return { address, taskApi: taskApiOf(Number(parsed.version ?? 0), text) };
  } catch {
    return { address, taskApi: 2 };
  }
}
