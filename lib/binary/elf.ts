/**
 * Minimal ELF64 little-endian reader: headers, sections, program headers,
 * symbols (.dynsym and .symtab) and the dynamic section's DT_NEEDED/DT_SONAME.
 *
 * Every read is bounds-checked, so malformed input only ever raises
 * {@link ElfError}.
 *
 * @module
 */
import { asciiText } from "../base/bytes.ts";

/** Raised for any malformed, truncated or unsupported ELF input. */
export class ElfError extends SyntaxError {
  /** Creates an error with a message that describes the problem. */
  constructor(message: string) {
    super(message);
    this.name = "ElfError";
  }
}

/** `e_machine` value for x86_64. */
export const EM_X86_64 = 62;
/** `e_machine` value for aarch64. */
export const EM_AARCH64 = 183;
/** `e_machine` value for eBPF objects. */
export const EM_BPF = 247;

/** Section type of a symbol table. */
export const SHT_SYMTAB = 2;
/** Section type of a string table. */
export const SHT_STRTAB = 3;
/** Section type of the dynamic section. */
export const SHT_DYNAMIC = 6;
/** Section type of a section without file bytes (.bss). */
export const SHT_NOBITS = 8;
/** Section type of the dynamic symbol table. */
export const SHT_DYNSYM = 11;
/** `sh_type` of the GNU symbol hash table (.gnu.hash). */
export const SHT_GNU_HASH = 0x6ffffff6;

/** Program header type of a loadable segment. */
export const PT_LOAD = 1;
/** Program header type of the dynamic segment. */
export const PT_DYNAMIC = 2;
/** Segment flag: executable. */
export const PF_X = 1;
/** Segment flag: writable. */
export const PF_W = 2;
/** Segment flag: readable. */
export const PF_R = 4;

/** Symbol section index meaning "undefined" (an import). */
export const SHN_UNDEF = 0;

const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_SONAME = 14;

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SYM_SIZE = 24;
/** Bytes a sparse file reads at least, around a small read. */
const PAGE = 4096;
const DYN_SIZE = 16;

/** Object file type (`e_type`). */
export type ElfType = "NONE" | "REL" | "EXEC" | "DYN" | "CORE" | "OTHER";

/** Symbol type (low nibble of `st_info`). */
export type ElfSymbolType =
  | "NOTYPE"
  | "OBJECT"
  | "FUNC"
  | "SECTION"
  | "FILE"
  | "COMMON"
  | "TLS"
  | "GNU_IFUNC"
  | "OTHER";

/** Symbol binding (high nibble of `st_info`). */
export type ElfSymbolBind =
  | "LOCAL"
  | "GLOBAL"
  | "WEAK"
  | "GNU_UNIQUE"
  | "OTHER";

/** One section header. */
export interface ElfSection {
  /** Index in the section header table. */
  index: number;
  name: string;
  /** `sh_type`, e.g. {@link SHT_DYNSYM}. */
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}

/** One program header. */
export interface ElfSegment {
  /** `p_type`, e.g. {@link PT_LOAD}. */
  type: number;
  /** `p_flags`: a mix of {@link PF_R}, {@link PF_W}, {@link PF_X}. */
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

/** One symbol table entry. */
export interface ElfSymbol {
  name: string;
  /** `st_value`: a virtual address in EXEC/DYN files. */
  value: number;
  size: number;
  type: ElfSymbolType;
  bind: ElfSymbolBind;
  /** `st_shndx`; {@link SHN_UNDEF} for imports. */
  shndx: number;
  /** Offset in the file for uprobes, if a PT_LOAD segment maps `value`. */
  fileOffset: number | undefined;
  /** The table the symbol came from. */
  table: ".dynsym" | ".symtab";
}

const MACHINE_NAMES: Record<number, string> = {
  3: "i386",
  40: "arm",
  62: "x86_64",
  183: "aarch64",
  243: "riscv",
  247: "bpf",
};

const TYPE_NAMES: ElfType[] = ["NONE", "REL", "EXEC", "DYN", "CORE"];

const SYMBOL_TYPES: ElfSymbolType[] = [
  "NOTYPE",
  "OBJECT",
  "FUNC",
  "SECTION",
  "FILE",
  "COMMON",
  "TLS",
];

const SYMBOL_BINDS: ElfSymbolBind[] = ["LOCAL", "GLOBAL", "WEAK"];

const decoder = new TextDecoder();

/** Bounds-checked little-endian reads over the whole file. */
class Reader {
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  #check(off: number, n: number, what: string): void {
    if (!(off >= 0 && off + n <= this.bytes.length)) {
      throw new ElfError(
        `truncated ELF file: ${what} at offset ${off} needs ${n} bytes, ` +
          `file has ${this.bytes.length}`,
      );
    }
  }

  u8(off: number, what: string): number {
    this.#check(off, 1, what);
    return this.#view.getUint8(off);
  }

  u16(off: number, what: string): number {
    this.#check(off, 2, what);
    return this.#view.getUint16(off, true);
  }

  u32(off: number, what: string): number {
    this.#check(off, 4, what);
    return this.#view.getUint32(off, true);
  }

  /** Values above 2^53 lose precision; offsets that large fail bounds checks anyway. */
  u64(off: number, what: string): number {
    this.#check(off, 8, what);
    return Number(this.#view.getBigUint64(off, true));
  }

  i64(off: number, what: string): number {
    this.#check(off, 8, what);
    return Number(this.#view.getBigInt64(off, true));
  }

  /** Returns `[off, off+size)` or throws if it is not inside the file. */
  slice(off: number, size: number, what: string): Uint8Array {
    this.#check(off, size, what);
    return this.bytes.subarray(off, off + size);
  }
}

/** Reads NUL-terminated strings out of one string table. */
function cString(table: Uint8Array, off: number, what: string): string {
  if (!(off >= 0 && off < table.length)) {
    if (off === 0) return ""; // an empty table still names things ""
    throw new ElfError(
      `${what}: string offset ${off} outside string table (${table.length} bytes)`,
    );
  }
  const end = table.indexOf(0, off);
  if (end < 0) throw new ElfError(`${what}: unterminated string at ${off}`);
  const bytes = table.subarray(off, end);
  return asciiText(bytes) ?? decoder.decode(bytes);
}

/** Ranks duplicates so that {@link ElfFile.symbol} returns an attachable one. */
function symbolRank(s: ElfSymbol): number {
  let rank = 0;
  if (s.value !== 0) rank += 8;
  if (s.type === "FUNC") rank += 4;
  else if (s.type === "GNU_IFUNC") rank += 2;
  if (s.bind !== "LOCAL") rank += 1;
  return rank;
}

/** A parsed ELF64 little-endian file. */
export class ElfFile {
  /** `e_machine`, e.g. {@link EM_X86_64}. */
  readonly machine: number;
  /** Readable machine name, e.g. "x86_64", "aarch64", "bpf". */
  readonly machineName: string;
  /** Object file type. */
  readonly type: ElfType;
  /** `e_entry`. */
  readonly entry: number;
  /** Section headers, in file order (index 0 is the null section). */
  readonly sections: readonly ElfSection[];
  /** Program headers, in file order. */
  readonly segments: readonly ElfSegment[];

  readonly #reader: Reader;
  /** Sparse files (readElf): reads a range of the file into the buffer. */
  #fill: ((offset: number, length: number) => void) | undefined;
  /** Ranges read so far, [start, end). */
  #filled: [number, number][] = [];
  #symbols: ElfSymbol[] | undefined;
  /** symbol() answers found without the index. */
  #looked = new Map<string, ElfSymbol | undefined>();
  #dynamic: { needed: string[]; soname: string | undefined } | undefined;

  private constructor(bytes: Uint8Array) {
    if (
      bytes.length < 4 || bytes[0] !== 0x7f || bytes[1] !== 0x45 ||
      bytes[2] !== 0x4c || bytes[3] !== 0x46
    ) {
      throw new ElfError("not an ELF file (bad magic)");
    }
    const r = new Reader(bytes);
    this.#reader = r;
    const cls = r.u8(4, "EI_CLASS");
    if (cls === 1) throw new ElfError("ELF32 files are not supported");
    if (cls !== 2) throw new ElfError(`invalid ELF class ${cls}`);
    const data = r.u8(5, "EI_DATA");
    if (data === 2) {
      throw new ElfError("big-endian ELF files are not supported");
    }
    if (data !== 1) throw new ElfError(`invalid ELF data encoding ${data}`);
    if (bytes.length < EHDR_SIZE) {
      throw new ElfError(
        `truncated ELF header: ${bytes.length} of ${EHDR_SIZE} bytes`,
      );
    }

    const eType = r.u16(16, "e_type");
    this.type = TYPE_NAMES[eType] ?? "OTHER";
    this.machine = r.u16(18, "e_machine");
    this.machineName = MACHINE_NAMES[this.machine] ??
      `unknown(${this.machine})`;
    this.entry = r.u64(24, "e_entry");
    const phoff = r.u64(32, "e_phoff");
    const shoff = r.u64(40, "e_shoff");
    const phentsize = r.u16(54, "e_phentsize");
    let phnum = r.u16(56, "e_phnum");
    const shentsize = r.u16(58, "e_shentsize");
    let shnum = r.u16(60, "e_shnum");
    let shstrndx = r.u16(62, "e_shstrndx");

    if (shoff === 0) {
      shnum = 0;
    } else {
      if (shentsize < SHDR_SIZE) {
        throw new ElfError(`e_shentsize ${shentsize} is below ${SHDR_SIZE}`);
      }
      // Extended numbering keeps the real counts in section header 0.
      if (shnum === 0) shnum = r.u64(shoff + 32, "extended e_shnum");
      if (shstrndx === 0xffff) {
        shstrndx = r.u32(shoff + 40, "extended e_shstrndx");
      }
      if (phnum === 0xffff) phnum = r.u32(shoff + 44, "extended e_phnum");
    }
    // One check of the whole table caps the loop counts by the file size.
    if (shnum > 0) r.slice(shoff, shnum * shentsize, "section header table");
    if (phnum > 0) {
      if (phentsize < PHDR_SIZE) {
        throw new ElfError(`e_phentsize ${phentsize} is below ${PHDR_SIZE}`);
      }
      r.slice(phoff, phnum * phentsize, "program header table");
    }

    const sections: ElfSection[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = shoff + i * shentsize;
      sections.push({
        index: i,
        name: "",
        type: r.u32(o + 4, "sh_type"),
        flags: r.u64(o + 8, "sh_flags"),
        addr: r.u64(o + 16, "sh_addr"),
        offset: r.u64(o + 24, "sh_offset"),
        size: r.u64(o + 32, "sh_size"),
        link: r.u32(o + 40, "sh_link"),
        info: r.u32(o + 44, "sh_info"),
        entsize: r.u64(o + 56, "sh_entsize"),
      });
    }
    if (shstrndx !== 0 && shnum > 0) {
      const strtab = sections[shstrndx];
      if (strtab === undefined) {
        throw new ElfError(
          `e_shstrndx ${shstrndx} out of range (${shnum} sections)`,
        );
      }
      const names = this.#sectionBytes(strtab, "section name table");
      for (let i = 0; i < shnum; i++) {
        const nameOff = r.u32(shoff + i * shentsize, "sh_name");
        sections[i].name = cString(names, nameOff, `name of section ${i}`);
      }
    }
    this.sections = sections;

    const segments: ElfSegment[] = [];
    for (let i = 0; i < phnum; i++) {
      const o = phoff + i * phentsize;
      segments.push({
        type: r.u32(o, "p_type"),
        flags: r.u32(o + 4, "p_flags"),
        offset: r.u64(o + 8, "p_offset"),
        vaddr: r.u64(o + 16, "p_vaddr"),
        filesz: r.u64(o + 32, "p_filesz"),
        memsz: r.u64(o + 40, "p_memsz"),
      });
    }
    this.segments = segments;
  }

  /** Parses an ELF64 little-endian image; throws {@link ElfError} if malformed. */
  static parse(bytes: Uint8Array): ElfFile {
    return new ElfFile(bytes);
  }

  /** The first section called `name`, if any. */
  sectionHeader(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** Bytes of the first section called `name`; undefined if absent or NOBITS. */
  section(name: string): Uint8Array | undefined {
    const s = this.sectionHeader(name);
    if (s === undefined || s.type === SHT_NOBITS) return undefined;
    return this.#sectionBytes(s, `section ${name}`);
  }

  #sectionBytes(s: ElfSection, what: string): Uint8Array {
    if (s.type === SHT_NOBITS) return new Uint8Array(0);
    const bytes = this.#reader.slice(s.offset, s.size, what); // bounds first
    this.#ensure(s.offset, s.size);
    return bytes;
  }

  /** The string table a section links to (symbol names, dynamic strings). */
  #linkedStrings(s: ElfSection): Uint8Array {
    const strtab = this.sections[s.link];
    if (strtab === undefined || s.link === 0) {
      throw new ElfError(
        `section ${s.name} links to invalid string table ${s.link}`,
      );
    }
    return this.#sectionBytes(strtab, `string table of ${s.name}`);
  }

  /**
   * Maps a virtual address to its offset in the file through the PT_LOAD
   * segment holding it; undefined if none does.
   */
  fileOffset(vaddr: number): number | undefined {
    for (const seg of this.segments) {
      // Only file-backed bytes count: the zero-filled tail has no offset.
      if (
        seg.type === PT_LOAD && vaddr >= seg.vaddr &&
        vaddr - seg.vaddr < seg.filesz
      ) {
        return vaddr - seg.vaddr + seg.offset;
      }
    }
    return undefined;
  }

  /** Up to length bytes of the file from offset (fewer at its end). */
  bytesAt(offset: number, length: number): Uint8Array {
    const all = this.#reader.bytes;
    const start = Math.min(offset, all.length), end = Math.min(offset + length, all.length);
    this.#ensure(start, end - start);
    return all.subarray(start, end);
  }

  /**
   * #ensure for small reads, a 4 KiB page at a time: each range read is
   * remembered and looked through, so thousands of tiny ones would cost
   * quadratic time.
   */
  #ensurePages(offset: number, length: number): void {
    const first = Math.floor(offset / PAGE) * PAGE;
    const end = Math.min(Math.ceil((offset + length) / PAGE) * PAGE, this.#reader.bytes.length);
    this.#ensure(first, end - first);
  }

  /** Reads a range a sparse file (see readElf) has not read yet. */
  #ensure(offset: number, length: number): void {
    const fill = this.#fill;
    if (!fill || length <= 0) return;
    const end = offset + length;
    if (this.#filled.some(([a, b]) => a <= offset && end <= b)) return;
    fill(offset, length);
    this.#filled.push([offset, end]);
  }

  /** The symbol tables to read, .dynsym first: at most one of each. */
  #symbolTables(): [".dynsym" | ".symtab", ElfSection, number][] {
    // Real files have at most one of each; reading only the first keeps
    // hostile files with many aliasing tables from costing quadratic time.
    const out: [".dynsym" | ".symtab", ElfSection, number][] = [];
    const tables = [
      [".dynsym", this.sections.find((s) => s.type === SHT_DYNSYM)],
      [".symtab", this.sections.find((s) => s.type === SHT_SYMTAB)],
    ] as const;
    for (const [table, s] of tables) {
      if (s === undefined) continue;
      const entsize = s.entsize === 0 ? SYM_SIZE : s.entsize;
      if (entsize < SYM_SIZE) {
        throw new ElfError(
          `${s.name}: sh_entsize ${entsize} is below ${SYM_SIZE}`,
        );
      }
      out.push([table, s, entsize]);
    }
    return out;
  }

  /** Symbol i of table s, named from names. */
  #symbolAt(
    table: ".dynsym" | ".symtab",
    s: ElfSection,
    entsize: number,
    names: Uint8Array,
    i: number,
  ): ElfSymbol {
    const r = this.#reader;
    const o = s.offset + i * entsize;
    const info = r.u8(o + 4, "st_info");
    const value = r.u64(o + 8, "st_value");
    const typeCode = info & 0xf;
    const bindCode = info >> 4;
    return {
      name: cString(names, r.u32(o, "st_name"), `${s.name}[${i}]`),
      value,
      size: r.u64(o + 16, "st_size"),
      type: SYMBOL_TYPES[typeCode] ?? (typeCode === 10 ? "GNU_IFUNC" : "OTHER"),
      bind: SYMBOL_BINDS[bindCode] ?? (bindCode === 10 ? "GNU_UNIQUE" : "OTHER"),
      shndx: r.u16(o + 6, "st_shndx"),
      fileOffset: this.type === "REL" ? undefined : this.fileOffset(value),
      table,
    };
  }

  #readSymbols(): ElfSymbol[] {
    if (this.#symbols !== undefined) return this.#symbols;
    const out: ElfSymbol[] = [];
    for (const [table, s, entsize] of this.#symbolTables()) {
      const data = this.#sectionBytes(s, `symbol table ${s.name}`);
      const names = this.#linkedStrings(s);
      const count = Math.floor(data.length / entsize);
      // Entry 0 is always the null symbol.
      for (let i = 1; i < count; i++) out.push(this.#symbolAt(table, s, entsize, names, i));
    }
    this.#symbols = out;
    return out;
  }

  /**
   * The best symbol called name, found by comparing the names' bytes in
   * place: no string is made for the others (mariadbd has 30,000 C++ names;
   * indexing them all took 100 ms for the few a capture looks up).
   */
  #lookup(name: string): ElfSymbol | undefined {
    const want = new TextEncoder().encode(name);
    const r = this.#reader;
    let best: ElfSymbol | undefined;
    for (const [table, s, entsize] of this.#symbolTables()) {
      // a defined export is the symbol: node's .symtab (10 MB) is read only for internal names
      if (best !== undefined) break;
      if (table === ".dynsym") {
        const hashed = this.#hashLookup(s, entsize, want);
        if (hashed !== undefined) {
          best = hashed.best;
          continue;
        }
      }
      const data = this.#sectionBytes(s, `symbol table ${s.name}`);
      const names = this.#linkedStrings(s);
      const count = Math.floor(data.length / entsize);
      for (let i = 1; i < count; i++) {
        const at = r.u32(s.offset + i * entsize, "st_name");
        if (at + want.length >= names.length || names[at + want.length] !== 0) continue;
        let k = 0;
        while (k < want.length && names[at + k] === want[k]) k++;
        if (k !== want.length) continue;
        const sym = this.#symbolAt(table, s, entsize, names, i);
        if (sym.shndx === SHN_UNDEF || sym.name === "") continue;
        if (best === undefined || symbolRank(sym) > symbolRank(best)) best = sym;
      }
    }
    return best;
  }

  /**
   * A .dynsym lookup through its GNU hash table, as the dynamic linker does
   * it: a few hundred bytes read instead of the whole table (mariadbd's
   * .dynsym and .dynstr are 2 MB, 23 ms to scan). Undefined when there is
   * no such table (the caller then scans); `best` undefined when the name
   * is not defined there.
   */
  #hashLookup(
    dynsym: ElfSection,
    entsize: number,
    want: Uint8Array,
  ): { best?: ElfSymbol } | undefined {
    const h = this.sections.find((x) => x.type === SHT_GNU_HASH && x.link === dynsym.index);
    const strtab = this.sections[dynsym.link];
    if (h === undefined || strtab === undefined || dynsym.link === 0) return undefined;
    this.#sectionBytes(h, "GNU hash table"); // bounds-checked, then read
    const r = this.#reader;
    const nbuckets = r.u32(h.offset, "gnu hash nbuckets");
    const symoffset = r.u32(h.offset + 4, "gnu hash symoffset");
    const bloomWords = r.u32(h.offset + 8, "gnu hash bloom size");
    const buckets = h.offset + 16 + bloomWords * 8;
    const chains = buckets + nbuckets * 4;
    const count = Math.floor(dynsym.size / entsize);
    if (nbuckets === 0) return undefined;
    let hash = 5381;
    for (const b of want) hash = (Math.imul(hash, 33) + b) >>> 0;
    const names = r.bytes.subarray(strtab.offset, strtab.offset + strtab.size);
    let best: ElfSymbol | undefined;
    // a chain holds the symbols of one bucket in order; its last entry has bit 0 set
    for (let i = r.u32(buckets + (hash % nbuckets) * 4, "gnu hash bucket"); i !== 0; i++) {
      if (i < symoffset || i >= count) break;
      const link = r.u32(chains + (i - symoffset) * 4, "gnu hash chain");
      if (((link ^ hash) >>> 1) === 0) {
        const entry = dynsym.offset + i * entsize;
        this.#ensurePages(entry, SYM_SIZE);
        const at = r.u32(entry, "st_name");
        if (at + want.length < names.length) {
          this.#ensurePages(strtab.offset + at, want.length + 1);
          if (names[at + want.length] === 0 && want.every((b, k) => names[at + k] === b)) {
            const sym = this.#symbolAt(".dynsym", dynsym, entsize, names, i);
            if (sym.shndx !== SHN_UNDEF && (!best || symbolRank(sym) > symbolRank(best))) {
              best = sym;
            }
          }
        }
      }
      if (link & 1) break;
    }
    return { best };
  }

  /**
   * The defined symbol called `name` from .dynsym or .symtab, preferring a
   * FUNC with a nonzero value; undefined if only imports or nothing match.
   */
  symbol(name: string): ElfSymbol | undefined {
    if (!this.#looked.has(name)) this.#looked.set(name, this.#lookup(name));
    return this.#looked.get(name);
  }

  /** All defined, named symbols, deduplicated by name and value. */
  *symbols(): Iterable<ElfSymbol> {
    const seen = new Set<string>();
    for (const s of this.#readSymbols()) {
      if (s.shndx === SHN_UNDEF || s.name === "") continue;
      const key = `${s.name}\0${s.value}`;
      if (seen.has(key)) continue;
      seen.add(key);
      yield s;
    }
  }

  /** The symbol for the first of `names` that exists, in the given order. */
  findFirst(names: string[]): ElfSymbol | undefined {
    for (const name of names) {
      const s = this.symbol(name);
      if (s !== undefined) return s;
    }
    return undefined;
  }

  #readDynamic(): { needed: string[]; soname: string | undefined } {
    if (this.#dynamic !== undefined) return this.#dynamic;
    const result = {
      needed: [] as string[],
      soname: undefined as string | undefined,
    };
    const s = this.sections.find((s) => s.type === SHT_DYNAMIC);
    if (s !== undefined) {
      const r = this.#reader;
      const data = this.#sectionBytes(s, "dynamic section");
      const strings = this.#linkedStrings(s);
      const count = Math.floor(data.length / DYN_SIZE);
      for (let i = 0; i < count; i++) {
        const o = s.offset + i * DYN_SIZE;
        const tag = r.i64(o, "d_tag");
        if (tag === DT_NULL) break;
        if (tag !== DT_NEEDED && tag !== DT_SONAME) continue;
        const name = cString(strings, r.u64(o + 8, "d_val"), "dynamic entry");
        if (tag === DT_NEEDED) result.needed.push(name);
        else result.soname = name;
      }
    }
    this.#dynamic = result;
    return result;
  }

  /** DT_NEEDED entries (shared libraries this file links against). */
  get needed(): string[] {
    return [...this.#readDynamic().needed];
  }

  /** DT_SONAME, for shared libraries that declare one. */
  get soname(): string | undefined {
    return this.#readDynamic().soname;
  }

  /**
   * Opens the ELF file at path reading only its headers and section names;
   * other bytes (symbol tables included) are read when first asked for. The
   * buffer is the file's size but untouched pages cost nothing: reading
   * mariadbd (26 MB) whole took 215 ms here, every fresh page faulting, for
   * 3 MB of tables.
   */
  static openSparse(path: string, size: number): ElfFile {
    const bytes = new Uint8Array(size);
    const fill = (offset: number, length: number) => {
      using file = Deno.openSync(path);
      file.seekSync(offset, Deno.SeekMode.Start);
      const end = Math.min(size, offset + length);
      for (let at = offset; at < end;) {
        const n = file.readSync(bytes.subarray(at, end));
        if (n === null || n === 0) break;
        at += n;
      }
    };
    fill(0, Math.min(size, 4096));
    const v = new DataView(bytes.buffer);
    if (size >= EHDR_SIZE && v.getUint32(0) === 0x7f454c46 && bytes[4] === 2 && bytes[5] === 1) {
      const phoff = Number(v.getBigUint64(32, true)), shoff = Number(v.getBigUint64(40, true));
      const phnum = v.getUint16(56, true), shentsize = v.getUint16(58, true);
      let shnum = v.getUint16(60, true);
      fill(phoff, phnum * v.getUint16(54, true));
      if (shoff > 0 && shoff < size && shentsize >= SHDR_SIZE) {
        fill(shoff, shentsize);
        if (shnum === 0) shnum = Number(v.getBigUint64(shoff + 32, true));
        fill(shoff, Math.min(shnum, 65536) * shentsize);
        // the section names; every other section is read when first asked for
        let names = shnum > 0 ? v.getUint16(62, true) : 0;
        if (names === 0xffff) names = v.getUint32(shoff + 40, true); // in section 0's sh_link
        const o = shoff + names * shentsize;
        if (names > 0 && names < shnum && o + shentsize <= size) {
          fill(Number(v.getBigUint64(o + 24, true)), Number(v.getBigUint64(o + 32, true)));
        }
      }
    } else {
      fill(0, size); // not an ELF64 LE file: parse() says what is wrong with it
    }
    const elf = new ElfFile(bytes);
    elf.#fill = fill;
    return elf;
  }
}

/** Reads and parses the ELF file at `path` (sparsely: see ElfFile.openSparse). */
export async function readElf(path: string): Promise<ElfFile> {
  // One start reads the same large binary (node: ~100 MB) for several
  // probes, so the parsed file is kept a few seconds, by identity: the same
  // file reached by other paths (/proc/PID/root/..., one per process) is
  // one entry. Kept longer or by path, a capture following node processes
  // held a copy of node's symbol tables per process (700 MB).
  const st = await Deno.stat(path);
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  let hit = cache.get(key);
  if (hit === undefined) {
    hit = { elf: ElfFile.openSparse(path, st.size), timer: 0 };
    cache.set(key, hit);
    if (cache.size > MAX_CACHED) forget(cache.keys().next().value!);
  }
  clearTimeout(hit.timer);
  hit.timer = Number(setTimeout(() => forget(key), CACHE_MS)); // a number in Deno
  Deno.unrefTimer(hit.timer);
  return hit.elf;
}

/**
 * How long a parsed file is kept after its last use, and how many at most.
 * Shorter than the 2 s after which an idle capture gives memory back
 * (lib/core/capture.ts), so that the start-up's files are gone by then:
 * held 5 s, they kept 8 MiB resident in an idle `ecap tls`.
 */
const CACHE_MS = 1_500;
const MAX_CACHED = 8;
const cache = new Map<string, { elf: ElfFile; timer: number }>();

function forget(key: string) {
  clearTimeout(cache.get(key)?.timer);
  cache.delete(key);
}
