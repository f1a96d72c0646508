// Registry hosts configured the containerd way (registry.config_path/<host>/hosts.toml):
// docker-registry served over HTTPS with a throwaway CA (`ca`, `skip_verify`), one that
// demands a client certificate (`client`), a mirror (`[host."http://..."]` with
// capabilities and a `header`), and a blob redirect to another host that must not get the
// registry's Authorization header.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { BerthError } from "../../src/util/errors.js";
import { makeTestPki, startProxy, startRegistry, type TestPki, type TestRegistry } from "../helpers/registry.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";

let work: string;
let pki: TestPki;
let tlsReg: TestRegistry;
let mtlsReg: TestRegistry;
let reg: TestRegistry;
let imageId = "";
const cleanups: (() => Promise<void>)[] = [];

/** An image service whose registry.config_path holds `hosts` (namespace -> hosts.toml text, plus files to copy). */
async function serviceWith(
  hosts: Record<string, { toml: string; files?: Record<string, string> }>,
): Promise<ImageService> {
  const root = await mkdtemp(join(tmpdir(), "berth-hosts-"));
  const certsd = join(root, "certs.d");
  for (const [ns, h] of Object.entries(hosts)) {
    await mkdir(join(certsd, ns), { recursive: true });
    await writeFile(join(certsd, ns, "hosts.toml"), h.toml);
    for (const [name, from] of Object.entries(h.files ?? {})) await copyFile(from, join(certsd, ns, name));
  }
  const db = openDatabase(join(root, "meta.db"));
  const svc = await ImageService.create({
    root,
    db,
    snapshotter: "native",
    registry: { configPath: certsd, retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 } },
  });
  cleanups.push(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return svc;
}

async function pullError(svc: ImageService, ref: string): Promise<BerthError> {
  const err = await svc.pull(ref).then(
    () => assert.fail(`pull of ${ref} should fail`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BerthError, `expected a typed error, got ${String(err)}`);
  return err;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-hosts-src-"));
  await mkdir(join(work, "pki"));
  pki = await makeTestPki(join(work, "pki"));
  tlsReg = await startRegistry({ tls: { certificate: pki.serverCert, key: pki.serverKey } });
  mtlsReg = await startRegistry({ tls: { certificate: pki.serverCert, key: pki.serverKey, clientCAs: [pki.ca] } });
  reg = await startRegistry();
  const layer = await makeLayer([{ name: "hello.txt", content: "hello over the wire\n" }]);
  const image = buildImage([layer]);
  imageId = image.config.digest;
  const layout = join(work, "layout");
  await writeOciLayout(layout, [{ tag: "tiny", image }]);
  // skopeo's cert dir: client.cert + client.key is its client certificate.
  const skopeoCerts = join(work, "skopeo-certs");
  await mkdir(skopeoCerts);
  await copyFile(pki.clientCert, join(skopeoCerts, "client.cert"));
  await copyFile(pki.clientKey, join(skopeoCerts, "client.key"));
  await pushLayout(layout, "tiny", `${tlsReg.host}/test/tiny:1`);
  await pushLayout(layout, "tiny", `${mtlsReg.host}/test/tiny:1`, { certDir: skopeoCerts });
  await pushLayout(layout, "tiny", `${reg.host}/test/tiny:1`);
  await pushLayout(layout, "tiny", `${reg.host}/test/tiny:2`);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await Promise.all([tlsReg?.stop(), mtlsReg?.stop(), reg?.stop()]);
  await rm(work, { recursive: true, force: true });
});

test("HTTPS registry with a private CA: `ca` in hosts.toml pulls; no CA or the wrong one is Unavailable naming hosts.toml", async () => {
  const server = `server = "https://${tlsReg.host}"\n`;
  const good = await serviceWith({ [tlsReg.host]: { toml: `${server}ca = "ca.crt"\n`, files: { "ca.crt": pki.ca } } });
  assert.equal((await good.pull(`${tlsReg.host}/test/tiny:1`)).id, imageId);

  const none = await serviceWith({ [tlsReg.host]: { toml: server } });
  const e1 = await pullError(none, `${tlsReg.host}/test/tiny:1`);
  assert.equal(e1.kind, "Unavailable");
  assert.match(e1.message, /TLS with registry .* failed.*hosts\.toml/s);

  // An absolute CA path that is not the signer.
  const wrong = await serviceWith({ [tlsReg.host]: { toml: `${server}ca = "${pki.otherCa}"\n` } });
  assert.equal((await pullError(wrong, `${tlsReg.host}/test/tiny:1`)).kind, "Unavailable");
});

test("skip_verify = true pulls from an HTTPS registry whose CA is unknown", async () => {
  const svc = await serviceWith({ [tlsReg.host]: { toml: `server = "https://${tlsReg.host}"\nskip_verify = true\n` } });
  assert.equal((await svc.pull(`${tlsReg.host}/test/tiny:1`)).id, imageId);
});

test("a registry demanding a client certificate: `client` pairs in hosts.toml pull; without one it is refused", async () => {
  const server = `server = "https://${mtlsReg.host}"\nca = "ca.crt"\n`;
  const files = { "ca.crt": pki.ca, "client.crt": pki.clientCert, "client.key": pki.clientKey };
  const good = await serviceWith({
    [mtlsReg.host]: { toml: `${server}client = [["client.crt", "client.key"]]\n`, files },
  });
  assert.equal((await good.pull(`${mtlsReg.host}/test/tiny:1`)).id, imageId);

  const without = await serviceWith({ [mtlsReg.host]: { toml: server, files } });
  assert.equal((await pullError(without, `${mtlsReg.host}/test/tiny:1`)).kind, "Unavailable");
});

test("a mirror with pull+resolve serves the pull (with ?ns= and its header); when it is down the upstream does", async (t) => {
  const upstream = await startProxy(reg.host);
  const mirror = await startProxy(reg.host);
  t.after(() => Promise.all([upstream.stop(), mirror.stop()]));
  const svc = await serviceWith({
    [upstream.host]: {
      toml: [
        `server = "http://${upstream.host}"`,
        `[host."http://${mirror.host}"]`,
        `  capabilities = ["pull", "resolve"]`,
        `  [host."http://${mirror.host}".header]`,
        `    X-Berth-Mirror = "yes"`,
        ``,
      ].join("\n"),
    },
  });
  assert.equal((await svc.pull(`${upstream.host}/test/tiny:1`)).id, imageId);
  assert.equal(upstream.requests.length, 0, "the upstream must not be asked while the mirror answers");
  const gets = mirror.requests.filter((r) => r.method === "GET");
  assert.ok(gets.length >= 3, "manifest, config and layer come from the mirror");
  for (const r of gets) {
    assert.ok(r.path.includes(`ns=${encodeURIComponent(upstream.host)}`), `no ?ns= on ${r.path}`);
    assert.equal(r.headers["x-berth-mirror"], "yes");
  }

  await mirror.stop();
  assert.equal((await svc.pull(`${upstream.host}/test/tiny:2`)).id, imageId);
  assert.ok(
    upstream.requests.some((r) => r.path.includes("/manifests/2")),
    "the upstream resolves once the mirror is gone",
  );
});

test("a blob redirected to another host is fetched without the registry's Authorization header", async (t) => {
  const blobs = await startProxy(reg.host);
  const front = await startProxy(reg.host, {
    bearer: { username: "alice", password: "pw" },
    redirect: { match: "/blobs/", to: blobs.host },
  });
  t.after(() => Promise.all([front.stop(), blobs.stop()]));
  const svc = await serviceWith({});
  const img = await svc.pull(`${front.host}/test/tiny:1`, { username: "alice", password: "pw" });
  assert.equal(img.id, imageId);
  const redirected = front.requests.filter((r) => r.status === 307);
  assert.ok(redirected.length >= 2, "config and layer were redirected");
  for (const r of redirected) assert.match(String(r.headers.authorization), /^Bearer /);
  assert.ok(blobs.requests.length >= 2, "the blob host served the redirected blobs");
  for (const r of blobs.requests) assert.equal(r.headers.authorization, undefined, `Authorization leaked to ${r.path}`);
});
