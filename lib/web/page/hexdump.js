/**
 * Bytes as hex dump lines, the same layout as the terminal output
 * (lib/base/hexdump.ts): offset, 16 hex bytes split 8+8, then the ASCII.
 */

const HEX = "0123456789abcdef";

/** Lines for at most `limit` bytes, then a "… N more bytes" line for the rest. */
export function hexdump(bytes, limit = 64 * 1024) {
  const n = Math.min(bytes.length, limit);
  const lines = [];
  for (let off = 0; off < n; off += 16) {
    let hex = "";
    let text = "";
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += " ";
      if (off + i < n) {
        const b = bytes[off + i];
        hex += HEX[b >> 4] + HEX[b & 15] + " ";
        text += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
      } else {
        hex += "   ";
      }
    }
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex} |${text}|`);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes`);
  return lines;
}
