// The runtime manager: berthd's client side of shim v2 (see manager.ts).
export {
  EVENTS_SOCKET_NAME,
  OCI_LINUX_RESOURCES_TYPE_URL,
  OCI_PROCESS_TYPE_URL,
  SANDBOX_ID_ANNOTATION,
  ShimManager,
} from "./manager.js";
export type { ShimManagerOptions } from "./manager.js";
export type {
  CreateTaskOptions,
  CreatedTask,
  ExecOptions,
  ExitResult,
  RecoveredTask,
  ShimInfo,
  TaskRuntime,
  TaskState,
  TaskStats,
  TaskStatus,
} from "./task-runtime.js";
export {
  BERTH_RUNTIME_TYPE,
  RUNC_OPTIONS_TYPE_URL,
  RUNC_RUNTIME_TYPE,
  RuntimeClasses,
  makeRuntimeHandler,
  repoBinDir,
  resolveShimBinary,
  runcOptionsAny,
  shimBinaryName,
} from "./runtime-classes.js";
export type { RuntimeHandler, RuntimeHandlerConfig, ShimLookupOptions } from "./runtime-classes.js";
export { FileShimRecordStore, validateIdentifier } from "./records.js";
export type { ShimRecord, ShimRecordStore } from "./records.js";
export { decodeEnvelope } from "./events.js";
export type {
  EventListener,
  RuntimeEvent,
  TaskCheckpointedEvent,
  TaskCreateEvent,
  TaskDeleteEvent,
  TaskExecAddedEvent,
  TaskExecStartedEvent,
  TaskExitEvent,
  TaskOOMEvent,
  TaskPausedEvent,
  TaskResumedEvent,
  TaskStartEvent,
  UnknownEvent,
} from "./events.js";
export {
  type ShimEndpoint,
  type TaskApiVersion,
  bootstrapFromVersionOutput,
  encodeBootstrapParams,
  parseStartOutput,
  speaksBootstrap,
} from "./shim-bootstrap.js";
