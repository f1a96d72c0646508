// One connected NRI plugin, runtime side (containerd/nri pkg/adaptation plugin.go): the
// multiplexed socket, a ttrpc client of the plugin's Plugin service (logical connection 1) and
// a ttrpc server of berthd's Runtime service (connection 2). A plugin connects, registers
// (RegisterPlugin, within the registration timeout), is configured (Configure answers the
// events it subscribes to), and is then synchronized and added to the running set by the
// adaptation (adaptation.ts).
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";

import {
  type ConfigureResponse,
  Event,
  PluginDefinition,
  type RegisterPluginRequest,
  RuntimeDefinition,
  type UpdateContainersRequest,
  type UpdateContainersResponse,
} from "../gen/nri/api.js";
import { type ServiceClient, TtrpcClient, TtrpcServer, createClient } from "../ttrpc/index.js";
import {
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  UnavailableError,
  UnimplementedError,
} from "../util/errors.js";
import type { Logger } from "../util/log.js";
import { Multiplexer, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from "./mux.js";

/** The NRI protocol version berth speaks (the api.proto it carries). */
export const NRI_VERSION = "v0.12.3";

/** Every event a plugin may subscribe to: bits 1..VALIDATE_CONTAINER_ADJUSTMENT. */
export const VALID_EVENTS = (1 << (Event.LAST - 1)) - 1;

/** The bit of `event` in a ConfigureResponse's event mask (event n is bit n-1, as NRI's EventMask). */
export function eventBit(event: Event): number {
  return 1 << (event - 1);
}

export interface PluginOptions {
  runtimeName: string;
  runtimeVersion: string;
  registrationTimeoutMs: number;
  requestTimeoutMs: number;
  log: Logger;
}

/** Checks a registering plugin's name and index as NRI does (CheckPluginName, CheckPluginIndex). */
export function checkPluginIdentity(name: string, idx: string): void {
  if (!/^[a-zA-Z0-9_.+-]+$/.test(name))
    throw new InvalidArgumentError(`invalid NRI plugin name ${JSON.stringify(name)}: want [a-zA-Z0-9_.+-]+`);
  if (!/^[0-9]{2}$/.test(idx))
    throw new InvalidArgumentError(`invalid NRI plugin index ${JSON.stringify(idx)}: want two digits`);
}

/** Events: 'close', once, when the connection is gone (closed by either side). */
export class NriPlugin extends EventEmitter<{ close: [] }> {
  name = "";
  idx = "";
  /** The events the plugin subscribed to (an NRI EventMask). */
  events = 0;
  readonly api: ServiceClient<typeof PluginDefinition>;
  private readonly mux: Multiplexer;
  private readonly client: TtrpcClient;
  private readonly server: TtrpcServer;
  private registered: ((err?: Error) => void) | undefined;
  private isClosed = false;

  constructor(
    trunk: Duplex,
    private readonly opts: PluginOptions,
  ) {
    super();
    this.mux = new Multiplexer(trunk);
    this.client = new TtrpcClient(this.mux.open(PLUGIN_SERVICE_CONN), "nri plugin");
    this.api = createClient(PluginDefinition, this.client);
    this.server = new TtrpcServer();
    this.server.register(RuntimeDefinition, {
      registerPlugin: async (req: RegisterPluginRequest) => this.onRegister(req),
      updateContainers: async (_req: UpdateContainersRequest): Promise<UpdateContainersResponse> => {
        // Unsolicited updates need a plugin-driven UpdateContainerResources; refused loudly
        // rather than acknowledged and dropped.
        throw new UnimplementedError(
          `NRI plugin ${this.label}: unsolicited UpdateContainers is not supported by berth`,
        );
      },
    });
    this.server.serveSocket(this.mux.open(RUNTIME_SERVICE_CONN));
    this.client.on("close", () => this.close());
  }

  /** "00-name", as NRI names plugins (index first: the order plugins are called in). */
  get label(): string {
    return this.name ? `${this.idx}-${this.name}` : "(unregistered)";
  }

  get closed(): boolean {
    return this.isClosed;
  }

  subscribed(event: Event): boolean {
    return (this.events & eventBit(event)) !== 0;
  }

  /** Waits for RegisterPlugin, then configures the plugin; closes it and throws on failure. */
  async handshake(): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new DeadlineExceededError(`NRI plugin did not register within ${this.opts.registrationTimeoutMs}ms`),
            ),
          this.opts.registrationTimeoutMs,
        );
        const onClose = () => reject(new UnavailableError("NRI plugin closed its connection before registering"));
        this.once("close", onClose);
        this.registered = (err) => {
          clearTimeout(timer);
          this.off("close", onClose);
          if (err) reject(err);
          else resolve();
        };
      });
      const rpl: ConfigureResponse = await this.api.configure(
        {
          config: "",
          runtimeName: this.opts.runtimeName,
          runtimeVersion: this.opts.runtimeVersion,
          registrationTimeout: BigInt(this.opts.registrationTimeoutMs),
          requestTimeout: BigInt(this.opts.requestTimeoutMs),
          NRIVersion: NRI_VERSION,
        },
        { timeoutMs: this.opts.requestTimeoutMs },
      );
      if (rpl.events & ~VALID_EVENTS)
        throw new InvalidArgumentError(
          `NRI plugin ${this.label} subscribed to unknown events 0x${rpl.events.toString(16)}`,
        );
      // No events named means all of them, as in NRI.
      this.events = rpl.events === 0 ? VALID_EVENTS : rpl.events;
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private onRegister(req: RegisterPluginRequest): Record<string, never> {
    const done = this.registered;
    if (!done) throw new FailedPreconditionError(`NRI plugin ${this.label} is already registered`);
    this.registered = undefined;
    try {
      checkPluginIdentity(req.pluginName, req.pluginIdx);
    } catch (err) {
      // The refusal ends the handshake, which closes the connection: after this answer went
      // out (it is written once the handler's rejection is handled), so the plugin learns why.
      setImmediate(() => done(err as Error));
      throw err;
    }
    this.name = req.pluginName;
    this.idx = req.pluginIdx;
    this.opts.log.info({ plugin: this.label, nriVersion: req.NRIVersion || "unknown" }, "NRI plugin registered");
    done();
    return {};
  }

  /** Closes the connection (idempotent); 'close' fires once. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.mux.close();
    this.client.close();
    void this.server.close({ timeoutMs: 0 }).catch(() => {});
    this.emit("close");
  }
}
