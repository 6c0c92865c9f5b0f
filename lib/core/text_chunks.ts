/**
 * Reads `struct text_chunk` records (kern/text_chunks.bpf.h) and joins the
 * chunks of one text back together.
 * @module
 */
import type { Btf } from "../binary/btf.ts";
import { allocBytes, concat, copyBytes } from "../base/bytes.ts";
import { headerReader, RecordError, type RecordHeader } from "./record_header.ts";

/** One chunk of text, with the header of its record. */
export interface TextChunk {
  header: RecordHeader;
  bytes: Uint8Array;
  /** Another chunk of the same text follows. */
  more: boolean;
  /** The text was cut at the kernel's cap. */
  cut: boolean;
}

/** Makes a reader of text_chunk records at the offsets of the object's BTF. */
export function textChunkReader(btf: Btf, wallClock: (mono: bigint) => bigint) {
  const hdr = headerReader(btf, wallClock);
  const s = btf.struct("text_chunk");
  const lenAt = s.members.get("len")!.offset;
  const flagsAt = s.members.get("flags")!.offset;
  const flags = btf.enumValues("text_chunk_flags");
  const MORE = flags.get("TEXT_MORE")!, CUT = flags.get("TEXT_CUT")!;
  return {
    header: hdr,
    /** Reads the chunk of a record whose header says it is one. */
    read(view: DataView, offset: number, length: number, header?: RecordHeader): TextChunk {
      const h = header ?? hdr.read(view, offset, length);
      if (length < s.size) throw new RecordError(`text chunk of ${length} bytes is too short`);
      const len = view.getUint32(offset + lenAt, true);
      if (s.size + len > length) {
        throw new RecordError(`text chunk claims ${len} bytes, record holds ${length - s.size}`);
      }
      const f = view.getUint32(offset + flagsAt, true);
      const start = view.byteOffset + offset + s.size;
      return {
        header: h,
        bytes: copyBytes(new Uint8Array(view.buffer, start, len)),
        more: (f & MORE) !== 0,
        cut: (f & CUT) !== 0,
      };
    },
  };
}

/** Texts being put back together, by a key such as the thread id. */
export class TextJoiner<K> {
  #open = new Map<K, { header: RecordHeader; parts: Uint8Array[]; cut: boolean }>();

  /**
   * Adds a chunk; returns the whole text once its last chunk arrived. A
   * chunk that follows a finished text starts a new one.
   */
  add(
    key: K,
    chunk: TextChunk,
  ): { header: RecordHeader; bytes: Uint8Array; cut: boolean } | undefined {
    let t = this.#open.get(key);
    if (!t) this.#open.set(key, t = { header: chunk.header, parts: [], cut: false });
    t.parts.push(chunk.bytes);
    t.cut ||= chunk.cut;
    if (chunk.more) return undefined;
    this.#open.delete(key);
    return { header: t.header, bytes: concat(t.parts, undefined, allocBytes), cut: t.cut };
  }

  /** Forgets every unfinished text. */
  clear() {
    this.#open.clear();
  }
}
