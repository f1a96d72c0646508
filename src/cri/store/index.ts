// cri/store: the CRI layer's one owner of container and pod state (DESIGN.md principle 2).
export * from "./container-status.js";
export * from "./sandbox-status.js";
export { ContainerStore, type ContainerEntry, type ContainerInfo } from "./container-store.js";
export { SandboxStore, type SandboxEntry, type SandboxInfo } from "./sandbox-store.js";
