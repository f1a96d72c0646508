// A shim process record for tests of the process model: task c1 in namespace "test", runc,
// nothing on disk it points to (the paths do not exist); `o` overrides any field.
import type { ProcessRecord } from "../../../src/shim/process.js";

export function processRecord(o: Partial<ProcessRecord> = {}): ProcessRecord {
  return {
    namespace: "test",
    id: "c1",
    execId: "",
    bundle: "/nonexistent/c1",
    stdin: "",
    stdout: "",
    stderr: "",
    terminal: false,
    runtime: {
      binary: "runc",
      root: "/nonexistent",
      systemdCgroup: false,
      noPivotRoot: false,
      noNewKeyring: false,
      criuPath: "",
    },
    rootfs: [],
    checkpoint: "",
    pid: 0,
    started: false,
    ...o,
  };
}
