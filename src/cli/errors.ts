// Errors the CLI reports, and how a gRPC failure becomes a message that says what to do.
// Exit codes follow docker: `run` exits 125 when berth itself failed (so the container's own
// codes stay distinguishable); other commands exit 1; usage errors exit 2.
import { status as Code, type ServiceError } from "@grpc/grpc-js";

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** docker run: the error is from the runtime client/daemon, not the container. */
export const EXIT_RUN_FAILED = 125;

/** An error with the message shown to the user (no stack) and an optional hint line. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "details" in err;
}

export function isCode(err: unknown, code: Code): boolean {
  return isServiceError(err) && err.code === code;
}

export const START_DAEMON_HINT =
  "start the daemon with `berthd` (or install and start it with `bash scripts/setup.sh`), " +
  "or point berth at another socket with --address or BERTH_ADDRESS";

/** Turns a gRPC error into a CliError whose text tells the user what to do next. */
export function explain(err: unknown, address: string): unknown {
  if (!isServiceError(err)) return err;
  const details = err.details || err.message;
  switch (err.code) {
    case Code.UNAVAILABLE: {
      if (/ENOENT/.test(details)) {
        return new CliError(`cannot reach berthd: no socket at ${address}`, `is berthd running? ${START_DAEMON_HINT}`);
      }
      if (/ECONNREFUSED/.test(details)) {
        return new CliError(
          `cannot reach berthd: nothing is listening on ${address}`,
          `is berthd running? ${START_DAEMON_HINT}`,
        );
      }
      if (/EACCES|EPERM/.test(details)) {
        return new CliError(
          `permission denied connecting to ${address}`,
          "run berth as root, or as a member of the socket's group (grpc.gid in berthd's config)",
        );
      }
      if (/No connection established|Failed to connect|Connection dropped|ECONNRESET|EPIPE/.test(details)) {
        return new CliError(
          `lost the connection to berthd at ${address}: ${details}`,
          `is berthd running? ${START_DAEMON_HINT}`,
        );
      }
      // UNAVAILABLE sent by berthd itself (e.g. a registry it cannot reach): its message says what.
      return new CliError(details);
    }
    case Code.UNIMPLEMENTED:
      return new CliError(details, "this berthd does not support the operation yet; upgrade berthd");
    case Code.DEADLINE_EXCEEDED:
      return new CliError(`berthd did not answer in time: ${details}`);
    default:
      return new CliError(details);
  }
}
