// docs/call-chain.svg from `berth trace -o json` spans: one timeline per CRI call, each span a
// bar at its offset from the call's start (each call on its own scale, given in its title),
// coloured by the hop it belongs to: the CRI gRPC call, berthd's own work, the ttrpc call to
// the shim, the OCI runtime command the shim ran.
const W = 960;
const LABEL = 360;
const ROW = 16;
const COLORS = { cri: "#3465a4", ttrpc: "#f57900", oci: "#4e9a06", berthd: "#888a85" };

function layer(name) {
  if (name.startsWith("runtime.v1.")) return "cri";
  if (name.startsWith("ttrpc ")) return "ttrpc";
  if (/^(runc|crun|runsc)\b/.test(name)) return "oci";
  return "berthd";
}

const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const ms = (ns) => (ns >= 1e9 ? `${(ns / 1e9).toFixed(2)} s` : `${(ns / 1e6).toFixed(1)} ms`);

/** calls: [{ method, spans: [{ spanId, parentSpanId, name, startTime, durationNanos }] }] */
export function renderSvg(calls) {
  const out = [];
  let y = 30;
  for (const call of calls) {
    const root = call.spans[0];
    const t0 = Number(root.startTime);
    const total = Math.max(1, Number(root.durationNanos));
    const kids = new Map();
    for (const s of call.spans.slice(1)) kids.set(s.parentSpanId, [...(kids.get(s.parentSpanId) ?? []), s]);
    const rows = [];
    const walk = (s, d) => {
      rows.push([s, d]);
      for (const k of kids.get(s.spanId) ?? []) walk(k, d + 1);
    };
    walk(root, 0);
    out.push(`<text x="4" y="${y}" font-weight="bold">crictl ${esc(call.method)}: ${ms(total)}</text>`);
    y += 6;
    for (const [s, d] of rows) {
      const x = LABEL + ((Number(s.startTime) - t0) / total) * (W - LABEL - 70);
      const w = Math.max(1, (Math.max(0, Number(s.durationNanos)) / total) * (W - LABEL - 70));
      out.push(
        `<text x="${8 + d * 10}" y="${y + 11}">${esc(s.name.length > 52 - d * 2 ? s.name.slice(0, 50 - d * 2) + "…" : s.name)}</text>`,
        `<rect x="${x.toFixed(1)}" y="${y + 2}" width="${w.toFixed(1)}" height="${ROW - 5}" fill="${COLORS[layer(s.name)]}"/>`,
        `<text x="${(x + w + 3).toFixed(1)}" y="${y + 11}" fill="#555">${ms(Number(s.durationNanos))}</text>`,
      );
      y += ROW;
    }
    y += 22;
  }
  let lx = 4;
  const legend = Object.entries({
    cri: "CRI gRPC call",
    berthd: "berthd's own work",
    ttrpc: "ttrpc call to the shim",
    oci: "OCI runtime command",
  })
    .map(([k, v]) => {
      const item = `<rect x="${lx}" y="4" width="10" height="10" fill="${COLORS[k]}"/><text x="${lx + 14}" y="13">${v}</text>`;
      lx += 14 + v.length * 7 + 20;
      return item;
    })
    .join("");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    legend,
    ...out,
    `</svg>`,
    "",
  ].join("\n");
}
