// Finding what the user named: containers and pods by full id, unique id prefix or name;
// images by name, id or digest (the daemon resolves those).
import type { Container, Image, PodSandbox } from "../gen/cri/runtime/v1/api.js";
import type { Clients } from "./client.js";
import { CliError } from "./errors.js";

function pick<T extends { id: string }>(
  items: T[],
  ref: string,
  nameOf: (t: T) => string,
  what: string,
  listCmd: string,
): T {
  const exact = items.find((i) => i.id === ref);
  if (exact) return exact;
  const named = items.filter((i) => nameOf(i) === ref);
  if (named.length === 1) return named[0];
  if (named.length > 1) {
    // Several attempts of one name: the newest is the one people mean.
    return named.sort((a, b) => Number(createdOf(b) - createdOf(a)))[0];
  }
  const prefixed = items.filter((i) => i.id.startsWith(ref));
  if (prefixed.length === 1 && ref.length > 0) return prefixed[0];
  if (prefixed.length > 1)
    throw new CliError(
      `${what} id prefix ${JSON.stringify(ref)} is ambiguous (${prefixed.length} match)`,
      "give more characters of the id",
    );
  throw new CliError(`no such ${what}: ${ref}`, `list them with \`${listCmd}\``);
}

function createdOf(x: unknown): bigint {
  return (x as { createdAt?: bigint }).createdAt ?? 0n;
}

export async function findContainer(c: Clients, ref: string): Promise<Container> {
  const { containers } = await c.rt.listContainers({});
  return pick(containers, ref, (x) => x.metadata?.name ?? "", "container", "berth ps -a");
}

export async function findPod(c: Clients, ref: string): Promise<PodSandbox> {
  const { items } = await c.rt.listPodSandbox({});
  return pick(items, ref, (x) => x.metadata?.name ?? "", "pod", "berth pods");
}

/** The image `ref` names, or undefined when the daemon has no such image. */
export async function findImage(c: Clients, ref: string): Promise<Image | undefined> {
  const r = await c.img.imageStatus({ image: { image: ref } });
  return r.image && r.image.id ? r.image : undefined;
}

export function missingImage(ref: string): CliError {
  return new CliError(`image ${ref} is not present on this node`, `pull it first: berth pull ${ref}`);
}
