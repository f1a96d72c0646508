// OCI distribution client (opencontainers/distribution-spec spec.md): manifests and blobs
// over HTTP(S) through the hosts of registry `namespace` (mirrors first, see hosts.ts),
// with auth challenges answered (auth.ts), bounded retries of transient failures,
// redirects followed without leaking Authorization to other hosts, and Range resume.
import {
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "../util/errors.js";
import { Authorizer, type AuthConfig } from "./auth.js";
import { sha256Digest, type BlobSource } from "./content-store.js";
import { defaultConfigPath, registryHosts, type Capability, type RegistryHost } from "./hosts.js";
import { defaultClient, type HttpClient, type HttpResponse } from "./http.js";
import { isSchema1, manifestAccept, sniffManifestType, isIndex, isManifest, type Descriptor } from "./mediatypes.js";
import { repositoryName, type ImageReference } from "./reference.js";
import { defaultRetry, TransientHttpError, withRetry, type RetryPolicy } from "./retry.js";

/** containerd's limit: a manifest larger than this is not a manifest. */
const maxManifestBytes = 8 << 20;
const maxRedirects = 5;

export interface RegistryClientOptions {
  /** hosts directory (registry.config_path); undefined disables it */
  configPath?: string;
  /** credentials from configuration, used when a pull passes none */
  credentials?: (registryHost: string) => AuthConfig | undefined;
  userAgent?: string;
  retry?: RetryPolicy;
}

/** Per-request options of a manifest fetch. */
export interface FetchOptions {
  /** aborts the request (and any retry); the signal's reason is thrown */
  signal?: AbortSignal;
  /** bytes of the manifest's body received so far (a pull's progress timeout) */
  onData?: (done: number) => void;
}

export interface FetchedManifest {
  descriptor: Descriptor;
  body: Buffer;
}

type Response = HttpResponse;

export class RegistryClient {
  private readonly authorizer: Authorizer;
  private readonly configPath: string | undefined;
  private readonly userAgent: string;
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.configPath = "configPath" in opts ? opts.configPath : defaultConfigPath;
    this.userAgent = opts.userAgent ?? "berth/0.1";
    this.authorizer = new Authorizer({ userAgent: this.userAgent });
    this.retry = opts.retry ?? defaultRetry;
  }

  private creds(ref: ImageReference, auth: AuthConfig | undefined): AuthConfig | undefined {
    if (auth && Object.values(auth).some((v) => v)) return auth;
    return this.opts.credentials?.(ref.domain);
  }

  /**
   * The hosts directory's answer for one reference object, read once. A pull parses its
   * reference once and passes that object to every request it makes (manifests, config,
   * layers, retries), so hosts.toml is read once per pull, as containerd reads it once per
   * resolve; the next pull reads it afresh. Reading it per request took 1.8 ms of berthd's
   * CPU per small pull (3 lookups of 5 paths each) and a thread-pool round trip per path.
   */
  private readonly hostsOf = new WeakMap<ImageReference, Promise<RegistryHost[]>>();

  private async hosts(ref: ImageReference, cap: Capability): Promise<RegistryHost[]> {
    let all = this.hostsOf.get(ref);
    if (!all) {
      all = registryHosts(ref.domain, this.configPath);
      this.hostsOf.set(ref, all);
    }
    const hosts = (await all).filter((h) => h.capabilities.has(cap));
    if (hosts.length === 0) throw new InvalidArgumentError(`no registry host of ${ref.domain} is configured to ${cap}`);
    return hosts;
  }

  /**
   * One HTTP exchange with `host` for repository `repo`, answering one auth challenge,
   * following redirects and retrying transient failures. Returns a response with status < 300
   * (or 404 / 416, which the caller handles); throws typed errors for the rest.
   */
  private async send(
    host: RegistryHost,
    repo: string,
    method: "GET" | "HEAD",
    suffix: string,
    headers: Record<string, string>,
    auth: AuthConfig | undefined,
    signal?: AbortSignal,
  ): Promise<Response> {
    const base = `${host.scheme}://${host.host}${host.path}/${repo}/${suffix}`;
    const url = host.isMirror ? `${base}?ns=${encodeURIComponent(host.namespace)}` : base;
    return withRetry({ ...this.retry, signal }, async () => {
      let authorization = this.authorizer.cached(host.host, repo, auth);
      let answered = false;
      for (;;) {
        let res: Response;
        try {
          const h = { ...host.headers, ...headers };
          res = await this.follow(url, method, h, authorization, host.client, signal);
        } catch (err) {
          signal?.throwIfAborted();
          throw tlsProblem(err, host, this.configPath) ?? err;
        }
        if (res.statusCode === 401) {
          await res.dump();
          if (answered) {
            const given = auth && (auth.username || auth.auth || auth.identityToken || auth.registryToken);
            throw new UnauthenticatedError(
              given
                ? `registry ${host.host} rejected the credentials for ${repo} (401 Unauthorized); check the username/password or token`
                : `registry ${host.host} requires authentication for ${repo}: no credentials were given`,
            );
          }
          if (authorization) this.authorizer.invalidate(host.host, repo, auth);
          const challenge = res.headers["www-authenticate"];
          authorization = await this.authorizer.authorize(
            host.host,
            repo,
            Array.isArray(challenge) ? challenge.join(", ") : challenge,
            auth,
          );
          answered = true;
          continue;
        }
        if (res.statusCode === 403) {
          const text = await res.text().catch(() => "");
          throw new PermissionDeniedError(
            `registry ${host.host} denied access to ${repo} (403 Forbidden) ${text.slice(0, 200)}`.trim(),
          );
        }
        if (res.statusCode >= 500 || res.statusCode === 429) {
          await res.dump();
          throw new TransientHttpError(`registry ${host.host} answered ${res.statusCode} for ${method} ${suffix}`);
        }
        return res;
      }
    });
  }

  /** Follows redirects by hand: Authorization and host TLS settings stay with the registry's origin. */
  private async follow(
    url: string,
    method: "GET" | "HEAD",
    headers: Record<string, string | string[]>,
    authorization: string | undefined,
    client: HttpClient,
    signal?: AbortSignal,
  ): Promise<Response> {
    const origin = new URL(url).origin;
    let current = url;
    for (let i = 0; i <= maxRedirects; i++) {
      const sameOrigin = new URL(current).origin === origin;
      const h: Record<string, string | string[]> = { ...headers, "user-agent": this.userAgent };
      if (authorization && sameOrigin) h.authorization = authorization;
      const res = await (sameOrigin ? client : defaultClient()).request(current, { method, headers: h, signal });
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        await res.dump();
        current = new URL(String(res.headers.location), current).toString();
        continue;
      }
      return res;
    }
    throw new UnavailableError(`too many redirects fetching ${url}`);
  }

  /**
   * Fetches the manifest (or index) `ref` names: by digest when it has one (verified),
   * else by tag from a host trusted to resolve. Schema 1 is refused.
   */
  async fetchManifest(
    ref: ImageReference,
    auth?: AuthConfig,
    digest?: string,
    opts: FetchOptions = {},
  ): Promise<FetchedManifest> {
    const { signal } = opts;
    const repo = ref.path;
    const reference = digest ?? ref.digest ?? ref.tag ?? "latest";
    const byDigest = reference.includes(":");
    const hosts = await this.hosts(ref, byDigest ? "pull" : "resolve");
    const a = this.creds(ref, auth);
    let lastErr: unknown;
    for (const host of hosts) {
      try {
        const accept = { accept: manifestAccept };
        const res = await this.send(host, repo, "GET", `manifests/${reference}`, accept, a, signal);
        if (res.statusCode === 404) {
          await res.dump();
          lastErr = new NotFoundError(`image ${repositoryName(ref)}:${reference} not found in registry ${host.host}`);
          continue;
        }
        if (res.statusCode >= 300) {
          await res.dump();
          throw new UnavailableError(`registry ${host.host} answered ${res.statusCode} for manifest ${reference}`);
        }
        const body = await readLimited(res, maxManifestBytes, opts.onData);
        const contentType = res.headers["content-type"];
        const mediaType = sniffManifestType(body, Array.isArray(contentType) ? contentType[0] : contentType);
        if (isSchema1(mediaType)) {
          throw new UnimplementedError(
            `${repositoryName(ref)}:${reference} is a Docker schema 1 manifest, which berth does not support (deprecated since 2017); push it again with a current client`,
          );
        }
        if (!isIndex(mediaType) && !isManifest(mediaType)) {
          throw new UnimplementedError(
            `${repositoryName(ref)}:${reference}: unsupported manifest media type ${JSON.stringify(mediaType)}`,
          );
        }
        const got = sha256Digest(body);
        if (byDigest && got !== reference) {
          throw new InternalError(`digest mismatch: expected ${reference} got ${got} (manifest from ${host.host})`);
        }
        return { descriptor: { mediaType, digest: got, size: body.length }, body };
      } catch (err) {
        signal?.throwIfAborted();
        lastErr = err;
        // Credentials and format problems are the same on every host; a mirror that is down is not.
        if (!(err instanceof UnavailableError) && !(err instanceof TransientHttpError) && !isNetworkError(err))
          throw err;
      }
    }
    throw wrapUnavailable(lastErr, ref);
  }

  /**
   * A BlobSource for the content store: GET the blob from the first pull host that has it,
   * with `Range: bytes=<offset>-` when resuming (206 honoured; 200 means start over).
   */
  blobSource(ref: ImageReference, desc: Descriptor, auth?: AuthConfig): BlobSource {
    const a = this.creds(ref, auth);
    return async (offset: number, signal?: AbortSignal) => {
      const hosts = await this.hosts(ref, "pull");
      let lastErr: unknown;
      for (const host of hosts) {
        try {
          const headers: Record<string, string> = {};
          if (offset > 0) headers.range = `bytes=${offset}-`;
          const res = await this.send(host, ref.path, "GET", `blobs/${desc.digest}`, headers, a, signal);
          if (res.statusCode === 404) {
            await res.dump();
            lastErr = new NotFoundError(
              `blob ${desc.digest} of ${repositoryName(ref)} not found in registry ${host.host}`,
            );
            continue;
          }
          if (res.statusCode === 416) {
            await res.dump();
            return this.blobSource(ref, desc, auth)(0, signal);
          }
          if (res.statusCode >= 300) {
            await res.dump();
            throw new UnavailableError(`registry ${host.host} answered ${res.statusCode} for blob ${desc.digest}`);
          }
          let start = 0;
          if (res.statusCode === 206) {
            const cr = /bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""));
            start = cr ? Number(cr[1]) : offset;
          }
          return { offset: start, stream: res.body };
        } catch (err) {
          signal?.throwIfAborted();
          lastErr = err;
          if (!(err instanceof UnavailableError) && !(err instanceof TransientHttpError) && !isNetworkError(err))
            throw err;
        }
      }
      throw lastErr instanceof NotFoundError ? lastErr : wrapUnavailable(lastErr, ref);
    };
  }
}

/** A TLS failure (unknown CA, bad name, refused client certificate) as an error saying where to fix it. */
function tlsProblem(err: unknown, host: RegistryHost, configPath: string | undefined): UnavailableError | undefined {
  for (let e: unknown = err; e && typeof e === "object"; e = (e as { cause?: unknown }).cause) {
    const code = String((e as { code?: unknown }).code ?? "");
    if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ISSUER/.test(code)) {
      const where = configPath ? `${configPath}/${host.namespace}/hosts.toml` : "the registry's hosts.toml";
      return new UnavailableError(
        `TLS with registry ${host.host} failed: ${(e as Error).message} (${code}); set its CA (\`ca\`), a client certificate (\`client\`) or \`skip_verify\` in ${where}`,
        { cause: err },
      );
    }
  }
  return undefined;
}

function isNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && code.startsWith("E"); // node's ECONNREFUSED, ETIMEDOUT, ERR_*
}

function wrapUnavailable(err: unknown, ref: ImageReference): Error {
  if (err instanceof Error && "kind" in err) return err;
  return new UnavailableError(`cannot reach registry ${ref.domain}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}

async function readLimited(res: Response, limit: number, onData?: (done: number) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    onData?.(n);
    if (n > limit) {
      res.body.destroy();
      throw new InvalidArgumentError(`manifest larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
