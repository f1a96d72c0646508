// Container stop signals (KEP-4960): the CRI `Signal` enum <-> Linux signal names and numbers.
//
// The CRI enum names every Linux signal, aliases included (SIGCLD, SIGIOT, SIGPOLL) and the
// real-time ones as glibc numbers them (SIGRTMIN is 34, since glibc keeps 32 and 33 for itself;
// SIGRTMIN+n and SIGRTMAX-n as in `kill -l`). Node's os.constants.signals has neither the
// aliases nor the real-time signals, so the table is the project's own.
//
// Precedence, as the KEP and containerd 2.3+ define it: the container config's stop_signal,
// then the image's STOPSIGNAL, then SIGTERM. The effective one is what ContainerStatus reports.
import { Signal, signalToJSON } from "../gen/cri/runtime/v1/api.js";
import { InvalidArgumentError } from "../util/errors.js";

const SIGRTMIN = 34;
const SIGRTMAX = 64;

/** Linux numbers of the classic (non real-time) signals, aliases included. */
const CLASSIC: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGIOT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPOLL: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** Aliases never chosen as the canonical name of a number. */
const ALIASES = new Set(["SIGIOT", "SIGCLD", "SIGPOLL"]);

/** Linux number of a signal name as berth stores it ("SIGUSR1", "SIGRTMIN+3", "SIGRTMAX-2"). */
export function signalNumber(name: string): number {
  const n = CLASSIC[name];
  if (n !== undefined) return n;
  const rt = /^SIGRT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const base = rt[1] === "MIN" ? SIGRTMIN : SIGRTMAX;
    const off = rt[3] === undefined ? 0 : Number(rt[3]) * (rt[2] === "+" ? 1 : -1);
    const v = base + off;
    if (v >= SIGRTMIN && v <= SIGRTMAX && (rt[1] === "MIN" ? off >= 0 : off <= 0)) return v;
  }
  throw new InvalidArgumentError(`unknown signal ${JSON.stringify(name)}`);
}

/** The canonical name of a Linux signal number (1..31, 34..64; 32 and 33 are glibc-internal). */
export function signalNameOf(num: number): string {
  for (const [name, n] of Object.entries(CLASSIC)) if (n === num && !ALIASES.has(name)) return name;
  if (num >= SIGRTMIN && num <= SIGRTMAX) {
    // `kill -l` style: the lower half from SIGRTMIN, the upper half from SIGRTMAX.
    const fromMin = num - SIGRTMIN;
    const fromMax = SIGRTMAX - num;
    if (fromMin === 0) return "SIGRTMIN";
    if (fromMax === 0) return "SIGRTMAX";
    return fromMin <= 15 ? `SIGRTMIN+${fromMin}` : `SIGRTMAX-${fromMax}`;
  }
  throw new InvalidArgumentError(`unknown signal number ${num}`);
}

/**
 * "SIGTERM", "term", "15", "RTMIN+3" (an image's STOPSIGNAL, in any of Docker's spellings) ->
 * the canonical name; InvalidArgumentError for anything else.
 */
export function parseSignal(s: string): string {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n < 1 || n > SIGRTMAX) throw new InvalidArgumentError(`unknown signal ${JSON.stringify(s)}`);
    return signalNameOf(n);
  }
  const name = t.startsWith("SIG") ? t : `SIG${t}`;
  try {
    signalNumber(name);
  } catch {
    throw new InvalidArgumentError(`unknown signal ${JSON.stringify(s)}`);
  }
  // Aliases and spellings of a real-time signal ("SIGRTMAX-30") collapse to one canonical name.
  return ALIASES.has(name) ? name : signalNameOf(signalNumber(name));
}

/** CRI enum -> signal name ("SIGNAL_SIGRTMINPLUS3" -> "SIGRTMIN+3"); undefined for RUNTIME_DEFAULT. */
export function signalFromCri(sig: Signal): string | undefined {
  if (sig === Signal.SIGNAL_RUNTIME_DEFAULT) return undefined;
  const json = signalToJSON(sig);
  const m = /^SIGNAL_(SIG[A-Z0-9]+?)(?:(PLUS|MINUS)(\d+))?$/.exec(json);
  if (!m || sig === Signal.UNRECOGNIZED) throw new InvalidArgumentError(`unknown stop signal ${sig}`);
  const name = m[2] ? `${m[1]}${m[2] === "PLUS" ? "+" : "-"}${m[3]}` : m[1];
  signalNumber(name); // validates
  return name;
}

/** Signal name -> CRI enum (RUNTIME_DEFAULT when the enum has no such name). */
export function signalToCri(name: string): Signal {
  const key = `SIGNAL_${name.replace("+", "PLUS").replace("-", "MINUS")}`;
  const v = (Signal as unknown as Record<string, number>)[key];
  return typeof v === "number" ? v : Signal.SIGNAL_RUNTIME_DEFAULT;
}

/** The signal StopContainer sends: config's stop_signal > image STOPSIGNAL > SIGTERM. */
export function effectiveStopSignal(configSignal: Signal | undefined, imageStopSignal: string | undefined): string {
  const fromConfig = configSignal ? signalFromCri(configSignal) : undefined;
  if (fromConfig) return fromConfig;
  if (imageStopSignal && imageStopSignal.trim()) return parseSignal(imageStopSignal);
  return "SIGTERM";
}

/** A stored row's signal number; SIGTERM for a value this version cannot read (never throws). */
export function storedSignalNumber(stored: string): number {
  try {
    return signalNumber(parseSignal(stored));
  } catch {
    return 15;
  }
}

/** storedSignalToCri's answers: a handful of distinct stored values, asked on every ContainerStatus. */
const storedToCri = new Map<string, Signal>();

/** A stored row's signal as ContainerStatus.stop_signal reports it. */
export function storedSignalToCri(stored: string): Signal {
  let sig = storedToCri.get(stored);
  if (sig !== undefined) return sig;
  try {
    sig = signalToCri(parseSignal(stored));
  } catch {
    sig = Signal.SIGNAL_RUNTIME_DEFAULT;
  }
  if (storedToCri.size < 256) storedToCri.set(stored, sig);
  return sig;
}
