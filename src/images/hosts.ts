// Registry host configuration, read exactly as containerd reads its hosts directory
// (containerd docs/hosts.md): under `registry.config_path` (default /etc/berth/certs.d) the
// first of <host>_<port>_/, <host>:<port>/ (or <host>/), _default/ that exists is used:
//   hosts.toml: server = "https://..."; [host."URL"] tables tried in order before the server,
//   each with capabilities (pull, resolve, push), ca, client, skip_verify, header, override_path.
//   Without hosts.toml, Docker's cert layout: *.crt CAs and *.cert/*.key client pairs.
// Hosts other than the registry itself (mirrors) get `?ns=<registry>` on every request.
//
// Plain HTTP: a registry on localhost, 127.0.0.0/8 or [::1] is spoken to over plain http
// directly, with no configuration, as Docker treats these as insecure registries. We do not
// try HTTPS first: a local test registry is nearly always plain, and an HTTPS attempt on a
// plain port costs a failed handshake per connection. Anything else is HTTPS unless a
// hosts.toml names an http:// URL.
import { readFile, readdir } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { InvalidArgumentError } from "../util/errors.js";
import { defaultClient, HttpClient } from "./http.js";

export type Capability = "pull" | "resolve" | "push";

export interface RegistryHost {
  scheme: "http" | "https";
  /** host[:port] to connect to */
  host: string;
  /** API root path, "/v2" unless override_path */
  path: string;
  capabilities: Set<Capability>;
  /** extra request headers from [header] */
  headers: Record<string, string | string[]>;
  /** the registry this host serves (added as ?ns= when it is a mirror) */
  namespace: string;
  isMirror: boolean;
  /** the connections to it (its TLS settings) */
  client: HttpClient;
}

export const defaultConfigPath = "/etc/berth/certs.d";

interface TlsFiles {
  ca: string[];
  clients: [string, string][];
  skipVerify: boolean;
}

const clients = new Map<string, HttpClient>();

async function clientFor(tls: TlsFiles): Promise<HttpClient> {
  const key = JSON.stringify(tls);
  let client = clients.get(key);
  if (client) return client;
  const ca = tls.ca.length > 0 ? await Promise.all(tls.ca.map((f) => readFile(f))) : undefined;
  let cert: Buffer | undefined;
  let keyPem: Buffer | undefined;
  if (tls.clients.length > 0) {
    const [c, k] = tls.clients[0];
    cert = await readFile(c);
    keyPem = k ? await readFile(k) : cert; // a single .pem may hold both
  }
  client = new HttpClient({ ca, cert, key: keyPem, rejectUnauthorized: !tls.skipVerify });
  clients.set(key, client);
  return client;
}

/** The host part without port, brackets kept off: "[::1]:5000" -> "::1". */
function hostname(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(1, hostPort.indexOf("]"));
  const i = hostPort.lastIndexOf(":");
  return i >= 0 ? hostPort.slice(0, i) : hostPort;
}

export function isLocalhost(hostPort: string): boolean {
  const h = hostname(hostPort);
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The default server for a registry namespace. */
export function defaultServer(namespace: string): string {
  if (namespace === "docker.io") return "https://registry-1.docker.io";
  return `${isLocalhost(namespace) ? "http" : "https"}://${namespace}`;
}

function candidateDirs(namespace: string): string[] {
  const out: string[] = [];
  const h = hostname(namespace);
  const port = namespace.startsWith("[")
    ? namespace.slice(namespace.indexOf("]") + 1).replace(/^:/, "")
    : namespace.includes(":")
      ? namespace.slice(namespace.lastIndexOf(":") + 1)
      : "";
  if (port) out.push(`${namespace.startsWith("[") ? `[${h}]` : h}_${port}_`);
  out.push(namespace);
  out.push("_default");
  return out;
}

async function readIfExists(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR")
      return undefined;
    throw err;
  }
}

function asList(v: unknown): string[] {
  if (v === undefined) return [];
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  throw new InvalidArgumentError(`expected a string or list of strings, got ${JSON.stringify(v)}`);
}

function clientPairs(v: unknown, base: string): [string, string][] {
  if (v === undefined) return [];
  const abs = (p: string) => (p && !isAbsolute(p) ? join(base, p) : p);
  if (typeof v === "string") return [[abs(v), ""]];
  if (!Array.isArray(v)) throw new InvalidArgumentError(`hosts.toml: client must be a path or a list`);
  return v.map((e) => {
    if (typeof e === "string") return [abs(e), ""] as [string, string];
    if (Array.isArray(e) && e.length === 2) return [abs(String(e[0])), abs(String(e[1]))] as [string, string];
    throw new InvalidArgumentError(`hosts.toml: bad client entry ${JSON.stringify(e)}`);
  });
}

interface HostToml {
  capabilities?: unknown;
  ca?: unknown;
  client?: unknown;
  skip_verify?: unknown;
  header?: Record<string, unknown>;
  override_path?: unknown;
}

async function makeHost(
  url: string,
  spec: HostToml,
  base: string,
  namespace: string,
  defaults: { caps: Capability[] },
): Promise<RegistryHost> {
  let u: URL;
  try {
    u = new URL(url.includes("://") ? url : `https://${url}`);
  } catch {
    throw new InvalidArgumentError(`hosts.toml in ${base}: bad host URL ${JSON.stringify(url)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new InvalidArgumentError(`hosts.toml in ${base}: host URL must be http or https: ${url}`);
  }
  const capsList = spec.capabilities === undefined ? defaults.caps : (asList(spec.capabilities) as Capability[]);
  const urlPath = u.pathname.replace(/\/+$/, "");
  const path = spec.override_path === true ? urlPath : urlPath === "" ? "/v2" : `${urlPath}/v2`;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(spec.header ?? {}))
    headers[k.toLowerCase()] = Array.isArray(v) ? v.map(String) : String(v);
  const tls: TlsFiles = {
    ca: asList(spec.ca).map((p) => (isAbsolute(p) ? p : join(base, p))),
    clients: clientPairs(spec.client, base),
    skipVerify: spec.skip_verify === true,
  };
  const plain = tls.ca.length === 0 && tls.clients.length === 0 && !tls.skipVerify;
  return {
    scheme: u.protocol === "http:" ? "http" : "https",
    host: u.host,
    path,
    capabilities: new Set(capsList),
    headers,
    namespace,
    isMirror: u.host !== namespace && !(namespace === "docker.io" && u.host === "registry-1.docker.io"),
    client: plain ? defaultClient() : await clientFor(tls),
  };
}

/** Docker's certs.d layout: *.crt CAs, <name>.cert + <name>.key client pairs. */
async function dockerCertFiles(dir: string): Promise<TlsFiles | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  const ca = names.filter((n) => n.endsWith(".crt")).map((n) => join(dir, n));
  const clients = names
    .filter((n) => n.endsWith(".cert") && names.includes(n.replace(/\.cert$/, ".key")))
    .map((n) => [join(dir, n), join(dir, n.replace(/\.cert$/, ".key"))] as [string, string]);
  return { ca, clients, skipVerify: false };
}

/**
 * The hosts to try for registry `namespace` ("docker.io", "127.0.0.1:5000"), in order.
 * The last is the upstream server (unless hosts.toml's `server` replaced it).
 */
export async function registryHosts(
  namespace: string,
  configPath: string | undefined = defaultConfigPath,
): Promise<RegistryHost[]> {
  const all: Capability[] = ["pull", "resolve", "push"];
  for (const d of configPath ? candidateDirs(namespace) : []) {
    const dir = join(configPath!, d);
    const tomlPath = join(dir, "hosts.toml");
    const text = await readIfExists(tomlPath);
    if (text !== undefined) {
      let doc: Record<string, unknown>;
      try {
        doc = parseToml(text) as Record<string, unknown>;
      } catch (err) {
        throw new InvalidArgumentError(`${tomlPath}: ${(err as Error).message}`);
      }
      const base = dirname(tomlPath);
      const hosts: RegistryHost[] = [];
      const table = (doc.host ?? {}) as Record<string, HostToml>;
      for (const [url, spec] of Object.entries(table)) {
        hosts.push(await makeHost(url, spec, base, namespace, { caps: all }));
      }
      const server = typeof doc.server === "string" ? doc.server : defaultServer(namespace);
      // Root-level TLS/header fields apply to the server entry.
      hosts.push(await makeHost(server, doc as HostToml, base, namespace, { caps: all }));
      return hosts;
    }
    if (d !== "_default") {
      const tls = await dockerCertFiles(dir);
      if (tls && (tls.ca.length > 0 || tls.clients.length > 0)) {
        const host = await makeHost(defaultServer(namespace), {}, dir, namespace, { caps: all });
        return [{ ...host, client: await clientFor(tls) }];
      }
    }
  }
  return [await makeHost(defaultServer(namespace), {}, "/", namespace, { caps: all })];
}
