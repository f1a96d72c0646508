// Starts a real berthd (bin/berthd as a child process) in a private temp directory with its
// own root, state and socket, and hands back CRI gRPC clients for it.
//
//   const d = await startDaemon({ config: `[cni]\nconf_dir = "{{dir}}/net.d"\n` });
//   t.after(() => d.stop());
//   const v = await d.rt.version({});               // promise style
//   d.runtime.version({ version: "v1" }, cb);        // the raw grpc-js client
//
// `{{dir}}` in the config text is replaced by the daemon's private directory. The helper
// passes --root/--state/--address/--log-level debug before `args`, so `args` can override
// them. stop() (idempotent) sends SIGTERM, waits, and removes the directory; any daemon a
// test forgets is killed and its directory removed when the test process exits.

import * as grpc from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ImageServiceClient,
  ImageServiceDefinition,
  RuntimeServiceClient,
  RuntimeServiceDefinition,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from "../../src/gen/cri/runtime/v1/api.js";
import { removeMasquerade } from "../../src/network/masquerade.js";

/** The repository root (this file runs from dist/test/helpers/). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BERTHD = join(REPO_ROOT, "bin/berthd");

/**
 * The node flags bin/berthd's shebang line gives berthd (`#!/usr/bin/env -S node FLAGS`), so a
 * daemon the tests start with `node bin/berthd` runs as an installed one does. BERTHD_NODE_FLAGS
 * replaces them (bench/memory-idle.bench.ts tries other flags through it).
 */
export function berthdNodeFlags(): string[] {
  const given = process.env.BERTHD_NODE_FLAGS;
  if (given !== undefined) return given.split(/\s+/).filter(Boolean);
  const first = readFileSync(BERTHD, "utf8").split("\n", 1)[0];
  const m = /^#!\S*env -S node((?:\s+--\S+)*)\s*$/.exec(first);
  return m ? m[1].split(/\s+/).filter(Boolean) : [];
}

type DeepPartial<T> = T extends bigint | string | number | boolean | Buffer | undefined
  ? T
  : T extends (infer E)[]
    ? DeepPartial<E>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** The unary methods of a generated grpc-js server interface, as promise-returning calls taking partial requests. */
export type PromiseClient<S> = {
  [
    K in keyof S as string extends K ? never : S[K] extends grpc.handleServerStreamingCall<never, never> ? never : K
  ]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (request: DeepPartial<Req>, options?: { deadlineMs?: number; metadata?: grpc.Metadata }) => Promise<Res>
    : never;
};

interface GenericDefinition {
  methods: Record<string, { requestType: { fromPartial(o: unknown): unknown }; responseStream: boolean }>;
}

/** Wraps a grpc-js client so unary calls return promises; requests are completed with fromPartial. */
export function promiseClient<S>(client: grpc.Client, definition: GenericDefinition): PromiseClient<S> {
  const out: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(definition.methods)) {
    if (m.responseStream) continue;
    out[name] = (request: unknown, options: { deadlineMs?: number; metadata?: grpc.Metadata } = {}) =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
        fn.call(
          client,
          m.requestType.fromPartial(request ?? {}),
          options.metadata ?? new grpc.Metadata(),
          { deadline: Date.now() + (options.deadlineMs ?? 30_000) },
          (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)),
        );
      });
  }
  return out as PromiseClient<S>;
}

/** Options for gRPC clients of a berthd socket: the 16 MiB messages kubelet uses. */
export const CLIENT_OPTIONS: grpc.ClientOptions = {
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
};

export function criClients(socket: string) {
  const creds = grpc.credentials.createInsecure();
  const runtime = new RuntimeServiceClient(`unix://${socket}`, creds, CLIENT_OPTIONS);
  const image = new ImageServiceClient(`unix://${socket}`, creds, CLIENT_OPTIONS);
  return {
    runtime,
    image,
    rt: promiseClient<RuntimeServiceServer>(runtime, RuntimeServiceDefinition),
    img: promiseClient<ImageServiceServer>(image, ImageServiceDefinition),
    close() {
      runtime.close();
      image.close();
    },
  };
}

export interface StartOptions {
  /** TOML written to <dir>/config.toml and passed with --config; `{{dir}}` becomes the private dir. */
  config?: string;
  /** Extra berthd arguments, after the helper's own flags (so they win). */
  args?: string[];
  /** Serve on this socket instead of <dir>/berth.sock (e.g. to collide with another daemon). */
  socket?: string;
  /** Use this state dir instead of <dir>/state. */
  state?: string;
  /** Extra environment for berthd. */
  env?: Record<string, string>;
  /** How long to wait for the socket to answer Version (default 30 s). */
  readyTimeoutMs?: number;
  /** Use this existing directory instead of a new temp dir (e.g. to restart on the same root and state). */
  dir?: string;
  /** stop() leaves the directory in place (the caller removes it). */
  keepDir?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TestDaemon {
  /** The private temp directory holding everything below. */
  dir: string;
  socket: string;
  root: string;
  state: string;
  configPath: string;
  pid: number;
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  /** Promise-style unary calls: `await d.rt.status({ verbose: true })`. */
  rt: PromiseClient<RuntimeServiceServer>;
  img: PromiseClient<ImageServiceServer>;
  /** Resolves when the process exits. */
  exited: Promise<Exit>;
  /** SIGTERM, wait for exit (SIGKILL after 20 s), close clients, remove the directory. Idempotent. */
  stop(): Promise<Exit>;
  /** Sends a signal without waiting or cleaning up (call stop() afterwards). */
  kill(signal?: NodeJS.Signals): void;
  /** Everything berthd wrote to stdout and stderr so far. */
  logs(): string;
}

const live = new Set<{ child: ChildProcess; dir: string; keep: boolean }>();
process.on("exit", () => {
  for (const { child, dir, keep } of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
});

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts berthd and resolves once its socket answers Version; rejects (after cleaning up) with its output if it exits first. */
export async function startDaemon(opts: StartOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "berth-d-"));
  const socket = opts.socket ?? join(dir, "berth.sock");
  const root = join(dir, "root");
  const state = opts.state ?? join(dir, "state");
  const configPath = join(dir, "config.toml");
  // berthd writes a default CNI network into cni.conf_dir when it has none: keep a test's
  // daemon out of the host's /etc/cni/net.d unless the test configures [cni] itself.
  let configText = opts.config ?? "";
  // Appended, not prepended: top-level keys of the test's own text must stay top-level.
  if (!/^\[cni\]/m.test(configText)) configText = `${configText}\n\n[cni]\nconf_dir = "{{dir}}/net.d"\n`;
  // BERTHD_GRPC_SERVER=berth|grpc-js runs every test daemon on that gRPC server (a test's
  // own [grpc] server key wins): how the real-peer suites are run against either.
  const grpcServer = process.env.BERTHD_GRPC_SERVER;
  if (grpcServer && !/^server\s*=/m.test(configText)) {
    configText = /^\[grpc\]/m.test(configText)
      ? configText.replace(/^\[grpc\][ \t]*$/m, `[grpc]\nserver = "${grpcServer}"`)
      : `${configText}\n\n[grpc]\nserver = "${grpcServer}"\n`;
  }
  writeFileSync(configPath, configText.replaceAll("{{dir}}", dir));
  const args = [
    ...berthdNodeFlags(),
    BERTHD,
    "--config",
    configPath,
    "--root",
    root,
    "--state",
    state,
    "--address",
    socket,
    "--log-level",
    "debug",
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const entry = { child, dir, keep: opts.keepDir ?? false };
  live.add(entry);
  let output = "";
  child.stdout!.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (output += b.toString()));
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    }),
  );

  let clients: ReturnType<typeof criClients> | undefined;
  let stopping: Promise<Exit> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      clients?.close();
      if (!exit) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
      if (!opts.keepDir) {
        // berthd installs the masquerade rule of a default network it wrote into a conf_dir of
        // this dir (the one the helper gives it, or the test's own): `berthd uninstall`'s job,
        // done here for every daemon whose directory goes.
        await removeMasquerade((owner) => owner.startsWith(dir + "/"));
        rmSync(dir, { recursive: true, force: true });
      }
      live.delete(entry);
      return exit!;
    })());

  try {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    // Wait for the socket to accept before creating clients: a grpc-js channel that fails to
    // connect backs off for a second or more, which would slow every test.
    while (!(await canConnect(socket))) {
      if (exit) throw new Error(`berthd exited (${exit.code ?? exit.signal}) before serving:\n${output}`);
      if (Date.now() > deadline) throw new Error(`berthd did not open ${socket} in time:\n${output}`);
      await sleep(25);
    }
    clients = criClients(socket);
    await clients.rt.version({}, { deadlineMs: Math.max(1000, deadline - Date.now()) });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    dir,
    socket,
    root,
    state,
    configPath,
    pid: child.pid!,
    runtime: clients.runtime,
    image: clients.image,
    rt: clients.rt,
    img: clients.img,
    exited,
    stop,
    kill: (signal = "SIGTERM") => void child.kill(signal),
    logs: () => output,
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs berthd to completion (e.g. `config default`, or a start that must be refused); killed after timeoutMs. */
export function runBerthd(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...berthdNodeFlags(), BERTHD, ...args], {
      cwd: opts.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
