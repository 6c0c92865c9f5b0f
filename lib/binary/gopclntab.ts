/**
 * Go binaries: the function table the runtime itself keeps (.gopclntab),
 * which a stripped binary (`-ldflags=-s -w`, `strip`) still carries, and the
 * Go version from the build info. Formats of Go 1.2-1.15, 1.16-1.17,
 * 1.18-1.19 and 1.20+ (their magic numbers say which).
 * @module
 */
import { readAt } from "./elf_peek.ts";
import { ElfFile } from "./elf.ts";

/** Raised when a file is not a Go binary this reader understands. */
export class GoBinaryError extends Error {
  /** Creates an error saying what is missing. */
  constructor(message: string) {
    super(message);
    this.name = "GoBinaryError";
  }
}

/** One function of the table. */
export interface GoFunction {
  name: string;
  /** Virtual address of its first instruction. */
  entry: number;
  /** Virtual address past its end (the next function's entry: padding included). */
  end: number;
}

/** The pclntab formats, by their magic. */
const MAGICS: Record<number, string> = {
  0xfffffffb: "1.2",
  0xfffffffa: "1.16",
  0xfffffff0: "1.18",
  0xfffffff1: "1.20",
};

/** What lib/binary/gopclntab.ts knows about a Go binary. */
export interface GoBinary {
  elf: ElfFile;
  bytes: Uint8Array;
  /** The Go release from the build info ("go1.19.8"), if found. */
  version?: string;
  /** The pclntab format: "1.2", "1.16", "1.18" or "1.20" (the first release using it). */
  format: string;
  /** Where the table was found: its section, or by its magic in a binary without one. */
  foundBy: "section" | "magic";
  /** Every function, by name. */
  functions: Map<string, GoFunction>;
  /** The file bytes of a function; undefined if no segment maps it. */
  code(fn: GoFunction): Uint8Array | undefined;
  /** File offset of a virtual address (for uprobes). */
  fileOffset(vaddr: number): number | undefined;
}

/** A bounds-checked little-endian reader over the table. */
class Table {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly ptrSize: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #check(off: number, n: number) {
    if (!Number.isInteger(off) || off < 0 || off + n > this.bytes.length) {
      throw new GoBinaryError(`pclntab read out of bounds at ${off}`);
    }
  }
  u32(off: number): number {
    this.#check(off, 4);
    return this.view.getUint32(off, true);
  }
  i32(off: number): number {
    this.#check(off, 4);
    return this.view.getInt32(off, true);
  }
  uptr(off: number): number {
    if (this.ptrSize === 4) return this.u32(off);
    this.#check(off, 8);
    return Number(this.view.getBigUint64(off, true));
  }
  cstring(off: number): string {
    this.#check(off, 1);
    const end = this.bytes.indexOf(0, off);
    if (end < 0) throw new GoBinaryError(`unterminated name at ${off}`);
    return new TextDecoder().decode(this.bytes.subarray(off, end));
  }
}

/** Reads the function table at the start of `data`; throws GoBinaryError if it is not one. */
export function parsePclntab(
  data: Uint8Array,
  textFallback = 0,
): { format: string; functions: Map<string, GoFunction> } {
  if (data.length < 16) throw new GoBinaryError("pclntab too short");
  const magic = new DataView(data.buffer, data.byteOffset).getUint32(0, true);
  const format = MAGICS[magic];
  const quantum = data[6], ptrSize = data[7];
  if (!format || data[4] !== 0 || data[5] !== 0 || ![1, 2, 4].includes(quantum)) {
    throw new GoBinaryError("no Go pclntab header");
  }
  if (ptrSize !== 4 && ptrSize !== 8) throw new GoBinaryError(`pclntab pointer size ${ptrSize}`);
  const t = new Table(data, ptrSize);
  const p = ptrSize;
  const nfunc = t.uptr(8);
  if (nfunc <= 0 || nfunc > 10_000_000) {
    throw new GoBinaryError(`pclntab claims ${nfunc} functions`);
  }
  const functions = new Map<string, GoFunction>();
  const entries: { entry: number; name: string }[] = [];
  let endPc: number;
  if (format === "1.2") {
    const ftab = 8 + p;
    for (let i = 0; i < nfunc; i++) {
      const entry = t.uptr(ftab + i * 2 * p);
      const funcoff = t.uptr(ftab + i * 2 * p + p);
      entries.push({ entry, name: t.cstring(t.i32(funcoff + p)) });
    }
    endPc = t.uptr(ftab + nfunc * 2 * p);
  } else if (format === "1.16") {
    const funcnames = t.uptr(8 + 2 * p);
    const pcln = t.uptr(8 + 6 * p);
    for (let i = 0; i < nfunc; i++) {
      const entry = t.uptr(pcln + i * 2 * p);
      const funcoff = t.uptr(pcln + i * 2 * p + p);
      entries.push({ entry, name: t.cstring(funcnames + t.i32(pcln + funcoff + p)) });
    }
    endPc = t.uptr(pcln + nfunc * 2 * p);
  } else {
    // 1.18+: entries are 32-bit offsets from the start of the text
    const textStart = t.uptr(8 + 2 * p) || textFallback;
    const funcnames = t.uptr(8 + 3 * p);
    const pcln = t.uptr(8 + 7 * p);
    for (let i = 0; i < nfunc; i++) {
      const entry = textStart + t.u32(pcln + i * 8);
      const funcoff = t.u32(pcln + i * 8 + 4);
      entries.push({ entry, name: t.cstring(funcnames + t.i32(pcln + funcoff + 4)) });
    }
    endPc = textStart + t.u32(pcln + nfunc * 8);
  }
  for (let i = 0; i < entries.length; i++) {
    const end = i + 1 < entries.length ? entries[i + 1].entry : endPc;
    if (end < entries[i].entry) throw new GoBinaryError("pclntab entries out of order");
    // the first of a name wins (names are unique in Go but for a few "_" symbols)
    if (!functions.has(entries[i].name)) functions.set(entries[i].name, { ...entries[i], end });
  }
  return { format, functions };
}

const BUILDINFO_MAGIC = new Uint8Array([0xff, ...new TextEncoder().encode(" Go buildinf:")]);

function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  for (let i = hay.indexOf(needle[0], from); i >= 0; i = hay.indexOf(needle[0], i + 1)) {
    if (i + needle.length > hay.length) return -1;
    let k = 1;
    while (k < needle.length && hay[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
  }
  return -1;
}

function readUvarint(b: Uint8Array, at: number): [number, number] {
  let v = 0, shift = 0;
  for (let i = at; i < b.length && i < at + 10; i++) {
    v += (b[i] & 0x7f) * 2 ** shift;
    if (b[i] < 0x80) return [v, i + 1];
    shift += 7;
  }
  throw new GoBinaryError("bad varint in build info");
}

/** The Go version of the build info ("\xff Go buildinf:"), or undefined. */
export function goVersion(elf: ElfFile, bytes: Uint8Array): string | undefined {
  const sec = elf.sectionHeader(".go.buildinfo");
  const at = sec ? sec.offset : indexOfBytes(bytes, BUILDINFO_MAGIC);
  if (at < 0 || at + 32 > bytes.length) return undefined;
  if (indexOfBytes(bytes.subarray(at, at + 16), BUILDINFO_MAGIC) !== 0) return undefined;
  const ptrSize = bytes[at + 14], flags = bytes[at + 15];
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  try {
    if (flags & 2) {
      // Go 1.18+: the strings follow, each with a varint length
      const [len, start] = readUvarint(bytes, at + 32);
      return text(bytes.subarray(start, start + len)) || undefined;
    }
    // before: a pointer to the version's string header
    const v = new DataView(bytes.buffer, bytes.byteOffset);
    const ptr = (off: number) =>
      ptrSize === 8 ? Number(v.getBigUint64(off, true)) : v.getUint32(off, true);
    const hdr = elf.fileOffset(ptr(at + 16));
    if (hdr === undefined) return undefined;
    const data = elf.fileOffset(ptr(hdr));
    const len = ptr(hdr + ptrSize);
    if (data === undefined || len > 64) return undefined;
    return text(bytes.subarray(data, data + len)) || undefined;
  } catch {
    return undefined;
  }
}

/** Finds the table by its magic where no section names it (section headers stripped). */
function findByMagic(
  bytes: Uint8Array,
  textFallback: number,
): ReturnType<typeof parsePclntab> | undefined {
  for (const magic of [0xf1, 0xf0, 0xfa, 0xfb]) {
    const needle = new Uint8Array([magic, 0xff, 0xff, 0xff, 0, 0]);
    for (let at = indexOfBytes(bytes, needle); at >= 0; at = indexOfBytes(bytes, needle, at + 1)) {
      if (at % 8 !== 0 && at % 4 !== 0) continue;
      try {
        const t = parsePclntab(bytes.subarray(at), textFallback);
        if (t.functions.size > 100 && t.functions.has("runtime.main")) return t;
      } catch { /* not it: look further */ }
    }
  }
  return undefined;
}

/** Reads a Go binary's function table and version; throws GoBinaryError when it has none. */
export function readGoBinary(bytes: Uint8Array, elf = ElfFile.parse(bytes)): GoBinary {
  const text = elf.sectionHeader(".text")?.addr ?? 0;
  const sec = elf.section(".gopclntab");
  let table: ReturnType<typeof parsePclntab> | undefined;
  let foundBy: GoBinary["foundBy"] = "section";
  if (sec) {
    table = parsePclntab(sec, text);
  } else {
    table = findByMagic(bytes, text);
    foundBy = "magic";
  }
  if (!table) throw new GoBinaryError("no Go function table (.gopclntab)");
  return {
    elf,
    bytes,
    version: goVersion(elf, bytes),
    format: table.format,
    foundBy,
    functions: table.functions,
    fileOffset: (vaddr) => elf.fileOffset(vaddr),
    code(fn) {
      const start = elf.fileOffset(fn.entry);
      if (start === undefined || fn.end < fn.entry) return undefined;
      return bytes.subarray(start, Math.min(bytes.length, start + (fn.end - fn.entry)));
    },
  };
}

/**
 * Cheap test for the follow machinery: whether the file's section headers
 * name a Go section (.gopclntab or .go.buildinfo), from a few KiB of reads.
 * False for non-ELF files; true when there are no section headers to say.
 */
export async function mayBeGoBinary(path: string): Promise<boolean> {
  using file = await Deno.open(path);
  const ehdr = await readAt(file, 0, 64);
  if (ehdr.length < 64 || ehdr[0] !== 0x7f || ehdr[1] !== 0x45 || ehdr[4] !== 2) return false;
  const v = new DataView(ehdr.buffer, ehdr.byteOffset, 64);
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  if (shoff === 0 || shnum === 0 || shentsize < 64 || shstrndx >= shnum) return true;
  const shdrs = await readAt(file, shoff, shnum * shentsize);
  if (shdrs.length < shnum * shentsize) return true;
  const s = new DataView(shdrs.buffer, shdrs.byteOffset, shdrs.byteLength);
  const strOff = Number(s.getBigUint64(shstrndx * shentsize + 0x18, true));
  const strSize = Number(s.getBigUint64(shstrndx * shentsize + 0x20, true));
  if (strSize > 1 << 20) return true;
  const names = new TextDecoder().decode(await readAt(file, strOff, strSize)).split("\0");
  return names.includes(".gopclntab") || names.includes(".go.buildinfo");
}
