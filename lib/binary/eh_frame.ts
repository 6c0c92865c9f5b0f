/**
 * Unwind tables (.eh_frame through .eh_frame_hdr's index): where one
 * covers an address, it says where the function holding it starts, which
 * is what a uprobe placed without symbols must be sure of. Only what that
 * question needs is read, one entry at a time.
 * @module
 */
import type { ElfFile } from "./elf.ts";
import { readAt } from "./elf_peek.ts";

const PT_GNU_EH_FRAME = 0x6474e550;

/** Unwind tables this reader does not understand: no answer is better than a guess. */
export class UnwindError extends Error {}

function unwindFail(why: string): never {
  throw new UnwindError(why);
}

/**
 * Reads of one open file, one at a time: a read is a seek then a read, and
 * two interleaved would return each other's bytes.
 */
export class Reader {
  #last: Promise<unknown> = Promise.resolve();

  constructor(readonly file: Deno.FsFile) {}

  at(offset: number, length: number): Promise<Uint8Array> {
    const next = this.#last.then(() => readAt(this.file, offset, length));
    this.#last = next.catch(() => {});
    return next;
  }
}

/** .eh_frame_hdr's sorted table, each FDE read when asked about. */
export class Unwind {
  #cies = new Map<number, number>();

  private constructor(
    readonly reader: Reader,
    readonly elf: ElfFile,
    readonly starts: number[],
    readonly fdes: number[],
  ) {}

  static async open(reader: Reader, elf: ElfFile): Promise<Unwind> {
    const hdr = elf.segments.find((s) => s.type === PT_GNU_EH_FRAME);
    if (hdr === undefined) {
      // unwind tables without their index cannot be searched: not a guess either way
      if ((elf.sectionHeader(".eh_frame")?.size ?? 0) > 4) {
        unwindFail(".eh_frame without its header");
      }
      return new Unwind(reader, elf, [], []);
    }
    const h = await reader.at(hdr.offset, hdr.filesz);
    const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
    const ptrSize = encodingSize(h[1]);
    // fde_count as udata4, the table as datarel sdata4 pairs: what linkers write
    if (h.length < 4 || h[0] !== 1 || h[2] !== 0x03 || h[3] !== 0x3b || ptrSize === undefined) {
      unwindFail("unsupported .eh_frame_hdr");
    }
    const count = v.getUint32(4 + ptrSize, true), table = 8 + ptrSize;
    if (table + count * 8 > h.length) unwindFail("truncated .eh_frame_hdr");
    const starts: number[] = [], fdes: number[] = [];
    for (let i = 0; i < count; i++) {
      starts.push(hdr.vaddr + v.getInt32(table + i * 8, true));
      fdes.push(hdr.vaddr + v.getInt32(table + i * 8 + 4, true));
    }
    return new Unwind(reader, elf, starts, fdes);
  }

  /** The last FDE starting at or before va, as [start, end); undefined if none. */
  async before(va: number): Promise<[number, number] | undefined> {
    let lo = 0, hi = this.starts.length; // first start above va
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= va) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return undefined;
    const start = this.starts[lo - 1];
    return [start, start + await this.#range(this.fdes[lo - 1])];
  }

  /** pc_range of the FDE at va, in its CIE's pointer encoding. */
  async #range(va: number): Promise<number> {
    const b = await this.#read(va, 32);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (b.length < 12 || v.getUint32(0, true) === 0xffffffff) unwindFail("unsupported FDE");
    const cie = va + 4 - v.getUint32(4, true);
    let enc = this.#cies.get(cie);
    if (enc === undefined) this.#cies.set(cie, enc = await this.#cieEncoding(cie));
    const size = encodingSize(enc)!;
    if (b.length < 8 + 2 * size) unwindFail("truncated FDE");
    return size === 8
      ? Number(v.getBigUint64(8 + size, true))
      : size === 4
      ? v.getUint32(8 + size, true)
      : v.getUint16(8 + size, true);
  }

  /** The FDE pointer encoding a CIE's augmentation names (absptr by default). */
  async #cieEncoding(va: number): Promise<number> {
    const b = await this.#read(va, 64);
    let i = 9; // length, id, version
    if (b.length < 12 || new DataView(b.buffer, b.byteOffset).getUint32(4, true) !== 0) {
      unwindFail("bad CIE");
    }
    const version = b[8];
    const augEnd = b.indexOf(0, i);
    if (augEnd < 0) unwindFail("bad CIE augmentation");
    const aug = new TextDecoder().decode(b.subarray(i, augEnd));
    i = augEnd + 1;
    const leb = () => {
      while (b[i++] & 0x80) if (i >= b.length) unwindFail("bad CIE");
    };
    leb(); // code alignment
    leb(); // data alignment
    if (version === 1) i++;
    else leb(); // return address register
    if (aug[0] !== "z") return aug === "" ? 0 : unwindFail(`CIE augmentation "${aug}"`);
    leb(); // augmentation length
    let enc = 0;
    for (const c of aug.slice(1)) {
      if (c === "R") enc = b[i++];
      else if (c === "L") i++;
      else if (c === "P") {
        const size = encodingSize(b[i] & 0x0f) ?? unwindFail("CIE personality encoding");
        if (b[i] & 0x70 && (b[i] & 0x70) !== 0x10) unwindFail("CIE personality encoding");
        i += 1 + size;
      } else if (c !== "S" && c !== "B" && c !== "G") unwindFail(`CIE augmentation "${aug}"`);
    }
    if (encodingSize(enc) === undefined) unwindFail(`FDE encoding ${enc}`);
    return enc;
  }

  #read(va: number, length: number): Promise<Uint8Array> {
    const offset = this.elf.fileOffset(va);
    if (offset === undefined) unwindFail("unwind entry outside the file");
    return this.reader.at(offset, length);
  }
}

/** Bytes of a DWARF pointer encoding's value; undefined for variable-length ones. */
function encodingSize(enc: number): number | undefined {
  return ({ 0x0: 8, 0x2: 2, 0x3: 4, 0x4: 8, 0xa: 2, 0xb: 4, 0xc: 8 } as Record<number, number>)[
    enc & 0x0f
  ];
}
