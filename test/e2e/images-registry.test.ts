// Registry client details: reference grammar, challenges, hosts.toml mirrors and headers,
// Bearer token auth, retries of transient failures.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { parseReference, formatReference } from "../../src/images/reference.js";
import { parseChallenges, basicCredentials } from "../../src/images/auth.js";
import { registryHosts } from "../../src/images/hosts.js";
import { selectManifest, normalizeArch } from "../../src/images/platform.js";
import { InvalidArgumentError, UnauthenticatedError } from "../../src/util/errors.js";
import { startProxy, startRegistry, type TestRegistry } from "../helpers/registry.js";
import { buildImage, busyboxEntries, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";

let reg: TestRegistry;
let work: string;
let imageId: string;
const cleanups: (() => Promise<void>)[] = [];

async function newService(configPath?: string): Promise<ImageService> {
  const root = await mkdtemp(join(tmpdir(), "berth-reg-"));
  const db = openDatabase(join(root, "meta.db"));
  cleanups.push(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return ImageService.create({
    root,
    db,
    registry: { configPath, retry: { attempts: 4, baseDelayMs: 10, maxDelayMs: 50 } },
  });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-reg-src-"));
  reg = await startRegistry();
  const img = buildImage([await makeLayer(await busyboxEntries())]);
  imageId = img.config.digest;
  await writeOciLayout(join(work, "layout"), [{ tag: "t", image: img }]);
  await pushLayout(join(work, "layout"), "t", `${reg.host}/test/busybox:1`);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

test("image references normalise like Docker's", () => {
  const cases: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["library/busybox:1.36", "docker.io/library/busybox:1.36"],
    ["index.docker.io/foo/bar", "docker.io/foo/bar:latest"],
    ["localhost/x", "localhost/x:latest"],
    ["127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"],
    ["[::1]:5000/a", "[::1]:5000/a:latest"],
    ["quay.io/a/b@sha256:" + "a".repeat(64), "quay.io/a/b@sha256:" + "a".repeat(64)],
    ["busybox:1@sha256:" + "b".repeat(64), "docker.io/library/busybox:1@sha256:" + "b".repeat(64)],
  ];
  for (const [i, o] of cases) assert.equal(formatReference(parseReference(i)), o, i);
  for (const bad of ["", "UPPER/case", "a:b:c", "x@sha256:123", "-a", "a/../b"]) {
    assert.throws(() => parseReference(bad), InvalidArgumentError, bad);
  }
});

test("challenges, credentials and platforms parse", () => {
  const c = parseChallenges(
    'Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push", Basic realm="x"',
  );
  assert.equal(c[0].scheme, "bearer");
  assert.deepEqual(c[0].params, {
    realm: "https://auth.example/token",
    service: "registry",
    scope: "repository:a/b:pull,push",
  });
  assert.equal(c[1].scheme, "basic");
  assert.deepEqual(basicCredentials({ auth: Buffer.from("u:p:w").toString("base64") }), {
    username: "u",
    password: "p:w",
  });
  assert.deepEqual(normalizeArch("x86_64"), { architecture: "amd64", variant: undefined });
  const d = (architecture: string, variant?: string) => ({
    mediaType: "m",
    digest: architecture + (variant ?? ""),
    size: 1,
    platform: { os: "linux", architecture, variant },
  });
  assert.equal(
    selectManifest([d("arm", "v6"), d("arm", "v7"), d("amd64")], { os: "linux", architecture: "arm", variant: "v7" })
      ?.digest,
    "armv7",
  );
  assert.equal(
    selectManifest([d("arm", "v6"), d("amd64")], { os: "linux", architecture: "arm", variant: "v7" })?.digest,
    "armv6",
  );
  assert.equal(selectManifest([d("arm64", "v8")], { os: "linux", architecture: "aarch64" })?.digest, "arm64v8");
});

test("hosts.toml: mirror tried first for pulls, server resolves, headers and ?ns= sent", async () => {
  const mirror = await startProxy(reg.host);
  const cfg = await mkdtemp(join(tmpdir(), "berth-certsd-"));
  try {
    await mkdir(join(cfg, "registry.invalid"));
    await writeFile(
      join(cfg, "registry.invalid", "hosts.toml"),
      `server = "http://${reg.host}"\n\n[host."http://${mirror.host}"]\n  capabilities = ["pull"]\n  [host."http://${mirror.host}".header]\n    x-berth-test = "yes"\n`,
    );
    const hosts = await registryHosts("registry.invalid", cfg);
    assert.deepEqual(
      hosts.map((h) => [h.scheme, h.host, h.path, [...h.capabilities].sort().join(",")]),
      [
        ["http", mirror.host, "/v2", "pull"],
        ["http", reg.host, "/v2", "pull,push,resolve"],
      ],
    );
    const svc = await newService(cfg);
    // The registry stores images per repository: "test/busybox" exists only under reg.host's namespace,
    // which both the server and the mirror serve.
    const img = await svc.pull("registry.invalid/test/busybox:1");
    assert.equal(img.id, imageId);
    const blobReqs = mirror.requests.filter((r) => r.path.includes("/blobs/"));
    assert.ok(blobReqs.length >= 2);
    for (const r of blobReqs) {
      assert.match(r.path, /\?ns=registry\.invalid$/);
      assert.equal(r.headers["x-berth-test"], "yes");
    }
    assert.equal(
      mirror.requests.filter((r) => r.path.includes("/manifests/1")).length,
      0,
      "tags are not resolved by a pull-only mirror",
    );
  } finally {
    await mirror.stop();
    await rm(cfg, { recursive: true, force: true });
  }
});

test("Bearer token auth: token fetched from the realm with Basic credentials", async () => {
  const front = await startProxy(reg.host, { bearer: { username: "bob", password: "pw" } });
  try {
    const svc = await newService();
    const ref = `${front.host}/test/busybox:1`;
    await assert.rejects(svc.pull(ref), UnauthenticatedError);
    await assert.rejects(svc.pull(ref, { username: "bob", password: "nope" }), /rejected the credentials/);
    const img = await svc.pull(ref, { username: "bob", password: "pw" });
    assert.equal(img.id, imageId);
    const tokenReqs = front.requests.filter((r) => r.path.startsWith("/token") && r.status === 200);
    assert.equal(tokenReqs.length, 1, "the token is cached for the rest of the pull");
    assert.match(tokenReqs[0].path, /service=berth-test/);
    assert.match(tokenReqs[0].path, /scope=repository%3Atest%2Fbusybox%3Apull/);
    // a registry token is used as is
    const svc2 = await newService();
    const token = "token-" + Buffer.from("bob").toString("hex");
    assert.equal((await svc2.pull(ref, { registryToken: token })).id, imageId);
  } finally {
    await front.stop();
  }
});

test("transient 503s are retried with backoff", async () => {
  const flaky = await startProxy(reg.host, { unavailable: { match: "/blobs/", times: 2 } });
  try {
    const svc = await newService();
    assert.equal((await svc.pull(`${flaky.host}/test/busybox:1`)).id, imageId);
    assert.equal(flaky.requests.filter((r) => r.status === 503).length, 2);
  } finally {
    await flaky.stop();
  }
});
