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
  const d = new Date(ms);
  if (iso) {
    const micros = String(timeNs % 1_000_000_000n / 1000n).padStart(6, "0");
    return `${d.toISOString().slice(0, 19)}.${micros}Z`;
  }
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${
    p(d.getMilliseconds(), 3)
  }`;
}
