// Executing one CNI plugin: found on CNI_PATH by its `type`, given the command in its
// environment and its network config on stdin; it answers a result (or an error object) as
// JSON on stdout. Plugins start through sys/spawn.ts (posix_spawn), not child_process: a
// fork of berthd would copy its page tables for every plugin, two or three per pod.

import { constants as fsConstants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";

import { spawnChild, type Child } from "../../sys/spawn.js";
import { FailedPreconditionError } from "../../util/errors.js";
import { isObject } from "./config.js";
import { CniPluginError, CniPluginNotFoundError, CniPluginTimeoutError } from "./errors.js";
import type { CniCommand, CniNetworkConfigList } from "./types.js";

export interface CniExecOptions {
  /** directories searched for plugin binaries, in order; also passed as CNI_PATH */
  binDirs: string[];
  /** per plugin invocation; default 60 s */
  timeoutMs?: number;
}

export interface PluginRun {
  plugin: string;
  command: CniCommand;
  network: string;
  env: Record<string, string>;
  stdin: string;
}

/** Runs plugin binaries. One instance per bin-dir set; it holds no per-pod state. */
export class CniExec {
  readonly binDirs: string[];
  readonly timeoutMs: number;

  constructor(opts: CniExecOptions) {
    this.binDirs = opts.binDirs;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** The executable for plugin `type`, or undefined when no bin dir has it. */
  async find(type: string): Promise<string | undefined> {
    for (const dir of this.binDirs) {
      const p = join(dir, type);
      try {
        await access(p, fsConstants.X_OK);
        return p;
      } catch {
        // try the next directory
      }
    }
    return undefined;
  }

  /** Plugin types (including IPAM types) named by the lists whose binaries are missing. */
  async missingPlugins(lists: CniNetworkConfigList[], extra: string[] = []): Promise<string[]> {
    const types = new Set(extra);
    for (const l of lists) {
      for (const p of l.plugins) {
        types.add(p.type);
        if (typeof p.ipam?.type === "string") types.add(p.ipam.type);
      }
    }
    const missing: string[] = [];
    for (const t of types) if (!(await this.find(t))) missing.push(t);
    return missing;
  }

  /** Asks a plugin which spec versions it supports (the VERSION command). */
  async versions(type: string): Promise<string[]> {
    const out = await this.run({
      plugin: type,
      command: "VERSION",
      network: "",
      env: { CNI_COMMAND: "VERSION" },
      stdin: JSON.stringify({ cniVersion: "1.0.0" }),
    });
    const parsed = out as { supportedVersions?: unknown };
    if (!Array.isArray(parsed.supportedVersions)) {
      throw new CniPluginError(
        type,
        "VERSION",
        "",
        0,
        "no supportedVersions in the VERSION answer",
        JSON.stringify(out),
      );
    }
    return parsed.supportedVersions.filter((v): v is string => typeof v === "string");
  }

  /** The first of `preferred` that every plugin in `types` supports. */
  async commonVersion(types: string[], preferred: string[]): Promise<string> {
    const supported = await Promise.all(types.map((t) => this.versions(t)));
    const v = preferred.find((p) => supported.every((s) => s.includes(p)));
    if (!v) {
      throw new FailedPreconditionError(
        `CNI plugins ${types.join(", ")} in ${this.binDirs.join(":")} share none of the versions ${preferred.join(", ")}`,
      );
    }
    return v;
  }

  /** Runs one plugin; resolves to its parsed stdout (undefined when it printed nothing). */
  async run(r: PluginRun): Promise<unknown> {
    const bin = await this.find(r.plugin);
    if (!bin) throw new CniPluginNotFoundError(r.plugin, this.binDirs);
    // Plugins inherit our environment: portmap and bridge run iptables, found on PATH.
    const env = { ...process.env, ...r.env, CNI_PATH: this.binDirs.join(":") };
    const { code, stdout, stderr, timedOut } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
      timedOut: boolean;
    }>((resolve, reject) => {
      // Its own process group, so a timeout also kills what it started (iptables, IPAM plugins).
      let child: Child;
      try {
        child = spawnChild(bin, [], { env, stdio: ["pipe", "pipe", "pipe"], detached: true });
      } catch (e) {
        reject(
          new CniPluginError(r.plugin, r.command, r.network, 0, `cannot execute ${bin}: ${(e as Error).message}`, ""),
        );
        return;
      }
      const stdout = child.stdout!;
      const stderr = child.stderr!;
      const stdin = child.stdin!;
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = setTimeout(() => {
        child.killGroup("SIGKILL");
        // Do not wait for "close": a grandchild that escaped the group could hold stdout open.
        stdout.destroy();
        stderr.destroy();
        resolve({ code: null, stdout: "", stderr: "", timedOut: true });
      }, this.timeoutMs);
      stdout.on("data", (b: Buffer) => out.push(b));
      stderr.on("data", (b: Buffer) => err.push(b));
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({
          code,
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          timedOut: false,
        });
      });
      // A plugin that exits without reading stdin gives EPIPE here; its exit status tells the story.
      stdin.on("error", () => undefined);
      stdin.end(r.stdin);
    });
    if (timedOut) throw new CniPluginTimeoutError(r.plugin, r.command, this.timeoutMs);
    if (code !== 0) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(stdout);
      } catch {
        parsed = undefined;
      }
      if (isObject(parsed) && (typeof parsed.msg === "string" || typeof parsed.code === "number")) {
        throw new CniPluginError(
          r.plugin,
          r.command,
          r.network,
          typeof parsed.code === "number" ? parsed.code : 0,
          typeof parsed.msg === "string" ? parsed.msg : "",
          typeof parsed.details === "string" ? parsed.details : "",
        );
      }
      const text = (stdout.trim() || stderr.trim() || "(no output)").slice(0, 2000);
      throw new CniPluginError(
        r.plugin,
        r.command,
        r.network,
        0,
        `exited with ${code === null ? "a signal" : `status ${code}`}: ${text}`,
        "",
      );
    }
    if (stdout.trim() === "") return undefined;
    try {
      return JSON.parse(stdout);
    } catch (err) {
      throw new CniPluginError(
        r.plugin,
        r.command,
        r.network,
        0,
        `printed invalid JSON: ${(err as Error).message}`,
        stdout.slice(0, 2000),
      );
    }
  }
}
