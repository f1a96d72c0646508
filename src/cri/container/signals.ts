// Stop signals as the CRI and images name them ("SIGTERM", "TERM", "15", the CRI Signal enum).
import { constants as osConstants } from "node:os";
import { InvalidArgumentError } from "../../util/errors.js";

/** A signal number -> its name (SIGTERM when unknown). */
function nameOfNumber(sig: number): string {
  const names = Object.entries(osConstants.signals).find(([, n]) => n === sig);
  return names ? names[0] : "SIGTERM";
}

/** "SIGTERM", "TERM" or "15" -> "SIGTERM". */
export function signalName(s: string): string {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) return nameOfNumber(Number(t));
  const name = t.startsWith("SIG") ? t : `SIG${t}`;
  if (!(name in osConstants.signals)) throw new InvalidArgumentError(`unknown stop signal ${JSON.stringify(s)}`);
  return name;
}

export function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 15;
}
