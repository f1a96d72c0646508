// Image references as Docker and containerd spell them (distribution/reference grammar):
//   [domain[:port]/]path[:tag][@digest]
// A first component is a registry domain when it contains "." or ":" or is "localhost"
// (or a bracketed IPv6 address); otherwise the domain is docker.io, where one-component
// names live under library/. No tag and no digest means :latest.
import { InvalidArgumentError } from "../util/errors.js";

export interface ImageReference {
  /** registry host, with port: "docker.io", "127.0.0.1:5000", "[::1]:5000" */
  domain: string;
  /** repository path inside the registry: "library/busybox" */
  path: string;
  tag?: string;
  /** "sha256:<hex>" */
  digest?: string;
}

const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagRe = /^[\w][\w.-]{0,127}$/;
const digestRe = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const sha256Re = /^sha256:[a-f0-9]{64}$/;
const domainRe =
  /^(?:localhost|\[[a-fA-F0-9:.%]+\]|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*)(?::[0-9]+)?$/;

/** Parses and normalises a reference: "busybox" -> docker.io/library/busybox:latest. */
export function parseReference(input: string): ImageReference {
  const bad = (why: string) => new InvalidArgumentError(`invalid image reference ${JSON.stringify(input)}: ${why}`);
  let rest = input.trim();
  if (!rest) throw bad("empty");
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestRe.test(digest)) throw bad(`malformed digest ${JSON.stringify(digest)}`);
    if (digest.startsWith("sha256:") && !sha256Re.test(digest))
      throw bad("a sha256 digest has 64 lowercase hex digits");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagRe.test(tag)) throw bad(`malformed tag ${JSON.stringify(tag)}`);
  }
  let domain = "docker.io";
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("[")) {
      domain = first;
      path = rest.slice(slash + 1);
      if (!domainRe.test(domain)) throw bad(`malformed registry host ${JSON.stringify(domain)}`);
    }
  }
  if (domain === "index.docker.io" || domain === "registry-1.docker.io") domain = "docker.io";
  if (domain === "docker.io" && !path.includes("/")) path = `library/${path}`;
  if (!path) throw bad("empty repository name");
  for (const c of path.split("/")) {
    if (!pathComponent.test(c)) {
      throw bad(
        c.toLowerCase() !== c
          ? "repository name must be lowercase"
          : `invalid repository path component ${JSON.stringify(c)}`,
      );
    }
  }
  if (domain.length + 1 + path.length > 255) throw bad("name longer than 255 characters");
  if (!tag && !digest) tag = "latest";
  return { domain, path, tag, digest };
}

/** "docker.io/library/busybox" */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalised string: repo:tag, repo@digest or repo:tag@digest. */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** "repo:tag" name for the metadata store, or undefined when the reference has no tag. */
export function tagName(ref: ImageReference): string | undefined {
  return ref.tag ? `${repositoryName(ref)}:${ref.tag}` : undefined;
}

export function digestName(ref: ImageReference, digest: string): string {
  return `${repositoryName(ref)}@${digest}`;
}

export function isDigest(s: string): boolean {
  return sha256Re.test(s);
}
