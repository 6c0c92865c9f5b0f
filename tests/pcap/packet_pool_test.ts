import assert from "node:assert/strict";
import { packetCopy, recyclePacket } from "../../lib/pcap/packet_pool.ts";

const filled = (n: number, v: number) => new Uint8Array(n).fill(v);

Deno.test("packetCopy copies; a large packet's buffer serves again once given back", () => {
  const a = packetCopy(filled(60_000, 7));
  assert.deepEqual([a.length, a[0], a[59_999]], [60_000, 7, 7]);
  const buffer = a.buffer;
  recyclePacket(a);
  const b = packetCopy(filled(40_000, 9)); // the same size class (64 KiB)
  assert.equal(b.buffer, buffer);
  assert.deepEqual([b.length, b[0], b[39_999]], [40_000, 9, 9]);
});

Deno.test("recyclePacket takes a buffer back once, and only its own", () => {
  const a = packetCopy(filled(20_000, 1));
  recyclePacket(a);
  recyclePacket(a); // a second give-back must not hand one buffer to two packets
  const b = packetCopy(filled(20_000, 2));
  const c = packetCopy(filled(20_000, 3));
  assert.notEqual(b.buffer, c.buffer);
  assert.equal(b[0], 2);

  const foreign = new Uint8Array(20_000);
  recyclePacket(foreign);
  assert.notEqual(packetCopy(filled(20_000, 4)).buffer, foreign.buffer);

  // small packets share blocks with other copies: never pooled one by one
  const small = packetCopy(filled(100, 5));
  recyclePacket(small);
  assert.notEqual(packetCopy(filled(100, 6)).buffer.byteLength, 100);
  assert.equal(small[0], 5);
});
