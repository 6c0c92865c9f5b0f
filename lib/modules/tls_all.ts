/**
 * `ecap tls` across every TLS library family at once: OpenSSL/BoringSSL,
 * GnuTLS, NSS and Go's crypto/tls, each its own capture (its object loads
 * on its own worker thread, in parallel with the others'), read as one.
 * `--lib` narrows it; a library path (`--libssl`, `--gnutls`, `--nss`,
 * `-e`) alone picks its family. A family with nothing to probe on this
 * machine is named at start and the others capture.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import { Capture, type CaptureHooks } from "../core/capture.ts";
import { CaptureGroup, type RunningCapture } from "../core/capture_group.ts";
import { SysEnterChain } from "../core/sys_enter_chain.ts";
import type { CommonOptions, EventBase, ModuleSpec } from "../core/module_spec.ts";
import type { TlsFamilyEvent } from "../tls/tls_events.ts";
import { TLS_LIBS, type TlsLib } from "../tls/tls_libs.ts";
import { newAssembler } from "../tls/tls_exchanges.ts";
import type { TlsOptions } from "./tls.ts";
import { loadModule } from "./index.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

/**
 * The ring of each family after the first (OpenSSL's) when --mapsize does
 * not say: a ring is resident from the start (the kernel inserts its pages
 * at mmap), so four of 8 MiB would be 32 MiB of an idle `ecap tls`. A loss
 * is counted and names --mapsize.
 */
const OTHER_FAMILY_RING = 2 << 20;

/** The families a tls capture with these options probes. */
export function tlsLibsOf(opts: TlsOptions): TlsLib[] {
  if (opts.libs) return opts.libs;
  const named = (Object.keys(TLS_LIBS) as TlsLib[]).filter((l) =>
    (opts as Record<string, unknown>)[TLS_LIBS[l].pathOption] !== undefined
  );
  return named.length > 0 ? named : Object.keys(TLS_LIBS) as TlsLib[];
}

/**
 * Starts the families' captures; one family alone is a plain capture.
 * Throws the first failure that is not "nothing to probe", or, when no
 * family has anything, the first family's.
 */
export async function startTls(
  opts: TlsOptions,
  hooks: CaptureHooks = {},
): Promise<RunningCapture<TlsFamilyEvent>> {
  const libs = tlsLibsOf(opts);
  const specs = await Promise.all(libs.map((l) => loadModule(TLS_LIBS[l].module)!));
  if (libs.length === 1) {
    return await Capture.start(specs[0], opts, hooks) as Capture<TlsFamilyEvent>;
  }
  // one family writes packets (-m pcap); the others give keys only
  const packets = opts.model === "pcap" ? libs[0] : undefined;
  // one exchange for a connection between two families (curl to a GnuTLS server)
  opts = { ...opts, exchanges: opts.exchanges ?? newAssembler(opts.exchangeTimeout) };
  const notes: string[] = [];
  // the families' sys_enter programs run as one (each attached costs every syscall)
  using chain = new SysEnterChain();
  const started = await Promise.allSettled(libs.map((lib, i) => {
    const model = packets !== undefined && lib !== packets ? "keylog" : opts.model;
    const mapSize = opts.mapSize ?? (i === 0 ? undefined : OTHER_FAMILY_RING);
    const sysEnter = chain.slot();
    return Capture.start(specs[i] as AnySpec, { ...opts, model, mapSize }, { ...hooks, sysEnter });
  }));
  const captures: Capture<TlsFamilyEvent>[] = [];
  let failure: unknown;
  let missing: unknown;
  started.forEach((s, i) => {
    const what = TLS_LIBS[libs[i]].what;
    if (s.status === "fulfilled") {
      if (s.value) captures.push(s.value as unknown as Capture<TlsFamilyEvent>);
    } else if (s.reason instanceof EcapError && s.reason.kind === "not-found") {
      notes.push(`${what}: nothing to probe (${s.reason.message})`);
      missing ??= s.reason;
    } else {
      failure ??= s.reason;
    }
  });
  try {
    if (failure === undefined && captures.length > 0) {
      chain.attach();
      return new CaptureGroup(captures, notes);
    }
  } catch (e) {
    failure = e;
  }
  await Promise.allSettled(captures.map((c) => c[Symbol.asyncDispose]()));
  throw failure ?? missing;
}
