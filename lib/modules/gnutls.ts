/**
 * gnutls: plaintext and secrets of GnuTLS connections. gnutls_record_send
 * and gnutls_record_recv have SSL_write/SSL_read's shape, so the programs of
 * kern/tls.bpf.c serve them; secrets come from GnuTLS's own keylog hook
 * (see {@link gnutlsKeys}). What every TLS module shares is in
 * lib/tls/tls_family.ts.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { ElfError, type ElfFile } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import {
  type FileTarget,
  type ModuleSpec,
  rawTracepoint,
  u32,
  uprobe,
  uprobeAt,
  uretprobe,
} from "../core/module_spec.ts";
import { parseMaps } from "../binary/proc_maps.ts";
import { checkArchitecture } from "../core/targets.ts";
import {
  NSS_KEY_MAPS,
  OPENSSL_KEY_MAPS,
  PACKET_PROBES,
  SECRET_MODELS,
  TEXT_MODEL,
  tlsFamily,
} from "../tls/tls_family.ts";
import type {
  TlsDataEvent as DataEvent,
  TlsFamilyEvent,
  TlsFamilyOptions,
  TlsPacketEvent as PacketEvent,
  TlsSecretEvent as SecretEvent,
} from "../tls/tls_events.ts";
import {
  followLibrary,
  libraryTargets,
  listLibraryTargets,
  type TlsLibraryModule,
} from "../tls/tls_targets.ts";
import { latin1, readLibraryElf, readOnlyBlocks } from "../tls/tls_library.ts";
import { findInFile } from "../binary/elf_peek.ts";
import { gnutlsSendForwards } from "../tls/ssl_internal.ts";

/** Options of the gnutls module. */
export interface GnutlsOptions extends TlsFamilyOptions {
  /** A libgnutls.so (default: every one in use or in the ld cache). */
  gnutls?: string;
}

/** Bytes one gnutls_record_send or gnutls_record_recv call moved (`-m text`). */
export type GnutlsDataEvent = DataEvent<"gnutls">;
/** One secret of a handshake (`-m keylog`, `-m pcap`). */
export type GnutlsSecretEvent = SecretEvent<"gnutls">;
/** A packet seen by the tcx classifier (`-m pcap`). */
export type GnutlsPacketEvent = PacketEvent<"gnutls">;
/** What the gnutls module reports. */
export type GnutlsEvent = TlsFamilyEvent<"gnutls">;

const LIB = "gnutls";
/** The static function gnutls_init installs as every session's keylog hook. */
const KEYLOG_FUNC = "_gnutls_nss_keylog_func";

// gnutls_record_send forwards to gnutls_record_send2 (probed alone where
// that is a plain jump: send starts with an instruction the kernel
// single-steps, send2 with a push); send_range and the
// early data calls take their own paths; recv and recv_seq both call the
// internal _gnutls_recv_int. A probed call inside another for the same work
// (send -> send2) is reported once by kern/tls.bpf.c. gnutls_record_recv_packet
// hands out the library's own buffer (another shape) and is not probed.
const WRITES = [
  "gnutls_record_send",
  "gnutls_record_send2",
  "gnutls_record_send_range",
  "gnutls_record_send_early_data",
];
const READS = ["gnutls_record_recv", "gnutls_record_recv_seq", "gnutls_record_recv_early_data"];

/** Where GnuTLS keeps what the keylog probe needs, in one libgnutls file. */
export interface GnutlsKeys {
  /** File offset of the default keylog function (for the uprobe). */
  keylogOffset: number;
  /** Bytes from a gnutls_session_t to its client random. */
  randomAt: number;
}

const keysCache = new Map<string, Promise<GnutlsKeys | string>>();

/**
 * Finds, through GnuTLS's public API, what the keylog probe needs in the
 * libgnutls at `path`, or says why it cannot (a string).
 *
 * Since 3.6.13 gnutls_init installs a static function as each session's
 * keylog hook; GnuTLS calls it with (session, label, secret) for every
 * secret of every handshake (TLS 1.2 CLIENT_RANDOM, the TLS 1.3 traffic
 * secrets, EXPORTER_SECRET), whether SSLKEYLOGFILE is set or not: it checks
 * that itself. The function is not exported, but
 * gnutls_session_get_keylog_function() returns its address for a fresh
 * session, and gnutls_session_get_random() points into the session at its
 * client random. So ecap loads a copy of the file into its own process
 * (GnuTLS's constructor only reads its configuration; see openCopy for why a
 * copy, and the same bytes have the same offsets), makes one session, and turns
 * the address into a file offset through /proc/self/maps, and the pointer
 * into an offset from the session: no struct layout is needed, only the
 * public API's answers. A process that installs its own keylog function
 * replaces this one, and its sessions give no keys.
 */
export function gnutlsKeys(path: string): Promise<GnutlsKeys | string> {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    return Promise.resolve(`cannot read it: ${(e as Error).message}`);
  }
  const key = `${st.dev}:${st.ino}`;
  let found = keysCache.get(key);
  if (!found) {
    found = Promise.resolve().then(() => loadKeys(path));
    keysCache.set(key, found);
  }
  return found;
}

/**
 * Loads a private copy of the file: a library ecap maps under its own
 * name would count ecap among its users, or hold ecap itself (the follow
 * machinery stops processes that map such names). /tmp may be noexec.
 */
function openCopy<S extends Deno.ForeignLibraryInterface>(
  path: string,
  symbols: S,
): { lib: Deno.DynamicLibrary<S>; ino: number } | string {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    return `cannot read it (${(e as Error).message})`;
  }
  const failures: string[] = [];
  for (const dir of ["/dev/shm", Deno.env.get("TMPDIR") ?? "/tmp", "/run"]) {
    let copy: string | undefined;
    try {
      copy = Deno.makeTempFileSync({ dir, prefix: "ecap-gnutls-", suffix: ".so" });
      Deno.writeFileSync(copy, bytes, { mode: 0o700 });
      const ino = Deno.statSync(copy).ino!;
      return { lib: Deno.dlopen(copy, symbols), ino };
    } catch (e) {
      failures.push((e as Error).message.split("\n")[0]);
    } finally {
      if (copy) Deno.removeSync(copy);
    }
  }
  return `it cannot be loaded into ecap (${failures.join("; ")})`;
}

function loadKeys(path: string): GnutlsKeys | string {
  const opened = openCopy(path, {
    gnutls_init: { parameters: ["buffer", "u32"], result: "i32" },
    gnutls_deinit: { parameters: ["pointer"], result: "void" },
    gnutls_session_get_keylog_function: {
      parameters: ["pointer"],
      result: "pointer",
      optional: true,
    },
    gnutls_session_get_random: { parameters: ["pointer", "buffer", "buffer"], result: "void" },
  });
  if (typeof opened === "string") return opened;
  const lib = opened.lib;
  try {
    const getKeylog = lib.symbols.gnutls_session_get_keylog_function;
    if (!getKeylog) return "GnuTLS before 3.6.13 has no keylog hook";
    const out = new BigUint64Array(1);
    const GNUTLS_CLIENT = 2;
    const rc = lib.symbols.gnutls_init(new Uint8Array(out.buffer), GNUTLS_CLIENT);
    if (rc !== 0 || out[0] === 0n) return `gnutls_init failed (${rc})`;
    const session = Deno.UnsafePointer.create(out[0]);
    try {
      const func = BigInt(Deno.UnsafePointer.value(getKeylog(session)));
      // gnutls_datum_t { unsigned char *data; unsigned int size; }
      const client = new BigUint64Array(2), server = new BigUint64Array(2);
      lib.symbols.gnutls_session_get_random(
        session,
        new Uint8Array(client.buffer),
        new Uint8Array(server.buffer),
      );
      const randomAt = client[0] - out[0];
      if (func === 0n) return "gnutls_init installs no keylog function";
      if (randomAt <= 0n || randomAt > 0xffffn || (client[1] & 0xffffffffn) !== 32n) {
        return "the client random is not inside the session";
      }
      const keylogOffset = fileOffsetOf(func, opened.ino);
      if (keylogOffset === undefined) return "its keylog function lies outside the file";
      return { keylogOffset, randomAt: Number(randomAt) };
    } finally {
      lib.symbols.gnutls_deinit(session);
    }
  } finally {
    lib.close();
  }
}

/** The file offset of an address of this process, if a mapping of file `ino` holds it. */
function fileOffsetOf(addr: bigint, ino: number): number | undefined {
  for (const m of parseMaps(Deno.readTextFileSync("/proc/self/maps"))) {
    if (addr < m.start || addr >= m.end) continue;
    if (m.inode !== ino) return undefined;
    return Number(addr - m.start) + m.offset;
  }
  return undefined;
}

const LOGGING = new TextEncoder().encode("Enabled GnuTLS ");

/** "3.7.9", from the text GnuTLS logs when debugging is on (in its read-only data). */
async function gnutlsVersion(elf: ElfFile, path: string): Promise<string | undefined> {
  for (const block of await readOnlyBlocks(elf, path)) {
    const found = await findInFile(path, block, LOGGING, 40);
    if (found) return /^Enabled GnuTLS (\d+\.\d+\.\d+) logging/.exec(latin1(found))?.[1];
  }
  return undefined;
}

/** What the gnutls module probes in one file: a line for the user, keys' places. */
async function fileTarget(path: string, opts: GnutlsOptions): Promise<FileTarget> {
  const elf = await readLibraryElf(path, "GnuTLS");
  try {
    checkArchitecture(elf, path, "library");
    if (!elf.symbol("gnutls_record_send") || !elf.symbol("gnutls_record_recv")) {
      throw new EcapError(
        `"${path}" has no gnutls_record_send/gnutls_record_recv symbols (not a GnuTLS library)`,
        { kind: "unsupported", hint: "pass --gnutls with a libgnutls.so" },
      );
    }
  } catch (e) {
    if (!(e instanceof ElfError)) throw e;
    throw new EcapError(`"${path}" is not a usable ELF file: ${e.message}`, {
      kind: "unsupported",
      cause: e,
    });
  }
  const version = await gnutlsVersion(elf, path);
  let note = version ? `GnuTLS ${version}` : "GnuTLS";
  let mapEntries: FileTarget["mapEntries"];
  if (opts.model === "keylog" || opts.model === "pcap") {
    const keys = await gnutlsKeys(path);
    if (typeof keys === "string") {
      note += `; no keys: ${keys}`;
    } else {
      note += "; keys from its keylog hook";
      mapEntries = (
        index,
      ) => [{ map: "gnutls_random_at", key: u32(index), value: u32(keys.randomAt) }];
    }
  }
  return { note, mapEntries };
}

/** The keylog hook's place in a file, for the uprobe; none when keys are not available. */
async function locateKeylog(path: string): Promise<{ symbol: string; offset: number }[]> {
  const keys = await gnutlsKeys(path);
  return typeof keys === "string" ? [] : [{ symbol: KEYLOG_FUNC, offset: keys.keylogOffset }];
}

/** Files whose gnutls_record_send is not a plain jump to gnutls_record_send2. */
const notForwarding = async (path: string) => !await gnutlsSendForwards(path);

const library: TlsLibraryModule<GnutlsOptions> = {
  role: LIB,
  what: "GnuTLS",
  kind: { prefix: "libgnutls.so", symbol: "gnutls_record_send" },
  explicit: (opts) => opts.gnutls,
  fileTarget,
};

/** The gnutls module, described once. */
export const gnutls: ModuleSpec<GnutlsOptions, GnutlsEvent> = {
  name: "gnutls",
  summary: "Plaintext, keys and packets of GnuTLS connections",
  examples: [
    { command: "ecap gnutls --comm gnutls-cli", does: "what gnutls-cli sends and receives" },
    { command: "ecap gnutls -k keys.log", does: "key log lines of every GnuTLS handshake" },
    {
      command: "ecap gnutls -w tls.pcapng -s 128",
      does: "packets cut at 128 bytes, with their keys",
    },
  ],
  object: tlsObject,
  probes: [
    ...WRITES.flatMap((f, i) => {
      // gnutls_record_send where it is more than a jump to send2 (lib/tls/ssl_internal.ts)
      const only = i === 0 ? notForwarding : undefined;
      const opts = { optional: i > 0, models: TEXT_MODEL, only };
      return [
        uprobe("uprobe_ssl_write", LIB, f, opts),
        uretprobe("uretprobe_ssl_call", LIB, f, opts),
      ];
    }),
    ...READS.flatMap((f, i) => [
      uprobe("uprobe_ssl_read", LIB, f, { optional: i > 0, models: TEXT_MODEL }),
      uretprobe("uretprobe_ssl_call", LIB, f, { optional: i > 0, models: TEXT_MODEL }),
    ]),
    // uncork sends what corked gnutls_record_send calls already reported:
    // a call of no data of its own, so the sends inside are not reported again
    uprobe("uprobe_gnutls_uncork", LIB, "gnutls_record_uncork", { models: TEXT_MODEL }),
    uretprobe("uretprobe_ssl_call", LIB, "gnutls_record_uncork", { models: TEXT_MODEL }),
    // handshakes: the socket their syscalls show, for the keys and for a
    // first read served from what the handshake already read
    uprobe("uprobe_ssl_handshake", LIB, "gnutls_handshake"),
    uretprobe("uretprobe_ssl_call", LIB, "gnutls_handshake"),
    uprobeAt("uprobe_gnutls_keylog", LIB, KEYLOG_FUNC, locateKeylog, {
      optional: true,
      models: SECRET_MODELS,
    }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    ...PACKET_PROBES,
  ],
  ...tlsFamily<GnutlsOptions, "gnutls">(
    "gnutls",
    [{
      name: "gnutls",
      type: "string",
      arg: "PATH",
      help: "libgnutls.so to probe (default: every libgnutls in use)",
    }],
    (v) => ({ gnutls: typeof v.gnutls === "string" ? v.gnutls : undefined }),
    [...OPENSSL_KEY_MAPS, ...NSS_KEY_MAPS],
  ),
  targets: (opts) => libraryTargets(library, opts),
  follow: (opts) => followLibrary(library, opts),
  listTargets: (opts) => listLibraryTargets(library, opts),
};
