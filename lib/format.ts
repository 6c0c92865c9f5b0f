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
