/**
 * Reader for glibc's `/etc/ld.so.cache`: which file the dynamic linker loads
 * for a library name such as `libssl.so.3`.
 *
 * Handles the current format (`glibc-ld.so.cache1.1`, the only one glibc
 * 2.32+ writes) and the older compat layout where an `ld.so-1.7.0` table
 * comes first and the new table follows it. Every read is bounds-checked, so
 * malformed input only ever raises {@link LdCacheError}.
 *
 * @module
 */

import { EcapError } from "../base/errors.ts";

/** Raised for a malformed, truncated or unknown ld.so.cache image. */
export class LdCacheError extends SyntaxError {
  /** Creates an error with a message that describes the problem. */
  constructor(message: string) {
    super(message);
    this.name = "LdCacheError";
  }
}

/** One library in the cache, as `ldconfig -p` lists it. */
export interface LdCacheEntry {
  /** The name programs ask for, e.g. "libssl.so.3". */
  name: string;
  /** The file the dynamic linker opens for it. */
  path: string;
  /**
   * ldconfig's flags: library type (low byte) and ABI (second byte); see
   * {@link describeLdCacheFlags}.
   */
  flags: number;
}

/** Where glibc keeps the cache. */
export const DEFAULT_LD_CACHE = "/etc/ld.so.cache";

const OLD_MAGIC = "ld.so-1.7.0";
const NEW_MAGIC = "glibc-ld.so.cache";
const NEW_VERSION = "1.1";
// struct cache_file: magic[11], pad, u32 nlibs; then {i32 flags, u32 key, u32 value}.
const OLD_HEADER_SIZE = 16;
const OLD_ENTRY_SIZE = 12;
// struct cache_file_new: magic+version[20], nlibs, len_strings, flags u8 + 3 pad,
// extension_offset, unused[3]; then {i32 flags, u32 key, u32 value, u32 osversion, u64 hwcap}.
const NEW_HEADER_SIZE = 48;
const NEW_ENTRY_SIZE = 24;
// The new header's `flags` byte records the byte order ldconfig wrote.
const ENDIAN_MASK = 3;
const ENDIAN_BIG = 3;

const decoder = new TextDecoder();

function hasAscii(bytes: Uint8Array, off: number, text: string): boolean {
  if (off < 0 || off + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[off + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** Bounds-checked reads over the whole cache image in one byte order. */
class Table {
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array, readonly littleEndian: boolean) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  u32(off: number, what: string): number {
    if (!(off >= 0 && off + 4 <= this.bytes.length)) {
      throw new LdCacheError(`truncated ld.so.cache: ${what} at offset ${off}`);
    }
    return this.#view.getUint32(off, this.littleEndian);
  }

  i32(off: number, what: string): number {
    return this.u32(off, what) | 0;
  }

  /** The NUL-terminated string at `base + rel`. */
  string(base: number, rel: number, what: string): string {
    const off = base + rel;
    if (!(off >= 0 && off < this.bytes.length)) {
      throw new LdCacheError(`ld.so.cache: ${what} offset ${rel} is outside the file`);
    }
    const end = this.bytes.indexOf(0, off);
    if (end < 0) throw new LdCacheError(`ld.so.cache: ${what} at ${off} is not terminated`);
    return decoder.decode(this.bytes.subarray(off, end));
  }

  /** Throws unless `count` entries of `size` bytes fit at `off`; caps loops by the file size. */
  fits(off: number, count: number, size: number, what: string): void {
    if (off + count * size > this.bytes.length) {
      throw new LdCacheError(
        `truncated ld.so.cache: ${count} ${what} entries at offset ${off} need ` +
          `${count * size} bytes, file has ${this.bytes.length - off}`,
      );
    }
  }
}

function parseNew(bytes: Uint8Array, base: number): LdCacheEntry[] {
  if (!hasAscii(bytes, base + NEW_MAGIC.length, NEW_VERSION)) {
    throw new LdCacheError("unsupported ld.so.cache version (expected 1.1)");
  }
  if (base + NEW_HEADER_SIZE > bytes.length) {
    throw new LdCacheError("truncated ld.so.cache: header");
  }
  const order = bytes[base + 28] & ENDIAN_MASK;
  // 0 means "not recorded" (older ldconfig): assume the common little-endian layout.
  const t = new Table(bytes, order !== ENDIAN_BIG);
  const nlibs = t.u32(base + 20, "nlibs");
  const first = base + NEW_HEADER_SIZE;
  t.fits(first, nlibs, NEW_ENTRY_SIZE, "library");
  const out: LdCacheEntry[] = [];
  for (let i = 0; i < nlibs; i++) {
    const o = first + i * NEW_ENTRY_SIZE;
    out.push({
      name: t.string(base, t.u32(o + 4, "key"), `name of entry ${i}`),
      path: t.string(base, t.u32(o + 8, "value"), `path of entry ${i}`),
      flags: t.i32(o, "flags"),
    });
  }
  return out;
}

function parseOld(bytes: Uint8Array): LdCacheEntry[] {
  // The old format has no byte-order marker; it only ever matched the host's.
  const t = new Table(bytes, true);
  const nlibs = t.u32(12, "nlibs");
  t.fits(OLD_HEADER_SIZE, nlibs, OLD_ENTRY_SIZE, "library");
  const tableEnd = OLD_HEADER_SIZE + nlibs * OLD_ENTRY_SIZE;
  // glibc aligns the new table to alignof(struct cache_file_new), which is 8.
  const newBase = (tableEnd + 7) & ~7;
  if (hasAscii(bytes, newBase, NEW_MAGIC)) return parseNew(bytes, newBase);
  const out: LdCacheEntry[] = [];
  for (let i = 0; i < nlibs; i++) {
    const o = OLD_HEADER_SIZE + i * OLD_ENTRY_SIZE;
    // Old-format string offsets count from the end of the entry table.
    out.push({
      name: t.string(tableEnd, t.u32(o + 4, "key"), `name of entry ${i}`),
      path: t.string(tableEnd, t.u32(o + 8, "value"), `path of entry ${i}`),
      flags: t.i32(o, "flags"),
    });
  }
  return out;
}

/**
 * Parses an ld.so.cache image into its entries, in file order (the order
 * `ldconfig -p` prints). Throws {@link LdCacheError} if the bytes are not a
 * well-formed cache.
 */
export function parseLdCache(bytes: Uint8Array): LdCacheEntry[] {
  if (hasAscii(bytes, 0, NEW_MAGIC)) return parseNew(bytes, 0);
  if (hasAscii(bytes, 0, OLD_MAGIC)) return parseOld(bytes);
  throw new LdCacheError("not an ld.so.cache file (bad magic)");
}

/**
 * Reads and parses the cache at `path`. Throws {@link EcapError} when the
 * file cannot be read, {@link LdCacheError} when it is malformed.
 */
export async function readLdCache(path: string = DEFAULT_LD_CACHE): Promise<LdCacheEntry[]> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new EcapError(`ld.so cache "${path}" not found`, {
        kind: "not-found",
        code: "ENOENT",
        hint: "musl-based systems have no ld.so.cache; pass library paths explicitly",
        cause: e,
      });
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EcapError(`cannot read ld.so cache "${path}": permission denied`, {
        kind: "permission",
        code: "EACCES",
        cause: e,
      });
    }
    throw new EcapError(`cannot read ld.so cache "${path}": ${(e as Error).message}`, {
      kind: "io",
      cause: e,
    });
  }
  return parseLdCache(bytes);
}

/**
 * The cache entries whose name starts with `prefix`, e.g. "libssl.so" for
 * every OpenSSL libssl version. Reads `path` (default {@link DEFAULT_LD_CACHE}).
 */
export async function findInLdCache(
  prefix: string,
  path: string = DEFAULT_LD_CACHE,
): Promise<LdCacheEntry[]> {
  return (await cachedLdCache(path)).filter((e) => e.name.startsWith(prefix));
}

/** The last cache read, by the file's identity: ldconfig writes a new file. */
let lastRead: { key: string; entries: Promise<LdCacheEntry[]> } | undefined;

/** readLdCache, read again only when the file changed (each TLS family asks at start). */
async function cachedLdCache(path: string): Promise<LdCacheEntry[]> {
  const st = await Deno.stat(path).catch(() => undefined);
  const key = st && `${path}:${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  if (key === undefined || lastRead?.key !== key) {
    const entries = readLdCache(path);
    if (key === undefined) return await entries; // its error says why
    lastRead = { key, entries };
    entries.catch(() => lastRead = undefined);
  }
  return await lastRead!.entries;
}

const LIB_TYPES: Record<number, string> = {
  0x00: "libc4",
  0x01: "ELF",
  0x02: "libc5",
  0x03: "libc6",
};

const LIB_ABIS: Record<number, string> = {
  0x0100: ",64bit",
  0x0200: ",IA-64",
  0x0300: ",x86-64",
  0x0400: ",64bit",
  0x0500: ",64bit",
  0x0600: ",N32",
  0x0700: ",64bit",
  0x0800: ",x32",
  0x0900: ",hard-float",
  0x0a00: ",AArch64",
  0x0b00: ",soft-float",
  0x0c00: ",nan2008",
  0x0d00: ",N32,nan2008",
  0x0e00: ",64bit,nan2008",
  0x0f00: ",soft-float",
  0x1000: ",double-float",
  0x1100: ",soft-float",
  0x1200: ",double-float",
};

/** Describes entry flags the way `ldconfig -p` does, e.g. 0x303 → "libc6,x86-64". */
export function describeLdCacheFlags(flags: number): string {
  const abi = flags & 0xff00;
  const abiText = abi === 0 ? "" : LIB_ABIS[abi] ?? `,${abi}`;
  return (LIB_TYPES[flags & 0xff] ?? "unknown") + abiText;
}
