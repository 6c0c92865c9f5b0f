import assert from "node:assert/strict";
import { asciiText, indexOfBytes } from "../../lib/base/bytes.ts";
import { mulberry32 } from "../_random.ts";

/** The obvious search, to judge the fast one by. */
function naive(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let k = 0; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("indexOfBytes finds what a byte-by-byte search finds", () => {
  const rand = mulberry32(7);
  for (let t = 0; t < 3000; t++) {
    // a small alphabet makes partial matches and repeats common
    const hay = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 3));
    const needle = Uint8Array.from(
      { length: 1 + Math.floor(rand() * 6) },
      () => Math.floor(rand() * 3),
    );
    const from = Math.floor(rand() * (hay.length + 1));
    assert.equal(
      indexOfBytes(hay, needle, from),
      naive(hay, needle, from),
      `${hay} / ${needle} @${from}`,
    );
  }
  const text = new TextEncoder().encode("../../third_party/boringssl/src/ssl/ssl_lib.cc\0x");
  assert.equal(indexOfBytes(text, new TextEncoder().encode("ssl/ssl_lib.cc\0")), 32);
  assert.equal(indexOfBytes(text, new Uint8Array(0), 5), 5);
});

Deno.test("asciiText gives latin1's string for ASCII of every length, and nothing for other bytes", () => {
  // latin1 (windows-1252) maps ASCII to itself: an independent decoder to judge by,
  // across the length where asciiText changes how it builds the string
  const latin1 = new TextDecoder("latin1");
  const rand = mulberry32(11);
  for (let n = 0; n < 300; n++) {
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(rand() * 0x80));
    assert.equal(asciiText(bytes), latin1.decode(bytes), `${n} bytes`);
    if (n === 0) continue;
    const other = bytes.slice();
    other[Math.floor(rand() * n)] = 0x80 + Math.floor(rand() * 0x80);
    assert.equal(asciiText(other), undefined, `${n} bytes, one not ASCII`);
  }
});
