// The shim's side of a berth-monitor (native/monitor/monitor.c): spawns one per init or
// exec process, or re-adopts a running one through its control socket, and turns its
// text reports into events. A monitor that vanished without an exit record is a lost
// process: it is watched by pid until it is gone.
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";

import { spawnChild } from "../sys/spawn.js";

export interface ExitRecord {
  status: number;
  /** wall time of the exit */
  seconds: bigint;
  nanos: number;
}

export interface MonitorOptions {
  stateDir: string;
  /** Full runtime argv (binary first). */
  argv: string[];
  consoleSocket?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  logger?: { path: string; args: string[]; id: string; namespace: string };
  watchOom?: boolean;
  /** fd for the monitor's own stderr (the shim's log). */
  logFd?: number;
}

type MonitorEvents = {
  pid: [number];
  failed: [number];
  exited: [ExitRecord];
  oom: [];
};

export class Monitor extends EventEmitter<MonitorEvents> {
  pid = 0;
  failedStatus: number | undefined;
  exit: ExitRecord | undefined;
  private conn: net.Socket | undefined;
  private buf = "";
  private lostTimer: NodeJS.Timeout | undefined;

  private constructor(readonly stateDir: string) {
    super();
  }

  static spawn(bin: string, o: MonitorOptions): Monitor {
    const args = ["-s", o.stateDir];
    if (o.consoleSocket) args.push("-c", o.consoleSocket);
    if (o.stdin) args.push("-i", o.stdin);
    if (o.stdout) args.push("-o", o.stdout);
    if (o.stderr) args.push("-e", o.stderr);
    if (o.logger) {
      args.push("-b", o.logger.path, "-n", o.logger.id, "-N", o.logger.namespace);
      for (const a of o.logger.args) args.push("-a", a);
    }
    if (o.watchOom) args.push("-O");
    args.push("--", ...o.argv);
    const logFd = o.logFd ?? "ignore";
    const m = new Monitor(o.stateDir);
    let child;
    try {
      // detached: its own session, so signals aimed at the shim's group never reach it.
      // posix_spawn (sys/spawn.ts), not child_process: no fork of the shim per container.
      child = spawnChild(bin, args, { detached: true, stdio: ["ignore", logFd, logFd, "socket"] });
    } catch {
      m.failedStatus = 127; // could not be started; ready() rejects
      process.nextTick(() => m.emit("failed", 127));
      return m;
    }
    child.unref();
    m.attach(child.stdio[3]!);
    return m;
  }

  /**
   * Re-adopts the monitor of a process after a shim restart: connects to its control
   * socket, or reads the records it left if it has already finished.
   */
  static async adopt(stateDir: string, knownPid: number): Promise<Monitor> {
    const m = new Monitor(stateDir);
    m.pid = knownPid;
    const sock = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.createConnection({ path: join(stateDir, "ctl.sock") });
      s.once("connect", () => resolve(s));
      s.once("error", () => resolve(undefined));
    });
    if (sock) m.attach(sock);
    else await m.onDisconnect();
    return m;
  }

  resize(width: number, height: number): void {
    this.send(`resize ${width} ${height}\n`);
  }

  closeStdin(): void {
    this.send("closestdin\n");
  }

  /** Resolves with the pid once the runtime command succeeded; rejects with its status if not. */
  ready(): Promise<number> {
    if (this.pid > 0) return Promise.resolve(this.pid);
    if (this.failedStatus !== undefined) return Promise.reject(new Error(`exit status ${this.failedStatus}`));
    return new Promise((resolve, reject) => {
      const onPid = (pid: number) => {
        this.off("failed", onFailed);
        resolve(pid);
      };
      const onFailed = (s: number) => {
        this.off("pid", onPid);
        reject(new Error(`exit status ${s}`));
      };
      this.once("pid", onPid);
      this.once("failed", onFailed);
    });
  }

  /** Forgets the monitor (the process is deleted). */
  close(): void {
    clearInterval(this.lostTimer);
    this.conn?.destroy();
    this.conn = undefined;
    this.removeAllListeners();
  }

  private send(line: string): void {
    if (this.conn && !this.conn.destroyed) this.conn.write(line);
  }

  private attach(sock: net.Socket): void {
    this.conn = sock;
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.onLine(line);
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      if (this.conn === sock) this.conn = undefined;
      void this.onDisconnect();
    });
    sock.unref();
  }

  private onLine(line: string): void {
    const [word, ...rest] = line.trim().split(/\s+/);
    if (word === "pid") {
      const pid = Number(rest[0]);
      this.pid = pid;
      this.emit("pid", pid);
    } else if (word === "failed") {
      this.failedStatus = Number(rest[0]);
      this.emit("failed", this.failedStatus);
    } else if (word === "exited") {
      this.setExit({ status: Number(rest[0]), seconds: BigInt(rest[1] ?? "0"), nanos: Number(rest[2] ?? 0) });
    } else if (word === "oom") {
      this.emit("oom");
    }
  }

  private setExit(e: ExitRecord): void {
    if (this.exit) return;
    this.exit = e;
    clearInterval(this.lostTimer);
    this.emit("exited", e);
  }

  /** The control connection is gone: the monitor finished (records on disk) or died. */
  private async onDisconnect(): Promise<void> {
    if (this.exit || this.failedStatus !== undefined) return;
    const exit = await readExitFile(this.stateDir);
    if (exit) return this.setExit(exit);
    const failed = await readFile(join(this.stateDir, "failed"), "utf8").catch(() => undefined);
    if (failed !== undefined) {
      this.failedStatus = Number(failed.trim());
      this.emit("failed", this.failedStatus);
      return;
    }
    if (this.pid <= 0) {
      const pid = Number((await readFile(join(this.stateDir, "pid"), "utf8").catch(() => "0")).trim());
      this.pid = pid || 0;
    }
    // The monitor died without a record (killed). Its process, if alive, has no one
    // holding its exit status any more; watch it and report it as lost when it goes.
    const check = () => {
      if (this.pid > 0 && alive(this.pid)) return false;
      const now = Date.now();
      this.setExit({ status: 255, seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 });
      return true;
    };
    if (!check()) {
      this.lostTimer = setInterval(check, 1000);
      this.lostTimer.unref();
    }
  }
}

export async function readExitFile(stateDir: string): Promise<ExitRecord | undefined> {
  const text = await readFile(join(stateDir, "exit"), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const [s, sec, ns] = text.trim().split(/\s+/);
  return { status: Number(s), seconds: BigInt(sec ?? "0"), nanos: Number(ns ?? 0) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); it is gone for our purposes.
    return !isZombie(pid);
  } catch {
    return false;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}
