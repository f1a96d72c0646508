// A real registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
// filesystem storage in a temp dir, optionally behind htpasswd (bcrypt hashes made with the
// bcryptjs devDependency, since apache2-utils' htpasswd is not installed).
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import bcrypt from "bcryptjs";

export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  /** "http" or, with `tls`, "https" */
  scheme: "http" | "https";
  port: number;
  dir: string;
  /** the registry's log so far (stderr + stdout), includes its access log */
  log(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface RegistryTls {
  /** PEM files: the server certificate (for 127.0.0.1) and its key */
  certificate: string;
  key: string;
  /** CA certificates client certificates must chain to; set, a client certificate is required */
  clientCAs?: string[];
}

export async function startRegistry(
  opts: { auth?: { username: string; password: string }; tls?: RegistryTls } = {},
): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), "berth-registry-"));
  const port = await freePort();
  let authBlock = "";
  if (opts.auth) {
    const hash = bcrypt.hashSync(opts.auth.password, 8);
    await writeFile(join(dir, "htpasswd"), `${opts.auth.username}:${hash}\n`);
    authBlock = `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${join(dir, "htpasswd")}\n`;
  }
  let tlsBlock = "";
  if (opts.tls) {
    tlsBlock = `  tls:\n    certificate: ${opts.tls.certificate}\n    key: ${opts.tls.key}\n`;
    if (opts.tls.clientCAs?.length)
      tlsBlock += `    clientcas:\n${opts.tls.clientCAs.map((c) => `      - ${c}\n`).join("")}`;
  }
  const config = `version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${join(dir, "data")}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${tlsBlock}${authBlock}`;
  await writeFile(join(dir, "config.yml"), config);
  const proc: ChildProcess = spawn("/usr/bin/docker-registry", ["serve", join(dir, "config.yml")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  // A test file whose after hook failed before stopping the registry must not leave it
  // running (the runner ends a finished file with --test-force-exit).
  const killOnExit = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);
  let log = "";
  proc.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(3000)]);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
    process.removeListener("exit", killOnExit);
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if (opts.tls) {
        // An HTTPS registry (maybe demanding a client certificate): listening is enough.
        if (await canConnect(port)) break;
      } else {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`);
        await res.arrayBuffer();
        if (res.status === 200 || res.status === 401) break;
      }
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry did not start: ${log}`);
    }
    await sleep(50);
  }
  return { host: `127.0.0.1:${port}`, scheme: opts.tls ? "https" : "http", port, dir, log: () => log, stop };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface TestPki {
  dir: string;
  /** the CA that signed both certificates below */
  ca: string;
  /** server certificate for IP 127.0.0.1 and localhost, and its key */
  serverCert: string;
  serverKey: string;
  /** client certificate (clientAuth), and its key */
  clientCert: string;
  clientKey: string;
  /** a second CA that signed nothing here: a client trusting only it rejects the server */
  otherCa: string;
}

/** A throwaway CA with a server and a client certificate, made with openssl (EC P-256). */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const run = promisify(execFile);
  const p = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  for (const ca of ["ca", "other-ca"]) {
    await run("openssl", [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      p(`${ca}.key`),
      "-out",
      p(`${ca}.crt`),
      "-days",
      "2",
      "-subj",
      `/CN=berth test ${ca}`,
    ]);
  }
  const sign = async (name: string, cn: string, ext: string) => {
    await run("openssl", ["req", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
    await writeFile(p(`${name}.ext`), ext);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.crt"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-out",
      p(`${name}.crt`),
      "-days",
      "2",
      "-extfile",
      p(`${name}.ext`),
    ]);
  };
  await sign("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await sign("client", "berth-client", "extendedKeyUsage=clientAuth\n");
  return {
    dir,
    ca: p("ca.crt"),
    serverCert: p("server.crt"),
    serverKey: p("server.key"),
    clientCert: p("client.crt"),
    clientKey: p("client.key"),
    otherCa: p("other-ca.crt"),
  };
}

export interface ProxyRequest {
  method: string;
  path: string;
  range?: string;
  status: number;
  /** body bytes sent to the client */
  bytes: number;
  /** the body was held back at the `stall` point */
  stalled?: boolean;
  /** the connection closed before the body ended (the client hung up, or `cut` cut it) */
  abandoned?: boolean;
  headers: Record<string, string | string[] | undefined>;
}

export interface ProxyOptions {
  /** flip one byte in the body of responses whose path contains this string */
  tamper?: string;
  /** for paths containing `match`: send `bytes` body bytes then drop the connection, `times` times */
  cut?: { match: string; bytes: number; times: number };
  /** answer 404 to paths containing this string */
  refuse?: string;
  /** slow the body of paths containing `match`: `chunk` bytes per `everyMs` */
  throttle?: { match: string; chunk: number; everyMs: number };
  /** answer 503 to paths containing `match`, `times` times */
  unavailable?: { match: string; times: number };
  /**
   * Act as a token-auth registry: /v2/ requests need `Authorization: Bearer <token>`, else
   * 401 with a Bearer challenge whose realm is this proxy's /token, which issues the token
   * for Basic `username:password`.
   */
  bearer?: { username: string; password: string };
  /** answer 307 to paths containing `match` (after auth), pointing at the same path on host `to` */
  redirect?: { match: string; to: string };
  /**
   * for paths containing `match`: send `bytes` body bytes, then send nothing more (the
   * connection stays open) until release(); the registry that stops answering midway
   */
  stall?: { match: string; bytes: number };
}

export interface TestProxy {
  host: string;
  requests: ProxyRequest[];
  options: ProxyOptions;
  /** "stalled" (ProxyRequest) when a body is held back; "abandoned" (ProxyRequest) when a client hung up mid-body */
  events: EventEmitter;
  /** sends the rest of every held-back body, and turns `stall` off */
  release(): void;
  stop(): Promise<void>;
}

/** A plain HTTP forwarding proxy in front of a registry that counts, cuts, slows or corrupts bodies. */
export async function startProxy(target: string, options: ProxyOptions = {}): Promise<TestProxy> {
  const http = await import("node:http");
  const events = new EventEmitter();
  // Held-back bodies wait for the gate of their time; release() opens it and sets a new one.
  let openGate!: () => void;
  let gate = new Promise<void>((r) => (openGate = r));
  const requests: ProxyRequest[] = [];
  const server = http.createServer((req, res) => {
    const path = req.url ?? "/";
    const o = options;
    const rec: ProxyRequest = {
      method: req.method ?? "GET",
      path,
      range: req.headers.range,
      status: 0,
      bytes: 0,
      headers: { ...req.headers },
    };
    requests.push(rec);
    if (o.bearer) {
      const token = "token-" + Buffer.from(`${o.bearer.username}`).toString("hex");
      if (path.startsWith("/token")) {
        const want = `Basic ${Buffer.from(`${o.bearer.username}:${o.bearer.password}`).toString("base64")}`;
        rec.status = req.headers.authorization === want ? 200 : 401;
        if (rec.status === 200)
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
        else res.writeHead(401).end();
        return;
      }
      if (req.headers.authorization !== `Bearer ${token}`) {
        rec.status = 401;
        res
          .writeHead(401, {
            "www-authenticate": `Bearer realm="http://${req.headers.host}/token",service="berth-test",scope="repository:x:pull"`,
          })
          .end();
        return;
      }
    }
    if (o.redirect && path.includes(o.redirect.match)) {
      rec.status = 307;
      res.writeHead(307, { location: `http://${o.redirect.to}${path}` }).end();
      return;
    }
    if (o.unavailable && path.includes(o.unavailable.match) && o.unavailable.times > 0) {
      o.unavailable.times--;
      rec.status = 503;
      res.writeHead(503).end();
      return;
    }
    if (o.refuse && path.includes(o.refuse)) {
      rec.status = 404;
      res.writeHead(404).end();
      return;
    }
    const headers = { ...req.headers, host: target };
    const up = http.request(`http://${target}${path}`, { method: req.method, headers }, (ures) => {
      rec.status = ures.statusCode ?? 0;
      const h = { ...ures.headers };
      res.writeHead(ures.statusCode ?? 502, h);
      let tampered = false;
      const cut = o.cut && path.includes(o.cut.match) && o.cut.times > 0 && ures.statusCode! < 300 ? o.cut : undefined;
      if (cut) cut.times--;
      const throttle = o.throttle && path.includes(o.throttle.match) ? o.throttle : undefined;
      let stall = o.stall && path.includes(o.stall.match) && ures.statusCode! < 300 ? o.stall : undefined;
      res.on("close", () => {
        if (!res.writableFinished) {
          rec.abandoned = true;
          events.emit("abandoned", rec);
        }
      });
      const pump = async () => {
        for await (const c of ures) {
          let chunk = c as Buffer;
          if (stall && rec.bytes + chunk.length >= stall.bytes) {
            const part = chunk.subarray(0, stall.bytes - rec.bytes);
            rec.bytes += part.length;
            await new Promise<void>((r) => res.write(part, () => r()));
            rec.stalled = true;
            events.emit("stalled", rec);
            await Promise.race([gate, new Promise((r) => res.once("close", r))]);
            if (rec.abandoned) return void ures.destroy();
            chunk = chunk.subarray(part.length);
            stall = undefined;
          }
          if (o.tamper && path.includes(o.tamper) && !tampered && chunk.length > 0) {
            chunk = Buffer.from(chunk);
            chunk[Math.floor(chunk.length / 2)] ^= 0xff;
            tampered = true;
          }
          if (cut && rec.bytes + chunk.length >= cut.bytes) {
            const part = chunk.subarray(0, cut.bytes - rec.bytes);
            rec.bytes += part.length;
            await new Promise<void>((r) => res.write(part, () => r()));
            res.destroy();
            ures.destroy();
            return;
          }
          if (throttle) {
            for (let i = 0; i < chunk.length; i += throttle.chunk) {
              const part = chunk.subarray(i, i + throttle.chunk);
              rec.bytes += part.length;
              if (!res.write(part)) await new Promise((r) => res.once("drain", r));
              await sleep(throttle.everyMs);
              if (res.destroyed) return;
            }
            continue;
          }
          rec.bytes += chunk.length;
          if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
        }
        res.end();
      };
      pump().catch(() => res.destroy());
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    options,
    events,
    release: () => {
      options.stall = undefined;
      const open = openGate;
      gate = new Promise<void>((r) => (openGate = r));
      open();
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
