// The CRI server wrapper (src/cri/server.ts) in-process on a temp socket: every method of
// both services is registered, real handlers replace the UNIMPLEMENTED default by name,
// typed errors reach the caller with the right code and message, and shutdown drains calls.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  ContainerEventResponse,
  ImageServiceDefinition,
  RuntimeServiceDefinition,
  VersionResponse,
} from "../../src/gen/cri/runtime/v1/api.js";
import type { CriHandlers } from "../../src/cri/handlers.js";
import { createCriServer, listenUnix, shutdownServer } from "../../src/cri/server.js";
import { InvalidArgumentError, NotFoundError } from "../../src/util/errors.js";
import { silentLogger } from "../../src/util/log.js";
import { criClients } from "../helpers/daemon.js";

async function serve(t: TestContext, handlers: CriHandlers) {
  const dir = mkdtempSync(join(tmpdir(), "berth-crisrv-"));
  const socket = join(dir, "cri.sock");
  const server = createCriServer(handlers, {
    log: silentLogger(),
    maxRecvMessageSize: 1 << 24,
    maxSendMessageSize: 1 << 24,
  });
  await listenUnix(server, socket);
  const clients = criClients(socket);
  t.after(() => {
    clients.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, socket, ...clients };
}

/** Calls any method (unary or server-streaming) by its generic definition and returns the final status. */
function callAny(
  client: grpc.Client,
  name: string,
  def: { requestType: { fromPartial(o: object): unknown }; responseStream: boolean },
) {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[name].bind(client);
  const request = def.requestType.fromPartial({});
  const deadline = Date.now() + 10_000;
  return new Promise<{ code: number; details: string }>((resolve) => {
    if (!def.responseStream) {
      fn(request, new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "" }),
      );
      return;
    }
    const stream = fn(request, new grpc.Metadata(), { deadline }) as grpc.ClientReadableStream<unknown>;
    stream.on("data", () => {});
    stream.on("error", (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    stream.on("end", () => resolve({ code: 0, details: "" }));
  });
}

test("every method of both CRI services answers UNIMPLEMENTED naming itself when no handler is given", async (t) => {
  const s = await serve(t, { runtime: {}, image: {} });
  const services = [
    { client: s.runtime, definition: RuntimeServiceDefinition },
    { client: s.image, definition: ImageServiceDefinition },
  ];
  let count = 0;
  for (const { client, definition } of services) {
    for (const [name, def] of Object.entries(definition.methods)) {
      const got = await callAny(client, name, def);
      const method = `${definition.fullName}/${def.name}`;
      assert.deepEqual(got, { code: grpc.status.UNIMPLEMENTED, details: `${method} is not implemented yet` }, method);
      count++;
    }
  }
  assert.ok(count > 30, `only ${count} methods checked`);
});

test("a handler replaces the default by name; typed errors keep their code and message", async (t) => {
  const s = await serve(t, {
    runtime: {
      async version(req) {
        if (req.version === "bad") throw new InvalidArgumentError('version "bad" is not a CRI version');
        return VersionResponse.fromPartial({ runtimeName: "test", version: req.version });
      },
      async containerStatus(req) {
        throw new NotFoundError(`container "${req.containerId}" not found`);
      },
      async podSandboxStatus() {
        throw new TypeError("cannot read properties of undefined");
      },
    },
    image: {},
  });
  assert.equal((await s.rt.version({ version: "v1" })).runtimeName, "test");
  await assert.rejects(s.rt.version({ version: "bad" }), {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'version "bad" is not a CRI version',
  });
  await assert.rejects(s.rt.containerStatus({ containerId: "abc" }), {
    code: grpc.status.NOT_FOUND,
    details: 'container "abc" not found',
  });
  // An untyped error is a berth bug: UNKNOWN, with the method named so the report is useful.
  await assert.rejects(s.rt.podSandboxStatus({}), {
    code: grpc.status.UNKNOWN,
    details: "runtime.v1.RuntimeService/PodSandboxStatus: unexpected error: cannot read properties of undefined",
  });
  await assert.rejects(s.rt.stopContainer({}), { code: grpc.status.UNIMPLEMENTED });
});

test("a handler under a name the service does not have is refused at startup", () => {
  const handlers = { runtime: { runPodSandboxx: async () => ({}) }, image: {} } as unknown as CriHandlers;
  assert.throws(
    () => createCriServer(handlers, { log: silentLogger(), maxRecvMessageSize: 1 << 20, maxSendMessageSize: 1 << 20 }),
    /CRI handler "runPodSandboxx" matches no method/,
  );
});

test("server-streaming handlers send messages and end, or fail with a mapped status", async (t) => {
  let fail = false;
  const s = await serve(t, {
    runtime: {
      async getContainerEvents(_req, ctx) {
        await ctx.send(ContainerEventResponse.fromPartial({ containerId: "a" }));
        await ctx.send(ContainerEventResponse.fromPartial({ containerId: "b" }));
        if (fail) throw new NotFoundError("no more events");
      },
    },
    image: {},
  });
  const read = () =>
    new Promise<{ ids: string[]; err?: grpc.ServiceError }>((resolve) => {
      const ids: string[] = [];
      const stream = s.runtime.getContainerEvents({});
      stream.on("data", (m: ContainerEventResponse) => ids.push(m.containerId));
      stream.on("error", (err: grpc.ServiceError) => resolve({ ids, err }));
      stream.on("end", () => resolve({ ids }));
    });
  assert.deepEqual(await read(), { ids: ["a", "b"] });
  fail = true;
  const r = await read();
  assert.deepEqual(r.ids, ["a", "b"]);
  assert.equal(r.err?.code, grpc.status.NOT_FOUND);
  assert.equal(r.err?.details, "no more events");
});

test("shutdown lets an in-flight call finish, and cuts it off after the grace period", async (t) => {
  let release!: () => void;
  let started!: () => void;
  const s = await serve(t, {
    runtime: {
      version: () =>
        new Promise((resolve) => {
          started();
          release = () => resolve(VersionResponse.fromPartial({ runtimeName: "slow" }));
        }),
    },
    image: {},
  });
  const isStarted = new Promise<void>((r) => (started = r));
  const inFlight = s.rt.version({});
  await isStarted;
  const shutdown = shutdownServer(s.server, 10_000);
  setTimeout(() => release(), 200);
  assert.equal((await inFlight).runtimeName, "slow");
  assert.equal(await shutdown, "graceful");

  // A second server whose call never finishes is forced down after the grace period.
  const s2 = await serve(t, { runtime: { version: () => new Promise(() => {}) }, image: {} });
  const stuck = s2.rt.version({});
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await shutdownServer(s2.server, 200), "forced");
  await assert.rejects(stuck);
});
