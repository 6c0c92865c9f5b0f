import assert from "node:assert/strict";
import { indexOfBytes } from "../../lib/base/bytes.ts";
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
