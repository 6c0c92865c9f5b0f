/**
 * Reading processes through procfs: memory maps, the files they map, basic
 * identity, and opening a file the way another process (possibly inside a
 * container) sees it, through `/proc/PID/root`.
 *
 * Parsers of /proc text only ever raise {@link ProcMapsError}; the async
 * readers turn system errors into {@link EcapError}.
 *
 * @module
 */

import { EcapError } from "../base/errors.ts";

/** Raised for text that is not in the `/proc/PID/maps` format. */
export class ProcMapsError extends SyntaxError {
  /** Creates an error with a message that describes the problem. */
  constructor(message: string) {
    super(message);
    this.name = "ProcMapsError";
  }
}

/** One line of `/proc/PID/maps`. */
export interface MapEntry {
  /** First address of the mapping (bigint: kernel addresses exceed 2^53). */
  start: bigint;
  /** Address just past the mapping. */
  end: bigint;
  /** Four characters such as "r-xp": read, write, execute, private/shared. */
  perms: string;
  /** Offset of the mapping in the file. */
  offset: number;
  /** Device as the kernel prints it, "major:minor" in hex, e.g. "fe:00". */
  dev: string;
  /** Inode number; 0 for anonymous mappings. */
  inode: number;
  /**
   * File path as the process sees it, or a pseudo name such as "[heap]";
   * "" for anonymous mappings. Never includes the " (deleted)" marker.
   */
  path: string;
  /** True when the kernel marked the file " (deleted)" (unlinked or replaced). */
  deleted: boolean;
}

/** A file mapped by a process. */
export interface MappedFile {
  /** Path as the process sees it (inside its own mount namespace). */
  path: string;
  /** Inode number, from the maps line. */
  inode: number;
  /** Device, "major:minor" in hex as maps prints it. */
  dev: string;
  /** True when the file was unlinked or replaced since it was mapped. */
  deleted: boolean;
  /**
   * `/proc/PID/map_files/START-END` of its first mapping: opens exactly the
   * mapped file even when deleted or replaced (needs CAP_SYS_ADMIN).
   */
  mapFile: string;
}

/** What {@link processInfo} reports about a process. */
export interface ProcessInfo {
  pid: number;
  /** Short command name from `/proc/PID/comm`. */
  comm: string;
  /** Target of `/proc/PID/exe`; undefined for kernel threads or when unreadable. */
  exe: string | undefined;
  /** Real uid from `/proc/PID/status`. */
  uid: number | undefined;
  /** Arguments from `/proc/PID/cmdline`; empty for kernel threads. */
  cmdline: string[];
  /** The cgroup v2 path (the "0::" line of `/proc/PID/cgroup`), if any. */
  cgroup: string | undefined;
}

/** Processes mapping one file, as {@link findProcessesMapping} groups them. */
export interface MappingProcesses {
  /** Path as the first of the processes sees it. */
  path: string;
  inode: number;
  dev: string;
  /** Processes that map the file, ascending. */
  pids: number[];
  deleted: boolean;
}

/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;

// start-end perms offset major:minor inode [padding path]; bounded widths keep
// numbers parseable and hostile lines linear to match.
const MAPS_LINE = new RegExp(
  "^([0-9a-f]{1,16})-([0-9a-f]{1,16}) ([r-][w-][x-][ps]) ([0-9a-f]{1,16}) " +
    "([0-9a-f]{1,8}:[0-9a-f]{1,8}) ([0-9]{1,20})(?: +(.*))?$",
);
const DELETED = " (deleted)";

/**
 * Parses the text of `/proc/PID/maps`. Throws {@link ProcMapsError} naming
 * the first line that does not fit the format.
 */
export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    const m = MAPS_LINE.exec(line);
    if (m === null) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
      throw new ProcMapsError(`maps line ${i + 1} is malformed: ${JSON.stringify(shown)}`);
    }
    // The kernel escapes only newlines in paths, as octal "\012".
    let path = (m[7] ?? "").replaceAll("\\012", "\n");
    const deleted = path.endsWith(DELETED);
    if (deleted) path = path.slice(0, -DELETED.length);
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3],
      offset: parseInt(m[4], 16),
      dev: m[5],
      inode: Number(m[6]),
      path,
      deleted,
    });
  }
  return out;
}

/** The name of a mapping in `/proc/PID/map_files/`. */
function mapRange(e: MapEntry): string {
  return `${e.start.toString(16)}-${e.end.toString(16)}`;
}

/** True for errors that mean "the process is gone". */
function isGone(e: unknown): boolean {
  if (e instanceof Deno.errors.NotFound) return true;
  // Reading a file of an exiting process can fail with ESRCH, which Deno
  // does not map to an error class.
  const err = e as { code?: unknown; message?: unknown };
  return err?.code === "ESRCH" || /\(os error 3\)/.test(String(err?.message));
}

/** Reads `/proc/PID/<file>`, mapping failures to {@link EcapError}. */
async function readProc(pid: number, file: string): Promise<string> {
  const path = `/proc/${pid}/${file}`;
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (isGone(e)) {
      throw new EcapError(`No process with pid ${pid}`, {
        kind: "not-found",
        code: "ESRCH",
        cause: e,
      });
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EcapError(`cannot read ${path}: permission denied`, {
        kind: "permission",
        code: "EACCES",
        hint: "run ecap as root (reading other processes needs CAP_SYS_PTRACE)",
        cause: e,
      });
    }
    throw new EcapError(`cannot read ${path}: ${(e as Error).message}`, { kind: "io", cause: e });
  }
}

function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new EcapError(`invalid pid ${pid}`, { kind: "usage" });
  }
}

/**
 * Files process `pid` maps, once each by (dev, inode), in address order.
 * Only files with an executable mapping unless `opts.all` is set.
 */
export async function mappedFiles(
  pid: number,
  opts: { all?: boolean } = {},
): Promise<MappedFile[]> {
  checkPid(pid);
  const text = await readProc(pid, "maps");
  const seen = new Set<string>();
  const out: MappedFile[] = [];
  for (const e of parseMaps(text)) {
    // Pseudo mappings ([vdso], anon_inode:…) have no path or no inode.
    if (e.inode === 0 || !e.path.startsWith("/")) continue;
    if (!opts.all && e.perms[2] !== "x") continue;
    const key = `${e.dev}:${e.inode}:${e.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      path: e.path,
      inode: e.inode,
      dev: e.dev,
      deleted: e.deleted,
      mapFile: `/proc/${pid}/map_files/${mapRange(e)}`,
    });
  }
  return out;
}

/** Pids of all processes visible in /proc, ascending. */
export async function listPids(): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (/^[1-9][0-9]*$/.test(entry.name)) pids.push(Number(entry.name));
  }
  return pids.sort((a, b) => a - b);
}

/** Errors of a lookup that mean "no such file" rather than a real failure. */
function isMissing(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.FilesystemLoop;
}

/**
 * Resolves `path` as if `root` were `/`: walks it one component at a time,
 * follows symlinks itself (absolute targets restart at `root`), and never
 * lets `..` climb above `root`. Returns a path under `root` with no symlink
 * left in it, or undefined when a component is missing or more than
 * {@link MAX_SYMLINKS} symlinks were followed. Other errors (e.g.
 * permission) propagate as Deno errors.
 *
 * The result is only as stable as the tree: a component replaced by a
 * symlink after the check is followed by whoever opens the path.
 */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const base = root.replace(/\/+$/, "");
  // A stack of components still to walk, next one last.
  const pending = path.split("/").reverse();
  const parts: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (name === "" || name === ".") continue;
    if (name === "..") {
      // `parts` holds no symlinks, so dropping the last one is exact.
      parts.pop();
      continue;
    }
    const candidate = `${base}/${[...parts, name].join("/")}`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(candidate);
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    if (!info.isSymlink) {
      parts.push(name);
      continue;
    }
    if (++links > MAX_SYMLINKS) return undefined;
    let target: string;
    try {
      target = await Deno.readLink(candidate);
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    if (target.startsWith("/")) parts.length = 0;
    for (const t of target.split("/").reverse()) pending.push(t);
  }
  return parts.length === 0 ? (base === "" ? "/" : base) : `${base}/${parts.join("/")}`;
}

/**
 * The host path that opens the file process `pid` sees as `path`: resolved
 * inside `/proc/PID/root`, so it works for processes in other mount
 * namespaces (containers) and cannot escape that root through symlinks or
 * `..`. Undefined when the file (or the process) does not exist. Throws
 * {@link EcapError} kind "permission" when the root cannot be read.
 */
export async function hostPath(pid: number, path: string): Promise<string | undefined> {
  checkPid(pid);
  try {
    return await resolveInRoot(`/proc/${pid}/root`, path);
  } catch (e) {
    if (isGone(e)) return undefined;
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EcapError(`cannot look up "${path}" in /proc/${pid}/root: permission denied`, {
        kind: "permission",
        code: "EACCES",
        hint: "run ecap as root (other processes' roots need CAP_SYS_PTRACE)",
        cause: e,
      });
    }
    throw new EcapError(`cannot look up "${path}" in /proc/${pid}/root: ${(e as Error).message}`, {
      kind: "io",
      cause: e,
    });
  }
}

/**
 * A host path that opens the file process `pid` maps (or holds open) under
 * `path`, the one `isIt` recognises. The kernel prints such a path from the
 * reader's root when the file is reachable from there (the host's own
 * processes, and a chroot: the path as it is), else from the root of the
 * process's mount namespace (a container: the path inside /proc/PID/root).
 * Undefined when neither is that file.
 */
export async function mappedPath(
  pid: number,
  path: string,
  isIt: (candidate: string) => Promise<boolean>,
): Promise<string | undefined> {
  if (await isIt(path)) return path;
  const inRoot = await hostPath(pid, path).catch(() => undefined);
  return inRoot !== undefined && await isIt(inRoot) ? inRoot : undefined;
}

/** Whether a path is the file with this device (as maps prints it) and inode. */
export function isDevInode(dev: string, inode: number): (path: string) => Promise<boolean> {
  return async (path) => {
    const st = await Deno.stat(path).catch(() => undefined);
    return st !== undefined && st.ino === inode && formatDev(st.dev!) === dev;
  };
}

/** The real uid from the text of `/proc/PID/status`. */
function statusUid(text: string): number | undefined {
  const m = /^Uid:\s+([0-9]{1,10})\b/m.exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** The cgroup v2 path from the text of `/proc/PID/cgroup`. */
function cgroupV2(text: string): string | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("0::")) return line.slice(3);
  }
  return undefined;
}

/**
 * Identity of process `pid`: comm, exe, uid, argv and cgroup v2 path.
 * Throws {@link EcapError} kind "not-found" ("No process with pid N") if it
 * does not exist.
 */
export async function processInfo(pid: number): Promise<ProcessInfo> {
  checkPid(pid);
  const comm = (await readProc(pid, "comm")).replace(/\n$/, "");
  const optional = (p: Promise<string>) => p.catch(() => undefined);
  const [exe, status, cmdline, cgroup] = await Promise.all([
    optional(Deno.readLink(`/proc/${pid}/exe`)),
    optional(readProc(pid, "status")),
    optional(readProc(pid, "cmdline")),
    optional(readProc(pid, "cgroup")),
  ]);
  const args = cmdline === undefined || cmdline === "" ? [] : cmdline.split("\0");
  // argv strings are NUL-terminated, which leaves one empty string at the end.
  if (args.length > 0 && args[args.length - 1] === "") args.pop();
  return {
    pid,
    comm,
    exe,
    uid: status === undefined ? undefined : statusUid(status),
    cmdline: args,
    cgroup: cgroup === undefined ? undefined : cgroupV2(cgroup),
  };
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function forEachLimited<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The read of every process's maps under way, if one is. */
let mapsRead: Promise<[number, MapEntry[]][]> | undefined;

/**
 * Every running process's file mappings. Callers while one read is under
 * way share it: the TLS library families of one start each look for their
 * own files at once (a read of every maps file each cost 10-50 ms).
 */
function everyProcessMaps(): Promise<[number, MapEntry[]][]> {
  mapsRead ??= (async () => {
    const all: [number, MapEntry[]][] = [];
    await forEachLimited(await listPids(), 16, async (pid) => {
      try {
        const files = parseMaps(await Deno.readTextFile(`/proc/${pid}/maps`))
          .filter((e) => e.inode !== 0 && e.path.startsWith("/"));
        all.push([pid, files]);
      } catch {
        // exited, unreadable, or not maps text: nothing to learn
      }
    });
    return all;
  })().finally(() => mapsRead = undefined);
  return mapsRead;
}

/**
 * Every file that some running process maps and whose path (as that
 * process sees it) satisfies `predicate`, keyed by a host path that opens
 * it (see {@link hostPath}). Files are deduplicated by (dev, inode), so one
 * library mapped from several containers is reported once with all pids.
 * Processes that exit or cannot be read during the scan are skipped; a
 * deleted file is keyed by its `/proc/PID/map_files/` entry.
 */
export async function findProcessesMapping(
  predicate: (path: string) => boolean,
): Promise<Map<string, MappingProcesses>> {
  interface Group {
    path: string;
    dev: string;
    inode: number;
    deleted: boolean;
    /** Per pid, the mapping range (for map_files) and the path it sees. */
    seenBy: Map<number, { range: string; path: string }>;
  }
  const groups = new Map<string, Group>();
  for (const [pid, entries] of await everyProcessMaps()) {
    for (const e of entries) {
      if (!predicate(e.path)) continue;
      const key = `${e.dev}:${e.inode}`;
      let g = groups.get(key);
      if (g === undefined) {
        g = { path: e.path, dev: e.dev, inode: e.inode, deleted: e.deleted, seenBy: new Map() };
        groups.set(key, g);
      }
      if (!g.seenBy.has(pid)) {
        g.seenBy.set(pid, { range: mapRange(e), path: e.path });
      }
    }
  }

  const out = new Map<string, MappingProcesses>();
  for (const g of groups.values()) {
    const pids = [...g.seenBy.keys()].sort((a, b) => a - b);
    let host: string | undefined;
    for (const pid of pids) {
      const seen = g.seenBy.get(pid)!;
      try {
        host = g.deleted
          // No name reaches an unlinked file; map_files does (as root).
          ? `/proc/${pid}/map_files/${seen.range}`
          : await mappedPath(pid, seen.path, isDevInode(g.dev, g.inode));
        if (host !== undefined && g.deleted) await Deno.stat(host);
      } catch {
        host = undefined;
      }
      if (host !== undefined) break;
    }
    if (host === undefined || out.has(host)) continue;
    out.set(host, { path: g.path, inode: g.inode, dev: g.dev, pids, deleted: g.deleted });
  }
  return out;
}

/**
 * Formats a `Deno.FileInfo.dev` (glibc's dev_t encoding) the way maps
 * prints devices, e.g. 65024 → "fe:00", so stat results compare with maps.
 */
export function formatDev(dev: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`;
}
