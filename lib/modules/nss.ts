/**
 * nss: plaintext of NSS connections, at NSPR's PR_Write/PR_Read/PR_Send/
 * PR_Recv (libnspr4), which have SSL_write/SSL_read's shape. NSPR serves
 * every descriptor; kern/tls.bpf.c keeps the calls on NSS SSL sockets only
 * (uprobe_nspr_*: recognised from the descriptor itself, so sockets set up
 * before ecap started count too). Keys (-m keylog, -m pcap) of TLS 1.3 and
 * 1.2, from libnss3's transcript hashing and freebl's HKDF and PRF
 * (lib/tls/nss_keys.ts): those libraries are the targets then, NSPR is not.
 * What every TLS module shares is in lib/tls/tls_family.ts.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { ElfError, type ElfFile } from "../binary/elf.ts";
import { findInFile, readAt } from "../binary/elf_peek.ts";
import { EcapError } from "../base/errors.ts";
import {
  type FileTarget,
  type FollowSpec,
  type ModuleSpec,
  rawTracepoint,
  type TargetSet,
  uprobe,
  uprobeAt,
  uretprobe,
  uretprobeAt,
} from "../core/module_spec.ts";
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
} from "../tls/tls_events.ts";
import {
  followLibrary,
  libraryTargets,
  listLibraryTargets,
  type TlsLibraryModule,
} from "../tls/tls_targets.ts";
import { hasLibraryBuiltIn, latin1, readLibraryElf, readOnlyBlocks } from "../tls/tls_library.ts";
import { FreeblError, type FreeblFunction, locateFreeblFunctions } from "../tls/nss_keys.ts";

/** Options of the nss module. */
export interface NssOptions extends TlsFamilyOptions {
  /** A libnspr4.so (default: every one in use or in the ld cache). */
  nss?: string;
}

/** Bytes one PR_Write/PR_Send or PR_Read/PR_Recv call on an SSL socket moved. */
export type NssDataEvent = DataEvent<"nss">;
/** What the nss module reports: plaintext, or key log lines (-m keylog, -m pcap). */
export type NssEvent = TlsFamilyEvent<"nss">;

const LIB = "nss";

/** "4.35", NSPR's version string (PR_VERSION), alone in its read-only data. */
async function nsprVersion(elf: ElfFile, path: string): Promise<string | undefined> {
  using f = await Deno.open(path);
  for (const block of await readOnlyBlocks(elf, path)) {
    // NSPR is small (its .rodata: tens of KB), and the string has no fixed prefix
    const text = latin1(await readAt(f, block.offset, Math.min(block.size, 1 << 20)));
    const found = /\0(4\.\d{1,3}(?:\.\d{1,3})?)\0/.exec(text)?.[1];
    if (found) return found;
  }
  return undefined;
}

const NSS_3 = new TextEncoder().encode("NSS 3.");

/** "3.87", NSS's version string, as libnss3 and freebl carry it. */
async function nssVersion(elf: ElfFile, path: string): Promise<string | undefined> {
  for (const block of await readOnlyBlocks(elf, path)) {
    const found = await findInFile(path, block, NSS_3, 24);
    if (found) return /^NSS (3\.\d{1,3}(?:\.\d{1,3})?)\b/.exec(latin1(found))?.[1];
  }
  return undefined;
}

/** A library's ELF file (read sparsely), or an EcapError saying why it is not usable. */
async function elfOf(path: string, what: string): Promise<ElfFile> {
  const elf = await readLibraryElf(path, what);
  checkArchitecture(elf, path, "library");
  return elf;
}

/** Whether `elf` defines every one of `names`; a broken symbol table is an EcapError. */
function hasSymbols(elf: ElfFile, path: string, ...names: string[]): boolean {
  try {
    return names.every((n) => elf.symbol(n) !== undefined);
  } catch (e) {
    if (!(e instanceof ElfError)) throw e;
    throw new EcapError(`"${path}" has a malformed symbol table: ${e.message}`, {
      kind: "unsupported",
      cause: e,
    });
  }
}

/** What the nss module probes in a libnspr4: a line for the user. */
async function nsprTarget(path: string, opts: NssOptions): Promise<FileTarget> {
  const elf = await elfOf(path, "NSPR");
  if (!hasSymbols(elf, path, "PR_Write", "PR_Read")) {
    throw new EcapError(
      `"${path}" has no PR_Write/PR_Read symbols (not NSPR's libnspr4)`,
      { kind: "unsupported", hint: "pass --nss with the libnspr4.so NSS uses" },
    );
  }
  const version = await nsprVersion(elf, path);
  const keys = wantsKeys(opts) ? "" : "; -m keylog for keys";
  return { note: `${version ? `NSPR ${version}` : "NSPR"}, NSS SSL sockets only${keys}` };
}

/** A libnss3 whose transcript hashing shows each handshake's client random. */
async function nss3Target(path: string): Promise<FileTarget> {
  const elf = await elfOf(path, "NSS");
  if (!hasSymbols(elf, path, "PK11_DigestOp", "PK11_CloneContext")) {
    throw new EcapError(`"${path}" has no PK11_DigestOp/PK11_CloneContext (not NSS's libnss3)`, {
      kind: "unsupported",
    });
  }
  const version = await nssVersion(elf, path);
  return { note: `${version ? `NSS ${version}` : "NSS"}: the client random of each handshake` };
}

/** A freebl whose HMAC functions ecap found and checked (lib/tls/nss_keys.ts). */
async function freeblTarget(path: string): Promise<FileTarget> {
  const found = await locateFreeblFunctions(path).catch((e) => {
    if (!(e instanceof FreeblError)) throw e;
    throw new EcapError(`"${path}": no keys, freebl not recognised: ${e.message}`, {
      kind: "unsupported",
    });
  });
  const at = found.map((f) => `${f.symbol} at 0x${f.offset.toString(16)}`).join(", ");
  return { note: `freebl: the secrets, ${at} (its function table, unwind-checked)` };
}

/** Where one of freebl's HMAC functions is in a file (a probe's locate). */
function freeblAt(symbol: FreeblFunction["symbol"]) {
  return async (path: string) =>
    (await locateFreeblFunctions(path)).filter((f) => f.symbol === symbol);
}

/** -m keylog and -m pcap: NSS's keys, from its libnss3 and freebl. */
function wantsKeys(opts: NssOptions): boolean {
  return opts.model === "keylog" || opts.model === "pcap";
}

const family = tlsFamily<NssOptions, "nss">(
  "nss",
  [{
    name: "nss",
    type: "string",
    arg: "PATH",
    help: "libnspr4.so to probe (default: every libnspr4 in use)",
  }],
  (v) => ({ nss: typeof v.nss === "string" ? v.nss : undefined }),
  OPENSSL_KEY_MAPS,
);

const library: TlsLibraryModule<NssOptions> = {
  role: LIB,
  what: "NSPR",
  kind: { prefix: "libnspr4.so", symbol: "PR_Write" },
  explicit: (opts) => opts.nss,
  fileTarget: nsprTarget,
};

/** NSS's own libraries, probed for keys: both share the module's one role. */
const NSS3: TlsLibraryModule<NssOptions> = {
  role: LIB,
  what: "NSS (libnss3)",
  kind: { prefix: "libnss3.so", symbol: "PK11_DigestOp" },
  explicit: () => undefined,
  fileTarget: nss3Target,
};
const FREEBL: TlsLibraryModule<NssOptions> = {
  role: LIB,
  what: "NSS's freebl (libfreeblpriv3)",
  kind: { prefix: "libfreeblpriv3.so", symbol: "FREEBL_GetVector" },
  explicit: () => undefined,
  fileTarget: freeblTarget,
  skipUnusable: true,
};

/**
 * Options of a key probe: -m keylog and -m pcap only, on the files that are
 * `lib`, told from their symbols (a followed file's path may be
 * /proc/PID/fd/N); asked once per file probed.
 */
function keysFrom(lib: TlsLibraryModule<NssOptions>) {
  return {
    models: SECRET_MODELS,
    only: (path: string) => hasLibraryBuiltIn(path, lib.kind).catch(() => false),
  };
}

/** The libnss3 and freebl files to probe for keys, in one role. */
async function keyTargets(opts: NssOptions): Promise<TargetSet> {
  const found = await Promise.all([NSS3, FREEBL].map((m) =>
    libraryTargets(m, opts).catch((e) => {
      if (e instanceof EcapError && e.kind === "not-found") return undefined;
      throw e;
    })
  ));
  const [nss3, freebl] = found;
  if (!opts.followChildren && (!nss3?.files[LIB].length || !freebl?.files[LIB].length)) {
    throw new EcapError(
      `No NSS for keys: ${
        !nss3?.files[LIB].length ? "no libnss3" : "no libfreeblpriv3 ecap recognises"
      } in use or installed`,
      { kind: "not-found", hint: "start the program, or capture plaintext with -m text" },
    );
  }
  const ignored = opts.nss === undefined
    ? []
    : [`--nss ${opts.nss}: NSPR is not what keys need; every libnss3 and freebl is probed`];
  return {
    files: { [LIB]: [...nss3?.files[LIB] ?? [], ...freebl?.files[LIB] ?? []] },
    // both list the packet interfaces' notes: once is enough
    notes: [
      ...ignored,
      ...nss3?.notes.filter((n) => !freebl?.notes.includes(n)) ?? [],
      ...freebl?.notes ?? [],
    ],
    interfaces: freebl?.interfaces ?? nss3?.interfaces,
    users: { ...nss3?.users, ...freebl?.users },
  };
}

/** Follows processes that map libnss3 or freebl later (Firefox started after ecap). */
function followKeys(opts: NssOptions): FollowSpec | undefined {
  const nss3 = followLibrary(NSS3, opts), freebl = followLibrary(FREEBL, opts);
  if (!nss3 || !freebl) return undefined;
  return {
    role: LIB,
    mappedPrefix: [NSS3.kind.prefix, FREEBL.kind.prefix],
    mmapWatchIn: nss3.mmapWatchIn,
    inspect: async (path) => await nss3.inspect(path) ?? await freebl.inspect(path),
  };
}

/** Options of freebl's key probes. */
const freeblKeys = keysFrom(FREEBL);

/** The nss module, described once. */
export const nss: ModuleSpec<NssOptions, NssEvent> = {
  name: "nss",
  summary: "Plaintext and keys of NSS (Firefox) TLS connections",
  examples: [
    {
      command: 'ecap nss -p "$(pidof -s firefox)"',
      does: "what Firefox sends and receives over TLS",
    },
    { command: "ecap nss -m keylog -k keys.log", does: "Firefox's TLS keys, for Wireshark" },
    { command: "ecap nss --har nss.har", does: "the HTTP exchanges also as a HAR file" },
  ],
  object: tlsObject,
  probes: [
    // PR_Writev is not probed: NSS's writev joins the buffers itself
    ...["PR_Write", "PR_Send"].flatMap((f) => [
      uprobe("uprobe_nspr_write", LIB, f, { models: TEXT_MODEL }),
      uretprobe("uretprobe_ssl_call", LIB, f, { models: TEXT_MODEL }),
    ]),
    ...[["PR_Read", "uprobe_nspr_read"], ["PR_Recv", "uprobe_nspr_recv"]].flatMap(([f, p]) => [
      uprobe(p, LIB, f, { models: TEXT_MODEL }),
      uretprobe("uretprobe_ssl_call", LIB, f, { models: TEXT_MODEL }),
    ]),
    uprobe("uprobe_nss_digest_op", LIB, "PK11_DigestOp", keysFrom(NSS3)),
    uprobe("uprobe_nss_clone_context", LIB, "PK11_CloneContext", keysFrom(NSS3)),
    uprobeAt("uprobe_freebl_hmac_update", LIB, "HMAC_Update", freeblAt("HMAC_Update"), freeblKeys),
    uprobeAt("uprobe_freebl_hmac_finish", LIB, "HMAC_Finish", freeblAt("HMAC_Finish"), freeblKeys),
    uretprobeAt(
      "uretprobe_freebl_hmac_finish",
      LIB,
      "HMAC_Finish",
      freeblAt("HMAC_Finish"),
      freeblKeys,
    ),
    // TLS 1.2: the master secret
    uprobeAt("uprobe_freebl_tls_p_hash", LIB, "TLS_P_hash", freeblAt("TLS_P_hash"), freeblKeys),
    uretprobeAt(
      "uretprobe_freebl_tls_p_hash",
      LIB,
      "TLS_P_hash",
      freeblAt("TLS_P_hash"),
      freeblKeys,
    ),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    ...PACKET_PROBES,
  ],
  ...family,
  // plaintext alone leaves NSS's key maps empty: one entry each, not thousands made at load
  mapSizes: (opts) => ({
    ...family.mapSizes!(opts),
    ...wantsKeys(opts) ? {} : Object.fromEntries(NSS_KEY_MAPS.map((m) => [m, 1])),
  }),
  targets: (opts) => wantsKeys(opts) ? keyTargets(opts) : libraryTargets(library, opts),
  follow: (opts) => wantsKeys(opts) ? followKeys(opts) : followLibrary(library, opts),
  listTargets: async (opts) =>
    wantsKeys(opts)
      ? [...await listLibraryTargets(NSS3, opts), ...await listLibraryTargets(FREEBL, opts)]
      : await listLibraryTargets(library, opts),
};
