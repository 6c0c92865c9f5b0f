/**
 * The packets `-m pcap` holds for their handshakes' secrets (pcap_sink.ts),
 * oldest first: their bytes in reused 1 MiB blocks, their numbers in typed
 * arrays. No object per packet lives on: held for up to 500 ms at 150k
 * packets a second, the records and views of each outlived V8's young
 * collections, and collecting them was a quarter of the mode's CPU
 * (measured, 1 KiB responses).
 * @module
 */

import type { PacketRecord } from "./pcap_sink.ts";

const BLOCK_BYTES = 1 << 20;
/** Empty blocks kept for reuse at most; the rest are left to the collector. */
const MAX_FREE_BLOCKS = 4;

/** A first-in first-out queue of packets. */
export class HeldPackets {
  /** Blocks holding packets, oldest first; the last is being filled. */
  #blocks: Uint8Array[] = [];
  /** The sequence number of #blocks[0]: packets name their block by it. */
  #firstBlock = 0;
  /** Bytes of the last block in use. */
  #used = BLOCK_BYTES;
  #free: Uint8Array[] = [];

  // one slot per packet, in a ring of #mask + 1 slots
  #mask = 1023;
  #head = 0;
  #count = 0;
  #at = new Float64Array(1024);
  #time = new BigInt64Array(1024);
  #ifindex = new Int32Array(1024);
  #length = new Int32Array(1024);
  #size = new Int32Array(1024);
  #egress = new Uint8Array(1024);
  #block = new Int32Array(1024);
  #offset = new Int32Array(1024);

  /** Bytes held. */
  bytes = 0;

  /** Packets held. */
  get length(): number {
    return this.#count;
  }

  /** When the oldest was pushed (the `at` it came with). */
  get oldestAt(): number {
    return this.#at[this.#head];
  }

  /** Copies a packet in; `at` is the caller's clock (ms). */
  push(at: number, p: PacketRecord): void {
    if (this.#count > this.#mask) this.#grow();
    const n = p.data.length;
    let last = this.#blocks[this.#blocks.length - 1];
    if (last === undefined || this.#used + n > last.length) {
      last = n > BLOCK_BYTES ? new Uint8Array(n) : this.#free.pop() ?? new Uint8Array(BLOCK_BYTES);
      this.#blocks.push(last);
      this.#used = 0;
    }
    last.set(p.data, this.#used);
    const i = (this.#head + this.#count) & this.#mask;
    this.#at[i] = at;
    this.#time[i] = p.timeNs;
    this.#ifindex[i] = p.ifindex;
    this.#length[i] = p.length;
    this.#size[i] = n;
    this.#egress[i] = p.direction === "egress" ? 1 : 0;
    this.#block[i] = this.#firstBlock + this.#blocks.length - 1;
    this.#offset[i] = this.#used;
    this.#used += n;
    this.#count++;
    this.bytes += n;
  }

  /**
   * Takes the oldest out (there must be one), into `into`, which it returns;
   * its `data` is valid until the next push() or shift().
   */
  shift(into: PacketRecord): PacketRecord {
    const i = this.#head;
    // the blocks before this packet's hold nothing more (the packet handed
    // out before, their last view, has been written): they serve again
    const done = this.#block[i] - this.#firstBlock;
    if (done > 0) {
      for (let k = 0; k < done; k++) this.#release(this.#blocks[k]);
      this.#blocks.splice(0, done);
      this.#firstBlock += done;
    }
    const n = this.#size[i], at = this.#offset[i];
    into.timeNs = this.#time[i];
    into.ifindex = this.#ifindex[i];
    into.length = this.#length[i];
    into.data = this.#blocks[0].subarray(at, at + n);
    into.direction = this.#egress[i] ? "egress" : "ingress";
    this.#head = (i + 1) & this.#mask;
    this.#count--;
    this.bytes -= n;
    // nothing held: the block fills again from its start (this packet's
    // view is written before the next push)
    if (this.#count === 0) this.#used = 0;
    return into;
  }

  #release(block: Uint8Array): void {
    if (block.length === BLOCK_BYTES && this.#free.length < MAX_FREE_BLOCKS) this.#free.push(block);
  }

  /** Twice the slots, the packets kept in order from slot 0. */
  #grow(): void {
    const old = this.#mask + 1, size = old * 2;
    const move = <T extends Float64Array | BigInt64Array | Int32Array | Uint8Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(size);
      for (let k = 0; k < this.#count; k++) b[k] = a[(this.#head + k) & this.#mask];
      return b;
    };
    this.#at = move(this.#at, (n) => new Float64Array(n));
    this.#time = move(this.#time, (n) => new BigInt64Array(n));
    this.#ifindex = move(this.#ifindex, (n) => new Int32Array(n));
    this.#length = move(this.#length, (n) => new Int32Array(n));
    this.#size = move(this.#size, (n) => new Int32Array(n));
    this.#egress = move(this.#egress, (n) => new Uint8Array(n));
    this.#block = move(this.#block, (n) => new Int32Array(n));
    this.#offset = move(this.#offset, (n) => new Int32Array(n));
    this.#head = 0;
    this.#mask = size - 1;
  }
}
