// The files a pod's containers share: /etc/hostname, /etc/hosts, /etc/resolv.conf and the
// /dev/shm tmpfs, kept under <state>/pods/<id> and bind-mounted into every container.
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { join } from "node:path";
import type { DNSConfig } from "../gen/cri/runtime/v1/api.js";
import type { PodFiles } from "./spec/index.js";
import { DEFAULT_SHM_SIZE_BYTES } from "../oci/index.js";
import { unmountAll } from "../snapshots/mount.js";
import * as sys from "../sys/index.js";

export function podFiles(podDir: string): PodFiles {
  return {
    hostname: join(podDir, "hostname"),
    hosts: join(podDir, "hosts"),
    resolvConf: join(podDir, "resolv.conf"),
    shm: join(podDir, "shm"),
  };
}

/** resolv.conf text for a pod's DNSConfig (kubelet's layout, as containerd writes it). */
export function resolvConfText(dns: DNSConfig): string {
  let out = "";
  if (dns.searches.length > 0) out += `search ${dns.searches.join(" ")}\n`;
  for (const s of dns.servers) out += `nameserver ${s}\n`;
  if (dns.options.length > 0) out += `options ${dns.options.join(" ")}\n`;
  return out;
}

/** /etc/hosts for a pod in its own network namespace: loopback names, then the pod IP with its hostname. */
export function hostsText(hostname: string, ip: string | undefined): string {
  let out =
    "127.0.0.1\tlocalhost\n" +
    "::1\tlocalhost ip6-localhost ip6-loopback\n" +
    "fe00::0\tip6-localnet\n" +
    "fe00::0\tip6-mcastprefix\n" +
    "fe00::1\tip6-allnodes\n" +
    "fe00::2\tip6-allrouters\n";
  if (ip) out += `${ip}\t${hostname}\n`;
  return out;
}

export interface PodFileOptions {
  podDir: string;
  hostname: string;
  hostNetwork: boolean;
  dns: DNSConfig | undefined;
  ip: string | undefined;
}

/** Writes hostname, hosts and resolv.conf. Host-network pods get the node's hosts and name. */
export async function writePodFiles(o: PodFileOptions): Promise<PodFiles> {
  const f = podFiles(o.podDir);
  await mkdir(o.podDir, { recursive: true, mode: 0o711 });
  const name = o.hostNetwork ? osHostname() : o.hostname || osHostname();
  await writeFile(f.hostname, `${name}\n`, { mode: 0o644 });
  if (o.hostNetwork) await copyFile("/etc/hosts", f.hosts);
  else await writePodHosts(o.podDir, name, o.ip);
  const dns = o.dns;
  if (dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0)) {
    await writeFile(f.resolvConf, resolvConfText(dns), { mode: 0o644 });
  } else {
    // No DNS config: the node's resolver, as kubelet's "Default" DNS policy means.
    await writeFile(f.resolvConf, await readFile("/etc/resolv.conf").catch(() => Buffer.alloc(0)), { mode: 0o644 });
  }
  return f;
}

/**
 * (Re)writes a pod's /etc/hosts in place (same inode: a bind mount of it already made, by
 * the sandbox's `runc create`, shows the new text), e.g. once CNI has given the pod its IP.
 */
export async function writePodHosts(podDir: string, hostname: string, ip: string | undefined): Promise<void> {
  await writeFile(podFiles(podDir).hosts, hostsText(hostname || osHostname(), ip), { mode: 0o644 });
}

/** Mounts the pod's /dev/shm tmpfs (64 MiB, like containerd). */
export async function mountShm(shm: string): Promise<void> {
  await mkdir(shm, { recursive: true, mode: 0o755 });
  sys.mount(
    "shm",
    shm,
    "tmpfs",
    sys.MS_NOSUID | sys.MS_NODEV | sys.MS_NOEXEC,
    `mode=1777,size=${DEFAULT_SHM_SIZE_BYTES}`,
  );
}

export function unmountShm(shm: string): void {
  try {
    unmountAll(shm);
  } catch (err) {
    if ((err as { code?: string }).code !== "ENOENT") throw err;
  }
}
