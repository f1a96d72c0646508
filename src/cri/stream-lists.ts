// The Stream* list RPCs of cri-api 1.36 (StreamPodSandboxes, StreamContainers,
// StreamContainerStats, StreamPodSandboxStats, StreamPodSandboxMetrics, StreamImages): the same
// items, with the same filters, as their unary List* counterparts, sent as a server stream of
// chunks so that no single message has to hold a node's whole list (the unary ones fail past
// the gRPC message size limit). They are built over the unary handlers, so a filter means
// exactly what it means for the List call, and they are present only where the List is.
import type { CallContext, ImageHandlers, CriMethodHandlers, StreamContext } from "./handlers.js";

/**
 * Items per message. containerd 2.4 sends its lists in chunks of this order too; what matters
 * to kubelet is only that each message stays far below the 16 MiB limit (a Container is under
 * 2 KiB, a stats entry under 4 KiB, a pod's metrics a few KiB).
 */
export const STREAM_CHUNK = 100;

/** Splits `items` into chunks of at most `size`; an empty list is one empty chunk, so the stream says "none". */
export function chunks<T>(items: T[], size = STREAM_CHUNK): T[][] {
  if (items.length === 0) return [[]];
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function sendAll<T, M>(items: T[], ctx: StreamContext<M>, wrap: (chunk: T[]) => M): Promise<void> {
  for (const c of chunks(items)) {
    if (ctx.signal.aborted) return;
    await ctx.send(wrap(c));
  }
}

/** The unary handlers read only what CallContext has; the call object is not theirs to use. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const asUnary = (ctx: CallContext) => ctx as any;

export function streamListHandlers(
  runtime: Partial<CriMethodHandlers>,
  image: Partial<ImageHandlers>,
): {
  runtime: Partial<CriMethodHandlers>;
  image: Partial<ImageHandlers>;
} {
  const r: Partial<CriMethodHandlers> = {};
  const i: Partial<ImageHandlers> = {};
  const { listPodSandbox, listContainers, listContainerStats, listPodSandboxStats, listPodSandboxMetrics } = runtime;
  const { listImages } = image;
  if (listPodSandbox)
    r.streamPodSandboxes = async (req, ctx) =>
      sendAll((await listPodSandbox({ filter: req.filter }, asUnary(ctx))).items, ctx, (podSandboxes) => ({
        podSandboxes,
      }));
  if (listContainers)
    r.streamContainers = async (req, ctx) =>
      sendAll((await listContainers({ filter: req.filter }, asUnary(ctx))).containers, ctx, (containers) => ({
        containers,
      }));
  if (listContainerStats)
    r.streamContainerStats = async (req, ctx) =>
      sendAll((await listContainerStats({ filter: req.filter }, asUnary(ctx))).stats, ctx, (containerStats) => ({
        containerStats,
      }));
  if (listPodSandboxStats)
    r.streamPodSandboxStats = async (req, ctx) =>
      sendAll((await listPodSandboxStats({ filter: req.filter }, asUnary(ctx))).stats, ctx, (podSandboxStats) => ({
        podSandboxStats,
      }));
  if (listPodSandboxMetrics)
    r.streamPodSandboxMetrics = async (_req, ctx) =>
      sendAll((await listPodSandboxMetrics({}, asUnary(ctx))).podMetrics, ctx, (podSandboxMetrics) => ({
        podSandboxMetrics,
      }));
  if (listImages)
    i.streamImages = async (req, ctx) =>
      sendAll((await listImages({ filter: req.filter }, asUnary(ctx))).images, ctx, (images) => ({ images }));
  return { runtime: r, image: i };
}
