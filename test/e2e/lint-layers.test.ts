// The layer direction of DESIGN.md is enforced by eslint.config.js; this checks the rule
// really fires (a broken pattern would silently allow the architecture to erode).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ESLint } from "eslint";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const eslint = new ESLint({ cwd: root });

async function restricted(file: string, importPath: string): Promise<boolean> {
  const code = `import { a } from "${importPath}";\nexport const b = a;\n`;
  const [result] = await eslint.lintText(code, { filePath: `${root}/${file}` });
  return result!.messages.some((m) => m.ruleId === "no-restricted-imports");
}

test("the shim imports nothing from the daemon side", async () => {
  for (const target of ["../daemon/config.js", "../cri/server.js", "../runtime/manager.js", "../images/service.js"]) {
    assert.equal(await restricted("src/shim/x.ts", target), true, target);
  }
  assert.equal(await restricted("src/shim/x.ts", "../ttrpc/index.js"), false);
  assert.equal(await restricted("src/shim/x.ts", "../gen/containerd/runtime/v2/task/shim.js"), false);
});

test("the CRI layer never reaches into the shim or ttrpc", async () => {
  assert.equal(await restricted("src/cri/x.ts", "../shim/service.js"), true);
  assert.equal(await restricted("src/cri/x.ts", "../ttrpc/client.js"), true);
  assert.equal(await restricted("src/cri/x.ts", "../runtime/manager.js"), false);
});

test("core services never call up into the CRI layer or the daemon", async () => {
  assert.equal(await restricted("src/runtime/x.ts", "../cri/server.js"), true);
  assert.equal(await restricted("src/images/x.ts", "../daemon/config.js"), true);
  assert.equal(await restricted("src/oci/x.ts", "../gen/cri/runtime/v1/api.js"), false);
});

test("leaf libraries import no layer", async () => {
  assert.equal(await restricted("src/ttrpc/x.ts", "../runtime/manager.js"), true);
  assert.equal(await restricted("src/sys/x.ts", "../shim/main.js"), true);
});
