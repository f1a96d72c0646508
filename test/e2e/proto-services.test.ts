// Service and method paths of the generated code, and the full RPC surface of CRI, checked against
// the upstream definitions (kubernetes/cri-api, containerd): what kubelet, crictl and containerd put
// on the wire.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as cri from "../../src/gen/cri/runtime/v1/api.js";
import * as shim from "../../src/gen/containerd/runtime/v2/task/shim.js";
import * as ttrpcEvents from "../../src/gen/containerd/services/ttrpc/events/v1/events.js";

// ---- (b) service and method paths ----

test("CRI gRPC paths", () => {
  assert.equal(cri.RuntimeServiceService.version.path, "/runtime.v1.RuntimeService/Version");
  assert.equal(cri.RuntimeServiceService.runPodSandbox.path, "/runtime.v1.RuntimeService/RunPodSandbox");
  assert.equal(cri.RuntimeServiceService.getContainerEvents.path, "/runtime.v1.RuntimeService/GetContainerEvents");
  assert.equal(cri.RuntimeServiceService.getContainerEvents.responseStream, true);
  assert.equal(cri.ImageServiceService.pullImage.path, "/runtime.v1.ImageService/PullImage");
  assert.equal(cri.RuntimeServiceDefinition.fullName, "runtime.v1.RuntimeService");
  assert.equal(cri.ImageServiceDefinition.fullName, "runtime.v1.ImageService");
});

test("shim Task and ttrpc Events service names", () => {
  assert.equal(shim.TaskDefinition.fullName, "containerd.task.v2.Task");
  const taskMethods = Object.values(shim.TaskDefinition.methods).map((m) => m.name);
  // containerd runtime/v2/task/shim.proto, service Task, in upstream order.
  assert.deepEqual(taskMethods, [
    "State",
    "Create",
    "Start",
    "Delete",
    "Pids",
    "Pause",
    "Resume",
    "Checkpoint",
    "Kill",
    "Exec",
    "ResizePty",
    "CloseIO",
    "Update",
    "Wait",
    "Stats",
    "Connect",
    "Shutdown",
  ]);
  // ttrpc sends service and method as fullName and name (no grpc-js service is generated for it).
  assert.equal(shim.TaskDefinition.methods.create.name, "Create");
  assert.equal("TaskService" in shim, false, "ttrpc-only protos carry no grpc-js client or server");
  assert.equal(shim.TaskDefinition.methods.create.requestType, shim.CreateTaskRequest);

  assert.equal(ttrpcEvents.EventsDefinition.fullName, "containerd.services.events.ttrpc.v1.Events");
  assert.deepEqual(
    Object.values(ttrpcEvents.EventsDefinition.methods).map((m) => m.name),
    ["Forward"],
  );
  assert.equal(ttrpcEvents.EventsDefinition.methods.forward.requestType, ttrpcEvents.ForwardRequest);
});

// ---- (c) the full RPC surface of CRI ----

test("CRI services have every upstream RPC", () => {
  // kubernetes/cri-api pkg/apis/runtime/v1/api.proto (master), in upstream order.
  const runtime = [
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "CheckpointPod",
    "RestorePod",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
  ];
  const image = ["ListImages", "StreamImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"];
  assert.equal(runtime.length, 37);
  assert.equal(image.length, 6);
  assert.deepEqual(
    Object.values(cri.RuntimeServiceDefinition.methods).map((m) => m.name),
    runtime,
  );
  assert.deepEqual(
    Object.values(cri.ImageServiceDefinition.methods).map((m) => m.name),
    image,
  );

  const streaming = Object.values(cri.RuntimeServiceDefinition.methods)
    .filter((m) => m.responseStream)
    .map((m) => m.name);
  assert.deepEqual(streaming, [
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "GetContainerEvents",
    "StreamPodSandboxMetrics",
  ]);
  for (const [key, m] of Object.entries(cri.RuntimeServiceService)) {
    const name = cri.RuntimeServiceDefinition.methods[key as keyof typeof cri.RuntimeServiceDefinition.methods].name;
    assert.equal(m.path, `/runtime.v1.RuntimeService/${name}`);
  }
});
