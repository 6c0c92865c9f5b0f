/**
 * nss: plaintext of NSS connections, at NSPR's PR_Write/PR_Read/PR_Send/
 * PR_Recv (libnspr4), which have SSL_write/SSL_read's shape. NSPR serves
 * every descriptor; kern/tls.bpf.c keeps the calls on NSS SSL sockets only
 * (uprobe_nspr_*: recognised from the descriptor itself, so sockets set up
 * before ecap started count too). No keys: NSS writes its key log only
 * itself, when SSLKEYLOGFILE was set at its start, through functions it
 * does not export. What every TLS module shares is in lib/tls/tls_family.ts.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { ElfError, ElfFile } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import {
  type FileTarget,
  type ModuleSpec,
  rawTracepoint,
  uprobe,
  uretprobe,
} from "../core/module_spec.ts";
import { checkArchitecture } from "../core/targets.ts";
import { OPENSSL_KEY_MAPS, TEXT_MODEL, tlsFamily } from "../tls/tls_family.ts";
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
import { readLibraryFile } from "../tls/tls_library.ts";

/** Options of the nss module. */
export interface NssOptions extends TlsFamilyOptions {
  /** A libnspr4.so (default: every one in use or in the ld cache). */
  nss?: string;
}

/** Bytes one PR_Write/PR_Send or PR_Read/PR_Recv call on an SSL socket moved. */
export type NssDataEvent = DataEvent<"nss">;
/** What the nss module reports: plaintext only. */
export type NssEvent = TlsFamilyEvent<"nss">;

const LIB = "nss";
const NO_KEYS = "no keys: NSS writes its key log only itself (SSLKEYLOGFILE)";

/** "4.35", NSPR's version string (PR_VERSION), alone in its read-only data. */
function nsprVersion(bytes: Uint8Array): string | undefined {
  const text = new TextDecoder("latin1").decode(bytes);
  return /\0(4\.\d{1,3}(?:\.\d{1,3})?)\0/.exec(text)?.[1];
}

/** What the nss module probes in one file: a line for the user. */
async function fileTarget(path: string, _opts: NssOptions): Promise<FileTarget> {
  const bytes = await readLibraryFile(path, "NSPR");
  try {
    const elf = ElfFile.parse(bytes);
    checkArchitecture(elf, path, "library");
    if (!elf.symbol("PR_Write") || !elf.symbol("PR_Read")) {
      throw new EcapError(
        `"${path}" has no PR_Write/PR_Read symbols (not NSPR's libnspr4)`,
        { kind: "unsupported", hint: "pass --nss with the libnspr4.so NSS uses" },
      );
    }
  } catch (e) {
    if (!(e instanceof ElfError)) throw e;
    throw new EcapError(`"${path}" is not a usable ELF file: ${e.message}`, {
      kind: "unsupported",
      cause: e,
    });
  }
  const version = nsprVersion(bytes);
  return { note: `${version ? `NSPR ${version}` : "NSPR"}, NSS SSL sockets only; ${NO_KEYS}` };
}

/** -m keylog and -m pcap need keys, which NSS does not give ecap. */
function refuseKeys(opts: NssOptions) {
  if (opts.model === "keylog" || opts.model === "pcap") {
    throw new EcapError(`ecap nss cannot write -m ${opts.model}: ${NO_KEYS}`, {
      kind: "unsupported",
      hint: "use -m text",
    });
  }
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
  fileTarget,
};

/** The nss module, described once. */
export const nss: ModuleSpec<NssOptions, NssEvent> = {
  name: "nss",
  summary: "Plaintext of NSS (NSPR) TLS connections",
  examples: [
    {
      command: 'ecap nss -p "$(pidof -s firefox)"',
      does: "what Firefox sends and receives over TLS",
    },
    { command: "ecap nss --calls --hex", does: "each read and write call, as hex dumps" },
    { command: "ecap nss --har nss.har", does: "the HTTP exchanges also as a HAR file" },
  ],
  object: tlsObject,
  probes: [
    // PR_Writev is not probed: NSS's writev joins the buffers itself
    ...["PR_Write", "PR_Send"].flatMap((f) => [
      uprobe("uprobe_nspr_write", LIB, f, { models: TEXT_MODEL }),
      uretprobe("uretprobe_ssl_call", LIB, f, { models: TEXT_MODEL }),
    ]),
    ...["PR_Read", "PR_Recv"].flatMap((f) => [
      uprobe("uprobe_nspr_read", LIB, f, { models: TEXT_MODEL }),
      uretprobe("uretprobe_ssl_call", LIB, f, { models: TEXT_MODEL }),
    ]),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
  ],
  ...family,
  // refused before a key log or pcapng file is made, and before anything loads
  createSink(opts) {
    refuseKeys(opts);
    return family.createSink!(opts);
  },
  targets(opts) {
    refuseKeys(opts);
    return libraryTargets(library, opts);
  },
  follow: (opts) => followLibrary(library, opts),
  listTargets: (opts) => listLibraryTargets(library, opts),
};
