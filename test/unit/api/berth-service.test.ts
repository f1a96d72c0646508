// berth.v1.Berth through the shared gRPC wrapper (cri/server.ts implementService) with fake
// images and archives: unary, server-streaming and client-streaming calls, errors mapped to
// their codes, and a method whose backend is missing answering UNIMPLEMENTED.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { berthService, type BerthArchives } from "../../../src/api/berth-service.js";
import {
  ArchiveChunk,
  BerthClient,
  ImportImageRequest,
  ListTracesRequest,
  type LoadImagesResponse,
  type PullImageProgress,
} from "../../../src/gen/berth/v1/berth.js";
import { listenUnix, shutdownServer } from "../../../src/cri/server.js";
import { InvalidArgumentError } from "../../../src/util/errors.js";
import { silentLogger } from "../../../src/util/log.js";

async function readAll(source: Readable): Promise<string> {
  let out = "";
  for await (const c of source) out += String(c);
  return out;
}

const archives: BerthArchives = {
  async load(source) {
    const text = await readAll(source);
    if (text === "bad") throw new InvalidArgumentError("not an image archive");
    return [`loaded:${text}`];
  },
  async save(images, format, out) {
    out.end(`${format}:${images.join(",")}`);
  },
  async importRootfs(source, opts) {
    return { id: `sha256:${await readAll(source)}`, ref: `${opts.reference}|${opts.changes.join(",")}` };
  },
};

describe("berth.v1.Berth on the shared wrapper", () => {
  let dir: string;
  let server: grpc.Server;
  let client: BerthClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "berth-api-"));
    server = new grpc.Server();
    const svc = berthService({
      log: silentLogger(),
      summary: () => ({ version: "test" }) as never,
      archives,
      images: {
        pull: async (ref) => {
          if (ref === "missing") throw new InvalidArgumentError("no such image");
          return { id: "sha256:abc", repoTags: [ref], repoDigests: [] } as never;
        },
        list: async () => [],
        fsUsage: async () => ({
          content: { path: "/c", size: 1, inodes: 2 },
          snapshots: { path: "/s", size: 3, inodes: 4 },
        }),
      },
    });
    server.addService(svc.definition, svc.implementation);
    await listenUnix(server, join(dir, "s.sock"));
    client = new BerthClient(`unix://${join(dir, "s.sock")}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await shutdownServer(server, 1000);
    rmSync(dir, { recursive: true, force: true });
  });

  test("client streaming: LoadImages reads every chunk in order", async () => {
    const res = await new Promise<LoadImagesResponse>((resolve, reject) => {
      const call = client.loadImages((err, r) => (err ? reject(err) : resolve(r)));
      for (const part of ["a", "b", "c"]) call.write(ArchiveChunk.fromPartial({ data: Buffer.from(part) }));
      call.end();
    });
    assert.deepEqual(res.images, ["loaded:abc"]);
  });

  test("client streaming: ImportImage takes its reference and changes from the first message", async () => {
    const res = await new Promise<{ imageId: string; imageRef: string }>((resolve, reject) => {
      const call = client.importImage((err, r) => (err ? reject(err) : resolve(r)));
      call.write(ImportImageRequest.fromPartial({ reference: "x:1", changes: ["CMD sh"], data: Buffer.from("12") }));
      call.write(ImportImageRequest.fromPartial({ data: Buffer.from("34") }));
      call.end();
    });
    assert.deepEqual({ ...res }, { imageId: "sha256:1234", imageRef: "x:1|CMD sh" });
  });

  test("a typed error in a client-streaming handler becomes its gRPC code", async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.loadImages((e) => resolve(e!));
      call.write(ArchiveChunk.fromPartial({ data: Buffer.from("bad") }));
      call.end();
    });
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /not an image archive/);
  });

  test("server streaming: PullImage ends with a done event; SaveImages streams the archive", async () => {
    const events: PullImageProgress[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = client.pullImage({ image: "busybox", platform: "", username: "", password: "", auth: "" });
      s.on("data", (e: PullImageProgress) => events.push(e));
      s.on("end", resolve);
      s.on("error", reject);
    });
    assert.equal(events.at(-1)?.status, "done");
    assert.equal(events.at(-1)?.imageId, "sha256:abc");

    let bytes = "";
    await new Promise<void>((resolve, reject) => {
      const s = client.saveImages({ images: ["a", "b"], format: "oci" });
      s.on("data", (c: ArchiveChunk) => (bytes += c.data.toString()));
      s.on("end", resolve);
      s.on("error", reject);
    });
    assert.equal(bytes, "oci:a,b");
  });

  test("unary Info, and bad input to a server-streaming call is INVALID_ARGUMENT", async () => {
    const info = await new Promise<{ images: bigint }>((resolve, reject) =>
      client.info({}, (err, r) => (err ? reject(err) : resolve(r))),
    );
    assert.equal(info.images, 0n);
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const s = client.saveImages({ images: [], format: "" });
      s.on("data", () => {});
      s.on("error", resolve);
    });
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  });

  test("a method nobody implemented answers UNIMPLEMENTED naming itself", async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.listTraces(ListTracesRequest.fromPartial({}), (e) => resolve(e!)),
    );
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /ListTraces/);
  });
});
