// Runs a command on a pseudo-terminal, for tests of what a user sees on a terminal (progress
// bars, `run -it`, `exec -it`). node-pty is not installed (it needs a native build), so a
// tiny Python program (Debian's python3, standard library `pty`) owns the terminal: it forks
// the command on a new pty of the given size, copies our pipe into it as keystrokes and the
// terminal's output back out, and exits with the command's exit status.
import { spawn } from "node:child_process";

const RELAY = String.raw`
import os, pty, select, signal, struct, sys, fcntl, termios
cols, rows = int(sys.argv[1]), int(sys.argv[2])
argv = sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.execvp(argv[0], argv)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
inputs = [0, fd]
while True:
    try:
        ready, _, _ = select.select(inputs, [], [])
    except InterruptedError:
        continue
    if 0 in ready:
        data = os.read(0, 4096)
        if data:
            os.write(fd, data)
        else:
            inputs.remove(0)
    if fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            break
        os.write(1, data)
_, status = os.waitpid(pid, 0)
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
`;

export interface PtyProcess {
  /** Types into the terminal ("\x03" is Ctrl-C, "\r" is Enter). */
  write(data: string | Buffer): void;
  /** Everything the terminal showed so far (with escape sequences). */
  output(): string;
  /** Resolves once the output matches; rejects after timeoutMs with what was seen. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** The command's exit code (128+N after signal N), with the whole output. */
  exited: Promise<{ code: number; output: string }>;
  kill(): void;
}

export function runInPty(
  argv: string[],
  opts: { cols?: number; rows?: number; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): PtyProcess {
  const child = spawn("/usr/bin/python3", ["-c", RELAY, String(opts.cols ?? 100), String(opts.rows ?? 30), ...argv], {
    cwd: opts.cwd,
    env: { TERM: "xterm-256color", ...opts.env },
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  const waiters = new Set<() => void>();
  child.stdout!.on("data", (b: Buffer) => {
    out += b.toString("utf8");
    for (const w of waiters) w();
  });
  const timer = setTimeout(() => child.kill("SIGTERM"), opts.timeoutMs ?? 120_000);
  const exited = new Promise<{ code: number; output: string }>((resolve) =>
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal === "SIGKILL" ? 9 : 15), output: out });
    }),
  );
  return {
    write: (d) => void child.stdin!.write(d),
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) {
            waiters.delete(check);
            clearTimeout(t);
            resolve();
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`terminal never showed ${pattern}; it showed:\n${JSON.stringify(out)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    exited,
    kill: () => void child.kill("SIGTERM"),
  };
}
