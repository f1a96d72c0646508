// What kubelet's pods look like through berthd's CRI: sandboxes and containers found by the
// labels kubelet puts on them (io.kubernetes.pod.name, io.kubernetes.container.name, ...).
import { ContainerState, PodSandboxState, type Container, type PodSandbox } from "../../src/gen/cri/runtime/v1/api.js";
import type { TestDaemon } from "./daemon.js";

export const POD_NAME = "io.kubernetes.pod.name";
export const POD_NAMESPACE = "io.kubernetes.pod.namespace";
export const POD_UID = "io.kubernetes.pod.uid";
export const CONTAINER_NAME = "io.kubernetes.container.name";
export const RESTART_COUNT = "io.kubernetes.container.restartCount";

/** The sandboxes of kubelet pod `pod` (its full name, "<name>-<node>"), any state. */
export async function sandboxesOf(d: TestDaemon, pod: string): Promise<PodSandbox[]> {
  return (await d.rt.listPodSandbox({ filter: { labelSelector: { [POD_NAME]: pod } } })).items;
}

/** The ready sandbox of `pod`, if there is one. */
export async function readySandbox(d: TestDaemon, pod: string): Promise<PodSandbox | undefined> {
  return (await sandboxesOf(d, pod)).find((s) => s.state === PodSandboxState.SANDBOX_READY);
}

/** The containers of `pod` (optionally only those named `name`), oldest attempt first. */
export async function containersOf(d: TestDaemon, pod: string, name?: string): Promise<Container[]> {
  const labelSelector: Record<string, string> = { [POD_NAME]: pod };
  if (name) labelSelector[CONTAINER_NAME] = name;
  const list = (await d.rt.listContainers({ filter: { labelSelector } })).containers;
  return list.sort((a, b) => (a.metadata?.attempt ?? 0) - (b.metadata?.attempt ?? 0));
}

/** The running container `name` of `pod`, if there is one. */
export async function runningContainer(d: TestDaemon, pod: string, name: string): Promise<Container | undefined> {
  return (await containersOf(d, pod, name)).find((c) => c.state === ContainerState.CONTAINER_RUNNING);
}

/** A comparable picture of a pod: sandbox id and every container's id, attempt and state. */
export async function podSnapshot(d: TestDaemon, pod: string): Promise<string[]> {
  const out = (await sandboxesOf(d, pod)).map((s) => `sandbox ${s.id} ${PodSandboxState[s.state]}`);
  for (const c of await containersOf(d, pod))
    out.push(`container ${c.metadata?.name} ${c.id} attempt ${c.metadata?.attempt} ${ContainerState[c.state]}`);
  return out.sort();
}

/** Runs `fn`; when it throws, prints the tail of kubelet's log (and berthd's) before rethrowing. */
export async function withLogs<T>(logs: () => { kubelet: string; berthd: string }, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const l = logs();
    console.log(`---- kubelet log (tail) ----\n${l.kubelet}\n---- berthd log (tail) ----\n${l.berthd}\n----`);
    throw err;
  }
}
