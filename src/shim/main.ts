// containerd-shim-berth-v2: the shim v2 command protocol (start, delete, serving).
import { parseFlags } from "./flags.js";
import { deleteTask } from "./delete.js";
import { log, serve } from "./serve.js";
import { start } from "./start.js";
import { SHIM_VERSION } from "./service.js";

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-berth-v2:\n  Version:  ${SHIM_VERSION}\n`);
    return 0;
  }
  if (flags.serve) {
    await serve(flags);
    return -1; // keeps running
  }
  if (!flags.namespace) throw new Error("shim namespace cannot be empty");
  switch (flags.action) {
    case "start": {
      const address = await start(flags);
      process.stdout.write(address);
      return 0;
    }
    case "delete": {
      const out = await deleteTask(flags);
      process.stdout.write(out);
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
