// The two files around a critest run: the committed skip list (test/critest-skip.txt) that
// becomes critest's -ginkgo.skip patterns, and ginkgo's JSON report that says how each spec
// ended.
import { readFileSync } from "node:fs";

export interface SkipEntry {
  /** a regular expression (a spec's full name, regex-escaped) matched against spec names */
  pattern: string;
  /** which feature is missing here, and why */
  reason: string;
}

/**
 * Reads the skip list: each entry is a line `PATTERN | REASON` (the first " | " splits; an
 * escaped name has no bare "|"); blank lines and lines starting with # are comments.
 */
export function readSkipList(path: string): SkipEntry[] {
  const out: SkipEntry[] = [];
  readFileSync(path, "utf8")
    .split("\n")
    .forEach((line, i) => {
      const text = line.trim();
      if (!text || text.startsWith("#")) return;
      const at = text.indexOf(" | ");
      if (at < 0) throw new Error(`${path}:${i + 1}: expected "PATTERN | REASON"`);
      const entry = { pattern: text.slice(0, at).trim(), reason: text.slice(at + 3).trim() };
      if (!entry.reason) throw new Error(`${path}:${i + 1}: an entry needs its reason`);
      new RegExp(entry.pattern); // a broken pattern fails here, not inside critest
      out.push(entry);
    });
  return out;
}

export interface SpecResult {
  /** the full spec name as ginkgo matches -ginkgo.skip against it: containers and leaf, space-joined */
  name: string;
  state: string;
  /** the failure or skip message, whitespace-collapsed */
  message: string;
  /** where it failed (file:line) */
  location: string;
  seconds: number;
}

interface GinkgoSpecReport {
  ContainerHierarchyTexts?: string[] | null;
  LeafNodeText?: string;
  LeafNodeType?: string;
  State?: string;
  RunTime?: number;
  Failure?: { Message?: string; Location?: { FileName?: string; LineNumber?: number } };
}

/** The It specs of a ginkgo JSON report (-ginkgo.json-report), and suite-level nodes that did not pass. */
export function readReport(path: string): { specs: SpecResult[]; suiteProblems: SpecResult[] } {
  const suites = JSON.parse(readFileSync(path, "utf8")) as { SpecReports?: GinkgoSpecReport[] | null }[];
  const specs: SpecResult[] = [];
  const suiteProblems: SpecResult[] = [];
  for (const suite of suites) {
    for (const s of suite.SpecReports ?? []) {
      const r: SpecResult = {
        name: [...(s.ContainerHierarchyTexts ?? []), s.LeafNodeText ?? ""].filter(Boolean).join(" "),
        state: s.State ?? "unknown",
        message: (s.Failure?.Message ?? "").replace(/\s+/g, " ").trim(),
        location: s.Failure?.Location?.FileName
          ? `${s.Failure.Location.FileName.replace(/^.*\/cri-tools@[^/]+\//, "")}:${s.Failure.Location.LineNumber}`
          : "",
        seconds: (s.RunTime ?? 0) / 1e9,
      };
      if (s.LeafNodeType === "It") specs.push(r);
      else if (r.state !== "passed" && r.state !== "skipped") suiteProblems.push({ ...r, name: s.LeafNodeType ?? "?" });
    }
  }
  specs.sort((a, b) => a.name.localeCompare(b.name));
  return { specs, suiteProblems };
}

/** Whether a spec is on the skip list (ginkgo skips a spec when any pattern matches its name). */
export function listedIn(list: SkipEntry[], name: string): SkipEntry | undefined {
  return list.find((e) => new RegExp(e.pattern).test(name));
}
