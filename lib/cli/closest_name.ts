/**
 * "Did you mean …?": the known name a mistyped one most likely meant.
 * @module
 */

/** Edits (insert, delete, replace, swap two neighbours) that turn a into b. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      // "--jsno": a swap is one slip of the fingers, not two
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * Edits a name of this length may be off by and still be suggested: two at
 * most, one for short names ("--hexx" is --hex, not --help).
 */
const allowedEdits = (length: number) => Math.min(2, Math.max(1, Math.floor(length / 3)));

const bare = (name: string) => name.replace(/^-+/, "");

/**
 * The candidate closest to typed: a few edits away, or the only one that
 * typed begins (`--dur` for --duration); undefined when none is close.
 * Leading dashes are not counted.
 *
 * @param typed What the user wrote, e.g. "--hexx".
 * @param candidates The names that exist, e.g. ["--hex", "--har"].
 * @returns The name to suggest, or undefined.
 *
 * @example Suggest an option
 * ```ts
 * import { closestName } from "./closest_name.ts";
 * closestName("--hexx", ["--hex", "--har", "--json"]); // "--hex"
 * ```
 */
export function closestName(typed: string, candidates: readonly string[]): string | undefined {
  const word = bare(typed);
  let best: string | undefined;
  let bestEdits = allowedEdits(word.length) + 1;
  for (const c of candidates) {
    const edits = editDistance(word, bare(c));
    if (edits < bestEdits) [best, bestEdits] = [c, edits];
  }
  if (best !== undefined) return best;
  const extended = candidates.filter((c) => word.length > 1 && bare(c).startsWith(word));
  return extended.length === 1 ? extended[0] : undefined;
}
