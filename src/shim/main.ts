// containerd-shim-berth-v2: the shim v2 command protocol (start, delete, serving).
// Each action loads only its own modules: `start` runs once per container and must be quick.
import { parseFlags } from "./flags.js";

const VERSION = "berth-shim 0.2.0"; // service.ts SHIM_VERSION

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} berth-shim[${process.pid}] ${msg}\n`);
}

/**
 * What the caller wrote to stdin for `start` (containerd 2.3+'s BootstrapParams, 1.6's runtime
 * options, or nothing); nothing from a terminal, where no caller writes and a read would hang.
 */
async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-berth-v2:\n  Version:  ${VERSION}\n`);
    return 0;
  }
  if (flags.serve) {
    const { serve } = await import("./serve.js");
    await serve(flags);
    return -1; // keeps running
  }
  if (!flags.namespace) throw new Error("shim namespace cannot be empty");
  switch (flags.action) {
    case "start": {
      const { start } = await import("./start.js");
      process.stdout.write(await start(flags, await readStdin()));
      return 0;
    }
    case "delete": {
      const { deleteTask } = await import("./delete.js");
      process.stdout.write(await deleteTask(flags));
      return 0;
    }
    default:
      throw new Error(`unknown action ${JSON.stringify(flags.action)}: want start or delete`);
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    if (process.argv.includes("-berth-serve") || process.argv.includes("--berth-serve")) log(`fatal: ${msg}`);
    else process.stderr.write(`containerd-shim-berth-v2: ${msg}\n`);
    process.exit(1);
  },
);
