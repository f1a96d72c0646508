// berthd's configuration: every key, its type, default, check and description, in one table.
// To add a key, add one line here; its type reaches `BerthConfig`, `berthd config default`
// prints it with its description, and the loader validates it. Keys are snake_case like
// containerd's config.toml. Checks that span several keys go in `crossChecks` below.

import {
  bool,
  duration,
  fileMode,
  int,
  mapOf,
  oneOf,
  path,
  section,
  str,
  stringList,
  table,
  type ConfigValue,
} from "./config-fields.js";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;

const MiB = 1024 * 1024;

/** The layout of [runtime.handlers.<name>]: one CRI runtime handler (RuntimeClass handler). */
const runtimeHandler = section("A runtime handler, selected by a pod's RuntimeClass handler name.", {
  runtime_type: str(
    "io.containerd.berth.v2",
    "Shim v2 runtime name: io.containerd.NAME.v2 runs containerd-shim-NAME-v2 (from PATH); an absolute path runs that shim binary.",
    {
      check: (v) =>
        /^io\.containerd\.[a-z0-9-]+\.v2$/.test(v) || /^\/[^\0]*[^/]$/.test(v)
          ? undefined
          : `${JSON.stringify(v)} is neither of the form io.containerd.NAME.v2 nor an absolute path to a shim binary`,
    },
  ),
  binary_name: str("runc", "OCI runtime binary the shim runs (a name on PATH or an absolute path)."),
  root: path("", "OCI runtime state directory (its --root); empty means the runtime's own default.", {
    allowEmpty: true,
  }),
  options: table("Extra options handed to the shim for this handler, as a table."),
});

/** The layout of [registry.auths."<host>"]: like containerd's registry.configs."<host>".auth. */
const registryAuth = section("Credentials for one registry host.", {
  username: str("", "User name (with password)."),
  password: str("", "Password (with username)."),
  auth: str("", 'base64 of "username:password", as in a Docker config.json.'),
  identity_token: str("", "An OAuth2 refresh token exchanged at the registry's token server."),
});

export const configSchema = section("berthd configuration", {
  version: int(1, "Configuration format version; this berthd reads version 1.", { min: 1, max: 1 }),
  root: path("/var/lib/berth", "Persistent data: images, snapshots, metadata (created 0700)."),
  state: path("/run/berth", "Runtime state that does not survive a reboot: pid file, bundles, sockets."),

  grpc: section("The CRI gRPC endpoint that kubelet and crictl talk to.", {
    address: path("/run/berth/berth.sock", "Unix socket path of the CRI gRPC server."),
    uid: int(0, "Owner uid of the socket.", { max: 2 ** 32 - 2 }),
    gid: int(0, "Owner gid of the socket.", { max: 2 ** 32 - 2 }),
    mode: fileMode(0o660, "Permission bits of the socket."),
    max_recv_message_size: int(16 * MiB, "Largest gRPC message accepted, in bytes (kubelet sends up to 16 MiB).", {
      min: 1024,
      max: 2 ** 31 - 1,
    }),
    max_send_message_size: int(16 * MiB, "Largest gRPC message sent, in bytes.", { min: 1024, max: 2 ** 31 - 1 }),
    shutdown_timeout: duration("5s", "On SIGTERM/SIGINT, how long in-flight calls may run before they are cut off."),
    server: oneOf(
      ["berth", "grpc-js"],
      "berth",
      "gRPC server: berth's own (its own HTTP/2 connection, cheapest per call) or @grpc/grpc-js's.",
    ),
  }),

  log: section("Daemon logging (to stderr).", {
    level: oneOf(LOG_LEVELS, "info", "Least severe level logged; debug logs every CRI call."),
    format: oneOf(["json", "text"], "json", "json: one JSON object per line; text: human-readable lines."),
  }),

  cgroup: section("Control groups.", {
    driver: oneOf(["cgroupfs", "systemd"], "cgroupfs", "Cgroup driver; must match kubelet's cgroupDriver."),
  }),

  runtime: section("OCI runtimes.", {
    default_runtime_name: str("runc", "Handler used when a pod names no RuntimeClass handler."),
    // runc-1.5: the runc v1.5 scripts/setup.sh installs beside the distribution's (Debian 12's
    // 1.1.5 makes no idmapped mounts), for pods with user namespaces; a pod on it is refused
    // with FAILED_PRECONDITION when it is not installed.
    handlers: mapOf("Runtime handlers by name.", runtimeHandler, {
      runc: { binary_name: "runc" },
      "runc-1.5": { binary_name: "/usr/local/sbin/runc-1.5" },
      runsc: { binary_name: "runsc" },
    }),
  }),

  cni: section("Pod networking through CNI plugins.", {
    bin_dir: path("/usr/lib/cni", "Directory holding the CNI plugin binaries."),
    conf_dir: path("/etc/cni/net.d", "Directory holding the CNI network configs (.conf, .conflist, .json)."),
    max_conf_num: int(1, "How many network configs (in file name order) each pod joins.", { min: 1, max: 64 }),
  }),

  registry: section("Image registries.", {
    config_path: path("/etc/berth/certs.d", "Per-registry host configs (certs.d/<host>/hosts.toml layout)."),
    auths: mapOf(
      'Credentials by registry host ("127.0.0.1:5000", "docker.io"), used when a pull brings none.',
      registryAuth,
      {},
    ),
  }),

  image: section("Images.", {
    snapshotter: str("overlayfs", "Snapshotter that unpacks image layers into root filesystems.", {
      check: (v) => (v === "" ? "must not be empty" : undefined),
    }),
    sandbox_image: str("", "Pause image for pod sandboxes; empty means berth's built-in pause."),
    max_concurrent_downloads: int(3, "Layer downloads in flight at once, over all pulls.", { min: 1, max: 64 }),
    image_pull_with_sync_fs: bool(
      false,
      "syncfs each unpacked layer before its snapshot is committed, so a power cut soon after a pull cannot leave a committed layer with empty or cut-off files (containerd's option of the same name; it makes pulls slower).",
    ),
    stale_ingest_timeout: duration(
      "24h",
      "Image GC removes an interrupted layer download that got no data for this long.",
    ),
    image_pull_progress_timeout: duration(
      "5m",
      "A pull whose open downloads receive no bytes for this long is aborted (DEADLINE_EXCEEDED) and its partial downloads removed; 0 disables.",
    ),
  }),

  cdi: section("CDI (Container Device Interface) devices that containers ask for by name.", {
    spec_dirs: stringList(
      ["/etc/cdi", "/var/run/cdi"],
      "Directories of CDI spec files (.json, .yaml); a later directory overrides an earlier one.",
    ),
  }),

  nri: section("NRI (Node Resource Interface): plugins that see, and may adjust, pods and containers.", {
    enable: bool(false, "Accept NRI plugins on socket_path (containerd enables NRI by default; berth does not)."),
    socket_path: path(
      "/var/run/nri/nri.sock",
      "Unix socket NRI plugins connect to (its directory 0711, the socket 0600).",
    ),
    plugin_registration_timeout: duration("5s", "How long a connecting plugin has to register."),
    plugin_request_timeout: duration(
      "2s",
      "How long a plugin has to answer one request; a plugin that takes longer is disconnected.",
    ),
  }),

  streaming: section("The exec/attach/port-forward streaming server.", {
    address: str("127.0.0.1", "Address the streaming server listens on."),
    port: int(0, "Port of the streaming server; 0 picks a free port.", { max: 65535 }),
    tls_cert_file: path("", "TLS certificate; empty serves plain HTTP.", { allowEmpty: true }),
    tls_key_file: path("", "TLS key, set together with tls_cert_file.", { allowEmpty: true }),
    token_ttl: duration("1m", "How long an exec/attach/port-forward URL stays valid."),
  }),

  metrics: section("Prometheus metrics.", {
    address: str(
      "",
      'host:port of the metrics endpoint (keep it on loopback, e.g. "127.0.0.1:9101"); empty disables it.',
      {
        check: (v) =>
          v === "" || /^(\[[^\]]+\]|[^:[\]]*):\d{1,5}$/.test(v)
            ? undefined
            : 'must be host:port, e.g. "127.0.0.1:9101"',
      },
    ),
  }),

  tracing: section("Traces of CRI calls (shown by `berth trace`).", {
    buffer_size: int(256, "How many recent traces berthd keeps in memory for `berth trace`; 0 keeps none.", {
      min: 0,
      max: 100000,
    }),
    otlp_endpoint: str(
      "",
      'OTLP/HTTP (JSON) collector that traces are exported to, e.g. "http://127.0.0.1:4318"; empty: none.',
      { check: (v) => (v === "" || /^https?:\/\/[^/]/.test(v) ? undefined : "must be an http:// or https:// URL") },
    ),
  }),
});

export type BerthConfig = ConfigValue<typeof configSchema>;

export interface ConfigProblem {
  /** Dotted key path, e.g. "grpc.address". */
  key: string;
  problem: string;
}

/** Checks that relate several keys; run after every key is valid on its own. */
export const crossChecks: ((cfg: BerthConfig) => ConfigProblem | undefined)[] = [
  (cfg) =>
    cfg.runtime.handlers[cfg.runtime.default_runtime_name]
      ? undefined
      : {
          key: "runtime.default_runtime_name",
          problem: `no handler named ${JSON.stringify(cfg.runtime.default_runtime_name)} in [runtime.handlers] (have: ${Object.keys(cfg.runtime.handlers).join(", ") || "none"})`,
        },
  (cfg) =>
    (cfg.streaming.tls_cert_file === "") === (cfg.streaming.tls_key_file === "")
      ? undefined
      : { key: "streaming.tls_key_file", problem: "tls_cert_file and tls_key_file must be set together" },
];
