// What goes on the error stream when a remote command ends (kubelet's
// pkg/cri/streaming/remotecommand exec.go / attach.go, read by client-go's v2..v5 decoders).
// v4 and later carry a JSON metav1.Status; the key order below is the one Go's encoder emits.
// Earlier versions carry only a failure's message as plain text, and nothing on success.

export interface StatusCause {
  reason?: string;
  message?: string;
}

export interface Status {
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { causes: StatusCause[] };
  code?: number;
}

export function successStatus(): Status {
  return { metadata: {}, status: "Success" };
}

/** Mirrors the exit error text of containerd's CRI exec ("error executing command [..], exit code N"). */
export function exitCodeStatus(cmd: string[], exitCode: number): Status {
  return {
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: error executing command [${cmd.join(" ")}], exit code ${exitCode}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  };
}

/** apierrors.NewInternalError. */
export function internalErrorStatus(err: unknown): Status {
  const msg = err instanceof Error ? err.message : String(err);
  return {
    metadata: {},
    status: "Failure",
    message: `Internal error occurred: ${msg}`,
    reason: "InternalError",
    details: { causes: [{ message: msg }] },
    code: 500,
  };
}

/** The bytes for the error stream, or undefined when nothing is to be written. */
export function encodeStatus(status: Status, jsonStatus: boolean): Buffer | undefined {
  if (jsonStatus) return Buffer.from(JSON.stringify(status));
  if (status.status === "Success") return undefined;
  return Buffer.from(status.message ?? "");
}
