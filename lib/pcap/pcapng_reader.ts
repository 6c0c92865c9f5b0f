/**
 * A strict pcapng reader (draft-ietf-opsawg-pcapng) for checking the files
 * ecap writes field by field: SHB (either byte order), IDB, EPB, SPB and
 * DSB; other block types are listed but skipped.
 * @module
 */

import { BLOCK_DSB, BLOCK_EPB, BLOCK_IDB, BLOCK_SHB, BLOCK_SPB } from "./pcapng_writer.ts";

/** Malformed pcapng input: a bad length, a truncated block, a bad option. */
export class PcapngError extends SyntaxError {
  /** Creates the error with a message that says what was wrong and where. */
  constructor(message: string) {
    super(message);
    this.name = "PcapngError";
  }
}

/** A Section Header Block. */
export interface PcapngSection {
  /** Byte offset of the block in the file. */
  offset: number;
  littleEndian: boolean;
  major: number;
  minor: number;
  /** -1n when not specified. */
  sectionLength: bigint;
  hardware?: string;
  os?: string;
  application?: string;
  comments: string[];
}

/** An Interface Description Block. */
export interface PcapngInterfaceInfo {
  /** Index into `sections`; interface ids start at 0 again in each section. */
  section: number;
  linkType: number;
  snapLen: number;
  name?: string;
  description?: string;
  /** The raw `if_tsresol` byte: bit 7 clear = 10^-n s, set = 2^-n s. */
  tsresol?: number;
  comments: string[];
}

/** A packet from an Enhanced or Simple Packet Block. */
export interface PcapngPacketInfo {
  section: number;
  /** Section-local interface id (always 0 for a Simple Packet Block). */
  interfaceId: number;
  /** Nanoseconds since the epoch, converted from `if_tsresol`; 0n for an SPB. */
  timestampNs: bigint;
  data: Uint8Array;
  originalLength: number;
  /** `epb_flags`, when present. */
  flags?: number;
  comments: string[];
}

/** A Decryption Secrets Block. */
export interface PcapngSecrets {
  /** Secrets type, e.g. 0x544c534b ("TLSK"). */
  type: number;
  data: Uint8Array;
}

/** Everything {@linkcode readPcapng} found. */
export interface PcapngFile {
  sections: PcapngSection[];
  interfaces: PcapngInterfaceInfo[];
  packets: PcapngPacketInfo[];
  secrets: PcapngSecrets[];
  /** Every block, known or not, in file order. */
  blocks: { type: number; offset: number }[];
}

const decoder = new TextDecoder(); // not fatal: odd text must not throw TypeError

interface Opt {
  code: number;
  value: Uint8Array;
}

/** Parses options from `start` to `end` (the body's end), offsets relative to the file. */
function readOptions(bytes: Uint8Array, v: DataView, le: boolean, start: number, end: number) {
  const out: Opt[] = [];
  let off = start;
  while (off < end) {
    if (end - off < 4) throw new PcapngError(`truncated option header at ${off}`);
    const code = v.getUint16(off, le);
    const len = v.getUint16(off + 2, le);
    if (code === 0) break; // opt_endofopt; anything after it is ignored
    if (off + 4 + len > end) throw new PcapngError(`option ${code} at ${off} overruns its block`);
    out.push({ code, value: bytes.subarray(off + 4, off + 4 + len) });
    off += 4 + pad4(len); // always advances by at least 4
  }
  return out;
}

function text(opts: Opt[], code: number): string | undefined {
  const o = opts.find((x) => x.code === code);
  return o === undefined ? undefined : decoder.decode(o.value);
}

function comments(opts: Opt[]): string[] {
  return opts.filter((o) => o.code === 1).map((o) => decoder.decode(o.value));
}

/** Converts a timestamp in `if_tsresol` units to nanoseconds. */
function toNs(units: bigint, tsresol: number): bigint {
  const n = BigInt(tsresol & 0x7f);
  if (tsresol & 0x80) return (units * 1_000_000_000n) >> n;
  return n <= 9n ? units * 10n ** (9n - n) : units / 10n ** (n - 9n);
}

/** The byte order an SHB at `off` declares, or an error. */
function shbByteOrder(v: DataView, off: number): boolean {
  if (v.byteLength - off < 12) throw new PcapngError(`truncated section header at ${off}`);
  const magic = v.getUint32(off + 8, true);
  if (magic === 0x1a2b3c4d) return true;
  if (magic === 0x4d3c2b1a) return false;
  throw new PcapngError(`bad byte-order magic 0x${magic.toString(16)} at ${off + 8}`);
}

/**
 * Parses a whole pcapng file. An empty input, or one cut exactly at a block
 * boundary, is valid; anything else malformed throws {@linkcode PcapngError}.
 */
export function readPcapng(bytes: Uint8Array): PcapngFile {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const file: PcapngFile = { sections: [], interfaces: [], packets: [], secrets: [], blocks: [] };
  let le = true;
  let sectionIfaces: PcapngInterfaceInfo[] = [];
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < 8) throw new PcapngError(`truncated block header at ${off}`);
    const type = v.getUint32(off, le);
    if (type === BLOCK_SHB) le = shbByteOrder(v, off);
    else if (file.sections.length === 0) {
      throw new PcapngError(`file does not start with a section header (block 0x${hex(type)})`);
    }
    const total = v.getUint32(off + 4, le);
    if (total < 12 || total % 4 !== 0) throw new PcapngError(`bad block length ${total} at ${off}`);
    if (total > bytes.length - off) {
      throw new PcapngError(`block at ${off} needs ${total} bytes, ${bytes.length - off} left`);
    }
    const end = off + total - 4; // end of the body
    if (v.getUint32(end, le) !== total) {
      throw new PcapngError(`trailing block length at ${end} does not match ${total}`);
    }
    const body = off + 8;
    const bodyLen = end - body;
    const need = (n: number, what: string) => {
      if (bodyLen < n) throw new PcapngError(`${what} at ${off} is too short (${total} bytes)`);
    };
    file.blocks.push({ type, offset: off });

    if (type === BLOCK_SHB) {
      need(16, "section header");
      const opts = readOptions(bytes, v, le, body + 16, end);
      file.sections.push({
        offset: off,
        littleEndian: le,
        major: v.getUint16(body + 4, le),
        minor: v.getUint16(body + 6, le),
        sectionLength: v.getBigInt64(body + 8, le),
        hardware: text(opts, 2),
        os: text(opts, 3),
        application: text(opts, 4),
        comments: comments(opts),
      });
      sectionIfaces = [];
    } else if (type === BLOCK_IDB) {
      need(8, "interface description");
      const opts = readOptions(bytes, v, le, body + 8, end);
      const tsOpt = opts.find((o) => o.code === 9);
      if (tsOpt !== undefined && tsOpt.value.length !== 1) {
        throw new PcapngError(`if_tsresol at ${off} has length ${tsOpt.value.length}`);
      }
      const iface: PcapngInterfaceInfo = {
        section: file.sections.length - 1,
        linkType: v.getUint16(body, le),
        snapLen: v.getUint32(body + 4, le),
        name: text(opts, 2),
        description: text(opts, 3),
        tsresol: tsOpt?.value[0],
        comments: comments(opts),
      };
      sectionIfaces.push(iface);
      file.interfaces.push(iface);
    } else if (type === BLOCK_EPB) {
      need(20, "enhanced packet");
      const interfaceId = v.getUint32(body, le);
      const iface = sectionIfaces[interfaceId];
      if (iface === undefined) {
        throw new PcapngError(`packet at ${off}: no interface ${interfaceId}`);
      }
      const units = (BigInt(v.getUint32(body + 4, le)) << 32n) | BigInt(v.getUint32(body + 8, le));
      const capLen = v.getUint32(body + 12, le);
      if (capLen > bodyLen - 20) {
        throw new PcapngError(`packet at ${off}: captured length ${capLen} overruns the block`);
      }
      const dataEnd = body + 20 + capLen;
      const opts = readOptions(bytes, v, le, Math.min(end, pad4(dataEnd)), end);
      const flagsOpt = opts.find((o) => o.code === 2);
      if (flagsOpt !== undefined && flagsOpt.value.length !== 4) {
        throw new PcapngError(`epb_flags at ${off} has length ${flagsOpt.value.length}`);
      }
      file.packets.push({
        section: iface.section,
        interfaceId,
        timestampNs: toNs(units, iface.tsresol ?? 6),
        data: bytes.subarray(body + 20, dataEnd),
        originalLength: v.getUint32(body + 16, le),
        flags: flagsOpt === undefined
          ? undefined
          : new DataView(flagsOpt.value.buffer, flagsOpt.value.byteOffset, 4).getUint32(0, le),
        comments: comments(opts),
      });
    } else if (type === BLOCK_SPB) {
      need(4, "simple packet");
      const iface = sectionIfaces[0];
      if (iface === undefined) throw new PcapngError(`simple packet at ${off}: no interface 0`);
      const originalLength = v.getUint32(body, le);
      // The captured length is implied: the smallest of these three.
      let capLen = Math.min(originalLength, bodyLen - 4);
      if (iface.snapLen > 0) capLen = Math.min(capLen, iface.snapLen);
      file.packets.push({
        section: iface.section,
        interfaceId: 0,
        timestampNs: 0n,
        data: bytes.subarray(body + 4, body + 4 + capLen),
        originalLength,
        comments: [],
      });
    } else if (type === BLOCK_DSB) {
      need(8, "decryption secrets");
      const secretsLen = v.getUint32(body + 4, le);
      if (secretsLen > bodyLen - 8) {
        throw new PcapngError(`secrets at ${off}: length ${secretsLen} overruns the block`);
      }
      const dataEnd = body + 8 + secretsLen;
      readOptions(bytes, v, le, Math.min(end, pad4(dataEnd)), end); // validate only
      file.secrets.push({ type: v.getUint32(body, le), data: bytes.subarray(body + 8, dataEnd) });
    }
    off += total;
  }
  return file;
}

/**
 * True when `bytes` is a chain of whole blocks ending exactly at the end of
 * the input (e.g. after a capture stopped by a full disk). Only framing is
 * checked: block lengths, byte order and the repeated trailing length.
 */
export function pcapngBlocksComplete(bytes: Uint8Array): boolean {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < 12) return false;
    const type = v.getUint32(off, le);
    if (type === BLOCK_SHB) {
      const magic = v.getUint32(off + 8, true);
      if (magic !== 0x1a2b3c4d && magic !== 0x4d3c2b1a) return false;
      le = magic === 0x1a2b3c4d;
    }
    const total = v.getUint32(off + 4, le);
    if (total < 12 || total % 4 !== 0 || total > bytes.length - off) return false;
    if (v.getUint32(off + total - 4, le) !== total) return false;
    off += total;
  }
  return true;
}

/** Rounds up to a multiple of 4 without 32-bit bitwise overflow. */
function pad4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
