// The shim's log fifo. containerd creates `<bundle>/log` and keeps it open for reading
// before it runs `start`; the serving shim (runc v2) opens it for writing as its stderr and
// refuses to serve when it is missing. We open it O_RDWR|O_NONBLOCK as containerd does: the
// open never blocks, and the fifo never sees EOF while we hold it, even between shim
// restarts. The lines go to berthd's log.
import { closeSync, constants, openSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { S_IFIFO, SysError, mknod } from "../sys/index.js";
import type { Logger } from "../util/log.js";

export const SHIM_LOG_FIFO = "log";

export class ShimLogReader {
  private readonly socket: net.Socket;

  private constructor(fd: number, log: Logger) {
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    // Never keep berthd alive just for a shim's chatter.
    this.socket.unref();
    this.socket.on("error", (err) => log.debug({ err }, "shim log fifo read error"));
    const lines = createInterface({ input: this.socket, crlfDelay: Infinity });
    lines.on("line", (line) => {
      // The runc shim logs logrus text: `time=... level=info msg=...`.
      const level = /\blevel=(\w+)/.exec(line)?.[1];
      if (level === "error" || level === "fatal" || level === "panic") log.error({ shimLog: line }, "shim");
      else if (level === "warning" || level === "warn") log.warn({ shimLog: line }, "shim");
      else log.debug({ shimLog: line }, "shim");
    });
  }

  /** Creates `<bundle>/log` as a fifo (0700, like containerd) if needed and starts reading it. */
  static open(bundle: string, log: Logger): ShimLogReader {
    const path = join(bundle, SHIM_LOG_FIFO);
    try {
      mknod(path, S_IFIFO | 0o700, 0);
    } catch (err) {
      if (!(err instanceof SysError && err.code === "EEXIST")) throw err;
    }
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      return new ShimLogReader(fd, log);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
