// Runs the berth CLI (bin/berth) as a user would: a child process with its stdout, stderr
// and exit code. For a terminal, see pty.ts.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./daemon.js";

export const BERTH = join(REPO_ROOT, "bin/berth");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/berth to completion with stdin from `input` (or closed). */
export function berth(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BERTH, ...args], {
      env: { ...process.env, NO_COLOR: "", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}
