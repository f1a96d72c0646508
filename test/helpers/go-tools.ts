// Go programs the tests run against berth (crictl, critest, kubelet, containerd 2.x, grpc-go
// clients): built by scripts/go-tools.sh from test/go/NAME into a cache outside the checkout.
// `.ci/run` builds them all first; a test run alone builds what it needs here (minutes when cold).

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./daemon.js";

const SCRIPT = join(REPO_ROOT, "scripts/go-tools.sh");

/** The path of BINARY from tool NAME (test/go/NAME/BUILD), built first if needed. */
export function goTool(name: string, binary: string = name): string {
  execFileSync("bash", [SCRIPT, name], { stdio: ["ignore", "inherit", "inherit"], timeout: 40 * 60_000 });
  const dir = execFileSync("bash", [SCRIPT, "--bin", name], { encoding: "utf8" }).trim();
  const path = join(dir, binary);
  if (!existsSync(path)) throw new Error(`go-tools: ${name} built no ${binary} (see test/go/${name}/BUILD)`);
  return path;
}
