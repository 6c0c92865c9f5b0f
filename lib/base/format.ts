/**
 * Small formatting helpers shared by the modules' text and JSON output.
 * @module
 */

/**
 * Formats wall-clock ns since the epoch: "HH:MM:SS.mmm" (local time) for
 * text, or ISO 8601 UTC with microseconds for JSON.
 */
export function formatTime(timeNs: bigint, iso = false): string {
  const ms = Number(timeNs / 1_000_000n);
  if (iso) {
    const micros = String(timeNs % 1_000_000_000n / 1000n).padStart(6, "0");
    return `${new Date(ms).toISOString().slice(0, 19)}.${micros}Z`;
  }
  // "HH:MM:SS." changes once a second: a Date per event is not needed (a hot path)
  const second = Math.floor(ms / 1000);
  if (second !== lastSecond) {
    const d = new Date(ms);
    lastSecond = second;
    lastPrefix = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.`;
  }
  const milli = ms - second * 1000;
  return lastPrefix + (milli < 10 ? `00${milli}` : milli < 100 ? `0${milli}` : `${milli}`);
}

let lastSecond = NaN;
let lastPrefix = "";

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

/**
 * Text output's times carry no date: this says when a line naming the day
 * is due. `next()` returns "--- YYYY-MM-DD ---" (the local date) for the
 * first event of a new day, and for the very first event when `first` is
 * set (files, which are read later); else undefined. Cheap per event: a
 * Date only when an event leaves the day last seen.
 */
export class DayLines {
  #first: boolean;
  #start = Infinity;
  #end = -Infinity;

  constructor(first: boolean) {
    this.#first = first;
  }

  next(timeNs: bigint): string | undefined {
    const ms = Number(timeNs / 1_000_000n);
    if (ms >= this.#start && ms < this.#end) return undefined;
    const d = new Date(ms);
    const seen = this.#end !== -Infinity;
    this.#start = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
    this.#end = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime();
    if (!seen && !this.#first) return undefined;
    const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    return `--- ${date} ---`;
  }
}
