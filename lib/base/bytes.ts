/**
 * Byte-array helpers shared by the decoders.
 *
 * Copies of event payloads come out of shared 256 KiB blocks: in Deno a new
 * ArrayBuffer costs 1.4 µs (64 B) to 6 µs (1 KiB), a view of an existing
 * one 30 ns (measured), and a capture copies every payload it yields once.
 * Such a copy shares its block's `buffer` with others; views of it keep
 * the block alive, so parsers that keep bytes for long copy them with
 * `slice()` instead.
 * @module
 */

const BLOCK_BYTES = 256 << 10;
/** Copies above this get a buffer of their own (a block would hold too few). */
const SHARED_MAX = 32 << 10;

let block = new Uint8Array(0);
let used = 0;

/** A zero-filled array of n bytes, carved out of a shared block when small. */
export function allocBytes(n: number): Uint8Array {
  if (n > SHARED_MAX) return new Uint8Array(n);
  if (used + n > block.length) {
    block = new Uint8Array(BLOCK_BYTES);
    used = 0;
  }
  const out = block.subarray(used, used + n);
  used += (n + 7) & ~7; // each copy starts aligned, like a fresh buffer
  return out;
}

/** A copy of bytes that nothing else writes to (see the module note on sharing). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = allocBytes(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * Joins byte arrays into one (the array itself when there is one), in a
 * buffer of its own unless `alloc` is {@link allocBytes}.
 */
export function concat(
  parts: readonly Uint8Array[],
  total?: number,
  alloc: (n: number) => Uint8Array = (n) => new Uint8Array(n),
): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = alloc(total ?? parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const utf8 = new TextDecoder();
/**
 * Above this many bytes a TextDecoder call (a fixed ~150 ns) beats building
 * the string a character code at a time (~7 ns a byte): measured, Deno 2.9.
 */
const DECODER_FROM = 20;

/**
 * bytes as a string when they are all ASCII, else undefined. Short runs
 * (symbol names) are built from their character codes, longer ones (an
 * HTTP head: 1 µs -> 0.2 µs for 200 bytes) by the UTF-8 decoder, which
 * maps ASCII to itself.
 */
export function asciiText(bytes: Uint8Array): string | undefined {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return undefined;
  if (bytes.length > DECODER_FROM) return utf8.decode(bytes);
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/**
 * Where needle first occurs in hay at or after from, or -1: Horspool's
 * skip table, so a rare needle costs about hay.length / needle.length
 * steps (a chunk of read-only data searched for a file name).
 */
export function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const m = needle.length;
  if (m === 0) return from <= hay.length ? from : -1;
  const skip = new Int32Array(256).fill(m);
  for (let k = 0; k < m - 1; k++) skip[needle[k]] = m - 1 - k;
  const last = needle[m - 1];
  for (let i = from + m - 1; i < hay.length;) {
    const c = hay[i];
    if (c === last) {
      let k = m - 2;
      while (k >= 0 && hay[i - m + 1 + k] === needle[k]) k--;
      if (k < 0) return i - m + 1;
    }
    i += skip[c];
  }
  return -1;
}
