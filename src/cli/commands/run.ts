// berth run: a pod and a container in one step (RunPodSandbox + CreateContainer +
// StartContainer), then either detach (-d), stream the output until the container exits
// (the default, read from its CRI log file so even a command that exits at once shows all
// its output), or attach interactively (-i/-t, through the streaming server).
//
// Exit codes follow docker run: the container's own exit code; 125 when berth itself failed;
// 126 when the command cannot be run, 127 when it does not exist.
//
// Ctrl-C, as docker handles it:
//  - with -t the terminal is raw, so ^C goes into the container's terminal and the program
//    there gets SIGINT; Ctrl-P Ctrl-Q detaches and leaves the container running.
//  - without -t docker forwards SIGINT to the container's main process. The CRI cannot send an
//    arbitrary signal, so berth stops the container instead (its stop signal, SIGKILL after
//    10 s) and still waits for it and exits with its code; a second Ctrl-C stops waiting and
//    leaves the container behind (exit 130).
import type { Command } from "commander";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { status as Code } from "@grpc/grpc-js";
import { InfoResponse } from "../../gen/berth/v1/berth.js";
import {
  ContainerState,
  NamespaceMode,
  Protocol,
  type ContainerConfig,
  type PodSandboxConfig,
  type PortMapping,
} from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_RUN_FAILED, isCode, isServiceError } from "../errors.js";
import { streamSession } from "../remotecommand.js";
import { findImage, missingImage } from "../resolve.js";
import { ANNOTATION_IMAGE, ANNOTATION_LOG_DIR, LABEL_RUN } from "../state.js";
import { printLogs, removeRunPod } from "./containers.js";
import { collect, pullImage, splitRepoTag } from "./images.js";

export interface RunOptions {
  rm?: boolean;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  name?: string;
  publish?: string[];
  env?: string[];
  volume?: string[];
  runtime?: string;
  memory?: string;
  cpus?: string;
  entrypoint?: string;
  workdir?: string;
  user?: string;
  hostname?: string;
  net?: string;
  pull: string;
}

const usage = (msg: string, hint?: string) => new CliError(msg, hint ?? "see berth run --help", EXIT_RUN_FAILED);

/** "8080:80", "127.0.0.1:8080:80/udp" -> a CRI port mapping. */
export function parsePublish(spec: string): PortMapping {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+):(\d+)(?:\/(tcp|udp|sctp))?$/.exec(spec);
  if (!m) throw usage(`-p ${spec}: expected HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp], optionally prefixed by HOST_IP:`);
  const [, ip, host, ctr, proto] = m;
  const port = (p: string) => {
    const n = Number(p);
    if (n < 1 || n > 65535) throw usage(`-p ${spec}: port ${p} is out of range 1-65535`);
    return n;
  };
  return {
    hostIp: (ip ?? "").replace(/^\[|\]$/g, ""),
    hostPort: port(host),
    containerPort: port(ctr),
    protocol: proto === "udp" ? Protocol.UDP : proto === "sctp" ? Protocol.SCTP : Protocol.TCP,
  };
}

/** "K=V" (or "K", taken from this environment). */
export function parseEnv(spec: string): { key: string; value: string } {
  const eq = spec.indexOf("=");
  if (eq === 0) throw usage(`-e ${spec}: the variable name is empty`);
  if (eq < 0) return { key: spec, value: process.env[spec] ?? "" };
  return { key: spec.slice(0, eq), value: spec.slice(eq + 1) };
}

/** "SRC:DST[:ro|rw]" with a host path SRC. */
export function parseVolume(spec: string): { hostPath: string; containerPath: string; readonly: boolean } {
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1])
    throw usage(`-v ${spec}: expected HOST_PATH:CONTAINER_PATH[:ro]`);
  const [src, dst, mode] = parts;
  if (mode !== undefined && mode !== "ro" && mode !== "rw")
    throw usage(`-v ${spec}: mode must be ro or rw, not ${mode}`);
  if (!src.startsWith("/") && !src.startsWith(".")) {
    throw usage(`-v ${spec}: named volumes are not supported; give a host path (absolute, or starting with ./)`);
  }
  if (!dst.startsWith("/")) throw usage(`-v ${spec}: the container path must be absolute`);
  return { hostPath: resolvePath(src), containerPath: dst, readonly: mode === "ro" };
}

/** "512m", "1g", "1.5G", "1048576" -> bytes. */
export function parseMemory(spec: string): bigint {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(spec.trim());
  if (!m) throw usage(`--memory ${spec}: expected a size like 512m or 1g`);
  const mult = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase()] ?? 1;
  const bytes = BigInt(Math.round(Number(m[1]) * mult));
  if (bytes < 6n * 1024n * 1024n) throw usage(`--memory ${spec}: the minimum is 6m`);
  return bytes;
}

/** "1.5" CPUs -> a CFS quota over a 100 ms period. */
export function parseCpus(spec: string): { cpuPeriod: bigint; cpuQuota: bigint } {
  const n = Number(spec);
  if (!Number.isFinite(n) || n <= 0) throw usage(`--cpus ${spec}: expected a positive number like 0.5 or 2`);
  return { cpuPeriod: 100_000n, cpuQuota: BigInt(Math.max(1000, Math.round(n * 100_000))) };
}

/** A default container name from the image: "busybox-3f9a1c". */
function defaultName(image: string): string {
  const repo = splitRepoTag(image.split("@")[0]).repo;
  const base = repo.slice(repo.lastIndexOf("/") + 1).replace(/[^a-zA-Z0-9_.-]/g, "") || "ctr";
  return `${base}-${randomBytes(3).toString("hex")}`;
}

/** The exit code docker uses for a container that could not start. */
function startFailureCode(err: unknown): number {
  const text = isServiceError(err) ? err.details : String(err);
  if (/executable file not found|no such file or directory/i.test(text)) return 127;
  if (/permission denied|exec format error/i.test(text)) return 126;
  return EXIT_RUN_FAILED;
}

/**
 * Waits for the container's exit and returns its code. UNKNOWN is not taken as final: berthd
 * may answer it for a moment while it records an exit; only a lasting UNKNOWN ends the wait.
 */
async function waitExit(c: Clients, id: string): Promise<number> {
  let unknownSince: number | undefined;
  for (;;) {
    const { status } = await c.rt.containerStatus({ containerId: id });
    if (!status) return EXIT_RUN_FAILED;
    if (status.state === ContainerState.CONTAINER_EXITED) return status.exitCode;
    if (status.state === ContainerState.CONTAINER_UNKNOWN) {
      unknownSince ??= Date.now();
      if (Date.now() - unknownSince > 10_000) {
        throw new CliError(
          `container ${id.slice(0, 12)} is in an unknown state: ${status.message || status.reason}`,
          undefined,
          EXIT_RUN_FAILED,
        );
      }
    } else {
      unknownSince = undefined;
    }
    await sleep(100);
  }
}

async function logRoot(c: Clients): Promise<string> {
  try {
    const info = await new Promise<InfoResponse>((resolve, reject) =>
      c.berth.info({}, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    if (info.root) return join(info.root, "pod-logs");
  } catch (err) {
    if (!isCode(err, Code.UNIMPLEMENTED)) throw err;
  }
  return "/var/log/berth/pods";
}

export async function run(c: Clients, image: string, cmd: string[], o: RunOptions): Promise<number> {
  // Check everything the user typed before touching the daemon.
  const ports = (o.publish ?? []).map(parsePublish);
  const envs = (o.env ?? []).map(parseEnv);
  const mounts = (o.volume ?? []).map(parseVolume);
  const memory = o.memory ? parseMemory(o.memory) : undefined;
  const cpus = o.cpus ? parseCpus(o.cpus) : undefined;
  if (!["missing", "always", "never"].includes(o.pull))
    throw usage(`--pull must be missing, always or never, not ${o.pull}`);
  if (o.net && o.net !== "host" && o.net !== "pod") throw usage(`--net must be pod or host, not ${o.net}`);
  if (o.net === "host" && ports.length > 0)
    throw usage("-p has no effect with --net host: the container uses the node's ports directly");
  if (o.name !== undefined && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(o.name))
    throw usage(`--name ${o.name}: use letters, digits, _ . and -`);

  let img = o.pull === "always" ? undefined : await findImage(c, image);
  if (!img) {
    if (o.pull === "never") throw missingImage(image);
    if (o.pull === "missing") process.stderr.write(`Unable to find image '${image}' locally\n`);
    await pullImage(c, image, { out: process.stderr });
    img = await findImage(c, image);
    if (!img) throw missingImage(image);
  }

  const name = o.name ?? defaultName(image);
  const { containers } = await c.rt.listContainers({});
  const clash = containers.find((x) => x.metadata?.name === name);
  if (clash) {
    throw new CliError(
      `the name ${name} is already in use by container ${clash.id.slice(0, 12)}`,
      `remove it (berth rm -f ${name}) or choose another --name`,
      EXIT_RUN_FAILED,
    );
  }

  const uid = randomUUID();
  const logDir = join(await logRoot(c), `berth_${name}_${uid}`);
  mkdirSync(logDir, { recursive: true, mode: 0o755 });
  const podConfig: Partial<PodSandboxConfig> = {
    metadata: { name, uid, namespace: "berth", attempt: 0 },
    hostname: o.hostname ?? name.replace(/[^a-zA-Z0-9-]/g, "-").slice(0, 63),
    logDirectory: logDir,
    portMappings: ports,
    labels: { [LABEL_RUN]: "true" },
    annotations: { [ANNOTATION_LOG_DIR]: logDir },
    linux: {
      cgroupParent: "",
      sysctls: {},
      overhead: undefined,
      resources: undefined,
      securityContext: o.net === "host" ? ({ namespaceOptions: { network: NamespaceMode.NODE } } as never) : undefined,
    },
  };
  const { podSandboxId } = await c.rt
    .runPodSandbox({ config: podConfig, runtimeHandler: o.runtime ?? "" }, { timeoutMs: 5 * 60_000 })
    .catch((err: unknown) => {
      rmSync(logDir, { recursive: true, force: true });
      throw err;
    });

  let containerId = "";
  try {
    const config: Partial<ContainerConfig> = {
      metadata: { name, attempt: 0 },
      image: { image: img.id, userSpecifiedImage: image, annotations: {}, runtimeHandler: "", imageRef: "" },
      command: o.entrypoint !== undefined ? [o.entrypoint] : [],
      args: cmd,
      workingDir: o.workdir ?? "",
      envs: envs.map((e) => ({ key: e.key, value: Buffer.from(e.value) })) as never,
      mounts: mounts as never,
      labels: { [LABEL_RUN]: "true" },
      annotations: { [ANNOTATION_IMAGE]: image },
      logPath: `${name}_0.log`,
      stdin: !!o.interactive,
      stdinOnce: !!o.interactive,
      tty: !!o.tty,
      linux: {
        resources: memory || cpus ? ({ memoryLimitInBytes: memory ?? 0n, ...cpus } as never) : undefined,
        securityContext: o.user
          ? ((/^\d+$/.test(o.user) ? { runAsUser: { value: BigInt(o.user) } } : { runAsUsername: o.user }) as never)
          : undefined,
      },
    };
    ({ containerId } = await c.rt.createContainer(
      { podSandboxId, config, sandboxConfig: podConfig },
      { timeoutMs: 5 * 60_000 },
    ));
    try {
      await c.rt.startContainer({ containerId }, { timeoutMs: 5 * 60_000 });
    } catch (err) {
      const code = startFailureCode(err);
      const e = err as Error & { details?: string };
      throw new CliError(
        `container ${containerId.slice(0, 12)} failed to start: ${e.details ?? e.message}`,
        undefined,
        code,
      );
    }
  } catch (err) {
    // Nothing half-made stays behind: the pod (and container) go.
    await removeRunPod(c, podSandboxId).catch(() => {});
    throw err;
  }

  if (o.detach) {
    process.stdout.write(`${containerId}\n`);
    return 0;
  }

  let detached = false;
  let finished = false;
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(`\nberth: stopping container ${containerId.slice(0, 12)} (Ctrl-C again to stop waiting)\n`);
      c.rt.stopContainer({ containerId, timeout: 10n }).catch(() => {});
    } else {
      process.stderr.write(`berth: not waiting; container ${containerId.slice(0, 12)} is left behind\n`);
      process.exit(130);
    }
  };
  process.on("SIGINT", onSigint);
  try {
    if (o.interactive || o.tty) {
      let url: string | undefined;
      try {
        ({ url } = await c.rt.attach({
          containerId,
          stdin: !!o.interactive,
          tty: !!o.tty,
          stdout: true,
          stderr: !o.tty,
        }));
      } catch (err) {
        // Already gone (a command that exits at once): show what it printed instead.
        if (!isCode(err, Code.FAILED_PRECONDITION) && !isCode(err, Code.NOT_FOUND)) throw err;
      }
      if (url) {
        const r = await streamSession(url, { stdin: !!o.interactive, tty: !!o.tty, detachKeys: true });
        detached = r.detached;
      } else {
        const { status } = await c.rt.containerStatus({ containerId });
        if (status?.logPath) await printLogs(c, containerId, status.logPath, {});
      }
    } else {
      const { status } = await c.rt.containerStatus({ containerId });
      if (status?.logPath) await printLogs(c, containerId, status.logPath, { follow: true });
    }
    if (detached) {
      process.stderr.write(
        `\nberth: detached; container ${containerId.slice(0, 12)} keeps running (berth logs -f ${name}, berth rm -f ${name})\n`,
      );
      return 0;
    }
    const code = await waitExit(c, containerId);
    finished = true;
    if (o.rm) await removeRunPod(c, podSandboxId);
    return code;
  } catch (err) {
    // Could not follow the container: with --rm nothing may stay behind; otherwise it keeps
    // running and the user is told how to reach it.
    if (o.rm && !finished) await removeRunPod(c, podSandboxId).catch(() => {});
    else
      process.stderr.write(
        `berth: container ${containerId.slice(0, 12)} was started; see berth logs ${name}, remove with berth rm -f ${name}\n`,
      );
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("Run a command in a new container (a pod with one container)")
    .argument("<image>", "image reference; pulled first when missing")
    .argument("[command...]", "command and arguments (default: the image's CMD)")
    .option("--rm", "remove the container and its pod when it exits")
    .option("-d, --detach", "run in the background and print the container id")
    .option("-i, --interactive", "keep stdin open and attach it")
    .option("-t, --tty", "allocate a terminal")
    .option("--name <name>", "container (and pod) name")
    .option("-p, --publish <host:ctr>", "publish a port: [IP:]HOST_PORT:CONTAINER_PORT[/udp] (repeatable)", collect)
    .option("-e, --env <K=V>", "set an environment variable (repeatable; K alone copies it from here)", collect)
    .option("-v, --volume <src:dst[:ro]>", "bind-mount a host path (repeatable)", collect)
    .option("--runtime <handler>", "runtime handler, e.g. runc or runsc (default: the daemon's)")
    .option("-m, --memory <size>", "memory limit, e.g. 256m or 1g")
    .option("--cpus <n>", "CPU limit, e.g. 0.5 or 2")
    .option("--entrypoint <cmd>", "override the image's entrypoint")
    .option("-w, --workdir <dir>", "working directory inside the container")
    .option("-u, --user <user>", "user name or uid to run as")
    .option("--hostname <name>", "the pod's hostname (default: the container name)")
    .option("--net <mode>", "pod (own network namespace through CNI, the default) or host")
    .option("--pull <policy>", "missing, always or never", "missing")
    .passThroughOptions()
    .addHelpText(
      "after",
      `
Examples:
  berth run --rm busybox echo hello
  berth run -it --rm busybox sh
  berth run -d --name web -p 8080:80 nginx
  berth run --rm -e GREETING=hi -v ./data:/data:ro busybox sh -c 'echo $GREETING; ls /data'
  berth run --rm --runtime runsc --memory 256m --cpus 0.5 busybox uname -a

Exit status is the container's; 125 means berth itself failed, 126 the command
could not be run, 127 it was not found. With -t, Ctrl-C goes into the container's
terminal and Ctrl-P Ctrl-Q detaches. Without -t, Ctrl-C stops the container
(SIGKILL after 10 s) and a second Ctrl-C stops waiting for it.`,
    )
    .action(async (image: string, command: string[], opts: RunOptions, cmd: Command) => {
      const { c } = ctxOf(cmd);
      process.exitCode = await run(c, image, command, opts);
    });
}
