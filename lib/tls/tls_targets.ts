/**
 * What the TLS modules that probe one shared library (gnutls: libgnutls.so,
 * nss: libnspr4.so) do alike: find the files to probe (a path the user gave,
 * else those processes map and the ld cache lists), follow processes that
 * map one later, and list them for --list-targets.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import type { FileTarget, FollowSpec, ListedTarget, TargetSet } from "../core/module_spec.ts";
import { findProcessesMapping, formatDev, type MappingProcesses } from "../binary/proc_maps.ts";
import { packetInterfaces } from "./tls_family.ts";
import type { TlsFamilyOptions } from "./tls_events.ts";
import {
  type DiscoveredTlsLibrary,
  discoverTlsLibraries,
  hasLibraryBuiltIn,
  type TlsLibraryKind,
} from "./tls_library.ts";

/** A library a TLS module probes, and how it tells what a file is. */
export interface TlsLibraryModule<O extends TlsFamilyOptions> {
  /** The targets() role, also the option naming a file (e.g. "gnutls" for --gnutls). */
  role: string;
  /** Its name for people, e.g. "GnuTLS". */
  what: string;
  kind: TlsLibraryKind;
  /** The file the user named, if any. */
  explicit(opts: O): string | undefined;
  /** What is probed in a file; throws EcapError when it is not such a library. */
  fileTarget(path: string, opts: O): Promise<FileTarget>;
  /** Binaries at least this big are held at exec until read (the library linked in). */
  holdExecBytes?: number;
  /**
   * A file fileTarget() refuses (EcapError "unsupported") is left out with a
   * note, not the end of the capture, when others are found (they are
   * optional helpers: NSS's freebl of an unknown build loses only its keys).
   */
  skipUnusable?: boolean;
}

function pidsOf(opts: TlsFamilyOptions): number[] {
  return [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
}

async function discover<O extends TlsFamilyOptions>(
  m: TlsLibraryModule<O>,
  opts: O,
): Promise<DiscoveredTlsLibrary[]> {
  const pids = pidsOf(opts);
  return pids.length > 0
    ? (await Promise.all(pids.map((pid) => discoverTlsLibraries({ pid, kind: m.kind })))).flat()
    : await discoverTlsLibraries({ kind: m.kind });
}

/** The module's targets(): every file to probe, a note on each, and their map entries. */
export async function libraryTargets<O extends TlsFamilyOptions>(
  m: TlsLibraryModule<O>,
  opts: O,
): Promise<TargetSet> {
  const paths: string[] = [];
  const users: Record<string, number[]> = {};
  const pids = pidsOf(opts);
  const explicit = m.explicit(opts);
  if (explicit) {
    paths.push(explicit);
  } else {
    const seen = new Set<string>();
    for (const lib of await discover(m, opts)) {
      if (seen.has(`${lib.dev}:${lib.inode}`)) continue;
      seen.add(`${lib.dev}:${lib.inode}`);
      paths.push(lib.path);
      // a library only processes map (a container's) goes when they do
      if (lib.source === "maps" && pids.length === 0) users[lib.path] = lib.pids;
    }
    if (paths.length === 0 && !opts.followChildren) {
      throw new EcapError(
        pids.length ? `Process ${pids.join(", ")} maps no ${m.what} library` : `No ${m.what} found`,
        { kind: "not-found", hint: `pass --${m.role} PATH` },
      );
    }
  }
  const notes: string[] = [];
  const mapEntries: { map: string; key: Uint8Array; value: Uint8Array }[] = [];
  const usable: string[] = [];
  for (const path of paths) {
    let t: FileTarget;
    try {
      t = await m.fileTarget(path, opts);
    } catch (e) {
      if (!m.skipUnusable || !(e instanceof EcapError) || e.kind !== "unsupported") throw e;
      notes.push(`not probed: ${e.message}`);
      continue;
    }
    notes.push(`${path}: ${t.note}`);
    mapEntries.push(...t.mapEntries?.(usable.length) ?? []);
    usable.push(path);
  }
  const packets = packetInterfaces(opts);
  notes.push(...packets.notes);
  return {
    files: { [m.role]: usable },
    notes,
    mapEntries,
    interfaces: packets.interfaces,
    users: Object.fromEntries(Object.entries(users).filter(([p]) => usable.includes(p))),
  };
}

/** The module's follow(): libraries mapped (and binaries run) after the capture started. */
export function followLibrary<O extends TlsFamilyOptions>(
  m: TlsLibraryModule<O>,
  opts: O,
): FollowSpec | undefined {
  // a library named by the user is all it asked for
  if (m.explicit(opts)) return undefined;
  if (pidsOf(opts).length > 0 && !opts.followChildren) return undefined;
  return {
    role: m.role,
    mappedPrefix: m.kind.prefix,
    mmapWatchIn: "raw_tp_sys_enter", // kern/tls.bpf.c
    exec: true,
    holdExecBytes: m.holdExecBytes,
    async inspect(path) {
      try {
        // most binaries run while capturing are not this library: say so
        // from their string tables, not a parse of the whole file
        if (!await hasLibraryBuiltIn(path, m.kind)) return undefined;
        return await m.fileTarget(path, opts);
      } catch (e) {
        if (e instanceof EcapError) return undefined; // not such a library
        throw e;
      }
    },
  };
}

/** A file named by the user, as discovery would describe it. */
async function describeFile(path: string): Promise<DiscoveredTlsLibrary> {
  const st = await Deno.stat(path).catch(() => undefined);
  const mapping = st === undefined
    ? undefined
    : (await findProcessesMapping(() => true).catch(() => new Map<string, MappingProcesses>()))
      .values().find((m) => m.inode === st.ino && m.dev === formatDev(st.dev!));
  return {
    path,
    inode: st?.ino ?? 0,
    dev: st ? formatDev(st.dev!) : "?",
    pids: mapping?.pids ?? [],
    source: "maps",
  };
}

async function commOf(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "?")).trim();
}

/** The module's listTargets(): the files it would probe and who maps them. */
export async function listLibraryTargets<O extends TlsFamilyOptions>(
  m: TlsLibraryModule<O>,
  opts: O,
): Promise<ListedTarget[]> {
  const explicit = m.explicit(opts);
  const found = explicit ? [await describeFile(explicit)] : await discover(m, opts);
  const out: ListedTarget[] = [];
  for (const lib of found) {
    const kind = await m.fileTarget(lib.path, { ...opts, model: "text" })
      .then((t) => t.note, (e) => `not usable: ${(e as Error).message}`);
    out.push({
      path: lib.path,
      inode: lib.inode,
      dev: lib.dev,
      kind,
      processes: await Promise.all(
        lib.pids.map(async (pid) => ({ pid, comm: await commOf(pid) })),
      ),
    });
  }
  return out;
}
