/**
 * ecap as a library: capture what processes say in the clear, as typed
 * events, from other Deno scripts. Needs root (CAP_BPF and CAP_PERFMON) and
 * `--allow-ffi --allow-read --allow-write --allow-env`.
 *
 * @example Print commands typed in any interactive bash
 * ```ts ignore
 * import { capture } from "./mod.ts";
 * await using cap = await capture("bash", {});
 * for await (const ev of cap) console.log(ev.pid, ev.status, ev.line);
 * ```
 * @module
 */
import { Capture } from "./lib/core/capture.ts";
import { type ModuleEvents, type ModuleOptions, MODULES } from "./lib/modules/mod.ts";

export { Capture, type CaptureStats } from "./lib/core/capture.ts";
export { EcapError, type EcapErrorKind } from "./lib/base/errors.ts";
export type { CommonOptions, EventBase } from "./lib/core/module_spec.ts";
export type { BashEnd, BashEvent, BashOptions } from "./lib/modules/bash.ts";
export type {
  Endpoint,
  TlsDataEvent,
  TlsEvent,
  TlsExchangeEvent,
  TlsOptions,
  TlsPacketEvent,
  TlsSecretEvent,
  TlsStreamEvent,
} from "./lib/modules/tls.ts";
export type {
  ExchangeTimings,
  HttpExchange,
  HttpMessage,
  Party,
  StreamBlock,
} from "./lib/http/exchanges.ts";
export type { ZshEnd, ZshEvent, ZshOptions } from "./lib/modules/zsh.ts";
export type { MysqldCommand, MysqldEvent, MysqldOptions } from "./lib/modules/mysqld.ts";
export type { PostgresEvent, PostgresOptions } from "./lib/modules/postgres.ts";
export type {
  GotlsDataEvent,
  GotlsEvent,
  GotlsOptions,
  GotlsPacketEvent,
  GotlsSecretEvent,
} from "./lib/modules/gotls.ts";
export type {
  GnutlsDataEvent,
  GnutlsEvent,
  GnutlsOptions,
  GnutlsPacketEvent,
  GnutlsSecretEvent,
} from "./lib/modules/gnutls.ts";
export type { NssDataEvent, NssEvent, NssOptions } from "./lib/modules/nss.ts";
export type { ModuleEvents, ModuleOptions } from "./lib/modules/mod.ts";

/** Names of the modules `capture` accepts. */
export type ModuleName = keyof ModuleOptions;

/**
 * Starts capturing one module's events. The capture runs until it is
 * stopped or disposed; dispose it (`await using`) to detach every probe.
 *
 * @param module Which module to load: "bash", "zsh", "tls", "gnutls", "nss", "gotls", "mysqld"
 *   or "postgres" (see `ModuleOptions`).
 * @param options Filters and targets; every process by default.
 * @returns A running capture: an async iterable of the module's typed events.
 * @throws {EcapError} If the target cannot be found, or the BPF object
 * cannot be loaded or attached (e.g. without root).
 *
 * The first capture of a process raises glibc's mmap and trim thresholds
 * (mallopt) so that the blocks event payloads are copied into are reused
 * rather than page-faulted in again; payloads of one batch share a buffer
 * (`data.buffer`), so copy one you keep for long. The CLI also lowers its
 * nice value (--nice); a library caller decides that for itself.
 *
 * @example HTTPS requests slower than 200 ms, from any process (exchanges: the default)
 * ```ts ignore
 * await using cap = await capture("tls", {});
 * for await (const ev of cap) {
 *   if (ev.kind !== "http" || ev.timings.responseEnd === undefined) continue;
 *   const ms = Number(ev.timings.responseEnd - ev.timings.requestStart) / 1e6;
 *   if (ms > 200) console.log(`${ms.toFixed(0)} ms ${ev.request?.method} ${ev.request?.path}`);
 * }
 * ```
 *
 * @example Each SSL_read/SSL_write call of one process, as it happens
 * ```ts ignore
 * await using cap = await capture("tls", { pid: 4242, calls: true });
 * for await (const ev of cap) if (ev.kind === "data") console.log(ev.direction, ev.data.length);
 * ```
 *
 * @example Commands that failed in bash, for ten seconds
 * ```ts ignore
 * await using cap = await capture("bash", { errnumber: 1 });
 * setTimeout(() => cap.stop(), 10_000);
 * for await (const ev of cap) console.log(`${ev.comm}[${ev.pid}] ${ev.line}`);
 * console.log(cap.stats());
 * ```
 */
export function capture<M extends ModuleName>(
  module: M,
  options: ModuleOptions[M] = {},
): Promise<Capture<ModuleEvents[M]>> {
  return Capture.start(MODULES[module], options);
}
