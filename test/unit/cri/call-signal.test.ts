// The CRI server wrapper's per-call AbortSignal (src/cri/server.ts callContext) is made only
// when a handler asks for it, and still reports the client's cancellation: asked for before,
// it aborts when the client cancels; asked for after, it is aborted already, with the same
// reason. Served by a real grpc-js server on a unix socket, called by a grpc-js client.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  RuntimeServiceClient,
  RuntimeServiceService,
  StatusResponse,
  VersionResponse,
} from "../../../src/gen/cri/runtime/v1/api.js";
import { implementService, listenUnix } from "../../../src/cri/server.js";
import { silentLogger } from "../../../src/util/log.js";

type Ctx = { signal: AbortSignal; call: grpc.ServerUnaryCall<unknown, unknown> };

const seen: { listenersBefore?: number; listenersAfter?: number; reason?: unknown; abortedWhenAsked?: boolean } = {};
let handlerStarted: () => void = () => {};
let handlerDone: () => void = () => {};
let dir = "";
let server: grpc.Server;
let client: RuntimeServiceClient;

/** Resolves once the call is cancelled (listening on the call itself, not through the signal). */
const cancelled = (call: grpc.ServerUnaryCall<unknown, unknown>) =>
  new Promise<void>((resolve) => (call.cancelled ? resolve() : call.once("cancelled", () => resolve())));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-signal-"));
  server = new grpc.Server();
  const handlers = {
    // Never asks for the signal.
    async version(_req: unknown, ctx: Ctx) {
      seen.listenersBefore = ctx.call.listenerCount("cancelled");
      return VersionResponse.fromPartial({ version: "0.1.0" });
    },
    // Asks only after the client cancelled.
    async status(_req: unknown, ctx: Ctx) {
      seen.listenersBefore = ctx.call.listenerCount("cancelled");
      handlerStarted();
      await cancelled(ctx.call);
      seen.abortedWhenAsked = ctx.signal.aborted;
      seen.reason = ctx.signal.reason;
      handlerDone();
      return StatusResponse.fromPartial({});
    },
    // Asks at once, then waits for the abort.
    async runtimeConfig(_req: unknown, ctx: Ctx) {
      const signal = ctx.signal;
      seen.listenersAfter = ctx.call.listenerCount("cancelled");
      seen.abortedWhenAsked = signal.aborted;
      handlerStarted();
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
      seen.reason = signal.reason;
      handlerDone();
      return {};
    },
  };
  server.addService(RuntimeServiceService, implementService(RuntimeServiceService, handlers, { log: silentLogger() }));
  await listenUnix(server, join(dir, "s.sock"));
  client = new RuntimeServiceClient(`unix://${join(dir, "s.sock")}`, grpc.credentials.createInsecure());
});

after(() => {
  client?.close();
  server?.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts a call, cancels it once its handler runs, and resolves with the client's error once
 * the handler has finished too (the client hears CANCELLED before the server does).
 */
async function cancelOnceStarted(start: (cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall) {
  const done = new Promise<void>((resolve) => (handlerDone = resolve));
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = start((e) => resolve(e));
    handlerStarted = () => call.cancel();
  });
  await done;
  return err;
}

test("a handler that never asks for the signal gets no AbortController or cancel listener", async () => {
  const res = await new Promise<VersionResponse>((resolve, reject) =>
    client.version({ version: "v1" }, (err, r) => (err ? reject(err) : resolve(r))),
  );
  assert.equal(res.version, "0.1.0");
  assert.equal(seen.listenersBefore, 0);
});

test("a signal asked for before the client cancels aborts with the cancellation", async () => {
  const err = await cancelOnceStarted((cb) => client.runtimeConfig({}, cb));
  assert.equal(err?.code, grpc.status.CANCELLED);
  assert.equal(seen.listenersAfter, 1);
  assert.equal(seen.abortedWhenAsked, false);
  assert.equal((seen.reason as Error).message, "call cancelled by the client");
});

test("a signal asked for after the client cancelled is aborted already, with the same reason", async () => {
  const err = await cancelOnceStarted((cb) => client.status({ verbose: false }, cb));
  assert.equal(err?.code, grpc.status.CANCELLED);
  assert.equal(seen.listenersBefore, 0);
  assert.equal(seen.abortedWhenAsked, true);
  assert.equal((seen.reason as Error).message, "call cancelled by the client");
});
