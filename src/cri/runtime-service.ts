// RuntimeService methods that describe the runtime itself: Version, Status, RuntimeConfig,
// UpdateRuntimeConfig.
// Pod and container methods live in their own modules and are spread next to these by the
// composition root (daemon/compose.ts); see handlers.ts for how a handler is registered.

import {
  CgroupDriver,
  RuntimeConfigResponse,
  StatusResponse,
  VersionResponse,
  type RuntimeCondition,
  type RuntimeHandler,
} from "../gen/cri/runtime/v1/api.js";
import { isIP } from "node:net";
import { InvalidArgumentError } from "../util/errors.js";
import type { CriMethodHandlers } from "./handlers.js";
import type { NetworkStatusProbe } from "./network-status.js";
import type { HandlerFeatures } from "../oci/runtime-features.js";

/** The CRI API version berth serves (VersionResponse.runtime_api_version). */
export const CRI_API_VERSION = "v1";
/** VersionResponse.version: the kubelet runtime API version, fixed at "0.1.0" by every CRI runtime. */
export const KUBE_RUNTIME_API_VERSION = "0.1.0";
export const RUNTIME_NAME = "berth";

export interface RuntimeInfoDeps {
  /** berth's own version (package.json). */
  version: string;
  cgroupDriver: "cgroupfs" | "systemd";
  /** Configured runtime handler names, and which one serves pods that name none. */
  runtimeHandlers: string[];
  defaultRuntimeHandler: string;
  /** What each handler's OCI runtime can do (src/oci/runtime-features.ts); a handler not here can do none of it. */
  handlerFeatures?: Record<string, HandlerFeatures>;
  network: NetworkStatusProbe;
  /** The effective configuration, reported by `Status` with verbose under info["config"]. */
  effectiveConfig: () => unknown;
}

export function runtimeInfoHandlers(
  deps: RuntimeInfoDeps,
): Pick<CriMethodHandlers, "version" | "status" | "runtimeConfig" | "updateRuntimeConfig"> {
  /** The node's pod CIDRs as kubelet last sent them (UpdateRuntimeConfig). */
  let podCidrs: string[] = [];
  // One object for every call: the encoder keeps its bytes (response-encoder.ts).
  const version = VersionResponse.fromPartial({
    version: KUBE_RUNTIME_API_VERSION,
    runtimeName: RUNTIME_NAME,
    runtimeVersion: deps.version,
    runtimeApiVersion: CRI_API_VERSION,
  });
  return {
    async version() {
      return version;
    },

    async status(request) {
      // berthd answering at all means the runtime side is up; shims are started per pod.
      const runtimeReady: RuntimeCondition = { type: "RuntimeReady", status: true, reason: "", message: "" };
      const net = await deps.network.status();
      const networkReady: RuntimeCondition = {
        type: "NetworkReady",
        status: net.ready,
        reason: net.reason,
        message: net.message,
      };
      const handler = (name: string, of = name): RuntimeHandler => ({
        name,
        features: {
          recursiveReadOnlyMounts: deps.handlerFeatures?.[of]?.recursiveReadOnlyMounts ?? false,
          userNamespaces: deps.handlerFeatures?.[of]?.userNamespaces ?? false,
        },
      });
      // Like containerd, the default handler is listed a second time under "" (the name
      // kubelet uses for pods without a RuntimeClass).
      const runtimeHandlers = deps.runtimeHandlers.flatMap((name) =>
        name === deps.defaultRuntimeHandler ? [handler(name), handler("", name)] : [handler(name)],
      );
      return StatusResponse.fromPartial({
        status: { conditions: [runtimeReady, networkReady] },
        info: request.verbose
          ? { config: JSON.stringify(deps.effectiveConfig()), podCIDRs: JSON.stringify(podCidrs) }
          : {},
        runtimeHandlers,
        // The Strict supplemental groups policy is honoured, and ContainerStatus reports the user.
        // A pod with a user namespace on the host network gets the host's /sys bound read-only
        // ("rro"), where a handler's runtime and the host's probe allow it; the feature is the
        // runtime's as a whole, so it is announced when some handler can (others refuse such
        // pods with FAILED_PRECONDITION naming the handlers that can).
        features: {
          supplementalGroupsPolicy: true,
          userNamespacesHostNetwork: Object.values(deps.handlerFeatures ?? {}).some((f) => f.userNamespacesHostNetwork),
          mountOptions: false,
        },
      });
    },

    // kubelet sends the node's pod CIDR(s) at start and when they change. Like containerd
    // without a CNI config template, berth's networking comes from the CNI config files, so the
    // CIDRs are checked and remembered (reported by verbose Status) but change no pod.
    async updateRuntimeConfig(request) {
      const raw = request.runtimeConfig?.networkConfig?.podCidr ?? "";
      if (raw === "") return {};
      const cidrs = raw.split(",").map((c) => c.trim());
      for (const c of cidrs) {
        const [addr = "", bits, ...rest] = c.split("/");
        const family = isIP(addr);
        const max = family === 6 ? 128 : 32;
        if (family === 0 || rest.length > 0 || bits === undefined || !/^\d+$/.test(bits) || Number(bits) > max)
          throw new InvalidArgumentError(`pod CIDR ${JSON.stringify(c)} is not an IPv4 or IPv6 CIDR`);
      }
      podCidrs = cidrs;
      return {};
    },

    async runtimeConfig() {
      return RuntimeConfigResponse.fromPartial({
        linux: { cgroupDriver: deps.cgroupDriver === "systemd" ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS },
      });
    },
  };
}
