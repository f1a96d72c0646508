// What every command gets: the daemon's address and lazily made clients, closed at exit.
import type { Command } from "commander";
import { connect, resolveAddress, type Clients } from "./client.js";

export class Ctx {
  private made: Clients | undefined;
  constructor(readonly address: string) {}

  get c(): Clients {
    return (this.made ??= connect(this.address));
  }

  close(): void {
    this.made?.close();
  }
}

let current: Ctx | undefined;

/** The context for the running command (the global --address, or BERTH_ADDRESS, or the default). */
export function ctxOf(cmd: Command): Ctx {
  const opts = cmd.optsWithGlobals<{ address?: string }>();
  return (current ??= new Ctx(resolveAddress(opts.address)));
}

export function currentCtx(): Ctx | undefined {
  return current;
}
