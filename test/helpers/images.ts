// Test images built offline: layers packed with tar-stream (+ gzip/zstd), written as an OCI
// image layout, pushed to a test registry with skopeo. The base rootfs is Debian's static
// busybox plus a passwd/group with a user.
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";

const run = promisify(execFile);

export interface EntrySpec {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "character-device" | "block-device" | "fifo";
  content?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  mtime?: Date;
  pax?: Record<string, string>;
  /** xattrs written as raw SCHILY.xattr.* PAX records (binary values kept, as Go and GNU tar write them) */
  xattrs?: Record<string, Buffer>;
}

export const sha256 = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** A PAX extended header ('x') block and its padded body carrying `records` byte for byte. */
export function paxHeader(records: [string, Buffer][]): Buffer {
  const body = Buffer.concat(
    records.map(([k, v]) => {
      const rest = Buffer.concat([Buffer.from(` ${k}=`), v, Buffer.from("\n")]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
  const h = Buffer.alloc(512);
  h.write("PaxHeaders/entry", 0, "utf8");
  h.write("0000644\0", 100, "latin1");
  h.write("0000000\0", 108, "latin1");
  h.write("0000000\0", 116, "latin1");
  h.write(body.length.toString(8).padStart(11, "0") + "\0", 124, "latin1");
  h.write("00000000000\0", 136, "latin1");
  h.write("        ", 148, "latin1");
  h.write("x", 156, "latin1");
  h.write("ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad]);
}

/** An uncompressed tar of `entries`, in order. */
export async function tarOf(entries: EntrySpec[]): Promise<Buffer> {
  if (entries.some((e) => e.xattrs)) {
    // tar-stream writes PAX values as text; entries with binary xattrs get a raw PAX header
    // in front of their own one-entry tar (each without the 1024-byte end-of-archive mark).
    const parts: Buffer[] = [];
    for (const e of entries) {
      const one = await tarOf([{ ...e, xattrs: undefined }]);
      if (e.xattrs) parts.push(paxHeader(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v])));
      parts.push(one.subarray(0, one.length - 1024));
    }
    parts.push(Buffer.alloc(1024));
    return Buffer.concat(parts);
  }
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? "file";
    const body = type === "file" ? Buffer.from(e.content ?? "") : undefined;
    await new Promise<void>((resolve, reject) => {
      const header = {
        name: e.name,
        type,
        mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        mtime: e.mtime ?? new Date(1_700_000_000_000),
        linkname: e.linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
        pax: e.pax,
        size: body?.length ?? 0,
      };
      if (body) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve())).end(undefined);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface Layer {
  blob: Buffer;
  digest: string;
  size: number;
  diffId: string;
  mediaType: string;
}

export async function makeLayer(
  entries: EntrySpec[] | Buffer,
  compression: "gzip" | "zstd" | "none" = "gzip",
): Promise<Layer> {
  const raw = Buffer.isBuffer(entries) ? entries : await tarOf(entries);
  let blob = raw;
  let mediaType = "application/vnd.oci.image.layer.v1.tar";
  if (compression === "gzip") {
    blob = gzipSync(raw, { level: 6 });
    mediaType += "+gzip";
  } else if (compression === "zstd") {
    const r = spawnSync("zstd", ["-q", "-c", "-3"], { input: raw, maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
    blob = r.stdout;
    mediaType += "+zstd";
  }
  return { blob, digest: sha256(blob), size: blob.length, diffId: sha256(raw), mediaType };
}

export async function busyboxEntries(): Promise<EntrySpec[]> {
  const busybox = await readFile("/bin/busybox");
  const applets = ["sh", "ls", "cat", "echo", "sleep", "id", "true", "false", "env", "touch", "mkdir", "rm", "stat"];
  return [
    { name: "bin/", type: "directory" },
    { name: "bin/busybox", content: busybox, mode: 0o755 },
    ...applets.map((a) => ({ name: `bin/${a}`, type: "symlink" as const, linkname: "busybox" })),
    { name: "etc/", type: "directory" },
    { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\n" },
    { name: "etc/group", content: "root:x:0:\nberth:x:1000:\n" },
    { name: "tmp/", type: "directory", mode: 0o1777 },
    { name: "home/berth/", type: "directory", uid: 1000, gid: 1000, mode: 0o750 },
  ];
}

export interface BuiltImage {
  manifest: {
    digest: string;
    size: number;
    mediaType: string;
    platform: { os: string; architecture: string; variant?: string };
  };
  config: { digest: string; size: number };
  blobs: Map<string, Buffer>;
}

export function buildImage(
  layers: Layer[],
  opts: { architecture?: string; variant?: string; config?: Record<string, unknown> } = {},
): BuiltImage {
  const blobs = new Map<string, Buffer>();
  const platform = {
    os: "linux",
    architecture: opts.architecture ?? "amd64",
    ...(opts.variant ? { variant: opts.variant } : {}),
  };
  const config = Buffer.from(
    JSON.stringify({
      created: "2024-01-01T00:00:00Z",
      ...platform,
      config: opts.config ?? { Env: ["PATH=/bin"], Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created: "2024-01-01T00:00:00Z", created_by: "berth test" })),
    }),
  );
  blobs.set(sha256(config), config);
  for (const l of layers) blobs.set(l.digest, l.blob);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  blobs.set(sha256(manifest), manifest);
  return {
    manifest: {
      digest: sha256(manifest),
      size: manifest.length,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      platform,
    },
    config: { digest: sha256(config), size: config.length },
    blobs,
  };
}

export interface BuiltIndex {
  index: { digest: string; size: number; mediaType: string };
  blobs: Map<string, Buffer>;
}

export function buildIndex(images: BuiltImage[]): BuiltIndex {
  const blobs = new Map<string, Buffer>();
  for (const i of images) for (const [k, v] of i.blobs) blobs.set(k, v);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: images.map((i) => ({
        mediaType: i.manifest.mediaType,
        digest: i.manifest.digest,
        size: i.manifest.size,
        platform: i.manifest.platform,
      })),
    }),
  );
  blobs.set(sha256(index), index);
  return {
    index: { digest: sha256(index), size: index.length, mediaType: "application/vnd.oci.image.index.v1+json" },
    blobs,
  };
}

/** Writes an OCI image layout at `dir` with each entry tagged (org.opencontainers.image.ref.name). */
export async function writeOciLayout(
  dir: string,
  entries: { tag: string; image: BuiltImage | BuiltIndex }[],
): Promise<void> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const manifests = [];
  for (const { tag, image } of entries) {
    for (const [d, b] of image.blobs) await writeFile(join(dir, "blobs", "sha256", d.slice(7)), b);
    const desc =
      "index" in image
        ? image.index
        : { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size };
    manifests.push({ ...desc, annotations: { "org.opencontainers.image.ref.name": tag } });
  }
  await writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
}

/** skopeo copy oci:<dir>:<tag> docker://<dest> (plain HTTP, or HTTPS without verification). */
export async function pushLayout(
  dir: string,
  tag: string,
  dest: string,
  opts: { format?: "v2s2" | "oci"; all?: boolean; creds?: string; certDir?: string } = {},
): Promise<void> {
  const args = ["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"];
  // Docker's cert dir layout: <name>.cert + <name>.key is a client certificate, *.crt a CA.
  if (opts.certDir) args.push("--dest-cert-dir", opts.certDir);
  if (opts.format) args.push("--format", opts.format);
  if (opts.all) args.push("--all");
  if (opts.creds) args.push("--dest-creds", opts.creds);
  args.push(`oci:${dir}:${tag}`, `docker://${dest}`);
  await run("skopeo", args, { maxBuffer: 16 << 20 });
}
