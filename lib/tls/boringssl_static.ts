/**
 * Finds BoringSSL's SSL_write, SSL_read, SSL_do_handshake and ssl_log_secret
 * in a program that links it statically and carries no symbols (Chromium).
 *
 * Every OPENSSL_PUT_ERROR(SSL, reason) in ssl/ssl_lib.cc compiles to
 *
 *     lea rcx,[rip+"…/ssl/ssl_lib.cc"]; mov edi,0x10; xor esi,esi;
 *     mov edx,REASON; mov r8d,__LINE__; call ERR_put_error
 *
 * so each such site gives a (reason, line) inside the function that reports
 * it, and the functions are told apart by their reasons and the source order
 * of their lines. ssl_log_secret is the function called right after
 * `lea rsi,["CLIENT_RANDOM"]` and the other key-log labels.
 *
 * A uprobe at a wrong address corrupts the target's code, so each address
 * returned is checked: inside the executable segment, a function start
 * (an .eh_frame FDE's, or aligned after padding and the target of a direct
 * call or jump), and an instruction boundary (decoding from it reaches its
 * error sites exactly). Anything unexpected gives undefined, never a guess.
 * @module
 */

import { ElfError, type ElfFile, EM_X86_64, PF_W, PF_X, PT_LOAD, readElf } from "../binary/elf.ts";
import { readInto } from "../binary/elf_peek.ts";
import { Reader, Unwind, UnwindError } from "../binary/eh_frame.ts";
import { decodeInstruction, X86DecodeError, type X86Instruction } from "../binary/x86_ret.ts";
import { indexOfBytes } from "../base/bytes.ts";

/** BoringSSL functions found in a binary without symbols: file offsets for uprobes. */
export interface LocatedBoringssl {
  sslWrite: number;
  sslRead: number;
  sslDoHandshake: number;
  /** ssl_log_secret(ssl, label, secret, len): every secret passes here (undefined if not found). */
  logSecret?: number;
  /**
   * Struct offsets read from the code, where found: SSL -> s3, s3 -> client_random.
   * Both or neither: one alone cannot locate the client random.
   */
  sslS3?: number;
  s3ClientRandom?: number;
  /** How each was found, for the user's start line and --verbose. */
  how: string;
}

/** The functions found, by the names a symbol table would give them. */
export function locatedSymbols(l: LocatedBoringssl): Record<string, number> {
  return { SSL_write: l.sslWrite, SSL_read: l.sslRead, SSL_do_handshake: l.sslDoHandshake };
}

/** Where keys come from: ssl_log_secret and the client random's place, when all were found. */
export function secretSource(
  l: LocatedBoringssl | undefined,
): { logSecret: number; sslS3: number; s3ClientRandom: number } | undefined {
  if (l?.logSecret === undefined || l.sslS3 === undefined || l.s3ClientRandom === undefined) {
    return undefined;
  }
  return { logSecret: l.logSecret, sslS3: l.sslS3, s3ClientRandom: l.s3ClientRandom };
}

const ERR_LIB_SSL = 0x10;
const SHOULD_NOT_HAVE_BEEN_CALLED = 66;
const BAD_LENGTH = 111;
const CONNECTION_TYPE_NOT_SET = 134;
const SSL_HANDSHAKE_FAILURE = 215;
const UNINITIALIZED = 226;

/** NSS key-log labels BoringSSL passes to ssl_log_secret. */
const LABELS = [
  "CLIENT_RANDOM",
  "CLIENT_EARLY_TRAFFIC_SECRET",
  "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
  "SERVER_HANDSHAKE_TRAFFIC_SECRET",
  "CLIENT_TRAFFIC_SECRET_0",
  "SERVER_TRAFFIC_SECRET_0",
  "EXPORTER_SECRET",
];
/** Labels that must lead to the same callee before it is taken for ssl_log_secret. */
const MIN_LABELS = 4;
const SSL_LIB = "ssl/ssl_lib.cc";

/** The file is read this much at a time (Chromium's code alone is 236 MB). */
const CHUNK = 4 << 20;
/** True when some region holds SSL_LIB's file name, NUL-terminated. */
async function mentionsSslLib(file: Deno.FsFile, buf: Uint8Array, regions: Region[]) {
  const needle = new TextEncoder().encode(`${SSL_LIB}\0`);
  for (const r of regions) {
    for (let pos = 0; pos < r.size; pos += CHUNK) {
      const from = Math.max(0, pos - needle.length);
      const b = await readInto(file, buf, r.offset + from, Math.min(r.size, pos + CHUNK) - from);
      if (indexOfBytes(b, needle) >= 0) return true;
    }
  }
  return false;
}

/** How far before a chunk's start a string may begin. */
const STRING_BACK = 512;
/** Farthest an error site is looked for from its function's start. */
const MAX_FUNCTION = 0x8000;
/** Error sites below this many mean the file string is used some other way. */
const MIN_SITES = 8;

const SHT_PROGBITS = 1;
const SHF_WRITE = 1, SHF_ALLOC = 2, SHF_EXECINSTR = 4;

/** Raised inside this module when the file is not what the method recognises. */
class Unrecognised extends Error {}

function fail(why: string): never {
  throw new Unrecognised(why);
}

/** Answers by file identity: ecap asks once per probe of the same program. */
const cache = new Map<string, Promise<LocatedBoringssl | undefined>>();
const MAX_CACHED = 64;

/**
 * Finds them in path, or undefined when the file carries no BoringSSL this
 * method recognises (never a guess). Throws Deno errors when it cannot be read.
 */
export async function locateBoringssl(path: string): Promise<LocatedBoringssl | undefined> {
  // by identity, not name: a program upgraded in place has other offsets
  const st = await Deno.stat(path);
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  let found = cache.get(key);
  if (found === undefined) {
    found = locate(path);
    cache.set(key, found);
    if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
    found.catch(() => cache.delete(key)); // an I/O error is not an answer
  }
  return await found;
}

async function locate(path: string): Promise<LocatedBoringssl | undefined> {
  let elf: ElfFile;
  try {
    elf = await readElf(path);
  } catch (e) {
    if (e instanceof ElfError) return undefined;
    throw e;
  }
  if (elf.machine !== EM_X86_64) return undefined;
  using file = await Deno.open(path);
  try {
    return await search(elf, file);
  } catch (e) {
    if (e instanceof Unrecognised || e instanceof UnwindError) return undefined;
    throw e;
  }
}

/** A range of the file and where it is mapped. */
interface Region {
  offset: number;
  vaddr: number;
  size: number;
}

async function search(elf: ElfFile, file: Deno.FsFile): Promise<LocatedBoringssl> {
  const exec = elf.segments.filter((s) => s.type === PT_LOAD && s.flags & PF_X && s.filesz > 0);
  if (exec.length !== 1) fail("expects one executable PT_LOAD");
  const seg = exec[0];
  if (seg.filesz >= 2 ** 30) fail("executable segment over 1 GiB"); // keeps bit indexes int32
  const reader = new Reader(file);
  const text = new Text(reader, { offset: seg.offset, vaddr: seg.vaddr, size: seg.filesz });
  const buf = new Uint8Array(CHUNK + STRING_BACK); // one chunk buffer for both passes
  // most programs asked about carry no BoringSSL: say so from one quick pass
  if (!await mentionsSslLib(file, buf, constRegions(elf))) fail(`no "${SSL_LIB}" string`);
  const strings = await findStrings(file, buf, constRegions(elf));
  if (strings.sslLib.length === 0) fail(`no "${SSL_LIB}" string`);
  const scan = await scanCode(file, buf, text.region, strings);
  const unwind = await Unwind.open(reader, elf);
  const ctx: Context = { text, targets: scan.targets, unwind };

  // 1. the error sites, each with its reason and line, grouped by function
  const decoded = (await Promise.all(scan.sslSites.map((lea) => decodeSite(text, lea))))
    .filter((s) => s !== undefined);
  const putError = mostCommon(decoded.map((s) => s.callee));
  const sites = decoded.filter((s) => s.callee === putError);
  if (sites.length < MIN_SITES) fail(`${sites.length} error sites`);
  const funcs = new Map<number, Func>();
  for (const site of sites) {
    const start = await functionStart(ctx, site.lea);
    if (start === undefined) continue;
    const f = funcs.get(start.va) ?? { start, sites: [] };
    f.sites.push(site);
    funcs.set(start.va, f);
  }

  // 2. which function is which, by reasons and the source order of lines
  const all = [...funcs.values()];
  const has = (f: Func, reason: number) => f.sites.some((s) => s.reason === reason);
  const lines = (f: Func, reason?: number) =>
    f.sites.filter((s) => reason === undefined || s.reason === reason).map((s) => s.line);
  const handshake = only(all.filter((f) => has(f, CONNECTION_TYPE_NOT_SET)), "SSL_do_handshake");
  // ssl_read_impl (inlined or not) and SSL_write both check UNINITIALIZED and
  // SSL_HANDSHAKE_FAILURE; SSL_write's lines come last
  const both = all.filter((f) => has(f, UNINITIALIZED) && has(f, SSL_HANDSHAKE_FAILURE));
  const uninitLine = (f: Func) => Math.min(...lines(f, UNINITIALIZED));
  const byLine = [...new Set(both.map(uninitLine))].sort((a, b) => a - b);
  if (byLine.length !== 2) fail(`${byLine.length} UNINITIALIZED lines with a handshake check`);
  const write = only(both.filter((f) => uninitLine(f) === byLine[1]), "SSL_write");
  const readImpl = both.filter((f) => uninitLine(f) === byLine[0]);
  const readImplEnd = Math.max(...readImpl.flatMap((f) => lines(f)));
  const writeFrom = Math.min(...lines(write));
  if (!(Math.max(...lines(handshake)) < Math.min(...readImpl.flatMap((f) => lines(f))))) {
    fail("SSL_do_handshake's lines do not come before ssl_read_impl's");
  }
  if (!(readImplEnd < writeFrom)) fail("ssl_read_impl's lines do not come before SSL_write's");
  const writeTo = Math.max(...lines(write));
  if (sites.some((s) => s.reason === BAD_LENGTH && s.line > writeFrom && s.line < writeTo)) {
    if (!has(write, BAD_LENGTH)) fail("SSL_write's BAD_LENGTH check is elsewhere");
  }
  // SSL_peek's QUIC check sits between them; SSL_read inlines SSL_peek, so
  // both carry it, and SSL_read, which also consumes the data, is the larger
  const peekish = all.filter((f) =>
    !readImpl.includes(f) && f !== write &&
    lines(f, SHOULD_NOT_HAVE_BEEN_CALLED).some((l) => l > readImplEnd && l < writeFrom)
  );
  if (peekish.length !== 2) fail(`${peekish.length} functions with SSL_peek's check`);
  const sizes = await Promise.all(peekish.map((f) => functionSize(ctx, f.start)));
  if (sizes[0] === sizes[1]) fail("SSL_read and SSL_peek have the same size");
  const read = sizes[0] > sizes[1] ? peekish[0] : peekish[1];

  for (
    const [name, f] of [["SSL_write", write], ["SSL_read", read], [
      "SSL_do_handshake",
      handshake,
    ]] as const
  ) {
    await verify(ctx, f, name);
  }

  // 3. ssl_log_secret, the offsets it reads, and the answer
  const logSecret = await findLogSecret(ctx, scan.labelSites);
  const offsets = await structOffsets(text, write.start.va, logSecret?.va);
  const starts = [write, read, handshake].map((f) => f.start);
  const how = [
    `found without symbols from ${sites.length} BoringSSL error sites in "${strings.sslLibText}"`,
    `SSL_write, SSL_read, SSL_do_handshake at ${evidence(starts)}`,
    logSecret ? `ssl_log_secret by ${logSecret.labels} key-log labels` : "ssl_log_secret not found",
    offsets
      ? `ssl->s3 at ${hex(offsets.sslS3)}, s3->client_random at ${hex(offsets.s3ClientRandom)}`
      : "struct offsets not found",
  ].join("; ");
  return {
    sslWrite: text.fileOffset(write.start.va),
    sslRead: text.fileOffset(read.start.va),
    sslDoHandshake: text.fileOffset(handshake.start.va),
    ...(logSecret && { logSecret: text.fileOffset(logSecret.va) }),
    ...offsets,
    how,
  };
}

// ---------------------------------------------------------------------------
// Reading the file

/** The executable segment, read in small windows by address. */
class Text {
  constructor(readonly reader: Reader, readonly region: Region) {}

  has(va: number): boolean {
    return va >= this.region.vaddr && va < this.region.vaddr + this.region.size;
  }

  fileOffset(va: number): number {
    return va - this.region.vaddr + this.region.offset;
  }

  /** Up to length bytes from va, fewer at the segment's end; none outside it. */
  bytes(va: number, length: number): Promise<Uint8Array> {
    const end = Math.min(va + length, this.region.vaddr + this.region.size);
    if (!this.has(va) || end <= va) return Promise.resolve(new Uint8Array(0));
    return this.reader.at(this.fileOffset(va), end - va);
  }
}

/** Read-only data: sections where there are section headers, else segments. */
function constRegions(elf: ElfFile): Region[] {
  const sections = elf.sections.filter((s) =>
    s.type === SHT_PROGBITS && s.flags & SHF_ALLOC && !(s.flags & (SHF_WRITE | SHF_EXECINSTR)) &&
    s.size > 0
  );
  if (sections.length > 0) {
    return sections.map((s) => ({ offset: s.offset, vaddr: s.addr, size: s.size }));
  }
  return elf.segments.filter((s) => s.type === PT_LOAD && !(s.flags & (PF_W | PF_X)))
    .map((s) => ({ offset: s.offset, vaddr: s.vaddr, size: s.filesz }));
}

interface Strings {
  /** Address ranges [lo, hi]: a pointer into one points at a string ending in SSL_LIB. */
  sslLib: [number, number][];
  sslLibText: string;
  /** Address of each key-log label string (with its NUL). */
  labels: Map<number, string>;
}

async function findStrings(
  file: Deno.FsFile,
  buf: Uint8Array,
  regions: Region[],
): Promise<Strings> {
  const enc = new TextEncoder();
  const sslLib = enc.encode(`${SSL_LIB}\0`);
  const labels = LABELS.map((l) => ({ label: l, bytes: enc.encode(`${l}\0`) }));
  const out: Strings = { sslLib: [], sslLibText: "", labels: new Map() };
  const endsWith = (b: Uint8Array, end: number, needle: Uint8Array) => {
    const at = end - needle.length;
    if (at < 0) return false;
    for (let k = needle.length - 2; k >= 0; k--) if (b[at + k] !== needle[k]) return false;
    return true;
  };
  for (const r of regions) {
    for (let pos = 0; pos < r.size; pos += CHUNK) {
      const from = Math.max(0, pos - STRING_BACK);
      const b = await readInto(file, buf, r.offset + from, Math.min(r.size, pos + CHUNK) - from);
      for (let i = b.indexOf(0, pos - from); i >= 0; i = b.indexOf(0, i + 1)) {
        const last = b[i - 1];
        // only the NUL of a string ending in "c", "M", "T" or "0" can end a needle
        if (last === 0x63 && endsWith(b, i + 1, sslLib)) {
          const at = i + 1 - sslLib.length;
          if (at > 0 && b[at - 1] !== 0x2f && b[at - 1] !== 0) continue; // "/ssl/…" only
          let lo = at;
          while (lo > 0 && b[lo - 1] !== 0) lo--;
          out.sslLib.push([r.vaddr + from + lo, r.vaddr + from + at]);
          out.sslLibText ||= new TextDecoder().decode(b.subarray(lo, i));
        } else if (last === 0x4d || last === 0x54 || last === 0x30) {
          for (const { label, bytes } of labels) {
            if (endsWith(b, i + 1, bytes)) {
              out.labels.set(r.vaddr + from + i + 1 - bytes.length, label);
            }
          }
        }
      }
    }
  }
  return out;
}

/** Direct call and jump targets at 16-byte aligned addresses, one bit each. */
class Targets {
  constructor(readonly base: number, readonly calls: Uint8Array, readonly jmps: Uint8Array) {}

  #bit(bits: Uint8Array, va: number): boolean {
    const k = (va - this.base) / 16;
    return Number.isInteger(k) && k >= 0 && k < bits.length * 8 &&
      (bits[k >> 3] & (1 << (k & 7))) !== 0;
  }

  call(va: number): boolean {
    return this.#bit(this.calls, va);
  }

  jmp(va: number): boolean {
    return this.#bit(this.jmps, va);
  }
}

interface CodeScan {
  targets: Targets;
  /** Each `lea r64,[rip+x]` with x in a string ending in SSL_LIB. */
  sslSites: number[];
  /** Each `lea rsi,[rip+label]`, with its label. */
  labelSites: [number, string][];
}

/**
 * One pass over the executable segment: the leas that load the strings, and
 * the aligned targets of every E8/E9 rel32 (bytes that only look like a
 * call mark a bit too; a target is evidence, never proof on its own).
 */
async function scanCode(
  file: Deno.FsFile,
  buf: Uint8Array,
  x: Region,
  strings: Strings,
): Promise<CodeScan> {
  const phase = x.vaddr % 16;
  const bytes = Math.ceil((x.size + phase) / 128) + 1;
  const scan: ChunkScan = {
    calls: new Uint8Array(bytes),
    jmps: new Uint8Array(bytes),
    leas: [],
    limit: x.size + phase,
    origin: x.vaddr - phase,
    lo: Math.min(...strings.sslLib.flat(), ...strings.labels.keys()),
    hi: Math.max(...strings.sslLib.flat(), ...strings.labels.keys()),
  };
  // each chunk starts a byte early (a lea's REX prefix) and ends 6 late (rel32s)
  for (let pos = 0; pos < x.size; pos += CHUNK) {
    const from = pos === 0 ? 0 : pos - 1;
    const b = await readInto(file, buf, x.offset + from, Math.min(x.size, pos + CHUNK + 6) - from);
    scanChunk(scan, b, pos - from, Math.min(pos + CHUNK, x.size) - from, from + phase);
  }
  const sslSites: number[] = [], labelSites: [number, string][] = [];
  for (let k = 0; k < scan.leas.length; k += 3) {
    const va = scan.leas[k], t = scan.leas[k + 1], rex = scan.leas[k + 2] & 0xff;
    if (strings.sslLib.some(([a, z]) => t >= a && t <= z)) sslSites.push(va);
    const label = strings.labels.get(t);
    if (label !== undefined && rex === 0x48 && (scan.leas[k + 2] & 0x3800) === 0x3000) {
      labelSites.push([va, label]); // lea rsi: the label is the second argument
    }
  }
  return { targets: new Targets(x.vaddr - phase, scan.calls, scan.jmps), sslSites, labelSites };
}

/** What scanChunk fills in; addresses relative to the 16-byte aligned segment base. */
interface ChunkScan {
  calls: Uint8Array;
  jmps: Uint8Array;
  /** Triples: where a `lea r64,[rip+x]` with x in [lo, hi] is, x, and its REX | ModRM << 8. */
  leas: number[];
  limit: number;
  /** The address of relative 0. */
  origin: number;
  lo: number;
  hi: number;
}

/**
 * The hot loop, kept out of the async function so V8 optimizes it whole:
 * b[i] is at relative address base + i, for i in [first, stop).
 */
function scanChunk(s: ChunkScan, b: Uint8Array, first: number, stop: number, base: number) {
  const n = b.length, { calls, jmps, limit, origin, lo, hi } = s;
  for (let i = first; i < stop; i++) {
    const op = b[i];
    if ((op & 0xfe) === 0xe8) { // call or jmp rel32
      if (i + 5 > n) continue;
      const t = base + i + 5 + (b[i + 1] | (b[i + 2] << 8) | (b[i + 3] << 16) | (b[i + 4] << 24));
      if (t < 0 || t >= limit || (t & 15) !== 0) continue;
      if (op === 0xe8) calls[t >> 7] |= 1 << ((t >> 4) & 7);
      else jmps[t >> 7] |= 1 << ((t >> 4) & 7);
    } else if (op === 0x8d && i > 0 && i + 6 <= n) {
      if ((b[i - 1] & 0xfb) !== 0x48 || (b[i + 1] & 0xc7) !== 0x05) continue;
      const va = origin + base + i - 1;
      const t = va + 7 + (b[i + 2] | (b[i + 3] << 8) | (b[i + 4] << 16) | (b[i + 5] << 24));
      if (t >= lo && t <= hi) s.leas.push(va, t, b[i - 1] | (b[i + 1] << 8));
    }
  }
}

// ---------------------------------------------------------------------------
// Error sites and the functions holding them

interface Site {
  lea: number;
  reason: number;
  line: number;
  /** What the sequence calls: ERR_put_error, if it is one. */
  callee: number;
}

const i32 = (b: Uint8Array, at: number) =>
  b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24);

/**
 * Follows the instructions after the lea to the call, keeping the 32-bit
 * values put in registers, through at most two jumps to a shared tail. Any
 * other instruction ends it: a site is read exactly or not at all.
 */
async function decodeSite(text: Text, lea: number): Promise<Site | undefined> {
  let b = await text.bytes(lea, 64);
  if (b.length < 7) return undefined;
  const regs: (number | undefined)[] = [];
  const file = new Set([(b[0] & 4 ? 8 : 0) | ((b[2] >> 3) & 7)]); // registers holding the path
  const set = (r: number, value: number | undefined, copiesFile = false) => {
    regs[r] = value;
    if (copiesFile) file.add(r);
    else file.delete(r);
  };
  let va = lea, i = 7, hops = 0;
  for (let n = 0; n < 16; n++) {
    if (i + 8 > b.length) {
      va += i;
      b = await text.bytes(va, 64);
      i = 0;
      if (b.length < 8) return undefined;
    }
    const rex = (b[i] & 0xf0) === 0x40 ? b[i++] : 0;
    const op = b[i], m = b[i + 1];
    const reg = (rex & 4 ? 8 : 0) | ((m >> 3) & 7), rm = (rex & 1 ? 8 : 0) | (m & 7);
    if (op >= 0xb8 && op <= 0xbf && !(rex & 8)) { // mov r32, imm32
      set((rex & 1 ? 8 : 0) | (op & 7), i32(b, i + 1));
      i += 5;
    } else if ((op === 0x31 || op === 0x33) && m >= 0xc0) { // xor r, r
      const dst = op === 0x31 ? rm : reg;
      set(dst, reg === rm ? 0 : undefined);
      i += 2;
    } else if ((op === 0x89 || op === 0x8b) && m >= 0xc0) { // mov r, r
      const [dst, src] = op === 0x89 ? [rm, reg] : [reg, rm];
      set(dst, regs[src], (rex & 8) !== 0 && file.has(src));
      i += 2;
    } else if (rex !== 0) {
      return undefined;
    } else if (op === 0xe8) {
      const callee = va + i + 5 + i32(b, i + 1);
      if (regs[7] !== ERR_LIB_SSL || !file.has(1)) return undefined; // edi, rcx
      const reason = regs[2], line = regs[8]; // edx, r8d
      if (reason === undefined || line === undefined) return undefined;
      return { lea, reason, line, callee };
    } else if ((op === 0xe9 || op === 0xeb) && hops++ < 2) {
      va += op === 0xe9 ? i + 5 + i32(b, i + 1) : i + 2 + ((m << 24) >> 24);
      b = await text.bytes(va, 64);
      i = 0;
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** Where a function starts, and what says so. */
interface Start {
  va: number;
  /** An FDE starts there (else the backward scan found it). */
  fde: boolean;
  /** int3 or nop padding right before it. */
  padded: boolean;
  call: boolean;
  jmp: boolean;
}

interface Func {
  start: Start;
  sites: Site[];
}

interface Context {
  text: Text;
  targets: Targets;
  unwind: Unwind;
}

/** Multi-byte NOP encodings, as their padding ends: 0F 1F /0 with a zero operand. */
const NOP_TAILS = [
  [0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0, 0, 0, 0],
  [0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0],
];

/** Whether w[0..at) ends with int3 or nop padding. */
function paddedBefore(w: Uint8Array, at: number): boolean {
  if (w[at - 1] === 0xcc) return true;
  return NOP_TAILS.some((t) => t.length <= at && t.every((v, k) => w[at - t.length + k] === v));
}

/**
 * A boundary another function may start at: 16-byte aligned, after padding
 * or a ret, and the target of a direct call or jump. w holds the code from
 * address wva.
 */
function boundaryAt(ctx: Context, w: Uint8Array, wva: number, va: number): Start | undefined {
  const at = va - wva;
  if (va % 16 !== 0 || at < 1) return undefined;
  const call = ctx.targets.call(va), jmp = ctx.targets.jmp(va);
  if (!call && !jmp) return undefined;
  const padded = paddedBefore(w, at);
  return padded || w[at - 1] === 0xc3 ? { va, fde: false, padded, call, jmp } : undefined;
}

/**
 * The start of the function holding va: the FDE that covers it, else the
 * nearest boundary before it not covered by an FDE. int3 padding that
 * nothing calls ends the search (a function reached only by pointer).
 */
async function functionStart(ctx: Context, va: number): Promise<Start | undefined> {
  const fde = await ctx.unwind.before(va);
  if (fde && va < fde[1]) return { va: fde[0], fde: true, padded: false, call: false, jmp: false };
  const floor = Math.max(ctx.text.region.vaddr, fde?.[1] ?? 0, va - MAX_FUNCTION);
  const wva = Math.max(ctx.text.region.vaddr, floor - 16);
  const w = await ctx.text.bytes(wva, va + 1 - wva);
  for (let a = va - (va % 16); a >= floor; a -= 16) {
    const start = boundaryAt(ctx, w, wva, a);
    if (start) return start;
    if (w[a - wva - 1] === 0xcc && w[a - wva - 2] === 0xcc) return undefined;
  }
  return undefined;
}

/**
 * Bytes from start to the next function: its FDE's range, else the next
 * called boundary or int3 padding (a jump target after nops may be a loop).
 */
async function functionSize(ctx: Context, start: Start): Promise<number> {
  if (start.fde) {
    const fde = await ctx.unwind.before(start.va);
    return fde![1] - fde![0];
  }
  const w = await ctx.text.bytes(start.va, MAX_FUNCTION);
  for (let a = start.va + 16; a < start.va + w.length; a += 16) {
    const at = a - start.va;
    if (boundaryAt(ctx, w, start.va, a)?.call || (w[at - 1] === 0xcc && w[at - 2] === 0xcc)) {
      return at;
    }
  }
  fail(`no end found for the function at ${hex(start.va)}`);
}

/**
 * The checks that make a probe address safe: in the executable segment; a
 * function start (an FDE's, or after padding and the target of a direct
 * call or jump); and an instruction boundary, from which decoding reaches
 * each of its error sites exactly (and, without an FDE, meets no sign of
 * another function on the way: see reaches).
 */
async function verify(ctx: Context, f: Func, name: string): Promise<void> {
  const { va } = f.start;
  if (!ctx.text.has(va)) fail(`${name} outside the executable segment`);
  if (!f.start.fde) {
    if (!f.start.padded || !(f.start.call || f.start.jmp)) fail(`${name}: no padding before it`);
    // an FDE covering the start must start there too
    const fde = await ctx.unwind.before(va);
    if (fde && va < fde[1] && fde[0] !== va) fail(`${name} inside an FDE`);
  }
  const end = Math.max(...f.sites.map((s) => s.lea));
  const code = await ctx.text.bytes(va, end - va + 16);
  for (const site of f.sites) {
    if (!reaches(ctx, code, va, site.lea - va, !f.start.fde)) {
      fail(`${name}: decoding from ${hex(va)} misses the error site at ${hex(site.lea)}`);
    }
  }
}

/**
 * Whether decoding code (at address va) from its start lands on offset `to`.
 * With `crossing`, also that it meets no sign of another function on the
 * way: an aligned direct-call target, or an aligned address after padding
 * that follows a ret or holds int3 (a jump then nops is a loop's alignment).
 */
function reaches(
  ctx: Context,
  code: Uint8Array,
  va: number,
  to: number,
  crossing: boolean,
): boolean {
  try {
    let at = 0, afterRet = false, padding = false, int3 = false;
    while (at < to) {
      const ins = decodeInstruction(code, at);
      const pad = ins.map === 0 ? ins.opcode === 0x90 || ins.opcode === 0xcc : ins.opcode === 0x1f;
      if (pad) {
        padding = true;
        int3 ||= ins.opcode === 0xcc;
      } else {
        afterRet = ins.map === 0 && (ins.opcode === 0xc3 || ins.opcode === 0xc2);
        padding = int3 = false;
      }
      at += ins.length;
      if (!crossing || at >= to || (va + at) % 16 !== 0) continue;
      if (ctx.targets.call(va + at) || (padding && (afterRet || int3))) return false;
    }
    return at === to;
  } catch (e) {
    if (e instanceof X86DecodeError) return false;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// ssl_log_secret and the struct offsets

/**
 * The function called first after `lea rsi,[label]` for most labels, if it
 * is a verified function start that decodes.
 */
async function findLogSecret(
  ctx: Context,
  labelSites: [number, string][],
): Promise<{ va: number; labels: number } | undefined> {
  const votes = new Map<number, Set<string>>();
  for (const [lea, label] of labelSites) {
    const t = await firstCall(ctx.text, lea);
    if (t !== undefined) votes.set(t, (votes.get(t) ?? new Set()).add(label));
  }
  const ranked = [...votes].sort((a, b) => b[1].size - a[1].size);
  if (ranked.length === 0 || ranked[0][1].size < MIN_LABELS) return undefined;
  if (ranked.length > 1 && ranked[1][1].size === ranked[0][1].size) return undefined;
  const va = ranked[0][0];
  if (!ctx.text.has(va)) return undefined;
  const fde = await ctx.unwind.before(va);
  if (fde && va < fde[1]) {
    if (fde[0] !== va) return undefined;
  } else {
    const w = await ctx.text.bytes(va - 16, 16);
    if (va % 16 !== 0 || !paddedBefore(w, 16) || !ctx.targets.call(va)) return undefined;
  }
  const code = await ctx.text.bytes(va, 64);
  try {
    for (let at = 0; at < 48;) at += decodeInstruction(code, at).length;
  } catch (e) {
    if (e instanceof X86DecodeError) return undefined;
    throw e;
  }
  return { va, labels: ranked[0][1].size };
}

/** Target of the first direct call or jump after the lea at va, before any other branch. */
async function firstCall(text: Text, lea: number): Promise<number | undefined> {
  const code = await text.bytes(lea, 64);
  try {
    for (let at = 7, n = 0; n < 8 && at < 48; n++) {
      const ins = decodeInstruction(code, at);
      at += ins.length;
      if (ins.map === 0 && (ins.opcode === 0xe8 || ins.opcode === 0xe9) && ins.length === 5) {
        return lea + at + i32(code, at - 4);
      }
      const branch = ins.map === 0
        ? (ins.opcode >= 0x70 && ins.opcode <= 0x7f) ||
          [0xc2, 0xc3, 0xe9, 0xeb, 0xff].includes(ins.opcode)
        : ins.map === 1 && ins.opcode >= 0x80 && ins.opcode <= 0x8f;
      if (branch) return undefined;
    }
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
  }
  return undefined;
}

/** The ModRM operands of an instruction: enough to follow a pointer through registers. */
interface Operands {
  op: number;
  map: number;
  w: boolean;
  mod: number;
  reg: number;
  /** The register operand (mod 3) or the base register (-1: none, or RIP). */
  rm: number;
  index: number;
  scale: number;
  disp: number;
}

/** Opcodes read here: moves, leas and loads, and those that may overwrite a register. */
const MODRM_MAP0 = new Set([
  ...[0x01, 0x03, 0x09, 0x0b, 0x11, 0x13, 0x19, 0x1b, 0x21, 0x23, 0x29, 0x2b, 0x31, 0x33],
  ...[0x63, 0x69, 0x6b, 0x80, 0x81, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0xc0, 0xc1, 0xc7],
  ...[0xd0, 0xd1, 0xd2, 0xd3, 0xf6, 0xf7, 0xfe, 0xff],
]);
const MODRM_MAP1 = new Set([
  0xaf,
  0xb6,
  0xb7,
  0xbe,
  0xbf,
  ...Array.from({ length: 16 }, (_, k) => 0x40 + k),
]);
/** Of those, the ones that write their r/m operand (the rest write the ModRM register). */
const WRITES_RM = new Set([0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31, 0x89, 0xc7, 0x80, 0x81, 0x83]
  .concat([0xc0, 0xc1, 0xd0, 0xd1, 0xd2, 0xd3, 0xf6, 0xf7, 0xfe, 0xff]));

/** Operands of the instruction at code[at], for the opcodes above only. */
function operands(code: Uint8Array, at: number): Operands | undefined {
  let i = at;
  while (code[i] === 0x66 || code[i] === 0xf2 || code[i] === 0xf3) i++;
  const rex = (code[i] & 0xf0) === 0x40 ? code[i++] : 0;
  let map = 0, op = code[i++];
  if (op === 0x0f) {
    map = 1;
    op = code[i++];
  }
  if (!(map === 0 ? MODRM_MAP0 : MODRM_MAP1).has(op)) return undefined;
  const m = code[i++];
  const mod = m >> 6, reg = (rex & 4 ? 8 : 0) | ((m >> 3) & 7);
  let rm = (rex & 1 ? 8 : 0) | (m & 7), index = -1, scale = 1, disp = 0;
  if (mod !== 3 && (m & 7) === 4) {
    const sib = code[i++];
    scale = 1 << (sib >> 6);
    index = (rex & 2 ? 8 : 0) | ((sib >> 3) & 7);
    if (index === 4) index = -1;
    rm = (rex & 1 ? 8 : 0) | (sib & 7);
    if (mod === 0 && (sib & 7) === 5) rm = -1;
  } else if (mod === 0 && (m & 7) === 5) {
    rm = -1;
  }
  if (mod === 1) disp = (code[i] << 24) >> 24;
  else if (mod === 2 || (mod === 0 && rm === -1)) disp = i32(code, i);
  return { op, map, w: (rex & 8) !== 0, mod, reg, rm, index, scale, disp };
}

/** Registers a call may change (System V). */
const CALLER_SAVED = [0, 1, 2, 6, 7, 8, 9, 10, 11];

/**
 * ssl->s3 from SSL_write's inlined ssl_reset_error_state
 * (`mov rX,[rdi+s3]; mov dword [rX+rwstate],0`) and s3->client_random from
 * ssl_log_secret, which loads s3 from a copy of its first argument and
 * reads client_random through it (`movzx r,[s3+i+cr]` or `lea r,[s3+cr]`).
 * Both or nothing: where both functions name an s3 offset, they must agree.
 */
async function structOffsets(
  text: Text,
  write: number,
  logSecret: number | undefined,
): Promise<{ sslS3: number; s3ClientRandom: number } | undefined> {
  if (logSecret === undefined) return undefined;
  let fromWrite: number | undefined;
  const w = await text.bytes(write, 96);
  let prev: Operands | undefined;
  for (const ins of boundaries(w)) {
    const o = operands(w, ins.offset);
    if (
      prev && o?.map === 0 && o.op === 0xc7 && o.mod === 2 && o.rm === prev.reg && o.index < 0 &&
      i32(w, ins.offset + ins.length - 4) === 0
    ) {
      fromWrite = prev.disp;
      break;
    }
    prev = o?.map === 0 && o.op === 0x8b && o.w && o.mod === 1 && o.rm === 7 && o.index < 0
      ? o
      : undefined;
  }

  const code = await text.bytes(logSecret, 0x200);
  const ssl = new Set([7]); // registers holding the SSL pointer: rdi on entry
  const s3 = new Map<number, number>(); // register -> the offset it was loaded from
  for (const ins of boundaries(code)) {
    const at = ins.offset;
    if (ins.map === 0 && (ins.opcode === 0xc3 || ins.opcode === 0xe8)) {
      if (ins.opcode === 0xc3) break;
      for (const r of CALLER_SAVED) ssl.delete(r), s3.delete(r);
      continue;
    }
    if (ins.map === 0 && ins.opcode >= 0x58 && ins.opcode <= 0x5f) { // pop, mov r, imm
      for (const r of [ins.opcode & 7, 8 | (ins.opcode & 7)]) ssl.delete(r), s3.delete(r);
    }
    if (ins.map === 0 && ins.opcode >= 0xb8 && ins.opcode <= 0xbf) {
      for (const r of [ins.opcode & 7, 8 | (ins.opcode & 7)]) ssl.delete(r), s3.delete(r);
    }
    const o = operands(code, at);
    if (!o) continue;
    const base = o.mod !== 3 ? o.rm : -1;
    if (s3.has(base) && o.mod === 1) {
      const viaLea = o.map === 0 && o.op === 0x8d && o.index < 0;
      const viaLoad = o.map === 1 && o.op === 0xb6 && o.index >= 0 && o.scale === 1;
      if (viaLea || viaLoad) {
        const sslS3 = s3.get(base)!;
        if (fromWrite !== undefined && fromWrite !== sslS3) return undefined;
        return { sslS3, s3ClientRandom: o.disp };
      }
    }
    // what the instruction may write (compares too: losing track is safe)
    const writesRm = o.map === 0 && WRITES_RM.has(o.op);
    const dst = writesRm ? (o.mod === 3 ? o.rm : -1) : o.reg;
    if (o.map === 0 && o.op === 0x87 && o.mod === 3) ssl.delete(o.rm), s3.delete(o.rm); // xchg
    if (dst < 0) continue;
    const copy = o.map === 0 && o.w && o.mod === 3 && (o.op === 0x89 || o.op === 0x8b);
    const src = o.op === 0x89 ? o.reg : o.rm;
    const load = o.map === 0 && o.op === 0x8b && o.w && o.mod === 1 && o.index < 0 && ssl.has(o.rm);
    ssl.delete(dst);
    s3.delete(dst);
    if (copy && ssl.has(src)) ssl.add(dst);
    if (copy && s3.has(src)) s3.set(dst, s3.get(src)!);
    if (load) s3.set(dst, o.disp);
  }
  return undefined;
}

/** The instructions of code from its start, until it stops decoding. */
function* boundaries(code: Uint8Array): Generator<X86Instruction> {
  try {
    for (let at = 0; at < code.length - 16;) {
      const ins = decodeInstruction(code, at);
      yield ins;
      at += ins.length;
    }
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
  }
}

// ---------------------------------------------------------------------------

function mostCommon(values: number[]): number | undefined {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
}

function only<T>(items: T[], what: string): T {
  if (items.length !== 1) fail(`${items.length} candidates for ${what}`);
  return items[0];
}

function evidence(starts: Start[]): string {
  if (starts.every((s) => s.fde)) return ".eh_frame function starts";
  const kinds = new Set(
    starts.map((s) => s.fde ? ".eh_frame starts" : "called, padded, aligned starts"),
  );
  return [...kinds].join(" and ");
}

const hex = (n: number) => `0x${n.toString(16)}`;
