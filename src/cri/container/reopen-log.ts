// ReopenContainerLog: the log pump switches to a new file (kubelet rotated the old one).
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import { FailedPreconditionError } from "../../util/errors.js";
import { containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";

export function reopenContainerLog(d: ContainerDeps, ref: string): void {
  const e = d.store.resolve(ref);
  if (!e.io || containerView(e.status).state !== ContainerState.CONTAINER_RUNNING) {
    throw new FailedPreconditionError(`container ${e.id} is not running: its log cannot be reopened`);
  }
  e.io.reopen();
}
