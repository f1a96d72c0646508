// What a berth serving shim does beyond containerd's task API, told by the version its Connect
// reports (shim/service.ts SHIM_VERSION). A serving shim outlives berthd restarts and upgrades,
// so berthd asks the one it talks to, once per connection, rather than assume its own version.
import type { ShimConnection } from "./connections.js";

const versions = new WeakMap<ShimConnection, Promise<string | undefined>>();

/** The shim's version string ("berth-shim 0.2.0"), asked once per connection; undefined if it would not say. */
export function shimVersion(
  conn: ShimConnection,
  id: string,
  opts: { metadata: Record<string, string>; timeoutMs: number },
): Promise<string | undefined> {
  let v = versions.get(conn);
  if (!v) {
    v = conn.task.connect({ id }, opts).then(
      (r) => r.version,
      () => undefined,
    );
    versions.set(conn, v);
  }
  return v;
}

/**
 * Whether a shim of this version confirms at Create a task it ran at once, so that no Start
 * follows (shim/start-at-once.ts START_CONFIRMED_METADATA_KEY): berth-shim 0.2 and later.
 */
export function confirmsStartAtCreate(version: string | undefined): boolean {
  const m = /^berth-shim (\d+)\.(\d+)\./.exec(version ?? "");
  if (!m) return false;
  const major = Number(m[1]);
  return major > 0 || Number(m[2]) >= 2;
}
