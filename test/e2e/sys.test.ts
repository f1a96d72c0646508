// The native syscall binding against the real kernel (run as root). Every test removes what
// it creates (mounts, namespaces, processes, temp dirs), also when an assertion fails.
// waitpid / the child subreaper change process-wide state, so they live in sys-reaper.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import * as sys from "../../src/sys/index.js";

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "berth-sys-"));
}

/** Mount points (field 5 of /proc/self/mountinfo) with their filesystem type. */
function mounts(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (!line) continue;
    const [pre, post] = line.split(" - ");
    out.set(pre.split(" ")[4], post.split(" ")[0]);
  }
  return out;
}

/** Unmounts everything at target (stacked mounts included); ignores "not mounted". */
function unmountAll(target: string): void {
  for (;;) {
    try {
      sys.umount2(target, sys.MNT_DETACH);
    } catch (err) {
      if (err instanceof sys.SysError && (err.code === "EINVAL" || err.code === "ENOENT")) return;
      throw err;
    }
  }
}

function assertSysError(fn: () => unknown, code: string, syscall?: string): sys.SysError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof sys.SysError, `expected SysError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  if (syscall) assert.equal(caught.syscall, syscall);
  assert.equal(typeof caught.errno, "number");
  return caught;
}

test("mount a tmpfs, see it in mountinfo, umount2 removes it", () => {
  const dir = tempDir();
  try {
    sys.mount("tmpfs", dir, "tmpfs", sys.MS_NOSUID | sys.MS_NODEV, "size=1m,mode=0700");
    assert.equal(mounts().get(dir), "tmpfs");
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    fs.writeFileSync(path.join(dir, "f"), "x");
    sys.umount2(dir, 0);
    assert.equal(mounts().has(dir), false);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("mount and umount2 errors carry the errno name, syscall and path", () => {
  const dir = tempDir();
  try {
    const err = assertSysError(() => sys.mount("none", dir, "berthnosuchfs", 0), "ENODEV", "mount");
    assert.equal(err.path, dir);
    assert.equal(err.message, `mount ${dir}: ENODEV`);
    assertSysError(() => sys.umount2(dir, 0), "EINVAL", "umount2");
    assertSysError(() => sys.umount2(path.join(dir, "missing"), 0), "ENOENT", "umount2");
    assert.equal(mounts().has(dir), false);
  } finally {
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a read-only bind remount refuses writes with EROFS, the source stays writable", () => {
  const dir = tempDir();
  const src = path.join(dir, "src");
  const dst = path.join(dir, "dst");
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  try {
    sys.mount(src, dst, null, sys.MS_BIND);
    fs.writeFileSync(path.join(dst, "before"), "rw");
    sys.mount("", dst, null, sys.MS_BIND | sys.MS_REMOUNT | sys.MS_RDONLY);
    assert.throws(() => fs.writeFileSync(path.join(dst, "after"), "ro"), { code: "EROFS" });
    assert.equal(fs.readFileSync(path.join(dst, "before"), "utf8"), "rw");
    fs.writeFileSync(path.join(src, "via-src"), "ok");
    assert.equal(fs.readFileSync(path.join(dst, "via-src"), "utf8"), "ok");
  } finally {
    unmountAll(dst);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("mknod makes an overlay whiteout (char 0/0) and a fifo", () => {
  const dir = tempDir();
  try {
    assert.equal(sys.makedev(0, 0), 0);
    assert.equal(sys.makedev(8, 1), 0x801);
    assert.equal(sys.makedev(259, 70000), 0x11110370);
    assert.equal(sys.makedev(0x1000, 0), 2 ** 44); // dev_t is 64-bit: high major bits go above 2^32
    assert.equal(sys.makedev(1, 3), fs.statSync("/dev/null").rdev);
    const wh = path.join(dir, "whiteout");
    sys.mknod(wh, sys.S_IFCHR | 0o000, sys.makedev(0, 0));
    const st = fs.lstatSync(wh);
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, 0);
    const fifo = path.join(dir, "fifo");
    sys.mknod(fifo, sys.S_IFIFO | 0o600, 0);
    assert.ok(fs.lstatSync(fifo).isFIFO());
    assertSysError(() => sys.mknod(fifo, sys.S_IFIFO | 0o600, 0), "EEXIST", "mknod");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("xattrs: set, get, list trusted.* and user.* on tmpfs and on the host filesystem", () => {
  const dir = tempDir();
  const tmpfsDir = path.join(dir, "tmpfs");
  fs.mkdirSync(tmpfsDir);
  try {
    sys.mount("tmpfs", tmpfsDir, "tmpfs", 0, "size=1m");
    for (const base of [tmpfsDir, dir]) {
      const file = path.join(base, "file");
      fs.writeFileSync(file, "");
      sys.setxattr(file, "trusted.overlay.opaque", Buffer.from("y"));
      sys.setxattr(file, "user.berth.test", Buffer.from("hello"));
      sys.setxattr(file, "user.berth.empty", Buffer.alloc(0));
      assert.deepEqual(sys.getxattr(file, "trusted.overlay.opaque"), Buffer.from("y"), base);
      assert.deepEqual(sys.lgetxattr(file, "user.berth.test"), Buffer.from("hello"));
      // An empty value is present (not null).
      assert.deepEqual(sys.getxattr(file, "user.berth.empty"), Buffer.alloc(0));
      const names = sys.llistxattr(file);
      for (const n of ["trusted.overlay.opaque", "user.berth.test", "user.berth.empty"]) {
        assert.ok(names.includes(n), `${n} in ${names.join(",")}`);
      }
      // Overwrite with a larger value: the get path sizes its buffer each time.
      const big = Buffer.alloc(3000, "z");
      sys.setxattr(file, "user.berth.test", big);
      assert.deepEqual(sys.getxattr(file, "user.berth.test"), big);
      assert.equal(sys.getxattr(file, "user.berth.missing"), null);
      assert.equal(sys.lgetxattr(file, "trusted.missing"), null);
      const err = assertSysError(() => sys.getxattr(path.join(base, "nope"), "user.x"), "ENOENT", "getxattr");
      assert.equal(err.path, path.join(base, "nope"));
      assertSysError(() => sys.llistxattr(path.join(base, "nope")), "ENOENT", "llistxattr");
      assertSysError(() => sys.setxattr(path.join(base, "nope"), "user.x", Buffer.from("1")), "ENOENT", "setxattr");
    }
    assert.deepEqual(sys.llistxattr(path.join(tmpfsDir)), []);
  } finally {
    unmountAll(tmpfsDir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("lsetxattr/lgetxattr act on a symlink itself, setxattr/getxattr follow it", () => {
  const dir = tempDir();
  try {
    const target = path.join(dir, "target");
    const link = path.join(dir, "link");
    fs.writeFileSync(target, "");
    fs.symlinkSync("target", link);
    sys.lsetxattr(link, "trusted.berth.link", Buffer.from("on-link"));
    assert.deepEqual(sys.lgetxattr(link, "trusted.berth.link"), Buffer.from("on-link"));
    assert.equal(sys.getxattr(link, "trusted.berth.link"), null);
    assert.equal(sys.getxattr(target, "trusted.berth.link"), null);
    assert.ok(sys.llistxattr(link).includes("trusted.berth.link"));
    assert.ok(!sys.llistxattr(target).includes("trusted.berth.link"));
    sys.setxattr(link, "trusted.berth.followed", Buffer.from("on-target"));
    assert.deepEqual(sys.lgetxattr(target, "trusted.berth.followed"), Buffer.from("on-target"));
    assert.equal(sys.lgetxattr(link, "trusted.berth.followed"), null);
    // The kernel refuses user.* on symlinks; callers must see that as EPERM.
    assertSysError(() => sys.lsetxattr(link, "user.berth", Buffer.from("x")), "EPERM", "lsetxattr");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("pidfdOpen returns a pidfd; a missing pid is ESRCH", () => {
  const fd = sys.pidfdOpen(process.pid);
  try {
    assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), "anon_inode:[pidfd]");
    const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
    assert.match(fdinfo, new RegExp(`^Pid:\\s+${process.pid}$`, "m"));
  } finally {
    fs.closeSync(fd);
  }
  // pid_max is at most 2^22, so this pid cannot exist.
  assertSysError(() => sys.pidfdOpen(0x7ffffff0), "ESRCH", "pidfd_open");
});

test("setns and unshare report errors as SysError", () => {
  assertSysError(() => sys.setns(-1, sys.CLONE_NEWNET), "EBADF", "setns");
  assertSysError(() => sys.unshare(-1), "EINVAL", "unshare");
});

test("arguments of the wrong type are TypeErrors, not crashes", () => {
  assert.throws(() => sys.mount("a", 1 as unknown as string, null, 0), TypeError);
  assert.throws(() => sys.setxattr("/tmp", "user.x", "str" as unknown as Buffer), TypeError);
  assert.throws(() => sys.getxattr("/tmp\0x", "user.x"), TypeError);
  assert.throws(() => sys.waitpid("1" as unknown as number, 0), TypeError);
});

// ---- network namespaces ----------------------------------------------------------------

function nsInode(p: string): number {
  return fs.statSync(p).ino;
}

function removeNetns(p: string): void {
  unmountAll(p);
  fs.rmSync(p, { force: true });
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

test("netnsCreate pins a new network namespace on a file; this process stays in its own", () => {
  const dir = tempDir();
  const ns = path.join(dir, "netns");
  const hostIno = nsInode("/proc/self/ns/net");
  try {
    sys.netnsCreate(ns);
    assert.equal(mounts().get(ns), "nsfs");
    assert.notEqual(nsInode(ns), hostIno);
    assert.equal(nsInode("/proc/self/ns/net"), hostIno);
    assert.equal(nsInode("/proc/thread-self/ns/net"), hostIno);
    const links = run("nsenter", [`--net=${ns}`, "ip", "-o", "link", "show"])
      .trim()
      .split("\n")
      .map((l) => l.split(":")[1].trim());
    assert.deepEqual(links, ["lo"]);

    // CNI style: the caller made the file already; a second namespace on another file differs.
    const ns2 = path.join(dir, "netns2");
    fs.writeFileSync(ns2, "");
    try {
      sys.netnsCreate(ns2);
      assert.notEqual(nsInode(ns2), nsInode(ns));
      assert.notEqual(nsInode(ns2), hostIno);
    } finally {
      removeNetns(ns2);
    }
    assert.equal(nsInode("/proc/self/ns/net"), hostIno);
  } finally {
    removeNetns(ns);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("netnsCreate failures throw SysError and leave nothing behind", () => {
  const dir = tempDir();
  try {
    const missing = path.join(dir, "no-such-dir", "ns");
    const err = assertSysError(() => sys.netnsCreate(missing), "ENOENT", "open");
    assert.equal(err.path, missing);
    // A directory cannot take the bind mount of a namespace file.
    const sub = path.join(dir, "sub");
    fs.mkdirSync(sub);
    assertSysError(() => sys.netnsCreate(sub), "ENOTDIR", "mount");
    assert.ok(fs.statSync(sub).isDirectory());
    assert.equal(mounts().has(sub), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Starts a TCP server inside the namespace that answers "hi from netns" and closes. */
async function serverInNetns(ns: string, port: number): Promise<ChildProcess> {
  const script = `require("net").createServer((s) => s.end("hi from netns"))
    .listen({ port: ${port}, host: "::", ipv6Only: false }, () => console.log("ready"));`;
  const child = spawn("nsenter", [`--net=${ns}`, process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [chunk] = (await Promise.race([once(child.stdout!, "data"), once(child, "exit")])) as [Buffer | number];
  if (!Buffer.isBuffer(chunk) || !chunk.toString().includes("ready")) {
    child.kill("SIGKILL");
    throw new Error(`server in netns did not start (${String(chunk)})`);
  }
  return child;
}

async function readAll(fd: number): Promise<string> {
  const sock = new net.Socket({ fd, readable: true, writable: true });
  const parts: Buffer[] = [];
  sock.on("data", (d: Buffer) => parts.push(d));
  await once(sock, "end");
  sock.destroy();
  return Buffer.concat(parts).toString();
}

test("connectInNetns reaches a server inside the namespace, not one in the host namespace", async (t) => {
  const dir = tempDir();
  const ns = path.join(dir, "netns");
  const hostIno = nsInode("/proc/self/ns/net");
  const servers: ChildProcess[] = [];
  const hostServer = net.createServer((s) => s.end("hi from host"));
  t.after(() => {
    for (const s of servers) s.kill("SIGKILL");
    hostServer.close();
    removeNetns(ns);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  sys.netnsCreate(ns);
  // lo starts down in a new namespace: nothing, not even loopback, is reachable.
  assertSysError(() => sys.connectInNetns(ns, "127.0.0.1", 8080), "ENETUNREACH", "connect");
  run("nsenter", [`--net=${ns}`, "ip", "link", "set", "lo", "up"]);
  servers.push(await serverInNetns(ns, 8080));

  for (const host of ["127.0.0.1", "::1", "[::1]", "localhost"]) {
    const fd = sys.connectInNetns(ns, host, 8080);
    assert.equal(await readAll(fd), "hi from netns", host);
  }
  const fd = sys.connectInNetns(ns, "127.0.0.1", 8080, 2000);
  assert.equal(await readAll(fd), "hi from netns");
  assert.equal(nsInode("/proc/self/ns/net"), hostIno);

  // A server only in the host namespace is invisible from inside.
  hostServer.listen(0, "127.0.0.1");
  await once(hostServer, "listening");
  const hostPort = (hostServer.address() as net.AddressInfo).port;
  const err = assertSysError(() => sys.connectInNetns(ns, "127.0.0.1", hostPort), "ECONNREFUSED", "connect");
  assert.equal(err.path, `127.0.0.1:${hostPort}`);
  assertSysError(() => sys.connectInNetns(ns, "::1", hostPort), "ECONNREFUSED", "connect");
  assertSysError(() => sys.connectInNetns(ns, "localhost", hostPort), "ECONNREFUSED", "connect");
  // ...while the host itself still reaches it: this process never left its namespace.
  const viaHost = net.connect(hostPort, "127.0.0.1");
  const parts: Buffer[] = [];
  viaHost.on("data", (d: Buffer) => parts.push(d));
  await once(viaHost, "end");
  assert.equal(Buffer.concat(parts).toString(), "hi from host");
});

test("connectInNetns: bad namespace path, non-namespace file, bad host, timeout", (t) => {
  const dir = tempDir();
  const ns = path.join(dir, "netns");
  t.after(() => {
    removeNetns(ns);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const missing = path.join(dir, "missing");
  assert.equal(assertSysError(() => sys.connectInNetns(missing, "127.0.0.1", 1), "ENOENT", "open").path, missing);
  const plain = path.join(dir, "plain");
  fs.writeFileSync(plain, "");
  assertSysError(() => sys.connectInNetns(plain, "127.0.0.1", 1), "EINVAL", "setns");

  sys.netnsCreate(ns);
  assertSysError(() => sys.connectInNetns(ns, "example.com", 80), "EINVAL", "inet_pton");
  assert.throws(() => sys.connectInNetns(ns, "127.0.0.1", 70000), RangeError);

  // SYNs dropped inside the namespace: only timeoutMs ends the connect.
  run("nsenter", [`--net=${ns}`, "ip", "link", "set", "lo", "up"]);
  run("nsenter", [`--net=${ns}`, "iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"]);
  assertSysError(() => sys.connectInNetns(ns, "127.0.0.1", 9, 100), "ETIMEDOUT", "connect");
});

test("fsmount mounts through the new mount API and reports fsconfig errors", () => {
  const dir = tempDir();
  try {
    sys.fsmount("tmpfs", dir, sys.MOUNT_ATTR_NOSUID, [
      ["size", "1m"],
      ["mode", "0710"],
    ]);
    assert.equal(mounts().get(dir), "tmpfs");
    assert.equal(fs.statSync(dir).mode & 0o777, 0o710);
    sys.umount2(dir, 0);
    const err = assertSysError(() => sys.fsmount("tmpfs", dir, 0, [["nosuchoption", "1"]]), "EINVAL", "fsconfig");
    assert.match(err.message, /nosuchoption/);
    assert.equal(mounts().has(dir), false);
  } finally {
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("mount takes an overlay whose lowerdir option is longer than a page (120 layers)", () => {
  const dir = tempDir();
  const target = path.join(dir, "merged");
  try {
    // Long layer paths, as a snapshotter under a deep root has: 120 of them pass 4 KiB.
    const lowers: string[] = [];
    for (let i = 0; i < 120; i++) {
      const l = path.join(dir, `layer-with-a-rather-long-directory-name-${String(i).padStart(3, "0")}`, "fs");
      fs.mkdirSync(l, { recursive: true });
      fs.writeFileSync(path.join(l, `file-${i}`), `layer ${i}\n`);
      fs.writeFileSync(path.join(l, "top"), `layer ${i}\n`);
      lowers.push(l);
    }
    for (const d of ["upper", "work", "merged"]) fs.mkdirSync(path.join(dir, d));
    const data = `workdir=${path.join(dir, "work")},upperdir=${path.join(dir, "upper")},lowerdir=${lowers.join(":")}`;
    assert.ok(Buffer.byteLength(data) > sys.MOUNT_DATA_MAX, `option string is ${data.length} bytes`);
    sys.mount("overlay", target, "overlay", 0, data);
    assert.equal(mounts().get(target), "overlay");
    // Every layer is visible; the first lowerdir is the topmost.
    for (let i = 0; i < 120; i++) assert.equal(fs.readFileSync(path.join(target, `file-${i}`), "utf8"), `layer ${i}\n`);
    assert.equal(fs.readFileSync(path.join(target, "top"), "utf8"), "layer 0\n");
    fs.writeFileSync(path.join(target, "new"), "x");
    assert.equal(fs.readFileSync(path.join(dir, "upper", "new"), "utf8"), "x");
    // A read-only remount with the same long options works too (overlayfs ignores them).
    sys.mount("", target, null, sys.MS_REMOUNT | sys.MS_RDONLY, data);
    assert.throws(() => fs.writeFileSync(path.join(target, "other"), "x"), { code: "EROFS" });
  } finally {
    unmountAll(target);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
