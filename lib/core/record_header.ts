/**
 * Reads `struct ecap_hdr`, the start of every record, at offsets taken from
 * the object's BTF.
 * @module
 */
import type { Btf } from "../binary/btf.ts";
import type { EventBase } from "./module_spec.ts";

/** A record that cannot be what its header claims. */
export class RecordError extends SyntaxError {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/** Header fields plus the record kind, which picks the decoder. */
export interface RecordHeader extends Omit<EventBase, "module"> {
  kind: number;
}

const utf8 = new TextDecoder();
/** Threads whose name is remembered at most (then forgotten, all at once). */
const MAX_NAMES = 4096;

/** Reads a NUL-terminated string of at most `max` bytes. */
export function readCString(view: DataView, offset: number, max: number): string {
  // Task names are short ASCII almost always: build them without a
  // TextDecoder call (a hot path: one per record).
  let text = "";
  for (let i = 0; i < max; i++) {
    const c = view.getUint8(offset + i);
    if (c === 0) return text;
    if (c >= 0x80) return decodeUtf8(view, offset, max);
    text += String.fromCharCode(c);
  }
  return text;
}

function decodeUtf8(view: DataView, offset: number, max: number): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, max);
  const end = bytes.indexOf(0);
  return utf8.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** Makes a reader of `struct ecap_hdr` for records of one object. */
export function headerReader(btf: Btf, wallClock: (mono: bigint) => bigint) {
  const s = btf.struct("ecap_hdr");
  const at = (m: string) => {
    const member = s.members.get(m);
    if (!member) throw new RecordError(`struct ecap_hdr has no member "${m}"`);
    return member.offset;
  };
  const kind = at("kind"), pid = at("pid"), tid = at("tid"), uid = at("uid");
  const ts = at("ts_ns"), comm = at("comm");
  const commLen = s.members.get("comm")!.size;
  const cgroup = s.members.get("cgroup_id")?.offset;
  const processAt = s.members.get("process")?.offset;
  type Name = { w0: number; w1: number; w2: number; w3: number; name: string };
  /**
   * The last name read per thread (and per process), with its first 16
   * bytes: names rarely change.
   */
  const threadNames = new Map<number, Name>(), processNames = new Map<number, Name>();
  const nameAt = (view: DataView, at: number, key: number, names: Map<number, Name>) => {
    const w0 = view.getUint32(at, true), w1 = view.getUint32(at + 4, true);
    const w2 = view.getUint32(at + 8, true), w3 = view.getUint32(at + 12, true);
    const known = names.get(key);
    if (known && known.w0 === w0 && known.w1 === w1 && known.w2 === w2 && known.w3 === w3) {
      return known.name;
    }
    if (names.size >= MAX_NAMES) names.clear();
    const name = readCString(view, at, commLen);
    if (commLen === 16) names.set(key, { w0, w1, w2, w3, name });
    return name;
  };
  return {
    /** Size of the header: a record's body starts here. */
    size: s.size,
    read(view: DataView, offset: number, length: number): RecordHeader {
      if (length < s.size) {
        throw new RecordError(
          `record of ${length} bytes is shorter than its ${s.size}-byte header`,
        );
      }
      const t = view.getUint32(offset + tid, true);
      const p = view.getUint32(offset + pid, true);
      const thread = nameAt(view, offset + comm, t, threadNames);
      const process = t === p || processAt === undefined
        ? undefined
        : nameAt(view, offset + processAt, p, processNames);
      return {
        kind: view.getUint32(offset + kind, true),
        pid: p,
        tid: t,
        uid: view.getUint32(offset + uid, true),
        timeNs: wallClock(view.getBigUint64(offset + ts, true)),
        comm: thread,
        // a thread named like its process adds nothing
        process: process === thread || process === "" ? undefined : process,
        // two u32 halves, no BigInt made per record (exact below 2^53, as Number() is)
        cgroupId: cgroup === undefined ? 0 : view.getUint32(offset + cgroup, true) +
          view.getUint32(offset + cgroup + 4, true) * 0x1_0000_0000,
      };
    },
  };
}
