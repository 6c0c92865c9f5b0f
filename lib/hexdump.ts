/**
 * Shows payload bytes to people: as text when they are text, else as a
 * classic hex dump.
 * @module
 */

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The bytes as text if they are valid UTF-8 and nearly all printable
 * (tabs, newlines and carriage returns allowed); otherwise undefined.
 */
export function printableText(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
  let control = 0;
  let shown = "";
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    const isControl = (c < 0x20 && c !== 9 && c !== 10 && c !== 13) || c === 0x7f;
    if (isControl) control++;
    shown += isControl ? "." : ch;
  }
  return control <= text.length / 100 ? shown : undefined;
}

/** 16 bytes a line: offset, hex, and the printable ASCII. */
export function hexdump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0"));
    const left = hex.slice(0, 8).join(" ").padEnd(23);
    const right = hex.slice(8).join(" ").padEnd(23);
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."));
    lines.push(`${off.toString(16).padStart(8, "0")}  ${left}  ${right}  |${ascii.join("")}|`);
  }
  return lines.join("\n");
}

/** Standard base64 of any number of bytes (btoa alone takes a string). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
