// Publishes task events to containerd (or berthd) by calling
// containerd.services.events.ttrpc.v1.Events/Forward on TTRPC_ADDRESS. Publishing never
// blocks an RPC: events are queued in order and sent by one loop that reconnects and
// retries while the receiver is away (it may be restarting), up to a bounded backlog.
import type { Any } from "../gen/google/protobuf/any.js";
import { EventsDefinition } from "../gen/containerd/services/ttrpc/events/v1/events.js";
import { TtrpcClient, createClient, NAMESPACE_METADATA_KEY } from "../ttrpc/index.js";
import { sleep } from "../util/sleep.js";

export interface EventEncoder<T> {
  encode(message: T): { finish(): Uint8Array };
}

export const Topics = {
  create: "/tasks/create",
  start: "/tasks/start",
  exit: "/tasks/exit",
  oom: "/tasks/oom",
  execAdded: "/tasks/exec-added",
  execStarted: "/tasks/exec-started",
  paused: "/tasks/paused",
  resumed: "/tasks/resumed",
  delete: "/tasks/delete",
  checkpointed: "/tasks/checkpointed",
} as const;

interface Queued {
  namespace: string;
  topic: string;
  event: Any;
  at: number;
}

const MAX_BACKLOG = 10_000;

export interface Publisher {
  publish<T>(namespace: string, topic: string, typeName: string, codec: EventEncoder<T>, event: T): void;
  close(): Promise<void>;
}

export class TtrpcPublisher implements Publisher {
  private readonly queue: Queued[] = [];
  private client: TtrpcClient | undefined;
  private running = false;
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly address: string,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  publish<T>(namespace: string, topic: string, typeName: string, codec: EventEncoder<T>, event: T): void {
    if (!this.address || this.closed) return;
    if (this.queue.length >= MAX_BACKLOG) {
      const dropped = this.queue.shift();
      this.log(`events: backlog full, dropped ${dropped?.topic}`);
    }
    // containerd's typeurl names protobuf messages by their full name.
    this.queue.push({
      namespace,
      topic,
      event: { typeUrl: typeName, value: Buffer.from(codec.encode(event).finish()) },
      at: Date.now(),
    });
    if (!this.running) void this.loop();
  }

  /** Waits (briefly) for queued events to go out, then disconnects. */
  async close(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length > 0 && Date.now() < deadline) await sleep(20);
    this.closed = true;
    this.wake?.();
    this.client?.close();
  }

  get pending(): number {
    return this.queue.length;
  }

  private async loop(): Promise<void> {
    this.running = true;
    let backoff = 100;
    try {
      while (!this.closed && this.queue.length > 0) {
        const ev = this.queue[0]!;
        try {
          if (!this.client || this.client.closed) {
            this.client = await TtrpcClient.connect(this.address, { connectTimeoutMs: 5000 });
            this.client.unref();
          }
          const events = createClient(EventsDefinition, this.client);
          await events.forward(
            {
              envelope: {
                timestamp: { seconds: BigInt(Math.floor(ev.at / 1000)), nanos: (ev.at % 1000) * 1e6 },
                namespace: ev.namespace,
                topic: ev.topic,
                event: ev.event,
              },
            },
            { timeoutMs: 5000, metadata: { [NAMESPACE_METADATA_KEY]: ev.namespace } },
          );
          this.queue.shift();
          backoff = 100;
        } catch (err) {
          this.log(`events: forward ${ev.topic} to ${this.address}: ${(err as Error).message}; retrying`);
          this.client?.close();
          this.client = undefined;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            setTimeout(resolve, backoff).unref();
          });
          this.wake = undefined;
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
