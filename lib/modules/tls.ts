/**
 * tls: plaintext, secrets and packets of OpenSSL and BoringSSL connections.
 * kern/tls.bpf.c sends each SSL_read/SSL_write call's bytes in chunks; what
 * every TLS module shares (events, models, decoder, sinks) is in
 * lib/tls_family.ts. This file says what to probe and where OpenSSL is.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { EcapError } from "../errors.ts";
import { Btf } from "../btf.ts";
import { ElfFile } from "../elf.ts";
import {
  type FileTarget,
  type ListedTarget,
  type ModuleSpec,
  rawTracepoint,
  u32,
  uprobe,
  uretprobe,
} from "../module_spec.ts";
import { encodeSslLayout, KNOWN_FAMILIES, layoutFor } from "../ssl_layout.ts";
import {
  boringsslBuildOf,
  encodeBoringsslLayout,
  KNOWN_BORINGSSL_BUILDS,
} from "../boringssl_layout.ts";
import { discoverTlsLibraries, inspectTlsLibrary } from "../tls_library.ts";
import { mayDefineSymbol } from "../elf_peek.ts";
import { findProcessesMapping, formatDev, type MappingProcesses } from "../proc_maps.ts";
import {
  PACKET_PROBES,
  packetInterfaces,
  SECRET_MODELS,
  TEXT_MODEL,
  type TlsDataEvent as DataEvent,
  tlsFamily,
  type TlsFamilyEvent,
  type TlsFamilyOptions,
  type TlsPacketEvent as PacketEvent,
  type TlsSecretEvent as SecretEvent,
} from "../tls_family.ts";

export type { Endpoint } from "../tls_family.ts";

/** Options of the tls module. */
export interface TlsOptions extends TlsFamilyOptions {
  /** A libssl.so, or a program with OpenSSL linked in (e.g. /usr/bin/node). */
  libssl?: string;
}

/** Bytes one SSL_read or SSL_write call moved (`-m text`). */
export type TlsDataEvent = DataEvent<"tls">;
/** A completed handshake's secrets (`-m keylog`, `-m pcap`). */
export type TlsSecretEvent = SecretEvent<"tls">;
/** A packet seen by the tcx classifier (`-m pcap`). */
export type TlsPacketEvent = PacketEvent<"tls">;
/** What the tls module reports. */
export type TlsEvent = TlsFamilyEvent<"tls">;
const LIB = "libssl";
const HANDSHAKES = ["SSL_do_handshake", "SSL_connect", "SSL_accept"];

let objectBtf: Btf | undefined;
function tlsBtf(): Btf {
  return objectBtf ??= Btf.fromElf(ElfFile.parse(tlsObject));
}

const LIBSSL_PREFIX = "libssl.so";

/** What the tls module probes in one file: a line for the user, and its struct offsets. */
async function fileTarget(path: string, opts: TlsOptions): Promise<FileTarget> {
  const info = await inspectTlsLibrary(path);
  const what = info.flavor === "boringssl"
    ? "BoringSSL"
    : info.version
    ? `OpenSSL ${info.version}`
    : "an unrecognised OpenSSL version (plaintext is still captured)";
  let keys = "";
  let mapEntries: FileTarget["mapEntries"];
  if (opts.model === "keylog" || opts.model === "pcap") {
    const layout = info.flavor === "openssl" ? layoutFor(info.version) : undefined;
    const boring = info.flavor === "boringssl" ? await boringsslBuildOf(path) : undefined;
    if (boring) {
      const value = encodeBoringsslLayout(tlsBtf(), boring);
      mapEntries = (index) => [{ map: "ssl_layouts", key: u32(index), value }];
      keys = `; keys from the layout of Debian ${boring.suite}'s ${boring.debian_version} build`;
    } else if (info.flavor === "boringssl") {
      keys = `; no keys: struct offsets known for ${KNOWN_BORINGSSL_BUILDS.join(", ")} only`;
    } else if (layout) {
      const value = encodeSslLayout(tlsBtf(), layout.entry, info.version);
      mapEntries = (index) => [{ map: "ssl_layouts", key: u32(index), value }];
      keys = `; keys from the ${layout.family} layout`;
    } else {
      keys = `; no keys: struct offsets known for OpenSSL ${KNOWN_FAMILIES.join(", ")}`;
    }
  }
  return { note: `${what}${info.statically ? ", linked statically" : ""}${keys}`, mapEntries };
}

/** A file named with --libssl, as discovery would describe it. */
async function describeFile(
  path: string,
): Promise<{ path: string; inode: number; dev: string; pids: number[] }> {
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
  };
}

async function commOf(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "?")).trim();
}

/** The tls module, described once. */
export const tls: ModuleSpec<TlsOptions, TlsEvent> = {
  name: "tls",
  aliases: ["openssl"],
  summary: "Plaintext, keys and packets of OpenSSL/BoringSSL connections",
  object: tlsObject,
  probes: [
    uprobe("uprobe_ssl_write", LIB, "SSL_write", { models: TEXT_MODEL }),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_write", { models: TEXT_MODEL }),
    uprobe("uprobe_ssl_read", LIB, "SSL_read", { models: TEXT_MODEL }),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_read", { models: TEXT_MODEL }),
    uprobe("uprobe_ssl_write_ex", LIB, "SSL_write_ex", { optional: true, models: TEXT_MODEL }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_write_ex", { optional: true, models: TEXT_MODEL }),
    uprobe("uprobe_ssl_read_ex", LIB, "SSL_read_ex", { optional: true, models: TEXT_MODEL }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_read_ex", { optional: true, models: TEXT_MODEL }),
    // handshakes: their secrets; in text mode, the socket their syscalls show,
    // for a first SSL_read served from what the handshake already read
    ...HANDSHAKES.flatMap((f) => [
      uprobe("uprobe_ssl_handshake", LIB, f, { optional: true }),
      uretprobe("uretprobe_ssl_call", LIB, f, { optional: true }),
    ]),
    // handshakes done inside SSL_read/SSL_write: their secrets at the next call
    uprobe("uprobe_ssl_data_secrets", LIB, "SSL_write", { models: SECRET_MODELS }),
    uprobe("uprobe_ssl_data_secrets", LIB, "SSL_read", { models: SECRET_MODELS }),
    // BoringSSL: TLS 1.3 handshake secrets while its handshake runs (kern/tls.bpf.c)
    uprobe("uprobe_boringssl_hs", LIB, "SSL_is_dtls", { optional: true, models: SECRET_MODELS }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    ...PACKET_PROBES,
  ],
  ...tlsFamily<TlsOptions, "tls">("tls", [{
    name: "libssl",
    type: "string",
    arg: "PATH",
    help: "libssl.so or a program with OpenSSL linked in (default: every libssl in use)",
  }], (v) => ({ libssl: typeof v.libssl === "string" ? v.libssl : undefined })),
  async targets(opts) {
    const paths: string[] = [];
    const users: Record<string, number[]> = {};
    const pids = [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
    if (opts.libssl) {
      paths.push(opts.libssl);
    } else {
      const found = pids.length > 0
        ? (await Promise.all(pids.map((pid) => discoverTlsLibraries({ pid })))).flat()
        : await discoverTlsLibraries();
      const seen = new Set<string>();
      for (const lib of found) {
        if (seen.has(`${lib.dev}:${lib.inode}`)) continue;
        seen.add(`${lib.dev}:${lib.inode}`);
        paths.push(lib.path);
        // a library only processes map (a container's) goes when they do
        if (lib.source === "maps" && pids.length === 0) users[lib.path] = lib.pids;
      }
      if (paths.length === 0 && !opts.followChildren) {
        throw new EcapError(
          pids.length ? `Process ${pids.join(", ")} maps no OpenSSL library` : "No libssl found",
          { kind: "not-found", hint: "pass --libssl PATH" },
        );
      }
    }
    const notes: string[] = [];
    const mapEntries: { map: string; key: Uint8Array; value: Uint8Array }[] = [];
    for (const [index, path] of paths.entries()) {
      const t = await fileTarget(path, opts);
      notes.push(`${path}: ${t.note}`);
      mapEntries.push(...t.mapEntries?.(index) ?? []);
    }
    const packets = packetInterfaces(opts);
    notes.push(...packets.notes);
    const interfaces = packets.interfaces;
    return { files: { [LIB]: paths }, notes, mapEntries, interfaces, users };
  },
  follow(opts) {
    // a library named by the user is all it asked for
    if (opts.libssl) return undefined;
    const pids = opts.pids?.length ?? (opts.pid ? 1 : 0);
    if (pids > 0 && !opts.followChildren) return undefined;
    return {
      role: LIB,
      mappedPrefix: LIBSSL_PREFIX,
      exec: true,
      // libssl and libcrypto linked in statically take megabytes (node: 98 MB)
      holdExecBytes: 2 << 20,
      async inspect(path) {
        try {
          // most binaries run while capturing are not TLS libraries: say so
          // from their string tables, not a parse of the whole file
          if (!await mayDefineSymbol(path, "SSL_write")) return undefined;
          return await fileTarget(path, opts);
        } catch (e) {
          if (e instanceof EcapError) return undefined; // not a TLS library
          throw e;
        }
      },
    };
  },
  async listTargets(opts) {
    const pids = [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
    const found = opts.libssl
      ? [await describeFile(opts.libssl)]
      : pids.length > 0
      ? (await Promise.all(pids.map((pid) => discoverTlsLibraries({ pid })))).flat()
      : await discoverTlsLibraries();
    const out: ListedTarget[] = [];
    for (const lib of found) {
      const kind = await fileTarget(lib.path, { ...opts, model: "text" })
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
  },
};
