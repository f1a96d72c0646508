// Image commands: pull, images, rmi, load, save, import.
import { status as Code } from "@grpc/grpc-js";
import type { Command } from "commander";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import type { Readable, Writable } from "node:stream";
import {
  ArchiveChunk,
  ImportImageRequest,
  PullImageRequest,
  type PullImageProgress,
} from "../../gen/berth/v1/berth.js";
import { Image as ImageMsg, type Image } from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE, isCode } from "../errors.js";
import { emit, humanSize, parseFormat, shortId } from "../output.js";
import { plainProgress, ttyProgress, type ProgressView } from "../progress.js";
import { findImage } from "../resolve.js";

const CHUNK = 1024 * 1024;

export interface PullResult {
  id: string;
  ref: string;
}

/** Splits "registry/repo:tag" into its repository and tag ("<none>" when it has none). */
export function splitRepoTag(name: string): { repo: string; tag: string } {
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  if (colon > slash) return { repo: name.slice(0, colon), tag: name.slice(colon + 1) };
  return { repo: name, tag: "<none>" };
}

/**
 * Pulls `ref` through berth.v1.Berth/PullImage, drawing progress on `out` (bars on a terminal,
 * lines otherwise, nothing when quiet). Falls back to the CRI's PullImage (no progress) when
 * the daemon lacks the berth service's pull.
 */
export async function pullImage(
  c: Clients,
  ref: string,
  opts: { out: NodeJS.WriteStream; quiet?: boolean; platform?: string; user?: string; password?: string },
): Promise<PullResult> {
  const req = PullImageRequest.fromPartial({
    image: ref,
    platform: opts.platform ?? "",
    username: opts.user ?? "",
    password: opts.password ?? "",
  });
  const call = c.berth.pullImage(req);
  const view: ProgressView | undefined = opts.quiet
    ? undefined
    : opts.out.isTTY
      ? ttyProgress(opts.out, ref)
      : plainProgress(opts.out);
  const onSigint = () => {
    call.cancel();
    view?.stop();
    process.stderr.write("\npull cancelled\n");
    process.exit(130);
  };
  process.once("SIGINT", onSigint);
  let done: PullImageProgress | undefined;
  try {
    for await (const ev of call as AsyncIterable<PullImageProgress>) {
      if (ev.status === "done") done = ev;
      else view?.event(ev);
    }
  } catch (err) {
    view?.stop();
    if (isCode(err, Code.UNIMPLEMENTED) && /PullImage/.test(String(err))) {
      // An older or partial berthd: pull through the CRI, without progress.
      if (!opts.quiet) opts.out.write(`Pulling ${ref} (no progress from this daemon)...\n`);
      const r = await c.img.pullImage(
        { image: { image: ref }, auth: opts.user ? { username: opts.user, password: opts.password ?? "" } : undefined },
        { timeoutMs: 60 * 60_000 },
      );
      return { id: r.imageRef, ref };
    }
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
  }
  view?.stop();
  if (!done) throw new CliError(`pull of ${ref} ended without a result`);
  return { id: done.imageId, ref: done.imageRef || ref };
}

interface ImageRow {
  image: Image;
  repo: string;
  tag: string;
  digest: string;
}

/** One row per tag (one "<none>" row for an untagged image), as docker images shows them. */
function imageRows(images: Image[]): ImageRow[] {
  return images.flatMap((image) => {
    const names = image.repoTags.length > 0 ? image.repoTags : [""];
    return names.map((n) => {
      const { repo, tag } = n ? splitRepoTag(n) : { repo: "<none>", tag: "<none>" };
      const d = image.repoDigests.find((x) => x.startsWith(`${repo}@`)) ?? image.repoDigests[0] ?? "";
      return { image, repo, tag, digest: d.includes("@") ? d.slice(d.indexOf("@") + 1) : "<none>" };
    });
  });
}

function writeArchive(source: Readable, to: string | undefined): Promise<void> {
  const out: Writable = to && to !== "-" ? createWriteStream(to) : process.stdout;
  return pipeline(source, out, { end: out !== process.stdout });
}

export function registerImageCommands(program: Command): void {
  program
    .command("pull")
    .description("Pull an image from a registry, showing per-layer progress")
    .argument("<image>", "image reference, e.g. busybox or 127.0.0.1:5000/app:1")
    .option("-q, --quiet", "print only the image id")
    .option("--platform <os/arch>", "pull for this platform instead of the node's")
    .option("--user <user:password>", "registry credentials")
    .addHelpText(
      "after",
      `
Examples:
  berth pull busybox
  berth pull 127.0.0.1:5000/app:1.2
  berth pull -q --platform linux/arm64 alpine:3.20
  berth pull --user alice:secret registry.example.com/team/app

On a terminal each layer gets a live bar with bytes and speed, plus a total.
When stdout is a pipe or file, one plain line per layer and phase is printed instead.`,
    )
    .action(async (image: string, opts: { quiet?: boolean; platform?: string; user?: string }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      const [user, ...pw] = (opts.user ?? "").split(":");
      const r = await pullImage(c, image, {
        out: process.stdout,
        quiet: opts.quiet,
        platform: opts.platform,
        user,
        password: pw.join(":"),
      });
      if (opts.quiet) process.stdout.write(`${r.id}\n`);
      else process.stdout.write(`Image: ${r.id}\nPulled ${r.ref}\n`);
    });

  program
    .command("images")
    .alias("image-ls")
    .description("List images")
    .argument("[reference]", "only images this name, id or digest matches")
    .option("-q, --quiet", "only image ids")
    .option("--digests", "show digests")
    .option("--no-trunc", "show full image ids")
    .option("-o, --output <format>", "json or yaml (default: a table)")
    .addHelpText(
      "after",
      `
Examples:
  berth images
  berth images busybox
  berth images -q
  berth images --output json | jq '.[].repoTags'`,
    )
    .action(
      async (
        reference: string | undefined,
        opts: { quiet?: boolean; digests?: boolean; trunc: boolean; output?: string },
        cmd: Command,
      ) => {
        parseFormat(opts.output);
        const { c } = ctxOf(cmd);
        const { images } = await c.img.listImages(reference ? { filter: { image: { image: reference } } } : {});
        images.sort((a, b) => (a.repoTags[0] ?? "~").localeCompare(b.repoTags[0] ?? "~"));
        if (opts.quiet) {
          for (const id of new Set(images.map((i) => (opts.trunc ? shortId(i.id) : i.id))))
            process.stdout.write(`${id}\n`);
          return;
        }
        if (opts.output)
          return emit(images, opts, { headers: [], row: () => [], id: (i) => i.id, data: (i) => ImageMsg.toJSON(i) });
        emit(imageRows(images), opts, {
          headers: ["REPOSITORY", "TAG", ...(opts.digests ? ["DIGEST"] : []), "IMAGE ID", "SIZE"],
          row: (r) => [
            r.repo,
            r.tag,
            ...(opts.digests ? [r.digest] : []),
            opts.trunc ? shortId(r.image.id) : r.image.id,
            humanSize(r.image.size),
          ],
          id: (r) => r.image.id,
        });
      },
    );

  program
    .command("rmi")
    .description("Remove one or more images")
    .argument("<image...>", "names, ids or digests")
    .option("-f, --force", "do not fail when an image does not exist")
    .addHelpText(
      "after",
      `
Examples:
  berth rmi busybox
  berth rmi 3f57d9401f8d
  berth rmi $(berth images -q)`,
    )
    .action(async (refs: string[], opts: { force?: boolean }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      let failed = 0;
      for (const ref of refs) {
        const img = await findImage(c, ref);
        if (!img) {
          if (!opts.force) {
            process.stderr.write(`berth: no such image: ${ref}\n`);
            failed++;
          }
          continue;
        }
        await c.img.removeImage({ image: { image: ref } });
        process.stdout.write(`Deleted: ${ref === img.id || img.id.includes(ref) ? img.id : ref}\n`);
      }
      if (failed) process.exitCode = 1;
    });

  program
    .command("load")
    .description("Load images from a `docker save` archive or an OCI image layout tar")
    .option("-i, --input <file>", "read from a file instead of stdin")
    .option("-q, --quiet", "print only the loaded names")
    .addHelpText(
      "after",
      `
Examples:
  berth load -i busybox.tar
  docker save busybox | berth load
  skopeo copy docker://busybox oci-archive:bb.tar && berth load -i bb.tar`,
    )
    .action(async (opts: { input?: string; quiet?: boolean }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      const source: Readable = opts.input && opts.input !== "-" ? createReadStream(opts.input) : process.stdin;
      if (source === process.stdin && process.stdin.isTTY) {
        throw new CliError(
          "berth load reads an archive from stdin, which is a terminal",
          "give a file with -i FILE or redirect one: berth load < images.tar",
          EXIT_USAGE,
        );
      }
      const names = await new Promise<string[]>((resolve, reject) => {
        const call = c.berth.loadImages((err, res) => (err ? reject(err) : resolve(res!.images)));
        void (async () => {
          try {
            for await (const chunk of source as AsyncIterable<Buffer>) {
              for (let off = 0; off < chunk.length; off += CHUNK) {
                if (!call.write(ArchiveChunk.fromPartial({ data: chunk.subarray(off, off + CHUNK) }))) {
                  await new Promise((r) => call.once("drain", r));
                }
              }
            }
            call.end();
          } catch (err) {
            call.cancel();
            reject(err);
          }
        })();
      });
      for (const n of names) process.stdout.write(opts.quiet ? `${n}\n` : `Loaded image: ${n}\n`);
    });

  program
    .command("save")
    .description("Write images to a tar archive (docker-archive or OCI layout)")
    .argument("<image...>", "names, ids or digests")
    .option("-o, --output <file>", "write to a file instead of stdout")
    .option("--format <format>", "docker (a `docker save` archive) or oci (an OCI image layout)", "docker")
    .addHelpText(
      "after",
      `
Examples:
  berth save -o busybox.tar busybox
  berth save --format oci busybox alpine > images.tar`,
    )
    .action(async (images: string[], opts: { output?: string; format: string }, cmd: Command) => {
      if (opts.format !== "docker" && opts.format !== "oci") {
        throw new CliError(`--format must be docker or oci, not ${JSON.stringify(opts.format)}`, undefined, EXIT_USAGE);
      }
      if ((!opts.output || opts.output === "-") && process.stdout.isTTY) {
        throw new CliError(
          "refusing to write an archive to a terminal",
          "use -o FILE or redirect stdout: berth save busybox > busybox.tar",
          EXIT_USAGE,
        );
      }
      const { c } = ctxOf(cmd);
      const call = c.berth.saveImages({ images, format: opts.format });
      const { Readable } = await import("node:stream");
      const bytes = Readable.from(
        (async function* () {
          for await (const m of call as AsyncIterable<ArchiveChunk>) yield m.data;
        })(),
      );
      await writeArchive(bytes, opts.output);
    });

  program
    .command("import")
    .description("Create an image from a filesystem tarball (like `docker import`)")
    .argument("<file>", "a tar of a root filesystem, or - for stdin")
    .argument("[reference]", "name for the new image, e.g. myroot:1")
    .option(
      "-c, --change <instruction>",
      "apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)",
      collect,
    )
    .addHelpText(
      "after",
      `
Examples:
  berth import rootfs.tar myroot:1
  tar -C ./rootfs -c . | berth import - myroot:latest
  berth import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' rootfs.tar`,
    )
    .action(async (file: string, reference: string | undefined, opts: { change?: string[] }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      const source: Readable = file === "-" ? process.stdin : createReadStream(file);
      const res = await new Promise<{ imageId: string; imageRef: string }>((resolve, reject) => {
        const call = c.berth.importImage((err, r) => (err ? reject(err) : resolve(r!)));
        void (async () => {
          try {
            call.write(ImportImageRequest.fromPartial({ reference: reference ?? "", changes: opts.change ?? [] }));
            for await (const chunk of source as AsyncIterable<Buffer>) {
              for (let off = 0; off < chunk.length; off += CHUNK) {
                if (!call.write(ImportImageRequest.fromPartial({ data: chunk.subarray(off, off + CHUNK) }))) {
                  await new Promise((r) => call.once("drain", r));
                }
              }
            }
            call.end();
          } catch (err) {
            call.cancel();
            reject(err);
          }
        })();
      });
      process.stdout.write(`${res.imageId}\n`);
    });
}

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
