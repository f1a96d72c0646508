// Shared views of CRI objects: docker-style status text, names, the labels berth's own
// `run` puts on what it creates.
import { ContainerState, PodSandboxState, type Container, type ContainerStatus } from "../gen/cri/runtime/v1/api.js";
import { ago, humanDuration } from "./output.js";

/** Labels on pods and containers `berth run` made: such a pod holds exactly one container. */
export const LABEL_RUN = "io.berth.cli.run";
/** Annotation on a run-made pod: the log directory the CLI created for it (removed with it). */
export const ANNOTATION_LOG_DIR = "io.berth.cli.log-dir";
/** Annotation on a run-made container: the image as the user named it. */
export const ANNOTATION_IMAGE = "io.berth.cli.image";

export function stateName(s: ContainerState): string {
  switch (s) {
    case ContainerState.CONTAINER_CREATED:
      return "created";
    case ContainerState.CONTAINER_RUNNING:
      return "running";
    case ContainerState.CONTAINER_EXITED:
      return "exited";
    default:
      return "unknown";
  }
}

export function podStateName(s: PodSandboxState): string {
  return s === PodSandboxState.SANDBOX_READY ? "ready" : "notready";
}

/** "Up 5 minutes", "Exited (3) 2 seconds ago", "Created". */
export function statusText(st: ContainerStatus | undefined, c: Container, now = Date.now()): string {
  const state = st?.state ?? c.state;
  switch (state) {
    case ContainerState.CONTAINER_CREATED:
      return "Created";
    case ContainerState.CONTAINER_RUNNING:
      if (!st || st.startedAt <= 0n) return "Up";
      return `Up ${humanDuration(Math.floor((now - Number(st.startedAt / 1_000_000n)) / 1000))}`;
    case ContainerState.CONTAINER_EXITED:
      return st ? `Exited (${st.exitCode}) ${ago(st.finishedAt, now)}`.trim() : "Exited";
    default:
      return "Unknown";
  }
}

export function imageOf(c: {
  image?: { image: string; userSpecifiedImage: string } | undefined;
  imageRef: string;
  annotations: Record<string, string>;
}): string {
  return c.annotations[ANNOTATION_IMAGE] || c.image?.userSpecifiedImage || c.image?.image || c.imageRef;
}
