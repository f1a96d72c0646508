// Stop signals (KEP-4960): every value of the CRI Signal enum maps to the Linux signal of that
// name (numbers checked against bash's `kill -l`), round-trips to the same enum value for
// ContainerStatus, and the precedence config > image STOPSIGNAL > SIGTERM holds.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Signal } from "../../../src/gen/cri/runtime/v1/api.js";
import {
  effectiveStopSignal,
  parseSignal,
  signalFromCri,
  signalNumber,
  signalToCri,
  storedSignalNumber,
  storedSignalToCri,
} from "../../../src/cri/stop-signal.js";
import { InvalidArgumentError } from "../../../src/util/errors.js";

/** bash has no names for the aliases; they are the same numbers as these. */
const ALIAS_OF: Record<string, string> = { SIGCLD: "SIGCHLD", SIGIOT: "SIGABRT", SIGPOLL: "SIGIO" };

const enumValues = Object.values(Signal).filter(
  (v): v is Signal => typeof v === "number" && v !== Signal.SIGNAL_RUNTIME_DEFAULT && v !== Signal.UNRECOGNIZED,
);

function killL(names: string[]): number[] {
  const out = execFileSync("bash", ["-c", 'for s in "$@"; do kill -l "$s"; done', "bash", ...names], {
    encoding: "utf8",
  });
  return out.trim().split("\n").map(Number);
}

test("every CRI Signal enum value is a Linux signal with the number bash gives its name", () => {
  assert.equal(enumValues.length, 65);
  const names = enumValues.map((v) => signalFromCri(v)!);
  const expected = killL(names.map((n) => ALIAS_OF[n] ?? n));
  const rows = enumValues.map((v, i) => ({ enum: Signal[v], name: names[i], number: signalNumber(names[i]!) }));
  assert.deepEqual(
    rows.map((r) => r.number),
    expected,
    JSON.stringify(rows),
  );
  for (const [i, v] of enumValues.entries()) {
    // What CreateContainer stores is what ContainerStatus reports, even after a restart.
    assert.equal(signalToCri(parseSignal(names[i]!)), v, `${Signal[v]} round trip`);
    assert.equal(storedSignalToCri(names[i]!), v);
    assert.equal(storedSignalNumber(names[i]!), expected[i]);
  }
});

test("spot checks of the enum's naming", () => {
  assert.equal(signalFromCri(Signal.SIGNAL_SIGUSR1), "SIGUSR1");
  assert.equal(signalFromCri(Signal.SIGNAL_SIGRTMINPLUS3), "SIGRTMIN+3");
  assert.equal(signalFromCri(Signal.SIGNAL_SIGRTMAXMINUS14), "SIGRTMAX-14");
  assert.equal(signalNumber("SIGRTMIN"), 34);
  assert.equal(signalNumber("SIGRTMAX"), 64);
  assert.equal(signalFromCri(Signal.SIGNAL_RUNTIME_DEFAULT), undefined);
});

test("values outside the enum are INVALID_ARGUMENT", () => {
  assert.throws(() => signalFromCri(99 as Signal), InvalidArgumentError);
  assert.throws(() => signalFromCri(Signal.UNRECOGNIZED), InvalidArgumentError);
});

test("image STOPSIGNAL spellings (Docker's: name, short name, number, real-time)", () => {
  const cases: [string, string][] = [
    ["SIGQUIT", "SIGQUIT"],
    ["quit", "SIGQUIT"],
    ["3", "SIGQUIT"],
    ["SIGRTMIN+3", "SIGRTMIN+3"],
    ["RTMIN+3", "SIGRTMIN+3"],
    ["37", "SIGRTMIN+3"],
    ["SIGRTMAX-30", "SIGRTMIN"],
    ["50", "SIGRTMAX-14"],
    ["SIGIOT", "SIGIOT"],
  ];
  for (const [input, want] of cases) assert.equal(parseSignal(input), want, input);
  for (const bad of ["SIGFOO", "0", "65", "SIGRTMIN-1", "SIGRTMAX+1", "32", ""]) {
    assert.throws(() => parseSignal(bad), InvalidArgumentError, bad);
  }
});

test("precedence: config stop_signal > image STOPSIGNAL > SIGTERM", () => {
  assert.equal(effectiveStopSignal(Signal.SIGNAL_SIGUSR1, "SIGQUIT"), "SIGUSR1");
  assert.equal(effectiveStopSignal(Signal.SIGNAL_RUNTIME_DEFAULT, "SIGQUIT"), "SIGQUIT");
  assert.equal(effectiveStopSignal(undefined, "9"), "SIGKILL");
  assert.equal(effectiveStopSignal(Signal.SIGNAL_RUNTIME_DEFAULT, ""), "SIGTERM");
  assert.equal(effectiveStopSignal(undefined, undefined), "SIGTERM");
  assert.throws(() => effectiveStopSignal(undefined, "SIGNOPE"), InvalidArgumentError);
});

test("a stored value this version cannot read falls back to SIGTERM, never throws", () => {
  assert.equal(storedSignalNumber("garbage"), 15);
  assert.equal(storedSignalToCri("garbage"), Signal.SIGNAL_RUNTIME_DEFAULT);
});
