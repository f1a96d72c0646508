// The shared fixture of the end-to-end CRI suites: one berthd with its own bridge and subnet,
// the test registry with the busybox images, and the images pulled. It replaces the before()
// and after() blocks each file used to repeat, and stops everything even when a step of the
// teardown throws (a registry left running keeps the test process alive).
import { after, before } from "node:test";
import { startCriEnv, testImages, type CriEnv, type CriEnvOptions } from "./cri.js";

export interface CriFixtureOptions extends CriEnvOptions {
  /** test images to pull before the first test; default ["busybox"] */
  pull?: ("busybox" | "busyboxUser")[];
}

/**
 * Registers before/after hooks in the current file or describe() block: `set` receives the
 * started environment (keep it in a `let env: CriEnv`).
 */
export function useCriEnv(o: CriFixtureOptions, set: (env: CriEnv) => void): void {
  let env: CriEnv | undefined;
  before(async () => {
    env = await startCriEnv(o);
    set(env);
    for (const which of o.pull ?? ["busybox"]) {
      await env.d.img.pullImage({ image: { image: env.images[which] } }, { deadlineMs: 120_000 });
    }
  });
  after(async () => {
    try {
      await env?.stop();
    } finally {
      await (await testImages()).stop();
    }
  });
}
