// ttrpc call lifetimes: a dying server, deadlines, cancellation, streaming calls and graceful close.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CanceledError, DeadlineExceededError, UnavailableError } from "../../src/util/errors.js";
import { TtrpcClient, TtrpcServer, createClient } from "../../src/ttrpc/index.js";
import { TestDefinition, dir, withServer, useSocketDir } from "../helpers/ttrpc-fixtures.js";

useSocketDir();

describe("ttrpc", () => {
  test(
    "when the server process dies mid-call, pending and later calls fail with Unavailable",
    { timeout: 60_000 },
    async () => {
      const path = join(dir, "dying.sock");
      const ttrpcIndex = new URL("../../src/ttrpc/index.js", import.meta.url).href;
      // A real separate server process whose handler never answers.
      const script = `
      import { TtrpcServer } from ${JSON.stringify(ttrpcIndex)};
      const server = new TtrpcServer();
      server.register({ name: "Hang", fullName: "berth.test.v1.Hang", methods: { hang: {
        name: "Hang", requestStream: false, responseStream: false,
        requestType: { encode: () => ({ finish: () => new Uint8Array() }), decode: () => ({}) },
        responseType: { encode: () => ({ finish: () => new Uint8Array() }), decode: () => ({}) } } } },
        { hang: () => new Promise(() => {}) });
      await server.listen(${JSON.stringify(path)});
      process.stdout.write("ready\\n");
      setInterval(() => {}, 1000);
    `;
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout!.once("data", () => resolve());
          child.once("exit", (code) => reject(new Error(`server child exited ${code}`)));
        });
        const conn = await TtrpcClient.connect(path);
        const closed = new Promise<Error | undefined>((r) => conn.once("close", r));
        const calls = Array.from({ length: 5 }, () => conn.call("berth.test.v1.Hang", "Hang", new Uint8Array()));
        // Let the requests reach the server before killing it.
        await new Promise((r) => setTimeout(r, 100));
        child.kill("SIGKILL");
        for (const c of calls) await assert.rejects(c, UnavailableError);
        assert.ok((await closed) instanceof UnavailableError);
        assert.equal(conn.closed, true);
        await assert.rejects(conn.call("berth.test.v1.Hang", "Hang", new Uint8Array()), UnavailableError);
      } finally {
        child.kill("SIGKILL");
      }
    },
  );

  test("a client timeout fails with DeadlineExceeded and the handler's signal is aborted", async () => {
    await withServer(async ({ path, obs }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        await assert.rejects(client.hang({ key: "", value: "" }, { timeoutMs: 200 }), DeadlineExceededError);
        // The server learned the deadline from timeout_nano and aborted the handler itself.
        assert.ok((await obs.hangAborted) instanceof DeadlineExceededError);
        assert.equal(conn.pendingCalls, 0);
        assert.equal((await client.echo({ key: "k", value: "after timeout" })).value, "after timeout");
      } finally {
        conn.close();
      }
    });
  });

  test("aborting a call's signal fails it with Canceled", async () => {
    await withServer(async ({ path, obs }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const ac = new AbortController();
        const p = createClient(TestDefinition, conn).hang({ key: "", value: "" }, { signal: ac.signal });
        await obs.hangStarted;
        ac.abort();
        await assert.rejects(p, CanceledError);
        assert.equal(conn.pendingCalls, 0);
      } finally {
        conn.close();
      }
    });
  });

  test("streaming calls: server, client and bidirectional streams", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        const counted: string[] = [];
        for await (const m of client.count({ key: "n", value: "4" })) counted.push(m.value);
        assert.deepEqual(counted, ["1", "2", "3", "4"]);

        const joined = await client.join([
          { key: "", value: "a" },
          { key: "", value: "b" },
          { key: "", value: "c" },
        ]);
        assert.equal(joined.value, "a+b+c");

        const upper: string[] = [];
        for await (const m of client.upper([
          { key: "", value: "x" },
          { key: "", value: "yz" },
        ]))
          upper.push(m.value);
        assert.deepEqual(upper, ["X", "YZ"]);
        // Unary calls interleave fine with streams on the same connection.
        assert.equal((await client.echo({ key: "k", value: "v" })).value, "v");
      } finally {
        conn.close();
      }
    });
  });

  test("close waits for in-flight calls, refuses new connections and removes the socket", async () => {
    const path = join(dir, "graceful.sock");
    const server = new TtrpcServer();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    server.register(TestDefinition, {
      async echo(req) {
        started();
        await gate;
        return req;
      },
    });
    await server.listen(path);
    const conn = await TtrpcClient.connect(path);
    const inflight = createClient(TestDefinition, conn).echo({ key: "slow", value: "done" });
    await isStarted;
    const closing = server.close({ timeoutMs: 30_000 });
    await assert.rejects(TtrpcClient.connect(path), UnavailableError);
    release();
    assert.equal((await inflight).value, "done");
    await closing;
    assert.equal(existsSync(path), false);
    conn.close();
  });
});
