/**
 * The live status of a capture on a terminal: one line on stderr,
 * rewritten in place once a second (elapsed, events, bytes, lost,
 * events/s), as long as the events themselves are not printed to that
 * terminal. Cleared before any other message.
 * @module
 */
import type { CaptureStats } from "../core/capture.ts";

/** Where the line goes: a terminal's stderr by default. */
export interface StatusOutput {
  write(text: string): void;
  /** Columns of the terminal; the line is cut to fit (no wrap to clean up). */
  columns(): number;
}

const ERASE_LINE = "\r\x1b[K";

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) n /= 1024, u++;
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

/** The line's text, without control characters. */
export function statusText(s: CaptureStats, elapsedS: number, eventsPerS: number): string {
  const shed = s.shed > 0 ? `, ${s.shed} kept short` : "";
  return `ecap: ${elapsedS.toFixed(0)} s, ${s.events} events, ${formatBytes(s.bytes)}, ` +
    `${s.lost} lost${shed}, ${eventsPerS.toFixed(0)} events/s`;
}

export class StatusLine {
  #out: StatusOutput;
  #shown = false;
  #last?: { atS: number; events: number };

  constructor(out: StatusOutput) {
    this.#out = out;
  }

  /** Rewrites the line; events/s over the time since the last update. */
  update(s: CaptureStats, elapsedS: number) {
    const last = this.#last ?? { atS: 0, events: 0 };
    const span = elapsedS - last.atS;
    const rate = span > 0 ? (s.events - last.events) / span : 0;
    this.#last = { atS: elapsedS, events: s.events };
    const text = statusText(s, elapsedS, rate).slice(0, Math.max(0, this.#out.columns() - 1));
    this.#out.write(ERASE_LINE + text);
    this.#shown = true;
  }

  /** Erases the line, so the next message starts on a clean one. */
  clear() {
    if (!this.#shown) return;
    this.#out.write(ERASE_LINE);
    this.#shown = false;
  }
}

/** stderr, when it is a terminal. */
export function terminalStderr(): StatusOutput | undefined {
  if (!Deno.stderr.isTerminal()) return undefined;
  const encoder = new TextEncoder();
  return {
    write: (text) => {
      try {
        Deno.stderr.writeSync(encoder.encode(text));
      } catch { /* a status line is not worth a failure */ }
    },
    columns: () => {
      try {
        return Deno.consoleSize().columns;
      } catch {
        return 80;
      }
    },
  };
}
