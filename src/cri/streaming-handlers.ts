// CRI Exec, Attach and PortForward: check the container (running) or pod (ready), then hand the
// request to the streaming server, which answers with a single-use URL the client upgrades to
// SPDY or WebSocket (kubelet pkg/cri/streaming; containerd container_exec.go & co). The
// sessions themselves run in CriStreamingBackend (streaming-backend.ts).
import { AttachResponse, ExecResponse, PortForwardResponse } from "../gen/cri/runtime/v1/api.js";
import type { StreamingServer } from "../streaming/server.js";
import type { ContainerDeps } from "./container/deps.js";
import type { CriMethodHandlers } from "./handlers.js";
import type { SandboxDeps } from "./sandbox/deps.js";
import { readyPod, runningContainer } from "./streaming-backend.js";

export interface StreamingHandlerDeps {
  /** The started streaming server (its URLs carry its address). */
  server: StreamingServer;
  containers: Pick<ContainerDeps, "store">;
  sandboxes: Pick<SandboxDeps, "store">;
}

export function streamingHandlers(
  deps: StreamingHandlerDeps,
): Pick<CriMethodHandlers, "exec" | "attach" | "portForward"> {
  const { server, containers, sandboxes } = deps;
  return {
    async exec(req) {
      const row = runningContainer(containers, req.containerId);
      const url = server.getExecUrl({
        containerId: row.id,
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
      });
      return ExecResponse.fromPartial({ url });
    },

    async attach(req) {
      const row = runningContainer(containers, req.containerId);
      const url = server.getAttachUrl({
        containerId: row.id,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
      });
      return AttachResponse.fromPartial({ url });
    },

    async portForward(req) {
      const pod = readyPod(sandboxes, req.podSandboxId);
      return PortForwardResponse.fromPartial({
        url: server.getPortForwardUrl({ podSandboxId: pod.id, ports: req.port }),
      });
    },
  };
}
