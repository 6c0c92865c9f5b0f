import assert from "node:assert/strict";
import { HeldPackets } from "../../lib/pcap/held_packets.ts";
import type { PacketRecord } from "../../lib/pcap/pcap_sink.ts";
import { mulberry32 } from "../_random.ts";

function packet(k: number, size: number): PacketRecord {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (k * 7 + i) & 0xff;
  return {
    timeNs: 1_700_000_000_000_000_000n + BigInt(k),
    ifindex: k % 3,
    length: size + k,
    data,
    direction: k % 2 ? "ingress" : "egress",
  };
}

Deno.test("HeldPackets gives back what a plain queue would, in order, through growth and block reuse", () => {
  const rand = mulberry32(3);
  const held = new HeldPackets();
  const plain: PacketRecord[] = [];
  const out: PacketRecord = {
    timeNs: 0n,
    ifindex: 0,
    length: 0,
    data: new Uint8Array(0),
    direction: "egress",
  };
  let pushed = 0, bytes = 0;
  for (let step = 0; step < 40_000; step++) {
    // bursts in and out: the queue empties, grows past its slots, spans many blocks
    const pushing = plain.length === 0 || rand() < (step % 8000 < 4000 ? 0.7 : 0.35);
    if (pushing) {
      // mostly small, some 64 KiB, a few larger than a block
      const r = rand();
      const size = r < 0.8 ? Math.floor(rand() * 1600) : r < 0.998 ? 65536 : (1 << 20) + 5;
      const p = packet(pushed++, size);
      held.push(step, p);
      plain.push(p);
      bytes += size;
    } else {
      const want = plain.shift()!;
      assert.equal(held.oldestAt > -1, true);
      const got = held.shift(out);
      bytes -= want.data.length;
      assert.equal(got.timeNs, want.timeNs);
      assert.equal(got.ifindex, want.ifindex);
      assert.equal(got.length, want.length);
      assert.equal(got.direction, want.direction);
      assert.deepEqual(got.data, want.data, `packet ${want.timeNs}`);
    }
    assert.equal(held.length, plain.length);
    assert.equal(held.bytes, bytes);
  }
});

Deno.test("HeldPackets says when its oldest packet came", () => {
  const held = new HeldPackets();
  held.push(10, packet(0, 100));
  held.push(20, packet(1, 100));
  assert.equal(held.oldestAt, 10);
  held.shift(packet(9, 0));
  assert.equal(held.oldestAt, 20);
});

Deno.test("HeldPackets never writes over a packet still held, nor one just handed out", () => {
  const held = new HeldPackets();
  const out = packet(0, 0);
  // one packet left in a block: what comes after it goes past it, not over it
  held.push(0, packet(1, 500));
  held.push(0, packet(2, 700));
  assert.deepEqual(held.shift(out).data, packet(1, 500).data);
  for (let k = 3; k < 3000; k++) held.push(0, packet(k, 1000));
  assert.deepEqual(held.shift(out).data, packet(2, 700).data);
  for (let k = 3; k < 3000; k++) assert.deepEqual(held.shift(out).data, packet(k, 1000).data);
  // emptied: the view handed out last stays whole until the next push
  held.push(0, packet(5000, 300));
  const last = held.shift(out).data;
  assert.deepEqual(last, packet(5000, 300).data);
});
