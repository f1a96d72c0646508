// The AppArmor decision (which profile for which security context on which host) and the
// default profile's text, with a fake host: this machine's kernel has no AppArmor.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SecurityProfile_ProfileType as T, type SecurityProfile } from "../../../../src/gen/cri/runtime/v1/api.js";
import { FailedPreconditionError, InvalidArgumentError } from "../../../../src/util/errors.js";
import type { AppArmorHost } from "../../../../src/oci/apparmor-host.js";
import { parseLoadedProfiles } from "../../../../src/oci/apparmor-host.js";
import {
  appArmorProfileData,
  profileNameOfLabel,
  renderAppArmorProfile,
} from "../../../../src/oci/apparmor-profile.js";
import { resolveAppArmor } from "../../../../src/cri/spec/apparmor.js";

interface FakeHost extends AppArmorHost {
  loadedTexts: string[];
  profiles: string[];
}

function fakeHost(opts: { enabled: boolean; parser?: boolean; loaded?: string[]; loadFails?: string }): FakeHost {
  const h: FakeHost = {
    kernelEnabled: opts.enabled,
    parserPath: opts.parser === false ? null : "/sbin/apparmor_parser",
    profiles: [...(opts.loaded ?? [])],
    loadedTexts: [],
    loadedProfiles: () => [...h.profiles],
    load(text: string) {
      if (opts.loadFails) throw new Error(opts.loadFails);
      h.loadedTexts.push(text);
      h.profiles.push(/^profile (\S+) /m.exec(text)![1]);
    },
    macroExists: (rel) => rel === "tunables/global" || rel === "abstractions/base",
    currentLabel: () => "unconfined\n",
  };
  return h;
}

const sp = (profileType: T, localhostRef = ""): SecurityProfile => ({ profileType, localhostRef });

function decide(host: AppArmorHost, o: { profile?: SecurityProfile; legacy?: string; privileged?: boolean } = {}) {
  return resolveAppArmor({
    profile: o.profile,
    legacyProfile: o.legacy,
    privileged: o.privileged ?? false,
    host,
    defaultProfileName: "berth-default",
  });
}

describe("AppArmor decision", () => {
  test("host with AppArmor: unset and RuntimeDefault load berth-default once and apply it", () => {
    const host = fakeHost({ enabled: true });
    assert.equal(decide(host), "berth-default");
    assert.equal(host.loadedTexts.length, 1);
    assert.equal(decide(host, { profile: sp(T.RuntimeDefault) }), "berth-default");
    assert.equal(decide(host, { legacy: "runtime/default" }), "berth-default");
    assert.equal(decide(host, { legacy: "docker/default" }), "berth-default");
    assert.equal(host.loadedTexts.length, 1, "a loaded default is not loaded again");
  });

  test("host with AppArmor: a default loaded by someone else is used as it is", () => {
    const host = fakeHost({ enabled: true, loaded: ["berth-default"] });
    assert.equal(decide(host), "berth-default");
    assert.equal(host.loadedTexts.length, 0);
  });

  test("privileged containers run unconfined unless they name a profile", () => {
    const host = fakeHost({ enabled: true, loaded: ["custom"] });
    assert.equal(decide(host, { privileged: true }), undefined);
    assert.equal(decide(host, { privileged: true, profile: sp(T.RuntimeDefault) }), undefined);
    assert.equal(host.loadedTexts.length, 0);
    assert.equal(decide(host, { privileged: true, profile: sp(T.Localhost, "custom") }), "custom");
  });

  test("Unconfined means no profile", () => {
    const host = fakeHost({ enabled: true });
    assert.equal(decide(host, { profile: sp(T.Unconfined) }), undefined);
    assert.equal(decide(host, { legacy: "unconfined" }), undefined);
    assert.equal(host.loadedTexts.length, 0);
  });

  test("Localhost: a loaded profile is applied, with or without the localhost/ prefix", () => {
    const host = fakeHost({ enabled: true, loaded: ["custom"] });
    assert.equal(decide(host, { profile: sp(T.Localhost, "custom") }), "custom");
    assert.equal(decide(host, { profile: sp(T.Localhost, "localhost/custom") }), "custom");
    assert.equal(decide(host, { legacy: "localhost/custom" }), "custom");
  });

  test("Localhost: a profile not loaded is FAILED_PRECONDITION naming it; berth does not load it", () => {
    const host = fakeHost({ enabled: true });
    assert.throws(
      () => decide(host, { profile: sp(T.Localhost, "missing") }),
      (e: unknown) => e instanceof FailedPreconditionError && /"missing" is not loaded/.test(e.message),
    );
    assert.equal(host.loadedTexts.length, 0);
  });

  test("the SecurityProfile message wins over the deprecated string", () => {
    const host = fakeHost({ enabled: true, loaded: ["custom"] });
    assert.equal(decide(host, { profile: sp(T.Unconfined), legacy: "localhost/custom" }), undefined);
  });

  test("malformed requests are INVALID_ARGUMENT", () => {
    const host = fakeHost({ enabled: true });
    const invalid = (fn: () => unknown, re: RegExp) =>
      assert.throws(fn, (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message));
    invalid(() => decide(host, { profile: sp(T.RuntimeDefault, "x") }), /localhost_ref/);
    invalid(() => decide(host, { profile: sp(T.Localhost, "") }), /needs a localhost_ref/);
    invalid(() => decide(host, { legacy: "bogus" }), /invalid apparmor profile/);
    invalid(() => decide(host, { profile: sp(99 as T) }), /unknown apparmor profile type/);
  });

  test("host without AppArmor: the default means none, an explicit profile is refused", () => {
    const host = fakeHost({ enabled: false });
    assert.equal(decide(host), undefined);
    assert.equal(decide(host, { profile: sp(T.RuntimeDefault) }), undefined);
    assert.equal(decide(host, { profile: sp(T.Unconfined) }), undefined);
    assert.throws(
      () => decide(host, { profile: sp(T.Localhost, "custom") }),
      (e: unknown) => e instanceof FailedPreconditionError && /AppArmor is not enabled/.test(e.message),
    );
    assert.equal(host.loadedTexts.length, 0);
  });

  test("AppArmor enabled but no apparmor_parser: the default must be loaded already", () => {
    assert.equal(decide(fakeHost({ enabled: true, parser: false, loaded: ["berth-default"] })), "berth-default");
    assert.throws(
      () => decide(fakeHost({ enabled: true, parser: false })),
      (e: unknown) => e instanceof FailedPreconditionError && /apparmor_parser is not installed/.test(e.message),
    );
  });

  test("a failing apparmor_parser is FAILED_PRECONDITION with its message", () => {
    assert.throws(
      () => decide(fakeHost({ enabled: true, loadFails: "syntax error at line 3" })),
      (e: unknown) => e instanceof FailedPreconditionError && /syntax error at line 3/.test(e.message),
    );
  });
});

describe("default AppArmor profile text", () => {
  const rules = (text: string) =>
    text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "");

  test("containerd's rules, with the host's includes", () => {
    const text = renderAppArmorProfile(
      appArmorProfileData("berth-default", {
        macroExists: () => true,
        currentLabel: () => "berthd (enforce)\n",
      }),
    );
    const r = rules(text);
    assert.equal(r[0], "abi <abi/3.0>,");
    assert.equal(r[1], "#include <tunables/global>");
    assert.equal(r[2], "profile berth-default flags=(attach_disconnected,mediate_deleted) {");
    assert.equal(r[3], "#include <abstractions/base>");
    for (const rule of [
      "network,",
      "capability,",
      "file,",
      "umount,",
      "deny mount,",
      "signal (receive) peer=runc,",
      "signal (receive) peer=berthd,",
      "signal (send,receive) peer=berth-default,",
      "deny @{PROC}/* w,",
      "deny @{PROC}/sys/[^k]** w,",
      "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
      "deny @{PROC}/sysrq-trigger rwklx,",
      "deny @{PROC}/kcore rwklx,",
      "deny /sys/fs/cg[^r]*/** wklx,",
      "deny /sys/firmware/** rwklx,",
      "deny /sys/kernel/security/** rwklx,",
      "ptrace (trace,tracedby,read,readby) peer=berth-default,",
    ]) {
      assert.ok(r.includes(rule), `missing rule ${rule}`);
    }
    assert.equal(r.at(-1), "}");
    assert.equal(r.filter((l) => l === "}").length, 1, "one profile block");
  });

  test("a host without tunables gets its own @{PROC} and no abi or base include", () => {
    const r = rules(
      renderAppArmorProfile(appArmorProfileData("berth-default", { macroExists: () => false, currentLabel: () => "" })),
    );
    assert.equal(r[0], "@{PROC}=/proc/");
    assert.ok(!r.some((l) => l.startsWith("abi ") || l.startsWith("#include")));
    assert.ok(r.includes("signal (receive) peer=unconfined,"));
  });

  test("profile names that could break out of a rule are refused", () => {
    const data = appArmorProfileData("x", { macroExists: () => false, currentLabel: () => "" });
    assert.throws(() => renderAppArmorProfile({ ...data, name: "a, deny" }), /cannot be written/);
    assert.throws(() => renderAppArmorProfile({ ...data, daemonProfile: "a}" }), /cannot be written/);
  });

  test("labels and the securityfs listing", () => {
    assert.equal(profileNameOfLabel("unconfined\n"), "unconfined");
    assert.equal(profileNameOfLabel(""), "unconfined");
    assert.equal(profileNameOfLabel("berthd (enforce)\n"), "berthd");
    assert.deepEqual(parseLoadedProfiles("berth-default (enforce)\n/usr/bin/man (complain)\n\n"), [
      "berth-default",
      "/usr/bin/man",
    ]);
  });
});
