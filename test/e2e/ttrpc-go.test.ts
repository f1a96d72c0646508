// Wire compatibility with Go's ttrpc through containerd's own containerd-shim-runc-v2.
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { NotFoundError, UnavailableError, UnimplementedError } from "../../src/util/errors.js";
import { TtrpcClient, TtrpcServer } from "../../src/ttrpc/index.js";
import {
  ShimHarness,
  TASK,
  fieldString,
  haveRunc,
  rawCodec,
  readField,
  shimBinary,
  waitFor,
} from "../helpers/ttrpc-shim.js";

// Wire compatibility with Go's ttrpc: containerd's runc shim (containerd 1.6) is a Go ttrpc
// server (its Task service) and a Go ttrpc client (it forwards events to TTRPC_ADDRESS).
describe(
  "ttrpc against containerd-shim-runc-v2 (Go ttrpc)",
  { skip: shimBinary === undefined ? "containerd-shim-runc-v2 not installed" : false },
  () => {
    test(
      "our client: Connect, State, unknown method and Shutdown against a Go ttrpc server",
      { timeout: 60_000 },
      async () => {
        const shim = await ShimHarness.create(false);
        let conn: TtrpcClient | undefined;
        try {
          conn = await TtrpcClient.connect(shim.start());
          const closed = new Promise<Error | undefined>((r) => conn!.once("close", r));
          const md = { "containerd-namespace-ttrpc": shim.ns };

          // Connect {id=1}: answers ConnectResponse {shim_pid=1, task_pid=2}.
          const connectResp = await conn.call(TASK, "Connect", fieldString(1, "nope"), {
            metadata: md,
            timeoutMs: 10_000,
          });
          shim.shimPid = Number(readField(connectResp, 1));
          assert.ok(shim.shimPid > 0);
          assert.match(readFileSync(`/proc/${shim.shimPid}/cmdline`, "utf8"), /containerd-shim-runc-v2/);

          // State {id=1} for a task that does not exist: Go maps errdefs.ErrNotFound to NotFound.
          await assert.rejects(
            conn.call(TASK, "State", fieldString(1, "nope"), { metadata: md, timeoutMs: 10_000 }),
            (err: Error) => {
              assert.ok(err instanceof NotFoundError, `got ${err.name}: ${err.message}`);
              return true;
            },
          );
          // Many at once, multiplexed on one connection with a Go peer.
          const many = await Promise.allSettled(
            Array.from({ length: 200 }, () => conn!.call(TASK, "State", fieldString(1, "nope"), { metadata: md })),
          );
          assert.ok(many.every((r) => r.status === "rejected" && r.reason instanceof NotFoundError));
          // Go ttrpc's own Unimplemented answers.
          await assert.rejects(conn.call(TASK, "NoSuchMethod", new Uint8Array(), { metadata: md }), UnimplementedError);
          await assert.rejects(
            conn.call("no.such.Service", "X", new Uint8Array(), { metadata: md }),
            UnimplementedError,
          );

          // Shutdown {id=1, now=2}: the shim has no tasks, so it exits and the connection closes.
          const shutdown = Buffer.concat([fieldString(1, "nope"), Buffer.from([0x10, 0x01])]);
          await conn.call(TASK, "Shutdown", shutdown, { metadata: md }).catch((err: Error) => {
            // The shim may exit before its answer is flushed; then the call fails as the connection drops.
            assert.ok(err instanceof UnavailableError, `unexpected ${err.name}: ${err.message}`);
          });
          assert.ok((await closed) instanceof UnavailableError);
          assert.equal(conn.closed, true);
        } catch (err) {
          (err as Error).message += `\nshim log:\n${shim.log}`;
          throw err;
        } finally {
          conn?.close();
          await shim.cleanup();
        }
      },
    );

    test(
      "our server: the shim's Go ttrpc client forwards task events to it",
      { timeout: 60_000, skip: haveRunc ? false : "runc or busybox missing" },
      async () => {
        const shim = await ShimHarness.create(true);
        const events = new TtrpcServer();
        const received: { topic: string; namespace: string; metadataNs: string[] | undefined }[] = [];
        events.register(
          {
            name: "Events",
            fullName: "containerd.services.events.ttrpc.v1.Events",
            methods: {
              forward: {
                name: "Forward",
                requestType: rawCodec,
                requestStream: false,
                responseType: rawCodec,
                responseStream: false,
              },
            },
          },
          {
            // ForwardRequest {envelope=1: Envelope {timestamp=1, namespace=2, topic=3, event=4}}.
            forward(req, ctx) {
              const envelope = readField(req, 1) as Buffer;
              received.push({
                topic: (readField(envelope, 3) as Buffer).toString(),
                namespace: (readField(envelope, 2) as Buffer).toString(),
                metadataNs: ctx.metadata.get("containerd-namespace-ttrpc"),
              });
              return Buffer.alloc(0);
            },
          },
        );
        await events.listen(shim.ttrpcAddress);
        let conn: TtrpcClient | undefined;
        try {
          conn = await TtrpcClient.connect(shim.start());
          const md = { metadata: { "containerd-namespace-ttrpc": shim.ns }, timeoutMs: 20_000 };
          shim.shimPid = Number(readField(await conn.call(TASK, "Connect", fieldString(1, shim.id), md), 1));
          // Create {id=1, bundle=2} with no rootfs mounts: runc creates the container from bundle/rootfs.
          const created = await conn.call(
            TASK,
            "Create",
            Buffer.concat([fieldString(1, shim.id), fieldString(2, shim.bundle)]),
            md,
          );
          assert.ok(Number(readField(created, 1)) > 0, "Create returns the init pid");
          await conn.call(TASK, "Delete", fieldString(1, shim.id), md);
          await waitFor(() => received.some((e) => e.topic === "/tasks/delete"), 10_000);
          const topics = received.map((e) => e.topic);
          assert.equal(topics[0], "/tasks/create");
          assert.equal(topics.at(-1), "/tasks/delete");
          for (const e of received) {
            assert.equal(e.namespace, shim.ns);
            assert.deepEqual(e.metadataNs, [shim.ns]);
          }
          await conn.call(TASK, "Shutdown", fieldString(1, shim.id), md).catch((err: Error) => {
            assert.ok(err instanceof UnavailableError, `unexpected ${err.name}: ${err.message}`);
          });
        } catch (err) {
          (err as Error).message += `\nshim log:\n${shim.log}`;
          throw err;
        } finally {
          conn?.close();
          await shim.cleanup();
          await events.close({ timeoutMs: 1000 });
        }
      },
    );
  },
);
