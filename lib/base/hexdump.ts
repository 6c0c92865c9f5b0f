/**
 * Shows payload bytes to people: as text when they are text, else as a
 * classic hex dump.
 * @module
 */
import { isUtf8 } from "node:buffer";

const utf8 = new TextDecoder();
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROLS = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

/**
 * Control bytes in bytes (tab, LF and CR are not), counted up to just past
 * `limit`. In UTF-8 each is a character of its own, so this counts control
 * characters without decoding: binary is told apart before a strict decode.
 */
export function controlBytes(bytes: Uint8Array, limit = Infinity): number {
  let n = 0;
  for (let i = 0; i < bytes.length && n <= limit; i++) {
    const b = bytes[i];
    if ((b < 0x20 && b !== 9 && b !== 10 && b !== 13) || b === 0x7f) n++;
  }
  return n;
}

/**
 * The bytes as text if they are valid UTF-8 and nearly all printable
 * (tabs, newlines and carriage returns allowed); otherwise undefined.
 */
export function printableText(bytes: Uint8Array): string | undefined {
  // binary is mostly invalid UTF-8: a native check tells it apart first
  if (!isUtf8(bytes)) return undefined;
  const control = controlBytes(bytes, bytes.length / 100);
  // a string is never longer than its UTF-8 bytes: too many controls for them is too many
  if (control * 100 > bytes.length) return undefined;
  const text = utf8.decode(bytes);
  if (control > text.length / 100) return undefined;
  return control === 0 ? text : text.replace(CONTROLS, ".");
}

const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef");
/** Where a row's hex columns end and its "  |" starts. */
const HEX_END = 58;

/**
 * 16 bytes a line: offset, hex, and the printable ASCII; each line after
 * indent (ASCII). Written as bytes and decoded once: the dump of a binary
 * read shows up under load.
 */
export function hexdump(bytes: Uint8Array, indent = ""): string {
  const rows = Math.ceil(bytes.length / 16);
  const out = new Uint8Array(rows * (indent.length + HEX_END + 3 + 16 + 2)).fill(0x20);
  let p = 0;
  for (let off = 0; off < bytes.length; off += 16) {
    for (let i = 0; i < indent.length; i++) out[p++] = indent.charCodeAt(i);
    for (let shift = 28; shift >= 0; shift -= 4) {
      out[p + 7 - shift / 4] = HEX_DIGITS[(off >>> shift) & 15];
    }
    const n = Math.min(16, bytes.length - off);
    for (let i = 0; i < n; i++) {
      const b = bytes[off + i];
      const col = p + (i < 8 ? 10 + 3 * i : 35 + 3 * (i - 8));
      out[col] = HEX_DIGITS[b >> 4];
      out[col + 1] = HEX_DIGITS[b & 15];
      out[p + HEX_END + 3 + i] = b >= 0x20 && b < 0x7f ? b : 0x2e; // "."
    }
    out[p + HEX_END + 2] = 0x7c; // "|"
    out[p + HEX_END + 3 + n] = 0x7c;
    p += HEX_END + 3 + n + 1;
    if (off + 16 < bytes.length) out[p++] = 0x0a;
  }
  return utf8.decode(out.subarray(0, p)); // ASCII: UTF-8's is the fastest decoder
}

/** Standard base64 of any number of bytes (btoa alone takes a string). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
