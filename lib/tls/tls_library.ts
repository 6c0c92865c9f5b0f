/**
 * Identifies OpenSSL-compatible TLS libraries for uprobes: which flavor and
 * version a file is, where its SSL_* functions live in the file, and which
 * such files are installed or mapped by running processes.
 *
 * @module
 */

import { ElfError, type ElfFile, readElf, SHT_NOBITS } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import { checkArchitecture } from "../core/targets.ts";
import { findInLdCache } from "../binary/ld_cache.ts";
import { mayDefineSymbol, readInto } from "../binary/elf_peek.ts";
import { locateBoringssl, type LocatedBoringssl, locatedSymbols } from "./boringssl_static.ts";
import {
  findProcessesMapping,
  formatDev,
  isDevInode,
  mappedFiles,
  mappedPath,
  resolveInRoot,
} from "../binary/proc_maps.ts";

/** Which implementation of the OpenSSL API a file carries. */
export type TlsFlavor = "openssl" | "boringssl" | "unknown";

/** Functions a TLS probe may attach to, looked up by {@link inspectTlsLibrary}. */
export const TLS_SYMBOLS = [
  "SSL_write",
  "SSL_read",
  "SSL_write_ex",
  "SSL_read_ex",
  "SSL_do_handshake",
  "SSL_connect",
  "SSL_accept",
  "SSL_set_fd",
  "SSL_get_fd",
  "SSL_new",
  "SSL_free",
  "SSL_shutdown",
  "SSL_CTX_set_keylog_callback",
  "SSL_get_version",
  "SSL_version",
  "OpenSSL_version",
  "SSL_in_init",
  "SSL_get_session",
  "SSL_SESSION_get_master_key",
  "SSL_get_client_random",
] as const;

/** What {@link inspectTlsLibrary} learns about a file. */
export interface TlsLibraryInfo {
  path: string;
  flavor: TlsFlavor;
  /** Library version such as "3.0.17" or "1.1.1w"; BoringSSL has none. */
  version?: string;
  /**
   * Where the version (or BoringSSL marker) was found, as "FILE (SECTION)",
   * e.g. "/usr/lib/x86_64-linux-gnu/libcrypto.so.3 (.rodata)".
   */
  versionSource?: string;
  /** File offsets (for uprobes) of the {@link TLS_SYMBOLS} the file defines. */
  symbols: Record<string, number>;
  /** True when the file is not a libssl.so* but has SSL_write built in (e.g. node). */
  statically: boolean;
}

/** A TLS-capable file found by {@link discoverTlsLibraries}. */
export interface DiscoveredTlsLibrary {
  /** A host path that opens the file (under /proc/PID/root for mapped files). */
  path: string;
  inode: number;
  /** Device as maps prints it, "major:minor" in hex. */
  dev: string;
  /** Processes mapping the file, ascending; empty if none does. */
  pids: number[];
  /** "ld.so.cache" when the cache lists the file, else "maps". */
  source: "ld.so.cache" | "maps";
}

/** What {@link scanTlsVersion} found in a block of bytes. */
export interface TlsVersionMatch {
  flavor: "openssl" | "boringssl";
  version?: string;
}

const LIBSSL_PREFIX = "libssl.so";
const OPENSSL = [..."OpenSSL "].map((c) => c.charCodeAt(0));
const BORINGSSL = [..."BoringSSL"].map((c) => c.charCodeAt(0));
// OPENSSL_VERSION_TEXT: "OpenSSL 3.0.17 1 Jul 2025", "OpenSSL 1.1.1w  11 Sep 2023",
// "OpenSSL 1.0.2k-fips  26 Jan 2017". The date keeps prose like "needs OpenSSL 1.1.0" out.
const DATED_VERSION =
  /^OpenSSL (\d+\.\d+\.\d+[a-z]{0,2})(?:[-+][\w.+-]*)? +\d{1,2} [A-Z][a-z]{2} \d{4}/;
const BARE_VERSION = /^OpenSSL (\d+\.\d+\.\d+[a-z]?)(?![\w.])/;

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** Offsets of `needle` in `bytes`; the native indexOf skips to candidates fast. */
function* occurrences(bytes: Uint8Array, needle: number[]): Generator<number> {
  let i = bytes.indexOf(needle[0]);
  while (i >= 0 && i + needle.length <= bytes.length) {
    let k = 1;
    while (k < needle.length && bytes[i + k] === needle[k]) k++;
    if (k === needle.length) yield i;
    i = bytes.indexOf(needle[0], i + 1);
  }
}

/** Bytes as text, one character each. */
export function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/**
 * Looks for OpenSSL's version string or a BoringSSL marker in raw bytes
 * (usually a .rodata section). A dated "OpenSSL x.y.z <date>" wins; then
 * "BoringSSL" (whose version text is "OpenSSL 1.1.1 (compatible; BoringSSL)");
 * then a bare "OpenSSL x.y.z" at the start of a string. Never throws.
 */
export function scanTlsVersion(bytes: Uint8Array): TlsVersionMatch | undefined {
  return versionOf(markersIn(bytes));
}

/** What one block of bytes holds of the markers scanTlsVersion weighs. */
interface VersionMarkers {
  dated?: string;
  bare?: string;
  boring: boolean;
}

function markersIn(bytes: Uint8Array): VersionMarkers {
  let bare: string | undefined;
  for (const at of occurrences(bytes, OPENSSL)) {
    const text = latin1(bytes.subarray(at, at + 64));
    const dated = DATED_VERSION.exec(text);
    if (dated) return { dated: dated[1], boring: false };
    // Only a whole string counts, not "OpenSSL 1.1.0" inside a message.
    if (bare === undefined && (at === 0 || bytes[at - 1] === 0)) {
      bare = BARE_VERSION.exec(text)?.[1];
    }
  }
  return { bare, boring: !occurrences(bytes, BORINGSSL).next().done };
}

function versionOf(m: VersionMarkers): TlsVersionMatch | undefined {
  if (m.dated !== undefined) return { flavor: "openssl", version: m.dated };
  if (m.boring) return { flavor: "boringssl" };
  return m.bare === undefined ? undefined : { flavor: "openssl", version: m.bare };
}

/** Chunks read at a time by {@link scanFileVersion}, and how much they overlap. */
const SCAN_CHUNK = 1 << 20;
const SCAN_OVERLAP = 128;

/**
 * scanTlsVersion over bytes [offset, offset + size) of a file, read a chunk
 * at a time: node's .rodata is 45 MB, and reading it whole put ecap's peak
 * RSS at 300 MB. Chunks overlap so that no marker is split.
 */
async function scanFileVersion(
  path: string,
  offset: number,
  size: number,
): Promise<TlsVersionMatch | undefined> {
  using f = await Deno.open(path);
  const buf = new Uint8Array(SCAN_CHUNK);
  const all: VersionMarkers = { boring: false };
  for (let at = 0; at < size; at += SCAN_CHUNK - SCAN_OVERLAP) {
    const want = Math.min(SCAN_CHUNK, size - at);
    const chunk = await readInto(f, buf, offset + at, want);
    const m = markersIn(chunk);
    if (m.dated !== undefined) return versionOf(m);
    all.bare ??= m.bare;
    all.boring ||= m.boring;
    if (chunk.length < want || at + want >= size) break;
  }
  return versionOf(all);
}

/**
 * Where a library keeps its read-only data (version strings): its .rodata
 * sections, or the whole file if it has no section headers.
 */
export async function readOnlyBlocks(
  elf: ElfFile,
  path: string,
): Promise<{ name: string; offset: number; size: number }[]> {
  const rodata = elf.sections.filter((s) => s.name.startsWith(".rodata") && s.type !== SHT_NOBITS);
  return rodata.length === 0
    ? [{ name: "whole file", offset: 0, size: (await Deno.stat(path)).size }]
    : rodata.map((s) => ({ name: s.name, offset: s.offset, size: s.size }));
}

/** Scans the read-only data of `elf` (the whole file if it has no section headers). */
async function scanElf(
  elf: ElfFile,
  path: string,
): Promise<(TlsVersionMatch & { source: string }) | undefined> {
  const blocks = await readOnlyBlocks(elf, path);
  let boring: string | undefined;
  for (const { name, offset, size } of blocks) {
    const found = await scanFileVersion(path, offset, size);
    if (found?.flavor === "openssl") return { ...found, source: `${path} (${name})` };
    if (found?.flavor === "boringssl") boring ??= `${path} (${name})`;
  }
  if (boring === undefined) {
    // FIPS and self-test builds export BORINGSSL_* functions even when stripped of strings.
    for (const s of elf.symbols()) {
      if (s.name.startsWith("BORINGSSL_")) {
        boring = `${path} (symbols)`;
        break;
      }
    }
  }
  return boring === undefined ? undefined : { flavor: "boringssl", source: boring };
}

const MULTIARCH: Record<string, string> = {
  x86_64: "x86_64-linux-gnu",
  aarch64: "aarch64-linux-gnu",
  riscv: "riscv64-linux-gnu",
};

/**
 * Finds the file the dynamic linker would load for DT_NEEDED `name` next to
 * `libPath`: its own directory first, then the standard library
 * directories — inside the same /proc/PID/root when `libPath` is under one.
 * For a file opened through /proc/PID/fd, map_files or exe, never the
 * host's directories: the file of that name the process maps, else (the
 * loader may not have mapped it yet) the search in the process's root.
 */
async function findNeeded(
  libPath: string,
  name: string,
  machineName: string,
): Promise<string | undefined> {
  const opened = /^\/proc\/(\d+)\/(?!root\/)/.exec(libPath);
  if (opened) {
    const mapped = await mappedByName(Number(opened[1]), name);
    if (mapped !== undefined) return mapped;
    const seen = (await Deno.readLink(libPath).catch(() => ""))?.replace(/ \(deleted\)$/, "");
    if (!seen.startsWith("/")) return undefined;
    libPath = `/proc/${opened[1]}/root${seen}`;
  }
  const root = /^\/proc\/\d+\/root(?=\/)/.exec(libPath)?.[0];
  const inner = root === undefined ? libPath : libPath.slice(root.length);
  const arch = MULTIARCH[machineName];
  const dirs = [
    dirname(inner),
    ...(arch ? [`/lib/${arch}`, `/usr/lib/${arch}`] : []),
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib64",
    "/usr/local/lib",
  ];
  for (const dir of new Set(dirs)) {
    const candidate = `${dir}/${name}`;
    try {
      if (root !== undefined) {
        // Resolve in the process's root so its symlinks cannot point at host files.
        const found = await resolveInRoot(root, candidate);
        if (found !== undefined) return found;
      } else if ((await Deno.stat(candidate)).isFile) {
        return candidate;
      }
    } catch {
      // unreadable: try the next directory
    }
  }
  return undefined;
}

/** A host path to the file called `name` that process `pid` maps, if any. */
async function mappedByName(pid: number, name: string): Promise<string | undefined> {
  const files = await mappedFiles(pid, { all: true }).catch(() => []);
  const f = files.find((f) => basename(f.path) === name);
  if (f === undefined) return undefined;
  return f.deleted ? f.mapFile : await mappedPath(pid, f.path, isDevInode(f.dev, f.inode));
}

/** Version info from the libcrypto `elf` links against (OpenSSL 3 keeps it there). */
async function scanLibcrypto(
  elf: ElfFile,
  path: string,
): Promise<(TlsVersionMatch & { source: string }) | undefined> {
  for (const name of elf.needed.filter((n) => n.startsWith("libcrypto.so"))) {
    const found = await findNeeded(path, name, elf.machineName);
    if (found === undefined) continue;
    try {
      const crypto = await readElf(found);
      if (crypto.machine !== elf.machine) continue;
      const match = await scanElf(crypto, found);
      if (match !== undefined) return match;
    } catch {
      // a broken or unreadable libcrypto only costs us the version
    }
  }
  return undefined;
}

/**
 * Reads a library for inspection, turning failures into one-line EcapErrors
 * (`what` names it: "GnuTLS library ... not found").
 */
export async function readLibraryFile(path: string, what = ""): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw libraryReadError(e, path, what);
  }
}

/** A failure to read library `path` as a one-line EcapError. */
function libraryReadError(e: unknown, path: string, what = ""): EcapError {
  if (e instanceof Deno.errors.NotFound) {
    return new EcapError(`${what ? `${what} ` : ""}library "${path}" not found`, {
      kind: "not-found",
      code: "ENOENT",
      cause: e,
    });
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new EcapError(`cannot read "${path}": permission denied`, {
      kind: "permission",
      code: "EACCES",
      hint: "run ecap as root",
      cause: e,
    });
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return new EcapError(`"${path}" is a directory, not a library`, { kind: "usage", cause: e });
  }
  return new EcapError(`cannot read "${path}": ${(e as Error).message}`, { kind: "io", cause: e });
}

/**
 * Parses library `path` sparsely (readElf), turning failures into one-line
 * EcapErrors as readLibraryFile does; not ELF is "unsupported".
 */
export async function readLibraryElf(path: string, what = ""): Promise<ElfFile> {
  try {
    return await readElf(path);
  } catch (e) {
    if (!(e instanceof ElfError)) throw libraryReadError(e, path, what);
    const head = await readHead(path, 4);
    const notElf = head.length < 4 || latin1(head) !== "\x7fELF";
    throw new EcapError(
      notElf ? `"${path}" is not an ELF file` : `"${path}" is not a usable ELF file: ${e.message}`,
      { kind: "unsupported", cause: e },
    );
  }
}

/**
 * Identifies the TLS library at `path`: flavor, version (from its own
 * read-only data, else from the libcrypto it links), and the file offsets
 * of the {@link TLS_SYMBOLS} it defines. Throws {@link EcapError}: kind
 * "not-found" if the file is missing, "unsupported" if it is not ELF or
 * lacks SSL_read/SSL_write.
 */
export async function inspectTlsLibrary(path: string): Promise<TlsLibraryInfo> {
  // Read sparsely: node is a 100 MB file of which the symbols and the
  // read-only data are wanted (reading it whole peaked ecap at 300 MB).
  const elf = await readLibraryElf(path);
  checkArchitecture(elf, path, "library");
  const symbols: Record<string, number> = {};
  try {
    for (const name of TLS_SYMBOLS) {
      const offset = elf.symbol(name)?.fileOffset;
      if (offset !== undefined) symbols[name] = offset;
    }
  } catch (e) {
    // Broken symbol tables surface lazily, on first lookup.
    if (!(e instanceof ElfError)) throw e;
    throw new EcapError(`"${path}" has a malformed symbol table: ${e.message}`, {
      kind: "unsupported",
      cause: e,
    });
  }
  // Without symbols: BoringSSL linked into a stripped program (Chromium),
  // found by its own error-reporting code and checked before any probe
  let located: LocatedBoringssl | undefined;
  if (symbols.SSL_write === undefined || symbols.SSL_read === undefined) {
    located = await locateBoringssl(path);
    if (located) Object.assign(symbols, locatedSymbols(located));
  }
  // A probe needs both directions; a file with neither is not a TLS library.
  if (symbols.SSL_write === undefined || symbols.SSL_read === undefined) {
    throw new EcapError(
      `"${path}" has no SSL_read/SSL_write symbols, nor a BoringSSL ecap can locate without them`,
      {
        kind: "unsupported",
        hint: "pass the libssl.so or the binary that links OpenSSL statically",
      },
    );
  }

  let match: (TlsVersionMatch & { source: string }) | undefined;
  if (located) {
    match = { flavor: "boringssl", source: `${path} (${located.how})` };
  } else {
    try {
      match = await scanElf(elf, path);
    } catch (e) {
      if (!(e instanceof ElfError)) throw e;
    }
  }
  // Debian's libssl.so.3 carries no version text; its libcrypto does.
  if (match === undefined) match = await scanLibcrypto(elf, path);

  return {
    path,
    flavor: match?.flavor ?? "unknown",
    version: match?.version,
    versionSource: match?.source,
    symbols,
    statically: !basename(path).startsWith(LIBSSL_PREFIX),
  };
}

/** The first n bytes of a file (fewer if it is shorter). */
async function readHead(path: string, n: number): Promise<Uint8Array> {
  using f = await Deno.open(path);
  const buf = new Uint8Array(n);
  const got = await f.read(buf);
  return buf.subarray(0, got ?? 0);
}

/** True when the ELF file at `path` defines `symbol`; false if unreadable. */
async function definesSymbol(path: string, symbol: string): Promise<boolean> {
  try {
    return (await readElf(path)).symbol(symbol) !== undefined;
  } catch {
    return false;
  }
}

/**
 * True when the program at path has kind's library built in: its symbol
 * (node with OpenSSL), or for OpenSSL a BoringSSL without symbols
 * (Chromium). Most programs are ruled out by their string tables and one
 * quick pass over their read-only data; false if unreadable.
 */
export async function hasLibraryBuiltIn(path: string, kind: TlsLibraryKind): Promise<boolean> {
  if (await mayDefineSymbol(path, kind.symbol).catch(() => false)) {
    if (await definesSymbol(path, kind.symbol)) return true;
  }
  if (kind !== OPENSSL_KIND) return false;
  try {
    return (await locateBoringssl(path)) !== undefined;
  } catch {
    return false;
  }
}

/** Which library {@link discoverTlsLibraries} looks for; OpenSSL's libssl by default. */
export interface TlsLibraryKind {
  /** Name prefix of the library's files, e.g. "libgnutls.so". */
  prefix: string;
  /** A function only that library defines: an executable with it built in is one too. */
  symbol: string;
}

/** OpenSSL and BoringSSL: libssl.so*, or a binary defining SSL_write. */
export const OPENSSL_KIND: TlsLibraryKind = { prefix: LIBSSL_PREFIX, symbol: "SSL_write" };

/** The TLS-capable files process `pid` maps. */
async function discoverForPid(pid: number, kind: TlsLibraryKind): Promise<DiscoveredTlsLibrary[]> {
  const files = await mappedFiles(pid, { all: true });
  const out: DiscoveredTlsLibrary[] = [];
  const seen = new Set<string>();
  const add = (path: string, f: { dev: string; inode: number }) => {
    const key = `${f.dev}:${f.inode}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ path, inode: f.inode, dev: f.dev, pids: [pid], source: "maps" });
  };
  const open = (f: (typeof files)[number]) =>
    // A deleted path now names another file (or none); map_files names the mapped one.
    f.deleted ? Promise.resolve(f.mapFile) : mappedPath(pid, f.path, isDevInode(f.dev, f.inode));
  for (const f of files) {
    if (!basename(f.path).startsWith(kind.prefix)) continue;
    const path = await open(f);
    if (path !== undefined) add(path, f);
  }

  // A statically linked binary (node) is itself the TLS library.
  const exe = (await Deno.readLink(`/proc/${pid}/exe`).catch(() => undefined))
    ?.replace(/ \(deleted\)$/, "");
  const main = files.find((f) => f.path === exe);
  if (main !== undefined && !basename(main.path).startsWith(kind.prefix)) {
    // /proc/PID/exe opens the right file even inside a container or when deleted.
    if (await hasLibraryBuiltIn(`/proc/${pid}/exe`, kind)) {
      add((await open(main)) ?? `/proc/${pid}/exe`, main);
    }
  }
  return out;
}

/**
 * Finds OpenSSL-style TLS libraries (or, with `kind`, another library, e.g.
 * libgnutls.so). With `pid`: the libssl.so* files that process maps plus its
 * executable if it has SSL_write built in (throws {@link EcapError}
 * "not-found" if the process does not exist). Without: the libssl.so*
 * entries of ld.so.cache plus every libssl.so* any process maps (containers
 * included), one entry per (dev, inode).
 */
export async function discoverTlsLibraries(
  opts: { pid?: number; kind?: TlsLibraryKind } = {},
): Promise<DiscoveredTlsLibrary[]> {
  const kind = opts.kind ?? OPENSSL_KIND;
  if (opts.pid !== undefined) return await discoverForPid(opts.pid, kind);

  const out: DiscoveredTlsLibrary[] = [];
  const byKey = new Map<string, DiscoveredTlsLibrary>();
  // musl systems have no cache; running processes are still worth a look.
  const cached = await findInLdCache(kind.prefix).catch(() => []);
  for (const entry of cached) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(entry.path);
    } catch {
      continue; // stale cache entry
    }
    const key = `${formatDev(info.dev!)}:${info.ino}`;
    if (byKey.has(key)) continue; // libssl.so is a symlink to libssl.so.3
    const lib: DiscoveredTlsLibrary = {
      path: entry.path,
      inode: info.ino!,
      dev: formatDev(info.dev!),
      pids: [],
      source: "ld.so.cache",
    };
    byKey.set(key, lib);
    out.push(lib);
  }

  const mapped = await findProcessesMapping((p) => basename(p).startsWith(kind.prefix));
  for (const [path, m] of mapped) {
    const keys = [`${m.dev}:${m.inode}`];
    // On overlayfs, maps shows the backing file's device, stat the overlay's:
    // match either so a host library is not listed twice.
    const info = await Deno.stat(path).catch(() => undefined);
    if (info !== undefined) keys.push(`${formatDev(info.dev!)}:${info.ino}`);
    const known = keys.map((k) => byKey.get(k)).find((l) => l !== undefined);
    if (known !== undefined) {
      known.pids = [...new Set([...known.pids, ...m.pids])].sort((a, b) => a - b);
      for (const k of keys) byKey.set(k, known);
      continue;
    }
    const lib: DiscoveredTlsLibrary = {
      path,
      inode: m.inode,
      dev: m.dev,
      pids: m.pids,
      source: "maps",
    };
    for (const k of keys) byKey.set(k, lib);
    out.push(lib);
  }
  for (const lib of await runningStaticBinaries(kind, byKey)) out.push(lib);
  return out;
}

/** The stat of every running process's executable under way, if one is. */
let exesRead: Promise<{ pid: number; exe: string; st: Deno.FileInfo }[]> | undefined;

/**
 * Every other process's executable (/proc/PID/exe) and its stat. Callers
 * while one pass is under way share it, as the TLS families of one start do.
 */
function runningExecutables(): Promise<{ pid: number; exe: string; st: Deno.FileInfo }[]> {
  exesRead ??= (async () => {
    const all = [];
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
      const pid = Number(e.name), exe = `/proc/${pid}/exe`;
      const st = await Deno.stat(exe).catch(() => undefined);
      if (st?.isFile) all.push({ pid, exe, st });
    }
    return all;
  })().finally(() => exesRead = undefined);
  return exesRead;
}

/**
 * Programs running now with the library built in (node with OpenSSL;
 * Chromium with a stripped BoringSSL): each distinct executable once.
 */
async function runningStaticBinaries(
  kind: TlsLibraryKind,
  known: Map<string, DiscoveredTlsLibrary>,
): Promise<DiscoveredTlsLibrary[]> {
  const found = new Map<string, DiscoveredTlsLibrary>();
  // ecap's own executable (Deno, or ecap compiled) links no TLS library a
  // module probes; reading it to say so took 63 ms when ecap runs under
  // deno task, or beside another ecap
  const self = await Deno.stat("/proc/self/exe").catch(() => undefined);
  const rejected = new Set<string>(self ? [`${formatDev(self.dev!)}:${self.ino}`] : []);
  for (const { pid, exe, st } of await runningExecutables()) {
    const key = `${formatDev(st.dev!)}:${st.ino}`;
    const seen = found.get(key) ?? known.get(key);
    if (seen) {
      if (!seen.pids.includes(pid)) seen.pids = [...seen.pids, pid].sort((a, b) => a - b);
      continue;
    }
    if (rejected.has(key)) continue;
    if (!await hasLibraryBuiltIn(exe, kind)) {
      rejected.add(key);
      continue;
    }
    // the host's path when it is the same file (messages), else /proc/PID/exe
    const named = await Deno.readLink(exe).catch(() => undefined);
    const same = named && await Deno.stat(named).then((n) => n.ino === st.ino && n.dev === st.dev)
      .catch(() => false);
    const path = same ? named : exe;
    found.set(key, { path, inode: st.ino!, dev: formatDev(st.dev!), pids: [pid], source: "maps" });
  }
  return [...found.values()];
}
