// The NRI container states berth reports (cri/nri-view.ts) are written out as numbers so that
// berthd does not load the generated NRI module while NRI is off: they must be the wire values
// of NRI's ContainerState enum.
import assert from "node:assert/strict";
import { test } from "node:test";

import { NRI_STATE } from "../../src/cri/nri-view.js";
import { ContainerState } from "../../src/gen/nri/api.js";

test("NRI_STATE holds NRI's ContainerState wire values", () => {
  assert.deepEqual(NRI_STATE, {
    UNKNOWN: ContainerState.CONTAINER_UNKNOWN,
    CREATED: ContainerState.CONTAINER_CREATED,
    RUNNING: ContainerState.CONTAINER_RUNNING,
    STOPPED: ContainerState.CONTAINER_STOPPED,
  });
});
