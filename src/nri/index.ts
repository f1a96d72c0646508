// NRI (Node Resource Interface): plugins that see, and may adjust, pods and containers.
export { NriAdaptation } from "./adaptation.js";
export type { NriOptions } from "./adaptation.js";
export { applyAdjustment, applyNriResources } from "./adjust.js";
export type { AdjustmentRest } from "./adjust.js";
export { NO_NRI } from "./hooks.js";
export type { NriHooks, NriState } from "./hooks.js";
export { resourcesToNri } from "./spec-view.js";
