// CNI (containernetworking/cni SPEC.md) from the runtime's side, one concern per file:
//   cni/types.ts            configuration lists, results, RuntimeConf
//   cni/errors.ts           typed CNI failures
//   cni/config.ts           loading and validating conf_dir, versions
//   cni/default-network.ts  berth's default bridge network
//   cni/invoke.ts           executing one plugin (CniExec)
//   cni/list.ts             ADD / DEL / CHECK over a configuration list
export * from "./cni/types.js";
export * from "./cni/errors.js";
export * from "./cni/config.js";
export * from "./cni/default-network.js";
export * from "./cni/invoke.js";
export * from "./cni/list.js";
