/**
 * Buffers for the bytes of large packets, used again once written. Under
 * `-m pcap` at 64 KiB responses a fresh buffer per packet (300 MB/s)
 * had V8 run a full collection several times a second: 13 % of ecap's
 * CPU (measured). The decoder takes them here; the pcap sink gives each
 * back after writing it. A consumer that keeps its packets (mod.ts) never
 * gives them back and simply gets fresh buffers.
 * @module
 */
import { copyBytes } from "../base/bytes.ts";

/** Packets up to this share copyBytes' blocks (cheap, not reusable one by one). */
const SMALL = 4096;
/** Free buffers kept at most, in bytes: the rest are left to the GC. */
const MAX_FREE_BYTES = 4 << 20;

/** Free buffers by size (a power of two). */
const free = new Map<number, ArrayBuffer[]>();
let freeBytes = 0;
/** Buffers packetCopy handed out and not yet given back: only these may come back, once. */
const ours = new WeakSet<ArrayBuffer>();

function sizeClass(n: number): number {
  let c = SMALL * 2;
  while (c < n) c *= 2;
  return c;
}

/** A copy of `bytes`, in a reused buffer when they are large. */
export function packetCopy(bytes: Uint8Array): Uint8Array {
  const n = bytes.length;
  if (n <= SMALL) return copyBytes(bytes);
  const c = sizeClass(n);
  let buf = free.get(c)?.pop();
  if (buf) freeBytes -= c;
  else buf = new ArrayBuffer(c);
  ours.add(buf);
  const out = new Uint8Array(buf, 0, n);
  out.set(bytes);
  return out;
}

/** Gives back a packetCopy() nothing refers to any more (others are ignored). */
export function recyclePacket(bytes: Uint8Array): void {
  const buf = bytes.buffer as ArrayBuffer;
  if (!ours.delete(buf) || freeBytes + buf.byteLength > MAX_FREE_BYTES) return;
  let list = free.get(buf.byteLength);
  if (!list) free.set(buf.byteLength, list = []);
  list.push(buf);
  freeBytes += buf.byteLength;
}
