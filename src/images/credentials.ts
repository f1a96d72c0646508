// The registry credentials of berthd's configuration ([registry.auths."<host>"]) as a
// CredentialLookup. Apart from auth.ts, whose token requests load the HTTP client: berthd builds this at
// start, and an idle daemon should not pay for the HTTP client a pull needs (issue 15).
import type { AuthConfig, CredentialLookup } from "./auth.js";

/** One [registry.auths."<host>"] entry of berthd's config. */
export interface ConfiguredAuth {
  username: string;
  password: string;
  auth: string;
  identity_token: string;
}

/** Docker Hub answers under several names; an entry for any of them serves docker.io. */
const dockerHubAliases = ["docker.io", "registry-1.docker.io", "index.docker.io", "https://index.docker.io/v1/"];

/** A CredentialLookup over configured entries keyed by registry host (a scheme prefix is ignored). */
export function configuredCredentials(auths: Record<string, ConfiguredAuth>): CredentialLookup {
  const byHost = new Map<string, AuthConfig>();
  for (const [key, a] of Object.entries(auths)) {
    const host = key.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
    const entry: AuthConfig = {
      username: a.username || undefined,
      password: a.password || undefined,
      auth: a.auth || undefined,
      identityToken: a.identity_token || undefined,
    };
    byHost.set(dockerHubAliases.includes(key) || dockerHubAliases.includes(host) ? "docker.io" : host, entry);
  }
  return (registryHost) => byHost.get(dockerHubAliases.includes(registryHost) ? "docker.io" : registryHost);
}
