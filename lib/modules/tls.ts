/**
 * tls: plaintext, secrets and packets of OpenSSL and BoringSSL connections.
 * kern/tls.bpf.c sends each SSL_read/SSL_write call's bytes in chunks; what
 * every TLS module shares (events, models, decoder, sinks) is in
 * lib/tls/tls_family.ts. This file says what to probe and where OpenSSL is.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { Btf } from "../binary/btf.ts";
import { ElfFile, readElf } from "../binary/elf.ts";
import { locateBoringssl, locatedSymbols, secretSource } from "../tls/boringssl_static.ts";
import {
  type FileTarget,
  type ModuleSpec,
  rawTracepoint,
  u32,
  uprobe,
  uprobeAt,
  uretprobeAt,
} from "../core/module_spec.ts";
import { opensslInternalCalls } from "../tls/ssl_internal.ts";
import { encodeSslLayout, KNOWN_FAMILIES, layoutFor } from "../tls/ssl_layout.ts";
import {
  boringsslBuildOf,
  encodeBoringsslLayout,
  KNOWN_BORINGSSL_BUILDS,
} from "../tls/boringssl_layout.ts";
import { inspectTlsLibrary, OPENSSL_KIND } from "../tls/tls_library.ts";
import {
  followLibrary,
  libraryTargets,
  listLibraryTargets,
  type TlsLibraryModule,
} from "../tls/tls_targets.ts";
import {
  NSS_KEY_MAPS,
  PACKET_PROBES,
  SECRET_MODELS,
  TEXT_MODEL,
  tlsFamily,
} from "../tls/tls_family.ts";
import { parseLibs, TLS_LIBS, type TlsLib } from "../tls/tls_libs.ts";
import type {
  TlsDataEvent as DataEvent,
  TlsExchangeEvent as ExchangeEvent,
  TlsFamilyEvent,
  TlsFamilyOptions,
  TlsPacketEvent as PacketEvent,
  TlsSecretEvent as SecretEvent,
  TlsStreamEvent as StreamEvent,
} from "../tls/tls_events.ts";

export type { Endpoint } from "../tls/tls_events.ts";

/** Options of the tls module. */
export interface TlsOptions extends TlsFamilyOptions {
  /** A libssl.so, or a program with OpenSSL linked in (e.g. /usr/bin/node). */
  libssl?: string;
  /**
   * -m keylog/pcap: look for keys at every SSL_read/SSL_write of every
   * library, not only in programs with OpenSSL linked in (see dataKeys).
   */
  dataKeys?: boolean;
  /** The library families to probe (command line: all of them unless narrowed). */
  libs?: TlsLib[];
  /** A libgnutls.so (the gnutls family). */
  gnutls?: string;
  /** A libnspr4.so (the nss family). */
  nss?: string;
  /** A Go program (the go family). */
  elfpath?: string;
}

/** An HTTP request and its response (`-m text`, the default view). */
export type TlsExchangeEvent = ExchangeEvent<"tls">;
/** Consecutive bytes of a connection that is not HTTP (`-m text`). */
export type TlsStreamEvent = StreamEvent<"tls">;
/** Bytes one SSL_read or SSL_write call moved (`-m text` with `calls: true`). */
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

/**
 * Files whose SSL_read/SSL_write are probed for keys too. A program that
 * never calls SSL_do_handshake, SSL_connect or SSL_accept has its handshake
 * run inside the first data call (node: memory BIOs); those are mostly
 * programs with OpenSSL linked in, while programs on a shared libssl call
 * them (curl, python, nginx, libpq). A probe per data call costs a trap
 * (benchmark 1), so shared libraries get it only with --data-keys. Set by
 * fileTarget, which sees the capture's options; a path probed by two
 * captures of one process at once takes the last one's choice.
 */
const dataKeyFiles = new Set<string>();
const dataKeys = (path: string) => dataKeyFiles.has(path);

/** Where a file's internal read or write function is (none: its public ones are probed). */
function internalCall(dir: "read" | "write") {
  return async (path: string) => {
    const calls = await opensslInternalCalls(path);
    return calls ? [{ symbol: `ssl_${dir}_internal`, offset: calls[dir] }] : [];
  };
}

/** Files whose data calls are probed at SSL_read/SSL_write themselves. */
const publicCalls = async (path: string) => !(await opensslInternalCalls(path));

/**
 * Where a public function is: its symbol in the file itself, else (a
 * stripped binary carrying BoringSSL, such as Chromium) where
 * lib/tls/boringssl_static.ts found and verified it.
 */
function publicFunction(fn: string) {
  return async (path: string) => {
    const offset = (await readElf(path)).symbol(fn)?.fileOffset;
    if (offset !== undefined) return [{ symbol: fn, offset }];
    const located = await locateBoringssl(path);
    const found = located && locatedSymbols(located)[fn];
    return found === undefined ? [] : [{ symbol: fn, offset: found }];
  };
}

/** ssl_log_secret of a stripped program's BoringSSL, where the locator found it and the s3 state. */
async function locateLogSecret(path: string) {
  const keys = secretSource(await locateBoringssl(path));
  return keys ? [{ symbol: "ssl_log_secret", offset: keys.logSecret }] : [];
}

/** Entry and return probes of a public data function, where no internal one is found. */
function publicDataProbes(fn: string, entry: string, exit: string, optional = false) {
  const opts = { optional, models: TEXT_MODEL, only: publicCalls };
  return [
    uprobeAt(entry, LIB, fn, publicFunction(fn), opts),
    uretprobeAt(exit, LIB, fn, publicFunction(fn), opts),
  ];
}

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
    if (opts.dataKeys || info.statically) dataKeyFiles.add(path);
    else dataKeyFiles.delete(path);
    const layout = info.flavor === "openssl" ? layoutFor(info.version) : undefined;
    const boring = info.flavor === "boringssl" ? await boringsslBuildOf(path) : undefined;
    const located = info.flavor === "boringssl" && !boring
      ? secretSource(await locateBoringssl(path))
      : undefined;
    if (located) {
      const value = new Uint8Array(8);
      new DataView(value.buffer).setUint32(0, located.sslS3, true);
      new DataView(value.buffer).setUint32(4, located.s3ClientRandom, true);
      mapEntries = (index) => [{ map: "boringssl_random_at", key: u32(index), value }];
      keys = "; keys from ssl_log_secret, found with the functions";
    } else if (boring) {
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

/** Where OpenSSL is and what it is, for lib/tls/tls_targets.ts. */
const library: TlsLibraryModule<TlsOptions> = {
  role: LIB,
  what: "OpenSSL",
  kind: OPENSSL_KIND,
  explicit: (opts) => opts.libssl,
  fileTarget,
  // libssl and libcrypto linked in statically take megabytes (node: 98 MB)
  holdExecBytes: 2 << 20,
};

/** The tls module, described once. */
export const tls: ModuleSpec<TlsOptions, TlsEvent> = {
  name: "tls",
  aliases: ["openssl"],
  summary: "Plaintext, keys and packets of OpenSSL/BoringSSL connections",
  examples: [
    { command: "ecap tls --comm curl", does: "curl's HTTPS requests and responses in the clear" },
    {
      command: "ecap tls -w - | wireshark -k -i -",
      does: "packets to Wireshark as they come, decrypted",
    },
    {
      command: "ecap tls -k keys.log -c 10",
      does: "the keys of the next 10 handshakes, in SSLKEYLOGFILE format",
    },
  ],
  object: tlsObject,
  probes: [
    // data calls: where found, the internal functions every SSL_read* and
    // SSL_write* calls, for a quarter of the trap's cost (lib/tls/ssl_internal.ts)
    ...(["read", "write"] as const).flatMap((dir) => [
      uprobeAt(`uprobe_ssl_${dir}_ex`, LIB, `ssl_${dir}_internal`, internalCall(dir), {
        optional: true,
        models: TEXT_MODEL,
      }),
      uretprobeAt("uretprobe_ssl_call_ex", LIB, `ssl_${dir}_internal`, internalCall(dir), {
        optional: true,
        models: TEXT_MODEL,
      }),
    ]),
    // elsewhere (BoringSSL, builds that inline them) the public functions
    ...publicDataProbes("SSL_write", "uprobe_ssl_write", "uretprobe_ssl_call"),
    ...publicDataProbes("SSL_read", "uprobe_ssl_read", "uretprobe_ssl_call"),
    ...publicDataProbes("SSL_write_ex", "uprobe_ssl_write_ex", "uretprobe_ssl_call_ex", true),
    ...publicDataProbes("SSL_read_ex", "uprobe_ssl_read_ex", "uretprobe_ssl_call_ex", true),
    // handshakes: their secrets; in text mode, the socket their syscalls show,
    // for a first SSL_read served from what the handshake already read
    ...HANDSHAKES.flatMap((f) => [
      uprobeAt("uprobe_ssl_handshake", LIB, f, publicFunction(f), { optional: true }),
      uretprobeAt("uretprobe_ssl_call", LIB, f, publicFunction(f), { optional: true }),
    ]),
    // handshakes done inside SSL_read/SSL_write (no SSL_do_handshake call):
    // their secrets at the next call, where that is asked for (a probe per call)
    ...["SSL_write", "SSL_read"].map((fn) =>
      uprobeAt("uprobe_ssl_data_secrets", LIB, fn, publicFunction(fn), {
        models: SECRET_MODELS,
        only: dataKeys,
      })
    ),
    // BoringSSL: TLS 1.3 handshake secrets while its handshake runs (kern/tls.bpf.c)
    uprobe("uprobe_boringssl_hs", LIB, "SSL_is_dtls", { optional: true, models: SECRET_MODELS }),
    // BoringSSL in a stripped program: every secret as it is derived
    uprobeAt("uprobe_boringssl_log_secret", LIB, "ssl_log_secret", locateLogSecret, {
      optional: true,
      models: SECRET_MODELS,
    }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    ...PACKET_PROBES,
  ],
  ...tlsFamily<TlsOptions, "tls">("tls", [{
    name: "libssl",
    type: "string",
    arg: "PATH",
    help: "libssl.so or a program with OpenSSL linked in (default: every libssl in use)",
  }, {
    name: "data-keys",
    type: "boolean",
    help: "keylog/pcap: read keys at every SSL_read/SSL_write too, for programs on a shared " +
      "libssl that never call SSL_do_handshake/SSL_connect/SSL_accept (a probe per call)",
  }, {
    name: "lib",
    type: "string",
    arg: "LIBS",
    help: `library families to probe, comma-separated: ${
      Object.keys(TLS_LIBS).join(", ")
    } (default: every one found, or the one a path below names)`,
  }, {
    name: "gnutls",
    type: "string",
    arg: "PATH",
    help: "libgnutls.so to probe (the gnutls family)",
  }, {
    name: "nss",
    type: "string",
    arg: "PATH",
    help: "libnspr4.so to probe (the nss family)",
  }, {
    name: "elfpath",
    short: "e",
    type: "string",
    arg: "PATH",
    help: "a Go program to probe (the go family)",
  }], (v) => ({
    libssl: typeof v.libssl === "string" ? v.libssl : undefined,
    dataKeys: v["data-keys"] === true,
    libs: parseLibs(v.lib),
    gnutls: typeof v.gnutls === "string" ? v.gnutls : undefined,
    nss: typeof v.nss === "string" ? v.nss : undefined,
    elfpath: typeof v.elfpath === "string" ? v.elfpath : undefined,
  }), NSS_KEY_MAPS),
  targets: (opts) => libraryTargets(library, opts),
  follow: (opts) => followLibrary(library, opts),
  listTargets: (opts) => listLibraryTargets(library, opts),
};
