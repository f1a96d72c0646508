// The benchmark table: each row is berth's figure beside its floor (and a compared runtime's
// figure when one is given), with ratios. Printed as text, written as JSON or as an SVG chart.
import { writeFileSync } from "node:fs";

export interface Row {
  metric: string;
  unit: string;
  /** true for times and memory, false for throughput */
  lowerIsBetter: boolean;
  berth: number | null;
  floor: number | null;
  /** what the floor is, e.g. "runc run -d" */
  floorWhat: string;
  compare?: number | null;
}

/** How many times the reference's cost berth's figure is (>1: berth is slower or bigger). */
export function ratio(row: Row, ref: number | null | undefined): number | null {
  if (
    row.berth === null ||
    ref === null ||
    ref === undefined ||
    !Number.isFinite(row.berth) ||
    !Number.isFinite(ref) ||
    ref === 0 ||
    row.berth === 0
  )
    return null;
  return row.lowerIsBetter ? row.berth / ref : ref / row.berth;
}

const fmt = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "-";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
};
const fmtRatio = (v: number | null): string => (v === null ? "-" : `${v.toFixed(2)}x`);

export function table(rows: Row[], compareName?: string): string {
  const head = ["metric", "unit", "berth", "floor", "floor is", "berth/floor"];
  if (compareName) head.push(compareName, `berth/${compareName}`);
  const body = rows.map((r) => {
    const cells = [r.metric, r.unit, fmt(r.berth), fmt(r.floor), r.floorWhat, fmtRatio(ratio(r, r.floor))];
    if (compareName) cells.push(fmt(r.compare), fmtRatio(ratio(r, r.compare)));
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i >= 2 && i !== 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  const sep = `|${widths.map((w, i) => (i >= 2 && i !== 4 ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(head), sep, ...body.map(line)].join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A horizontal bar chart: per row, bars for berth, the floor and the compared runtime, scaled to the row's largest. */
export function svg(rows: Row[], title: string, compareName?: string): string {
  const series: { key: "berth" | "floor" | "compare"; label: string; color: string }[] = [
    { key: "berth", label: "berth", color: "#2b6cb0" },
    { key: "floor", label: "floor", color: "#a0aec0" },
  ];
  if (compareName) series.push({ key: "compare", label: compareName, color: "#dd6b20" });
  const barH = 14;
  const rowH = series.length * (barH + 2) + 14;
  const left = 330;
  const width = 900;
  const barMax = width - left - 110;
  const top = 50;
  const height = top + rows.length * rowH + 20;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  series.forEach((s, i) => {
    out.push(
      `<rect x="${left + i * 130}" y="30" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${left + i * 130 + 16}" y="40">${esc(s.label)}</text>`,
    );
  });
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const vals = series.map((s) => r[s.key] ?? null);
    const max = Math.max(...vals.map((v) => (v !== null && Number.isFinite(v) ? v : 0)));
    out.push(`<text x="10" y="${y + barH}">${esc(`${r.metric} (${r.unit})`)}</text>`);
    const rf = ratio(r, r.floor);
    if (rf !== null)
      out.push(
        `<text x="10" y="${y + 2 * barH + 2}" fill="#555">${esc(`${rf.toFixed(2)}x floor (${r.floorWhat})`)}</text>`,
      );
    series.forEach((s, j) => {
      const v = vals[j];
      const by = y + j * (barH + 2);
      if (v === null || !Number.isFinite(v)) return;
      const w = max > 0 ? Math.max(1, (v / max) * barMax) : 1;
      out.push(
        `<rect x="${left}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${s.color}"/>`,
        `<text x="${left + w + 4}" y="${by + barH - 3}">${fmt(v)}</text>`,
      );
    });
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

export function writeJson(file: string, data: unknown): void {
  writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
}
