// The messages the transport comparison carries: a ContainerStatus answer as kubelet's PLEG
// reads it per container (about 1 KiB of protobuf), and a ListContainers answer of the size a
// busy node's relist reaches (just under 4 MiB: ttrpc's frame limit, fixed at 4 MiB in Go's
// ttrpc, so the same list fits every transport here).
import {
  ContainerState,
  ContainerStatusResponse,
  ListContainersResponse,
  RuntimeServiceDefinition,
  type Container,
  type ContainerStatus,
} from "../../src/gen/cri/runtime/v1/api.js";

export type Size = "small" | "large";

export const REQUEST_LIST = "berth:bench:requests";
/** Concurrent Redis workers: as many as the most concurrent callers, so the broker hop, not the workers, queues. */
export const REDIS_WORKERS = 50;
export const GRPC_MAX = 16 << 20; // kubelet's CRI client limit

/** The two CRI methods as a ttrpc service (the same protobuf messages, ttrpc framing). */
export const TtrpcCri = {
  name: "RuntimeService",
  fullName: "runtime.v1.RuntimeService",
  methods: {
    containerStatus: RuntimeServiceDefinition.methods.containerStatus,
    listContainers: RuntimeServiceDefinition.methods.listContainers,
  },
} as const;

export const LARGE_TARGET_BYTES = (4 << 20) - 64 * 1024;

const hex = (seed: number) => (seed.toString(16).padStart(8, "0") + "e3b0c44298fc1c149afbf4c8996fb924").repeat(2);

function status(i: number): ContainerStatus {
  const id = hex(i);
  return {
    id,
    metadata: { name: `app-${i}`, attempt: 0 },
    state: ContainerState.CONTAINER_RUNNING,
    createdAt: 1_764_800_000_000_000_000n,
    startedAt: 1_764_800_000_100_000_000n,
    finishedAt: 0n,
    exitCode: 0,
    image: {
      image: "registry.example/app/web:1.27.3",
      annotations: {},
      userSpecifiedImage: "",
      runtimeHandler: "",
      imageRef: "",
    },
    imageRef: `registry.example/app/web@sha256:${hex(i + 1)}`,
    reason: "",
    message: "",
    labels: {
      "io.kubernetes.container.name": `app-${i}`,
      "io.kubernetes.pod.name": `web-7d9c6b5f4-${i}`,
      "io.kubernetes.pod.namespace": "default",
      "io.kubernetes.pod.uid": "4f0c3c1e-2a7b-4d38-9a51-0c6f3b2e8d11",
    },
    annotations: {
      "io.kubernetes.container.hash": "5d1f2a9b",
      "io.kubernetes.container.restartCount": "0",
      "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
      "io.kubernetes.container.terminationMessagePolicy": "File",
      "io.kubernetes.pod.terminationGracePeriod": "30",
    },
    mounts: [
      {
        containerPath: "/var/run/secrets/kubernetes.io/serviceaccount",
        hostPath:
          "/var/lib/kubelet/pods/4f0c3c1e-2a7b-4d38-9a51-0c6f3b2e8d11/volumes/kubernetes.io~projected/kube-api-access-x7k2p",
        readonly: true,
        selinuxRelabel: false,
        propagation: 0,
        uidMappings: [],
        gidMappings: [],
        recursiveReadOnly: false,
        image: undefined,
        imageSubPath: "",
        mountOptions: [],
      },
    ],
    logPath: `/var/log/pods/default_web-7d9c6b5f4-${i}_4f0c3c1e/app-${i}/0.log`,
    resources: undefined,
    imageId: `sha256:${hex(i + 2)}`,
    user: undefined,
    stopSignal: 0,
  };
}

function container(i: number): Container {
  const s = status(i);
  return {
    id: s.id,
    podSandboxId: hex(i + 3),
    metadata: s.metadata,
    image: s.image,
    imageRef: s.imageId,
    state: s.state,
    createdAt: s.createdAt,
    labels: s.labels,
    annotations: s.annotations,
    imageId: s.imageId,
  };
}

export function smallResponse(): ContainerStatusResponse {
  return { status: status(1), info: {} };
}

/** As many containers as fit under LARGE_TARGET_BYTES. */
export function largeResponse(): ListContainersResponse {
  const one = ListContainersResponse.encode({ containers: [container(0)] }).finish().length;
  const n = Math.floor(LARGE_TARGET_BYTES / one);
  return { containers: Array.from({ length: n }, (_, i) => container(i)) };
}

export function encodedSize(size: Size): number {
  return size === "small"
    ? ContainerStatusResponse.encode(smallResponse()).finish().length
    : ListContainersResponse.encode(largeResponse()).finish().length;
}
