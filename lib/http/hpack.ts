/**
 * HPACK (RFC 7541): the header compression of HTTP/2. A decoder for captured
 * header blocks, plus a small encoder used to build test input.
 * @module
 */

/** A malformed HPACK header block. */
export class HpackError extends SyntaxError {
  /** Creates the error with a message that says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "HpackError";
  }
}

/** A decoded header field: name and value. */
export type HeaderField = [name: string, value: string];

/** The static table, RFC 7541 Appendix A; index 1 is the first entry. */
export const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/**
 * Code length in bits of each symbol 0..256 (256 = EOS), RFC 7541 Appendix B.
 * The code is canonical (codes ascend with length, then symbol), so the
 * lengths alone determine every code.
 */
// deno-fmt-ignore
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32 ' '
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48 '0'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64 '@'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80 'P'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96 '`'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112 'p'
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
  30, // 256 EOS
];

const EOS = 256;

/** Codes (right-aligned) per symbol, built from HUFFMAN_LENGTHS. */
const HUFFMAN_CODES: readonly number[] = (() => {
  const order = [...HUFFMAN_LENGTHS.keys()].sort((a, b) =>
    HUFFMAN_LENGTHS[a] - HUFFMAN_LENGTHS[b] || a - b
  );
  const codes = new Array<number>(HUFFMAN_LENGTHS.length).fill(0);
  let code = 0;
  let len = HUFFMAN_LENGTHS[order[0]];
  for (const sym of order) {
    // Canonical assignment: next code, shifted left when the length grows.
    code *= 2 ** (HUFFMAN_LENGTHS[sym] - len);
    len = HUFFMAN_LENGTHS[sym];
    codes[sym] = code;
    code++;
  }
  return codes;
})();

/** Decoding tree: node n has children at CHILD[2n] (bit 0) and CHILD[2n+1]; leaves are ~sym. */
const HUFFMAN_TREE: Int32Array = (() => {
  const child = new Int32Array(2 * 2 * HUFFMAN_LENGTHS.length);
  let nodes = 1;
  for (let sym = 0; sym < HUFFMAN_LENGTHS.length; sym++) {
    const len = HUFFMAN_LENGTHS[sym];
    const code = HUFFMAN_CODES[sym];
    let node = 0;
    for (let bit = len - 1; bit > 0; bit--) {
      const slot = 2 * node + (Math.floor(code / 2 ** bit) & 1);
      if (child[slot] === 0) child[slot] = nodes++;
      node = child[slot];
    }
    child[2 * node + (code & 1)] = ~sym;
  }
  return child;
})();

/** Huffman-decodes a string literal's octets (RFC 7541 §5.2). */
export function huffmanDecode(bytes: Uint8Array): Uint8Array {
  // Shortest code is 5 bits, so the output is at most 8/5 of the input.
  const out = new Uint8Array(Math.ceil(bytes.length * 8 / 5));
  let n = 0;
  let node = 0;
  let depth = 0; // bits read since the last complete symbol
  let ones = true; // whether those bits were all 1 (a valid EOS-prefix pad)
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const next = HUFFMAN_TREE[2 * node + b];
      depth++;
      ones &&= b === 1;
      if (next < 0) {
        const sym = ~next;
        if (sym === EOS) throw new HpackError("Huffman string contains EOS");
        out[n++] = sym;
        node = 0;
        depth = 0;
        ones = true;
      } else {
        node = next;
      }
    }
  }
  if (depth > 7) throw new HpackError("Huffman padding longer than 7 bits");
  if (!ones) throw new HpackError("Huffman padding is not an EOS prefix");
  return out.subarray(0, n);
}

/** Huffman-encodes octets (RFC 7541 §5.2), padding with the EOS prefix. */
export function huffmanEncode(bytes: Uint8Array): Uint8Array {
  let bits = 0;
  for (const b of bytes) bits += HUFFMAN_LENGTHS[b];
  const out = new Uint8Array(Math.ceil(bits / 8));
  let acc = 0; // pending bits, fewer than 8 after each flush
  let accBits = 0;
  let n = 0;
  for (const b of bytes) {
    const len = HUFFMAN_LENGTHS[b];
    const code = HUFFMAN_CODES[b];
    // Feed the code a byte at most at a time so `acc` stays within 32 bits.
    for (let left = len; left > 0;) {
      const take = Math.min(8, left);
      left -= take;
      acc = (acc << take) | (Math.floor(code / 2 ** left) & ((1 << take) - 1));
      accBits += take;
      while (accBits >= 8) {
        accBits -= 8;
        out[n++] = (acc >> accBits) & 0xff;
      }
      acc &= (1 << accBits) - 1;
    }
  }
  if (accBits > 0) out[n++] = ((acc << (8 - accBits)) | (0xff >> accBits)) & 0xff;
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

/** Field octets as text: UTF-8 when valid (the common case), else Latin-1. */
function bytesToString(bytes: Uint8Array): string {
  let ascii = true;
  for (const b of bytes) {
    if (b >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return latin1.decode(bytes);
  try {
    return utf8.decode(bytes);
  } catch {
    return latin1.decode(bytes);
  }
}

interface Entry {
  name: string;
  value: string;
  /** Octets of the name. */
  nameSize: number;
  /** Octet size per RFC 7541 §4.1: name + value + 32. */
  size: number;
}

/** The dynamic table, newest entry first for lookups. */
class DynamicTable {
  #entries: Entry[] = [];
  #first = 0; // index of the oldest live entry in #entries
  size = 0;
  capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get length(): number {
    return this.#entries.length - this.#first;
  }

  /** Entry by 1-based dynamic index (1 = newest), or undefined. */
  get(index: number): Entry | undefined {
    if (index < 1 || index > this.length) return undefined;
    return this.#entries[this.#entries.length - index];
  }

  add(entry: Entry): void {
    // An entry larger than the whole table empties it and is not added (§4.4).
    while (this.length > 0 && this.size + entry.size > this.capacity) this.#evict();
    if (entry.size <= this.capacity) {
      this.#entries.push(entry);
      this.size += entry.size;
    }
  }

  resize(capacity: number): void {
    this.capacity = capacity;
    while (this.size > capacity) this.#evict();
  }

  entries(): HeaderField[] {
    const out: HeaderField[] = [];
    for (let i = 1; i <= this.length; i++) {
      const e = this.get(i)!;
      out.push([e.name, e.value]);
    }
    return out;
  }

  #evict(): void {
    const e = this.#entries[this.#first++];
    this.size -= e.size;
    // Compact now and then so evicted entries do not pile up.
    if (this.#first > 64 && this.#first * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#first);
      this.#first = 0;
    }
  }
}

/** Options of {@link HpackDecoder}. */
export interface HpackDecoderOptions {
  /** SETTINGS_HEADER_TABLE_SIZE the peer may use; default 4096. */
  maxTableSize?: number;
  /** Cap on a decoded header list (names + values + 32 each); default 256 KiB. */
  maxHeaderListSize?: number;
  /**
   * Decode references to dynamic entries it does not have into placeholders
   * instead of failing, for captures that start mid-connection.
   */
  lenient?: boolean;
}

/** Upper bound on the table memory we keep, whatever the peer announces. */
const TABLE_SIZE_CAP = 1 << 20;

/**
 * HPACK decoder for one direction of an HTTP/2 connection: decodes header
 * blocks in order, keeping the dynamic table.
 */
export class HpackDecoder {
  #table: DynamicTable;
  #maxTableSize: number;
  #maxHeaderListSize: number;
  /** Placeholders for unknown dynamic indexes instead of errors. */
  lenient: boolean;

  /** Creates a decoder with an empty dynamic table. */
  constructor(options: HpackDecoderOptions = {}) {
    this.#maxTableSize = options.maxTableSize ?? 4096;
    this.#maxHeaderListSize = options.maxHeaderListSize ?? 256 * 1024;
    this.lenient = options.lenient ?? false;
    this.#table = new DynamicTable(Math.min(this.#maxTableSize, TABLE_SIZE_CAP));
  }

  /** The limit the encoder's table size updates must respect (from SETTINGS). */
  get maxTableSize(): number {
    return this.#maxTableSize;
  }

  /**
   * Sets the limit from an acknowledged SETTINGS_HEADER_TABLE_SIZE. The table
   * itself changes only when the encoder sends a size update.
   */
  set maxTableSize(size: number) {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`bad table size ${size}`);
    this.#maxTableSize = size;
  }

  /** Current dynamic table size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.#table.size;
  }

  /** The dynamic table, newest entry first. */
  tableEntries(): HeaderField[] {
    return this.#table.entries();
  }

  /**
   * Decodes one complete header block, updating the dynamic table.
   * @throws {HpackError} on a malformed block or an over-long header list
   */
  decode(block: Uint8Array): HeaderField[] {
    const out: HeaderField[] = [];
    let listSize = 0;
    let tooLarge = false;
    let pos = 0;
    let fieldSeen = false;

    const readInt = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = block[pos++] & max;
      if (value < max) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError("truncated integer");
        // Bounds the loop on runs of 0x80 that add nothing to the value.
        if (shift > 28) throw new HpackError("integer overflow");
        const b = block[pos++];
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        // Values past 2^32 are never meaningful and would lose precision.
        if (value > 0xffffffff) throw new HpackError("integer overflow");
        if ((b & 0x80) === 0) return value;
      }
    };

    const readString = (): { text: string; octets: number } => {
      if (pos >= block.length) throw new HpackError("truncated string literal");
      const huffman = (block[pos] & 0x80) !== 0;
      const len = readInt(7);
      if (len > block.length - pos) throw new HpackError("string literal past end of block");
      let bytes = block.subarray(pos, pos + len);
      pos += len;
      if (huffman) bytes = huffmanDecode(bytes);
      return { text: bytesToString(bytes), octets: bytes.length };
    };

    const lookup = (index: number): Entry => {
      if (index === 0) throw new HpackError("index 0");
      if (index <= STATIC_TABLE.length) {
        const [name, value] = STATIC_TABLE[index - 1];
        return { name, value, nameSize: name.length, size: name.length + value.length + 32 };
      }
      const e = this.#table.get(index - STATIC_TABLE.length);
      if (e !== undefined) return e;
      if (!this.lenient) throw new HpackError(`index ${index} not in table`);
      // The entry predates the capture: show that instead of failing the block.
      const name = `<unknown index ${index}>`;
      return { name, value: "", nameSize: name.length, size: name.length + 32 };
    };

    const emit = (name: string, value: string, size: number) => {
      listSize += size;
      // Keep decoding past the cap so the dynamic table stays in step.
      if (listSize > this.#maxHeaderListSize) tooLarge = true;
      else out.push([name, value]);
    };

    while (pos < block.length) {
      const b = block[pos];
      if (b & 0x80) {
        // Indexed header field (§6.1).
        const e = lookup(readInt(7));
        emit(e.name, e.value, e.size);
        fieldSeen = true;
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only at the start of a block.
        if (fieldSeen) throw new HpackError("table size update after a header field");
        const size = readInt(5);
        if (size > this.#maxTableSize) {
          throw new HpackError(`table size update ${size} exceeds limit ${this.#maxTableSize}`);
        }
        this.#table.resize(Math.min(size, TABLE_SIZE_CAP));
      } else {
        // Literal: with incremental indexing (01), without (0000), never (0001).
        const indexing = (b & 0xc0) === 0x40;
        const index = readInt(indexing ? 6 : 4);
        let name: string;
        let nameSize: number;
        if (index === 0) {
          const s = readString();
          name = s.text;
          nameSize = s.octets;
        } else {
          const e = lookup(index);
          name = e.name;
          nameSize = e.nameSize;
        }
        const v = readString();
        const size = nameSize + v.octets + 32;
        if (indexing) this.#table.add({ name, value: v.text, nameSize, size });
        emit(name, v.text, size);
        fieldSeen = true;
      }
    }
    if (tooLarge) {
      throw new HpackError(`header list exceeds ${this.#maxHeaderListSize} octets`);
    }
    return out;
  }
}

const utf8Encoder = new TextEncoder();

/** Octet length of a field string as the decoder produced it. */
function byteLength(s: string): number {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  return ascii ? s.length : utf8Encoder.encode(s).length;
}

/** Options of {@link HpackEncoder}. */
export interface HpackEncoderOptions {
  /** Huffman-code string literals when that is shorter; default false. */
  huffman?: boolean;
  /** Use and fill the dynamic table (incremental indexing); default false. */
  indexing?: boolean;
  /** Dynamic table size; default 4096. */
  maxTableSize?: number;
}

/**
 * A small HPACK encoder, mainly to produce test input: exact static/dynamic
 * matches become indexed fields, the rest literals.
 */
export class HpackEncoder {
  #huffman: boolean;
  #indexing: boolean;
  #table: DynamicTable;
  #pendingSizeUpdate: number | undefined;

  /** Creates an encoder with an empty dynamic table. */
  constructor(options: HpackEncoderOptions = {}) {
    this.#huffman = options.huffman ?? false;
    this.#indexing = options.indexing ?? false;
    this.#table = new DynamicTable(options.maxTableSize ?? 4096);
  }

  /** Emits a dynamic table size update at the start of the next block. */
  setTableSize(size: number): void {
    this.#pendingSizeUpdate = size;
    this.#table.resize(size);
  }

  /** Encodes one header list into a header block. */
  encode(headers: readonly (readonly [string, string])[]): Uint8Array {
    const out: number[] = [];
    if (this.#pendingSizeUpdate !== undefined) {
      writeInt(out, 0x20, 5, this.#pendingSizeUpdate);
      this.#pendingSizeUpdate = undefined;
    }
    for (const [name, value] of headers) {
      const found = this.#find(name, value);
      if (found.exact !== undefined) {
        writeInt(out, 0x80, 7, found.exact);
        continue;
      }
      const nameIndex = found.name ?? 0;
      if (this.#indexing) writeInt(out, 0x40, 6, nameIndex);
      else writeInt(out, 0x00, 4, nameIndex);
      if (nameIndex === 0) this.#writeString(out, name);
      this.#writeString(out, value);
      if (this.#indexing) {
        const nameSize = byteLength(name);
        this.#table.add({ name, value, nameSize, size: nameSize + byteLength(value) + 32 });
      }
    }
    return new Uint8Array(out);
  }

  #find(name: string, value: string): { exact?: number; name?: number } {
    let nameIndex: number | undefined;
    for (let i = 0; i < STATIC_TABLE.length; i++) {
      const [n, v] = STATIC_TABLE[i];
      if (n !== name) continue;
      if (v === value) return { exact: i + 1 };
      nameIndex ??= i + 1;
    }
    if (this.#indexing) {
      for (let i = 1; i <= this.#table.length; i++) {
        const e = this.#table.get(i)!;
        if (e.name !== name) continue;
        if (e.value === value) return { exact: STATIC_TABLE.length + i };
        nameIndex ??= STATIC_TABLE.length + i;
      }
    }
    return { name: nameIndex };
  }

  #writeString(out: number[], s: string): void {
    const raw = utf8Encoder.encode(s);
    const huff = this.#huffman ? huffmanEncode(raw) : undefined;
    if (huff !== undefined && huff.length < raw.length) {
      writeInt(out, 0x80, 7, huff.length);
      for (const b of huff) out.push(b);
    } else {
      writeInt(out, 0x00, 7, raw.length);
      for (const b of raw) out.push(b);
    }
  }
}

/** Writes an HPACK integer (§5.1) with the given high bits and prefix size. */
function writeInt(out: number[], high: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(high | value);
    return;
  }
  out.push(high | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}
