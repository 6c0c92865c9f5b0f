/**
 * Reader for the BPF Type Format (BTF) emitted by `clang -g -target bpf`, so
 * struct layouts and enum values come from the compiled object instead of
 * being hard-coded in TypeScript.
 *
 * Malformed input only ever raises {@link BtfError}: reads are
 * bounds-checked and type chains are followed a bounded number of hops.
 *
 * @module
 */

import type { ElfFile } from "./elf.ts";

/** Raised for malformed BTF and for lookups of missing types. */
export class BtfError extends SyntaxError {
  /** Creates an error with a message that describes the problem. */
  constructor(message: string) {
    super(message);
    this.name = "BtfError";
  }
}

/** BTF kind names, indexed by their numeric kind. */
export const BTF_KINDS = [
  "UNKN",
  "INT",
  "PTR",
  "ARRAY",
  "STRUCT",
  "UNION",
  "ENUM",
  "FWD",
  "TYPEDEF",
  "VOLATILE",
  "CONST",
  "RESTRICT",
  "FUNC",
  "FUNC_PROTO",
  "VAR",
  "DATASEC",
  "FLOAT",
  "DECL_TAG",
  "TYPE_TAG",
  "ENUM64",
] as const;

/** A BTF kind name such as "STRUCT". */
export type BtfKind = Exclude<(typeof BTF_KINDS)[number], "UNKN">;

/** One member of a BTF struct or union, as stored. */
export interface BtfRawMember {
  name: string;
  type: number;
  /** Offset from the start of the struct, in bits. */
  bitOffset: number;
  /** Bitfield width in bits, 0 for ordinary members. */
  bitSize: number;
}

/** One BTF type; `type` refers to another type id (0 is void). */
export type BtfType =
  | {
    kind: "INT";
    name: string;
    size: number;
    /** BTF_INT_SIGNED (1), BTF_INT_CHAR (2), BTF_INT_BOOL (4) bits. */
    encoding: number;
    bitOffset: number;
    bits: number;
  }
  | {
    kind: "PTR" | "TYPEDEF" | "VOLATILE" | "CONST" | "RESTRICT" | "TYPE_TAG";
    name: string;
    type: number;
  }
  | {
    kind: "ARRAY";
    name: string;
    type: number;
    indexType: number;
    nelems: number;
  }
  | {
    kind: "STRUCT" | "UNION";
    name: string;
    size: number;
    members: BtfRawMember[];
  }
  | {
    kind: "ENUM";
    name: string;
    size: number;
    signed: boolean;
    values: { name: string; value: number }[];
  }
  | {
    kind: "ENUM64";
    name: string;
    size: number;
    signed: boolean;
    values: { name: string; value: bigint }[];
  }
  | { kind: "FWD"; name: string; union: boolean }
  | { kind: "FUNC"; name: string; type: number; linkage: number }
  | {
    kind: "FUNC_PROTO";
    name: string;
    type: number;
    params: { name: string; type: number }[];
  }
  | { kind: "VAR"; name: string; type: number; linkage: number }
  | {
    kind: "DATASEC";
    name: string;
    size: number;
    vars: { type: number; offset: number; size: number }[];
  }
  | { kind: "FLOAT"; name: string; size: number }
  | {
    kind: "DECL_TAG";
    name: string;
    type: number;
    /** Member or parameter index, -1 for the type itself. */
    componentIdx: number;
  };

/** A member of {@link BtfStruct}, in bytes. */
export interface BtfMember {
  /** Byte offset from the start of the struct (rounded down for bitfields). */
  offset: number;
  /** Byte size of the member's type. */
  size: number;
  /** C-like rendering of the member's type, e.g. "__u32", "char[16]". */
  typeName: string;
  /** Type id of the member. */
  typeId: number;
  /** Bit position and width; only set for bitfields. */
  bitfield?: { bitOffset: number; bitSize: number };
}

/** Layout of a struct, with anonymous struct/union members flattened. */
export interface BtfStruct {
  name: string;
  size: number;
  members: Map<string, BtfMember>;
}

const MAGIC = 0xeb9f;
const HEADER_SIZE = 24;
/** Longest chain of typedefs, modifiers, arrays and anonymous members followed. */
const MAX_DEPTH = 64;

const decoder = new TextDecoder();

/** Kinds that {@link Btf} looks up by name. */
type Named = "STRUCT" | "ENUM";

/** A parsed BTF blob: all types, indexed by id (0 is void). */
export class Btf {
  /** Types by id; index 0 is `undefined` (void). */
  readonly types: readonly (BtfType | undefined)[];
  #byName: Map<string, number[]> | undefined;

  private constructor(types: (BtfType | undefined)[]) {
    this.types = types;
  }

  /** Parses a raw `.BTF` section; throws {@link BtfError} if malformed. */
  static parse(bytes: Uint8Array): Btf {
    return new Btf(parseTypes(bytes));
  }

  /** Parses the `.BTF` section of an ELF object (e.g. a BPF object file). */
  static fromElf(elf: ElfFile): Btf {
    const section = elf.section(".BTF");
    if (section === undefined) {
      throw new BtfError("no .BTF section in ELF file (compile with -g)");
    }
    return Btf.parse(section);
  }

  /** The type with id `id`; throws for void or out-of-range ids. */
  type(id: number): BtfType {
    const t = Number.isInteger(id) && id > 0 ? this.types[id] : undefined;
    if (t === undefined) {
      throw new BtfError(
        `type id ${id} out of range (1..${this.types.length - 1})`,
      );
    }
    return t;
  }

  /** Ids of all types called `name`, in id order. */
  idsByName(name: string): number[] {
    if (this.#byName === undefined) {
      const map = new Map<string, number[]>();
      for (let id = 1; id < this.types.length; id++) {
        const n = this.types[id]!.name;
        if (n === "") continue;
        const ids = map.get(n);
        if (ids === undefined) map.set(n, [id]);
        else ids.push(id);
      }
      this.#byName = map;
    }
    return this.#byName.get(name) ?? [];
  }

  /** Follows typedefs, modifiers and type tags to the underlying type id. */
  resolve(id: number): number {
    const start = id;
    for (let hops = 0; hops < MAX_DEPTH; hops++) {
      if (id === 0) return 0;
      const t = this.type(id);
      switch (t.kind) {
        case "TYPEDEF":
        case "VOLATILE":
        case "CONST":
        case "RESTRICT":
        case "TYPE_TAG":
          id = t.type;
          break;
        default:
          return id;
      }
    }
    throw new BtfError(`type chain from ${start} too deep or cyclic`);
  }

  /** Size in bytes of a type, through typedefs, modifiers and arrays. */
  sizeOf(id: number): number {
    return this.#sizeOf(id, 0);
  }

  #sizeOf(id: number, depth: number): number {
    if (depth > MAX_DEPTH) {
      throw new BtfError(`type chain at ${id} too deep or cyclic`);
    }
    const rid = this.resolve(id);
    if (rid === 0) throw new BtfError(`type ${id} is void and has no size`);
    const t = this.type(rid);
    switch (t.kind) {
      case "INT":
      case "ENUM":
      case "ENUM64":
      case "STRUCT":
      case "UNION":
      case "DATASEC":
      case "FLOAT":
        return t.size;
      case "PTR":
        return 8; // BPF and both supported targets are 64-bit
      case "ARRAY": {
        const size = t.nelems * this.#sizeOf(t.type, depth + 1);
        if (!Number.isSafeInteger(size)) {
          throw new BtfError(`array type ${rid} is too large`);
        }
        return size;
      }
      case "VAR":
        return this.#sizeOf(t.type, depth + 1);
      default:
        throw new BtfError(`type ${rid} (${t.kind}) has no size`);
    }
  }

  /** C-like name of a type, e.g. "struct foo *", "char[16]", "const __u32". */
  typeName(id: number): string {
    return this.#typeName(id, 0);
  }

  #typeName(id: number, depth: number): string {
    if (depth > MAX_DEPTH) {
      throw new BtfError(`type chain at ${id} too deep or cyclic`);
    }
    if (id === 0) return "void";
    const t = this.type(id);
    const tagged = (tag: string) => t.name === "" ? `${tag} {...}` : `${tag} ${t.name}`;
    switch (t.kind) {
      case "INT":
      case "FLOAT":
      case "TYPEDEF":
      case "FUNC":
      case "VAR":
      case "DATASEC":
        return t.name;
      case "STRUCT":
        return tagged("struct");
      case "UNION":
        return tagged("union");
      case "ENUM":
      case "ENUM64":
        return tagged("enum");
      case "FWD":
        return `${t.union ? "union" : "struct"} ${t.name}`;
      case "PTR":
        return `${this.#typeName(t.type, depth + 1)} *`;
      case "CONST":
      case "VOLATILE":
      case "RESTRICT":
        return `${t.kind.toLowerCase()} ${this.#typeName(t.type, depth + 1)}`;
      case "TYPE_TAG":
        return this.#typeName(t.type, depth + 1);
      case "DECL_TAG":
        return t.name;
      case "ARRAY": {
        // Nested arrays read outermost first: int[3][4].
        let dims = `[${t.nelems}]`;
        let elem = t.type;
        for (let d = depth;; d++) {
          if (d > MAX_DEPTH) {
            throw new BtfError(`array chain at ${id} too deep or cyclic`);
          }
          const e = elem === 0 ? undefined : this.type(elem);
          if (e?.kind !== "ARRAY") break;
          dims += `[${e.nelems}]`;
          elem = e.type;
        }
        return `${this.#typeName(elem, depth + 1)}${dims}`;
      }
      case "FUNC_PROTO": {
        const params = t.params.map((p) =>
          p.type === 0 ? "..." : this.#typeName(p.type, depth + 1)
        );
        return `${this.#typeName(t.type, depth + 1)} (${params.join(", ")})`;
      }
    }
  }

  /** The id of the named STRUCT/ENUM(64), also found through a typedef. */
  #find(name: string, kind: Named): number | undefined {
    const matches = (id: number) => {
      const k = this.type(id).kind;
      return kind === "ENUM" ? k === "ENUM" || k === "ENUM64" : k === kind;
    };
    const ids = this.idsByName(name);
    const direct = ids.find(matches);
    if (direct !== undefined) return direct;
    for (const id of ids) {
      const t = this.type(id);
      if (t.kind !== "TYPEDEF") continue;
      const rid = this.resolve(id);
      if (rid !== 0 && matches(rid)) return rid;
    }
    return undefined;
  }

  /**
   * Layout of the struct called `name` (or a typedef of one), with byte
   * offsets; members of anonymous nested structs/unions are flattened.
   */
  struct(name: string): BtfStruct {
    const id = this.#find(name, "STRUCT");
    if (id === undefined) {
      throw new BtfError(`struct "${name}" not found in BTF`);
    }
    const t = this.type(id);
    if (t.kind !== "STRUCT") throw new BtfError(`type ${id} is not a struct`);
    const members = new Map<string, BtfMember>();
    this.#addMembers(members, t.members, 0, 0);
    return { name, size: t.size, members };
  }

  #addMembers(
    out: Map<string, BtfMember>,
    members: BtfRawMember[],
    baseBits: number,
    depth: number,
  ): void {
    if (depth > MAX_DEPTH) {
      throw new BtfError("anonymous members nested too deep or cyclic");
    }
    for (const m of members) {
      let bitOffset = baseBits + m.bitOffset;
      let bitSize = m.bitSize;
      const rid = this.resolve(m.type);
      const rt = rid === 0 ? undefined : this.type(rid);
      if (m.name === "") {
        if (rt?.kind === "STRUCT" || rt?.kind === "UNION") {
          this.#addMembers(out, rt.members, bitOffset, depth + 1);
        }
        continue;
      }
      // Old-style bitfields (no kind_flag) put the width in the INT type.
      if (
        bitSize === 0 && rt?.kind === "INT" &&
        (rt.bits !== rt.size * 8 || rt.bitOffset !== 0)
      ) {
        bitOffset += rt.bitOffset;
        bitSize = rt.bits;
      }
      if (out.has(m.name)) continue; // only malformed input repeats a name: keep the first
      const member: BtfMember = {
        offset: Math.floor(bitOffset / 8),
        size: this.sizeOf(m.type),
        typeName: this.typeName(m.type),
        typeId: m.type,
      };
      if (bitSize !== 0 || bitOffset % 8 !== 0) {
        member.bitfield = { bitOffset, bitSize };
      }
      out.set(m.name, member);
    }
  }

  /** Byte offset of `member` in struct `structName`. */
  offsetOf(structName: string, member: string): number {
    const m = this.struct(structName).members.get(member);
    if (m === undefined) {
      throw new BtfError(`struct "${structName}" has no member "${member}"`);
    }
    return m.offset;
  }

  /** Enumerators of the ENUM or ENUM64 called `name` (or a typedef of one). */
  enumValues(name: string): Map<string, number> {
    const id = this.#find(name, "ENUM");
    if (id === undefined) throw new BtfError(`enum "${name}" not found in BTF`);
    const t = this.type(id);
    const out = new Map<string, number>();
    if (t.kind === "ENUM") {
      for (const v of t.values) out.set(v.name, v.value);
    } else if (t.kind === "ENUM64") {
      for (const v of t.values) {
        const n = Number(v.value);
        if (!Number.isSafeInteger(n)) {
          throw new BtfError(
            `enum "${name}" value ${v.name}=${v.value} does not fit a number`,
          );
        }
        out.set(v.name, n);
      }
    }
    return out;
  }
}

/** Decodes the header, string section and type section of a BTF blob. */
function parseTypes(bytes: Uint8Array): (BtfType | undefined)[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (bytes.length < HEADER_SIZE) {
    throw new BtfError(
      `truncated BTF header: ${bytes.length} of ${HEADER_SIZE} bytes`,
    );
  }
  const magic = view.getUint16(0, true);
  if (magic === 0x9feb) throw new BtfError("big-endian BTF is not supported");
  if (magic !== MAGIC) {
    throw new BtfError(
      `not BTF data: bad magic 0x${magic.toString(16).padStart(4, "0")}`,
    );
  }
  const version = view.getUint8(2);
  if (version !== 1) throw new BtfError(`unsupported BTF version ${version}`);
  const hdrLen = view.getUint32(4, true);
  if (hdrLen < HEADER_SIZE || hdrLen > bytes.length) {
    throw new BtfError(`invalid BTF header length ${hdrLen}`);
  }
  const typeOff = view.getUint32(8, true);
  const typeLen = view.getUint32(12, true);
  const strOff = view.getUint32(16, true);
  const strLen = view.getUint32(20, true);
  const section = (off: number, len: number, what: string): number => {
    const start = hdrLen + off;
    if (start + len > bytes.length) {
      throw new BtfError(
        `BTF ${what} [${start}, ${start + len}) exceeds ${bytes.length} bytes`,
      );
    }
    return start;
  };
  const typeStart = section(typeOff, typeLen, "type section");
  const strStart = section(strOff, strLen, "string section");
  const strings = bytes.subarray(strStart, strStart + strLen);

  const str = (off: number): string => {
    if (off === 0) return "";
    if (off >= strings.length) {
      throw new BtfError(
        `BTF string offset ${off} outside string section (${strings.length} bytes)`,
      );
    }
    const end = strings.indexOf(0, off);
    if (end < 0) throw new BtfError(`unterminated BTF string at ${off}`);
    return decoder.decode(strings.subarray(off, end));
  };

  const typeEnd = typeStart + typeLen;
  let pos = typeStart;
  const need = (n: number, what: string) => {
    if (pos + n > typeEnd) {
      throw new BtfError(
        `truncated BTF type section: ${what} needs ${n} bytes at ${pos - typeStart}, ${
          typeEnd - pos
        } left`,
      );
    }
  };
  const u32 = () => {
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const s32 = () => {
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };

  const types: (BtfType | undefined)[] = [undefined];
  // Each type takes at least 12 bytes, so this loop ends with the section.
  while (pos < typeEnd) {
    const id = types.length;
    need(12, `type ${id}`);
    const name = str(u32());
    const info = u32();
    const sizeOrType = u32();
    const vlen = info & 0xffff;
    const kindNum = (info >>> 24) & 0x1f;
    const kindFlag = (info >>> 31) === 1;
    const kind = BTF_KINDS[kindNum];
    const what = `type ${id} (${kind ?? kindNum})`;
    let t: BtfType;
    switch (kind) {
      case "INT": {
        need(4, what);
        const v = u32();
        t = {
          kind,
          name,
          size: sizeOrType,
          encoding: (v >>> 24) & 0xf,
          bitOffset: (v >>> 16) & 0xff,
          bits: v & 0xff,
        };
        break;
      }
      case "PTR":
      case "TYPEDEF":
      case "VOLATILE":
      case "CONST":
      case "RESTRICT":
      case "TYPE_TAG":
        t = { kind, name, type: sizeOrType };
        break;
      case "ARRAY":
        need(12, what);
        t = { kind, name, type: u32(), indexType: u32(), nelems: u32() };
        break;
      case "STRUCT":
      case "UNION": {
        need(vlen * 12, what);
        const members: BtfRawMember[] = [];
        for (let i = 0; i < vlen; i++) {
          const mName = str(u32());
          const mType = u32();
          const off = u32();
          members.push({
            name: mName,
            type: mType,
            bitOffset: kindFlag ? off & 0xffffff : off,
            bitSize: kindFlag ? off >>> 24 : 0,
          });
        }
        t = { kind, name, size: sizeOrType, members };
        break;
      }
      case "ENUM": {
        need(vlen * 8, what);
        const values: { name: string; value: number }[] = [];
        for (let i = 0; i < vlen; i++) {
          const vName = str(u32());
          // kind_flag marks a signed enum; unsigned ones may exceed 2^31.
          const value = kindFlag ? s32() : u32();
          values.push({ name: vName, value });
        }
        t = { kind, name, size: sizeOrType, signed: kindFlag, values };
        break;
      }
      case "ENUM64": {
        need(vlen * 12, what);
        const values: { name: string; value: bigint }[] = [];
        for (let i = 0; i < vlen; i++) {
          const vName = str(u32());
          const lo = BigInt(u32());
          const hi = BigInt(u32());
          const raw = (hi << 32n) | lo;
          values.push({
            name: vName,
            value: kindFlag ? BigInt.asIntN(64, raw) : raw,
          });
        }
        t = { kind, name, size: sizeOrType, signed: kindFlag, values };
        break;
      }
      case "FWD":
        t = { kind, name, union: kindFlag };
        break;
      case "FUNC":
        t = { kind, name, type: sizeOrType, linkage: vlen };
        break;
      case "FUNC_PROTO": {
        need(vlen * 8, what);
        const params: { name: string; type: number }[] = [];
        for (let i = 0; i < vlen; i++) {
          params.push({ name: str(u32()), type: u32() });
        }
        t = { kind, name, type: sizeOrType, params };
        break;
      }
      case "VAR":
        need(4, what);
        t = { kind, name, type: sizeOrType, linkage: u32() };
        break;
      case "DATASEC": {
        need(vlen * 12, what);
        const vars: { type: number; offset: number; size: number }[] = [];
        for (let i = 0; i < vlen; i++) {
          vars.push({ type: u32(), offset: u32(), size: u32() });
        }
        t = { kind, name, size: sizeOrType, vars };
        break;
      }
      case "FLOAT":
        t = { kind, name, size: sizeOrType };
        break;
      case "DECL_TAG":
        need(4, what);
        t = { kind, name, type: sizeOrType, componentIdx: s32() };
        break;
      default:
        throw new BtfError(`type ${id} has unknown BTF kind ${kindNum}`);
    }
    types.push(t);
  }
  return types;
}
