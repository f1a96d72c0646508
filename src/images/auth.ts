// Registry authentication (distribution docs/spec/auth/token.md): a 401 carries
// `WWW-Authenticate: Bearer realm="..",service="..",scope=".."` (get a token from the realm,
// with Basic credentials if we have any) or `Basic realm=".."` (send the credentials).
// Credentials come in CRI's AuthConfig shape, per pull or from configuration.
import { InvalidArgumentError, PermissionDeniedError, UnauthenticatedError, UnavailableError } from "../util/errors.js";
import { defaultClient } from "./http.js";

/** CRI runtime.v1 AuthConfig, camel-cased. */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64("user:password") */
  auth?: string;
  serverAddress?: string;
  /** an OAuth2 refresh token, exchanged at the realm */
  identityToken?: string;
  /** a bearer token sent as is */
  registryToken?: string;
}

/** Credentials for a registry host from configuration (e.g. the daemon's registry.configs). */
export type CredentialLookup = (registryHost: string) => AuthConfig | undefined;

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header (RFC 7235): one or more `scheme k=v, k="v"` challenges. */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let cur: Challenge | undefined;
  let i = 0;
  const skip = (chars: string) => {
    while (i < header.length && chars.includes(header[i])) i++;
  };
  const token = () => {
    const start = i;
    while (i < header.length && !' \t,="'.includes(header[i])) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skip(" \t,");
    const name = token();
    if (!name) {
      i++;
      continue;
    }
    skip(" \t");
    if (header[i] === "=" && cur) {
      i++;
      skip(" \t");
      let value = "";
      if (header[i] === '"') {
        for (i++; i < header.length && header[i] !== '"'; i++) value += header[i] === "\\" ? header[++i] : header[i];
        i++;
      } else {
        value = token();
      }
      cur.params[name.toLowerCase()] = value;
    } else {
      cur = { scheme: name.toLowerCase(), params: {} };
      out.push(cur);
    }
  }
  return out;
}

/** username/password from an AuthConfig, decoding `auth` when the pair is not given. */
export function basicCredentials(a: AuthConfig | undefined): { username: string; password: string } | undefined {
  if (!a) return undefined;
  if (a.username) return { username: a.username, password: a.password ?? "" };
  if (a.auth) {
    const decoded = Buffer.from(a.auth, "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i < 0) throw new InvalidArgumentError("auth config: `auth` must be base64 of user:password");
    return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
  }
  return undefined;
}

function basicHeader(c: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

/**
 * Turns challenges into Authorization headers and caches them per registry host and
 * repository, so later requests of a pull skip the 401 round trip.
 */
export class Authorizer {
  private tokens = new Map<string, CachedToken>();
  private readonly userAgent: string;

  constructor(opts: { userAgent?: string } = {}) {
    this.userAgent = opts.userAgent ?? "berth";
  }

  private cacheKey(host: string, repo: string, auth: AuthConfig | undefined): string {
    return `${host}|${repo}|${JSON.stringify(auth ?? {})}`;
  }

  /** A header from an earlier challenge, if still valid. */
  cached(host: string, repo: string, auth: AuthConfig | undefined): string | undefined {
    const t = this.tokens.get(this.cacheKey(host, repo, auth));
    if (t && t.expiresAt > Date.now()) return t.header;
    return undefined;
  }

  invalidate(host: string, repo: string, auth: AuthConfig | undefined): void {
    this.tokens.delete(this.cacheKey(host, repo, auth));
  }

  /** Answers a 401's WWW-Authenticate for `repo` on `host`; throws UnauthenticatedError if it cannot. */
  async authorize(
    host: string,
    repo: string,
    wwwAuthenticate: string | undefined,
    auth: AuthConfig | undefined,
  ): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate ?? "");
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    let header: string;
    let ttl = 60_000;
    if (bearer) {
      const t = await this.fetchToken(host, repo, bearer.params, auth);
      header = `Bearer ${t.token}`;
      ttl = Math.max(10, t.expiresIn - 10) * 1000;
    } else if (basic) {
      const creds = basicCredentials(auth);
      if (!creds) {
        throw new UnauthenticatedError(
          `registry ${host} requires authentication for ${repo}: no credentials were given`,
        );
      }
      header = basicHeader(creds);
      ttl = 3600_000;
    } else {
      throw new UnauthenticatedError(
        `registry ${host} refused access to ${repo} (401) with no usable challenge (WWW-Authenticate: ${JSON.stringify(wwwAuthenticate ?? "")})`,
      );
    }
    this.tokens.set(this.cacheKey(host, repo, auth), { header, expiresAt: Date.now() + ttl });
    return header;
  }

  private async fetchToken(
    host: string,
    repo: string,
    params: Record<string, string>,
    auth: AuthConfig | undefined,
  ): Promise<{ token: string; expiresIn: number }> {
    if (auth?.registryToken) return { token: auth.registryToken, expiresIn: 60 };
    const realm = params.realm;
    if (!realm) throw new UnauthenticatedError(`registry ${host}: Bearer challenge without a realm`);
    const scopes = new Set<string>([`repository:${repo}:pull`]);
    if (params.scope) for (const s of params.scope.split(" ")) if (s) scopes.add(s);
    const url = new URL(realm);
    if (params.service) url.searchParams.set("service", params.service);
    let res;
    try {
      if (auth?.identityToken) {
        // OAuth2 refresh-token grant (token.md "oauth"): identity tokens are refresh tokens.
        const form = new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: auth.identityToken,
          client_id: this.userAgent,
          ...(params.service ? { service: params.service } : {}),
          scope: [...scopes].join(" "),
        });
        res = await defaultClient().request(url, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", "user-agent": this.userAgent },
          body: form.toString(),
        });
      } else {
        for (const s of scopes) url.searchParams.append("scope", s);
        const creds = basicCredentials(auth);
        const headers: Record<string, string> = { "user-agent": this.userAgent };
        if (creds) headers.authorization = basicHeader(creds);
        res = await defaultClient().request(url, { method: "GET", headers });
      }
    } catch (err) {
      throw new UnavailableError(`token server ${url.origin} for ${host}: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    if (res.statusCode === 401) {
      throw new UnauthenticatedError(
        basicCredentials(auth) || auth?.identityToken
          ? `registry ${host}: the token server rejected the credentials for ${repo}`
          : `registry ${host} requires authentication for ${repo}: no credentials were given`,
      );
    }
    if (res.statusCode === 403)
      throw new PermissionDeniedError(`registry ${host}: access to ${repo} denied by the token server`);
    if (res.statusCode >= 300) {
      throw new UnavailableError(`token server ${url.origin} answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new UnavailableError(`token server ${url.origin} sent invalid JSON`);
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new UnavailableError(`token server ${url.origin} sent no token`);
    return { token, expiresIn: body.expires_in ?? 60 };
  }
}

// Kept apart (credentials.ts) so berthd's start reads its configuration without loading the
// HTTP client (http.ts) that only a pull needs.
export { configuredCredentials, type ConfiguredAuth } from "./credentials.js";
