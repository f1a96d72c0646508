// `containerd-shim-berth-v2 start`: finds or spawns the serving shim of the caller's group,
// writes the bundle's `address` file and prints the ttrpc address (unix:///path), or, to a
// caller speaking containerd 2.3+'s bootstrap protocol, a BootstrapResult (bootstrap.ts).
import { spawn } from "node:child_process";
import { chmodSync, closeSync, mkdirSync, openSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { applyBootstrapParams, readBootstrapParams, startAnswer } from "./bootstrap.js";
import type { ShimFlags } from "./flags.js";
import { groupId, groupSocketPath, socketDir } from "./paths.js";
import { BAD_OPTION_EXIT, shimNodeFlags } from "./node-flags.js";
import { probe } from "./probe.js";

export function ensureRootDir(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  // sockets and container state live here: root only
  if ((statSync(root).mode & 0o077) !== 0) chmodSync(root, 0o700);
}

/** Runs `start` with what the caller wrote to stdin; resolves with what to print. */
export async function start(given: ShimFlags, stdin: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  const params = readBootstrapParams(stdin, given);
  const { flags, env } = applyBootstrapParams(given, process.env, params);
  const bundle = flags.bundle || process.cwd();
  const root = socketDir();
  ensureRootDir(root);
  const group = groupId(flags.namespace, flags.address);
  const sock = groupSocketPath(root, group);
  const address = `unix://${sock}`;

  if (!(await probe(sock))) await spawnServer(flags, env, sock, join(root, `${group}.log`));
  writeFileSync(join(bundle, "address"), address, { mode: 0o600 });
  return startAnswer(address, params);
}

/** How long `start` waits for a serving shim's answer (BERTH_SHIM_START_TIMEOUT_MS overrides). */
export const SERVER_ANSWER_TIMEOUT_MS = 60_000;

function answerTimeoutMs(env: NodeJS.ProcessEnv): number {
  const given = Number(env.BERTH_SHIM_START_TIMEOUT_MS);
  return Number.isFinite(given) && given > 0 ? given : SERVER_ANSWER_TIMEOUT_MS;
}

async function spawnServer(flags: ShimFlags, env: NodeJS.ProcessEnv, sock: string, logPath: string): Promise<void> {
  const nodeFlags = shimNodeFlags(env);
  const timeoutMs = answerTimeoutMs(env);
  let answer = await spawnServerWith(nodeFlags, flags, env, sock, logPath, timeoutMs);
  // A node that rejects one of the flags (a newer V8 dropped it) must not cost us the shim:
  // start it as it is.
  if (answer === `exit ${BAD_OPTION_EXIT}` && nodeFlags.length > 0) {
    answer = await spawnServerWith([], flags, env, sock, logPath, timeoutMs);
  }
  if (answer !== "ready" && answer !== "exists") {
    throw new Error(`serving shim did not start (${answer || "no answer"}); see ${logPath}`);
  }
}

/** Spawns the serving shim under `nodeFlags`; resolves with its answer on fd 3, or `exit CODE`. */
async function spawnServerWith(
  nodeFlags: string[],
  flags: ShimFlags,
  env: NodeJS.ProcessEnv,
  sock: string,
  logPath: string,
  timeoutMs: number,
): Promise<string> {
  const main = fileURLToPath(new URL("./main.js", import.meta.url));
  const args = [...nodeFlags, main, "-namespace", flags.namespace, "-address", flags.address, "-socket", sock];
  if (flags.publishBinary) args.push("-publish-binary", flags.publishBinary);
  if (flags.id) args.push("-id", flags.id);
  if (flags.debug) args.push("-debug");
  args.push("-berth-serve");
  const logFd = openSync(logPath, "a", 0o600);
  const child = spawn(process.execPath, args, {
    cwd: "/",
    detached: true, // its own session: it outlives `start` and containerd
    stdio: ["ignore", logFd, logFd, "pipe"],
    env,
  });
  closeSync(logFd);
  const answer = await new Promise<string>((resolve) => {
    // A serving shim that neither answers nor exits (stopped, wedged in its start-up; a start
    // once hung 25 minutes here) would hang containerd's or berthd's create with it: after the
    // bound it is killed, and what it logged is in logPath.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(`no answer within ${timeoutMs / 1000} s, killed pid ${child.pid}`);
    }, timeoutMs);
    const done = (answer: string) => {
      clearTimeout(timer);
      resolve(answer);
    };
    let text = "";
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding("utf8");
    pipe.on("data", (d: string) => (text += d));
    // A shim that answered closes fd 3 and keeps running; one that died unanswered is
    // told by its exit code (node's for a bad option, say), so wait for the exit then.
    const answered = () => text.trim() !== "" && done(text.trim());
    pipe.on("end", answered);
    pipe.on("error", answered);
    child.once("exit", (code, signal) => done(text.trim() || `exit ${code ?? signal}`));
  });
  child.unref();
  (child.stdio[3] as unknown as { destroy(): void }).destroy();
  return answer;
}
