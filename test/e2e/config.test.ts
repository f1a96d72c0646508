// berthd's configuration: defaults for every key, validation messages naming file, key and
// problem, flags over file, and `berthd config default|dump`.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse as parseToml } from "smol-toml";
import { parseDuration } from "../../src/daemon/config-fields.js";
import {
  applyOverrides,
  ConfigError,
  defaultConfig,
  parseConfig,
  renderConfig,
  type BerthConfig,
} from "../../src/daemon/config.js";
import { runBerthd, startDaemon } from "../helpers/daemon.js";

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, "/etc/berth/config.toml");
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message.split("\n");
  }
  assert.fail("config was accepted");
}

function tempFile(t: { after(fn: () => void): void }, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "berth-cfg-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

test("an empty file gives the documented defaults", () => {
  const cfg = parseConfig("", "empty.toml");
  assert.deepEqual(cfg, defaultConfig());
  assert.equal(cfg.version, 1);
  assert.equal(cfg.root, "/var/lib/berth");
  assert.equal(cfg.state, "/run/berth");
  assert.deepEqual(cfg.grpc, {
    address: "/run/berth/berth.sock",
    uid: 0,
    gid: 0,
    mode: 0o660,
    max_recv_message_size: 16777216,
    max_send_message_size: 16777216,
    shutdown_timeout: "5s",
    server: "berth",
  });
  assert.deepEqual(cfg.log, { level: "info", format: "json" });
  assert.equal(cfg.cgroup.driver, "cgroupfs");
  assert.equal(cfg.runtime.default_runtime_name, "runc");
  assert.deepEqual(cfg.runtime.handlers.runc, {
    runtime_type: "io.containerd.berth.v2",
    binary_name: "runc",
    root: "",
    options: {},
  });
  assert.equal(cfg.runtime.handlers.runsc.binary_name, "runsc");
  // runc v1.5 as scripts/setup.sh installs it, for pods with user namespaces
  assert.equal(cfg.runtime.handlers["runc-1.5"]?.binary_name, "/usr/local/sbin/runc-1.5");
  assert.deepEqual(cfg.cni, { bin_dir: "/usr/lib/cni", conf_dir: "/etc/cni/net.d", max_conf_num: 1 });
  assert.equal(cfg.registry.config_path, "/etc/berth/certs.d");
  assert.deepEqual(cfg.registry.auths, {});
  assert.deepEqual(cfg.image, {
    snapshotter: "overlayfs",
    sandbox_image: "",
    max_concurrent_downloads: 3,
    image_pull_with_sync_fs: false,
    stale_ingest_timeout: "24h",
    image_pull_progress_timeout: "5m",
  });
  assert.deepEqual(cfg.streaming, {
    address: "127.0.0.1",
    port: 0,
    tls_cert_file: "",
    tls_key_file: "",
    token_ttl: "1m",
  });
  assert.equal(cfg.metrics.address, "");
});

test("a file overrides only the keys it sets; new runtime handlers get the handler defaults", () => {
  const cfg = parseConfig(
    `root = "/data/berth"
[grpc]
mode = 0o600
[runtime]
default_runtime_name = "kata"
[runtime.handlers.kata]
binary_name = "/opt/kata/bin/kata-runtime"
[runtime.handlers.kata.options]
SystemdCgroup = true
[runtime.handlers.runc]
root = "/run/berth/runc"
`,
    "f.toml",
  );
  assert.equal(cfg.root, "/data/berth");
  assert.equal(cfg.state, "/run/berth");
  assert.equal(cfg.grpc.mode, 0o600);
  assert.equal(cfg.grpc.address, "/run/berth/berth.sock");
  assert.deepEqual(cfg.runtime.handlers.kata, {
    runtime_type: "io.containerd.berth.v2",
    binary_name: "/opt/kata/bin/kata-runtime",
    root: "",
    options: { SystemdCgroup: true },
  });
  assert.deepEqual(cfg.runtime.handlers.runc, {
    runtime_type: "io.containerd.berth.v2",
    binary_name: "runc",
    root: "/run/berth/runc",
    options: {},
  });
  assert.ok(cfg.runtime.handlers.runsc, "default handlers stay");
});

test("problems name the file, the dotted key and what is wrong, all at once", () => {
  const lines = problemsOf(`[grpc]
address = 5
adress = "/run/x.sock"
[log]
level = "verbose"
[cgroup]
driver = "systemdd"
[runtime.handlers.kata]
binary_nam = "kata"
`);
  assert.deepEqual(lines, [
    "/etc/berth/config.toml: grpc.address: expected a string, got an integer (5)",
    '/etc/berth/config.toml: grpc.adress: unknown key; did you mean "grpc.address"?',
    '/etc/berth/config.toml: log.level: "verbose" is not one of "trace", "debug", "info", "warn", "error", "fatal"',
    '/etc/berth/config.toml: cgroup.driver: "systemdd" is not one of "cgroupfs", "systemd"',
    '/etc/berth/config.toml: runtime.handlers.kata.binary_nam: unknown key; did you mean "runtime.handlers.kata.binary_name"?',
  ]);
});

test("more validation: wrong tables, keys in the wrong table, paths, ranges, modes, durations, cross-key checks", () => {
  const one = (text: string) => {
    const lines = problemsOf(text);
    assert.equal(lines.length, 1, lines.join("\n"));
    return lines[0].replace("/etc/berth/config.toml: ", "");
  };
  assert.equal(one(`grpc = "x"`), 'grpc: expected a table, got a string ("x")');
  assert.equal(one(`[grpc]\nlevel = "debug"`), 'grpc.level: unknown key; did you mean "log.level"?');
  assert.match(one(`[nonsense]\nx = 1`), /^nonsense: unknown key \(known keys here: version, root, state, grpc/);
  assert.equal(one(`root = "var/lib/berth"`), 'root: must be an absolute path, got "var/lib/berth"');
  assert.equal(one(`version = 2`), "version: must be between 1 and 1, got 2");
  assert.equal(
    one(`[grpc]\nmax_recv_message_size = 1.5`),
    "grpc.max_recv_message_size: expected an integer, got a float (1.5)",
  );
  assert.equal(one(`[streaming]\nport = 70000`), "streaming.port: must be between 0 and 65535, got 70000");
  assert.equal(
    one(`[grpc]\nmode = 660`),
    'grpc.mode: permission bits must be within 0o777 (decimal 660); write octal: 0o660 or "0660"',
  );
  assert.equal(
    one(`[grpc]\nmode = "rw-rw----"`),
    'grpc.mode: expected a file mode (0o660 or "0660"), got a string ("rw-rw----")',
  );
  assert.equal(
    one(`[streaming]\ntoken_ttl = "1 minute"`),
    'streaming.token_ttl: "1 minute" is not a duration (examples: "30s", "1m", "1h30m")',
  );
  assert.equal(
    one(`[runtime]\ndefault_runtime_name = "kata"`),
    'runtime.default_runtime_name: no handler named "kata" in [runtime.handlers] (have: runc, runc-1.5, runsc)',
  );
  assert.equal(
    one(`[runtime.handlers.kata]\nruntime_type = "kata"`),
    'runtime.handlers.kata.runtime_type: "kata" is neither of the form io.containerd.NAME.v2 nor an absolute path to a shim binary',
  );
  assert.equal(
    one(`[runtime.handlers.kata]\nruntime_type = "bin/containerd-shim-kata-v2"`),
    'runtime.handlers.kata.runtime_type: "bin/containerd-shim-kata-v2" is neither of the form io.containerd.NAME.v2 nor an absolute path to a shim binary',
  );
  // a shim binary by its absolute path (containerd 2.x's runc shim beside Debian's 1.6 one)
  assert.equal(
    parseConfig(`[runtime.handlers.runc2]\nruntime_type = "/opt/containerd2/bin/containerd-shim-runc-v2"`, "f").runtime
      .handlers.runc2?.runtime_type,
    "/opt/containerd2/bin/containerd-shim-runc-v2",
  );
  assert.equal(one(`[runtime.handlers]\nkata = 1`), "runtime.handlers.kata: expected a table, got an integer (1)");
  assert.equal(
    one(`[streaming]\ntls_cert_file = "/etc/x.crt"`),
    "streaming.tls_key_file: tls_cert_file and tls_key_file must be set together",
  );
});

test("socket modes may be written as TOML octal or an octal string", () => {
  for (const [text, mode] of [
    ["0o660", 0o660],
    ['"0660"', 0o660],
    ['"660"', 0o660],
    ['"0o600"', 0o600],
    ["384", 0o600],
  ] as const) {
    assert.equal(parseConfig(`[grpc]\nmode = ${text}`, "f").grpc.mode, mode, text);
  }
});

test("durations use Go syntax", () => {
  assert.equal(parseDuration("1m"), 60_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("5"), undefined);
  assert.equal(parseDuration(""), undefined);
  assert.equal(parseDuration("1m junk"), undefined);
});

test("rendered config parses back to the same value, including unusual strings", () => {
  const cfg: BerthConfig = defaultConfig();
  cfg.image.sandbox_image = 'reg.example/pause:3.9 "quoted" \\ tab\t nl\n del\x7f ünï';
  cfg.grpc.mode = 0o640;
  cfg.runtime.handlers["gpu-runc"] = {
    runtime_type: "io.containerd.runc.v2",
    binary_name: "/usr/bin/nvidia-runc",
    root: "",
    options: { SystemdCgroup: true, "Weird Key": ["a", "b"], Nested: { x: 1 } },
  };
  for (const comments of [false, true]) {
    assert.deepEqual(parseConfig(renderConfig(cfg, { comments }), "rendered"), cfg);
  }
});

test("flags override the file and are validated like it", () => {
  const cfg = parseConfig(`root = "/from/file"\n[log]\nlevel = "warn"`, "f");
  const out = applyOverrides(cfg, [
    { key: "root", value: "/from/flag", flag: "--root" },
    { key: "log.level", value: "debug", flag: "--log-level" },
  ]);
  assert.equal(out.root, "/from/flag");
  assert.equal(out.log.level, "debug");
  assert.equal(cfg.root, "/from/file", "the input is not modified");
  assert.throws(
    () => applyOverrides(cfg, [{ key: "log.level", value: "loud", flag: "--log-level" }]),
    (err: Error) =>
      err.message ===
      'command line: --log-level (log.level): "loud" is not one of "trace", "debug", "info", "warn", "error", "fatal"',
  );
});

// ---- the berthd command line ----

test("`berthd config default` prints TOML that parses to the defaults, with comments", async () => {
  const r = await runBerthd(["config", "default"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^# /m);
  assert.match(r.stdout, /^\[runtime\.handlers\.runc\]$/m);
  // containerd's pull progress timeout, documented where it is set.
  assert.match(r.stdout, /^# A pull whose open downloads receive no bytes .*\nimage_pull_progress_timeout = "5m"$/m);
  assert.deepEqual(parseConfig(r.stdout, "stdout"), defaultConfig());
  // Plain TOML, not only our own parser.
  assert.equal((parseToml(r.stdout) as { grpc: { mode: string } }).grpc.mode, "0660");
});

test("berthd starts with the `config default` output as its config file", async (t) => {
  const r = await runBerthd(["config", "default"]);
  const d = await startDaemon({ config: r.stdout });
  t.after(() => d.stop());
  assert.equal((await d.rt.version({})).runtimeName, "berth");
});

test("`berthd config dump` shows defaults + file + flags; relative flag paths resolve against the cwd", async (t) => {
  const file = tempFile(
    t,
    "c.toml",
    `root = "/from/file"\nstate = "/state/from/file"\n[log]\nlevel = "warn"\nformat = "text"\n`,
  );
  const r = await runBerthd(["config", "dump", "-c", file, "--root", "rel/root", "-l", "debug"], { cwd: "/tmp" });
  assert.equal(r.code, 0, r.stderr);
  const cfg = parseConfig(r.stdout, "dump");
  assert.equal(cfg.root, "/tmp/rel/root");
  assert.equal(cfg.state, "/state/from/file");
  assert.equal(cfg.log.level, "debug");
  assert.equal(cfg.log.format, "text");
  assert.equal(cfg.grpc.address, "/run/berth/berth.sock");
});

test("berthd refuses to start on a bad config, naming file, key and problem", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["syntax", `[grpc]\naddress = "/run/x.sock"\nmode = \n`, /syntax\.toml:3:\d+: TOML syntax error/],
    ["type", `[grpc]\naddress = 5\n`, /type\.toml: grpc\.address: expected a string, got an integer \(5\)/],
    [
      "unknown",
      `[grpc]\nadress = "/run/x.sock"\n`,
      /unknown\.toml: grpc\.adress: unknown key; did you mean "grpc\.address"\?/,
    ],
    ["level", `[log]\nlevel = "verbose"\n`, /level\.toml: log\.level: "verbose" is not one of/],
  ];
  for (const [name, text, expected] of cases) {
    const file = tempFile(t, `${name}.toml`, text);
    const r = await runBerthd(["--config", file, "--root", "/nonexistent/berth-should-not-be-created"]);
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.match(r.stderr, expected, name);
    assert.ok(r.stderr.includes(file), `${name}: the full file path is named: ${r.stderr}`);
  }
  const missing = await runBerthd(["--config", "/nonexistent/berth.toml"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /\/nonexistent\/berth\.toml: cannot read config file: ENOENT/);
});

test("a running daemon's flags override its file", async (t) => {
  const d = await startDaemon({
    config: `root = "/nonexistent/from-file"\n[log]\nlevel = "error"\n[cgroup]\ndriver = "systemd"\n`,
  });
  t.after(() => d.stop());
  const cfg = JSON.parse((await d.rt.status({ verbose: true })).info.config) as BerthConfig;
  assert.equal(cfg.root, d.root, "--root beats the file");
  assert.equal(cfg.log.level, "debug", "--log-level beats the file");
  assert.equal(cfg.cgroup.driver, "systemd", "keys without a flag come from the file");
  assert.match(d.logs(), /"level":20/, "debug lines are logged");
});

test("`berthd --version` prints the version", async () => {
  const r = await runBerthd(["--version"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^berthd \d+\.\d+\.\d+/);
});
