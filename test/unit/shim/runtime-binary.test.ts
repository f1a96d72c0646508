// The OCI runtime's binary is found on PATH once (src/shim/runtime.ts resolveBinary), so that the
// monitor's exec and every short runtime command start it by its absolute path.
import assert from "node:assert/strict";
import { test } from "node:test";

import { OciRuntime, resolveBinary } from "../../../src/shim/runtime.js";

test("a name is found on PATH, a path is kept, an unknown name stays a name", () => {
  const sh = resolveBinary("sh");
  assert.match(sh, /^\/.+\/sh$/);
  assert.equal(resolveBinary("sh"), sh);
  assert.equal(resolveBinary("/opt/x/runc"), "/opt/x/runc");
  assert.equal(resolveBinary("./runc"), "./runc");
  assert.equal(resolveBinary("berth-no-such-runtime"), "berth-no-such-runtime");
});

test("create asks for `run --detach` when the task is started at once, `create` otherwise", () => {
  const rt = new OciRuntime(
    {
      binary: "/usr/sbin/runc",
      root: "/run/x",
      systemdCgroup: false,
      noPivotRoot: false,
      noNewKeyring: false,
      criuPath: "",
    },
    "/tmp/log.json",
  );
  const created = rt.createArgv("c1", "/b/c1", "/s/pid", undefined, "/s/log.json");
  const ran = rt.createArgv("c1", "/b/c1", "/s/pid", undefined, "/s/log.json", true);
  assert.deepEqual(created.slice(-6), ["create", "--bundle", "/b/c1", "--pid-file", "/s/pid", "c1"]);
  assert.deepEqual(ran.slice(-7), ["run", "--detach", "--bundle", "/b/c1", "--pid-file", "/s/pid", "c1"]);
  assert.equal(ran[0], "/usr/sbin/runc");
});
