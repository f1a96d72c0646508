// The shim binary's command protocol, as containerd runs it (1.6: runtime/v2/binary.go,
// runtime/v2/shim/util.go Command; 2.x: core/runtime/v2/binary.go, command.go):
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID -bundle BUNDLE delete
// with cwd = the bundle and TTRPC_ADDRESS = where the shim publishes events. `start` gets the
// runtime options on stdin (the Any, or for containerd 2.3+ shims BootstrapParams), prints the
// serving shim's address (shim-bootstrap.ts) and exits; `delete` cleans up after a dead shim
// and prints a protobuf DeleteResponse. Both start through sys/spawn.ts (posix_spawn): no
// fork of berthd.

import { DeleteResponse } from "../gen/containerd/runtime/v2/task/shim.js";
import { Any } from "../gen/google/protobuf/any.js";
import { spawnChild, type Child } from "../sys/spawn.js";
import { DeadlineExceededError, InternalError } from "../util/errors.js";
import { type ShimEndpoint, encodeBootstrapParams, parseStartOutput, speaksBootstrap } from "./shim-bootstrap.js";

export interface ShimCommandOptions {
  /** Absolute path of the shim executable. */
  binary: string;
  namespace: string;
  /** The daemon's own address (containerd passes its gRPC socket); shims group by it. */
  address: string;
  /** Events ttrpc socket, sent as TTRPC_ADDRESS. */
  ttrpcAddress: string;
  /** Sent as -publish-binary (containerd sends its own executable). */
  publishBinary: string;
  id: string;
  bundle: string;
  debug?: boolean;
  /** Extra environment on top of this process's. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Whether `start` sends BootstrapParams; unset: asked of the binary (speaksBootstrap). */
  bootstrap?: boolean;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

function baseArgs(o: ShimCommandOptions): string[] {
  return ["-namespace", o.namespace, "-address", o.address, "-publish-binary", o.publishBinary];
}

/** Runs the shim once and collects its output; kills it when the deadline passes. */
function run(o: ShimCommandOptions, args: string[], stdin: Buffer | undefined, what: string): Promise<RunResult> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    let child: Child;
    try {
      child = spawnChild(o.binary, args, {
        cwd: o.bundle,
        env: { ...process.env, ...o.env, TTRPC_ADDRESS: o.ttrpcAddress },
        stdio: ["pipe", "pipe", "pipe"],
      });
    } catch (e) {
      const where =
        (e as NodeJS.ErrnoException).code === "ENOENT" ? ` (is the bundle ${o.bundle} or the binary missing?)` : "";
      reject(new InternalError(`shim ${what}: cannot run ${o.binary}: ${(e as Error).message}${where}`, { cause: e }));
      return;
    }
    const stdout = child.stdout!;
    const stderr = child.stderr!;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let lingerTimer: NodeJS.Timeout | undefined;
    const finish = (e?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(lingerTimer);
      if (e) return reject(e);
      resolve({
        code: exit!.code,
        signal: exit!.signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString("utf8").trim(),
      });
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      finish(new DeadlineExceededError(`shim ${what}: ${o.binary} did not finish within ${timeoutMs}ms`));
    }, timeoutMs);
    stdout.on("data", (b: Buffer) => out.push(b));
    stderr.on("data", (b: Buffer) => err.push(b));
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      // A serving shim forked by `start` may keep our pipes open if it inherited them; the
      // answer is complete once `start` itself has exited, so do not wait for them for long.
      lingerTimer = setTimeout(() => {
        stdout.destroy();
        stderr.destroy();
        finish();
      }, 500);
    });
    child.on("close", () => {
      if (exit) finish();
    });
    child.stdin!.on("error", () => {
      // The shim may not read stdin at all; a closed pipe is fine.
    });
    child.stdin!.end(stdin ?? Buffer.alloc(0));
  });
}

function failure(what: string, o: ShimCommandOptions, r: RunResult): InternalError {
  const how = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.code}`;
  const detail = r.stderr || r.stdout.toString("utf8").trim();
  return new InternalError(`shim ${what} for task ${o.id}: ${o.binary} ${how}${detail ? `: ${detail}` : ""}`);
}

/**
 * Runs `start`; resolves with where the serving shim is and which task API it serves. stdin
 * carries the runtime options: inside BootstrapParams for a containerd 2.3+ shim, else as the
 * bare Any (shim-bootstrap.ts).
 */
export async function shimStart(o: ShimCommandOptions, options: Any | undefined): Promise<ShimEndpoint> {
  const args = [...baseArgs(o), "-id", o.id, ...(o.debug ? ["-debug"] : []), "start"];
  const bootstrap = o.bootstrap ?? (await speaksBootstrap(o.binary).catch(() => false));
  const stdin = bootstrap
    ? encodeBootstrapParams(o, options)
    : options
      ? Buffer.from(Any.encode(options).finish())
      : undefined;
  const r = await run(o, args, stdin, "start");
  if (r.code !== 0) throw failure("start", o, r);
  try {
    return parseStartOutput(r.stdout);
  } catch (err) {
    throw new InternalError(`shim start for task ${o.id}: ${(err as Error).message}`, { cause: err });
  }
}

/** Runs `delete` (cleanup after a dead or never-started shim); resolves with its DeleteResponse. */
export async function shimDelete(o: ShimCommandOptions): Promise<DeleteResponse> {
  const args = [...baseArgs(o), "-id", o.id, "-bundle", o.bundle, "delete"];
  const r = await run(o, args, undefined, "delete");
  if (r.code !== 0) throw failure("delete", o, r);
  try {
    return DeleteResponse.decode(r.stdout);
  } catch (err) {
    throw new InternalError(`shim delete for task ${o.id}: undecodable DeleteResponse: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
